//! A history is a file anyone may hand over (`observer report --db ./copy`): a crafted one must
//! not reach the terminal raw, hang the report, make it allocate without bound, or panic it.

use std::time::{Duration, Instant};

use observer_tests::{Observer, TempDir, failer, run_observer, unique_comm};
use rusqlite::Connection;

/// A real history of one failure, to tamper with.
fn recorded(dir: &TempDir) -> String {
    let db = dir.join("h.db");
    let comm = unique_comm("obs-hdb");
    let mut rec = Observer::record(&comm, &db, &[]);
    failer(&["--comm", &comm, "openat:/nonexistent-observer-hdb/x.php"]);
    std::thread::sleep(Duration::from_millis(1500));
    rec.signal(libc::SIGTERM);
    rec.wait_stderr("stopped; history is in", Duration::from_secs(20));
    drop(rec);
    db
}

fn tamper(db: &str, sql: &str) {
    Connection::open(db)
        .and_then(|c| c.execute_batch(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn no_raw_escape(out: &str, err: &str) {
    assert!(
        !out.contains('\x1b') && !err.contains('\x1b'),
        "raw ESC: {out:?} {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn names_from_a_crafted_history_are_escaped() {
    let d = TempDir::new("hdb-esc");
    let db = recorded(&d);
    tamper(
        &db,
        "UPDATE buckets SET syscall = char(27) || ']0;pwned' || char(7) || 'openat';
         UPDATE comms SET comm = char(27) || '[2J' || comm;",
    );
    let (code, out, err) =
        run_observer(&["timeline", "/nonexistent-observer-hdb/x.php", "--db", &db]);
    no_raw_escape(&out, &err);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\\e]0;pwned\\x07openat"), "{out}");
    let (code, out, err) = run_observer(&["report", "--db", &db, "--since", "1d"]);
    no_raw_escape(&out, &err);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("unknown to this observer"), "{err}");
}

#[test]
fn odd_integers_and_names_in_a_crafted_history_do_not_panic() {
    let d = TempDir::new("hdb-odd");
    let db = recorded(&d);
    tamper(
        &db,
        "UPDATE buckets SET count = -5, first_ms = 9223372036854775807,
             last_ms = -9223372036854775808, uid = -1, gid = 99999999999, pid = -7,
             open_flags = -1, status = 2147483647;
         INSERT INTO places (id, runtime, container, pod, unit, private)
             VALUES (7, 'docker', 'é' || char(27) || 'ééééééééééééééééé', 'x', char(27) || 'u', 1);
         INSERT INTO buckets SELECT path_id, errno, minute, syscall, comm_id, uid, gid, count,
             first_ms, last_ms, open_flags, status, pid, 7 FROM buckets;",
    );
    for format in ["table", "json"] {
        let (code, out, err) =
            run_observer(&["report", "--db", &db, "--since", "1d", "-f", format]);
        no_raw_escape(&out, &err);
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, err) =
        run_observer(&["timeline", "/nonexistent-observer-hdb/x.php", "--db", &db]);
    no_raw_escape(&out, &err);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_crafted_history_that_would_never_end_is_stopped_with_one_line() {
    let d = TempDir::new("hdb-slow");
    let db = recorded(&d);
    tamper(
        &db,
        "DROP TABLE buckets;
         CREATE VIEW buckets AS
           WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r)
           SELECT 1 AS path_id, 2 AS errno, CAST(strftime('%s', 'now') AS INTEGER) / 60 + x * 0 AS minute,
                  'openat' AS syscall, 1 AS comm_id, 0 AS uid, 0 AS gid, 1 AS count,
                  0 AS first_ms, 0 AS last_ms, 0 AS open_flags, 0 AS status, 0 AS pid,
                  0 AS place_id
           FROM r WHERE x % 1000000007 = 1000000006;",
    );
    let t = Instant::now();
    let (code, out, err) = run_observer(&["report", "--db", &db, "--since", "1d"]);
    no_raw_escape(&out, &err);
    assert_ne!(code, 0, "{out}");
    assert!(
        t.elapsed() < Duration::from_secs(25),
        "took {:?}",
        t.elapsed()
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("interrupted"), "{err}");
}
