//! `cargo xtask bench`: what observer costs per call, next to what its peers cost, in one run.
//!
//! observer's own figures come from `observer/benches/overhead.rs`: it loads observer's capture
//! and toggles its hook between batches of calls a few milliseconds apart, which cancels this
//! host's drift (its speed wanders by 2x over minutes). Peers cannot be toggled that fast: for
//! bpftrace and strace each round measures untraced, traced, untraced again, and the cost is
//! the median over rounds of traced minus the mean of its two neighbours. Figures, not
//! assertions: timing belongs in a benchmark, not a test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What to measure.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub(crate) enum Part {
    /// Everything below, in one run.
    All,
    /// The kernel hook per call, next to bpftrace and strace, and the history database.
    Kernel,
    /// observer's own RSS, CPU and wakeups: at start, idle and under storms.
    Footprint,
    /// A real Apache + PHP (mod_php and PHP-FPM) under load: untraced, ad-hoc, record, strace.
    Apache,
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value_t = Part::All)]
    part: Part,
    /// Traced rounds per tracer for the Apache figures (strace gets a third of them).
    #[arg(long, default_value_t = 10)]
    apache_rounds: u64,
    /// Length of one Apache round, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    apache_round_ms: u64,
    /// Attach/detach cycles for observer's figures (each cycle times 8 batches per call kind:
    /// off, on, prefix, floor, floor, prefix, on, off).
    #[arg(long, default_value_t = 400)]
    cycles: u64,
    /// Calls per batch for observer's figures.
    #[arg(long, default_value_t = 2000)]
    calls: u64,
    /// Rounds for the bpftrace and strace comparisons (the median is reported).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

const WATCHED: &str = "obsbench";

