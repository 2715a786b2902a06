//! What a watched failure becomes: its path read and hashed, its key counted in `AGG`, and its
//! first sighting (or a directory open) sent over the ring buffer.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_uid_gid, bpf_ktime_get_ns,
        bpf_probe_read_user, bpf_probe_read_user_str_bytes,
    },
};
use aya_log_ebpf::{debug, warn};
use observer_common::{
    AT_EMPTY_PATH, AT_FDCWD, AggKey, AggVal, COMM_LEN, CONFIG_OPENED, CONFIG_VERBOSE, Call, DirKey,
    EVENT_HEADER_LEN, EventBuf, KIND_CHDIR, KIND_FCHDIR, O_ACCMODE, O_DIRECTORY, O_PATH, PATH_MAX,
    PathHasher, STATUS_CHDIR, STATUS_DIRFD, STATUS_OPENED, STATUS_PATH_FAULT, STATUS_TRUNCATED,
    STATUS_UNAGGREGATED, Stat, Syscall, WAKE_GAP_NS, WAKE_PENDING_BYTES,
};

use crate::filter::current_mnt_ns;
use crate::{
    AGG, CWDGEN, DIRGEN, EEXIST, EVENTS, OBSERVER_CONFIG, OPENED, SCRATCH, WOKE, cfg_flags,
    stat_add,
};

/// A watched task's hooked call has returned `ret` (already passed by `ret_wanted`).
#[inline(always)]
pub(crate) fn on_exit<C: EbpfContext, const BTF: bool>(
    ctx: &C,
    mut call: Call,
    pid_tgid: u64,
    ret: i64,
) {
    if call.syscall == KIND_CHDIR as u32 || call.syscall == KIND_FCHDIR as u32 {
        record_chdir::<BTF>(&call, pid_tgid);
        return;
    }
    if call.syscall == Syscall::Openat2 as u32 {
        // openat2's flags live in the caller's `struct open_how` (first field).
        // SAFETY: the helper validates the user pointer.
        call.flags = unsafe { bpf_probe_read_user(call.aux as *const u64) }.unwrap_or(0);
    }
    if ret >= 0 {
        if call.flags & (O_DIRECTORY | O_PATH) != 0 {
            record_dirfd::<BTF>(&call, pid_tgid, ret);
        } else if call.flags & O_ACCMODE == 0 && cfg_flags() & CONFIG_OPENED != 0 {
            record_opened::<BTF>(&call, pid_tgid);
        }
        return;
    }
    record::<C, BTF>(ctx, &call, pid_tgid, (-ret) as u32);
}

/// The generation of the directory a relative path of `tgid` starts from: its working
/// directory's (it changes at each chdir) or directory fd's (it changes each time the fd number
/// names a new directory); 0 before observer saw either change.
#[inline(always)]
fn dir_gen(tgid: u32, dfd: i32) -> u32 {
    let g = if dfd == AT_FDCWD {
        // SAFETY: the value is copied out at once.
        unsafe { CWDGEN.get(tgid) }
    } else {
        // SAFETY: as above.
        unsafe { DIRGEN.get(DirKey { tgid, fd: dfd }) }
    };
    g.copied().unwrap_or(0)
}

/// A successful chdir or fchdir: the working directory's next generation, and a record that
/// tells userspace what it is (chdir's path, or fchdir's fd).
#[inline(always)]
fn record_chdir<const BTF: bool>(inf: &Call, pid_tgid: u64) {
    let tgid = (pid_tgid >> 32) as u32;
    let next = dir_gen(tgid, AT_FDCWD).wrapping_add(1);
    let _ = CWDGEN.insert(tgid, next, 0);
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program.
    let buf = unsafe { &mut *buf };
    let (len, dfd, at) = if inf.syscall == KIND_CHDIR as u32 {
        // SAFETY: the helper validates the user pointer and bounds the copy by the buffer.
        match unsafe { bpf_probe_read_user_str_bytes(inf.path_ptr as *const u8, &mut buf.path) } {
            Ok(p) => (p.len(), AT_FDCWD, next.wrapping_sub(1)),
            Err(_) => return,
        }
    } else {
        let fd = inf.aux as i32;
        (0, fd, dir_gen(tgid, fd))
    };
    let key = AggKey {
        path_hash: 0,
        tgid,
        errno: 0,
        syscall: inf.syscall,
        dfd,
        dir_gen: at,
        _pad: 0,
    };
    // SAFETY: helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !emit::<BTF>(buf, &key, inf, pid_tgid, now, len, STATUS_CHDIR, next) {
        stat_add(Stat::DirfdLost, 1);
    }
}

