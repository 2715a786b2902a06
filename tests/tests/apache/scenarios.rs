//! The incidents, each with observer in ad-hoc mode and its default selection: the culprit is
//! rank 1 with the right hint; a healthy site gets no strong hint; strace agrees on what failed;
//! and observer changes no response.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use observer_tests::{Observer, path_of};

use crate::harness::*;
use crate::report::*;
use crate::strace::{Strace, parse_strace_line, threads};

/// The requests answered 500.
fn failed(pages: &[(String, u16)]) -> u64 {
    pages.iter().filter(|(_, s)| *s == 500).count() as u64
}

/// What a broken site answers: PHP pages fail (500), the rest is served by Apache as before.
fn php_broken(pages: &[(String, u16)]) {
    for (page, status) in pages {
        let want = match page.as_str() {
            "/docs/" | "/assets/style.css" => 200,
            "/favicon.ico" => 404,
            "/config/app.php" => 403,
            _ => 500,
        };
        assert_eq!(*status, want, "GET {page} on the broken site: {pages:?}");
    }
}

/// Scenario 1: a module `.so` deleted during maintenance; the next reload fails on it.
pub(crate) fn deleted_module_so_is_first_at_reload_and_named_with_its_package(stack: Stack) {
    let apache = Apache::start(stack);
    let module = format!("{MODULES}/{SPELING}");
    let package = dpkg_owner(&module);
    let obs = Observer::start(&[]);
    let fixer = Observer::start_with(&[], &["--fix", "puppet"]);
    apache.healthy(3);
    let moved = MovedAway::new(&module);
    let out = apache.graceful();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Cannot load"),
        "the reload must fail on the missing module ({}): {stderr}",
        out.status
    );
    let failed_loads = stderr.matches(&format!("Cannot load {module} ")).count() as u64;
    assert_eq!(failed_loads, 1, "{stderr}");
    // The running server keeps its old configuration and serves on.
    apache.healthy(1);
    // The report is made while the file is still missing, as it would be in the incident.
    let report = obs.stop();
    let (manifest, _) = fixer.stop_raw();
    eprintln!("{}", dump(&report));

    let top = culprit_first(&report, &module, "ENOENT", "apache2");
    assert_calls(
        &report,
        top,
        &DLOPEN,
        failed_loads,
        "failed load of the module",
    );
    let conf = apache.path("conf/httpd.conf");
    referrer(
        &report,
        top,
        &conf,
        line_of(&conf, "mod_speling.so"),
        "LoadModule",
    );
    let fix = fix_of(&report, top, "reinstall");
    assert_eq!(fix["packages"][0], package.as_str(), "{fix}");
    let applied = apache.apply_fix(&manifest, || apache.reloads());
    eprintln!(
        "fix: reinstall {package}, applied in {:.1?}, second apply {:.1?}",
        applied.first, applied.second
    );
    apache.healthy(1);
    drop(moved);
    assert!(Path::new(&module).is_file(), "{module} not restored");
    let h = hint(&report, top, "package_file_missing");
    assert_eq!(
        text(h, "message"),
        format!("file of package {package} is missing"),
        "{}",
        dump(&report)
    );
    assert!(
        text(h, "suggestion").contains(&format!("apt-get install --reinstall {package}")),
        "{h:#}"
    );
    assert_benign_noise(&report, &apache);
}

