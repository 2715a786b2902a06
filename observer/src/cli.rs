//! Command-line interface.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use observer_common::Syscall;

use crate::capture::Filter;

const ABOUT: &str = "Which files is my server failing to open or stat? \
observer traces failing open/stat/access/exec calls of the watched processes from the kernel \
(eBPF tracepoints, no ptrace), deduplicates them, ranks the likely culprit first and says what \
to check.";

const AFTER_HELP: &str = "\
Examples:
  sudo observer                          watch apache2 workers; live view; Ctrl-C for the report
  sudo observer --comm php-fpm8.2 -d 30s watch PHP-FPM for 30 seconds, then report
  sudo observer --pid 1234               a process and its descendants (e.g. Apache's parent)
  sudo observer --cgroup /sys/fs/cgroup/system.slice/apache2.service
  sudo observer -f json -d 10s -o r.json machine-readable report, file mode 0600
  sudo observer -f jsonl | jq .          one JSON line per new distinct failure, as it happens

Selectors combine: kinds with AND (--comm X --cgroup Y: X inside Y), repeated values with OR.
With no selector observer watches processes named apache2.

Faults that only show at start-up (a deleted module .so) are seen only if the service starts or
reloads while observer runs: start observer, then `systemctl reload apache2`, or keep
`observer record` running as a service and ask it afterwards:

  sudo observer record                   record continuously into /var/lib/observer/observer.db
  sudo observer report --since 2h        the same ranked report, from the history
  sudo observer timeline /var/www/x.php  when a path started and stopped failing

See `observer record --help`.";

#[derive(Parser, Debug)]
#[command(
    name = "observer",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Without a command: watch now, report at the end (the options below). With one: record
    /// continuously, or read what was recorded.
    #[command(subcommand)]
    pub cmd: Option<Cmd>,

    #[command(flatten)]
    pub select: Selection,

    /// Stop after this long and print the report (e.g. 30s, 5m). Default: until Ctrl-C/SIGTERM.
    #[arg(short, long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// How often counts are read from the kernel and the live view is redrawn. Repeats of a
    /// failure are counted in the kernel without reading a clock, so this is also the
    /// resolution of "last seen".
    #[arg(short, long, value_parser = parse_duration, default_value = "1s", value_name = "DURATION")]
    pub interval: Duration,

    /// Show at most N paths (default: all in reports, what fits in the live view).
    #[arg(short = 'n', long, value_name = "N")]
    pub top: Option<usize>,

    /// Output format. Default: live on a terminal, table otherwise.
    #[arg(short, long, value_enum)]
    pub format: Option<Format>,

    /// Write the final report to FILE (created with mode 0600) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Debug logging, including the eBPF program's own log lines and verifier logs.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Selection {
    /// Watch processes with this exact name (comm, at most 15 bytes). Repeatable, up to 16.
    /// Default: apache2.
    #[arg(short, long = "comm", value_name = "NAME")]
    pub comm: Vec<String>,

    /// Watch this process (all its threads) and its descendants. Repeatable.
    #[arg(short, long = "pid", value_name = "PID")]
    pub pid: Vec<u32>,

    /// Watch the processes of this cgroup v2 directory and its sub-cgroups, e.g.
    /// /sys/fs/cgroup/system.slice/apache2.service. Repeatable.
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroup: Vec<PathBuf>,

    /// Watch every process on the host.
    #[arg(short, long)]
    pub all: bool,

    /// Keep only these errors, e.g. ENOENT,EACCES (names or numbers).
    #[arg(short, long, value_delimiter = ',', value_parser = parse_errno, value_name = "ERRNO,...")]
    pub errno: Vec<i32>,

    /// Hook only these syscalls: names (openat, newfstatat, statx, ...) or groups (open, stat,
    /// access, exec). Default: all of open, openat, openat2, creat, newstat, newlstat, newfstatat,
    /// statx, access, faccessat, faccessat2, execve, execveat.
    #[arg(short, long, value_delimiter = ',', value_parser = parse_syscalls, value_name = "NAME,...")]
    pub syscalls: Vec<Vec<Syscall>>,
}

