//! The files observer writes for the operator (`--output`, `--jsonl`): private to their owner,
//! because the paths in them can be sensitive.

use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Creates (or truncates) `path` with mode 0600.
pub(crate) fn create_private(path: &Path) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write --output {}", path.display()))?;
    // An existing file keeps its old mode through open(): tighten it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    Ok(f)
}

/// Opens `path` for appending, creating it with mode 0600 (the `--jsonl` stream of a service:
/// a restart must not truncate what was written before).
pub(crate) fn append_private(path: &Path) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    Ok(f)
}