/// Scenario 2: the configuration file the application requires made unreadable for the
/// workers.
pub(crate) fn unreadable_config_is_first_with_the_denying_file_and_the_workers_uid(stack: Stack) {
    let apache = Apache::start(stack);
    let config = apache.www("config/app.php");
    let uid = www_data_uid();
    let obs = Observer::start(&[]);
    let fixer = Observer::start_with(&[], &["--fix", "puppet"]);
    apache.healthy(3);
    // root:root 0600: "tightened" during maintenance.
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
    let answers = apache.browse(2);
    php_broken(&answers);
    let requests = failed(&answers);
    assert_eq!(
        apache.error_log_count(&format!("Failed opening required '{config}'")) as u64,
        requests,
        "one require error logged per 500:\n{}",
        apache.logs()
    );
    let report = obs.stop();
    let (manifest, _) = fixer.stop_raw();
    eprintln!("{}", dump(&report));

    let top = culprit_first(&report, &config, "EACCES", &apache.php_comm());
    assert_calls(
        &report,
        top,
        &REQUIRE_DENIED,
        requests,
        "request failed on the require",
    );
    assert_eq!(top["uids"][0]["uid"], uid, "{top:#}");
    let h = hint(&report, top, "permission_denied");
    let msg = text(h, "message");
    assert!(
        msg.starts_with(&format!(
            "uid {uid} (www-data) cannot read {config} (-rw-------"
        )),
        "{}",
        dump(&report)
    );
    assert!(
        text(h, "suggestion").contains("www-data") && text(h, "suggestion").contains(&config),
        "{h:#}"
    );
    assert_benign_noise(&report, &apache);
    // The file itself is what the workers cannot read: the one that names it is not.
    let boot = apache.path("www/app/bootstrap.php");
    referrer(
        &report,
        top,
        &boot,
        line_of(&boot, "/config/app.php"),
        "require",
    );
    let fix = fix_of(&report, top, "permission");
    assert_eq!(fix["path"], config.as_str(), "{fix}");
    let applied = apache.apply_fix(&manifest, || apache.is_healthy());
    eprintln!(
        "fix: {} {}, applied in {:.1?}, second apply {:.1?}",
        fix["chgrp"], fix["chmod"], applied.first, applied.second
    );
}

/// Scenario 3: an `Include` that points nowhere (a mistyped directory): the reload fails.
pub(crate) fn include_of_a_missing_file_is_first_at_reload_with_the_existing_one(stack: Stack) {
    let apache = Apache::start(stack);
    let good = apache.path("conf/sites-enabled/app.conf");
    let bad = apache.path("conf/sites-enable/app.conf");
    let obs = Observer::start(&[]);
    let fixer = Observer::start_with(&[], &["--fix", "puppet"]);
    apache.healthy(3);
    apache.edit(
        "conf/httpd.conf",
        "conf/sites-enabled/app.conf\"",
        "conf/sites-enable/app.conf\"",
    );
    let out = apache.graceful();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sites-enable/app.conf"),
        "the reload must fail on the Include ({}): {stderr}",
        out.status
    );
    let failed_reads = stderr
        .matches(&format!(
            "Could not open configuration file {}:",
            bad.display()
        ))
        .count() as u64;
    assert_eq!(failed_reads, 1, "{stderr}");
    apache.healthy(1);
    let report = obs.stop();
    let (manifest, _) = fixer.stop_raw();
    eprintln!("{}", dump(&report));

    let top = culprit_first(&report, bad.to_str().unwrap(), "ENOENT", "apache2");
    let conf = apache.path("conf/httpd.conf");
    let line = line_of(&conf, "sites-enable/app.conf\"");
    referrer(&report, top, &conf, line, "Include");
    let fix = fix_of(&report, top, "edit_line");
    assert_eq!(fix["line"], line, "{fix}");
    assert_calls(
        &report,
        top,
        &INCLUDE_MISSING,
        failed_reads,
        "failed Include",
    );
    let h = hint(&report, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {} (exists)", good.display()),
        "{}",
        dump(&report)
    );
    assert!(
        text(h, "suggestion").contains("from sites-enable to sites-enabled"),
        "{h:#}"
    );
    assert_benign_noise(&report, &apache);
    let applied = apache.apply_fix(&manifest, || apache.reloads());
    eprintln!(
        "fix: {}:{line} Include corrected, applied in {:.1?}, second apply {:.1?}",
        conf.display(),
        applied.first,
        applied.second
    );
    apache.healthy(1);
}

