//! observer: which files is my server failing to open or stat? Ranked, explained.
//!
//! Stages, in the order data flows: `capture` (load/attach the eBPF program, read the ring buffer
//! and the in-kernel aggregate) -> `resolve` (relative paths made absolute) -> `aggregate`
//! (dedupe by path and errno) -> `report` (rank, hints, render).

pub mod aggregate;
pub mod capture;
pub mod cli;
pub mod errno;
pub mod model;
pub mod output;
pub mod report;
pub mod resolve;
