//! History: what `observer record` keeps, and `observer report` / `observer timeline` read back.
//!
//! - [`bucket`]: kernel counts -> per-minute deltas (pure logic).
//! - [`db`]: the SQLite database, its lock, flushes, retention and size cap.
//! - [`query`]: reading windows, baselines, sessions and timelines back.
//!
//! This module's functions build the reports: the same ranking, hints and formats as ad-hoc mode,
//! with novelty judged against everything recorded before the window.

pub mod bucket;
pub mod db;
pub mod query;

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::cli::{Format, ReportArgs, TimelineArgs, When};
use crate::model::{RankContext, Totals};
use crate::output::{Report, WARMUP_SECS};
use crate::report::time::{local_clock, rfc3339_millis};
use crate::report::{self, HintEnv, JsonMeta, escape_path};
use bucket::minute_of;
use query::{Session, ms_of, time_of_ms};

/// A gap in recording shorter than this is not reported (it absorbs the flush interval).
const GAP_SLACK_MS: i64 = 90_000;

/// Quiet minutes allowed inside one episode of a timeline.
pub const EPISODE_GAP_MINUTES: i64 = 5;

/// `observer report`: the ranked report of a window of the history.
pub fn report_command(args: &ReportArgs) -> Result<String> {
    if let Some(p) = &args.timeline {
        return timeline_command(&TimelineArgs {
            path: p.clone(),
            since: Some(args.since),
            history: args.history.clone(),
        });
    }
    let now = SystemTime::now();
    let (from, to) = window(args.since, args.history.until, now)?;
    let conn = db::open_reader(&args.history.db)?;
    let r = build_report(&conn, &args.history.db, from, to, now, &HintEnv::default())?;
    Ok(r.render(Format::from(args.history.format), args.top))
}

