//! What the live filesystem says about a failure, and what to do about it.
//!
//! `hints_for` runs when the report is made (not when the failure happened), so a hint describes
//! the machine as it is now: a file that exists now was created since, a permission that allows
//! access now was fixed since (or the denial came from outside the mode bits).
//!
//! The checks only `lstat`, `readlink` and list directories; nothing is opened. Paths are
//! looked up under `HintEnv::root` (normally `/`; `/proc/<pid>/root` checks a container's view).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;

use crate::model::{Failure, Hint, IntentKey, Syscall};
use crate::report::escape::escape_path;
use crate::report::ids;
use crate::report::walk::{self, Link, Outcome, Walk, host_path, join_child};

/// Longest file name component (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Longest path, NUL included (PATH_MAX).
pub const PATH_MAX: usize = 4096;

const O_ACCMODE: u64 = 0o3;
const O_WRONLY: u64 = 0o1;
const O_CREAT: u64 = 0o100;
const O_NOFOLLOW: u64 = 0o400000;

/// Directory entries read per directory when looking for a near match.
const MAX_DIR_ENTRIES: usize = 20_000;
/// Credential pairs checked per failure.
const MAX_CREDS: usize = 8;

/// Where and how hints look at the system.
pub struct HintEnv {
    /// The root the failing processes see; paths are looked up under it. `/` by default.
    pub root: PathBuf,
    /// dpkg's per-package file lists (`<package>[:<arch>].list`, one path per line) and
    /// conffile lists (`.conffiles`). `/var/lib/dpkg/info` under `root` by default.
    pub dpkg_info_dir: PathBuf,
    /// Directories (as the process sees them) where the dynamic loader finds libraries: a
    /// missing `.so` whose name exists in one of them was a search-path probe.
    pub lib_dirs: Vec<Vec<u8>>,
    dpkg: OnceLock<DpkgIndex>,
}

impl Default for HintEnv {
    fn default() -> Self {
        Self::with_root("/")
    }
}

impl HintEnv {
    /// Checks under `root`, with dpkg's database at `<root>/var/lib/dpkg/info`.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let dpkg_info_dir = root.join("var/lib/dpkg/info");
        Self::new(root, dpkg_info_dir)
    }

    pub fn new(root: impl Into<PathBuf>, dpkg_info_dir: impl Into<PathBuf>) -> Self {
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
            root: root.into(),
            dpkg_info_dir: dpkg_info_dir.into(),
            lib_dirs,
            dpkg: OnceLock::new(),
        }
    }

    /// The dpkg index, built on first use (reading every `.list` takes a moment on a big system).
    fn dpkg(&self) -> &DpkgIndex {
        self.dpkg
            .get_or_init(|| DpkgIndex::load(&self.dpkg_info_dir))
    }
}

/// Which installed packages ship which paths.
#[derive(Default)]
struct DpkgIndex {
    packages: Vec<String>,
    owners: HashMap<Box<[u8]>, Vec<u32>>,
    conffiles: HashSet<Box<[u8]>>,
}

impl DpkgIndex {
    fn load(dir: &Path) -> Self {
        let mut idx = DpkgIndex::default();
        let Ok(rd) = std::fs::read_dir(dir) else {
            return idx;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let Some(fname) = file.file_name().map(|n| n.as_bytes().to_vec()) else {
                continue;
            };
            let (stem, conf) = if let Some(s) = fname.strip_suffix(b".list") {
                (s, false)
            } else if let Some(s) = fname.strip_suffix(b".conffiles") {
                (s, true)
            } else {
                continue;
            };
            let pkg = stem.split(|b| *b == b':').next().unwrap_or(stem);
            let Ok(text) = std::fs::read(&file) else {
                continue;
            };
            if conf {
                for line in text.split(|b| *b == b'\n') {
                    // Newer dpkg may prefix a flag: "remove-on-upgrade /etc/x".
                    let p = match line.iter().position(|b| *b == b'/') {
                        Some(i) => &line[i..],
                        None => continue,
                    };
                    idx.conffiles.insert(p.into());
                }
                continue;
            }
            let pkg = String::from_utf8_lossy(pkg).into_owned();
            let id = match idx.packages.iter().rposition(|p| *p == pkg) {
                Some(i) => i,
                None => {
                    idx.packages.push(pkg);
                    idx.packages.len() - 1
                }
            };
            let Ok(id) = u32::try_from(id) else { break };
            for line in text.split(|b| *b == b'\n') {
                if !line.starts_with(b"/") || line == b"/." {
                    continue;
                }
                let owners = idx.owners.entry(line.into()).or_default();
                if !owners.contains(&id) {
                    owners.push(id);
                }
            }
        }
        idx
    }

