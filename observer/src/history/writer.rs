//! Stage 6, `observer record`'s connection, the only writer: one transaction per flush of the
//! pending per-minute buckets, retention and the size cap, the session's own row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};

use super::bucket::Pending;
use super::reader::{TopPath, top_paths};
use super::schema::{DbError, LockFile, ensure_dir, migrate, prepare_files, show, sql};
use crate::opened::OpenedFile;
use crate::place::Place;

/// The write-ahead log is truncated to this size after checkpoints.
const WAL_LIMIT: i64 = 4 << 20;

/// What a flush wrote.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Flushed {
    pub(crate) rows: usize,
    pub(crate) failures: u64,
    pub(crate) took: Duration,
}

/// What retention and the size cap removed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Trimmed {
    pub(crate) expired_rows: usize,
    pub(crate) capped_rows: usize,
    /// Size in use after trimming, bytes.
    pub(crate) size: u64,
    /// The size cap could not be met even with only the newest hour left.
    pub(crate) over_cap: bool,
}

/// `observer record`'s connection: the only writer.
pub(crate) struct Writer {
    conn: Connection,
    path: PathBuf,
    _lock: LockFile,
    session: i64,
    path_ids: HashMap<Bytes, i64>,
    comm_ids: HashMap<String, i64>,
    place_ids: HashMap<Place, i64>,
}

/// Paths whose ids are remembered between flushes, at most.
const PATH_ID_CACHE: usize = 100_000;
/// Process names whose ids are remembered, at most.
const COMM_ID_CACHE: usize = 10_000;

