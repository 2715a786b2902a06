//! Man pages and shell completions, made from the same clap definitions the command line is
//! parsed with, so they cannot drift from `--help`. `cargo xtask deb` runs the hidden
//! `observer generate man|completions DIR` of the binary it packages.
//!
//! The `generate` command is added to the parser only (see [`super::parse`]): the pages and
//! completions are made from [`super::Cli`] alone, so they never mention it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Arg, ArgMatches, CommandFactory, value_parser};
use clap_complete::Shell;
use clap_mangen::Man;
use roff::{Roff, bold, roman};

use super::Cli;

const NAME: &str = "generate";

/// What `observer generate` was asked for.
pub(crate) struct Request {
    what: What,
    dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum What {
    Man,
    Completions,
}

/// The hidden `generate` command, as the parser sees it.
pub(super) fn command() -> clap::Command {
    clap::Command::new(NAME)
        .hide(true)
        .about("Write the man pages or the shell completions into DIR (for packaging)")
        .arg(
            Arg::new("what")
                .required(true)
                .value_name("man|completions")
                .value_parser(["man", "completions"]),
        )
        .arg(
            Arg::new("dir")
                .required(true)
                .value_name("DIR")
                .value_parser(value_parser!(PathBuf)),
        )
}

/// The request, when the command line is `observer generate ...`.
pub(super) fn request(m: &ArgMatches) -> Option<Request> {
    let (NAME, sub) = m.subcommand()? else {
        return None;
    };
    let what = match sub.get_one::<String>("what").map(String::as_str) {
        Some("man") => What::Man,
        _ => What::Completions,
    };
    let dir = sub.get_one::<PathBuf>("dir")?.clone();
    Some(Request { what, dir })
}

impl Request {
    /// Writes the files into the directory (created if missing); prints each file's path.
    pub(crate) fn run(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let files = match self.what {
            What::Man => man_pages(),
            What::Completions => completions(),
        };
        let label = match self.what {
            What::Man => "man page",
            What::Completions => "completion",
        };
        for (name, text) in files {
            let path = self.dir.join(name);
            // As root, never through a planted symlink: a new file, renamed into place. Readable
            // by all (under the umask), as `man` and the shells need.
            crate::files::Output::create_as(&path, label, 0o644)?.commit(&text)?;
            println!("{}", path.display());
        }
        Ok(())
    }
}

/// `observer.1` and one `observer-COMMAND.1` per visible command, as (file name, roff).
pub(crate) fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let version = cli.get_version().unwrap_or_default().to_string();
    let subs: Vec<clap::Command> = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let page_names: Vec<String> = std::iter::once("observer".to_string())
        .chain(subs.iter().map(|s| format!("observer-{}", s.get_name())))
        .collect();
    std::iter::once(cli.clone())
        .chain(subs)
        .zip(&page_names)
        .map(|(cmd, name)| {
            let see_also: Vec<&str> = page_names
                .iter()
                .filter(|n| *n != name)
                .map(String::as_str)
                .collect();
            (
                format!("{name}.1"),
                man_page(cmd, name, &version, &see_also),
            )
        })
        .collect()
}

/// One page: clap_mangen's sections, except that the text after the options (`after_help`)
/// keeps its examples and TOML lines as they are (clap_mangen would fill them into one
/// paragraph), then SEE ALSO.
fn man_page(mut cmd: clap::Command, name: &str, version: &str, see_also: &[&str]) -> Vec<u8> {
    // NAME is one line: the about's first sentence; DESCRIPTION the whole of it.
    if cmd.get_long_about().is_none()
        && let Some(about) = cmd.get_about().map(|a| a.to_string())
    {
        let short = first_sentence(&about).to_string();
        cmd = cmd.long_about(about).about(short);
    }
    let after = cmd.get_after_help().map(|s| s.to_string());
    let has_options = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_commands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let man = Man::new(cmd)
        .title(name.to_uppercase())
        .section("1")
        .date(date())
        .source(format!("observer {version}"))
        .manual("User Commands");
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let mut put = |f: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        f(&mut out).expect("write to a Vec");
    };
    put(&|w| man.render_title(w));
    put(&|w| man.render_name_section(w));
    put(&|w| man.render_synopsis_section(w));
    put(&|w| man.render_description_section(w));
    if has_options {
        put(&|w| man.render_options_section(w));
    }
    if has_commands {
        put(&|w| man.render_subcommands_section(w));
    }
    let mut roff = Roff::new();
    if let Some(text) = after {
        after_help(&mut roff, &text);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for (i, page) in see_also.iter().enumerate() {
        refs.push(bold(*page));
        refs.push(roman(if i + 1 < see_also.len() {
            "(1), "
        } else {
            "(1)"
        }));
    }
    roff.text(refs);
    roff.to_writer(&mut out).expect("write to a Vec");
    out
}

