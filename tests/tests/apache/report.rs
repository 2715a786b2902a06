//! Reading observer's report in the Apache suite: its rows, the culprit on top, a row's hints,
//! the benign failures of a healthy site, and the strong hints a healthy site must not get.

use observer_tests::path_of;
use serde_json::Value;

use crate::harness::Apache;

pub(crate) fn rows(report: &Value) -> &Vec<Value> {
    report["paths"].as_array().expect("paths array")
}

pub(crate) fn path_str(row: &Value) -> String {
    String::from_utf8_lossy(&path_of(row)).into_owned()
}

/// The top of the report, one line per row with its reasons and hints: for failure messages.
pub(crate) fn dump(report: &Value) -> String {
    let mut s = format!("totals {}\n", report["totals"]);
    for r in rows(report).iter().take(15) {
        s.push_str(&format!(
            "{:>3} {:>6} {:<8} {:>4} {} {}\n      why: {}\n",
            r["rank"],
            r["score"],
            r["errno"].as_str().unwrap_or("?"),
            r["count"],
            r["syscalls"],
            path_str(r),
            r["reasons"]
        ));
        for h in r["hints"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "      hint[{} {}]: {} | {}\n",
                h["kind"].as_str().unwrap_or("?"),
                h["weight"],
                h["message"].as_str().unwrap_or(""),
                h["suggestion"].as_str().unwrap_or("")
            ));
        }
        for x in r["referrers"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "      ref[{}]: {}:{} {}\n",
                x["directive"].as_str().unwrap_or("-"),
                x["file"].as_str().unwrap_or("?"),
                x["line"],
                x["text"].as_str().unwrap_or("")
            ));
        }
        for c in r["changed"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "      changed: {} {} ({} s before)\n",
                c["path"].as_str().unwrap_or("?"),
                c["what"].as_str().unwrap_or("?"),
                c["seconds_before_first_failure"]
            ));
        }
        if !r["fix"].is_null() {
            s.push_str(&format!("      fix: {}\n", r["fix"]));
        }
    }
    if rows(report).len() > 15 {
        s.push_str(&format!("... {} rows in all\n", rows(report).len()));
    }
    s
}

/// Asserts `path` with `errno` is ranked first, seen from processes named `comm` only (`apache2`,
/// or PHP-FPM's `php-fpm8.2`); returns its row.
pub(crate) fn culprit_first<'a>(
    report: &'a Value,
    path: &str,
    errno: &str,
    comm: &str,
) -> &'a Value {
    let all = rows(report);
    assert!(!all.is_empty(), "empty report");
    let top = &all[0];
    assert_eq!(top["rank"], 1, "{}", dump(report));
    assert!(
        path_str(top) == path && top["errno"] == errno,
        "expected {path} {errno} ranked first:\n{}",
        dump(report)
    );
    assert_eq!(top["comms"], serde_json::json!([comm]), "{}", dump(report));
    top
}

/// The hint of `kind` on `row`.
pub(crate) fn hint<'a>(report: &Value, row: &'a Value, kind: &str) -> &'a Value {
    row["hints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} hint on {}:\n{}", path_str(row), dump(report)))
}

pub(crate) fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

/// The row for (path, errno), if any.
pub(crate) fn find<'a>(report: &'a Value, path: &str, errno: &str) -> Option<&'a Value> {
    rows(report)
        .iter()
        .find(|r| path_str(r) == path && r["errno"] == errno)
}

/// The culprit never arrives alone: the healthy site's benign failures are in the report too,
/// ranked below it and labelled as the probes they are.
pub(crate) fn assert_benign_noise(report: &Value, apache: &Apache) {
    assert_benign_rows(report, apache, true);
}

