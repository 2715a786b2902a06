//! End to end against a real Apache + mod_php.
//!
//! Each test runs a private Apache (its own configuration, pid file, loopback port and logs
//! under `/tmp/observer-e2e-*`) serving the small PHP application in `tests/apache/www`, which
//! makes the benign failing lookups of a healthy site (`.htaccess` at every level, DirectoryIndex
//! fallbacks, optional drop-ins probed with `file_exists`/`is_file`, a missing translation, a
//! template lookup in a child theme). Observer runs with its default selection (processes named
//! `apache2`); each scenario serves healthy traffic, then breaks the service one way, as the
//! postmortems in INCIDENTS.md tell it, and serves more traffic or reloads. The culprit must be
//! ranked first with the right errno and a correct hint; a healthy run must not put a strong
//! hint on anything; strace, attached to the same workers for the same traffic, must see the
//! same failing (path, errno) pairs; and the responses must not change when observer watches.
//!
//! The suite installs apache2 and libapache2-mod-php (and strace) when missing. It never
//! touches the system's Apache. One scenario renames a module file of the apache2-bin package
//! (loaded by the private instance only) and a guard puts it back, also on panic.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use observer_tests::{Observer, TempDir, count, history_report, path_of, run_observer};
use serde_json::Value;

/// The fixtures: configuration templates and the PHP application.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apache");
const MODULES: &str = "/usr/lib/apache2/modules";
const PHP_LIB: &str = "/usr/lib/php";
/// The module this instance loads and the deleted-module scenario removes (apache2-bin ships it;
/// Debian's own configuration does not enable it).
const SPELING: &str = "mod_speling.so";
/// The PHP extension the application needs (`extension=calendar.so`, as Debian ships it).
const EXTENSION: &str = "calendar.so";
/// What the suite needs; `apt-get install` runs only for the missing ones.
const PACKAGES: [&str; 3] = ["apache2", "libapache2-mod-php", "strace"];
/// How long Apache may take to start, to reload, or to have its workers up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages of the site and what a healthy site answers.
const PAGES: [(&str, u16); 9] = [
    ("/", 200),
    ("/index.php/about", 200),
    ("/index.php/calendar", 200),
    ("/docs/", 200),
    ("/assets/style.css", 200),
    // A bot's 404 through the front controller: a template lookup that finds nothing.
    ("/index.php/nope", 404),
    ("/favicon.ico", 404),
    // Denied by the site's configuration (config/ is not for browsers).
    ("/config/app.php", 403),
    ("/index.php/about?from=e2e", 200),
];

// ---------------------------------------------------------------------------------------------
// Packages, host facts, locking
// ---------------------------------------------------------------------------------------------

fn deb_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).ends_with(" installed")
        })
}

fn apt_get(args: &[&str]) -> bool {
    eprintln!("apache e2e: apt-get {}", args.join(" "));
    Command::new("apt-get")
        .args(args)
        .env("TMPDIR", "/var/tmp")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the missing packages, once per test binary run.
fn packages_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let missing: Vec<&str> = PACKAGES
            .iter()
            .copied()
            .filter(|p| !deb_installed(p))
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
        install.extend(&missing);
        if !apt_get(&install) {
            assert!(apt_get(&["update", "-q"]), "apt-get update failed");
            assert!(
                apt_get(&install),
                "apt-get install {} failed",
                missing.join(" ")
            );
        }
        let still: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|p| !deb_installed(p))
            .collect();
        assert!(still.is_empty(), "still not installed: {}", still.join(" "));
    });
}

/// Serializes the scenarios of every test process on the host: each renames system files or
/// watches every `apache2`, so two at once would see each other.
struct SuiteLock {
    _file: fs::File,
}

fn suite_lock() -> SuiteLock {
    let path = std::env::temp_dir().join("observer-apache-e2e.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", path.display());
    SuiteLock { _file: f }
}

