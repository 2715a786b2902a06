//! What observer's capture adds to a syscall, measured so that a drifting host cannot fake it.
//!
//! Run as root (through `cargo xtask bench`). It loads observer's own capture, watching comm
//! `obsbench`, and times batches of calls from a child process (observer never watches its own),
//! which runs each batch when told to over a pipe, so the timing loop holds nothing but the
//! calls: a failing openat while named `obsbench` (watched), the same openat while named
//! something else (unwatched), a successful openat (and close) while watched, and close(-1) (a
//! syscall observer does not hook).
//!
//! Between batches it attaches and detaches the hook (`Capture::resume`/`pause`), so each
//! difference compares batches a few milliseconds apart: on a shared VM whose speed wanders by
//! 2x over hours, rounds seconds apart measure the host, not the tracer. Each cycle runs off,
//! full, prefix, noref, floor, floor, noref, prefix, full, off, where "prefix" is the same
//! capture selecting by a name pattern (`obsbe*`) instead of the exact name, "noref" the same
//! capture not reporting the files processes read (what the referrer search costs a successful
//! open), and "floor" a capture hooking only execve (openat then pays only the kernel's dispatch
//! to a program that returns at its first load). Figures are medians over cycles of (mean traced - mean untraced) ns/call, with their
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

/// An existing file, opened successfully by the "opened" batches.
const EXISTING: &CStr = c"/etc/hostname";

#[derive(Clone, Copy)]
enum Op {
    Watched,
    Unwatched,
    Close,
    /// A successful openat (and its close) while watched: what reporting the files a process
    /// reads costs.
    Opened,
}

