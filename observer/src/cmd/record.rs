//! `observer record`: the capture loop of a service. Takes each key's record, turns the growth of
//! the kernel's counts into per-minute buckets ([`crate::history::bucket`]), writes them once per
//! flush interval ([`crate::history::writer`]), forgets idle keys in the kernel and in memory,
//! serves `/metrics`, streams new failures as JSON lines, reloads its configuration on SIGHUP,
//! and writes everything before exiting on SIGTERM/SIGINT.

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow};
use observer_common::AGG_ENTRIES;

use crate::capture::{Clock, Filter, Handler, Loop, Polled, Session, Sighting, monotonic_ns};
use crate::files;
use crate::history::bucket::{MinuteStats, Pending, Tracker, minute_of};
use crate::history::reader::TopPath;
use crate::history::writer::Writer;
use crate::render::json;
use crate::resolve::Resolver;
use crate::service::config::{self, JsonlTarget, Overrides, Settings};
use crate::service::metrics::{self, Snapshot};
use crate::service::notify::{sd_notify, sd_notify_failure};
use crate::time::ms_of;

/// At most this many (key, minute) buckets wait in memory for the database.
const PENDING_CAP: usize = 200_000;
/// Reads of the kernel's counts that may miss a key's record before the key is given up.
const MISS_LIMIT: u32 = 3;
/// Retention and the size cap are enforced this often (and whenever the cap is exceeded).
const TRIM_EVERY: Duration = Duration::from_secs(3600);
/// Attempts at the last flush before exiting (one second apart).
const FINAL_FLUSH_TRIES: u32 = 5;
/// The top paths of /metrics are recomputed every three flush intervals, or this often if sooner.
const TOP_EVERY: Duration = Duration::from_secs(30);
/// A failing database is logged again at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(300);

fn now_ms() -> i64 {
    ms_of(SystemTime::now())
}

/// The kernel's counts are read this often: at least every 5 s, so a minute's bucket is right to
/// within 5 s, and the database is written every `flush`.
fn poll_period(flush: Duration) -> Duration {
    flush.min(Duration::from_secs(5))
}

