//! Stage 4, hints: what the live filesystem says about a failure, and what to do about it. One
//! module per finding: [`enoent`] (not found: exists now, a near match, a missing parent),
//! [`near`] (how two names are alike), [`dpkg`] (files of installed packages), [`perm`]
//! (the mode bits that deny a process), [`links`] (symlinks, ENOTDIR, ELOOP, ENAMETOOLONG).
//!
//! Hints are computed when the report is made (not when the failure happened), so a hint
//! describes the machine as it is now: a file that exists now was created since, a permission
//! that allows access now was fixed since (or the denial came from outside the mode bits).
//!
//! The checks only `lstat`, `readlink` and list directories; nothing is opened. Paths are
//! looked up under `HintEnv::root`: `/` for the host, the pinned root of a container's or a
//! private service's view ([`crate::place::View`]) for its rows, whose uids are named from that
//! view's own passwd and group files.
//! Every weight is a named constant of [`crate::report::score`].

mod dpkg;
mod enoent;
mod links;
mod near;
mod perm;

pub(crate) use perm::may_read;

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use crate::escape::escape_path;
use crate::ids::Names;
use crate::model::{Failure, Hint, HintKind, Remedy, Syscall};
use crate::place::{View, ViewRef};
use crate::report::score::{H_FD_LIMIT, H_INFO, H_IS_DIRECTORY, H_READ_ONLY};
use crate::report::walk::host_path;

/// Longest file name component (NAME_MAX).
const NAME_MAX: usize = 255;
/// Longest path, NUL included (PATH_MAX).
const PATH_MAX: usize = 4096;

const O_ACCMODE: u64 = 0o3;
const O_WRONLY: u64 = 0o1;
const O_CREAT: u64 = 0o100;
const O_NOFOLLOW: u64 = 0o400000;

/// Directory entries read per directory when looking for a near match.
const MAX_DIR_ENTRIES: usize = 20_000;

/// Where and how hints look at the system.
pub(crate) struct HintEnv {
    /// The root the failing processes see; paths are looked up under it. `/` by default.
    pub(crate) root: PathBuf,
    /// dpkg's per-package file lists (`<package>[:<arch>].list`, one path per line) and
    /// conffile lists (`.conffiles`). `/var/lib/dpkg/info` under `root` by default.
    pub(crate) dpkg_info_dir: PathBuf,
    /// Directories (as the process sees them) where the dynamic loader finds libraries: a
    /// missing `.so` whose name exists in one of them was a search-path probe.
    pub(crate) lib_dirs: Vec<Vec<u8>>,
    /// Whose names uids and gids have in messages and commands.
    pub(crate) names: Arc<Names>,
    /// The same root, for reading a file's first bytes safely (an interpreter line).
    pub(crate) view: ViewRef,
    dpkg: OnceLock<dpkg::DpkgIndex>,
    /// Hints of earlier live frames, by row, for [`HINT_CACHE_TTL`]: a frame re-checks only what
    /// is new or old.
    cache: std::sync::Mutex<HashMap<HintKey, (std::time::Instant, Vec<Hint>)>>,
}

/// A row as the hint cache knows it: path, errno, place and the view (by address).
type HintKey = (bytes::Bytes, i32, crate::place::Place, usize);

/// How long a live frame reuses a row's hints.
pub(crate) const HINT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Rows the hint cache holds, at most.
const HINT_CACHE_MAX: usize = 10_000;

impl Default for HintEnv {
    fn default() -> Self {
        Self::with_root("/")
    }
}

impl HintEnv {
    /// Checks under `root`, with dpkg's database at `<root>/var/lib/dpkg/info`.
    pub(crate) fn with_root(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let dpkg_info_dir = root.join("var/lib/dpkg/info");
        Self::new(root, dpkg_info_dir)
    }

