//! `observer record`'s settings: a TOML file (every long option of `observer record` is a key)
//! overridden by the command line ([`Overrides`], which the flag layer fills).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::capture::Filter;
use crate::service::metrics::Endpoint;
use crate::values::{parse_duration, parse_size, parse_syscalls};

/// Where `observer record` keeps its history unless told otherwise.
pub(crate) const DEFAULT_DB: &str = "/var/lib/observer/observer.db";

pub(crate) const DEFAULT_CONFIG: &str = "/etc/observer/observer.toml";
pub(crate) const DEFAULT_FLUSH: Duration = Duration::from_secs(10);
pub(crate) const MAX_FLUSH: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(14 * 86_400);
pub(crate) const DEFAULT_MAX_DB_SIZE: u64 = 1 << 30;
pub(crate) const DEFAULT_METRICS_TOP: usize = 20;
pub(crate) const DEFAULT_EVICT_AFTER: Duration = Duration::from_secs(120);
/// More path labels than this would make /metrics a cardinality problem for Prometheus.
pub(crate) const MAX_METRICS_TOP: usize = 1000;

/// A value that may be written as one item or a list: `comm = "apache2"` or `comm = [...]`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A string ("10s", "ENOENT", "512MiB") or a number (seconds, errno, bytes).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
enum StrOrNum {
    Num(u64),
    Str(String),
}

impl StrOrNum {
    fn text(&self) -> String {
        match self {
            StrOrNum::Num(n) => n.to_string(),
            StrOrNum::Str(s) => s.clone(),
        }
    }
}

/// The file, as written.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    comm: Option<OneOrMany<String>>,
    pid: Option<OneOrMany<u32>>,
    cgroup: Option<OneOrMany<PathBuf>>,
    container: Option<OneOrMany<String>>,
    all: Option<bool>,
    errno: Option<OneOrMany<StrOrNum>>,
    syscalls: Option<OneOrMany<String>>,
    db: Option<PathBuf>,
    flush_interval: Option<StrOrNum>,
    retention: Option<StrOrNum>,
    max_db_size: Option<StrOrNum>,
    metrics: Option<String>,
    metrics_top: Option<usize>,
    jsonl: Option<PathBuf>,
    verbose: Option<bool>,
}

/// What the command line says, over the file: every value is optional but the selection,
/// which replaces the file's as a whole when it names any selector.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    /// The selection as given (not yet checked: it is merged with the file first).
    pub(crate) filter: Filter,
    pub(crate) config: Option<PathBuf>,
    pub(crate) db: Option<PathBuf>,
    pub(crate) flush_interval: Option<Duration>,
    pub(crate) retention: Option<Duration>,
    pub(crate) max_db_size: Option<u64>,
    pub(crate) metrics: Option<String>,
    pub(crate) metrics_top: Option<usize>,
    pub(crate) jsonl: Option<PathBuf>,
    pub(crate) verbose: bool,
    pub(crate) evict_after: Option<Duration>,
}

/// Where `--jsonl` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JsonlTarget {
    Stdout,
    File(PathBuf),
}

/// What `observer record` runs with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    pub(crate) filter: Filter,
    pub(crate) db: PathBuf,
    pub(crate) flush_interval: Duration,
    pub(crate) retention: Duration,
    pub(crate) max_db_size: u64,
    pub(crate) metrics: Option<Endpoint>,
    pub(crate) metrics_top: usize,
    pub(crate) jsonl: Option<JsonlTarget>,
    pub(crate) verbose: bool,
    /// Idle keys are forgotten after this long (`--evict-after`, not a file key).
    pub(crate) evict_after: Duration,
    /// The file these came from, if any.
    pub(crate) source: Option<PathBuf>,
}

