//! observer: which files is my server failing to open or stat? Ranked, explained.
//!
//! Stages, in the order data flows: `capture` (load/attach the eBPF program, read the ring buffer
//! and the in-kernel aggregate) -> `resolve` (relative paths made absolute) -> `aggregate`
//! (dedupe by path and errno) -> `report` (rank, hints, render).
//!
//! Continuous mode (`observer record`) reuses capture and report: `record` runs the capture loop
//! into `history` (per-minute buckets in SQLite, read back by `observer report`/`timeline`),
//! `metrics` serves the fleet export, `config` reads the configuration file.

pub mod aggregate;
pub mod capture;
pub mod cli;
pub mod config;
pub mod errno;
pub mod history;
pub mod kbtf;
pub mod metrics;
pub mod model;
pub mod output;
pub mod record;
pub mod report;
pub mod resolve;

#[cfg(test)]
mod readme {
    /// The README carries the scoring and JSON schema documentation verbatim (minus their own
    /// heading), so it cannot drift from the code.
    #[test]
    fn readme_documents_scoring_and_schema_as_the_code_does() {
        let readme = include_str!("../../README.md");
        for (name, doc) in [
            ("SCORING_DOC", crate::report::SCORING_DOC),
            ("JSON_SCHEMA_DOC", crate::report::JSON_SCHEMA_DOC),
        ] {
            let body = doc.split_once('\n').map_or(doc, |(_, rest)| rest).trim();
            assert!(
                readme.contains(body),
                "README.md is out of date with {name}:\n{body}"
            );
        }
    }
}
