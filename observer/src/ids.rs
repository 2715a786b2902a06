//! uid/gid to names and supplementary groups: the host's through libc (so NSS is honoured),
//! cached; another view's (a container's) from its own `/etc/passwd` and `/etc/group`
//! ([`Names`]), since uid 33 need not be `www-data` there.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

#[derive(Default)]
struct Cache {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
    grouplists: HashMap<(u32, u32), Vec<u32>>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Bounds the cache: a capture sees a handful of service accounts, not thousands.
const CACHE_MAX: usize = 4096;

/// The user name of `uid`, or `None` when it has no passwd entry.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut c = cache().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(n) = c.users.get(&uid) {
        return n.clone();
    }
    let n = lookup_user(uid);
    if c.users.len() < CACHE_MAX {
        c.users.insert(uid, n.clone());
    }
    n
}

/// The group name of `gid`, or `None` when it has no group entry.
pub(crate) fn group_name(gid: u32) -> Option<String> {
    let mut c = cache().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(n) = c.groups.get(&gid) {
        return n.clone();
    }
    let n = lookup_group(gid);
    if c.groups.len() < CACHE_MAX {
        c.groups.insert(gid, n.clone());
    }
    n
}

/// The groups a process running as (uid, gid) has when started the usual way (initgroups):
/// `gid` plus the user's supplementary groups. Just `[gid]` for a uid with no passwd entry.
pub(crate) fn groups_of(uid: u32, gid: u32) -> Vec<u32> {
    {
        let c = cache().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = c.grouplists.get(&(uid, gid)) {
            return g.clone();
        }
    }
    let mut groups = user_name(uid)
        .and_then(|name| grouplist(&name, gid))
        .unwrap_or_default();
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    groups.sort_unstable();
    groups.dedup();
    let mut c = cache().lock().unwrap_or_else(PoisonError::into_inner);
    if c.grouplists.len() < CACHE_MAX {
        c.grouplists.insert((uid, gid), groups.clone());
    }
    groups
}

/// Where user and group names come from.
#[derive(Debug)]
pub(crate) enum Names {
    /// The host's: NSS, through libc.
    System,
    /// Another view's, read from its files (empty when it has none: numbers are shown).
    Files(Files),
}

/// A view's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Default)]
pub(crate) struct Files {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
    /// User name -> the groups that list it as a member.
    member_of: HashMap<String, Vec<u32>>,
}

/// The largest passwd or group file read from a view.
const MAX_FILE: u64 = 4 << 20;

/// Reads `<root>/<rel>`: a regular file, not through a symlink at its last component (which
/// would point outside the view), at most `MAX_FILE` bytes.
fn read_in(root: &Path, rel: &str) -> String {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(root.join(rel))
    else {
        return String::new();
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = file.take(MAX_FILE).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

impl Files {
    /// Parses `passwd` (`name:x:uid:gid:...`) and `group` (`name:x:gid:member,member`) text;
    /// malformed lines are skipped, the first entry for an id wins (as with NSS files).
    pub(crate) fn parse(passwd: &str, group: &str) -> Files {
        let mut f = Files::default();
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, uid, ..] = fields[..]
                && let Ok(uid) = uid.parse::<u32>()
                && !name.is_empty()
            {
                f.users.entry(uid).or_insert_with(|| name.to_string());
            }
        }
        for line in group.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, gid, members, ..] = fields[..]
                && let Ok(gid) = gid.parse::<u32>()
                && !name.is_empty()
            {
                f.groups.entry(gid).or_insert_with(|| name.to_string());
                for m in members.split(',').filter(|m| !m.is_empty()) {
                    f.member_of.entry(m.to_string()).or_default().push(gid);
                }
            }
        }
        f
    }

    /// The names of the view whose `/` is `root`.
    pub(crate) fn load(root: &Path) -> Files {
        Files::parse(&read_in(root, "etc/passwd"), &read_in(root, "etc/group"))
    }
}

impl Names {
    pub(crate) fn user_name(&self, uid: u32) -> Option<String> {
        match self {
            Names::System => user_name(uid),
            Names::Files(f) => f.users.get(&uid).cloned(),
        }
    }

    pub(crate) fn group_name(&self, gid: u32) -> Option<String> {
        match self {
            Names::System => group_name(gid),
            Names::Files(f) => f.groups.get(&gid).cloned(),
        }
    }

    pub(crate) fn user_or_id(&self, uid: u32) -> String {
        self.user_name(uid).unwrap_or_else(|| uid.to_string())
    }

