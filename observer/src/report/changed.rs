//! Stage 4, what changed: incidents follow changes. For a culprit, the files whose times say
//! they changed shortly before its first failure (or during the window): a referrer or the file
//! itself modified (mtime), the file's mode or owner changed (ctime, when it moved without the
//! mtime), a directory on its path that gained or lost an entry (its mtime: a deleted module,
//! a renamed directory). Times are the filesystem's now, read in the process's view.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::model::Failure;
use crate::report::referrers::Referrer;

/// How long before the first failure a change still counts as its likely cause.
pub(crate) const LOOKBACK: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// The file's contents (mtime).
    Modified,
    /// Its mode, owner or group (ctime moved, the mtime did not).
    Attributes,
    /// A directory gained or lost an entry (its mtime).
    Entries,
}

impl ChangeKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Modified => "modified",
            ChangeKind::Attributes => "mode or owner changed",
            ChangeKind::Entries => "entries added or removed",
        }
    }
}

/// A change near the failure.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) path: Bytes,
    pub(crate) kind: ChangeKind,
    pub(crate) at: SystemTime,
    /// Whether it happened before the first failure (a cause), or after it (within the window).
    pub(crate) before_first: bool,
}

impl Change {
    /// Seconds between the change and the first failure (positive: before it).
    pub(crate) fn seconds_before(&self, first: SystemTime) -> f64 {
        match first.duration_since(self.at) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
}

fn time_of(t: std::io::Result<SystemTime>) -> Option<SystemTime> {
    t.ok()
}

/// The changes around `f`: its referrers' files, the file itself when it exists, and the
/// directory that holds (or should hold) it, `dir` (the deepest existing one on its path);
/// each when it happened between [`LOOKBACK`] before the first failure and `until`.
pub(crate) fn changes(
    f: &Failure,
    referrers: &[Referrer],
    dir: Option<&[u8]>,
    until: SystemTime,
) -> Vec<Change> {
    let from = f.first_seen.checked_sub(LOOKBACK).unwrap_or(f.first_seen);
    let mut out = Vec::new();
    let local = |p: &[u8]| f.view.network_fs(p).is_none();
    let mut note = |path: &[u8], kind: ChangeKind, at: Option<SystemTime>| {
        if let Some(at) = at
            && at >= from
            && at <= until
            && !out
                .iter()
                .any(|c: &Change| c.path == path && c.kind == kind)
        {
            out.push(Change {
                path: Bytes::copy_from_slice(path),
                kind,
                at,
                before_first: at <= f.first_seen,
            });
        }
    };
    for r in referrers.iter().filter(|r| local(&r.file)) {
        if let Ok(m) = f.view.stat(&r.file) {
            note(&r.file, ChangeKind::Modified, time_of(m.modified()));
        }
    }
    if !local(&f.path) {
        return out;
    }
    if let Ok(m) = f.view.stat(&f.path) {
        use std::os::unix::fs::MetadataExt;
        let mtime = time_of(m.modified());
        note(&f.path, ChangeKind::Modified, mtime);
        let ctime = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
            m.ctime().max(0) as u64,
            m.ctime_nsec().max(0) as u32,
        ));
        // A chmod or chown moves the ctime alone.
        if ctime
            .zip(mtime)
            .is_some_and(|(c, m)| c > m + Duration::from_secs(1))
        {
            note(&f.path, ChangeKind::Attributes, ctime);
        }
    }
    if let Some(d) = dir
        && let Ok(m) = f.view.stat(d)
    {
        note(d, ChangeKind::Entries, time_of(m.modified()));
    }
    out.sort_by_key(|c| c.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Syscall;
    use crate::testutil::{TempDir, failure};

    fn set_times(path: &str, secs_ago: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs_ago);
        let f = std::fs::File::options().read(true).open(path).unwrap();
        f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }

    #[test]
    fn a_referrer_edited_before_the_first_failure_and_an_old_one_not() {
        let t = TempDir::new();
        t.write("app/bootstrap.php", "require 'x.phpp';");
        t.write("app/old.php", "require 'x.phpp';");
        set_times(&t.abs("app/old.php"), 3 * 3600);
        set_times(&t.abs("app/bootstrap.php"), 4);
        let mut f = failure(&t.abs("app/x.phpp"), libc::ENOENT, &[(Syscall::Openat, 1)]);
        f.first_seen = SystemTime::now();
        let r = |file: &str| Referrer {
            file: Bytes::from(t.abs(file)),
            line: 1,
            text: b"require 'x.phpp';".to_vec(),
            span: (9, 15),
            target: crate::report::referrers::Target::File,
            components: 1,
            directive: None,
        };
        let c = changes(
            &f,
            &[r("app/bootstrap.php"), r("app/old.php")],
            None,
            SystemTime::now(),
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].path, t.abs("app/bootstrap.php").as_bytes());
        assert_eq!(c[0].kind, ChangeKind::Modified);
        assert!(c[0].before_first);
        let s = c[0].seconds_before(f.first_seen);
        assert!((3.0..6.0).contains(&s), "{s}");
    }

    #[test]
    fn a_chmod_shows_as_a_change_of_attributes() {
        use std::os::unix::fs::PermissionsExt;
        let t = TempDir::new();
        t.write("config/app.php", "<?php");
        set_times(&t.abs("config/app.php"), 600);
        std::fs::set_permissions(
            t.abs("config/app.php"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut f = failure(
            &t.abs("config/app.php"),
            libc::EACCES,
            &[(Syscall::Openat, 1)],
        );
        f.first_seen = SystemTime::now();
        let c = changes(&f, &[], Some(t.abs("config").as_bytes()), SystemTime::now());
        let kinds: Vec<ChangeKind> = c.iter().map(|c| c.kind).collect();
        assert!(kinds.contains(&ChangeKind::Attributes), "{c:?}");
        assert!(
            kinds.contains(&ChangeKind::Modified),
            "the 10-minute-old edit: {c:?}"
        );
    }
}
