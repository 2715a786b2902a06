//! What observer's capture adds to a syscall, measured so that a drifting host cannot fake it.
//!
//! Run as root (through `cargo xtask bench`). It loads observer's own capture, watching comm
//! `obsbench`, and times batches of calls from a child process (observer never watches its own),
//! which runs each batch when told to over a pipe, so the timing loop holds nothing but the
//! calls: a failing openat while named `obsbench` (watched), the same openat while named
//! something else (unwatched), and close(-1) (a syscall observer does not hook).
//!
//! Between batches it attaches and detaches the hook (`Capture::resume`/`pause`), so each
//! difference compares batches a few milliseconds apart: on a shared VM whose speed wanders by
//! 2x over hours, rounds seconds apart measure the host, not the tracer. Each cycle runs off,
//! full, prefix, floor, floor, prefix, full, off, where "prefix" is the same capture selecting by
//! a name pattern (`obsbe*`) instead of the exact name, and "floor" a capture hooking only
//! execve (openat then pays only the kernel's dispatch to a program that returns at its first
//! load). Figures are medians over cycles of (mean traced - mean untraced) ns/call, with their
//! interquartile range.
//!
//! A last pass reads the kernel's run-time accounting of the hook, and the run ends by checking
//! that every watched failing call made while attached was counted, so the "watched" figure is
//! known to include the full capture path.

#![expect(
    unused_crate_dependencies,
    reason = "the benchmark drives the library's capture; the package's other dependencies are the library's"
)]

use std::ffi::CStr;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer::capture::{Capture, Filter};
use observer_common::Syscall;

const WATCHED: &CStr = c"obsbench";
/// Matched by neither the exact name nor the prefix pattern.
const UNWATCHED: &CStr = c"obsother";
/// The prefix pattern the "prefix" capture selects by: it matches `obsbench`.
const PREFIX: &str = "obsbe*";
/// Calls per kind for the run-time statistics pass.
const STATS_CALLS: u64 = 200_000;
const PATH: &CStr = c"/nonexistent-observer-bench/missing.php";

#[derive(Clone, Copy)]
enum Op {
    Watched,
    Unwatched,
    Close,
}

impl Op {
    fn letter(self) -> char {
        match self {
            Op::Watched => 'W',
            Op::Unwatched => 'U',
            Op::Close => 'C',
        }
    }
}

/// The child: reads "OP CALLS" lines, answers each with the batch's ns/call.
fn child() -> Result<()> {
    set_comm(UNWATCHED);
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let (op, n) = line.split_once(' ').context("bad request")?;
        let op = match op {
            "W" => Op::Watched,
            "U" => Op::Unwatched,
            "C" => Op::Close,
            _ => bail!("bad op {op}"),
        };
        writeln!(out, "{}", batch(op, n.parse()?))?;
        out.flush()?;
    }
    Ok(())
}

struct Caller {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl Caller {
    fn spawn() -> Result<Caller> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the calling child")?;
        let to = child.stdin.take().context("child stdin")?;
        let from = BufReader::new(child.stdout.take().context("child stdout")?);
        Ok(Caller { child, to, from })
    }

    fn batch(&mut self, op: Op, calls: u64) -> Result<f64> {
        writeln!(self.to, "{} {calls}", op.letter())?;
        self.to.flush()?;
        let mut line = String::new();
        self.from.read_line(&mut line)?;
        line.trim()
            .parse()
            .with_context(|| format!("child answered {line:?}"))
    }
}

