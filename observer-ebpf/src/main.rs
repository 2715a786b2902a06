//! observer's kernel side: syscall tracepoints that record failing path lookups.
//!
//! One program, on the raw `sys_exit` tracepoint. libbpf-tools' opensnoop needs an enter/exit
//! pair because a per-syscall exit record holds only the return value; the raw tracepoint hands
//! over the task's saved user registers, where the arguments still are at exit. So a failure is
//! filtered (syscall, comm/pid/cgroup, errno), its arguments and path read (reading the path at
//! exit also avoids the empty names of not-yet-faulted pages that enter-time reads give, bcc
//! #4292) and counted in one run, with no per-thread state kept between enter and exit: nothing
//! to leak, and every other syscall pays for one dispatch, not two.
//!
//! Counting happens here, in `AGG`, keyed by (path hash, tgid, errno, syscall, dirfd): a storm of
//! one failing call costs a map update, and only the first sighting of a key crosses the ring
//! buffer with its full path. When `AGG` is full, failures still cross one by one (counted as
//! overflow); when the ring buffer is full they are counted as lost. Nothing goes missing
//! silently.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes, generated::bpf_get_current_task_btf,
    },
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use aya_log_ebpf::{debug, warn};
use observer_common::{
    AGG_ENTRIES, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, AggKey, AggVal, CGROUPS_ENTRIES,
    COMM_LEN, CONFIG_VERBOSE, Call, Config, EVENT_HEADER_LEN, EVENTS_BYTES, EXIT_GROUP_DEAD_OFFSET,
    EXIT_PID_OFFSET, EventBuf, FILTER_ALL, FILTER_CGROUP, FILTER_COMM, FILTER_PID,
    FORK_CHILD_PID_OFFSET, HASH_SEED, MAX_COMMS, O_DIRECTORY, O_PATH, PATH_MAX, PID_INHERITED,
    PIDS_ENTRIES, STAT_COUNT, STATUS_DIRFD, STATUS_PATH_FAULT, STATUS_TRUNCATED,
    STATUS_UNAGGREGATED, Stat, Syscall, hash_finish, hash_step,
};

/// Set by userspace at load (`EbpfLoader::override_global`). It lives in `.rodata`, which the
/// kernel freezes, so the verifier sees its values as constants and prunes the filters that are
/// off: an unwatched call pays only for the filter that is on.
#[unsafe(no_mangle)]
static OBSERVER_CONFIG: Config = Config::DEFAULT;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
#[map]
static AGG: HashMap<AggKey, AggVal> = HashMap::with_max_entries(AGG_ENTRIES, 0);
#[map]
static PIDS: HashMap<u32, u32> = HashMap::with_max_entries(PIDS_ENTRIES, 0);
#[map]
static CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(CGROUPS_ENTRIES, 0);
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);
#[map]
static SCRATCH: PerCpuArray<EventBuf> = PerCpuArray::with_max_entries(1, 0);

const EEXIST: i32 = 17;
/// `-ENOSYS`: the syscall does not exist on this kernel.
const ENOSYS: u32 = 38;
/// The first of the kernel-internal restart codes (include/linux/errno.h).
const ERESTARTSYS: u32 = 512;
/// `creat()` is `open(O_CREAT|O_WRONLY|O_TRUNC)`.
const CREAT_FLAGS: u64 = 0o1101;

#[inline(always)]
fn cfg_flags() -> u32 {
    // SAFETY: a plain read of our own static; volatile so the compiler does not fold the
    // compile-time default into the code (userspace patches the value at load).
    unsafe { core::ptr::read_volatile(&raw const OBSERVER_CONFIG.flags) }
}

/// The current task's comm as two words. The BTF-typed programs load it straight from
/// `task_struct` (userspace found the field's offset in the kernel's BTF; the value is a frozen
/// constant, so the verifier checks both loads against that BTF): two loads where
/// bpf_get_current_comm costs a helper call and a string copy.
#[inline(always)]
fn current_comm<const BTF: bool>() -> Option<[u64; 2]> {
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
fn comm_matches<const BTF: bool>() -> bool {
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
        // SAFETY: i < MAX_COMMS, the array's length.
        let want = unsafe { core::ptr::read_volatile(&raw const OBSERVER_CONFIG.comms[i]) };
        if want == comm {
            return true;
        }
        i += 1;
    }
    false
}