    fn owners(&self, path: &[u8]) -> Vec<&str> {
        self.owners
            .get(path)
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| self.packages.get(*i as usize).map(String::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The same file under the other half of a merged-/usr system (`/lib/x` and `/usr/lib/x`):
/// dpkg lists a file under the name its package ships, the process may use either.
fn usr_merge_alternates(p: &[u8]) -> Vec<Vec<u8>> {
    const TOP: [&[u8]; 6] = [
        b"/bin/",
        b"/sbin/",
        b"/lib/",
        b"/lib32/",
        b"/lib64/",
        b"/libx32/",
    ];
    let mut out = Vec::new();
    for t in TOP {
        if p.starts_with(t) {
            let mut v = b"/usr".to_vec();
            v.extend_from_slice(p);
            out.push(v);
        } else if p.starts_with(b"/usr") && p[4..].starts_with(t) {
            out.push(p[4..].to_vec());
        }
    }
    out
}

/// A directory entry, for near matches.
struct Entry {
    name: Vec<u8>,
    /// Directory, or symlink (which may point at one).
    dirlike: bool,
}

/// Per-report memo of directory listings: many failures share a directory.
#[derive(Default)]
pub(crate) struct Memo {
    dirs: HashMap<Vec<u8>, Rc<Vec<Entry>>>,
}

impl Memo {
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

/// Checks `f` against the live filesystem. See the module documentation.
pub fn hints_for(f: &Failure, env: &HintEnv) -> Vec<Hint> {
    hints_with(f, env, &mut Memo::default())
}

pub(crate) fn hints_with(f: &Failure, env: &HintEnv, memo: &mut Memo) -> Vec<Hint> {
    let mut hints = Vec::new();
    if f.unresolved || !f.path.starts_with(b"/") {
        hints.push(hint(
            "unresolved",
            format!(
                "relative path {} could not be resolved (its process's working directory was \
                 not known); no filesystem checks",
                escape_path(&f.path)
            ),
            None,
            0.0,
        ));
        if f.errno == libc::ENAMETOOLONG {
            name_too_long(f, &mut hints);
        }
        return hints;
    }
    if f.truncated {
        hints.push(hint(
            "truncated",
            format!(
                "the path was cut at PATH_MAX ({PATH_MAX} bytes) when captured; no filesystem checks"
            ),
            None,
            0.0,
        ));
        if f.errno == libc::ENAMETOOLONG {
            name_too_long(f, &mut hints);
        }
        return hints;
    }
    match f.errno {
        libc::ENOENT => enoent(f, env, memo, &mut hints),
        libc::EACCES | libc::EPERM => eacces(f, env, &mut hints),
        libc::ENOTDIR => enotdir(f, env, &mut hints),
        libc::ELOOP => eloop(f, env, &mut hints),
        libc::ENAMETOOLONG => name_too_long(f, &mut hints),
        libc::EMFILE | libc::ENFILE => hints.push(hint(
            "fd_exhausted",
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
            2.0,
        )),
        libc::EROFS => hints.push(hint(
            "read_only_fs",
            format!(
                "{} is on a read-only filesystem (a write was attempted)",
                escape_path(&f.path)
            ),
            Some("write elsewhere, or check ReadOnlyPaths=/ProtectSystem= in the unit".into()),
            1.0,
        )),
        libc::EISDIR => hints.push(hint(
            "is_directory",
            format!("{} is a directory (opened for writing?)", escape_path(&f.path)),
            None,
            0.5,
        )),
        _ => {}
    }
    hints.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    hints
}

fn hint(kind: &str, message: String, suggestion: Option<String>, weight: f64) -> Hint {
    Hint {
        kind: kind.to_string(),
        message,
        suggestion,
        weight,
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
        "check_failed",
        format!("could not check {}: {e}", escape_path(at)),
        None,
        0.0,
    ));
}

fn is_library(path: &[u8]) -> bool {
    let base = basename(path);
    base.ends_with(b".so") || base.windows(4).any(|w| w == b".so.")
}

fn basename(path: &[u8]) -> &[u8] {
    path.rsplit(|b| *b == b'/').next().unwrap_or(path)
}

fn dirname(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(0) => b"/",
        Some(i) => &path[..i],
        None => b"",
    }
}

// ---- ENOENT ----

fn enoent(f: &Failure, env: &HintEnv, memo: &mut Memo, hints: &mut Vec<Hint>) {
    let w = walk::walk(&env.root, &f.path, follows_final(f));
    match w.outcome {
        Outcome::Found { path, .. } => {
            let shown = if path == f.path {
                escape_path(&f.path)
            } else {
                format!("{} (-> {})", escape_path(&f.path), escape_path(&path))
            };
            hints.push(hint(
                "exists_now",
                format!("{shown} exists now (transient, or already fixed)"),
                None,
                -2.0,
            ));
        }
        Outcome::Missing {
            parent,
            name,
            rest,
            via_link,
            ..
        } => {
            let missing = join_child(&parent, &name);
            if let Some(link) = &via_link {
                dangling(link, &missing, hints);
            }
            if rest.is_empty() {
                near_in_dir(env, memo, &parent, &name, hints);
            } else {
                hints.push(hint(
                    "parent_missing",
                    format!(
                        "directory {} does not exist (deepest existing: {})",
                        escape_path(&missing),
                        escape_path(&parent)
                    ),
                    None,
                    0.5,
                ));
                near_parent(env, memo, &parent, &name, &rest, hints);
            }
            let mut resolved = missing;
            for r in &rest {
                resolved = join_child(&resolved, r);
            }
            package_owner(f, env, &resolved, hints);
            if f.intents().contains(&IntentKey::Open) && is_library(&f.path) {
                found_elsewhere(f, env, hints);
            }
        }
        Outcome::NotDir { path, meta, .. } => not_dir(&path, &meta, hints),
        Outcome::Loop { link, chain } => symlink_loop(&link, &chain, hints),
        Outcome::Error { at, error } => check_failed(&at, &error, hints),
    }
}

fn dangling(link: &Link, missing: &[u8], hints: &mut Vec<Hint>) {
    hints.push(hint(
        "dangling_symlink",
        format!(
            "symlink {} -> {} points to a missing {}",
            escape_path(&link.path),
            escape_path(&link.target),
            escape_path(missing)
        ),
        Some(format!(
            "re-point or remove the link: ls -l {}",
            shell_quote(&link.path)
        )),
        1.5,
    ));
}

/// How `want` and a candidate name are alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Likeness {
    /// Same letters, different case.
    Case,
    /// One or two edits apart (typo, extension variant like `.phpp`/`.php`, `.php5`/`.php`).
    Typo,
    /// The candidate is `want` plus a version (`libfoo.so.1` -> `libfoo.so.1.2.3`): a missing
    /// soname or development link.
    VersionLink,
    /// Differs only in digits (`20220828` vs `20220829`, `8.1` vs `8.2`).
    Digits,
}

/// Suffixes of backups and package-manager leftovers: `x.conf.dpkg-dist` is not "x.conf".
const BACKUP_SUFFIXES: [&[u8]; 14] = [
    b"~",
    b".bak",
    b".orig",
    b".old",
    b".save",
    b".swp",
    b".tmp",
    b".dpkg-dist",
    b".dpkg-old",
    b".dpkg-new",
    b".dpkg-bak",
    b".ucf-dist",
    b".rpmnew",
    b".rpmsave",
];

fn is_backup(name: &[u8]) -> bool {
    name.starts_with(b".#") || BACKUP_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Edits allowed for a name of `len` bytes: short names need a closer match.
fn allowed_edits(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=6 => 1,
        _ => 2,
    }
}

fn digit_skeleton(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_digit() {
            if out.last() != Some(&b'#') {
                out.push(b'#');
            }
        } else {
            out.push(b.to_ascii_lowercase());
        }
    }
    out
}

