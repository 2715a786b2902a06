//! observer's own footprint: time to attached, RSS at start, at idle and under storms, its CPU
//! per 1,000 ring-buffer records and at idle, and how often it wakes. Read from /proc: RSS from
//! `VmRSS` (sampled every 10 ms for peaks), CPU from every thread's `schedstat` (ns on a CPU),
//! wakeups as voluntary context switches.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const COMM: &str = "obsfootprint";

#[derive(Clone, Copy, Default)]
struct Usage {
    cpu_ns: u64,
    switches: u64,
    rss_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let mut u = Usage::default();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let sched = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            u.cpu_ns += sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            u.switches += s
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    u.rss_kib = status_kib(pid, "VmRSS:");
    u
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Samples VmRSS every 10 ms until dropped; the largest value seen.
struct Peak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peak {
    fn start(pid: u32) -> Peak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Peak {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn mb(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// observer with `args`, started and waited for until it says it is watching; the time that
/// took.
fn spawn(observer: &Path, args: &[&str]) -> Result<(Child, Duration)> {
    let t0 = Instant::now();
    let mut child = Command::new(observer)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", observer.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(": watching ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .context("observer did not start watching")?;
    Ok((child, t0.elapsed()))
}

fn stop(mut child: Child) {
    crate::bench::interrupt(&mut child);
}

fn failer(failer: &Path, args: &[&str]) -> Result<()> {
    let st = Command::new(failer)
        .args(["--comm", COMM])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .context("running failer")?;
    if !st.success() {
        bail!("failer {args:?}: {st}");
    }
    Ok(())
}

/// CPU (% of a core) and wakeups per second of `pid` over `secs` of doing nothing.
fn idle(pid: u32, secs: u64) -> (f64, f64) {
    let u0 = usage(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let u1 = usage(pid);
    let wall = t0.elapsed().as_secs_f64();
    (
        100.0 * (u1.cpu_ns - u0.cpu_ns) as f64 / 1e9 / wall,
        (u1.switches - u0.switches) as f64 / wall,
    )
}

pub(crate) fn run(observer: &Path, failer_bin: &Path) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("observer-footprint-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = Cleanup(dir.clone());
    println!();
    println!("footprint (observer's own process, from /proc):");

    // Ad-hoc.
    let (child, attach) = spawn(observer, &["--comm", COMM, "--format", "json"])?;
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(500));
    let start_rss = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let start_hwm = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    let (cpu, wake) = idle(pid, 10);
    // A storm of distinct failures: every one is a ring-buffer record.
    let distinct = 20_000u64;
    let peak = Peak::start(pid);
    let u0 = usage(pid);
    failer(
        failer_bin,
        &[&format!(
            "spray:{distinct}:/nonexistent/observer-footprint/p-"
        )],
    )?;
    // Let the reader take the last records (its tick is 1 s).
    std::thread::sleep(Duration::from_millis(1500));
    let u1 = usage(pid);
    let storm_peak = peak.mb();
    let per_k = (u1.cpu_ns - u0.cpu_ns) as f64 / 1e6 / (distinct as f64 / 1000.0);
    stop(child);
    println!(
        "  ad-hoc: attached in {:.0} ms; RSS {start_rss:.1} MB after start (peak {start_hwm:.1} MB \
         while loading); idle: {cpu:.3} % of a core, {wake:.1} wakeups/s (10 s)",
        attach.as_secs_f64() * 1000.0
    );
    println!(
        "  ad-hoc: {distinct} distinct failures (one record each): {per_k:.1} ms of CPU per \
         1,000 records, RSS peak {storm_peak:.1} MB (the report keeps every path)"
    );

    // Record: 1M failures over 100 paths.
    let db = dir.join("footprint.db");
    let db = db.to_str().context("utf-8 temp dir")?;
    let (child, attach) = spawn(
        observer,
        &[
            "record",
            "--comm",
            COMM,
            "--db",
            db,
            "--flush-interval",
            "1s",
            "--config",
            "/dev/null",
        ],
    )?;
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(500));
    let start_rss = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let (cpu, wake) = idle(pid, 10);
    let peak = Peak::start(pid);
    let paths: Vec<String> = (0..100)
        .map(|i| format!("newfstatat:/nonexistent/observer-footprint/r{i}.php"))
        .collect();
    let mut args: Vec<&str> = vec!["--repeat", "10000"];
    args.extend(paths.iter().map(String::as_str));
    let t0 = Instant::now();
    failer(failer_bin, &args)?;
    let storm_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(2500));
    let after_rss = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let storm_peak = peak.mb();
    stop(child);
    println!(
        "  record: attached in {:.0} ms; RSS {start_rss:.1} MB after start; idle: {cpu:.3} % of a \
         core, {wake:.1} wakeups/s (10 s, flushing every 1 s)",
        attach.as_secs_f64() * 1000.0
    );
    println!(
        "  record: 1,000,000 failures over 100 paths in {storm_secs:.1} s: RSS peak \
         {storm_peak:.1} MB, {after_rss:.1} MB after"
    );
    Ok(())
}

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
