//! Continuous capture (`observer record`) across a full restart of the private Apache.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use observer_tests::{Observer, TempDir, history_report, run_observer};
use serde_json::Value;

use crate::harness::*;
use crate::report::*;

/// How often the recorder writes its history here (`--flush-interval 1s`).
const FLUSH: Duration = Duration::from_secs(1);

/// `observer record` with its default selection (the web stack: `apache2`, `httpd`, `php-fpm*`) into `db`, every
/// second. `--config /dev/null`: a configuration file of the host cannot change what it watches.
pub(crate) fn record(db: &str) -> Observer {
    let rec = Observer::start_with(
        &[
            "record",
            "--db",
            db,
            "--flush-interval",
            "1s",
            "--config",
            "/dev/null",
        ],
        &[],
    );
    assert!(
        rec.stderr
            .iter()
            .any(|l| l.contains("watching apache2 (") && l.contains("php-fpm* (")),
        "the default selection is the web stack: {:?}",
        rec.stderr
    );
    rec
}

/// SIGTERM, as `systemctl stop` sends it: the recorder writes what it holds and exits with 0.
pub(crate) fn stop_record(mut rec: Observer) {
    rec.signal(libc::SIGTERM);
    rec.wait_stderr("stopped; history is in", Duration::from_secs(20));
    // Its exit status, read without reaping it: the guard's drop reaps it.
    // SAFETY: a zeroed siginfo_t is a valid value of the plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our own child fills `info`.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            rec.pid(),
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(rc, 0, "waitid: {}", std::io::Error::last_os_error());
    // SAFETY: waitid filled a SIGCHLD siginfo, whose si_status is set.
    let status = unsafe { info.si_status() };
    assert!(
        info.si_code == libc::CLD_EXITED && status == 0,
        "observer record after SIGTERM: si_code {} status {status}: {:?}",
        info.si_code,
        rec.stderr
    );
}

/// The history once `path` has failed and its count stopped growing: two reads more than a
/// flush interval apart agree (read while the recorder runs).
fn settled_report(db: &str, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        let r = history_report(db);
        let c = find(&r, path, "ENOENT").and_then(|row| row["count"].as_u64());
        if c.is_some() && c == last {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never settled in the history (last {c:?}):\n{}",
            dump(&r)
        );
        last = c;
        std::thread::sleep(FLUSH + Duration::from_millis(300));
    }
}

/// `n` requests of a PHP page on the broken site: each is a 500.
fn broken_requests(apache: &Apache, n: u64) {
    for i in 0..n {
        let r = apache.get("/index.php/about");
        assert_eq!(
            r.status,
            500,
            "request {i} on the broken site: {}\n{}",
            String::from_utf8_lossy(&r.body),
            apache.logs()
        );
    }
}

fn pids_in(row: &Value) -> BTreeSet<u32> {
    row["pids"]
        .as_array()
        .unwrap_or_else(|| panic!("no pids in {row:#}"))
        .iter()
        .map(|p| p.as_u64().expect("a pid") as u32)
        .collect()
}

fn unix_minute(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() / 60
}

