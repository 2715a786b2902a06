//! Loss is counted, never silent: each of the kernel's loss counters provoked end to end, with
//! the real kernel and its real map sizes (README, "Kernel maps"), and in each case what the
//! report shows plus what it counts as lost is exactly what was made.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use observer_tests::{Observer, failer, failer_bin, path_of, unique_comm};
use serde_json::Value;

/// The kernel maps' sizes, as the README states them.
const AGG_ENTRIES: u64 = 65_536;
const PIDS_ENTRIES: u64 = 16_384;
/// The ring buffer: 8 MiB.
const EVENTS_BYTES: u64 = 8 << 20;

fn totals(report: &Value, name: &str) -> u64 {
    report["totals"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.{name}: {}", report["totals"]))
}

/// A prefix of `len` bytes under a missing directory: `spray` appends a number, so each path
/// of the spray is about `len` bytes and crosses the ring buffer as one record of that size.
fn long_prefix(tag: &str, len: usize) -> String {
    let mut p = format!("/nonexistent-observer-loss/{tag}/");
    while p.len() < len {
        p.push('x');
    }
    p
}

/// Stops observer's reader (SIGSTOP) while `make` runs, then lets it go on.
fn with_reader_stopped(obs: &Observer, make: impl FnOnce()) {
    obs.signal(libc::SIGSTOP);
    make();
    obs.signal(libc::SIGCONT);
}

#[test]
fn failures_past_a_full_ring_buffer_are_counted_as_lost() {
    let comm = unique_comm("obs-lost");
    // Each record is 112 bytes of header and a ~3,000-byte path: 4,000 of them are about
    // 12 MB, half again what the 8 MiB ring buffer holds while nobody reads it.
    let n = 4_000u64;
    assert!(n * 3_000 > EVENTS_BYTES * 5 / 4);
    let obs = Observer::start(&["--comm", &comm]);
    with_reader_stopped(&obs, || {
        failer(&[
            "--comm",
            &comm,
            &format!("spray:{n}:{}", long_prefix("lost", 2_990)),
        ]);
    });
    let (out, err) = obs.stop_raw();
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    let (failures, lost) = (totals(&report, "failures"), totals(&report, "lost"));
    assert!(
        lost > 0,
        "the ring buffer must have overflowed: {}",
        report["totals"]
    );
    assert!(failures > 0, "{}", report["totals"]);
    assert_eq!(failures + lost, n, "{}", report["totals"]);
    assert_eq!(
        totals(&report, "distinct"),
        failures,
        "each path failed once"
    );
    assert_eq!(totals(&report, "dropped"), 0);
    assert!(
        err.iter().any(|l| l.contains(&format!(
            "{lost} failure(s) were lost (ring buffer full); counts are lower bounds"
        ))),
        "{err:?}"
    );
    eprintln!("lost: {failures} delivered, {lost} lost of {n}");
}

#[test]
fn failures_past_a_full_aggregate_arrive_one_by_one_as_overflow() {
    let comm = unique_comm("obs-ovf");
    // 10,000 more distinct keys than AGG holds, made in bursts the reader keeps up with.
    let (bursts, per) = (38u64, 2_000u64);
    let n = bursts * per;
    assert!(n > AGG_ENTRIES + 10_000);
    let obs = Observer::start(&["--comm", &comm, "--top", "3"]);
    for b in 0..bursts {
        failer(&[
            "--comm",
            &comm,
            &format!("spray:{per}:/nonexistent-observer-loss/ovf/{b}/"),
        ]);
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = obs.stop();
    let (failures, lost, overflow) = (
        totals(&report, "failures"),
        totals(&report, "lost"),
        totals(&report, "overflow"),
    );
    assert_eq!(
        failures + lost + totals(&report, "dropped"),
        n,
        "{}",
        report["totals"]
    );
    // AGG is never emptied in ad-hoc mode: once full it stays full, so every failure after
    // the first 65,536 keys went one by one, but for keys whose first record was lost (and
    // were taken out again, leaving room for another).
    assert!(overflow <= n - AGG_ENTRIES, "{}", report["totals"]);
    assert!(overflow + lost >= n - AGG_ENTRIES, "{}", report["totals"]);
    assert!(overflow > 0, "{}", report["totals"]);
    assert_eq!(
        totals(&report, "distinct"),
        failures,
        "each path failed once"
    );
    eprintln!("overflow: {overflow} one by one, {lost} lost, of {n}");
}

/// Runs `failer --comm COMM --wait ACTIONS` under `observer --pid` (the failer's pid); returns
/// the report and the failing paths it shows, sorted.
fn under_pid(comm: &str, actions: &[String]) -> (Value, Vec<String>) {
    let mut target = Command::new(failer_bin())
        .args(["--comm", comm, "--wait"])
        .args(actions)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn failer");
    let obs = Observer::start(&["--pid", &target.id().to_string()]);
    let mut stdin = target.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("go");
    drop(stdin);
    assert!(target.wait().expect("wait").success());
    let report = obs.stop();
    let mut paths: Vec<String> = report["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&path_of(r)).into_owned())
        .collect();
    paths.sort();
    (report, paths)
}

#[test]
fn pid_descendants_past_a_full_pid_map_are_counted_as_unfollowed() {
    let comm = unique_comm("obs-pidfull");
    // The --pid target forks two children (followed: the map has room), then holds enough
    // child processes to fill the 16,384-entry pid map, forks five children that cannot be
    // followed, lets the held ones end, and forks two more, which are followed again.
    let held = PIDS_ENTRIES + 16;
    let unfollowed_children = 5u64;
    let path = |s: &str| format!("/nonexistent-observer-loss/pidfull-{s}");
    let mut actions = vec![
        format!("forked:{}", path("before-0")),
        format!("forked:{}", path("before-1")),
        format!("hold-processes:{held}"),
    ];
    for i in 0..unfollowed_children {
        actions.push(format!("forked:{}", path(&format!("full-{i}"))));
    }
    // Reaped, so the kernel's exit hook has forgotten them.
    actions.push("release-processes".into());
    actions.push(format!("forked:{}", path("after-0")));
    actions.push(format!("forked:{}", path("after-1")));
    let (report, paths) = under_pid(&comm, &actions);
    let mut want: Vec<String> = ["after-0", "after-1", "before-0", "before-1"]
        .iter()
        .map(|s| path(s))
        .collect();
    want.sort();
    assert_eq!(
        paths, want,
        "followed children reported, unfollowed ones not"
    );
    // The target's own entry and 16,383 held children fill the map: the 17 held ones past it
    // and the five children forked while it was full were not followed.
    assert_eq!(
        totals(&report, "unfollowed_processes"),
        held + 1 - PIDS_ENTRIES + unfollowed_children,
        "{}",
        report["totals"]
    );
}

/// Descendants that were there before observer started are put in the pid map at start: those
/// it has no room for are not followed, and are counted as such.
#[test]
fn descendants_found_at_start_past_a_full_pid_map_are_counted_as_unfollowed() {
    use std::io::{BufRead, BufReader};
    let comm = unique_comm("obs-pidseed");
    let held = PIDS_ENTRIES + 16;
    let mut target = Command::new(failer_bin())
        .args(["--comm", &comm])
        .arg(format!("hold-processes:{held}"))
        .args(["ready", "wait-line", "release-processes"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn failer");
    let mut line = String::new();
    BufReader::new(target.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n", "the children exist");
    let obs = Observer::start(&["--pid", &target.id().to_string()]);
    let mut stdin = target.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("go");
    drop(stdin);
    assert!(target.wait().expect("wait").success());
    let report = obs.stop();
    // The target and 16,383 of its children fill the map; 17 children are left out.
    assert_eq!(
        totals(&report, "unfollowed_processes"),
        held + 1 - PIDS_ENTRIES,
        "{}",
        report["totals"]
    );
}

/// Threads are not descendants to follow: the filter finds a thread by its process. A target
/// with more threads than the pid map holds still has its children followed.
#[test]
fn threads_take_no_room_in_the_pid_map() {
    let comm = unique_comm("obs-pidthr");
    let path = "/nonexistent-observer-loss/pidthreads-child";
    let actions = [
        format!("hold-threads:{}", PIDS_ENTRIES + 16),
        format!("forked:{path}"),
        "release-threads".to_string(),
    ];
    let (report, paths) = under_pid(&comm, &actions);
    assert_eq!(paths, [path], "{}", report["totals"]);
    assert_eq!(
        totals(&report, "unfollowed_processes"),
        0,
        "{}",
        report["totals"]
    );
}

#[test]
fn directory_opens_past_a_full_ring_buffer_are_counted_as_lost_directory_opens() {
    let comm = unique_comm("obs-dirlost");
    // Fill the stopped reader's ring buffer with records of 4,000-byte paths, then open a
    // directory by a path of that length (so its record cannot fit either) five times, and
    // fail a lookup relative to each fd.
    let n = 3_000u64;
    let mut dir = String::from("/usr");
    while dir.len() < 3_998 {
        dir.push_str("/.");
    }
    assert!(std::path::Path::new(&dir).is_dir());
    let opens = 5u64;
    let mut actions = vec![format!("spray:{n}:{}", long_prefix("dirlost", 3_995))];
    for i in 0..opens {
        actions.push(format!("openat@{dir}:nonexistent-observer-dirlost-{i}"));
    }
    let mut argv = vec!["--comm", comm.as_str()];
    argv.extend(actions.iter().map(String::as_str));
    let obs = Observer::start(&["--comm", &comm]);
    with_reader_stopped(&obs, || {
        failer(&argv);
    });
    let (out, err) = obs.stop_raw();
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(
        totals(&report, "lost_directory_opens"),
        opens,
        "{}",
        report["totals"]
    );
    assert_eq!(
        totals(&report, "failures") + totals(&report, "lost"),
        n + opens,
        "{}",
        report["totals"]
    );
    assert!(
        err.iter()
            .any(|l| l.contains(&format!("{opens} directory open(s) lost"))),
        "{err:?}"
    );
}
