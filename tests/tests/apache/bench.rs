//! `cargo xtask bench apache`: what observer costs a real Apache, the suite's own private
//! instance and PHP application, mod_php and PHP-FPM, under a closed-loop load.
//!
//! The host's speed drifts (2x over hours, 30 % between 8-second rounds), so a before/after
//! cannot see 1 %. Instead: many short rounds, untraced and traced alternating (U T U T ... U);
//! each traced round is compared with the mean of its two untraced neighbours, and the median
//! of those ratios is reported with its spread and the number of rounds that would resolve 1 %.
//!
//! The load generator is here rather than `ab`: `ab` reports latencies in whole milliseconds,
//! too coarse for a p99 within 1 % of a few-millisecond page. Each of `CLIENTS` threads sends
//! HTTP/1.0 GETs (a connection per request, as `ab` without `-k`), cycling through the healthy
//! site's pages (which make the benign failing lookups of a real site), and times each one.
//!
//! Figures, not assertions: timing belongs in a benchmark, not a test. The function is an
//! ignored test only to reuse the suite's harness.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use observer_tests::{Observer, TempDir, usage};

use crate::harness::{Apache, PAGES, Stack};

/// Concurrent clients: twice the PHP workers, so the pool is always busy.
const CLIENTS: usize = 4;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// One round of load: requests per second and every request's latency (µs, sorted).
struct Round {
    rps: f64,
    lat_us: Vec<u64>,
}

impl Round {
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i] as f64
    }
}

fn one_request(addr: SocketAddr, page: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    if write!(
        s,
        "GET {page} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: observer-bench\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16384];
    let mut first = true;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return !first,
            Ok(n) => {
                if first && !buf[..n].starts_with(b"HTTP/1.") {
                    return false;
                }
                first = false;
            }
            Err(_) => return false,
        }
    }
}

/// `CLIENTS` closed-loop clients for `secs`.
fn load(addr: SocketAddr, secs: f64) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let page = PAGES[i % PAGES.len()].0;
                    i += 1;
                    let t = Instant::now();
                    assert!(one_request(addr, page), "GET {page} failed under load");
                    lat.push(t.elapsed().as_micros() as u64);
                }
                lat
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let elapsed = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    Round {
        rps: lat.len() as f64 / elapsed,
        lat_us: lat,
    }
}

/// What traces the server during a traced round.
#[derive(Clone, Copy, PartialEq)]
enum Tracer {
    AdHoc,
    Record,
    Strace,
}

impl Tracer {
    fn label(self) -> &'static str {
        match self {
            Tracer::AdHoc => "observer (ad-hoc, default selection)",
            Tracer::Record => "observer record (flush every 1 s)",
            Tracer::Strace => "strace -f on the workers",
        }
    }
}

enum Running {
    Observer(Observer),
    Strace(Child),
}

