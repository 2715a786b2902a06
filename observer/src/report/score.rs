//! Stage 4, the score: `intent + errno + novelty + rate + probe + hints`, every weight a named
//! constant here, and the documentation the README carries ([`scoring_doc`]) written from the
//! same constants, so the two cannot disagree.

use std::time::Duration;

use crate::model::Evidence;
use crate::model::{Failure, Hint, HintKind, IntentKey, OpenMode, RankContext, Reason, Syscall};
use crate::report::fix::STRONG;
use crate::report::probe::{is_library, lookup_probe, probe_only, probe_pattern};
use crate::time::local_clock;

// ---- Intent: what the call wanted from the file ----
pub(crate) const W_EXEC: f64 = 3.0;
pub(crate) const W_LIBRARY: f64 = 3.0;
pub(crate) const W_OPEN: f64 = 2.5;
pub(crate) const W_STAT: f64 = 1.0;
pub(crate) const W_ACCESS: f64 = 0.5;

// ---- Errno: how much it says "something is broken" ----
/// EACCES, EPERM, ELOOP, EMFILE, ENFILE.
pub(crate) const E_DENIED: f64 = 2.0;
/// ENAMETOOLONG, EROFS.
pub(crate) const E_LIMIT: f64 = 1.5;
/// ENOENT and every errno not named here.
pub(crate) const E_OTHER: f64 = 1.0;
pub(crate) const E_ISDIR: f64 = 0.5;
/// ENOTDIR: typical of `<file>/.htaccess`.
pub(crate) const E_NOTDIR: f64 = 0.3;

// ---- Novelty, rate, probe patterns ----
pub(crate) const W_NOVELTY: f64 = 1.5;
pub(crate) const W_RATE: f64 = 0.3;
/// The rate term stops growing at 10^4 calls: past that, frequency says nothing more.
pub(crate) const RATE_MAX: f64 = 1.2;
pub(crate) const W_PROBE: f64 = -3.0;
/// Failures first seen within this many seconds of the start count as "present from the start"
/// (they were failing before observer was started), not as new.
pub(crate) const WARMUP_SECS: u64 = 5;

// ---- Evidence around the culprit ----
/// A line that loads files (`require`, `Include`, `LoadModule`, `extension`) names it.
pub(crate) const W_NAMED: f64 = 2.0;
/// It, a referrer or its directory changed shortly before the first failure (with a referrer or
/// a strong hint: a change alone is everyday life).
pub(crate) const W_CHANGED: f64 = 1.0;

// ---- Hints: the sum of their weights, clamped ----
pub(crate) const HINTS_MIN: f64 = -3.0;
pub(crate) const HINTS_MAX: f64 = 6.0;
/// Positive hint weights count this much for stat/access-only rows and for probe patterns.
pub(crate) const HINT_DAMP: f64 = 0.5;

/// A near-identical name in the same directory (a typo, a case or extension variant).
pub(crate) const H_NEAR: f64 = 3.0;
/// Under a mistyped directory, a corrected path that exists.
pub(crate) const H_NEAR_DIR: f64 = 3.0;
/// Under a mistyped directory, only a similar directory exists.
pub(crate) const H_SIMILAR_DIR: f64 = 1.0;
/// A missing soname or version link (`libfoo.so.1` when `libfoo.so.1.2.3` exists).
pub(crate) const H_VERSION_LINK: f64 = 2.0;
/// A name that differs only in digits (a version).
pub(crate) const H_DIGITS: f64 = 1.5;
/// The file of an installed Debian package is missing.
pub(crate) const H_PACKAGE: f64 = 3.0;
/// The directory or file whose mode bits deny the process's uid.
pub(crate) const H_DENIED: f64 = 3.0;
/// Each further distinct denial.
pub(crate) const H_DENIED_MORE: f64 = 0.5;
pub(crate) const H_SYMLINK_LOOP: f64 = 2.0;
/// EMFILE/ENFILE: the descriptor limit.
pub(crate) const H_FD_LIMIT: f64 = 2.0;
pub(crate) const H_NOEXEC: f64 = 2.0;
pub(crate) const H_DANGLING: f64 = 1.5;
/// A component longer than NAME_MAX, or a path longer than PATH_MAX.
pub(crate) const H_NAME_TOO_LONG: f64 = 1.0;
/// ENAMETOOLONG with no component or path too long: a symlink probably expanded it.
pub(crate) const H_EXPANDED: f64 = 0.5;
pub(crate) const H_READ_ONLY: f64 = 1.0;
pub(crate) const H_PARENT_MISSING: f64 = 0.5;
/// O_NOFOLLOW met a symlink.
pub(crate) const H_NOFOLLOW: f64 = 0.5;
/// A directory opened as a file (EISDIR).
pub(crate) const H_IS_DIRECTORY: f64 = 0.5;
/// A file used as a directory (ENOTDIR).
pub(crate) const H_NOT_DIR: f64 = 0.3;
/// An exec of an existing file failed on its missing interpreter or dynamic loader.
pub(crate) const H_INTERPRETER: f64 = 3.0;
/// The path exists now.
pub(crate) const H_EXISTS_NOW: f64 = -2.0;
/// A library the loader found elsewhere on its search path.
pub(crate) const H_FOUND_ELSEWHERE: f64 = -2.0;
/// Mode bits allow the access now.
pub(crate) const H_ALLOWED_NOW: f64 = -0.5;
/// The path resolves now (ENOTDIR, ELOOP).
pub(crate) const H_RESOLVES_NOW: f64 = -0.5;
/// Informational hints move nothing.
pub(crate) const H_INFO: f64 = 0.0;