    pub(crate) fn new(root: impl Into<PathBuf>, dpkg_info_dir: impl Into<PathBuf>) -> Self {
        let root: PathBuf = root.into();
        let lib_dirs = [
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib",
            "/usr/local/lib",
        ]
        .iter()
        .map(|d| d.as_bytes().to_vec())
        .collect();
        HintEnv {
            dpkg_info_dir: dpkg_info_dir.into(),
            view: if root == std::path::Path::new("/") {
                ViewRef::host()
            } else {
                ViewRef(Arc::new(View::live(root.clone())))
            },
            root,
            lib_dirs,
            names: Arc::new(Names::System),
            dpkg: OnceLock::new(),
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn hint_key(f: &Failure) -> HintKey {
        (
            f.path.clone(),
            f.errno,
            f.place.clone(),
            Arc::as_ptr(&f.view.0) as usize,
        )
    }

    /// The hints a recent live frame found for `f`.
    pub(crate) fn cached_hints(&self, f: &Failure) -> Option<Vec<Hint>> {
        let c = self.cache.lock().ok()?;
        let (at, h) = c.get(&Self::hint_key(f))?;
        (at.elapsed() < HINT_CACHE_TTL).then(|| h.clone())
    }

    /// Remembers `hints` for `f` (those a spent budget cut short are not).
    pub(crate) fn cache_hints(&self, f: &Failure, hints: &[Hint]) {
        if hints.iter().any(|h| h.kind == HintKind::NotChecked) {
            return;
        }
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= HINT_CACHE_MAX {
                c.clear();
            }
            c.insert(
                Self::hint_key(f),
                (std::time::Instant::now(), hints.to_vec()),
            );
        }
    }

    /// Checks in `view` (its root, its dpkg database, its names); `None` when it is gone.
    pub(crate) fn for_view(view: &View) -> Option<Self> {
        let mut env = Self::with_root(view.root()?);
        env.names = view.names();
        Some(env)
    }

    /// The dpkg index, built on first use (reading every `.list` takes a moment on a big system).
    fn dpkg(&self) -> &dpkg::DpkgIndex {
        self.dpkg
            .get_or_init(|| dpkg::DpkgIndex::load(&self.dpkg_info_dir))
    }
}

/// A directory entry, for near matches.
struct Entry {
    name: Vec<u8>,
    /// Directory, or symlink (which may point at one).
    dirlike: bool,
}

/// What the hint checks of one report may spend: time, and name comparisons of the near-match
/// search (each a bounded edit distance). Past either, rows get a `not_checked` hint instead.
pub(crate) struct HintBudget {
    deadline: std::time::Instant,
    comparisons: std::cell::Cell<u64>,
}

/// Time for the hint checks of a final report, and of a live view's frame.
pub(crate) const HINT_TIME: std::time::Duration = std::time::Duration::from_secs(5);
pub(crate) const HINT_TIME_LIVE: std::time::Duration = std::time::Duration::from_millis(300);
/// Name comparisons per report (a 20,000-entry directory costs 20,000 per missing name).
pub(crate) const MAX_COMPARISONS: u64 = 2_000_000;

impl HintBudget {
    pub(crate) fn new(time: std::time::Duration) -> HintBudget {
        HintBudget {
            deadline: std::time::Instant::now() + time,
            comparisons: std::cell::Cell::new(MAX_COMPARISONS),
        }
    }

    fn out_of_time(&self) -> bool {
        std::time::Instant::now() >= self.deadline
    }

    /// Takes `n` comparisons; false (taking none) when fewer are left.
    fn take(&self, n: usize) -> bool {
        let left = self.comparisons.get();
        let n = n as u64;
        if n > left || self.out_of_time() {
            return false;
        }
        self.comparisons.set(left - n);
        true
    }
}

/// Per-report memo of directory listings (many failures share a directory), and the budget
/// the report's hint checks share.
pub(crate) struct Memo {
    dirs: HashMap<Vec<u8>, Rc<Vec<Entry>>>,
    pub(crate) budget: Rc<HintBudget>,
}

impl Default for Memo {
    fn default() -> Self {
        Memo::with(Rc::new(HintBudget::new(HINT_TIME)))
    }
}

impl Memo {
    pub(crate) fn with(budget: Rc<HintBudget>) -> Memo {
        Memo {
            dirs: HashMap::new(),
            budget,
        }
    }

