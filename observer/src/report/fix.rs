//! Stage 4, the fix: for each culprit worth acting on, the change that repairs it, as data that
//! `--fix puppet` and `--fix shell` write out ([`crate::render`]). Only confident fixes:
//!
//! - a typo, a wrong case or a mistyped directory ([`Remedy::Rename`]) is corrected on the
//!   exact line of the referrer that spells it, and only that token of that line;
//! - a permission ([`Remedy::Permission`]): the smallest chgrp/chmod of the denying node;
//! - a missing file of a package ([`Remedy::Reinstall`]): reinstall the package;
//! - a missing `Include` with no near match: the line commented out.
//!
//! Anything else gets a reason instead of a change. Each change reloads the service whose
//! processes failed: its systemd unit, or (outside systemd) a signal to its master process.

use bytes::Bytes;

use crate::escape::escape_path;
use crate::model::{Failure, Hint, Remedy};
use crate::place::Place;
use crate::report::referrers::{Directive, Referrer};

/// A hint this strong (or a referrer that loads the file) makes a row worth fixing.
pub(crate) const STRONG: f64 = 1.5;

/// What `--fix` does for one row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Plan {
    /// A change observer is confident of.
    Fix(Fix),
    /// No change: why.
    NotConfident(String),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fix {
    pub(crate) action: Action,
    /// What makes the change take effect; `None` when observer cannot tell which process.
    pub(crate) reload: Option<Reload>,
    /// Why this is the fix, for a comment above it.
    pub(crate) why: String,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Line `line` of `file` reads `old` now and must read `new`.
    EditLine {
        file: Bytes,
        line: usize,
        old: Vec<u8>,
        new: Vec<u8>,
    },
    /// chgrp (when given), then chmod (symbolic) of `path`.
    Permission {
        path: Vec<u8>,
        chgrp: Option<String>,
        chmod: String,
    },
    /// Reinstall `packages`, which own `path` (missing).
    Reinstall {
        packages: Vec<String>,
        confmiss: bool,
        path: Bytes,
    },
}

/// How the change reaches the running service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reload {
    /// `systemctl reload-or-restart UNIT`.
    Unit(String),
    /// A service not run by systemd here: `kill -SIGNAL pid` of its master (`USR1`: Apache's
    /// graceful restart; `USR2`: PHP-FPM's reload).
    Signal {
        pid: u32,
        comm: String,
        signal: &'static str,
    },
}

/// Is `f` (with these hints and referrers) a culprit worth a fix?
pub(crate) fn wanted(hints: &[Hint], referrers: &[Referrer]) -> bool {
    hints.iter().any(|h| h.weight >= STRONG)
        || referrers
            .iter()
            .any(|r| r.directive.is_some_and(Directive::required))
}

/// The component `from` inside the reference of `r` (at component boundaries), replaced by
/// `to`: the new line, or `None` when the reference does not spell it.
fn renamed(r: &Referrer, from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let (a, b) = r.span;
    let span = &r.text[a..b];
    let mut at = None;
    let mut i = 0;
    while i + from.len() <= span.len() {
        if &span[i..i + from.len()] == from
            && (i == 0 || span[i - 1] == b'/')
            && (i + from.len() == span.len() || span[i + from.len()] == b'/')
        {
            at = Some(a + i);
            // The last one: the file name, or the deepest directory, is the one that is wrong.
        }
        i += 1;
    }
    let at = at?;
    let mut new = r.text[..at].to_vec();
    new.extend_from_slice(to);
    new.extend_from_slice(&r.text[at + from.len()..]);
    Some(new)
}

