//! The data the stages hand on: one deduplicated failure per (absolute path, errno) with
//! everything the capture learned about it ([`Failure`]), what the filesystem says about it
//! ([`Hint`]), and the row the ranking makes of it ([`Ranked`], with its typed [`Reason`]s).
//! Aggregation and the history fill `Failure`s; ranking, hints and rendering read them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
pub(crate) use observer_common::{Intent, Syscall};

use crate::place::{Place, ViewRef};

/// How many distinct pids a row keeps as a sample.
pub(crate) const PID_SAMPLE: usize = 8;

/// One deduplicated failure: every failing call on `path` that returned `errno`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Failure {
    /// The path as the process named it, made absolute when observer could resolve it. Raw bytes:
    /// a file name is attacker-controlled and need not be UTF-8. Shared with the capture's record
    /// (or the history's row), never copied.
    pub(crate) path: Bytes,
    /// Positive errno value (2 = ENOENT).
    pub(crate) errno: i32,
    /// Total failing calls.
    pub(crate) count: u64,
    /// Calls per syscall.
    pub(crate) syscalls: BTreeMap<Syscall, u64>,
    /// Union of the open flags of the failing open-family calls (O_ACCMODE bits, O_CREAT, ...).
    pub(crate) open_flags: u64,
    pub(crate) first_seen: SystemTime,
    pub(crate) last_seen: SystemTime,
    /// Process names (comm) that made the calls.
    pub(crate) comms: BTreeSet<String>,
    /// (uid, gid) pairs of the calling processes.
    pub(crate) creds: BTreeSet<(u32, u32)>,
    /// Up to PID_SAMPLE distinct tgids.
    pub(crate) pids: BTreeSet<u32>,
    /// Distinct tgids seen (may exceed the sample).
    pub(crate) pid_count: u64,
    /// The kernel cut the path at PATH_MAX.
    pub(crate) truncated: bool,
    /// A relative path that could not be made absolute (the process was gone): `path` is raw.
    pub(crate) unresolved: bool,
    /// Where the processes ran: a container, a systemd unit, or the host.
    pub(crate) place: Place,
    /// Their view of the filesystem, where hints look.
    pub(crate) view: ViewRef,
}

impl Failure {
    /// A row with no calls yet, first and last seen as given; `add_calls` fills it.
    pub(crate) fn new(
        path: Bytes,
        errno: i32,
        first_seen: SystemTime,
        last_seen: SystemTime,
    ) -> Self {
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
            place: Place::default(),
            view: ViewRef::host(),
        }
    }

    /// Counts `count` more failing calls of `syscall` seen between `first` and `last`, with
    /// `open_flags` (0 for calls that are not opens).
    pub(crate) fn add_calls(
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

    pub(crate) fn intents(&self) -> BTreeSet<IntentKey> {
        self.syscalls
            .keys()
            .map(|s| IntentKey::from(s.intent()))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// `Intent` with an order, for sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum IntentKey {
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

/// What a capture watched: the JSON report's `filter`, and what the history keeps per session.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Watched {
    /// The process names in effect (the default `apache2` when no selector was given).
    pub(crate) comms: Vec<String>,
    pub(crate) pids: Vec<u32>,
    pub(crate) cgroups: Vec<String>,
    /// Container id prefixes.
    pub(crate) containers: Vec<String>,
    pub(crate) all: bool,
    /// Symbolic names (`ENOENT`).
    pub(crate) errnos: Vec<String>,
    pub(crate) syscalls: Vec<String>,
}

/// What the whole capture saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Failing calls, all rows.
    pub(crate) failures: u64,
    /// Distinct (path, errno) rows.
    pub(crate) distinct: u64,
    /// Failures the kernel could not deliver (ring buffer full).
    pub(crate) lost: u64,
    /// Failures delivered one by one because the in-kernel aggregate was full (not lost).
    pub(crate) overflow: u64,
    /// Failures counted but in no row: observer's memory bound for distinct paths was full.
    pub(crate) dropped: u64,
    /// Distinct rows past the report's row limit, and their failures: counted, not listed.
    pub(crate) unlisted_paths: u64,
    pub(crate) unlisted_failures: u64,
    /// What else the kernel counted during a live capture; None for reports from history,
    /// which does not keep these.
    pub(crate) capture: Option<CaptureCounters>,
}

