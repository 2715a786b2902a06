//! Stage 6, the history database's shape and ownership: the schema ([`SCHEMA_DOC`]) and its
//! migration, the exclusive lock of the one writer, and the files' modes. [`super::writer`]
//! writes it; [`super::reader`] reads it back.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use thiserror::Error;

/// The schema this observer writes; it reads this one and version 1 (before places).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The schema, as Markdown for the documentation (the README carries it; a test checks).
#[cfg(test)]
pub(crate) const SCHEMA_DOC: &str = r#"### History database (schema version 2)

SQLite, WAL mode, one file (plus `-wal`/`-shm` while in use), mode 0600 in a 0700 directory.

| table | columns | what |
|-------|---------|------|
| `paths` | `id INTEGER PRIMARY KEY`, `path BLOB UNIQUE` | each failing path once, as raw bytes (names need not be UTF-8) |
| `comms` | `id INTEGER PRIMARY KEY`, `comm TEXT UNIQUE` | process names |
| `places` | `id INTEGER PRIMARY KEY`, `runtime`, `container`, `pod`, `unit`, `private` (unique together) | where processes ran: a container (`runtime` docker, containerd, crio, podman or kubernetes, its 64-hex `container` id, the Kubernetes `pod` uid), else a systemd `unit`; `private` 1 when their view of the filesystem was not the host's; id 0, never stored, is the host |
| `buckets` | `path_id`, `errno`, `minute`, `syscall`, `comm_id`, `uid`, `gid`, `place_id` (primary key, in that order), `count`, `first_ms`, `last_ms`, `open_flags`, `status`, `pid` | failing calls per minute; `minute` is Unix time / 60 (UTC), `first_ms`/`last_ms` Unix milliseconds, `syscall` the syscall's name, `status` bit 1 = path truncated, bit 2 = relative path not resolved, `pid` one process that failed (a sample) |
| `opened` | `path_id`, `place_id` (primary key), `last_ms` | the files watched processes read successfully (where `report` looks for the line that names a failing path), and when last reported |
| `minute_stats` | `minute PRIMARY KEY`, `lost`, `overflow`, `dropped` | failures the kernel could not deliver (ring buffer full), delivered one by one (kernel aggregate full), or observer dropped (memory full while the disk was) |
| `sessions` | `id`, `started_ms`, `last_flush_ms`, `ended_ms`, `pid`, `version`, `filter` | each run of `observer record`: what it watched and when; `ended_ms` is NULL while it runs (after a crash or `kill -9`, the next start sets it to the last flush, which tells how far the history reached) |

Counting is by delta: each flush adds the failures counted since the previous flush, so a
restart of observer never counts anything twice. Retention deletes whole minutes older than
`--retention`; the size cap deletes the oldest hours first. A database of schema version 1 (no
places: everything on the host) is read as it is, and upgraded when a recorder opens it."#;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS paths (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS comms (
    id INTEGER PRIMARY KEY,
    comm TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS buckets (
    path_id INTEGER NOT NULL,
    errno INTEGER NOT NULL,
    minute INTEGER NOT NULL,
    syscall TEXT NOT NULL,
    comm_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    count INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    open_flags INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL DEFAULT 0,
    place_id INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (path_id, errno, minute, syscall, comm_id, uid, gid, place_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS buckets_by_minute ON buckets (minute);
CREATE TABLE IF NOT EXISTS places (
    id INTEGER PRIMARY KEY,
    runtime TEXT NOT NULL DEFAULT '',
    container TEXT NOT NULL DEFAULT '',
    pod TEXT NOT NULL DEFAULT '',
    unit TEXT NOT NULL DEFAULT '',
    private INTEGER NOT NULL DEFAULT 0,
    UNIQUE (runtime, container, pod, unit, private)
);
CREATE TABLE IF NOT EXISTS opened (
    path_id INTEGER NOT NULL,
    place_id INTEGER NOT NULL DEFAULT 0,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (path_id, place_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minute_stats (
    minute INTEGER PRIMARY KEY,
    lost INTEGER NOT NULL DEFAULT 0,
    overflow INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    last_flush_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    filter TEXT NOT NULL
);
";

#[derive(Debug, Error)]
pub(crate) enum DbError {
    #[error(
        "another observer is already recording into {db}{holder}; stop it first (systemctl stop observer), or record into another --db"
    )]
    Locked { db: String, holder: String },
    #[error("{0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
}

impl DbError {
    /// The disk (or the database's own page limit) is full.
    pub(crate) fn is_full(&self) -> bool {
        match self {
            DbError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DiskFull)
            ),
            _ => false,
        }
    }
}

pub(super) fn sql(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> DbError {
    let context = context.into();
    move |source| DbError::Sqlite { context, source }
}

pub(super) fn show(p: &Path) -> String {
    p.display().to_string()
}

/// The exclusive lock next to the database: `<db>.lock`, holding the owner's pid.
pub(super) struct LockFile {
    _file: File,
}

pub(super) fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl LockFile {
    pub(super) fn acquire(db: &Path) -> Result<LockFile, DbError> {
        let path = lock_path(db);
        let mut f = crate::files::open_private(&path, false)
            .map_err(|e| DbError::Setup(format!("cannot create {}: {e}", show(&path))))?;
        let meta = f
            .metadata()
            .map_err(|e| DbError::Setup(format!("{}: {e}", show(&path))))?;
        if !meta.is_file() {
            return Err(DbError::Setup(format!(
                "{} is not a regular file",
                show(&path)
            )));
        }
        crate::files::check_owned(&path, &meta, "the lock file")
            .map_err(|e| DbError::Setup(format!("{e:#}")))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut s = String::new();
                let _ = f.read_to_string(&mut s);
                let holder = match s.trim().parse::<u32>() {
                    Ok(pid) => format!(" (pid {pid} holds {})", show(&path)),
                    Err(_) => format!(" ({} is locked)", show(&path)),
                };
                return Err(DbError::Locked {
                    db: show(db),
                    holder,
                });
            }
            return Err(DbError::Setup(format!(
                "cannot lock {}: {err}",
                show(&path)
            )));
        }
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = writeln!(f, "{}", std::process::id());
        let _ = f.flush();
        Ok(LockFile { _file: f })
    }
}

