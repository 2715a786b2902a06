//! Ranking: which failure is most likely the culprit. See [`SCORING_DOC`] for the formula.

use std::cmp::Ordering;
use std::time::Duration;

use crate::model::{Failure, Hint, IntentKey, RankContext, Ranked};
use crate::report::hints::{HintEnv, Memo, hints_with};
use crate::report::time::local_clock;

/// The scoring formula, as Markdown for the README.
pub const SCORING_DOC: &str = r#"### How failures are ranked

Each distinct (path, errno) row gets a score; the highest comes first. The score is a plain sum,
and every term that applies is shown to the operator as a short reason ("why: ...").

    score = intent + errno + novelty + rate + probe + hints

| term | value | reason shown |
|------|-------|--------------|
| intent | exec 3.0; open of a library (`*.so`, `*.so.*`) 3.0; other open 2.5 (a row with an open *and* stats on the same path, like PHP's `require` of a missing file, counts as an open); stat 1.0; access 0.5 | `failed exec`, `library load`, `failed open (read)`, `stat probe`, `access probe` |
| errno | EACCES, EPERM, ELOOP, EMFILE, ENFILE 2.0; ENAMETOOLONG, EROFS 1.5; ENOENT and others 1.0; EISDIR 0.5; ENOTDIR 0.3 (typical of `<file>/.htaccess`) | `permission denied`, `not found`, ... |
| novelty | ad-hoc: +1.5 if first seen more than the warm-up after capture start, else 0; history: +1.5 if the (path, errno) is not in the baseline, -1.5 if it is | `new since 12:03:10`, `present from start`, `has always failed` |
| rate | 0.3 × log10(1 + count), at most 1.2: 0.09 for 1 call, 0.6 for 100, 0.9 for 1000, 1.2 from 10^4 on. It orders rows that are otherwise alike and never outweighs the kind of call | (the COUNT column) |
| probe | -3.0 for known benign lookups (below) | `probe pattern (.htaccess)` |
| hints | sum of the weights of the live-filesystem hints, clamped to [-3, 6]; positive weights count half for stat/access-only rows and for probe patterns | `near-identical file exists`, `package file missing`, `denied by permissions`, `exists now`, ... |

Hint weights: a near-identical name in the same directory (typo, case, extension variant) 3.0;
under a mistyped directory, a corrected path that exists 3.0 (only a similar directory: 1.0);
the file of an installed Debian package is missing 3.0; the directory or file whose mode bits
deny the process's uid 3.0 (0.5 for each further distinct denial); a symlink loop 2.0; the
descriptor limit (EMFILE/ENFILE) 2.0; a noexec mount 2.0; a missing soname/version link 2.0; a
dangling symlink 1.5; a name that differs only in digits (a version) 1.5; a component longer
than NAME_MAX 1.0; a read-only filesystem 1.0; a missing parent directory 0.5; a file used as a
directory 0.3. Negative: the path exists now -2.0; a library the loader found elsewhere on its
search path -2.0; mode bits allow access now -0.5; the path resolves now (ENOTDIR, ELOOP) -0.5.

Probe patterns (demoted, never hidden): `.htaccess` and `.user.ini` at any level; DirectoryIndex
siblings (`index.html`, `index.htm`, `default.htm`, ...) and common 404s (`favicon.ico`,
`robots.txt`, `/.well-known/`) when only stat'ed; translations (`*.mo`, `*.gmo`) and
`/usr/share/locale*`, `/usr/lib/locale`; NSS and userdb (`/etc/nsswitch.conf`, `libnss_*`,
`/run/systemd/userdb`, ...); the dynamic loader's search-path probes (`tls/`, `glibc-hwcaps/`,
`haswell/`, `x86_64/` ... below a library directory) and `/etc/ld.so.preload`; glibc's optional
files (`/etc/gai.conf`, `/etc/suid-debug`); optional drop-ins (`*.d/` entries) when only stat'ed;
PHP's `php.ini` search outside `/etc/php`; `/proc` and `/sys`.