fn set_comm(name: &CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// ns per call over `n` calls of `op`.
fn batch(op: Op, n: u64) -> f64 {
    match op {
        Op::Watched => set_comm(WATCHED),
        Op::Unwatched | Op::Close => set_comm(UNWATCHED),
    }
    let t = Instant::now();
    for _ in 0..n {
        match op {
            // SAFETY: a valid C string; the path does not exist, so nothing is opened.
            Op::Watched | Op::Unwatched => unsafe {
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    PATH.as_ptr(),
                    libc::O_RDONLY,
                );
            },
            // SAFETY: closing an invalid fd only returns EBADF.
            Op::Close => unsafe {
                libc::syscall(libc::SYS_close, -1);
            },
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    set_comm(UNWATCHED);
    ns
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn arg(args: &[String], name: &str, default: u64) -> Result<u64> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
            .with_context(|| format!("{name} needs a positive number")),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; take only our own flags.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--child") {
        return child();
    }
    let cycles = arg(&args, "--cycles", 400)? as usize;
    let calls = arg(&args, "--calls", 2000)?;
    // Attaching and detaching leave the kernel some work (RCU callbacks freeing tracepoint
    // probes); a short pause keeps it out of the batches.
    let settle = Duration::from_millis(arg(&args, "--settle-ms", 2)?);

    let mut caller = Caller::spawn()?;
    let filter = Filter {
        comms: vec![WATCHED.to_str()?.to_string()],
        ..Filter::default()
    };
    let mut full = Capture::start(&filter, false).context("starting observer's capture")?;
    full.pause()?;
    // The same program hooking only execve: openat then pays the kernel's dispatch to a sys_exit
    // program and one table load, which splits an unwatched call's cost into the kernel's part
    // and observer's own.
    let mut prefix = Capture::start(
        &Filter {
            comms: vec![PREFIX.to_string()],
            ..filter.clone()
        },
        false,
    )
    .context("starting the prefix-pattern capture")?;
    prefix.pause()?;
    let mut floor = Capture::start(
        &Filter {
            syscalls: vec![Syscall::Execve],
            ..filter.clone()
        },
        false,
    )
    .context("starting the execve-only capture")?;
    floor.pause()?;
    std::thread::sleep(Duration::from_millis(50));

    const OPS: [Op; 3] = [Op::Watched, Op::Unwatched, Op::Close];
    let mut untraced: [Vec<f64>; 3] = Default::default();
    let mut d_full: [Vec<f64>; 3] = Default::default();
    let mut d_floor: [Vec<f64>; 3] = Default::default();
    let mut d_prefix: [Vec<f64>; 3] = Default::default();
    let mut watched_traced_calls = 0u64;
    let mut measure = |out: &mut [f64; 3]| -> Result<()> {
        for (i, &op) in OPS.iter().enumerate() {
            out[i] += caller.batch(op, calls)? / 2.0;
        }
        Ok(())
    };
    let switch = |from: Option<&mut Capture>, to: Option<&mut Capture>| -> Result<()> {
        if let Some(c) = from {
            c.pause()?;
        }
        if let Some(c) = to {
            c.resume()?;
        }
        std::thread::sleep(settle);
        Ok(())
    };
    // Warm up every state once.
    measure(&mut [0.0; 3])?;
    for c in [&mut full, &mut prefix, &mut floor] {
        switch(None, Some(&mut *c))?;
        measure(&mut [0.0; 3])?;
        switch(Some(c), None)?;
    }
    watched_traced_calls += calls;
    // Each cycle runs off, full, prefix, floor, floor, prefix, full, off: symmetric, so a drift
    // that is linear over the cycle cancels out of every difference.
    for _ in 0..cycles {
        let (mut off, mut on, mut pre, mut base) = ([0.0; 3], [0.0; 3], [0.0; 3], [0.0; 3]);
        measure(&mut off)?;
        switch(None, Some(&mut full))?;
        measure(&mut on)?;
        switch(Some(&mut full), Some(&mut prefix))?;
        measure(&mut pre)?;
        switch(Some(&mut prefix), Some(&mut floor))?;
        measure(&mut base)?;
        measure(&mut base)?;
        switch(Some(&mut floor), Some(&mut prefix))?;
        measure(&mut pre)?;
        switch(Some(&mut prefix), Some(&mut full))?;
        measure(&mut on)?;
        switch(Some(&mut full), None)?;
        measure(&mut off)?;
        watched_traced_calls += 2 * calls;
        for i in 0..3 {
            untraced[i].push(off[i]);
            d_full[i].push(on[i] - off[i]);
            d_prefix[i].push(pre[i] - off[i]);
            d_floor[i].push(base[i] - off[i]);
        }
    }

    // The kernel's own accounting of the program's run time (enabled only for this pass: it
    // adds two clock reads per run), steadier than wall time because the host's noise outside
    // the program does not enter it. close(-1) runs the program only to its first test, so its
    // figure is mostly the accounting itself.
    let stats_fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    full.resume()?;
    let mut in_prog = [0.0; 3];
    for (i, &op) in OPS.iter().enumerate() {
        let (n0, t0) = full.hook_run_stats()?;
        caller.batch(op, STATS_CALLS)?;
        let (n1, t1) = full.hook_run_stats()?;
        in_prog[i] = (t1 - t0).as_nanos() as f64 / (n1 - n0).max(1) as f64;
    }
    full.pause()?;
    // The same unwatched calls, the name matched by a pattern.
    prefix.resume()?;
    let (n0, t0) = prefix.hook_run_stats()?;
    caller.batch(Op::Unwatched, STATS_CALLS)?;
    let (n1, t1) = prefix.hook_run_stats()?;
    let in_prefix = (t1 - t0).as_nanos() as f64 / (n1 - n0).max(1) as f64;
    prefix.pause()?;
    drop(stats_fd);
    watched_traced_calls += STATS_CALLS;

    // Every watched failure made while the full capture was attached must be in its count.
    let counted: u64 = full
        .read_aggregate()?
        .iter()
        .filter(|(k, _)| k.tgid == caller.child.id())
        .map(|(_, v)| v.count)
        .sum();
    let stats = full.kernel_stats()?;
    if counted + stats.lost != watched_traced_calls {
        bail!(
            "the capture counted {counted} watched failures (+{} lost), {watched_traced_calls} were made: \
             the figures would not measure the capture path",
            stats.lost
        );
    }

    let own: Vec<f64> = d_full[1]
        .iter()
        .zip(&d_floor[1])
        .map(|(f, b)| f - b)
        .collect();
    let (u_open, u_close) = (
        quartiles(untraced[0].clone()),
        quartiles(untraced[2].clone()),
    );
    let prefix_minus_exact: Vec<f64> = d_prefix[1]
        .iter()
        .zip(&d_full[1])
        .map(|(p, e)| p - e)
        .collect();
    let pre_u = quartiles(d_prefix[1].clone());
    let pre_vs = quartiles(prefix_minus_exact);
    let [w, u, c] = d_full.map(quartiles);
    let (b, own) = (quartiles(d_floor[1].clone()), quartiles(own));
    let row = |label: &str, q: (f64, f64, f64), tail: &str| {
        println!(
            "  {label:<46} {:>+7.1} ns/call  [{:+.1} .. {:+.1}]{tail}",
            q.1, q.0, q.2
        )
    };
    println!(
        "observer capture, {cycles} cycles of {calls}-call batches, hook attached/detached between \
         batches (median over cycles, interquartile range in brackets):"
    );
    println!(
        "  {:<46} {:>7.1} ns/call  [{:.1} .. {:.1}]",
        "failing openat, untraced", u_open.1, u_open.0, u_open.2
    );
    row("watched process: observer adds", w, "   target <= +200");
    row("unwatched process: observer adds", u, "   target <= +30");
    row("  of which the kernel's tracepoint dispatch", b, "");
    row("  of which observer's filter", own, "");
    row(
        &format!("unwatched process, pattern {PREFIX:?}: observer adds"),
        pre_u,
        "",
    );
    row(
        "  pattern minus exact name",
        pre_vs,
        "   target <= 0 (within the noise)",
    );
    println!(
        "  {:<46} {:>7.1} ns/call  [{:.1} .. {:.1}]",
        "close(-1) (not hooked), untraced", u_close.1, u_close.0, u_close.2
    );
    row("any unhooked syscall: observer adds", c, "");

    println!(
        "  in-kernel run time per call (bpf_stats, {STATS_CALLS} calls each): watched {:.1} ns, \
         unwatched {:.1} ns (by pattern {PREFIX:?}: {in_prefix:.1} ns), unhooked {:.1} ns (the \
         accounting's own floor)",
        in_prog[0], in_prog[1], in_prog[2]
    );
    drop(caller.to);
    let _ = caller.child.wait();
    println!(
        "  checked: all {watched_traced_calls} watched failures made while attached were counted"
    );
    Ok(())
}