/// The plan for `f`, given its hints and referrers; `reload` is how its service reloads.
pub(crate) fn plan(
    f: &Failure,
    hints: &[Hint],
    referrers: &[Referrer],
    reload: Option<Reload>,
) -> Plan {
    for h in hints.iter().filter(|h| h.weight > 0.0) {
        match &h.remedy {
            Some(Remedy::Rename { from, to }) => {
                let edit = referrers
                    .iter()
                    .find_map(|r| renamed(r, from, to).map(|new| (r, new)));
                return match edit {
                    Some((r, new)) => Plan::Fix(Fix {
                        action: Action::EditLine {
                            file: r.file.clone(),
                            line: r.line,
                            old: r.text.clone(),
                            new,
                        },
                        reload,
                        why: h.message.clone(),
                    }),
                    None => Plan::NotConfident(format!(
                        "{}, but no file observer read names it: correct the reference by hand",
                        h.message
                    )),
                };
            }
            Some(Remedy::Permission { path, chgrp, chmod }) => {
                return Plan::Fix(Fix {
                    action: Action::Permission {
                        path: path.clone(),
                        chgrp: chgrp.clone(),
                        chmod: chmod.clone(),
                    },
                    reload,
                    why: h.message.clone(),
                });
            }
            Some(Remedy::Reinstall { packages, confmiss }) => {
                return Plan::Fix(Fix {
                    action: Action::Reinstall {
                        packages: packages.clone(),
                        confmiss: *confmiss,
                        path: f.path.clone(),
                    },
                    reload,
                    why: h.message.clone(),
                });
            }
            None => {}
        }
    }
    // A missing file an Apache Include names, nothing like it nearby: the line goes.
    if f.errno == libc::ENOENT
        && let Some(r) = referrers
            .iter()
            .find(|r| r.directive == Some(Directive::Include))
    {
        let mut new = format!("{} ", Directive::Include.comment()).into_bytes();
        new.extend_from_slice(&r.text);
        return Plan::Fix(Fix {
            action: Action::EditLine {
                file: r.file.clone(),
                line: r.line,
                old: r.text.clone(),
                new,
            },
            reload,
            why: format!(
                "included by {}:{}, and nothing like it exists: the Include is commented out",
                escape_path(&r.file),
                r.line
            ),
        });
    }
    let strongest = hints
        .iter()
        .filter(|h| h.weight > 0.0)
        .max_by(|a, b| a.weight.total_cmp(&b.weight));
    Plan::NotConfident(match strongest {
        Some(h) => format!("{}: no change observer is sure of", h.message),
        None => "nothing says what the right file is".to_string(),
    })
}