Ties are broken by errno weight, then count (higher first), then path.

So a `require` of a misspelled file (open 2.5 + ENOENT 1.0 + near match 3.0) outranks an
optional file probed ten times per request (stat 1.0 + ENOENT 1.0 + rate), and a module `.so`
that failed once (3.0 + 1.0 + package file missing 3.0) outranks fifty NSS probes (3.0 + 1.0 +
rate - 3.0).
"#;

pub const W_EXEC: f64 = 3.0;
pub const W_LIBRARY: f64 = 3.0;
pub const W_OPEN: f64 = 2.5;
pub const W_STAT: f64 = 1.0;
pub const W_ACCESS: f64 = 0.5;
pub const W_NOVELTY: f64 = 1.5;
pub const W_RATE: f64 = 0.3;
/// The rate term stops growing at 10^4 calls: past that, frequency says nothing more.
pub const RATE_MAX: f64 = 1.2;
pub const W_PROBE: f64 = -3.0;
pub const HINTS_MIN: f64 = -3.0;
pub const HINTS_MAX: f64 = 6.0;

/// How much an errno says "something is broken", and its reason.
pub fn errno_weight(errno: i32) -> (f64, String) {
    let (w, r) = match errno {
        libc::EACCES => (2.0, "permission denied"),
        libc::EPERM => (2.0, "operation not permitted"),
        libc::ELOOP => (2.0, "too many symlinks"),
        libc::EMFILE | libc::ENFILE => (2.0, "out of file descriptors"),
        libc::ENAMETOOLONG => (1.5, "name too long"),
        libc::EROFS => (1.5, "read-only filesystem"),
        libc::ENOENT => (1.0, "not found"),
        libc::EISDIR => (0.5, "is a directory"),
        libc::ENOTDIR => (0.3, "not a directory"),
        other => return (1.0, crate::errno::name(other)),
    };
    (w, r.to_string())
}

/// The intent term and its reason.
fn intent(f: &Failure) -> (f64, String) {
    let intents = f.intents();
    if intents.contains(&IntentKey::Exec) {
        return (W_EXEC, "failed exec".into());
    }
    if intents.contains(&IntentKey::Open) {
        if is_library(&f.path) {
            return (W_LIBRARY, "library load".into());
        }
        let creat = f.syscalls.contains_key(&crate::model::Syscall::Creat);
        let mode = match (f.open_flags & 0o3, creat) {
            (_, true) | (1, _) => "write",
            (0, _) => "read",
            _ => "read/write",
        };
        return (W_OPEN, format!("failed open ({mode})"));
    }
    if intents.contains(&IntentKey::Stat) {
        return (W_STAT, "stat probe".into());
    }
    if intents.contains(&IntentKey::Access) {
        return (W_ACCESS, "access probe".into());
    }
    (W_STAT, "unknown call".into())
}

fn is_library(path: &[u8]) -> bool {
    let base = basename(path);
    base.ends_with(b".so") || base.windows(4).any(|w| w == b".so.")
}

fn basename(path: &[u8]) -> &[u8] {
    path.rsplit(|b| *b == b'/').next().unwrap_or(path)
}

/// True when the row only stat'ed or access'ed the path (no open, no exec).
fn probe_only(f: &Failure) -> bool {
    let i = f.intents();
    !i.contains(&IntentKey::Open) && !i.contains(&IntentKey::Exec)
}

/// Names the dynamic loader appends to each library directory when it searches (legacy hwcaps,
/// `tls`, and the glibc-hwcaps subdirectories).
const LDSO_SUBDIRS: [&[u8]; 14] = [
    b"tls",
    b"haswell",
    b"x86_64",
    b"avx512_1",
    b"i686",
    b"i586",
    b"sse2",
    b"glibc-hwcaps",
    b"x86-64-v2",
    b"x86-64-v3",
    b"x86-64-v4",
    b"aarch64",
    b"power9",
    b"z15",
];

