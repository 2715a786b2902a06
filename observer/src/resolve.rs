//! Stage 2: resolve. Makes relative and dirfd-relative paths absolute, from the directory opens
//! the kernel reports (`STATUS_DIRFD` records, which are not failures) or from the process's
//! cwd or the dirfd's target in /proc, at the moment the first failure of a key arrives (the
//! process is usually still there). When it is not, the raw path is kept and marked unresolved.
//! The [`Resolver`] turns each record into the [`KeyInfo`] that aggregation keeps; the ad-hoc
//! store and `record` share it.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use bytes::Bytes;
use observer_common::{AT_FDCWD, STATUS_DIRFD, STATUS_TRUNCATED, Syscall};

use crate::capture::Sighting;

/// How many (process, fd) -> directory entries the resolver remembers.
const DIRFDS_MAX: usize = 16384;

/// What the first record of a key told us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyInfo {
    /// Absolute when it could be resolved; the record's own bytes when it was absolute already.
    pub(crate) path: Bytes,
    pub(crate) unresolved: bool,
    pub(crate) truncated: bool,
    pub(crate) syscall: Syscall,
    pub(crate) errno: i32,
    pub(crate) tgid: u32,
    pub(crate) tid: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) comm: String,
    pub(crate) flags: u64,
}

/// Makes records' paths absolute and turns them into [`KeyInfo`]s.
#[derive(Default)]
pub(crate) struct Resolver {
    /// Directories watched processes opened, by (tgid, fd), as absolute paths.
    dirfds: HashMap<(u32, i32), Bytes>,
}

impl Resolver {
    /// The KeyInfo of a failure record; `None` for a directory open (remembered) or a record
    /// this observer cannot read.
    pub(crate) fn key_info(&mut self, s: &Sighting) -> Option<KeyInfo> {
        let h = &s.hdr;
        let syscall = Syscall::from_u32(h.key.syscall)?;
        let dir = if h.key.dfd == AT_FDCWD {
            None
        } else {
            self.dirfds.get(&(h.key.tgid, h.key.dfd))
        };
        let r = resolve_with(h.key.tgid, h.tid, h.key.dfd, &s.path, dir);
        if h.status & STATUS_DIRFD != 0 {
            if !r.unresolved {
                if self.dirfds.len() >= DIRFDS_MAX {
                    self.dirfds.clear();
                }
                self.dirfds.insert((h.key.tgid, h.aux as i32), r.path);
            }
            return None;
        }
        Some(KeyInfo {
            path: r.path,
            unresolved: r.unresolved,
            truncated: h.status & STATUS_TRUNCATED != 0,
            syscall,
            errno: h.key.errno as i32,
            tgid: h.key.tgid,
            tid: h.tid,
            uid: h.uid,
            gid: h.gid,
            comm: s.comm(),
            flags: h.flags,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Resolved {
    path: Bytes,
    unresolved: bool,
}

/// Resolves `raw` as the thread `tid` of process `tgid` named it relative to `dfd`, with the
/// directory `dfd` pointed to when the call was made, if known (from the kernel's record of the
/// directory open: the fd may be closed by now).
fn resolve_with(tgid: u32, tid: u32, dfd: i32, raw: &Bytes, dir: Option<&Bytes>) -> Resolved {
    if raw.first() == Some(&b'/') {
        return Resolved {
            path: raw.clone(),
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
            path: join(&base, raw).into(),
            unresolved: false,
        },
        _ => Resolved {
            path: raw.clone(),
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
fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
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
    use crate::testutil::sighting;

    fn resolve(tgid: u32, tid: u32, dfd: i32, raw: &[u8]) -> Resolved {
        resolve_with(tgid, tid, dfd, &Bytes::copy_from_slice(raw), None)
    }

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
        assert_eq!(r.path, &b"/usr/lib/nope"[..]);
        assert!(!r.unresolved);
    }

    #[test]
    fn gone_process_keeps_raw_path_marked_unresolved() {
        let r = resolve(u32::MAX - 1, u32::MAX - 1, AT_FDCWD, b"rel/x");
        assert_eq!(
            r,
            Resolved {
                path: Bytes::from_static(b"rel/x"),
                unresolved: true
            }
        );
        let abs = resolve(u32::MAX - 1, u32::MAX - 1, AT_FDCWD, b"/abs");
        assert!(!abs.unresolved);
    }

    #[test]
    fn directory_opens_are_not_failures_but_resolve_later_relative_ones() {
        // A process that is gone: /proc cannot help, the recorded opens must.
        let tgid = u32::MAX - 7;
        let mut r = Resolver::default();
        let mut root = sighting(b"/run", tgid, 0, Syscall::Openat, 1, STATUS_DIRFD);
        (root.hdr.key.dfd, root.hdr.aux) = (AT_FDCWD, 5);
        assert!(r.key_info(&root).is_none());
        let mut sub = sighting(b"systemd", tgid, 0, Syscall::Openat, 1, STATUS_DIRFD);
        (sub.hdr.key.dfd, sub.hdr.aux) = (5, 6);
        assert!(r.key_info(&sub).is_none());
        let mut fail = sighting(b"userdb", tgid, 2, Syscall::Openat, 1, 0);
        fail.hdr.key.dfd = 6;
        let i = r.key_info(&fail).unwrap();
        assert_eq!(i.path, &b"/run/systemd/userdb"[..]);
        assert!(!i.unresolved);
        let mut rel = sighting(b"rel", tgid, 2, Syscall::Openat, 1, 0);
        rel.hdr.key.dfd = 9;
        let i = r.key_info(&rel).unwrap();
        assert!(i.unresolved);
    }
}