/// A successful directory open: its fd, the fd's next generation and the path go to userspace,
/// which resolves later dirfd-relative failures with them (the fd may be closed by the time they
/// arrive).
#[inline(always)]
pub(crate) fn record_dirfd<const BTF: bool>(inf: &Call, pid_tgid: u64, fd: i64) {
    let tgid = (pid_tgid >> 32) as u32;
    let new_fd = DirKey {
        tgid,
        fd: fd as i32,
    };
    // SAFETY: the value is copied out at once.
    let next = unsafe { DIRGEN.get(new_fd) }
        .copied()
        .unwrap_or(0)
        .wrapping_add(1);
    let _ = DIRGEN.insert(new_fd, next, 0);
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program.
    let buf = unsafe { &mut *buf };
    // SAFETY: the helper validates the user pointer and bounds the copy by the buffer.
    let Ok(len) =
        (unsafe { bpf_probe_read_user_str_bytes(inf.path_ptr as *const u8, &mut buf.path) })
            .map(|s| s.len())
    else {
        return;
    };
    let relative = len > 0 && buf.path[0] != b'/';
    let key = AggKey {
        path_hash: 0,
        tgid,
        errno: 0,
        syscall: inf.syscall,
        dfd: inf.dfd,
        dir_gen: if relative { dir_gen(tgid, inf.dfd) } else { 0 },
        _pad: 0,
    };
    let at = Call {
        aux: fd as u64,
        ..*inf
    };
    // SAFETY: helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !emit::<BTF>(buf, &key, &at, pid_tgid, now, len, STATUS_DIRFD, next) {
        stat_add(Stat::DirfdLost, 1);
    }
}

/// A successful open for reading (a script, a configuration file): reported once per (path,
/// process, directory generation), so that userspace can search the files a process read for
/// the name it then failed on. Repeats cost the path read, its hash and one LRU lookup.
#[inline(always)]
fn record_opened<const BTF: bool>(inf: &Call, pid_tgid: u64) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program.
    let buf = unsafe { &mut *buf };
    // SAFETY: the helper validates the user pointer and bounds the copy by the buffer.
    let Ok(len) =
        (unsafe { bpf_probe_read_user_str_bytes(inf.path_ptr as *const u8, &mut buf.path) })
            .map(|s| s.len())
    else {
        return;
    };
    if len == 0 || len >= PATH_MAX - 1 {
        return;
    }
    let len = len & (PATH_MAX - 1);
    let path_hash = hash_path(buf, len);
    // SAFETY: written by hash_path just before (reloaded for the verifier, as in `record`).
    let len =
        unsafe { core::ptr::read_volatile(&raw const buf.hdr.path_len) } as usize & (PATH_MAX - 1);
    let absolute = buf.path[0] == b'/';
    let tgid = (pid_tgid >> 32) as u32;
    let key = AggKey {
        path_hash,
        tgid,
        errno: 0,
        syscall: inf.syscall,
        dfd: if absolute { 0 } else { inf.dfd },
        dir_gen: if absolute { 0 } else { dir_gen(tgid, inf.dfd) },
        _pad: 0,
    };
    // SAFETY: the value is not kept.
    if unsafe { OPENED.get(key) }.is_some() {
        return;
    }
    if OPENED.insert(key, 1u8, BPF_NOEXIST as u64).is_err() {
        // Another CPU reported it between our lookup and insert.
        return;
    }
    // SAFETY: helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !emit::<BTF>(buf, &key, inf, pid_tgid, now, len, STATUS_OPENED, 0) {
        // Not delivered: forget the key, so the next open of the file reports it.
        let _ = OPENED.remove(key);
    }
}

