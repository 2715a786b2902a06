//! The types that cross the kernel/user boundary: map keys and values, the ring-buffer record,
//! the load-time configuration, and the tracepoint argument layouts the eBPF program reads.
//!
//! Everything here is `#[repr(C)]`, `Copy`, without implicit padding (explicit `_pad` fields),
//! with a `const` size assertion, so both sides agree byte for byte.
#![cfg_attr(not(test), no_std)]

/// Longest path the kernel accepts, NUL included (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Length of a task's comm, NUL included (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// How many `--comm` names the kernel filter holds (a power of two: the program masks indexes).
pub const MAX_COMMS: usize = 16;
const _: () = assert!(MAX_COMMS.is_power_of_two());
/// `AT_FDCWD`: a path relative to the current working directory.
pub const AT_FDCWD: i32 = -100;
/// `AT_EMPTY_PATH`: operate on the dirfd itself (an `fstat`, not a path lookup).
pub const AT_EMPTY_PATH: u64 = 0x1000;
/// `AT_SYMLINK_NOFOLLOW`.
pub const AT_SYMLINK_NOFOLLOW: u64 = 0x100;

/// Every syscall observer hooks, numbered for the wire (libbpf-tools statsnoop's `sys_type`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Syscall {
    Open = 0,
    Openat = 1,
    Openat2 = 2,
    Creat = 3,
    Newstat = 4,
    Newlstat = 5,
    Newfstatat = 6,
    Statx = 7,
    Access = 8,
    Faccessat = 9,
    Faccessat2 = 10,
    Execve = 11,
    Execveat = 12,
}

pub const SYSCALL_COUNT: usize = 13;

/// `Config::sys_kind` entries of the calls hooked for their successes only: a watched process's
/// new working directory, so that later relative failures resolve against the right one.
pub const KIND_CHDIR: u8 = 13;
pub const KIND_FCHDIR: u8 = 14;
/// x86_64 numbers of chdir and fchdir.
pub const NR_CHDIR: u32 = 80;
pub const NR_FCHDIR: u32 = 81;

/// What a call wanted from the file; the report weighs a failed open more than a failed probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// open/openat/openat2/creat: the process wanted the file's contents.
    Open,
    /// stat family: metadata lookup, often an existence probe.
    Stat,
    /// access family: an explicit existence/permission probe.
    Access,
    /// execve/execveat: the process wanted to run it.
    Exec,
}

impl Syscall {
    pub const ALL: [Syscall; SYSCALL_COUNT] = [
        Syscall::Open,
        Syscall::Openat,
        Syscall::Openat2,
        Syscall::Creat,
        Syscall::Newstat,
        Syscall::Newlstat,
        Syscall::Newfstatat,
        Syscall::Statx,
        Syscall::Access,
        Syscall::Faccessat,
        Syscall::Faccessat2,
        Syscall::Execve,
        Syscall::Execveat,
    ];

    pub const fn from_u32(v: u32) -> Option<Syscall> {
        if (v as usize) < SYSCALL_COUNT {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }

    /// The syscall's name as the kernel's tracepoints spell it (`sys_enter_<name>`).
    pub const fn name(self) -> &'static str {
        self.layout().name
    }

    pub const fn layout(self) -> &'static ArgLayout {
        &LAYOUTS[self as usize]
    }

    /// The syscall's number on x86_64.
    pub const fn nr(self) -> u32 {
        match self {
            Syscall::Open => 2,
            Syscall::Newstat => 4,
            Syscall::Newlstat => 6,
            Syscall::Access => 21,
            Syscall::Execve => 59,
            Syscall::Creat => 85,
            Syscall::Openat => 257,
            Syscall::Newfstatat => 262,
            Syscall::Faccessat => 269,
            Syscall::Execveat => 322,
            Syscall::Statx => 332,
            Syscall::Openat2 => 437,
            Syscall::Faccessat2 => 439,
        }
    }

    pub const fn intent(self) -> Intent {
        match self {
            Syscall::Open | Syscall::Openat | Syscall::Openat2 | Syscall::Creat => Intent::Open,
            Syscall::Newstat | Syscall::Newlstat | Syscall::Newfstatat | Syscall::Statx => {
                Intent::Stat
            }
            Syscall::Access | Syscall::Faccessat | Syscall::Faccessat2 => Intent::Access,
            Syscall::Execve | Syscall::Execveat => Intent::Exec,
        }
    }
}

