//! Stage 6, reading the history back: the failures of a window as `model::Failure`s (for the
//! same ranking and rendering as ad-hoc mode), the baseline of what failed before the window,
//! when observer was recording, and one path's minute-by-minute timeline. Opens the database
//! read-only: without root when the file is readable, and while `observer record` writes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use observer_common::Syscall;
use rusqlite::{Connection, OpenFlags, params};

use super::bucket::{BUCKET_TRUNCATED, BUCKET_UNRESOLVED, MinuteStats};
use super::schema::{DbError, SCHEMA_VERSION, show, sql};
use crate::model::{Episode, Failure, Minute, PID_SAMPLE, Session, Watched};
use crate::place::{Container, Place, Runtime};
use crate::time::time_of_ms;

fn syscall_named(name: &str) -> Option<Syscall> {
    Syscall::ALL.iter().copied().find(|s| s.name() == name)
}

/// Every recording session, oldest first.
pub(crate) fn sessions(conn: &Connection) -> Result<Vec<Session>, DbError> {
    let mut st = conn
        .prepare(
            "SELECT started_ms, coalesce(ended_ms, last_flush_ms), ended_ms IS NOT NULL, filter
             FROM sessions ORDER BY started_ms",
        )
        .map_err(sql("reading sessions"))?;
    let rows = st
        .query_map([], |r| {
            Ok(Session {
                started_ms: r.get(0)?,
                until_ms: r.get(1)?,
                ended: r.get(2)?,
                watched: serde_json::from_str::<Watched>(&r.get::<_, String>(3)?).ok(),
            })
        })
        .map_err(sql("reading sessions"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("reading sessions"))
}

/// Every place recorded, by id; id 0 (the host) is not stored.
pub(crate) fn places(conn: &Connection) -> Result<HashMap<i64, Place>, DbError> {
    let mut st = conn
        .prepare("SELECT id, runtime, container, pod, unit, private FROM places")
        .map_err(sql("reading places"))?;
    let rows = st
        .query_map([], |r| {
            let runtime: String = r.get(1)?;
            let id: String = r.get(2)?;
            let pod: String = r.get(3)?;
            let unit: String = r.get(4)?;
            // Checked as observer writes them (ids are hex, a pod uid hex and dashes): a hostile
            // copy of the history cannot smuggle anything else into a container's name.
            let hexish = |s: &str, dash: bool| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_hexdigit() || (dash && b == b'-'))
            };
            let container = Runtime::parse(&runtime)
                .filter(|_| hexish(&id, true))
                .map(|runtime| Container {
                    runtime,
                    id,
                    pod: Some(pod).filter(|p| hexish(p, true)),
                });
            let place = Place {
                container,
                unit: Some(unit).filter(|u| !u.is_empty()),
                private: r.get::<_, i64>(5)? != 0,
            };
            Ok((r.get::<_, i64>(0)?, place))
        })
        .map_err(sql("reading places"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("reading places"))
}

/// The place of id `id`: the host for 0, and for an id the places table does not hold (a
/// database edited by hand).
fn place_of(places: &HashMap<i64, Place>, id: i64) -> Place {
    places.get(&id).cloned().unwrap_or_default()
}

