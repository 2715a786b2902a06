//! The ad-hoc mode (`observer` with no command): capture now, show the live ranked view (or
//! stream JSON lines), and print the report when Ctrl-C, SIGTERM or `--duration` ends it.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::aggregate::Store;
use crate::capture::{Clock, Filter, Handler, Loop, Polled, Session, Sighting, monotonic_ns};
use crate::files;
use crate::model::{Failure, RankContext, Totals};
use crate::render::fix::FixFormat;
use crate::render::live::Live;
use crate::render::{self, Format, json};
use crate::report::score::WARMUP_SECS;
use crate::report::{HintEnv, Report};

/// What the ad-hoc mode runs with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) filter: Filter,
    /// Stop after this long; until a signal when not given.
    pub(crate) duration: Option<Duration>,
    /// How often counts are read and the live view redrawn.
    pub(crate) interval: Duration,
    pub(crate) top: Option<usize>,
    /// Live on a terminal, table otherwise, when not given.
    pub(crate) format: Option<Format>,
    pub(crate) output: Option<PathBuf>,
    /// Print the fixes in this form instead of the report.
    pub(crate) fix: Option<FixFormat>,
    pub(crate) verbose: bool,
}

/// How long the final report's filesystem checks may take (their own budgets are 5 s for hints
/// and 3 s for referrers; past this, something hangs).
const FINAL_CHECKS_TIME: Duration = Duration::from_secs(20);

/// What the ad-hoc mode keeps while it captures.
struct Watch {
    store: Store,
    clock: Clock,
    format: Format,
    top: Option<usize>,
    live: Option<Live>,
    /// Warnings held back while the live view owns the screen.
    deferred: Vec<String>,
    hint_env: HintEnv,
    filter: Filter,
    started: SystemTime,
    header: String,
    /// The reader of the JSON lines went away.
    closed: bool,
}

impl Watch {
    /// The report now; `evidence`: with referrers, changes and fixes (the final one).
    fn report(&self, evidence: bool) -> Report {
        let (failures, totals, ctx) = self.inputs(evidence, true);
        Report::ranked(
            failures,
            totals,
            &ctx,
            &self.hint_env,
            self.store.opened(),
            Some(&self.filter.watched()),
            None,
        )
    }

    fn inputs(&self, evidence: bool, hints: bool) -> (Vec<Failure>, Totals, RankContext) {
        let failures = self.store.failures(&self.clock);
        let totals = self.store.totals(&failures);
        let ctx = RankContext {
            evidence,
            hints,
            window_start: self.started,
            now: SystemTime::now(),
            warmup_secs: WARMUP_SECS,
            baseline: None,
        };
        (failures, totals, ctx)
    }

    /// The final report, its filesystem checks on a thread of their own: when they do not end
    /// in [`FINAL_CHECKS_TIME`] (a filesystem that hangs), the report is made without them, and
    /// says so. Ctrl-C always gets its report.
    fn final_report(&self) -> Report {
        let (failures, totals, ctx) = self.inputs(true, true);
        let opened = self.store.opened().to_vec();
        let watched = self.filter.watched();
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("checks".into())
            .spawn(move || {
                let env = HintEnv::default();
                let r = Report::ranked(failures, totals, &ctx, &env, &opened, Some(&watched), None);
                let _ = tx.send(r);
            });
        if worker.is_ok()
            && let Ok(r) = rx.recv_timeout(FINAL_CHECKS_TIME)
        {
            return r;
        }
        log::warn!(
            "the filesystem checks did not finish in {}s (a filesystem that does not answer?): \
             the report has no hints",
            FINAL_CHECKS_TIME.as_secs()
        );
        let (failures, totals, ctx) = self.inputs(false, false);
        Report::ranked(
            failures,
            totals,
            &ctx,
            &self.hint_env,
            &[],
            Some(&self.filter.watched()),
            None,
        )
    }

    /// Takes what a poll read; its warnings go to the log, or wait while the view is up.
    fn take(&mut self, p: Polled) {
        // Repeats are dated by the poll that sees their count grow.
        self.store.update_counts(&p.counts, monotonic_ns());
        for w in p.warnings {
            if self.live.is_some() {
                self.deferred.push(w);
            } else {
                log::warn!("{w}");
            }
        }
        self.store.kernel = p.stats;
    }
}

impl Handler for Watch {
    fn on_sighting(&mut self, s: &Sighting) -> ControlFlow<()> {
        if let Some(new) = self.store.on_sighting(s, &self.clock)
            && self.format == Format::Jsonl
            && !self.closed
        {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            if writeln!(lock, "{}", json::jsonl_line(&new))
                .and_then(|()| lock.flush())
                .is_err()
            {
                // The reader went away (a closed pipe): end like Ctrl-C.
                self.closed = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn on_poll(&mut self, _session: &mut Session, p: Polled) -> Result<()> {
        self.take(p);
        if self.live.is_some() {
            let r = self.report(false);
            if let Some(l) = self.live.as_mut() {
                l.draw(&r, self.top, &self.header);
            }
        }
        Ok(())
    }
}

/// Runs the ad-hoc mode.
pub(crate) async fn run(s: Settings) -> Result<()> {
    let format = s.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Live
    } else {
        Format::Table
    });
    // Fail on an unwritable --output before capturing anything, not after.
    let out_file = match &s.output {
        Some(p) => Some(files::Output::create(p)?),
        None => None,
    };

    let mut session = Session::start(&s.filter, s.verbose)?;
    let clock = Clock::now();
    let started = SystemTime::now();
    let (watching, nothing) = session.watching();
    eprintln!(
        "observer: {watching}; {}",
        match s.duration {
            Some(d) => format!("report in {}", humantime::format_duration(d)),
            None => "Ctrl-C for the report".to_string(),
        }
    );
    if let Some(w) = nothing {
        log::warn!("{w}");
    }
    let mut w = Watch {
        store: Store::default(),
        clock,
        format,
        top: s.top,
        live: (format == Format::Live).then(Live::start),
        deferred: Vec::new(),
        hint_env: HintEnv::default(),
        header: s.filter.describe(),
        filter: s.filter,
        started,
        closed: false,
    };
    let lp = Loop {
        period: s.interval,
        poll_at_start: true,
        deadline: s.duration,
        reload: false,
    };
    session.run(&mut w, &lp).await?;
    // The final report lands on the normal screen, after the warnings held back.
    drop(w.live.take());
    for d in std::mem::take(&mut w.deferred) {
        log::warn!("{d}");
    }
    // Final: everything the kernel delivered, then its counts.
    session.drain(&mut w);
    let p = session.poll()?;
    w.take(p);
    if session.bad_records() > 0 {
        log::warn!(
            "{} ring-buffer record(s) could not be read",
            session.bad_records()
        );
    }
    let report = w.final_report();
    let text = match s.fix {
        Some(form) => render::fix::render(&report, form),
        None => render::render(&report, format, s.top),
    };
    match out_file {
        Some(f) => f.commit(text.as_bytes())?,
        None => {
            let stdout = std::io::stdout();
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