/// Kernel counters of a live capture that are not failures but limit what the report can say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CaptureCounters {
    /// Failing calls whose path pointer could not be read: counted, without a path.
    pub(crate) unreadable_paths: u64,
    /// `--pid` descendants not followed because the pid map was full: their failures are unseen.
    pub(crate) unfollowed_processes: u64,
    /// Successful directory opens the ring buffer could not deliver: failures relative to those
    /// directories may stay unresolved.
    pub(crate) lost_directory_opens: u64,
}

/// The context ranking needs beyond the row itself.
#[derive(Clone, Debug)]
pub(crate) struct RankContext {
    /// When capture began (ad-hoc) or the report window starts (history).
    pub(crate) window_start: SystemTime,
    /// When the report is made.
    pub(crate) now: SystemTime,
    /// Seconds after `window_start` during which a failure counts as "present from the start".
    pub(crate) warmup_secs: u64,
    /// History mode: (path, errno, place) rows that failed before the window. `None` in ad-hoc
    /// mode.
    pub(crate) baseline: Option<BTreeSet<(Bytes, i32, Place)>>,
    /// Look for referrers, changes and fixes (the final report; not each frame of the live
    /// view, which would reread the same files every second).
    pub(crate) evidence: bool,
    /// Check the filesystem for hints at all (false: a report made without looking, when the
    /// checks did not finish in time).
    pub(crate) hints: bool,
}

/// What a hint found. Its name (`as_str`) is the JSON `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum HintKind {
    /// A near-identical name in the same directory, or a corrected directory.
    NearMatch,
    /// A directory on the way does not exist.
    ParentMissing,
    /// The path exists now (transient, or fixed since).
    ExistsNow,
    /// An exec failed with ENOENT on a file that exists: its interpreter (`#!`) or dynamic loader
    /// (ELF `PT_INTERP`) is what is missing.
    InterpreterMissing,
    /// The checks were skipped: a network or FUSE filesystem, or the report's budget spent.
    NotChecked,
    /// A symlink on the way points to something missing.
    DanglingSymlink,
    /// The path belongs to an installed Debian package.
    PackageFileMissing,
    /// A missing library exists elsewhere on the loader's search path.
    FoundElsewhere,
    /// The mode bits of a node on the way deny the process.
    PermissionDenied,
    /// The mode bits allow the access now.
    PermissionsAllow,
    /// The denied path does not exist now.
    MissingNow,
    /// The executable is on a noexec mount.
    NoexecMount,
    /// No credentials were recorded, so permissions were not checked.
    NoCredentials,
    /// A file stands where the path needs a directory.
    NotADirectory,
    /// A symlink loop.
    SymlinkLoop,
    /// O_NOFOLLOW met a symlink.
    NofollowSymlink,
    /// The path resolves now (ENOTDIR, ELOOP).
    ResolvesNow,
    /// A component or the path is too long.
    NameTooLong,
    /// The process or the system ran out of descriptors.
    FdExhausted,
    /// A write on a read-only filesystem.
    ReadOnlyFs,
    /// A directory opened as a file.
    IsDirectory,
    /// A relative path observer could not make absolute: nothing checked.
    Unresolved,
    /// The process's view of the filesystem is no longer available: nothing checked.
    ViewGone,
    /// A path cut at PATH_MAX: nothing checked.
    Truncated,
    /// The check itself failed.
    CheckFailed,
}

