//! The flag layer: clap's definitions of the command line, converted at once into the plain
//! settings each command runs with ([`Command`]). Nothing below this module knows clap; the value
//! syntax itself (durations, sizes, times, errnos, syscalls) is [`crate::values`]', shared with
//! the configuration file.

mod generate;
mod help;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use observer_common::Syscall;

use crate::capture::Filter;
use crate::cmd::{report, timeline, watch};
use crate::render::Format;
use crate::render::fix::FixFormat;
use crate::service::config::{DEFAULT_DB, Overrides};
use crate::values::{When, parse_duration, parse_errno, parse_size, parse_syscalls, parse_when};
use help::{
    ABOUT, AFTER_HELP, RECORD_ABOUT, RECORD_AFTER_HELP, REPORT_AFTER_HELP, TIMELINE_AFTER_HELP,
};

/// What to run, with its settings.
pub(crate) enum Command {
    Watch(watch::Settings),
    Record(Overrides),
    Report(report::Settings),
    Timeline(timeline::Settings),
}

/// What the command line asks for: a command, or (hidden) the man pages or completions.
pub(crate) enum Invocation {
    Run(Box<Cli>),
    Generate(generate::Request),
}

/// Parses the command line; on a usage error clap prints it and exits with status 2.
///
/// The hidden `generate` command is added here, to the parser only: the man pages and
/// completions it writes are made from [`Cli`] as users see it.
pub(crate) fn parse() -> Invocation {
    let mut m = Cli::command().subcommand(generate::command()).get_matches();
    if let Some(r) = generate::request(&m) {
        return Invocation::Generate(r);
    }
    match Cli::from_arg_matches_mut(&mut m) {
        Ok(cli) => Invocation::Run(Box::new(cli)),
        Err(e) => e.format(&mut Cli::command()).exit(),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "observer",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// Without a command: watch now, report at the end (the options below). With one: record
    /// continuously, or read what was recorded.
    #[command(subcommand)]
    cmd: Option<Cmd>,

    #[command(flatten)]
    select: SelectArgs,

    /// Stop after this long and print the report (e.g. 30s, 5m). Default: until Ctrl-C/SIGTERM.
    #[arg(short, long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,

    /// How often counts are read from the kernel and the live view is redrawn. Repeats of a
    /// failure are counted in the kernel without reading a clock, so this is also the
    /// resolution of "last seen".
    #[arg(short, long, value_parser = parse_duration, default_value = "1s", value_name = "DURATION")]
    interval: Duration,

    /// Show at most N paths (default: all in reports, what fits in the live view).
    #[arg(short = 'n', long, value_name = "N")]
    top: Option<usize>,

    /// Output format. Default: live on a terminal, table otherwise.
    #[arg(short, long, value_enum)]
    format: Option<FormatArg>,

    /// Write the final report to FILE (created with mode 0600) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// At the end, print the fixes observer is sure of instead of the report: a Puppet manifest
    /// (`puppet apply FILE`) or a shell script, each change guarded so a second run changes
    /// nothing, then a reload of the service that failed.
    #[arg(long, value_enum, value_name = "FORM", conflicts_with = "format")]
    fix: Option<FixArg>,

    /// Debug logging, including the eBPF program's own log lines and verifier logs.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args, Debug, Clone, Default)]
struct SelectArgs {
    /// Watch processes with this name (comm, at most 15 bytes), or whose name starts with a
    /// prefix: 'php-fpm*'. Repeatable, up to 16. Default: apache2, httpd and php-fpm*.
    #[arg(short, long = "comm", value_name = "NAME")]
    comm: Vec<String>,

    /// Watch this process (all its threads) and its descendants. Repeatable.
    #[arg(short, long = "pid", value_name = "PID")]
    pid: Vec<u32>,

    /// Watch the processes of this cgroup v2 directory and its sub-cgroups, e.g.
    /// /sys/fs/cgroup/system.slice/apache2.service. Repeatable.
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroup: Vec<PathBuf>,

    /// Watch the processes of this container: its id, or a prefix of it as `docker ps` or
    /// `crictl ps` shows it (3f2a9c1b2d4e). Docker, containerd/CRI, CRI-O and podman; found by
    /// its cgroup, and followed when it restarts. Repeatable.
    #[arg(long = "container", value_name = "ID")]
    container: Vec<String>,

    /// Watch every process on the host.
    #[arg(short, long)]
    all: bool,

    /// Keep only these errors, e.g. ENOENT,EACCES (names or numbers).
    #[arg(short, long, value_delimiter = ',', value_parser = parse_errno, value_name = "ERRNO,...")]
    errno: Vec<i32>,

    /// Hook only these syscalls: names (openat, newfstatat, statx, ...) or groups (open, stat,
    /// access, exec). Default: all of open, openat, openat2, creat, newstat, newlstat, newfstatat,
    /// statx, access, faccessat, faccessat2, execve, execveat.
    #[arg(short, long, value_delimiter = ',', value_parser = parse_syscalls, value_name = "NAME,...")]
    syscalls: Vec<Vec<Syscall>>,
}

impl SelectArgs {
    /// The selection as given, not yet checked (the recorder merges it with its file first).
    fn filter(&self) -> Filter {
        Filter {
            comms: self.comm.clone(),
            pids: self.pid.clone(),
            cgroups: self.cgroup.clone(),
            containers: self.container.clone(),
            all: self.all,
            errnos: self.errno.clone(),
            syscalls: self.syscalls.iter().flatten().copied().collect(),
            no_opened: false,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Record continuously into the history database (run as a service; see --help).
    #[command(long_about = RECORD_ABOUT, after_help = RECORD_AFTER_HELP)]
    Record(Box<RecordArgs>),
    /// The ranked report of a past window, from the history (no root needed to read it).
    #[command(after_help = REPORT_AFTER_HELP)]
    Report(ReportArgs),
    /// When one path started and stopped failing, minute by minute, from the history.
    #[command(after_help = TIMELINE_AFTER_HELP)]
    Timeline(TimelineArgs),
}

#[derive(Args, Debug, Clone, Default)]
struct RecordArgs {
    #[command(flatten)]
    select: SelectArgs,

    /// Configuration file (TOML). Default: /etc/observer/observer.toml, if it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// History database (created with mode 0600, its directory 0700). [default:
    /// /var/lib/observer/observer.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,

    /// How often counts are written, at most 60s; a crash loses at most this much. [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    flush_interval: Option<Duration>,

    /// Delete history older than this. [default: 14d]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    retention: Option<Duration>,

    /// Delete the oldest history while the database is larger than this (e.g. 512MiB, 2G).
    /// [default: 1GiB]
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    max_db_size: Option<u64>,

    /// Serve Prometheus/OpenMetrics metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464, or on a
    /// unix socket only root can connect to: unix:/run/observer/metrics.sock (`off` to disable
    /// one set in the configuration file). A TCP port shows failing paths to every local user.
    #[arg(long, value_name = "ADDR|unix:PATH")]
    metrics: Option<String>,

    /// How many paths /metrics labels (the most failing in the last hour). [default: 20]
    #[arg(long, value_name = "N")]
    metrics_top: Option<usize>,

    /// Append one JSON line per new distinct failure to FILE (mode 0600), or `-` for standard
    /// output. Reopened on SIGHUP.
    #[arg(long, value_name = "FILE|-")]
    jsonl: Option<PathBuf>,

    /// Debug logging.
    #[arg(short, long)]
    verbose: bool,

    /// Forget a key (in the kernel and in memory) once its count has not grown for this long.
    /// A tuning knob for tests; its counts are kept.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", hide = true)]
    evict_after: Option<Duration>,
}

#[derive(Args, Debug, Clone)]
struct HistoryArgs {
    /// History database to read.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DB)]
    db: PathBuf,

    /// End of the window.
    #[arg(long, value_parser = parse_when, value_name = "WHEN", default_value = "now")]
    until: When,

    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    format: HistoryFormat,

    /// Debug logging.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args, Debug, Clone)]
struct ReportArgs {
    /// Start of the window.
    #[arg(long, value_parser = parse_when, value_name = "WHEN", default_value = "1h")]
    since: When,

    #[command(flatten)]
    history: HistoryArgs,

    /// Show at most N paths.
    #[arg(short = 'n', long, value_name = "N")]
    top: Option<usize>,

    /// Show this path's timeline instead (same as `observer timeline PATH`).
    #[arg(long, value_name = "PATH", conflicts_with = "fix")]
    timeline: Option<OsString>,

    /// Print the fixes observer is sure of instead of the report (see `observer --help`).
    #[arg(long, value_enum, value_name = "FORM", conflicts_with = "format")]
    fix: Option<FixArg>,

    /// Write the report (or the fix) to FILE (created with mode 0600) instead of standard
    /// output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct TimelineArgs {
    /// The failing path, absolute, as the report shows it (its exact bytes).
    #[arg(value_name = "PATH")]
    path: OsString,

    /// Start of the window (default: the whole history).
    #[arg(long, value_parser = parse_when, value_name = "WHEN")]
    since: Option<When>,

    #[command(flatten)]
    history: HistoryArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FixArg {
    /// A Puppet manifest: one guarded resource per fix, and the reload it needs.
    Puppet,
    /// A shell script with the same changes, to review and run.
    Shell,
}

impl From<FixArg> for FixFormat {
    fn from(f: FixArg) -> FixFormat {
        match f {
            FixArg::Puppet => FixFormat::Puppet,
            FixArg::Shell => FixFormat::Shell,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum HistoryFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// Refreshing ranked view on the terminal, then the final report as a table.
    Live,
    /// A plain table, for pipes and logs.
    Table,
    /// One JSON document at the end (schema in the README).
    Json,
    /// One JSON object per new distinct failure as it happens, then a summary line.
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Live => Format::Live,
            FormatArg::Table => Format::Table,
            FormatArg::Json => Format::Json,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

impl From<HistoryFormat> for Format {
    fn from(f: HistoryFormat) -> Format {
        match f {
            HistoryFormat::Table => Format::Table,
            HistoryFormat::Json => Format::Json,
        }
    }
}

impl HistoryArgs {
    fn timeline(&self, path: &OsString, since: Option<When>) -> timeline::Settings {
        timeline::Settings {
            path: path.as_encoded_bytes().to_vec(),
            since,
            until: self.until,
            db: self.db.clone(),
            format: self.format.into(),
        }
    }
}

impl Cli {
    /// The level this command logs at without `--verbose`, and whether it was given.
    pub(crate) fn logging(&self) -> (log::LevelFilter, bool) {
        match &self.cmd {
            None => (log::LevelFilter::Warn, self.verbose),
            Some(Cmd::Record(a)) => (log::LevelFilter::Info, a.verbose),
            Some(Cmd::Report(a)) => (log::LevelFilter::Warn, a.history.verbose),
            Some(Cmd::Timeline(a)) => (log::LevelFilter::Warn, a.history.verbose),
        }
    }

    /// The command and its settings. Fails when the selection cannot be captured (too many
    /// names, a name the kernel cannot hold, `--all` with another selector).
    pub(crate) fn into_command(self) -> Result<Command> {
        Ok(match self.cmd {
            None => Command::Watch(watch::Settings {
                filter: self.select.filter().checked()?,
                duration: self.duration,
                interval: self.interval,
                top: self.top,
                format: self.format.map(Format::from),
                output: self.output,
                fix: self.fix.map(FixFormat::from),
                verbose: self.verbose,
            }),
            Some(Cmd::Record(a)) => Command::Record(Overrides {
                filter: a.select.filter(),
                config: a.config,
                db: a.db,
                flush_interval: a.flush_interval,
                retention: a.retention,
                max_db_size: a.max_db_size,
                metrics: a.metrics,
                metrics_top: a.metrics_top,
                jsonl: a.jsonl,
                verbose: a.verbose,
                evict_after: a.evict_after,
            }),
            Some(Cmd::Report(a)) => match &a.timeline {
                Some(p) => Command::Timeline(a.history.timeline(p, Some(a.since))),
                None => Command::Report(report::Settings {
                    since: a.since,
                    until: a.history.until,
                    db: a.history.db,
                    format: a.history.format.into(),
                    top: a.top,
                    fix: a.fix.map(FixFormat::from),
                    output: a.output,
                }),
            },
            Some(Cmd::Timeline(a)) => Command::Timeline(a.history.timeline(&a.path, a.since)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Command {
        Cli::try_parse_from(args).unwrap().into_command().unwrap()
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_keep_the_ad_hoc_flags_at_top_level() {
        match command(&["observer", "--comm", "x", "-d", "5s"]) {
            Command::Watch(s) => {
                assert_eq!(s.filter.comms, vec!["x"]);
                assert_eq!(s.duration, Some(Duration::from_secs(5)));
            }
            _ => panic!("not the ad-hoc command"),
        }
        match command(&[
            "observer",
            "record",
            "--comm",
            "x",
            "--flush-interval",
            "1s",
            "--db",
            "/tmp/h.db",
        ]) {
            Command::Record(r) => {
                assert_eq!(r.filter.comms, vec!["x"]);
                assert_eq!(r.flush_interval, Some(Duration::from_secs(1)));
                assert_eq!(r.retention, None, "unset, so the config file may set it");
            }
            _ => panic!("not record"),
        }
        assert!(Cli::try_parse_from(["observer", "--comm", "x", "record"]).is_err());
        match command(&["observer", "report", "--since", "2h", "-f", "json"]) {
            Command::Report(r) => {
                assert_eq!(r.since, When::Ago(Duration::from_secs(7200)));
                assert_eq!(r.format, Format::Json);
                assert_eq!(r.until, When::Now);
            }
            _ => panic!("not report"),
        }
        match command(&["observer", "report", "--since", "2h", "--timeline", "/x"]) {
            Command::Timeline(t) => {
                assert_eq!(t.path, b"/x");
                assert_eq!(t.since, Some(When::Ago(Duration::from_secs(7200))));
            }
            _ => panic!("report --timeline is the timeline"),
        }
        assert!(Cli::try_parse_from(["observer", "report", "--since", "yesterday-ish"]).is_err());
        assert!(Cli::try_parse_from(["observer", "timeline", "/x"]).is_ok());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(Cli::try_parse_from(["observer", "--errno", "ENOPE"]).is_err());
        assert!(Cli::try_parse_from(["observer", "--pid", "x"]).is_err());
        let c = Cli::try_parse_from(["observer", "--comm", "0123456789abcdefg"]).unwrap();
        assert!(c.into_command().is_err());
        match command(&["observer", "-e", "ENOENT,EACCES", "-s", "open,statx"]) {
            Command::Watch(s) => {
                assert_eq!(s.filter.errnos, vec![2, 13]);
                assert_eq!(s.filter.syscalls.len(), 5);
            }
            _ => panic!("not the ad-hoc command"),
        }
    }
}
