//! What an operator meets before any capture: privilege, bad input, the kernel's own formats.

use std::process::Command;

use observer_common::{
    EXIT_GROUP_DEAD_OFFSET, EXIT_PID_OFFSET, NEWTASK_CLONE_FLAGS_OFFSET, NEWTASK_PID_OFFSET,
    SYS_EXIT_RET_OFFSET, Syscall,
};
use observer_tests::observer_bin;

/// Runs observer; returns (exit code, stdout, stderr).
fn run(pre: &[&str], args: &[&str]) -> (i32, String, String) {
    let mut cmd = if pre.is_empty() {
        Command::new(observer_bin())
    } else {
        let mut c = Command::new(pre[0]);
        c.args(&pre[1..]).arg(observer_bin());
        c
    };
    let out = cmd.args(args).output().expect("run observer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_clear_line(code: i32, stderr: &str, must_contain: &[&str]) {
    assert_ne!(code, 0, "must fail: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    for m in must_contain {
        assert!(lines[0].contains(m), "{m:?} missing from: {stderr}");
    }
}

#[test]
fn without_privilege_one_clear_line_and_nonzero_exit() {
    // setpriv from util-linux: drop to nobody with no capabilities.
    let (code, out, err) = run(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        &["--duration", "1s"],
    );
    assert_one_clear_line(code, &err, &["root", "CAP_BPF", "CAP_PERFMON"]);
    assert!(out.is_empty(), "{out}");
}

#[test]
fn a_comm_longer_than_the_kernel_keeps_is_rejected_with_the_reason() {
    let (code, _, err) = run(
        &[],
        &["--comm", "apache2-worker-process", "--duration", "1s"],
    );
    assert_one_clear_line(code, &err, &["15 bytes", "apache2-worker-"]);
}

#[test]
fn bad_flags_and_values_fail_cleanly() {
    for args in [
        &["--errno", "ENOPE"][..],
        &["--duration", "soon"],
        &["--syscalls", "read"],
        &["--pid", "notanumber"],
        &["--no-such-flag"],
        // These used to panic (exit 101).
        &["-d", "1e20"],
        &["-d", "1e19"],
        &["report", "--since", "1e20"],
        &["report", "--since", "2024-05-01T12:00+a\u{20ac}"],
        &["record", "--retention", "1e20"],
    ] {
        let (code, _, err) = run(&[], args);
        assert_eq!(code, 2, "clap usage errors exit 2: {args:?} {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
    let (code, _, err) = run(&[], &["--pid", "999999999", "--duration", "1s"]);
    assert_one_clear_line(code, &err, &["999999999", "no such process"]);
    let (code, _, err) = run(
        &[],
        &["--cgroup", "/nonexistent-cgroup", "--duration", "1s"],
    );
    assert_one_clear_line(code, &err, &["/nonexistent-cgroup"]);
    let (code, _, err) = run(&[], &["--all", "--comm", "x", "--duration", "1s"]);
    assert_one_clear_line(code, &err, &["--all"]);
}

#[test]
fn an_unwritable_output_fails_before_capturing() {
    let (code, _, err) = run(
        &[],
        &[
            "--output",
            "/nonexistent-dir/report.json",
            "--duration",
            "1s",
        ],
    );
    assert_one_clear_line(code, &err, &["/nonexistent-dir/report.json"]);
}

#[test]
fn help_teaches_the_options() {
    let (code, out, _) = run(&[], &["--help"]);
    assert_eq!(code, 0);
    for w in [
        "--comm",
        "--pid",
        "--cgroup",
        "--errno",
        "--syscalls",
        "--format",
        "--duration",
        "Examples",
    ] {
        assert!(out.contains(w), "{w} missing from --help");
    }
}

/// The tracepoint argument offsets the eBPF program reads mirror the kernel's format files.
#[test]
fn tracepoint_offsets_match_the_kernels_format_files() {
    let base = "/sys/kernel/tracing/events";
    let field = |tp: &str, name: &str| -> usize {
        let f = std::fs::read_to_string(format!("{base}/{tp}/format"))
            .unwrap_or_else(|e| panic!("{tp}: {e}"));
        f.lines()
            .filter(|l| l.contains("field:"))
            .find_map(|l| {
                let decl = l.split("field:").nth(1)?.split(';').next()?;
                let fname = decl.rsplit([' ', '*']).next()?.trim_end_matches("[]");
                let fname = fname.split('[').next()?;
                if fname != name {
                    return None;
                }
                l.split("offset:").nth(1)?.split(';').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("{tp} has no field {name}:\n{f}"))
    };
    for s in Syscall::ALL {
        let l = s.layout();
        let enter = format!("syscalls/sys_enter_{}", l.name);
        for (name, off) in [Some(l.path), l.dfd, l.flags, l.aux].into_iter().flatten() {
            assert_eq!(field(&enter, name), off, "{enter} {name}");
        }
        assert_eq!(
            field(&format!("syscalls/sys_exit_{}", l.name), "ret"),
            SYS_EXIT_RET_OFFSET
        );
    }
    assert_eq!(field("task/task_newtask", "pid"), NEWTASK_PID_OFFSET);
    assert_eq!(
        field("task/task_newtask", "clone_flags"),
        NEWTASK_CLONE_FLAGS_OFFSET
    );
    assert_eq!(field("sched/sched_process_exit", "pid"), EXIT_PID_OFFSET);
    assert_eq!(
        field("sched/sched_process_exit", "group_dead"),
        EXIT_GROUP_DEAD_OFFSET
    );
}

/// Files observer creates as root never go through a planted link or into a place another user
/// controls, and a run that fails leaves the old report as it was.
#[test]
fn files_are_never_written_through_planted_links_or_into_others_places() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    let d = observer_tests::TempDir::new("cli-files");
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();

    // --output through a symlink: the link is replaced, its target untouched.
    let out = d.join("report.json");
    symlink(&victim, &out).unwrap();
    let (code, _, err) = run(
        &[],
        &["--comm", "obs-none", "-d", "1s", "-f", "json", "-o", &out],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let m = std::fs::symlink_metadata(&out).unwrap();
    assert!(m.is_file() && m.mode() & 0o777 == 0o600, "{m:?}");
    assert_eq!(
        std::fs::metadata(&victim).unwrap().mode() & 0o777,
        0o644,
        "not chmodded"
    );

    // A run that fails to start keeps the old report.
    std::fs::write(&out, "old report").unwrap();
    let (code, _, _) = run(
        &[],
        &["--comm", "a-name-far-too-long", "-d", "1s", "-o", &out],
    );
    assert_ne!(code, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old report");

    // The recorder's lock file, database and --jsonl: links are refused, in one line.
    let db = d.join("h.db");
    symlink(&victim, d.join("h.db.lock")).unwrap();
    let rec = [
        "record",
        "--config",
        "/dev/null",
        "--comm",
        "obs-none",
        "--db",
    ];
    let (code, _, err) = run(&[], &[&rec[..], &[&db]].concat());
    assert_one_clear_line(code, &err, &["symlink"]);
    std::fs::remove_file(d.join("h.db.lock")).unwrap();
    let jsonl = d.join("new.jsonl");
    symlink(&victim, &jsonl).unwrap();
    let (code, _, err) = run(&[], &[&rec[..], &[&db, "--jsonl", &jsonl]].concat());
    assert_one_clear_line(code, &err, &["symlink"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // A history directory others may write is refused.
    let open = d.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, err) = run(&[], &[&rec[..], &[&format!("{open}/h.db")]].concat());
    assert_one_clear_line(code, &err, &["others may write it (mode 0777)"]);
}