impl HintKind {
    /// The machine-readable name (`near_match`, `package_file_missing`, ...).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HintKind::NearMatch => "near_match",
            HintKind::ParentMissing => "parent_missing",
            HintKind::ExistsNow => "exists_now",
            HintKind::InterpreterMissing => "interpreter_missing",
            HintKind::NotChecked => "not_checked",
            HintKind::DanglingSymlink => "dangling_symlink",
            HintKind::PackageFileMissing => "package_file_missing",
            HintKind::FoundElsewhere => "found_elsewhere",
            HintKind::PermissionDenied => "permission_denied",
            HintKind::PermissionsAllow => "permissions_allow",
            HintKind::MissingNow => "missing_now",
            HintKind::NoexecMount => "noexec_mount",
            HintKind::NoCredentials => "no_credentials",
            HintKind::NotADirectory => "not_a_directory",
            HintKind::SymlinkLoop => "symlink_loop",
            HintKind::NofollowSymlink => "nofollow_symlink",
            HintKind::ResolvesNow => "resolves_now",
            HintKind::NameTooLong => "name_too_long",
            HintKind::FdExhausted => "fd_exhausted",
            HintKind::ReadOnlyFs => "read_only_fs",
            HintKind::IsDirectory => "is_directory",
            HintKind::Unresolved => "unresolved",
            HintKind::ViewGone => "view_gone",
            HintKind::Truncated => "truncated",
            HintKind::CheckFailed => "check_failed",
        }
    }
}

/// A hint: what the live filesystem says about a failure and what to do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hint {
    pub(crate) kind: HintKind,
    pub(crate) message: String,
    pub(crate) suggestion: Option<String>,
    /// How much this hint says "this is the culprit" (0 = informational).
    pub(crate) weight: f64,
    /// What the suggestion does, in a form a fix can be written from.
    pub(crate) remedy: Option<Remedy>,
}

/// A hint's suggestion as data: what `--fix` turns into a change.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Remedy {
    /// The reference names the component `from` of the failing path where `to` exists (a typo,
    /// a case, a mistyped directory): the reference is corrected.
    Rename { from: Vec<u8>, to: Vec<u8> },
    /// The missing file belongs to these packages: reinstall them (`confmiss`: it is a
    /// conffile, which a plain reinstall does not restore).
    Reinstall {
        packages: Vec<String>,
        confmiss: bool,
    },
    /// The node `path` denies the failing uid: change its group (when `chgrp`), then its mode
    /// (`chmod`, symbolic: `g+r`, `o+x`).
    Permission {
        path: Vec<u8>,
        chgrp: Option<String>,
        chmod: String,
    },
}

/// How an open that failed wanted the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    Read,
    Write,
    ReadWrite,
}