const LIB_DIRS: [&[u8]; 9] = [
    b"/lib/x86_64-linux-gnu/",
    b"/usr/lib/x86_64-linux-gnu/",
    b"/lib/aarch64-linux-gnu/",
    b"/usr/lib/aarch64-linux-gnu/",
    b"/lib64/",
    b"/usr/lib64/",
    b"/lib/",
    b"/usr/lib/",
    b"/usr/local/lib/",
];

const DIRECTORY_INDEX: [&[u8]; 12] = [
    b"index.html",
    b"index.htm",
    b"index.cgi",
    b"index.pl",
    b"index.xhtml",
    b"index.shtml",
    b"index.jsp",
    b"default.htm",
    b"default.html",
    b"default.asp",
    b"default.aspx",
    b"home.html",
];

const COMMON_404: [&[u8]; 7] = [
    b"favicon.ico",
    b"robots.txt",
    b"sitemap.xml",
    b"ads.txt",
    b"apple-touch-icon.png",
    b"apple-touch-icon-precomposed.png",
    b"security.txt",
];

const USERDB_DIRS: [&[u8]; 6] = [
    b"/run/systemd/userdb",
    b"/run/userdb",
    b"/run/host/userdb",
    b"/etc/userdb",
    b"/usr/lib/userdb",
    b"/usr/local/lib/userdb",
];

fn under(path: &[u8], dir: &[u8]) -> bool {
    path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// A library looked up in one of the subdirectories the dynamic loader tries before the
/// directory itself (`<dir>/tls/haswell/x86_64/libfoo.so.1`, `<dir>/glibc-hwcaps/x86-64-v3/...`).
fn ldso_probe(p: &[u8]) -> bool {
    let mut dirs: Vec<&[u8]> = p.split(|b| *b == b'/').filter(|c| !c.is_empty()).collect();
    dirs.pop(); // the file name
    let mut stripped = Vec::new();
    while let Some(last) = dirs.last() {
        if LDSO_SUBDIRS.contains(last) || last.starts_with(b"x86-64-v") {
            stripped.push(*last);
            dirs.pop();
        } else {
            break;
        }
    }
    if stripped.is_empty() {
        return false;
    }
    // tls/, glibc-hwcaps/ and the hwcap names only appear as loader probes; a bare x86_64/ or
    // i686/ only counts below a system library directory.
    let distinctive = stripped
        .iter()
        .any(|c| matches!(*c, b"tls" | b"glibc-hwcaps" | b"haswell" | b"avx512_1"));
    let mut prefix = Vec::new();
    for d in &dirs {
        prefix.push(b'/');
        prefix.extend_from_slice(d);
    }
    prefix.push(b'/');
    distinctive || LIB_DIRS.contains(&prefix.as_slice())
}

/// The benign lookup pattern `f` matches, if any (the label shown as "probe pattern (label)").
pub fn probe_pattern(f: &Failure) -> Option<&'static str> {
    let p = f.path.as_slice();
    let base = basename(p);
    let stat_only = probe_only(f);
    if base == b".htaccess" {
        return Some(".htaccess");
    }
    if base == b".user.ini" {
        return Some(".user.ini");
    }
    if under(p, b"/proc") {
        return Some("/proc");
    }
    if under(p, b"/sys") {
        return Some("/sys");
    }
    if base.ends_with(b".mo") || base.ends_with(b".gmo") {
        return Some("translation");
    }
    if p.starts_with(b"/usr/share/locale") || under(p, b"/usr/lib/locale") {
        return Some("locale");
    }
    if p == b"/etc/nsswitch.conf" || (base.starts_with(b"libnss_") && is_library(p)) {
        return Some("NSS");
    }
    if USERDB_DIRS.iter().any(|d| under(p, d)) {
        return Some("userdb");
    }
    if p == b"/etc/ld.so.preload" {
        return Some("ld.so.preload");
    }
    if matches!(
        p,
        b"/etc/gai.conf" | b"/etc/suid-debug" | b"/etc/ld.so.nohwcap" | b"/etc/malloc.conf"
    ) {
        return Some("libc optional file");
    }
    if is_library(p) && ldso_probe(p) {
        return Some("ld.so search path");
    }
    let is_php_ini = base == b"php.ini" || (base.starts_with(b"php-") && base.ends_with(b".ini"));
    if is_php_ini && !p.starts_with(b"/etc/php") {
        return Some("php.ini search");
    }
    if stat_only {
        if DIRECTORY_INDEX.contains(&base) {
            return Some("DirectoryIndex");
        }
        if COMMON_404.contains(&base) || p.windows(13).any(|w| w == b"/.well-known/") {
            return Some("common 404");
        }
        let parent = &p[..p.len() - base.len()];
        let parent = parent.strip_suffix(b"/").unwrap_or(parent);
        if base.ends_with(b".d") || basename(parent).ends_with(b".d") {
            return Some("drop-in");
        }
    }
    None
}

