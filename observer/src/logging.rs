//! How observer talks on standard error: `observer: ...` lines, with syslog priorities when
//! standard error is the journal.

use std::io::Write;

/// Prints the error a command ended with, as one line (under systemd, the journal records it as
/// an error: priority 3).
pub(crate) fn fatal(e: &anyhow::Error) {
    log::logger().flush();
    let prio = if stderr_is_journal() { "<3>" } else { "" };
    eprintln!("{prio}observer: {e:#}");
}

/// Installs the logger: `observer: message`, `observer: warning: message`, at level `default`
/// without `--verbose` (the ad-hoc mode and the history commands: warnings; `record`, a service:
/// info), debug with it. When standard error is the journal (JOURNAL_STREAM names it), each line
/// carries its syslog priority (`<4>`), which journald strips and records.
pub(crate) fn init(default: log::LevelFilter, verbose: bool) {
    let journal = stderr_is_journal();
    // Debug records pass the logger; the global level (which `record` changes when its
    // configuration says `verbose`) decides. aya's own debug lines (every relocation of every
    // program) drown what --verbose is for: observer's and the eBPF program's messages, and
    // verifier logs in errors.
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Debug)
        .filter_module("aya", log::LevelFilter::Info)
        .filter_module("aya_obj", log::LevelFilter::Info)
        .format(move |buf, r| {
            let (prio, label) = match r.level() {
                log::Level::Error => (3, "error: "),
                log::Level::Warn => (4, "warning: "),
                log::Level::Info => (6, ""),
                log::Level::Debug => (7, "debug: "),
                log::Level::Trace => (7, "trace: "),
            };
            if journal {
                writeln!(buf, "<{prio}>observer: {label}{}", r.args())
            } else {
                writeln!(buf, "observer: {label}{}", r.args())
            }
        })
        .init();
    log::set_max_level(if verbose {
        log::LevelFilter::Debug
    } else {
        default
    });
}

fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on fd 2 with a valid out struct.
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}