/// Is the current task one observer watches? Its pid_tgid when it is. Kinds of selector combine
/// with AND, names within a kind with OR.
#[inline(always)]
fn watched<const BTF: bool>() -> Option<u64> {
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

/// Reads a tracepoint field straight from the context: tracepoint programs may load from their
/// record directly, which costs one instruction where `read_at` (bpf_probe_read) costs a helper
/// call.
#[inline(always)]
fn ctx_read<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: `off` mirrors the tracepoint's format file (checked by a test) and is aligned for
    // T; the verifier bounds-checks context loads.
    unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(off).cast::<T>()) }
}

/// Argument `off` (a tracepoint-format offset, 16 + 8 * index) of a syscall, from the six
/// argument registers.
#[inline(always)]
fn arg(a: &[u64; 6], off: Option<(&'static str, usize)>) -> u64 {
    match off {
        Some((_, off)) => a[((off - 16) / 8) % 6],
        None => 0,
    }
}

/// What call `sys` with argument registers `a` is: its path pointer, dirfd, flags and aux.
#[inline(always)]
fn call_of(sys: Syscall, a: &[u64; 6]) -> Call {
    let l = sys.layout();
    let dfd = match l.dfd {
        Some(_) => arg(a, l.dfd) as i32,
        None => AT_FDCWD,
    };
    let flags = match sys {
        Syscall::Creat => CREAT_FLAGS,
        Syscall::Newlstat => AT_SYMLINK_NOFOLLOW,
        _ => arg(a, l.flags),
    };
    Call {
        path_ptr: arg(a, Some(l.path)),
        flags,
        aux: arg(a, l.aux),
        dfd,
        syscall: sys as u32,
    }
}

#[inline(always)]
fn stat_add(stat: Stat, n: u64) {
    if let Some(p) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot; tracepoint programs do not migrate while running.
        unsafe { *p += n };
    }
}

#[inline(always)]
fn is_open(kind: u32) -> bool {
    kind == Syscall::Open as u32
        || kind == Syscall::Openat as u32
        || kind == Syscall::Openat2 as u32
}

/// Does a call of `kind` that returned `ret` concern us, whoever made it? Failures do (unless
/// `--errno` leaves their errno out); successes only when they may be directory opens, which
/// later dirfd-relative failures need.
#[inline(always)]
fn ret_wanted(kind: u32, ret: i64) -> bool {
    if ret >= 0 {
        return is_open(kind);
    }
    let errno = (-ret) as u32;
    // -ENOSYS: the syscall does not exist on this kernel (glibc falls back), not a missing file.
    // 512 and up (ERESTARTSYS...) are kernel-internal: the call is restarted after a signal, or
    // the process sees EINTR; neither is a file that failed.
    errno != ENOSYS && errno < ERESTARTSYS && errno_wanted(&OBSERVER_CONFIG, errno)
}

/// A watched task's hooked call has returned `ret` (already passed by `ret_wanted`).
#[inline(always)]
fn on_exit<C: EbpfContext>(ctx: &C, mut call: Call, pid_tgid: u64, ret: i64) {
    if call.syscall == Syscall::Openat2 as u32 {
        // openat2's flags live in the caller's `struct open_how` (first field).
        // SAFETY: the helper validates the user pointer.
        call.flags = unsafe { bpf_probe_read_user(call.aux as *const u64) }.unwrap_or(0);
    }
    if ret >= 0 {
        if call.flags & (O_DIRECTORY | O_PATH) != 0 {
            record_dirfd(&call, pid_tgid, ret);
        }
        return;
    }
    record(ctx, &call, pid_tgid, (-ret) as u32);
}

#[inline(always)]
fn errno_wanted(cfg: &Config, errno: u32) -> bool {
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

/// A successful directory open: its fd and path go to userspace, which resolves later
/// dirfd-relative failures with them (the fd may be closed by the time they arrive).
#[inline(always)]
fn record_dirfd(inf: &Call, pid_tgid: u64, fd: i64) {
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
    let key = AggKey {
        path_hash: 0,
        tgid: (pid_tgid >> 32) as u32,
        errno: 0,
        syscall: inf.syscall,
        dfd: inf.dfd,
    };
    let at = Call {
        aux: fd as u64,
        ..*inf
    };
    // SAFETY: helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !emit(buf, &key, &at, pid_tgid, now, len, STATUS_DIRFD) {
        stat_add(Stat::DirfdLost, 1);
    }
}