fn failer() -> Result<PathBuf> {
    crate::status(
        Command::new(crate::cargo())
            .current_dir(crate::root())
            .args([
                "build",
                "--release",
                "--package",
                "observer-tests",
                "--bin",
                "failer",
            ]),
    )?;
    Ok(crate::root().join("target/release/failer"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `failer bench` (optionally under a wrapper) and returns the median ns per failing openat.
fn measure(wrapper: &[&str], failer: &Path, comm: &str, calls: u64, rounds: usize) -> Result<f64> {
    let mut cmd = match wrapper.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(failer);
            c
        }
        None => Command::new(failer),
    };
    let out = cmd
        .args([
            "bench",
            "--comm",
            comm,
            "--op",
            "openat",
            "--calls",
            &calls.to_string(),
            "--rounds",
            &rounds.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running failer bench")?;
    if !out.status.success() {
        bail!("failer bench failed: {}", out.status);
    }
    let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if v.len() != rounds {
        bail!("failer bench printed {} rounds, expected {rounds}", v.len());
    }
    Ok(median(v))
}

/// Spawns a tracer and waits until its stderr/stdout says it is ready.
fn spawn_ready(cmd: &mut Command, ready: &str, from_stdout: bool) -> Result<Child> {
    let mut child = if from_stdout {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?
    };
    let stream: Box<dyn std::io::Read + Send> = if from_stdout {
        Box::new(child.stdout.take().context("stdout")?)
    } else {
        Box::new(child.stderr.take().context("stderr")?)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if line.contains(&ready) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .context("tracer did not become ready")?;
    // Let every probe finish attaching.
    std::thread::sleep(Duration::from_millis(300));
    Ok(child)
}

pub(crate) fn interrupt(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn which(tool: &str) -> bool {
    crate::output(Command::new("sh").args(["-c", &format!("command -v {tool}")])).is_some()
}

pub(crate) fn run(a: &BenchArgs) -> Result<()> {
    if a.rounds == 0 || a.calls == 0 || a.cycles == 0 || a.apache_rounds < 2 {
        bail!("--cycles, --calls and --rounds must be positive, --apache-rounds at least 2");
    }
    if a.apache_round_ms < 200 {
        bail!("--apache-round-ms must be at least 200");
    }
    // The peers observer is compared with, installed like the test suite's packages.
    let missing: Vec<&str> = ["bpftrace", "strace"]
        .into_iter()
        .filter(|t| !which(t))
        .collect();
    if !missing.is_empty() {
        crate::apt_install(&missing)?;
    }
    let failer = failer()?;
    if matches!(a.part, Part::All | Part::Footprint) {
        crate::footprint::run(&crate::root().join("target/release/observer"), &failer)?;
    }
    if matches!(a.part, Part::All | Part::Kernel) {
        kernel(a, &failer)?;
    }
    if matches!(a.part, Part::All | Part::Apache) {
        apache(a)?;
    }
    Ok(())
}

/// The Apache benchmark: an ignored test of the end-to-end suite, to reuse its private Apache.
fn apache(a: &BenchArgs) -> Result<()> {
    eprintln!("bench: a real Apache + PHP under load (the e2e suite's instance, release build)");
    crate::status(
        Command::new(crate::cargo())
            .current_dir(crate::root())
            .args([
                "test",
                "--release",
                "--package",
                "observer-tests",
                "--test",
                "apache",
                "bench_apache",
                "--",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "OBSERVER_BIN",
                crate::root().join("target/release/observer"),
            )
            .env("OBSERVER_EBPF_OBJECT", crate::ebpf_object())
            .env("OBSERVER_BENCH_ROUNDS", a.apache_rounds.to_string())
            .env("OBSERVER_BENCH_MS", a.apache_round_ms.to_string()),
    )
}

/// The per-call figures: observer's hook toggled, then its peers.
fn kernel(a: &BenchArgs, failer: &Path) -> Result<()> {
    let failer = failer.to_path_buf();
    eprintln!(
        "bench: observer's capture, {} attach/detach cycles",
        a.cycles
    );
    let out = Command::new(crate::cargo())
        .current_dir(crate::root())
        .args([
            "bench",
            "--package",
            "observer",
            "--bench",
            "overhead",
            "--",
            "--cycles",
            &a.cycles.to_string(),
            "--calls",
            &a.calls.to_string(),
        ])
        .env("OBSERVER_EBPF_OBJECT", crate::ebpf_object())
        .stderr(Stdio::inherit())
        .output()
        .context("running the overhead bench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() {
        bail!("the overhead bench failed: {}", out.status);
    }
    // "  watched process: observer adds    +287.5 ns/call  [...]": the figure set beside peers.
    let observer_watched: Option<f64> = text
        .lines()
        .find(|l| l.contains("watched process: observer adds") && !l.contains("unwatched"))
        .and_then(|l| {
            l.split("adds")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });

    eprintln!("bench: the history database (measure_ set)");
    crate::status(
        Command::new(crate::cargo())
            .current_dir(crate::root())
            .args([
                "test",
                "--release",
                "--package",
                "observer",
                "--lib",
                "measure_",
                "--",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ]),
    )?;

    // Peers: rounds of untraced, traced, untraced; one tracer start per round.
    let calls = 200_000;
    let rounds = a.rounds;
    // bpftrace twice: a bare count of failures (less than observer does: no path), and a count
    // per failing path, which is what observer tells (the path is only in sys_enter's arguments,
    // so it is kept per thread until the exit, as bpftrace's own opensnoop.bt does).
    let count_only = format!(
        "tracepoint:syscalls:sys_exit_openat /comm == \"{WATCHED}\" && args->ret < 0/ {{ @failures = count(); }}"
    );
    let per_path = format!(
        "tracepoint:syscalls:sys_enter_openat /comm == \"{WATCHED}\"/ {{ @name[tid] = args->filename; }} \
         tracepoint:syscalls:sys_exit_openat /@name[tid]/ {{ if (args->ret < 0) {{ @failed[str(@name[tid])] = count(); }} delete(@name[tid]); }}"
    );
    let bpftrace = |script: &str| -> Result<Option<f64>> {
        if !which("bpftrace") {
            return Ok(None);
        }
        let mut d = Vec::new();
        for _ in 0..rounds {
            let before = measure(&[], &failer, WATCHED, calls, 3)?;
            let mut bt = spawn_ready(
                Command::new("bpftrace").args(["-e", script]),
                "Attaching",
                true,
            )?;
            let traced = measure(&[], &failer, WATCHED, calls, 3)?;
            interrupt(&mut bt);
            let after = measure(&[], &failer, WATCHED, calls, 3)?;
            d.push(traced - (before + after) / 2.0);
        }
        Ok(Some(median(d)))
    };
    let bpftrace_count = bpftrace(&count_only)?;
    let bpftrace_path = bpftrace(&per_path)?;
    // strace stops the process twice per call: far fewer calls keep the run short.
    let strace = if which("strace") {
        let mut ratio = Vec::new();
        for _ in 0..rounds {
            let before = measure(&[], &failer, WATCHED, calls, 1)?;
            let traced = measure(
                &[
                    "strace",
                    "-f",
                    "-Z",
                    "-qq",
                    "-e",
                    "trace=openat",
                    "-o",
                    "/dev/null",
                ],
                &failer,
                WATCHED,
                calls / 50,
                1,
            )?;
            let after = measure(&[], &failer, WATCHED, calls, 1)?;
            ratio.push(traced / ((before + after) / 2.0));
        }
        Some(median(ratio))
    } else {
        None
    };
    println!();
    println!("peers, same failing openat ({rounds} rounds, median):");
    match (bpftrace_count, bpftrace_path) {
        (Some(c), Some(p)) => {
            println!("  bpftrace, a bare count of failures (no path)   adds {c:+7.1} ns/call");
            println!("  bpftrace, a count per failing path (as observer) adds {p:+7.1} ns/call");
            if let Some(o) = observer_watched {
                println!(
                    "  observer's watched failing call (+{o:.1} ns) is {:.2} of bpftrace's per-path \
                     count (target <= 0.25) and {:.2} of its bare count",
                    o / p,
                    o / c
                );
            }
        }
        _ => println!("  bpftrace: not installed"),
    }
    match strace {
        Some(r) => println!("  strace -f -Z -e trace=openat makes the call {r:.0}x slower"),
        None => println!("  strace: not installed"),
    }
    Ok(())
}
