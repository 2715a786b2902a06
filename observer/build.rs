//! Embeds the eBPF object built by `cargo xtask build-ebpf`.
//!
//! When the object is not there (a plain `cargo check`/`clippy`/`test` without xtask), an empty
//! stub is embedded instead, as aya's integration tests do, so the userspace crate still builds;
//! such a binary says at start-up that it has no eBPF program and how to build one.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo::rerun-if-env-changed=OBSERVER_EBPF_OBJECT");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let object = env::var_os("OBSERVER_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/bpf/bpfel-unknown-none/release/observer"));
    println!("cargo::rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("observer.bpf.o");
    let bytes = fs::read(&object).unwrap_or_default();
    if bytes.is_empty() {
        println!(
            "cargo::warning=no eBPF object at {}: embedding an empty stub (build with `cargo xtask build`)",
            object.display()
        );
    }
    fs::write(&out, bytes).expect("write OUT_DIR/observer.bpf.o");
}