/// What a session watches, as the history's sessions table keeps it (JSON text).
fn filter_json(f: &Filter) -> String {
    serde_json::to_value(f.watched())
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// The JSON-lines stream of new failures.
enum Jsonl {
    Stdout,
    File(std::fs::File, std::path::PathBuf),
}

impl Jsonl {
    fn open(t: &Option<JsonlTarget>) -> Result<Option<Jsonl>> {
        Ok(match t {
            None => None,
            Some(JsonlTarget::Stdout) => Some(Jsonl::Stdout),
            Some(JsonlTarget::File(p)) => Some(Jsonl::File(
                files::append_private(p).context("--jsonl")?,
                p.clone(),
            )),
        })
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            Jsonl::Stdout => {
                let mut o = std::io::stdout().lock();
                writeln!(o, "{line}").and_then(|()| o.flush())
            }
            Jsonl::File(f, _) => writeln!(f, "{line}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Jsonl::Stdout => "standard output".into(),
            Jsonl::File(_, p) => p.display().to_string(),
        }
    }
}

/// Everything the loop owns.
struct Recorder {
    settings: Settings,
    args: Overrides,
    db: Writer,
    tracker: Tracker,
    resolver: Resolver,
    pending: Pending,
    clock: Clock,
    jsonl: Option<Jsonl>,
    metrics: Option<metrics::Server>,
    snapshot: Arc<Mutex<Snapshot>>,
    /// Lost and overflowing failures since observer started (every capture added up).
    stats_total: MinuteStats,
    dropped_total: u64,
    /// Undecodable records of the captures replaced by reloads.
    bad_records: u64,
    db_errors: u64,
    failing_since: Option<(Instant, u64)>,
    last_error_log: Option<Instant>,
    last_flush: Instant,
    /// Of the last transaction that reached the database.
    last_write: Instant,
    last_trim: Instant,
    last_flush_ms: Option<i64>,
    db_size: u64,
    top: Vec<TopPath>,
    last_top: Option<Instant>,
    capture_restarts: u64,
    /// The size cap cannot be met (warned once until it can).
    over_cap: bool,
    /// Every --pid target has exited (warned once).
    pids_gone: bool,
}

/// Runs `observer record` until SIGTERM/SIGINT. Under systemd, a failure's reason goes to the
/// service manager too (`systemctl status` shows it).
pub(crate) async fn run(args: Overrides) -> Result<()> {
    let r = record(args).await;
    if let Err(e) = &r {
        sd_notify_failure(e);
    }
    r
}

async fn record(args: Overrides) -> Result<()> {
    let settings = config::load(&args)?;
    if settings.verbose {
        log::set_max_level(log::LevelFilter::Debug);
    }
    if let Some(src) = &settings.source {
        log::debug!("configuration from {}", src.display());
    }
    crate::capture::check_privilege()?;
    // Everything record creates (database, lock, JSON lines) is private to its owner.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    let opened_ms = now_ms();
    let db = Writer::open(&settings.db, &filter_json(&settings.filter), opened_ms)?;
    let jsonl = Jsonl::open(&settings.jsonl)?;
    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    let metrics = match settings.metrics.clone() {
        Some(a) => Some(metrics::Server::start(a, snapshot.clone())?),
        None => None,
    };
    let mut rec = Recorder {
        args,
        db,
        tracker: Tracker::new(),
        resolver: Resolver::new(false),
        pending: Pending::new(PENDING_CAP),
        clock: Clock::now(),
        jsonl,
        metrics,
        snapshot,
        stats_total: MinuteStats::default(),
        dropped_total: 0,
        bad_records: 0,
        db_errors: 0,
        failing_since: None,
        last_error_log: None,
        last_flush: Instant::now(),
        last_write: Instant::now(),
        last_trim: Instant::now(),
        // Opening wrote the session's row: the history reaches to now.
        last_flush_ms: Some(opened_ms),
        db_size: 0,
        top: Vec::new(),
        last_top: None,
        capture_restarts: 0,
        over_cap: false,
        pids_gone: false,
        settings,
    };
    rec.trim();
    // Served from the first scrape on (the server runs only once this task awaits).
    rec.publish();

    let mut session = Session::start(&rec.settings.filter, rec.settings.verbose)?;
    let (watching, nothing) = session.watching();
    log::info!(
        "{watching}; recording into {} every {}{}{}",
        rec.db.path().display(),
        humantime::format_duration(rec.settings.flush_interval),
        match &rec.metrics {
            Some(m) => format!("; metrics on {}", m.addr),
            None => String::new(),
        },
        match &rec.jsonl {
            Some(j) => format!("; new failures as JSON lines to {}", j.describe()),
            None => String::new(),
        },
    );
    if let Some(w) = nothing {
        log::warn!("{w}");
    }
    sd_notify("READY=1");
    let lp = Loop {
        period: poll_period(rec.settings.flush_interval),
        poll_at_start: false,
        deadline: None,
        reload: true,
    };
    let outcome = session.run(&mut rec, &lp).await.map(|_| ());
    sd_notify("STOPPING=1");
    // Whatever ended the loop, keep what was counted: everything the kernel delivered and
    // counted, then a last flush (retried a few times: the disk may be full).
    session.drain(&mut rec);
    if let Err(e) = session.poll().and_then(|p| rec.take(&mut session, p)) {
        log::warn!("reading the last counts: {e:#}");
    }
    for attempt in 0..FINAL_FLUSH_TRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        rec.flush();
        if rec.failing_since.is_none() {
            break;
        }
    }
    let left = rec.pending.failures();
    if let Err(e) = rec.db.close(now_ms()) {
        log::warn!("closing the session: {e}");
    }
    if let Some(m) = rec.metrics.take() {
        m.stop();
    }
    let bad = rec.bad_records + session.bad_records();
    if bad > 0 {
        log::warn!("{bad} ring-buffer record(s) could not be read");
    }
    outcome?;
    if left > 0 {
        return Err(anyhow!(
            "{left} failure(s) could not be written to {} before exiting",
            rec.db.path().display()
        ));
    }
    log::info!("stopped; history is in {}", rec.db.path().display());
    Ok(())
}