#[inline(always)]
pub(crate) fn record<C: EbpfContext, const BTF: bool>(
    ctx: &C,
    inf: &Call,
    pid_tgid: u64,
    errno: u32,
) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program.
    let buf = unsafe { &mut *buf };
    let mut status = 0u32;
    // SAFETY: the helper validates the user pointer and bounds the copy by the buffer.
    let len =
        match unsafe { bpf_probe_read_user_str_bytes(inf.path_ptr as *const u8, &mut buf.path) } {
            Ok(s) => s.len(),
            Err(_) => {
                status |= STATUS_PATH_FAULT;
                0
            }
        };
    let kind = inf.syscall;
    let at_flags = if kind == Syscall::Newfstatat as u32
        || kind == Syscall::Statx as u32
        || kind == Syscall::Execveat as u32
    {
        inf.flags
    } else if kind == Syscall::Faccessat2 as u32 {
        inf.aux
    } else {
        0
    };
    if len == 0 && at_flags & AT_EMPTY_PATH != 0 {
        // fstat(fd) and friends: a failure on a file descriptor, not a path lookup.
        return;
    }
    if status & STATUS_PATH_FAULT != 0 {
        stat_add(Stat::PathFault, 1);
    }
    if len >= PATH_MAX - 1 {
        // SAFETY: a probe of one byte past what fit; failure just means "not longer".
        let next =
            unsafe { bpf_probe_read_user((inf.path_ptr + (PATH_MAX as u64 - 1)) as *const u8) };
        if matches!(next, Ok(b) if b != 0) {
            status |= STATUS_TRUNCATED;
        }
    }
    let len = len & (PATH_MAX - 1);
    let path_hash = hash_path(buf, len);
    // Reload the length from map memory: the loop's exit states each refined `len` differently,
    // and carrying those ranges on would make the verifier walk the rest once per state.
    // SAFETY: written by hash_path just before.
    let len =
        unsafe { core::ptr::read_volatile(&raw const buf.hdr.path_len) } as usize & (PATH_MAX - 1);

    let absolute = len > 0 && buf.path[0] == b'/';
    let tgid = (pid_tgid >> 32) as u32;
    let key = AggKey {
        path_hash,
        tgid,
        errno,
        syscall: kind,
        dfd: if absolute { 0 } else { inf.dfd },
        // A relative path also names the directory it starts from.
        dir_gen: if absolute { 0 } else { dir_gen(tgid, inf.dfd) },
        _pad: 0,
    };
    if bump(&key) {
        return;
    }
    // First sighting (rare): only here is the clock read. On VMs that trap TSC reads a clock
    // read costs ~300 ns, more than all the rest; repeats need none, because userspace dates the
    // last sighting when it sees the count grow.
    // SAFETY: helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let val = AggVal {
        count: 1,
        first_ns: now,
    };
    match AGG.insert(key, val, BPF_NOEXIST as u64) {
        Ok(()) => {
            if !emit::<BTF>(buf, &key, inf, pid_tgid, now, len, status, 0) {
                // The path never reached userspace: undo the key so its next failure retries,
                // and count what it held as lost.
                let held = AGG
                    .get_ptr(key)
                    // SAFETY: `v` points into the map value we inserted just before.
                    .map(|v| unsafe { (*v).count })
                    .unwrap_or(1);
                let _ = AGG.remove(key);
                stat_add(Stat::Lost, held);
                if cfg_flags() & CONFIG_VERBOSE != 0 {
                    warn!(ctx, "ring buffer full: {} failure(s) lost", held);
                }
            } else if cfg_flags() & CONFIG_VERBOSE != 0 {
                debug!(
                    ctx,
                    "new failure: tgid {} errno {} syscall {}", key.tgid, errno, key.syscall
                );
            }
        }
        Err(e) if e == -EEXIST => {
            // Another CPU inserted it between our lookup and insert.
            let _ = bump(&key);
        }
        Err(_) => {
            // AGG is full: deliver this failure on its own rather than drop it.
            stat_add(Stat::AggOverflow, 1);
            if !emit::<BTF>(
                buf,
                &key,
                inf,
                pid_tgid,
                now,
                len,
                status | STATUS_UNAGGREGATED,
                0,
            ) {
                stat_add(Stat::Lost, 1);
            }
        }
    }
}