/// The reason shown for a hint kind that moved the score.
fn hint_reason(h: &Hint) -> Option<String> {
    if h.weight == 0.0 {
        return None;
    }
    let r = match h.kind.as_str() {
        "near_match" if h.weight >= 2.0 => "near-identical file exists",
        "near_match" => "similar name exists",
        "package_file_missing" => "package file missing",
        "permission_denied" if h.weight >= 1.0 => "denied by permissions",
        "permission_denied" => return None,
        "permissions_allow" => "permissions allow now",
        "exists_now" => "exists now",
        "found_elsewhere" => "library found elsewhere",
        "parent_missing" => "parent directory missing",
        "dangling_symlink" => "dangling symlink",
        "symlink_loop" => "symlink loop",
        "not_a_directory" => "file used as directory",
        "fd_exhausted" => "descriptor limit",
        "noexec_mount" => "noexec mount",
        "resolves_now" => "resolves now",
        other => return Some(other.replace('_', " ")),
    };
    Some(r.to_string())
}

/// The score of one row given its hints, and the reasons shown for it.
pub fn score(f: &Failure, ctx: &RankContext, hints: &[Hint]) -> (f64, Vec<String>) {
    let mut reasons = Vec::new();
    let (wi, ri) = intent(f);
    reasons.push(ri);
    let (we, re) = errno_weight(f.errno);
    reasons.push(re);

    let since = || format!("new since {}", local_clock(f.first_seen, ctx.now));
    let novelty = match &ctx.baseline {
        Some(base) => {
            if base.contains(&(f.path.clone(), f.errno)) {
                reasons.push("has always failed".into());
                -W_NOVELTY
            } else {
                reasons.push(since());
                W_NOVELTY
            }
        }
        None => {
            let warm = ctx.window_start + Duration::from_secs(ctx.warmup_secs);
            if f.first_seen > warm {
                reasons.push(since());
                W_NOVELTY
            } else {
                reasons.push("present from start".into());
                0.0
            }
        }
    };

    // `count` may be 0 for a hand-made row; ln_1p keeps it finite.
    let rate = (W_RATE * (f.count as f64).ln_1p() / std::f64::consts::LN_10).min(RATE_MAX);

    let probe_label = probe_pattern(f);
    let probe = match probe_label {
        Some(label) => {
            reasons.push(format!("probe pattern ({label})"));
            W_PROBE
        }
        None => 0.0,
    };

    let damp = if probe_label.is_some() || probe_only(f) {
        0.5
    } else {
        1.0
    };
    let mut hsum = 0.0;
    for h in hints {
        hsum += if h.weight > 0.0 {
            h.weight * damp
        } else {
            h.weight
        };
        if let Some(r) = hint_reason(h)
            && !reasons.contains(&r)
        {
            reasons.push(r);
        }
    }
    let hsum = if hsum.is_finite() {
        hsum.clamp(HINTS_MIN, HINTS_MAX)
    } else {
        0.0
    };

    (wi + we + novelty + rate + probe + hsum, reasons)
}