/// Where a `sys_enter_<name>` tracepoint keeps the arguments observer reads, mirroring
/// `/sys/kernel/tracing/events/syscalls/sys_enter_<name>/format` (a test checks them against it).
#[derive(Clone, Copy, Debug)]
pub struct ArgLayout {
    pub name: &'static str,
    /// `(field name, offset)` of the directory fd, when the syscall takes one.
    pub dfd: Option<(&'static str, usize)>,
    /// `(field name, offset)` of the path pointer.
    pub path: (&'static str, usize),
    /// `(field name, offset)` of the flags/mode word: open flags, access mode, or AT flags.
    pub flags: Option<(&'static str, usize)>,
    /// `(field name, offset)` of a second word: AT flags of faccessat2, `struct open_how *` of
    /// openat2.
    pub aux: Option<(&'static str, usize)>,
}

/// `ret` of every `sys_exit_*` tracepoint.
pub const SYS_EXIT_RET_OFFSET: usize = 16;
/// `task_newtask` (a task made by fork, clone or pthread_create): the new task's `pid` (pid_t)
/// and its `clone_flags` (u64).
pub const NEWTASK_PID_OFFSET: usize = 8;
pub const NEWTASK_CLONE_FLAGS_OFFSET: usize = 32;
/// `CLONE_THREAD`: the new task is a thread of its creator's process, not a process.
pub const CLONE_THREAD: u64 = 0x0001_0000;
/// `sched_process_exit`: `pid` (pid_t) and `group_dead` (bool).
pub const EXIT_PID_OFFSET: usize = 24;
pub const EXIT_GROUP_DEAD_OFFSET: usize = 32;

const fn layout(
    name: &'static str,
    dfd: Option<(&'static str, usize)>,
    path: (&'static str, usize),
    flags: Option<(&'static str, usize)>,
    aux: Option<(&'static str, usize)>,
) -> ArgLayout {
    ArgLayout {
        name,
        dfd,
        path,
        flags,
        aux,
    }
}

pub const LAYOUTS: [ArgLayout; SYSCALL_COUNT] = [
    layout("open", None, ("filename", 16), Some(("flags", 24)), None),
    layout(
        "openat",
        Some(("dfd", 16)),
        ("filename", 24),
        Some(("flags", 32)),
        None,
    ),
    layout(
        "openat2",
        Some(("dfd", 16)),
        ("filename", 24),
        None,
        Some(("how", 32)),
    ),
    layout("creat", None, ("pathname", 16), None, None),
    layout("newstat", None, ("filename", 16), None, None),
    layout("newlstat", None, ("filename", 16), None, None),
    layout(
        "newfstatat",
        Some(("dfd", 16)),
        ("filename", 24),
        Some(("flag", 40)),
        None,
    ),
    layout(
        "statx",
        Some(("dfd", 16)),
        ("filename", 24),
        Some(("flags", 32)),
        None,
    ),
    layout("access", None, ("filename", 16), Some(("mode", 24)), None),
    layout(
        "faccessat",
        Some(("dfd", 16)),
        ("filename", 24),
        Some(("mode", 32)),
        None,
    ),
    layout(
        "faccessat2",
        Some(("dfd", 16)),
        ("filename", 24),
        Some(("mode", 32)),
        Some(("flags", 40)),
    ),
    layout("execve", None, ("filename", 16), None, None),
    layout(
        "execveat",
        Some(("fd", 16)),
        ("filename", 24),
        Some(("flags", 48)),
        None,
    ),
];

// ---- Load-time configuration (a `Global` in the eBPF object, set with `override_global`) ----

/// Watch every process (no comm/pid/cgroup selection).
pub const FILTER_ALL: u32 = 1 << 0;
/// A process must have one of `Config::comms`.
pub const FILTER_COMM: u32 = 1 << 1;
/// A process's tgid must be in the `PIDS` map.
pub const FILTER_PID: u32 = 1 << 2;
/// A process's cgroup must be in the `CGROUPS` map.
pub const FILTER_CGROUP: u32 = 1 << 3;
/// Only errnos set in `Config::errno_mask` are recorded.
pub const FILTER_ERRNO: u32 = 1 << 4;
/// Emit aya-log debug lines for each new distinct failure (`--verbose`).
pub const CONFIG_VERBOSE: u32 = 1 << 5;
/// Report the files watched processes open successfully for reading (once per path and
/// process, see [`STATUS_OPENED`]): where a failing name is referenced is searched in them.
pub const CONFIG_OPENED: u32 = 1 << 6;

/// Errnos 0..=191 fit the mask; the kernel's largest is 133 (EHWPOISON).
pub const ERRNO_MASK_WORDS: usize = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub flags: u32,
    pub ncomms: u32,
    /// observer's own tgid: never watched, so `--all` cannot feed back on itself.
    pub self_tgid: u32,
    /// Offset of `comm` in the kernel's `struct task_struct` (from its BTF), so the BTF-typed
    /// programs read the name with two loads instead of a helper call; 0 when unknown.
    pub task_comm_off: u32,
    pub errno_mask: [u64; ERRNO_MASK_WORDS],
    /// Syscall number -> `Syscall as u8` (or `KIND_CHDIR`, `KIND_FCHDIR`), or `NOT_HOOKED`: the
    /// dispatch table of the raw syscall tracepoints (x86_64 numbers, `Syscall::nr`).
    pub sys_kind: [u8; SYSCALL_TABLE_LEN],
    /// Process-name patterns as two native-endian u64 words each (aligned, so the kernel
    /// compares a name in two loads): a name matches pattern `i` when its words masked with
    /// `comm_masks[i]` equal `comms[i]`. The first `ncomms` are used. See [`comm_pattern`].
    pub comms: [[u64; 2]; MAX_COMMS],
    pub comm_masks: [[u64; 2]; MAX_COMMS],
    /// Offsets, from the kernel's BTF, of `task_struct.nsproxy`, `nsproxy.mnt_ns` and
    /// `mnt_namespace.ns.inum`: a first sighting carries the mount namespace the process saw its
    /// paths in. 0 when unknown (then userspace asks /proc).
    pub task_nsproxy_off: u32,
    pub nsproxy_mnt_ns_off: u32,
    pub mnt_ns_inum_off: u32,
    pub _pad: u32,
    /// The secret key of the path hash ([`PathHasher`]), random at each load: paths cannot be
    /// crafted to share another path's kernel key without it.
    pub hash_key: [u64; 2],
}

/// The words and mask of a `--comm` pattern: `name` matches itself exactly (its NUL is part of
/// the compare), `name*` any process name that starts with `name`. At most 15 bytes of name.
pub fn comm_pattern(pattern: &[u8]) -> ([u64; 2], [u64; 2]) {
    let (name, prefix) = match pattern.split_last() {
        Some((b'*', head)) => (head, true),
        _ => (pattern, false),
    };
    let n = if name.len() < COMM_LEN {
        name.len()
    } else {
        COMM_LEN - 1
    };
    let mut mask = [0u8; COMM_LEN];
    // An exact name compares its NUL too, so "apache2" is not "apache2x".
    let covered = if prefix { n } else { n + 1 };
    for m in mask.iter_mut().take(covered) {
        *m = 0xff;
    }
    (comm_words(&name[..n]), words(&mask))
}

fn words(b: &[u8; COMM_LEN]) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
}

/// A NUL-padded comm as the two words `Config::comms` holds.
pub fn comm_words(name: &[u8]) -> [u64; 2] {
    let mut b = [0u8; COMM_LEN];
    let n = if name.len() < COMM_LEN {
        name.len()
    } else {
        COMM_LEN - 1
    };
    b[..n].copy_from_slice(&name[..n]);
    words(&b)
}

impl Config {
    pub const DEFAULT: Config = Config {
        flags: FILTER_COMM,
        ncomms: 0,
        self_tgid: 0,
        task_comm_off: 0,
        errno_mask: [0; ERRNO_MASK_WORDS],
        sys_kind: [NOT_HOOKED; SYSCALL_TABLE_LEN],
        comms: [[0; 2]; MAX_COMMS],
        comm_masks: [[0; 2]; MAX_COMMS],
        task_nsproxy_off: 0,
        nsproxy_mnt_ns_off: 0,
        mnt_ns_inum_off: 0,
        _pad: 0,
        hash_key: [0; 2],
    };

    #[inline(always)]
    pub fn errno_wanted(&self, errno: u32) -> bool {
        if self.flags & FILTER_ERRNO == 0 {
            return true;
        }
        let word = (errno / 64) as usize;
        if word >= ERRNO_MASK_WORDS {
            return false;
        }
        self.errno_mask[word] & (1u64 << (errno % 64)) != 0
    }
}
const _: () = assert!(
    core::mem::size_of::<Config>()
        == 16 + 8 * ERRNO_MASK_WORDS + SYSCALL_TABLE_LEN + 2 * 16 * MAX_COMMS + 16 + 16
);

/// Syscall numbers below this are looked up in `Config::sys_kind` (a power of two).
pub const SYSCALL_TABLE_LEN: usize = 512;
/// `Config::sys_kind` entry of a syscall observer does not hook.
pub const NOT_HOOKED: u8 = 0xff;

/// Name of the `Config` global in the eBPF object.
pub const CONFIG_GLOBAL: &str = "OBSERVER_CONFIG";

// ---- Maps ----

pub const MAP_EVENTS: &str = "EVENTS";
/// One u32: the program records only while it is 1. A capture that replaces another (a reload
/// that changes the selectors) is attached closed and opened the moment the old one is closed,
/// so nothing is counted by both, and almost nothing by neither.
pub const MAP_GATE: &str = "GATE";
pub const MAP_AGG: &str = "AGG";
pub const MAP_PIDS: &str = "PIDS";
pub const MAP_CGROUPS: &str = "CGROUPS";
pub const MAP_STATS: &str = "STATS";
pub const MAP_CWDGEN: &str = "CWDGEN";
pub const MAP_DIRGEN: &str = "DIRGEN";

/// Ring buffer size in bytes. A record is 112 bytes + the path, and only the first sighting of a
/// key (and, when `AGG` is full, every failure) goes through it. Its pages are mapped twice into
/// observer (the kernel's wrap-around trick), so this is twice its share of observer's RSS.
pub const EVENTS_BYTES: u32 = 2 << 20;
/// A record wakes the reader at once when this much is already waiting (a quarter of the ring,
/// so a burst never fills it before the reader runs).
pub const WAKE_PENDING_BYTES: u64 = (EVENTS_BYTES / 4) as u64;
/// Below that, a first sighting of a failure wakes the reader at most once per this gap, and
/// directory opens, chdirs and successful opens never do: they wait for the reader's next tick
/// (every `--interval`, 1 s by default), or for the failure that needs them, which comes after
/// them in the ring. A busy server then costs a few wakeups a second, not one per record.
pub const WAKE_GAP_NS: u64 = 100_000_000;
/// Distinct (path, tgid, errno, syscall, dirfd) keys aggregated in the kernel.
pub const AGG_ENTRIES: u32 = 65536;
/// `--pid` targets and their descendants.
pub const PIDS_ENTRIES: u32 = 16384;
/// `--cgroup` targets (each directory and its descendants at start).
pub const CGROUPS_ENTRIES: u32 = 1024;
/// Working-directory generations of watched processes (LRU).
pub const CWDGEN_ENTRIES: u32 = 16384;
/// Directory-fd generations of watched processes (LRU).
pub const DIRGEN_ENTRIES: u32 = 65536;
/// Keys of successful opens already reported (LRU: the oldest are forgotten and may be reported
/// again).
pub const OPENED_ENTRIES: u32 = 32768;

/// `DIRGEN` key: a process's directory fd.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirKey {
    pub tgid: u32,
    pub fd: i32,
}
const _: () = assert!(core::mem::size_of::<DirKey>() == 8);

/// Per-CPU counters in `STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum Stat {
    /// Failures that could not be delivered (ring buffer full). They are lost.
    Lost = 0,
    /// Failures delivered one by one because `AGG` was full (not lost, just not aggregated).
    AggOverflow = 1,
    /// Failures whose path could not be read from user memory (EFAULT): delivered with no path.
    PathFault = 2,
    /// Descendants of `--pid` targets that did not fit in `PIDS` (not followed).
    PidsFull = 3,
    /// Directory opens whose record could not be delivered: a later dirfd-relative failure
    /// falls back to /proc to resolve.
    DirfdLost = 4,
}
pub const STAT_COUNT: u32 = 5;

/// PIDS value: a pid named with `--pid`.
pub const PID_EXPLICIT: u32 = 1;
/// PIDS value: a descendant of a `--pid` target, followed through fork.
pub const PID_INHERITED: u32 = 2;

/// Key of the in-kernel aggregate. `dfd` is 0 for absolute paths (the dirfd does not matter) and
/// the real dirfd (or AT_FDCWD) for relative ones, so each resolves on its own; `dir_gen` is then the
/// generation of that directory (the process's chdirs for AT_FDCWD, the directory opens that
/// reused the fd number otherwise), so one relative name failing from two directories is two
/// keys.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggKey {
    pub path_hash: u64,
    pub tgid: u32,
    pub errno: u32,
    pub syscall: u32,
    pub dfd: i32,
    pub dir_gen: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<AggKey>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggVal {
    pub count: u64,
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) of the first failure. There is no "last":
    /// repeats read no clock; userspace dates them when it sees the count grow.
    pub first_ns: u64,
}
const _: () = assert!(core::mem::size_of::<AggVal>() == 16);

/// A hooked call as the exit program reads it from the saved user registers: the syscall's
/// arguments are still there at sys_exit (x86_64 keeps them in `pt_regs`, and only `ax` takes
/// the return value), so nothing has to be stashed at sys_enter.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub path_ptr: u64,
    pub flags: u64,
    pub aux: u64,
    pub dfd: i32,
    pub syscall: u32,
}
const _: () = assert!(core::mem::size_of::<Call>() == 32);

/// Record status bits.
/// The path was longer than `PATH_MAX - 1` bytes and is cut.
pub const STATUS_TRUNCATED: u32 = 1 << 0;
/// `AGG` was full: this record stands for exactly one failure and its key is not in `AGG`.
pub const STATUS_UNAGGREGATED: u32 = 1 << 1;
/// The path pointer could not be read (EFAULT): no path.
pub const STATUS_PATH_FAULT: u32 = 1 << 2;

/// Not a failure: a watched process opened a directory (O_DIRECTORY or O_PATH) successfully.
/// `aux` holds the new fd and `aux_gen` its generation, `key.dfd`/`key.dir_gen` the directory the
/// path is relative to. Userspace keeps a table of these so a later `openat(fd, "rel")` resolves
/// even after the fd is closed (glibc's NSS walks `/run/systemd/userdb` that way and closes each
/// fd at once).
pub const STATUS_DIRFD: u32 = 1 << 3;
/// Not a failure: a watched process changed its working directory (chdir: the path, relative
/// to `key.dfd`/`key.dir_gen`; fchdir: `aux` is the fd, `key.dfd`/`key.dir_gen` name it). `aux_gen` is
/// the new working directory's generation.
pub const STATUS_CHDIR: u32 = 1 << 4;
/// Not a failure: a watched process opened this path for reading, successfully (not a directory
/// open). One record per (path, process, directory generation): the kernel remembers the keys it
/// sent in `OPENED`, so a file opened on every request crosses the ring buffer once.
pub const STATUS_OPENED: u32 = 1 << 5;
/// `O_ACCMODE` (x86_64).
pub const O_ACCMODE: u64 = 0o3;
/// `O_DIRECTORY` and `O_PATH` (x86_64).
pub const O_DIRECTORY: u64 = 0o200000;
pub const O_PATH: u64 = 0o10000000;

/// Header of a ring-buffer record; `path_len` bytes of path follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    pub key: AggKey,
    pub ts_ns: u64,
    /// Open flags, access mode, or AT flags, as the syscall got them.
    pub flags: u64,
    /// faccessat2: its AT flags. openat2: `open_how.resolve`. A directory open: the new fd.
    pub aux: u64,
    /// The process's cgroup (v2 id: the inode of its cgroup directory).
    pub cgroup_id: u64,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub path_len: u32,
    pub status: u32,
    /// The inode of the process's mount namespace, where its paths mean what they say; 0 when
    /// the kernel could not say (no BTF).
    pub mnt_ns: u32,
    /// A directory open or a chdir: the generation of the new fd or working directory.
    pub aux_gen: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}
pub const EVENT_HEADER_LEN: usize = core::mem::size_of::<EventHeader>();
const _: () = assert!(EVENT_HEADER_LEN == 112);

/// The per-CPU scratch record the eBPF program fills before output.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EventBuf {
    pub hdr: EventHeader,
    pub path: [u8; PATH_MAX],
}
const _: () = assert!(core::mem::size_of::<EventBuf>() == EVENT_HEADER_LEN + PATH_MAX);

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: `#[repr(C)]`, `Copy`, integers only, no implicit padding (asserted above): every
    // bit pattern is a valid value and every byte is initialised.
    unsafe impl aya::Pod for Config {}
    // SAFETY: as for Config.
    unsafe impl aya::Pod for AggKey {}
    // SAFETY: as for Config.
    unsafe impl aya::Pod for AggVal {}
    // SAFETY: as for Config.
    unsafe impl aya::Pod for EventHeader {}
    // SAFETY: as for Config.
    unsafe impl aya::Pod for DirKey {}
}

