//! observer: which files is my server failing to open or stat? Ranked, explained.
//!
//! A failing call goes through these stages, in this order (each module's documentation starts
//! with its number):
//!
//! 1. [`capture`]: the eBPF program filters and counts failing calls of the watched processes in
//!    the kernel and sends each key's first sighting over a ring buffer; the session reads the
//!    records and polls the counts.
//! 2. [`resolve`]: relative and dirfd-relative paths made absolute, each key's record turned
//!    into what the next stage keeps.
//! 3. [`aggregate`]: the ad-hoc mode's store, one row per (path, errno). `observer record` keeps
//!    per-minute deltas instead ([`history::bucket`]).
//! 4. [`report`]: what the live filesystem says about each row (hints), a transparent score, the
//!    culprit first.
//! 5. [`render`]: the table, the live view and JSON that the operator reads.
//! 6. [`history`]: what `observer record` writes to SQLite, and `report`/`timeline` read back.
//!
//! Around them: [`cli`], the flag layer, converts the command line into plain settings; [`cmd`]
//! holds one loop per command; [`service`] the recorder's configuration file, `/metrics` and
//! systemd notification; [`model`] the rows the stages hand on. Leaves several stages share:
//! [`values`] (the syntax of durations, sizes, times...), [`errno`], [`escape`], [`time`],
//! [`ids`], [`files`].
//!
//! The library's only API is [`main`] (what the binary runs) and [`capture`] (what the benchmark
//! drives); everything else is private to it, so the compiler sees what nothing uses.

pub mod capture;

mod aggregate;
mod cli;
mod cmd;
mod errno;
mod escape;
mod files;
mod history;
mod ids;
mod logging;
mod model;
mod opened;
mod place;
mod render;
mod report;
mod resolve;
mod service;
mod time;
mod values;

#[cfg(test)]
mod testutil;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use cli::Command;

/// observer's `main`: parses the command line, sets up logging, runs the command. Errors are one
/// line on standard error and exit status 1; usage errors exit with 2 (clap).
pub fn main() -> ExitCode {
    let r = match cli::parse() {
        cli::Invocation::Run(cli) => {
            let (level, verbose) = cli.logging();
            logging::init(level, verbose);
            try_main(*cli)
        }
        cli::Invocation::Generate(g) => {
            logging::init(log::LevelFilter::Warn, false);
            g.run()
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::fatal(&e);
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: cli::Cli) -> Result<()> {
    match cli.into_command()? {
        Command::Watch(s) => runtime()?.block_on(cmd::watch::run(s)),
        Command::Record(s) => runtime()?.block_on(cmd::record::run(s)),
        Command::Report(s) => {
            // An unwritable --output fails before the history is read, not after.
            let file = s.output.as_deref().map(files::Output::create).transpose()?;
            let text = cmd::report::run(&s)?;
            match file {
                Some(f) => f.commit(text.as_bytes()),
                None => {
                    print(text);
                    Ok(())
                }
            }
        }
        Command::Timeline(s) => cmd::timeline::run(&s).map(print),
    }
}

/// The capture commands' runtime: one thread, which owns the ring buffer and every timer.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn print(text: String) {
    let mut o = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

#[cfg(test)]
mod readme {
    /// The README carries the scoring, JSON schema, history schema and metrics documentation
    /// verbatim (minus their own heading), so it cannot drift from the code.
    #[test]
    fn readme_documents_what_the_code_does() {
        let readme = include_str!("../../README.md");
        for (name, doc) in [
            ("the scoring doc", crate::report::score::scoring_doc()),
            (
                "JSON_SCHEMA_DOC",
                crate::render::json::JSON_SCHEMA_DOC.to_string(),
            ),
            ("SCHEMA_DOC", crate::history::schema::SCHEMA_DOC.to_string()),
            (
                "METRICS_DOC",
                crate::service::metrics::METRICS_DOC.to_string(),
            ),
        ] {
            let body = doc
                .split_once('\n')
                .map_or(doc.as_str(), |(_, rest)| rest)
                .trim();
            assert!(
                readme.contains(body),
                "README.md is out of date with {name}:\n{body}"
            );
        }
    }
}