/// Continuous capture across a full restart of the service: `observer record`, with its default
/// selection, keeps counting the misspelled require when every process of Apache is replaced,
/// and counts it exactly: N requests before the restart and M after fail the same number of
/// times each, nothing is lost, nothing counted twice, and one recording session spans both
/// generations of Apache.
pub(crate) fn record_counts_the_misspelled_require_exactly_across_a_full_apache_restart(
    stack: Stack,
) {
    // Different, so that a count of k * N or k * M alone cannot pass for k * (N + M).
    const N: u64 = 7;
    const M: u64 = 5;
    let started = Instant::now();
    // Apache first: it takes the suite's lock, so the recorder sees no other scenario's apache2.
    let mut apache = Apache::start(stack);
    apache.edit("www/app/bootstrap.php", "/helpers.php'", "/helpers.phpp'");
    let culprit = apache.www("app/helpers.phpp");
    let dir = TempDir::new("apache-record");
    let db = dir.join("observer.db");
    // Declared after `apache`: dropped (killed) first, before the lock is released.
    let rec = record(&db);

    // Generation 1: N requests, then the history as it stands while the recorder runs.
    let mut gen1: BTreeSet<u32> = apache.pids().into_iter().collect();
    broken_requests(&apache, N);
    gen1.extend(apache.pids());
    let mid = settled_report(&db, &culprit);
    // Every failure of generation 1 is in the history by now, so dated no later than this.
    let gen1_dated_by = SystemTime::now();
    let row = find(&mid, &culprit, "ENOENT").expect("settled");
    // Counted without observer: N requests answered 500, each failing on the require as PHP's
    // require of a missing file does.
    assert_calls(
        &mid,
        row,
        &REQUIRE_MISSING,
        N,
        "request failed on the require",
    );
    let per_request: u64 = REQUIRE_MISSING.iter().map(|(_, n)| n).sum();
    let mid_pids = pids_in(row);
    assert!(
        !mid_pids.is_empty() && mid_pids.is_subset(&gen1),
        "before the restart, the failing pids {mid_pids:?} are generation 1's {gen1:?}"
    );

    // A full restart: every process gone, then all-new ones; generation 2 fails in a later
    // minute than generation 1 (waiting for the next one if the restart took less), so that the
    // history's sample pids hold one of each.
    apache.restart();
    while unix_minute(SystemTime::now()) <= unix_minute(gen1_dated_by) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut gen2: BTreeSet<u32> = apache.pids().into_iter().collect();
    broken_requests(&apache, M);
    gen2.extend(apache.pids());
    assert!(
        gen1.is_disjoint(&gen2),
        "the restart must change every pid: before {gen1:?}, after {gen2:?}"
    );
    std::thread::sleep(FLUSH + Duration::from_millis(500));
    stop_record(rec);

    let r = history_report(&db);
    eprintln!("{}", dump(&r));
    let top = culprit_first(&r, &culprit, "ENOENT", &apache.php_comm());
    assert_eq!(
        apache.error_log_count(&format!("Failed opening required '{culprit}'")) as u64,
        N + M,
        "one require error logged per request:\n{}",
        apache.logs()
    );
    assert_calls(
        &r,
        top,
        &REQUIRE_MISSING,
        N + M,
        "request failed on the require",
    );
    let h = hint(&r, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {} (exists)", apache.www("app/helpers.php")),
        "{h:#}"
    );
    assert_eq!(r["totals"]["lost"], 0, "{}", r["totals"]);
    assert_eq!(r["history"]["dropped"], 0, "{}", r["history"]);
    let sessions = r["history"]["sessions"].as_array().expect("sessions");
    assert!(
        sessions.len() == 1 && sessions[0]["ended"] == true,
        "one recording session across the restart, ended by SIGTERM: {sessions:#?}"
    );
    assert_eq!(
        r["filter"]["comms"],
        serde_json::json!(["apache2", "httpd", "php-fpm*"])
    );
    // The history keeps one sample pid per (path, errno, minute, syscall, process name, uid,
    // gid), the latest: the two generations failed in different minutes, so one of each.
    let pids = pids_in(top);
    let all: BTreeSet<u32> = gen1.union(&gen2).copied().collect();
    assert!(
        pids.is_subset(&all) && !pids.is_disjoint(&gen2) && !pids.is_disjoint(&gen1),
        "pids {pids:?} must hold one of generation 1 {gen1:?} and one of generation 2 {gen2:?} \
         (they failed in different minutes)"
    );

    // The path's timeline: every failing call in failing minutes, one episode.
    let (code, out, err) = run_observer(&["timeline", &culprit, "--db", &db, "--format", "json"]);
    assert_eq!(code, 0, "observer timeline failed: {err}");
    let t: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("observer timeline printed invalid JSON ({e}): {out}"));
    assert_eq!(t["path"], culprit.as_str(), "{t:#}");
    let errnos = t["errnos"].as_array().expect("errnos");
    assert_eq!(errnos.len(), 1, "{t:#}");
    let e = &errnos[0];
    assert_eq!(e["errno"], "ENOENT", "{t:#}");
    assert_eq!(e["count"], top["count"], "{t:#}");
    let minutes = e["minutes"].as_array().expect("minutes");
    let counts: Vec<u64> = minutes
        .iter()
        .map(|m| m["count"].as_u64().expect("a count"))
        .collect();
    assert!(
        !counts.is_empty() && counts.iter().all(|&c| c > 0),
        "failing minutes: {t:#}"
    );
    assert_eq!(counts.iter().sum::<u64>(), per_request * (N + M), "{t:#}");
    assert!(
        minutes
            .iter()
            .all(|m| m["comms"] == serde_json::json!([apache.php_comm()])),
        "{t:#}"
    );
    assert_eq!(e["episodes"].as_array().map(Vec::len), Some(1), "{t:#}");

    eprintln!(
        "record across a restart: {N} + {M} requests, {per_request} failing calls each: {} in {} \
         minute(s); pids before {mid_pids:?}, after {pids:?} (generations {gen1:?} -> {gen2:?}); \
         {:.1} s",
        top["count"],
        counts.len(),
        started.elapsed().as_secs_f64()
    );
}
