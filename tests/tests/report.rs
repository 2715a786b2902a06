//! The ranked report against real failures: the culprit first among benign probes, hints that
//! name the fix, terminal-safe tables, exact JSON, and the output options.

use std::os::unix::fs::PermissionsExt;

use observer_tests::{Observer, TempDir, failer, hex, path_of, row, unique_comm};
use serde_json::Value;

fn rank1(report: &Value) -> &Value {
    let r = &report["paths"][0];
    assert_eq!(r["rank"], 1, "{report:#}");
    r
}

fn hint_text(r: &Value) -> String {
    r["hints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                h["message"].as_str().unwrap_or(""),
                h["suggestion"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// 50 "requests", each with 10 benign existence probes and one failed open of a misspelled file,
/// made by an unprivileged uid: the misspelled file ranks first and its hint names the file that
/// exists. Counting alone would put it last.
#[test]
fn a_misspelled_require_outranks_ten_times_more_benign_probes() {
    let app = TempDir::new("typo");
    let d = &app.path();
    std::fs::write(format!("{d}/class-user.php"), b"<?php\n").unwrap();
    std::fs::create_dir_all(format!("{d}/wp-content")).unwrap();
    let comm = unique_comm("obs-typo");
    let obs = Observer::start(&["--comm", &comm]);
    let mut args: Vec<String> = ["--comm", &comm, "--setuid", "65534:65534", "--repeat", "50"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Ten probes per request over four paths: each probe path fails 2-3 times as often as the
    // culprit, so ranking by count would put the culprit last.
    let probes = [
        (format!("newfstatat:{d}/.htaccess"), 3),
        (format!("access:{d}/wp-content/object-cache.php"), 3),
        (format!("newfstatat:{d}/index.html"), 2),
        (format!("access:{d}/wp-content/languages/fr_FR.mo"), 2),
    ];
    for (p, times) in &probes {
        for _ in 0..*times {
            args.push(p.clone());
        }
    }
    args.push(format!("openat:{d}/class-user.phpp"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    failer(&argv);
    let report = obs.stop();

    let top = rank1(&report);
    assert_eq!(
        path_of(top),
        format!("{d}/class-user.phpp").as_bytes(),
        "{report:#}"
    );
    assert_eq!(top["errno"], "ENOENT");
    assert_eq!(top["count"], 50);
    assert_eq!(top["uids"][0]["uid"], 65534);
    let hints = hint_text(top);
    assert!(
        hints.contains(&format!("{d}/class-user.php")),
        "hint must name the existing file: {hints}"
    );
    // Every probe is still reported, below the culprit, with its higher count.
    assert_eq!(report["paths"].as_array().unwrap().len(), 5, "{report:#}");
    for (p, times) in &probes {
        let path = p.split_once(':').unwrap().1;
        let r = row(&report, path.as_bytes(), "ENOENT");
        assert_eq!(r["count"], 50 * times);
        assert!(r["rank"].as_u64().unwrap() > 1);
    }
}

/// An open denied by a root-only 0700 directory: EACCES, and the hint names that directory and
/// the uid it denies.
#[test]
fn a_permission_denied_open_names_the_denying_directory() {
    let app = TempDir::new("eacces");
    let d = &app.path();
    let secret = format!("{d}/secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(format!("{secret}/config.php"), b"<?php\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let comm = unique_comm("obs-acc");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "--setuid",
        "65534:65534",
        "--repeat",
        "5",
        &format!("openat:{secret}/config.php"),
        &format!("access:{d}/optional.php"),
        &format!("newfstatat:{d}/.htaccess"),
    ]);
    let report = obs.stop();
    let top = rank1(&report);
    assert_eq!(
        path_of(top),
        format!("{secret}/config.php").as_bytes(),
        "{report:#}"
    );
    assert_eq!(top["errno"], "EACCES");
    let hints = hint_text(top);
    assert!(hints.contains(&secret), "hint must name {secret}: {hints}");
    assert!(hints.contains("65534"), "hint must name the uid: {hints}");
}

/// A name with an ESC sequence and a newline: escaped in the table (nothing reaches the terminal
/// raw), exact in JSON.
#[test]
fn hostile_names_are_escaped_in_tables_and_exact_in_json() {
    let comm = unique_comm("obs-esc");
    let name = "/nonexistent-observer-report/\x1b[2J\x1b]0;pwned\x07evil\nname.php";
    let run = |format: &str| -> String {
        let obs = Observer::start_with(&["--comm", &comm], &["--format", format]);
        failer(&["--comm", &comm, &format!("openat:{}", hex(name.as_bytes()))]);
        obs.stop_raw().0
    };
    let table = run("table");
    assert!(!table.contains('\x1b'), "raw ESC in table: {table:?}");
    assert!(
        !table.contains("evil\nname"),
        "raw newline inside a name: {table:?}"
    );
    assert!(table.contains(r"\e[2J"), "ESC shown escaped: {table}");
    assert!(
        table.contains(r"evil\nname.php"),
        "newline shown escaped: {table}"
    );

    let json: Value = serde_json::from_str(&run("json")).unwrap();
    let r = row(&json, name.as_bytes(), "ENOENT");
    assert_eq!(r["path"], name, "JSON keeps the exact (UTF-8) name");
    assert!(r.get("path_base64").is_none());
}

#[test]
fn output_file_is_private_and_top_limits_rows() {
    let dir = TempDir::new("out");
    let out = dir.join("report.json");
    // A pre-existing world-readable file is tightened too.
    std::fs::write(&out, b"old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let comm = unique_comm("obs-out");
    let obs = Observer::start_with(
        &["--comm", &comm, "--top", "2", "--output", &out],
        &["--format", "json"],
    );
    failer(&[
        "--comm",
        &comm,
        "openat:/nonexistent-observer-report/a",
        "openat:/nonexistent-observer-report/b",
        "openat:/nonexistent-observer-report/c",
    ]);
    let (stdout, _) = obs.stop_raw();
    assert!(stdout.is_empty(), "the report goes to the file: {stdout}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(report["paths"].as_array().unwrap().len(), 2);
    assert_eq!(report["totals"]["distinct"], 3, "totals cover every row");
    assert_eq!(report["version"], 1);
}

#[test]
fn jsonl_streams_one_line_per_new_distinct_failure() {
    let comm = unique_comm("obs-jsonl");
    let obs = Observer::start_with(&["--comm", &comm], &["--format", "jsonl"]);
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "3",
        "openat:/nonexistent-observer-report/j1",
        "statx:/nonexistent-observer-report/j2",
    ]);
    let (stdout, _) = obs.stop_raw();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "new_failure")
        .collect();
    assert_eq!(events.len(), 2, "{stdout}");
    assert_eq!(events[0]["path"], "/nonexistent-observer-report/j1");
    assert_eq!(events[0]["syscall"], "openat");
    assert_eq!(events[1]["syscall"], "statx");
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["failures"], 6);
}