/// Reads the configuration file (`--config`, or the default one if it exists) and applies the
/// command line over it.
pub(crate) fn load(args: &Overrides) -> Result<Settings> {
    let (file, source) = match &args.config {
        Some(p) => (read(p)?, Some(p.clone())),
        None => {
            let p = Path::new(DEFAULT_CONFIG);
            match std::fs::metadata(p) {
                Ok(_) => (read(p)?, Some(p.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (File::default(), None),
                Err(e) => bail!("cannot read {DEFAULT_CONFIG}: {e}"),
            }
        }
    };
    merge(file, args, source)
}

/// The settings a configuration file's text gives, with no command line (for the tests).
#[cfg(test)]
pub(crate) fn parse_text(text: &str) -> Result<Settings> {
    merge(parse(text)?, &Overrides::default(), None)
}

fn read(p: &Path) -> Result<File> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read the configuration file {}", p.display()))?;
    parse(&text).with_context(|| format!("in {}", p.display()))
}

fn parse(text: &str) -> Result<File> {
    toml::from_str(text).map_err(|e| {
        // toml's messages span lines (a source excerpt): keep them on one.
        let msg = e.message().to_string();
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                anyhow::anyhow!("line {line}: {msg}")
            }
            None => anyhow::anyhow!("{msg}"),
        }
    })
}

fn merge(file: File, args: &Overrides, source: Option<PathBuf>) -> Result<Settings> {
    let cli = &args.filter;
    let mut sel = if cli.selects() {
        Filter {
            comms: cli.comms.clone(),
            pids: cli.pids.clone(),
            cgroups: cli.cgroups.clone(),
            containers: cli.containers.clone(),
            all: cli.all,
            ..Filter::default()
        }
    } else {
        Filter {
            comms: file.comm.map(OneOrMany::into_vec).unwrap_or_default(),
            pids: file.pid.map(OneOrMany::into_vec).unwrap_or_default(),
            cgroups: file.cgroup.map(OneOrMany::into_vec).unwrap_or_default(),
            containers: file.container.map(OneOrMany::into_vec).unwrap_or_default(),
            all: file.all.unwrap_or(false),
            ..Filter::default()
        }
    };
    sel.errnos = if !cli.errnos.is_empty() {
        cli.errnos.clone()
    } else {
        let mut v = Vec::new();
        for e in file.errno.map(OneOrMany::into_vec).unwrap_or_default() {
            let t = e.text();
            v.push(crate::errno::parse(&t).ok_or_else(|| {
                anyhow::anyhow!(
                    "errno: unknown error {t:?} (use a name such as ENOENT or a number)"
                )
            })?);
        }
        v
    };
    sel.syscalls = if !cli.syscalls.is_empty() {
        cli.syscalls.clone()
    } else {
        let mut v = Vec::new();
        for s in file.syscalls.map(OneOrMany::into_vec).unwrap_or_default() {
            v.extend(parse_syscalls(&s).context("syscalls")?);
        }
        v
    };
    let filter = sel.checked()?;

    let dur =
        |cli: Option<Duration>, f: Option<StrOrNum>, key: &str, default: Duration| match (cli, f) {
            (Some(d), _) => Ok(d),
            (None, Some(v)) => parse_duration(&v.text()).with_context(|| key.to_string()),
            (None, None) => Ok(default),
        };
    let flush_interval = dur(
        args.flush_interval,
        file.flush_interval,
        "flush-interval",
        DEFAULT_FLUSH,
    )?;
    if flush_interval > MAX_FLUSH {
        bail!(
            "flush-interval {} is too long: at most 60s (a crash loses up to one interval)",
            humantime::format_duration(flush_interval)
        );
    }
    if flush_interval < Duration::from_millis(100) {
        bail!("flush-interval must be at least 100ms");
    }
    let retention = dur(
        args.retention,
        file.retention,
        "retention",
        DEFAULT_RETENTION,
    )?;
    if retention < Duration::from_secs(60) {
        bail!("retention must be at least 1m");
    }
    let max_db_size = match (args.max_db_size, file.max_db_size) {
        (Some(n), _) => n,
        (None, Some(v)) => parse_size(&v.text()).context("max-db-size")?,
        (None, None) => DEFAULT_MAX_DB_SIZE,
    };
    if max_db_size < 1 << 20 {
        bail!("max-db-size must be at least 1MiB");
    }
    let metrics = match args.metrics.as_deref().or(file.metrics.as_deref()) {
        None => None,
        Some(a) => parse_listen(a)?,
    };
    let metrics_top = args
        .metrics_top
        .or(file.metrics_top)
        .unwrap_or(DEFAULT_METRICS_TOP);
    if metrics_top > MAX_METRICS_TOP {
        bail!("metrics-top {metrics_top} is too many path labels: at most {MAX_METRICS_TOP}");
    }
    let jsonl = args.jsonl.clone().or(file.jsonl).map(|p| {
        if p.as_os_str() == "-" {
            JsonlTarget::Stdout
        } else {
            JsonlTarget::File(p)
        }
    });
    Ok(Settings {
        filter,
        db: args
            .db
            .clone()
            .or(file.db)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
        flush_interval,
        retention,
        max_db_size,
        metrics,
        metrics_top,
        jsonl,
        verbose: args.verbose || file.verbose.unwrap_or(false),
        evict_after: args.evict_after.unwrap_or(DEFAULT_EVICT_AFTER),
        source,
    })
}

