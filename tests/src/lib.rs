//! Harness for the privileged integration tests: start the real observer binary, make real
//! failing syscalls from child processes with a unique comm, stop observer, read its JSON.
//!
//! Tests panic with a message (aya's test/README.md), and filter on their own comm or pids so
//! another `apache2` on the host cannot disturb them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod openmetrics;

/// The observer binary under test (xtask sets OBSERVER_BIN to the release build).
pub fn observer_bin() -> PathBuf {
    match std::env::var_os("OBSERVER_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/observer"),
    }
}

/// The failer helper binary.
pub fn failer_bin() -> PathBuf {
    // Integration tests get CARGO_BIN_EXE_failer; the library finds it beside the test binary.
    if let Some(p) = std::env::var_os("FAILER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("failer")
}

/// A comm unique to this test run: at most 15 bytes.
pub fn unique_comm(tag: &str) -> String {
    let n = std::process::id() % 100_000;
    let mut s = format!("{tag}{n}");
    s.truncate(15);
    s
}

pub struct Observer {
    child: Child,
    stderr_rx: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
}

impl Observer {
    /// Starts observer with `args` plus `--format json`, and waits until it says it is watching.
    pub fn start(args: &[&str]) -> Observer {
        Self::start_with(args, &["--format", "json"])
    }

    pub fn start_with(args: &[&str], extra: &[&str]) -> Observer {
        Self::start_env(args, extra, &[])
    }

    /// As `start_with`, with extra environment variables.
    pub fn start_env(args: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Observer {
        Self::start_under(&[], args, extra, env)
    }

    /// As `start_env`, run by `prefix` (`unshare --mount ...`, which execs observer).
    pub fn start_under(
        prefix: &[&str],
        args: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Observer {
        let mut cmd = match prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(observer_bin());
                c
            }
            None => Command::new(observer_bin()),
        };
        let mut child = cmd
            .args(args)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", observer_bin().display()));
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut o = Observer {
            child,
            stderr_rx: rx,
            stderr: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match o.stderr_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let ready = line.contains(": watching ");
                    o.stderr.push(line);
                    if ready {
                        return o;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = o.child.wait().ok();
                    panic!("observer exited before watching ({st:?}): {:?}", o.stderr);
                }
            }
            if Instant::now() > deadline {
                let _ = o.child.kill();
                panic!(
                    "observer did not start watching within 90 s: {:?}",
                    o.stderr
                );
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, then the JSON report it prints.
    pub fn stop(self) -> Value {
        let (out, _) = self.stop_raw();
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("observer printed invalid JSON ({e}): {out}"))
    }

    /// SIGINT; returns (stdout, stderr lines).
    pub fn stop_raw(mut self) -> (String, Vec<String>) {
        // Let the last exits drain from the ring buffer before asking for the report.
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout piped")
            .read_to_string(&mut out)
            .expect("read observer stdout");
        let st = self.child.wait().expect("wait observer");
        while let Ok(l) = self.stderr_rx.recv_timeout(Duration::from_millis(500)) {
            self.stderr.push(l);
        }
        assert!(st.success(), "observer exited with {st}: {:?}", self.stderr);
        (out, std::mem::take(&mut self.stderr))
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `failer --comm COMM --wait ACTIONS...`: it acts once [`go`] writes it a line (a test moves
/// it into a cgroup, or starts observer, first).
pub fn spawn_waiting(comm: &str, actions: &[&str]) -> Child {
    Command::new(failer_bin())
        .args(["--comm", comm, "--wait"])
        .args(actions)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn failer")
}

/// Lets a [`spawn_waiting`] failer act, and waits until it has succeeded.
pub fn go(c: &mut Child) {
    c.stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("write go");
    assert!(c.wait().expect("wait").success());
}

/// Runs failer with `args`; panics when it fails to run.
pub fn failer(args: &[&str]) -> Output {
    let out = Command::new(failer_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run failer: {e}"));
    assert!(
        out.status.success(),
        "failer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The exact bytes of a report row's path (plain string, or `path_base64` when not UTF-8).
pub fn path_of(row: &Value) -> Vec<u8> {
    if let Some(b) = row.get("path_base64").and_then(Value::as_str) {
        return base64_decode(b);
    }
    row["path"].as_str().expect("path").as_bytes().to_vec()
}

/// Rows of a report whose path is `path`.
pub fn rows_for<'a>(report: &'a Value, path: &[u8]) -> Vec<&'a Value> {
    report["paths"]
        .as_array()
        .expect("paths array")
        .iter()
        .filter(|r| path_of(r) == path)
        .collect()
}

/// The single row for (path, errno name); panics with the report when absent or duplicated.
pub fn row<'a>(report: &'a Value, path: &[u8], errno: &str) -> &'a Value {
    let rows: Vec<&Value> = rows_for(report, path)
        .into_iter()
        .filter(|r| r["errno"] == errno)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "expected one row for {:?} {errno}, report: {report:#}",
        String::from_utf8_lossy(path)
    );
    rows[0]
}

pub fn count(row: &Value, syscall: &str) -> u64 {
    row["syscalls"][syscall].as_u64().unwrap_or(0)
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("hex:");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c).expect("base64 alphabet") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_root() -> String {
    std::fs::read_to_string("/proc/self/mounts")
        .expect("/proc/self/mounts")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
        })
        .expect("a cgroup v2 mount")
}

// ---- History mode (`observer record` / `report` / `timeline`) ----

impl Observer {
    /// `observer record` of `comm` into `db`, flushing every second, plus `extra`.
    /// `--config /dev/null`: a configuration file of the host cannot change what it does.
    pub fn record(comm: &str, db: &str, extra: &[&str]) -> Observer {
        let mut args = vec![
            "record",
            "--comm",
            comm,
            "--db",
            db,
            "--flush-interval",
            "1s",
            "--config",
            "/dev/null",
        ];
        args.extend_from_slice(extra);
        Observer::start_with(&args, &[])
    }

    /// SIGKILL, as a crash or the OOM killer would: no chance to flush.
    pub fn kill9(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Sends `sig` (e.g. libc::SIGHUP).
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// The first standard-error line containing `needle` (already read or arriving within
    /// `timeout`); panics with everything read so far when none comes.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.stderr.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(line) = self.stderr_rx.recv_timeout(Duration::from_millis(100)) {
                self.stderr.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!(
            "observer did not log {needle:?} within {timeout:?}: {:?}",
            self.stderr
        );
    }
}

/// Runs observer to completion with `args`; returns (exit code, stdout, stderr).
pub fn run_observer(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(observer_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", observer_bin().display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory under the system temp dir (mode 0755, so an unprivileged worker can traverse
/// it), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("observer-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        TempDir(p)
    }

    /// The directory, as a string.
    pub fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    pub fn join(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `kB` field of a process's `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`); 0 once it is gone.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A process's peak resident memory so far (VmHWM), KiB; 0 once it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// What a process has used so far: nanoseconds on a CPU over all its threads (`schedstat`; the
/// tick-based utime is too coarse for a process that uses a few ms a second), its threads'
/// voluntary context switches (wakeups from a wait), and its RSS (KiB).
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub cpu_ns: u64,
    pub switches: u64,
    pub rss_kib: u64,
}

pub fn usage(pid: u32) -> Usage {
    let mut u = Usage::default();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let sched = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            u.cpu_ns += sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            u.switches += s
                .lines()
                .filter_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    u.rss_kib = status_kib(pid, "VmRSS:");
    u
}

/// Follows a process's peak resident memory until it exits: the high-water mark never falls,
/// so the last reading before exit holds the peak of its whole life, its final report included.
pub struct PeakWatch(std::thread::JoinHandle<u64>);

impl PeakWatch {
    pub fn start(pid: u32) -> PeakWatch {
        PeakWatch(std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                let now = peak_rss_kib(pid);
                if now == 0 {
                    return peak;
                }
                peak = peak.max(now);
                std::thread::sleep(Duration::from_millis(5));
            }
        }))
    }

    /// The peak, KiB, once the process has exited.
    pub fn peak_kib(self) -> u64 {
        self.0.join().expect("peak watcher")
    }
}

