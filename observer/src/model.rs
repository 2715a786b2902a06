//! The data the report stages work on: one deduplicated failure per (absolute path, errno), with
//! everything the capture learned about it. Capture fills these; rank, hints and render read them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

pub use observer_common::{Intent, Syscall};

/// How many distinct pids a row keeps as a sample.
pub const PID_SAMPLE: usize = 8;

/// One deduplicated failure: every failing call on `path` that returned `errno`.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The path as the process named it, made absolute when observer could resolve it. Raw bytes:
    /// a file name is attacker-controlled and need not be UTF-8.
    pub path: Vec<u8>,
    /// Positive errno value (2 = ENOENT).
    pub errno: i32,
    /// Total failing calls.
    pub count: u64,
    /// Calls per syscall.
    pub syscalls: BTreeMap<Syscall, u64>,
    /// Union of the open flags of the failing open-family calls (O_ACCMODE bits, O_CREAT, ...).
    pub open_flags: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    /// Process names (comm) that made the calls.
    pub comms: BTreeSet<String>,
    /// (uid, gid) pairs of the calling processes.
    pub creds: BTreeSet<(u32, u32)>,
    /// Up to PID_SAMPLE distinct tgids.
    pub pids: BTreeSet<u32>,
    /// Distinct tgids seen (may exceed the sample).
    pub pid_count: u64,
    /// The kernel cut the path at PATH_MAX.
    pub truncated: bool,
    /// A relative path that could not be made absolute (the process was gone): `path` is raw.
    pub unresolved: bool,
}

impl Failure {
    /// A row with no calls yet, first and last seen as given; `add_calls` fills it.
    pub fn new(path: Vec<u8>, errno: i32, first_seen: SystemTime, last_seen: SystemTime) -> Self {
        Failure {
            path,
            errno,
            count: 0,
            syscalls: BTreeMap::new(),
            open_flags: 0,
            first_seen,
            last_seen,
            comms: BTreeSet::new(),
            creds: BTreeSet::new(),
            pids: BTreeSet::new(),
            pid_count: 0,
            truncated: false,
            unresolved: false,
        }
    }

    /// Counts `count` more failing calls of `syscall` seen between `first` and `last`, with
    /// `open_flags` (0 for calls that are not opens).
    pub fn add_calls(
        &mut self,
        syscall: Syscall,
        count: u64,
        open_flags: u64,
        first: SystemTime,
        last: SystemTime,
    ) {
        self.count += count;
        *self.syscalls.entry(syscall).or_insert(0) += count;
        self.open_flags |= open_flags;
        self.first_seen = self.first_seen.min(first);
        self.last_seen = self.last_seen.max(last);
    }

    pub fn intents(&self) -> BTreeSet<IntentKey> {
        self.syscalls
            .keys()
            .map(|s| IntentKey::from(s.intent()))
            .collect()
    }

    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// `Intent` with an order, for sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IntentKey {
    Open,
    Stat,
    Access,
    Exec,
}

impl From<Intent> for IntentKey {
    fn from(i: Intent) -> Self {
        match i {
            Intent::Open => IntentKey::Open,
            Intent::Stat => IntentKey::Stat,
            Intent::Access => IntentKey::Access,
            Intent::Exec => IntentKey::Exec,
        }
    }
}

/// What the whole capture saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Failing calls, all rows.
    pub failures: u64,
    /// Distinct (path, errno) rows.
    pub distinct: u64,
    /// Failures the kernel could not deliver (ring buffer full).
    pub lost: u64,
    /// Failures delivered one by one because the in-kernel aggregate was full (not lost).
    pub overflow: u64,
    /// What else the kernel counted during a live capture; None for reports from history,
    /// which does not keep these.
    pub capture: Option<CaptureCounters>,
}

/// Kernel counters of a live capture that are not failures but limit what the report can say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureCounters {
    /// Failing calls whose path pointer could not be read: counted, without a path.
    pub unreadable_paths: u64,
    /// `--pid` descendants not followed because the pid map was full: their failures are unseen.
    pub unfollowed_processes: u64,
    /// Successful directory opens the ring buffer could not deliver: failures relative to those
    /// directories may stay unresolved.
    pub lost_directory_opens: u64,
}

/// The context ranking needs beyond the row itself.
#[derive(Clone, Debug)]
pub struct RankContext {
    /// When capture began (ad-hoc) or the report window starts (history).
    pub window_start: SystemTime,
    /// When the report is made.
    pub now: SystemTime,
    /// Seconds after `window_start` during which a failure counts as "present from the start".
    pub warmup_secs: u64,
    /// History mode: (path, errno) pairs that failed before the window. `None` in ad-hoc mode.
    pub baseline: Option<BTreeSet<(Vec<u8>, i32)>>,
}

/// A hint: what the live filesystem says about a failure and what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Hint {
    /// Machine-readable kind, e.g. "near_match", "package_file_missing", "permission_denied".
    pub kind: String,
    pub message: String,
    pub suggestion: Option<String>,
    /// How much this hint says "this is the culprit" (0 = informational).
    pub weight: f64,
}

/// A row after ranking.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    pub rank: usize,
    pub failure: Failure,
    pub score: f64,
    pub reasons: Vec<String>,
    pub hints: Vec<Hint>,
}