impl Writer {
    /// Opens (creating if needed) the database at `db` for writing, after taking its lock.
    /// `filter` is the JSON of what this session watches.
    pub(crate) fn open(db: &Path, filter: &str, now_ms: i64) -> Result<Writer, DbError> {
        ensure_dir(db)?;
        let lock = LockFile::acquire(db)?;
        prepare_files(db)?;
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(sql(format!(
            "cannot open the history database {}",
            show(db)
        )))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sql("setting the busy timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql(format!("{} is not a usable SQLite database", show(db))))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Setup(format!(
                "{}: cannot switch to WAL mode (got {mode})",
                show(db)
            )));
        }
        // FULL: each flush is on disk when it commits (one fsync per flush interval), so even a
        // power loss loses at most one interval.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA journal_size_limit = {WAL_LIMIT};"
        ))
        .map_err(sql("setting pragmas"))?;
        migrate(&conn, db)?;
        // A crash left sessions open: they end where their last flush did.
        conn.execute(
            "UPDATE sessions SET ended_ms = last_flush_ms WHERE ended_ms IS NULL",
            [],
        )
        .map_err(sql("closing crashed sessions"))?;
        conn.execute(
            "INSERT INTO sessions (started_ms, last_flush_ms, pid, version, filter)
             VALUES (?1, ?1, ?2, ?3, ?4)",
            params![
                now_ms,
                std::process::id(),
                env!("CARGO_PKG_VERSION"),
                filter
            ],
        )
        .map_err(sql("starting a session"))?;
        let session = conn.last_insert_rowid();
        Ok(Writer {
            conn,
            path: db.to_path_buf(),
            _lock: lock,
            session,
            path_ids: HashMap::new(),
            comm_ids: HashMap::new(),
            place_ids: HashMap::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records a change of what this session watches (a reload changed the filter).
    pub(crate) fn set_filter(&mut self, filter: &str) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE sessions SET filter = ?1 WHERE id = ?2",
                params![filter, self.session],
            )
            .map_err(sql("updating the session"))?;
        Ok(())
    }

    /// Writes everything pending in one transaction. On error nothing is written and `pending`
    /// is left for the next try.
    pub(crate) fn flush(
        &mut self,
        pending: &Pending,
        opened: &[OpenedFile],
        now_ms: i64,
    ) -> Result<Flushed, DbError> {
        let t0 = Instant::now();
        // Ids assigned in this transaction: remembered only once it commits.
        let mut new_paths: HashMap<Bytes, i64> = HashMap::new();
        let mut new_comms: HashMap<String, i64> = HashMap::new();
        let mut new_places: HashMap<Place, i64> = HashMap::new();
        let rows = pending.buckets();
        let tx = self
            .conn
            .transaction()
            .map_err(sql("starting a transaction"))?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO buckets (path_id, errno, minute, syscall, comm_id, uid, gid,
                         place_id, count, first_ms, last_ms, open_flags, status, pid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT (path_id, errno, minute, syscall, comm_id, uid, gid, place_id)
                     DO UPDATE SET
                         count = count + excluded.count,
                         first_ms = min(first_ms, excluded.first_ms),
                         last_ms = max(last_ms, excluded.last_ms),
                         open_flags = open_flags | excluded.open_flags,
                         status = status | excluded.status,
                         pid = excluded.pid",
                )
                .map_err(sql("preparing the bucket upsert"))?;
            for (k, minute, v) in &rows {
                let path_id = id_of(&self.path_ids, &mut new_paths, &k.path, || {
                    intern(&tx, "paths", "path", &k.path[..])
                })?;
                let comm_id = id_of(&self.comm_ids, &mut new_comms, &k.comm, || {
                    intern(&tx, "comms", "comm", &k.comm)
                })?;
                let place_id = place_id(&self.place_ids, &mut new_places, &tx, &k.place)?;
                upsert
                    .execute(params![
                        path_id,
                        k.errno,
                        minute,
                        k.syscall.name(),
                        comm_id,
                        k.uid,
                        k.gid,
                        place_id,
                        i64::try_from(v.count).unwrap_or(i64::MAX),
                        v.first_ms,
                        v.last_ms,
                        v.open_flags as i64,
                        v.status,
                        v.pid,
                    ])
                    .map_err(sql("writing failures"))?;
            }
            let mut read = tx
                .prepare_cached(
                    "INSERT INTO opened (path_id, place_id, last_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (path_id, place_id) DO UPDATE SET last_ms = excluded.last_ms",
                )
                .map_err(sql("preparing the files-read upsert"))?;
            for o in opened {
                let path_id = id_of(&self.path_ids, &mut new_paths, &o.path, || {
                    intern(&tx, "paths", "path", &o.path[..])
                })?;
                let place_id = place_id(&self.place_ids, &mut new_places, &tx, &o.place)?;
                read.execute(params![path_id, place_id, now_ms])
                    .map_err(sql("writing the files read"))?;
            }
            let mut stats = tx
                .prepare_cached(
                    "INSERT INTO minute_stats (minute, lost, overflow, dropped) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (minute) DO UPDATE SET lost = lost + excluded.lost,
                         overflow = overflow + excluded.overflow, dropped = dropped + excluded.dropped",
                )
                .map_err(sql("preparing the stats upsert"))?;
            for (minute, s) in &pending.stats {
                stats
                    .execute(params![
                        minute,
                        s.lost as i64,
                        s.overflow as i64,
                        s.dropped as i64
                    ])
                    .map_err(sql("writing loss counters"))?;
            }
            tx.execute(
                "UPDATE sessions SET last_flush_ms = ?1 WHERE id = ?2",
                params![now_ms, self.session],
            )
            .map_err(sql("updating the session"))?;
        }
        tx.commit().map_err(sql("committing"))?;
        if self.path_ids.len() + new_paths.len() > PATH_ID_CACHE {
            self.path_ids.clear();
        }
        self.path_ids.extend(new_paths);
        if self.comm_ids.len() + new_comms.len() > COMM_ID_CACHE {
            self.comm_ids.clear();
        }
        self.comm_ids.extend(new_comms);
        if self.place_ids.len() + new_places.len() > COMM_ID_CACHE {
            self.place_ids.clear();
        }
        self.place_ids.extend(new_places);
        Ok(Flushed {
            rows: rows.len(),
            failures: pending.failures(),
            took: t0.elapsed(),
        })
    }

    /// Marks the session ended (a clean stop).
    pub(crate) fn close(&mut self, now_ms: i64) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE sessions SET ended_ms = ?1, last_flush_ms = max(last_flush_ms, ?1) WHERE id = ?2",
                params![now_ms, self.session],
            )
            .map_err(sql("closing the session"))?;
        Ok(())
    }

    /// Bytes in use: pages that hold data (free pages are given back by incremental vacuum).
    pub(crate) fn used_size(&self) -> Result<u64, DbError> {
        used_size(&self.conn)
    }

    /// Deletes minutes older than `retention`, then the oldest hours while the database is larger
    /// than `max_size`, then gives freed pages back to the file system.
    pub(crate) fn trim(
        &mut self,
        retention: Duration,
        max_size: u64,
        now_ms: i64,
    ) -> Result<Trimmed, DbError> {
        let mut t = Trimmed::default();
        let cutoff_ms = now_ms - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
        let cutoff = super::bucket::minute_of(cutoff_ms);
        {
            let tx = self
                .conn
                .transaction()
                .map_err(sql("starting a transaction"))?;
            t.expired_rows = delete_before(&tx, cutoff)?;
            tx.execute(
                "DELETE FROM sessions WHERE id != ?1 AND coalesce(ended_ms, last_flush_ms) < ?2",
                params![self.session, cutoff_ms],
            )
            .map_err(sql("expiring sessions"))?;
            tx.commit().map_err(sql("committing"))?;
        }
        let mut size = used_size(&self.conn)?;
        while size > max_size {
            let range: Option<(i64, i64)> = self
                .conn
                .query_row("SELECT min(minute), max(minute) FROM buckets", [], |r| {
                    Ok(
                        match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                            (Some(a), Some(b)) => Some((a, b)),
                            _ => None,
                        },
                    )
                })
                .map_err(sql("reading the history's extent"))?;
            let Some((lo, hi)) = range else { break };
            if hi - lo < 60 {
                t.over_cap = true;
                break;
            }
            // The oldest hour, or a twentieth of the span when that is more.
            let upto = (lo + ((hi - lo) / 20).max(60)).min(hi - 59);
            let tx = self
                .conn
                .transaction()
                .map_err(sql("starting a transaction"))?;
            t.capped_rows += delete_before(&tx, upto)?;
            tx.commit().map_err(sql("committing"))?;
            self.conn
                .execute_batch("PRAGMA incremental_vacuum;")
                .map_err(sql("vacuuming"))?;
            size = used_size(&self.conn)?;
        }
        if t.expired_rows + t.capped_rows > 0 {
            // Deleted paths', names' and places' ids may be handed out again.
            self.path_ids.clear();
            self.comm_ids.clear();
            self.place_ids.clear();
            self.conn
                .execute_batch("PRAGMA incremental_vacuum;")
                .map_err(sql("vacuuming"))?;
            size = used_size(&self.conn)?;
        }
        t.size = size;
        Ok(t)
    }

    /// Top `n` (path, errno) by failures since `since_minute`: the `/metrics` path labels.
    pub(crate) fn top_paths(&self, since_minute: i64, n: usize) -> Result<Vec<TopPath>, DbError> {
        top_paths(&self.conn, since_minute, n)
    }

    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

