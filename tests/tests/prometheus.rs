//! A real Prometheus (Debian's `prometheus`, installed when missing) scraping two recorders that
//! stand for two hosts, with the shipped rules loaded: the fleet queries of the README return both
//! hosts' culprits with their exact counts, and the new-culprit alert fires on the server for the
//! path that started failing, not for the one that failed all along.
//!
//! The server is private: its own configuration, data directory and loopback port, stopped by
//! the test. The rules are dist/prometheus/observer.rules.yml with the new culprit's time scale
//! shortened so the test takes seconds, not hours (see [`RULES_FOR_THE_TEST`]); everything else in
//! the file, and every other alert, is as shipped (promtool tests those at their real durations).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use observer_tests::openmetrics::{self, find};
use observer_tests::{Observer, TempDir, ensure_packages, failer, unique_comm};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const MISSING_DIR: &str = "/nonexistent-observer-prom";

/// The substitutions that make the shipped rules run at test speed: (what, by what, how many
/// times it must occur). "An hour ago" becomes 15 s ago (its 10-minute window 3 s), the "scraped
/// for 75 minutes" guard 25 s, and the new culprit's `for: 1m` 2 s: the same rule, in the same
/// proportions (the guard still reaches further back than the window). Each must match exactly,
/// so a change of the shipped rule breaks this test rather than silently testing something else.
const RULES_FOR_THE_TEST: &[(&str, &str, usize)] = &[
    ("[10m] offset 1h)", "[3s] offset 15s)", 2),
    (
        "(observer_build_info offset 75m)",
        "(observer_build_info offset 25s)",
        1,
    ),
    (
        "expr: instance_path:observer_path_failures:new\n        for: 1m\n",
        "expr: instance_path:observer_path_failures:new\n        for: 2s\n",
        1,
    ),
];

fn shipped_rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/prometheus/observer.rules.yml")
}

fn rules_for_the_test() -> String {
    let mut s = std::fs::read_to_string(shipped_rules()).expect("read the shipped rules");
    for (from, to, n) in RULES_FOR_THE_TEST {
        assert_eq!(
            s.matches(from).count(),
            *n,
            "the shipped rules changed: {from:?} should occur {n} time(s)"
        );
        s = s.replace(from, to);
    }
    s
}

