//! Apache + mod_php in a container: its own mount namespace, where the document root is a tmpfs
//! only it sees, in a Docker-style cgroup. observer runs on the host with its default selection.

use std::fs;

use observer_tests::{Observer, TempDir, history_report};

use crate::harness::*;
use crate::record::{record, stop_record};
use crate::report::*;

/// A misspelled require in the container's site. The host's `www/` (hidden from the container
/// under its tmpfs) holds a decoy: the missing name itself. The culprit is rank 1, names the
/// container, and its near match comes from the container's files, not the host's; after the
/// container is killed, the ad-hoc report (which pinned the view) still gives that hint, and
/// the history's report says the view is gone.
#[test]
fn in_a_container_the_culprit_names_it_and_its_hint_comes_from_the_containers_files() {
    let mut apache = Apache::start_confined();
    let id = apache.container.as_ref().unwrap().id.clone();
    let culprit = apache.www("app/helpers.phpp");
    fs::create_dir_all(apache.path("www/app")).unwrap();
    fs::write(&culprit, "<?php // the host's, not the container's").unwrap();
    assert!(
        !apache.in_view("www/app/helpers.phpp").exists(),
        "the container does not see the host's www/"
    );
    let dir = TempDir::new("apache-ct");
    let db = dir.join("observer.db");
    let rec = record(&db);
    let obs = Observer::start(&[]);
    apache.healthy(2);
    apache.edit("www/app/bootstrap.php", "/helpers.php'", "/helpers.phpp'");
    for _ in 0..2 {
        assert_eq!(
            apache.get("/index.php/about").status,
            500,
            "{}",
            apache.logs()
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    apache.kill_container();
    let report = obs.stop();
    eprintln!("{}", dump(&report));

    let top = culprit_first(&report, &culprit, "ENOENT", "apache2");
    assert_eq!(top["container"]["runtime"], "docker", "{top:#}");
    assert_eq!(top["container"]["id"], id.as_str(), "{top:#}");
    assert_eq!(top["view"], "private", "{top:#}");
    let h = hint(&report, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {} (exists)", apache.www("app/helpers.php")),
        "{}",
        dump(&report)
    );
    assert!(
        find(&report, &culprit, "ENOENT")
            .and_then(|r| r["hints"].as_array())
            .is_some_and(|hs| hs.iter().all(|h| h["kind"] != "exists_now")),
        "the host's decoy leaked into the hints:\n{}",
        dump(&report)
    );

    stop_record(rec);
    let r = history_report(&db);
    let row = find(&r, &culprit, "ENOENT").unwrap_or_else(|| panic!("{}", dump(&r)));
    assert_eq!(row["container"]["id"], id.as_str(), "{row:#}");
    assert_eq!(row["view"], "gone", "{row:#}");
    let gone = hint(&r, row, "view_gone");
    assert!(
        text(gone, "message").contains(&format!("docker container {id}")),
        "{gone:#}"
    );
}
