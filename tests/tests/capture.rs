//! Capture engine, against the real kernel: each hooked syscall, the filters, path resolution,
//! hostile names, forks and threads, and an exact count under a storm.

use std::process::{Command, Stdio};

use observer_tests::{
    Observer, TempDir, count, failer, failer_bin, go, hex, path_of, row, rows_for, spawn_waiting,
    unique_comm,
};

const MISSING_DIR: &str = "/nonexistent-observer-test";

fn missing(name: &str) -> String {
    format!("{MISSING_DIR}/{name}")
}

#[test]
fn reports_exactly_the_failing_openat_and_stat_of_the_watched_comm() {
    let comm = unique_comm("obs-basic");
    let other = unique_comm("obs-other");
    let obs = Observer::start(&["--comm", &comm]);
    let open_path = missing("basic-open.conf");
    let stat_path = missing("basic-stat.php");
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "3",
        &format!("openat:{open_path}"),
    ]);
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "2",
        &format!("newfstatat:{stat_path}"),
    ]);
    failer(&[
        "--comm",
        &other,
        "--repeat",
        "5",
        &format!("openat:{}", missing("other.conf")),
    ]);
    let report = obs.stop();

    let paths: Vec<Vec<u8>> = report["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(path_of)
        .collect();
    assert_eq!(
        paths.len(),
        2,
        "only the two failing paths of {comm}: {report:#}"
    );
    let o = row(&report, open_path.as_bytes(), "ENOENT");
    assert_eq!(o["count"], 3);
    assert_eq!(count(o, "openat"), 3);
    assert_eq!(o["comms"][0], comm.as_str());
    let s = row(&report, stat_path.as_bytes(), "ENOENT");
    assert_eq!(s["count"], 2);
    assert_eq!(count(s, "newfstatat"), 2);
    assert_eq!(report["totals"]["failures"], 5);
    assert_eq!(report["totals"]["distinct"], 2);
    assert_eq!(report["totals"]["lost"], 0);
}

