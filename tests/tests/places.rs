//! Where a failing process ran, against the real kernel: a container (its own mount namespace
//! and a Docker-style cgroup) and a service with a private /tmp. Rows name the container or the
//! unit, the same path failing on the host and in the container is two rows, hints are computed
//! in the process's own view of the filesystem (also after it exited), and `--container` narrows
//! the capture to one container.

use std::process::{Child, Stdio};
use std::time::Duration;

use observer_tests::{
    Confined, Observer, TempDir, failer_bin, history_report, path_of, run_observer, unique_comm,
};
use serde_json::Value;

/// Rows for `path`, with their `container` id (or null).
fn rows_at<'a>(report: &'a Value, path: &str) -> Vec<&'a Value> {
    report["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter(|r| path_of(r) == path.as_bytes())
        .collect()
}

fn kinds(row: &Value) -> Vec<&str> {
    row["hints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["kind"].as_str())
        .collect()
}

fn message<'a>(row: &'a Value, kind: &str) -> &'a str {
    row["hints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["kind"] == kind)
        .and_then(|h| h["message"].as_str())
        .unwrap_or_else(|| panic!("no {kind} hint: {row:#}"))
}

/// In `place`, mounts a tmpfs over `dir` (seen only in its namespace), creates `files` there,
/// then runs failer with `args` (its comm `comm`), which lingers so observer can pin its view.
fn run_inside(place: &Confined, dir: &str, files: &[&str], comm: &str, args: &[String]) -> Child {
    let mut script = format!("mount -t tmpfs -o mode=0755 observer-test '{dir}'");
    for f in files {
        script.push_str(&format!(
            " && mkdir -p \"$(dirname '{dir}/{f}')\" && : > '{dir}/{f}'"
        ));
    }
    script.push_str(&format!(
        " && exec '{}' --comm '{comm}' --linger 400",
        failer_bin().display()
    ));
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    place
        .command(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("unshare")
}

fn wait_ok(mut child: Child) {
    let st = child.wait().expect("wait");
    assert!(st.success(), "the confined process failed: {st}");
}

/// A misspelled require inside a container, where the host has a file of that very name (a
/// decoy): the row names the container and gets the near match from the container's own files,
/// computed after its processes are gone; the host's file does not leak into it. A name missing
/// both in the container and on the host makes two rows, each checked in its own view.
#[test]
fn a_container_row_names_it_and_its_hints_come_from_its_own_view_even_after_it_exited() {
    let comm = unique_comm("obs-ct");
    let tmp = TempDir::new("ct");
    let dir = tmp.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    // The host's /…/app has the missing name itself, and not the right one.
    std::fs::write(format!("{dir}/helpers.phpp"), "decoy").unwrap();
    std::fs::write(format!("{dir}/local.ini"), "only on the host").unwrap();
    let culprit = format!("{dir}/helpers.phpp");
    let both = format!("{dir}/locale.ini");
    let ct = Confined::docker();
    let obs = Observer::start(&["--comm", &comm]);
    let inside = run_inside(
        &ct,
        &dir,
        &["helpers.php", "locale.inc"],
        &comm,
        &[
            format!("openat:{culprit}"),
            format!("newfstatat:{culprit}"),
            format!("openat:{both}"),
        ],
    );
    wait_ok(inside);
    assert!(ct.pids().is_empty(), "the container's processes are gone");
    observer_tests::failer(&["--comm", &comm, &format!("openat:{both}")]);
    let report = obs.stop();

    let rows = rows_at(&report, &culprit);
    assert_eq!(rows.len(), 1, "{report:#}");
    let ct_row = rows[0];
    assert_eq!(ct_row["container"]["runtime"], "docker", "{ct_row:#}");
    assert_eq!(ct_row["container"]["id"], ct.id.as_str(), "{ct_row:#}");
    assert_eq!(ct_row["view"], "private", "{ct_row:#}");
    assert_eq!(ct_row["count"], 2, "{ct_row:#}");
    assert_eq!(
        message(ct_row, "near_match"),
        format!("did you mean {dir}/helpers.php (exists)"),
        "{ct_row:#}"
    );
    assert!(
        !kinds(ct_row).contains(&"exists_now"),
        "the host's decoy leaked into the container's hints: {ct_row:#}"
    );
    assert_eq!(ct_row["rank"], 1, "{report:#}");

    let rows = rows_at(&report, &both);
    assert_eq!(rows.len(), 2, "one row per place: {report:#}");
    let (ct_row, host_row) = if rows[0]["container"].is_null() {
        (rows[1], rows[0])
    } else {
        (rows[0], rows[1])
    };
    assert_eq!(ct_row["container"]["id"], ct.id.as_str(), "{ct_row:#}");
    assert_eq!(ct_row["count"], 1, "{ct_row:#}");
    assert!(
        message(ct_row, "near_match").ends_with("/locale.inc (exists)"),
        "{ct_row:#}"
    );
    assert!(host_row["container"].is_null(), "{host_row:#}");
    assert_eq!(host_row["view"], "host", "{host_row:#}");
    assert_eq!(host_row["count"], 1, "{host_row:#}");
    assert!(
        message(host_row, "near_match").ends_with("/local.ini (exists)"),
        "the host's row is checked on the host: {host_row:#}"
    );
}

/// systemd's PrivateTmp= gives a service its own /tmp: the row names the unit, and the hint looks
/// in the service's /tmp, not the host's.
#[test]
fn a_service_with_a_private_tmp_gets_hints_from_its_own_tmp() {
    let comm = unique_comm("obs-ptmp");
    let unit = format!("observer-test-{}", std::process::id());
    let tmp = TempDir::new("ptmp");
    let dir = tmp.join("sessions");
    std::fs::create_dir_all(&dir).unwrap();
    let svc = Confined::unit(&unit);
    let obs = Observer::start(&["--comm", &comm]);
    let missing = format!("{dir}/sess_abc.lock");
    let inside = run_inside(
        &svc,
        &dir,
        &["sess_abc.lck"],
        &comm,
        &[format!("openat:{missing}")],
    );
    wait_ok(inside);
    let report = obs.stop();
    let rows = rows_at(&report, &missing);
    assert_eq!(rows.len(), 1, "{report:#}");
    let r = rows[0];
    assert_eq!(r["unit"], format!("{unit}.service"), "{r:#}");
    assert!(r["container"].is_null(), "{r:#}");
    assert_eq!(r["view"], "private", "{r:#}");
    assert!(
        message(r, "near_match").contains("sess_abc.lck"),
        "the hint looks in the service's own /tmp: {r:#}"
    );
}

/// `--container PREFIX` watches that container's processes and nothing else (the same comm on
/// the host is not seen); the start line names it, or says it is not running (and keeps
/// watching); a prefix that names two containers is an error.
#[test]
fn container_selector_narrows_the_capture_to_one_container() {
    let comm = unique_comm("obs-sel");
    let tmp = TempDir::new("sel");
    let dir = tmp.join("d");
    std::fs::create_dir_all(&dir).unwrap();
    let ct = Confined::docker();
    let prefix = &ct.id[..12];

    let (code, _, err) = run_observer(&["--container", "zz9", "-d", "1s"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("64 hex digits"), "{err}");

    let mut waiting = Observer::start(&["--container", &"0".repeat(40)]);
    waiting.wait_stderr(
        "no running container's id starts with",
        Duration::from_secs(10),
    );
    drop(waiting);

    // A process in the container first, so the selector finds its cgroup at start.
    let holder = ct
        .command("exec sleep 30")
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare");
    std::thread::sleep(Duration::from_millis(200));
    let obs = Observer::start(&["--container", prefix]);
    assert!(
        obs.stderr
            .iter()
            .any(|l| l.contains(&format!("watching container {prefix} (docker, 1 process)"))),
        "{:?}",
        obs.stderr
    );
    let inside_path = format!("{dir}/inside.conf");
    let outside_path = format!("{dir}/outside.conf");
    wait_ok(run_inside(
        &ct,
        &dir,
        &[],
        &comm,
        &[format!("openat:{inside_path}")],
    ));
    observer_tests::failer(&["--comm", &comm, &format!("openat:{outside_path}")]);
    let report = obs.stop();
    drop(holder);
    assert_eq!(rows_at(&report, &inside_path).len(), 1, "{report:#}");
    assert!(rows_at(&report, &outside_path).is_empty(), "{report:#}");
    for r in report["paths"].as_array().unwrap() {
        assert_eq!(r["container"]["id"], ct.id.as_str(), "{r:#}");
    }
    assert_eq!(
        report["filter"]["containers"][0], prefix,
        "{}",
        report["filter"]
    );
}

/// Two containers whose ids share a prefix: that prefix is refused, naming both.
#[test]
fn an_ambiguous_container_prefix_is_refused() {
    let a = Confined::docker_with_id(&format!("abcdef{}", "1".repeat(58)));
    let b = Confined::docker_with_id(&format!("abcdef{}", "2".repeat(58)));
    let (code, _, err) = run_observer(&["--container", "abcdef", "-d", "1s"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("--container abcdef names 2 containers") && err.contains("give more"),
        "{err}"
    );
    drop((a, b));
}

/// The recorder keeps the place; a report made while the container runs checks its view, and
/// one made after it stopped says the view is gone rather than guess on the host.
#[test]
fn history_reports_check_a_running_containers_view_and_say_when_it_is_gone() {
    let comm = unique_comm("obs-cth");
    let tmp = TempDir::new("cth");
    let dir = tmp.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    let db = tmp.join("h.db");
    let culprit = format!("{dir}/config.phpp");
    let ct = Confined::docker();
    let mut rec = Observer::record(&comm, &db, &[]);
    // The container's main process stays; the failing one runs beside it, in its namespace.
    let main = ct
        .command(&format!(
            "mount -t tmpfs -o mode=0755 observer-test '{dir}' && : > '{dir}/config.php' && \
             '{}' --comm '{comm}' 'openat:{culprit}' && exec sleep 30",
            failer_bin().display()
        ))
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let running = loop {
        let r = history_report(&db);
        if !rows_at(&r, &culprit).is_empty() {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recorded: {r:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let row = rows_at(&running, &culprit)[0];
    assert_eq!(row["container"]["id"], ct.id.as_str(), "{row:#}");
    assert_eq!(row["view"], "private", "{row:#}");
    assert_eq!(
        message(row, "near_match"),
        format!("did you mean {dir}/config.php (exists)"),
        "{row:#}"
    );

    // Killed, and left unreaped for now: a zombie of the container does not make its view
    // "running".
    ct.kill_all();
    rec.signal(libc::SIGTERM);
    rec.wait_stderr("stopped; history is in", Duration::from_secs(20));
    let after = history_report(&db);
    let row = rows_at(&after, &culprit)[0];
    assert_eq!(row["container"]["id"], ct.id.as_str(), "{row:#}");
    assert_eq!(row["view"], "gone", "{row:#}");
    assert_eq!(kinds(row), ["view_gone"], "{row:#}");
    assert!(
        message(row, "view_gone").contains(&format!("docker container {}", ct.id)),
        "{row:#}"
    );
    // The table names the container in its WHERE column.
    let (code, table, err) = run_observer(&["report", "--db", &db, "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains(&format!("docker:{}", &ct.id[..12])),
        "{table}"
    );
    drop(main);
}

/// observer's own unit gives it a private /tmp (PrivateTmp=, ProtectSystem=): processes of the
/// host are still the host (not "private"), and their /tmp is theirs, not observer's.
#[test]
fn observer_in_a_namespace_of_its_own_still_sees_the_hosts_files() {
    let comm = unique_comm("obs-own");
    let tmp = TempDir::new("own");
    std::fs::write(tmp.join("site.conf"), "").unwrap();
    let culprit = tmp.join("site.cnof");
    let obs = Observer::start_under(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            // The binary may live under /tmp (a checkout there): hold it open across the mount.
            "exec 3<\"$0\" && mount -t tmpfs observer-own /tmp && exec /proc/self/fd/3 \"$@\"",
        ],
        &["--comm", &comm],
        &["--format", "json"],
        &[],
    );
    observer_tests::failer(&[
        "--comm",
        &comm,
        "--linger",
        "300",
        &format!("openat:{culprit}"),
    ]);
    let report = obs.stop();
    let rows = rows_at(&report, &culprit);
    assert_eq!(rows.len(), 1, "{report:#}");
    let r = rows[0];
    assert_eq!(r["view"], "host", "a host process is the host's: {r:#}");
    assert!(r["unit"].is_null() && r["container"].is_null(), "{r:#}");
    assert_eq!(
        message(r, "near_match"),
        format!("did you mean {} (exists)", tmp.join("site.conf")),
        "the hint looks in the process's /tmp, not observer's: {r:#}"
    );
}
