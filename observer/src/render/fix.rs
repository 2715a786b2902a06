//! Stage 5, `--fix`: the report's fixes as a Puppet manifest or a shell script, one change per
//! culprit observer is confident of, each guarded so that applying it twice changes nothing,
//! each followed by a reload of the service whose processes failed. A culprit without a
//! confident fix gets a comment saying why, and no change.
//!
//! A line is edited by a short Perl program (Perl is in every Debian and RHEL base system)
//! that rewrites that one line only if it still reads exactly as observer read it; the file,
//! the line number and the old and new texts travel in the environment, so no text of the file
//! is ever parsed by a shell or by Puppet.

use std::fmt::Write as _;

use crate::escape::{escape_path, shell_quote};
use crate::model::Ranked;
use crate::report::Report;
use crate::report::fix::{Action, Fix, Plan, Reload};
use crate::time::rfc3339_millis;

/// The two forms `--fix` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FixFormat {
    Puppet,
    Shell,
}

/// Exits 0 when line `OBSERVER_LINE` of `OBSERVER_FILE` reads `OBSERVER_OLD` (without its end of
/// line), 1 otherwise. No single quotes: it is single-quoted for the shell.
const CHECK: &str = "open(my $f, \"<\", $ENV{OBSERVER_FILE}) or exit 1; while (<$f>) { next if $. != $ENV{OBSERVER_LINE}; s/\\r?\\n\\z//; exit($_ eq $ENV{OBSERVER_OLD} ? 0 : 1) } exit 1";

/// Rewrites that line to `OBSERVER_NEW` in place (same inode, owner and mode); does nothing when
/// it reads `OBSERVER_NEW` already, and fails without writing when it reads neither.
const EDIT: &str = "my ($p, $n) = @ENV{qw(OBSERVER_FILE OBSERVER_LINE)}; open(my $f, \"+<\", $p) or die \"$p: $!\\n\"; my @l = <$f>; die \"$p has no line $n: not changed\\n\" unless $n >= 1 && $n <= @l && $l[$n - 1] =~ /\\A(.*?)(\\r?\\n)?\\z/s; my ($line, $eol) = ($1, $2 // \"\"); exit 0 if $line eq $ENV{OBSERVER_NEW}; die \"$p:$n does not read as observer saw it: not changed\\n\" unless $line eq $ENV{OBSERVER_OLD}; $l[$n - 1] = $ENV{OBSERVER_NEW} . $eol; seek($f, 0, 0) or die \"$p: $!\\n\"; print $f @l or die \"$p: $!\\n\"; truncate($f, tell($f)) or die \"$p: $!\\n\"; close($f) or die \"$p: $!\\n\"";

const PATH: &str =
    "['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']";

/// The report's fixes in `form`.
pub(crate) fn render(report: &Report, form: FixFormat) -> String {
    match form {
        FixFormat::Puppet => puppet(report),
        FixFormat::Shell => shell(report),
    }
}

/// A Puppet single-quoted string.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `bytes` as UTF-8 text without NUL, or why a fix cannot carry it.
fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.contains('\0'))
}

/// The fixes of the report, in rank order: (row, fix or the reason there is none). Two rows
/// wanting the same change share it; a second, different change to the same line is refused.
fn fixes(report: &Report) -> Vec<(&Ranked, Result<&Fix, String>)> {
    let mut out: Vec<(&Ranked, Result<&Fix, String>)> = Vec::new();
    for r in &report.ranked {
        let Some(plan) = &r.evidence.plan else {
            continue;
        };
        let item = match plan {
            Plan::NotConfident(why) => Err(why.clone()),
            Plan::Fix(fix) => {
                let carried = match &fix.action {
                    Action::EditLine { file, old, new, .. } => {
                        text(file).is_some() && text(old).is_some() && text(new).is_some()
                    }
                    Action::Permission { path, .. } => text(path).is_some(),
                    Action::Reinstall { path, .. } => text(path).is_some(),
                };
                let clash = out.iter().find_map(|(_, o)| match (o, &fix.action) {
                    (
                        Ok(Fix {
                            action:
                                Action::EditLine {
                                    file: f1,
                                    line: l1,
                                    new: n1,
                                    ..
                                },
                            ..
                        }),
                        Action::EditLine {
                            file, line, new, ..
                        },
                    ) if f1 == file && l1 == line => Some(n1 == new),
                    (Ok(o), a) if o.action == *a => Some(true),
                    _ => None,
                });
                match (carried, clash) {
                    (false, _) => Err(format!(
                        "{}: the file or line is not UTF-8 text, which a manifest cannot carry: \
                         fix it by hand",
                        escape_path(&r.failure.path)
                    )),
                    // The same change as an earlier row's: written once.
                    (true, Some(true)) => continue,
                    (true, Some(false)) => Err(format!(
                        "{}: another fix above changes the same line: apply that one first",
                        escape_path(&r.failure.path)
                    )),
                    (true, None) => Ok(fix),
                }
            }
        };
        out.push((r, item));
    }
    out
}