/// The failures recorded in minutes `from..=to`, one per (path, errno, place), like ad-hoc
/// mode's. `pids` holds the sample pids of the window's buckets and `pid_count` how many
/// distinct ones there are (a lower bound: each bucket keeps one).
pub(crate) fn failures(conn: &Connection, from: i64, to: i64) -> Result<Vec<Failure>, DbError> {
    let places = places(conn)?;
    let mut st = conn
        .prepare(
            "SELECT p.path, b.errno, b.syscall, c.comm, b.uid, b.gid, b.count, b.first_ms,
                    b.last_ms, b.open_flags, b.status, b.pid, b.place_id
             FROM buckets b JOIN paths p ON p.id = b.path_id JOIN comms c ON c.id = b.comm_id
             WHERE b.minute BETWEEN ?1 AND ?2",
        )
        .map_err(sql("reading failures"))?;
    let mut rows: BTreeMap<(Bytes, i32, i64), (Failure, BTreeSet<u32>)> = BTreeMap::new();
    let mut q = st
        .query(params![from, to])
        .map_err(sql("reading failures"))?;
    let mut unknown = BTreeSet::new();
    let mut left_out = 0u64;
    while let Some(r) = q.next().map_err(sql("reading failures"))? {
        let path = Bytes::from(r.get::<_, Vec<u8>>(0).map_err(sql("reading failures"))?);
        let errno: i32 = r.get(1).map_err(sql("reading failures"))?;
        let sys: String = r.get(2).map_err(sql("reading failures"))?;
        let Some(syscall) = syscall_named(&sys) else {
            unknown.insert(sys);
            continue;
        };
        let get = |i| r.get::<_, i64>(i);
        let (comm, uid, gid, count, first, last, flags, status, pid, place_id) = (|| {
            Ok::<_, rusqlite::Error>((
                r.get::<_, String>(3)?,
                get(4)? as u32,
                get(5)? as u32,
                get(6)?.max(0) as u64,
                get(7)?,
                get(8)?,
                get(9)? as u64,
                get(10)? as u32,
                get(11)? as u32,
                get(12)?,
            ))
        })()
        .map_err(sql("reading failures"))?;
        if rows.len() >= MAX_ROWS && !rows.contains_key(&(path.clone(), errno, place_id)) {
            left_out += 1;
            continue;
        }
        let (f, pids) = rows
            .entry((path.clone(), errno, place_id))
            .or_insert_with(|| {
                let mut f = Failure::new(path, errno, time_of_ms(first), time_of_ms(last));
                f.place = place_of(&places, place_id);
                (f, BTreeSet::new())
            });
        f.add_calls(syscall, count, flags, time_of_ms(first), time_of_ms(last));
        f.comms.insert(comm);
        f.creds.insert((uid, gid));
        f.truncated |= status & BUCKET_TRUNCATED != 0;
        f.unresolved |= status & BUCKET_UNRESOLVED != 0;
        pids.insert(pid);
    }
    for s in unknown {
        log::warn!(
            "history holds syscall {}, unknown to this observer: its rows are skipped",
            crate::escape::escape_str(&s)
        );
    }
    if left_out > 0 {
        log::warn!(
            "the window holds more than {MAX_ROWS} distinct failures: {left_out} bucket(s) left \
             out of the report (narrow --since/--until)"
        );
    }
    Ok(rows
        .into_values()
        .map(|(mut f, pids)| {
            f.pid_count = pids.len() as u64;
            f.pids = pids.into_iter().take(PID_SAMPLE).collect();
            f
        })
        .collect())
}