fn delete_before(tx: &Transaction, minute: i64) -> Result<usize, DbError> {
    let n = tx
        .execute("DELETE FROM buckets WHERE minute < ?1", [minute])
        .map_err(sql("deleting old failures"))?;
    tx.execute("DELETE FROM minute_stats WHERE minute < ?1", [minute])
        .map_err(sql("deleting old counters"))?;
    let read = tx
        .execute(
            "DELETE FROM opened WHERE last_ms < ?1",
            [minute.saturating_mul(60_000)],
        )
        .map_err(sql("deleting old files read"))?;
    if n > 0 || read > 0 {
        tx.execute(
            "DELETE FROM paths WHERE NOT EXISTS (SELECT 1 FROM buckets WHERE path_id = paths.id)
               AND NOT EXISTS (SELECT 1 FROM opened WHERE path_id = paths.id)",
            [],
        )
        .map_err(sql("deleting unused paths"))?;
        // Names and places no row refers to any more (one scan each, not one per name).
        tx.execute(
            "DELETE FROM comms WHERE id NOT IN (SELECT DISTINCT comm_id FROM buckets)",
            [],
        )
        .map_err(sql("deleting unused process names"))?;
        tx.execute(
            "DELETE FROM places WHERE id NOT IN (SELECT DISTINCT place_id FROM buckets)
               AND id NOT IN (SELECT place_id FROM opened)",
            [],
        )
        .map_err(sql("deleting unused places"))?;
    }
    Ok(n)
}

/// The id of `key`: remembered from earlier flushes (`known`), made earlier in this flush
/// (`new`), or made now by `make` and remembered in `new`.
fn id_of<K: std::hash::Hash + Eq + Clone>(
    known: &HashMap<K, i64>,
    new: &mut HashMap<K, i64>,
    key: &K,
    make: impl FnOnce() -> Result<i64, DbError>,
) -> Result<i64, DbError> {
    if let Some(&id) = known.get(key).or(new.get(key)) {
        return Ok(id);
    }
    let id = make()?;
    new.insert(key.clone(), id);
    Ok(id)
}

