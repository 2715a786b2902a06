//! The harness of the Apache suite: the packages it needs, facts about the host's PHP and users,
//! a private Apache instance, and the system files a scenario moves away (put back on drop).

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The fixtures: configuration templates and the PHP application.
pub(crate) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apache");
pub(crate) const MODULES: &str = "/usr/lib/apache2/modules";
pub(crate) const PHP_LIB: &str = "/usr/lib/php";
/// The module this instance loads and the deleted-module scenario removes (apache2-bin ships it;
/// Debian's own configuration does not enable it).
pub(crate) const SPELING: &str = "mod_speling.so";
/// The PHP extension the application needs (`extension=calendar.so`, as Debian ships it).
pub(crate) const EXTENSION: &str = "calendar.so";
/// What the suite needs; `apt-get install` runs only for the missing ones. `php-fpm` is
/// Debian's default PHP-FPM (`php8.2-fpm` on Debian 12); its service is not started (the suite
/// runs its own pool), and the system's is never touched.
pub(crate) const PACKAGES: [&str; 5] = [
    "apache2",
    "libapache2-mod-php",
    "php-fpm",
    "strace",
    "puppet",
];

/// How the private Apache serves PHP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stack {
    /// mod_php in Apache's prefork workers.
    ModPhp,
    /// A private PHP-FPM pool behind mpm_event + proxy_fcgi.
    Fpm,
}
/// How long Apache may take to start, to reload, or to have its workers up.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages of the site and what a healthy site answers.
pub(crate) const PAGES: [(&str, u16); 9] = [
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

pub(crate) fn deb_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).ends_with(" installed")
        })
}

/// While it lives, Debian's maintainer scripts start no service (`policy-rc.d` exits 101): a
/// package installed for the suite must not start the system's Apache or PHP-FPM.
pub(crate) struct NoServiceStarts(Option<PathBuf>);