/// `libphp8.2.so`: the PHP module Debian installed.
fn php_module() -> String {
    let mut names: Vec<String> = fs::read_dir(MODULES)
        .unwrap_or_else(|e| panic!("{MODULES}: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("libphp") && n.ends_with(".so"))
        .collect();
    names.sort();
    names
        .pop()
        .unwrap_or_else(|| panic!("no libphp*.so in {MODULES}"))
}

/// PHP's extension directory, `/usr/lib/php/20220829` (the API version; it has calendar.so).
fn extension_dir() -> String {
    let mut dirs: Vec<String> = fs::read_dir(PHP_LIB)
        .unwrap_or_else(|e| panic!("{PHP_LIB}: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
        .filter(|n| Path::new(PHP_LIB).join(n).join(EXTENSION).is_file())
        .collect();
    dirs.sort();
    let d = dirs
        .pop()
        .unwrap_or_else(|| panic!("no {PHP_LIB}/<api>/{EXTENSION}"));
    format!("{PHP_LIB}/{d}")
}

/// The same directory name off by one in its last digit: a mistyped `extension_dir`.
fn mistyped_sibling(dir: &str) -> String {
    let mut b = dir.as_bytes().to_vec();
    let last = b.last_mut().expect("non-empty");
    *last = if *last == b'9' { b'8' } else { *last + 1 };
    let s = String::from_utf8(b).expect("ascii");
    assert!(
        !Path::new(&s).exists(),
        "{s} exists: cannot mistype into it"
    );
    s
}

/// The uid Apache's workers run as (`User www-data`).
fn www_data_uid() -> u32 {
    let name = CString::new("www-data").unwrap();
    // SAFETY: getpwnam returns null or a pointer to a static struct, read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no user www-data");
    unsafe { (*pw).pw_uid }
}

/// The package that ships `path` (`dpkg-query -S`).
fn dpkg_owner(path: &str) -> String {
    let out = Command::new("dpkg-query")
        .args(["-S", path])
        .output()
        .expect("dpkg-query");
    assert!(out.status.success(), "no package owns {path}");
    let s = String::from_utf8_lossy(&out.stdout);
    let (pkgs, _) = s.trim().split_once(": ").expect("pkg: path");
    pkgs.split(", ")
        .next()
        .expect("a package")
        .split(':')
        .next()
        .unwrap()
        .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

// ---------------------------------------------------------------------------------------------
// A file of the system moved away for a scenario, and put back
// ---------------------------------------------------------------------------------------------

/// Where a module file waits while its scenario runs: same filesystem, outside the modules
/// directory (so nothing there looks like it).
fn parked(path: &str) -> PathBuf {
    let p = Path::new(path);
    let dir = p.parent().and_then(Path::parent).expect("a grandparent");
    dir.join(format!(
        ".observer-e2e-{}",
        p.file_name().unwrap().to_string_lossy()
    ))
}

/// A system file moved away; `Drop` puts it back (also when the test panics).
struct MovedAway {
    from: PathBuf,
    to: PathBuf,
}

impl MovedAway {
    fn new(path: &str) -> MovedAway {
        let to = parked(path);
        fs::rename(path, &to)
            .unwrap_or_else(|e| panic!("cannot move {path} to {}: {e}", to.display()));
        MovedAway {
            from: PathBuf::from(path),
            to,
        }
    }
}

impl Drop for MovedAway {
    fn drop(&mut self) {
        if let Err(e) = fs::rename(&self.to, &self.from) {
            eprintln!(
                "apache e2e: CANNOT RESTORE {} from {}: {e}",
                self.from.display(),
                self.to.display()
            );
        }
    }
}

/// A run killed mid-scenario (SIGKILL skips guards) left a module parked: put it back.
fn restore_parked() {
    let path = format!("{MODULES}/{SPELING}");
    let p = parked(&path);
    if p.exists() && !Path::new(&path).exists() {
        eprintln!("apache e2e: restoring {path} left parked by an earlier run");
        fs::rename(&p, &path).unwrap_or_else(|e| panic!("cannot restore {path}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The private Apache
// ---------------------------------------------------------------------------------------------

struct Response {
    status: u16,
    body: Vec<u8>,
}

struct Apache {
    root: PathBuf,
    port: u16,
    ext_dir: String,
    child: Child,
    /// Held until this instance is gone (fields drop after `Drop::drop`): the next scenario
    /// starts only then.
    lock: Option<SuiteLock>,
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("@{k}@"), v);
    }
    assert!(
        !s.contains("@ROOT@") && !s.contains("@PORT@"),
        "unfilled template: {s}"
    );
    s
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// Where the instances live: a temporary directory that the workers (www-data) can traverse.
fn e2e_base() -> PathBuf {
    let searchable =
        |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0);
    [
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
    ]
    .into_iter()
    .find(|d| d.ancestors().all(searchable))
    .expect("no temporary directory that www-data can traverse (tried $TMPDIR, /tmp, /var/tmp)")
}

/// Runs apache2 with the environment a service manager gives it (no LD_LIBRARY_PATH from cargo,
/// whose directories the loader would probe), plus PHP's drop-in directory.
fn apache2_cmd(root: &Path) -> Command {
    let mut c = Command::new(apache2_bin());
    c.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C")
        // PHP reads its drop-ins from here, not from /etc/php/*/apache2/conf.d.
        .env("PHP_INI_SCAN_DIR", root.join("php/conf.d"))
        .arg("-f")
        .arg(root.join("conf/httpd.conf"))
        .stdin(Stdio::null());
    c
}

/// Starts apache2 in the foreground on the instance under `root` (our child, its own process
/// group); its standard error goes to `logs/stderr.log`, appended.
fn launch(root: &Path) -> Child {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("logs/stderr.log"))
        .unwrap();
    apache2_cmd(root)
        .args(["-k", "start", "-DFOREGROUND"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start apache2: {e}"))
}

fn apache2_bin() -> &'static str {
    if Path::new("/usr/sbin/apache2").exists() {
        "/usr/sbin/apache2"
    } else {
        "apache2"
    }
}

impl Apache {
    /// A private instance in the foreground (our child, its own process group), answering.
    fn start() -> Apache {
        packages_ready();
        let mut lock = Some(suite_lock());
        restore_parked();
        // The port is free when picked; should something take it before Apache binds, pick again.
        for attempt in 1..=3 {
            let mut a = Apache::spawn(lock.take().expect("lock"));
            let deadline = Instant::now() + START_TIMEOUT;
            let up = loop {
                if let Ok(Some(st)) = a.child.try_wait() {
                    let logs = a.logs();
                    if attempt < 3 && logs.contains("Address already in use") {
                        break false;
                    }
                    panic!("apache2 exited at start ({st}):\n{logs}");
                }
                if TcpStream::connect_timeout(&a.addr(), Duration::from_millis(200)).is_ok()
                    && a.root.join("run/apache2.pid").exists()
                {
                    break true;
                }
                assert!(
                    Instant::now() < deadline,
                    "apache2 did not answer on {} within {START_TIMEOUT:?}:\n{}",
                    a.addr(),
                    a.logs()
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            if up {
                // Every worker up before anything is measured.
                a.wait_workers(2);
                return a;
            }
            lock = a.lock.take();
        }
        unreachable!("the last attempt panics")
    }

    /// Writes the configuration and the site under a fresh temporary root and starts Apache.
    fn spawn(lock: SuiteLock) -> Apache {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = e2e_base().join(format!(
            "observer-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        for d in ["conf/sites-enabled", "run", "logs", "php/conf.d"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for d in [
            "",
            "conf",
            "conf/sites-enabled",
            "run",
            "logs",
            "php",
            "php/conf.d",
        ] {
            fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
        }
        copy_tree(&Path::new(FIXTURES).join("www"), &root.join("www"));

        let port = free_port();
        let ext_dir = extension_dir();
        let root_s = root.to_str().expect("utf-8 temp dir").to_string();
        let port_s = port.to_string();
        let php = php_module();
        let vars = [
            ("ROOT", root_s.as_str()),
            ("PORT", port_s.as_str()),
            ("MODULES", MODULES),
            ("PHP_MODULE", php.as_str()),
            ("EXTENSION_DIR", ext_dir.as_str()),
        ];
        for (src, dst) in [
            ("httpd.conf", "conf/httpd.conf"),
            ("sites-enabled/app.conf", "conf/sites-enabled/app.conf"),
            ("mime.types", "conf/mime.types"),
            ("php.ini", "php/php.ini"),
            ("php-conf.d/20-calendar.ini", "php/conf.d/20-calendar.ini"),
        ] {
            let t = fs::read_to_string(Path::new(FIXTURES).join(src))
                .unwrap_or_else(|e| panic!("fixture {src}: {e}"));
            fs::write(root.join(dst), render(&t, &vars)).unwrap();
        }

        let child = launch(&root);
        Apache {
            root,
            port,
            ext_dir,
            child,
            lock: Some(lock),
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    fn www(&self, rel: &str) -> String {
        format!("{}/www/{rel}", self.root.display())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["logs/stderr.log", "logs/error.log"] {
            let text = fs::read_to_string(self.root.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            s.push_str(&format!("--- {f} (last {} lines)\n", tail.len()));
            for l in tail {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// One HTTP/1.0 GET on loopback.
    fn get(&self, target: &str) -> Response {
        let mut s = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {}: {e}\n{}", self.addr(), self.logs()));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nUser-Agent: observer-e2e\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("GET {target}: {e}"));
        let head_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("GET {target}: no header end in {raw:?}"));
        let head = String::from_utf8_lossy(&raw[..head_end]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("GET {target}: bad status line {head:?}"));
        Response {
            status,
            body: raw[head_end + 4..].to_vec(),
        }
    }

    /// Every page once per round; returns the (page, status) answers.
    fn browse(&self, rounds: usize) -> Vec<(String, u16)> {
        let mut out = Vec::new();
        for _ in 0..rounds {
            for (page, _) in PAGES {
                out.push((page.to_string(), self.get(page).status));
            }
        }
        out
    }

    /// Healthy traffic: every page answers as a healthy site does.
    fn healthy(&self, rounds: usize) {
        for _ in 0..rounds {
            for (page, want) in PAGES {
                let r = self.get(page);
                assert_eq!(
                    r.status,
                    want,
                    "GET {page} on the healthy site: {}\n{}",
                    String::from_utf8_lossy(&r.body),
                    self.logs()
                );
            }
        }
    }

    /// `apache2 -k graceful`, as a reload does.
    fn graceful(&self) -> Output {
        apache2_cmd(&self.root)
            .args(["-k", "graceful"])
            .output()
            .expect("apache2 -k graceful")
    }

    fn restarts(&self) -> usize {
        fs::read_to_string(self.root.join("logs/error.log"))
            .unwrap_or_default()
            .matches("resuming normal operations")
            .count()
    }

    /// A successful graceful reload: waits for the new generation of workers.
    fn reload(&self) {
        let before = self.restarts();
        let out = self.graceful();
        assert!(
            out.status.success(),
            "apache2 -k graceful failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        let deadline = Instant::now() + START_TIMEOUT;
        while self.restarts() <= before {
            assert!(
                Instant::now() < deadline,
                "no restart after graceful:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_workers(2);
    }

    /// The parent and its workers.
    fn pids(&self) -> Vec<u32> {
        let parent = self.child.id();
        let mut pids = vec![parent];
        pids.extend(children_of(parent));
        pids
    }

    fn wait_workers(&self, n: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        while children_of(self.child.id()).len() < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} workers:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces `from` by `to` in a file of the instance (it must occur).
    fn edit(&self, rel: &str, from: &str, to: &str) {
        let p = self.root.join(rel);
        let s = fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{rel} has no {from:?}");
        fs::write(&p, s.replacen(from, to, 1)).unwrap();
    }

    /// A full restart, as `systemctl restart` does it: stops the instance (SIGTERM to the
    /// parent, which stops its workers), waits until none of its processes is left, and starts
    /// it again on the same root and port. Every process of the new generation is new.
    fn restart(&mut self) {
        let old = self.child.id();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(old as i32, libc::SIGTERM) };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let parent_gone = matches!(self.child.try_wait(), Ok(Some(_)));
            if parent_gone && group_members(old).is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "apache2 {old} did not stop (left: {:?}):\n{}",
                group_members(old),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A clean stop removes the pid file; the new parent writes its own.
        let pid_file = self.root.join("run/apache2.pid");
        assert!(!pid_file.exists(), "{} left behind", pid_file.display());
        self.child = launch(&self.root);
        let new = self.child.id();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("apache2 exited at restart ({st}):\n{}", self.logs());
            }
            let written = fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == new.to_string());
            if written
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "apache2 did not answer on {} within {START_TIMEOUT:?} after the restart:\n{}",
                self.addr(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_workers(2);
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "apache e2e: logs of {}:\n{}",
                self.root.display(),
                self.logs()
            );
        }
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child, then its process group (its workers).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Live processes of process group `pgid` (an instance's parent leads its own group, and its
/// workers stay in it).
fn group_members(pgid: u32) -> Vec<u32> {
    live_procs_where(2, pgid)
}

/// Processes whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<u32> {
    live_procs_where(1, ppid)
}

/// Live (not zombie) processes whose `/proc/PID/stat` field `field` (counted from the state,
/// after the comm: 0 state, 1 ppid, 2 pgrp) equals `value`, sorted.
fn live_procs_where(field: usize, value: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > field && f[0] != "Z" && f[field].parse() == Ok(value) {
            out.push(pid);
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Reading the report
// ---------------------------------------------------------------------------------------------

fn rows(report: &Value) -> &Vec<Value> {
    report["paths"].as_array().expect("paths array")
}

fn path_str(row: &Value) -> String {
    String::from_utf8_lossy(&path_of(row)).into_owned()
}

/// The top of the report, one line per row with its reasons and hints: for failure messages.
fn dump(report: &Value) -> String {
    let mut s = format!("totals {}\n", report["totals"]);
    for r in rows(report).iter().take(15) {
        s.push_str(&format!(
            "{:>3} {:>6} {:<8} {:>4} {} {}\n      why: {}\n",
            r["rank"],
            r["score"],
            r["errno"].as_str().unwrap_or("?"),
            r["count"],
            r["syscalls"],
            path_str(r),
            r["reasons"]
        ));
        for h in r["hints"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "      hint[{} {}]: {} | {}\n",
                h["kind"].as_str().unwrap_or("?"),
                h["weight"],
                h["message"].as_str().unwrap_or(""),
                h["suggestion"].as_str().unwrap_or("")
            ));
        }
    }
    if rows(report).len() > 15 {
        s.push_str(&format!("... {} rows in all\n", rows(report).len()));
    }
    s
}

/// Asserts `path` with `errno` is ranked first, seen from `apache2`; returns its row.
fn culprit_first<'a>(report: &'a Value, path: &str, errno: &str) -> &'a Value {
    let all = rows(report);
    assert!(!all.is_empty(), "empty report");
    let top = &all[0];
    assert_eq!(top["rank"], 1, "{}", dump(report));
    assert!(
        path_str(top) == path && top["errno"] == errno,
        "expected {path} {errno} ranked first:\n{}",
        dump(report)
    );
    assert_eq!(
        top["comms"],
        serde_json::json!(["apache2"]),
        "{}",
        dump(report)
    );
    top
}

/// The hint of `kind` on `row`.
fn hint<'a>(report: &Value, row: &'a Value, kind: &str) -> &'a Value {
    row["hints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} hint on {}:\n{}", path_str(row), dump(report)))
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

/// The row for (path, errno), if any.
fn find<'a>(report: &'a Value, path: &str, errno: &str) -> Option<&'a Value> {
    rows(report)
        .iter()
        .find(|r| path_str(r) == path && r["errno"] == errno)
}

/// The culprit never arrives alone: the healthy site's benign failures are in the report too,
/// ranked below it and labelled as the probes they are.
fn assert_benign_noise(report: &Value, apache: &Apache) {
    let expect = [
        (apache.www(".htaccess"), "ENOENT", Some(".htaccess")),
        (apache.www("docs/.htaccess"), "ENOENT", Some(".htaccess")),
        (
            apache.www("assets/style.css/.htaccess"),
            "ENOTDIR",
            Some(".htaccess"),
        ),
        (apache.www("index.html"), "ENOENT", Some("DirectoryIndex")),
        (
            apache.www("content/languages/shop-de_DE.mo"),
            "ENOENT",
            Some("translation"),
        ),
        (apache.www("content/object-cache.php"), "ENOENT", None),
        (apache.www("config/local.php"), "ENOENT", None),
        (apache.www(".maintenance"), "ENOENT", None),
        (
            apache.www("themes/child/templates/about.php"),
            "ENOENT",
            None,
        ),
    ];
    for (path, errno, pattern) in expect {
        let r = find(report, &path, errno)
            .unwrap_or_else(|| panic!("benign {path} {errno} not reported:\n{}", dump(report)));
        assert!(
            r["rank"].as_u64() > Some(1),
            "{path} ranked first:\n{}",
            dump(report)
        );
        if let Some(p) = pattern {
            let label = format!("probe pattern ({p})");
            assert!(
                r["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == label.as_str()),
                "{path} not labelled {label}:\n{}",
                dump(report)
            );
        }
    }
}

/// Strong hints (weight >= 1.5) say "this is broken": a healthy site must have none.
fn strong_hints(report: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows(report) {
        for h in r["hints"].as_array().into_iter().flatten() {
            if h["weight"].as_f64().unwrap_or(0.0) >= 1.5 {
                out.push(format!(
                    "{} {}: {} {}",
                    path_str(r),
                    r["errno"],
                    h["kind"],
                    h["message"]
                ));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The strace oracle
// ---------------------------------------------------------------------------------------------

const STRACE_SYSCALLS: &str = "open,openat,openat2,creat,stat,lstat,newfstatat,statx,access,\
                               faccessat,faccessat2,execve,execveat";

struct Strace {
    child: Child,
    out: PathBuf,
}

fn tracer_of(pid: u32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

impl Strace {
    /// `strace -f -Z` attached to `pids` (and what they fork), failing calls only.
    fn attach(pids: &[u32], out: PathBuf) -> Strace {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-Z", "-y", "-s", "65535", "-e"])
            .arg(format!("trace={STRACE_SYSCALLS}"))
            .arg("-o")
            .arg(&out);
        for p in pids {
            cmd.arg("-p").arg(p.to_string());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run strace: {e}"));
        let s = Strace { child, out };
        let me = s.child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pids.iter().all(|p| tracer_of(*p) == Some(me)) {
            assert!(
                Instant::now() < deadline,
                "strace did not attach to {pids:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Seized is not yet tracing: let strace restart each tracee under PTRACE_SYSCALL.
        std::thread::sleep(Duration::from_millis(500));
        s
    }

    /// Detaches (SIGINT) and returns what it wrote.
    fn detach(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait().expect("wait strace");
        assert!(
            st.success() || st.code() == Some(130) || st.code().is_none(),
            "strace: {st}"
        );
        fs::read_to_string(&self.out).expect("strace output")
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A C string as strace prints it (`"..."` with `\"`, `\\`, `\n`, `\xNN`, octal escapes),
/// starting at the opening quote; returns the bytes and the rest after the closing quote.
fn strace_string(s: &str) -> Option<(Vec<u8>, &str)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let c = *b.get(i + 1)?;
                i += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'v' => out.push(0x0b),
                    b'f' => out.push(0x0c),
                    b'x' => {
                        let h = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
                        out.push(u8::from_str_radix(h, 16).ok()?);
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        let mut n = 1;
                        while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                            v = v * 8 + u32::from(b[i] - b'0');
                            i += 1;
                            n += 1;
                        }
                        out.push(v as u8);
                    }
                    other => out.push(other),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// observer's join: `.` and empty components dropped, `..` kept, a trailing slash kept.
fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for comp in base.split(|&c| c == b'/').chain(rel.split(|&c| c == b'/')) {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(comp);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    if rel.ends_with(b"/") {
        out.push(b'/');
    }
    out
}

/// Syscalls whose path is the second argument, after a directory descriptor.
fn has_dirfd(name: &str) -> bool {
    matches!(
        name,
        "openat" | "openat2" | "newfstatat" | "statx" | "faccessat" | "faccessat2" | "execveat"
    )
}

/// One failing call of `strace -f -y -Z` output as (pid, path made absolute, errno name).
/// `cwd` gives a process's working directory for paths relative to it without `-y` decoration.
fn parse_strace_line(line: &str, cwd: &dyn Fn(u32) -> Vec<u8>) -> Option<(u32, Vec<u8>, String)> {
    let (pid, rest) = line.split_once(' ')?;
    let pid: u32 = pid.parse().ok()?;
    let rest = rest.trim_start();
    let open = rest.find('(')?;
    let name = &rest[..open];
    if !STRACE_SYSCALLS.split(',').any(|s| s == name) {
        return None;
    }
    assert!(
        !rest.contains("<unfinished") && !rest.contains("resumed>"),
        "split strace line: {line}"
    );
    let args = &rest[open + 1..];
    let (dir, path_part) = if has_dirfd(name) {
        let (fd, after) = args.split_once(", ")?;
        // `AT_FDCWD</cwd>` or `3</dir>` with -y.
        let dir = fd
            .find('<')
            .map(|i| fd.as_bytes()[i + 1..fd.len() - 1].to_vec());
        (dir, after)
    } else {
        (None, args)
    };
    let (path, _) = strace_string(path_part)?;
    let errno = line.rsplit_once("= -1 ")?.1.split_whitespace().next()?;
    if path.is_empty() {
        // newfstatat(fd, "", AT_EMPTY_PATH): a stat of the descriptor, not a path lookup.
        return None;
    }
    let abs = if path.starts_with(b"/") {
        path
    } else {
        join(&dir.unwrap_or_else(|| cwd(pid)), &path)
    };
    Some((pid, abs, errno.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// What a broken site answers: PHP pages fail (500), the rest is served by Apache as before.
fn php_broken(pages: &[(String, u16)]) {
    for (page, status) in pages {
        let want = match page.as_str() {
            "/docs/" | "/assets/style.css" => 200,
            "/favicon.ico" => 404,
            "/config/app.php" => 403,
            _ => 500,
        };
        assert_eq!(*status, want, "GET {page} on the broken site: {pages:?}");
    }
}

/// Scenario 1: a module `.so` deleted during maintenance; the next reload fails on it.
#[test]
fn deleted_module_so_is_first_at_reload_and_named_with_its_package() {
    let apache = Apache::start();
    let module = format!("{MODULES}/{SPELING}");
    let package = dpkg_owner(&module);
    let obs = Observer::start(&[]);
    apache.healthy(3);
    let moved = MovedAway::new(&module);
    let out = apache.graceful();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Cannot load"),
        "the reload must fail on the missing module ({}): {stderr}",
        out.status
    );
    // The running server keeps its old configuration and serves on.
    apache.healthy(1);
    // The report is made while the file is still missing, as it would be in the incident.
    let report = obs.stop();
    eprintln!("{}", dump(&report));
    drop(moved);
    assert!(Path::new(&module).is_file(), "{module} not restored");

    let top = culprit_first(&report, &module, "ENOENT");
    assert!(top["syscalls"]["openat"].as_u64() >= Some(1), "{top:#}");
    let h = hint(&report, top, "package_file_missing");
    assert_eq!(
        text(h, "message"),
        format!("file of package {package} is missing"),
        "{}",
        dump(&report)
    );
    assert!(
        text(h, "suggestion").contains(&format!("apt-get install --reinstall {package}")),
        "{h:#}"
    );
    assert_benign_noise(&report, &apache);
}

/// Scenario 2: the configuration file the application requires made unreadable for the
/// workers.
#[test]
fn unreadable_config_is_first_with_the_denying_file_and_the_workers_uid() {
    let apache = Apache::start();
    let config = apache.www("config/app.php");
    let uid = www_data_uid();
    let obs = Observer::start(&[]);
    apache.healthy(3);
    // root:root 0600: "tightened" during maintenance.
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
    php_broken(&apache.browse(2));
    let report = obs.stop();
    eprintln!("{}", dump(&report));

    let top = culprit_first(&report, &config, "EACCES");
    assert!(top["syscalls"]["openat"].as_u64() >= Some(2), "{top:#}");
    assert_eq!(top["uids"][0]["uid"], uid, "{top:#}");
    let h = hint(&report, top, "permission_denied");
    let msg = text(h, "message");
    assert!(
        msg.starts_with(&format!(
            "uid {uid} (www-data) cannot read {config} (-rw-------"
        )),
        "{}",
        dump(&report)
    );
    assert!(
        text(h, "suggestion").contains("www-data") && text(h, "suggestion").contains(&config),
        "{h:#}"
    );
    assert_benign_noise(&report, &apache);
}

/// Scenario 3: an `Include` that points nowhere (a mistyped directory): the reload fails.
#[test]
fn include_of_a_missing_file_is_first_at_reload_with_the_existing_one() {
    let apache = Apache::start();
    let good = apache.path("conf/sites-enabled/app.conf");
    let bad = apache.path("conf/sites-enable/app.conf");
    let obs = Observer::start(&[]);
    apache.healthy(3);
    apache.edit(
        "conf/httpd.conf",
        "conf/sites-enabled/app.conf\"",
        "conf/sites-enable/app.conf\"",
    );
    let out = apache.graceful();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sites-enable/app.conf"),
        "the reload must fail on the Include ({}): {stderr}",
        out.status
    );
    apache.healthy(1);
    let report = obs.stop();
    eprintln!("{}", dump(&report));

    let top = culprit_first(&report, bad.to_str().unwrap(), "ENOENT");
    assert!(top["syscalls"]["openat"].as_u64() >= Some(1), "{top:#}");
    let h = hint(&report, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {} (exists)", good.display()),
        "{}",
        dump(&report)
    );
    assert!(
        text(h, "suggestion").contains("from sites-enable to sites-enabled"),
        "{h:#}"
    );
    assert_benign_noise(&report, &apache);
}

/// Scenario 4: PHP's `extension_dir` mistyped by one digit: the extension does not load at the
/// reload, and the page that needs it fails.
#[test]
fn mistyped_extension_dir_is_first_with_the_nearest_existing_sibling() {
    let apache = Apache::start();
    let real = apache.ext_dir.clone();
    let wrong = mistyped_sibling(&real);
    let obs = Observer::start(&[]);
    apache.healthy(3);
    apache.edit(
        "php/php.ini",
        &format!("extension_dir = \"{real}\""),
        &format!("extension_dir = \"{wrong}\""),
    );
    apache.reload();
    // The new generation of workers runs without the extension: the calendar page fails.
    let mut status = 0;
    for _ in 0..50 {
        status = apache.get("/index.php/calendar").status;
        if status == 500 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status,
        500,
        "calendar page after the reload:\n{}",
        apache.logs()
    );
    for (page, want) in PAGES {
        let want = if page.contains("calendar") { 500 } else { want };
        assert_eq!(apache.get(page).status, want, "GET {page}");
    }
    let report = obs.stop();
    eprintln!("{}", dump(&report));

    let culprit = format!("{wrong}/{EXTENSION}");
    let top = culprit_first(&report, &culprit, "ENOENT");
    assert!(
        top["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "library load"),
        "{top:#}"
    );
    let h = hint(&report, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {real}/{EXTENSION} (exists)"),
        "{}",
        dump(&report)
    );
    let dir_of = |p: &str| p.rsplit_once('/').unwrap().1.to_string();
    assert!(
        text(h, "suggestion").contains(&format!("from {} to {}", dir_of(&wrong), dir_of(&real))),
        "{h:#}"
    );
    let p = hint(&report, top, "parent_missing");
    assert!(
        text(p, "message").starts_with(&format!("directory {wrong} does not exist")),
        "{p:#}"
    );
    assert_benign_noise(&report, &apache);
}

/// Scenario 5: a misspelled `require` (`helpers.phpp` for `helpers.php`), with strace attached to
/// the same workers for the same traffic as the oracle of what failed.
#[test]
fn misspelled_require_is_first_naming_the_existing_file_and_strace_agrees() {
    let apache = Apache::start();
    let obs = Observer::start(&[]);
    let pids = apache.pids();
    let strace = Strace::attach(&pids, apache.path("logs/strace.txt"));
    apache.healthy(3);
    apache.edit("www/app/bootstrap.php", "/helpers.php'", "/helpers.phpp'");
    php_broken(&apache.browse(2));
    let traced = strace.detach();
    let cwds: BTreeMap<u32, Vec<u8>> = apache
        .pids()
        .into_iter()
        .filter_map(|p| {
            let l = fs::read_link(format!("/proc/{p}/cwd")).ok()?;
            Some((p, l.as_os_str().as_bytes().to_vec()))
        })
        .collect();
    let report = obs.stop();
    eprintln!("{}", dump(&report));

    let culprit = apache.www("app/helpers.phpp");
    let top = culprit_first(&report, &culprit, "ENOENT");
    assert!(top["syscalls"]["openat"].as_u64() >= Some(1), "{top:#}");
    let h = hint(&report, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {} (exists)", apache.www("app/helpers.php")),
        "{}",
        dump(&report)
    );
    assert!(
        text(h, "suggestion").contains("from helpers.phpp to helpers.php"),
        "{h:#}"
    );
    assert_benign_noise(&report, &apache);

    // The oracle: the same (path, errno) pairs, and the same number of failing calls each.
    let cwd = |pid: u32| cwds.get(&pid).cloned().unwrap_or_else(|| b"/".to_vec());
    let mut by_strace: BTreeMap<(Vec<u8>, String), u64> = BTreeMap::new();
    let mut traced_pids = BTreeSet::new();
    for line in traced.lines() {
        if let Some((pid, path, errno)) = parse_strace_line(line, &cwd) {
            traced_pids.insert(pid);
            *by_strace.entry((path, errno)).or_default() += 1;
        }
    }
    assert!(
        by_strace.len() >= 10,
        "strace saw almost nothing:\n{traced}"
    );
    let by_observer: BTreeMap<(Vec<u8>, String), u64> = rows(&report)
        .iter()
        .map(|r| {
            (
                (path_of(r), r["errno"].as_str().unwrap().to_string()),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let show = |m: &BTreeMap<(Vec<u8>, String), u64>, other: &BTreeMap<(Vec<u8>, String), u64>| {
        m.iter()
            .filter(|(k, v)| other.get(*k) != Some(v))
            .map(|((p, e), n)| format!("  {} {e} x{n}\n", String::from_utf8_lossy(p)))
            .collect::<String>()
    };
    let a: BTreeSet<_> = by_strace.keys().collect();
    let b: BTreeSet<_> = by_observer.keys().collect();
    assert!(
        a == b,
        "strace and observer disagree on what failed.\nonly or different in strace:\n{}only or \
         different in observer:\n{}",
        show(&by_strace, &by_observer),
        show(&by_observer, &by_strace)
    );
    assert_eq!(
        by_strace,
        by_observer,
        "strace and observer disagree on counts.\nstrace:\n{}observer:\n{}",
        show(&by_strace, &by_observer),
        show(&by_observer, &by_strace)
    );
    eprintln!(
        "strace oracle: {} distinct failures, {} calls, pids {traced_pids:?}",
        by_strace.len(),
        by_strace.values().sum::<u64>()
    );
}

/// Scenario 6: a healthy site, reloaded once: its failures are all benign, and nothing gets a
/// strong hint.
#[test]
fn healthy_site_has_no_strong_hint_on_anything() {
    let apache = Apache::start();
    let obs = Observer::start(&[]);
    apache.healthy(3);
    apache.reload();
    apache.healthy(2);
    let report = obs.stop();
    eprintln!("{}", dump(&report));

    assert_benign_noise(&report, &apache);
    let strong = strong_hints(&report);
    assert!(
        strong.is_empty(),
        "strong hints on a healthy site: {strong:#?}\n{}",
        dump(&report)
    );
    for r in rows(&report) {
        assert!(
            matches!(r["errno"].as_str(), Some("ENOENT" | "ENOTDIR")),
            "a healthy site fails only with ENOENT/ENOTDIR: {}\n{}",
            path_str(r),
            dump(&report)
        );
    }
}

/// observer changes nothing in the service: the same requests get the same answers with and
/// without it, on a healthy and on a broken site. The plain table puts the culprit on top.
#[test]
fn same_answers_with_and_without_observer_and_the_table_puts_the_culprit_on_top() {
    let apache = Apache::start();
    let bootstrap = apache.path("www/app/bootstrap.php");
    let original = fs::read_to_string(&bootstrap).unwrap();
    let session = |apache: &Apache| -> Vec<(String, u16, Vec<u8>)> {
        let mut answers = Vec::new();
        for broken in [false, true] {
            if broken {
                apache.edit("www/app/bootstrap.php", "/helpers.php'", "/helpers.phpp'");
            }
            for _ in 0..2 {
                for (page, _) in PAGES {
                    let r = apache.get(page);
                    answers.push((page.to_string(), r.status, r.body));
                }
            }
        }
        fs::write(&bootstrap, &original).unwrap();
        answers
    };
    let without = session(&apache);
    let obs = Observer::start_with(&[], &["--format", "table", "--top", "12"]);
    let with = session(&apache);
    let (table, _) = obs.stop_raw();
    assert_eq!(without.len(), with.len());
    for (a, b) in without.iter().zip(&with) {
        assert_eq!(
            (a.0.as_str(), a.1),
            (b.0.as_str(), b.1),
            "status changed under observer"
        );
        assert!(a.2 == b.2, "body of {} changed under observer", a.0);
    }
    assert!(
        without.iter().any(|a| a.1 == 500) && without.iter().any(|a| a.1 == 200),
        "{:?}",
        without.iter().map(|a| a.1).collect::<Vec<_>>()
    );

    eprintln!("--- table report ---\n{table}--- end ---");
    let culprit = apache.www("app/helpers.phpp");
    let mut lines = table.lines();
    let header = lines
        .by_ref()
        .find(|l| l.starts_with("RANK"))
        .unwrap_or_else(|| {
            panic!("no table header:\n{table}");
        });
    assert!(header.ends_with("PATH"), "{header}");
    let first = lines.next().expect("a first row");
    let cols: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(cols.first(), Some(&"1"), "{table}");
    assert_eq!(cols.last(), Some(&culprit.as_str()), "{table}");
    assert!(cols.contains(&"ENOENT"), "{table}");
    let hint_line = format!(
        "hint: did you mean {} (exists)",
        apache.www("app/helpers.php")
    );
    let row_block: Vec<&str> = lines.take_while(|l| l.starts_with("     ")).collect();
    assert!(
        row_block.iter().any(|l| l.trim() == hint_line),
        "{hint_line:?} under the first row:\n{table}"
    );
}

// ---------------------------------------------------------------------------------------------
// Continuous capture (`observer record`) across a restart of the service
// ---------------------------------------------------------------------------------------------

/// How often the recorder writes its history here (`--flush-interval 1s`).
const FLUSH: Duration = Duration::from_secs(1);

/// `observer record` with its default selection (processes named `apache2`) into `db`, every
/// second. `--config /dev/null`: a configuration file of the host cannot change what it watches.
fn record(db: &str) -> Observer {
    let rec = Observer::start_with(
        &[
            "record",
            "--db",
            db,
            "--flush-interval",
            "1s",
            "--config",
            "/dev/null",
        ],
        &[],
    );
    assert!(
        rec.stderr
            .iter()
            .any(|l| l.contains("watching comm apache2 ")),
        "the default selection is comm apache2: {:?}",
        rec.stderr
    );
    rec
}

/// SIGTERM, as `systemctl stop` sends it: the recorder writes what it holds and exits with 0.
fn stop_record(mut rec: Observer) {
    rec.signal(libc::SIGTERM);
    rec.wait_stderr("stopped; history is in", Duration::from_secs(20));
    // Its exit status, read without reaping it: the guard's drop reaps it.
    // SAFETY: a zeroed siginfo_t is valid; waitid on our own child fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            rec.pid(),
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(rc, 0, "waitid: {}", std::io::Error::last_os_error());
    // SAFETY: waitid filled a SIGCHLD siginfo, whose si_status is set.
    let status = unsafe { info.si_status() };
    assert!(
        info.si_code == libc::CLD_EXITED && status == 0,
        "observer record after SIGTERM: si_code {} status {status}: {:?}",
        info.si_code,
        rec.stderr
    );
}

/// The history once `path` has failed and its count stopped growing: two reads more than a
/// flush interval apart agree (read while the recorder runs).
fn settled_report(db: &str, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        let r = history_report(db);
        let c = find(&r, path, "ENOENT").and_then(|row| row["count"].as_u64());
        if c.is_some() && c == last {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never settled in the history (last {c:?}):\n{}",
            dump(&r)
        );
        last = c;
        std::thread::sleep(FLUSH + Duration::from_millis(300));
    }
}

/// `n` requests of a PHP page on the broken site: each is a 500.
fn broken_requests(apache: &Apache, n: u64) {
    for i in 0..n {
        let r = apache.get("/index.php/about");
        assert_eq!(
            r.status,
            500,
            "request {i} on the broken site: {}\n{}",
            String::from_utf8_lossy(&r.body),
            apache.logs()
        );
    }
}

fn pids_in(row: &Value) -> BTreeSet<u32> {
    row["pids"]
        .as_array()
        .unwrap_or_else(|| panic!("no pids in {row:#}"))
        .iter()
        .map(|p| p.as_u64().expect("a pid") as u32)
        .collect()
}

fn unix_minute(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() / 60
}

/// Continuous capture across a full restart of the service: `observer record`, with its default
/// selection, keeps counting the misspelled require when every process of Apache is replaced,
/// and counts it exactly: N requests before the restart and M after fail the same number of
/// times each, nothing is lost, nothing counted twice, and one recording session spans both
/// generations of Apache.
#[test]
fn record_counts_the_misspelled_require_exactly_across_a_full_apache_restart() {
    // Different, so that a count of k * N or k * M alone cannot pass for k * (N + M).
    const N: u64 = 7;
    const M: u64 = 5;
    let started = Instant::now();
    // Apache first: it takes the suite's lock, so the recorder sees no other scenario's apache2.
    let mut apache = Apache::start();
    apache.edit("www/app/bootstrap.php", "/helpers.php'", "/helpers.phpp'");
    let culprit = apache.www("app/helpers.phpp");
    let dir = TempDir::new("apache-record");
    let db = dir.join("observer.db");
    // Declared after `apache`: dropped (killed) first, before the lock is released.
    let rec = record(&db);

    // Generation 1: N requests, then the history as it stands while the recorder runs.
    let mut gen1: BTreeSet<u32> = apache.pids().into_iter().collect();
    broken_requests(&apache, N);
    let gen1_done = SystemTime::now();
    gen1.extend(apache.pids());
    let mid = settled_report(&db, &culprit);
    let row = find(&mid, &culprit, "ENOENT").expect("settled");
    let (count1, openat1) = (row["count"].as_u64().unwrap(), count(row, "openat"));
    assert!(
        openat1 >= N && openat1 % N == 0 && count1 % N == 0,
        "{N} identical requests: the counts must be a multiple of {N}: {row:#}"
    );
    let per_request = count1 / N;
    let openat_per_request = openat1 / N;
    let mid_pids = pids_in(row);
    assert!(
        !mid_pids.is_empty() && mid_pids.is_subset(&gen1),
        "before the restart, the failing pids {mid_pids:?} are generation 1's {gen1:?}"
    );

    // A full restart: every process gone, then all-new ones.
    apache.restart();
    let gen2_start = SystemTime::now();
    let mut gen2: BTreeSet<u32> = apache.pids().into_iter().collect();
    broken_requests(&apache, M);
    gen2.extend(apache.pids());
    assert!(
        gen1.is_disjoint(&gen2),
        "the restart must change every pid: before {gen1:?}, after {gen2:?}"
    );
    std::thread::sleep(FLUSH + Duration::from_millis(500));
    stop_record(rec);

    let r = history_report(&db);
    eprintln!("{}", dump(&r));
    let top = culprit_first(&r, &culprit, "ENOENT");
    assert_eq!(
        count(top, "openat"),
        openat_per_request * (N + M),
        "{openat_per_request} openat per request, {N} + {M} requests: {top:#}"
    );
    assert_eq!(
        top["count"].as_u64(),
        Some(per_request * (N + M)),
        "{per_request} failing calls per request, {N} + {M} requests: {top:#}"
    );
    let h = hint(&r, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {} (exists)", apache.www("app/helpers.php")),
        "{h:#}"
    );
    assert_eq!(r["totals"]["lost"], 0, "{}", r["totals"]);
    assert_eq!(r["history"]["dropped"], 0, "{}", r["history"]);
    let sessions = r["history"]["sessions"].as_array().expect("sessions");
    assert!(
        sessions.len() == 1 && sessions[0]["ended"] == true,
        "one recording session across the restart, ended by SIGTERM: {sessions:#?}"
    );
    assert_eq!(r["filter"]["comms"], serde_json::json!(["apache2"]));
    // The history keeps one sample pid per (path, errno, minute, syscall, process name, uid,
    // gid), the latest: a generation 2 pid now, and a generation 1 pid as well when the two
    // generations failed in different minutes.
    let pids = pids_in(top);
    let all: BTreeSet<u32> = gen1.union(&gen2).copied().collect();
    assert!(
        pids.is_subset(&all) && !pids.is_disjoint(&gen2),
        "pids {pids:?}: generation 1 {gen1:?}, generation 2 {gen2:?}"
    );
    let apart = unix_minute(gen1_done + FLUSH) < unix_minute(gen2_start - FLUSH);
    if apart {
        assert!(
            !pids.is_disjoint(&gen1),
            "the generations failed in different minutes: pids {pids:?} must hold one of \
             generation 1 {gen1:?}"
        );
    }

    // The path's timeline: every failing call in failing minutes, one episode.
    let (code, out, err) = run_observer(&["timeline", &culprit, "--db", &db, "--format", "json"]);
    assert_eq!(code, 0, "observer timeline failed: {err}");
    let t: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("observer timeline printed invalid JSON ({e}): {out}"));
    assert_eq!(t["path"], culprit.as_str(), "{t:#}");
    let errnos = t["errnos"].as_array().expect("errnos");
    assert_eq!(errnos.len(), 1, "{t:#}");
    let e = &errnos[0];
    assert_eq!(e["errno"], "ENOENT", "{t:#}");
    assert_eq!(e["count"], top["count"], "{t:#}");
    let minutes = e["minutes"].as_array().expect("minutes");
    let counts: Vec<u64> = minutes
        .iter()
        .map(|m| m["count"].as_u64().expect("a count"))
        .collect();
    assert!(
        !counts.is_empty() && counts.iter().all(|&c| c > 0),
        "failing minutes: {t:#}"
    );
    assert_eq!(counts.iter().sum::<u64>(), per_request * (N + M), "{t:#}");
    assert!(
        minutes
            .iter()
            .all(|m| m["comms"] == serde_json::json!(["apache2"])),
        "{t:#}"
    );
    assert_eq!(e["episodes"].as_array().map(Vec::len), Some(1), "{t:#}");

    eprintln!(
        "record across a restart: {N} + {M} requests, {per_request} failing calls each \
         ({openat_per_request} openat): {} in {} minute(s); pids before {mid_pids:?}, after \
         {pids:?} (generations {gen1:?} -> {gen2:?}{}); {:.1} s",
        top["count"],
        counts.len(),
        if apart { ", different minutes" } else { "" },
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn strace_lines_parse_like_observer_resolves() {
    let cwd = |_: u32| b"/srv/www".to_vec();
    let p = |l: &str| {
        parse_strace_line(l, &cwd).map(|(pid, p, e)| (pid, String::from_utf8(p).unwrap(), e))
    };
    assert_eq!(
        p(r#"31055 openat(3</usr>, "nope/x", O_RDONLY) = -1 ENOENT (No such file or directory)"#),
        Some((31055, "/usr/nope/x".into(), "ENOENT".into()))
    );
    assert_eq!(
        p(r#"7 openat(AT_FDCWD</tmp/stt>, "./rel-nope", O_RDONLY) = -1 ENOENT (No such file)"#),
        Some((7, "/tmp/stt/rel-nope".into(), "ENOENT".into()))
    );
    assert_eq!(
        p(r#"7 access("/nope\"q\n\x41\101", F_OK)        = -1 EACCES (Permission denied)"#),
        Some((7, "/nope\"q\nAA".into(), "EACCES".into()))
    );
    assert_eq!(
        p(r#"7 access("x.php", R_OK) = -1 ENOENT (No such file or directory)"#),
        Some((7, "/srv/www/x.php".into(), "ENOENT".into()))
    );
    assert_eq!(
        p(r#"7 newfstatat(5</x>, "", 0x7ffd, AT_EMPTY_PATH) = -1 EBADF (Bad file descriptor)"#),
        None
    );
    assert_eq!(p("7 +++ exited with 0 +++"), None);
    assert_eq!(p("7 read(3, \"\", 4) = -1 EAGAIN (x)"), None);
}
