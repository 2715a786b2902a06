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
//!
//! [`filter`] decides which calls concern observer, [`call`] reads their arguments, [`record`]
//! counts them and sends first sightings; this file holds the maps, the configuration and the
//! entry points.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod call;
mod filter;
mod record;

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use observer_common::{
    AGG_ENTRIES, AggKey, AggVal, CGROUPS_ENTRIES, CLONE_THREAD, CWDGEN_ENTRIES, Config,
    DIRGEN_ENTRIES, DirKey, EVENTS_BYTES, EXIT_GROUP_DEAD_OFFSET, EXIT_PID_OFFSET, EventBuf,
    FILTER_PID, NEWTASK_CLONE_FLAGS_OFFSET, NEWTASK_PID_OFFSET, OPENED_ENTRIES, PID_INHERITED,
    PIDS_ENTRIES, STAT_COUNT, Stat,
};

use call::{PtRegs, USER_CS, call_of_kind};
use filter::{hooked, ret_wanted, watched};
use record::on_exit;

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
static CWDGEN: LruHashMap<u32, u32> = LruHashMap::with_max_entries(CWDGEN_ENTRIES, 0);
#[map]
static DIRGEN: LruHashMap<DirKey, u32> = LruHashMap::with_max_entries(DIRGEN_ENTRIES, 0);
#[map]
static GATE: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static OPENED: LruHashMap<AggKey, u8> = LruHashMap::with_max_entries(OPENED_ENTRIES, 0);
#[map]
static SCRATCH: PerCpuArray<EventBuf> = PerCpuArray::with_max_entries(1, 0);
/// When a record last woke the reader (ktime ns); shared by all CPUs, racy by design (two CPUs
/// may both wake it, which is harmless).
#[map]
static WOKE: Array<u64> = Array::with_max_entries(1, 0);

const EEXIST: i32 = 17;

#[inline(always)]
fn cfg_flags() -> u32 {
    // SAFETY: a plain read of our own static; volatile so the compiler does not fold the
    // compile-time default into the code (userspace patches the value at load).
    unsafe { core::ptr::read_volatile(&raw const OBSERVER_CONFIG.flags) }
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

#[inline(always)]
fn stat_add(stat: Stat, n: u64) {
    if let Some(p) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot; tracepoint programs do not migrate while running.
        unsafe { *p += n };
    }
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
    // Closed until userspace opens it (see MAP_GATE).
    if GATE.get(0).copied() != Some(1) {
        return;
    }
    let Some((a, cs)) = regs() else {
        return;
    };
    if cs != USER_CS {
        return;
    }
    if let Some(call) = call_of_kind(kind, &a) {
        on_exit::<C, BTF>(ctx, call, pid_tgid, ret);
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
/// `task/task_newtask` runs in the creator, before the new task can run. A new thread takes no
/// entry: the filter looks its process (tgid) up, so a process with thousands of threads does
/// not fill the map, and cannot make its children go unfollowed.
#[tracepoint]
pub(crate) fn observer_fork(ctx: TracePointContext) -> u32 {
    if cfg_flags() & FILTER_PID == 0 {
        return 0;
    }
    if ctx_read::<u64>(&ctx, NEWTASK_CLONE_FLAGS_OFFSET) & CLONE_THREAD != 0 {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is not kept.
    if unsafe { PIDS.get(tgid) }.is_none() {
        return 0;
    }
    let child = ctx_read::<i32>(&ctx, NEWTASK_PID_OFFSET);
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