    pub(crate) fn group_or_id(&self, gid: u32) -> String {
        self.group_name(gid).unwrap_or_else(|| gid.to_string())
    }

    /// `gid` plus the supplementary groups of `uid`'s user, as initgroups would set them.
    pub(crate) fn groups_of(&self, uid: u32, gid: u32) -> Vec<u32> {
        match self {
            Names::System => groups_of(uid, gid),
            Names::Files(f) => {
                let mut g = f
                    .users
                    .get(&uid)
                    .and_then(|n| f.member_of.get(n))
                    .cloned()
                    .unwrap_or_default();
                g.push(gid);
                g.sort_unstable();
                g.dedup();
                g
            }
        }
    }
}

/// Runs a `get*_r` call with a growing buffer until it fits. `call` returns the errno-style
/// result and whether an entry was found.
fn with_buffer<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>),
) -> Option<T> {
    let mut len = 1024usize;
    loop {
        let mut buf = vec![0 as libc::c_char; len];
        let (rc, found) = call(&mut buf);
        if rc == libc::ERANGE && len < (1 << 20) {
            len *= 4;
            continue;
        }
        return if rc == 0 { found } else { None };
    }
}

fn lookup_user(uid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: zeroed passwd is a valid value (pointers null).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwuid_r writes into `pwd` and `buf` (whose length we pass) and sets `res`
        // to null or to `&pwd`.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut res) };
        if rc != 0 || res.is_null() || pwd.pw_name.is_null() {
            return (rc, None);
        }
        // SAFETY: pw_name points into `buf`, NUL-terminated by libc, alive for this closure.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        (0, Some(name.to_string_lossy().into_owned()))
    })
}

fn lookup_group(gid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: zeroed group is a valid value (pointers null).
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in lookup_user, for getgrgid_r.
        let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut res) };
        if rc != 0 || res.is_null() || grp.gr_name.is_null() {
            return (rc, None);
        }
        // SAFETY: gr_name points into `buf`, NUL-terminated by libc.
        let name = unsafe { CStr::from_ptr(grp.gr_name) };
        (0, Some(name.to_string_lossy().into_owned()))
    })
}

fn grouplist(user: &str, gid: u32) -> Option<Vec<u32>> {
    let cuser = CString::new(user).ok()?;
    let mut n: libc::c_int = 64;
    for _ in 0..8 {
        let mut groups = vec![0 as libc::gid_t; usize::try_from(n).ok()?];
        let mut ngroups = n;
        // SAFETY: `groups` has room for `ngroups` entries; getgrouplist writes at most that many
        // and stores the needed count in `ngroups` when it returns -1.
        let rc =
            unsafe { libc::getgrouplist(cuser.as_ptr(), gid, groups.as_mut_ptr(), &mut ngroups) };
        if rc >= 0 {
            groups.truncate(usize::try_from(ngroups).ok()?);
            return Some(groups);
        }
        if ngroups <= n || ngroups > 65536 {
            return None;
        }
        n = ngroups;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert_eq!(user_name(4_242_420), None);
        assert_eq!(Names::System.user_or_id(4_242_420), "4242420");
        assert!(groups_of(0, 0).contains(&0));
        assert_eq!(groups_of(4_242_420, 77), vec![77]);
    }

    #[test]
    fn a_views_own_files_name_its_users_and_groups() {
        let n = Names::Files(Files::parse(
            "root:x:0:0:root:/root:/bin/sh\nbroken\nnginx:x:33:33::/:/bin/false\nnginx2:x:33:1::/:/x\n",
            "root:x:0:\nwww:x:33:\nlogs:x:4:nginx,other\nbad:x:zz:nginx\n",
        ));
        assert_eq!(n.user_name(33).as_deref(), Some("nginx"));
        assert_eq!(n.user_or_id(1000), "1000");
        assert_eq!(n.group_or_id(4), "logs");
        assert_eq!(n.groups_of(33, 33), vec![4, 33]);
        assert_eq!(n.groups_of(1000, 7), vec![7]);
        let t = crate::testutil::TempDir::new();
        t.write("etc/passwd", "web:x:48:48::/:/bin/false\n");
        std::os::unix::fs::symlink("/etc/group", t.path().join("etc/group")).unwrap();
        let f = Names::Files(Files::load(t.path()));
        assert_eq!(f.user_name(48).as_deref(), Some("web"));
        // A symlink out of the view is not followed: no host group names.
        assert_eq!(f.group_name(0), None);
    }
}
