//! `cargo xtask bench`: what observer costs per call, next to what its peers cost, in one run.
//!
//! A child (`failer bench`) makes failing openat calls in a tight loop and prints ns/call per
//! round; the median over rounds is reported for: no tracing; observer watching the child;
//! observer running while the child is not watched; and, when installed, a bpftrace in-kernel
//! count and strace -f. Figures, not assertions: timing belongs in a benchmark, not a test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Failing calls per round.
    #[arg(long, default_value_t = 300_000)]
    calls: u64,
    /// Rounds per configuration (the median is reported).
    #[arg(long, default_value_t = 11)]
    rounds: usize,
}

const WATCHED: &str = "obsbench";
const UNWATCHED: &str = "obsbench-other";

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

/// Runs `failer bench` (optionally under a wrapper) and returns the median ns/call.
fn measure(wrapper: &[&str], failer: &Path, comm: &str, calls: u64, rounds: usize) -> Result<f64> {
    measure_op(wrapper, failer, comm, "openat", calls, rounds)
}

fn measure_op(
    wrapper: &[&str],
    failer: &Path,
    comm: &str,
    op: &str,
    calls: u64,
    rounds: usize,
) -> Result<f64> {
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
            op,
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

pub fn run(observer: &Path, a: &BenchArgs) -> Result<()> {
    if a.rounds == 0 || a.calls == 0 {
        bail!("--calls and --rounds must be positive");
    }
    let failer = failer()?;
    let (calls, rounds) = (a.calls, a.rounds);
    eprintln!(
        "bench: {rounds} rounds of {calls} calls per configuration; medians of per-round differences"
    );

    // This machine's speed drifts (shared host): each round measures untraced, then starts
    // observer (it loads in a fraction of a second) and measures watched, unwatched and unhooked
    // calls, then stops it. Costs are medians of the per-round differences, so each comparison
    // is between measurements seconds apart.
    let mut untraced = Vec::new();
    let mut other_base = Vec::new();
    let (mut d_watched, mut d_unwatched, mut d_other) = (Vec::new(), Vec::new(), Vec::new());
    // Fastest rounds: noise only ever adds time, so minima are the steadiest estimate here.
    let (mut f_watched, mut f_unwatched, mut f_other) = (f64::MAX, f64::MAX, f64::MAX);
    let (mut fu, mut fc) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let u = measure(&[], &failer, WATCHED, calls, 1)?;
        let uc = measure_op(&[], &failer, UNWATCHED, "close", calls, 1)?;
        let mut obs = spawn_ready(
            Command::new(observer).args(["--comm", WATCHED, "--format", "json"]),
            ": watching ",
            false,
        )?;
        let w = measure(&[], &failer, WATCHED, calls, 1)?;
        let uw = measure(&[], &failer, UNWATCHED, calls, 1)?;
        let oc = measure_op(&[], &failer, UNWATCHED, "close", calls, 1)?;
        interrupt(&mut obs);
        untraced.push(u);
        other_base.push(uc);
        fu = fu.min(u);
        fc = fc.min(uc);
        f_watched = f_watched.min(w);
        f_unwatched = f_unwatched.min(uw);
        f_other = f_other.min(oc);
        d_watched.push(w - u);
        d_unwatched.push(uw - u);
        d_other.push(oc - uc);
    }
    let spread = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() - 1])
    };
    let (base, base_spread) = (median(untraced.clone()), spread(&untraced));
    let watched = base + median(d_watched.clone());
    let unwatched = base + median(d_unwatched.clone());
    let other_base = median(other_base);
    let other = other_base + median(d_other.clone());
    let (sw, su) = (spread(&d_watched), spread(&d_unwatched));

    let bpftrace = if which("bpftrace") {
        let script = format!(
            "tracepoint:syscalls:sys_exit_openat /comm == \"{WATCHED}\" && args->ret < 0/ {{ @failures = count(); }}"
        );
        let mut bt = spawn_ready(
            Command::new("bpftrace").args(["-e", &script]),
            "Attaching",
            true,
        )?;
        let v = measure(&[], &failer, WATCHED, calls, rounds)?;
        interrupt(&mut bt);
        Some(v)
    } else {
        None
    };
    // strace stops the process twice per call: far fewer calls keep the run short.
    let strace = if which("strace") {
        Some(measure(
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
            (calls / 50).max(1000),
            rounds,
        )?)
    } else {
        None
    };

    println!();
    println!(
        "cost of one failing openat (ns/call; observer rows: untraced + median per-round difference, {rounds} rounds)"
    );
    println!(
        "  {:<44} {:>9.1} ns  (rounds ranged {:.0}-{:.0} ns)",
        "untraced", base, base_spread.0, base_spread.1
    );
    println!(
        "  {:<44} {:>9.1} ns  (+{:.1} ns; rounds +{:.0} to +{:.0})",
        "watched by observer",
        watched,
        watched - base,
        sw.0,
        sw.1
    );
    match bpftrace {
        Some(v) => println!(
            "  {:<44} {:>9.1} ns  (+{:.1} ns)",
            "bpftrace in-kernel count (same filter)",
            v,
            v - base
        ),
        None => println!(
            "  {:<44} {:>12}",
            "bpftrace in-kernel count", "not installed"
        ),
    }
    match strace {
        Some(v) => println!(
            "  {:<44} {:>9.1} ns  (+{:.1} ns, x{:.0})",
            "strace -f -Z -e trace=openat",
            v,
            v - base,
            v / base
        ),
        None => println!("  {:<44} {:>12}", "strace", "not installed"),
    }
    println!(
        "  {:<44} {:>9.1} ns  (+{:.1} ns; rounds +{:.0} to +{:.0})",
        "unwatched process, observer running",
        unwatched,
        unwatched - base,
        su.0,
        su.1
    );
    println!(
        "  fastest rounds: untraced {fu:.1}, watched {f_watched:.1} (+{:.1}), unwatched \
         {f_unwatched:.1} (+{:.1}); close(-1) {fc:.1} -> {f_other:.1} (+{:.1}) ns",
        f_watched - fu,
        f_unwatched - fu,
        f_other - fc
    );
    println!();
    println!("cost of any syscall observer does not hook (close(-1), median ns/call)");
    println!("  {:<44} {:>9.1} ns", "untraced", other_base);
    println!(
        "  {:<44} {:>9.1} ns  (+{:.1} ns)",
        "observer running",
        other,
        other - other_base
    );
    println!();
    println!(
        "targets: watched +{:.1} ns (<= 200), unwatched +{:.1} ns (<= 30)",
        watched - base,
        unwatched - base
    );
    Ok(())
}