/// `observer report --since 1h --format json` of the history in `db`.
pub fn history_report(db: &str) -> Value {
    let (code, out, err) =
        run_observer(&["report", "--since", "1h", "--format", "json", "--db", db]);
    assert_eq!(code, 0, "observer report failed: {err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("observer report printed invalid JSON ({e}): {out}"))
}

// ---- Containers, as the kernel sees them: a mount namespace and a named cgroup ----

/// What a container is to the kernel, made by hand: processes started in a mount namespace of
/// their own (`unshare --mount`, mounts private to it) and in a cgroup v2 directory named the
/// way a runtime or systemd names it (`system.slice/docker-<64 hex>.scope`,
/// `system.slice/<name>.service`). The cgroup is removed on drop, once its processes are killed.
pub struct Confined {
    /// The 64-hex container id (empty for a unit).
    pub id: String,
    /// The cgroup directory.
    pub cgroup: PathBuf,
    /// `system.slice`, when this created it.
    slice: Option<PathBuf>,
}

impl Confined {
    /// A Docker-style container: `<cgroup2>/system.slice/docker-<id>.scope`, a fresh random id.
    pub fn docker() -> Confined {
        let mut raw = [0u8; 32];
        let mut f = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
        f.read_exact(&mut raw).expect("read /dev/urandom");
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        Self::docker_with_id(&id)
    }

    /// A Docker-style container with the given 64-hex id.
    pub fn docker_with_id(id: &str) -> Confined {
        Self::at(&format!("docker-{id}.scope"), id.to_string())
    }

    /// A systemd service's cgroup: `<cgroup2>/system.slice/<name>.service`.
    pub fn unit(name: &str) -> Confined {
        Self::at(&format!("{name}.service"), String::new())
    }

    fn at(dir: &str, id: String) -> Confined {
        let slice = PathBuf::from(cgroup2_root()).join("system.slice");
        let created = (!slice.exists()).then(|| slice.clone());
        let cgroup = slice.join(dir);
        std::fs::create_dir_all(&cgroup)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", cgroup.display()));
        Confined {
            id,
            cgroup,
            slice: created,
        }
    }

    /// `sh -c SCRIPT` in a new mount namespace (private mounts), moved into the cgroup before
    /// the script runs; the script `exec`s the container's main process, so the child's pid is
    /// that process's. Standard error goes to `stderr`.
    pub fn command(&self, script: &str) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!(
                "echo $$ > '{}/cgroup.procs' && {script}",
                self.cgroup.display()
            ));
        c
    }

    /// The processes in the cgroup now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.cgroup.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills every process of the container and waits until none is left.
    pub fn kill_all(&self) {
        assert!(
            self.killed_within(Duration::from_secs(20)),
            "container processes left: {:?}",
            self.pids()
        );
    }

    fn killed_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return true;
            }
            for p in pids {
                // SAFETY: signalling a process of the test's own container.
                unsafe { libc::kill(p as i32, libc::SIGKILL) };
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        self.killed_within(Duration::from_secs(20));
        let _ = std::fs::remove_dir(&self.cgroup);
        if let Some(s) = &self.slice {
            let _ = std::fs::remove_dir(s);
        }
    }
}

/// Installs the Debian packages of `pkgs` that are missing (service starts disabled while it
/// does), once per test process; panics with apt's message when it cannot.
pub fn ensure_packages(pkgs: &[&str]) {
    let installed = |p: &str| {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", p])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
    };
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return;
    }
    let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists() && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok() && {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755)).is_ok()
    };
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            // Other sessions on the machine may hold the dpkg lock for a while.
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("TMPDIR", "/var/tmp")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    let ok = apt(&install) || (apt(&["update", "-q"]) && apt(&install));
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    assert!(ok, "apt-get install {} failed", missing.join(" "));
}
