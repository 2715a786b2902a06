//! uid/gid to names and supplementary groups, through libc (so NSS is honoured), cached.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
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

/// `name` or the number, for messages and commands.
pub(crate) fn user_or_id(uid: u32) -> String {
    user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// `name` or the number, for messages and commands.
pub(crate) fn group_or_id(gid: u32) -> String {
    group_name(gid).unwrap_or_else(|| gid.to_string())
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
        assert_eq!(user_or_id(4_242_420), "4242420");
        assert!(groups_of(0, 0).contains(&0));
        assert_eq!(groups_of(4_242_420, 77), vec![77]);
    }
}
