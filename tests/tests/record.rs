//! Continuous capture against the real kernel: `observer record` into a history database,
//! `kill -9` and restarts, `observer report`/`timeline` from the history (also unprivileged),
//! `/metrics` parsed as OpenMetrics, reloads, a second recorder, and a full disk.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use observer_tests::openmetrics::{self, find};
use observer_tests::{
    Observer, TempDir, failer, observer_bin, row, rows_for, run_observer, unique_comm,
};
use serde_json::Value;

const MISSING_DIR: &str = "/nonexistent-observer-record";

fn missing(name: &str) -> String {
    format!("{MISSING_DIR}/{name}")
}

/// The host:port a recorder started with `--metrics 127.0.0.1:0` says it serves on.
fn metrics_addr(obs: &mut Observer) -> String {
    let line = obs.wait_stderr("metrics on http://", Duration::from_secs(5));
    line.split("metrics on http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("address")
        .to_string()
}

use observer_tests::history_report as report;
use observer_tests::peak_rss_kib;

fn count_of(report: &Value, path: &str) -> u64 {
    rows_for(report, path.as_bytes())
        .iter()
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum()
}

/// Polls the history until `path` has `n` failures (proves a flush happened).
fn wait_for_count(db: &str, path: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = report(db);
        let c = count_of(&r, path);
        if c == n {
            return;
        }
        assert!(c < n, "{path}: {c} > {n}: {r:#}");
        assert!(
            Instant::now() < deadline,
            "{path} never reached {n} in the history (last {c}): {r:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn record_survives_kill_9_and_a_restart_and_counts_nothing_twice() {
    let dir = TempDir::new("rec-kill");
    let db = dir.join("history/observer.db");
    let comm = unique_comm("obs-rec");
    let p1 = missing("phase1.conf");
    let p2 = missing("phase2.conf");
    let shared = missing("shared.php");

    let obs = Observer::record(&comm, &db, &[]);
    failer(&["--comm", &comm, "--repeat", "3", &format!("openat:{p1}")]);
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "2",
        &format!("newfstatat:{shared}"),
    ]);
    // Wait for a flush that holds all of phase 1, and one more interval, then crash.
    wait_for_count(&db, &p1, 3);
    wait_for_count(&db, &shared, 2);
    std::thread::sleep(Duration::from_millis(1500));
    obs.kill9();

    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600, "the history is private");
    assert_eq!(mode(&dir.join("history")), 0o700);

    // A restart takes the lock the dead process held, and starts from fresh kernel maps.
    let obs = Observer::record(&comm, &db, &[]);
    failer(&["--comm", &comm, "--repeat", "4", &format!("openat:{p2}")]);
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "5",
        &format!("newfstatat:{shared}"),
    ]);
    // Directory opens on the way (O_PATH fds, closed at once) are not failures, and make the
    // dirfd-relative failure absolute.
    failer(&[
        "--comm",
        &comm,
        "chase:/usr/share/nonexistent-observer-record/userdb",
    ]);
    let (_, err) = obs.stop_raw();
    assert!(
        err.iter().any(|l| l.contains("stopped; history is in")),
        "{err:?}"
    );

    let r = report(&db);
    assert_eq!(row(&r, p1.as_bytes(), "ENOENT")["count"], 3, "{r:#}");
    assert_eq!(row(&r, p2.as_bytes(), "ENOENT")["count"], 4, "{r:#}");
    let s = row(&r, shared.as_bytes(), "ENOENT");
    assert_eq!(s["count"], 7, "2 before the crash + 5 after: {r:#}");
    assert_eq!(s["syscalls"]["newfstatat"], 7);
    assert_eq!(s["comms"][0], comm.as_str());
    let chased = row(&r, b"/usr/share/nonexistent-observer-record", "ENOENT");
    assert_eq!(chased["count"], 1, "{r:#}");
    assert_eq!(chased["resolved"], true);
    assert_eq!(r["totals"]["failures"], 15, "{r:#}");
    assert_eq!(r["totals"]["distinct"], 4);
    assert_eq!(r["totals"]["lost"], 0);
    assert_eq!(
        r["history"]["sessions"].as_array().unwrap().len(),
        2,
        "{r:#}"
    );
    assert_eq!(r["filter"]["comms"][0], comm.as_str());
    // The ranked report's own fields are there, as in ad-hoc mode.
    assert!(s["score"].is_number() && s["reasons"].is_array() && s["hints"].is_array());

    // The table format, and the same window as a timeline.
    let (code, out, err) = run_observer(&["report", "--db", &db, "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("history "), "{out}");
    assert!(out.contains(&p2) && out.contains("failures 15"), "{out}");
    let (code, out, err) = run_observer(&["timeline", &shared, "--db", &db, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["path"], shared.as_str());
    assert_eq!(t["errnos"][0]["errno"], "ENOENT");
    assert_eq!(t["errnos"][0]["count"], 7, "{t:#}");
    let minutes: u64 = t["errnos"][0]["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["count"].as_u64().unwrap())
        .sum();
    assert_eq!(minutes, 7);
    let (code, out, _) = run_observer(&["timeline", &shared, "--db", &db]);
    assert_eq!(code, 0);
    assert!(out.contains("episode 1: started"), "{out}");
    let (code, out, _) = run_observer(&["timeline", &missing("shared.phpp"), "--db", &db]);
    assert_eq!(code, 0);
    assert!(
        out.contains("no failures recorded") && out.contains(&shared),
        "suggests the recorded look-alike: {out}"
    );
}

#[test]
fn a_second_recorder_on_the_same_database_refuses_in_one_line() {
    let dir = TempDir::new("rec-lock");
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-lock");
    let obs = Observer::record(&comm, &db, &[]);
    let (code, out, err) = run_observer(&[
        "record",
        "--comm",
        &comm,
        "--db",
        &db,
        "--config",
        "/dev/null",
    ]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("already recording") && lines[0].contains(&obs.pid().to_string()),
        "{err}"
    );
    // Readers are welcome while it records.
    let r = report(&db);
    assert_eq!(r["totals"]["failures"], 0);
    drop(obs);
}

#[test]
fn bad_history_input_fails_in_one_clear_line() {
    let dir = TempDir::new("rec-bad");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "comm = \"x\"\nflush-intervall = \"1s\"\n").unwrap();
    let db = dir.join("h.db");
    for (args, needles) in [
        (
            vec!["report", "--db", "/nonexistent-observer/h.db"],
            vec!["no history at", "observer record"],
        ),
        (
            vec!["record", "--config", "/nonexistent-observer/observer.toml"],
            vec!["/nonexistent-observer/observer.toml"],
        ),
        (
            vec!["record", "--config", &cfg],
            vec!["line 2", "flush-intervall"],
        ),
        (
            vec![
                "record",
                "--config",
                "/dev/null",
                "--flush-interval",
                "2m",
                "--db",
                &db,
            ],
            vec!["at most 60s"],
        ),
        (
            vec![
                "record",
                "--config",
                "/dev/null",
                "--db",
                "/proc/observer/h.db",
            ],
            vec!["/proc/observer"],
        ),
        (
            vec!["report", "--db", &db, "--since", "1h", "--until", "2h"],
            vec!["after --until"],
        ),
    ] {
        let (code, _, err) = run_observer(&args);
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line expected: {err}");
        for n in needles {
            assert!(lines[0].contains(n), "{args:?}: {n:?} missing: {err}");
        }
    }
    let (code, _, err) = run_observer(&["report", "--since", "yesterday-ish"]);
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(err.contains("invalid time"), "{err}");
}

#[test]
fn report_runs_unprivileged_on_a_readable_copy_and_explains_a_private_one() {
    let dir = TempDir::new("rec-priv");
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-priv");
    let path = missing("private.conf");
    let obs = Observer::record(&comm, &db, &[]);
    failer(&["--comm", &comm, "--repeat", "2", &format!("openat:{path}")]);
    obs.stop_raw();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();

    let nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(observer_bin())
            .args(args)
            .output()
            .expect("setpriv");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The original is 0600 root: one clear line.
    let (code, _, err) = nobody(&["report", "--db", &db]);
    assert_ne!(code, 0);
    assert!(
        err.contains("permission denied") && err.lines().count() == 1,
        "{err}"
    );

    // A world-readable copy in a directory nobody cannot write (no -shm can be created).
    let copy = dir.join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = nobody(&["report", "--db", &copy, "--since", "1h", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(row(&r, path.as_bytes(), "ENOENT")["count"], 2, "{r:#}");
}

fn http_get(addr: &str, path: &str) -> (String, String, String) {
    let mut c =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/openmetrics-text\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head.to_string(), body.to_string())
}

#[test]
fn metrics_are_served_as_openmetrics_that_a_strict_parser_accepts() {
    let dir = TempDir::new("rec-metrics");
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-met");
    let path = missing("metrics \"quoted\"\nname.conf");
    let mut obs = Observer::record(
        &comm,
        &db,
        &["--metrics", "127.0.0.1:0", "--metrics-top", "5"],
    );
    let addr = metrics_addr(&mut obs);
    failer(&["--comm", &comm, "--repeat", "4", &format!("openat:{path}")]);
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "3",
        &format!("access:{}", missing("m2")),
    ]);

    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let (status, head, body) = http_get(&addr, "/metrics");
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        let s = openmetrics::parse(&body);
        let top = find(&s, "observer_path_failures", &[("errno", "ENOENT")]);
        if top.is_some_and(|t| t.value == 4.0) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "path metrics never appeared: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let f = |sys: &str| {
        find(
            &samples,
            "observer_failures_total",
            &[
                ("errno", "ENOENT"),
                ("syscall", sys),
                ("comm", comm.as_str()),
            ],
        )
        .unwrap_or_else(|| panic!("no {sys} series: {samples:?}"))
        .value
    };
    assert_eq!(f("openat"), 4.0);
    assert_eq!(f("access"), 3.0);
    // The path label is escaped like the table (a newline cannot forge a series).
    let p = find(&samples, "observer_path_failures", &[("errno", "ENOENT")]).unwrap();
    assert_eq!(p.labels["path"], path.replace('\n', "\\n"));
    assert!(
        samples
            .iter()
            .filter(|s| s.name == "observer_path_failures")
            .count()
            <= 5
    );
    assert_eq!(
        find(&samples, "observer_lost_events_total", &[])
            .unwrap()
            .value,
        0.0
    );
    assert_eq!(
        find(&samples, "observer_db_write_errors_total", &[])
            .unwrap()
            .value,
        0.0
    );
    assert!(
        find(&samples, "observer_db_last_flush_timestamp_seconds", &[])
            .unwrap()
            .value
            > 1e9
    );
    let info = find(&samples, "observer_build_info", &[]).expect("build info");
    assert_eq!(info.value, 1.0);
    assert!(!info.labels["version"].is_empty());
    let (status, _, _) = http_get(&addr, "/nope");
    assert!(status.contains(" 404 "), "{status}");
    obs.stop_raw();
}

