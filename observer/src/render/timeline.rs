//! Stage 5, one path's history (`observer timeline`): per errno, its episodes, then each failing
//! minute with its count, syscalls and process names, and when observer was not recording; as
//! text (local times) or JSON.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::escape::escape_path;
use crate::model::{Episode, Minute};
use crate::time::{ms_of, rfc3339_millis, time_of_ms};

use super::json::{gaps, path_fields};
use super::{gaps_line, local};

/// A path's history in a window, as read from the database.
pub(crate) struct Timeline {
    pub(crate) path: Vec<u8>,
    /// The window, Unix milliseconds.
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    /// When the timeline is made (local times are shown relative to it).
    pub(crate) now: SystemTime,
    /// Per errno, in errno order: the failing minutes and the episodes they make.
    pub(crate) errnos: Vec<(i32, Vec<Minute>, Vec<Episode>)>,
    /// When nothing failed: recorded paths that look like it.
    pub(crate) similar: Option<Vec<Vec<u8>>>,
    /// When observer was not recording.
    pub(crate) gaps: Vec<(i64, i64)>,
}

/// "HH:MM" of a minute, with the date when it is not today.
fn minute_label(minute: i64, now: SystemTime) -> String {
    let full = local(minute * 60_000, now);
    full.strip_suffix(":00").unwrap_or(&full).to_string()
}

/// The timeline as text (`--format table`).
pub(crate) fn text(t: &Timeline) -> String {
    let now = t.now;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "timeline of {}, {} .. {} (local time)",
        escape_path(&t.path),
        local(t.from_ms, now),
        local(t.to_ms, now)
    );
    if let Some(similar) = &t.similar {
        let _ = writeln!(text, "no failures recorded for this path in this window");
        if !similar.is_empty() {
            let _ = writeln!(text, "recorded paths that look like it:");
            for p in similar {
                let _ = writeln!(text, "  {}", escape_path(p));
            }
        }
    }
    for (errno, minutes, eps) in &t.errnos {
        let total: u64 = minutes.iter().map(|m| m.count).sum();
        let first = minutes.first().map_or(0, |m| m.first_ms);
        let last = minutes.last().map_or(0, |m| m.last_ms);
        let recent = t.to_ms - last < 2 * 60_000 && ms_of(now) - t.to_ms < 60_000;
        let _ = writeln!(
            text,
            "\n{}: {total} failing call(s) in {} minute(s), first {}, last {}{}",
            crate::errno::name(*errno),
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
                        // The name comes from the database, which may be a hostile copy.
                        .map(|(s, n)| format!("{} {n}", escape_path(s.as_bytes())))
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
    }
    if let Some(g) = gaps_line(&t.gaps, now) {
        text.push('\n');
        text.push_str(&g);
    }
    text
}

/// The timeline as a JSON document (`--format json`).
pub(crate) fn json(t: &Timeline) -> Value {
    let mut doc = serde_json::Map::new();
    doc.insert("version".into(), json!(1));
    path_fields(&mut doc, "path", &t.path);
    doc.insert("from".into(), json!(rfc3339_millis(time_of_ms(t.from_ms))));
    doc.insert("to".into(), json!(rfc3339_millis(time_of_ms(t.to_ms))));
    if let Some(similar) = &t.similar {
        doc.insert(
            "similar".into(),
            json!(similar.iter().map(|p| escape_path(p)).collect::<Vec<_>>()),
        );
    }
    let errnos: Vec<Value> = t
        .errnos
        .iter()
        .map(|(errno, minutes, eps)| {
            let total: u64 = minutes.iter().map(|m| m.count).sum();
            let first = minutes.first().map_or(0, |m| m.first_ms);
            let last = minutes.last().map_or(0, |m| m.last_ms);
            json!({
                "errno": crate::errno::name(*errno),
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
            })
        })
        .collect();
    doc.insert("errnos".into(), Value::Array(errnos));
    doc.insert("gaps".into(), gaps(&t.gaps));
    Value::Object(doc)
}