impl Handler for Recorder {
    fn on_sighting(&mut self, s: &Sighting) -> ControlFlow<()> {
        let Some(info) = self.resolver.key_info(s) else {
            return ControlFlow::Continue(());
        };
        let wall_ms = ms_of(self.clock.wall(s.hdr.ts_ns));
        let new = self
            .tracker
            .on_sighting(s, info, wall_ms, monotonic_ns(), &mut self.pending);
        if let (Some(n), Some(j)) = (new, self.jsonl.as_mut())
            && let Err(e) = j.write(&json::jsonl_line(&n))
        {
            log::error!(
                "writing JSON lines to {}: {e}; the stream is off until the next reload (SIGHUP)",
                j.describe()
            );
            self.jsonl = None;
        }
        ControlFlow::Continue(())
    }

    fn on_poll(&mut self, session: &mut Session, p: Polled) -> Result<()> {
        self.take(session, p)?;
        if self.last_flush.elapsed() + poll_period(self.settings.flush_interval) / 2
            >= self.settings.flush_interval
        {
            // Evict right after the read that took the keys' last counts (a failure in between
            // would not be counted), then write.
            self.evict(session)?;
            self.flush();
            self.maintain();
        }
        self.publish();
        Ok(())
    }

    fn on_reload(&mut self, session: &mut Session) -> Result<Option<Duration>> {
        sd_notify("RELOADING=1");
        let r = self.reload(session)?;
        // The endpoint (maybe a new one) shows the reload at once: restarts, a trimmed size.
        self.publish();
        sd_notify("READY=1");
        Ok(r)
    }
}

impl Recorder {
    /// Takes what a poll read: the counts' growth into `pending`, the kernel's loss counters per
    /// minute, and what the operator should hear about.
    fn take(&mut self, session: &mut Session, p: Polled) -> Result<()> {
        self.clock = Clock::now();
        let wall = now_ms();
        let orphans = self.tracker.on_counts(
            &p.counts,
            wall,
            monotonic_ns(),
            MISS_LIMIT,
            &mut self.pending,
        );
        if !orphans.is_empty() {
            log::debug!(
                "{} key(s) whose first record was lost: forgotten",
                orphans.len()
            );
            session.forget_keys(&orphans)?;
        }
        for w in &p.warnings {
            log::warn!("{w}");
        }
        let d = MinuteStats {
            lost: p.stats.lost.saturating_sub(p.before.lost),
            overflow: p.stats.overflow.saturating_sub(p.before.overflow),
            dropped: 0,
        };
        if d.lost > 0 && self.stats_total.lost == 0 {
            log::warn!(
                "the ring buffer was full: {} failure(s) lost (counts are lower bounds)",
                d.lost
            );
        }
        self.stats_total.lost += d.lost;
        self.stats_total.overflow += d.overflow;
        self.pending.add_stats(minute_of(wall), d);
        let pids = &self.settings.filter.pids;
        if !pids.is_empty() {
            let gone = !pids
                .iter()
                .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if gone && !self.pids_gone {
                log::warn!(
                    "every --pid target has exited: their descendants are still watched, but a \
                     restarted service is not (select a service with --comm or --cgroup)"
                );
            }
            self.pids_gone = gone;
        }
        Ok(())
    }