/// Hashes `buf.path[..len]` with the load's secret key (observer_common::PathHasher, as
/// userspace computes it), leaving `len` in `buf.hdr.path_len`. The loop is bounded by word
/// count, not by `len`, so the verifier's view of `len` is not refined per iteration.
#[inline(always)]
pub(crate) fn hash_path(buf: &mut EventBuf, len: usize) -> u64 {
    buf.hdr.path_len = len as u32;
    let nwords = len.div_ceil(8);
    let tail = len & 7;
    // SAFETY: reads of our own static, volatile so the load-time key is used.
    let key = unsafe {
        [
            core::ptr::read_volatile(&raw const OBSERVER_CONFIG.hash_key[0]),
            core::ptr::read_volatile(&raw const OBSERVER_CONFIG.hash_key[1]),
        ]
    };
    let mut h = PathHasher::new(key);
    let mut i = 0usize;
    while i < PATH_MAX / 8 {
        if i >= nwords {
            break;
        }
        // SAFETY: i < PATH_MAX / 8, so the 8 bytes are inside `path`, which sits 8-aligned.
        let mut w = unsafe { core::ptr::read(buf.path.as_ptr().add(i * 8) as *const u64) };
        if i + 1 == nwords && tail != 0 {
            // Bytes past the NUL are stale scratch: mask them off.
            w &= (1u64 << (tail * 8)) - 1;
        }
        h.word(w);
        i += 1;
    }
    h.finish(len as u64)
}

/// Count one more failure of an existing key. Returns false when the key is not there.
#[inline(always)]
pub(crate) fn bump(key: &AggKey) -> bool {
    match AGG.get_ptr_mut(key) {
        Some(v) => {
            // SAFETY: `v` points into the map value; atomic because several CPUs can fail the
            // same call at once.
            unsafe { atomic_add(&raw mut (*v).count, 1) };
            true
        }
        None => false,
    }
}

/// `lock *(u64 *)(ptr) += n`: BPF's atomic add (XADD, every BPF ISA version). `core` offers no
/// atomic read-modify-write on the bpf target.
#[inline(always)]
pub(crate) unsafe fn atomic_add(ptr: *mut u64, n: u64) {
    #[cfg(target_arch = "bpf")]
    // SAFETY: the caller passes a valid, 8-aligned map value field.
    unsafe {
        core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) ptr, in(reg) n)
    };
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above (host builds are only type-checked, never run).
    unsafe {
        *ptr += n
    };
}

/// Sends the record in `buf` (its path already read), with the process's identity: pid, ids,
/// name, cgroup and mount namespace. Only first sightings and directory changes come here.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "one record's fields, inlined")]
pub(crate) fn emit<const BTF: bool>(
    buf: &mut EventBuf,
    key: &AggKey,
    inf: &Call,
    pid_tgid: u64,
    now: u64,
    len: usize,
    status: u32,
    aux_gen: u32,
) -> bool {
    let uid_gid = bpf_get_current_uid_gid();
    buf.hdr.key = *key;
    buf.hdr.ts_ns = now;
    buf.hdr.flags = inf.flags;
    buf.hdr.aux = inf.aux;
    // SAFETY: helper call without arguments.
    buf.hdr.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    buf.hdr.mnt_ns = current_mnt_ns::<BTF>();
    buf.hdr.aux_gen = aux_gen;
    buf.hdr.tid = pid_tgid as u32;
    buf.hdr.uid = uid_gid as u32;
    buf.hdr.gid = (uid_gid >> 32) as u32;
    buf.hdr.path_len = len as u32;
    buf.hdr.status = status;
    buf.hdr._pad = 0;
    buf.hdr.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    let n = EVENT_HEADER_LEN + (len & (PATH_MAX - 1));
    // SAFETY: n <= size_of::<EventBuf>(); the bytes are initialised (header just written, path
    // read by the helper up to len).
    let bytes = unsafe { core::slice::from_raw_parts((buf as *const EventBuf).cast::<u8>(), n) };
    EVENTS
        .output::<[u8]>(bytes, wake_flags(now, status))
        .is_ok()
}

/// Whether this record wakes the reader: at once when a quarter of the ring is waiting; a first
/// sighting of a failure at most once per [`WAKE_GAP_NS`]; anything else never (the reader
/// drains on its tick).
#[inline(always)]
fn wake_flags(now: u64, status: u32) -> u64 {
    if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= WAKE_PENDING_BYTES {
        return u64::from(BPF_RB_FORCE_WAKEUP);
    }
    if status & (STATUS_DIRFD | STATUS_CHDIR | STATUS_OPENED) == 0
        && let Some(last) = WOKE.get_ptr_mut(0)
    {
        // SAFETY: an element of our own one-entry array; a torn race between CPUs only means
        // an extra wakeup.
        unsafe {
            if now.wrapping_sub(*last) >= WAKE_GAP_NS {
                *last = now;
                return u64::from(BPF_RB_FORCE_WAKEUP);
            }
        }
    }
    u64::from(BPF_RB_NO_WAKEUP)
}
