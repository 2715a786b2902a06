//! Command-line interface.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, ValueEnum};
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
reloads while observer runs: start observer, then `systemctl reload apache2`.";

#[derive(Parser, Debug)]
#[command(name = "observer", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub select: Selection,

    /// Stop after this long and print the report (e.g. 30s, 5m). Default: until Ctrl-C/SIGTERM.
    #[arg(short, long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Refresh period of the live view.
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