/// Computes hints against the live filesystem, scores, sorts (best first) and numbers the rows.
///
/// The score is `intent + errno + novelty + rate + probe + hints`: see [`SCORING_DOC`].
/// Ties: errno weight, then count (higher first), then path.
///
/// Cost: a few `lstat`s per row and one directory listing per directory with a missing file
/// (listings are shared between rows), plus reading dpkg's file lists once per `HintEnv`.
pub fn rank(failures: Vec<Failure>, ctx: &RankContext, env: &HintEnv) -> Vec<Ranked> {
    let mut memo = Memo::default();
    let mut out: Vec<Ranked> = failures
        .into_iter()
        .map(|f| {
            let hints = hints_with(&f, env, &mut memo);
            let (score, reasons) = score(&f, ctx, &hints);
            Ranked {
                rank: 0,
                failure: f,
                score,
                reasons,
                hints,
            }
        })
        .collect();
    out.sort_by(compare);
    for (i, r) in out.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    out
}

fn compare(a: &Ranked, b: &Ranked) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| {
            errno_weight(b.failure.errno)
                .0
                .total_cmp(&errno_weight(a.failure.errno).0)
        })
        .then_with(|| b.failure.count.cmp(&a.failure.count))
        .then_with(|| a.failure.path.cmp(&b.failure.path))
        .then_with(|| a.failure.errno.cmp(&b.failure.errno))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Syscall;
    use crate::report::testutil::{TempDir, failure, t0};
    use std::collections::BTreeSet;

    fn ctx() -> RankContext {
        RankContext {
            window_start: t0(),
            now: t0() + Duration::from_secs(600),
            warmup_secs: 10,
            baseline: None,
        }
    }

    fn env(t: &TempDir) -> HintEnv {
        let mut e = HintEnv::new("/", t.path().join("dpkg-info"));
        e.lib_dirs.clear();
        e
    }

    fn position(r: &[Ranked], path: &str) -> usize {
        r.iter()
            .position(|x| x.failure.path == path.as_bytes())
            .unwrap_or_else(|| panic!("{path} not ranked"))
    }

    fn dump(r: &[Ranked]) -> String {
        r.iter()
            .map(|x| {
                format!(
                    "{} {:.2} {} {:?}\n",
                    x.rank,
                    x.score,
                    x.failure.path_lossy(),
                    x.reasons
                )
            })
            .collect()
    }

    #[test]
    fn misspelled_require_beats_frequent_optional_probes() {
        let t = TempDir::new();
        t.write("www/inc/class-x.php", "<?php");
        t.mkdir("www/cache");
        let require = failure(
            &t.abs("www/inc/class-x.phpp"),
            libc::ENOENT,
            &[(Syscall::Openat, 50), (Syscall::Newfstatat, 150)],
        );
        let mut rows = vec![require];
        for i in 0..10 {
            let sc = if i % 2 == 0 {
                Syscall::Access
            } else {
                Syscall::Newfstatat
            };
            rows.push(failure(
                &t.abs(&format!("www/cache/optional-{i}.php")),
                libc::ENOENT,
                &[(sc, 500)],
            ));
        }
        let r = rank(rows, &ctx(), &env(&t));
        assert_eq!(
            position(&r, &t.abs("www/inc/class-x.phpp")),
            0,
            "{}",
            dump(&r)
        );
        assert_eq!(r[0].rank, 1);
        assert!(
            r[0].reasons.contains(&"failed open (read)".to_string()),
            "{:?}",
            r[0].reasons
        );
        assert!(
            r[0].reasons
                .contains(&"near-identical file exists".to_string())
        );
        assert_eq!(
            r.iter().map(|x| x.rank).collect::<Vec<_>>(),
            (1..=11).collect::<Vec<_>>()
        );
    }

    #[test]
    fn missing_module_beats_nss_probes() {
        let t = TempDir::new();
        t.mkdir("modules");
        t.write(
            "dpkg-info/libapache2-mod-x:amd64.list",
            &format!("{}\n", t.abs("modules/mod_x.so")),
        );
        let module = failure(
            &t.abs("modules/mod_x.so"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let mut rows = vec![module];
        for p in [
            "/lib/x86_64-linux-gnu/libnss_db.so.2",
            "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libnss_sss.so.2",
            "/lib/x86_64-linux-gnu/tls/haswell/x86_64/libnss_compat.so.2",
            "/run/systemd/userdb/io.systemd.DynamicUser",
            "/etc/nsswitch.conf",
        ] {
            rows.push(failure(p, libc::ENOENT, &[(Syscall::Openat, 50)]));
        }
        let r = rank(rows, &ctx(), &env(&t));
        assert_eq!(position(&r, &t.abs("modules/mod_x.so")), 0, "{}", dump(&r));
        assert!(r[0].reasons.contains(&"library load".to_string()));
        assert!(r[0].reasons.contains(&"package file missing".to_string()));
        for x in &r[1..] {
            assert!(
                x.reasons.iter().any(|s| s.starts_with("probe pattern")),
                "{}",
                dump(&r)
            );
        }
    }

    #[test]
    fn eacces_open_beats_enoent_probe() {
        let t = TempDir::new();
        t.write("etc/app/config.php", "");
        // 0600: denied now. 0644: permissions allow access now; the EACCES open stays first.
        for mode in [0o600, 0o644] {
            t.chmod("etc/app/config.php", mode);
            let mut denied = failure(
                &t.abs("etc/app/config.php"),
                libc::EACCES,
                &[(Syscall::Openat, 1)],
            );
            denied.creds = [(65534, 65534)].into();
            let probe = failure(
                &t.abs("etc/app/local.php"),
                libc::ENOENT,
                &[(Syscall::Newfstatat, 1000)],
            );
            let r = rank(vec![probe, denied], &ctx(), &env(&t));
            assert_eq!(
                position(&r, &t.abs("etc/app/config.php")),
                0,
                "mode {mode:o}: {}",
                dump(&r)
            );
            if mode == 0o600 {
                assert!(r[0].reasons.contains(&"permission denied".to_string()));
                assert!(r[0].reasons.contains(&"denied by permissions".to_string()));
            }
        }
    }

    #[test]
    fn htaccess_demoted_but_present() {
        let t = TempDir::new();
        t.mkdir("www");
        let hta = failure(
            &t.abs("www/.htaccess"),
            libc::ENOENT,
            &[(Syscall::Openat, 5000)],
        );
        let under_file = failure(
            &t.abs("www/index.php/.htaccess"),
            libc::ENOTDIR,
            &[(Syscall::Openat, 5000)],
        );
        let missing = failure(
            &t.abs("www/lib/helper.php"),
            libc::ENOENT,
            &[(Syscall::Openat, 3)],
        );
        let r = rank(vec![hta, under_file, missing], &ctx(), &env(&t));
        assert_eq!(r.len(), 3);
        assert_eq!(
            position(&r, &t.abs("www/lib/helper.php")),
            0,
            "{}",
            dump(&r)
        );
        let h = &r[position(&r, &t.abs("www/.htaccess"))];
        assert!(
            h.reasons.contains(&"probe pattern (.htaccess)".to_string()),
            "{:?}",
            h.reasons
        );
    }

    #[test]
    fn novelty_boosts() {
        let t = TempDir::new();
        t.mkdir("a");
        let old = failure(&t.abs("a/old.php"), libc::ENOENT, &[(Syscall::Openat, 10)]);
        let mut new = failure(&t.abs("a/new.php"), libc::ENOENT, &[(Syscall::Openat, 10)]);
        new.first_seen = t0() + Duration::from_secs(300);
        new.last_seen = new.first_seen;
        let c = ctx();
        let r = rank(vec![old, new], &c, &env(&t));
        assert_eq!(position(&r, &t.abs("a/new.php")), 0, "{}", dump(&r));
        let since = format!(
            "new since {}",
            local_clock(t0() + Duration::from_secs(300), c.now)
        );
        assert!(r[0].reasons.contains(&since), "{:?}", r[0].reasons);
        assert!(r[1].reasons.contains(&"present from start".to_string()));
        assert!((r[0].score - r[1].score - W_NOVELTY).abs() < 1e-9);
    }

    #[test]
    fn history_baseline_demotes() {
        let t = TempDir::new();
        t.mkdir("a");
        let always = failure(
            &t.abs("a/always.php"),
            libc::ENOENT,
            &[(Syscall::Openat, 100)],
        );
        let fresh = failure(&t.abs("a/fresh.php"), libc::ENOENT, &[(Syscall::Openat, 1)]);
        let mut c = ctx();
        c.baseline = Some(BTreeSet::from([(always.path.clone(), libc::ENOENT)]));
        let r = rank(vec![always, fresh], &c, &env(&t));
        assert_eq!(position(&r, &t.abs("a/fresh.php")), 0, "{}", dump(&r));
        assert!(r[1].reasons.contains(&"has always failed".to_string()));
        assert!(r[0].reasons.iter().any(|s| s.starts_with("new since")));
    }

    #[test]
    fn probe_patterns() {
        let f = |p: &str, s: Syscall| failure(p, libc::ENOENT, &[(s, 1)]);
        let cases = [
            ("/var/www/a/b/.htaccess", Syscall::Openat, Some(".htaccess")),
            (
                "/var/www/index.html",
                Syscall::Newfstatat,
                Some("DirectoryIndex"),
            ),
            ("/var/www/index.html", Syscall::Openat, None),
            (
                "/usr/share/locale/de/LC_MESSAGES/php.mo",
                Syscall::Openat,
                Some("translation"),
            ),
            (
                "/usr/share/locale-langpack/de/x",
                Syscall::Openat,
                Some("locale"),
            ),
            (
                "/lib/x86_64-linux-gnu/tls/libfoo.so.1",
                Syscall::Openat,
                Some("ld.so search path"),
            ),
            (
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1",
                Syscall::Openat,
                None,
            ),
            ("/etc/ld.so.preload", Syscall::Access, Some("ld.so.preload")),
            (
                "/etc/php/8.2/apache2/conf.d/99-x.ini",
                Syscall::Newfstatat,
                Some("drop-in"),
            ),
            (
                "/etc/php/8.2/apache2/conf.d/20-redis.ini",
                Syscall::Openat,
                None,
            ),
            ("/etc/php/8.2/apache2/php.ini", Syscall::Openat, None),
            ("/usr/sbin/php.ini", Syscall::Openat, Some("php.ini search")),
            ("/proc/1/status", Syscall::Openat, Some("/proc")),
            ("/processes", Syscall::Openat, None),
            (
                "/run/systemd/userdb/io.systemd.Machine",
                Syscall::Openat,
                Some("userdb"),
            ),
        ];
        for (p, s, want) in cases {
            assert_eq!(probe_pattern(&f(p, s)), want, "{p} {s:?}");
        }
    }

    #[test]
    fn rate_never_dominates() {
        let c = ctx();
        let once = failure("/x/a.php", libc::ENOENT, &[(Syscall::Openat, 1)]);
        let many = failure(
            "/x/b.php",
            libc::ENOENT,
            &[(Syscall::Newfstatat, 1_000_000)],
        );
        assert!(score(&once, &c, &[]).0 > score(&many, &c, &[]).0);
        let zero = failure("/x/c.php", libc::ENOENT, &[]);
        let mut z = zero.clone();
        z.count = 0;
        assert!(score(&z, &c, &[]).0.is_finite());
    }
}
