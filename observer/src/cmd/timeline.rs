//! `observer timeline PATH`: when one path started and stopped failing, minute by minute, from
//! the history; when it never failed, the recorded paths that look like it.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::cmd::report::{GAP_SLACK_MS, window};
use crate::history::bucket::minute_of;
use crate::history::reader;
use crate::render::Format;
use crate::render::timeline::{self, Timeline};
use crate::time::ms_of;
use crate::values::When;

/// Quiet minutes allowed inside one episode of a timeline.
const EPISODE_GAP_MINUTES: i64 = 5;

/// Recorded look-alikes shown when a path has no failures.
const SIMILAR: usize = 5;

/// What `observer timeline` runs with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The path's exact bytes.
    pub(crate) path: Vec<u8>,
    /// Start of the window; the whole history when not given.
    pub(crate) since: Option<When>,
    pub(crate) until: When,
    pub(crate) db: PathBuf,
    /// Table (text) or JSON.
    pub(crate) format: Format,
}

/// Runs `observer timeline`: its text.
pub(crate) fn run(s: &Settings) -> Result<String> {
    let now = SystemTime::now();
    let since = s.since.unwrap_or(When::At(SystemTime::UNIX_EPOCH));
    let (from, to) = window(since, s.until, now)?;
    let conn = reader::open_reader(&s.db)?;
    let t = build(&conn, &s.path, from, to, now)?;
    Ok(match s.format {
        Format::Json => crate::escape::safe_json(&format!("{:#}\n", timeline::json(&t))),
        _ => timeline::text(&t),
    })
}

fn build(
    conn: &Connection,
    path: &[u8],
    from_ms: i64,
    to_ms: i64,
    now: SystemTime,
) -> Result<Timeline> {
    let (from_m, to_m) = (minute_of(from_ms), minute_of(to_ms));
    let by_errno = reader::timeline(conn, path, from_m, to_m).context("reading the timeline")?;
    let sessions = reader::sessions(conn)?;
    let earliest = sessions.iter().map(|s| s.started_ms).min();
    let start_ms = (from_m * 60_000).max(earliest.unwrap_or(i64::MIN / 2));
    let gaps = reader::gaps(&sessions, start_ms, to_ms.min(ms_of(now)), GAP_SLACK_MS);
    let similar = if by_errno.is_empty() {
        Some(reader::similar_paths(conn, path, SIMILAR)?)
    } else {
        None
    };
    Ok(Timeline {
        path: path.to_vec(),
        from_ms: start_ms,
        to_ms,
        now,
        errnos: by_errno
            .into_iter()
            .map(|(errno, minutes)| {
                let eps = reader::episodes(&minutes, EPISODE_GAP_MINUTES);
                (errno, minutes, eps)
            })
            .collect(),
        similar,
        gaps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::bucket::Pending;
    use crate::history::writer::Writer;
    use crate::testutil::{TempDir, bkey, bval};
    use crate::time::time_of_ms;
    use observer_common::Syscall;

    #[test]
    fn timeline_shows_episodes_and_minutes() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let min = 60_000;
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let mut p = Pending::new(100);
        let k = bkey("/etc/x.conf", 13, Syscall::Openat);
        p.add(&k, bval(3, 10 * min));
        p.add(&k, bval(4, 11 * min));
        p.add(&k, bval(5, 40 * min));
        w.flush(&p, &[], 41 * min).unwrap();
        let conn = reader::open_reader(&db).unwrap();
        let t = build(&conn, b"/etc/x.conf", 0, 41 * min, time_of_ms(41 * min)).unwrap();
        let (json, text) = (timeline::json(&t), timeline::text(&t));
        assert_eq!(json["errnos"][0]["errno"], "EACCES");
        assert_eq!(json["errnos"][0]["count"], 12);
        assert_eq!(json["errnos"][0]["episodes"].as_array().unwrap().len(), 2);
        assert_eq!(json["errnos"][0]["minutes"][1]["count"], 4);
        assert!(text.contains("episode 2:"), "{text}");
        let none = build(&conn, b"/other/x.conf", 0, 41 * min, time_of_ms(41 * min)).unwrap();
        let none_text = timeline::text(&none);
        assert!(
            none_text.contains("look like it") && none_text.contains("/etc/x.conf"),
            "{none_text}"
        );
    }
}
