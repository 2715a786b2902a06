//! The kernel's path hash, checked against the same computation in userspace: the keys the eBPF
//! program puts in its aggregate, read through observer's own capture, must be the keyed hashes
//! of the paths the failing calls named, for every length of the last word and for a path near
//! PATH_MAX; and each load has its own key.

use observer::capture::{Capture, Filter};
use observer_common::PathHasher;
use observer_tests::{failer, failer_bin, unique_comm};

#[test]
fn the_kernels_keys_are_the_userspace_hashes_of_the_paths() {
    let comm = unique_comm("obs-hash");
    let cap = Capture::start(
        &Filter {
            comms: vec![comm.clone()],
            ..Filter::default()
        },
        false,
    )
    .expect("observer's capture starts");
    // Lengths 27 to 42: every position of the last byte in its word, twice.
    let mut paths: Vec<String> = (0..16)
        .map(|i| format!("/nonexistent-observer-hash/{}", "x".repeat(i)))
        .collect();
    paths.push(format!("/nonexistent-observer-hash/{}", "y/".repeat(2000)));
    let mut args = vec!["--comm".to_string(), comm];
    args.extend(paths.iter().map(|p| format!("openat:{p}")));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    failer(&argv);

    let mut kernel: Vec<u64> = cap
        .read_aggregate()
        .expect("reading the aggregate")
        .iter()
        .map(|(k, _)| k.path_hash)
        .collect();
    kernel.sort_unstable();
    let key = cap.hash_key();
    let mut expected: Vec<u64> = paths
        .iter()
        .map(|p| PathHasher::hash(key, p.as_bytes()))
        .collect();
    expected.sort_unstable();
    assert_eq!(
        kernel, expected,
        "the kernel's keys must be the paths' hashes, one per path"
    );
}

#[test]
fn each_load_has_its_own_secret_key() {
    let filter = Filter {
        comms: vec![unique_comm("obs-key")],
        ..Filter::default()
    };
    let a = Capture::start(&filter, false).expect("a capture");
    let b = Capture::start(&filter, false).expect("another capture");
    assert_ne!(a.hash_key(), b.hash_key());
    assert_ne!(a.hash_key(), [0, 0]);
}

/// Eviction takes a key's count and deletes it in one step: failures counted after the last read
/// are in what it returns, not lost between a read and a delete.
#[test]
fn taking_a_key_returns_what_it_counted_since_the_last_read() {
    let comm = unique_comm("obs-take");
    let mut cap = Capture::start(
        &Filter {
            comms: vec![comm.clone()],
            ..Filter::default()
        },
        false,
    )
    .expect("observer's capture starts");
    let path = "openat:/nonexistent-observer-take/x.conf";
    // One process: 3 failures, a pause while the test reads the count, 2 more.
    let mut child = std::process::Command::new(failer_bin())
        .args(["--comm", &comm, path, path, path, "wait-line", path, path])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("failer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let read = loop {
        let r = cap.read_aggregate().expect("reading the aggregate");
        if r.iter().map(|(_, v)| v.count).sum::<u64>() >= 3 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{r:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].1.count, 3);
    let keys: Vec<_> = read.iter().map(|(k, _)| *k).collect();
    // Counted after the read, before the eviction.
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap()).unwrap();
    }
    assert!(child.wait().unwrap().success());
    let taken = cap.take_keys(&keys).expect("taking the keys");
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].1.count, 5, "the two after the read are taken too");
    assert!(
        cap.read_aggregate().unwrap().is_empty(),
        "taken keys are gone"
    );
    assert!(
        cap.take_keys(&keys).unwrap().is_empty(),
        "a key is taken once"
    );
}