/// The path hash: SipHash-1-3 keyed with [`Config::hash_key`], over the path's 8-byte
/// little-endian words (the last one zero-padded), then one block holding the length. A keyed
/// PRF: without the key (random per load, never written anywhere), an attacker who chooses file
/// names cannot make two paths share a kernel key. The kernel program and the test that checks
/// the kernel's keys run this same code.
#[derive(Clone, Copy)]
pub struct PathHasher {
    v: [u64; 4],
}

impl PathHasher {
    #[inline(always)]
    pub fn new(key: [u64; 2]) -> PathHasher {
        PathHasher {
            v: [
                key[0] ^ 0x736f_6d65_7073_6575,
                key[1] ^ 0x646f_7261_6e64_6f6d,
                key[0] ^ 0x6c79_6765_6e65_7261,
                key[1] ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.v;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    /// One 8-byte word of the path.
    #[inline(always)]
    pub fn word(&mut self, m: u64) {
        self.v[3] ^= m;
        self.round();
        self.v[0] ^= m;
    }

    /// The hash of the words given, for a path of `len` bytes.
    #[inline(always)]
    pub fn finish(mut self, len: u64) -> u64 {
        // The zero padding of the last word is told apart by the length.
        self.word(len);
        self.v[2] ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }

    /// The hash of a whole path (userspace; the kernel feeds the words itself).
    pub fn hash(key: [u64; 2], path: &[u8]) -> u64 {
        let mut h = PathHasher::new(key);
        for chunk in path.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h.word(u64::from_le_bytes(w));
        }
        h.finish(path.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_roundtrip() {
        for s in Syscall::ALL {
            assert_eq!(Syscall::from_u32(s as u32), Some(s));
        }
        assert_eq!(Syscall::from_u32(SYSCALL_COUNT as u32), None);
    }

    #[test]
    fn comm_patterns_match_exact_names_with_their_nul_and_prefixes_without() {
        let matches = |pattern: &str, comm: &str| {
            let (want, mask) = comm_pattern(pattern.as_bytes());
            let have = comm_words(comm.as_bytes());
            (have[0] & mask[0]) == want[0] && (have[1] & mask[1]) == want[1]
        };
        assert!(matches("apache2", "apache2"));
        assert!(!matches("apache2", "apache2x"));
        assert!(!matches("apache2", "apache"));
        assert!(matches("php-fpm*", "php-fpm"));
        assert!(matches("php-fpm*", "php-fpm8.2"));
        assert!(matches("php-fpm*", "php-fpm82"));
        assert!(!matches("php-fpm*", "php-fp"));
        assert!(!matches("php-fpm*", "xphp-fpm8.2"));
        // 15 bytes, the kernel's most: the NUL falls in the last byte.
        assert!(matches("abcdefghijklmno", "abcdefghijklmno"));
        assert!(!matches("abcdefghijklmno", "abcdefghijklmnp"));
        assert!(matches("abcdefghijklmn*", "abcdefghijklmnX"));
    }

    #[test]
    fn errno_mask() {
        let mut c = Config::DEFAULT;
        assert!(c.errno_wanted(2));
        c.flags |= FILTER_ERRNO;
        c.errno_mask[0] |= 1 << 13;
        assert!(c.errno_wanted(13));
        assert!(!c.errno_wanted(2));
        assert!(!c.errno_wanted(500));
    }

    #[test]
    fn the_path_hash_is_keyed_and_counts_the_length() {
        let key = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        let h = |p: &[u8]| PathHasher::hash(key, p);
        assert_ne!(h(b"/a"), h(b"/b"));
        assert_ne!(h(b"/a"), h(b"/a\0"), "`/a` and `/a\\0` differ by length");
        assert_ne!(
            h(b"/a"),
            PathHasher::hash([1, 2], b"/a"),
            "another key, another hash"
        );
        // The pair that collided under the fixed-seed hash of observer 0.1 does not.
        assert_ne!(
            h(b"/var/www/0014159SZ|`K;kwphp"),
            h(b"/var/www/html/wp-config.php")
        );
    }

    /// SipHash-1-3 as observer feeds it, against the reference's structure: a message of whole
    /// words and a final length block; the same input twice, the same output.
    #[test]
    fn the_hash_is_deterministic_for_a_key() {
        let key = [7, 9];
        let long = [b'x'; 4095];
        assert_eq!(PathHasher::hash(key, &long), PathHasher::hash(key, &long));
        assert_ne!(
            PathHasher::hash(key, &long[..4094]),
            PathHasher::hash(key, &long)
        );
    }
}
