//! Helpers for the report tests: temporary trees, fixed failures, golden files.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{Failure, Syscall};

/// 2024-05-01T12:00:00Z: the start of every test capture.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_714_564_800)
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
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

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The absolute path of `rel` inside the directory, as a string.
    pub fn abs(&self, rel: &str) -> String {
        self.0
            .join(rel)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.0.join(rel)).expect("mkdir");
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir parent");
        }
        std::fs::write(p, text).expect("write");
    }

    pub fn chmod(&self, rel: &str, mode: u32) {
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
pub fn failure(path: &str, errno: i32, syscalls: &[(Syscall, u64)]) -> Failure {
    let syscalls: BTreeMap<Syscall, u64> = syscalls.iter().copied().collect();
    Failure {
        path: path.as_bytes().to_vec(),
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
    }
}

/// Compares `actual` with `testdata/<name>`; `UPDATE_GOLDEN=1` rewrites the file instead.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/report/testdata")
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
pub fn golden_json(name: &str, actual: &serde_json::Value) {
    let text = serde_json::to_string_pretty(actual).expect("serialize") + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/report/testdata")
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
