//! Stage 5: render. What the operator reads: the plain [`table`], the refreshing [`live`] view,
//! [`json`] for machines, a path's [`timeline`] from the history; [`width`] fits text to a
//! terminal. Every name that came from a watched process is escaped on the way out.

pub(crate) mod fix;
pub(crate) mod json;
pub(crate) mod live;
mod table;
pub(crate) mod timeline;
mod width;

use std::time::SystemTime;

use crate::report::Report;
use crate::time::{local_clock, time_of_ms};

/// How a report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Refreshing ranked view on the terminal, then the final report as a table.
    Live,
    /// A plain table, for pipes and logs.
    Table,
    /// One JSON document at the end (schema in the README).
    Json,
    /// One JSON object per new distinct failure as it happens, then a summary line.
    Jsonl,
}

/// The final report in `format`, at most `top` rows.
pub(crate) fn render(report: &Report, format: Format, top: Option<usize>) -> String {
    match format {
        Format::Json => crate::escape::safe_json(&format!("{:#}\n", json::document(report, top))),
        Format::Jsonl => json::summary(&report.totals),
        Format::Table | Format::Live => {
            let t = table::table(
                &report.ranked,
                &report.totals,
                top,
                &table::TableOpts::default(),
            );
            match &report.history {
                Some(h) => format!("{}{t}", table::history_preamble(h)),
                None => t,
            }
        }
    }
}

/// A history time as the operator reads it: local, with the date when not `reference`'s day.
fn local(ms: i64, reference: SystemTime) -> String {
    local_clock(time_of_ms(ms), reference)
}

