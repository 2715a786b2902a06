//! The files observer creates, as root, for the operator: the report (`--output`), the JSON-lines
//! stream (`--jsonl`), the history's directory, database and lock file. Private to their owner
//! (the paths in them can be sensitive), and never written through a planted link or into a
//! place another user controls:
//!
//! - nothing is opened through a symlink at its last component (`O_NOFOLLOW`);
//! - a file observer appends to or locks must be a regular file owned by observer's user and
//!   writable by no one else; a directory it keeps state in must be owned by that user and
//!   writable by no one else;
//! - the report is written at the end, to a new file in the target's directory (`O_EXCL`), which
//!   then replaces the target by `rename`: a failed run leaves the old file as it was, and a
//!   symlink in the target's place is replaced, its target untouched.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Refuses `meta` (of `path`, a `what`) unless observer's user owns it and no one else may
/// write it.
pub(crate) fn check_owned(path: &Path, meta: &std::fs::Metadata, what: &str) -> Result<()> {
    // SAFETY: geteuid has no failure mode.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "refusing {what} {}: it belongs to uid {}, not to observer's user (uid {me})",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "refusing {what} {}: others may write it (mode {:04o}); make it writable by its \
             owner only",
            path.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// A report to be written at the end: a new, private file beside the target, created now (so an
/// unwritable place fails before any capture), renamed over the target by [`Output::commit`].
/// Dropped without a commit, it is removed and the target is left as it was.
pub(crate) struct Output {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
    /// What the file is, for messages ("--output", "man page").
    label: &'static str,
}

impl Output {
    /// The report of `--output`.
    pub(crate) fn create(target: &Path) -> Result<Output> {
        Self::create_as(target, "--output", 0o600)
    }

    /// Any file written whole at once with `mode`, named `label` in messages.
    pub(crate) fn create_as(target: &Path, label: &'static str, mode: u32) -> Result<Output> {
        let what = || format!("cannot write {label} {}", target.display());
        let name = target.file_name().with_context(what)?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
            bail!(
                "cannot write {label} {}: it is a directory",
                target.display()
            );
        }
        let mut tries = 0;
        loop {
            let mut n: OsString = ".".into();
            n.push(name);
            n.push(format!(".observer-{:08x}", random_u32()));
            let temp = dir.join(n);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp)
            {
                Ok(file) => {
                    return Ok(Output {
                        target: target.to_path_buf(),
                        temp,
                        file: Some(file),
                        label,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => {
                    tries += 1;
                }
                Err(e) => return Err(e).with_context(what),
            }
        }
    }

    /// Writes `text`, makes it durable, and puts it in the target's place.
    pub(crate) fn commit(mut self, text: &[u8]) -> Result<()> {
        let what = || format!("writing {} {}", self.label, self.target.display());
        let mut f = self.file.take().with_context(what)?;
        f.write_all(text).with_context(what)?;
        f.sync_all().with_context(what)?;
        drop(f);
        std::fs::rename(&self.temp, &self.target).with_context(what)?;
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most 4 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_le_bytes(b)
    } else {
        std::process::id()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()))
    }
}

/// Opens `path` for appending, creating it with mode 0600 (the `--jsonl` stream of a service:
/// a restart must not truncate what was written before). Not through a symlink; an existing
/// file must be observer's user's and writable by no one else.
pub(crate) fn append_private(path: &Path) -> Result<File> {
    let f = open_private(path, true).with_context(|| format!("cannot write {}", path.display()))?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        bail!("refusing {}: not a regular file", path.display());
    }
    check_owned(path, &meta, "the file")?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    Ok(f)
}

/// Opens `path` for writing (appending, or reading too), creating it with mode 0600, never
/// truncating it, and never through a symlink at its last component (the error says so). What
/// it is and who owns it are the caller's to check.
pub(crate) fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(!append)
        .write(true)
        .append(append)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refused_link(path, e))
}

/// ELOOP from `O_NOFOLLOW` means the last component is a symlink: say so.
pub(crate) fn refused_link(path: &Path, e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        std::io::Error::other(format!(
            "{} is a symlink: observer does not write through links",
            path.display()
        ))
    } else {
        e
    }
}

/// `dir` exists as a directory observer's user owns and no one else may write, creating it
/// (mode 0700) when missing.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            // A link to the directory (as /var/lib often is on some hosts) is followed, but what
            // it leads to must pass the same checks.
            let real = std::fs::metadata(dir)
                .with_context(|| format!("{} is a dangling symlink", dir.display()))?;
            if !real.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            check_owned(dir, &real, "the directory")
        }
        Ok(m) if m.is_dir() => check_owned(dir, &m, "the directory"),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("cannot use {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn the_report_replaces_a_planted_link_and_a_failed_run_keeps_the_old_file() {
        let t = TempDir::new();
        t.write("victim", "precious");
        std::os::unix::fs::symlink(t.path().join("victim"), t.path().join("out")).unwrap();
        let out = Output::create(&t.path().join("out")).unwrap();
        out.commit(b"report").unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("victim")).unwrap(),
            "precious"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("out")).unwrap(),
            "report"
        );
        let m = std::fs::symlink_metadata(t.path().join("out")).unwrap();
        assert!(m.is_file() && m.mode() & 0o777 == 0o600);
        // A run that never commits leaves the old report and no temporary file.
        drop(Output::create(&t.path().join("out")).unwrap());
        assert_eq!(
            std::fs::read_to_string(t.path().join("out")).unwrap(),
            "report"
        );
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 2);
    }

    #[test]
    fn appends_and_state_refuse_links_and_places_others_control() {
        let t = TempDir::new();
        t.write("victim", "precious");
        std::os::unix::fs::symlink(t.path().join("victim"), t.path().join("log")).unwrap();
        let e = append_private(&t.path().join("log")).unwrap_err();
        assert!(format!("{e:#}").contains("symlink"), "{e:#}");
        assert_eq!(
            std::fs::read_to_string(t.path().join("victim")).unwrap(),
            "precious"
        );
        t.mkdir("open");
        std::fs::set_permissions(
            t.path().join("open"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = private_dir(&t.path().join("open")).unwrap_err();
        assert!(
            format!("{e:#}").contains("others may write it (mode 0777)"),
            "{e:#}"
        );
        private_dir(&t.path().join("new/state")).unwrap();
        let m = std::fs::metadata(t.path().join("new/state")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
    }
}
