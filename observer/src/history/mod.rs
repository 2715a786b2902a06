//! Stage 6: history. What `observer record` keeps, and `observer report` / `observer timeline`
//! read back:
//!
//! - [`bucket`]: kernel counts -> per-minute deltas waiting for the next flush (pure logic);
//! - [`schema`]: the SQLite schema, its lock and its files;
//! - [`writer`]: the recorder's flushes, retention and size cap;
//! - [`reader`]: windows, baselines, sessions and timelines, read-only.

pub(crate) mod bucket;
pub(crate) mod reader;
pub(crate) mod schema;
pub(crate) mod writer;