#[test]
fn an_idle_recorder_tells_metrics_when_its_history_was_last_written() {
    // A recorder with nothing to write still writes its history (the session's start, then a
    // mark once a minute): /metrics says when, so a fleet can tell "idle" from "stuck".
    let dir = TempDir::new("rec-idle-flush");
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-idle");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut obs = Observer::record(&comm, &db, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&mut obs);
    // From the first scrape on.
    let (_, _, body) = http_get(&addr, "/metrics");
    let last = find(
        &openmetrics::parse(&body),
        "observer_db_last_flush_timestamp_seconds",
        &[],
    )
    .unwrap_or_else(|| panic!("no last write time on an idle recorder: {body}"))
    .value;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        before - 1.0 <= last && last <= now,
        "{before} <= {last} <= {now}"
    );
    obs.stop_raw();
}

#[test]
fn sighup_reloads_the_configuration_and_a_selector_change_restarts_the_capture() {
    let dir = TempDir::new("rec-hup");
    let db = dir.join("observer.db");
    let cfg = dir.join("observer.toml");
    let a = unique_comm("obs-hupa");
    let b = unique_comm("obs-hupb");
    let pa = missing("hup-a.conf");
    let pb = missing("hup-b.conf");
    let jsonl = dir.join("new.jsonl");
    std::fs::write(
        &cfg,
        format!("comm = \"{a}\"\ndb = \"{db}\"\nflush-interval = \"1s\"\njsonl = \"{jsonl}\"\n"),
    )
    .unwrap();
    let mut obs = Observer::start_with(&["record", "--config", &cfg], &[]);
    failer(&["--comm", &a, "--repeat", "2", &format!("openat:{pa}")]);
    wait_for_count(&db, &pa, 2);
    // Counted by the old program just before the reload, not read by any poll yet: kept.
    failer(&["--comm", &a, "--repeat", "4", &format!("openat:{pa}")]);

    std::fs::write(
        &cfg,
        format!("comm = \"{b}\"\ndb = \"{db}\"\nflush-interval = \"2s\"\njsonl = \"{jsonl}\"\n"),
    )
    .unwrap();
    obs.signal(libc::SIGHUP);
    let l = obs.wait_stderr("reloaded", Duration::from_secs(10));
    assert!(
        l.contains("selectors: comm") && l.contains("flush-interval: 1s -> 2s"),
        "{l}"
    );
    failer(&["--comm", &a, "--repeat", "5", &format!("openat:{pa}")]);
    failer(&["--comm", &b, "--repeat", "3", &format!("openat:{pb}")]);
    // A bad file on reload keeps the running configuration.
    std::fs::write(&cfg, "comm = [\n").unwrap();
    obs.signal(libc::SIGHUP);
    obs.wait_stderr("keeping the running configuration", Duration::from_secs(10));
    // So does a value out of range (this one used to kill the recorder).
    std::fs::write(
        &cfg,
        format!("comm = \"{b}\"\ndb = \"{db}\"\nretention = \"1e20\"\n"),
    )
    .unwrap();
    obs.signal(libc::SIGHUP);
    let l = obs.wait_stderr("retention", Duration::from_secs(10));
    assert!(l.contains("too long"), "{l}");
    obs.stop_raw();

    let r = report(&db);
    assert_eq!(
        count_of(&r, &pa),
        6,
        "{a}: 2 + 4 before the reload, none after (it is not watched any more): {r:#}"
    );
    assert_eq!(count_of(&r, &pb), 3, "{r:#}");
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    let events: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events.len(),
        2,
        "one line per new distinct failure: {lines}"
    );
    assert_eq!(events[0]["path"], pa.as_str());
    assert_eq!(events[1]["path"], pb.as_str());
    assert_eq!(
        std::fs::metadata(&jsonl).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Unmounts on drop.
struct Tmpfs(String);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_capture_going_and_writing_resumes_when_space_returns() {
    let dir = TempDir::new("rec-full");
    let mnt = dir.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", &mnt])
        .status()
        .expect("mount");
    assert!(
        st.success(),
        "mounting a small tmpfs at {mnt} (root needed)"
    );
    let _guard = Tmpfs(mnt.clone());
    let db = format!("{mnt}/observer.db");
    let comm = unique_comm("obs-full");
    let mut obs = Observer::record(&comm, &db, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&mut obs);
    let gauge = |name: &str| {
        let (_, _, body) = http_get(&addr, "/metrics");
        find(&openmetrics::parse(&body), name, &[])
            .unwrap_or_else(|| panic!("no {name}: {body}"))
            .value
    };
    // Fill the file system.
    let filler = format!("{mnt}/filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    // Many distinct paths, so the database must grow.
    let paths: Vec<String> = (0..300)
        .map(|i| {
            missing(&format!(
                "full/a-rather-long-directory-name/to-need-new-pages-{i:04}.php"
            ))
        })
        .collect();
    let actions: Vec<String> = paths.iter().map(|p| format!("newfstatat:{p}")).collect();
    let mut args = vec!["--comm", comm.as_str(), "--repeat", "2"];
    args.extend(actions.iter().map(String::as_str));
    failer(&args);
    let l = obs.wait_stderr("cannot write the history", Duration::from_secs(20));
    assert!(l.contains("capture goes on in memory"), "{l}");
    // More failures while the disk is full: counted in memory.
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "3",
        &format!("openat:{}", missing("full/late.conf")),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    // While the disk stays full: every flush fails and is counted; what waits stays waiting;
    // the error was logged once (again only after five minutes).
    let pending = gauge("observer_pending_buckets");
    let mut errors = vec![gauge("observer_db_write_errors_total")];
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1100));
        errors.push(gauge("observer_db_write_errors_total"));
    }
    assert!(
        errors.windows(2).all(|w| w[1] > w[0]),
        "the write-error counter grows with each failed flush: {errors:?}"
    );
    assert_eq!(gauge("observer_pending_buckets"), pending);
    assert!(pending >= 301.0, "300 paths and late.conf wait: {pending}");
    std::fs::remove_file(&filler).unwrap();
    let l = obs.wait_stderr("again after", Duration::from_secs(20));
    assert!(l.contains("nothing was lost"), "{l}");
    let logged = obs
        .stderr
        .iter()
        .filter(|l| l.contains("cannot write the history"))
        .count();
    let attempts: f64 = l
        .split("again after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{l}"));
    assert!(attempts >= 4.0, "{l}");
    assert_eq!(
        logged, 1,
        "{} failed flushes, logged once: {:?}",
        attempts, obs.stderr
    );
    assert_eq!(gauge("observer_db_write_errors_total"), attempts);
    assert_eq!(gauge("observer_pending_buckets"), 0.0);
    obs.stop_raw();

    let r = report(&db);
    assert_eq!(r["totals"]["failures"], 603, "{}", r["totals"]);
    assert_eq!(count_of(&r, &paths[0]), 2);
    assert_eq!(count_of(&r, &missing("full/late.conf")), 3);
    assert_eq!(r["history"]["dropped"], 0);
    // What waited is what was written: one row per per-minute count.
    let rows: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM buckets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as f64, pending);
}