#[test]
fn every_hooked_syscall_is_reported_with_its_name_errno_and_absolute_path() {
    let comm = unique_comm("obs-each");
    let obs = Observer::start(&["--comm", &comm]);
    let cases = [
        "open",
        "openat",
        "openat2",
        "creat",
        "newstat",
        "newlstat",
        "newfstatat",
        "statx",
        "access",
        "faccessat",
        "faccessat2",
        "execve",
    ];
    let mut args = vec!["--comm".to_string(), comm.clone()];
    for c in cases {
        args.push(format!("{c}:{}", missing(&format!("each-{c}"))));
    }
    // execveat relative to a dirfd (kept open while failer lingers, so it resolves).
    args.push("--linger".to_string());
    args.push("1000".to_string());
    args.push("execveat@/usr:each-execveat".to_string());
    // Successes and fstat-by-fd are not reported.
    args.push("openat:/etc/hostname".to_string());
    args.push("newfstatat:/".to_string());
    args.push("empty-fstat".to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    failer(&argv);
    let report = obs.stop();

    for c in cases {
        let p = missing(&format!("each-{c}"));
        let r = row(&report, p.as_bytes(), "ENOENT");
        assert_eq!(r["count"], 1, "{c}: {r:#}");
        assert_eq!(count(r, c), 1, "{c} must be named as the syscall: {r:#}");
    }
    let r = row(&report, b"/usr/each-execveat", "ENOENT");
    assert_eq!(count(r, "execveat"), 1);
    assert!(
        rows_for(&report, b"/etc/hostname").is_empty(),
        "success reported: {report:#}"
    );
    assert!(
        rows_for(&report, b"/").is_empty(),
        "success reported: {report:#}"
    );
    assert!(
        rows_for(&report, b"").is_empty(),
        "fstat(fd) is not a path lookup: {report:#}"
    );
    assert_eq!(
        report["paths"].as_array().unwrap().len(),
        cases.len() + 1,
        "{report:#}"
    );
}

#[test]
fn errnos_other_than_enoent_are_named() {
    let comm = unique_comm("obs-errno");
    let tmp = TempDir::new("errno");
    let dir = tmp.path();
    std::fs::write(format!("{dir}/file"), b"x").unwrap();
    let obs = Observer::start(&["--comm", &comm]);
    // ENOTDIR: a file used as a directory.
    failer(&["--comm", &comm, &format!("openat:{dir}/file/.htaccess")]);
    // EACCES: an unprivileged uid reading a root-only directory.
    std::fs::create_dir(format!("{dir}/secret")).unwrap();
    set_mode(&format!("{dir}/secret"), 0o700);
    set_mode(&dir, 0o755);
    failer(&[
        "--comm",
        &comm,
        "--setuid",
        "65534:65534",
        &format!("openat:{dir}/secret/config.php"),
    ]);
    let report = obs.stop();
    row(
        &report,
        format!("{dir}/file/.htaccess").as_bytes(),
        "ENOTDIR",
    );
    let r = row(
        &report,
        format!("{dir}/secret/config.php").as_bytes(),
        "EACCES",
    );
    assert_eq!(r["uids"][0]["uid"], 65534, "{r:#}");
}

#[test]
fn several_comms_match_whole_names_only() {
    // The kernel compares a comm as two 8-byte words: names that share the first word, or differ
    // only in their 15th byte, must still be told apart. All are the kernel's maximum, 15 bytes.
    let n = std::process::id() % 10_000;
    let a = format!("obsA{n:04}-xxxxxxx")[..15].to_string();
    let b = format!("obsB{n:04}-yyyyyyy")[..15].to_string();
    let same_first_word = format!("{}zzzzzzz", &a[..8]);
    let last_byte_differs = format!("{}Q", &b[..14]);
    let obs = Observer::start(&["--comm", &a, "--comm", &b]);
    for (comm, name) in [
        (&a, "a"),
        (&b, "b"),
        (&same_first_word, "first-word"),
        (&last_byte_differs, "last-byte"),
    ] {
        failer(&[
            "--comm",
            comm,
            &format!("openat:{}", missing(&format!("comm-{name}"))),
        ]);
    }
    let report = obs.stop();
    row(&report, missing("comm-a").as_bytes(), "ENOENT");
    row(&report, missing("comm-b").as_bytes(), "ENOENT");
    for name in ["first-word", "last-byte"] {
        assert!(
            rows_for(&report, missing(&format!("comm-{name}")).as_bytes()).is_empty(),
            "{name}: {report:#}"
        );
    }
}

#[test]
fn an_open_interrupted_by_a_signal_is_not_a_failing_file() {
    // At sys_exit the kernel still holds -ERESTARTSYS (512), which the process never sees: it
    // gets EINTR, or a transparent restart. Neither says anything about the file.
    let comm = unique_comm("obs-eintr");
    let tmp = TempDir::new("eintr");
    let dir = tmp.path();
    let fifo = format!("{dir}/fifo");
    let c = std::ffi::CString::new(fifo.clone()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        &format!("interrupted:{fifo}"),
        &format!("openat:{dir}/missing"),
    ]);
    let report = obs.stop();
    row(&report, format!("{dir}/missing").as_bytes(), "ENOENT");
    assert!(
        rows_for(&report, fifo.as_bytes()).is_empty(),
        "the interrupted open was reported: {report:#}"
    );
}

#[test]
fn an_unreadable_path_is_counted_and_said() {
    let comm = unique_comm("obs-efault");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "bad-pointer",
        &format!("openat:{}", missing("fault")),
    ]);
    let (out, stderr) = obs.stop_raw();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["totals"]["unreadable_paths"], 1, "{report:#}");
    assert_eq!(report["totals"]["failures"], 2, "{report:#}");
    row(&report, missing("fault").as_bytes(), "ENOENT");
    let efault: Vec<_> = report["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["errno"] == "EFAULT")
        .collect();
    assert_eq!(efault.len(), 1, "{report:#}");
    assert_eq!(efault[0]["resolved"], false, "{report:#}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("path pointer the kernel could not read")),
        "{stderr:?}"
    );
}

