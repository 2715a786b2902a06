//! Stage 1, a capture as a command runs it: started once, its ring buffer registered with the
//! runtime, the "watching ..." line, then a loop that hands every record to the command and polls
//! the kernel's counts every period, until SIGINT/SIGTERM, a deadline, or the command ends it.
//! The ad-hoc mode and `observer record` differ only in their [`Handler`].

use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aya::maps::{MapData, RingBuf};
use observer_common::{AggKey, AggVal};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{Capture, Filter, KernelStats, Sighting, host};

/// A running capture and its ring buffer.
pub(crate) struct Session {
    cap: Capture,
    events: AsyncFd<RingBuf<MapData>>,
    filter: Filter,
    /// The kernel's counters at the last poll (each capture counts from zero).
    stats: KernelStats,
    /// Records that did not decode (should stay 0).
    bad_records: u64,
}

/// What one poll read.
pub(crate) struct Polled {
    /// Every (key, value) of the in-kernel aggregate.
    pub(crate) counts: Vec<(AggKey, AggVal)>,
    /// The kernel's counters now, and at the previous poll of this capture.
    pub(crate) stats: KernelStats,
    pub(crate) before: KernelStats,
    /// Counters that limit what a report can say and just became non-zero, said once each.
    pub(crate) warnings: Vec<String>,
}

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGINT or SIGTERM.
    Signal,
    /// The `--duration` passed.
    Deadline,
    /// The handler said so (the reader of the JSON lines went away).
    Handler,
}

/// What a command does with its capture.
pub(crate) trait Handler {
    /// One record: a key's first sighting, or a directory open. `Break` ends the loop.
    fn on_sighting(&mut self, s: &Sighting) -> ControlFlow<()>;

    /// Every period, what the kernel counted. The handler may act on the session (forget keys).
    fn on_poll(&mut self, session: &mut Session, polled: Polled) -> Result<()>;

    /// SIGHUP (only when the loop reloads): returns the new poll period, if it changed. The
    /// handler may replace the session with one capturing anew.
    fn on_reload(&mut self, _session: &mut Session) -> Result<Option<Duration>> {
        Ok(None)
    }
}

/// How the loop runs.
pub(crate) struct Loop {
    /// How often the kernel's counts are read.
    pub(crate) period: Duration,
    /// Poll at once when the loop starts (the live view draws right away), or after a period.
    pub(crate) poll_at_start: bool,
    /// End after this long.
    pub(crate) deadline: Option<Duration>,
    /// SIGHUP calls [`Handler::on_reload`]; without it, SIGHUP keeps its default action.
    pub(crate) reload: bool,
}

impl Session {
    /// Loads and attaches the capture for `filter`, says which syscalls it could not hook, and
    /// registers its ring buffer with the runtime.
    pub(crate) fn start(filter: &Filter, verbose: bool) -> Result<Session> {
        Self::start_gated(filter, verbose, true)
    }

