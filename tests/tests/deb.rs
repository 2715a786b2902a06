//! The Debian package (`cargo xtask deb`), installed on this machine: lintian, what it puts
//! where, the man pages, the completions in the shells' own directories, the unit, and what
//! remove and purge leave.
//!
//! `cargo xtask test` builds the package first and sets OBSERVER_DEB; by hand, run
//! `cargo xtask deb` first. The install test refuses to run when observer is already installed
//! (it purges what it installs), installs with a policy-rc.d that forbids starting services (so
//! no recorder is left running even where PID 1 is systemd), and purges in a drop guard.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use observer_tests::ensure_packages;

const UNIT: &str = "/usr/lib/systemd/system/observer.service";
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants/observer.service";
const PAGES: [&str; 4] = [
    "observer",
    "observer-record",
    "observer-report",
    "observer-timeline",
];
/// What the package and its service make at run time; purge removes them.
const STATE: [&str; 3] = ["/etc/observer", "/var/lib/observer", "/var/log/observer"];
const BASH: &str = "/usr/share/bash-completion/completions/observer";
const ZSH: &str = "/usr/share/zsh/vendor-completions/_observer";
const FISH: &str = "/usr/share/fish/vendor_completions.d/observer.fish";

/// The package under test: OBSERVER_DEB, else the newest target/debian/observer_*.deb.
fn deb() -> PathBuf {
    if let Some(p) = std::env::var_os("OBSERVER_DEB") {
        return PathBuf::from(p);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let newest = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("observer_") && n.ends_with(".deb")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    match newest {
        Some(e) => e.path(),
        None => panic!(
            "no observer_*.deb in {}: run `cargo xtask deb` (or `cargo xtask test`) first",
            dir.display()
        ),
    }
}

/// Runs a command; returns (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    let shown = format!("{cmd:?}");
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs a command that must succeed; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let (success, out, err) = run(cmd);
    assert!(success, "{shown} failed:\n{out}\n{err}");
    out
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

/// apt-get, waiting for the dpkg lock (other sessions on this machine install packages too).
fn apt(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(["-y", "-q", "-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("TMPDIR", "/var/tmp");
    c
}

/// dpkg's status of the observer package ("" when it has never been installed).
fn status() -> String {
    run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "observer"])).1
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// Purges the package, removes what it made and the policy-rc.d the test installed, even when
/// the test fails.
struct Installed {
    policy: Option<PathBuf>,
}

impl Installed {
    fn install(deb: &Path) -> Installed {
        let st = status();
        assert!(
            st.is_empty() || st.ends_with("not-installed"),
            "observer is already on this machine ({st}); this test installs and purges it, so \
             it will not touch an install of yours: `dpkg --purge observer` first"
        );
        for d in STATE {
            assert!(
                !Path::new(d).exists(),
                "{d} exists; the test's purge would delete it: move it away first"
            );
        }
        // deb-systemd-invoke asks policy-rc.d; 101 means "do not start anything".
        let policy = Path::new("/usr/sbin/policy-rc.d");
        let ours = !policy.exists() && {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok()
                && std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755)).is_ok()
        };
        let guard = Installed {
            policy: ours.then(|| policy.to_path_buf()),
        };
        ok(apt(&["install"]).arg(deb));
        guard
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !status().is_empty() && !status().ends_with("not-installed") {
            let (purged, out, err) = run(&mut apt(&["purge", "observer"]));
            if !purged {
                eprintln!("cleanup: apt-get purge observer failed:\n{out}\n{err}");
            }
        }
        // None of them existed before the install (checked there).
        for d in STATE {
            let _ = std::fs::remove_dir_all(d);
        }
        if let Some(p) = &self.policy {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
fn lintian_finds_no_errors() {
    ensure_packages(&["lintian"]);
    let deb = deb();
    let (clean, out, err) = run(Command::new("lintian")
        .args(["--fail-on", "error", "--display-info"])
        .arg(&deb));
    eprintln!("lintian {}:\n{out}{err}", deb.display());
    assert!(clean, "lintian reports errors:\n{out}\n{err}");
    assert!(!out.lines().any(|l| l.starts_with("E: ")), "{out}");
    // Every warning left is explained in the README ("The Debian package").
    let readme = include_str!("../../README.md");
    for tag in out
        .lines()
        .filter(|l| l.starts_with("W: "))
        .filter_map(|l| l.split_whitespace().nth(2))
    {
        assert!(
            readme.contains(tag),
            "lintian warns {tag}, which the README does not explain"
        );
    }
}

#[test]
fn installs_documents_itself_and_purges_clean() {
    ensure_packages(&["man-db", "bash-completion", "zsh", "fish", "systemd"]);
    let deb = deb();
    let version = field(&deb, "Version");
    let upstream = version.split('-').next().unwrap_or_default().to_string();
    assert_eq!(field(&deb, "Package"), "observer");

    let guard = Installed::install(&deb);
    assert!(status().ends_with(" installed"), "{}", status());

    // The binary, from PATH.
    let path = "/usr/sbin:/usr/bin:/sbin:/bin";
    let which = ok(sh("command -v observer").env("PATH", path));
    assert_eq!(which.trim(), "/usr/bin/observer");
    let v = ok(Command::new("observer").arg("--version").env("PATH", path));
    assert_eq!(v.trim(), format!("observer {upstream}"));

    // The configuration is a conffile, the one shipped in dist/.
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "observer"]));
    assert!(
        conffiles.contains("/etc/observer/observer.toml"),
        "not a conffile: {conffiles:?}"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/observer/observer.toml").unwrap(),
        include_str!("../../dist/observer.toml")
    );

    // Each page renders through man, without a warning from groff.
    for page in PAGES {
        let file = ok(Command::new("man").args(["-w", page]));
        assert_eq!(file.trim(), format!("/usr/share/man/man1/{page}.1.gz"));
        let (shown, text, err) = run(Command::new("man")
            .args(["--warnings", "-P", "cat", page])
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8"));
        assert!(shown, "man {page} failed: {err}");
        assert!(err.trim().is_empty(), "man {page} warns: {err}");
        let title = page.to_uppercase();
        assert!(text.starts_with(&format!("{title}(1)")), "{page}:\n{text}");
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SEE ALSO"] {
            assert!(
                text.lines().any(|l| l == section),
                "man {page} lacks {section}:\n{text}"
            );
        }
        assert!(
            text.contains(&format!("observer {upstream}")),
            "{page}: no version"
        );
    }
    let record = ok(Command::new("man")
        .args(["-P", "cat", "observer-record"])
        .env("MANWIDTH", "100"));
    assert!(record.contains("--flush-interval <DURATION>"), "{record}");
    assert!(
        record.contains("  metrics-top = 20\n"),
        "the TOML sample is kept line by line:\n{record}"
    );

    // The completions, syntactically valid, each found by its shell where it looks.
    ok(Command::new("bash").args(["-n", BASH]));
    ok(Command::new("zsh").args(["-n", ZSH]));
    ok(Command::new("fish").args(["-n", FISH]));
    let bash = ok(Command::new("bash").args([
        "-c",
        // The loader returns 124 once it has loaded a completion ("try again").
        ". /usr/share/bash-completion/bash_completion; _completion_loader observer; \
         complete -p observer >/dev/null && COMP_WORDS=(observer rep) COMP_CWORD=1 && \
         _observer observer rep observer && printf '%s\\n' \"${COMPREPLY[@]}\"",
    ]));
    assert_eq!(
        bash.trim(),
        "report",
        "bash completes `observer rep` to: {bash}"
    );
    let fish = ok(Command::new("fish").args(["-c", "complete -C 'observer time'"]));
    assert!(fish.starts_with("timeline"), "fish completes to: {fish}");
    let fpath = ok(Command::new("zsh").args(["-fc", "print -l $fpath"]));
    assert!(
        fpath
            .lines()
            .any(|l| l == "/usr/share/zsh/vendor-completions"),
        "zsh does not read {ZSH}'s directory: {fpath}"
    );

    // The documentation Debian expects.
    ok(Command::new("gzip").args(["-t", "/usr/share/doc/observer/changelog.Debian.gz"]));
    let copyright = std::fs::read_to_string("/usr/share/doc/observer/copyright").unwrap();
    assert!(copyright.starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));

    // The unit: the packaged binary, valid, and enabled as deb-systemd-helper does it.
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/bin/observer record\n")
            && unit.contains("\nDocumentation=man:observer-record(1) man:observer(1)\n"),
        "{unit}"
    );
    // verify also runs `man` for each Documentation= page: they are installed.
    let (valid, out, err) = run(Command::new("systemd-analyze").args(["verify", UNIT]));
    assert!(valid, "systemd-analyze verify {UNIT}:\n{out}\n{err}");
    assert!(
        !err.contains("observer.service"),
        "systemd-analyze has something to say about the unit:\n{err}"
    );
    // deb-systemd-helper links /lib/systemd/system/..., the same file on a merged /usr.
    let link = std::fs::read_link(WANTS).expect("enabled: multi-user.target wants it");
    assert_eq!(
        std::fs::canonicalize(WANTS).unwrap(),
        std::fs::canonicalize(UNIT).unwrap(),
        "{WANTS} -> {}",
        link.display()
    );

    // What the service makes at run time, so purge has something to remove.
    for (dir, file) in [
        ("/var/lib/observer", "observer.db"),
        ("/var/log/observer", "failures.jsonl"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(Path::new(dir).join(file), "x").unwrap();
    }

    // Remove: the program goes, the unit is masked, the configuration and history stay.
    ok(&mut apt(&["remove", "observer"]));
    assert!(status().contains("config-files"), "{}", status());
    for gone in ["/usr/bin/observer", UNIT, BASH, ZSH, FISH] {
        assert!(!Path::new(gone).exists(), "{gone} is left after remove");
    }
    assert_eq!(
        std::fs::read_link("/etc/systemd/system/observer.service").unwrap(),
        Path::new("/dev/null"),
        "remove masks the unit"
    );
    for kept in [
        "/etc/observer/observer.toml",
        "/var/lib/observer/observer.db",
    ] {
        assert!(Path::new(kept).exists(), "remove deleted {kept}");
    }

    // Purge: nothing of observer is left.
    ok(&mut apt(&["purge", "observer"]));
    let st = status();
    assert!(st.is_empty() || st.ends_with("not-installed"), "{st}");
    for gone in STATE {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    let links = ok(&mut sh(
        "find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
         /var/lib/systemd/deb-systemd-helper-masked -name '*observer*' 2>/dev/null; true",
    ));
    assert!(links.trim().is_empty(), "left after purge:\n{links}");
    for page in PAGES {
        assert!(
            !run(Command::new("man").args(["-w", page])).0,
            "{page} is still there"
        );
    }
    drop(guard);
}