#[test]
fn errno_filter_keeps_only_the_named_errors() {
    let comm = unique_comm("obs-efilt");
    let tmp = TempDir::new("efilt");
    let dir = tmp.path();
    std::fs::write(format!("{dir}/file"), b"x").unwrap();
    let obs = Observer::start(&["--comm", &comm, "--errno", "ENOTDIR"]);
    failer(&[
        "--comm",
        &comm,
        &format!("openat:{dir}/file/x"),
        &format!("openat:{}", missing("efilt")),
    ]);
    let report = obs.stop();
    assert_eq!(report["paths"].as_array().unwrap().len(), 1, "{report:#}");
    row(&report, format!("{dir}/file/x").as_bytes(), "ENOTDIR");
}

#[test]
fn syscalls_option_narrows_the_hooks() {
    let comm = unique_comm("obs-sysf");
    let obs = Observer::start(&["--comm", &comm, "--syscalls", "stat"]);
    failer(&[
        "--comm",
        &comm,
        &format!("openat:{}", missing("sysf-open")),
        &format!("statx:{}", missing("sysf-statx")),
    ]);
    let report = obs.stop();
    assert_eq!(report["paths"].as_array().unwrap().len(), 1, "{report:#}");
    row(&report, missing("sysf-statx").as_bytes(), "ENOENT");
}

#[test]
fn relative_and_dirfd_paths_resolve_to_absolute() {
    let comm = unique_comm("obs-rel");
    let tmp = TempDir::new("rel");
    let dir = tmp.path();
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "--linger",
        "1000",
        "--chdir",
        &dir,
        "openat:missing-relative.php",
        "newfstatat:./sub/../also-missing",
        &format!("openat@{dir}:by-dirfd/userdb"),
        "faccessat@/usr/share:nope/dirfd-access",
    ]);
    let report = obs.stop();
    row(
        &report,
        format!("{dir}/missing-relative.php").as_bytes(),
        "ENOENT",
    );
    row(
        &report,
        format!("{dir}/sub/../also-missing").as_bytes(),
        "ENOENT",
    );
    row(
        &report,
        format!("{dir}/by-dirfd/userdb").as_bytes(),
        "ENOENT",
    );
    let r = row(&report, b"/usr/share/nope/dirfd-access", "ENOENT");
    assert_eq!(r["resolved"], true);
}

/// PHP-FPM and CGI change directory per request: one process failing on the same relative name
/// from two directories is two rows, each with its absolute path and exact count. Likewise one
/// dirfd number reused for two directories.
#[test]
fn a_relative_name_failing_in_two_directories_is_two_rows() {
    let comm = unique_comm("obs-cwd");
    let tmp = TempDir::new("cwd");
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "--close-dirfds",
        &format!("chdir:{a}"),
        "openat:rel.php",
        "openat:rel.php",
        "openat:rel.php",
        "chdir:../b",
        "openat:rel.php",
        "openat:rel.php",
        // One fd number, two directories: the first dirfd is closed before the second opens.
        &format!("newfstatat@{a}:by-fd.php"),
        &format!("newfstatat@{b}:by-fd.php"),
        &format!("newfstatat@{b}:by-fd.php"),
    ]);
    let report = obs.stop();
    let r = row(&report, format!("{a}/rel.php").as_bytes(), "ENOENT");
    assert_eq!(r["count"], 3, "{report:#}");
    let r = row(&report, format!("{a}/../b/rel.php").as_bytes(), "ENOENT");
    assert_eq!(r["count"], 2, "{report:#}");
    let r = row(&report, format!("{a}/by-fd.php").as_bytes(), "ENOENT");
    assert_eq!(r["count"], 1, "{report:#}");
    let r = row(&report, format!("{b}/by-fd.php").as_bytes(), "ENOENT");
    assert_eq!(r["count"], 2, "{report:#}");
    assert_eq!(report["paths"].as_array().unwrap().len(), 4, "{report:#}");
}

/// glibc's NSS (systemd's chase()) opens `userdb` relative to O_PATH directory fds it closes at
/// once; the process may exit right after. The path still resolves, from the kernel's record of
/// the directory opens, not from /proc.
#[test]
fn dirfd_relative_paths_resolve_after_the_fd_is_closed_and_the_process_is_gone() {
    let comm = unique_comm("obs-chase");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "chase:/usr/share/nonexistent-observer-chase/userdb",
        "chase:/run/nonexistent-observer-userdb",
    ]);
    let report = obs.stop();
    let r = row(&report, b"/usr/share/nonexistent-observer-chase", "ENOENT");
    assert_eq!(r["resolved"], true, "{r:#}");
    let r = row(&report, b"/run/nonexistent-observer-userdb", "ENOENT");
    assert_eq!(r["resolved"], true, "{r:#}");
    assert_eq!(report["paths"].as_array().unwrap().len(), 2, "{report:#}");
}