/// The id of `place`: 0 for the host (never stored), else as [`id_of`].
fn place_id(
    known: &HashMap<Place, i64>,
    new: &mut HashMap<Place, i64>,
    tx: &Transaction,
    place: &Place,
) -> Result<i64, DbError> {
    if place.is_host() {
        return Ok(0);
    }
    id_of(known, new, place, || intern_place(tx, place))
}

/// The id of `value` in `table` (`paths` or `comms`), inserting it when new.
fn intern<T: rusqlite::ToSql + ?Sized>(
    tx: &Transaction,
    table: &str,
    column: &str,
    value: &T,
) -> Result<i64, DbError> {
    let id: Option<i64> = tx
        .prepare_cached(&format!("SELECT id FROM {table} WHERE {column} = ?1"))
        .and_then(|mut s| s.query_row([value], |r| r.get(0)).optional())
        .map_err(sql(format!("reading {table}")))?;
    if let Some(id) = id {
        return Ok(id);
    }
    tx.prepare_cached(&format!("INSERT INTO {table} ({column}) VALUES (?1)"))
        .and_then(|mut s| s.execute([value]))
        .map_err(sql(format!("writing {table}")))?;
    Ok(tx.last_insert_rowid())
}

/// The id of `place` in `places`, inserting it when new.
fn intern_place(tx: &Transaction, place: &Place) -> Result<i64, DbError> {
    let c = place.container.as_ref();
    let fields = (
        c.map_or("", |c| c.runtime.as_str()),
        c.map_or("", |c| c.id.as_str()),
        c.and_then(|c| c.pod.as_deref()).unwrap_or(""),
        place.unit.as_deref().unwrap_or(""),
        i64::from(place.private),
    );
    let id: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM places WHERE runtime = ?1 AND container = ?2 AND pod = ?3 AND unit = ?4
             AND private = ?5",
        )
        .and_then(|mut s| {
            s.query_row(
                params![fields.0, fields.1, fields.2, fields.3, fields.4],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(sql("reading places"))?;
    if let Some(id) = id {
        return Ok(id);
    }
    tx.prepare_cached(
        "INSERT INTO places (runtime, container, pod, unit, private) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![fields.0, fields.1, fields.2, fields.3, fields.4]))
    .map_err(sql("writing places"))?;
    Ok(tx.last_insert_rowid())
}

fn used_size(conn: &Connection) -> Result<u64, DbError> {
    let q = |p: &str| -> Result<i64, DbError> {
        conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
            .map_err(sql(format!("reading {p}")))
    };
    let pages = q("page_count")? - q("freelist_count")?;
    Ok((pages.max(0) as u64) * (q("page_size")?.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::bucket::{BucketKey, MinuteStats};
    use crate::history::reader::{minute_stats, open_reader};
    use crate::testutil::{TempDir, bkey, bval};
    use observer_common::Syscall;
    use std::sync::Arc;

    fn count_rows(w: &Writer) -> i64 {
        w.conn()
            .query_row("SELECT coalesce(sum(count), 0) FROM buckets", [], |r| {
                r.get(0)
            })
            .unwrap()
    }

    #[test]
    fn flushes_add_up_per_minute_and_paths_are_stored_once() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let mut p = Pending::new(100);
        let k = bkey("/x", 2, Syscall::Openat);
        p.add(&k, bval(3, 1_000));
        p.add(&bkey("/x", 2, Syscall::Newfstatat), bval(2, 1_000));
        let r = w.flush(&p, &[], 2_000).unwrap();
        assert_eq!((r.rows, r.failures), (2, 5));
        p.clear();
        p.add(&k, bval(4, 5_000));
        w.flush(&p, &[], 6_000).unwrap();
        assert_eq!(count_rows(&w), 9);
        let (rows, paths): (i64, i64) = w
            .conn()
            .query_row(
                "SELECT (SELECT count(*) FROM buckets), (SELECT count(*) FROM paths)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((rows, paths), (2, 1));
        let (first, last): (i64, i64) = w
            .conn()
            .query_row(
                "SELECT first_ms, last_ms FROM buckets WHERE syscall = 'openat'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((first, last), (1_000, 5_000));
        // Non-UTF-8 bytes survive.
        p.clear();
        let odd = Arc::new(BucketKey {
            path: Bytes::from_static(b"/\xff\n"),
            ..(*k).clone()
        });
        p.add(&odd, bval(1, 1_000));
        w.flush(&p, &[], 7_000).unwrap();
        let tp = w.top_paths(0, 10).unwrap();
        assert_eq!(tp[0].count, 9);
        assert!(tp.iter().any(|t| t.path == [b'/', 0xff, b'\n']));
    }

    #[test]
    fn a_failed_flush_writes_nothing_and_the_next_one_writes_it_all() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let mut p = Pending::new(100_000);
        // Make the database "full": no more pages than it has now.
        let pages: i64 = w
            .conn()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        w.conn()
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .unwrap();
        for i in 0..2000 {
            p.add(
                &bkey(
                    &format!("/a/long/enough/path/to/fill/pages/{i}"),
                    2,
                    Syscall::Openat,
                ),
                bval(1, 1_000),
            );
        }
        let e = w.flush(&p, &[], 2_000).unwrap_err();
        assert!(e.is_full(), "{e}");
        assert_eq!(count_rows(&w), 0);
        w.conn()
            .query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(()))
            .unwrap();
        w.flush(&p, &[], 3_000).unwrap();
        assert_eq!(count_rows(&w), 2000);
    }

    #[test]
    fn retention_deletes_old_minutes_and_their_paths() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let mut p = Pending::new(100);
        let day = 86_400_000;
        p.add(&bkey("/old", 2, Syscall::Openat), bval(1, 0));
        p.add(&bkey("/new", 2, Syscall::Openat), bval(2, 20 * day));
        p.add_stats(
            0,
            MinuteStats {
                lost: 3,
                ..Default::default()
            },
        );
        w.flush(&p, &[], 20 * day).unwrap();
        let t = w
            .trim(Duration::from_secs(14 * 86_400), u64::MAX, 20 * day)
            .unwrap();
        assert_eq!(t.expired_rows, 1);
        assert_eq!(count_rows(&w), 2);
        let paths: i64 = w
            .conn()
            .query_row("SELECT count(*) FROM paths", [], |r| r.get(0))
            .unwrap();
        assert_eq!(paths, 1);
        assert_eq!(minute_stats(w.conn(), 0, i64::MAX).unwrap().lost, 0);
        // The writer's path cache must not hand out the deleted id.
        p.clear();
        p.add(&bkey("/old", 2, Syscall::Openat), bval(5, 20 * day));
        w.flush(&p, &[], 20 * day).unwrap();
        let tp = w.top_paths(0, 10).unwrap();
        assert_eq!(tp.len(), 2);
        assert!(tp.iter().any(|t| t.path == b"/old" && t.count == 5));
    }

    #[test]
    fn retention_collects_process_names_no_row_uses() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let day = 86_400_000;
        let mut p = Pending::new(1000);
        for i in 0..50 {
            let mut k = (*bkey("/old", 2, Syscall::Openat)).clone();
            k.comm = format!("worker-{i}");
            p.add(&Arc::new(k), bval(1, 0));
        }
        p.add(&bkey("/new", 2, Syscall::Openat), bval(2, 20 * day));
        w.flush(&p, &[], 20 * day).unwrap();
        let comms = |w: &Writer| -> i64 {
            w.conn()
                .query_row("SELECT count(*) FROM comms", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(comms(&w), 51);
        w.trim(Duration::from_secs(14 * 86_400), u64::MAX, 20 * day)
            .unwrap();
        assert_eq!(comms(&w), 1, "only apache2 (of /new) is left");
        // The writer's name cache must not hand out a deleted id.
        p.clear();
        let mut k = (*bkey("/later", 2, Syscall::Openat)).clone();
        k.comm = "worker-3".into();
        p.add(&Arc::new(k), bval(1, 20 * day));
        w.flush(&p, &[], 20 * day).unwrap();
        let named: i64 = w
            .conn()
            .query_row(
                "SELECT count(*) FROM buckets b JOIN comms c ON c.id = b.comm_id
                 WHERE c.comm = 'worker-3'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(named, 1);
    }

    #[test]
    fn the_size_cap_deletes_the_oldest_hours_first() {
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        let hour = 3_600_000;
        for h in 0..48 {
            let mut p = Pending::new(100_000);
            for i in 0..200 {
                p.add(
                    &bkey(
                        &format!("/srv/www/site/some/deeper/path/file-{i}.php"),
                        2,
                        Syscall::Newfstatat,
                    ),
                    bval(1, h * hour),
                );
            }
            w.flush(&p, &[], h * hour).unwrap();
        }
        let before = w.used_size().unwrap();
        let cap = before / 2;
        let t = w
            .trim(Duration::from_secs(365 * 86_400), cap, 48 * hour)
            .unwrap();
        assert!(t.size <= cap, "{} > {cap}", t.size);
        assert!(t.capped_rows > 0 && !t.over_cap);
        let oldest: i64 = w
            .conn()
            .query_row("SELECT min(minute) FROM buckets", [], |r| r.get(0))
            .unwrap();
        assert!(oldest > 0, "the oldest hours went first");
        let newest: i64 = w
            .conn()
            .query_row("SELECT max(minute) FROM buckets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(newest, 47 * 60, "the newest hour stays");
        let file = std::fs::metadata(&db).unwrap().len();
        assert!(file <= before, "freed pages go back to the file system");
    }

    /// Figures for the documentation, not a check:
    /// `cargo test --release -p observer --lib measure_ -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; prints figures"]
    fn measure_flush_of_200k_new_paths() {
        // The recorder's pending cap: every bucket a path the database has never seen.
        let d = TempDir::new();
        let db = d.path().join("h.db");
        let mut w = Writer::open(&db, "{}", 0).unwrap();
        for round in 0..2 {
            let mut p = Pending::new(200_000);
            for i in 0..200_000 {
                let path = format!("/var/www/html/r{round}/no-such-file-{i}.php");
                p.add(&bkey(&path, 2, Syscall::Openat), bval(1, 30_000));
            }
            let f = w.flush(&p, &[], 59_000).unwrap();
            assert_eq!(f.rows, 200_000);
            println!(
                "flush of 200,000 new paths (round {round}, {} paths already stored): {:.2?}",
                round * 200_000,
                f.took
            );
        }
    }

    #[test]
    #[ignore = "a measurement; prints figures"]
    fn measure_size_and_flush_time() {
        for (paths, minutes) in [(100usize, 60i64), (1000, 60), (1000, 24 * 60)] {
            let d = TempDir::new();
            let db = d.path().join("h.db");
            let mut w = Writer::open(&db, "{}", 0).unwrap();
            let keys: Vec<_> = (0..paths)
                .flat_map(|i| {
                    let p = format!(
                        "/var/www/html/wp-content/plugins/some-plugin/includes/file-{i}.php"
                    );
                    [
                        bkey(&p, 2, Syscall::Openat),
                        bkey(&p, 2, Syscall::Newfstatat),
                    ]
                })
                .collect();
            let per_row = 1_000_000 / (keys.len() as u64 * minutes as u64).max(1);
            let mut flush_total = Duration::ZERO;
            let mut flush_max = Duration::ZERO;
            let mut failures = 0u64;
            for m in 0..minutes {
                let mut p = Pending::new(1_000_000);
                for k in &keys {
                    p.add(k, bval(per_row.max(1), m * 60_000 + 30_000));
                }
                failures += p.failures();
                let f = w.flush(&p, &[], m * 60_000 + 59_000).unwrap();
                flush_total += f.took;
                flush_max = flush_max.max(f.took);
            }
            drop(w);
            let r = open_reader(&db).unwrap();
            let t0 = Instant::now();
            let last = minutes - 1;
            let f = crate::history::reader::failures(&r, last - 59, last).unwrap();
            let b = crate::history::reader::baseline(&r, last - 59, last).unwrap();
            let query = t0.elapsed();
            assert_eq!(f.len(), paths);
            assert_eq!(b.len(), if minutes > 60 { paths } else { 0 });
            let size = std::fs::metadata(&db).unwrap().len();
            let rows = keys.len() as i64 * minutes;
            println!(
                "{paths} paths x 2 syscalls x {minutes} min = {rows} rows, {failures} failures: \
                 {:.1} MiB ({:.0} B/row); flush of {} rows: mean {:.1?}, max {:.1?}; last hour's \
                 failures and baseline read in {query:.1?}",
                size as f64 / 1048576.0,
                size as f64 / rows as f64,
                keys.len(),
                flush_total / minutes as u32,
                flush_max
            );
        }
    }
}
