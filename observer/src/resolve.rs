//! Stage 2: resolve. Makes relative and dirfd-relative paths absolute, from what the kernel
//! reports about directories (the directory opens and the chdirs of watched processes, which are
//! records but not failures, each with the generation it starts) or, for a directory observer
//! has not seen change, from the process's cwd or the dirfd's target in /proc, at the moment the
//! first failure of a key arrives (the process is usually still there). A failure's key names
//! the generation of the directory it was made in, so the same relative name failing in two
//! directories resolves to two paths. When nothing says where a path starts, the raw path is
//! kept and marked unresolved.
//! The [`Resolver`] turns each record into the [`KeyInfo`] that aggregation keeps; the ad-hoc
//! store and `record` share it.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use observer_common::{
    AT_FDCWD, KIND_CHDIR, STATUS_CHDIR, STATUS_DIRFD, STATUS_OPENED, STATUS_TRUNCATED, Syscall,
};

use crate::capture::Sighting;
use crate::opened::Opened;
use crate::place::{Places, Where};

/// How many directories (of fds and working directories) the resolver remembers.
const DIRS_MAX: usize = 16384;

/// What the first record of a key told us.
#[derive(Clone, Debug)]
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
    /// Where the process ran, and its view of the filesystem.
    pub(crate) place: Arc<Where>,
}

/// Makes records' paths absolute and turns them into [`KeyInfo`]s.
pub(crate) struct Resolver {
    places: Places,
    /// Directories watched processes opened, by (tgid, fd, generation), as absolute paths.
    dirfds: HashMap<(u32, i32, u32), Bytes>,
    /// Working directories of watched processes, by (tgid, generation).
    cwds: HashMap<(u32, u32), Bytes>,
    /// The files watched processes read.
    pub(crate) opened: Opened,
}

impl Resolver {
    /// A resolver that pins the views of the places it sees (the ad-hoc mode: its hints are made
    /// at the end), or only names them (the recorder).
    pub(crate) fn new(pin_views: bool) -> Resolver {
        Resolver {
            places: Places::new(pin_views),
            dirfds: HashMap::new(),
            cwds: HashMap::new(),
            opened: Opened::default(),
        }
    }

    /// The KeyInfo of a failure record; `None` for a directory open, a chdir or a file read
    /// (remembered) or a record this observer cannot read.
    pub(crate) fn key_info(&mut self, s: &Sighting) -> Option<KeyInfo> {
        let h = &s.hdr;
        let (tgid, tid) = (h.key.tgid, h.tid);
        if h.status & STATUS_CHDIR != 0 {
            let new = if h.key.syscall == u32::from(KIND_CHDIR) {
                let r = self.resolve(tgid, tid, AT_FDCWD, h.key.dir_gen, &s.path);
                (!r.unresolved).then_some(r.path)
            } else {
                self.base(tgid, tid, h.key.dfd, h.key.dir_gen)
            };
            if let Some(dir) = new {
                self.remember();
                self.cwds.insert((tgid, h.aux_gen), dir);
            }
            return None;
        }
        let syscall = Syscall::from_u32(h.key.syscall)?;
        let r = self.resolve(tgid, tid, h.key.dfd, h.key.dir_gen, &s.path);
        if h.status & STATUS_DIRFD != 0 {
            if !r.unresolved {
                self.remember();
                self.dirfds.insert((tgid, h.aux as i32, h.aux_gen), r.path);
            }
            return None;
        }
        if h.status & STATUS_OPENED != 0 {
            if !r.unresolved {
                let at = self.places.of(tgid, h.cgroup_id, h.mnt_ns);
                self.opened.add(r.path, &at);
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
            place: self.places.of(tgid, h.cgroup_id, h.mnt_ns),
        })
    }

    /// Makes room when the tables are full (they are a cache of what the kernel reported).
    fn remember(&mut self) {
        if self.dirfds.len() + self.cwds.len() >= DIRS_MAX {
            self.dirfds.clear();
            self.cwds.clear();
        }
    }

    /// The directory a relative path of thread `tid` of `tgid` starts from: `dfd` (AT_FDCWD, the
    /// working directory) at generation `generation`. A generation the kernel reported is known exactly;
    /// generation 0 (no change seen since observer started) is read from /proc, once.
    fn base(&mut self, tgid: u32, tid: u32, dfd: i32, generation: u32) -> Option<Bytes> {
        if dfd == AT_FDCWD {
            if let Some(d) = self.cwds.get(&(tgid, generation)) {
                return Some(d.clone());
            }
            if generation != 0 {
                return None;
            }
            let d: Bytes = read_link(&format!("/proc/{tgid}/task/{tid}/cwd"))
                .or_else(|| read_link(&format!("/proc/{tgid}/cwd")))?
                .into();
            self.remember();
            self.cwds.insert((tgid, 0), d.clone());
            Some(d)
        } else if dfd >= 0 {
            if let Some(d) = self.dirfds.get(&(tgid, dfd, generation)) {
                return Some(d.clone());
            }
            // The fd was opened before observer started, or not as a directory.
            (generation == 0)
                .then(|| read_link(&format!("/proc/{tgid}/fd/{dfd}")))
                .flatten()
                .map(Bytes::from)
        } else {
            None
        }
    }

