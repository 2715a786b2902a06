//! `cargo xtask deb`: target/debian/observer_<version>_<arch>.deb, with cargo-deb.
//!
//! What cargo-deb packs is declared in observer/Cargo.toml (`[package.metadata.deb]`); what it
//! packs that is made, not committed, is made here into target/debian/observer-assets, from the
//! binary being packaged:
//! - `man/`: observer(1) and one page per command, by the binary's hidden
//!   `observer generate man DIR` (clap_mangen over the same definitions as `--help`);
//! - `completions/`: bash, zsh and fish, by `observer generate completions DIR` (clap_complete);
//! - `systemd/observer.service`: dist/observer.service with ExecStart=/usr/bin/observer (the
//!   by-hand recipe installs into /usr/local/bin, the package into /usr/bin) and Documentation=
//!   naming the pages the package installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{apt_install, cargo, is_root, output, root, status, tools_dir};

const CARGO_DEB_VERSION: &str = "3.8.0";
const UNIT_EXEC: &str = "ExecStart=/usr/local/bin/observer ";
const PACKAGED_EXEC: &str = "ExecStart=/usr/bin/observer ";
const DOCUMENTATION: &str = "Documentation=man:observer-record(1) man:observer(1)";

/// `cargo xtask deb`: build, package, and check the package with lintian.
pub(crate) fn run() -> Result<()> {
    let bin = crate::build()?;
    let t0 = Instant::now();
    let deb = package(&bin)?;
    lintian(&deb)?;
    let size = std::fs::metadata(&deb).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "xtask: {} ({:.1} MiB) in {:.0?} after the build",
        deb.display(),
        size as f64 / 1048576.0,
        t0.elapsed()
    );
    Ok(())
}

/// Makes the .deb of `bin` (already built); returns its path.
pub(crate) fn package(bin: &Path) -> Result<PathBuf> {
    let cargo_deb = cargo_deb()?;
    let root = root();
    let version = output(Command::new(bin).arg("--version"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .with_context(|| format!("cannot read the version of {}", bin.display()))?;
    let deb_version = format!("{version}-1");
    check_changelog(&root.join("dist/debian/changelog"), &deb_version)?;

    let assets = root.join("target/debian/observer-assets");
    if assets.exists() {
        std::fs::remove_dir_all(&assets)
            .with_context(|| format!("cannot empty {}", assets.display()))?;
    }
    // Pages dated by the last commit, so a rebuild of the same tree makes the same package.
    let epoch = output(
        Command::new("git")
            .current_dir(&root)
            .args(["log", "-1", "--format=%ct"]),
    )
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty());
    for what in ["man", "completions"] {
        let mut c = Command::new(bin);
        c.args(["generate", what])
            .arg(assets.join(what))
            .stderr(Stdio::inherit());
        if let Some(e) = &epoch {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        let made = output(&mut c).with_context(|| format!("`observer generate {what}` failed"))?;
        if made.lines().count() == 0 {
            bail!("`observer generate {what}` made nothing");
        }
    }
    let unit = std::fs::read_to_string(root.join("dist/observer.service"))
        .context("cannot read dist/observer.service")?;
    if unit.matches(UNIT_EXEC).count() != 1 {
        bail!("dist/observer.service must have exactly one line starting {UNIT_EXEC:?}");
    }
    let systemd = assets.join("systemd");
    std::fs::create_dir_all(&systemd)?;
    // The package installs the pages, so its unit can point at them (systemd-analyze verify
    // checks that they exist, which a by-hand install without them would fail).
    let Some((head, rest)) = unit.split_once("\n[Service]\n") else {
        bail!("dist/observer.service has no [Service] section");
    };
    let packaged = format!("{head}\n{DOCUMENTATION}\n\n[Service]\n{rest}");
    std::fs::write(
        systemd.join("observer.service"),
        packaged.replace(UNIT_EXEC, PACKAGED_EXEC),
    )?;

    let debian = root.join("target/debian");
    let mut c = Command::new(&cargo_deb);
    c.current_dir(&root)
        .args(["--no-build", "--package", "observer", "--output"])
        .arg(&debian)
        .env("CARGO", cargo())
        .stderr(Stdio::inherit());
    if let Some(e) = &epoch {
        c.env("SOURCE_DATE_EPOCH", e);
    }
    eprintln!("xtask: cargo-deb --no-build --package observer");
    let made = output(&mut c).context("cargo-deb failed (its messages are above)")?;
    let deb = PathBuf::from(made.lines().last().unwrap_or_default().trim());
    if deb.extension().is_none_or(|e| e != "deb") || !deb.exists() {
        bail!("cargo-deb did not say where the package is (it printed {made:?})");
    }
    Ok(deb)
}

/// The changelog's latest entry must be the version being packaged (lintian and apt read it).
fn check_changelog(path: &Path, deb_version: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let first = text.lines().next().unwrap_or_default();
    let want = format!("observer ({deb_version}) ");
    if !first.starts_with(&want) {
        bail!(
            "{}'s latest entry is {first:?}, but the package is {deb_version}: add an entry for it",
            path.display()
        );
    }
    Ok(())
}

/// cargo-deb at the pinned version, in .tools/bin (installed there when missing).
fn cargo_deb() -> Result<PathBuf> {
    let path = tools_dir().join("bin/cargo-deb");
    let have = output(Command::new(&path).arg("--version"))
        .is_some_and(|v| v.split_whitespace().any(|w| w == CARGO_DEB_VERSION));
    if have {
        return Ok(path);
    }
    eprintln!("xtask: installing cargo-deb {CARGO_DEB_VERSION} into .tools (a few minutes, once)");
    status(
        Command::new(cargo())
            .args([
                "install",
                &format!("cargo-deb@{CARGO_DEB_VERSION}"),
                "--locked",
                "--force",
            ])
            .arg("--root")
            .arg(tools_dir()),
    )
    .context("cargo install cargo-deb")?;
    Ok(path)
}

/// Runs lintian on the package (installed with apt when missing): errors fail, warnings and
/// information are shown.
pub(crate) fn lintian(deb: &Path) -> Result<()> {
    if output(Command::new("sh").args(["-c", "command -v lintian"])).is_none() {
        if !is_root() {
            bail!("lintian is not installed: apt-get install lintian, then run this again");
        }
        apt_install(&["lintian"])?;
    }
    eprintln!("xtask: lintian {}", deb.display());
    status(
        Command::new("lintian")
            .args(["--fail-on", "error", "--display-info"])
            .arg(deb),
    )
    .context("lintian found errors in the package")
}
