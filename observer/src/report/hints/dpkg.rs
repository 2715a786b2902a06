//! Stage 4, package files: which installed Debian package ships a missing path (dpkg's file
//! lists, read once per report), and how to get it back.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::escape::escape_path;
use crate::model::{Failure, Hint, HintKind, Remedy};
use crate::report::score::H_PACKAGE;

use super::{HintEnv, remedied};

/// Which installed packages ship which paths.
#[derive(Default)]
pub(super) struct DpkgIndex {
    packages: Vec<String>,
    owners: HashMap<Box<[u8]>, Vec<u32>>,
    conffiles: HashSet<Box<[u8]>>,
}

impl DpkgIndex {
    pub(super) fn load(dir: &Path) -> Self {
        let mut idx = DpkgIndex::default();
        let Ok(rd) = std::fs::read_dir(dir) else {
            return idx;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let Some(fname) = file.file_name().map(|n| n.as_bytes().to_vec()) else {
                continue;
            };
            let (stem, conf) = if let Some(s) = fname.strip_suffix(b".list") {
                (s, false)
            } else if let Some(s) = fname.strip_suffix(b".conffiles") {
                (s, true)
            } else {
                continue;
            };
            let pkg = stem.split(|b| *b == b':').next().unwrap_or(stem);
            let Ok(text) = std::fs::read(&file) else {
                continue;
            };
            if conf {
                for line in text.split(|b| *b == b'\n') {
                    // Newer dpkg may prefix a flag: "remove-on-upgrade /etc/x".
                    let p = match line.iter().position(|b| *b == b'/') {
                        Some(i) => &line[i..],
                        None => continue,
                    };
                    idx.conffiles.insert(p.into());
                }
                continue;
            }
            let pkg = String::from_utf8_lossy(pkg).into_owned();
            let id = match idx.packages.iter().rposition(|p| *p == pkg) {
                Some(i) => i,
                None => {
                    idx.packages.push(pkg);
                    idx.packages.len() - 1
                }
            };
            let Ok(id) = u32::try_from(id) else { break };
            for line in text.split(|b| *b == b'\n') {
                if !line.starts_with(b"/") || line == b"/." {
                    continue;
                }
                let owners = idx.owners.entry(line.into()).or_default();
                if !owners.contains(&id) {
                    owners.push(id);
                }
            }
        }
        idx
    }

    fn owners(&self, path: &[u8]) -> Vec<&str> {
        self.owners
            .get(path)
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| self.packages.get(*i as usize).map(String::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The same file under the other half of a merged-/usr system (`/lib/x` and `/usr/lib/x`):
/// dpkg lists a file under the name its package ships, the process may use either.
fn usr_merge_alternates(p: &[u8]) -> Vec<Vec<u8>> {
    const TOP: [&[u8]; 6] = [
        b"/bin/",
        b"/sbin/",
        b"/lib/",
        b"/lib32/",
        b"/lib64/",
        b"/libx32/",
    ];
    let mut out = Vec::new();
    for t in TOP {
        if p.starts_with(t) {
            let mut v = b"/usr".to_vec();
            v.extend_from_slice(p);
            out.push(v);
        } else if p.starts_with(b"/usr") && p[4..].starts_with(t) {
            out.push(p[4..].to_vec());
        }
    }
    out
}

pub(super) fn package_owner(f: &Failure, env: &HintEnv, resolved: &[u8], hints: &mut Vec<Hint>) {
    let mut candidates = vec![f.path.to_vec()];
    if resolved != &f.path[..] {
        candidates.push(resolved.to_vec());
    }
    for c in candidates.clone() {
        candidates.extend(usr_merge_alternates(&c));
    }
    let idx = env.dpkg();
    for c in &candidates {
        let owners = idx.owners(c);
        if owners.is_empty() {
            continue;
        }
        let pkgs = owners.join(" ");
        let label = if owners.len() == 1 {
            "package"
        } else {
            "packages"
        };
        let conf = idx.conffiles.contains(c.as_slice());
        let (message, suggestion) = if conf {
            (
                format!("conffile of {label} {} is missing", owners.join(", ")),
                format!(
                    "apt-get install --reinstall -o Dpkg::Options::=--force-confmiss {pkgs} \
                     (a plain reinstall does not restore a deleted conffile)"
                ),
            )
        } else {
            (
                format!("file of {label} {} is missing", owners.join(", ")),
                format!("apt-get install --reinstall {pkgs}"),
            )
        };
        let message = if c.as_slice() == &f.path[..] {
            message
        } else {
            format!("{message} ({})", escape_path(c))
        };
        hints.push(remedied(
            HintKind::PackageFileMissing,
            message,
            suggestion,
            H_PACKAGE,
            Remedy::Reinstall {
                packages: owners.iter().map(|o| o.to_string()).collect(),
                confmiss: conf,
            },
        ));
        return;
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Syscall;
    use crate::report::hints::hints_for;
    use crate::testutil::{TempDir, failure, find_hint as find, hint_env as env_for};

    #[test]
    fn dpkg_ownership() {
        let t = TempDir::new();
        t.mkdir("mods");
        t.write(
            "dpkg-info/libapache2-mod-php8.2:amd64.list",
            &format!("/.\n{}\n{}\n", t.abs("mods"), t.abs("mods/libphp8.2.so")),
        );
        t.write(
            "dpkg-info/php8.2-common.list",
            &format!("{}\n", t.abs("conf/20-redis.ini")),
        );
        t.write(
            "dpkg-info/php8.2-common.conffiles",
            &format!("{}\n", t.abs("conf/20-redis.ini")),
        );
        let env = env_for(&t);
        let f = failure(
            &t.abs("mods/libphp8.2.so"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        let p = find(&h, "package_file_missing");
        assert_eq!(
            p.message,
            "file of package libapache2-mod-php8.2 is missing"
        );
        assert_eq!(
            p.suggestion.as_deref(),
            Some("apt-get install --reinstall libapache2-mod-php8.2")
        );
        let f = failure(
            &t.abs("conf/20-redis.ini"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let p = find(&hints_for(&f, &env), "package_file_missing").clone();
        assert!(p.message.starts_with("conffile of package php8.2-common"));
        assert!(p.suggestion.unwrap().contains("--force-confmiss"));
    }
}