impl Selection {
    pub fn filter(&self) -> Result<Filter> {
        let mut syscalls: Vec<Syscall> = self.syscalls.iter().flatten().copied().collect();
        syscalls.sort();
        syscalls.dedup();
        let f = Filter {
            comms: self.comm.clone(),
            pids: self.pid.clone(),
            cgroups: self.cgroup.clone(),
            all: self.all,
            errnos: self.errno.clone(),
            syscalls,
        };
        f.validate()?;
        Ok(f)
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Record continuously into the history database (run as a service; see --help).
    #[command(long_about = RECORD_ABOUT, after_help = RECORD_AFTER_HELP)]
    Record(RecordArgs),
    /// The ranked report of a past window, from the history (no root needed to read it).
    #[command(after_help = REPORT_AFTER_HELP)]
    Report(ReportArgs),
    /// When one path started and stopped failing, minute by minute, from the history.
    #[command(after_help = TIMELINE_AFTER_HELP)]
    Timeline(TimelineArgs),
}

const RECORD_ABOUT: &str = "\
Record continuously into the history database, with the same selectors as the ad-hoc mode.

Failures are counted in the kernel and written once per --flush-interval, in one transaction, as
per-minute counts per (path, errno, syscall, process name, uid/gid). A crash or `kill -9` loses at
most one interval; SIGTERM and SIGINT write everything before exiting. SIGHUP re-reads the
configuration file and reopens the --jsonl file (for log rotation). Memory stays bounded: keys
idle for two minutes are forgotten in the kernel and in observer after their counts are taken.
When the history cannot be written (disk full), capture goes on in memory, the error is logged,
and writing resumes when it can.";

const RECORD_AFTER_HELP: &str = "\
Configuration file (TOML, default /etc/observer/observer.toml; a missing default file is fine).
Every long option above is a key; the command line overrides the file. If the command line
names any selector (--comm, --pid, --cgroup, --all), the file's selectors are ignored.