fn header(report: &Report, form: &str, apply: &str, out: &mut String) {
    let source = match &report.history {
        Some(h) => format!(
            "the history {} from {} to {}",
            escape_path(h.db.as_os_str().as_encoded_bytes()),
            rfc3339_millis(crate::time::time_of_ms(h.from_ms)),
            rfc3339_millis(crate::time::time_of_ms(h.to_ms))
        ),
        None => format!(
            "a capture from {} to {}",
            rfc3339_millis(report.started),
            rfc3339_millis(report.ended)
        ),
    };
    let _ = writeln!(
        out,
        "# observer --fix {form}: the fixes observer is sure of, from {source}."
    );
    let _ = writeln!(out, "# Review them, then, as root: {apply}");
    let _ = writeln!(
        out,
        "# Each change is guarded: a second run changes nothing. A culprit without a sure fix is"
    );
    let _ = writeln!(out, "# named with the reason, and left as it is.");
}

/// The comment above a fix: the culprit, why, and for an edit the line before and after.
fn describe(n: usize, r: &Ranked, item: &Result<&Fix, String>, out: &mut String) {
    let f = &r.failure;
    let _ = writeln!(
        out,
        "\n# {n}. {} ({}, rank {})",
        escape_path(&f.path),
        crate::errno::name(f.errno),
        r.rank
    );
    match item {
        Err(why) => {
            let _ = writeln!(out, "#    not changed: {why}");
        }
        Ok(fix) => {
            let _ = writeln!(out, "#    {}", fix.why);
            if let Action::EditLine {
                file,
                line,
                old,
                new,
            } = &fix.action
            {
                let _ = writeln!(out, "#    {}:{line}", escape_path(file));
                let _ = writeln!(out, "#    - {}", escape_path(old.trim_ascii()));
                let _ = writeln!(out, "#    + {}", escape_path(new.trim_ascii()));
            }
            if fix.reload.is_none() {
                let _ = writeln!(
                    out,
                    "#    (observer could not tell which service runs these processes: reload it \
                     by hand)"
                );
            }
        }
    }
}

fn reload_title(r: &Reload) -> String {
    match r {
        Reload::Unit(u) => format!("observer: reload {u}"),
        Reload::Signal { pid, comm, .. } => format!("observer: reload {comm} (pid {pid})"),
    }
}

/// The report's fixes as a Puppet manifest.
pub(crate) fn puppet(report: &Report) -> String {
    let mut out = String::new();
    header(report, "puppet", "puppet apply FILE", &mut out);
    let items = fixes(report);
    let mut reloads: Vec<&Reload> = Vec::new();
    for (n, (r, item)) in items.iter().enumerate() {
        describe(n + 1, r, item, &mut out);
        let Ok(fix) = item else {
            continue;
        };
        let notify = fix.reload.as_ref().map(|rl| {
            if !reloads.contains(&rl) {
                reloads.push(rl);
            }
            format!("  notify      => Exec[{}],\n", sq(&reload_title(rl)))
        });
        let notify = notify.unwrap_or_default();
        match &fix.action {
            Action::EditLine {
                file,
                line,
                old,
                new,
            } => {
                let (file, old, new) = (
                    text(file).unwrap_or_default(),
                    text(old).unwrap_or_default(),
                    text(new).unwrap_or_default(),
                );
                let _ = write!(
                    out,
                    "exec {{ {}:\n  provider    => shell,\n  path        => {PATH},\n  environment => [\n    {},\n    {},\n    {},\n    {},\n  ],\n  onlyif      => {},\n  command     => {},\n{notify}}}\n",
                    sq(&format!("observer: edit {file}:{line}")),
                    sq(&format!("OBSERVER_FILE={file}")),
                    sq(&format!("OBSERVER_LINE={line}")),
                    sq(&format!("OBSERVER_OLD={old}")),
                    sq(&format!("OBSERVER_NEW={new}")),
                    sq(&format!("perl -e '{CHECK}'")),
                    sq(&format!("perl -e '{EDIT}'")),
                );
            }
            Action::Permission { path, chgrp, chmod } => {
                let path = text(path).unwrap_or_default();
                let group = chgrp
                    .as_ref()
                    .map(|g| format!("  group       => {},\n", sq(g)))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "file {{ {}:\n{group}  mode        => {},\n{notify}}}\n",
                    sq(path),
                    sq(chmod)
                );
            }
            Action::Reinstall {
                packages,
                confmiss,
                path,
            } => {
                let path = text(path).unwrap_or_default();
                let _ = write!(
                    out,
                    "exec {{ {}:\n  provider    => shell,\n  path        => {PATH},\n  environment => ['DEBIAN_FRONTEND=noninteractive'],\n  unless      => {},\n  command     => {},\n  timeout     => 900,\n{notify}}}\n",
                    sq(&format!("observer: reinstall {}", packages.join(" "))),
                    sq(&format!("test -e {}", shell_quote(path.as_bytes()))),
                    sq(&reinstall_command(packages, *confmiss)),
                );
            }
        }
    }
    if items.iter().all(|(_, i)| i.is_err()) {
        let _ = writeln!(out, "\n# Nothing to change.");
    }
    for rl in reloads {
        let (command, onlyif) = reload_command(rl);
        let onlyif = onlyif
            .map(|c| format!("  onlyif      => {},\n", sq(&c)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "\nexec {{ {}:\n  provider    => shell,\n  path        => {PATH},\n  command     => {},\n{onlyif}  refreshonly => true,\n}}\n",
            sq(&reload_title(rl)),
            sq(&command)
        );
    }
    out
}

