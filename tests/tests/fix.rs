//! From culprit to fix, against the real kernel: the file and line that name a failing path
//! (from the files the process read), what changed just before, and `--fix shell|puppet`
//! applied twice (the second run changes nothing); a culprit without a sure fix gets a reason
//! and no change; the history's report gives the same fix.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use observer_tests::{Observer, TempDir, failer, history_report, row, run_observer, unique_comm};
use serde_json::Value;

fn write(path: &str, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn sh(script: &str, dir: &TempDir) -> std::process::Output {
    let f = dir.join("fix.sh");
    std::fs::write(&f, script).unwrap();
    Command::new("sh").arg(&f).output().expect("sh")
}

/// A script reads its loader, which requires a misspelled name: the row names the loader's line,
/// says the loader changed just before, and `--fix shell` corrects that one token on that line
/// only; a second run changes nothing.
#[test]
fn the_line_that_names_a_typo_is_found_and_the_shell_fix_corrects_it_once() {
    let comm = unique_comm("obs-fix");
    let d = TempDir::new("fix");
    std::fs::create_dir_all(d.join("app")).unwrap();
    let loader = d.join("app/loader.php");
    let culprit = d.join("app/helpers.phpp");
    write(&d.join("app/helpers.php"), "<?php\n", 0o644);
    let text = "<?php\n// helpers.phpp is mentioned here, not loaded\nrequire __DIR__ . '/helpers.phpp'; // helpers.phpp\n";
    write(&loader, text, 0o644);
    let obs = Observer::start(&["--comm", &comm]);
    let fixer = Observer::start_with(&["--comm", &comm], &["--fix", "shell"]);
    failer(&[
        "--comm",
        &comm,
        &format!("openat:{loader}"),
        &format!("openat:{culprit}"),
        &format!("newfstatat:{culprit}"),
    ]);
    let report = obs.stop();
    let (script, _) = fixer.stop_raw();
    let r = row(&report, culprit.as_bytes(), "ENOENT");
    assert_eq!(r["rank"], 1, "{report:#}");
    let refs = r["referrers"].as_array().expect("referrers");
    assert_eq!(refs.len(), 1, "the comment line is not a referrer: {r:#}");
    assert_eq!(refs[0]["file"], loader.as_str());
    assert_eq!(refs[0]["line"], 3);
    assert_eq!(refs[0]["directive"], "require");
    assert!(
        r["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "named by require"),
        "{r:#}"
    );
    let changed: Vec<&Value> = r["changed"].as_array().unwrap().iter().collect();
    assert!(
        changed
            .iter()
            .any(|c| c["path"] == loader.as_str() && c["what"] == "modified"),
        "the loader was written just before: {changed:?}"
    );
    assert_eq!(r["fix"]["kind"], "edit_line", "{r:#}");

    assert!(script.starts_with("#!/bin/sh\n"), "{script}");
    let out = sh(&script, &d);
    assert!(out.status.success(), "{script}\n{out:?}");
    let fixed = std::fs::read_to_string(&loader).unwrap();
    assert_eq!(
        fixed,
        text.replace("'/helpers.phpp';", "'/helpers.php';"),
        "only the reference on that line changes"
    );
    let mode = std::fs::metadata(&loader).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644, "the file keeps its mode");
    let again = sh(&script, &d);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(std::fs::read_to_string(&loader).unwrap(), fixed);
    // A file edited since observer read it is not touched.
    write(&loader, "<?php\nrequire 'other.php';\n", 0o644);
    let changed = sh(&script, &d);
    assert!(!changed.status.success(), "{changed:?}");
    assert!(
        String::from_utf8_lossy(&changed.stderr).contains("not changed"),
        "{changed:?}"
    );
}

/// The worker cannot read the file it requires: the fix is the permission. A file it read but may
/// not read any more (made private since, or swapped for a secret) is not shown as a referrer.
#[test]
fn a_denied_file_gets_the_permission_fix_and_unreadable_files_are_not_referrers() {
    let comm = unique_comm("obs-fixp");
    let d = TempDir::new("fixp");
    std::fs::create_dir_all(d.join("app")).unwrap();
    let secret = d.join("app/secret.php");
    let loader = d.join("app/loader.php");
    let private = d.join("app/private-loader.php");
    write(&secret, "<?php\n", 0o600);
    write(&loader, "<?php\nrequire __DIR__ . '/secret.php';\n", 0o644);
    write(&private, "<?php\nrequire __DIR__ . '/secret.php';\n", 0o644);
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "--setuid",
        "65534:65534",
        &format!("openat:{loader}"),
        &format!("openat:{private}"),
        &format!("openat:{secret}"),
    ]);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let report = obs.stop();
    let r = row(&report, secret.as_bytes(), "EACCES");
    assert_eq!(r["fix"]["kind"], "permission", "{r:#}");
    assert_eq!(r["fix"]["path"], secret.as_str(), "{r:#}");
    let files: Vec<&str> = r["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["file"].as_str())
        .collect();
    assert_eq!(files, [loader.as_str()], "{r:#}");
}

