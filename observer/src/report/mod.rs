//! Stage 4: report. Which failure is the culprit, why, and what to do:
//!
//! - [`hints`]: what the live filesystem says about a row (near-identical names, missing package
//!   files, the directory whose mode denies the process, symlink loops...);
//! - [`score`]: the transparent score, its weights, and the README's scoring documentation;
//! - [`probe`]: the benign lookups a healthy server makes, which the score demotes;
//! - [`rank`]: hints and score for every row, best culprit first;
//! - [`walk`]: a path resolved the way the kernel does, step by step.
//!
//! A [`Report`] is what stage 5 renders: the ranked rows, the totals, the capture window, and,
//! from the history, where it comes from.

pub(crate) mod changed;
pub(crate) mod fix;
mod hints;
mod probe;
pub(crate) mod rank;
pub(crate) mod referrers;
pub(crate) mod score;
mod walk;

use std::path::PathBuf;
use std::time::SystemTime;

pub(crate) use hints::HintEnv;

use crate::model::{Failure, RankContext, Ranked, Session, Totals, Watched};

/// A ranked report, ready to render.
pub(crate) struct Report {
    pub(crate) ranked: Vec<Ranked>,
    pub(crate) totals: Totals,
    /// The window: capture start and end (ad-hoc), or the minutes asked for (history).
    pub(crate) started: SystemTime,
    pub(crate) ended: SystemTime,
    /// What was watched, as the JSON document's `filter` shows it (null when the history does
    /// not say).
    pub(crate) filter: serde_json::Value,
    /// History mode: where the report comes from.
    pub(crate) history: Option<HistorySource>,
}

/// Where a report from the history comes from: the JSON `history` member and the lines above the
/// table.
pub(crate) struct HistorySource {
    pub(crate) db: PathBuf,
    /// The window, Unix milliseconds (rounded out to whole minutes).
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    /// When the history begins (the first session's start), if anything was recorded.
    pub(crate) recorded_since: Option<i64>,
    /// Novelty is judged against a baseline (the history reaches before the window).
    pub(crate) baseline: bool,
    /// The recording sessions that overlap the window.
    pub(crate) sessions: Vec<Session>,
    /// When observer was not recording inside the window, (from, to) in Unix milliseconds.
    pub(crate) gaps: Vec<(i64, i64)>,
    /// Failures observer dropped in the window (memory full while the disk was).
    pub(crate) dropped: u64,
    /// When the report was made (local times are shown relative to it).
    pub(crate) now: SystemTime,
}

impl Report {
    /// Ranks `failures` (hints are checked against the live filesystem now; referrers are
    /// searched in `opened`, the files the processes read).
    pub(crate) fn ranked(
        failures: Vec<Failure>,
        totals: Totals,
        ctx: &RankContext,
        env: &HintEnv,
        opened: &[crate::opened::OpenedFile],
        watched: Option<&Watched>,
        history: Option<HistorySource>,
    ) -> Report {
        let (started, ended) = match &history {
            Some(h) => (
                crate::time::time_of_ms(h.from_ms),
                crate::time::time_of_ms(h.to_ms),
            ),
            None => (ctx.window_start, ctx.now),
        };
        let (ranked, paths, count) =
            rank::rank_at_most(failures, ctx, env, opened, rank::MAX_RANKED);
        let mut totals = totals;
        totals.unlisted_paths = paths;
        totals.unlisted_failures = count;
        Report {
            ranked,
            totals,
            started,
            ended,
            filter: watched
                .and_then(|w| serde_json::to_value(w).ok())
                .unwrap_or(serde_json::Value::Null),
            history,
        }
    }
}
