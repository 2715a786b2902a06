//! Stage 5, the plain table for pipes and logs: no colours, paths and comms escaped, the path
//! last so that a long one only makes its own line long; from the history, the lines that say
//! where the report comes from.

use std::fmt::Write as _;

use crate::errno;
use crate::escape::{escape_path, escape_str, sanitize_text};
use crate::model::{Failure, Ranked, Totals};
use crate::report::HistorySource;

use super::width::{pad_left, pad_right, width_of};
use super::{gaps_line, local};
use crate::time::local_clock;

/// Options for [`table`].
#[derive(Clone, Debug)]
pub(crate) struct TableOpts {
    /// Print a "why:" line with the reasons under each row.
    pub(crate) reasons: bool,
    /// Print "hint:"/"fix:" lines under each row.
    pub(crate) hints: bool,
    /// Process names shown per row before "+N".
    pub(crate) max_comms: usize,
}

impl Default for TableOpts {
    fn default() -> Self {
        TableOpts {
            reasons: true,
            hints: true,
            max_comms: 3,
        }
    }
}

/// "openat 3, newfstatat 9".
fn syscalls_summary(f: &Failure) -> String {
    f.syscalls
        .iter()
        .map(|(s, n)| format!("{} {n}", s.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn comms_summary(f: &Failure, max: usize) -> String {
    let max = max.max(1);
    let mut s = f
        .comms
        .iter()
        .take(max)
        .map(|c| escape_str(c))
        .collect::<Vec<_>>()
        .join(",");
    if f.comms.len() > max {
        let _ = write!(s, ",+{}", f.comms.len() - max);
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

pub(super) fn totals_line(totals: &Totals) -> String {
    let mut s = format!(
        "failures {}  distinct {}  lost {}",
        totals.failures, totals.distinct, totals.lost
    );
    if totals.overflow > 0 {
        let _ = write!(s, "  overflow {}", totals.overflow);
    }
    if totals.dropped > 0 {
        let _ = write!(s, "  dropped {} (too many distinct paths)", totals.dropped);
    }
    if totals.unlisted_paths > 0 {
        let _ = write!(
            s,
            "  unlisted {} paths, {} failures (a report ranks at most {})",
            totals.unlisted_paths,
            totals.unlisted_failures,
            crate::report::rank::MAX_RANKED
        );
    }
    s
}

pub(super) struct Cells {
    pub(super) rank: String,
    pub(super) score: String,
    pub(super) count: String,
    pub(super) errno: String,
    pub(super) syscalls: String,
    pub(super) comms: String,
    /// Where the processes ran, short (`docker:3f2a9c1b2d4e`, `apache2.service`, `-`).
    pub(super) place: String,
    pub(super) path: String,
}

impl Cells {
    /// The column titles, for the table and the live view.
    pub(super) fn header() -> Cells {
        Cells {
            rank: "RANK".into(),
            score: "SCORE".into(),
            count: "COUNT".into(),
            errno: "ERRNO".into(),
            syscalls: "SYSCALLS".into(),
            comms: "COMMS".into(),
            place: "WHERE".into(),
            path: "PATH".into(),
        }
    }
}

/// The path as a table shows it. An empty one would be an empty cell: it is named instead (the
/// kernel could not read the caller's pointer, EFAULT, or the caller passed "", which fails with
/// ENOENT and is a real bug worth seeing).
fn path_text(f: &Failure) -> String {
    match (f.path.is_empty(), f.errno) {
        (false, _) => escape_path(&f.path),
        (true, libc::EFAULT) => "(path unreadable: bad pointer)".to_string(),
        (true, _) => "\"\" (empty path)".to_string(),
    }
}

pub(super) fn cells(r: &Ranked, max_comms: usize) -> Cells {
    let f = &r.failure;
    let mut path = path_text(f);
    if f.truncated {
        path.push_str(" [truncated]");
    }
    if f.unresolved && !f.path.is_empty() {
        path.push_str(" [relative]");
    }
    Cells {
        rank: r.rank.to_string(),
        score: format!("{:.2}", r.score),
        count: f.count.to_string(),
        errno: errno::name(f.errno),
        syscalls: syscalls_summary(f),
        comms: comms_summary(f, max_comms),
        place: escape_str(&f.place.short()),
        path,
    }
}

/// The WHERE column is shown when some row ran somewhere else than on the host itself.
pub(super) fn shows_place(ranked: &[Ranked]) -> bool {
    ranked.iter().any(|r| !r.failure.place.is_host())
}

/// The plain table for pipes and logs. No colours; paths and comms escaped; the path is the last
/// column, so a long one only makes its own line long.
pub(super) fn table(
    ranked: &[Ranked],
    totals: &Totals,
    top: Option<usize>,
    opts: &TableOpts,
) -> String {
    let shown = top.map_or(ranked.len(), |n| n.min(ranked.len()));
    let mut out = totals_line(totals);
    if shown < ranked.len() {
        let _ = write!(out, "  (top {shown} of {} shown)", ranked.len());
    }
    out.push('\n');
    if ranked.is_empty() {
        out.push_str("no failed opens or stats recorded\n");
        return out;
    }
    let rows: Vec<Cells> = ranked[..shown]
        .iter()
        .map(|r| cells(r, opts.max_comms))
        .collect();
    let head = Cells::header();
    let w = |get: fn(&Cells) -> &String| {
        rows.iter()
            .chain(std::iter::once(&head))
            .map(|c| width_of(get(c)))
            .max()
            .unwrap_or(0)
    };
    let widths = [
        w(|c| &c.rank),
        w(|c| &c.score),
        w(|c| &c.count),
        w(|c| &c.errno),
        w(|c| &c.syscalls),
        w(|c| &c.comms),
        w(|c| &c.place),
    ];
    let with_place = shows_place(&ranked[..shown]);
    let line = |c: &Cells| {
        let mut s = String::new();
        s.push_str(&pad_left(&c.rank, widths[0]));
        s.push_str("  ");
        s.push_str(&pad_left(&c.score, widths[1]));
        s.push_str("  ");
        s.push_str(&pad_left(&c.count, widths[2]));
        s.push_str("  ");
        s.push_str(&pad_right(&c.errno, widths[3]));
        s.push_str("  ");
        s.push_str(&pad_right(&c.syscalls, widths[4]));
        s.push_str("  ");
        s.push_str(&pad_right(&c.comms, widths[5]));
        s.push_str("  ");
        if with_place {
            s.push_str(&pad_right(&c.place, widths[6]));
            s.push_str("  ");
        }
        s.push_str(&c.path);
        s
    };
    out.push_str(&line(&head));
    out.push('\n');
    for (r, c) in ranked[..shown].iter().zip(&rows) {
        out.push_str(&line(c));
        out.push('\n');
        if opts.reasons && !r.reasons.is_empty() {
            let why: Vec<String> = r
                .reasons
                .iter()
                .map(|s| sanitize_text(&s.to_string()))
                .collect();
            let _ = writeln!(out, "      why: {}", why.join(", "));
        }
        if opts.hints {
            for h in &r.hints {
                let _ = writeln!(out, "      hint: {}", sanitize_text(&h.message));
                if let Some(s) = &h.suggestion {
                    let _ = writeln!(out, "        fix: {}", sanitize_text(s));
                }
            }
            for x in &r.evidence.referrers {
                let _ = writeln!(
                    out,
                    "      named at: {}:{}  {}",
                    escape_path(&x.file),
                    x.line,
                    escape_path(&x.shown())
                );
            }
            for c in &r.evidence.changed {
                let first = r.failure.first_seen;
                let s = c.seconds_before(first);
                let when = if s >= 0.0 {
                    format!("{s:.0} s before the first failure")
                } else {
                    format!("{:.0} s after the first failure", -s)
                };
                let _ = writeln!(
                    out,
                    "      changed: {} {} {}, {when}",
                    escape_path(&c.path),
                    c.kind.as_str(),
                    local_clock(c.at, first)
                );
            }
        }
    }
    out
}

/// The lines above a history report's table: the database, the window, what "new" means, when
/// observer was not recording, what it dropped.
pub(super) fn history_preamble(h: &HistorySource) -> String {
    let mut pre = format!(
        "history {}: {} .. {}",
        escape_path(h.db.as_os_str().as_encoded_bytes()),
        local(h.from_ms, h.now),
        local(h.to_ms, h.now)
    );
    match h.recorded_since {
        Some(e) if h.baseline => {
            let _ = write!(
                pre,
                "; \"new\" = did not fail before this window (history since {})",
                local(e, h.now)
            );
        }
        Some(e) => {
            let _ = write!(pre, "; recording began {}", local(e, h.now));
        }
        None => pre.push_str("; nothing recorded yet"),
    }
    pre.push('\n');
    if let Some(g) = gaps_line(&h.gaps, h.now) {
        pre.push_str(&g);
    }
    if h.dropped > 0 {
        let _ = writeln!(
            pre,
            "{} failure(s) were dropped by observer (memory full while the database could not be written)",
            h.dropped
        );
    }
    pre
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Syscall;
    use crate::testutil::failure;

    #[test]
    fn empty_paths_are_named_not_blank() {
        let mut f = failure("/", libc::ENOENT, &[(Syscall::Openat, 1)]);
        f.path = bytes::Bytes::new();
        f.unresolved = true;
        assert_eq!(path_text(&f), "\"\" (empty path)");
        f.errno = libc::EFAULT;
        let r = Ranked {
            rank: 1,
            failure: f,
            score: 1.0,
            reasons: vec![],
            hints: vec![],
            evidence: Default::default(),
        };
        assert_eq!(cells(&r, 3).path, "(path unreadable: bad pointer)");
    }
}
