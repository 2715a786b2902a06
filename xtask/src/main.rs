//! `cargo xtask`: everything needed to go from a clean clone to a running, tested observer.
//!
//! The eBPF crate needs a Rust compiler that can target `bpfel-unknown-none` and `bpf-linker`
//! built against the same LLVM major. Two routes work:
//! - Debian: `rustc-web` + `libstd-rust-web-dev-bpf` (a prebuilt `core` for the bpf target) and
//!   bpf-linker built against `llvm-N-dev`, installed into `.tools/` (git-ignored);
//! - upstream: a rustup nightly with `rust-src` (`-Z build-std=core`) and `bpf-linker` on PATH.
//!
//! When neither is there, xtask installs the Debian route (apt + cargo install), once.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};

mod bench;
mod deb;
mod footprint;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run, test and benchmark observer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain if missing and build the eBPF object.
    BuildEbpf,
    /// Build target/release/observer (eBPF object embedded).
    Build,
    /// Build, then target/debian/observer_<version>_<arch>.deb (cargo-deb), checked by lintian.
    Deb,
    /// Build, then run observer as root with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// fmt, clippy, the .deb, unit tests, the Prometheus rules (promtool), then the privileged
    /// integration tests one at a time.
    Test {
        /// Extra arguments for the integration test binary (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Measure what observer costs: per call in the kernel, its own footprint, a real Apache
    /// (prints figures; not a test).
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::BuildEbpf => build_ebpf().map(|_| ()),
        Cmd::Build => build().map(|_| ()),
        Cmd::Deb => deb::run(),
        Cmd::Run { args } => run(args),
        Cmd::Test { args } => test(args),
        Cmd::Bench(a) => build().and_then(|_| bench::run(&a)),
    };
    if let Err(e) = r {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st})");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    let o = cmd.output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

enum Toolchain {
    /// Debian's rustc with its prebuilt bpf `core`, and a project-local bpf-linker.
    Debian {
        rustc: PathBuf,
        cargo: PathBuf,
        linker: PathBuf,
    },
    /// rustup nightly with rust-src; bpf-linker on PATH.
    Upstream { linker: PathBuf },
}

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const BPF_LINKER_VERSION: &str = "0.13.0";

fn tools_dir() -> PathBuf {
    root().join(".tools")
}

/// LLVM major of Debian's rustc, e.g. 22.
fn debian_llvm_major() -> Option<u32> {
    let vv = output(Command::new(DEBIAN_RUSTC).arg("-vV"))?;
    let v = vv.lines().find_map(|l| l.strip_prefix("LLVM version: "))?;
    v.split('.').next()?.trim().parse().ok()
}

fn deb_version(pkg: &str) -> Option<String> {
    let s = output(Command::new("dpkg-query").args(["-W", "-f=${Status}|${Version}", pkg]))?;
    let (status, version) = s.split_once('|')?;
    status.ends_with("installed").then(|| version.to_string())
}

/// What the Debian route still lacks (empty when complete).
fn debian_missing() -> Vec<String> {
    let mut missing = Vec::new();
    let rustc = deb_version("rustc-web");
    let core = deb_version("libstd-rust-web-dev-bpf");
    match (&rustc, &core) {
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => missing.push(format!(
            "rustc-web {a} and libstd-rust-web-dev-bpf {b} differ (reinstall both in one apt transaction)"
        )),
        _ => missing.push("rustc-web, cargo-web, libstd-rust-web-dev-bpf".to_string()),
    }
    if deb_version("cargo-web").is_none() && !missing.iter().any(|m| m.contains("cargo-web")) {
        missing.push("cargo-web".to_string());
    }
    if !Path::new(DEBIAN_RUSTC).exists() {
        missing.push(DEBIAN_RUSTC.to_string());
    }
    missing
}

fn linker_path() -> PathBuf {
    tools_dir().join("bin/bpf-linker")
}

/// The local bpf-linker, if it exists and was built for `llvm`.
fn local_linker(llvm: u32) -> Option<PathBuf> {
    let stamp = std::fs::read_to_string(tools_dir().join("bpf-linker.stamp")).ok()?;
    let want = format!("{BPF_LINKER_VERSION} llvm-{llvm}");
    (linker_path().exists() && stamp.trim() == want).then(linker_path)
}

