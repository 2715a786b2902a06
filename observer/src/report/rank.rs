//! Stage 4, the ranking: hints for every row, its score ([`crate::report::score`]), best culprit
//! first.

use std::cmp::Ordering;

use std::collections::HashMap;
use std::rc::Rc;

use crate::model::{Evidence, Failure, Hint, IntentKey, RankContext, Ranked};
use crate::opened::OpenedFile;
use crate::place::{Place, ViewRef};
use crate::report::changed::changes;
use crate::report::fix::{Reload, STRONG, plan, reload_of, wanted};
use crate::report::hints::{HINT_TIME, HINT_TIME_LIVE, HintBudget, HintEnv, Memo, hints_with};
use crate::report::probe::{lookup_probe, probe_pattern};
use crate::report::referrers::{Budget, Library, referrers};
use crate::report::score::{errno_weight, score};
use crate::report::walk::{self, Outcome, dirname, join_child};

/// Most rows a report ranks, checks and shows; beyond them the least likely culprits (by their
/// score without hints) are counted in [`crate::model::Totals`] `unlisted_*`, not listed. This
/// bounds a report's memory and time under a path explosion.
pub(crate) const MAX_RANKED: usize = 10_000;

/// [`rank_at_most`] without a limit.
#[cfg(test)]
pub(crate) fn rank(
    failures: Vec<Failure>,
    ctx: &RankContext,
    env: &HintEnv,
    opened: &[OpenedFile],
) -> Vec<Ranked> {
    rank_at_most(failures, ctx, env, opened, usize::MAX).0
}

/// Computes hints against the live filesystem, scores, sorts (best first) and numbers the rows.
///
/// The score is `intent + errno + novelty + rate + probe + hints`: see [`SCORING_DOC`].
/// Ties: errno weight, then count (higher first), then path.
///
/// Cost: a few `lstat`s per row and one directory listing per directory with a missing file
/// (listings are shared between rows), plus reading dpkg's file lists once per `HintEnv`.
///
/// `env` checks the host's rows; a row seen in another view (a container, a private /tmp) is
/// checked in that view, with an environment and a memo of its own.
///
/// Only the `max` likeliest culprits (by their score without hints) are ranked; returns them,
/// and how many other rows there were and their failures (counted, not ranked).
pub(crate) fn rank_at_most(
    failures: Vec<Failure>,
    ctx: &RankContext,
    env: &HintEnv,
    opened: &[OpenedFile],
    max: usize,
) -> (Vec<Ranked>, u64, u64) {
    // One budget for the report's hint checks, spent on the likeliest culprits first: rows are
    // checked in the order of their score without hints.
    let hint_budget = Rc::new(HintBudget::new(if ctx.evidence {
        HINT_TIME
    } else {
        HINT_TIME_LIVE
    }));
    let mut memo = Memo::with(hint_budget.clone());
    let mut library = Library::default();
    let mut budget = Budget::new();
    let mut views: Vec<(ViewRef, Option<HintEnv>, Memo)> = Vec::new();
    let none = Evidence::default();
    let mut order: Vec<(f64, Failure)> = failures
        .into_iter()
        .map(|f| (score(&f, ctx, &[], &none).0, f))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let rest = order.split_off(max.min(order.len()));
    let unlisted_failures = rest.iter().map(|(_, f)| f.count).sum();
    let unlisted_paths = rest.len() as u64;
    drop(rest);
    let mut out: Vec<Ranked> = order
        .into_iter()
        .map(|(_, f)| {
            let cached = if ctx.evidence {
                None
            } else {
                env.cached_hints(&f)
            };
            let hints = match cached {
                Some(h) => h,
                None if !ctx.hints => Vec::new(),
                None => {
                    let h = if f.view.is_host() {
                        hints_with(&f, Some(env), &mut memo)
                    } else {
                        let i = match views.iter().position(|(v, ..)| *v == f.view) {
                            Some(i) => i,
                            None => {
                                views.push((
                                    f.view.clone(),
                                    HintEnv::for_view(&f.view),
                                    Memo::with(hint_budget.clone()),
                                ));
                                views.len() - 1
                            }
                        };
                        let (_, env, memo) = &mut views[i];
                        hints_with(&f, env.as_ref(), memo)
                    };
                    env.cache_hints(&f, &h);
                    h
                }
            };
            let evidence = if ctx.evidence && actionable(&f) && f.view.network_fs(&f.path).is_none()
            {
                let root = if f.view.is_host() {
                    Some(env.root.as_path())
                } else {
                    f.view.root()
                };
                search(&f, &hints, root, opened, &mut library, &mut budget, ctx)
            } else {
                Evidence::default()
            };
            let (score, reasons) = score(&f, ctx, &hints, &evidence);
            Ranked {
                rank: 0,
                failure: f,
                score,
                reasons,
                hints,
                evidence,
            }
        })
        .collect();
    out.sort_by(compare);
    // The fixes, for the culprits worth one; each reloads its processes' service.
    let mut reloads: HashMap<(Vec<String>, Place), Option<Reload>> = HashMap::new();
    for (i, r) in out.iter_mut().enumerate() {
        r.rank = i + 1;
        if ctx.evidence && actionable(&r.failure) && wanted(&r.hints, &r.evidence.referrers) {
            let f = &r.failure;
            let comms: Vec<String> = f.comms.iter().cloned().collect();
            let pids: Vec<u32> = f.pids.iter().copied().collect();
            let reload = reloads
                .entry((comms.clone(), f.place.clone()))
                .or_insert_with(|| reload_of(&comms, &f.place, &pids))
                .clone();
            r.evidence.plan = Some(plan(f, &r.hints, &r.evidence.referrers, reload));
        }
    }
    (out, unlisted_paths, unlisted_failures)
}