/// `.1`, `.1.2.3`: one or more dot-separated numbers.
fn is_version_suffix(s: &[u8]) -> bool {
    !s.is_empty()
        && s.split(|b| *b == b'.').enumerate().all(|(i, part)| {
            if i == 0 {
                part.is_empty()
            } else {
                !part.is_empty() && part.iter().all(u8::is_ascii_digit)
            }
        })
}

/// How `cand` is like `want`, and a rank among candidates (lower is better): case-only
/// differences first, then missing version links, then the fewest edits.
fn likeness(want: &[u8], cand: &[u8]) -> Option<(Likeness, usize)> {
    if want == cand || cand.is_empty() || (is_backup(cand) && !is_backup(want)) {
        return None;
    }
    if want.eq_ignore_ascii_case(cand) {
        return Some((Likeness::Case, 0));
    }
    if let Some(suffix) = cand.strip_prefix(want)
        && is_version_suffix(suffix)
    {
        return Some((Likeness::VersionLink, 1));
    }
    let k = allowed_edits(want.len());
    if want.iter().any(u8::is_ascii_digit) && digit_skeleton(want) == digit_skeleton(cand) {
        // Rank by edits too, so libc.so.7 prefers libc.so.6 over libc.so.
        let d = bounded_osa(want, cand, k.max(2) + 6).unwrap_or(64);
        return Some((Likeness::Digits, 2 + d));
    }
    if k == 0 {
        return None;
    }
    let d = bounded_osa(want, cand, k)?;
    // The stems must be alike on their own: `db.phpp` is a typo of `db.php`, but `nope.php` is
    // not one of `home.php` (two of the stem's four letters differ; a 404's template lookup).
    let (ws, cs) = (stem(want), stem(cand));
    bounded_osa(ws, cs, allowed_edits(ws.len()))?;
    Some((Likeness::Typo, 2 + d))
}