    /// Resolves `raw` as the thread `tid` of process `tgid` named it relative to `dfd` at
    /// generation `generation`.
    fn resolve(&mut self, tgid: u32, tid: u32, dfd: i32, generation: u32, raw: &Bytes) -> Resolved {
        if raw.first() == Some(&b'/') {
            return Resolved {
                path: raw.clone(),
                unresolved: false,
            };
        }
        match self.base(tgid, tid, dfd, generation) {
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Resolved {
    path: Bytes,
    unresolved: bool,
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
    use observer_common::KIND_CHDIR;

    fn resolve(tgid: u32, tid: u32, dfd: i32, raw: &[u8]) -> Resolved {
        Resolver::new(false).resolve(tgid, tid, dfd, 0, &Bytes::copy_from_slice(raw))
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
        let mut r = Resolver::new(false);
        let mut root = sighting(b"/run", tgid, 0, Syscall::Openat, 1, STATUS_DIRFD);
        (root.hdr.key.dfd, root.hdr.aux, root.hdr.aux_gen) = (AT_FDCWD, 5, 1);
        assert!(r.key_info(&root).is_none());
        let mut sub = sighting(b"systemd", tgid, 0, Syscall::Openat, 1, STATUS_DIRFD);
        (sub.hdr.key.dfd, sub.hdr.key.dir_gen) = (5, 1);
        (sub.hdr.aux, sub.hdr.aux_gen) = (6, 1);
        assert!(r.key_info(&sub).is_none());
        let mut fail = sighting(b"userdb", tgid, 2, Syscall::Openat, 1, 0);
        (fail.hdr.key.dfd, fail.hdr.key.dir_gen) = (6, 1);
        let i = r.key_info(&fail).unwrap();
        assert_eq!(i.path, &b"/run/systemd/userdb"[..]);
        assert!(!i.unresolved);
        let mut rel = sighting(b"rel", tgid, 2, Syscall::Openat, 1, 0);
        rel.hdr.key.dfd = 9;
        let i = r.key_info(&rel).unwrap();
        assert!(i.unresolved);
        // The fd number reused for another directory: a new generation, its own path.
        let mut again = sighting(b"/etc", tgid, 0, Syscall::Openat, 1, STATUS_DIRFD);
        (again.hdr.key.dfd, again.hdr.aux, again.hdr.aux_gen) = (AT_FDCWD, 6, 2);
        assert!(r.key_info(&again).is_none());
        let mut fail2 = fail.clone();
        fail2.hdr.key.dir_gen = 2;
        assert_eq!(r.key_info(&fail2).unwrap().path, &b"/etc/userdb"[..]);
        assert_eq!(r.key_info(&fail).unwrap().path, &b"/run/systemd/userdb"[..]);
    }

    #[test]
    fn chdirs_make_relative_failures_resolve_where_they_were_made() {
        let tgid = u32::MAX - 8;
        let mut r = Resolver::new(false);
        let chdir = |path: &[u8], from_gen: u32, new_gen: u32| {
            let mut c = sighting(path, tgid, 0, Syscall::Openat, 0, STATUS_CHDIR);
            c.hdr.key.syscall = u32::from(KIND_CHDIR);
            (c.hdr.key.dfd, c.hdr.key.dir_gen, c.hdr.aux_gen) = (AT_FDCWD, from_gen, new_gen);
            c
        };
        assert!(r.key_info(&chdir(b"/srv/a", 0, 1)).is_none());
        // Relative to the previous working directory.
        assert!(r.key_info(&chdir(b"../b", 1, 2)).is_none());
        let fail = |generation: u32| {
            let mut f = sighting(b"x.php", tgid, 2, Syscall::Openat, 7, 0);
            (f.hdr.key.dfd, f.hdr.key.dir_gen) = (AT_FDCWD, generation);
            f
        };
        assert_eq!(r.key_info(&fail(1)).unwrap().path, &b"/srv/a/x.php"[..]);
        assert_eq!(
            r.key_info(&fail(2)).unwrap().path,
            &b"/srv/a/../b/x.php"[..]
        );
        // A generation whose chdir was never seen stays unresolved (no guess from /proc).
        assert!(r.key_info(&fail(3)).unwrap().unresolved);
    }
}