impl NoServiceStarts {
    pub(crate) fn new() -> NoServiceStarts {
        let p = Path::new("/usr/sbin/policy-rc.d");
        if p.exists() {
            return NoServiceStarts(None);
        }
        fs::write(
            p,
            "#!/bin/sh\n# observer's test suite: no service starts while it installs\nexit 101\n",
        )
        .and_then(|()| fs::set_permissions(p, fs::Permissions::from_mode(0o755)))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        NoServiceStarts(Some(p.to_path_buf()))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

pub(crate) fn apt_get(args: &[&str]) -> bool {
    eprintln!("apache e2e: apt-get {}", args.join(" "));
    let _guard = NoServiceStarts::new();
    Command::new("apt-get")
        .args(args)
        .env("TMPDIR", "/var/tmp")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the missing packages, once per test binary run.
pub(crate) fn packages_ready() {
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
pub(crate) struct SuiteLock {
    _file: fs::File,
}

pub(crate) fn suite_lock() -> SuiteLock {
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
pub(crate) fn php_module() -> String {
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
pub(crate) fn extension_dir() -> String {
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
pub(crate) fn mistyped_sibling(dir: &str) -> String {
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
pub(crate) fn www_data_uid() -> u32 {
    let name = CString::new("www-data").unwrap();
    // SAFETY: getpwnam returns null or a pointer to a static struct, read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no user www-data");
    // SAFETY: `pw` is not null: the static struct getpwnam returned, read before any other call.
    unsafe { (*pw).pw_uid }
}

/// The package that ships `path` (`dpkg-query -S`).
pub(crate) fn dpkg_owner(path: &str) -> String {
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

pub(crate) fn free_port() -> u16 {
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
pub(crate) fn parked(path: &str) -> PathBuf {
    let p = Path::new(path);
    let dir = p.parent().and_then(Path::parent).expect("a grandparent");
    dir.join(format!(
        ".observer-e2e-{}",
        p.file_name().unwrap().to_string_lossy()
    ))
}

/// A system file moved away; `Drop` puts it back (also when the test panics).
pub(crate) struct MovedAway {
    from: PathBuf,
    to: PathBuf,
}

impl MovedAway {
    pub(crate) fn new(path: &str) -> MovedAway {
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

/// A test process killed mid-scenario (SIGKILL, a closed pipe) skips its guards: its Apache and
/// PHP-FPM would run on, and be watched by every later scenario. They are known by their
/// configuration under `/tmp/observer-e2e-<pid>-N` and a test pid that is gone; killed here.
pub(crate) fn reap_orphans() {
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let Some(at) = cmdline.find("observer-e2e-") else {
            continue;
        };
        let owner: Option<u32> = cmdline[at + "observer-e2e-".len()..]
            .split('-')
            .next()
            .and_then(|p| p.parse().ok());
        if let Some(owner) = owner
            && owner != std::process::id()
            && !Path::new(&format!("/proc/{owner}")).exists()
        {
            eprintln!(
                "apache e2e: killing {pid}, left by the dead test process {owner}: {cmdline}"
            );
            // SAFETY: signalling a process of a dead run of this suite.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// A run killed mid-scenario (SIGKILL skips guards) left a module parked: put it back.
pub(crate) fn restore_parked() {
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

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

pub(crate) struct Apache {
    root: PathBuf,
    port: u16,
    pub(crate) ext_dir: String,
    pub(crate) stack: Stack,
    child: Child,
    /// The PHP-FPM master (its own process group), with `Stack::Fpm`.
    fpm: Option<Child>,
    /// The container it runs in (its own mount namespace, where `www/` is a tmpfs), if any.
    pub(crate) container: Option<observer_tests::Confined>,
    /// Held until this instance is gone (fields drop after `Drop::drop`): the next scenario
    /// starts only then.
    lock: Option<SuiteLock>,
}

pub(crate) fn render(template: &str, vars: &[(&str, &str)]) -> String {
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

pub(crate) fn copy_tree(from: &Path, to: &Path) {
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
pub(crate) fn e2e_base() -> PathBuf {
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
pub(crate) fn apache2_cmd(root: &Path) -> Command {
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
pub(crate) fn launch(root: &Path) -> Child {
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

/// Debian's PHP-FPM binary (`/usr/sbin/php-fpm8.2`): its name is its workers' comm.
pub(crate) fn fpm_bin() -> PathBuf {
    let mut bins: Vec<PathBuf> = fs::read_dir("/usr/sbin")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("php-fpm"))
        .map(|e| e.path())
        .collect();
    bins.sort();
    bins.pop().expect("no /usr/sbin/php-fpm* (package php-fpm)")
}

/// Starts the pool and waits for its socket.
fn start_fpm(root: &Path) -> Child {
    let mut fpm = launch_fpm(root);
    let sock = root.join("run/php-fpm.sock");
    let deadline = Instant::now() + START_TIMEOUT;
    while !sock.exists() {
        if let Ok(Some(st)) = fpm.try_wait() {
            panic!(
                "php-fpm exited at start ({st}):\n{}",
                fs::read_to_string(root.join("logs/fpm-stderr.log")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {} within {START_TIMEOUT:?}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fpm
}

/// Stops a process group's leader with SIGTERM and waits until no process of the group is left.
fn stop_group(child: &mut Child, what: &str) {
    let pid = child.id();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let gone = matches!(child.try_wait(), Ok(Some(_)));
        if gone && group_members(pid).is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} {pid} did not stop (left: {:?})",
            group_members(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the private PHP-FPM pool under `root` in the foreground (our child, its own process
/// group); its standard error goes to `logs/fpm-stderr.log`.
pub(crate) fn launch_fpm(root: &Path) -> Child {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("logs/fpm-stderr.log"))
        .unwrap();
    Command::new(fpm_bin())
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C")
        .env("PHP_INI_SCAN_DIR", root.join("php/conf.d"))
        .arg("--nodaemonize")
        .arg("--fpm-config")
        .arg(root.join("php/fpm.conf"))
        .arg("--php-ini")
        .arg(root.join("php/php.ini"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", fpm_bin().display()))
}

/// Starts apache2 as `launch` does, inside `ct`: a tmpfs mounted over `www/` in the container's
/// namespace, filled from `image/`, then apache2 exec'd (the child's pid is Apache's parent).
pub(crate) fn launch_confined(root: &Path, ct: &observer_tests::Confined) -> Child {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("logs/stderr.log"))
        .unwrap();
    let r = root.display();
    ct.command(&format!(
        "mount -t tmpfs -o mode=0755 observer-www '{r}/www' && cp -a '{r}/image/.' '{r}/www/' && \
         exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C \
         PHP_INI_SCAN_DIR='{r}/php/conf.d' {} -f '{r}/conf/httpd.conf' -k start -DFOREGROUND",
        apache2_bin()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(stderr)
    .process_group(0)
    .spawn()
    .unwrap_or_else(|e| panic!("cannot start apache2 in a container: {e}"))
}

pub(crate) fn apache2_bin() -> &'static str {
    if Path::new("/usr/sbin/apache2").exists() {
        "/usr/sbin/apache2"
    } else {
        "apache2"
    }
}

impl Apache {
    /// A private instance in the foreground (our child, its own process group), answering, with
    /// PHP served as `stack` says.
    pub(crate) fn start(stack: Stack) -> Apache {
        Self::start_in(stack, false)
    }

    /// A private instance with mod_php in a container: its own mount namespace, where the
    /// document root is a tmpfs only it sees (the host's `www/` stays empty), and a Docker-style
    /// cgroup.
    pub(crate) fn start_confined() -> Apache {
        Self::start_in(Stack::ModPhp, true)
    }

    fn start_in(stack: Stack, confined: bool) -> Apache {
        packages_ready();
        let mut lock = Some(suite_lock());
        restore_parked();
        reap_orphans();
        // The port is free when picked; should something take it before Apache binds, pick again.
        for attempt in 1..=3 {
            let mut a = Apache::spawn(lock.take().expect("lock"), stack, confined);
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
                if a.stack == Stack::Fpm {
                    a.wait_fpm_workers(&[]);
                }
                return a;
            }
            lock = a.lock.take();
        }
        unreachable!("the last attempt panics")
    }

    /// Writes the configuration and the site under a fresh temporary root and starts Apache.
    pub(crate) fn spawn(lock: SuiteLock, stack: Stack, confined: bool) -> Apache {
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
        // In a container the site is the image's, copied into the container's own tmpfs.
        let site = if confined { "image" } else { "www" };
        copy_tree(&Path::new(FIXTURES).join("www"), &root.join(site));
        if confined {
            fs::create_dir_all(root.join("www")).unwrap();
            fs::set_permissions(root.join("www"), fs::Permissions::from_mode(0o755)).unwrap();
        }

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
            (
                match stack {
                    Stack::ModPhp => "php-mod_php.conf",
                    Stack::Fpm => "php-fpm.conf",
                },
                "conf/php.conf",
            ),
            ("fpm-pool.conf", "php/fpm.conf"),
        ] {
            let t = fs::read_to_string(Path::new(FIXTURES).join(src))
                .unwrap_or_else(|e| panic!("fixture {src}: {e}"));
            fs::write(root.join(dst), render(&t, &vars)).unwrap();
        }

        // The pool first: Apache hands it PHP from its first request on.
        let fpm = (stack == Stack::Fpm).then(|| start_fpm(&root));
        let container = confined.then(observer_tests::Confined::docker);
        let child = match &container {
            None => launch(&root),
            Some(ct) => launch_confined(&root, ct),
        };
        Apache {
            root,
            port,
            ext_dir,
            stack,
            child,
            fpm,
            container,
            lock: Some(lock),
        }
    }

    /// The process name of the processes that run PHP: Apache's workers with mod_php, the
    /// pool's workers (`php-fpm8.2`) with PHP-FPM.
    pub(crate) fn php_comm(&self) -> String {
        match self.stack {
            Stack::ModPhp => "apache2".into(),
            Stack::Fpm => fpm_bin()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        }
    }

    /// PHP-FPM's workers.
    pub(crate) fn fpm_workers(&self) -> Vec<u32> {
        self.fpm
            .as_ref()
            .map_or(Vec::new(), |f| children_of(f.id()))
    }

    /// Waits until the pool has its two workers, none of them in `old`.
    fn wait_fpm_workers(&self, old: &[u32]) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let w = self.fpm_workers();
            if w.len() == 2 && w.iter().all(|p| !old.contains(p)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "php-fpm workers not up (now {w:?}, before {old:?}):\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes PHP re-read php.ini, as `systemctl reload` of the service that runs PHP does:
    /// Apache's graceful reload with mod_php, PHP-FPM's (SIGUSR2 to its master) with PHP-FPM.
    pub(crate) fn reload_php(&self) {
        match &self.fpm {
            None => self.reload(),
            Some(fpm) => {
                let old = self.fpm_workers();
                // SAFETY: signalling our own child.
                unsafe { libc::kill(fpm.id() as i32, libc::SIGUSR2) };
                self.wait_fpm_workers(&old);
            }
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub(crate) fn www(&self, rel: &str) -> String {
        format!("{}/www/{rel}", self.root.display())
    }

    /// Where a file of the instance is, seen from here: through the container's root when the
    /// instance runs in one (its `www/` is not the host's).
    pub(crate) fn in_view(&self, rel: &str) -> PathBuf {
        match &self.container {
            None => self.root.join(rel),
            Some(_) => PathBuf::from(format!("/proc/{}/root", self.child.id()))
                .join(self.root.strip_prefix("/").unwrap())
                .join(rel),
        }
    }

    /// Stops the container: every process of it killed, as `docker kill` does. Its view of the
    /// filesystem lives on only where something pinned it.
    pub(crate) fn kill_container(&mut self) {
        let ct = self.container.as_ref().expect("a container");
        ct.kill_all();
        let _ = self.child.wait();
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(crate) fn logs(&self) -> String {
        let mut s = String::new();
        for f in [
            "logs/stderr.log",
            "logs/error.log",
            "logs/fpm-stderr.log",
            "logs/php-fpm.log",
        ] {
            if !self.root.join(f).exists() {
                continue;
            }
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

    /// How many times `needle` occurs in the instance's logs: Apache's error log and standard
    /// error, PHP-FPM's log and standard error.
    pub(crate) fn log_count(&self, needle: &str) -> usize {
        [
            "logs/stderr.log",
            "logs/error.log",
            "logs/fpm-stderr.log",
            "logs/php-fpm.log",
        ]
        .iter()
        .map(|f| {
            fs::read_to_string(self.root.join(f))
                .unwrap_or_default()
                .matches(needle)
                .count()
        })
        .sum()
    }

    /// How many times `needle` occurs in Apache's error log, where PHP's errors in a request go
    /// (mod_php's own; PHP-FPM's as the FastCGI error stream, which the pool also copies into
    /// its own log).
    pub(crate) fn error_log_count(&self, needle: &str) -> usize {
        fs::read_to_string(self.root.join("logs/error.log"))
            .unwrap_or_default()
            .matches(needle)
            .count()
    }

    /// One HTTP/1.0 GET on loopback.
    pub(crate) fn get(&self, target: &str) -> Response {
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
    pub(crate) fn browse(&self, rounds: usize) -> Vec<(String, u16)> {
        let mut out = Vec::new();
        for _ in 0..rounds {
            for (page, _) in PAGES {
                out.push((page.to_string(), self.get(page).status));
            }
        }
        out
    }

    /// Healthy traffic: every page answers as a healthy site does.
    pub(crate) fn healthy(&self, rounds: usize) {
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
    pub(crate) fn graceful(&self) -> Output {
        apache2_cmd(&self.root)
            .args(["-k", "graceful"])
            .output()
            .expect("apache2 -k graceful")
    }

    pub(crate) fn restarts(&self) -> usize {
        fs::read_to_string(self.root.join("logs/error.log"))
            .unwrap_or_default()
            .matches("resuming normal operations")
            .count()
    }

    /// A successful graceful reload: waits for the new generation of workers.
    pub(crate) fn reload(&self) {
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

    /// The parent and its workers, and PHP-FPM's master and workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let parent = self.child.id();
        let mut pids = vec![parent];
        pids.extend(children_of(parent));
        if let Some(fpm) = &self.fpm {
            pids.push(fpm.id());
            pids.extend(self.fpm_workers());
        }
        pids
    }

    pub(crate) fn wait_workers(&self, n: usize) {
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
    pub(crate) fn edit(&self, rel: &str, from: &str, to: &str) {
        let p = self.in_view(rel);
        let s = fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{rel} has no {from:?}");
        fs::write(&p, s.replacen(from, to, 1)).unwrap();
    }

    /// A full restart, as `systemctl restart` does it: stops the instance (SIGTERM to the
    /// parent, which stops its workers), waits until none of its processes is left, and starts
    /// it again on the same root and port. Every process of the new generation is new.
    pub(crate) fn restart(&mut self) {
        stop_group(&mut self.child, "apache2");
        if let Some(fpm) = &mut self.fpm {
            stop_group(fpm, "php-fpm");
            self.fpm = Some(start_fpm(&self.root));
            self.wait_fpm_workers(&[]);
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
        // SAFETY: signalling the process group our child leads (its workers).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
        if let Some(fpm) = &mut self.fpm {
            let pid = fpm.id() as i32;
            // SAFETY: signalling our own child, then its process group (its workers).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(fpm.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = fpm.wait();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Live processes of process group `pgid` (an instance's parent leads its own group, and its
/// workers stay in it).
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    live_procs_where(2, pgid)
}

/// Processes whose parent is `ppid`.
pub(crate) fn children_of(ppid: u32) -> Vec<u32> {
    live_procs_where(1, ppid)
}

/// Live (not zombie) processes whose `/proc/PID/stat` field `field` (counted from the state,
/// after the comm: 0 state, 1 ppid, 2 pgrp) equals `value`, sorted.
pub(crate) fn live_procs_where(field: usize, value: u32) -> Vec<u32> {
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
// Applying observer's fix with Puppet
// ---------------------------------------------------------------------------------------------

/// What applying a manifest took.
pub(crate) struct Applied {
    pub(crate) first: Duration,
    pub(crate) second: Duration,
}

impl Apache {
    /// `puppet` with its state under this instance's root (never the system's /etc/puppet or
    /// /var/cache/puppet).
    fn puppet(&self, args: &[&str]) -> Output {
        let base = self.root.join("puppet");
        let mut c = Command::new("puppet");
        c.args(args)
            .arg("--confdir")
            .arg(base.join("etc"))
            .arg("--vardir")
            .arg(base.join("var"))
            .arg("--logdir")
            .arg(base.join("log"))
            .arg("--rundir")
            .arg(base.join("run"))
            .arg("--codedir")
            .arg(base.join("code"))
            .env("HOME", &base)
            .stdin(Stdio::null());
        c.output().expect("run puppet")
    }

    /// Validates `manifest`, applies it (it must change something, without an error), waits
    /// until `healed` says the service is healthy again, and applies it a second time, which
    /// must change nothing (`--detailed-exitcodes`: 0).
    pub(crate) fn apply_fix(&self, manifest: &str, healed: impl Fn() -> bool) -> Applied {
        let file = self.root.join("fix.pp");
        fs::write(&file, manifest).unwrap();
        let f = file.to_str().unwrap();
        let v = self.puppet(&["parser", "validate", f]);
        assert!(
            v.status.success(),
            "puppet parser validate: {}\n{manifest}",
            String::from_utf8_lossy(&v.stderr)
        );
        let _no_starts = NoServiceStarts::new();
        let t0 = Instant::now();
        let a = self.puppet(&["apply", "--detailed-exitcodes", f]);
        let first = t0.elapsed();
        assert_eq!(
            a.status.code(),
            Some(2),
            "the first puppet apply must change something and fail nothing:\n{}{}\n{manifest}",
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&a.stderr)
        );
        let deadline = Instant::now() + START_TIMEOUT;
        while !healed() {
            assert!(
                Instant::now() < deadline,
                "not healthy after the fix:\n{}\n{manifest}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let t1 = Instant::now();
        let b = self.puppet(&["apply", "--detailed-exitcodes", f]);
        let second = t1.elapsed();
        assert_eq!(
            b.status.code(),
            Some(0),
            "a second puppet apply must change nothing:\n{}{}\n{manifest}",
            String::from_utf8_lossy(&b.stdout),
            String::from_utf8_lossy(&b.stderr)
        );
        Applied { first, second }
    }

    /// Every page answers as on a healthy site.
    pub(crate) fn is_healthy(&self) -> bool {
        PAGES
            .iter()
            .all(|(page, want)| self.get(page).status == *want)
    }

    /// `apache2 -k graceful` succeeds (the configuration loads).
    pub(crate) fn reloads(&self) -> bool {
        self.graceful().status.success()
    }
}
