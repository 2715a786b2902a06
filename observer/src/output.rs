//! Stage 5: turning the store into what the operator reads: the final report in each format,
//! the live view, JSON lines, and the private output file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::aggregate::{Clock, NewFailure, Store};
use crate::capture::Filter;
use crate::cli::Format;
use crate::model::{Failure, RankContext, Ranked, Totals};
use crate::report::{self, HintEnv, JsonMeta, TableOpts};

/// Failures first seen within this many seconds of the start count as "present from the start"
/// (they were failing before observer was started), not as new.
pub const WARMUP_SECS: u64 = 5;

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

/// Opens `path` for appending, creating it with mode 0600 (the `--jsonl` stream of a service:
/// a restart must not truncate what was written before).
pub fn append_private(path: &Path) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    Ok(f)
}

/// The selection, as the JSON report shows it.
pub fn filter_json(f: &Filter) -> Value {
    json!({
        "comms": f.effective_comms(),
        "pids": f.pids,
        "cgroups": f.cgroups.iter().map(|c| c.display().to_string()).collect::<Vec<_>>(),
        "all": f.all,
        "errnos": f.errnos.iter().map(|&e| crate::errno::name(e)).collect::<Vec<_>>(),
        "syscalls": f.syscalls.iter().map(|s| s.name()).collect::<Vec<_>>(),
    })
}

pub struct Report {
    pub ranked: Vec<Ranked>,
    pub totals: Totals,
    pub meta: JsonMeta,
    /// History mode: where the report comes from (the JSON document's `history` member).
    pub history: Option<Value>,
    /// History mode: lines printed above the table.
    pub preamble: Option<String>,
}

impl Report {
    /// Ranks what the store holds; hints are checked against the live filesystem now.
    pub fn build(
        store: &Store,
        clock: &Clock,
        env: &HintEnv,
        filter: &Filter,
        started: SystemTime,
        ended: SystemTime,
    ) -> Report {
        let failures = store.failures(clock);
        let totals = store.totals(&failures);
        let ctx = RankContext {
            window_start: started,
            now: ended,
            warmup_secs: WARMUP_SECS,
            baseline: None,
        };
        Report {
            ranked: report::rank(failures, &ctx, env),
            totals,
            meta: JsonMeta {
                started,
                ended,
                filter: filter_json(filter),
            },
            history: None,
            preamble: None,
        }
    }

    pub fn render(&self, format: Format, top: Option<usize>) -> String {
        match format {
            Format::Json => {
                let mut doc = report::json(&self.ranked, &self.totals, &self.meta);
                if let (Some(n), Some(paths)) = (top, doc["paths"].as_array_mut()) {
                    paths.truncate(n);
                }
                if let (Some(h), Some(obj)) = (&self.history, doc.as_object_mut()) {
                    obj.insert("history".into(), h.clone());
                }
                format!("{doc:#}\n")
            }
            Format::Jsonl => format!(
                "{}\n",
                json!({
                    "event": "summary",
                    "failures": self.totals.failures,
                    "distinct": self.totals.distinct,
                    "lost": self.totals.lost,
                    "overflow": self.totals.overflow,
                })
            ),
            Format::Table | Format::Live => {
                let table = report::table(&self.ranked, &self.totals, top, &TableOpts::default());
                match &self.preamble {
                    Some(p) => format!("{p}{table}"),
                    None => table,
                }
            }
        }
    }
}

/// A first sighting as a one-row failure (what `--format jsonl` streams).
pub fn first_sighting(n: &NewFailure) -> Failure {
    let i = &n.info;
    let mut pids = BTreeSet::new();
    pids.insert(i.tgid);
    Failure {
        path: i.path.clone(),
        errno: i.errno,
        count: 1,
        syscalls: BTreeMap::from([(i.syscall, 1)]),
        open_flags: if i.syscall.intent() == observer_common::Intent::Open {
            i.flags
        } else {
            0
        },
        first_seen: n.time,
        last_seen: n.time,
        comms: BTreeSet::from([i.comm.clone()]),
        creds: BTreeSet::from([(i.uid, i.gid)]),
        pids,
        pid_count: 1,
        truncated: i.truncated,
        unresolved: i.unresolved,
    }
}

pub fn jsonl_line(n: &NewFailure) -> String {
    report::jsonl_event(&first_sighting(n), n.info.tid).to_string()
}

/// The refreshing terminal view: the alternate screen, redrawn in place (no clearing, so no
/// flicker), restored on exit so the final report lands on the normal screen.
pub struct Live {
    started: std::time::Instant,
}

impl Live {
    pub fn start() -> Live {
        let mut out = std::io::stdout().lock();
        // Alternate screen, cursor hidden.
        let _ = write!(out, "\x1b[?1049h\x1b[?25l");
        let _ = out.flush();
        Live {
            started: std::time::Instant::now(),
        }
    }

    pub fn draw(&mut self, report: &Report, top: Option<usize>, header: &str) {
        let (w, h) = terminal_size();
        let frame = report::live_frame(
            &report.ranked,
            &report.totals,
            top,
            w,
            h,
            self.started.elapsed(),
            header,
        );
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(frame.as_bytes()).and_then(|()| out.flush());
    }

    pub fn stop(self) {}
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

/// (columns, rows) of the terminal on stdout; 80x24 when unknown.
pub fn terminal_size() -> (usize, usize) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col as usize, ws.ws_row as usize)
    } else {
        (80, 24)
    }
}
