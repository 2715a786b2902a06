//! Ad-hoc novelty against the real kernel: a failure first seen within the warm-up (the first
//! 5 s) was probably failing before observer started ("present from start"); one that starts
//! later is "new since HH:MM:SS" and ranks 1.5 higher.

use std::process::Command;
use std::time::{Duration, Instant};

use observer_tests::{Observer, failer, row, unique_comm};

const DIR: &str = "/nonexistent-observer-novelty";

/// An RFC 3339 time as the local clock reads it (`HH:MM:SS`), as observer writes it for a time
/// of the report's own day.
fn local_hms(rfc3339: &str) -> String {
    let out = Command::new("date")
        .args(["-d", rfc3339, "+%H:%M:%S"])
        .output()
        .expect("date");
    assert!(out.status.success(), "date -d {rfc3339}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn reasons(r: &serde_json::Value) -> Vec<String> {
    r["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_failure_that_starts_mid_capture_is_new_since_its_first_failure() {
    let comm = unique_comm("obs-novel");
    let at_start = format!("{DIR}/at-start.php");
    let early = format!("{DIR}/early.php");
    let later = format!("{DIR}/later.php");
    let fail = |p: &str| {
        failer(&["--comm", &comm, "--repeat", "2", &format!("openat:{p}")]);
    };
    let obs = Observer::start(&["--comm", &comm]);
    let t0 = Instant::now();
    // Failing as soon as observer watches: it was failing before.
    fail(&at_start);
    // Still within the 5 s warm-up.
    std::thread::sleep(Duration::from_millis(3500).saturating_sub(t0.elapsed()));
    fail(&early);
    // Past it: a failure that began while observer watched (a deploy, a reload).
    std::thread::sleep(Duration::from_millis(6500).saturating_sub(t0.elapsed()));
    fail(&later);
    let r = obs.stop();

    let a = row(&r, at_start.as_bytes(), "ENOENT");
    let e = row(&r, early.as_bytes(), "ENOENT");
    let l = row(&r, later.as_bytes(), "ENOENT");
    for x in [a, e] {
        let rs = reasons(x);
        assert!(rs.iter().any(|s| s == "present from start"), "{x:#}");
        assert!(!rs.iter().any(|s| s.starts_with("new since")), "{x:#}");
    }
    let first = l["first_seen"].as_str().expect("first_seen");
    let want = format!("new since {}", local_hms(first));
    let rs = reasons(l);
    assert!(rs.contains(&want), "{want:?} expected: {l:#}");
    assert!(!rs.iter().any(|s| s == "present from start"), "{l:#}");
    // The same call, the same count: novelty is the whole difference, and it ranks first.
    let score = |x: &serde_json::Value| x["score"].as_f64().expect("score");
    assert!(
        (score(l) - score(a) - 1.5).abs() < 0.011 && (score(e) - score(a)).abs() < 0.011,
        "scores {} {} {}",
        score(a),
        score(e),
        score(l)
    );
    assert_eq!(l["rank"], 1, "{r:#}");
}