  comm = [\"apache2\", \"php-fpm8.2\"]
  errno = [\"ENOENT\", \"EACCES\"]
  db = \"/var/lib/observer/observer.db\"
  flush-interval = \"10s\"
  retention = \"14d\"
  max-db-size = \"1GiB\"
  metrics = \"127.0.0.1:9464\"
  metrics-top = 20
  jsonl = \"/var/log/observer/failures.jsonl\"

On SIGHUP, flush-interval, retention, max-db-size, metrics, metrics-top, jsonl and verbose
change at once; a change of selectors restarts the capture (counts are kept); db needs a
restart of observer.

Examples:
  sudo observer record --comm apache2 --comm php-fpm8.2
  sudo observer record --cgroup /sys/fs/cgroup/system.slice/apache2.service --metrics 127.0.0.1:9464
  sudo systemctl reload observer         re-read /etc/observer/observer.toml";

const REPORT_AFTER_HELP: &str = "\
WHEN is a duration back from now (30m, 2h, 1d), `now`, a time today (12:00), or a date and
time: 2024-05-01, 2024-05-01 12:00, 2024-05-01T12:00:00 (local time), or with Z or an offset
(2024-05-01T10:00Z). The window is rounded out to whole minutes.

Novelty in history mode: a path failing in the window that never failed before it outranks one
that has always failed (\"has always failed\" in its reasons), as far back as the history reaches.

Examples:
  observer report --since 2h
  observer report --since '2024-05-01 11:30' --until '2024-05-01 12:30' --format json
  observer report --db ./copy-of-observer.db --top 10";

const TIMELINE_AFTER_HELP: &str = "\
Shows, per errno, each episode (failing minutes with no more than 5 quiet minutes between them:
when it started, when it stopped, how many calls), then each failing minute with its count,
syscalls and process names, and the times observer was not recording. Times are local.

Examples:
  observer timeline /var/www/html/wp-config.php
  observer timeline --since 1d /usr/lib/apache2/modules/mod_php.so --format json";

#[derive(Args, Debug, Clone, Default)]
pub struct RecordArgs {
    #[command(flatten)]
    pub select: Selection,

    /// Configuration file (TOML). Default: /etc/observer/observer.toml, if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// History database (created with mode 0600, its directory 0700). [default:
    /// /var/lib/observer/observer.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// How often counts are written, at most 60s; a crash loses at most this much. [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub flush_interval: Option<Duration>,

    /// Delete history older than this. [default: 14d]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub retention: Option<Duration>,

    /// Delete the oldest history while the database is larger than this (e.g. 512MiB, 2G).
    /// [default: 1GiB]
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_db_size: Option<u64>,

    /// Serve Prometheus/OpenMetrics metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (`off`
    /// to disable one set in the configuration file).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    /// How many paths /metrics labels (the most failing in the last hour). [default: 20]
    #[arg(long, value_name = "N")]
    pub metrics_top: Option<usize>,

    /// Append one JSON line per new distinct failure to FILE (mode 0600), or `-` for standard
    /// output. Reopened on SIGHUP.
    #[arg(long, value_name = "FILE|-")]
    pub jsonl: Option<PathBuf>,

    /// Debug logging.
    #[arg(short, long)]
    pub verbose: bool,

    /// Forget a key (in the kernel and in memory) once its count has not grown for this long.
    /// A tuning knob for tests; its counts are kept.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", hide = true)]
    pub evict_after: Option<Duration>,
}

#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// History database to read.
    #[arg(long, value_name = "PATH", default_value = crate::history::db::DEFAULT_DB)]
    pub db: PathBuf,

    /// End of the window.
    #[arg(long, value_parser = parse_when, value_name = "WHEN", default_value = "now")]
    pub until: When,

    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: HistoryFormat,

    /// Debug logging.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Start of the window.
    #[arg(long, value_parser = parse_when, value_name = "WHEN", default_value = "1h")]
    pub since: When,

    #[command(flatten)]
    pub history: HistoryArgs,

    /// Show at most N paths.
    #[arg(short = 'n', long, value_name = "N")]
    pub top: Option<usize>,

    /// Show this path's timeline instead (same as `observer timeline PATH`).
    #[arg(long, value_name = "PATH")]
    pub timeline: Option<OsString>,
}

#[derive(Args, Debug, Clone)]
pub struct TimelineArgs {
    /// The failing path, absolute, as the report shows it (its exact bytes).
    #[arg(value_name = "PATH")]
    pub path: OsString,

    /// Start of the window (default: the whole history).
    #[arg(long, value_parser = parse_when, value_name = "WHEN")]
    pub since: Option<When>,

    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    Table,
    Json,
}

impl From<HistoryFormat> for Format {
    fn from(f: HistoryFormat) -> Format {
        match f {
            HistoryFormat::Table => Format::Table,
            HistoryFormat::Json => Format::Json,
        }
    }
}

/// A point in time as the operator gave it: relative to now, or absolute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum When {
    Now,
    Ago(Duration),
    At(SystemTime),
}

impl When {
    pub fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            When::Now => now,
            When::Ago(d) => now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH),
            When::At(t) => t,
        }
    }
}

/// `now`, a duration back from now (`2h`), or a date and time (local unless it carries `Z` or
/// an offset).
pub fn parse_when(s: &str) -> Result<When> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(When::Now);
    }
    if t.starts_with(|c: char| c.is_ascii_digit())
        && !t.contains('-')
        && let Ok(d) = parse_duration(t)
    {
        return Ok(When::Ago(d));
    }
    // A time alone (12:00, 12:00:30) is today's.
    let dated;
    let t = if !t.contains('-') && t.contains(':') && !t.contains(' ') {
        dated = format!("{} {t}", local_today());
        dated.as_str()
    } else {
        t
    };
    parse_datetime(t).map(When::At).ok_or_else(|| {
        anyhow::anyhow!(
            "invalid time {s:?}: use a duration back from now (30m, 2h, 1d), `now`, a time today \
             (12:00), or a date and time such as 2024-05-01 12:00 (local) or 2024-05-01T10:00:00Z"
        )
    })
}