#[test]
fn long_and_hostile_paths_arrive_byte_exact() {
    let comm = unique_comm("obs-bytes");
    let obs = Observer::start(&["--comm", &comm]);
    // 4000 bytes: components of 199 bytes under a missing directory.
    let mut long = String::from(MISSING_DIR);
    while long.len() + 200 <= 4000 {
        long.push('/');
        long.push_str(&"a".repeat(199));
    }
    while long.len() < 4000 {
        long.push('b');
    }
    assert_eq!(long.len(), 4000);
    let mut hostile = format!("{MISSING_DIR}/evil\nline\x1b[31mred\x1b]0;title\x07").into_bytes();
    hostile.extend_from_slice(b"\xff\xfe-latin1-\xe9.php");
    failer(&[
        "--comm",
        &comm,
        &format!("openat:{long}"),
        &format!("openat:{}", hex(&hostile)),
    ]);
    let report = obs.stop();
    let r = row(&report, long.as_bytes(), "ENOENT");
    assert_eq!(r["truncated"], false);
    assert_eq!(path_of(r).len(), 4000);
    let h = row(&report, &hostile, "ENOENT");
    assert!(
        h.get("path_base64").is_some(),
        "non-UTF-8 path needs its exact bytes: {h:#}"
    );
}

#[test]
fn a_path_longer_than_path_max_is_marked_truncated() {
    let comm = unique_comm("obs-trunc");
    let obs = Observer::start(&["--comm", &comm]);
    let long = format!("{MISSING_DIR}/{}", "c/".repeat(2100));
    failer(&["--comm", &comm, &format!("openat:{long}")]);
    let report = obs.stop();
    let rows = report["paths"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    assert_eq!(rows[0]["errno"], "ENAMETOOLONG");
    assert_eq!(rows[0]["truncated"], true);
    assert_eq!(path_of(&rows[0]).len(), 4095);
    assert!(long.as_bytes().starts_with(&path_of(&rows[0])));
}

#[test]
fn forked_children_and_threads_are_followed() {
    let comm = unique_comm("obs-fork");
    let obs = Observer::start(&["--comm", &comm]);
    let out = failer(&[
        "--comm",
        &comm,
        "--fork",
        &format!("openat:{}", missing("from-child")),
    ]);
    let child_pid: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    failer(&[
        "--comm",
        &comm,
        "--threads",
        "4",
        "--repeat",
        "25",
        &format!("newfstatat:{}", missing("from-threads")),
    ]);
    let report = obs.stop();
    let r = row(&report, missing("from-child").as_bytes(), "ENOENT");
    assert_eq!(r["pids"][0].as_u64(), Some(child_pid), "{r:#}");
    let t = row(&report, missing("from-threads").as_bytes(), "ENOENT");
    assert_eq!(t["count"], 100);
}

#[test]
fn pid_selects_exactly_that_process_and_its_descendants() {
    let comm = unique_comm("obs-pid");
    let path = missing("pid-selected");
    // Two identical children, both waiting for a go; only one is selected by --pid.
    let mut a = spawn_waiting(&comm, &[&format!("openat:{path}"), "--fork"]);
    let mut b = spawn_waiting(&comm, &[&format!("openat:{}", missing("pid-not-selected"))]);
    let obs = Observer::start(&["--pid", &a.id().to_string()]);
    go(&mut a);
    go(&mut b);
    let report = obs.stop();
    let r = row(&report, path.as_bytes(), "ENOENT");
    // The forked grandchild made the call: --pid follows descendants.
    assert_eq!(r["count"], 1);
    assert_ne!(r["pids"][0].as_u64(), Some(a.id() as u64));
    assert_eq!(report["paths"].as_array().unwrap().len(), 1, "{report:#}");
}

#[test]
fn cgroup_selects_exactly_its_processes() {
    let comm = unique_comm("obs-cg");
    let root = observer_tests::cgroup2_root();
    let cg = format!("{root}/observer-test-{}", std::process::id());
    std::fs::create_dir_all(&cg).unwrap_or_else(|e| panic!("cannot create cgroup {cg}: {e}"));
    let inside = missing("cgroup-inside");
    let mut a = spawn_waiting(&comm, &[&format!("openat:{inside}")]);
    let mut b = spawn_waiting(&comm, &[&format!("openat:{}", missing("cgroup-outside"))]);
    std::fs::write(format!("{cg}/cgroup.procs"), a.id().to_string()).unwrap();
    let obs = Observer::start(&["--cgroup", &cg]);
    go(&mut a);
    go(&mut b);
    let report = obs.stop();
    let _ = std::fs::remove_dir(&cg);
    assert_eq!(report["paths"].as_array().unwrap().len(), 1, "{report:#}");
    row(&report, inside.as_bytes(), "ENOENT");
}

/// Kernels without BTF get the plain raw-tracepoint programs (registers read with
/// bpf_probe_read_kernel): forced here, they must report the same as the BTF pair.
#[test]
fn the_no_btf_fallback_reports_the_same() {
    let comm = unique_comm("obs-raw");
    let obs = Observer::start_env(
        &["--comm", &comm],
        &["--format", "json"],
        &[("OBSERVER_RAW_TRACEPOINTS", "1")],
    );
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "3",
        &format!("openat:{}", missing("raw-open")),
        &format!("statx:{}", missing("raw-statx")),
        "execveat@/usr:raw-execveat",
        "openat:/etc/hostname",
    ]);
    let report = obs.stop();
    assert_eq!(
        count(
            row(&report, missing("raw-open").as_bytes(), "ENOENT"),
            "openat"
        ),
        3
    );
    assert_eq!(
        count(
            row(&report, missing("raw-statx").as_bytes(), "ENOENT"),
            "statx"
        ),
        3
    );
    assert_eq!(
        count(row(&report, b"/usr/raw-execveat", "ENOENT"), "execveat"),
        3
    );
    assert_eq!(report["paths"].as_array().unwrap().len(), 3, "{report:#}");
}