#[inline(always)]
fn record<C: EbpfContext>(ctx: &C, inf: &Call, pid_tgid: u64, errno: u32) {
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
    let key = AggKey {
        path_hash,
        tgid: (pid_tgid >> 32) as u32,
        errno,
        syscall: kind,
        dfd: if absolute { 0 } else { inf.dfd },
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
            if !emit(buf, &key, inf, pid_tgid, now, len, status) {
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
            if !emit(
                buf,
                &key,
                inf,
                pid_tgid,
                now,
                len,
                status | STATUS_UNAGGREGATED,
            ) {
                stat_add(Stat::Lost, 1);
            }
        }
    }
}

/// Hashes `buf.path[..len]` (observer_common::path_hash, computed the same way), leaving `len` in
/// `buf.hdr.path_len`. The loop is bounded by word count, not by `len`, so the verifier's view of
/// `len` is not refined per iteration.
#[inline(always)]
fn hash_path(buf: &mut EventBuf, len: usize) -> u64 {
    buf.hdr.path_len = len as u32;
    let nwords = len.div_ceil(8);
    let tail = len & 7;
    let mut h = HASH_SEED;
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
        h = hash_step(h, w);
        i += 1;
    }
    hash_finish(h, len as u64)
}

/// Count one more failure of an existing key. Returns false when the key is not there.
#[inline(always)]
fn bump(key: &AggKey) -> bool {
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
unsafe fn atomic_add(ptr: *mut u64, n: u64) {
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

#[inline(always)]
fn emit(
    buf: &mut EventBuf,
    key: &AggKey,
    inf: &Call,
    pid_tgid: u64,
    now: u64,
    len: usize,
    status: u32,
) -> bool {
    let uid_gid = bpf_get_current_uid_gid();
    buf.hdr.key = *key;
    buf.hdr.ts_ns = now;
    buf.hdr.flags = inf.flags;
    buf.hdr.aux = inf.aux;
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
    EVENTS.output::<[u8]>(bytes, 0).is_ok()
}

/// x86_64 `struct pt_regs`: the user registers saved at syscall entry (a stable layout; the
/// BTF-typed programs below load its fields directly, checked by the verifier against the
/// kernel's own BTF).
#[repr(C)]
pub struct PtRegs {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    bp: u64,
    bx: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    ax: u64,
    cx: u64,
    dx: u64,
    si: u64,
    di: u64,
    orig_ax: u64,
    ip: u64,
    cs: u64,
    flags: u64,
    sp: u64,
    ss: u64,
}

/// `__USER_CS`: a 64-bit process. 32-bit (compat) processes number their syscalls differently;
/// the per-syscall tracepoints ignore them too.
const USER_CS: u64 = 0x33;
/// Largest syscall number the dispatch table covers (x32 numbers, with bit 30 set, fall out).
const NR_MAX: usize = observer_common::SYSCALL_TABLE_LEN;

/// The kind (Syscall as u32) of syscall `id`, when it is hooked.
#[inline(always)]
fn hooked(id: u64) -> Option<u32> {
    if id >= NR_MAX as u64 {
        return None;
    }
    // SAFETY: index bounded just above (and masked, so the verifier sees it too).
    let k = unsafe {
        core::ptr::read_volatile(&raw const OBSERVER_CONFIG.sys_kind[(id as usize) & (NR_MAX - 1)])
    };
    (k != observer_common::NOT_HOOKED).then_some(k as u32)
}

/// The call a hooked syscall of `kind` made, from its argument registers.
#[inline(always)]
fn call_of_kind(kind: u32, a: &[u64; 6]) -> Option<Call> {
    // One arm per syscall, each with its layout constant: with a runtime layout the register
    // index would be variable, which the verifier refuses on a stack array.
    Some(match kind {
        0 => call_of(Syscall::Open, a),
        1 => call_of(Syscall::Openat, a),
        2 => call_of(Syscall::Openat2, a),
        3 => call_of(Syscall::Creat, a),
        4 => call_of(Syscall::Newstat, a),
        5 => call_of(Syscall::Newlstat, a),
        6 => call_of(Syscall::Newfstatat, a),
        7 => call_of(Syscall::Statx, a),
        8 => call_of(Syscall::Access, a),
        9 => call_of(Syscall::Faccessat, a),
        10 => call_of(Syscall::Faccessat2, a),
        11 => call_of(Syscall::Execve, a),
        12 => call_of(Syscall::Execveat, a),
        _ => return None,
    })
}

/// What both sys_exit variants do; they differ only in how they read the saved registers
/// (`regs` returns the six argument registers and the code segment). Cheapest tests first: an
/// unhooked syscall costs one table load, a hooked one by an unwatched process one more test
/// (its return value) or two loads and a compare (its comm).
#[inline(always)]
fn sys_exit<C: EbpfContext, const BTF: bool>(
    ctx: &C,
    id: u64,
    ret: i64,
    regs: impl FnOnce() -> Option<([u64; 6], u64)>,
) {
    let Some(kind) = hooked(id) else {
        return;
    };
    if !ret_wanted(kind, ret) {
        return;
    }
    let Some(pid_tgid) = watched::<BTF>() else {
        return;
    };
    let Some((a, cs)) = regs() else {
        return;
    };
    if cs != USER_CS {
        return;
    }
    if let Some(call) = call_of_kind(kind, &a) {
        on_exit(ctx, call, pid_tgid, ret);
    }
}

/// `raw_syscalls:sys_exit`, BTF-typed: called directly by the tracepoint with the task's saved
/// registers and the return value, with no perf record built first (the per-syscall tracepoints
/// build one for every call, measured at hundreds of ns here).
#[btf_tracepoint(function = "sys_exit")]
pub(crate) fn observer_sys_exit(ctx: BtfTracePointContext) -> i32 {
    let r: *const PtRegs = ctx.arg(0);
    // SAFETY: a BTF pointer to the task's saved registers; the verifier checks each load.
    let id = unsafe { (*r).orig_ax };
    sys_exit::<_, true>(&ctx, id, ctx.arg::<i64>(1), || {
        // SAFETY: as above.
        unsafe {
            Some((
                [(*r).di, (*r).si, (*r).dx, (*r).r10, (*r).r8, (*r).r9],
                (*r).cs,
            ))
        }
    });
    0
}

/// The same for kernels without BTF: the registers are read with bpf_probe_read_kernel.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub(crate) fn observer_sys_exit_raw(ctx: RawTracePointContext) -> i32 {
    let regs: *const PtRegs = ctx.arg(0);
    // SAFETY: the helper validates the kernel pointer.
    let Ok(id) = (unsafe { bpf_probe_read_kernel(&raw const (*regs).orig_ax) }) else {
        return 0;
    };
    sys_exit::<_, false>(&ctx, id, ctx.arg::<i64>(1), || {
        // SAFETY: the helper validates the kernel pointer.
        let r = unsafe { bpf_probe_read_kernel(regs) }.ok()?;
        Some(([r.di, r.si, r.dx, r.r10, r.r8, r.r9], r.cs))
    });
    0
}

/// `--pid` follows descendants: a child of a watched process is watched from its first call.
#[tracepoint]
pub(crate) fn observer_fork(ctx: TracePointContext) -> u32 {
    if cfg_flags() & FILTER_PID == 0 {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is not kept.
    if unsafe { PIDS.get(tgid) }.is_none() {
        return 0;
    }
    // SAFETY: offset from sched_process_fork's format.
    let child = ctx_read::<i32>(&ctx, FORK_CHILD_PID_OFFSET);
    if let Err(e) = PIDS.insert(child as u32, PID_INHERITED, BPF_NOEXIST as u64)
        && e != -EEXIST
    {
        stat_add(Stat::PidsFull, 1);
    }
    0
}

/// `--pid`: a thread or process is exiting; forget it if it was followed, so a reused pid is not
/// watched.
#[tracepoint]
pub(crate) fn observer_exit(ctx: TracePointContext) -> u32 {
    if cfg_flags() & FILTER_PID == 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = ctx_read::<i32>(&ctx, EXIT_PID_OFFSET) as u32;
    let group_dead = ctx_read::<u8>(&ctx, EXIT_GROUP_DEAD_OFFSET) != 0;
    if tid != tgid {
        // A thread: its tid was added by the fork hook (clone of a thread), not by the user.
        // SAFETY: the value is not kept.
        if matches!(unsafe { PIDS.get(tid) }, Some(v) if *v == PID_INHERITED) {
            let _ = PIDS.remove(tid);
        }
    } else if group_dead {
        let _ = PIDS.remove(tgid);
    }
    0
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
