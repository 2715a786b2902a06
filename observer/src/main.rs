use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use observer::aggregate::{Clock, Store};
use observer::capture::Capture;
use observer::cli::{Cli, Cmd, Format};
use observer::history;
use observer::output::{self, Report};
use observer::report::HintEnv;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match cli.cmd {
        None => init_adhoc_logging(cli.verbose),
        Some(Cmd::Record(ref a)) => init_service_logging(a.verbose, log::LevelFilter::Info),
        Some(Cmd::Report(ref a)) => init_service_logging(a.history.verbose, log::LevelFilter::Warn),
        Some(Cmd::Timeline(ref a)) => {
            init_service_logging(a.history.verbose, log::LevelFilter::Warn)
        }
    }
    let result = match cli.cmd.take() {
        Some(Cmd::Report(a)) => history::report_command(&a).map(print),
        Some(Cmd::Timeline(a)) => history::timeline_command(&a).map(print),
        cmd => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("observer: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match cmd {
                Some(Cmd::Record(a)) => rt.block_on(observer::record::run(a)),
                _ => rt.block_on(run(cli)),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::logger().flush();
            // Under systemd, the journal records it as an error (priority 3).
            let prio = if stderr_is_journal() { "<3>" } else { "" };
            eprintln!("{prio}observer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print(text: String) {
    let mut o = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

/// The ad-hoc mode's logging, as it always was.
fn init_adhoc_logging(verbose: bool) {
    env_logger::Builder::new()
        .filter_level(if verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        })
        // aya's own debug lines (every relocation of every program) drown what --verbose is
        // for: observer's and the eBPF program's messages, and verifier logs in errors.
        .filter_module("aya", log::LevelFilter::Info)
        .filter_module("aya_obj", log::LevelFilter::Info)
        .format_timestamp(None)
        .format_target(false)
        .init();
}

/// Logging for `record` (a service: journald adds the time) and the history commands:
/// `observer: message`, `observer: warning: message`. When standard error is the journal
/// (JOURNAL_STREAM names it), each line carries its syslog priority (`<4>`), which journald
/// strips and records.
fn init_service_logging(verbose: bool, default: log::LevelFilter) {
    let journal = stderr_is_journal();
    // Debug records pass the logger; the global level (which `record` changes when its
    // configuration says `verbose`) decides.
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Debug)
        .filter_module("aya", log::LevelFilter::Info)
        .filter_module("aya_obj", log::LevelFilter::Info)
        .format(move |buf, r| {
            let (prio, label) = match r.level() {
                log::Level::Error => (3, "error: "),
                log::Level::Warn => (4, "warning: "),
                log::Level::Info => (6, ""),
                log::Level::Debug => (7, "debug: "),
                log::Level::Trace => (7, "trace: "),
            };
            if journal {
                writeln!(buf, "<{prio}>observer: {label}{}", r.args())
            } else {
                writeln!(buf, "observer: {label}{}", r.args())
            }
        })
        .init();
    log::set_max_level(if verbose {
        log::LevelFilter::Debug
    } else {
        default
    });
}

fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    // SAFETY: fstat on fd 2 with a valid out struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

async fn run(cli: Cli) -> Result<()> {
    let filter = cli.select.filter()?;
    let format = cli.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Live
    } else {
        Format::Table
    });
    // Fail on an unwritable --output before capturing anything, not after.
    let mut out_file = match &cli.output {
        Some(p) => Some(output::create_private(p)?),
        None => None,
    };

    let mut cap = Capture::start(&filter, cli.verbose)?;
    let clock = Clock::now();
    let started = SystemTime::now();
    for (sys, why) in &cap.skipped {
        log::warn!("{} not hooked: {why}", sys.name());
    }
    eprintln!(
        "observer: watching {} ({} syscalls hooked); {}",
        filter.describe(),
        cap.attached.len(),
        match cli.duration {
            Some(d) => format!("report in {}", humantime::format_duration(d)),
            None => "Ctrl-C for the report".to_string(),
        }
    );

    let rb = cap.events.take().context("ring buffer already taken")?;
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd lives.
    let mut events = unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE) }
        .map_err(|e| anyhow!("registering the ring buffer with the runtime: {e}"))?;
    let mut store = Store::new();
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = cli.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(cli.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut live = (format == Format::Live).then(output::Live::start);
    let mut deferred: Vec<String> = Vec::new();
    let hint_env = HintEnv::default();
    let mut closed = false;
    let header = format!("observer: {}", filter.describe());
    let stdout = std::io::stdout();

    loop {
        tokio::select! {
            r = events.readable_mut() => {
                let mut guard = r.context("waiting on the ring buffer")?;
                while let Some(item) = guard.get_inner_mut().next() {
                    if let Some(new) = store.on_record(&item, &clock)
                        && format == Format::Jsonl
                    {
                        let mut lock = stdout.lock();
                        if writeln!(lock, "{}", output::jsonl_line(&new))
                            .and_then(|()| lock.flush())
                            .is_err()
                        {
                            // The reader went away (a closed pipe): end like Ctrl-C.
                            closed = true;
                            break;
                        }
                    }
                }
                guard.clear_ready();
                if closed {
                    break;
                }
            }
            _ = tick.tick() => {
                cap.flush_logs();
                // Poll every interval in every format: repeats are dated by the poll that sees
                // their count grow.
                store.update_counts(&cap.read_aggregate()?, observer::aggregate::monotonic_ns());
                let ks = cap.kernel_stats()?;
                for w in ks.new_warnings(&store.kernel) {
                    // Not over the live view: said when it closes.
                    if live.is_some() {
                        deferred.push(w);
                    } else {
                        log::warn!("{w}");
                    }
                }
                store.kernel = ks;
                if !filter.cgroups.is_empty() {
                    let _ = cap.refresh_cgroups();
                }
                if let Some(l) = live.as_mut() {
                    let r = Report::build(&store, &clock, &hint_env, &filter, started, SystemTime::now());
                    l.draw(&r, cli.top, &header);
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sleep_until(deadline) => break,
        }
    }
    if let Some(l) = live.take() {
        l.stop();
    }
    for w in deferred {
        log::warn!("{w}");
    }
    // Final: everything the kernel delivered, then its counts.
    while let Some(item) = events.get_mut().next() {
        if let Some(new) = store.on_record(&item, &clock)
            && format == Format::Jsonl
            && !closed
        {
            let _ = writeln!(stdout.lock(), "{}", output::jsonl_line(&new));
        }
    }
    store.update_counts(&cap.read_aggregate()?, observer::aggregate::monotonic_ns());
    let ks = cap.kernel_stats()?;
    for w in ks.new_warnings(&store.kernel) {
        log::warn!("{w}");
    }
    store.kernel = ks;
    cap.flush_logs();
    let report = Report::build(
        &store,
        &clock,
        &hint_env,
        &filter,
        started,
        SystemTime::now(),
    );
    let text = report.render(format, cli.top);
    match out_file.as_mut() {
        Some(f) => {
            f.write_all(text.as_bytes())
                .and_then(|()| f.flush())
                .with_context(|| {
                    format!(
                        "writing {}",
                        cli.output
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )
                })?;
        }
        None => {
            let mut lock = stdout.lock();
            let _ = lock.write_all(text.as_bytes()).and_then(|()| lock.flush());
        }
    }
    if report.totals.lost > 0 {
        eprintln!(
            "observer: {} failure(s) were lost (ring buffer full); counts are lower bounds",
            report.totals.lost
        );
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}