fn window(since: When, until: When, now: SystemTime) -> Result<(i64, i64)> {
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

fn session_json(s: &Session) -> Value {
    json!({
        "started": rfc3339_millis(time_of_ms(s.started_ms)),
        "until": rfc3339_millis(time_of_ms(s.until_ms)),
        "ended": s.ended,
        "filter": serde_json::from_str::<Value>(&s.filter).unwrap_or(Value::Null),
    })
}

fn gaps_json(gaps: &[(i64, i64)]) -> Value {
    Value::Array(
        gaps.iter()
            .map(|(a, b)| {
                json!({"from": rfc3339_millis(time_of_ms(*a)), "to": rfc3339_millis(time_of_ms(*b))})
            })
            .collect(),
    )
}

fn local(ms: i64, reference: SystemTime) -> String {
    local_clock(time_of_ms(ms), reference)
}

fn gaps_line(gaps: &[(i64, i64)], reference: SystemTime) -> Option<String> {
    if gaps.is_empty() {
        return None;
    }
    let g: Vec<String> = gaps
        .iter()
        .map(|(a, b)| format!("{} .. {}", local(*a, reference), local(*b, reference)))
        .collect();
    Some(format!("observer was not recording: {}\n", g.join(", ")))
}

/// The report of minutes `from_ms..=to_ms` (rounded out to whole minutes).
pub fn build_report(
    conn: &Connection,
    db_path: &Path,
    from_ms: i64,
    to_ms: i64,
    now: SystemTime,
    env: &HintEnv,
) -> Result<Report> {
    let (from_m, to_m) = (minute_of(from_ms), minute_of(to_ms));
    let failures = query::failures(conn, from_m, to_m)?;
    let sessions = query::sessions(conn)?;
    let stats = db::minute_stats(conn, from_m, to_m)?;
    let start_ms = from_m * 60_000;
    // Novelty needs history from before the window; without it, "new" means "appeared after
    // recording began", as in ad-hoc mode.
    let earliest = sessions.iter().map(|s| s.started_ms).min();
    let reaches_before = earliest.is_some_and(|e| e < start_ms);
    let baseline = if reaches_before {
        Some(query::baseline(conn, from_m, to_m)?)
    } else {
        None
    };
    let window_start = time_of_ms(earliest.map_or(start_ms, |e| e.max(start_ms)));
    let ctx = RankContext {
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
        capture: None,
    };
    let overlapping: Vec<&Session> = sessions
        .iter()
        .filter(|s| s.started_ms <= to_ms && s.until_ms + GAP_SLACK_MS >= start_ms)
        .collect();
    let filter = overlapping
        .last()
        .or(sessions.last().as_ref())
        .and_then(|s| serde_json::from_str::<Value>(&s.filter).ok())
        .unwrap_or(Value::Null);
    // Before the first session is not a gap: the history starts there.
    let gaps = query::gaps(
        &sessions,
        earliest.map_or(start_ms, |e| e.max(start_ms)),
        to_ms.min(ms_of(now)),
        GAP_SLACK_MS,
    );
    let history = json!({
        "db": db_path.display().to_string(),
        "baseline": reaches_before,
        "recorded_since": earliest.map(|e| rfc3339_millis(time_of_ms(e))),
        "sessions": overlapping.iter().map(|s| session_json(s)).collect::<Vec<_>>(),
        "gaps": gaps_json(&gaps),
        "dropped": stats.dropped,
    });
    let mut pre = format!(
        "history {}: {} .. {}",
        escape_path(db_path.as_os_str().as_encoded_bytes()),
        local(start_ms, now),
        local(to_ms, now)
    );
    match earliest {
        Some(e) if reaches_before => {
            let _ = write!(
                pre,
                "; \"new\" = did not fail before this window (history since {})",
                local(e, now)
            );
        }
        Some(e) => {
            let _ = write!(pre, "; recording began {}", local(e, now));
        }
        None => pre.push_str("; nothing recorded yet"),
    }
    pre.push('\n');
    if let Some(g) = gaps_line(&gaps, now) {
        pre.push_str(&g);
    }
    if stats.dropped > 0 {
        let _ = writeln!(
            pre,
            "{} failure(s) were dropped by observer (memory full while the database could not be written)",
            stats.dropped
        );
    }
    Ok(Report {
        ranked: report::rank(failures, &ctx, env),
        totals,
        meta: JsonMeta {
            started: time_of_ms(start_ms),
            ended: time_of_ms(to_ms),
            filter,
        },
        history: Some(history),
        preamble: Some(pre),
    })
}

/// `observer timeline PATH`.
pub fn timeline_command(args: &TimelineArgs) -> Result<String> {
    let now = SystemTime::now();
    let path = args.path.as_encoded_bytes().to_vec();
    let since = args.since.unwrap_or(When::At(SystemTime::UNIX_EPOCH));
    let (from, to) = window(since, args.history.until, now)?;
    let conn = db::open_reader(&args.history.db)?;
    let t = build_timeline(&conn, &path, from, to, now)?;
    Ok(match args.history.format {
        crate::cli::HistoryFormat::Json => format!("{:#}\n", t.json),
        crate::cli::HistoryFormat::Table => t.text,
    })
}

pub struct Timeline {
    pub json: Value,
    pub text: String,
}

fn path_json(m: &mut serde_json::Map<String, Value>, path: &[u8]) {
    match std::str::from_utf8(path) {
        Ok(s) => {
            m.insert("path".into(), json!(s));
        }
        Err(_) => {
            m.insert("path".into(), json!(escape_path(path)));
            m.insert("path_base64".into(), json!(report::render::base64(path)));
        }
    }
}

/// "HH:MM" of a minute, with the date when it is not today.
fn minute_label(minute: i64, now: SystemTime) -> String {
    let full = local(minute * 60_000, now);
    full.strip_suffix(":00").unwrap_or(&full).to_string()
}

pub fn build_timeline(
    conn: &Connection,
    path: &[u8],
    from_ms: i64,
    to_ms: i64,
    now: SystemTime,
) -> Result<Timeline> {
    let (from_m, to_m) = (minute_of(from_ms), minute_of(to_ms));
    let by_errno = query::timeline(conn, path, from_m, to_m).context("reading the timeline")?;
    let sessions = query::sessions(conn)?;
    let earliest = sessions.iter().map(|s| s.started_ms).min();
    let start_ms = (from_m * 60_000).max(earliest.unwrap_or(i64::MIN / 2));
    let gaps = query::gaps(&sessions, start_ms, to_ms.min(ms_of(now)), GAP_SLACK_MS);
    let shown = escape_path(path);
    let mut text = String::new();
    let mut doc = serde_json::Map::new();
    doc.insert("version".into(), json!(1));
    path_json(&mut doc, path);
    doc.insert("from".into(), json!(rfc3339_millis(time_of_ms(start_ms))));
    doc.insert("to".into(), json!(rfc3339_millis(time_of_ms(to_ms))));
    let _ = writeln!(
        text,
        "timeline of {shown}, {} .. {} (local time)",
        local(start_ms, now),
        local(to_ms, now)
    );
    if by_errno.is_empty() {
        let _ = writeln!(text, "no failures recorded for this path in this window");
        let similar = query::similar_paths(conn, path, 5)?;
        if !similar.is_empty() {
            let _ = writeln!(text, "recorded paths that look like it:");
            for p in &similar {
                let _ = writeln!(text, "  {}", escape_path(p));
            }
        }
        doc.insert(
            "similar".into(),
            json!(similar.iter().map(|p| escape_path(p)).collect::<Vec<_>>()),
        );
    }
    let mut errnos = Vec::new();
    for (errno, minutes) in &by_errno {
        let eps = query::episodes(minutes, EPISODE_GAP_MINUTES);
        let total: u64 = minutes.iter().map(|m| m.count).sum();
        let first = minutes.first().map_or(0, |m| m.first_ms);
        let last = minutes.last().map_or(0, |m| m.last_ms);
        let name = crate::errno::name(*errno);
        let recent = to_ms - last < 2 * 60_000 && ms_of(now) - to_ms < 60_000;
        let _ = writeln!(
            text,
            "\n{name}: {total} failing call(s) in {} minute(s), first {}, last {}{}",
            minutes.len(),
            local(first, now),
            local(last, now),
            if recent {
                " (recent: may still be failing)"
            } else {
                ""
            }
        );
        for (i, e) in eps.iter().enumerate() {
            let _ = writeln!(
                text,
                "  episode {}: started {}, stopped {}, {} call(s) over {} failing minute(s)",
                i + 1,
                local(e.first_ms, now),
                local(e.last_ms, now),
                e.count,
                e.minutes
            );
        }
        let rows: Vec<[String; 4]> = minutes
            .iter()
            .map(|m| {
                [
                    minute_label(m.minute, now),
                    m.count.to_string(),
                    m.syscalls
                        .iter()
                        .map(|(s, n)| format!("{s} {n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    m.comms
                        .iter()
                        .map(|c| escape_path(c.as_bytes()))
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        let head = [
            "MINUTE".to_string(),
            "COUNT".to_string(),
            "SYSCALLS".to_string(),
            "COMMS".to_string(),
        ];
        let w: Vec<usize> = (0..4)
            .map(|i| {
                rows.iter()
                    .chain(std::iter::once(&head))
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in std::iter::once(&head).chain(rows.iter()) {
            let _ = writeln!(
                text,
                "  {:<w0$}  {:>w1$}  {:<w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            );
        }
        errnos.push(json!({
            "errno": name,
            "errno_code": errno,
            "count": total,
            "first_seen": rfc3339_millis(time_of_ms(first)),
            "last_seen": rfc3339_millis(time_of_ms(last)),
            "episodes": eps.iter().map(|e| json!({
                "started": rfc3339_millis(time_of_ms(e.first_ms)),
                "stopped": rfc3339_millis(time_of_ms(e.last_ms)),
                "count": e.count,
                "minutes": e.minutes,
            })).collect::<Vec<_>>(),
            "minutes": minutes.iter().map(|m| json!({
                "minute": rfc3339_millis(time_of_ms(m.minute * 60_000)),
                "count": m.count,
                "syscalls": m.syscalls,
                "comms": m.comms,
            })).collect::<Vec<_>>(),
        }));
    }
    if let Some(g) = gaps_line(&gaps, now) {
        text.push('\n');
        text.push_str(&g);
    }
    doc.insert("errnos".into(), Value::Array(errnos));
    doc.insert("gaps".into(), gaps_json(&gaps));
    Ok(Timeline {
        json: Value::Object(doc),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::bucket::Pending;

    /// The README's record-mode documentation carries
    /// the schema and metrics documentation verbatim, so it cannot drift from the code.
    #[test]
    fn the_docs_carry_the_schema_and_metrics_as_the_code_does() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let docs: Vec<String> = ["README.md"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(root.join(f)).ok())
            .collect();
        for (name, doc) in [
            ("SCHEMA_DOC", db::SCHEMA_DOC),
            ("METRICS_DOC", crate::metrics::METRICS_DOC),
        ] {
            let body = doc.split_once('\n').map_or(doc, |(_, rest)| rest).trim();
            assert!(
                docs.iter().any(|d| d.contains(body)),
                "README.md is out of date with {name}:\n{body}"
            );
        }
    }
    use crate::history::db::Writer;
    use crate::history::db::tests::{TempDir, bkey, bval};
    use observer_common::Syscall;

    #[test]
    fn history_report_uses_the_baseline_and_says_where_it_comes_from() {
        let d = TempDir::new("report");
        let db = d.0.join("h.db");
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
        w.flush(&p, 102 * min).unwrap();
        let conn = db::open_reader(&db).unwrap();
        let env = HintEnv::with_root("/nonexistent-root");
        let r = build_report(
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
            .find(|x| x.failure.path == b"/var/www/new.php")
            .unwrap();
        let old = r
            .ranked
            .iter()
            .find(|x| x.failure.path == b"/var/www/always.php")
            .unwrap();
        assert!(
            new.reasons.iter().any(|s| s.starts_with("new since")),
            "{:?}",
            new.reasons
        );
        assert!(
            old.reasons.iter().any(|s| s == "has always failed"),
            "{:?}",
            old.reasons
        );
        let j: Value = serde_json::from_str(&r.render(Format::Json, None)).unwrap();
        assert_eq!(j["history"]["baseline"], true);
        assert_eq!(j["filter"]["comms"][0], "apache2");
        assert_eq!(j["totals"]["failures"], 51);
        let t = r.render(Format::Table, None);
        assert!(t.starts_with("history "), "{t}");
    }

    #[test]
    fn timeline_shows_episodes_and_minutes() {
        let d = TempDir::new("tl");
        let db = d.0.join("h.db");
        let min = 60_000;
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let mut p = Pending::new(100);
        let k = bkey("/etc/x.conf", 13, Syscall::Openat);
        p.add(&k, bval(3, 10 * min));
        p.add(&k, bval(4, 11 * min));
        p.add(&k, bval(5, 40 * min));
        w.flush(&p, 41 * min).unwrap();
        let conn = db::open_reader(&db).unwrap();
        let t = build_timeline(&conn, b"/etc/x.conf", 0, 41 * min, time_of_ms(41 * min)).unwrap();
        assert_eq!(t.json["errnos"][0]["errno"], "EACCES");
        assert_eq!(t.json["errnos"][0]["count"], 12);
        assert_eq!(t.json["errnos"][0]["episodes"].as_array().unwrap().len(), 2);
        assert_eq!(t.json["errnos"][0]["minutes"][1]["count"], 4);
        assert!(t.text.contains("episode 2:"), "{}", t.text);
        let none =
            build_timeline(&conn, b"/other/x.conf", 0, 41 * min, time_of_ms(41 * min)).unwrap();
        assert!(
            none.text.contains("look like it") && none.text.contains("/etc/x.conf"),
            "{}",
            none.text
        );
    }
}