fn upstream_toolchain() -> Option<Toolchain> {
    let sysroot =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if !src.exists() {
        return None;
    }
    let linker = output(Command::new("sh").args(["-c", "command -v bpf-linker"]))?;
    Some(Toolchain::Upstream {
        linker: PathBuf::from(linker.trim()),
    })
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    if !is_root() {
        bail!(
            "installing {} needs root: run `sudo cargo xtask ...` once, or install them yourself",
            pkgs.join(" ")
        );
    }
    eprintln!("xtask: installing {} with apt-get", pkgs.join(" "));
    // /tmp may not be world-writable on some machines, which breaks apt's signature step.
    let env = [
        ("TMPDIR", "/var/tmp"),
        ("DEBIAN_FRONTEND", "noninteractive"),
    ];
    status(Command::new("apt-get").arg("update").arg("-q").envs(env)).context("apt-get update")?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(pkgs)
            .envs(env),
    )
    .context("apt-get install")
}

const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// `promtool check rules` and `promtool test rules` on dist/prometheus (what the README tells
/// operators to load).
fn prometheus_rules(root: &Path) -> Result<()> {
    ensure_prometheus()?;
    let dir = root.join("dist/prometheus");
    status(
        Command::new(PROMTOOL)
            .args(["check", "rules", "observer.rules.yml"])
            .current_dir(&dir),
    )?;
    status(
        Command::new(PROMTOOL)
            .args(["test", "rules", "observer.rules.test.yml"])
            .current_dir(&dir),
    )
}

/// Debian's `prometheus` package (promtool, and the server the fleet integration test runs
/// privately), installed when missing. The tests never use a system instance, so the package's
/// service is neither started by the install nor enabled for the next boot.
fn ensure_prometheus() -> Result<()> {
    if Path::new(PROMTOOL).exists() && Path::new(PROMETHEUS).exists() {
        return Ok(());
    }
    // invoke-rc.d and deb-systemd-invoke ask policy-rc.d first: 101 = "do not start".
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = is_root() && !policy.exists();
    if ours {
        std::fs::write(
            policy,
            "#!/bin/sh\n# cargo xtask: installing prometheus\nexit 101\n",
        )
        .with_context(|| format!("cannot write {}", policy.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))?;
    }
    let before = prometheus_pids();
    let installed = apt_install(&["prometheus"]);
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    installed?;
    // Installed by us: not started at boot either (update-rc.d disables the systemd unit and
    // the sysv links alike; best effort).
    let _ = Command::new("update-rc.d")
        .args(["prometheus", "disable"])
        .stdout(std::process::Stdio::null())
        .status();
    // Had something started it anyway, it would hold :9090: stop what the install started.
    for pid in prometheus_pids() {
        if !before.contains(&pid) {
            eprintln!("xtask: stopping the prometheus (pid {pid}) that the install started");
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
    if !Path::new(PROMTOOL).exists() {
        bail!("after apt-get install prometheus, {PROMTOOL} is still missing");
    }
    Ok(())
}

/// Pids of running /usr/bin/prometheus processes.
fn prometheus_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (std::fs::read_link(e.path().join("exe")).ok()? == Path::new(PROMETHEUS)).then_some(pid)
    })
    .collect()
}

fn bootstrap() -> Result<Toolchain> {
    let t0 = Instant::now();
    let debian_ready = debian_missing().is_empty();
    if !debian_ready {
        if let Some(tc) = upstream_toolchain() {
            return Ok(tc);
        }
        if output(Command::new("sh").args(["-c", "command -v apt-get"])).is_none() {
            bail!(
                "no eBPF toolchain: need either Debian's rustc-web + cargo-web + \
                 libstd-rust-web-dev-bpf (apt), or a rustup nightly with rust-src and bpf-linker \
                 on PATH (rustup toolchain install nightly --component rust-src; cargo install \
                 bpf-linker). Missing: {}",
                debian_missing().join(", ")
            );
        }
        // One transaction, so the bpf core and the compiler cannot drift apart.
        apt_install(&["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf"])?;
        let still = debian_missing();
        if !still.is_empty() {
            bail!("after apt-get install, still missing: {}", still.join(", "));
        }
    }
    let llvm = debian_llvm_major()
        .ok_or_else(|| anyhow!("cannot read the LLVM version of {DEBIAN_RUSTC} -vV"))?;
    let linker = match local_linker(llvm) {
        Some(l) => l,
        None => install_bpf_linker(llvm)?,
    };
    if t0.elapsed().as_secs() > 5 {
        eprintln!("xtask: toolchain ready in {:.0?}", t0.elapsed());
    }
    Ok(Toolchain::Debian {
        rustc: DEBIAN_RUSTC.into(),
        cargo: DEBIAN_CARGO.into(),
        linker,
    })
}

fn install_bpf_linker(llvm: u32) -> Result<PathBuf> {
    let prefix = format!("/usr/lib/llvm-{llvm}");
    if !Path::new(&prefix).join("bin/llvm-config").exists() {
        apt_install(&[&format!("llvm-{llvm}-dev")])?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} into .tools (about 2 minutes, once)"
    );
    status(
        Command::new(cargo())
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm}"),
            ])
            .arg("--root")
            .arg(tools_dir())
            .env("LLVM_PREFIX", &prefix),
    )
    .context("cargo install bpf-linker")?;
    std::fs::write(
        tools_dir().join("bpf-linker.stamp"),
        format!("{BPF_LINKER_VERSION} llvm-{llvm}\n"),
    )?;
    Ok(linker_path())
}