/// Today's local date, `YYYY-MM-DD`.
fn local_today() -> String {
    // SAFETY: time(NULL) and localtime_r with a zeroed tm; a null return leaves it zeroed.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        libc::localtime_r(&now, &mut tm);
    }
    format!(
        "{:04}-{:02}-{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday
    )
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.fff]]][Z|(+|-)HH[:]MM]`.
fn parse_datetime(s: &str) -> Option<SystemTime> {
    let num = |x: &str| -> Option<i64> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let (date, rest) = match s.find([' ', 'T', 't']) {
        Some(i) => (&s[..i], s[i + 1..].trim()),
        None => (s, ""),
    };
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    // Split a zone off the time: Z, or +HH:MM / -HH:MM / +HHMM.
    let (time, zone) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, Some(0i64))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let z = &rest[i + 1..];
        let (h, m) = match z.split_once(':') {
            Some((h, m)) => (num(h)?, num(m)?),
            None if z.len() == 4 => (num(&z[..2])?, num(&z[2..])?),
            None => (num(z)?, 0),
        };
        let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
        (&rest[..i], Some(sign * (h * 3600 + m * 60)))
    } else {
        (rest, None)
    };
    let (mut h, mut mi, mut sec, mut ms) = (0, 0, 0, 0);
    if !time.is_empty() {
        let mut p = time.split(':');
        h = num(p.next()?)?;
        mi = num(p.next()?)?;
        if let Some(x) = p.next() {
            let (a, frac) = x.split_once('.').unwrap_or((x, ""));
            sec = num(a)?;
            if !frac.is_empty() {
                let f: String = frac.chars().chain("000".chars()).take(3).collect();
                ms = num(&f)?;
            }
        }
        if p.next().is_some() || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
    }
    let secs = match zone {
        Some(off) => days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + sec - off,
        None => {
            // SAFETY: a zeroed tm is valid; mktime normalises it and reads the local zone.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            tm.tm_year = (y - 1900) as i32;
            tm.tm_mon = (mo - 1) as i32;
            tm.tm_mday = da as i32;
            tm.tm_hour = h as i32;
            tm.tm_min = mi as i32;
            tm.tm_sec = sec as i32;
            tm.tm_isdst = -1;
            let t = unsafe { libc::mktime(&mut tm) };
            if t == -1 {
                return None;
            }
            t
        }
    };
    let ms_total = secs.checked_mul(1000)?.checked_add(ms)?;
    Some(if ms_total >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms_total as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms_total.unsigned_abs())
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A size in bytes: a number with an optional unit, K/KiB M/MiB G/GiB T/TiB (powers of 1024) or
/// KB MB GB TB (powers of 1000).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = (t[..split].trim(), t[split..].trim());
    let n: f64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {s:?}: use e.g. 512MiB, 2G, 1000000"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        _ => bail!("invalid size {s:?}: unknown unit {unit:?} (use KiB, MiB, GiB, or KB, MB, GB)"),
    };
    let v = n * mult;
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        bail!("invalid size {s:?}");
    }
    Ok(v as u64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Refreshing ranked view on the terminal, then the final report as a table.
    Live,
    /// A plain table, for pipes and logs.
    Table,
    /// One JSON document at the end (schema in the README).
    Json,
    /// One JSON object per new distinct failure as it happens, then a summary line.
    Jsonl,
}

pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let d = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            bail!("invalid duration {s:?}");
        }
        Duration::from_secs_f64(secs)
    } else {
        humantime::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("invalid duration {s:?} ({e}); use e.g. 30s, 5m, 1h"))?
    };
    if d.is_zero() {
        bail!("duration must be greater than zero");
    }
    Ok(d)
}

fn parse_errno(s: &str) -> Result<i32> {
    crate::errno::parse(s).ok_or_else(|| {
        anyhow::anyhow!("unknown errno {s:?} (use a name such as ENOENT or a number)")
    })
}

pub fn parse_syscalls(s: &str) -> Result<Vec<Syscall>> {
    use observer_common::Intent;
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_prefix("sys_").unwrap_or(&s);
    let group = |i: Intent| -> Vec<Syscall> {
        Syscall::ALL
            .iter()
            .copied()
            .filter(|x| x.intent() == i)
            .collect()
    };
    Ok(match s {
        "open" => group(Intent::Open),
        "stat" => group(Intent::Stat),
        "access" => group(Intent::Access),
        "exec" => group(Intent::Exec),
        "all" => Syscall::ALL.to_vec(),
        name => match Syscall::ALL.iter().find(|x| x.name() == name) {
            Some(&x) => vec![x],
            None => {
                let names: Vec<&str> = Syscall::ALL.iter().map(|x| x.name()).collect();
                bail!(
                    "unknown syscall {name:?}: use open, stat, access, exec, all, or one of {}",
                    names.join(", ")
                )
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn syscall_groups_and_names() {
        assert_eq!(parse_syscalls("openat").unwrap(), vec![Syscall::Openat]);
        assert_eq!(parse_syscalls("stat").unwrap().len(), 4);
        assert_eq!(
            parse_syscalls("exec").unwrap(),
            vec![Syscall::Execve, Syscall::Execveat]
        );
        assert!(parse_syscalls("read").is_err());
    }

    #[test]
    fn subcommands_keep_the_ad_hoc_flags_at_top_level() {
        let c = Cli::try_parse_from(["observer", "--comm", "x", "-d", "5s"]).unwrap();
        assert!(c.cmd.is_none());
        assert_eq!(c.select.comm, vec!["x"]);
        let c = Cli::try_parse_from([
            "observer",
            "record",
            "--comm",
            "x",
            "--flush-interval",
            "1s",
            "--db",
            "/tmp/h.db",
        ])
        .unwrap();
        match c.cmd {
            Some(Cmd::Record(r)) => {
                assert_eq!(r.select.comm, vec!["x"]);
                assert_eq!(r.flush_interval, Some(Duration::from_secs(1)));
                assert_eq!(r.retention, None, "unset, so the config file may set it");
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["observer", "--comm", "x", "record"]).is_err());
        let c = Cli::try_parse_from(["observer", "report", "--since", "2h", "-f", "json"]).unwrap();
        match c.cmd {
            Some(Cmd::Report(r)) => {
                assert_eq!(r.since, When::Ago(Duration::from_secs(7200)));
                assert_eq!(r.history.format, HistoryFormat::Json);
                assert_eq!(r.history.until, When::Now);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["observer", "report", "--since", "yesterday-ish"]).is_err());
        assert!(Cli::try_parse_from(["observer", "timeline", "/x"]).is_ok());
    }

    #[test]
    fn when_values() {
        assert_eq!(parse_when("now").unwrap(), When::Now);
        assert_eq!(
            parse_when("90m").unwrap(),
            When::Ago(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_when("1d").unwrap(),
            When::Ago(Duration::from_secs(86_400))
        );
        let at = |s| match parse_when(s).unwrap() {
            When::At(t) => t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            w => panic!("{w:?}"),
        };
        assert_eq!(at("2024-05-01T12:03:10.123Z"), 1_714_564_990_123);
        assert_eq!(at("2024-05-01 14:03:10+02:00"), 1_714_564_990_000);
        assert_eq!(at("2024-05-01T07:03:10-0500"), 1_714_564_990_000);
        assert_eq!(at("2000-02-29T00:00Z"), 951_782_400_000);
        // Local times go through the local zone; they parse.
        assert!(matches!(
            parse_when("2024-05-01 12:00").unwrap(),
            When::At(_)
        ));
        assert!(matches!(parse_when("2024-05-01").unwrap(), When::At(_)));
        // A time alone is today's.
        let today = parse_when(&format!("{} 12:00", local_today())).unwrap();
        assert_eq!(parse_when("12:00").unwrap(), today);
        for bad in ["soon", "2024-13-01", "2024-05-01 25:00", "25:00", "-2h", ""] {
            assert!(parse_when(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5 GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(Cli::try_parse_from(["observer", "--errno", "ENOPE"]).is_err());
        assert!(Cli::try_parse_from(["observer", "--pid", "x"]).is_err());
        let c = Cli::try_parse_from(["observer", "--comm", "0123456789abcdefg"]).unwrap();
        assert!(c.select.filter().is_err());
        let c =
            Cli::try_parse_from(["observer", "-e", "ENOENT,EACCES", "-s", "open,statx"]).unwrap();
        let f = c.select.filter().unwrap();
        assert_eq!(f.errnos, vec![2, 13]);
        assert_eq!(f.syscalls.len(), 5);
    }
}
