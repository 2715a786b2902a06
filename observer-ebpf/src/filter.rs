//! Which calls concern observer, cheapest test first: is the syscall hooked (a table load), did
//! it fail (or open a directory), is the process watched (its name in two loads, or a map
//! lookup), is the errno wanted.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, generated::bpf_get_current_task_btf,
};
use observer_common::{
    COMM_LEN, Config, FILTER_ALL, FILTER_CGROUP, FILTER_COMM, FILTER_PID, KIND_CHDIR, KIND_FCHDIR,
    MAX_COMMS, Syscall,
};

use crate::call::NR_MAX;
use crate::{CGROUPS, OBSERVER_CONFIG, PIDS, cfg_flags};

/// `-ENOSYS`: the syscall does not exist on this kernel.
const ENOSYS: u32 = 38;
/// The first of the kernel-internal restart codes (include/linux/errno.h).
const ERESTARTSYS: u32 = 512;

/// The current task's comm as two words. The BTF-typed programs load it straight from
/// `task_struct` (userspace found the field's offset in the kernel's BTF; the value is a frozen
/// constant, so the verifier checks both loads against that BTF): two loads where
/// bpf_get_current_comm costs a helper call and a string copy.
#[inline(always)]
pub(crate) fn current_comm<const BTF: bool>() -> Option<[u64; 2]> {
    // SAFETY: read of our own static, volatile as in cfg_flags.
    let off = unsafe { core::ptr::read_volatile(&raw const OBSERVER_CONFIG.task_comm_off) };
    if BTF && off != 0 {
        // SAFETY: the helper returns the running task (never NULL); `off` is the offset of its
        // 16-byte `comm` array, so both 8-byte loads stay inside it.
        unsafe {
            let task = bpf_get_current_task_btf().cast::<u8>();
            let at = task.add(off as usize);
            return Some([
                core::ptr::read(at.cast::<u64>()),
                core::ptr::read(at.add(8).cast::<u64>()),
            ]);
        }
    }
    // Aligned words, filled by the raw helper (aya's wrapper memsets and copies a byte array).
    let mut comm = [0u64; 2];
    // SAFETY: the helper writes at most 16 bytes, NUL-padded, into our 16-byte buffer.
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_get_current_comm(
            comm.as_mut_ptr().cast(),
            COMM_LEN as u32,
        )
    };
    (r == 0).then_some(comm)
}

#[inline(always)]
pub(crate) fn comm_matches<const BTF: bool>() -> bool {
    let Some(comm) = current_comm::<BTF>() else {
        return false;
    };
    // SAFETY: reads of our own static, volatile as above.
    let n = unsafe { core::ptr::read_volatile(&raw const OBSERVER_CONFIG.ncomms) } as usize;
    let mut i = 0;
    while i < MAX_COMMS {
        if i >= n {
            break;
        }
        // Masked as well as bounded by the loop: LLVM then emits no bounds check (a panic
        // path, which the verifier refuses).
        let j = i & (MAX_COMMS - 1);
        // SAFETY: j < MAX_COMMS, the arrays' length.
        let (want, mask) = unsafe {
            (
                core::ptr::read_volatile(&raw const OBSERVER_CONFIG.comms[j]),
                core::ptr::read_volatile(&raw const OBSERVER_CONFIG.comm_masks[j]),
            )
        };
        // An exact name's mask covers its NUL, a prefix pattern's only its bytes.
        if comm[0] & mask[0] == want[0] && comm[1] & mask[1] == want[1] {
            return true;
        }
        i += 1;
    }
    false
}

/// The inode of the current task's mount namespace (`task->nsproxy->mnt_ns->ns.inum`, loaded
/// through BTF pointers at offsets userspace found in the kernel's BTF, so the verifier checks
/// each load); 0 without BTF or while the task exits (no nsproxy).
#[inline(always)]
pub(crate) fn current_mnt_ns<const BTF: bool>() -> u32 {
    // SAFETY: reads of our own static, volatile as in cfg_flags.
    let (task_off, ns_off, inum_off) = unsafe {
        (
            core::ptr::read_volatile(&raw const OBSERVER_CONFIG.task_nsproxy_off),
            core::ptr::read_volatile(&raw const OBSERVER_CONFIG.nsproxy_mnt_ns_off),
            core::ptr::read_volatile(&raw const OBSERVER_CONFIG.mnt_ns_inum_off),
        )
    };
    if !BTF || task_off == 0 {
        return 0;
    }
    // SAFETY: the helper returns the running task; each offset is that of the pointer (or the
    // u32) it names in the kernel's BTF, and loads through BTF pointers cannot fault (a NULL
    // pointer reads as 0).
    unsafe {
        let task = bpf_get_current_task_btf().cast::<u8>();
        let nsproxy = core::ptr::read(task.add(task_off as usize).cast::<*const u8>());
        if nsproxy.is_null() {
            return 0;
        }
        let mnt_ns = core::ptr::read(nsproxy.add(ns_off as usize).cast::<*const u8>());
        if mnt_ns.is_null() {
            return 0;
        }
        core::ptr::read(mnt_ns.add(inum_off as usize).cast::<u32>())
    }
}