impl Op {
    fn letter(self) -> char {
        match self {
            Op::Watched => 'W',
            Op::Unwatched => 'U',
            Op::Close => 'C',
            Op::Opened => 'O',
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
            "O" => Op::Opened,
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
        Op::Watched | Op::Opened => set_comm(WATCHED),
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
            // SAFETY: a valid C string; the fd returned is closed at once.
            Op::Opened => unsafe {
                let fd = libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    EXISTING.as_ptr(),
                    libc::O_RDONLY,
                );
                libc::syscall(libc::SYS_close, fd);
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
    // The same capture selecting by a name pattern instead of the exact name.
    let mut prefix = Capture::start(
        &Filter {
            comms: vec![PREFIX.to_string()],
            ..filter.clone()
        },
        false,
    )
    .context("starting the prefix-pattern capture")?;
    prefix.pause()?;
    // The same capture not reporting the files processes read (no referrers): what a successful
    // open costs without that.
    let mut noref = Capture::start(
        &Filter {
            no_opened: true,
            ..filter.clone()
        },
        false,
    )
    .context("starting the capture without open reports")?;
    noref.pause()?;
    // The same program hooking only execve: openat then pays the kernel's dispatch to a sys_exit
    // program and one table load, which splits an unwatched call's cost into the kernel's part
    // and observer's own.
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

    const OPS: [Op; 4] = [Op::Watched, Op::Unwatched, Op::Close, Op::Opened];
    const N: usize = OPS.len();
    // States: off, full, prefix, noref, floor.
    let mut d: [[Vec<f64>; N]; 5] = Default::default();
    let mut watched_traced_calls = 0u64;
    let mut measure = |out: &mut [f64; N]| -> Result<()> {
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
    measure(&mut [0.0; N])?;
    for c in [&mut full, &mut prefix, &mut noref, &mut floor] {
        switch(None, Some(&mut *c))?;
        measure(&mut [0.0; N])?;
        switch(Some(c), None)?;
    }
    watched_traced_calls += calls;
    // Each cycle runs off, full, prefix, noref, floor, floor, noref, prefix, full, off:
    // symmetric, so a drift that is linear over the cycle cancels out of every difference.
    for _ in 0..cycles {
        let mut m = [[0.0; N]; 5];
        measure(&mut m[0])?;
        switch(None, Some(&mut full))?;
        measure(&mut m[1])?;
        switch(Some(&mut full), Some(&mut prefix))?;
        measure(&mut m[2])?;
        switch(Some(&mut prefix), Some(&mut noref))?;
        measure(&mut m[3])?;
        switch(Some(&mut noref), Some(&mut floor))?;
        measure(&mut m[4])?;
        measure(&mut m[4])?;
        switch(Some(&mut floor), Some(&mut noref))?;
        measure(&mut m[3])?;
        switch(Some(&mut noref), Some(&mut prefix))?;
        measure(&mut m[2])?;
        switch(Some(&mut prefix), Some(&mut full))?;
        measure(&mut m[1])?;
        switch(Some(&mut full), None)?;
        measure(&mut m[0])?;
        watched_traced_calls += 2 * calls;
        for i in 0..N {
            d[0][i].push(m[0][i]);
            for s in 1..5 {
                d[s][i].push(m[s][i] - m[0][i]);
            }
        }
    }
    let [untraced, d_full, d_prefix, d_noref, d_floor] = d;

    // The kernel's own accounting of the program's run time (enabled only for this pass: it
    // adds two clock reads per run), steadier than wall time because the host's noise outside
    // the program does not enter it. close(-1) runs the program only to its first test, so its
    // figure is mostly the accounting itself.
    let stats_fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    let mut in_kernel = |cap: &mut Capture, op: Op| -> Result<f64> {
        cap.resume()?;
        let (n0, t0) = cap.hook_run_stats()?;
        caller.batch(op, STATS_CALLS)?;
        let (n1, t1) = cap.hook_run_stats()?;
        cap.pause()?;
        Ok((t1 - t0).as_nanos() as f64 / (n1 - n0).max(1) as f64)
    };
    let mut in_prog = [0.0; N];
    for (i, &op) in OPS.iter().enumerate() {
        in_prog[i] = in_kernel(&mut full, op)?;
    }
    // The same unwatched calls, the name matched by a pattern; opens without reporting them.
    let in_prefix = in_kernel(&mut prefix, Op::Unwatched)?;
    let in_noref = in_kernel(&mut noref, Op::Opened)?;
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

    let minus =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    let own = quartiles(minus(&d_full[1], &d_floor[1]));
    let (u_open, u_close, u_ok) = (
        quartiles(untraced[0].clone()),
        quartiles(untraced[2].clone()),
        quartiles(untraced[3].clone()),
    );
    let pre_u = quartiles(d_prefix[1].clone());
    let pre_vs = quartiles(minus(&d_prefix[1], &d_full[1]));
    let ok_full = quartiles(d_full[3].clone());
    let ok_noref = quartiles(d_noref[3].clone());
    let ok_vs = quartiles(minus(&d_full[3], &d_noref[3]));
    let [w, u, c, _] = d_full.map(quartiles);
    let b = quartiles(d_floor[1].clone());
    let row = |label: &str, q: (f64, f64, f64), tail: &str| {
        println!(
            "  {label:<50} {:>+7.1} ns/call  [{:+.1} .. {:+.1}]{tail}",
            q.1, q.0, q.2
        )
    };
    let base = |label: &str, q: (f64, f64, f64)| {
        println!(
            "  {label:<50} {:>7.1} ns/call  [{:.1} .. {:.1}]",
            q.1, q.0, q.2
        )
    };
    println!(
        "observer capture, {cycles} cycles of {calls}-call batches, hook attached/detached between \
         batches (median over cycles, interquartile range in brackets):"
    );
    base("failing openat, untraced", u_open);
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
    base("successful openat + close, untraced", u_ok);
    row("watched process: observer adds", ok_full, "");
    row("  the same, the files read not reported", ok_noref, "");
    row("  what reporting them adds (referrers)", ok_vs, "");
    base("close(-1) (not hooked), untraced", u_close);
    row("any unhooked syscall: observer adds", c, "");

    println!(
        "  in-kernel run time per call (bpf_stats, {STATS_CALLS} calls each): watched {:.1} ns, \
         unwatched {:.1} ns (by pattern {PREFIX:?}: {in_prefix:.1} ns), watched successful open \
         {:.1} ns ({in_noref:.1} ns not reported), unhooked {:.1} ns (the accounting's own floor)",
        in_prog[0], in_prog[1], in_prog[3], in_prog[2]
    );
    drop(caller.to);
    let _ = caller.child.wait();
    println!(
        "  checked: all {watched_traced_calls} watched failures made while attached were counted"
    );
    Ok(())
}
