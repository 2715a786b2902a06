//! The recorder's fleet export: `observer record --metrics ADDR` serves `/metrics` in the OpenMetrics text
//! format (which Prometheus scrapes natively). The recorder publishes a [`Snapshot`] after each
//! poll; the HTTP thread renders the latest one per scrape.
//!
//! Cardinality is bounded: errno and syscall are small fixed sets, process names beyond the first
//! [`MAX_COMM_LABELS`] count under `comm="_other"`, and only the `--metrics-top` paths (default
//! 20) that failed most in the last hour get a `path` label. See [`METRICS_DOC`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow};
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
| `observer_db_last_flush_timestamp_seconds` | gauge | | Unix time of the last successful flush |
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
                "Unix time of the last successful flush",
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

/// The HTTP endpoint, on its own thread.
pub(crate) struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub(crate) addr: SocketAddr,
}

impl Server {
    pub(crate) fn start(addr: SocketAddr, state: Arc<Mutex<Snapshot>>) -> Result<Server> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow!("cannot serve metrics on {addr}: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("metrics server on {addr}: not an IP socket"))?;
        let server = Arc::new(server);
        let s2 = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&s2, &state))
            .map_err(|e| anyhow!("starting the metrics thread: {e}"))?;
        Ok(Server {
            server,
            thread: Some(thread),
            addr: bound,
        })
    }

    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(server: &tiny_http::Server, state: &Mutex<Snapshot>) {
    use tiny_http::{Header, Method, Response};
    for rq in server.incoming_requests() {
        let path = rq.url().split('?').next().unwrap_or("").to_string();
        let r = match (rq.method(), path.as_str()) {
            (Method::Get | Method::Head, "/metrics") => {
                let snap = match state.lock() {
                    Ok(s) => s.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                let body = render(&snap);
                let h = Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes())
                    .expect("static header");
                rq.respond(Response::from_string(body).with_header(h))
            }
            (Method::Get | Method::Head, "/") => {
                rq.respond(Response::from_string("observer: metrics at /metrics\n"))
            }
            (Method::Get | Method::Head, _) => {
                rq.respond(Response::from_string("not found\n").with_status_code(404))
            }
            _ => rq.respond(Response::from_string("method not allowed\n").with_status_code(405)),
        };
        if let Err(e) = r {
            log::debug!("metrics: answering a scrape: {e}");
        }
    }
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
        let state = Arc::new(Mutex::new(snapshot()));
        let srv = Server::start("127.0.0.1:0".parse().unwrap(), state.clone()).unwrap();
        let get = |path: &str| {
            let mut c = std::net::TcpStream::connect(srv.addr).unwrap();
            write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let r = get("/metrics");
        assert!(
            r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
            "{r}"
        );
        assert!(r.contains(CONTENT_TYPE), "{r}");
        assert!(r.contains("observer_failures_total{"), "{r}");
        state.lock().unwrap().lost = 9;
        assert!(get("/metrics").contains("observer_lost_events_total 9"));
        assert!(get("/nope").contains(" 404 "));
        srv.stop();
    }
}