/// Is `f` a failure whose reference is worth looking for: a file the process meant to open or
/// run (not a probe), missing, denied or unreachable, with a path that means something?
fn actionable(f: &Failure) -> bool {
    let intents = f.intents();
    matches!(
        f.errno,
        libc::ENOENT | libc::ENOTDIR | libc::EACCES | libc::EPERM | libc::ELOOP
    ) && !f.unresolved
        && !f.truncated
        && f.path.starts_with(b"/")
        && probe_pattern(f).is_none()
        && lookup_probe(f).is_none()
        && (intents.contains(&IntentKey::Open) || intents.contains(&IntentKey::Exec))
}

/// The referrers of `f` and what changed around it. `root` is where its view's files are.
fn search(
    f: &Failure,
    hints: &[Hint],
    root: Option<&std::path::Path>,
    opened: &[OpenedFile],
    library: &mut Library,
    budget: &mut Budget,
    ctx: &RankContext,
) -> Evidence {
    // The first missing directory on the path, and the deepest one that exists.
    let (missing, dir) = match root.map(|r| walk::walk(r, &f.path, true).outcome) {
        Some(Outcome::Missing {
            parent, name, rest, ..
        }) if !rest.is_empty() => (Some(join_child(&parent, &name)), Some(parent)),
        Some(Outcome::Missing { parent, .. }) => (None, Some(parent)),
        _ => (None, Some(dirname(&f.path).to_vec())),
    };
    let refs = referrers(f, missing.as_deref(), opened, library, budget);
    // Files change all the time: a change is worth showing next to a culprit, one a line names
    // or a strong hint backs, not next to any miss.
    let backed = !refs.is_empty() || hints.iter().any(|h| h.weight >= STRONG);
    let changed = if backed {
        changes(f, &refs, dir.as_deref(), ctx.now)
    } else {
        Vec::new()
    };
    Evidence {
        referrers: refs,
        changed,
        plan: None,
    }
}

