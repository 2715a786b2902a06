//! Ranking, hints and rendering: which failure is the culprit, why, and what to do.
//!
//! - [`hints`]: what the live filesystem says about a failure (near-identical names, missing
//!   package files, the directory whose mode denies the process, symlink loops...).
//! - [`rank`]: a transparent score per failure, best culprit first ([`rank::SCORING_DOC`]).
//! - [`escape`]: attacker-controlled names made safe and unambiguous for a terminal.
//! - [`render`]: the plain table, the live frame, JSON ([`render::JSON_SCHEMA_DOC`]).

pub mod escape;
pub mod hints;
pub mod ids;
pub mod rank;
pub mod render;
pub mod time;
mod walk;

pub use escape::escape_path;
pub use hints::{HintEnv, hints_for};
pub use rank::{SCORING_DOC, rank};
pub use render::{JSON_SCHEMA_DOC, JsonMeta, TableOpts, json, jsonl_event, live_frame, table};

#[cfg(test)]
pub(crate) mod testutil;