/// The healthy site's benign failures, reported and labelled; `below_culprit`: none of them on
/// top (there is a culprit above them).
pub(crate) fn assert_benign_rows(report: &Value, apache: &Apache, below_culprit: bool) {
    let expect = [
        (apache.www(".htaccess"), "ENOENT", Some(".htaccess")),
        (apache.www("docs/.htaccess"), "ENOENT", Some(".htaccess")),
        (
            apache.www("assets/style.css/.htaccess"),
            "ENOTDIR",
            Some(".htaccess"),
        ),
        (apache.www("index.html"), "ENOENT", Some("DirectoryIndex")),
        (
            apache.www("content/languages/shop-de_DE.mo"),
            "ENOENT",
            Some("translation"),
        ),
        (apache.www("content/object-cache.php"), "ENOENT", None),
        (apache.www("config/local.php"), "ENOENT", None),
        (apache.www(".maintenance"), "ENOENT", None),
        (
            apache.www("themes/child/templates/about.php"),
            "ENOENT",
            None,
        ),
    ];
    for (path, errno, pattern) in expect {
        let r = find(report, &path, errno)
            .unwrap_or_else(|| panic!("benign {path} {errno} not reported:\n{}", dump(report)));
        assert!(
            !below_culprit || r["rank"].as_u64() > Some(1),
            "{path} ranked first:\n{}",
            dump(report)
        );
        if let Some(p) = pattern {
            let label = format!("probe pattern ({p})");
            assert!(
                r["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == label.as_str()),
                "{path} not labelled {label}:\n{}",
                dump(report)
            );
        }
    }
}

/// Strong hints (weight >= 1.5) say "this is broken": a healthy site must have none.
pub(crate) fn strong_hints(report: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows(report) {
        for h in r["hints"].as_array().into_iter().flatten() {
            if h["weight"].as_f64().unwrap_or(0.0) >= 1.5 {
                out.push(format!(
                    "{} {}: {} {}",
                    path_str(r),
                    r["errno"],
                    h["kind"],
                    h["message"]
                ));
            }
        }
    }
    out
}

/// The line of `file` (1-based) that contains `needle`, as the fixture has it now.
pub(crate) fn line_of(file: &std::path::Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {}", file.display()))
        + 1
}

/// Asserts `row` names `file`:`line` among its referrers, with `directive`; returns it.
pub(crate) fn referrer<'a>(
    report: &Value,
    row: &'a Value,
    file: &std::path::Path,
    line: usize,
    directive: &str,
) -> &'a Value {
    let file = file.to_str().unwrap();
    row["referrers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["file"] == file && r["line"] == line)
        .filter(|r| r["directive"] == directive)
        .unwrap_or_else(|| {
            panic!(
                "{}: no referrer {file}:{line} ({directive}):\n{}",
                path_str(row),
                dump(report)
            )
        })
}

/// Asserts the row's fix is of `kind`; returns it.
pub(crate) fn fix_of<'a>(report: &Value, row: &'a Value, kind: &str) -> &'a Value {
    let f = &row["fix"];
    assert_eq!(
        f["kind"],
        kind,
        "{}: fix {f}\n{}",
        path_str(row),
        dump(report)
    );
    f
}

// What one failing event costs in failing calls, from how the software does it (checked against
// strace by scenario 5): counted with the events themselves (requests answered 500, errors in the
// logs), this gives each culprit's exact count without asking observer.

/// glibc's dlopen of a path with a slash: one open of exactly that path.
pub(crate) const DLOPEN: [(&str, u64); 1] = [("openat", 1)];
/// PHP's `require` of a missing absolute path: realpath's lstat twice (resolving the include,
/// then in the plain-files opener), then the open.
pub(crate) const REQUIRE_MISSING: [(&str, u64); 2] = [("newfstatat", 2), ("openat", 1)];
/// PHP's `require` of an existing file it may not read: the lstats succeed, the open fails.
pub(crate) const REQUIRE_DENIED: [(&str, u64); 1] = [("openat", 1)];
/// Apache's `Include` of a missing file (no wildcard): is it a directory (a stat), then the open.
pub(crate) const INCLUDE_MISSING: [(&str, u64); 2] = [("newfstatat", 1), ("openat", 1)];

/// Asserts the failing calls of `row` are exactly `times` x `per` (calls of each syscall per
/// event), and no other: `what` says what the event is, for the message.
pub(crate) fn assert_calls(
    report: &Value,
    row: &Value,
    per: &[(&str, u64)],
    times: u64,
    what: &str,
) {
    assert!(times > 0, "no {what} to count: {}", dump(report));
    let want: serde_json::Map<String, Value> = per
        .iter()
        .map(|(sys, n)| (sys.to_string(), Value::from(n * times)))
        .collect();
    assert_eq!(
        row["syscalls"],
        Value::Object(want),
        "{}: {times} x {what}, each {per:?}:\n{}",
        path_str(row),
        dump(report)
    );
    assert_eq!(
        row["count"].as_u64(),
        Some(per.iter().map(|(_, n)| n * times).sum::<u64>()),
        "{}",
        dump(report)
    );
}
