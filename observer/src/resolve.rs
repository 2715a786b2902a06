//! Stage 2: make relative and dirfd-relative paths absolute, from the process's cwd or the
//! dirfd's target in /proc, at the moment the first failure of a key arrives (the process is
//! usually still there). When it is not, the raw path is kept and marked unresolved.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use observer_common::AT_FDCWD;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub path: Vec<u8>,
    pub unresolved: bool,
}

/// Resolves `raw` as the thread `tid` of process `tgid` named it relative to `dfd`.
pub fn resolve(tgid: u32, tid: u32, dfd: i32, raw: &[u8]) -> Resolved {
    resolve_with(tgid, tid, dfd, raw, None)
}

/// As [`resolve`], with the directory `dfd` pointed to when the call was made, if known (from
/// the kernel's record of the directory open: the fd may be closed by now).
pub fn resolve_with(tgid: u32, tid: u32, dfd: i32, raw: &[u8], dir: Option<&[u8]>) -> Resolved {
    if raw.first() == Some(&b'/') {
        return Resolved {
            path: raw.to_vec(),
            unresolved: false,
        };
    }
    let base = if let Some(d) = dir {
        Some(d.to_vec())
    } else if dfd == AT_FDCWD {
        read_link(&format!("/proc/{tgid}/task/{tid}/cwd"))
            .or_else(|| read_link(&format!("/proc/{tgid}/cwd")))
    } else if dfd >= 0 {
        read_link(&format!("/proc/{tgid}/fd/{dfd}"))
    } else {
        None
    };
    match base {
        Some(base) if base.first() == Some(&b'/') && !raw.is_empty() => Resolved {
            path: join(&base, raw),
            unresolved: false,
        },
        _ => Resolved {
            path: raw.to_vec(),
            unresolved: true,
        },
    }
}

fn read_link(p: &str) -> Option<Vec<u8>> {
    let target: PathBuf = std::fs::read_link(p).ok()?;
    let mut b = target.as_os_str().as_bytes().to_vec();
    // A deleted cwd reads as "/old/dir (deleted)": the name is still the best answer.
    if let Some(stripped) = b.strip_suffix(b" (deleted)") {
        b = stripped.to_vec();
    }
    Some(b)
}

/// Joins an absolute base and a relative path, dropping `.` components and repeated slashes.
/// `..` is kept: only the kernel knows where it leads through symlinks.
pub fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(base.len() + rel.len() + 1);
    for comp in base.split(|&c| c == b'/').chain(rel.split(|&c| c == b'/')) {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(comp);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    if rel.ends_with(b"/") {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_cleans_dots_and_slashes_but_keeps_dotdot() {
        assert_eq!(join(b"/var/www", b"x.php"), b"/var/www/x.php");
        assert_eq!(join(b"/", b"etc/passwd"), b"/etc/passwd");
        assert_eq!(join(b"/a/", b"./b//c"), b"/a/b/c");
        assert_eq!(join(b"/a", b"../b"), b"/a/../b");
        assert_eq!(join(b"/a", b"dir/"), b"/a/dir/");
    }

    #[test]
    fn resolves_against_own_cwd_and_fd() {
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        let r = resolve(me, me, AT_FDCWD, b"nope.txt");
        assert!(!r.unresolved);
        assert_eq!(r.path, join(cwd.as_os_str().as_bytes(), b"nope.txt"));

        let dir = std::fs::File::open("/usr").unwrap();
        use std::os::fd::AsRawFd;
        let r = resolve(me, me, dir.as_raw_fd(), b"lib/nope");
        assert_eq!(r.path, b"/usr/lib/nope");
        assert!(!r.unresolved);
    }

    #[test]
    fn gone_process_keeps_raw_path_marked_unresolved() {
        let r = resolve(u32::MAX - 1, u32::MAX - 1, AT_FDCWD, b"rel/x");
        assert_eq!(
            r,
            Resolved {
                path: b"rel/x".to_vec(),
                unresolved: true
            }
        );
        let abs = resolve(u32::MAX - 1, u32::MAX - 1, AT_FDCWD, b"/abs");
        assert!(!abs.unresolved);
    }
}