    /// Writes `pending`; on failure keeps it for the next try.
    fn flush(&mut self) {
        self.last_flush = Instant::now();
        let opened = self.resolver.opened.take_unsaved();
        let n_opened = opened.len();
        if self.pending.is_empty() && opened.is_empty() {
            // Nothing to write; still mark the session alive once a minute, so the history
            // knows it was recording (and /metrics that the recorder still writes).
            let at = now_ms();
            if self.last_write.elapsed() >= Duration::from_secs(60)
                && self.db.flush(&self.pending, &[], at).is_ok()
            {
                self.last_write = Instant::now();
                self.last_flush_ms = Some(at);
            }
            return;
        }
        let dropped: u64 = self.pending.stats.values().map(|s| s.dropped).sum();
        let at = now_ms();
        let result = self.db.flush(&self.pending, opened, at);
        if result.is_err() {
            // Written next time.
            self.resolver.opened.unsave(n_opened);
        }
        match result {
            Ok(f) => {
                self.dropped_total += dropped;
                log::debug!(
                    "flushed {} failure(s) in {} row(s) in {:.1?}",
                    f.failures,
                    f.rows,
                    f.took
                );
                if let Some((since, n)) = self.failing_since.take() {
                    log::info!(
                        "writing to {} again after {n} failed attempt(s) over {}; nothing was lost",
                        self.db.path().display(),
                        humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                    );
                    self.last_error_log = None;
                }
                self.pending.clear();
                self.last_flush_ms = Some(at);
                self.last_write = Instant::now();
            }
            Err(e) => {
                self.db_errors += 1;
                let n = self.failing_since.map_or(1, |(_, n)| n + 1);
                let since = self.failing_since.map_or_else(Instant::now, |(s, _)| s);
                self.failing_since = Some((since, n));
                if self
                    .last_error_log
                    .is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY)
                {
                    self.last_error_log = Some(Instant::now());
                    log::error!(
                        "cannot write the history to {}: {e}{}; capture goes on in memory ({} \
                         failure(s) in {} bucket(s) waiting), retrying every {}",
                        self.db.path().display(),
                        if e.is_full() { " (disk full)" } else { "" },
                        self.pending.failures(),
                        self.pending.len(),
                        humantime::format_duration(self.settings.flush_interval)
                    );
                }
            }
        }
    }

    /// Forgets keys that stopped failing: their counts are in `pending` or written already.
    fn evict(&mut self, session: &mut Session) -> Result<()> {
        let idle = if self.tracker.len() > AGG_ENTRIES as usize / 2 {
            // The kernel map is filling up: keep only what failed since the last read.
            poll_period(self.settings.flush_interval) * 2
        } else {
            self.settings.evict_after
        };
        let before = monotonic_ns().saturating_sub(idle.as_nanos() as u64);
        let keys = self.tracker.idle_keys(before);
        if !keys.is_empty() {
            log::debug!("forgetting {} idle key(s)", keys.len());
            // Each key read and deleted at once: what it counted since the last read is
            // taken, not lost.
            let last = session.take_keys(&keys)?;
            self.tracker.on_counts(
                &last,
                now_ms(),
                monotonic_ns(),
                MISS_LIMIT,
                &mut self.pending,
            );
            self.tracker.forget(&keys);
        }
        Ok(())
    }

    /// Retention and size cap, hourly or when over the cap; the top paths for /metrics.
    fn maintain(&mut self) {
        if self.failing_since.is_some() {
            return;
        }
        let over = self
            .db
            .used_size()
            .map(|s| {
                self.db_size = s;
                s > self.settings.max_db_size
            })
            .unwrap_or(false);
        if over || self.last_trim.elapsed() >= TRIM_EVERY {
            self.trim();
        }
        let top_every = (self.settings.flush_interval * 3).min(TOP_EVERY);
        if self.metrics.is_some() && self.last_top.is_none_or(|t| t.elapsed() >= top_every) {
            self.last_top = Some(Instant::now());
            match self
                .db
                .top_paths(minute_of(now_ms()) - 60, self.settings.metrics_top)
            {
                Ok(t) => self.top = t,
                Err(e) => log::debug!("reading the top paths: {e}"),
            }
        }
    }

    fn trim(&mut self) {
        self.last_trim = Instant::now();
        match self
            .db
            .trim(self.settings.retention, self.settings.max_db_size, now_ms())
        {
            Ok(t) => {
                self.db_size = t.size;
                if t.expired_rows > 0 {
                    log::info!(
                        "retention: deleted {} row(s) older than {}",
                        t.expired_rows,
                        humantime::format_duration(self.settings.retention)
                    );
                }
                if t.capped_rows > 0 {
                    log::warn!(
                        "size cap: deleted the oldest {} row(s) to keep {} under {} bytes",
                        t.capped_rows,
                        self.db.path().display(),
                        self.settings.max_db_size
                    );
                }
                if t.over_cap && !self.over_cap {
                    log::warn!(
                        "{} holds {} bytes, over --max-db-size {}, with only its last hour left",
                        self.db.path().display(),
                        t.size,
                        self.settings.max_db_size
                    );
                }
                self.over_cap = t.over_cap;
            }
            Err(e) => log::warn!("enforcing retention on {}: {e}", self.db.path().display()),
        }
    }

    fn publish(&mut self) {
        let s = Snapshot {
            failures: self.tracker.totals.clone(),
            top: self.top.clone(),
            lost: self.stats_total.lost,
            overflow: self.stats_total.overflow,
            dropped: self.dropped_total
                + self.pending.stats.values().map(|s| s.dropped).sum::<u64>(),
            db_write_errors: self.db_errors,
            last_flush_ms: self.last_flush_ms,
            db_size: self.db_size,
            pending_buckets: self.pending.len(),
            tracked_keys: self.tracker.len(),
            capture_restarts: self.capture_restarts,
        };
        match self.snapshot.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }

    /// SIGHUP: re-reads the configuration and applies it. Returns the new poll period when the
    /// flush interval changed.
    fn reload(&mut self, session: &mut Session) -> Result<Option<Duration>> {
        let new = match config::load(&self.args) {
            Ok(s) => s,
            Err(e) => {
                log::error!("reload: {e:#}; keeping the running configuration");
                return Ok(None);
            }
        };
        let changes = self.settings.changes(&new);
        // The JSON-lines file is reopened on every reload (log rotation).
        match Jsonl::open(&new.jsonl) {
            Ok(j) => self.jsonl = j,
            Err(e) => log::error!("reload: {e:#}; the JSON-lines stream is off"),
        }
        let mut applied = new.clone();
        if new.db != self.settings.db {
            log::warn!(
                "reload: db cannot change while recording (still {}): restart observer to use {}",
                self.settings.db.display(),
                new.db.display()
            );
            applied.db = self.settings.db.clone();
        }
        if new.verbose != self.settings.verbose {
            // observer's own debug lines at once; the eBPF program's from its next restart.
            log::set_max_level(if new.verbose {
                log::LevelFilter::Debug
            } else {
                log::LevelFilter::Info
            });
        }
        if new.metrics != self.settings.metrics {
            if let Some(m) = self.metrics.take() {
                m.stop();
            }
            if let Some(a) = new.metrics.clone() {
                match metrics::Server::start(a, self.snapshot.clone()) {
                    Ok(m) => {
                        log::info!("metrics on {}", m.addr);
                        self.metrics = Some(m);
                    }
                    Err(e) => {
                        log::error!("reload: {e:#}; metrics are off");
                        applied.metrics = None;
                    }
                }
            }
        }
        if new.filter != self.settings.filter {
            // Attach the new capture closed while the old one counts; then close the old one's
            // gate and open the new one's (two map writes, a microsecond apart), detach the old
            // one and take everything it counted. New kernel maps: every key starts over from
            // its record, and nothing is counted twice.
            let old_filter = self.settings.filter.clone();
            match Session::start_gated(&new.filter, self.settings.verbose, false) {
                Ok(mut l) => {
                    session.set_gate(false)?;
                    l.set_gate(true)?;
                    session.pause()?;
                    session.drain(self);
                    let p = session.poll()?;
                    self.take(session, p)?;
                    self.bad_records += session.bad_records();
                    *session = l;
                    self.tracker.reset_keys();
                    self.capture_restarts += 1;
                    if let Err(e) = self.db.set_filter(&filter_json(&new.filter)) {
                        log::warn!("reload: recording the new selectors: {e}");
                    }
                }
                Err(e) => {
                    log::error!(
                        "reload: cannot capture {}: {e:#}; still watching {}",
                        new.filter.describe(),
                        old_filter.describe()
                    );
                    applied.filter = old_filter;
                }
            }
        }
        let new_tick = (applied.flush_interval != self.settings.flush_interval)
            .then(|| poll_period(applied.flush_interval));
        let retention_changed = applied.retention != self.settings.retention
            || applied.max_db_size != self.settings.max_db_size;
        self.settings = applied;
        if retention_changed {
            self.trim();
        }
        log::info!(
            "reloaded{}: {}",
            self.settings
                .source
                .as_ref()
                .map(|p| format!(" {}", p.display()))
                .unwrap_or_default(),
            if changes.is_empty() {
                "nothing changed".to_string()
            } else {
                changes.join("; ")
            }
        );
        Ok(new_tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_often_enough_for_minute_buckets() {
        assert_eq!(poll_period(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(poll_period(Duration::from_secs(60)), Duration::from_secs(5));
    }
}
