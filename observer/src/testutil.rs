//! The unit tests' fixtures, one of each: a temporary tree, a ring-buffer record, a failure, a
//! history bucket, a hint environment, and golden files.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use observer_common::{AggKey, COMM_LEN, EventHeader};

use crate::capture::Sighting;
use crate::history::bucket::{BucketKey, BucketVal};
use crate::model::{Failure, Hint, RankContext, Syscall};
use crate::report::HintEnv;

/// 2024-05-01T12:00:00Z: the start of every test capture.
pub(crate) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_714_564_800)
}

/// The ranking context of a 10-minute ad-hoc capture from `t0`, with a 10 s warm-up.
pub(crate) fn rank_ctx() -> RankContext {
    RankContext {
        evidence: true,
        hints: true,
        window_start: t0(),
        now: t0() + Duration::from_secs(600),
        warmup_secs: 10,
        baseline: None,
    }
}

/// A directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "observer-report-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        TempDir(dir.canonicalize().expect("canonicalize temp dir"))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// The absolute path of `rel` inside the directory, as a string.
    pub(crate) fn abs(&self, rel: &str) -> String {
        self.0
            .join(rel)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    pub(crate) fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.0.join(rel)).expect("mkdir");
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir parent");
        }
        std::fs::write(p, text).expect("write");
    }

    pub(crate) fn chmod(&self, rel: &str, mode: u32) {
        std::fs::set_permissions(self.0.join(rel), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A failure of `path` with `errno`, first seen 1 s into the capture, by comm apache2, uid 0.
pub(crate) fn failure(path: &str, errno: i32, syscalls: &[(Syscall, u64)]) -> Failure {
    let syscalls: BTreeMap<Syscall, u64> = syscalls.iter().copied().collect();
    Failure {
        path: Bytes::copy_from_slice(path.as_bytes()),
        errno,
        count: syscalls.values().sum(),
        syscalls,
        open_flags: 0,
        first_seen: t0() + Duration::from_millis(1250),
        last_seen: t0() + Duration::from_millis(598_003),
        comms: BTreeSet::from(["apache2".to_string()]),
        creds: BTreeSet::from([(0, 0)]),
        pids: BTreeSet::from([4101]),
        pid_count: 1,
        truncated: false,
        unresolved: false,
        place: crate::place::Place::default(),
        view: crate::place::ViewRef::host(),
    }
}

/// Compares `actual` with `testdata/<name>`; `UPDATE_GOLDEN=1` rewrites the file instead.
pub(crate) fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/render/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir testdata");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nrun with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let exp: Vec<&str> = expected.split('\n').collect();
    let act: Vec<&str> = actual.split('\n').collect();
    let mut report = String::new();
    for i in 0..exp.len().max(act.len()) {
        let (e, a) = (exp.get(i), act.get(i));
        if e != a {
            report.push_str(&format!(
                "line {}:\n  expected: {:?}\n  actual:   {:?}\n",
                i + 1,
                e.copied().unwrap_or("<none>"),
                a.copied().unwrap_or("<none>")
            ));
        }
    }
    panic!(
        "golden file {} differs:\n{report}\nfull actual output:\n{actual}\n\
         (if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff)",
        path.display()
    );
}

/// Like `golden` for JSON, compared as values (key order does not matter).
pub(crate) fn golden_json(name: &str, actual: &serde_json::Value) {
    let text = serde_json::to_string_pretty(actual).expect("serialize") + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/render/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_none_or(|v| v != "1")
        && let Ok(expected) = std::fs::read_to_string(&path)
        && serde_json::from_str::<serde_json::Value>(&expected)
            .ok()
            .as_ref()
            == Some(actual)
    {
        return;
    }
    golden(name, &text);
}

/// A ring-buffer record as the kernel sends it: `path` failing with `errno` in `sys`, under key
/// hash `hash`, from the only thread of process `tgid`, named apache2, uid/gid 33, at 1 µs,
/// open flags O_CLOEXEC, its path absolute (`dfd` 0).
pub(crate) fn sighting(
    path: &[u8],
    tgid: u32,
    errno: u32,
    sys: Syscall,
    hash: u64,
    status: u32,
) -> Sighting {
    let mut comm = [0u8; COMM_LEN];
    comm[..7].copy_from_slice(b"apache2");
    Sighting {
        hdr: EventHeader {
            key: AggKey {
                path_hash: hash,
                tgid,
                errno,
                syscall: sys as u32,
                dfd: 0,
                dir_gen: 0,
                _pad: 0,
            },
            ts_ns: 1_000,
            flags: 0o2000000,
            aux: 0,
            cgroup_id: 1,
            tid: tgid,
            uid: 33,
            gid: 33,
            path_len: path.len() as u32,
            status,
            // Observer's own mount namespace, as the kernel reports it for a host process.
            mnt_ns: std::fs::metadata("/proc/self/ns/mnt").map_or(0, |m| {
                use std::os::unix::fs::MetadataExt;
                m.ino() as u32
            }),
            aux_gen: 0,
            _pad: 0,
            comm,
        },
        path: Bytes::copy_from_slice(path),
    }
}

/// A history key: `path` failing with `errno` in `syscall`, by apache2 as uid/gid 33.
pub(crate) fn bkey(path: &str, errno: i32, syscall: Syscall) -> Arc<BucketKey> {
    Arc::new(BucketKey {
        path: Bytes::copy_from_slice(path.as_bytes()),
        errno,
        syscall,
        comm: "apache2".into(),
        uid: 33,
        gid: 33,
        place: crate::place::Place::default(),
    })
}

/// A history bucket of `count` failures at `ms`, by pid 7.
pub(crate) fn bval(count: u64, ms: i64) -> BucketVal {
    BucketVal {
        count,
        first_ms: ms,
        last_ms: ms,
        open_flags: 0,
        status: 0,
        pid: 7,
    }
}

/// Hints on the host's `/`, with the dpkg database of `t` (empty unless the test writes one) and
/// no library directories.
pub(crate) fn hint_env(t: &TempDir) -> HintEnv {
    let mut env = HintEnv::new("/", t.path().join("dpkg-info"));
    env.lib_dirs.clear();
    env
}

/// The kinds of `h`, as JSON names them.
pub(crate) fn hint_kinds(h: &[Hint]) -> Vec<&str> {
    h.iter().map(|h| h.kind.as_str()).collect()
}

/// The hint of `kind` (its JSON name); panics with all of them when there is none.
pub(crate) fn find_hint<'a>(h: &'a [Hint], kind: &str) -> &'a Hint {
    h.iter()
        .find(|h| h.kind.as_str() == kind)
        .unwrap_or_else(|| panic!("no {kind} hint in {h:#?}"))
}
