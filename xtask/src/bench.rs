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

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
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

fn interrupt(child: &mut Child) {
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
    if a.rounds == 0 || a.calls == 0 || a.cycles == 0 {
        bail!("--cycles, --calls and --rounds must be positive");
    }
    let failer = failer()?;
    eprintln!(
        "bench: observer's capture, {} attach/detach cycles",
        a.cycles
    );
    crate::status(
        Command::new(crate::cargo())
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
            ]),
    )?;

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
    let bpftrace = if which("bpftrace") {
        let script = format!(
            "tracepoint:syscalls:sys_exit_openat /comm == \"{WATCHED}\" && args->ret < 0/ {{ @failures = count(); }}"
        );
        let mut d = Vec::new();
        for _ in 0..rounds {
            let before = measure(&[], &failer, WATCHED, calls, 3)?;
            let mut bt = spawn_ready(
                Command::new("bpftrace").args(["-e", &script]),
                "Attaching",
                true,
            )?;
            let traced = measure(&[], &failer, WATCHED, calls, 3)?;
            interrupt(&mut bt);
            let after = measure(&[], &failer, WATCHED, calls, 3)?;
            d.push(traced - (before + after) / 2.0);
        }
        Some(median(d))
    } else {
        None
    };
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
    match bpftrace {
        Some(v) => println!("  bpftrace in-kernel count (same filter) adds {v:+7.1} ns/call"),
        None => println!("  bpftrace: not installed"),
    }
    match strace {
        Some(r) => println!("  strace -f -Z -e trace=openat makes the call {r:.0}x slower"),
        None => println!("  strace: not installed"),
    }
    Ok(())
}