/// `HOST:PORT` (a name resolves to its first address), `unix:PATH` (an absolute path), or
/// `off`/`none`.
pub(crate) fn parse_listen(a: &str) -> Result<Option<Endpoint>> {
    let a = a.trim();
    if a.is_empty() || a.eq_ignore_ascii_case("off") || a.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if let Some(p) = a.strip_prefix("unix:") {
        if !p.starts_with('/') {
            anyhow::bail!("metrics: unix:PATH needs an absolute path, not {p:?}");
        }
        return Ok(Some(Endpoint::Unix(PathBuf::from(p))));
    }
    if let Ok(s) = a.parse::<SocketAddr>() {
        return Ok(Some(Endpoint::Tcp(s)));
    }
    let bad = || {
        anyhow::anyhow!(
            "metrics: invalid address {a:?}: use HOST:PORT, e.g. 127.0.0.1:9464, \
             unix:/run/observer/metrics.sock, or off"
        )
    };
    if !a.contains(':') {
        return Err(bad());
    }
    a.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .map(|s| Some(Endpoint::Tcp(s)))
        .ok_or_else(bad)
}

impl Settings {
    /// What changed from `self` to `new`, as "key: old -> new" items.
    pub(crate) fn changes(&self, new: &Settings) -> Vec<String> {
        let mut v = Vec::new();
        let mut diff = |k: &str, a: String, b: String| {
            if a != b {
                v.push(format!("{k}: {a} -> {b}"));
            }
        };
        diff("selectors", self.filter.describe(), new.filter.describe());
        if self.filter.syscalls != new.filter.syscalls {
            let n = |f: &Filter| {
                if f.syscalls.is_empty() {
                    "all".to_string()
                } else {
                    f.syscalls
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(",")
                }
            };
            diff("syscalls", n(&self.filter), n(&new.filter));
        }
        diff(
            "db",
            self.db.display().to_string(),
            new.db.display().to_string(),
        );
        let d = |x: Duration| humantime::format_duration(x).to_string();
        diff(
            "flush-interval",
            d(self.flush_interval),
            d(new.flush_interval),
        );
        diff("retention", d(self.retention), d(new.retention));
        diff(
            "max-db-size",
            self.max_db_size.to_string(),
            new.max_db_size.to_string(),
        );
        let m = |x: &Option<Endpoint>| x.as_ref().map_or("off".to_string(), |a| a.to_string());
        diff("metrics", m(&self.metrics), m(&new.metrics));
        diff(
            "metrics-top",
            self.metrics_top.to_string(),
            new.metrics_top.to_string(),
        );
        let j = |x: &Option<JsonlTarget>| match x {
            None => "off".to_string(),
            Some(JsonlTarget::Stdout) => "-".to_string(),
            Some(JsonlTarget::File(p)) => p.display().to_string(),
        };
        diff("jsonl", j(&self.jsonl), j(&new.jsonl));
        diff("verbose", self.verbose.to_string(), new.verbose.to_string());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str, o: &Overrides) -> Result<Settings> {
        merge(parse(toml)?, o, None)
    }

    fn none() -> Overrides {
        Overrides::default()
    }

    #[test]
    fn defaults_without_a_file() {
        let s = settings("", &none()).unwrap();
        assert_eq!(
            s.filter.effective_comms(),
            vec!["apache2", "httpd", "php-fpm*"]
        );
        assert_eq!(s.db, PathBuf::from(DEFAULT_DB));
        assert_eq!(s.flush_interval, DEFAULT_FLUSH);
        assert_eq!(s.retention, DEFAULT_RETENTION);
        assert_eq!(s.max_db_size, DEFAULT_MAX_DB_SIZE);
        assert_eq!(s.metrics, None);
        assert_eq!(s.metrics_top, 20);
        assert_eq!(s.jsonl, None);
    }

