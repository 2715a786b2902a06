//! The kernel's path hash, checked against the same computation in userspace: the keys the eBPF
//! program puts in its aggregate, read through observer's own capture, must be the hashes of the
//! paths the failing calls named, for every length of the last word and for a path near PATH_MAX.

use observer::capture::{Capture, Filter};
use observer_common::{HASH_SEED, hash_finish, hash_step};
use observer_tests::{failer, unique_comm};

/// The path hash as observer-ebpf computes it: 8-byte little-endian words, the last one
/// zero-padded, then the length.
fn path_hash(path: &[u8]) -> u64 {
    let mut h = HASH_SEED;
    for chunk in path.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = hash_step(h, u64::from_le_bytes(w));
    }
    hash_finish(h, path.len() as u64)
}

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
    let mut expected: Vec<u64> = paths.iter().map(|p| path_hash(p.as_bytes())).collect();
    expected.sort_unstable();
    assert_eq!(
        kernel, expected,
        "the kernel's keys must be the paths' hashes, one per path"
    );
}