    fn list(&mut self, env: &HintEnv, dir: &[u8]) -> Rc<Vec<Entry>> {
        if let Some(e) = self.dirs.get(dir) {
            return e.clone();
        }
        let mut entries = Vec::new();
        if let Ok(rd) = std::fs::read_dir(host_path(&env.root, dir)) {
            for e in rd.take(MAX_DIR_ENTRIES).flatten() {
                let dirlike = e
                    .file_type()
                    .map(|t| t.is_dir() || t.is_symlink())
                    .unwrap_or(false);
                entries.push(Entry {
                    name: e.file_name().as_bytes().to_vec(),
                    dirlike,
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let rc = Rc::new(entries);
        self.dirs.insert(dir.to_vec(), rc.clone());
        rc
    }
}

/// Checks `f` against the live filesystem, with a fresh memo.
#[cfg(test)]
pub(crate) fn hints_for(f: &Failure, env: &HintEnv) -> Vec<Hint> {
    hints_with(f, Some(env), &mut Memo::default())
}

/// Checks `f` against the live filesystem of its view (`env`; `None` when the view is gone,
/// and only the hints that need no filesystem are made); directory listings are shared through
/// `memo`, which belongs to that view.
pub(crate) fn hints_with(f: &Failure, env: Option<&HintEnv>, memo: &mut Memo) -> Vec<Hint> {
    let mut hints = Vec::new();
    if memo.budget.out_of_time() {
        hints.push(hint(
            HintKind::NotChecked,
            "not checked: this report's time for hint checks was spent (rows are checked best \
             first)"
                .into(),
            None,
            H_INFO,
        ));
        return hints;
    }
    if let Some(env) = env
        && f.path.starts_with(b"/")
        && let Some(fs) = env.view.network_fs(&f.path)
    {
        hints.push(hint(
            HintKind::NotChecked,
            format!(
                "{} is on a {fs} filesystem: not checked (a network or FUSE filesystem can hang \
                 whoever looks)",
                escape_path(&f.path)
            ),
            None,
            H_INFO,
        ));
        return hints;
    }
    if f.unresolved || !f.path.starts_with(b"/") {
        hints.push(hint(
            HintKind::Unresolved,
            format!(
                "relative path {} could not be resolved (its process's working directory was \
                 not known); no filesystem checks",
                escape_path(&f.path)
            ),
            None,
            H_INFO,
        ));
        if f.errno == libc::ENAMETOOLONG {
            links::name_too_long(f, &mut hints);
        }
        return hints;
    }
    if f.truncated {
        hints.push(hint(
            HintKind::Truncated,
            format!(
                "the path was cut at PATH_MAX ({PATH_MAX} bytes) when captured; no filesystem checks"
            ),
            None,
            H_INFO,
        ));
        if f.errno == libc::ENAMETOOLONG {
            links::name_too_long(f, &mut hints);
        }
        return hints;
    }
    let checks_files = matches!(
        f.errno,
        libc::ENOENT | libc::EACCES | libc::EPERM | libc::ENOTDIR | libc::ELOOP
    );
    let env = match env {
        Some(env) => env,
        None if checks_files => {
            hints.push(hint(
                HintKind::ViewGone,
                format!(
                    "the view of the filesystem {} saw is no longer available (its processes \
                     exited before observer could pin it); no filesystem checks, and the host's \
                     files say nothing about it",
                    f.place
                ),
                Some(format!(
                    "run `observer` while {} runs, or check inside it",
                    f.place
                )),
                H_INFO,
            ));
            return hints;
        }
        // The hints below need no filesystem.
        None => &HintEnv::with_root("/nonexistent"),
    };
    match f.errno {
        libc::ENOENT => enoent::enoent(f, env, memo, &mut hints),
        libc::EACCES | libc::EPERM => perm::eacces(f, env, &mut hints),
        libc::ENOTDIR => links::enotdir(f, env, &mut hints),
        libc::ELOOP => links::eloop(f, env, &mut hints),
        libc::ENAMETOOLONG => links::name_too_long(f, &mut hints),
        libc::EMFILE | libc::ENFILE => hints.push(hint(
            HintKind::FdExhausted,
            if f.errno == libc::EMFILE {
                "the process ran out of file descriptors (its RLIMIT_NOFILE)".to_string()
            } else {
                "the system ran out of open files (fs.file-max)".to_string()
            },
            Some(if f.errno == libc::EMFILE {
                "raise LimitNOFILE= in the service's unit (or ulimit -n), and look for a descriptor leak"
                    .to_string()
            } else {
                "raise fs.file-max, and look for a descriptor leak".to_string()
            }),
            H_FD_LIMIT,
        )),
        libc::EROFS => hints.push(hint(
            HintKind::ReadOnlyFs,
            format!(
                "{} is on a read-only filesystem (a write was attempted)",
                escape_path(&f.path)
            ),
            Some("write elsewhere, or check ReadOnlyPaths=/ProtectSystem= in the unit".into()),
            H_READ_ONLY,
        )),
        libc::EISDIR => hints.push(hint(
            HintKind::IsDirectory,
            format!("{} is a directory (opened for writing?)", escape_path(&f.path)),
            None,
            H_IS_DIRECTORY,
        )),
        _ => {}
    }
    hints.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    hints
}

fn hint(kind: HintKind, message: String, suggestion: Option<String>, weight: f64) -> Hint {
    Hint {
        kind,
        message,
        suggestion,
        weight,
        remedy: None,
    }
}

/// A hint whose suggestion `remedy` describes as data.
fn remedied(
    kind: HintKind,
    message: String,
    suggestion: String,
    weight: f64,
    remedy: Remedy,
) -> Hint {
    Hint {
        remedy: Some(remedy),
        ..hint(kind, message, Some(suggestion), weight)
    }
}

/// Whether the final component's symlink is followed: not for lstat-only rows, nor for opens
/// with O_NOFOLLOW.
fn follows_final(f: &Failure) -> bool {
    let only_lstat = !f.syscalls.is_empty() && f.syscalls.keys().all(|s| *s == Syscall::Newlstat);
    !(only_lstat || f.open_flags & O_NOFOLLOW != 0)
}

fn check_failed(at: &[u8], e: &std::io::Error, hints: &mut Vec<Hint>) {
    hints.push(hint(
        HintKind::CheckFailed,
        format!("could not check {}: {e}", escape_path(at)),
        None,
        H_INFO,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::failure;

    #[test]
    fn hostile_paths_do_not_panic() {
        let env = HintEnv::new("/", "/nonexistent-dpkg");
        let paths: [&[u8]; 6] = [
            b"/\0",
            b"/",
            b"",
            b"/tmp/\xff\xfe/\x1b[31m",
            b"//..//../.",
            b"/proc/self/root/proc/self/root/x",
        ];
        for p in paths {
            for errno in [
                libc::ENOENT,
                libc::EACCES,
                libc::ENOTDIR,
                libc::ELOOP,
                libc::ENAMETOOLONG,
                libc::EPERM,
            ] {
                let mut f = failure(
                    "/",
                    errno,
                    &[(Syscall::Openat, 1), (Syscall::Newfstatat, 2)],
                );
                f.path = bytes::Bytes::copy_from_slice(p);
                f.creds.insert((65534, 65534));
                f.open_flags = u64::MAX;
                let _ = hints_for(&f, &env);
            }
        }
    }
}
