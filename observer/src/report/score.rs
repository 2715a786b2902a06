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
| hints | sum of the weights of the live-filesystem hints, clamped to [{hmin}, {hmax}]; positive weights count {damp} for stat/access-only rows and for probe patterns | `near-identical file exists`, `package file missing`, `denied by permissions`, `exists now`, ... |
| named | +{named} when a line that loads files names it, in a file the processes read: `require`, Apache's `Include` and `LoadModule`/`LoadFile`, php.ini's `extension`, `zend_extension` and `extension_dir` (not `IncludeOptional` nor PHP's `include`, whose misses are not fatal) | `named by Include`, ... |
| changed | +{changed} when the file, a line that names it or its directory changed in the 30 minutes before its first failure, for a row with such a line or a strong hint (a change alone is everyday life) | `changed before the first failure` |

Hint weights: a near-identical name in the same directory (typo, case, extension variant) {near};
under a mistyped directory, a corrected path that exists {near_dir} (only a similar directory: {similar_dir});
the file of an installed Debian package is missing {package}; an existing program whose interpreter (`#!`) or dynamic loader is missing {interp}; the directory or file whose mode bits
deny the process's uid {denied} ({denied_more} for each further distinct denial); a symlink loop {sloop}; the
descriptor limit (EMFILE/ENFILE) {fd}; a noexec mount {noexec}; a missing soname/version link {version}; a
dangling symlink {dangling}; a name that differs only in digits (a version) {digits}; a component longer
than NAME_MAX {too_long} (ENAMETOOLONG with no name too long, a symlink expanded it: {expanded}); a read-only
filesystem {read_only}; a missing parent directory {parent}; O_NOFOLLOW meeting a symlink {nofollow}; a
directory opened as a file (EISDIR) {is_dir}; a file used as a directory {not_dir}. Negative: the path exists
now {exists}; a library the loader found elsewhere on its search path {elsewhere}; mode bits allow access now
{allowed}; the path resolves now (ENOTDIR, ELOOP) {resolves}. Informational hints (`not_checked`,
`missing_now`, `unresolved`, ...) {info}.

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
        damp = if HINT_DAMP == 0.5 {
            "half".to_string()
        } else {
            format!("{HINT_DAMP} times")
        },
        expanded = w(H_EXPANDED),
        nofollow = w(H_NOFOLLOW),
        is_dir = w(H_IS_DIRECTORY),
        info = w(H_INFO),
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

    fn h(kind: HintKind, weight: f64) -> Hint {
        Hint {
            kind,
            message: String::new(),
            suggestion: None,
            weight,
            remedy: None,
        }
    }

    /// What `hints` add to the score of `f`: its score with them minus its score without.
    fn hint_term(f: &Failure, hints: &[Hint]) -> f64 {
        let (c, e) = (ctx(), Evidence::default());
        score(f, &c, hints, &e).0 - score(f, &c, &[], &e).0
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// The hints term is the sum of the hints' weights, clamped to [HINTS_MIN, HINTS_MAX]: three
    /// strong hints count no more than the maximum, three negative ones no less than the
    /// minimum, and a sum inside the range counts whole.
    #[test]
    fn the_hints_term_is_clamped() {
        let open = failure("/x/a.php", libc::ENOENT, &[(Syscall::Openat, 1)]);
        let strong = [
            h(HintKind::NearMatch, H_NEAR),
            h(HintKind::PackageFileMissing, H_PACKAGE),
            h(HintKind::InterpreterMissing, H_INTERPRETER),
        ];
        const { assert!(H_NEAR + H_PACKAGE + H_INTERPRETER > HINTS_MAX) };
        let t = hint_term(&open, &strong);
        assert!(close(t, HINTS_MAX), "{t}");
        let negative = [
            h(HintKind::ExistsNow, H_EXISTS_NOW),
            h(HintKind::FoundElsewhere, H_FOUND_ELSEWHERE),
            h(HintKind::ResolvesNow, H_RESOLVES_NOW),
        ];
        const { assert!(H_EXISTS_NOW + H_FOUND_ELSEWHERE + H_RESOLVES_NOW < HINTS_MIN) };
        let t = hint_term(&open, &negative);
        assert!(close(t, HINTS_MIN), "{t}");
        // Inside the range: the plain sum, negative weights included.
        let inside = [
            h(HintKind::NearMatch, H_NEAR),
            h(HintKind::ParentMissing, H_PARENT_MISSING),
            h(HintKind::ExistsNow, H_EXISTS_NOW),
        ];
        let sum = H_NEAR + H_PARENT_MISSING + H_EXISTS_NOW;
        assert!(sum > HINTS_MIN && sum < HINTS_MAX);
        let t = hint_term(&open, &inside);
        assert!(close(t, sum), "{t}");
        // A weight that is not a number moves nothing.
        let t = hint_term(&open, &[h(HintKind::NearMatch, f64::NAN)]);
        assert!(close(t, 0.0), "{t}");
    }

    /// Positive hint weights count HINT_DAMP for stat/access-only rows and for probe patterns,
    /// whole for opens and execs; negative weights count whole everywhere.
    #[test]
    fn positive_hints_count_half_for_probes_and_stat_only_rows() {
        let near = [h(HintKind::NearMatch, H_NEAR)];
        let gone = [h(HintKind::ExistsNow, H_EXISTS_NOW)];
        let open = failure("/x/a.php", libc::ENOENT, &[(Syscall::Openat, 1)]);
        let exec = failure("/x/run", libc::ENOENT, &[(Syscall::Execve, 1)]);
        let stat = failure("/x/b.php", libc::ENOENT, &[(Syscall::Newfstatat, 4)]);
        let access = failure("/x/c.php", libc::ENOENT, &[(Syscall::Access, 4)]);
        // An open, but of a probe pattern.
        let probe = failure("/x/.htaccess", libc::ENOENT, &[(Syscall::Openat, 4)]);
        assert!(probe_pattern(&probe).is_some() && probe_pattern(&open).is_none());
        for (what, f, damp) in [
            ("open", &open, 1.0),
            ("exec", &exec, 1.0),
            ("stat", &stat, HINT_DAMP),
            ("access", &access, HINT_DAMP),
            ("probe pattern", &probe, HINT_DAMP),
        ] {
            let t = hint_term(f, &near);
            assert!(close(t, H_NEAR * damp), "{what}: {t}");
            let t = hint_term(f, &gone);
            assert!(
                close(t, H_EXISTS_NOW),
                "{what}: negative weights count whole: {t}"
            );
        }
        // The damping applies before the clamp: two strong hints on a stat stay under it.
        let t = hint_term(
            &stat,
            &[near[0].clone(), h(HintKind::PackageFileMissing, H_PACKAGE)],
        );
        assert!(close(t, (H_NEAR + H_PACKAGE) * HINT_DAMP), "{t}");
    }

    /// The scoring doc (the README's) shows each weight constant's own value in the sentence
    /// that describes it, exactly (one decimal is all a weight has), and every weight constant of
    /// this file is there.
    #[test]
    fn the_scoring_doc_shows_every_weight_constant_where_it_belongs() {
        let doc = scoring_doc();
        let w = |x: f64| format!("{x:.1}");
        // (constant, text before its value, text after it); the doc's line breaks are spaces here.
        let checks: Vec<(&str, f64, &str, &str)> = vec![
            ("W_EXEC", W_EXEC, "| intent | exec ", ";"),
            (
                "W_LIBRARY",
                W_LIBRARY,
                "open of a library (`*.so`, `*.so.*`) ",
                ";",
            ),
            ("W_OPEN", W_OPEN, "other open ", " (a row"),
            ("W_STAT", W_STAT, "; stat ", "; access"),
            ("W_ACCESS", W_ACCESS, "; access ", " |"),
            (
                "E_DENIED",
                E_DENIED,
                "EACCES, EPERM, ELOOP, EMFILE, ENFILE ",
                ";",
            ),
            ("E_LIMIT", E_LIMIT, "ENAMETOOLONG, EROFS ", ";"),
            ("E_OTHER", E_OTHER, "ENOENT and others ", ";"),
            ("E_ISDIR", E_ISDIR, "EISDIR ", ";"),
            ("E_NOTDIR", E_NOTDIR, "; ENOTDIR ", " (typical"),
            ("W_NOVELTY", W_NOVELTY, "ad-hoc: +", " if first seen"),
            (
                "W_NOVELTY",
                W_NOVELTY,
                "not in the baseline, -",
                " if it is",
            ),
            ("W_RATE", W_RATE, "| rate | ", " × log10(1 + count)"),
            ("RATE_MAX", RATE_MAX, "at most ", ":"),
            ("RATE_MAX", RATE_MAX, "1000, ", " from 10^4 on"),
            ("W_PROBE", W_PROBE, "| probe | ", " for known benign"),
            ("W_NAMED", W_NAMED, "| named | +", " when a line"),
            ("W_CHANGED", W_CHANGED, "| changed | +", " when the file"),
            ("H_NEAR", H_NEAR, "(typo, case, extension variant) ", ";"),
            (
                "H_NEAR_DIR",
                H_NEAR_DIR,
                "a corrected path that exists ",
                " (only",
            ),
            (
                "H_SIMILAR_DIR",
                H_SIMILAR_DIR,
                "only a similar directory: ",
                ")",
            ),
            (
                "H_PACKAGE",
                H_PACKAGE,
                "installed Debian package is missing ",
                ";",
            ),
            (
                "H_INTERPRETER",
                H_INTERPRETER,
                "or dynamic loader is missing ",
                ";",
            ),
            ("H_DENIED", H_DENIED, "deny the process's uid ", " ("),
            (
                "H_DENIED_MORE",
                H_DENIED_MORE,
                "(",
                " for each further distinct denial)",
            ),
            ("H_SYMLINK_LOOP", H_SYMLINK_LOOP, "a symlink loop ", ";"),
            (
                "H_FD_LIMIT",
                H_FD_LIMIT,
                "descriptor limit (EMFILE/ENFILE) ",
                ";",
            ),
            ("H_NOEXEC", H_NOEXEC, "a noexec mount ", ";"),
            (
                "H_VERSION_LINK",
                H_VERSION_LINK,
                "a missing soname/version link ",
                ";",
            ),
            ("H_DANGLING", H_DANGLING, "dangling symlink ", ";"),
            (
                "H_DIGITS",
                H_DIGITS,
                "differs only in digits (a version) ",
                ";",
            ),
            (
                "H_NAME_TOO_LONG",
                H_NAME_TOO_LONG,
                "longer than NAME_MAX ",
                " (ENAMETOOLONG",
            ),
            ("H_EXPANDED", H_EXPANDED, "a symlink expanded it: ", ")"),
            ("H_READ_ONLY", H_READ_ONLY, "a read-only filesystem ", ";"),
            (
                "H_PARENT_MISSING",
                H_PARENT_MISSING,
                "a missing parent directory ",
                ";",
            ),
            (
                "H_NOFOLLOW",
                H_NOFOLLOW,
                "O_NOFOLLOW meeting a symlink ",
                ";",
            ),
            (
                "H_IS_DIRECTORY",
                H_IS_DIRECTORY,
                "opened as a file (EISDIR) ",
                ";",
            ),
            (
                "H_NOT_DIR",
                H_NOT_DIR,
                "a file used as a directory ",
                ". Negative",
            ),
            ("H_EXISTS_NOW", H_EXISTS_NOW, "the path exists now ", ";"),
            (
                "H_FOUND_ELSEWHERE",
                H_FOUND_ELSEWHERE,
                "elsewhere on its search path ",
                ";",
            ),
            (
                "H_ALLOWED_NOW",
                H_ALLOWED_NOW,
                "mode bits allow access now ",
                ";",
            ),
            (
                "H_RESOLVES_NOW",
                H_RESOLVES_NOW,
                "the path resolves now (ENOTDIR, ELOOP) ",
                ".",
            ),
            ("H_INFO", H_INFO, "`unresolved`, ...) ", "."),
        ];
        let flat = doc.replace('\n', " ");
        for (name, value, before, after) in &checks {
            let shown = w(*value);
            assert_eq!(
                shown.parse::<f64>().ok(),
                Some(*value),
                "{name} = {value} is not shown exactly by one decimal"
            );
            let want = format!("{before}{shown}{after}");
            assert!(
                flat.contains(&want),
                "the scoring doc does not show {name} ({value}) as {want:?}:\n{doc}"
            );
        }
        let clamp = format!("clamped to [{HINTS_MIN}, {HINTS_MAX}]");
        assert!(flat.contains(&clamp), "{clamp:?} not in:\n{doc}");
        let damp = format!(
            "positive weights count {} for stat/access-only rows",
            if HINT_DAMP == 0.5 {
                "half".to_string()
            } else {
                format!("{HINT_DAMP} times")
            }
        );
        assert!(flat.contains(&damp), "{damp:?} not in:\n{doc}");
        let rates = format!(
            "{:.2} for 1 call, {:.1} for 100, {:.1} for 1000",
            rate(1),
            rate(100),
            rate(1000)
        );
        assert!(flat.contains(&rates), "{rates:?} not in:\n{doc}");
        // Every f64 weight of this file is checked above (WARMUP_SECS is a duration).
        let mut named: Vec<&str> = checks.iter().map(|c| c.0).collect();
        named.extend(["HINTS_MIN", "HINTS_MAX", "HINT_DAMP"]);
        for line in include_str!("score.rs").lines() {
            let Some(rest) = line.strip_prefix("pub(crate) const ") else {
                continue;
            };
            let Some((name, ty)) = rest.split_once(": ") else {
                continue;
            };
            if ty.starts_with("f64") {
                assert!(
                    named.contains(&name),
                    "weight {name} is not in the scoring doc's check (nor, probably, the doc)"
                );
            }
        }
    }
}