fn reinstall_command(packages: &[String], confmiss: bool) -> String {
    let opt = if confmiss {
        " -o Dpkg::Options::=--force-confmiss"
    } else {
        ""
    };
    let pkgs: Vec<String> = packages.iter().map(|p| shell_quote(p.as_bytes())).collect();
    format!("apt-get install --reinstall -y -q{opt} {}", pkgs.join(" "))
}

/// The command that reloads, and the guard that the process is still the one observer saw.
fn reload_command(r: &Reload) -> (String, Option<String>) {
    match r {
        Reload::Unit(u) => (
            format!("systemctl reload-or-restart {}", shell_quote(u.as_bytes())),
            None,
        ),
        Reload::Signal { pid, comm, signal } => (
            format!("kill -{signal} {pid}"),
            Some(format!(
                "test \"$(cat /proc/{pid}/comm 2>/dev/null)\" = {}",
                shell_quote(comm.as_bytes())
            )),
        ),
    }
}

/// The report's fixes as a shell script a person can review.
pub(crate) fn shell(report: &Report) -> String {
    let mut out = String::from("#!/bin/sh\n");
    header(report, "shell", "sh FILE", &mut out);
    out.push_str("set -eu\n");
    let items = fixes(report);
    let mut reloads: Vec<&Reload> = Vec::new();
    for (n, (r, item)) in items.iter().enumerate() {
        describe(n + 1, r, item, &mut out);
        let Ok(fix) = item else {
            continue;
        };
        if let Some(rl) = &fix.reload
            && !reloads.contains(&rl)
        {
            reloads.push(rl);
        }
        match &fix.action {
            Action::EditLine {
                file,
                line,
                old,
                new,
            } => {
                let _ = writeln!(
                    out,
                    "OBSERVER_FILE={} OBSERVER_LINE={line} \\\n  OBSERVER_OLD={} \\\n  OBSERVER_NEW={} \\\n  perl -e '{EDIT}'",
                    shell_quote(file),
                    shell_quote(old),
                    shell_quote(new)
                );
            }
            Action::Permission { path, chgrp, chmod } => {
                let p = shell_quote(path);
                if let Some(g) = chgrp {
                    let _ = writeln!(out, "chgrp {} {p}", shell_quote(g.as_bytes()));
                }
                let _ = writeln!(out, "chmod {chmod} {p}");
            }
            Action::Reinstall {
                packages,
                confmiss,
                path,
            } => {
                let _ = writeln!(
                    out,
                    "test -e {} || DEBIAN_FRONTEND=noninteractive {}",
                    shell_quote(path),
                    reinstall_command(packages, *confmiss)
                );
            }
        }
    }
    if items.iter().all(|(_, i)| i.is_err()) {
        let _ = writeln!(out, "\n# Nothing to change.");
    }
    if !reloads.is_empty() {
        out.push_str("\n# Reload what runs the changed files.\n");
    }
    for rl in reloads {
        match reload_command(rl) {
            (c, None) => {
                let _ = writeln!(out, "{c}");
            }
            (c, Some(guard)) => {
                let _ = writeln!(out, "if {guard}; then {c}; fi");
            }
        }
    }
    out
}

/// The `fix` member of a report row's JSON.
pub(crate) fn json_of(plan: &Plan) -> serde_json::Value {
    use serde_json::json;
    // Exact when UTF-8, escaped (`\xNN`) otherwise, as paths are everywhere in the JSON.
    let lossy = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => escape_path(b),
    };
    match plan {
        Plan::NotConfident(why) => json!({"kind": "none", "why": why}),
        Plan::Fix(fix) => {
            let mut v = match &fix.action {
                Action::EditLine {
                    file,
                    line,
                    old,
                    new,
                } => json!({
                    "kind": "edit_line",
                    "file": lossy(file),
                    "line": line,
                    "old": lossy(old),
                    "new": lossy(new),
                }),
                Action::Permission { path, chgrp, chmod } => json!({
                    "kind": "permission",
                    "path": lossy(path),
                    "chgrp": chgrp,
                    "chmod": chmod,
                }),
                Action::Reinstall {
                    packages,
                    confmiss,
                    path,
                } => json!({
                    "kind": "reinstall",
                    "path": lossy(path),
                    "packages": packages,
                    "confmiss": confmiss,
                }),
            };
            v["why"] = json!(fix.why);
            v["reload"] = match &fix.reload {
                None => serde_json::Value::Null,
                Some(Reload::Unit(u)) => json!({"unit": u}),
                Some(Reload::Signal { pid, comm, signal }) => {
                    json!({"pid": pid, "comm": comm, "signal": signal})
                }
            };
            v
        }
    }
}