/// Creates the database's directory (0700) when missing.
/// The history's directory: created 0700 when missing; an existing one must be observer's
/// user's and writable by no one else (another user could swap the database or its lock).
pub(super) fn ensure_dir(db: &Path) -> Result<(), DbError> {
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::files::private_dir(dir).map_err(|e| {
        DbError::Setup(format!(
            "the history directory: {e:#} (or choose another --db)"
        ))
    })
}

/// Creates the database file (0600) when missing; tightens an existing file's mode to 0600 (paths
/// in it can be sensitive). SQLite gives its `-wal` and `-shm` files the database file's mode.
pub(super) fn prepare_files(db: &Path) -> Result<(), DbError> {
    let f = crate::files::open_private(db, false).map_err(|e| {
        DbError::Setup(format!(
            "cannot write the history database {}: {e}",
            show(db)
        ))
    })?;
    let meta = f
        .metadata()
        .map_err(|e| DbError::Setup(format!("{}: {e}", show(db))))?;
    if !meta.is_file() {
        return Err(DbError::Setup(format!(
            "{} is not a regular file",
            show(db)
        )));
    }
    // SAFETY: geteuid has no failure mode.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(DbError::Setup(format!(
            "refusing the history database {}: it belongs to uid {}, not to observer's user",
            show(db),
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        log::warn!(
            "{} was readable by others (mode {:o}): setting mode 0600",
            show(db),
            meta.permissions().mode() & 0o777
        );
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| DbError::Setup(format!("setting mode 0600 on {}: {e}", show(db))))?;
    }
    Ok(())
}

/// Creates or checks the schema.
pub(super) fn migrate(conn: &Connection, db: &Path) -> Result<(), DbError> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql(format!("reading {}", show(db))))?;
    if v > SCHEMA_VERSION {
        return Err(DbError::Setup(format!(
            "{} was written by a newer observer (schema {v}; this one knows {SCHEMA_VERSION})",
            show(db)
        )));
    }
    if v == 1 {
        // Version 1 had no places: its rows are the host's (place 0). The primary key changes,
        // so the buckets are copied into a new table, in one transaction.
        conn.execute_batch(&format!("BEGIN; {MIGRATE_1_2} COMMIT;"))
            .map_err(sql(format!("upgrading {} to schema 2", show(db))))?;
        log::info!("{} upgraded to schema version 2 (places)", show(db));
    } else if v < SCHEMA_VERSION {
        // auto_vacuum only takes effect before the first table is created.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(sql("setting auto_vacuum"))?;
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(sql(format!("creating the schema in {}", show(db))))?;
    }
    Ok(())
}

/// Schema 1 -> 2: a `places` table, and `place_id` in the buckets' primary key.
const MIGRATE_1_2: &str = "
CREATE TABLE places (
    id INTEGER PRIMARY KEY,
    runtime TEXT NOT NULL DEFAULT '',
    container TEXT NOT NULL DEFAULT '',
    pod TEXT NOT NULL DEFAULT '',
    unit TEXT NOT NULL DEFAULT '',
    private INTEGER NOT NULL DEFAULT 0,
    UNIQUE (runtime, container, pod, unit, private)
);
CREATE TABLE opened (
    path_id INTEGER NOT NULL,
    place_id INTEGER NOT NULL DEFAULT 0,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (path_id, place_id)
) WITHOUT ROWID;
CREATE TABLE buckets_v2 (
    path_id INTEGER NOT NULL,
    errno INTEGER NOT NULL,
    minute INTEGER NOT NULL,
    syscall TEXT NOT NULL,
    comm_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    count INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    open_flags INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL DEFAULT 0,
    place_id INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (path_id, errno, minute, syscall, comm_id, uid, gid, place_id)
) WITHOUT ROWID;
INSERT INTO buckets_v2 (path_id, errno, minute, syscall, comm_id, uid, gid, count, first_ms,
    last_ms, open_flags, status, pid, place_id)
    SELECT path_id, errno, minute, syscall, comm_id, uid, gid, count, first_ms, last_ms,
        open_flags, status, pid, 0 FROM buckets;
DROP TABLE buckets;
ALTER TABLE buckets_v2 RENAME TO buckets;
CREATE INDEX buckets_by_minute ON buckets (minute);
PRAGMA user_version = 2;
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::writer::Writer;
    use crate::testutil::TempDir;

    #[test]
    fn creates_private_files_and_refuses_a_second_writer() {
        let d = TempDir::new();
        let db = d.path().join("sub/h.db");
        let w = Writer::open(&db, "{}", 0).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.path().join("sub")), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&lock_path(&db)), 0o600);
        let e = Writer::open(&db, "{}", 0).err().unwrap();
        assert!(matches!(e, DbError::Locked { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("already recording") && msg.contains(&std::process::id().to_string()),
            "{msg}"
        );
        drop(w);
        Writer::open(&db, "{}", 0).expect("the lock goes with its holder");
    }
}