/// Debian's prometheus, installed when missing (its service neither started nor enabled: this
/// test runs its own instance).
fn ensure_prometheus() {
    if Path::new(PROMETHEUS).exists() {
        return;
    }
    ensure_packages(&["prometheus"]);
    let _ = Command::new("update-rc.d")
        .args(["prometheus", "disable"])
        .stdout(Stdio::null())
        .status();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// GET `path` from `addr`; returns (status line, body).
fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    c.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A private Prometheus, killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &TempDir, targets: &[&str]) -> Prometheus {
        let rules = dir.join("observer.rules.yml");
        std::fs::write(&rules, rules_for_the_test()).unwrap();
        let config = dir.join("prometheus.yml");
        let targets = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        // The README's scrape configuration, at test speed.
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: observer\n    static_configs:\n      - targets: [{targets}]\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.0.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={config}"))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb")))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.0.join("prometheus.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PROMETHEUS}: {e}"));
        let mut p = Prometheus { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(&p.addr, "/-/ready").is_some_and(|(s, _)| s.contains(" 200 ")) {
                return p;
            }
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited ({st}): {}", p.logs());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 30 s: {}",
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self) -> String {
        let err = self.log.with_file_name("prometheus.err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }

    /// GET `/api/v1/...`'s `data`.
    fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.addr, path)
            .unwrap_or_else(|| panic!("no answer to {path}: {}", self.logs()));
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(
            status.contains(" 200 ") && v["status"] == "success",
            "{path}: {status}: {body}"
        );
        v["data"].clone()
    }

    /// An instant query's result vector.
    fn query(&self, q: &str) -> Vec<Value> {
        let d = self.api(&format!("/api/v1/query?query={}", url_encode(q)));
        assert_eq!(d["resultType"], "vector", "{q}: {d}");
        d["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `q` until `done` accepts its result (returned), or panics after `secs`.
    fn wait_for(&self, q: &str, secs: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.query(q);
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{q}: not as expected within {secs} s, last {r:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host:port a recorder started with `--metrics 127.0.0.1:0` serves on.
fn metrics_addr(obs: &mut Observer) -> String {
    let line = obs.wait_stderr("metrics on http://", Duration::from_secs(5));
    line.split("metrics on http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("address")
        .to_string()
}

/// Waits until the recorder's own `/metrics` lists `path` with `count` failures in its top.
fn wait_for_top(addr: &str, path: &str, count: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = http_get(addr, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if !body.is_empty() {
            let s = openmetrics::parse(&body);
            if find(&s, "observer_path_failures", &[("path", path)])
                .is_some_and(|x| x.value == count)
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path} never reached {count} in {addr}'s top: {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// (instance, path) -> value of a query's result.
fn by_instance_path(r: &[Value]) -> Vec<(String, String, f64)> {
    let mut v: Vec<(String, String, f64)> = r
        .iter()
        .map(|s| {
            (
                s["metric"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                s["metric"]["path"].as_str().unwrap_or_default().to_string(),
                s["value"][1]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .unwrap_or(f64::NAN),
            )
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

#[test]
fn a_real_prometheus_ranks_two_hosts_culprits_and_fires_the_new_culprit_alert() {
    let t0 = Instant::now();
    ensure_prometheus();
    let dir = TempDir::new("prometheus");
    // Two hosts: each its own recorder, database, metrics port and watched process name.
    let comm_a = unique_comm("obs-pa");
    let comm_b = unique_comm("obs-pb");
    let mut rec_a = Observer::record(
        &comm_a,
        &dir.join("a.db"),
        &["--metrics", "127.0.0.1:0", "--metrics-top", "5"],
    );
    let mut rec_b = Observer::record(
        &comm_b,
        &dir.join("b.db"),
        &["--metrics", "127.0.0.1:0", "--metrics-top", "5"],
    );
    let (host_a, host_b) = (metrics_addr(&mut rec_a), metrics_addr(&mut rec_b));

    // Host b's culprits fail before Prometheus first scrapes it: to Prometheus they have
    // always failed there.
    let b1 = format!("{MISSING_DIR}/b/wp-config.php");
    let b2 = format!("{MISSING_DIR}/b/optional.ini");
    failer(&["--comm", &comm_b, "--repeat", "3", &format!("openat:{b1}")]);
    failer(&["--comm", &comm_b, "--repeat", "1", &format!("access:{b2}")]);
    wait_for_top(&host_b, &b1, 3.0);
    wait_for_top(&host_b, &b2, 1.0);

    let prom = Prometheus::start(&dir, &[&host_a, &host_b]);
    let started = Instant::now();
    // Both hosts scraped, and long enough ago that the rule can tell "new" (the guard of
    // 25 s, at test speed).
    prom.wait_for("observer_build_info offset 26s", 40, |r| r.len() == 2);
    eprintln!(
        "prometheus scraped both hosts for 26 s after {:.1?}",
        started.elapsed()
    );

    // Host a's culprits start failing now.
    let a1 = format!("{MISSING_DIR}/a/class-user.phpp");
    let a2 = format!("{MISSING_DIR}/a/cache/page.html");
    failer(&["--comm", &comm_a, "--repeat", "5", &format!("openat:{a1}")]);
    failer(&[
        "--comm",
        &comm_a,
        "--repeat",
        "2",
        &format!("newfstatat:{a2}"),
    ]);

    // The README's fleet query: each host's top culprit, and its two most failing paths, with
    // their exact counts.
    let top1 = prom.wait_for("topk by (instance) (1, observer_path_failures)", 20, |r| {
        r.len() == 2 && r.iter().all(|s| s["metric"]["path"] != Value::Null) && {
            let v = by_instance_path(r);
            v.iter()
                .any(|(i, p, n)| *i == host_a && *p == a1 && *n == 5.0)
        }
    });
    let mut want = vec![
        (host_a.clone(), a1.clone(), 5.0),
        (host_b.clone(), b1.clone(), 3.0),
    ];
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(by_instance_path(&top1), want, "{top1:?}");
    let top2 = prom.wait_for("topk by (instance) (2, observer_path_failures)", 20, |r| {
        r.len() == 4
    });
    let mut want = vec![
        (host_a.clone(), a1.clone(), 5.0),
        (host_a.clone(), a2.clone(), 2.0),
        (host_b.clone(), b1.clone(), 3.0),
        (host_b.clone(), b2.clone(), 1.0),
    ];
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(by_instance_path(&top2), want, "{top2:?}");
    for s in &top2 {
        assert_eq!(s["metric"]["job"], "observer", "{s}");
        assert_eq!(s["metric"]["errno"], "ENOENT", "{s}");
    }

    // The new-culprit alert fires on the server for host a's new path.
    let deadline = Instant::now() + Duration::from_secs(20);
    let alert = loop {
        let alerts = prom.api("/api/v1/alerts");
        let found = alerts["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|x| {
                    x["labels"]["alertname"] == "ObserverNewCulprit"
                        && x["labels"]["instance"] == host_a.as_str()
                        && x["labels"]["path"] == a1.as_str()
                        && x["state"] == "firing"
                })
                .cloned()
        });
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "ObserverNewCulprit never fired for {a1} on {host_a}: {alerts}\n{}",
            prom.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("ObserverNewCulprit firing after {:.1?}", started.elapsed());
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert_eq!(alert["labels"]["errno"], "ENOENT", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("{a1} started failing (ENOENT) on {host_a}"),
        "{alert}"
    );
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with(&format!("{a1} failed 5 time(s) with ENOENT"))),
        "{alert}"
    );

    // Host b's paths, failing since before the first scrape, never were new: no ALERTS sample
    // ever named them. And on two healthy recorders no other alert fired (each at its shipped
    // duration: written recently, nothing lost, dropped or failing to write, both up).
    let ever = prom.query("count by (alertname, instance, path) (count_over_time(ALERTS[5m]))");
    let mut seen: Vec<(String, String, String)> = ever
        .iter()
        .map(|s| {
            let l = |k: &str| s["metric"][k].as_str().unwrap_or_default().to_string();
            (l("alertname"), l("instance"), l("path"))
        })
        .collect();
    seen.sort();
    let mut want = vec![
        ("ObserverNewCulprit".to_string(), host_a.clone(), a1.clone()),
        ("ObserverNewCulprit".to_string(), host_a.clone(), a2.clone()),
    ];
    want.sort();
    assert_eq!(seen, want, "alerts that were ever pending or firing");

    // The recording rules run on the real series: per-host failure rates for both hosts.
    let rates = prom.query("instance:observer_failures:rate5m");
    assert_eq!(rates.len(), 2, "{rates:?}");
    let ups = prom.query("up{job=\"observer\"} == 1");
    assert_eq!(ups.len(), 2, "{ups:?}");

    drop(prom);
    rec_a.stop_raw();
    rec_b.stop_raw();
    eprintln!("prometheus test took {:.1?}", t0.elapsed());
}