    #[test]
    fn the_file_sets_everything_and_the_command_line_overrides_it() {
        let toml = r#"
            comm = ["apache2", "php-fpm8.2"]
            errno = ["ENOENT", 13]
            syscalls = "open"
            db = "/srv/h.db"
            flush-interval = "5s"
            retention = 86400
            max-db-size = "256MiB"
            metrics = "127.0.0.1:9464"
            metrics-top = 5
            jsonl = "-"
        "#;
        let s = settings(toml, &none()).unwrap();
        assert_eq!(s.filter.comms, vec!["apache2", "php-fpm8.2"]);
        assert_eq!(s.filter.errnos, vec![2, 13]);
        assert_eq!(s.filter.syscalls.len(), 4);
        assert_eq!(s.db, PathBuf::from("/srv/h.db"));
        assert_eq!(s.flush_interval, Duration::from_secs(5));
        assert_eq!(s.retention, Duration::from_secs(86_400));
        assert_eq!(s.max_db_size, 256 << 20);
        assert_eq!(
            s.metrics,
            Some(Endpoint::Tcp("127.0.0.1:9464".parse().unwrap()))
        );
        assert_eq!(s.metrics_top, 5);
        assert_eq!(s.jsonl, Some(JsonlTarget::Stdout));

        let s = settings(
            toml,
            &Overrides {
                filter: Filter {
                    pids: vec![1],
                    ..Filter::default()
                },
                flush_interval: Some(Duration::from_secs(1)),
                metrics: Some("off".into()),
                db: Some("/x.db".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert!(
            s.filter.comms.is_empty(),
            "CLI selectors replace the file's"
        );
        assert_eq!(s.filter.pids, vec![1]);
        assert_eq!(
            s.filter.errnos,
            vec![2, 13],
            "other keys still come from the file"
        );
        assert_eq!(s.flush_interval, Duration::from_secs(1));
        assert_eq!(s.metrics, None);
        assert_eq!(s.db, PathBuf::from("/x.db"));
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let e = format!(
            "{:#}",
            settings("comm = [\"a\"]\nflush-intervall = \"1s\"\n", &none()).unwrap_err()
        );
        assert!(e.contains("line 2") && e.contains("flush-intervall"), "{e}");
        let e = format!(
            "{:#}",
            settings("flush-interval = \"2m\"", &none()).unwrap_err()
        );
        assert!(e.contains("at most 60s"), "{e}");
        let e = format!(
            "{:#}",
            settings("errno = [\"ENOPE\"]", &none()).unwrap_err()
        );
        assert!(e.contains("ENOPE"), "{e}");
        let e = format!(
            "{:#}",
            settings("max-db-size = \"huge\"", &none()).unwrap_err()
        );
        assert!(e.contains("max-db-size"), "{e}");
        let e = format!(
            "{:#}",
            settings("metrics = \"nowhere\"", &none()).unwrap_err()
        );
        assert!(e.contains("HOST:PORT"), "{e}");
        let e = format!(
            "{:#}",
            settings("all = true\ncomm = \"x\"", &none()).unwrap_err()
        );
        assert!(e.contains("--all"), "{e}");
        assert!(settings("comm = 3", &none()).is_err());
    }

    #[test]
    fn the_shipped_example_is_valid_and_means_the_defaults() {
        let text = include_str!("../../../dist/observer.toml");
        let s = merge(parse(text).unwrap(), &none(), None).unwrap();
        let d = settings("", &none()).unwrap();
        assert!(d.changes(&s).is_empty(), "{:?}", d.changes(&s));
    }

    #[test]
    fn an_explicit_missing_file_is_an_error() {
        let e = format!(
            "{:#}",
            load(&Overrides {
                config: Some("/nonexistent/observer.toml".into()),
                ..Overrides::default()
            })
            .unwrap_err()
        );
        assert!(e.contains("/nonexistent/observer.toml"), "{e}");
    }

    #[test]
    fn changes_name_what_differs() {
        let a = settings("", &none()).unwrap();
        let b = settings("flush-interval = \"2s\"\ncomm = \"php-fpm8.2\"", &none()).unwrap();
        let c = a.changes(&b);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(
            c[0].starts_with("selectors: comm apache2|httpd|php-fpm* -> comm php-fpm8.2"),
            "{c:?}"
        );
        assert!(a.changes(&a.clone()).is_empty());
    }
}