/// Builds the eBPF object; returns its path.
fn build_ebpf() -> Result<PathBuf> {
    let tc = bootstrap()?;
    let target_dir = root().join("target/bpf");
    let rustflags = "-C debuginfo=2 -C link-arg=--btf";
    let mut cmd = match &tc {
        Toolchain::Debian {
            rustc,
            cargo,
            linker,
        } => {
            let mut c = Command::new(cargo);
            // rustup's proxies come first on PATH: name the compiler explicitly.
            c.env("RUSTC", rustc)
                .env_remove("RUSTUP_TOOLCHAIN")
                .arg("build")
                .arg("--config")
                .arg(format!(
                    "target.bpfel-unknown-none.linker=\"{}\"",
                    linker.display()
                ));
            c
        }
        Toolchain::Upstream { linker } => {
            let mut c = Command::new("rustup");
            c.args(["run", "nightly", "cargo", "build", "-Z", "build-std=core"])
                .arg("--config")
                .arg(format!(
                    "target.bpfel-unknown-none.linker=\"{}\"",
                    linker.display()
                ));
            c
        }
    };
    cmd.current_dir(root())
        .args([
            "--package",
            "observer-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
        ])
        // aya-ebpf uses #![feature(asm_experimental_arch)].
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS", rustflags)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    status(&mut cmd).context("building the eBPF program")?;
    let obj = ebpf_object();
    if !obj.exists() {
        bail!("the eBPF build did not produce {}", obj.display());
    }
    Ok(obj)
}

/// Where `build_ebpf` puts the eBPF object.
fn ebpf_object() -> PathBuf {
    root().join("target/bpf/bpfel-unknown-none/release/observer")
}

/// Builds target/release/observer with the eBPF object embedded; returns its path.
fn build() -> Result<PathBuf> {
    let obj = build_ebpf()?;
    status(
        Command::new(cargo())
            .current_dir(root())
            .args(["build", "--release", "--package", "observer"])
            .env("OBSERVER_EBPF_OBJECT", &obj),
    )?;
    Ok(root().join("target/release/observer"))
}

fn run(args: Vec<OsString>) -> Result<()> {
    let bin = build()?;
    let mut cmd = if is_root() {
        Command::new(&bin)
    } else if output(Command::new("sh").args(["-c", "command -v sudo"])).is_some() {
        let mut c = Command::new("sudo");
        c.arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let st = cmd.args(&args).status().context("running observer")?;
    std::process::exit(st.code().unwrap_or(1));
}

fn test(args: Vec<OsString>) -> Result<()> {
    let t0 = Instant::now();
    let obj = build_ebpf()?;
    let root = root();
    let c = || {
        let mut c = Command::new(cargo());
        c.current_dir(&root).env("OBSERVER_EBPF_OBJECT", &obj);
        c
    };
    eprintln!("xtask: cargo fmt --check");
    status(c().args(["fmt", "--all", "--", "--check"]))?;
    eprintln!("xtask: clippy (userspace, tests, xtask)");
    status(c().args([
        "clippy",
        "--workspace",
        "--exclude",
        "observer-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask: clippy (eBPF crate, checked for the host)");
    status(c().args([
        "clippy",
        "--package",
        "observer-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    status(c().args(["build", "--release", "--package", "observer"]))?;
    // tests/tests/deb.rs installs it (and runs lintian on it).
    let deb = deb::package(&root.join("target/release/observer"))?;
    eprintln!("xtask: unit tests");
    status(c().args([
        "test",
        "--package",
        "observer-common",
        "--package",
        "observer",
        "--package",
        "xtask",
    ]))?;
    eprintln!("xtask: Prometheus rules (promtool check rules, promtool test rules)");
    prometheus_rules(&root)?;
    if !is_root() {
        bail!(
            "the integration tests load BPF programs and need root: run `sudo -E cargo xtask test`"
        );
    }
    eprintln!(
        "xtask: build, checks and unit tests took {:.0?}; integration tests (real kernel, real \
         BPF), one at a time",
        t0.elapsed()
    );
    status(
        c().args([
            "test",
            "--package",
            "observer-tests",
            "--",
            "--test-threads=1",
        ])
        .args(&args)
        .env("OBSERVER_BIN", root.join("target/release/observer"))
        .env("OBSERVER_DEB", &deb),
    )?;
    // Nothing after cargo's test summary: it is the run's last word.
    Ok(())
}
