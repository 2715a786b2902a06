//! The recorder's fleet export: `observer record --metrics ADDR` serves `/metrics` in the OpenMetrics text
//! format (which Prometheus scrapes natively). The recorder publishes a [`Snapshot`] after each
//! poll; the HTTP server (hyper, on the recorder's runtime) renders the latest one per scrape.
//!
//! Cardinality is bounded: errno and syscall are small fixed sets, process names beyond the first
//! [`MAX_COMM_LABELS`] count under `comm="_other"`, and only the `--metrics-top` paths (default
//! 20) that failed most in the last hour get a `path` label. See [`METRICS_DOC`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::escape::escape_path;
use crate::history::bucket::{MAX_COMM_LABELS, Totals};
use crate::history::reader::TopPath;

pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics, as Markdown for the documentation.
#[cfg(test)]
pub(crate) const METRICS_DOC: &str = r#"### Fleet export: `--metrics` (`observer record --metrics 127.0.0.1:9464`)

`GET /metrics`, OpenMetrics text format (Prometheus scrapes it as is).

| metric | type | labels | meaning |
|--------|------|--------|---------|
| `observer_failures_total` | counter | `errno`, `syscall`, `comm`, `container`, `unit` | failing calls counted since observer started; `container` (the 12-digit short id) or `unit` (the systemd service) only when the processes ran in one |
| `observer_path_failures` | gauge | `path`, `errno` | failing calls in the last hour, for the `--metrics-top` (default 20) paths that failed most in it; from the history, refreshed every three flush intervals (30 s at most) |
| `observer_lost_events_total` | counter | | failures the kernel could not deliver (ring buffer full): counts are lower bounds |
| `observer_aggregate_overflow_total` | counter | | failures delivered one by one because the kernel aggregate was full (not lost) |
| `observer_dropped_events_total` | counter | | failures observer dropped: memory full while the database could not be written, or a key whose first record was lost |
| `observer_db_write_errors_total` | counter | | flushes that failed (disk full, ...); capture goes on in memory |
| `observer_db_last_flush_timestamp_seconds` | gauge | | Unix time of the last successful write to the history: a flush, the once-a-minute mark of a recorder with nothing to write, or the session's start; at most two minutes old while the recorder writes |
| `observer_db_size_bytes` | gauge | | bytes in use in the history database |
| `observer_pending_buckets` | gauge | | per-minute counts waiting for the next flush |
| `observer_tracked_keys` | gauge | | kernel keys observer is counting |
| `observer_capture_restarts_total` | counter | | captures restarted by a reload that changed the selectors |
| `observer_build_info` | info | `version` | observer's version |

Cardinality: `errno` and `syscall` take a few values each; `comm` takes the names the selectors
match, at most 32 (later names count under `comm="_other"`); `container` and `unit` together at
most 32 (later ones count under `container="_other"` or `unit="_other"`); `path` labels are at most
`--metrics-top` (at most 1000). Path labels are escaped like the table output (control bytes and
invalid UTF-8 as `\xNN`)."#;

/// What `/metrics` shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) failures: Totals,
    pub(crate) top: Vec<TopPath>,
    pub(crate) lost: u64,
    pub(crate) overflow: u64,
    pub(crate) dropped: u64,
    pub(crate) db_write_errors: u64,
    pub(crate) last_flush_ms: Option<i64>,
    pub(crate) db_size: u64,
    pub(crate) pending_buckets: usize,
    pub(crate) tracked_keys: usize,
    pub(crate) capture_restarts: u64,
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            let m = ConstCounter::new(v);
            let me = enc.encode_descriptor(name, help, None, m.metric_type())?;
            m.encode(me)
        };
        let g = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64| {
            let m = ConstGauge::new(v);
            let me = enc.encode_descriptor(name, help, None, m.metric_type())?;
            m.encode(me)
        };
        {
            let help = format!(
                "Failing calls counted since observer started (process names past the first {MAX_COMM_LABELS} count as _other)"
            );
            let mut fam = enc.encode_descriptor(
                "observer_failures",
                &help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for ((errno, sys, comm, container, unit), n) in &self.failures {
                let mut labels = vec![
                    ("errno", crate::errno::name(*errno)),
                    ("syscall", sys.name().to_string()),
                    ("comm", escape_path(comm.as_bytes())),
                ];
                if !container.is_empty() {
                    labels.push(("container", escape_path(container.as_bytes())));
                }
                if !unit.is_empty() {
                    labels.push(("unit", escape_path(unit.as_bytes())));
                }
                ConstCounter::new(*n).encode(fam.encode_family(&labels)?)?;
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "observer_path_failures",
                "Failing calls in the last hour of the paths that failed most in it",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for t in &self.top {
                let labels = [
                    ("path", escape_path(&t.path)),
                    ("errno", crate::errno::name(t.errno)),
                ];
                ConstGauge::new(i64::try_from(t.count).unwrap_or(i64::MAX))
                    .encode(fam.encode_family(&labels)?)?;
            }
        }
        c(
            &mut enc,
            "observer_lost_events",
            "Failures the kernel could not deliver (ring buffer full)",
            self.lost,
        )?;
        c(
            &mut enc,
            "observer_aggregate_overflow",
            "Failures delivered one by one because the kernel aggregate was full",
            self.overflow,
        )?;
        c(
            &mut enc,
            "observer_dropped_events",
            "Failures observer dropped (memory full while the database was unwritable, or a lost first record)",
            self.dropped,
        )?;
        c(
            &mut enc,
            "observer_db_write_errors",
            "Flushes to the history database that failed",
            self.db_write_errors,
        )?;
        if let Some(ms) = self.last_flush_ms {
            let m = ConstGauge::new(ms as f64 / 1000.0);
            let me = enc.encode_descriptor(
                "observer_db_last_flush_timestamp_seconds",
                "Unix time of the last successful write to the history database",
                None,
                m.metric_type(),
            )?;
            m.encode(me)?;
        }
        g(
            &mut enc,
            "observer_db_size_bytes",
            "Bytes in use in the history database",
            i64::try_from(self.db_size).unwrap_or(i64::MAX),
        )?;
        g(
            &mut enc,
            "observer_pending_buckets",
            "Per-minute counts waiting for the next flush",
            self.pending_buckets as i64,
        )?;
        g(
            &mut enc,
            "observer_tracked_keys",
            "Kernel keys observer is counting",
            self.tracked_keys as i64,
        )?;
        c(
            &mut enc,
            "observer_capture_restarts",
            "Captures restarted by a reload that changed the selectors",
            self.capture_restarts,
        )?;
        let info = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        let me = enc.encode_descriptor(
            "observer_build",
            "observer's build",
            None,
            info.metric_type(),
        )?;
        info.encode(me)?;
        Ok(())
    }
}