/// "observer was not recording: 12:00:00 .. 12:05:00, ..." (`None` when it always was).
fn gaps_line(gaps: &[(i64, i64)], reference: SystemTime) -> Option<String> {
    if gaps.is_empty() {
        return None;
    }
    let g: Vec<String> = gaps
        .iter()
        .map(|(a, b)| format!("{} .. {}", local(*a, reference), local(*b, reference)))
        .collect();
    Some(format!("observer was not recording: {}\n", g.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::json::{base64, document, jsonl_event};
    use super::live::live_frame;
    use super::table::{TableOpts, table};
    use super::width::width_of;
    use super::*;
    use crate::model::{Evidence, Hint, HintKind, OpenMode, Ranked, Reason, Syscall, Totals};
    use crate::report::changed::{Change, ChangeKind};
    use crate::report::fix::{Action, Fix, Plan, Reload};
    use crate::report::referrers::{Directive, Referrer, Target};
    use crate::testutil::{failure, golden, golden_json, t0};
    use serde_json::{Value, json};
    use std::time::Duration;

    fn hint(kind: HintKind, message: &str, suggestion: Option<&str>, weight: f64) -> Hint {
        Hint {
            kind,
            message: message.into(),
            suggestion: suggestion.map(Into::into),
            weight,
            remedy: None,
        }
    }

    const HOSTILE: &[u8] = b"/var/www/html/\x1b[31mred\nline\xff\xfe.php";

    /// The first row's referrer, what changed, and its fix.
    fn require_evidence() -> Evidence {
        let file = bytes::Bytes::from_static(b"/var/www/html/wp-content/plugins/shop/shop.php");
        let text = b"    require_once __DIR__ . '/class-shop.phpp';".to_vec();
        Evidence {
            referrers: vec![Referrer {
                file: file.clone(),
                line: 12,
                text: text.clone(),
                span: (30, 46),
                target: Target::File,
                components: 1,
                directive: Some(Directive::Require),
            }],
            changed: vec![Change {
                path: file.clone(),
                kind: ChangeKind::Modified,
                at: t0() - Duration::from_secs(4),
                before_first: true,
            }],
            plan: Some(Plan::Fix(Fix {
                action: Action::EditLine {
                    file,
                    line: 12,
                    old: text,
                    new: b"    require_once __DIR__ . '/class-shop.php';".to_vec(),
                },
                reload: Some(Reload::Unit("apache2.service".into())),
                why: "did you mean /var/www/html/wp-content/plugins/shop/class-shop.php (exists)"
                    .into(),
            })),
        }
    }

    /// The second row's fix: a permission, reloading PHP-FPM's master outside systemd.
    fn denied_evidence() -> Evidence {
        Evidence {
            plan: Some(Plan::Fix(Fix {
                action: Action::Permission {
                    path: b"/etc/app/config.php".to_vec(),
                    chgrp: Some("4242420".into()),
                    chmod: "g+r".into(),
                },
                reload: Some(Reload::Signal {
                    pid: 4100,
                    comm: "php-fpm8.2".into(),
                    signal: "USR2",
                }),
                why: "uid 4242420 cannot read /etc/app/config.php (-rw------- 0600 root:root)"
                    .into(),
            })),
            ..Evidence::default()
        }
    }

    /// A fixed report: no filesystem, no clock, no NSS beyond uid/gid 0.
    fn fixture() -> (Vec<Ranked>, Totals) {
        let mut require = failure(
            "/var/www/html/wp-content/plugins/shop/class-shop.phpp",
            libc::ENOENT,
            &[(Syscall::Openat, 50), (Syscall::Newfstatat, 150)],
        );
        require.open_flags = 0o2000000;
        require.pids = [4101, 4102].into();
        require.pid_count = 2;
        let mut denied = failure("/etc/app/config.php", libc::EACCES, &[(Syscall::Openat, 3)]);
        denied.creds = [(4_242_420, 4_242_420)].into();
        denied.comms = ["php-fpm8.2".to_string()].into();
        denied.first_seen = t0() + Duration::from_millis(312_250);
        denied.last_seen = t0() + Duration::from_millis(598_003);
        let hta = failure(
            "/var/www/html/wp-content/.htaccess",
            libc::ENOENT,
            &[(Syscall::Openat, 5000)],
        );
        let mut hostile = failure(
            "/",
            libc::ENOENT,
            &[(Syscall::Newfstatat, 2), (Syscall::Newlstat, 2)],
        );
        hostile.path = bytes::Bytes::from_static(HOSTILE);
        hostile.comms = ["apache2".to_string(), "evil\x1b]0;x\x07".to_string()].into();
        let mut long = failure(
            &format!(
                "/srv/{}/deep/config.inc.php",
                "very-long-directory-name/".repeat(6)
            ),
            libc::ENOTDIR,
            &[(Syscall::Openat, 7)],
        );
        long.comms = [
            "apache2".into(),
            "php-fpm8.2".into(),
            "cron".into(),
            "sh".into(),
        ]
        .into();
        let ranked = vec![
            Ranked {
                rank: 1,
                failure: require,
                score: 7.186_543,
                reasons: vec![
                    Reason::FailedOpen(OpenMode::Read),
                    Reason::Errno(libc::ENOENT),
                    Reason::PresentFromStart,
                    Reason::NearIdentical,
                ],
                hints: vec![hint(
                    HintKind::NearMatch,
                    "did you mean /var/www/html/wp-content/plugins/shop/class-shop.php (exists)",
                    Some(
                        "correct the reference from class-shop.phpp to class-shop.php (or rename the file)",
                    ),
                    3.0,
                )],
                evidence: require_evidence(),
            },
            Ranked {
                rank: 2,
                failure: denied,
                score: 6.873,
                reasons: vec![
                    Reason::FailedOpen(OpenMode::Read),
                    Reason::Errno(libc::EACCES),
                    Reason::NewSince("12:05:12".into()),
                    Reason::Found(HintKind::PermissionDenied),
                ],
                hints: vec![hint(
                    HintKind::PermissionDenied,
                    "uid 4242420 cannot read /etc/app/config.php (-rw------- 0600 root:root)",
                    Some(
                        "chgrp 4242420 /etc/app/config.php && chmod g+r /etc/app/config.php (or: chmod o+r /etc/app/config.php, for every user)",
                    ),
                    3.0,
                )],
                evidence: denied_evidence(),
            },
            Ranked {
                rank: 3,
                failure: hostile,
                score: 2.1,
                reasons: vec![
                    Reason::StatProbe,
                    Reason::Errno(libc::ENOENT),
                    Reason::PresentFromStart,
                ],
                hints: vec![],
                evidence: Default::default(),
            },
            Ranked {
                rank: 4,
                failure: long,
                score: 2.055,
                reasons: vec![
                    Reason::FailedOpen(OpenMode::Read),
                    Reason::Errno(libc::ENOTDIR),
                    Reason::PresentFromStart,
                ],
                hints: vec![hint(
                    HintKind::NotADirectory,
                    "/srv/x is a regular file, not a directory, but the path continues below it",
                    None,
                    0.3,
                )],
                evidence: Default::default(),
            },
            Ranked {
                rank: 5,
                failure: hta,
                score: 1.61,
                reasons: vec![
                    Reason::FailedOpen(OpenMode::Read),
                    Reason::Errno(libc::ENOENT),
                    Reason::PresentFromStart,
                    Reason::ProbePattern(".htaccess"),
                ],
                hints: vec![],
                evidence: Default::default(),
            },
        ];
        let totals = Totals {
            failures: 5216,
            distinct: 5,
            lost: 2,
            overflow: 0,
            dropped: 0,
            unlisted_paths: 0,
            unlisted_failures: 0,
            capture: None,
        };
        (ranked, totals)
    }

    fn report(ranked: &[Ranked], totals: &Totals) -> Report {
        Report {
            ranked: ranked.to_vec(),
            totals: totals.clone(),
            started: t0(),
            ended: t0() + Duration::from_secs(600),
            filter: json!({"comm": ["apache2", "php-fpm8.2"]}),
            history: None,
        }
    }

    #[test]
    fn table_golden() {
        let (r, t) = fixture();
        let out = table(&r, &t, None, &TableOpts::default());
        golden("table.txt", &out);
        assert!(!out.contains('\x1b'), "raw ESC in table output");
        assert!(out.contains("\\e[31mred\\nline\\xff\\xfe.php"));
        let top = table(
            &r,
            &t,
            Some(2),
            &TableOpts {
                reasons: false,
                hints: false,
                max_comms: 1,
            },
        );
        golden("table_top2.txt", &top);
        let empty = table(&[], &Totals::default(), None, &TableOpts::default());
        assert_eq!(
            empty,
            "failures 0  distinct 0  lost 0\nno failed opens or stats recorded\n"
        );
    }

    #[test]
    fn json_golden() {
        let (r, t) = fixture();
        let mut v = document(&report(&r, &t), None);
        assert_eq!(v["observer"], env!("CARGO_PKG_VERSION"));
        v["observer"] = json!("VERSION");
        let hostile = &v["paths"][2];
        assert_eq!(
            hostile["path"],
            "/var/www/html/\\e[31mred\\nline\\xff\\xfe.php"
        );
        assert_eq!(hostile["path_base64"], base64(HOSTILE));
        // Valid UTF-8 comms go out exact.
        assert_eq!(hostile["comms"][1], "evil\x1b]0;x\x07");
        assert!(v["paths"][0].get("path_base64").is_none());
        golden_json("report.json", &v);

        let ev = jsonl_event(&r[2].failure, 4103);
        assert_eq!(ev["path_base64"], base64(HOSTILE));
        let line = serde_json::to_string(&ev).unwrap();
        assert!(!line.contains('\n') && !line.contains('\x1b'));
        golden("event.jsonl", &(line + "\n"));
    }

    #[test]
    fn rows_from_elsewhere_get_a_where_column_and_their_container_in_json() {
        use crate::place::{Container, Place, Runtime};
        let (mut r, t) = fixture();
        let plain = table(&r, &t, None, &TableOpts::default());
        assert!(!plain.contains("WHERE"), "{plain}");
        let id = "3f2a9c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
        r[1].failure.place = Place {
            container: Some(Container {
                runtime: Runtime::Docker,
                id: id.into(),
                pod: None,
            }),
            unit: None,
            private: true,
        };
        r[2].failure.place.unit = Some("apache2.service".into());
        let out = table(&r, &t, None, &TableOpts::default());
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[1].contains("  WHERE  ") && lines[1].ends_with("PATH"),
            "{out}"
        );
        let denied = lines
            .iter()
            .find(|l| l.contains("/etc/app/config.php"))
            .unwrap();
        assert!(denied.contains("  docker:3f2a9c1b2d4e  /etc/app"), "{out}");
        assert!(out.contains("  apache2.service  "), "{out}");
        let frame = live_frame(&r, &t, None, 160, 12, Duration::ZERO, "");
        assert!(frame.contains("docker:3f2a9c1b2d4e"), "{frame}");
        let v = document(&report(&r, &t), None);
        let row = &v["paths"][1];
        assert_eq!(row["container"]["runtime"], "docker");
        assert_eq!(row["container"]["id"], id);
        assert_eq!(row["container"]["pod"], Value::Null);
        assert_eq!(row["unit"], Value::Null);
        // The fixture's rows share the host's view: a private place in it is not "gone".
        assert_eq!(row["view"], "private");
        assert_eq!(v["paths"][2]["unit"], "apache2.service");
        assert_eq!(v["paths"][2]["view"], "host");
    }

    #[test]
    fn fixes_as_puppet_and_shell_goldens() {
        let (mut r, t) = fixture();
        // A row observer has no sure fix for says why, and changes nothing.
        r[3].evidence.plan = Some(Plan::NotConfident(
            "nothing says what the right file is".into(),
        ));
        let rep = report(&r, &t);
        let pp = fix::puppet(&rep);
        golden("fix.pp", &pp);
        golden("fix.sh", &fix::shell(&rep));
        assert!(pp.contains("notify      => Exec['observer: reload apache2.service']"));
        let j = document(&rep, None);
        assert_eq!(j["paths"][0]["fix"]["kind"], "edit_line");
        assert_eq!(j["paths"][0]["fix"]["line"], 12);
        assert_eq!(j["paths"][0]["referrers"][0]["directive"], "require");
        assert_eq!(j["paths"][1]["fix"]["reload"]["signal"], "USR2");
        assert_eq!(j["paths"][3]["fix"]["kind"], "none");
        assert_eq!(j["paths"][4]["fix"], Value::Null);
    }

    #[test]
    fn exact_utf8_path_with_controls_in_json() {
        let (mut r, t) = fixture();
        r[0].failure.path = bytes::Bytes::from_static(b"/tmp/\x1b[31mx\n.php");
        let v = document(&report(&r[..1], &t), None);
        assert_eq!(v["paths"][0]["path"], "/tmp/\x1b[31mx\n.php");
        assert!(v["paths"][0].get("path_base64").is_none());
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains('\x1b') && !text.contains('\n'));
        let t = table(&r[..1], &t, None, &TableOpts::default());
        assert!(t.contains("/tmp/\\e[31mx\\n.php"));
    }

    #[test]
    fn live_golden_and_fit() {
        let (r, t) = fixture();
        let frame = live_frame(
            &r,
            &t,
            None,
            100,
            12,
            Duration::from_secs(75),
            "comm apache2,php-fpm8.2",
        );
        golden("live.txt", &frame);
        for (width, height) in [
            (100, 12),
            (80, 4),
            (40, 30),
            (20, 3),
            (1, 1),
            (200, 50),
            (0, 0),
        ] {
            let frame = live_frame(&r, &t, Some(4), width, height, Duration::ZERO, "x\x1b[2J");
            assert!(frame.starts_with("\x1b[H"));
            assert!(frame.ends_with("\x1b[J"));
            let body = &frame[3..frame.len() - 3];
            let lines: Vec<&str> = if body.is_empty() {
                vec![]
            } else {
                body.split("\r\n").collect()
            };
            assert!(
                lines.len() <= height,
                "{width}x{height}: {} lines",
                lines.len()
            );
            for l in lines {
                let l = l.strip_suffix("\x1b[K").expect("line not cleared to end");
                let plain = l.replace("\x1b[1m", "").replace("\x1b[0m", "");
                assert!(!plain.contains('\x1b'), "stray escape in {plain:?}");
                assert!(width_of(&plain) <= width, "{width}x{height}: {plain:?}");
            }
        }
    }
}
