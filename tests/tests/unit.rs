//! The shipped unit and configuration agree: every file the documented configuration makes
//! observer write is in a directory the unit keeps writable under `ProtectSystem=strict`
//! (otherwise the service fails to start), and systemd accepts the unit as written.

use std::path::Path;
use std::process::Command;

use observer_tests::{TempDir, ensure_packages, observer_bin, run_observer};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/observer.service");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/observer.toml");

/// The directories the unit makes writable: its State/Logs/Runtime directories and
/// ReadWritePaths.
fn writable_dirs(unit: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    for line in unit.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let base = match k.trim() {
            "StateDirectory" => "/var/lib/",
            "LogsDirectory" => "/var/log/",
            "RuntimeDirectory" => "/run/",
            "CacheDirectory" => "/var/cache/",
            "ReadWritePaths" => "",
            _ => continue,
        };
        dirs.extend(v.split_whitespace().map(|d| format!("{base}{d}")));
    }
    dirs
}

/// The files a configuration line (commented out or not) names for observer to write.
fn written_files(text: &str) -> Vec<String> {
    let mut files = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !matches!(k.trim(), "db" | "jsonl" | "metrics") {
            continue;
        }
        let Some(v) = v.trim().strip_prefix('"').and_then(|v| v.split('"').next()) else {
            continue;
        };
        let v = v.strip_prefix("unix:").unwrap_or(v);
        if v.starts_with('/') {
            files.push(v.to_string());
        }
    }
    files
}

#[test]
fn every_file_the_documented_configuration_writes_is_writable_under_the_unit() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let dirs = writable_dirs(&unit);
    let (code, help, _) = run_observer(&["record", "--help"]);
    assert_eq!(code, 0);
    let documented = [std::fs::read_to_string(CONFIG).unwrap(), help];
    let files: Vec<String> = documented.iter().flat_map(|t| written_files(t)).collect();
    for want in ["db", "jsonl", "metrics socket"] {
        let found = match want {
            "db" => files.iter().any(|f| f.ends_with(".db")),
            "jsonl" => files.iter().any(|f| f.ends_with(".jsonl")),
            _ => files.iter().any(|f| f.ends_with(".sock")),
        };
        assert!(found, "the documentation shows no {want} path: {files:?}");
    }
    for f in &files {
        let parent = Path::new(f).parent().unwrap();
        assert!(
            dirs.iter().any(|d| parent.starts_with(d)),
            "{f} is documented, but the unit makes only {dirs:?} writable"
        );
    }
}

#[test]
fn systemd_accepts_the_unit() {
    ensure_packages(&["systemd"]);
    // The unit as installed, with ExecStart pointing at this build.
    let tmp = TempDir::new("unit");
    let unit = std::fs::read_to_string(UNIT).unwrap().replace(
        "ExecStart=/usr/local/bin/observer",
        &format!("ExecStart={}", observer_bin().display()),
    );
    let path = tmp.join("observer.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", &path])
        .output()
        .expect("systemd-analyze (package systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("observer.service"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {err}"
    );
}