/// 4 threads, 1,200,000 failing calls over 6 paths: every count exact, nothing lost. The kernel
/// counts repeats in place and sends only the 6 first sightings across the ring buffer, so a
/// storm of a few paths is lossless by design: a loss here is a bug, not bad luck.
#[test]
fn storm_counts_are_exact() {
    let comm = unique_comm("obs-storm");
    let obs = Observer::start(&["--comm", &comm]);
    let paths: Vec<String> = (0..3).map(|i| missing(&format!("storm-{i}.php"))).collect();
    let mut args = vec![
        "--comm".to_string(),
        comm.clone(),
        "--threads".into(),
        "4".into(),
        "--repeat".into(),
        "50000".into(),
    ];
    for p in &paths {
        args.push(format!("openat:{p}"));
        args.push(format!("newfstatat:{p}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = std::time::Instant::now();
    failer(&argv);
    let secs = t.elapsed().as_secs_f64();
    let report = obs.stop();
    let per_path = 4 * 50_000 * 2;
    let lost = report["totals"]["lost"].as_u64().unwrap();
    assert_eq!(
        lost, 0,
        "6 keys cannot fill the ring buffer: {}",
        report["totals"]
    );
    assert_eq!(report["totals"]["overflow"], 0, "{}", report["totals"]);
    let mut seen = 0;
    for p in &paths {
        let r = row(&report, p.as_bytes(), "ENOENT");
        seen += r["count"].as_u64().unwrap();
        assert_eq!(count(r, "openat"), 4 * 50_000, "{r:#}");
        assert_eq!(count(r, "newfstatat"), 4 * 50_000, "{r:#}");
    }
    assert_eq!(seen, 3 * per_path as u64, "every failure counted");
    assert_eq!(report["totals"]["failures"], 3 * per_path as u64);
    eprintln!(
        "storm: {} failing calls in {secs:.2} s ({:.0}/s), lost {lost}",
        3 * per_path,
        3.0 * per_path as f64 / secs
    );
}

fn set_mode(p: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// observer 0.1's path hash (a fixed seed, an invertible mix), to show the attack it allowed.
fn fixed_seed_hash(path: &[u8]) -> u64 {
    let mut h: u64 = 0x5851_f42d_4c95_7f2d;
    for chunk in path.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        let x = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = x ^ (x >> 29);
    }
    let x = (h ^ path.len() as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 31)
}

/// A name crafted to share another path's kernel key under a fixed hash would have its failures
/// counted as the other's (or hide them). With the keyed hash both are reported, each with its
/// own exact count.
#[test]
fn a_path_crafted_to_collide_under_the_old_hash_hides_nothing() {
    let real = b"/var/www/html/wp-config.php";
    let forged = b"/var/www/0014159SZ|`K;kwphp";
    assert_eq!(
        fixed_seed_hash(real),
        fixed_seed_hash(forged),
        "the pair collides under the old fixed-seed hash"
    );
    let comm = unique_comm("obs-coll");
    let obs = Observer::start(&["--comm", &comm]);
    // One process (a kernel key holds the pid): the forged name first, so it would own the key.
    let open = |p: &[u8]| format!("openat:{}", hex(p));
    let mut args = vec!["--comm".to_string(), comm.clone()];
    args.extend(std::iter::repeat_n(open(forged), 3));
    args.extend(std::iter::repeat_n(open(real), 5));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    failer(&argv);
    let report = obs.stop();
    assert_eq!(row(&report, forged, "ENOENT")["count"], 3, "{report:#}");
    assert_eq!(row(&report, real, "ENOENT")["count"], 5, "{report:#}");
}

/// Names with C1 controls, bidi overrides and invisible tag characters reach no output raw: the
/// JSON and the JSON lines carry them as `\u` escapes (the same strings for a parser), the table
/// as visible `\u{...}` escapes.
#[test]
fn invisible_and_direction_changing_characters_never_reach_the_output_raw() {
    let comm = unique_comm("obs-bidi");
    let name = "/nonexistent-observer-bidi/a\u{85}b\u{202e}gpj.php\u{e0041}\u{e0042}";
    let raw = ['\u{85}', '\u{202e}', '\u{e0041}'];
    let run = |format: &str| {
        let obs = Observer::start_with(&["--comm", &comm], &["--format", format]);
        failer(&["--comm", &comm, &format!("openat:{}", hex(name.as_bytes()))]);
        obs.stop_raw().0
    };
    let json = run("json");
    assert!(
        !raw.iter().any(|c| json.contains(*c)),
        "raw in the JSON: {json:?}"
    );
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        path_of(&doc["paths"][0]),
        name.as_bytes(),
        "the exact name for a parser"
    );
    assert!(
        json.contains("\\u202e") && json.contains("\\udb40\\udc41"),
        "{json}"
    );
    let jsonl = run("jsonl");
    assert!(
        !raw.iter().any(|c| jsonl.contains(*c)),
        "raw in the JSON lines: {jsonl:?}"
    );
    let table = run("table");
    assert!(
        !raw.iter().any(|c| table.contains(*c)),
        "raw in the table: {table:?}"
    );
    assert!(
        table.contains("a\\u{0085}b\\u{202E}gpj.php\\u{E0041}\\u{E0042}"),
        "{table}"
    );
}

/// execve of a file that exists fails with ENOENT when its interpreter does not: the hint names
/// the missing `#!` interpreter or ELF dynamic loader instead of saying "exists now".
#[test]
fn an_exec_that_fails_on_a_missing_interpreter_names_it() {
    use std::os::unix::fs::PermissionsExt;
    let comm = unique_comm("obs-interp");
    let tmp = TempDir::new("interp");
    let script = tmp.join("cron-job");
    std::fs::write(&script, "#!/nonexistent-observer/python9 -u\nprint(1)\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A real program whose loader path is changed to one that does not exist (same length).
    let prog = tmp.join("prog");
    let mut elf = std::fs::read("/bin/true").unwrap();
    let ld = b"/lib64/ld-linux-x86-64.so.2";
    let at = elf
        .windows(ld.len())
        .position(|w| w == ld)
        .expect("a PT_INTERP string");
    elf[at + ld.len() - 1] = b'9';
    std::fs::write(&prog, &elf).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        &format!("execve:{script}"),
        &format!("execve:{prog}"),
    ]);
    let report = obs.stop();
    for (path, what, missing) in [
        (&script, "interpreter", "/nonexistent-observer/python9"),
        (&prog, "dynamic loader", "/lib64/ld-linux-x86-64.so.9"),
    ] {
        let r = row(&report, path.as_bytes(), "ENOENT");
        let kinds: Vec<&str> = r["hints"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["interpreter_missing"], "{r:#}");
        let msg = r["hints"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("its {what} {missing} does not")),
            "{msg}"
        );
        assert!(
            r["rank"].as_u64() <= Some(2),
            "not sunk by an 'exists now': {report:#}"
        );
    }
}

