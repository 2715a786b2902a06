//! What observer's capture adds to a syscall, measured so that a drifting host cannot fake it.
//!
//! Run as root (through `cargo xtask bench`). It loads observer's own capture, watching comm
//! `obsbench`, and times batches of calls from this thread: a failing openat while named
//! `obsbench` (watched), the same openat while named something else (unwatched), and close(-1)
//! (a syscall observer does not hook). Between batches it attaches and detaches the syscall hooks
//! (`Capture::resume`/`pause`), in the order untraced, traced, traced, untraced, so each
//! difference compares batches a few milliseconds apart: on a shared VM whose speed wanders by
//! 2x over minutes, rounds seconds apart measure the host, not the tracer. Figures are medians
//! over cycles of (mean traced - mean untraced) ns/call, with their interquartile range.
//!
//! The calls come from a child process (observer never watches its own), which runs each batch
//! when told to over a pipe, so the timing loop holds nothing but the calls.
//!
//! Afterwards it checks that every watched failing call made while attached was counted, so the
//! "watched" figure is known to include the full capture path.

use std::ffi::CStr;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer::capture::{Capture, Filter};

const WATCHED: &CStr = c"obsbench";
const UNWATCHED: &CStr = c"obsbench-other";
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
    let mut cap = Capture::start(&filter, false).context("starting observer's capture")?;
    cap.pause()?;
    std::thread::sleep(Duration::from_millis(50));

    const OPS: [Op; 3] = [Op::Watched, Op::Unwatched, Op::Close];
    let mut untraced: [Vec<f64>; 3] = Default::default();
    let mut diff: [Vec<f64>; 3] = Default::default();
    let mut watched_traced_calls = 0u64;
    let mut measure = |out: &mut [f64; 3]| -> Result<()> {
        for (i, &op) in OPS.iter().enumerate() {
            out[i] += caller.batch(op, calls)? / 2.0;
        }
        Ok(())
    };
    // Warm up both states once.
    for _ in 0..2 {
        measure(&mut [0.0; 3])?;
        cap.resume()?;
        measure(&mut [0.0; 3])?;
        watched_traced_calls += calls;
        cap.pause()?;
    }
    for _ in 0..cycles {
        let (mut off, mut on) = ([0.0; 3], [0.0; 3]);
        measure(&mut off)?;
        cap.resume()?;
        std::thread::sleep(settle);
        measure(&mut on)?;
        measure(&mut on)?;
        cap.pause()?;
        std::thread::sleep(settle);
        measure(&mut off)?;
        watched_traced_calls += 2 * calls;
        for i in 0..3 {
            untraced[i].push(off[i]);
            diff[i].push(on[i] - off[i]);
        }
    }

    // Every watched failure made while attached must be in the in-kernel count.
    let counted: u64 = cap
        .read_aggregate()?
        .iter()
        .filter(|(k, _)| k.tgid == caller.child.id())
        .map(|(_, v)| v.count)
        .sum();
    let stats = cap.kernel_stats()?;
    if counted + stats.lost != watched_traced_calls {
        bail!(
            "the capture counted {counted} watched failures (+{} lost), {watched_traced_calls} were made: \
             the figures would not measure the capture path",
            stats.lost
        );
    }

    let (u_open, u_close) = (
        quartiles(untraced[0].clone()),
        quartiles(untraced[2].clone()),
    );
    let [w, u, c] = diff.map(quartiles);
    println!(
        "observer capture, {cycles} cycles of {calls}-call batches, attach/detach between batches \
         (median, interquartile range in brackets):"
    );
    println!(
        "  failing openat, untraced          {:>7.1} ns/call  [{:.1} .. {:.1}]",
        u_open.1, u_open.0, u_open.2
    );
    println!(
        "  watched: observer adds            {:>+7.1} ns/call  [{:+.1} .. {:+.1}]   target <= +200",
        w.1, w.0, w.2
    );
    println!(
        "  unwatched process: observer adds  {:>+7.1} ns/call  [{:+.1} .. {:+.1}]   target <= +30",
        u.1, u.0, u.2
    );
    println!(
        "  close(-1), untraced               {:>7.1} ns/call  [{:.1} .. {:.1}]",
        u_close.1, u_close.0, u_close.2
    );
    println!(
        "  unhooked syscall: observer adds   {:>+7.1} ns/call  [{:+.1} .. {:+.1}]",
        c.1, c.0, c.2
    );
    drop(caller.to);
    let _ = caller.child.wait();
    println!(
        "  checked: all {watched_traced_calls} watched failures made while attached were counted"
    );
    Ok(())
}