/// Scenario 4: PHP's `extension_dir` mistyped by one digit: the extension does not load at the
/// reload, and the page that needs it fails.
pub(crate) fn mistyped_extension_dir_is_first_with_the_nearest_existing_sibling(stack: Stack) {
    let apache = Apache::start(stack);
    let real = apache.ext_dir.clone();
    let wrong = mistyped_sibling(&real);
    let obs = Observer::start(&[]);
    let fixer = Observer::start_with(&[], &["--fix", "puppet"]);
    apache.healthy(3);
    apache.edit(
        "php/php.ini",
        &format!("extension_dir = \"{real}\""),
        &format!("extension_dir = \"{wrong}\""),
    );
    apache.reload_php();
    // The new generation of workers runs without the extension: the calendar page fails.
    let mut status = 0;
    for _ in 0..50 {
        status = apache.get("/index.php/calendar").status;
        if status == 500 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status,
        500,
        "calendar page after the reload:\n{}",
        apache.logs()
    );
    for (page, want) in PAGES {
        let want = if page.contains("calendar") { 500 } else { want };
        assert_eq!(apache.get(page).status, want, "GET {page}");
    }
    let report = obs.stop();
    let (manifest, _) = fixer.stop_raw();
    eprintln!("{}", dump(&report));

    let culprit = format!("{wrong}/{EXTENSION}");
    let top = culprit_first(&report, &culprit, "ENOENT", &apache.php_comm());
    // PHP warns once per start that could not load it; each start tried the culprit once.
    let starts = apache.log_count(&format!(
        "Unable to load dynamic library '{EXTENSION}' (tried: {culprit} ("
    )) as u64;
    assert_calls(
        &report,
        top,
        &DLOPEN,
        starts,
        "PHP start that could not load the extension",
    );
    assert!(
        top["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "library load"),
        "{top:#}"
    );
    let h = hint(&report, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {real}/{EXTENSION} (exists)"),
        "{}",
        dump(&report)
    );
    let dir_of = |p: &str| p.rsplit_once('/').unwrap().1.to_string();
    assert!(
        text(h, "suggestion").contains(&format!("from {} to {}", dir_of(&wrong), dir_of(&real))),
        "{h:#}"
    );
    let p = hint(&report, top, "parent_missing");
    assert!(
        text(p, "message").starts_with(&format!("directory {wrong} does not exist")),
        "{p:#}"
    );
    assert_benign_noise(&report, &apache);
    let ini = apache.path("php/php.ini");
    let line = line_of(&ini, "extension_dir =");
    referrer(&report, top, &ini, line, "extension_dir");
    let fix = fix_of(&report, top, "edit_line");
    assert_eq!(fix["line"], line, "{fix}");
    let applied = apache.apply_fix(&manifest, || {
        apache.get("/index.php/calendar").status == 200 && apache.is_healthy()
    });
    eprintln!(
        "fix: {}:{line} extension_dir corrected, applied in {:.1?}, second apply {:.1?}",
        ini.display(),
        applied.first,
        applied.second
    );
}

/// Scenario 5: a misspelled `require` (`helpers.phpp` for `helpers.php`), with strace attached to
/// the same workers for the same traffic as the oracle of what failed.
pub(crate) fn misspelled_require_is_first_naming_the_existing_file_and_strace_agrees(stack: Stack) {
    let apache = Apache::start(stack);
    let pids = apache.pids();
    // strace first, provably tracing every process before observer starts: what it saw of its
    // markers is left out, and nothing is asked of the service until observer watches.
    let strace = Strace::attach(&pids, apache.path("logs/strace.txt"), &|target| {
        apache.get(target);
    });
    let obs = Observer::start(&[]);
    let fixer = Observer::start_with(&[], &["--fix", "puppet"]);
    apache.healthy(3);
    apache.edit("www/app/bootstrap.php", "/helpers.php'", "/helpers.phpp'");
    let answers = apache.browse(2);
    php_broken(&answers);
    let requests = failed(&answers);
    // The instance's threads: strace names a thread of a threaded process (mpm_event's) by its
    // own id.
    let tids: BTreeSet<u32> = pids.iter().flat_map(|p| threads(*p)).collect();
    let traced = strace.detach();
    // The oracle holds only if the traced processes are all there were: no worker forked or
    // retired while observer and strace watched different windows.
    let mut now = apache.pids();
    let mut before = pids.clone();
    now.sort_unstable();
    before.sort_unstable();
    assert_eq!(before, now, "the worker pool changed under strace");
    let cwds: BTreeMap<u32, Vec<u8>> = apache
        .pids()
        .into_iter()
        .filter_map(|p| {
            let l = fs::read_link(format!("/proc/{p}/cwd")).ok()?;
            Some((p, l.as_os_str().as_bytes().to_vec()))
        })
        .collect();
    let report = obs.stop();
    let (manifest, _) = fixer.stop_raw();
    eprintln!("{}", dump(&report));

    let culprit = apache.www("app/helpers.phpp");
    let top = culprit_first(&report, &culprit, "ENOENT", &apache.php_comm());
    assert_eq!(
        apache.error_log_count(&format!("Failed opening required '{culprit}'")) as u64,
        requests,
        "one require error logged per 500:\n{}",
        apache.logs()
    );
    assert_calls(
        &report,
        top,
        &REQUIRE_MISSING,
        requests,
        "request failed on the require",
    );
    let h = hint(&report, top, "near_match");
    assert_eq!(
        text(h, "message"),
        format!("did you mean {} (exists)", apache.www("app/helpers.php")),
        "{}",
        dump(&report)
    );
    assert!(
        text(h, "suggestion").contains("from helpers.phpp to helpers.php"),
        "{h:#}"
    );
    assert_benign_noise(&report, &apache);
    let boot = apache.path("www/app/bootstrap.php");
    let line = line_of(&boot, "/helpers.phpp'");
    referrer(&report, top, &boot, line, "require");
    let fix = fix_of(&report, top, "edit_line");
    assert_eq!(fix["new"], "require __DIR__ . '/helpers.php';", "{fix}");

    // The oracle: the same (path, errno) pairs, and the same number of failing calls each.
    let cwd = |pid: u32| cwds.get(&pid).cloned().unwrap_or_else(|| b"/".to_vec());
    let mut by_strace: BTreeMap<(Vec<u8>, String), u64> = BTreeMap::new();
    let mut traced_pids = BTreeSet::new();
    for line in traced.lines() {
        if let Some((pid, path, errno)) = parse_strace_line(line, &cwd) {
            traced_pids.insert(pid);
            *by_strace.entry((path, errno)).or_default() += 1;
        }
    }
    assert!(
        by_strace.len() >= 10,
        "strace saw almost nothing:\n{traced}"
    );
    // Both sides see the private instance's processes only (strace follows what it was attached
    // to; observer watches every process of the web stack's names, so rows of another apache2 on
    // the host, such as a system one, are left out here).
    let tree: BTreeSet<u32> = pids.iter().copied().collect();
    assert!(
        traced_pids.is_subset(&tids),
        "strace traced {traced_pids:?}, outside the instance's processes {tree:?} (threads \
         {tids:?})"
    );
    let mut outside = Vec::new();
    let mut by_observer: BTreeMap<(Vec<u8>, String), u64> = BTreeMap::new();
    for r in rows(&report) {
        let row_pids: BTreeSet<u32> = r["pids"]
            .as_array()
            .expect("pids")
            .iter()
            .map(|p| p.as_u64().expect("a pid") as u32)
            .collect();
        if row_pids.is_disjoint(&tree) {
            outside.push(format!("{} {:?}", path_str(r), row_pids));
            continue;
        }
        assert!(
            row_pids.is_subset(&tree) && r["pid_count"].as_u64() == Some(row_pids.len() as u64),
            "{} mixes the instance's processes {tree:?} with others: {r:#}",
            path_str(r)
        );
        by_observer.insert(
            (path_of(r), r["errno"].as_str().unwrap().to_string()),
            r["count"].as_u64().unwrap(),
        );
    }
    if !outside.is_empty() {
        eprintln!("rows of processes outside the instance, not compared: {outside:?}");
    }
    let show = |m: &BTreeMap<(Vec<u8>, String), u64>, other: &BTreeMap<(Vec<u8>, String), u64>| {
        m.iter()
            .filter(|(k, v)| other.get(*k) != Some(v))
            .map(|((p, e), n)| format!("  {} {e} x{n}\n", String::from_utf8_lossy(p)))
            .collect::<String>()
    };
    let a: BTreeSet<_> = by_strace.keys().collect();
    let b: BTreeSet<_> = by_observer.keys().collect();
    assert!(
        a == b,
        "strace and observer disagree on what failed.\nonly or different in strace:\n{}only or \
         different in observer:\n{}",
        show(&by_strace, &by_observer),
        show(&by_observer, &by_strace)
    );
    assert_eq!(
        by_strace,
        by_observer,
        "strace and observer disagree on counts.\nstrace:\n{}observer:\n{}",
        show(&by_strace, &by_observer),
        show(&by_observer, &by_strace)
    );
    eprintln!(
        "strace oracle: {} distinct failures, {} calls, pids {traced_pids:?}",
        by_strace.len(),
        by_strace.values().sum::<u64>()
    );
    let applied = apache.apply_fix(&manifest, || apache.is_healthy());
    eprintln!(
        "fix: {}:{line} require corrected, applied in {:.1?}, second apply {:.1?}",
        boot.display(),
        applied.first,
        applied.second
    );
}

/// Scenario 6: a healthy site, reloaded once: its failures are all benign, and nothing gets a
/// strong hint.
pub(crate) fn healthy_site_has_no_strong_hint_on_anything(stack: Stack) {
    let apache = Apache::start(stack);
    let obs = Observer::start(&[]);
    let fixer = Observer::start_with(&[], &["--fix", "puppet"]);
    apache.healthy(3);
    apache.reload();
    if stack == Stack::Fpm {
        apache.reload_php();
    }
    apache.healthy(2);
    let report = obs.stop();
    let (manifest, _) = fixer.stop_raw();
    eprintln!("{}", dump(&report));
    assert!(
        manifest.contains("# Nothing to change.")
            && !manifest.contains("exec {")
            && !manifest.contains("file {"),
        "a healthy site gets no fix:\n{manifest}"
    );
    for r in rows(&report) {
        assert!(
            r["fix"].is_null() || r["fix"]["kind"] == "none",
            "a healthy site gets no fix: {}\n{}",
            path_str(r),
            dump(&report)
        );
    }

    assert_benign_rows(&report, &apache, false);
    let strong = strong_hints(&report);
    assert!(
        strong.is_empty(),
        "strong hints on a healthy site: {strong:#?}\n{}",
        dump(&report)
    );
    for r in rows(&report) {
        assert!(
            matches!(r["errno"].as_str(), Some("ENOENT" | "ENOTDIR")),
            "a healthy site fails only with ENOENT/ENOTDIR: {}\n{}",
            path_str(r),
            dump(&report)
        );
    }
}

/// observer changes nothing in the service: the same requests get the same answers with and
/// without it, on a healthy and on a broken site. The plain table puts the culprit on top.
pub(crate) fn same_answers_with_and_without_observer_and_the_table_puts_the_culprit_on_top(
    stack: Stack,
) {
    let apache = Apache::start(stack);
    let bootstrap = apache.path("www/app/bootstrap.php");
    let original = fs::read_to_string(&bootstrap).unwrap();
    let session = |apache: &Apache| -> Vec<(String, u16, Vec<u8>)> {
        let mut answers = Vec::new();
        for broken in [false, true] {
            if broken {
                apache.edit("www/app/bootstrap.php", "/helpers.php'", "/helpers.phpp'");
            }
            for _ in 0..2 {
                for (page, _) in PAGES {
                    let r = apache.get(page);
                    answers.push((page.to_string(), r.status, r.body));
                }
            }
        }
        answers
    };
    let without = session(&apache);
    fs::write(&bootstrap, &original).unwrap();
    let obs = Observer::start_with(&[], &["--format", "table", "--top", "12"]);
    let with = session(&apache);
    // The report is made while the deploy is still broken, as in the incident.
    let (table, _) = obs.stop_raw();
    fs::write(&bootstrap, &original).unwrap();
    assert_eq!(without.len(), with.len());
    for (a, b) in without.iter().zip(&with) {
        assert_eq!(
            (a.0.as_str(), a.1),
            (b.0.as_str(), b.1),
            "status changed under observer"
        );
        assert!(a.2 == b.2, "body of {} changed under observer", a.0);
    }
    assert!(
        without.iter().any(|a| a.1 == 500) && without.iter().any(|a| a.1 == 200),
        "{:?}",
        without.iter().map(|a| a.1).collect::<Vec<_>>()
    );

    eprintln!("--- table report ---\n{table}--- end ---");
    let culprit = apache.www("app/helpers.phpp");
    let mut lines = table.lines();
    let header = lines
        .by_ref()
        .find(|l| l.starts_with("RANK"))
        .unwrap_or_else(|| {
            panic!("no table header:\n{table}");
        });
    assert!(header.ends_with("PATH"), "{header}");
    let first = lines.next().expect("a first row");
    let cols: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(cols.first(), Some(&"1"), "{table}");
    assert_eq!(cols.last(), Some(&culprit.as_str()), "{table}");
    assert!(cols.contains(&"ENOENT"), "{table}");
    let hint_line = format!(
        "hint: did you mean {} (exists)",
        apache.www("app/helpers.php")
    );
    let row_block: Vec<&str> = lines.take_while(|l| l.starts_with("     ")).collect();
    assert!(
        row_block.iter().any(|l| l.trim() == hint_line),
        "{hint_line:?} under the first row:\n{table}"
    );
    let named = format!(
        "named at: {}:{}  require __DIR__ . '/helpers.phpp';",
        bootstrap.display(),
        line_of(&bootstrap, "/helpers.php'")
    );
    assert!(
        row_block.iter().any(|l| l.trim() == named),
        "{named:?} under the first row:\n{table}"
    );
}