/// The (path, errno, place) rows failing in minutes `from..=to` that also failed before `from`.
pub(crate) fn baseline(
    conn: &Connection,
    from: i64,
    to: i64,
) -> Result<BTreeSet<(Bytes, i32, Place)>, DbError> {
    let places = places(conn)?;
    let mut st = conn
        .prepare(
            "SELECT p.path, w.errno, w.place_id
             FROM (SELECT DISTINCT path_id, errno, place_id FROM buckets
                   WHERE minute BETWEEN ?1 AND ?2) w
             JOIN paths p ON p.id = w.path_id
             WHERE EXISTS (SELECT 1 FROM buckets o
                           WHERE o.path_id = w.path_id AND o.errno = w.errno
                             AND o.place_id = w.place_id AND o.minute < ?1)",
        )
        .map_err(sql("reading the baseline"))?;
    let rows = st
        .query_map(params![from, to], |r| {
            Ok((
                Bytes::from(r.get::<_, Vec<u8>>(0)?),
                r.get(1)?,
                place_of(&places, r.get(2)?),
            ))
        })
        .map_err(sql("reading the baseline"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("reading the baseline"))
}

/// The files the watched processes read, with where they ran (most recently read first, at most
/// `limit`).
pub(crate) fn opened(conn: &Connection, limit: usize) -> Result<Vec<(Bytes, Place)>, DbError> {
    let places = places(conn)?;
    let mut st = conn
        .prepare(
            "SELECT p.path, o.place_id FROM opened o JOIN paths p ON p.id = o.path_id
             ORDER BY o.last_ms DESC LIMIT ?1",
        )
        .map_err(sql("reading the files read"))?;
    let rows = st
        .query_map([limit as i64], |r| {
            Ok((
                Bytes::from(r.get::<_, Vec<u8>>(0)?),
                place_of(&places, r.get(1)?),
            ))
        })
        .map_err(sql("reading the files read"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("reading the files read"))
}

/// One path's failures minute by minute in `from..=to`, per errno.
pub(crate) fn timeline(
    conn: &Connection,
    path: &[u8],
    from: i64,
    to: i64,
) -> Result<BTreeMap<i32, Vec<Minute>>, DbError> {
    let mut st = conn
        .prepare(
            "SELECT b.errno, b.minute, b.syscall, c.comm, b.count, b.first_ms, b.last_ms
             FROM buckets b JOIN comms c ON c.id = b.comm_id
             WHERE b.path_id = (SELECT id FROM paths WHERE path = ?1)
               AND b.minute BETWEEN ?2 AND ?3
             ORDER BY b.errno, b.minute",
        )
        .map_err(sql("reading the timeline"))?;
    let mut out: BTreeMap<i32, Vec<Minute>> = BTreeMap::new();
    let mut q = st
        .query(params![path, from, to])
        .map_err(sql("reading the timeline"))?;
    while let Some(r) = q.next().map_err(sql("reading the timeline"))? {
        let row = (|| {
            Ok::<_, rusqlite::Error>((
                r.get::<_, i32>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?.max(0) as u64,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })()
        .map_err(sql("reading the timeline"))?;
        let (errno, minute, sys, comm, count, first, last) = row;
        let v = out.entry(errno).or_default();
        if v.last().is_none_or(|m| m.minute != minute) {
            v.push(Minute {
                minute,
                count: 0,
                first_ms: first,
                last_ms: last,
                syscalls: BTreeMap::new(),
                comms: BTreeSet::new(),
            });
        }
        let m = v.last_mut().expect("pushed above");
        m.count += count;
        m.first_ms = m.first_ms.min(first);
        m.last_ms = m.last_ms.max(last);
        *m.syscalls.entry(sys).or_insert(0) += count;
        m.comms.insert(comm);
    }
    Ok(out)
}

/// Recorded paths that look like `path` (same file name, or containing it): suggestions when a
/// timeline finds nothing.
pub(crate) fn similar_paths(
    conn: &Connection,
    path: &[u8],
    limit: usize,
) -> Result<Vec<Vec<u8>>, DbError> {
    let name: &[u8] = path
        .rsplit(|&b| b == b'/')
        .find(|c| !c.is_empty())
        .unwrap_or(path);
    if name.is_empty() {
        return Ok(Vec::new());
    }
    let mut st = conn
        .prepare("SELECT path FROM paths ORDER BY path")
        .map_err(sql("reading paths"))?;
    let rows = st
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(sql("reading paths"))?;
    let mut same_name = Vec::new();
    let mut containing = Vec::new();
    for p in rows {
        let p = p.map_err(sql("reading paths"))?;
        let last = p.rsplit(|&b| b == b'/').next().unwrap_or(&p);
        if last == name {
            same_name.push(p);
        } else if p.windows(name.len()).any(|w| w == name) {
            containing.push(p);
        }
    }
    same_name.extend(containing);
    same_name.truncate(limit);
    Ok(same_name)
}

/// Consecutive failing minutes, with quiet gaps of at most `max_gap` minutes inside.
pub(crate) fn episodes(minutes: &[Minute], max_gap: i64) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    let mut prev: Option<i64> = None;
    for m in minutes {
        match (out.last_mut(), prev) {
            (Some(e), Some(p)) if m.minute - p <= max_gap + 1 => {
                e.last_ms = e.last_ms.max(m.last_ms);
                e.count += m.count;
                e.minutes += 1;
            }
            _ => out.push(Episode {
                first_ms: m.first_ms,
                last_ms: m.last_ms,
                count: m.count,
                minutes: 1,
            }),
        }
        prev = Some(m.minute);
    }
    out
}

/// The parts of `from_ms..to_ms` when no `observer record` was running (longer than `slack_ms`,
/// which absorbs the flush interval).
pub(crate) fn gaps(
    sessions: &[Session],
    from_ms: i64,
    to_ms: i64,
    slack_ms: i64,
) -> Vec<(i64, i64)> {
    let mut cover: Vec<(i64, i64)> = sessions
        .iter()
        .map(|s| (s.started_ms, s.until_ms + slack_ms))
        .collect();
    cover.sort();
    let mut out = Vec::new();
    let mut at = from_ms;
    for (a, b) in cover {
        if a > at && a.min(to_ms) - at > slack_ms {
            out.push((at, a.min(to_ms)));
        }
        at = at.max(b);
        if at >= to_ms {
            break;
        }
    }
    if to_ms - at > slack_ms {
        out.push((at, to_ms));
    }
    out
}

/// One of the most failing paths.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TopPath {
    pub(crate) path: Vec<u8>,
    pub(crate) errno: i32,
    pub(crate) count: u64,
}

pub(crate) fn top_paths(
    conn: &Connection,
    since_minute: i64,
    n: usize,
) -> Result<Vec<TopPath>, DbError> {
    let mut st = conn
        .prepare_cached(
            "SELECT p.path, b.errno, sum(b.count) AS n FROM buckets b JOIN paths p ON p.id = b.path_id
             WHERE b.minute >= ?1 GROUP BY b.path_id, b.errno ORDER BY n DESC, p.path LIMIT ?2",
        )
        .map_err(sql("preparing the top-paths query"))?;
    let rows = st
        .query_map(params![since_minute, n as i64], |r| {
            Ok(TopPath {
                path: r.get(0)?,
                errno: r.get(1)?,
                count: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })
        .map_err(sql("reading the top paths"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(sql("reading the top paths"))
}

/// Opens the database read-only, for `report` and `timeline`. Works without root when the
/// caller can read the file, and while `observer record` writes to it.
pub(crate) fn open_reader(db: &Path) -> Result<Connection, DbError> {
    let denied = || {
        DbError::Setup(format!(
            "cannot read {}: permission denied (the history is private to the user that records \
             it: run with sudo, or as that user, or read a copy)",
            show(db)
        ))
    };
    match std::fs::metadata(db) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(DbError::Setup(format!(
                "{} is not a regular file",
                show(db)
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DbError::Setup(format!(
                "no history at {}: `observer record` creates it (or pass --db PATH)",
                show(db)
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(denied()),
        Err(e) => return Err(DbError::Setup(format!("cannot read {}: {e}", show(db)))),
    }
    if let Err(e) = File::open(db) {
        return Err(if e.kind() == std::io::ErrorKind::PermissionDenied {
            denied()
        } else {
            DbError::Setup(format!("cannot read {}: {e}", show(db)))
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(db, flags).map_err(sql(format!("cannot open {}", show(db))))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql("setting the busy timeout"))?;
    let v: Result<i64, _> = conn.query_row("PRAGMA user_version", [], |r| r.get(0));
    let v = match v {
        Ok(v) => v,
        Err(e) => {
            // A WAL database needs its -shm file; a reader that may not create it can still read
            // a database no one is writing, as an immutable file.
            log::debug!("read-only open failed ({e}); retrying as immutable");
            let mut wal = db.as_os_str().to_owned();
            wal.push("-wal");
            if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                log::warn!(
                    "cannot share {} with its writer (no write access to its directory or -shm \
                     file): reading the main file only; the newest minutes may be missing",
                    show(db)
                );
            }
            let conn = open_immutable(db)?;
            return check_version(conn, db);
        }
    };
    if v == 0 {
        return Err(DbError::Setup(format!(
            "{} holds no observer history (empty or not written by observer)",
            show(db)
        )));
    }
    check_version(conn, db)
}

fn open_immutable(db: &Path) -> Result<Connection, DbError> {
    let mut uri = b"file:".to_vec();
    for &b in db.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            uri.push(b);
        } else {
            uri.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    uri.extend_from_slice(b"?immutable=1");
    let uri = String::from_utf8(uri).unwrap_or_default();
    Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(format!("cannot open {}", show(db))))
}

/// How long reading a history may take: a crafted database (a view with an endless recursion,
/// millions of rows) is stopped there, not waited for.
pub(crate) const READ_TIME_LIMIT: Duration = Duration::from_secs(10);
/// Distinct rows a report reads, at most (past it, the rest of the window is left out, and
/// said).
pub(crate) const MAX_ROWS: usize = 200_000;

/// A history may be any file a user hands over (`report --db ./copy`): its schema is not
/// trusted (no function of its views or triggers runs), no value may be larger than a path
/// can be, nothing attaches another database, and every query stops after
/// [`READ_TIME_LIMIT`].
fn distrust(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    use rusqlite::limits::Limit;
    conn.execute_batch("PRAGMA trusted_schema = OFF;")?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, 1 << 16)?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 1 << 16)?;
    conn.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, 64)?;
    conn.set_limit(Limit::SQLITE_LIMIT_COMPOUND_SELECT, 8)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 1)?;
    let deadline = std::time::Instant::now() + READ_TIME_LIMIT;
    conn.progress_handler(10_000, Some(move || std::time::Instant::now() > deadline))?;
    Ok(())
}

fn check_version(mut conn: Connection, db: &Path) -> Result<Connection, DbError> {
    distrust(&mut conn).map_err(sql(format!("cannot read {}", show(db))))?;
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql(format!("cannot read {}", show(db))))?;
    if v > SCHEMA_VERSION {
        return Err(DbError::Setup(format!(
            "{} was written by a newer observer (schema {v}; this one reads {SCHEMA_VERSION})",
            show(db)
        )));
    }
    if v < 1 {
        return Err(DbError::Setup(format!(
            "{} holds no observer history (empty or not written by observer)",
            show(db)
        )));
    }
    if v == 1 {
        // Schema 1 had no places: everything it holds was the host's. Temporary views (in the
        // connection's own temp database, so a read-only file is not written) give its
        // buckets the place column the queries read.
        conn.execute_batch(
            "CREATE TEMP VIEW buckets AS SELECT *, 0 AS place_id FROM main.buckets;
             CREATE TEMP VIEW places AS SELECT 0 AS id, '' AS runtime, '' AS container,
                 '' AS pod, '' AS unit, 0 AS private WHERE 0;
             CREATE TEMP VIEW opened AS SELECT 0 AS path_id, 0 AS place_id, 0 AS last_ms WHERE 0;",
        )
        .map_err(sql(format!("reading {} (schema 1)", show(db))))?;
    }
    Ok(conn)
}

/// Sums the loss counters of minutes `from..=to`.
pub(crate) fn minute_stats(conn: &Connection, from: i64, to: i64) -> Result<MinuteStats, DbError> {
    conn.query_row(
        "SELECT coalesce(sum(lost), 0), coalesce(sum(overflow), 0), coalesce(sum(dropped), 0)
         FROM minute_stats WHERE minute BETWEEN ?1 AND ?2",
        params![from, to],
        |r| {
            Ok(MinuteStats {
                lost: r.get::<_, i64>(0)?.max(0) as u64,
                overflow: r.get::<_, i64>(1)?.max(0) as u64,
                dropped: r.get::<_, i64>(2)?.max(0) as u64,
            })
        },
    )
    .map_err(sql("reading loss counters"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::bucket::Pending;
    use crate::history::writer::Writer;
    use crate::testutil::{TempDir, bkey, bval};

    fn minute(m: i64, count: u64) -> Minute {
        Minute {
            minute: m,
            count,
            first_ms: m * 60_000 + 1,
            last_ms: m * 60_000 + 2,
            syscalls: BTreeMap::new(),
            comms: BTreeSet::new(),
        }
    }

    #[test]
    fn episodes_split_on_quiet_gaps() {
        let ms = [minute(10, 1), minute(11, 2), minute(14, 3), minute(30, 4)];
        let e = episodes(&ms, 5);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].count, e[0].minutes), (6, 3));
        assert_eq!(e[0].first_ms, 600_001);
        assert_eq!(e[0].last_ms, 14 * 60_000 + 2);
        assert_eq!((e[1].count, e[1].minutes), (4, 1));
        assert_eq!(episodes(&ms, 0).len(), 3);
    }

    #[test]
    fn gaps_are_where_no_session_ran() {
        let s = |a, b| Session {
            started_ms: a,
            until_ms: b,
            ended: true,
            watched: None,
        };
        assert_eq!(gaps(&[s(0, 100)], 0, 100, 5), vec![]);
        assert_eq!(gaps(&[s(0, 40), s(60, 100)], 0, 100, 5), vec![(45, 60)]);
        assert_eq!(gaps(&[s(50, 60)], 0, 100, 5), vec![(0, 50), (65, 100)]);
        assert_eq!(gaps(&[], 0, 100, 5), vec![(0, 100)]);
        assert_eq!(gaps(&[s(0, 40), s(20, 100)], 0, 100, 5), vec![]);
    }

    #[test]
    fn window_failures_baseline_and_timeline_from_a_real_database() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let mut w = Writer::open(&db, "{\"comms\":[\"apache2\"]}", 0).unwrap();
        let mut p = Pending::new(1000);
        let min = 60_000;
        // /always fails before and in the window; /new only in it; /gone only before.
        p.add(&bkey("/always", 2, Syscall::Openat), bval(5, 10 * min));
        p.add(&bkey("/gone", 2, Syscall::Openat), bval(1, 10 * min));
        p.add(&bkey("/always", 2, Syscall::Openat), bval(2, 100 * min));
        p.add(
            &bkey("/always", 2, Syscall::Newfstatat),
            bval(3, 101 * min + 5),
        );
        p.add(&bkey("/new", 13, Syscall::Openat), bval(7, 102 * min));
        p.add_stats(
            101,
            MinuteStats {
                lost: 4,
                overflow: 1,
                dropped: 0,
            },
        );
        w.flush(&p, &[], 103 * min).unwrap();
        let r = open_reader(&db).unwrap();
        let f = failures(&r, 100, 110).unwrap();
        assert_eq!(f.len(), 2);
        let always = f.iter().find(|f| f.path == b"/always"[..]).unwrap();
        assert_eq!(always.count, 5);
        assert_eq!(always.syscalls[&Syscall::Openat], 2);
        assert_eq!(always.syscalls[&Syscall::Newfstatat], 3);
        assert_eq!(always.first_seen, time_of_ms(100 * min));
        assert_eq!(always.last_seen, time_of_ms(101 * min + 5));
        assert_eq!(always.creds, BTreeSet::from([(33, 33)]));
        assert_eq!(always.pid_count, 1);
        let base = baseline(&r, 100, 110).unwrap();
        assert_eq!(
            base,
            BTreeSet::from([(Bytes::from_static(b"/always"), 2, Place::default())])
        );
        assert_eq!(minute_stats(&r, 100, 110).unwrap().lost, 4);
        let t = timeline(&r, b"/always", 0, 200).unwrap();
        let m: Vec<(i64, u64)> = t[&2].iter().map(|m| (m.minute, m.count)).collect();
        assert_eq!(m, vec![(10, 5), (100, 2), (101, 3)]);
        assert!(timeline(&r, b"/nope", 0, 200).unwrap().is_empty());
        assert_eq!(
            similar_paths(&r, b"/elsewhere/new", 5).unwrap(),
            vec![b"/new".to_vec()]
        );
        let s = sessions(&r).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].until_ms, 103 * min);
        assert!(!s[0].ended);
    }

    #[test]
    fn readers_see_committed_data_while_the_writer_is_open_and_explain_what_is_missing() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let e = open_reader(&db).err().unwrap().to_string();
        assert!(
            e.contains("no history at") && e.contains("observer record"),
            "{e}"
        );
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let mut p = Pending::new(100);
        p.add(&bkey("/x", 2, Syscall::Openat), bval(3, 1_000));
        w.flush(&p, &[], 2_000).unwrap();
        let r = open_reader(&db).unwrap();
        assert_eq!(top_paths(&r, 0, 5).unwrap()[0].count, 3);
        let junk = d.path().join("junk.db");
        std::fs::write(&junk, b"").unwrap();
        let e = open_reader(&junk).err().unwrap().to_string();
        assert!(e.contains("no observer history"), "{e}");
    }

    /// The tables observer 0.1 wrote (schema 1: no places).
    const SCHEMA_1: &str = "
        CREATE TABLE paths (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE);
        CREATE TABLE comms (id INTEGER PRIMARY KEY, comm TEXT NOT NULL UNIQUE);
        CREATE TABLE buckets (path_id INTEGER NOT NULL, errno INTEGER NOT NULL,
            minute INTEGER NOT NULL, syscall TEXT NOT NULL, comm_id INTEGER NOT NULL,
            uid INTEGER NOT NULL, gid INTEGER NOT NULL, count INTEGER NOT NULL,
            first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
            open_flags INTEGER NOT NULL DEFAULT 0, status INTEGER NOT NULL DEFAULT 0,
            pid INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (path_id, errno, minute, syscall, comm_id, uid, gid)) WITHOUT ROWID;
        CREATE INDEX buckets_by_minute ON buckets (minute);
        CREATE TABLE minute_stats (minute INTEGER PRIMARY KEY, lost INTEGER NOT NULL DEFAULT 0,
            overflow INTEGER NOT NULL DEFAULT 0, dropped INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
        CREATE TABLE sessions (id INTEGER PRIMARY KEY, started_ms INTEGER NOT NULL,
            last_flush_ms INTEGER NOT NULL, ended_ms INTEGER, pid INTEGER NOT NULL,
            version TEXT NOT NULL, filter TEXT NOT NULL);
        INSERT INTO paths VALUES (1, CAST('/var/www/old.php' AS BLOB));
        INSERT INTO comms VALUES (1, 'apache2');
        INSERT INTO buckets VALUES (1, 2, 10, 'openat', 1, 33, 33, 4, 600000, 600500, 0, 0, 7);
        INSERT INTO buckets VALUES (1, 2, 100, 'openat', 1, 33, 33, 1, 6000000, 6000000, 0, 0, 7);
        INSERT INTO sessions VALUES (1, 0, 6000000, 6000001, 7, '0.1.0', '{}');
        PRAGMA user_version = 1;";

    #[test]
    fn a_schema_1_history_is_the_hosts_and_a_recorder_upgrades_it_in_place() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch(SCHEMA_1)
            .unwrap();
        let check = |r: &Connection| {
            let f = failures(r, 100, 110).unwrap();
            assert_eq!(f.len(), 1);
            assert_eq!((f[0].count, f[0].place.is_host()), (1, true));
            let base = baseline(r, 100, 110).unwrap();
            assert_eq!(
                base,
                BTreeSet::from([(Bytes::from_static(b"/var/www/old.php"), 2, Place::default())])
            );
            assert_eq!(
                timeline(r, b"/var/www/old.php", 0, 150).unwrap()[&2].len(),
                2
            );
        };
        let r = open_reader(&db).unwrap();
        check(&r);
        drop(r);
        let version = |c: &Connection| -> i64 {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        // Reading did not write.
        assert_eq!(version(&Connection::open(&db).unwrap()), 1);
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let mut p = Pending::new(200);
        let mut k = (*bkey("/var/www/old.php", 2, Syscall::Openat)).clone();
        k.place.unit = Some("apache2.service".into());
        p.add(&std::sync::Arc::new(k), bval(3, 200 * 60_000));
        w.flush(&p, &[], 200 * 60_000 + 1).unwrap();
        let r = open_reader(&db).unwrap();
        assert_eq!(version(&r), 2);
        check(&r);
        let now = failures(&r, 200, 200).unwrap();
        assert_eq!(now[0].place.unit.as_deref(), Some("apache2.service"));
        assert_eq!(now[0].count, 3);
    }
}