/// A near match that differs only in digits may be a real version change: observer does not
/// decide, and says so instead of changing anything.
#[test]
fn a_culprit_without_a_sure_fix_gets_a_reason_and_no_change() {
    let comm = unique_comm("obs-fixn");
    let d = TempDir::new("fixn");
    std::fs::create_dir_all(d.join("lib")).unwrap();
    let loader = d.join("lib/boot.php");
    let culprit = d.join("lib/sdk-1.2.php");
    write(&d.join("lib/sdk-1.3.php"), "<?php\n", 0o644);
    write(&loader, "<?php\nrequire __DIR__ . '/sdk-1.2.php';\n", 0o644);
    let fixer = Observer::start_with(&["--comm", &comm], &["--fix", "puppet"]);
    failer(&[
        "--comm",
        &comm,
        &format!("openat:{loader}"),
        &format!("openat:{culprit}"),
    ]);
    let (manifest, _) = fixer.stop_raw();
    assert!(
        manifest.contains(&format!("# 1. {culprit} (ENOENT"))
            && manifest.contains("not changed: ")
            && manifest.contains("# Nothing to change."),
        "{manifest}"
    );
    assert!(
        !manifest.contains("exec {") && !manifest.contains("file {"),
        "{manifest}"
    );
    assert_eq!(
        std::fs::read_to_string(&loader).unwrap(),
        "<?php\nrequire __DIR__ . '/sdk-1.2.php';\n"
    );
}

/// The recorder keeps the files the processes read: `observer report --fix` from the history
/// gives the same fix, written to `--output` with mode 0600.
#[test]
fn the_history_report_gives_the_fix_too() {
    let comm = unique_comm("obs-fixh");
    let d = TempDir::new("fixh");
    std::fs::create_dir_all(d.join("conf")).unwrap();
    let conf = d.join("conf/site.conf");
    let culprit = d.join("conf/sites-enable/app.conf");
    std::fs::create_dir_all(d.join("conf/sites-enabled")).unwrap();
    write(&d.join("conf/sites-enabled/app.conf"), "# app\n", 0o644);
    write(&conf, &format!("Listen 8080\nInclude {culprit}\n"), 0o644);
    let db = d.join("h.db");
    let mut rec = Observer::record(&comm, &db, &[]);
    failer(&[
        "--comm",
        &comm,
        &format!("openat:{conf}"),
        &format!("openat:{culprit}"),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    rec.signal(libc::SIGTERM);
    rec.wait_stderr("stopped; history is in", Duration::from_secs(20));
    let r = history_report(&db);
    let top = row(&r, culprit.as_bytes(), "ENOENT");
    assert_eq!(top["referrers"][0]["file"], conf.as_str(), "{top:#}");
    assert_eq!(top["referrers"][0]["directive"], "Include", "{top:#}");
    let out = d.join("fix.pp");
    let (code, _, err) = run_observer(&[
        "report", "--db", &db, "--since", "1h", "--fix", "puppet", "--output", &out,
    ]);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let manifest = std::fs::read_to_string(&out).unwrap();
    assert!(
        manifest.contains(&format!(
            "'OBSERVER_NEW=Include {}'",
            d.join("conf/sites-enabled/app.conf")
        )) && manifest.contains(&format!("observer: edit {conf}:2")),
        "{manifest}"
    );
    let (code, _, err) = run_observer(&["report", "--db", &db, "--fix", "puppet", "-f", "json"]);
    assert_eq!(code, 2, "--fix and --format together are refused: {err}");
}
