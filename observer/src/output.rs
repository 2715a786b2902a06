//! Stage 5: turning the store into what the operator reads: the final report in each format,
//! the live view, JSON lines, and the private output file.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::aggregate::{Clock, NewFailure, Store};
use crate::capture::Filter;
use crate::cli::Format;
use crate::model::{Failure, Totals};

/// Creates (or truncates) `path` with mode 0600: paths in a report can be sensitive.
pub fn create_private(path: &Path) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write --output {}", path.display()))?;
    // An existing file keeps its old mode through open(): tighten it.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    Ok(f)
}

pub struct Report {
    pub failures: Vec<Failure>,
    pub totals: Totals,
    pub filter: Filter,
    pub started: SystemTime,
    pub ended: SystemTime,
}

impl Report {
    pub fn build(store: &Store, clock: &Clock, filter: &Filter, started: SystemTime, ended: SystemTime) -> Report {
        let mut failures = store.failures(clock);
        failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.path.cmp(&b.path)));
        let totals = store.totals(&failures);
        Report { failures, totals, filter: filter.clone(), started, ended }
    }

    pub fn render(&self, format: Format, top: Option<usize>) -> String {
        let n = top.unwrap_or(usize::MAX);
        match format {
            Format::Json => {
                let paths: Vec<serde_json::Value> = self
                    .failures
                    .iter()
                    .take(n)
                    .enumerate()
                    .map(|(i, f)| {
                        serde_json::json!({
                            "rank": i + 1,
                            "path": f.path_lossy(),
                            "errno": crate::errno::name(f.errno),
                            "errno_code": f.errno,
                            "count": f.count,
                            "syscalls": f.syscalls.iter().map(|(s, c)| (s.name().to_string(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
                            "comms": f.comms,
                            "pids": f.pids,
                            "truncated": f.truncated,
                            "resolved": !f.unresolved,
                        })
                    })
                    .collect();
                let doc = serde_json::json!({
                    "version": 1,
                    "totals": {"failures": self.totals.failures, "distinct": self.totals.distinct, "lost": self.totals.lost, "overflow": self.totals.overflow},
                    "paths": paths,
                });
                format!("{doc:#}\n")
            }
            Format::Jsonl => format!(
                "{}\n",
                serde_json::json!({"event": "summary", "failures": self.totals.failures, "distinct": self.totals.distinct, "lost": self.totals.lost})
            ),
            Format::Table | Format::Live => {
                let mut s = format!(
                    "failures {}  distinct {}  lost {}\n",
                    self.totals.failures, self.totals.distinct, self.totals.lost
                );
                for f in self.failures.iter().take(n) {
                    s.push_str(&format!("{:>8} {:<8} {}\n", f.count, crate::errno::name(f.errno), f.path_lossy()));
                }
                s
            }
        }
    }
}

pub fn jsonl_line(n: &NewFailure) -> String {
    serde_json::json!({
        "event": "new_failure",
        "path": String::from_utf8_lossy(&n.info.path),
        "errno": crate::errno::name(n.info.errno),
        "syscall": n.info.syscall.name(),
        "comm": n.info.comm,
        "pid": n.info.tgid,
        "tid": n.info.tid,
        "uid": n.info.uid,
    })
    .to_string()
}

/// The refreshing terminal view.
pub struct Live;

impl Live {
    pub fn start() -> Live {
        Live
    }
    pub fn draw(&mut self, store: &Store, clock: &Clock, filter: &Filter, started: SystemTime, top: Option<usize>) {
        let r = Report::build(store, clock, filter, started, SystemTime::now());
        let mut out = std::io::stderr().lock();
        let _ = write!(out, "\x1b[H{}\x1b[J", r.render(Format::Table, top));
    }
    pub fn stop(self) {}
}