/// Why a row scored as it did: one per term of the score that applies, shown as "why: ...".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    FailedExec,
    LibraryLoad,
    FailedOpen(OpenMode),
    StatProbe,
    AccessProbe,
    UnknownCall,
    /// The errno term (`not found`, `permission denied`, ...).
    Errno(i32),
    /// First seen after the warm-up, or not in the history's baseline; the local time it was
    /// first seen, as shown.
    NewSince(String),
    PresentFromStart,
    HasAlwaysFailed,
    /// A benign lookup pattern (`.htaccess`, `DirectoryIndex`, ...).
    ProbePattern(&'static str),
    /// A near match of weight 2 or more.
    NearIdentical,
    /// A weaker near match.
    SimilarName,
    /// Another hint that moved the score.
    Found(HintKind),
    /// A failing open of a directory (`opendir`, `O_DIRECTORY`) or of a path (`O_PATH`): a
    /// lookup, not a read.
    LookupProbe(&'static str),
    /// A line that loads files names it (`require`, `Include`, `LoadModule`, `extension`).
    NamedBy(&'static str),
    /// The file, a referrer or its directory changed shortly before the first failure.
    ChangedBefore,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::FailedExec => f.write_str("failed exec"),
            Reason::LibraryLoad => f.write_str("library load"),
            Reason::FailedOpen(m) => write!(
                f,
                "failed open ({})",
                match m {
                    OpenMode::Read => "read",
                    OpenMode::Write => "write",
                    OpenMode::ReadWrite => "read/write",
                }
            ),
            Reason::StatProbe => f.write_str("stat probe"),
            Reason::LookupProbe(what) => f.write_str(what),
            Reason::NamedBy(d) => write!(f, "named by {d}"),
            Reason::ChangedBefore => f.write_str("changed before the first failure"),
            Reason::AccessProbe => f.write_str("access probe"),
            Reason::UnknownCall => f.write_str("unknown call"),
            Reason::Errno(e) => f.write_str(&errno_reason(*e)),
            Reason::NewSince(at) => write!(f, "new since {at}"),
            Reason::PresentFromStart => f.write_str("present from start"),
            Reason::HasAlwaysFailed => f.write_str("has always failed"),
            Reason::ProbePattern(label) => write!(f, "probe pattern ({label})"),
            Reason::NearIdentical => f.write_str("near-identical file exists"),
            Reason::SimilarName => f.write_str("similar name exists"),
            Reason::Found(kind) => f.write_str(&match kind {
                HintKind::PackageFileMissing => "package file missing".into(),
                HintKind::PermissionDenied => "denied by permissions".into(),
                HintKind::PermissionsAllow => "permissions allow now".into(),
                HintKind::ExistsNow => "exists now".into(),
                HintKind::InterpreterMissing => "interpreter missing".into(),
                HintKind::FoundElsewhere => "library found elsewhere".into(),
                HintKind::ParentMissing => "parent directory missing".into(),
                HintKind::DanglingSymlink => "dangling symlink".into(),
                HintKind::SymlinkLoop => "symlink loop".into(),
                HintKind::NotADirectory => "file used as directory".into(),
                HintKind::FdExhausted => "descriptor limit".into(),
                HintKind::NoexecMount => "noexec mount".into(),
                HintKind::ResolvesNow => "resolves now".into(),
                other => other.as_str().replace('_', " "),
            }),
        }
    }
}

/// The words of the errno term.
fn errno_reason(errno: i32) -> String {
    match errno {
        libc::EACCES => "permission denied".into(),
        libc::EPERM => "operation not permitted".into(),
        libc::ELOOP => "too many symlinks".into(),
        libc::EMFILE | libc::ENFILE => "out of file descriptors".into(),
        libc::ENAMETOOLONG => "name too long".into(),
        libc::EROFS => "read-only filesystem".into(),
        libc::ENOENT => "not found".into(),
        libc::EISDIR => "is a directory".into(),
        libc::ENOTDIR => "not a directory".into(),
        other => crate::errno::name(other),
    }
}

/// One run of `observer record`, as the history keeps it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Session {
    pub(crate) started_ms: i64,
    /// When it stopped, or how far its last flush reached (after a crash, or while it runs).
    pub(crate) until_ms: i64,
    /// False while it runs or after a crash.
    pub(crate) ended: bool,
    /// What it watched, when the history can say.
    pub(crate) watched: Option<Watched>,
}

/// One minute of one path's history, per errno.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Minute {
    /// Minutes since the epoch (UTC).
    pub(crate) minute: i64,
    pub(crate) count: u64,
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
    /// Calls per syscall name.
    pub(crate) syscalls: BTreeMap<String, u64>,
    pub(crate) comms: BTreeSet<String>,
}

/// Consecutive failing minutes of one path, with short quiet gaps inside.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Episode {
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
    pub(crate) count: u64,
    pub(crate) minutes: usize,
}

/// A row after ranking.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ranked {
    pub(crate) rank: usize,
    pub(crate) failure: Failure,
    pub(crate) score: f64,
    pub(crate) reasons: Vec<Reason>,
    pub(crate) hints: Vec<Hint>,
    /// Where it is referenced, what changed, and the fix.
    pub(crate) evidence: Evidence,
}

/// What the report found around a culprit: the lines that name it, what changed just before it
/// failed, and the fix (for rows worth one).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Evidence {
    pub(crate) referrers: Vec<crate::report::referrers::Referrer>,
    pub(crate) changed: Vec<crate::report::changed::Change>,
    /// `None`: not a culprit observer proposes a fix for.
    pub(crate) plan: Option<crate::report::fix::Plan>,
}
