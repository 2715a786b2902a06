//! Choosing what to watch (README, "Choosing what to watch"), against the real kernel: `--all`
//! without observer itself, kinds of selector combined with AND, `--cgroup` with its
//! sub-cgroups and re-read after the unit restarts, `--pid` descendants that were there before
//! observer started, the 16-name limit, and a syscall the kernel lacks.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use observer_tests::{
    Observer, cgroup2_root, failer, failer_bin, go, path_of, row, rows_for, run_observer,
    spawn_waiting, unique_comm,
};
use serde_json::Value;

fn missing(name: &str) -> String {
    format!("/nonexistent-observer-selectors/{name}")
}

/// A private cgroup v2 directory tree for one test, removed (deepest first) on drop.
struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    fn new(tag: &str) -> Cgroups {
        let root = PathBuf::from(cgroup2_root())
            .join(format!("observer-test-{tag}-{}", std::process::id()));
        let c = Cgroups { root };
        c.remove();
        c.mkdir("");
        c
    }

    fn path(&self, rel: &str) -> String {
        self.root.join(rel).to_string_lossy().into_owned()
    }

    fn mkdir(&self, rel: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", p.display()));
    }

    fn enter(&self, rel: &str, pid: u32) {
        std::fs::write(self.root.join(rel).join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move {pid} into {rel}: {e}"));
    }

    /// Removes the directory `rel` and everything below it.
    fn rmdir(&self, rel: &str) {
        fn walk(p: &Path) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(p);
        }
        walk(&self.root.join(rel));
    }

    fn remove(&self) {
        self.rmdir("");
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

fn paths(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|r| String::from_utf8_lossy(&path_of(r)).into_owned())
        .collect();
    v.sort();
    v
}

/// `--all` watches every process but observer. observer's own calls fail too: the first record
/// of a process that is already gone sends it to `/proc/<pid>/cgroup` and `/proc/<pid>/ns/mnt`,
/// which no longer exist. Were observer watching itself, those failures would be rows.
#[test]
fn all_watches_every_process_but_observer_itself() {
    let comm = unique_comm("obs-all");
    let cg = Cgroups::new("all");
    let path = missing("all");
    // A cgroup observer has not seen yet, so it looks the gone process up in /proc.
    let mut a = spawn_waiting(&comm, &[&format!("openat:{path}")]);
    cg.enter("", a.id());
    let gone = a.id();
    let obs = Observer::start(&["--all"]);
    // The reader waits while the process fails and exits: when it reads the record, the
    // process is gone.
    obs.signal(libc::SIGSTOP);
    go(&mut a);
    obs.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    let me = obs.pid() as u64;
    let report = obs.stop();
    let r = row(&report, path.as_bytes(), "ENOENT");
    assert_eq!(r["comms"][0], comm.as_str(), "{r:#}");
    assert_eq!(r["pids"][0].as_u64(), Some(gone as u64), "{r:#}");
    let own: Vec<&Value> = report["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["pids"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p.as_u64() == Some(me)))
                || path_of(r).starts_with(format!("/proc/{gone}/").as_bytes())
        })
        .collect();
    assert!(
        own.is_empty(),
        "observer reported its own failures: {own:#?}"
    );
}

/// Kinds combine with AND: a process is watched only when its name, its pid and its cgroup all
/// match.
#[test]
fn selector_kinds_combine_with_and() {
    let comm = unique_comm("obs-and");
    let other = unique_comm("obs-andx");
    let cg = Cgroups::new("and");
    let mut all_three = spawn_waiting(&comm, &[&format!("openat:{}", missing("and-all"))]);
    let mut not_pid = spawn_waiting(&comm, &[&format!("openat:{}", missing("and-not-pid"))]);
    let mut not_comm = spawn_waiting(&other, &[&format!("openat:{}", missing("and-not-comm"))]);
    let mut not_cgroup = spawn_waiting(&comm, &[&format!("openat:{}", missing("and-not-cgroup"))]);
    for c in [&all_three, &not_pid, &not_comm] {
        cg.enter("", c.id());
    }
    let pids: Vec<String> = [&all_three, &not_comm, &not_cgroup]
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    let cgroup = cg.path("");
    let mut args = vec!["--comm", comm.as_str(), "--cgroup", cgroup.as_str()];
    for p in &pids {
        args.extend(["--pid", p.as_str()]);
    }
    let obs = Observer::start(&args);
    for c in [&mut all_three, &mut not_pid, &mut not_comm, &mut not_cgroup] {
        go(c);
    }
    let report = obs.stop();
    assert_eq!(paths(&report), [missing("and-all")], "{report:#}");
}