fn compare(a: &Ranked, b: &Ranked) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| errno_weight(b.failure.errno).total_cmp(&errno_weight(a.failure.errno)))
        .then_with(|| b.failure.count.cmp(&a.failure.count))
        .then_with(|| a.failure.path.cmp(&b.failure.path))
        .then_with(|| a.failure.errno.cmp(&b.failure.errno))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HintKind, OpenMode, Reason, Syscall};
    use crate::report::score::W_NOVELTY;
    use crate::testutil::{TempDir, failure, rank_ctx as ctx, t0};
    use crate::time::local_clock;
    use std::collections::BTreeSet;
    use std::time::Duration;

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
    fn a_missing_include_outranks_a_frequent_optional_opendir_and_its_line_is_found() {
        use crate::opened::OpenedFile;
        use crate::place::Place;
        use crate::report::fix::Plan;
        let t = TempDir::new();
        t.mkdir("conf/conf-available");
        t.mkdir("theme");
        let inc = t.abs("conf/conf-available/security.conf");
        t.write(
            "conf/apache2.conf",
            &format!("ServerRoot /etc/apache2\n# Include {inc}\nInclude {inc}\n"),
        );
        let include = failure(&inc, libc::ENOENT, &[(Syscall::Openat, 1)]);
        let mut langs = failure(
            &t.abs("theme/languages"),
            libc::ENOENT,
            &[(Syscall::Openat, 400)],
        );
        langs.open_flags = 0o200000; // O_DIRECTORY: opendir()
        let opened = [OpenedFile {
            path: t.abs("conf/apache2.conf").into(),
            place: Place::default(),
        }];
        let r = rank(vec![langs, include], &ctx(), &env(&t), &opened);
        assert_eq!(position(&r, &inc), 0, "{}", dump(&r));
        let top = &r[0];
        assert!(
            top.reasons.contains(&Reason::NamedBy("Include")),
            "{:?}",
            top.reasons
        );
        let refs = &top.evidence.referrers;
        assert_eq!(
            refs.len(),
            1,
            "the commented line is not a referrer: {refs:?}"
        );
        assert_eq!(refs[0].line, 3);
        // Nothing like it exists: the Include is commented out.
        let Some(Plan::Fix(fix)) = &top.evidence.plan else {
            panic!("{:?}", top.evidence.plan)
        };
        assert!(fix.why.contains("commented out"), "{fix:?}");
        let probe = &r[1];
        assert!(
            probe
                .reasons
                .contains(&Reason::LookupProbe("directory probe")),
            "{:?}",
            probe.reasons
        );
        assert_eq!(probe.evidence.plan, None, "a probe gets no fix");
    }

    /// 1,000 missing long names against a 20,000-entry directory would be 20 million bounded
    /// edit distances: the report spends its comparison budget on the likeliest rows and says
    /// "not checked" for the rest, and the likeliest are checked for real.
    #[test]
    fn a_thousand_misses_in_a_huge_directory_spend_a_bounded_budget_best_first() {
        use crate::report::hints::MAX_COMPARISONS;
        let t = TempDir::new();
        t.mkdir("big");
        let pad = "n".repeat(200);
        for i in 0..20_000 {
            std::fs::File::create(t.path().join(format!("big/{pad}{i:05}.php"))).unwrap();
        }
        let mut rows: Vec<Failure> = (0..1000)
            .map(|i| {
                let p = t.abs(&format!("big/{pad}{i:05}.phpp"));
                failure(&p, libc::ENOENT, &[(Syscall::Openat, 1)])
            })
            .collect();
        // One likelier culprit: it fails far more often.
        rows[999].count = 500;
        rows[999].syscalls.insert(Syscall::Openat, 500);
        let r = rank(rows, &ctx(), &env(&t), &[]);
        assert_eq!(r.len(), 1000);
        let not_checked = r
            .iter()
            .filter(|x| x.hints.iter().any(|h| h.kind == HintKind::NotChecked))
            .count();
        let per_row = 20_000u64;
        assert!(
            not_checked as u64 >= 1000 - MAX_COMPARISONS / per_row,
            "{not_checked} rows not checked"
        );
        assert_eq!(r[0].failure.count, 500, "{}", dump(&r[..3]));
        assert!(
            r[0].hints.iter().any(|h| h.kind == HintKind::NearMatch),
            "the likeliest row is checked: {:?}",
            r[0].hints
        );
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
        let r = rank(rows, &ctx(), &env(&t), &[]);
        assert_eq!(
            position(&r, &t.abs("www/inc/class-x.phpp")),
            0,
            "{}",
            dump(&r)
        );
        assert_eq!(r[0].rank, 1);
        assert!(
            r[0].reasons.contains(&Reason::FailedOpen(OpenMode::Read)),
            "{:?}",
            r[0].reasons
        );
        assert!(r[0].reasons.contains(&Reason::NearIdentical));
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
        let r = rank(rows, &ctx(), &env(&t), &[]);
        assert_eq!(position(&r, &t.abs("modules/mod_x.so")), 0, "{}", dump(&r));
        assert!(r[0].reasons.contains(&Reason::LibraryLoad));
        assert!(
            r[0].reasons
                .contains(&Reason::Found(HintKind::PackageFileMissing))
        );
        for x in &r[1..] {
            assert!(
                x.reasons
                    .iter()
                    .any(|s| matches!(s, Reason::ProbePattern(_))),
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
            let r = rank(vec![probe, denied], &ctx(), &env(&t), &[]);
            assert_eq!(
                position(&r, &t.abs("etc/app/config.php")),
                0,
                "mode {mode:o}: {}",
                dump(&r)
            );
            if mode == 0o600 {
                assert!(r[0].reasons.contains(&Reason::Errno(libc::EACCES)));
                assert!(
                    r[0].reasons
                        .contains(&Reason::Found(HintKind::PermissionDenied))
                );
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
        let r = rank(vec![hta, under_file, missing], &ctx(), &env(&t), &[]);
        assert_eq!(r.len(), 3);
        assert_eq!(
            position(&r, &t.abs("www/lib/helper.php")),
            0,
            "{}",
            dump(&r)
        );
        let h = &r[position(&r, &t.abs("www/.htaccess"))];
        assert!(
            h.reasons.contains(&Reason::ProbePattern(".htaccess")),
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
        let r = rank(vec![old, new], &c, &env(&t), &[]);
        assert_eq!(position(&r, &t.abs("a/new.php")), 0, "{}", dump(&r));
        let since = Reason::NewSince(local_clock(t0() + Duration::from_secs(300), c.now));
        assert!(r[0].reasons.contains(&since), "{:?}", r[0].reasons);
        assert!(r[1].reasons.contains(&Reason::PresentFromStart));
        assert!((r[0].score - r[1].score - W_NOVELTY).abs() < 1e-9);
    }

    /// Equal scores are ordered by errno weight, then count (higher first), then path; and two
    /// rows that tie for real in a report come out in path order.
    #[test]
    fn ties_are_broken_by_errno_weight_then_count_then_path() {
        let ranked = |path: &str, errno: i32, count: u64| {
            let mut f = failure(path, errno, &[(Syscall::Openat, count)]);
            f.count = count;
            Ranked {
                rank: 0,
                failure: f,
                score: 5.0,
                reasons: Vec::new(),
                hints: Vec::new(),
                evidence: Evidence::default(),
            }
        };
        // Listed in the wrong order on every key.
        let mut rows = vec![
            ranked("/b", libc::ENOENT, 3),
            ranked("/a", libc::ENOENT, 3),
            ranked("/c", libc::ENOENT, 9),
            ranked("/z", libc::ENOTDIR, 50),
            ranked("/y", libc::EACCES, 1),
        ];
        let mut better = ranked("/w", libc::ENOTDIR, 1);
        better.score = 5.5;
        rows.push(better);
        rows.sort_by(compare);
        let order: Vec<String> = rows.iter().map(|r| r.failure.path_lossy()).collect();
        // The higher score; EACCES (errno weight 2) before ENOENT (1) before ENOTDIR (0.3);
        // among the ENOENTs, 9 before 3, and /a before /b.
        assert_eq!(order, ["/w", "/y", "/c", "/a", "/b", "/z"]);

        // Through the ranking: two rows alike in everything but the path.
        let t = TempDir::new();
        t.mkdir("d");
        let r = rank(
            vec![
                failure(&t.abs("d/b.php"), libc::ENOENT, &[(Syscall::Openat, 4)]),
                failure(&t.abs("d/a.php"), libc::ENOENT, &[(Syscall::Openat, 4)]),
            ],
            &ctx(),
            &env(&t),
            &[],
        );
        assert_eq!(r[0].score, r[1].score, "{}", dump(&r));
        assert_eq!(position(&r, &t.abs("d/a.php")), 0, "{}", dump(&r));
        assert_eq!((r[0].rank, r[1].rank), (1, 2));
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
        c.baseline = Some(BTreeSet::from([(
            always.path.clone(),
            libc::ENOENT,
            crate::place::Place::default(),
        )]));
        let r = rank(vec![always, fresh], &c, &env(&t), &[]);
        assert_eq!(position(&r, &t.abs("a/fresh.php")), 0, "{}", dump(&r));
        assert!(r[1].reasons.contains(&Reason::HasAlwaysFailed));
        assert!(
            r[0].reasons
                .iter()
                .any(|s| matches!(s, Reason::NewSince(_)))
        );
    }
}