/// Records do not wake observer one by one. A server makes them sparsely (a directory open per
/// request, now and then a new failure), each into an empty ring, where the kernel's default
/// wakes the reader for every one: 300 directory opens and 300 new failures relative to them,
/// spaced 3 ms apart, cost observer a few dozen wakeups, not hundreds, and every record is still
/// taken and counted (the tick drains what did not wake it).
#[test]
fn ring_buffer_records_do_not_wake_observer_one_by_one() {
    const N: usize = 300;
    let comm = unique_comm("obs-wake");
    let dir = TempDir::new("wake");
    let obs = Observer::start(&["--comm", &comm]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = observer_tests::usage(obs.pid()).switches;
    let mut actions = Vec::new();
    for i in 0..N {
        actions.push(format!("newfstatat@{}:w{i}.php", dir.path()));
        actions.push("pause:3".to_string());
    }
    let mut args = vec!["--comm", comm.as_str(), "--close-dirfds"];
    args.extend(actions.iter().map(String::as_str));
    let t = std::time::Instant::now();
    failer(&args);
    let secs = t.elapsed().as_secs_f64();
    // Two ticks: what waited in the ring is taken.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let woke = observer_tests::usage(obs.pid()).switches - before;
    let report = obs.stop();
    for i in 0..N {
        let p = dir.join(&format!("w{i}.php"));
        assert_eq!(row(&report, p.as_bytes(), "ENOENT")["count"], 1, "{p}");
    }
    assert_eq!(report["totals"]["lost"], 0, "{}", report["totals"]);
    eprintln!(
        "{} records in {secs:.2} s woke observer {woke} times",
        2 * N
    );
    // A new failure wakes it at most every 100 ms, the tick once a second: ~12 a second at most.
    let bound = (12.0 * (secs + 2.2)) as u64 + 10;
    assert!(
        woke <= bound && bound < N as u64,
        "{} records in {secs:.2} s woke observer {woke} times",
        2 * N
    );
}

/// A directory fd opened before observer started: no record of its open ever crossed the ring
/// buffer, so a failure relative to it resolves from `/proc/<pid>/fd/<dirfd>` (README, "Kernel
/// maps": "from /proc for fds opened before observer started").
#[test]
fn a_dirfd_opened_before_observer_started_resolves_from_proc() {
    use std::io::BufRead;
    let comm = unique_comm("obs-early");
    let tmp = TempDir::new("early-dirfd");
    let dir = tmp.join("conf.d");
    std::fs::create_dir(&dir).unwrap();
    let mut c = Command::new(failer_bin())
        .args(["--comm", &comm, "--linger", "1000"])
        .arg(format!("opendir:{dir}"))
        .args(["ready", "wait-line"])
        .args([
            "openat@fd:missing-early.conf",
            "newfstatat@fd:sub/missing-early",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn failer");
    let mut line = String::new();
    std::io::BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n", "the directory is open");
    let obs = Observer::start(&["--comm", &comm]);
    go(&mut c);
    let report = obs.stop();
    for p in ["missing-early.conf", "sub/missing-early"] {
        let r = row(&report, format!("{dir}/{p}").as_bytes(), "ENOENT");
        assert_eq!(r["resolved"], true, "{r:#}");
        assert_eq!(r["count"], 1, "{r:#}");
    }
    assert_eq!(report["paths"].as_array().unwrap().len(), 2, "{report:#}");
}