/// `--cgroup DIR` watches DIR's sub-cgroups too, and is read again every interval: when the
/// unit restarts (its cgroup removed and made anew, with a new id) and grows a new sub-cgroup,
/// its new processes are watched.
#[test]
fn cgroup_follows_sub_cgroups_and_a_restarted_unit() {
    let comm = unique_comm("obs-cgre");
    let cg = Cgroups::new("cgre");
    cg.mkdir("app.service/sub");
    let unit = cg.path("app.service");
    let mut in_sub = spawn_waiting(&comm, &[&format!("openat:{}", missing("cg-sub"))]);
    cg.enter("app.service/sub", in_sub.id());
    let obs = Observer::start(&["--cgroup", &unit, "--interval", "100ms"]);
    go(&mut in_sub);
    // The unit restarts: its cgroup goes, and comes back with a new id and a new sub-cgroup.
    cg.rmdir("app.service");
    cg.mkdir("app.service/worker");
    let mut restarted = spawn_waiting(&comm, &[&format!("openat:{}", missing("cg-restarted"))]);
    let mut worker = spawn_waiting(&comm, &[&format!("openat:{}", missing("cg-worker"))]);
    let mut outside = spawn_waiting(&comm, &[&format!("openat:{}", missing("cg-outside"))]);
    cg.enter("app.service", restarted.id());
    cg.enter("app.service/worker", worker.id());
    cg.enter("", outside.id());
    // Several intervals: the cgroups are read again.
    std::thread::sleep(Duration::from_millis(600));
    for c in [&mut restarted, &mut worker, &mut outside] {
        go(c);
    }
    let report = obs.stop();
    let mut want = vec![
        missing("cg-restarted"),
        missing("cg-sub"),
        missing("cg-worker"),
    ];
    want.sort();
    assert_eq!(paths(&report), want, "{report:#}");
}

/// `--pid` follows the descendants the process already had when observer started (the kernel
/// only sees forks made after), not only those forked later.
#[test]
fn pid_follows_descendants_that_existed_before_observer_started() {
    let comm = unique_comm("obs-pidold");
    let path = missing("pid-old-child");
    // Forks at once; the child says it is there, then waits for the go.
    let mut parent = Command::new(failer_bin())
        .args(["--comm", &comm, "--fork", "ready", "wait-line"])
        .arg(format!("openat:{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn failer");
    let mut out = BufReader::new(parent.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the child exists");
    let obs = Observer::start(&["--pid", &parent.id().to_string()]);
    parent.stdin.take().unwrap().write_all(b"go\n").expect("go");
    line.clear();
    out.read_line(&mut line).unwrap();
    let child: u64 = line.trim().parse().expect("the child's pid");
    assert!(parent.wait().unwrap().success());
    let report = obs.stop();
    let r = row(&report, path.as_bytes(), "ENOENT");
    assert_eq!(r["pids"][0].as_u64(), Some(child), "{r:#}");
    assert_eq!(r["count"], 1, "{r:#}");
    assert_eq!(report["paths"].as_array().unwrap().len(), 1, "{report:#}");
}

/// Up to 16 names, all compared in the kernel (the 16th is matched); a 17th is refused with one
/// clear line and a non-zero exit.
#[test]
fn sixteen_comm_names_are_watched_and_a_seventeenth_is_refused() {
    let base = unique_comm("obs-n");
    let names: Vec<String> = (0..17).map(|i| format!("{base}-{i:02}")).collect();
    let args = |n: usize| -> Vec<String> {
        names[..n]
            .iter()
            .flat_map(|c| ["--comm".to_string(), c.clone()])
            .collect()
    };
    let sixteen = args(16);
    let argv: Vec<&str> = sixteen.iter().map(String::as_str).collect();
    let obs = Observer::start(&argv);
    for (i, c) in [(0, &names[0]), (15, &names[15]), (16, &names[16])] {
        failer(&[
            "--comm",
            c,
            &format!("openat:{}", missing(&format!("name-{i}"))),
        ]);
    }
    let report = obs.stop();
    assert_eq!(
        paths(&report),
        [missing("name-0"), missing("name-15")],
        "{report:#}"
    );

    let mut seventeen = args(17);
    seventeen.extend(["--duration".into(), "1s".into()]);
    let argv: Vec<&str> = seventeen.iter().map(String::as_str).collect();
    let (code, out, err) = run_observer(&argv);
    assert_ne!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains("at most 16 --comm names"), "{err}");
    assert!(out.is_empty(), "{out}");
}

/// A syscall the running kernel lacks is skipped with one warning, and the rest are hooked.
/// observer learns which syscalls the kernel has from its tracepoint directories
/// (`/sys/kernel/tracing/events/syscalls/sys_enter_*`); a kernel without `faccessat2` (before
/// 5.8, as RHEL 8's 4.18 with its backported ring buffer) has none for it. Here observer runs in
/// a mount namespace of its own whose tracefs lists every syscall of this kernel but that one.
#[test]
fn a_syscall_the_kernel_lacks_is_skipped_with_one_warning() {
    let comm = unique_comm("obs-nosys");
    let script = "ev=/sys/kernel/tracing/events/syscalls; names=$(ls $ev) && \
                  mount -t tmpfs observer-test $ev && \
                  for n in $names; do case $n in *_faccessat2) ;; *) mkdir $ev/$n;; esac; done && \
                  exec \"$0\" \"$@\"";
    let mut obs = Observer::start_under(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ],
        &["--comm", &comm],
        &["--format", "json"],
        &[],
    );
    let watching = obs.wait_stderr(": watching ", Duration::from_secs(1));
    assert!(watching.contains("; 12 syscalls hooked"), "{watching}");
    failer(&[
        "--comm",
        &comm,
        &format!("faccessat2:{}", missing("nosys-faccessat2")),
        &format!("faccessat:{}", missing("nosys-faccessat")),
    ]);
    let (out, err) = obs.stop_raw();
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    let skipped: Vec<&String> = err.iter().filter(|l| l.contains("not hooked")).collect();
    assert_eq!(skipped.len(), 1, "one warning: {err:?}");
    assert!(
        skipped[0].contains("faccessat2 not hooked: no such syscall on this kernel"),
        "{err:?}"
    );
    assert_eq!(paths(&report), [missing("nosys-faccessat")], "{report:#}");
    assert!(rows_for(&report, missing("nosys-faccessat2").as_bytes()).is_empty());
}
