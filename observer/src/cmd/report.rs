//! `observer report`: the ranked report of a past window, from the history. The same ranking,
//! hints and formats as the ad-hoc mode, with novelty judged against everything recorded before
//! the window, and a word on where the history comes from and when observer was not recording.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Result, bail};
use rusqlite::Connection;

use crate::history::bucket::minute_of;
use crate::history::reader;
use crate::model::{RankContext, Session, Totals};
use crate::opened::{MAX_OPENED, OpenedFile};
use crate::place::{self, Place, ViewRef};
use crate::render::fix::FixFormat;
use crate::render::{self, Format};
use crate::report::score::WARMUP_SECS;
use crate::report::{HintEnv, HistorySource, Report};
use crate::time::{ms_of, rfc3339_millis, time_of_ms};
use crate::values::When;

/// A gap in recording shorter than this is not reported (it absorbs the flush interval).
pub(crate) const GAP_SLACK_MS: i64 = 90_000;

/// What `observer report` runs with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) since: When,
    pub(crate) until: When,
    pub(crate) db: PathBuf,
    /// Table or JSON.
    pub(crate) format: Format,
    pub(crate) top: Option<usize>,
    /// Print the fixes in this form instead of the report.
    pub(crate) fix: Option<FixFormat>,
    /// Where to write (mode 0600); standard output when not given.
    pub(crate) output: Option<PathBuf>,
}

/// Runs `observer report`: the report's text.
pub(crate) fn run(s: &Settings) -> Result<String> {
    let now = SystemTime::now();
    let (from, to) = window(s.since, s.until, now)?;
    let conn = reader::open_reader(&s.db)?;
    let r = build(&conn, &s.db, from, to, now, &HintEnv::default())?;
    Ok(match s.fix {
        Some(form) => render::fix::render(&r, form),
        None => render::render(&r, s.format, s.top),
    })
}

/// The window `since..until` in Unix milliseconds; an error when it is backwards.
pub(crate) fn window(since: When, until: When, now: SystemTime) -> Result<(i64, i64)> {
    let from = ms_of(since.resolve(now));
    let to = ms_of(until.resolve(now));
    if from > to {
        bail!(
            "--since ({}) is after --until ({})",
            rfc3339_millis(time_of_ms(from)),
            rfc3339_millis(time_of_ms(to))
        );
    }
    Ok((from, to))
}

/// The report of minutes `from_ms..=to_ms` (rounded out to whole minutes).
fn build(
    conn: &Connection,
    db_path: &Path,
    from_ms: i64,
    to_ms: i64,
    now: SystemTime,
    env: &HintEnv,
) -> Result<Report> {
    let (from_m, to_m) = (minute_of(from_ms), minute_of(to_ms));
    let mut failures = reader::failures(conn, from_m, to_m)?;
    // Hints look where the processes looked: a container or private service still running has
    // its view now; one that is gone says so.
    let mut views: HashMap<Place, ViewRef> = HashMap::new();
    for f in &mut failures {
        f.view = views
            .entry(f.place.clone())
            .or_insert_with(|| place::live_view(&f.place))
            .clone();
    }
    // The files the processes read (where the failing names are searched), in their views.
    let opened: Vec<OpenedFile> = reader::opened(conn, MAX_OPENED)?
        .into_iter()
        .map(|(path, place)| OpenedFile { path, place })
        .collect();
    let sessions = reader::sessions(conn)?;
    let stats = reader::minute_stats(conn, from_m, to_m)?;
    let start_ms = from_m * 60_000;
    // Novelty needs history from before the window; without it, "new" means "appeared after
    // recording began", as in ad-hoc mode.
    let earliest = sessions.iter().map(|s| s.started_ms).min();
    let reaches_before = earliest.is_some_and(|e| e < start_ms);
    let baseline = if reaches_before {
        Some(reader::baseline(conn, from_m, to_m)?)
    } else {
        None
    };
    let window_start = time_of_ms(earliest.map_or(start_ms, |e| e.max(start_ms)));
    let ctx = RankContext {
        evidence: true,
        hints: true,
        window_start,
        now: time_of_ms(to_ms),
        warmup_secs: WARMUP_SECS,
        baseline,
    };
    let totals = Totals {
        failures: failures.iter().map(|f| f.count).sum(),
        distinct: failures.len() as u64,
        lost: stats.lost,
        overflow: stats.overflow,
        dropped: stats.dropped,
        unlisted_paths: 0,
        unlisted_failures: 0,
        capture: None,
    };
    let overlapping: Vec<Session> = sessions
        .iter()
        .filter(|s| s.started_ms <= to_ms && s.until_ms + GAP_SLACK_MS >= start_ms)
        .cloned()
        .collect();
    let watched = overlapping
        .last()
        .or(sessions.last())
        .and_then(|s| s.watched.clone());
    // Before the first session is not a gap: the history starts there.
    let gaps = reader::gaps(
        &sessions,
        earliest.map_or(start_ms, |e| e.max(start_ms)),
        to_ms.min(ms_of(now)),
        GAP_SLACK_MS,
    );
    let source = HistorySource {
        db: db_path.to_path_buf(),
        from_ms: start_ms,
        to_ms,
        recorded_since: earliest,
        baseline: reaches_before,
        sessions: overlapping,
        gaps,
        dropped: stats.dropped,
        now,
    };
    Ok(Report::ranked(
        failures,
        totals,
        &ctx,
        env,
        &opened,
        watched.as_ref(),
        Some(source),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::bucket::Pending;
    use crate::history::writer::Writer;
    use crate::model::Reason;
    use crate::testutil::{TempDir, bkey, bval};
    use observer_common::Syscall;
    use serde_json::Value;

    #[test]
    fn history_report_uses_the_baseline_and_says_where_it_comes_from() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let min = 60_000;
        let mut w = Writer::open(&db, "{\"comms\":[\"apache2\"]}", 0).unwrap();
        let mut p = Pending::new(100);
        p.add(
            &bkey("/var/www/always.php", 2, Syscall::Openat),
            bval(50, 10 * min),
        );
        p.add(
            &bkey("/var/www/always.php", 2, Syscall::Openat),
            bval(50, 100 * min),
        );
        p.add(
            &bkey("/var/www/new.php", 2, Syscall::Openat),
            bval(1, 101 * min),
        );
        w.flush(&p, &[], 102 * min).unwrap();
        let conn = reader::open_reader(&db).unwrap();
        let env = HintEnv::with_root("/nonexistent-root");
        let r = build(
            &conn,
            &db,
            100 * min,
            102 * min,
            time_of_ms(102 * min),
            &env,
        )
        .unwrap();
        assert_eq!(r.totals.failures, 51);
        let new = r
            .ranked
            .iter()
            .find(|x| x.failure.path == b"/var/www/new.php"[..])
            .unwrap();
        let old = r
            .ranked
            .iter()
            .find(|x| x.failure.path == b"/var/www/always.php"[..])
            .unwrap();
        assert!(
            new.reasons.iter().any(|s| matches!(s, Reason::NewSince(_))),
            "{:?}",
            new.reasons
        );
        assert!(
            old.reasons.contains(&Reason::HasAlwaysFailed),
            "{:?}",
            old.reasons
        );
        let j: Value = serde_json::from_str(&render::render(&r, Format::Json, None)).unwrap();
        assert_eq!(j["history"]["baseline"], true);
        assert_eq!(j["filter"]["comms"][0], "apache2");
        assert_eq!(j["totals"]["failures"], 51);
        let t = render::render(&r, Format::Table, None);
        assert!(t.starts_with("history "), "{t}");
    }
}