#[test]
fn a_storm_is_counted_exactly_in_the_history() {
    let dir = TempDir::new("rec-storm");
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-storm");
    let obs = Observer::record(&comm, &db, &[]);
    let paths: Vec<String> = (0..50)
        .map(|i| missing(&format!("storm/f{i}.php")))
        .collect();
    let actions: Vec<String> = paths.iter().map(|p| format!("newfstatat:{p}")).collect();
    let mut args = vec![
        "--comm",
        comm.as_str(),
        "--repeat",
        "4000",
        "--threads",
        "2",
    ];
    args.extend(actions.iter().map(String::as_str));
    failer(&args);
    obs.stop_raw();
    let r = report(&db);
    assert_eq!(r["totals"]["lost"], 0, "{}", r["totals"]);
    assert_eq!(r["totals"]["distinct"], 50);
    // Every thread makes every call: 50 paths x 4000 x 2 threads.
    assert_eq!(r["totals"]["failures"], 400_000, "{}", r["totals"]);
    for p in &paths {
        assert_eq!(count_of(&r, p), 8000, "{p}");
    }
}

#[test]
fn idle_keys_are_forgotten_and_counted_again_from_their_next_failure() {
    let dir = TempDir::new("rec-evict");
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-evict");
    let path = missing("evict.conf");
    let mut obs = Observer::record(
        &comm,
        &db,
        &["--evict-after", "1s", "--metrics", "127.0.0.1:0"],
    );
    let addr = metrics_addr(&mut obs);
    let tracked = || {
        let (_, _, body) = http_get(&addr, "/metrics");
        let s = openmetrics::parse(&body);
        find(&s, "observer_tracked_keys", &[]).map(|s| s.value)
    };
    let wait_tracked = |n: f64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while tracked() != Some(n) {
            assert!(Instant::now() < deadline, "tracked keys never became {n}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    failer(&["--comm", &comm, "--repeat", "3", &format!("openat:{path}")]);
    wait_for_count(&db, &path, 3);
    // Forgotten in the kernel and in observer once idle...
    wait_tracked(0.0);
    // ...and counted again from its next failure, nothing twice.
    failer(&["--comm", &comm, "--repeat", "2", &format!("openat:{path}")]);
    wait_for_count(&db, &path, 5);
    obs.stop_raw();
    assert_eq!(count_of(&report(&db), &path), 5);
}

/// A reload that changes the selectors swaps the old capture for the new one microseconds apart
/// and takes everything the old one counted: a storm of failures running across the reload is
/// counted (within the few calls of the swap itself), and nothing twice.
#[test]
fn a_selector_reload_in_the_middle_of_a_storm_keeps_the_counts() {
    const N: u64 = 400_000;
    let dir = TempDir::new("rec-swap");
    let db = dir.join("observer.db");
    let cfg = dir.join("observer.toml");
    let a = unique_comm("obs-swapa");
    let b = unique_comm("obs-swapb");
    let p = missing("swap.conf");
    std::fs::write(
        &cfg,
        format!("comm = \"{a}\"\ndb = \"{db}\"\nflush-interval = \"1s\"\n"),
    )
    .unwrap();
    let mut obs = Observer::start_with(&["record", "--config", &cfg], &[]);
    let storm = std::thread::spawn({
        let (a, p) = (a.clone(), p.clone());
        move || {
            failer(&[
                "--comm",
                &a,
                "--repeat",
                &N.to_string(),
                &format!("openat:{p}"),
            ])
        }
    });
    std::thread::sleep(Duration::from_millis(150));
    // Both names after the reload: the storm stays watched.
    std::fs::write(
        &cfg,
        format!("comm = [\"{a}\", \"{b}\"]\ndb = \"{db}\"\nflush-interval = \"1s\"\n"),
    )
    .unwrap();
    obs.signal(libc::SIGHUP);
    obs.wait_stderr("reloaded", Duration::from_secs(10));
    storm.join().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    obs.stop_raw();
    let c = count_of(&report(&db), &p);
    assert!(c <= N, "counted twice: {c} > {N}");
    assert!(
        N - c <= N / 1000,
        "{} of {N} failures lost across the reload (only the few of the swap may be)",
        N - c
    );
    eprintln!(
        "reload in a storm: {c} of {N} counted ({} lost in the swap)",
        N - c
    );
}

/// A scrape, or None when the connection is refused or closed without an answer.
fn try_scrape(addr: &str) -> Option<String> {
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(c, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    c.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.contains(" 200").then(|| body.to_string())
}

/// Any local user can connect to /metrics: an endless header line, hundreds of idle connections
/// and a descriptor limit reached must neither grow the recorder's memory nor end the endpoint,
/// and a scrape still gets its answer.
#[test]
fn metrics_survive_hostile_clients_within_bounded_memory() {
    use std::io::Write;
    let dir = TempDir::new("rec-abuse");
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-abuse");
    let mut obs = Observer::record(&comm, &db, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&mut obs);
    let before = peak_rss_kib(obs.pid());

    // One endless header line, as fast as the client can write: cut off, not buffered.
    let flood = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nX-Flood: ").unwrap();
            let chunk = vec![b'a'; 64 * 1024];
            let t = Instant::now();
            let mut sent = 0u64;
            while t.elapsed() < Duration::from_secs(5) {
                match c.write(&chunk) {
                    Ok(n) => sent += n as u64,
                    Err(_) => return (sent, true),
                }
            }
            (sent, false)
        })
    };
    // Many idle connections: a few are served (and time out), the rest closed.
    let idle: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // While idle clients hold every slot a scrape is refused; they time out within seconds.
    let t = Instant::now();
    let body = loop {
        if let Some(b) = try_scrape(&addr) {
            break b;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no scrape got through"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.ends_with("# EOF\n"), "{body}");
    eprintln!("a scrape got through the abuse after {:?}", t.elapsed());
    let (sent, cut) = flood.join().unwrap();
    assert!(
        cut,
        "the endless header was not cut off ({sent} bytes sent)"
    );
    drop(idle);

    // Out of descriptors for a while: accept fails, the endpoint waits and goes on.
    let pid = obs.pid().to_string();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = (fds + 2).to_string();
    // The soft limit only (raising a hard limit back needs CAP_SYS_RESOURCE).
    let prlimit = |n: &str| {
        let st = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={n}:")])
            .status()
            .unwrap();
        assert!(st.success());
    };
    prlimit(&limit);
    let _held: Vec<std::net::TcpStream> = (0..20)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    prlimit("1024");
    drop(_held);
    let t = Instant::now();
    while try_scrape(&addr).is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the endpoint did not live on after EMFILE"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let after = peak_rss_kib(obs.pid());
    eprintln!(
        "peak RSS {before} KiB before, {after} KiB after the abuse ({sent} header bytes sent)"
    );
    assert!(
        after < before + 32 * 1024,
        "the recorder's peak memory grew from {before} to {after} KiB"
    );
    obs.stop_raw();
}

/// `--metrics unix:PATH`: the failing paths only for whoever may open the socket (mode 0600).
#[test]
fn metrics_on_a_unix_socket_are_private() {
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = TempDir::new("rec-unix");
    let db = dir.join("observer.db");
    let sock = dir.join("metrics.sock");
    let comm = unique_comm("obs-unix");
    let mut obs = Observer::record(&comm, &db, &["--metrics", &format!("unix:{sock}")]);
    obs.wait_stderr(&format!("metrics on unix:{sock}"), Duration::from_secs(5));
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert!(m.file_type().is_socket());
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    write!(c, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.0 200") && raw.ends_with("# EOF\n"),
        "{raw}"
    );
    obs.stop_raw();
    assert!(
        !std::path::Path::new(&sock).exists(),
        "the socket is removed at the end"
    );
    // In a directory others may write, the socket could be swapped for a link before its
    // chmod: refused, in one line.
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (code, _, err) = run_observer(&[
        "record",
        "--comm",
        &comm,
        "--db",
        &db,
        "--config",
        "/dev/null",
        "--metrics",
        &format!("unix:{open}/metrics.sock"),
    ]);
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("others may write it"), "{err}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Unix milliseconds of an RFC 3339 time.
fn ms_of_rfc3339(s: &str) -> i64 {
    let out = Command::new("date")
        .args(["-d", s, "+%s%3N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("date -d {s}"))
}

/// A crash between two flushes, with counts pending: `kill -9` half an interval after a flush,
/// while a thread fails on a new path every 10 ms. What is lost is only what failed after the
/// last flush; the next start closes the crashed session at that flush, and the report shows
/// when observer was not recording.
#[test]
fn a_crash_loses_at_most_one_interval_and_the_report_shows_the_gap() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const INTERVAL_MS: i64 = 2000;
    // The kernel's record of a new path is read within milliseconds; a poll may still miss a
    // failure made just before it (it is then counted at the next one).
    const SLACK_MS: i64 = 500;
    let dir = TempDir::new("rec-crash");
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-crash");
    let args = [
        "record",
        "--comm",
        comm.as_str(),
        "--db",
        db.as_str(),
        "--flush-interval",
        "2s",
        "--config",
        "/dev/null",
    ];
    let obs = Observer::start_with(&args, &[]);
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let stream = std::thread::spawn({
        let (stop, comm) = (stop.clone(), comm.clone());
        move || {
            let name = std::ffi::CString::new(comm).unwrap();
            // SAFETY: PR_SET_NAME of this thread, from a NUL-terminated string of < 16 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
            // (sequence, wall ms before the call, wall ms after it)
            let mut made = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = std::ffi::CString::new(missing(&format!("crash/{i:05}"))).unwrap();
                let before = now_ms();
                // SAFETY: a raw openat of a valid C string; it fails (ENOENT).
                let r = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.as_ptr(), 0) };
                assert!(r < 0);
                made.push((i, before, now_ms()));
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            made
        }
    });
    let conn = rusqlite::Connection::open(&db).unwrap();
    let last_flush = || -> i64 {
        conn.query_row(
            "SELECT last_flush_ms FROM sessions ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    // What a crash at any moment loses is bounded by the time between two flushes: one
    // interval. Seven seconds of flushes, then the crash half an interval after the next one.
    let mut flushes: Vec<i64> = Vec::new();
    let mut prev = last_flush();
    let mut last_seen = Instant::now();
    while t0.elapsed() < Duration::from_secs(7) || last_seen.elapsed() > Duration::from_millis(100)
    {
        assert!(t0.elapsed() < Duration::from_secs(12), "{flushes:?}");
        std::thread::sleep(Duration::from_millis(20));
        let f = last_flush();
        if f != prev {
            (prev, last_seen) = (f, Instant::now());
            flushes.push(f);
        }
    }
    std::thread::sleep(Duration::from_millis(INTERVAL_MS as u64 / 2));
    let killed_ms = now_ms();
    obs.kill9();
    stop.store(true, Ordering::Relaxed);
    let made = stream.join().unwrap();

    // The crash left the session open, at its last flush.
    let (flush_ms, ended): (i64, Option<i64>) = conn
        .query_row(
            "SELECT last_flush_ms, ended_ms FROM sessions ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(ended, None);
    assert!(
        killed_ms - flush_ms < INTERVAL_MS,
        "the kill came between two flushes: last flush {flush_ms}, killed {killed_ms}"
    );
    let mut kept: Vec<(u64, i64)> = {
        let mut st = conn
            .prepare(
                "SELECT p.path, sum(b.count) FROM buckets b JOIN paths p ON p.id = b.path_id
                 GROUP BY b.path_id",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
            .map(|r| {
                let (p, n) = r.unwrap();
                let p = String::from_utf8(p).unwrap();
                let i = p
                    .strip_prefix(&missing("crash/"))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("a path the stream did not make: {p}"));
                (i, n)
            })
            .collect()
    };
    kept.sort();
    assert!(kept.iter().all(|&(_, n)| n == 1), "counted once each");
    let kept: std::collections::BTreeSet<u64> = kept.into_iter().map(|(i, _)| i).collect();
    let before_kill: Vec<&(u64, i64, i64)> = made.iter().filter(|m| m.2 < killed_ms).collect();
    let lost: Vec<&&(u64, i64, i64)> = before_kill
        .iter()
        .filter(|m| !kept.contains(&m.0))
        .collect();
    eprintln!(
        "made {} failures before the kill, {} flushed, {} lost; last flush {} ms before the kill",
        before_kill.len(),
        kept.len(),
        lost.len(),
        killed_ms - flush_ms
    );
    assert!(!lost.is_empty(), "counts were pending at the kill");
    let gaps: Vec<i64> = flushes.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.len() >= 3 && gaps.iter().all(|&g| g <= INTERVAL_MS + SLACK_MS),
        "flushed every interval: {gaps:?} ms apart"
    );
    for m in &before_kill {
        if m.2 < flush_ms - SLACK_MS {
            assert!(
                kept.contains(&m.0),
                "{m:?}, made before the last flush, was lost"
            );
        }
    }
    for m in &lost {
        assert!(
            m.1 > flush_ms - SLACK_MS,
            "{m:?} was lost, made before the last flush at {flush_ms}"
        );
    }
    let first_lost = lost.iter().map(|m| m.1).min().unwrap();
    assert!(
        killed_ms - first_lost <= INTERVAL_MS + SLACK_MS,
        "more than one interval lost: from {first_lost} to the kill at {killed_ms}"
    );
    assert!(
        kept.iter().max() < lost.iter().map(|m| m.0).min().as_ref(),
        "what was kept is everything up to the last flush"
    );

    // The crash, as if ten minutes ago: a gap of recording the report must show (shorter ones
    // are absorbed by its slack of 90 s).
    const AGO_MS: i64 = 10 * 60_000;
    conn.execute_batch(&format!(
        "UPDATE sessions SET started_ms = started_ms - {AGO_MS}, last_flush_ms = last_flush_ms - {AGO_MS};
         UPDATE buckets SET minute = minute - {m}, first_ms = first_ms - {AGO_MS}, last_ms = last_ms - {AGO_MS};
         UPDATE minute_stats SET minute = minute - {m};",
        m = AGO_MS / 60_000
    ))
    .unwrap();
    let crashed_flush = flush_ms - AGO_MS;
    drop(conn);

    let obs = Observer::start_with(&args, &[]);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let sessions: Vec<(i64, i64, Option<i64>)> = conn
        .prepare("SELECT started_ms, last_flush_ms, ended_ms FROM sessions ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(
        sessions[0].2,
        Some(crashed_flush),
        "the next start ends the crashed session at its last flush: {sessions:?}"
    );
    let restarted = sessions[1].0;
    obs.stop_raw();

    let r = report(&db);
    assert_eq!(
        r["totals"]["failures"],
        kept.len() as u64,
        "{}",
        r["totals"]
    );
    let gaps = r["history"]["gaps"].as_array().expect("gaps");
    assert_eq!(gaps.len(), 1, "{:#}", r["history"]);
    let (from, to) = (
        ms_of_rfc3339(gaps[0]["from"].as_str().unwrap()),
        ms_of_rfc3339(gaps[0]["to"].as_str().unwrap()),
    );
    assert_eq!(to, restarted, "{:#}", r["history"]);
    assert!(
        (crashed_flush..=crashed_flush + 90_000).contains(&from),
        "the gap starts at most the slack after the last flush ({crashed_flush}): {:#}",
        r["history"]
    );
    assert_eq!(r["history"]["sessions"][0]["ended"], true);
    let (code, out, err) = run_observer(&["report", "--db", &db, "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("observer was not recording: "), "{out}");
}
