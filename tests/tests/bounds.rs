//! A path explosion (any HTTP client can make Apache fail on names of its choosing) must not
//! grow observer's memory past its stated bounds, and what it did not keep is counted, not lost
//! silently: kept + lost + dropped is exactly what was made.

use std::time::Duration;

use observer_tests::{Observer, PeakWatch, TempDir, failer, history_report, unique_comm};

/// The stated bounds (README, "Security model and limits"), with room for the allocator: the
/// ad-hoc store holds at most 81,920 keys and 32 MiB of path names and a report ranks at most
/// 10,000 rows (measured peak: about 270 MB); the recorder holds at most 200,000 pending counts
/// and 32 MiB of path names (measured peak with 4 KB names: about 80 MB).
const AD_HOC_PEAK_KIB: u64 = 384 * 1024;
const RECORD_PEAK_KIB: u64 = 256 * 1024;

#[test]
fn a_million_distinct_failing_paths_stay_within_the_memory_bound_and_are_all_accounted() {
    let comm = unique_comm("obs-burst");
    let n = 1_000_000u64;
    let obs = Observer::start(&["--comm", &comm]);
    let peak = PeakWatch::start(obs.pid());
    failer(&[
        "--comm",
        &comm,
        &format!("spray:{n}:/nonexistent/observer-burst/path-number-"),
    ]);
    let report = obs.stop();
    let peak = peak.peak_kib();
    let t = &report["totals"];
    let (kept, lost, dropped) = (
        t["failures"].as_u64().unwrap(),
        t["lost"].as_u64().unwrap(),
        t["dropped"].as_u64().expect("totals.dropped"),
    );
    assert_eq!(kept + lost + dropped, n, "{t}");
    assert!(
        dropped > 0,
        "past the bound failures are dropped and counted: {t}"
    );
    assert!(t["overflow"].as_u64().unwrap() > 0, "{t}");
    assert!(t["unlisted_paths"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(
        report["paths"].as_array().unwrap().len() as u64 + t["unlisted_paths"].as_u64().unwrap(),
        t["distinct"].as_u64().unwrap()
    );
    assert!(
        peak < AD_HOC_PEAK_KIB,
        "peak RSS {peak} KiB, bound {AD_HOC_PEAK_KIB} KiB"
    );
}

#[test]
fn a_recorder_under_a_flood_of_long_distinct_paths_stays_within_its_bound() {
    let comm = unique_comm("obs-burstrec");
    let dir = TempDir::new("burst-rec");
    let db = dir.join("h.db");
    let n = 300_000u64;
    let obs = Observer::record(&comm, &db, &[]);
    let peak = PeakWatch::start(obs.pid());
    // ~4 KB each: 300,000 of them would be 1.2 GB of names.
    let long = format!("/nonexistent/{}/p-", "x".repeat(3900));
    failer(&["--comm", &comm, &format!("spray:{n}:{long}")]);
    // Two reads of the counts, so keys whose record was refused are counted as dropped.
    std::thread::sleep(Duration::from_secs(3));
    let (_, err) = obs.stop_raw();
    let peak = peak.peak_kib();
    let report = history_report(&db);
    let t = &report["totals"];
    let (kept, lost, dropped) = (
        t["failures"].as_u64().unwrap(),
        t["lost"].as_u64().unwrap(),
        t["dropped"].as_u64().expect("totals.dropped"),
    );
    assert_eq!(kept + lost + dropped, n, "{t} {err:?}");
    assert!(dropped > 0, "{t}");
    assert!(
        peak < RECORD_PEAK_KIB,
        "peak RSS {peak} KiB, bound {RECORD_PEAK_KIB} KiB"
    );
}