    /// As `start`; with `open` false, attached but recording nothing until `set_gate`.
    pub(crate) fn start_gated(filter: &Filter, verbose: bool, open: bool) -> Result<Session> {
        let mut cap = Capture::start_gated(filter, verbose, open)?;
        for (sys, why) in &cap.skipped {
            log::warn!("{} not hooked: {why}", sys.name());
        }
        let rb = cap.take_events()?;
        // SAFETY: the ring buffer owns its fd for as long as the AsyncFd lives.
        let events = unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE) }
            .map_err(|e| anyhow!("registering the ring buffer with the runtime: {e}"))?;
        // Loading parsed the kernel's BTF (several MiB) and freed it: give those pages back
        // rather than keep them for the whole run.
        // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is touched.
        unsafe { libc::malloc_trim(0) };
        Ok(Session {
            cap,
            events,
            filter: filter.clone(),
            stats: KernelStats::default(),
            bad_records: 0,
        })
    }

    /// "watching apache2 (6 processes), php-fpm* (3: php-fpm8.2); 13 syscalls hooked", and, when
    /// the names match nothing running, a warning that says so and names the likely candidates
    /// (the capture goes on: the service may be about to start).
    pub(crate) fn watching(&self) -> (String, Option<String>) {
        let (what, nothing) = self.filter.matching(&host::processes());
        let absent: Vec<&str> = self
            .filter
            .containers
            .iter()
            .filter(|p| crate::place::container_cgroups(p).is_empty())
            .map(String::as_str)
            .collect();
        let warning = if nothing {
            Some(nothing_matches(&self.filter))
        } else if !absent.is_empty() {
            Some(format!(
                "no running container's id starts with {}; watching for it to start (`docker ps` \
                 or `crictl ps` lists the ids)",
                absent.join(" or ")
            ))
        } else {
            None
        };
        (
            format!(
                "watching {what}; {} syscalls hooked",
                self.cap.attached.len()
            ),
            warning,
        )
    }

    /// Ring-buffer records that could not be decoded (each was logged when it came).
    pub(crate) fn bad_records(&self) -> u64 {
        self.bad_records
    }

    /// Forgets keys in the kernel's aggregate.
    pub(crate) fn forget_keys(&mut self, keys: &[AggKey]) -> Result<()> {
        self.cap.forget_keys(keys)
    }

    /// Forgets keys in the kernel's aggregate and returns their last counts, each read and
    /// deleted at once.
    pub(crate) fn take_keys(&mut self, keys: &[AggKey]) -> Result<Vec<(AggKey, AggVal)>> {
        self.cap.take_keys(keys)
    }

    /// Detaches the syscall hook (the maps stay readable).
    pub(crate) fn pause(&mut self) -> Result<()> {
        self.cap.pause()
    }

    /// Opens or closes the gate: closed, the program records nothing.
    pub(crate) fn set_gate(&mut self, open: bool) -> Result<()> {
        self.cap.set_gate(open)
    }

    /// Reads the kernel's counts and counters; re-reads the `--cgroup` directories (a restarted
    /// unit has a new cgroup) and forwards the program's log lines.
    pub(crate) fn poll(&mut self) -> Result<Polled> {
        let counts = self.cap.read_aggregate()?;
        let stats = self.cap.kernel_stats()?;
        let warnings = stats.new_warnings(&self.stats);
        let before = std::mem::replace(&mut self.stats, stats);
        if self.filter.by_cgroup()
            && let Err(e) = self.cap.refresh_cgroups()
        {
            log::debug!("refreshing cgroups: {e:#}");
        }
        self.cap.flush_logs();
        Ok(Polled {
            counts,
            stats,
            before,
            warnings,
        })
    }

    /// Hands every record the kernel has delivered to `h` (at the end: ignoring a `Break`).
    pub(crate) fn drain(&mut self, h: &mut impl Handler) {
        while let Some(item) = self.events.get_mut().next() {
            if let Some(s) = decode(&item, &mut self.bad_records) {
                let _ = h.on_sighting(&s);
            }
        }
    }

    /// Hands the records waiting in the ring buffer to `h`; true when it asks to stop.
    fn deliver(&mut self, h: &mut impl Handler) -> bool {
        while let Some(item) = self.events.get_mut().next() {
            if let Some(s) = decode(&item, &mut self.bad_records)
                && h.on_sighting(&s).is_break()
            {
                return true;
            }
        }
        false
    }

    /// Runs the loop until a signal, the deadline, or the handler ends it.
    pub(crate) async fn run(&mut self, h: &mut impl Handler, l: &Loop) -> Result<Stop> {
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut sighup = match l.reload {
            true => Some(signal(SignalKind::hangup()).context("installing the SIGHUP handler")?),
            false => None,
        };
        let mut tick = ticker(l.period, l.poll_at_start);
        let deadline = l.deadline.map(|d| tokio::time::Instant::now() + d);
        loop {
            tokio::select! {
                r = self.events.readable_mut() => {
                    r.context("waiting on the ring buffer")?.clear_ready();
                    if self.deliver(h) {
                        return Ok(Stop::Handler);
                    }
                }
                _ = tick.tick() => {
                    // Most records do not wake the reader (see WAKE_GAP_NS): the tick takes
                    // them, before the counts they belong to.
                    if self.deliver(h) {
                        return Ok(Stop::Handler);
                    }
                    let p = self.poll()?;
                    h.on_poll(self, p)?;
                }
                _ = hangup(&mut sighup) => {
                    if let Some(period) = h.on_reload(self)? {
                        tick = ticker(period, false);
                    }
                }
                _ = sigint.recv() => return Ok(Stop::Signal),
                _ = sigterm.recv() => return Ok(Stop::Signal),
                _ = sleep_until(deadline) => return Ok(Stop::Deadline),
            }
        }
    }
}

/// "nothing running matches apache2, httpd, php-fpm*: candidates: nginx (pid 812, listening on
/// :80), php8.2-fpm.service; watching for them".
fn nothing_matches(filter: &Filter) -> String {
    let mut cands: Vec<String> = host::listeners(&[80, 443])
        .into_iter()
        .map(|(pid, comm, port)| {
            format!(
                "{} (pid {pid}, listening on :{port})",
                crate::escape::escape_str(&comm)
            )
        })
        .collect();
    cands.extend(host::services_like(&["apache", "httpd", "php"]));
    format!(
        "nothing running matches {}{}; watching for them (a service may be about to start)",
        filter.effective_comms().join(", "),
        if cands.is_empty() {
            ": no process listens on :80 or :443, and no apache, httpd or php service runs"
                .to_string()
        } else {
            format!(
                "; candidates: {} (select with --comm or --pid)",
                cands.join(", ")
            )
        }
    )
}

fn decode(item: &[u8], bad: &mut u64) -> Option<Sighting> {
    match Sighting::decode(item) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("{e:#}");
            *bad += 1;
            None
        }
    }
}

/// Ticks every `period`: the first at once and missed ones skipped (the live view), or the first
/// after a period and missed ones delayed (the recorder).
fn ticker(period: Duration, at_start: bool) -> tokio::time::Interval {
    if at_start {
        let mut t = tokio::time::interval(period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    } else {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    }
}

async fn hangup(sig: &mut Option<Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}