/// Is the current task one observer watches? Its pid_tgid when it is. Kinds of selector combine
/// with AND, names within a kind with OR.
#[inline(always)]
pub(crate) fn watched<const BTF: bool>() -> Option<u64> {
    let flags = cfg_flags();
    // The comm test first: it rejects most unwatched calls by itself, with two loads.
    if flags & FILTER_COMM != 0 && !comm_matches::<BTF>() {
        return None;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: read of our own static.
    if tgid == unsafe { core::ptr::read_volatile(&raw const OBSERVER_CONFIG.self_tgid) } {
        return None;
    }
    if flags & FILTER_ALL != 0 {
        return Some(pid_tgid);
    }
    // SAFETY: the value is not kept past the lookup.
    if flags & FILTER_PID != 0 && unsafe { PIDS.get(tgid) }.is_none() {
        return None;
    }
    if flags & FILTER_CGROUP != 0 {
        // SAFETY: a helper call without arguments.
        let cg = unsafe { bpf_get_current_cgroup_id() };
        // SAFETY: the value is not kept past the lookup.
        unsafe { CGROUPS.get(cg) }?;
    }
    (flags & (FILTER_COMM | FILTER_PID | FILTER_CGROUP) != 0).then_some(pid_tgid)
}

#[inline(always)]
pub(crate) fn is_open(kind: u32) -> bool {
    kind == Syscall::Open as u32
        || kind == Syscall::Openat as u32
        || kind == Syscall::Openat2 as u32
}

/// Does a call of `kind` that returned `ret` concern us, whoever made it? Failures do (unless
/// `--errno` leaves their errno out); successes only when they may be directory opens, which
/// later dirfd-relative failures need.
#[inline(always)]
pub(crate) fn ret_wanted(kind: u32, ret: i64) -> bool {
    if kind == KIND_CHDIR as u32 || kind == KIND_FCHDIR as u32 {
        // A new working directory: later relative failures start from it.
        return ret == 0;
    }
    if ret >= 0 {
        return is_open(kind);
    }
    let errno = (-ret) as u32;
    // -ENOSYS: the syscall does not exist on this kernel (glibc falls back), not a missing file.
    // 512 and up (ERESTARTSYS...) are kernel-internal: the call is restarted after a signal, or
    // the process sees EINTR; neither is a file that failed.
    errno != ENOSYS && errno < ERESTARTSYS && errno_wanted(&OBSERVER_CONFIG, errno)
}

#[inline(always)]
pub(crate) fn errno_wanted(cfg: &Config, errno: u32) -> bool {
    // SAFETY: reads of our own static, volatile so load-time values are used.
    let flags = unsafe { core::ptr::read_volatile(&raw const cfg.flags) };
    if flags & observer_common::FILTER_ERRNO == 0 {
        return true;
    }
    // Constant offsets only: with a computed index LLVM may bound-check one register and index
    // with another, which the verifier rejects.
    // SAFETY: reads of our own static, volatile so load-time values are used.
    let mask = unsafe {
        match errno >> 6 {
            0 => core::ptr::read_volatile(&raw const cfg.errno_mask[0]),
            1 => core::ptr::read_volatile(&raw const cfg.errno_mask[1]),
            2 => core::ptr::read_volatile(&raw const cfg.errno_mask[2]),
            _ => return false,
        }
    };
    mask & (1u64 << (errno % 64)) != 0
}

/// The kind (Syscall as u32) of syscall `id`, when it is hooked.
#[inline(always)]
pub(crate) fn hooked(id: u64) -> Option<u32> {
    if id >= NR_MAX as u64 {
        return None;
    }
    // SAFETY: index bounded just above (and masked, so the verifier sees it too).
    let k = unsafe {
        core::ptr::read_volatile(&raw const OBSERVER_CONFIG.sys_kind[(id as usize) & (NR_MAX - 1)])
    };
    (k != observer_common::NOT_HOOKED).then_some(k as u32)
}