fn first_sentence(text: &str) -> &str {
    let end = ["? ", ". "]
        .iter()
        .filter_map(|p| text.find(p))
        .min()
        .map_or(text.len(), |i| i + 1);
    &text[..end]
}

/// The pages' date (YYYY-MM-DD, UTC): that of `SOURCE_DATE_EPOCH` when set (`cargo xtask deb`
/// sets the last commit's, so a rebuild makes the same pages), else today.
fn date() -> String {
    let t = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(std::time::SystemTime::now, |s| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)
        });
    crate::time::rfc3339_millis(t)[..10].to_string()
}

/// The `after_help` text as man sections: a block that starts with `Examples:` is EXAMPLES,
/// other prose is NOTES; indented lines (commands, TOML) are kept as they are.
fn after_help(roff: &mut Roff, text: &str) {
    let mut section = "";
    for block in text.split("\n\n") {
        let mut lines: Vec<&str> = block.lines().collect();
        let Some(first) = lines.first() else {
            continue;
        };
        let want = if *first == "Examples:" {
            lines.remove(0);
            "EXAMPLES"
        } else if first.starts_with("  ") {
            section
        } else {
            "NOTES"
        };
        if want != section || section.is_empty() {
            let heading = if want.is_empty() { "NOTES" } else { want };
            roff.control("SH", [heading]);
            section = heading;
        } else {
            roff.control("PP", []);
        }
        let (verbatim, prose): (Vec<&str>, Vec<&str>) =
            lines.iter().partition(|l| l.starts_with("  "));
        if prose.is_empty() {
            roff.control("nf", []);
            for l in verbatim {
                roff.text([roman(l)]);
            }
            roff.control("fi", []);
        } else {
            // Prose with an indented line inside is kept line by line, in order.
            let mut fill = true;
            for l in &lines {
                let indented = l.starts_with("  ");
                if indented == fill {
                    roff.control(if indented { "nf" } else { "fi" }, []);
                    fill = !indented;
                }
                roff.text([roman(*l)]);
            }
            if !fill {
                roff.control("fi", []);
            }
        }
    }
}

/// Completions for bash, zsh and fish, named as each shell's completion directory expects
/// (`/usr/share/bash-completion/completions/observer`, `.../vendor-completions/_observer`,
/// `.../vendor_completions.d/observer.fish`).
pub(crate) fn completions() -> Vec<(String, Vec<u8>)> {
    [
        (Shell::Bash, "observer"),
        (Shell::Zsh, "_observer"),
        (Shell::Fish, "observer.fish"),
    ]
    .into_iter()
    .map(|(shell, file)| {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "observer", &mut out);
        (file.to_string(), out)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(name: &str) -> String {
        let pages = man_pages();
        let (_, text) = pages
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"));
        String::from_utf8(text.clone()).unwrap()
    }

    #[test]
    fn one_page_per_visible_command() {
        let names: Vec<String> = man_pages().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "observer.1",
                "observer-record.1",
                "observer-report.1",
                "observer-timeline.1"
            ]
        );
    }

    #[test]
    fn pages_carry_the_help_texts() {
        let main = page("observer.1");
        assert!(main.contains(".TH OBSERVER 1 "), "{main}");
        assert!(
            main.contains("observer \\- Which files is my server failing to open or stat?\n"),
            "NAME is the first sentence: {main}"
        );
        assert!(main.contains("\\-\\-container"), "options missing: {main}");
        assert!(main.contains(".SH EXAMPLES"), "{main}");
        assert!(main.contains(".SH NOTES"), "{main}");
        assert!(
            !main.contains("generate"),
            "the hidden command leaked: {main}"
        );
        let record = page("observer-record.1");
        assert!(record.contains("observer\\-record"), "{record}");
        assert!(record.contains("flush\\-interval"), "{record}");
        // The TOML example stays one key per line.
        assert!(record.contains(".nf\n  comm = "), "{record}");
        assert!(
            !record.contains("evict"),
            "a hidden option leaked: {record}"
        );
        assert!(page("observer-timeline.1").contains(".SH \"SEE ALSO\""));
    }

    #[test]
    fn completions_know_the_commands_but_not_generate() {
        for (name, text) in completions() {
            let text = String::from_utf8(text).unwrap();
            for w in [
                "record",
                "report",
                "timeline",
                "since",
                "comm",
                "flush-interval",
            ] {
                assert!(text.contains(w), "{name} lacks {w}");
            }
            assert!(!text.contains("generate"), "{name} completes generate");
        }
    }
}