fn start(t: Tracer, apache: &Apache, dir: &TempDir, n: usize) -> Running {
    match t {
        Tracer::AdHoc => Running::Observer(Observer::start_with(&[], &["--format", "json"])),
        Tracer::Record => {
            let db = dir.join(&format!("bench-{n}.db"));
            Running::Observer(Observer::start_with(
                &[
                    "record",
                    "--db",
                    &db,
                    "--flush-interval",
                    "1s",
                    "--config",
                    "/dev/null",
                ],
                &[],
            ))
        }
        Tracer::Strace => {
            let mut cmd = Command::new("strace");
            cmd.args(["-f", "-qq", "-o", "/dev/null"]);
            let pids = apache.pids();
            for p in &pids {
                cmd.arg("-p").arg(p.to_string());
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("strace");
            let me = child.id();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !pids.iter().all(|p| tracer_pid(*p) == Some(me)) {
                assert!(Instant::now() < deadline, "strace did not attach");
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(300));
            Running::Strace(child)
        }
    }
}

fn tracer_pid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("TracerPid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn stop(r: Running) {
    match r {
        Running::Observer(o) => {
            let _ = o.stop_raw();
        }
        Running::Strace(mut c) => {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn stdev(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let m = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// Rounds for the median of ratios with spread `sd` to resolve 1 % at 95 % confidence (the
/// median's standard error is about 1.25 sd / sqrt(n)).
fn rounds_for_1pct(sd: f64) -> u64 {
    (1.96 * 1.2533 * sd / 0.01).powi(2).ceil() as u64
}

/// Per traced round, compared with its neighbours.
struct Compared {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    base_rps: Vec<f64>,
    base_p50: Vec<f64>,
    base_p99: Vec<f64>,
    cpu_pct: Vec<f64>,
    wakeups_s: Vec<f64>,
    rss_start: Vec<u64>,
    rss_after: Vec<u64>,
}

fn series(apache: &Apache, t: Tracer, rounds: usize, secs: f64, dir: &TempDir) -> Compared {
    let mut c = Compared {
        rps: vec![],
        p50: vec![],
        p99: vec![],
        base_rps: vec![],
        base_p50: vec![],
        base_p99: vec![],
        cpu_pct: vec![],
        wakeups_s: vec![],
        rss_start: vec![],
        rss_after: vec![],
    };
    let mut before = load(apache.addr(), secs);
    for n in 0..rounds {
        let running = start(t, apache, dir, n);
        let pid = match &running {
            Running::Observer(o) => Some(o.pid()),
            Running::Strace(_) => None,
        };
        let u0 = pid.map(usage).unwrap_or_default();
        let t0 = Instant::now();
        let traced = load(apache.addr(), secs);
        let wall = t0.elapsed().as_secs_f64();
        let u1 = pid.map(usage).unwrap_or_default();
        stop(running);
        let after = load(apache.addr(), secs);
        let mid = |f: &dyn Fn(&Round) -> f64| (f(&before) + f(&after)) / 2.0;
        c.rps.push(traced.rps / mid(&|r| r.rps));
        c.p50.push(traced.pct(0.50) / mid(&|r| r.pct(0.50)));
        c.p99.push(traced.pct(0.99) / mid(&|r| r.pct(0.99)));
        c.base_rps.push(mid(&|r| r.rps));
        c.base_p50.push(mid(&|r| r.pct(0.50)));
        c.base_p99.push(mid(&|r| r.pct(0.99)));
        if pid.is_some() {
            c.cpu_pct
                .push(100.0 * (u1.cpu_ns - u0.cpu_ns) as f64 / 1e9 / wall);
            c.wakeups_s.push((u1.switches - u0.switches) as f64 / wall);
            c.rss_start.push(u0.rss_kib);
            c.rss_after.push(u1.rss_kib);
        }
        before = after;
    }
    c
}

fn print(stack: Stack, t: Tracer, c: &mut Compared, rounds: usize, secs: f64) {
    let ratio = |v: &mut Vec<f64>| {
        let sd = stdev(v);
        let m = median(v);
        let (lo, hi) = (v[0], v[v.len() - 1]);
        (m, sd, lo, hi)
    };
    let (m, sd, lo, hi) = ratio(&mut c.rps);
    let base = median(&mut c.base_rps.clone());
    // The clients keep every core busy, so a request costs cores / throughput of CPU: what the
    // tracer adds per request, in µs, carries over to an application of any weight.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let per_request_us = cores * 1e6 * (1.0 / (base * m) - 1.0 / base);
    let (p50, _, _, _) = ratio(&mut c.p50);
    let (p99, sd99, lo99, hi99) = ratio(&mut c.p99);
    println!(
        "  {:<38} throughput {:6.2} % of untraced (spread sd {:.2} %, range {:.1}..{:.1} %; \
         {} rounds resolve 1 %)",
        t.label(),
        100.0 * m,
        100.0 * sd,
        100.0 * lo,
        100.0 * hi,
        rounds_for_1pct(sd)
    );
    println!(
        "  {:<38} {per_request_us:.1} µs of CPU added per request ({base:.0} req/s untraced, on \
         {cores} busy cores)",
        ""
    );
    println!(
        "  {:<38} latency p50 {:+6.2} %, p99 {:+6.2} % (p99 sd {:.2} %, range {:+.1}..{:+.1} %)",
        "",
        100.0 * (p50 - 1.0),
        100.0 * (p99 - 1.0),
        100.0 * sd99,
        100.0 * (lo99 - 1.0),
        100.0 * (hi99 - 1.0)
    );
    if !c.cpu_pct.is_empty() {
        let rss0 = median(&mut c.rss_start.iter().map(|v| *v as f64).collect::<Vec<_>>());
        let rss1 = median(&mut c.rss_after.iter().map(|v| *v as f64).collect::<Vec<_>>());
        println!(
            "  {:<38} its own CPU {:.2} % of a core, {:.1} wakeups/s; RSS {:.1} MB at start, \
             {:.1} MB after the round",
            "",
            median(&mut c.cpu_pct),
            median(&mut c.wakeups_s),
            rss0 / 1024.0,
            rss1 / 1024.0
        );
    }
    let _ = (stack, rounds, secs);
}

/// The whole benchmark: both stacks, every tracer.
pub(crate) fn apache_throughput_and_latency() {
    let rounds = env_or("OBSERVER_BENCH_ROUNDS", 10) as usize;
    let secs = env_or("OBSERVER_BENCH_MS", 2000) as f64 / 1000.0;
    let strace_rounds = rounds.div_ceil(3).max(2);
    let dir = TempDir::new("bench-apache");
    println!();
    println!(
        "Apache + PHP, the suite's private instance and app, {CLIENTS} closed-loop clients, \
         {secs:.1} s rounds, untraced and traced alternating ({rounds} traced rounds per \
         tracer, {strace_rounds} for strace); ratios are traced / mean of the two neighbouring \
         untraced rounds, median over rounds"
    );
    for stack in [Stack::ModPhp, Stack::Fpm] {
        let apache = Apache::start(stack);
        apache.healthy(2);
        // Warm up: opcache, the page cache, the pool.
        let warm = load(apache.addr(), secs);
        println!();
        println!(
            "{} (untraced: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms in the warm-up round):",
            match stack {
                Stack::ModPhp => "mod_php (prefork, 2 workers)",
                Stack::Fpm => "PHP-FPM (event + proxy_fcgi, 2 pool workers)",
            },
            warm.rps,
            warm.pct(0.5) / 1000.0,
            warm.pct(0.99) / 1000.0
        );
        for t in [Tracer::AdHoc, Tracer::Record, Tracer::Strace] {
            let n = if t == Tracer::Strace {
                strace_rounds
            } else {
                rounds
            };
            let mut c = series(&apache, t, n, secs, &dir);
            print(stack, t, &mut c, n, secs);
        }
        drop(apache);
    }
}
