//! The recorder as a service, against the real binary and kernel: systemd's notification
//! protocol (a unix datagram socket of the test stands in for systemd), what SIGHUP applies at
//! once (the metrics endpoint, the JSON-lines file, retention and the size cap), the modes of
//! the files it writes, and the `/metrics` gauges and label bounds.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use observer_tests::openmetrics::{self, Sample, find};
use observer_tests::{Observer, TempDir, failer, unique_comm};

const MISSING_DIR: &str = "/nonexistent-observer-service";

fn missing(name: &str) -> String {
    format!("{MISSING_DIR}/{name}")
}

/// `observer record` with these arguments (and `--config /dev/null` unless one is given).
fn record(args: &[&str], env: &[(&str, &str)]) -> Observer {
    let mut a = vec!["record"];
    a.extend_from_slice(args);
    if !args.contains(&"--config") {
        a.extend_from_slice(&["--config", "/dev/null"]);
    }
    Observer::start_env(&a, &[], env)
}

/// The host:port of the last "metrics on http://..." line.
fn metrics_addr(obs: &mut Observer, port: Option<u16>) -> String {
    let needle = match port {
        Some(p) => format!("metrics on http://127.0.0.1:{p}/"),
        None => "metrics on http://".to_string(),
    };
    let line = obs.wait_stderr(&needle, Duration::from_secs(10));
    line.split("metrics on http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("address")
        .to_string()
}

/// The body of `GET /metrics`, or None when nothing answers at `addr`.
fn try_scrape(addr: &str) -> Option<String> {
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(c, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    c.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    assert!(head.contains(" 200 "), "{head}");
    Some(body.to_string())
}

fn scrape(addr: &str) -> Vec<Sample> {
    let body = try_scrape(addr).unwrap_or_else(|| panic!("no metrics at {addr}"));
    openmetrics::parse(&body)
}

fn value(s: &[Sample], name: &str) -> f64 {
    find(s, name, &[])
        .unwrap_or_else(|| panic!("no {name}"))
        .value
}

/// Scrapes until `done` holds (20 s at most); the last scrape.
fn scrape_until(addr: &str, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(addr);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

fn mode(p: &str) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

fn lines_of(p: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn wait_lines(p: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = lines_of(p);
        if l.len() >= n {
            return l;
        }
        assert!(Instant::now() < deadline, "{p}: {} of {n} lines", l.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// systemd's end of `$NOTIFY_SOCKET`: each datagram with the pid the kernel says sent it
/// (`SO_PASSCRED`, as systemd checks `NotifyAccess=main`).
struct Notify {
    sock: UnixDatagram,
    path: String,
}

impl Notify {
    fn bind(dir: &TempDir) -> Notify {
        use std::os::fd::AsRawFd;
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on our socket with a valid int.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_PASSCRED");
        Notify { sock, path }
    }

    /// The next message and its sender's pid; None when nothing comes within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<(String, u32)> {
        use std::os::fd::AsRawFd;
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let mut cbuf = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: recvmsg into the buffers described by msg.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return None;
        }
        let mut pid = 0;
        // SAFETY: walking the control messages recvmsg filled in, within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                    let cred = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::ucred>());
                    pid = cred.pid as u32;
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Some((
            String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
            pid,
        ))
    }
}

fn monotonic_us() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

/// `Type=notify`: READY=1 once the capture is attached (a failure right after it is counted),
/// RELOADING=1 with the reload's time and READY=1 again around a SIGHUP, STOPPING=1 on SIGTERM,
/// all from observer's own pid; and a start that fails says why (STATUS=, ERRNO=) and never READY.
#[test]
fn systemd_hears_ready_reloading_stopping_and_why_a_start_failed() {
    let dir = TempDir::new("svc-notify");
    let n = Notify::bind(&dir);
    let db = dir.join("observer.db");
    let comm = unique_comm("obs-ntfy");
    let path = n.path.clone();
    let env = [("NOTIFY_SOCKET", path.as_str())];
    // Attached when it says so: a failure made the moment READY=1 arrives is counted.
    let p = missing("ready.conf");
    let systemd = std::thread::spawn({
        let (comm, p) = (comm.clone(), p.clone());
        move || {
            let ready = n.recv(Duration::from_secs(90));
            if ready.is_some() {
                failer(&["--comm", &comm, &format!("openat:{p}")]);
            }
            (n, ready)
        }
    });
    let mut obs = record(
        &["--comm", &comm, "--db", &db, "--flush-interval", "1s"],
        &env,
    );
    let pid = obs.pid();
    let (n, ready) = systemd.join().unwrap();
    assert_eq!(ready, Some(("READY=1".to_string(), pid)));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = observer_tests::history_report(&db);
        if !observer_tests::rows_for(&r, p.as_bytes()).is_empty() {
            assert_eq!(observer_tests::row(&r, p.as_bytes(), "ENOENT")["count"], 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failure made at READY=1 was not counted: {r:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A start that fails (a bad selector; this database taken): the same one line on standard
    // error and in STATUS=, with ERRNO= when a system call said why, and no READY=1.
    let other_db = dir.join("other.db");
    for (args, errno) in [
        (
            vec![
                "--cgroup",
                "/sys/fs/cgroup/nonexistent-observer-service",
                "--db",
                &other_db,
            ],
            Some(libc::ENOENT),
        ),
        (vec!["--comm", comm.as_str(), "--db", &db], None),
    ] {
        let child = std::process::Command::new(observer_tests::observer_bin())
            .args(["record", "--config", "/dev/null"])
            .args(&args)
            .env("NOTIFY_SOCKET", &n.path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run observer");
        let failed = child.id();
        let out = child.wait_with_output().expect("wait observer");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail: {err}");
        let line = err.trim();
        assert_eq!(line.lines().count(), 1, "{err}");
        let reason = line.strip_prefix("observer: ").expect("observer: ...");
        let (m, from) = n
            .recv(Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{args:?}: nothing on NOTIFY_SOCKET ({err})"));
        assert_eq!(from, failed, "sent by the failing process itself");
        let want = match errno {
            Some(e) => format!("STATUS=failed: {reason}\nERRNO={e}"),
            None => format!("STATUS=failed: {reason}"),
        };
        assert_eq!(m, want, "{args:?}");
        assert_eq!(n.recv(Duration::from_millis(300)), None, "{args:?}");
    }

    let t = monotonic_us();
    obs.signal(libc::SIGHUP);
    let (m, from) = n.recv(Duration::from_secs(10)).expect("RELOADING=1");
    assert_eq!(from, pid);
    let usec: u64 = m
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("{m:?}"));
    assert!(
        usec >= t && usec < t + 10_000_000,
        "MONOTONIC_USEC={usec}, SIGHUP at {t}"
    );
    assert_eq!(
        n.recv(Duration::from_secs(10)),
        Some(("READY=1".to_string(), pid))
    );
    obs.wait_stderr("reloaded", Duration::from_secs(10));

    obs.signal(libc::SIGTERM);
    assert_eq!(
        n.recv(Duration::from_secs(10)),
        Some(("STOPPING=1".to_string(), pid))
    );
    obs.wait_stderr("stopped; history is in", Duration::from_secs(20));
    drop(obs);
    assert_eq!(n.recv(Duration::from_millis(300)), None);
}

/// `systemctl reload`: the metrics endpoint moves to the file's new port (the old one closes),
/// the JSON-lines file is reopened (logrotate renamed it: new lines go to a new file, mode
/// 0600), and a selector change restarts the capture, counted in `/metrics`. The database, its
/// lock, `-wal` and `-shm` are 0600.
#[test]
fn sighup_moves_the_metrics_endpoint_and_reopens_the_jsonl_file() {
    let dir = TempDir::new("svc-hup");
    let db = dir.join("observer.db");
    let cfg = dir.join("observer.toml");
    let jsonl = dir.join("failures.jsonl");
    let rotated = dir.join("failures.jsonl.1");
    let a = unique_comm("obs-hupa");
    let b = unique_comm("obs-hupb");
    let (p1, p2) = (free_port(), free_port());
    let config = |comms: &str, port: u16| {
        std::fs::write(
            &cfg,
            format!(
                "comm = {comms}\ndb = \"{db}\"\nflush-interval = \"1s\"\n\
                 metrics = \"127.0.0.1:{port}\"\njsonl = \"{jsonl}\"\n"
            ),
        )
        .unwrap();
    };
    config(&format!("\"{a}\""), p1);
    let mut obs = record(&["--config", &cfg], &[]);
    let addr1 = metrics_addr(&mut obs, Some(p1));
    let pa = missing("hup-a.conf");
    failer(&["--comm", &a, &format!("openat:{pa}")]);
    assert_eq!(wait_lines(&jsonl, 1)[0]["path"], pa.as_str());
    let s = scrape_until(&addr1, "counted a's failure", |s| {
        find(s, "observer_failures_total", &[("comm", &a)]).is_some()
    });
    assert_eq!(value(&s, "observer_capture_restarts_total"), 0.0);
    // Everything the recorder writes is its owner's alone.
    let files = [
        db.clone(),
        format!("{db}-wal"),
        format!("{db}-shm"),
        format!("{db}.lock"),
        jsonl.clone(),
    ];
    let modes: Vec<(&str, String)> = files
        .iter()
        .map(|f| (f.as_str(), format!("{:o}", mode(f))))
        .collect();
    assert!(modes.iter().all(|(_, m)| m == "600"), "{modes:?}");

    std::fs::rename(&jsonl, &rotated).unwrap();
    config(&format!("[\"{a}\", \"{b}\"]"), p2);
    obs.signal(libc::SIGHUP);
    let l = obs.wait_stderr("reloaded", Duration::from_secs(10));
    assert!(l.contains("metrics: ") && l.contains("selectors: "), "{l}");
    let addr2 = metrics_addr(&mut obs, Some(p2));
    // The old endpoint closes as the recorder goes back to its loop.
    let t = Instant::now();
    while std::net::TcpStream::connect(&addr1).is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the old endpoint {addr1} still answers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("the old endpoint closed {:?} after the reload", t.elapsed());
    let s = scrape(&addr2);
    assert_eq!(value(&s, "observer_capture_restarts_total"), 1.0);
    assert_eq!(
        find(&s, "observer_failures_total", &[("comm", &a)])
            .unwrap()
            .value,
        1.0,
        "counts are kept across the capture's restart"
    );
    let pb = missing("hup-b.conf");
    let pa2 = missing("hup-a2.conf");
    failer(&["--comm", &b, &format!("openat:{pb}")]);
    failer(&["--comm", &a, &format!("openat:{pa2}")]);
    let new = wait_lines(&jsonl, 2);
    let paths: Vec<&str> = new.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [pb.as_str(), pa2.as_str()]);
    assert_eq!(mode(&jsonl), 0o600);
    let old = lines_of(&rotated);
    assert_eq!(old.len(), 1, "nothing more in the rotated file: {old:?}");

    // A reload that changes nothing restarts nothing.
    obs.signal(libc::SIGHUP);
    let l = obs.wait_stderr("nothing changed", Duration::from_secs(10));
    assert!(l.contains("reloaded"), "{l}");
    let s = scrape(&addr2);
    assert_eq!(value(&s, "observer_capture_restarts_total"), 1.0);
    obs.stop_raw();
}

/// Bytes in use in the database, as observer counts them.
fn used_size(conn: &rusqlite::Connection) -> i64 {
    let q = |p: &str| -> i64 {
        conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
            .unwrap()
    };
    (q("page_count") - q("freelist_count")) * q("page_size")
}

/// A reload that shortens `retention` or lowers `max-db-size` deletes at once, not at the next
/// hourly trim: the database is checked as soon as the recorder says it reloaded (and the
/// flush interval is a minute, so no flush's own check runs in between).
#[test]
fn retention_and_the_size_cap_are_enforced_at_once_on_reload() {
    let dir = TempDir::new("svc-trim");
    let db = dir.join("observer.db");
    let cfg = dir.join("observer.toml");
    let comm = unique_comm("obs-trim");
    let config = |retention: &str, cap: &str| {
        std::fs::write(
            &cfg,
            format!(
                "comm = \"{comm}\"\ndb = \"{db}\"\nflush-interval = \"60s\"\n\
                 retention = \"{retention}\"\nmax-db-size = \"{cap}\"\n"
            ),
        )
        .unwrap();
    };
    config("14d", "1GiB");
    let mut obs = record(&["--config", &cfg], &[]);
    // An older history: 200 rows three days old, and 1500 rows in each of the last six hours
    // (about 2.5 MB).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let now_min = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60;
    let old = now_min - 3 * 24 * 60;
    conn.execute_batch(&format!(
        "BEGIN;
         INSERT INTO comms (comm) VALUES ('{comm}');
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9199)
         INSERT INTO paths (path)
           SELECT CAST('{MISSING_DIR}/trim/a-path-long-enough-to-take-some-room/' || i AS BLOB) FROM n;
         INSERT INTO buckets (path_id, errno, minute, syscall, comm_id, uid, gid, count, first_ms, last_ms)
           SELECT p.id, 2,
             CASE WHEN p.rowid <= 200 THEN {old} ELSE {now_min} - 60 * (1 + (p.rowid - 201) / 1500) - 1 END,
             'openat', (SELECT id FROM comms WHERE comm = '{comm}'), 0, 0, 1, 0, 0
           FROM paths p WHERE CAST(p.path AS TEXT) LIKE '{MISSING_DIR}/trim/%';
         COMMIT;"
    ))
    .unwrap();
    let rows = |cond: &str| -> i64 {
        conn.query_row(
            &format!("SELECT count(*) FROM buckets WHERE {cond}"),
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(rows(&format!("minute = {old}")), 200);
    assert_eq!(rows("1"), 9200);
    let before = used_size(&conn);
    assert!(before > 3 << 19, "{before} bytes");

    config("1d", "1GiB");
    obs.signal(libc::SIGHUP);
    let l = obs.wait_stderr("reloaded", Duration::from_secs(10));
    assert!(l.contains("retention: 14days -> 1day"), "{l}");
    obs.wait_stderr("retention: deleted 200 row(s)", Duration::from_secs(1));
    assert_eq!(rows(&format!("minute = {old}")), 0);
    assert_eq!(rows("1"), 9000);

    config("1d", "1MiB");
    obs.signal(libc::SIGHUP);
    obs.wait_stderr("max-db-size", Duration::from_secs(10));
    let l = obs.wait_stderr("size cap: deleted the oldest", Duration::from_secs(1));
    let after = used_size(&conn);
    let left = rows("1");
    eprintln!("size cap: {before} -> {after} bytes, {left} rows left ({l})");
    assert!(after <= 1 << 20, "{after} bytes left");
    assert!(left > 0 && left < 9000, "{left}");
    // The oldest hours went first: what is left is the newest.
    let oldest_left: i64 = conn
        .query_row("SELECT min(minute) FROM buckets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows(&format!("minute >= {oldest_left}")),
        left,
        "what is left is a contiguous newest part"
    );
    assert!(
        oldest_left > now_min - 6 * 60,
        "the oldest hour is gone: {oldest_left}"
    );
    obs.stop_raw();
}

/// `/metrics` of a running recorder: the database's size as the database itself reports it,
/// process names past the 32nd counted under `comm="_other"`, and at most 1000 path labels
/// however many paths fail (`--metrics-top` above 1000 is refused).
#[test]
fn metrics_report_the_database_size_and_bound_names_and_paths() {
    let dir = TempDir::new("svc-metrics");
    let db = dir.join("observer.db");
    let prefix = unique_comm("omc");
    let pattern = format!("{prefix}*");
    let mut obs = record(
        &[
            "--comm",
            &pattern,
            "--db",
            &db,
            "--flush-interval",
            "1s",
            "--metrics",
            "127.0.0.1:0",
            "--metrics-top",
            "1000",
        ],
        &[],
    );
    let addr = metrics_addr(&mut obs, None);
    let conn = rusqlite::Connection::open(&db).unwrap();
    // The gauge and the database agree once both are read between two flushes.
    let db_size = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = value(&scrape(&addr), "observer_db_size_bytes");
            let d = used_size(&conn) as f64;
            let b = value(&scrape(&addr), "observer_db_size_bytes");
            if a == b && a == d {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "observer_db_size_bytes {b}, the database {d}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let size0 = db_size();
    assert!(size0 > 0.0);

    // 40 process names, one failure each on one path.
    let shared = missing("names/shared.conf");
    let names: Vec<String> = (0..40).map(|i| format!("{prefix}-{i}")).collect();
    for n in &names {
        failer(&["--comm", n, &format!("openat:{shared}")]);
    }
    // 1200 more paths: 200 failing three times, 1000 once.
    let hot = missing("top/hot-");
    let cold = missing("top/cold-");
    for _ in 0..3 {
        failer(&["--comm", &names[0], &format!("spray:200:{hot}")]);
    }
    failer(&["--comm", &names[0], &format!("spray:1000:{cold}")]);
    let total = 40.0 + 600.0 + 1000.0;
    let s = scrape_until(&addr, "every failure counted", |s| {
        let sum: f64 = s
            .iter()
            .filter(|x| x.name == "observer_failures_total")
            .map(|x| x.value)
            .sum();
        sum == total
    });
    let series: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "observer_failures_total")
        .collect();
    let other = find(&s, "observer_failures_total", &[("comm", "_other")])
        .expect("a comm=\"_other\" series");
    assert_eq!(other.value, 8.0, "names 33 to 40");
    let named: Vec<&str> = series
        .iter()
        .map(|x| x.labels["comm"].as_str())
        .filter(|c| *c != "_other")
        .collect();
    assert_eq!(named.len(), 32, "{named:?}");
    assert!(named.iter().all(|c| names.iter().any(|n| n == c)));
    assert_eq!(
        find(&s, "observer_failures_total", &[("comm", &names[0])])
            .unwrap()
            .value,
        1.0 + 600.0 + 1000.0
    );

    // The path labels: 1000 of the 1201 failing paths, the most failing ones all in.
    let s = scrape_until(&addr, "1000 path labels", |s| {
        s.iter()
            .filter(|x| x.name == "observer_path_failures")
            .count()
            >= 1000
    });
    let paths: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "observer_path_failures")
        .collect();
    assert_eq!(paths.len(), 1000);
    let of = |p: &str| {
        paths
            .iter()
            .find(|x| x.labels["path"] == p)
            .map(|x| x.value)
    };
    assert_eq!(of(&shared), Some(40.0));
    for i in 0..200 {
        assert_eq!(of(&format!("{hot}{i}")), Some(3.0), "{hot}{i}");
    }
    assert_eq!(
        paths.iter().filter(|x| x.value == 1.0).count(),
        799,
        "the rest: paths that failed once"
    );
    let size1 = db_size();
    assert!(size1 > size0, "1201 paths take room: {size0} -> {size1}");
    eprintln!("observer_db_size_bytes {size0} -> {size1}");
    obs.stop_raw();

    // Bounded: a recorder that took it would run until killed (timeout exits 124).
    let out = std::process::Command::new("timeout")
        .arg("10")
        .arg(observer_tests::observer_bin())
        .args(["record", "--config", "/dev/null", "--db", &db])
        .args(["--metrics-top", "1001"])
        .output()
        .expect("timeout observer record");
    let err = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(code.is_some_and(|c| c != 0 && c != 124), "{code:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("at most 1000"), "{err}");
}