/// The name without its last extension (`helpers.phpp` -> `helpers`; `.htaccess` stays whole).
fn stem(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|b| *b == b'.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), ASCII case
/// folded, or `None` if it exceeds `k`. Only a band of width 2k+1 is computed.
fn bounded_osa(a: &[u8], b: &[u8], k: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > k || a.len() > 4096 || b.len() > 4096 {
        return None;
    }
    let inf = usize::MAX / 2;
    let (n, m) = (a.len(), b.len());
    let mut prev2 = vec![inf; m + 1];
    let mut prev: Vec<usize> = (0..=m).map(|j| if j <= k { j } else { inf }).collect();
    let mut cur = vec![inf; m + 1];
    for i in 1..=n {
        cur.iter_mut().for_each(|c| *c = inf);
        if i <= k {
            cur[0] = i;
        }
        let lo = i.saturating_sub(k).max(1);
        let hi = (i + k).min(m);
        let mut row_min = cur[0];
        for j in lo..=hi {
            let ai = a[i - 1].to_ascii_lowercase();
            let bj = b[j - 1].to_ascii_lowercase();
            let cost = usize::from(ai != bj);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1
                && j > 1
                && ai == b[j - 2].to_ascii_lowercase()
                && a[i - 2].to_ascii_lowercase() == bj
            {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > k {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[m];
    (d <= k).then_some(d)
}

/// The closest entry of `entries` to `want`, if any is close enough.
fn best_match<'a>(
    want: &[u8],
    entries: &'a [Entry],
    dirs_only: bool,
) -> Option<(&'a Entry, Likeness)> {
    entries
        .iter()
        .filter(|e| !dirs_only || e.dirlike)
        .filter_map(|e| likeness(want, &e.name).map(|(l, d)| (e, l, d)))
        .min_by(|x, y| (x.2, x.1, &x.0.name).cmp(&(y.2, y.1, &y.0.name)))
        .map(|(e, l, _)| (e, l))
}

fn near_in_dir(env: &HintEnv, memo: &mut Memo, dir: &[u8], want: &[u8], hints: &mut Vec<Hint>) {
    let entries = memo.list(env, dir);
    let Some((e, like)) = best_match(want, &entries, false) else {
        return;
    };
    let found = join_child(dir, &e.name);
    let missing = join_child(dir, want);
    let (suggestion, weight) = match like {
        Likeness::Case => (
            format!(
                "names are case-sensitive: correct the reference to {}",
                escape_path(&e.name)
            ),
            3.0,
        ),
        Likeness::Typo => (
            format!(
                "correct the reference from {} to {} (or rename the file)",
                escape_path(want),
                escape_path(&e.name)
            ),
            3.0,
        ),
        Likeness::VersionLink => (
            if is_library(want) {
                format!(
                    "recreate the link: ln -s {} {} (ldconfig recreates soname links)",
                    shell_quote(&e.name),
                    shell_quote(&missing)
                )
            } else {
                format!("ln -s {} {}", shell_quote(&e.name), shell_quote(&missing))
            },
            2.0,
        ),
        Likeness::Digits => (
            format!(
                "if the version changed, update the reference from {} to {}",
                escape_path(want),
                escape_path(&e.name)
            ),
            1.5,
        ),
    };
    hints.push(hint(
        "near_match",
        format!("did you mean {} (exists)", escape_path(&found)),
        Some(suggestion),
        weight,
    ));
}

fn near_parent(
    env: &HintEnv,
    memo: &mut Memo,
    parent: &[u8],
    want: &[u8],
    rest: &[Vec<u8>],
    hints: &mut Vec<Hint>,
) {
    let entries = memo.list(env, parent);
    let Some((e, _)) = best_match(want, &entries, true) else {
        return;
    };
    let dir = join_child(parent, &e.name);
    let mut full = dir.clone();
    for r in rest {
        full = join_child(&full, r);
    }
    let full_exists = matches!(
        walk::walk(&env.root, &full, true).outcome,
        Outcome::Found { .. }
    );
    if full_exists {
        hints.push(hint(
            "near_match",
            format!("did you mean {} (exists)", escape_path(&full)),
            Some(format!(
                "correct the directory in the reference from {} to {}",
                escape_path(want),
                escape_path(&e.name)
            )),
            3.0,
        ));
    } else {
        hints.push(hint(
            "near_match",
            format!(
                "did you mean directory {} (exists, but not {} in it)",
                escape_path(&dir),
                escape_path(&full[dir.len()..])
            ),
            None,
            1.0,
        ));
    }
}

fn package_owner(f: &Failure, env: &HintEnv, resolved: &[u8], hints: &mut Vec<Hint>) {
    let mut candidates = vec![f.path.clone()];
    if resolved != f.path.as_slice() {
        candidates.push(resolved.to_vec());
    }
    for c in candidates.clone() {
        candidates.extend(usr_merge_alternates(&c));
    }
    let idx = env.dpkg();
    for c in &candidates {
        let owners = idx.owners(c);
        if owners.is_empty() {
            continue;
        }
        let pkgs = owners.join(" ");
        let label = if owners.len() == 1 {
            "package"
        } else {
            "packages"
        };
        let conf = idx.conffiles.contains(c.as_slice());
        let (message, suggestion) = if conf {
            (
                format!("conffile of {label} {} is missing", owners.join(", ")),
                format!(
                    "apt-get install --reinstall -o Dpkg::Options::=--force-confmiss {pkgs} \
                     (a plain reinstall does not restore a deleted conffile)"
                ),
            )
        } else {
            (
                format!("file of {label} {} is missing", owners.join(", ")),
                format!("apt-get install --reinstall {pkgs}"),
            )
        };
        let message = if c.as_slice() == f.path.as_slice() {
            message
        } else {
            format!("{message} ({})", escape_path(c))
        };
        hints.push(hint("package_file_missing", message, Some(suggestion), 3.0));
        return;
    }
}

fn found_elsewhere(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) {
    let base = basename(&f.path);
    let dir = dirname(&f.path);
    for d in &env.lib_dirs {
        if d.as_slice() == dir {
            continue;
        }
        let cand = join_child(d, base);
        if std::fs::metadata(host_path(&env.root, &cand)).is_ok_and(|m| m.is_file()) {
            hints.push(hint(
                "found_elsewhere",
                format!(
                    "{} exists on the library search path: the loader probably found it there",
                    escape_path(&cand)
                ),
                None,
                -2.0,
            ));
            return;
        }
    }
}

// ---- EACCES / EPERM ----

/// A process identity for permission checks.
struct Who {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Who {
    fn new(uid: u32, gid: u32) -> Self {
        Who {
            uid,
            gid,
            groups: ids::groups_of(uid, gid),
        }
    }

    fn label(&self) -> String {
        match ids::user_name(self.uid) {
            Some(n) => format!("uid {} ({})", self.uid, escape_path(n.as_bytes())),
            None => format!("uid {}", self.uid),
        }
    }

    /// The mode-bit check of the kernel's generic_permission(): owner bits if the uid owns the
    /// file, else group bits if one of its groups owns it, else other bits; root passes except
    /// that executing a non-directory needs some x bit.
    fn allowed(&self, meta: &Metadata, want: u32) -> bool {
        let mode = meta.mode();
        if self.uid == 0 {
            return want & 1 == 0 || meta.is_dir() || mode & 0o111 != 0;
        }
        let bits = if meta.uid() == self.uid {
            (mode >> 6) & 7
        } else if self.groups.contains(&meta.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        bits & want == want
    }
}

/// `drwx------` from a mode.
pub fn mode_string(meta: &Metadata) -> String {
    let ft = meta.file_type();
    let mode = meta.mode();
    let t = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else {
        '-'
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (i, (bit, on, off)) in special.iter().enumerate() {
        let shift = 6 - 3 * i;
        let rwx = (mode >> shift) & 7;
        s.push(if rwx & 4 != 0 { 'r' } else { '-' });
        s.push(if rwx & 2 != 0 { 'w' } else { '-' });
        let x = rwx & 1 != 0;
        s.push(match (mode & bit != 0, x) {
            (true, true) => *on,
            (true, false) => *off,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn describe_node(meta: &Metadata) -> String {
    format!(
        "{} {:04o} {}:{}",
        mode_string(meta),
        meta.mode() & 0o7777,
        escape_path(ids::user_or_id(meta.uid()).as_bytes()),
        escape_path(ids::group_or_id(meta.gid()).as_bytes())
    )
}

/// "r", "w", "x", "rw" for a permission mask.
fn letters(want: u32) -> String {
    let mut s = String::new();
    if want & 4 != 0 {
        s.push('r');
    }
    if want & 2 != 0 {
        s.push('w');
    }
    if want & 1 != 0 {
        s.push('x');
    }
    s
}

/// The smallest chmod/chgrp that lets `who` have `want` on the node.
fn fix_for(meta: &Metadata, who: &Who, want: u32, path: &[u8]) -> String {
    let p = shell_quote(path);
    let w = letters(want);
    if who.uid == 0 {
        return format!("chmod +x {p}");
    }
    if meta.uid() == who.uid {
        format!("chmod u+{w} {p}")
    } else if who.groups.contains(&meta.gid()) {
        format!("chmod g+{w} {p}")
    } else if meta.is_dir() && want == 1 {
        format!("chmod o+x {p}")
    } else {
        let g = shell_quote(ids::group_or_id(who.gid).as_bytes());
        format!("chgrp {g} {p} && chmod g+{w} {p} (or: chmod o+{w} {p}, for every user)")
    }
}

fn has_acl(root: &Path, path: &[u8]) -> bool {
    let Ok(c) = CString::new(host_path(root, path).into_os_string().into_vec()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks only for the size.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    n > 0
}

fn mounted_noexec(root: &Path, path: &[u8]) -> bool {
    let Ok(c) = CString::new(host_path(root, path).into_os_string().into_vec()) else {
        return false;
    };
    // SAFETY: zeroed statvfs is valid; statvfs writes it when it returns 0.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_flag & libc::ST_NOEXEC != 0
}

fn eacces(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) {
    let intents = f.intents();
    let (want, verb) = if intents.contains(&IntentKey::Exec) {
        (1, "execute")
    } else if intents.contains(&IntentKey::Open) {
        let creat = f.syscalls.contains_key(&Syscall::Creat);
        match (f.open_flags & O_ACCMODE, creat) {
            (_, true) | (O_WRONLY, _) => (2, "write"),
            (0, _) => (4, "read"),
            _ => (6, "read and write"),
        }
    } else {
        (0, "")
    };
    let creates = f.open_flags & O_CREAT != 0 || f.syscalls.contains_key(&Syscall::Creat);
    let w: Walk = walk::walk(&env.root, &f.path, follows_final(f));
    if let Outcome::Error { at, error } = &w.outcome {
        check_failed(at, error, hints);
        return;
    }
    if f.creds.is_empty() {
        hints.push(hint(
            "no_credentials",
            "no uid was recorded for this failure; permissions not checked".into(),
            None,
            0.0,
        ));
        return;
    }
    // Denials with the same node and fix are merged: "uid 33 (www-data), uid 34 (backup) cannot
    // search /srv/app".
    struct Denial {
        path: Vec<u8>,
        what: String,
        meta: Metadata,
        fix: String,
        who: Vec<String>,
    }
    let mut denials: Vec<Denial> = Vec::new();
    for &(uid, gid) in f.creds.iter().take(MAX_CREDS) {
        let who = Who::new(uid, gid);
        let Some((path, meta, need, what)) = first_denial(&w, &who, want, verb, creates) else {
            continue;
        };
        let fix = fix_for(&meta, &who, need, &path);
        let label = who.label();
        match denials
            .iter_mut()
            .find(|d| d.path == path && d.what == what && d.fix == fix)
        {
            Some(d) => {
                if !d.who.contains(&label) {
                    d.who.push(label);
                }
            }
            None => denials.push(Denial {
                path,
                what,
                meta,
                fix,
                who: vec![label],
            }),
        }
    }
    for (i, d) in denials.into_iter().enumerate() {
        let acl = if has_acl(&env.root, &d.path) {
            "; it has a POSIX ACL, the group bits shown are its mask: see getfacl"
        } else {
            ""
        };
        let message = format!(
            "{} cannot {} {} ({}){acl}",
            d.who.join(", "),
            d.what,
            escape_path(&d.path),
            describe_node(&d.meta)
        );
        hints.push(hint(
            "permission_denied",
            message,
            Some(d.fix),
            if i == 0 { 3.0 } else { 0.5 },
        ));
    }
    if !hints.is_empty() {
        return;
    }
    if let Outcome::Missing { parent, name, .. } = &w.outcome
        && !creates
    {
        hints.push(hint(
            "missing_now",
            format!(
                "{} does not exist now",
                escape_path(&join_child(parent, name))
            ),
            None,
            0.0,
        ));
        return;
    }
    if want == 1
        && let Outcome::Found { path, .. } = &w.outcome
        && mounted_noexec(&env.root, path)
    {
        hints.push(hint(
            "noexec_mount",
            format!("{} is on a filesystem mounted noexec", escape_path(path)),
            Some("run it from an exec-mounted filesystem, or remount without noexec".into()),
            2.0,
        ));
        return;
    }
    let message = if f.errno == libc::EPERM {
        "permissions allow access now: fixed, or denied by an LSM (AppArmor/SELinux), an ACL, a \
         mount option, an immutable/append-only attribute (lsattr) or a seccomp filter"
    } else {
        "permissions allow access now: fixed, or denied by an LSM (AppArmor/SELinux), an ACL or a \
         mount option"
    };
    hints.push(hint("permissions_allow", message.into(), None, -0.5));
}

/// The first node that denies `who`: (path, metadata, permission needed, verb).
fn first_denial(
    w: &Walk,
    who: &Who,
    want: u32,
    verb: &str,
    creates: bool,
) -> Option<(Vec<u8>, Metadata, u32, String)> {
    for s in &w.searched {
        if !who.allowed(&s.meta, 1) {
            return Some((s.path.clone(), s.meta.clone(), 1, "search".into()));
        }
    }
    match &w.outcome {
        Outcome::Found { path, meta } if want != 0 && !meta.file_type().is_symlink() => {
            (!who.allowed(meta, want)).then(|| (path.clone(), meta.clone(), want, verb.to_string()))
        }
        Outcome::Missing {
            parent,
            parent_meta,
            rest,
            ..
        } if creates && rest.is_empty() => (!who.allowed(parent_meta, 3)).then(|| {
            (
                parent.clone(),
                parent_meta.clone(),
                3,
                "create files in".into(),
            )
        }),
        _ => None,
    }
}

// ---- ENOTDIR, ELOOP, ENAMETOOLONG ----

fn kind_name(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_file() {
        "a regular file"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "not a directory"
    }
}

fn not_dir(path: &[u8], meta: &Metadata, hints: &mut Vec<Hint>) {
    hints.push(hint(
        "not_a_directory",
        format!(
            "{} is {}, not a directory, but the path continues below it",
            escape_path(path),
            kind_name(meta)
        ),
        None,
        0.3,
    ));
}

fn enotdir(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) {
    let w = walk::walk(&env.root, &f.path, follows_final(f));
    match w.outcome {
        Outcome::NotDir { path, meta, .. } => not_dir(&path, &meta, hints),
        Outcome::Error { at, error } => check_failed(&at, &error, hints),
        _ => hints.push(hint(
            "resolves_now",
            "every directory in the path is a directory now".into(),
            None,
            -0.5,
        )),
    }
}

fn symlink_loop(link: &[u8], chain: &[Link], hints: &mut Vec<Hint>) {
    let mut shown = String::new();
    for (i, l) in chain.iter().enumerate() {
        if i > 0 {
            shown.push_str(", ");
        }
        shown.push_str(&format!(
            "{} -> {}",
            escape_path(&l.path),
            escape_path(&l.target)
        ));
    }
    hints.push(hint(
        "symlink_loop",
        format!("symlink loop at {}: {shown}", escape_path(link)),
        Some(format!(
            "re-point or remove the link: ls -l {}",
            shell_quote(link)
        )),
        2.0,
    ));
}

fn eloop(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) {
    if f.open_flags & O_NOFOLLOW != 0 {
        let w = walk::walk(&env.root, &f.path, false);
        if let Outcome::Found { path, meta } = &w.outcome
            && meta.file_type().is_symlink()
        {
            hints.push(hint(
                "nofollow_symlink",
                format!(
                    "{} is a symlink and the open used O_NOFOLLOW",
                    escape_path(path)
                ),
                None,
                0.5,
            ));
            return;
        }
    }
    let w = walk::walk(&env.root, &f.path, true);
    match w.outcome {
        Outcome::Loop { link, chain } => symlink_loop(&link, &chain, hints),
        Outcome::Error { at, error } => check_failed(&at, &error, hints),
        _ => hints.push(hint(
            "resolves_now",
            "the path resolves without a loop now".into(),
            None,
            -0.5,
        )),
    }
}

fn name_too_long(f: &Failure, hints: &mut Vec<Hint>) {
    if let Some(c) = walk::split(&f.path).find(|c| c.len() > NAME_MAX) {
        let head: Vec<u8> = c.iter().take(40).copied().collect();
        hints.push(hint(
            "name_too_long",
            format!(
                "component {}... is {} bytes, longer than NAME_MAX ({NAME_MAX})",
                escape_path(&head),
                c.len()
            ),
            None,
            1.0,
        ));
    } else if f.path.len() >= PATH_MAX || f.truncated {
        hints.push(hint(
            "name_too_long",
            format!(
                "the path is {}{} bytes, PATH_MAX is {PATH_MAX} (NUL included)",
                f.path.len(),
                if f.truncated { "+ (truncated)" } else { "" }
            ),
            None,
            1.0,
        ));
    } else {
        hints.push(hint(
            "name_too_long",
            "no component exceeds NAME_MAX and the path is below PATH_MAX: a symlink probably \
             expanded it"
                .into(),
            None,
            0.5,
        ));
    }
}

/// Quotes a path for a shell command line: as is when safe, in single quotes when printable,
/// in bash's `$'...'` (with `\xNN` for every other byte) otherwise, so the command acts on the
/// exact file.
pub fn shell_quote(bytes: &[u8]) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"/._-+:,@%=".contains(&b);
    if !bytes.is_empty() && bytes.iter().all(|b| safe(*b)) {
        // Checked ASCII above.
        return String::from_utf8_lossy(bytes).into_owned();
    }
    if crate::report::escape::is_plain(bytes) {
        let s = String::from_utf8_lossy(bytes);
        return format!("'{}'", s.replace('\'', "'\\''"));
    }
    let mut out = String::from("$'");
    for b in bytes {
        match b {
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(*b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testutil::{TempDir, failure};
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn env_for(t: &TempDir) -> HintEnv {
        let mut env = HintEnv::new("/", t.path().join("dpkg-info"));
        env.lib_dirs.clear();
        env
    }

    fn kinds(h: &[Hint]) -> Vec<&str> {
        h.iter().map(|h| h.kind.as_str()).collect()
    }

    fn find<'a>(h: &'a [Hint], kind: &str) -> &'a Hint {
        h.iter()
            .find(|h| h.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} hint in {h:#?}"))
    }

    #[test]
    fn near_match_typo_case_and_extension() {
        let t = TempDir::new();
        t.write("app/class-x.php", "<?php");
        t.write("app/Config.ini", "");
        t.write("app/x.php5", "");
        t.write("app/site.conf.dpkg-dist", "");
        let env = env_for(&t);

        let f = failure(
            &t.abs("app/class-x.phpp"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        let n = find(&h, "near_match");
        assert_eq!(
            n.message,
            format!("did you mean {} (exists)", t.abs("app/class-x.php"))
        );
        assert!(n.weight >= 3.0);

        let f = failure(
            &t.abs("app/config.ini"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let n = find(&hints_for(&f, &env), "near_match").clone();
        assert!(n.message.contains("Config.ini"), "{n:?}");
        assert!(n.suggestion.unwrap().contains("case-sensitive"));

        let f = failure(&t.abs("app/x.php"), libc::ENOENT, &[(Syscall::Openat, 1)]);
        assert!(
            find(&hints_for(&f, &env), "near_match")
                .message
                .contains("x.php5")
        );

        // A package manager's leftover is not what the process meant.
        let f = failure(
            &t.abs("app/site.conf"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        assert!(!kinds(&hints_for(&f, &env)).contains(&"near_match"));
    }

    #[test]
    fn missing_parent_with_near_sibling() {
        let t = TempDir::new();
        t.write("usr/lib/php/20220829/redis.so", "");
        let env = env_for(&t);
        let f = failure(
            &t.abs("usr/lib/php/20220828/redis.so"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        let p = find(&h, "parent_missing");
        assert!(p.message.contains(&t.abs("usr/lib/php/20220828")), "{p:?}");
        assert!(
            p.message
                .contains(&format!("deepest existing: {}", t.abs("usr/lib/php")))
        );
        let n = find(&h, "near_match");
        assert_eq!(
            n.message,
            format!(
                "did you mean {} (exists)",
                t.abs("usr/lib/php/20220829/redis.so")
            )
        );
    }

    #[test]
    fn dpkg_ownership() {
        let t = TempDir::new();
        t.mkdir("mods");
        t.write(
            "dpkg-info/libapache2-mod-php8.2:amd64.list",
            &format!("/.\n{}\n{}\n", t.abs("mods"), t.abs("mods/libphp8.2.so")),
        );
        t.write(
            "dpkg-info/php8.2-common.list",
            &format!("{}\n", t.abs("conf/20-redis.ini")),
        );
        t.write(
            "dpkg-info/php8.2-common.conffiles",
            &format!("{}\n", t.abs("conf/20-redis.ini")),
        );
        let env = env_for(&t);
        let f = failure(
            &t.abs("mods/libphp8.2.so"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        let p = find(&h, "package_file_missing");
        assert_eq!(
            p.message,
            "file of package libapache2-mod-php8.2 is missing"
        );
        assert_eq!(
            p.suggestion.as_deref(),
            Some("apt-get install --reinstall libapache2-mod-php8.2")
        );
        let f = failure(
            &t.abs("conf/20-redis.ini"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let p = find(&hints_for(&f, &env), "package_file_missing").clone();
        assert!(p.message.starts_with("conffile of package php8.2-common"));
        assert!(p.suggestion.unwrap().contains("--force-confmiss"));
    }

    #[test]
    fn exists_now() {
        let t = TempDir::new();
        t.write("here.php", "");
        let env = env_for(&t);
        let f = failure(&t.abs("here.php"), libc::ENOENT, &[(Syscall::Openat, 1)]);
        let h = hints_for(&f, &env);
        let e = find(&h, "exists_now");
        assert!(e.weight < 0.0);
        assert!(e.message.contains("exists now"));
    }

    #[test]
    fn eacces_on_private_dir() {
        let t = TempDir::new();
        t.write("srv/secret/config.php", "");
        t.chmod("srv/secret", 0o700);
        let env = env_for(&t);
        let mut f = failure(
            &t.abs("srv/secret/config.php"),
            libc::EACCES,
            &[(Syscall::Openat, 1)],
        );
        f.creds.insert((65534, 65534));
        let h = hints_for(&f, &env);
        let d = find(&h, "permission_denied");
        let user = ids::user_name(65534)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        assert!(
            d.message.starts_with(&format!(
                "uid 65534{user} cannot search {} (drwx------ 0700 ",
                t.abs("srv/secret")
            )),
            "{d:?}"
        );
        assert_eq!(
            d.suggestion.as_deref(),
            Some(format!("chmod o+x {}", t.abs("srv/secret")).as_str())
        );

        // Directory open now, file private: the file is named, with a group fix.
        t.chmod("srv/secret", 0o755);
        t.chmod("srv/secret/config.php", 0o600);
        let h = hints_for(&f, &env);
        let d = find(&h, "permission_denied");
        assert!(
            d.message
                .contains(&format!("cannot read {}", t.abs("srv/secret/config.php")))
        );
        assert!(
            d.suggestion.as_deref().unwrap().contains("chmod g+r"),
            "{d:?}"
        );

        // Two users denied alike: one hint names both.
        let mut two = f.clone();
        two.creds = [(65534, 65534), (4_242_420, 65534)].into();
        let h = hints_for(&two, &env);
        assert_eq!(kinds(&h), ["permission_denied"], "{h:#?}");
        assert!(h[0].message.contains(", uid 4242420 cannot read"), "{h:#?}");

        // Root is not denied by mode bits: the hint says so.
        let mut r = f.clone();
        r.creds = [(0, 0)].into();
        let h = hints_for(&r, &env);
        assert!(
            find(&h, "permissions_allow")
                .message
                .starts_with("permissions allow access now")
        );
    }

    #[test]
    fn enotdir_and_eloop() {
        let t = TempDir::new();
        t.write("www/index.php", "");
        symlink("b", t.path().join("www/a")).unwrap();
        symlink("a", t.path().join("www/b")).unwrap();
        let env = env_for(&t);
        let f = failure(
            &t.abs("www/index.php/.htaccess"),
            libc::ENOTDIR,
            &[(Syscall::Openat, 1)],
        );
        let n = find(&hints_for(&f, &env), "not_a_directory").clone();
        assert!(
            n.message
                .starts_with(&format!("{} is a regular file", t.abs("www/index.php")))
        );

        let f = failure(&t.abs("www/a/x"), libc::ELOOP, &[(Syscall::Openat, 1)]);
        let l = find(&hints_for(&f, &env), "symlink_loop").clone();
        assert!(
            l.message
                .starts_with(&format!("symlink loop at {}", t.abs("www/a"))),
            "{l:?}"
        );
    }

    #[test]
    fn dangling_symlink_and_unresolved_and_long() {
        let t = TempDir::new();
        t.mkdir("conf.d");
        t.write("mods/redis.ini", "");
        symlink(
            t.abs("mods/redis2.ini"),
            t.path().join("conf.d/20-redis.ini"),
        )
        .unwrap();
        let env = env_for(&t);
        let f = failure(
            &t.abs("conf.d/20-redis.ini"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        assert!(
            find(&h, "dangling_symlink")
                .message
                .contains("points to a missing")
        );
        assert!(find(&h, "near_match").message.contains("redis.ini"));

        let mut f = failure("wp-config.php", libc::ENOENT, &[(Syscall::Openat, 1)]);
        f.unresolved = true;
        assert_eq!(kinds(&hints_for(&f, &env)), ["unresolved"]);

        let long = format!("/tmp/{}", "x".repeat(300));
        let f = failure(&long, libc::ENAMETOOLONG, &[(Syscall::Openat, 1)]);
        assert!(
            find(&hints_for(&f, &env), "name_too_long")
                .message
                .contains("300 bytes")
        );
    }

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
                f.path = p.to_vec();
                f.creds.insert((65534, 65534));
                f.open_flags = u64::MAX;
                let _ = hints_for(&f, &env);
            }
        }
    }

    #[test]
    fn osa_and_likeness() {
        assert_eq!(bounded_osa(b"config.php", b"confgi.php", 2), Some(1));
        assert_eq!(bounded_osa(b"class-x.phpp", b"class-x.php", 2), Some(1));
        assert_eq!(bounded_osa(b"abcdef", b"uvwxyz", 2), None);
        let entries: Vec<Entry> = ["libc.so", "libc.so.6", "libfoo.so.2", "libfoo.so.1.2.3"]
            .iter()
            .map(|n| Entry {
                name: n.as_bytes().to_vec(),
                dirlike: false,
            })
            .collect();
        let best = |w: &[u8]| best_match(w, &entries, false).map(|(e, _)| e.name.clone());
        assert_eq!(best(b"libc.so.7"), Some(b"libc.so.6".to_vec()));
        assert_eq!(best(b"libfoo.so.1"), Some(b"libfoo.so.1.2.3".to_vec()));
        assert_eq!(
            likeness(b"libfoo.so.1", b"libfoo.so.1.2.3").map(|l| l.0),
            Some(Likeness::VersionLink)
        );
        assert_eq!(
            likeness(b"8.1", b"8.2").map(|l| l.0),
            Some(Likeness::Digits)
        );
        assert_eq!(likeness(b"x.conf", b"x.conf.dpkg-dist"), None);
        assert_eq!(likeness(b"x.php", b"x.php~"), None);
        assert_eq!(likeness(b"abc", b"abd"), None);
        // Edits in a short stem are not a typo; in the extension, or a longer stem, they are.
        assert_eq!(likeness(b"nope.php", b"home.php"), None);
        assert_eq!(
            likeness(b"db.phpp", b"db.php").map(|l| l.0),
            Some(Likeness::Typo)
        );
        assert_eq!(
            likeness(b"hone.php", b"home.php").map(|l| l.0),
            Some(Likeness::Typo)
        );
        assert_eq!(
            likeness(b"confgi.php", b"config.php").map(|l| l.0),
            Some(Likeness::Typo)
        );
    }

    #[test]
    fn quoting_and_modes() {
        assert_eq!(shell_quote(b"/srv/app"), "/srv/app");
        assert_eq!(shell_quote(b"/srv/my app"), "'/srv/my app'");
        assert_eq!(shell_quote(b"/srv/it's"), "'/srv/it'\\''s'");
        assert_eq!(shell_quote(b"/srv/\x1b\xff"), "$'/srv/\\x1b\\xff'");
        let t = TempDir::new();
        t.mkdir("d");
        std::fs::set_permissions(t.path().join("d"), std::fs::Permissions::from_mode(0o1750))
            .unwrap();
        let m = std::fs::metadata(t.path().join("d")).unwrap();
        assert_eq!(mode_string(&m), "drwxr-x--T");
    }
}