/// The exposition of `s`, ending with `# EOF`.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(s.clone()));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// Where `/metrics` is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp(SocketAddr),
    /// A unix socket (mode 0600): only root, or whoever the socket is handed to, can read it.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "http://{a}/metrics"),
            Endpoint::Unix(p) => write!(f, "unix:{} (GET /metrics)", p.display()),
        }
    }
}

/// Connections served at once; more are closed as they come.
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// A request's head must arrive within this, and be at most [`MAX_HEAD`] bytes.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// A connection lives at most this long.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP endpoint: a task on the recorder's runtime, each connection a task of its own,
/// bounded in number, head size and time. Accept errors (EMFILE) pause it, never end it.
pub(crate) struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Where it listens (a TCP port 0 resolved to the one bound).
    pub(crate) addr: Endpoint,
}

/// A listener of either kind.
enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Server {
    /// Binds `at` and serves `state` there; must run inside the runtime.
    pub(crate) fn start(at: Endpoint, state: Arc<Mutex<Snapshot>>) -> Result<Server> {
        let (listener, addr) = match &at {
            Endpoint::Tcp(a) => {
                let l = std::net::TcpListener::bind(a)
                    .map_err(|e| anyhow!("cannot serve metrics on {a}: {e}"))?;
                l.set_nonblocking(true)?;
                let bound = l.local_addr()?;
                (
                    Listener::Tcp(tokio::net::TcpListener::from_std(l)?),
                    Endpoint::Tcp(bound),
                )
            }
            Endpoint::Unix(p) => {
                // In a directory only observer's user may write (created 0700 when missing), so
                // no one can swap the socket for a link between the bind and the chmod below.
                if let Some(dir) = p.parent() {
                    crate::files::private_dir(dir)
                        .with_context(|| format!("cannot serve metrics on {}", p.display()))?;
                }
                // A stale socket of an earlier run is replaced; anything else is not touched.
                if let Ok(m) = std::fs::symlink_metadata(p) {
                    use std::os::unix::fs::FileTypeExt;
                    if !m.file_type().is_socket() {
                        anyhow::bail!(
                            "cannot serve metrics on {}: it exists and is not a socket",
                            p.display()
                        );
                    }
                    std::fs::remove_file(p)?;
                }
                let l = tokio::net::UnixListener::bind(p)
                    .map_err(|e| anyhow!("cannot serve metrics on {}: {e}", p.display()))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
                (Listener::Unix(l), at.clone())
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(accept(listener, state, stopped));
        Ok(Server {
            stop: Some(stop),
            task: Some(task),
            addr,
        })
    }

    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Endpoint::Unix(p) = &self.addr {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept(
    listener: Listener,
    state: Arc<Mutex<Snapshot>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut warned = false;
    loop {
        let next = async {
            match &listener {
                Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
                Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
            }
        };
        let conn = tokio::select! {
            _ = &mut stopped => return,
            c = next => c,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was accepted: wait a
                // little and go on (the endpoint must not end).
                if !warned {
                    log::warn!("metrics: accepting a connection: {e} (retrying)");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        warned = false;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Busy: this connection is closed at once.
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let serve = |req| answer(req, state.clone());
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false);
            let svc = hyper::service::service_fn(serve);
            let done = match conn {
                Conn::Tcp(s) => {
                    tokio::time::timeout(
                        CONNECTION_TIMEOUT,
                        b.serve_connection(hyper_util::rt::TokioIo::new(s), svc),
                    )
                    .await
                }
                Conn::Unix(s) => {
                    tokio::time::timeout(
                        CONNECTION_TIMEOUT,
                        b.serve_connection(hyper_util::rt::TokioIo::new(s), svc),
                    )
                    .await
                }
            };
            if let Ok(Err(e)) = done {
                log::debug!("metrics: a connection ended: {e}");
            }
        });
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

type Body = http_body_util::Full<bytes::Bytes>;

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    state: Arc<Mutex<Snapshot>>,
) -> Result<hyper::Response<Body>, std::convert::Infallible> {
    use hyper::{Method, StatusCode};
    let reply = |status: StatusCode, kind: &'static str, body: String| {
        let mut r = hyper::Response::new(Body::new(bytes::Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    let head = req.method() == Method::HEAD;
    let r = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let snap = match state.lock() {
                Ok(s) => s.clone(),
                Err(p) => p.into_inner().clone(),
            };
            reply(StatusCode::OK, CONTENT_TYPE, render(&snap))
        }
        (&Method::GET | &Method::HEAD, "/") => reply(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "observer: metrics at /metrics\n".into(),
        ),
        (&Method::GET | &Method::HEAD, _) => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        ),
    };
    Ok(if head {
        let (parts, _) = r.into_parts();
        hyper::Response::from_parts(parts, Body::new(bytes::Bytes::new()))
    } else {
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_common::Syscall;
    use std::io::{Read, Write};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot {
            lost: 3,
            last_flush_ms: Some(1_714_564_990_123),
            ..Snapshot::default()
        };
        s.failures.insert(
            (2, Syscall::Openat, "apache2".into(), "".into(), "".into()),
            42,
        );
        s.failures.insert(
            (
                13,
                Syscall::Newfstatat,
                "php\"fpm\n".into(),
                "".into(),
                "".into(),
            ),
            1,
        );
        s.failures.insert(
            (
                2,
                Syscall::Openat,
                "php-fpm8.2".into(),
                "3f2a9c1b2d4e".into(),
                "".into(),
            ),
            5,
        );
        s.top.push(TopPath {
            path: b"/var/www/x.phpp".to_vec(),
            errno: 2,
            count: 40,
        });
        s.top.push(TopPath {
            path: vec![b'/', b'a', b'"', b'\n', 0xff],
            errno: 2,
            count: 2,
        });
        s
    }

    #[test]
    fn renders_openmetrics_with_escaped_labels() {
        let out = render(&snapshot());
        assert!(out.ends_with("# EOF\n"), "{out}");
        assert!(out.contains("# TYPE observer_failures counter\n"), "{out}");
        assert!(
            out.contains(
                "observer_failures_total{errno=\"ENOENT\",syscall=\"openat\",comm=\"apache2\"} 42\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "observer_failures_total{errno=\"ENOENT\",syscall=\"openat\",comm=\"php-fpm8.2\",container=\"3f2a9c1b2d4e\"} 5\n"
            ),
            "{out}"
        );
        // A quote and a newline in a comm or path cannot break a line or a label.
        assert!(out.contains("comm=\"php\\\"fpm\\\\n\""), "{out}");
        assert!(
            out.contains("observer_path_failures{path=\"/a\\\"\\\\n\\\\xff\",errno=\"ENOENT\"} 2"),
            "{out}"
        );
        assert!(out.contains("observer_lost_events_total 3\n"), "{out}");
        assert!(
            out.contains("observer_db_last_flush_timestamp_seconds 1714564990.123\n"),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "observer_build_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{out}"
        );
        for line in out.lines() {
            assert!(!line.is_empty());
        }
    }

    #[test]
    fn serves_metrics_over_http() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let state = Arc::new(Mutex::new(snapshot()));
            let srv = Server::start(Endpoint::Tcp("127.0.0.1:0".parse().unwrap()), state.clone())
                .unwrap();
            let Endpoint::Tcp(addr) = srv.addr.clone() else {
                panic!()
            };
            // The client blocks; the server runs on this runtime meanwhile.
            let get = move |path: &'static str| {
                tokio::task::spawn_blocking(move || {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
                    let mut s = String::new();
                    c.read_to_string(&mut s).unwrap();
                    s
                })
            };
            let r = get("/metrics").await.unwrap();
            assert!(
                r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
                "{r}"
            );
            assert!(r.contains(CONTENT_TYPE), "{r}");
            assert!(r.contains("observer_failures_total{"), "{r}");
            state.lock().unwrap().lost = 9;
            assert!(
                get("/metrics")
                    .await
                    .unwrap()
                    .contains("observer_lost_events_total 9")
            );
            assert!(get("/nope").await.unwrap().contains(" 404 "));
            srv.stop();
        });
    }
}