/// How the service of processes named `comms` in `place` reloads: its systemd unit, or a signal
/// to its master process: the ancestor of the same name of one of the failing processes `pids`
/// still running, else the one master process of that name (none when there are several).
pub(crate) fn reload_of(comms: &[String], place: &Place, pids: &[u32]) -> Option<Reload> {
    if let Some(u) = &place.unit {
        return Some(Reload::Unit(u.clone()));
    }
    let comm = comms.first()?;
    let signal = if comm == "apache2" || comm == "httpd" {
        "USR1"
    } else if comm.starts_with("php-fpm") {
        "USR2"
    } else {
        return None;
    };
    let procs = crate::capture::processes();
    let name_of = |pid: u32| {
        procs
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, n)| n.as_str())
    };
    // The failing processes' own master, when one of them still runs.
    let mut own: Vec<u32> = Vec::new();
    for &p in pids {
        if name_of(p) != Some(comm.as_str()) {
            continue;
        }
        let mut at = p;
        while let Some(up) =
            crate::capture::read_ppid(at).filter(|&u| name_of(u) == Some(comm.as_str()))
        {
            at = up;
        }
        if !own.contains(&at) {
            own.push(at);
        }
    }
    if let [pid] = own.as_slice() {
        return Some(Reload::Signal {
            pid: *pid,
            comm: comm.clone(),
            signal,
        });
    }
    let masters: Vec<u32> = procs
        .iter()
        .filter(|(_, n)| n == comm)
        .filter(|(pid, _)| crate::capture::read_ppid(*pid).and_then(name_of) != Some(comm.as_str()))
        .filter(|(pid, _)| {
            let (c, u) = crate::place::cgroup_of_pid(*pid)
                .map(|p| crate::place::parse_cgroup(&p))
                .unwrap_or_default();
            c == place.container && u == place.unit
        })
        .map(|(pid, _)| *pid)
        .collect();
    match masters.as_slice() {
        [pid] => Some(Reload::Signal {
            pid: *pid,
            comm: comm.clone(),
            signal,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HintKind, Syscall};
    use crate::report::referrers::Target;
    use crate::testutil::failure;

    fn referrer(text: &str, span: &str, directive: Option<Directive>) -> Referrer {
        let a = text.find(span).unwrap();
        Referrer {
            file: Bytes::from_static(b"/srv/app/bootstrap.php"),
            line: 3,
            text: text.as_bytes().to_vec(),
            span: (a, a + span.len()),
            target: Target::File,
            components: 1,
            directive,
        }
    }

    fn near(from: &str, to: &str) -> Hint {
        Hint {
            kind: HintKind::NearMatch,
            message: format!("did you mean {to} (exists)"),
            suggestion: None,
            weight: 3.0,
            remedy: Some(Remedy::Rename {
                from: from.as_bytes().to_vec(),
                to: to.as_bytes().to_vec(),
            }),
        }
    }

    #[test]
    fn a_typo_is_corrected_on_its_line_only_in_the_reference() {
        let f = failure(
            "/srv/app/helpers.phpp",
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let line = "require __DIR__ . '/helpers.phpp'; // not helpers.phpp.bak";
        let r = referrer(line, "/helpers.phpp", Some(Directive::Require));
        let p = plan(
            &f,
            &[near("helpers.phpp", "helpers.php")],
            std::slice::from_ref(&r),
            None,
        );
        let Plan::Fix(fix) = p else { panic!("{p:?}") };
        assert_eq!(
            fix.action,
            Action::EditLine {
                file: r.file.clone(),
                line: 3,
                old: line.as_bytes().to_vec(),
                new: b"require __DIR__ . '/helpers.php'; // not helpers.phpp.bak".to_vec(),
            }
        );
        // No line spells it: no guess.
        assert!(matches!(
            plan(&f, &[near("helpers.phpp", "helpers.php")], &[], None),
            Plan::NotConfident(_)
        ));
    }

    #[test]
    fn a_mistyped_directory_is_corrected_where_the_line_spells_it() {
        let f = failure(
            "/usr/lib/php/20220830/calendar.so",
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let ini = referrer(
            "extension_dir = \"/usr/lib/php/20220830\"",
            "/usr/lib/php/20220830",
            Some(Directive::ExtensionDir),
        );
        let conf = referrer(
            "extension=calendar.so",
            "calendar.so",
            Some(Directive::Extension),
        );
        let Plan::Fix(fix) = plan(&f, &[near("20220830", "20220829")], &[conf, ini], None) else {
            panic!()
        };
        let Action::EditLine { new, .. } = fix.action else {
            panic!()
        };
        assert_eq!(new, b"extension_dir = \"/usr/lib/php/20220829\"");
    }

    #[test]
    fn a_missing_include_with_nothing_like_it_is_commented_out() {
        let f = failure(
            "/etc/apache2/conf.d/gone.conf",
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let r = referrer(
            "Include /etc/apache2/conf.d/gone.conf",
            "/etc/apache2/conf.d/gone.conf",
            Some(Directive::Include),
        );
        let Plan::Fix(fix) = plan(&f, &[], &[r], None) else {
            panic!()
        };
        let Action::EditLine { new, .. } = fix.action else {
            panic!()
        };
        assert_eq!(new, b"# Include /etc/apache2/conf.d/gone.conf");
        // An optional include of a missing file is not a fault: nothing to fix.
        let opt = referrer(
            "IncludeOptional /etc/apache2/conf.d/gone.conf",
            "/etc/apache2/conf.d/gone.conf",
            Some(Directive::IncludeOptional),
        );
        assert!(!wanted(&[], std::slice::from_ref(&opt)));
        assert!(matches!(plan(&f, &[], &[opt], None), Plan::NotConfident(_)));
    }
}