/// The rate term of `count` failing calls.
fn rate(count: u64) -> f64 {
    // `count` may be 0 for a hand-made row; ln_1p keeps it finite.
    (W_RATE * (count as f64).ln_1p() / std::f64::consts::LN_10).min(RATE_MAX)
}

/// The scoring formula, as Markdown for the README, from the constants above (a test checks that
/// the README carries it).
#[cfg(test)]
pub(crate) fn scoring_doc() -> String {
    let w = |x: f64| format!("{x:.1}");
    let rate_at = |n: u64, digits: usize| format!("{:.*}", digits, rate(n));
    format!(
        r#"### How failures are ranked

Each distinct (path, errno, place) row gets a score; the highest comes first. The score is a
plain sum, and every term that applies is shown to the operator as a short reason ("why: ...").

    score = intent + errno + novelty + rate + probe + hints + named + changed

| term | value | reason shown |
|------|-------|--------------|
| intent | exec {exec}; open of a library (`*.so`, `*.so.*`) {lib}; other open {open} (a row with an open *and* stats on the same path, like PHP's `require` of a missing file, counts as an open); an open that reads nothing, of a directory (`O_DIRECTORY`: `opendir`) or a path (`O_PATH`), {stat} like a stat; stat {stat}; access {access} | `failed exec`, `library load`, `failed open (read)`, `directory probe`, `O_PATH lookup`, `stat probe`, `access probe` |
| errno | EACCES, EPERM, ELOOP, EMFILE, ENFILE {e_denied}; ENAMETOOLONG, EROFS {e_limit}; ENOENT and others {e_other}; EISDIR {e_isdir}; ENOTDIR {e_notdir} (typical of `<file>/.htaccess`) | `permission denied`, `not found`, ... |
| novelty | ad-hoc: +{novelty} if first seen more than the warm-up ({warmup} s) after capture start, else 0 (a failure in the first seconds was most likely failing before observer started); history: +{novelty} if the (path, errno, place) is not in the baseline, -{novelty} if it is | `new since 12:03:10`, `present from start`, `has always failed` |
| rate | {w_rate} × log10(1 + count), at most {rate_max}: {r1} for 1 call, {r100} for 100, {r1000} for 1000, {rate_max} from 10^4 on. It orders rows that are otherwise alike and never outweighs the kind of call | (the COUNT column) |
| probe | {probe} for known benign lookups (below) | `probe pattern (.htaccess)` |
| hints | sum of the weights of the live-filesystem hints, clamped to [{hmin}, {hmax}]; positive weights count half for stat/access-only rows and for probe patterns | `near-identical file exists`, `package file missing`, `denied by permissions`, `exists now`, ... |
| named | +{named} when a line that loads files names it, in a file the processes read: `require`, Apache's `Include` and `LoadModule`/`LoadFile`, php.ini's `extension`, `zend_extension` and `extension_dir` (not `IncludeOptional` nor PHP's `include`, whose misses are not fatal) | `named by Include`, ... |
| changed | +{changed} when the file, a line that names it or its directory changed in the 30 minutes before its first failure, for a row with such a line or a strong hint (a change alone is everyday life) | `changed before the first failure` |

Hint weights: a near-identical name in the same directory (typo, case, extension variant) {near};
under a mistyped directory, a corrected path that exists {near_dir} (only a similar directory: {similar_dir});
the file of an installed Debian package is missing {package}; an existing program whose interpreter (`#!`) or dynamic loader is missing {interp}; the directory or file whose mode bits
deny the process's uid {denied} ({denied_more} for each further distinct denial); a symlink loop {sloop}; the
descriptor limit (EMFILE/ENFILE) {fd}; a noexec mount {noexec}; a missing soname/version link {version}; a
dangling symlink {dangling}; a name that differs only in digits (a version) {digits}; a component longer
than NAME_MAX {too_long}; a read-only filesystem {read_only}; a missing parent directory {parent}; a file used as a
directory {not_dir}. Negative: the path exists now {exists}; a library the loader found elsewhere on its
search path {elsewhere}; mode bits allow access now {allowed}; the path resolves now (ENOTDIR, ELOOP) {resolves}.

Probe patterns (demoted, never hidden): `.htaccess` and `.user.ini` at any level; DirectoryIndex
siblings (`index.html`, `index.htm`, `default.htm`, ...) and common 404s (`favicon.ico`,
`robots.txt`, `/.well-known/`) when only stat'ed; translations (`*.mo`, `*.gmo`) and
`/usr/share/locale*`, `/usr/lib/locale`; NSS and userdb (`/etc/nsswitch.conf`, `libnss_*`,
`/run/systemd/userdb`, ...); the dynamic loader's search-path probes (`tls/`, `glibc-hwcaps/`,
`haswell/`, `x86_64/` ... below a library directory) and `/etc/ld.so.preload`; glibc's optional
files (`/etc/gai.conf`, `/etc/suid-debug`); optional drop-ins (`*.d/` entries) when only stat'ed;
PHP's `php.ini` search outside `/etc/php`; `/proc` and `/sys`.

Ties are broken by errno weight, then count (higher first), then path.

So a `require` of a misspelled file (open {open} + ENOENT {e_other} + near match {near}) outranks an
optional file probed ten times per request (stat {stat} + ENOENT {e_other} + rate), and a module `.so`
that failed once ({lib} + {e_other} + package file missing {package}) outranks fifty NSS probes ({lib} + {e_other} +
rate - {probe_abs}).
"#,
        exec = w(W_EXEC),
        lib = w(W_LIBRARY),
        open = w(W_OPEN),
        stat = w(W_STAT),
        access = w(W_ACCESS),
        e_denied = w(E_DENIED),
        e_limit = w(E_LIMIT),
        e_other = w(E_OTHER),
        e_isdir = w(E_ISDIR),
        e_notdir = w(E_NOTDIR),
        novelty = w(W_NOVELTY),
        warmup = WARMUP_SECS,
        w_rate = w(W_RATE),
        rate_max = w(RATE_MAX),
        r1 = rate_at(1, 2),
        r100 = rate_at(100, 1),
        r1000 = rate_at(1000, 1),
        probe = w(W_PROBE),
        probe_abs = w(-W_PROBE),
        hmin = HINTS_MIN,
        hmax = HINTS_MAX,
        near = w(H_NEAR),
        near_dir = w(H_NEAR_DIR),
        similar_dir = w(H_SIMILAR_DIR),
        package = w(H_PACKAGE),
        denied = w(H_DENIED),
        denied_more = w(H_DENIED_MORE),
        sloop = w(H_SYMLINK_LOOP),
        fd = w(H_FD_LIMIT),
        noexec = w(H_NOEXEC),
        version = w(H_VERSION_LINK),
        dangling = w(H_DANGLING),
        digits = w(H_DIGITS),
        too_long = w(H_NAME_TOO_LONG),
        read_only = w(H_READ_ONLY),
        parent = w(H_PARENT_MISSING),
        not_dir = w(H_NOT_DIR),
        exists = w(H_EXISTS_NOW),
        named = w(W_NAMED),
        interp = w(H_INTERPRETER),
        changed = w(W_CHANGED),
        elsewhere = w(H_FOUND_ELSEWHERE),
        allowed = w(H_ALLOWED_NOW),
        resolves = w(H_RESOLVES_NOW),
    )
}

/// How much an errno says "something is broken".
pub(crate) fn errno_weight(errno: i32) -> f64 {
    match errno {
        libc::EACCES | libc::EPERM | libc::ELOOP | libc::EMFILE | libc::ENFILE => E_DENIED,
        libc::ENAMETOOLONG | libc::EROFS => E_LIMIT,
        libc::EISDIR => E_ISDIR,
        libc::ENOTDIR => E_NOTDIR,
        _ => E_OTHER,
    }
}

/// The intent term and its reason.
fn intent(f: &Failure) -> (f64, Reason) {
    let intents = f.intents();
    if intents.contains(&IntentKey::Exec) {
        return (W_EXEC, Reason::FailedExec);
    }
    if intents.contains(&IntentKey::Open) {
        if let Some(what) = lookup_probe(f) {
            return (W_STAT, Reason::LookupProbe(what));
        }
        if is_library(&f.path) {
            return (W_LIBRARY, Reason::LibraryLoad);
        }
        let creat = f.syscalls.contains_key(&Syscall::Creat);
        let mode = match (f.open_flags & 0o3, creat) {
            (_, true) | (1, _) => OpenMode::Write,
            (0, _) => OpenMode::Read,
            _ => OpenMode::ReadWrite,
        };
        return (W_OPEN, Reason::FailedOpen(mode));
    }
    if intents.contains(&IntentKey::Stat) {
        return (W_STAT, Reason::StatProbe);
    }
    if intents.contains(&IntentKey::Access) {
        return (W_ACCESS, Reason::AccessProbe);
    }
    (W_STAT, Reason::UnknownCall)
}

/// The reason shown for a hint that moved the score.
fn hint_reason(h: &Hint) -> Option<Reason> {
    if h.weight == 0.0 {
        return None;
    }
    Some(match h.kind {
        HintKind::NearMatch if h.weight >= 2.0 => Reason::NearIdentical,
        HintKind::NearMatch => Reason::SimilarName,
        HintKind::PermissionDenied if h.weight < 1.0 => return None,
        kind => Reason::Found(kind),
    })
}

/// The score of one row given its hints and the evidence around it, and the reasons shown for
/// it.
pub(crate) fn score(
    f: &Failure,
    ctx: &RankContext,
    hints: &[Hint],
    evidence: &Evidence,
) -> (f64, Vec<Reason>) {
    let mut reasons = Vec::new();
    let (wi, ri) = intent(f);
    reasons.push(ri);
    reasons.push(Reason::Errno(f.errno));
    let we = errno_weight(f.errno);

    let since = || Reason::NewSince(local_clock(f.first_seen, ctx.now));
    let novelty = match &ctx.baseline {
        Some(base) => {
            if base.contains(&(f.path.clone(), f.errno, f.place.clone())) {
                reasons.push(Reason::HasAlwaysFailed);
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
                reasons.push(Reason::PresentFromStart);
                0.0
            }
        }
    };

    let probe_label = probe_pattern(f);
    let probe = match probe_label {
        Some(label) => {
            reasons.push(Reason::ProbePattern(label));
            W_PROBE
        }
        None => 0.0,
    };

    let damp = if probe_label.is_some() || probe_only(f) {
        HINT_DAMP
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

    let named = evidence
        .referrers
        .iter()
        .filter_map(|r| r.directive)
        .find(|d| d.required());
    let wn = match named {
        Some(d) => {
            reasons.push(Reason::NamedBy(d.as_str()));
            W_NAMED
        }
        None => 0.0,
    };
    let backed = !evidence.referrers.is_empty() || hints.iter().any(|h| h.weight >= STRONG);
    let wc = if backed && evidence.changed.iter().any(|c| c.before_first) {
        reasons.push(Reason::ChangedBefore);
        W_CHANGED
    } else {
        0.0
    };

    (
        wi + we + novelty + rate(f.count) + probe + hsum + wn + wc,
        reasons,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{failure, rank_ctx as ctx};

    #[test]
    fn rate_never_dominates() {
        let c = ctx();
        let once = failure("/x/a.php", libc::ENOENT, &[(Syscall::Openat, 1)]);
        let many = failure(
            "/x/b.php",
            libc::ENOENT,
            &[(Syscall::Newfstatat, 1_000_000)],
        );
        let e = Evidence::default();
        assert!(score(&once, &c, &[], &e).0 > score(&many, &c, &[], &e).0);
        let zero = failure("/x/c.php", libc::ENOENT, &[]);
        let mut z = zero.clone();
        z.count = 0;
        assert!(score(&z, &c, &[], &e).0.is_finite());
    }
}
