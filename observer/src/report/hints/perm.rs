//! Stage 4, permissions: the first node on the way whose mode bits deny the failing uid/gid (as
//! the kernel's generic_permission() decides), with the smallest chmod/chgrp that fixes it; a
//! noexec mount; or that the mode bits allow access now (an LSM, an ACL, a fix since).

use std::ffi::CString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use crate::escape::{escape_path, shell_quote};
use crate::ids::Names;
use crate::model::{Failure, Hint, HintKind, IntentKey, Remedy, Syscall};
use crate::report::score::{H_ALLOWED_NOW, H_DENIED, H_DENIED_MORE, H_INFO, H_NOEXEC};
use crate::report::walk::{self, Outcome, Walk, host_path, join_child};

use super::{HintEnv, O_ACCMODE, O_CREAT, O_WRONLY, check_failed, follows_final, hint, remedied};

/// Credential pairs checked per failure.
const MAX_CREDS: usize = 8;

/// A process identity for permission checks.
struct Who {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// The names of the process's view.
    names: Arc<Names>,
}

impl Who {
    fn new(uid: u32, gid: u32, names: &Arc<Names>) -> Self {
        Who {
            uid,
            gid,
            groups: names.groups_of(uid, gid),
            names: names.clone(),
        }
    }

    fn label(&self) -> String {
        match self.names.user_name(self.uid) {
            Some(n) => format!("uid {} ({})", self.uid, escape_path(n.as_bytes())),
            None => format!("uid {}", self.uid),
        }
    }

    /// The mode-bit check of the kernel's generic_permission(): owner bits if the uid owns the
    /// file, else group bits if one of its groups owns it, else other bits; root passes except
    /// that executing a non-directory needs some x bit.
    fn allowed(&self, meta: &Metadata, want: u32) -> bool {
        let mode = meta.mode();
        if self.uid == 0 {
            return want & 1 == 0 || meta.is_dir() || mode & 0o111 != 0;
        }
        let bits = if meta.uid() == self.uid {
            (mode >> 6) & 7
        } else if self.groups.contains(&meta.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        bits & want == want
    }
}

/// Could a process running as (uid, gid) read the file `meta` describes, by its mode bits (the
/// groups from `names`)?
pub(crate) fn may_read(meta: &Metadata, uid: u32, gid: u32, names: &Arc<Names>) -> bool {
    Who::new(uid, gid, names).allowed(meta, 4)
}

/// `drwx------` from a mode.
fn mode_string(meta: &Metadata) -> String {
    let ft = meta.file_type();
    let mode = meta.mode();
    let t = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else {
        '-'
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (i, (bit, on, off)) in special.iter().enumerate() {
        let shift = 6 - 3 * i;
        let rwx = (mode >> shift) & 7;
        s.push(if rwx & 4 != 0 { 'r' } else { '-' });
        s.push(if rwx & 2 != 0 { 'w' } else { '-' });
        let x = rwx & 1 != 0;
        s.push(match (mode & bit != 0, x) {
            (true, true) => *on,
            (true, false) => *off,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn describe_node(meta: &Metadata, names: &Names) -> String {
    format!(
        "{} {:04o} {}:{}",
        mode_string(meta),
        meta.mode() & 0o7777,
        escape_path(names.user_or_id(meta.uid()).as_bytes()),
        escape_path(names.group_or_id(meta.gid()).as_bytes())
    )
}

/// "r", "w", "x", "rw" for a permission mask.
fn letters(want: u32) -> String {
    let mut s = String::new();
    if want & 4 != 0 {
        s.push('r');
    }
    if want & 2 != 0 {
        s.push('w');
    }
    if want & 1 != 0 {
        s.push('x');
    }
    s
}

/// The smallest chmod/chgrp that lets `who` have `want` on the node, and how it reads as
/// commands.
fn fix_for(meta: &Metadata, who: &Who, want: u32, path: &[u8]) -> (Remedy, String) {
    let p = shell_quote(path);
    let w = letters(want);
    let chmod = |m: String| Remedy::Permission {
        path: path.to_vec(),
        chgrp: None,
        chmod: m,
    };
    if who.uid == 0 {
        return (chmod("a+x".into()), format!("chmod a+x {p}"));
    }
    if meta.uid() == who.uid {
        (chmod(format!("u+{w}")), format!("chmod u+{w} {p}"))
    } else if who.groups.contains(&meta.gid()) {
        (chmod(format!("g+{w}")), format!("chmod g+{w} {p}"))
    } else if meta.is_dir() && want == 1 {
        (chmod("o+x".into()), format!("chmod o+x {p}"))
    } else {
        let group = who.names.group_or_id(who.gid);
        let g = shell_quote(group.as_bytes());
        (
            Remedy::Permission {
                path: path.to_vec(),
                chgrp: Some(group),
                chmod: format!("g+{w}"),
            },
            format!("chgrp {g} {p} && chmod g+{w} {p} (or: chmod o+{w} {p}, for every user)"),
        )
    }
}

fn has_acl(root: &Path, path: &[u8]) -> bool {
    let Ok(c) = CString::new(host_path(root, path).into_os_string().into_vec()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks only for the size.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    n > 0
}

fn mounted_noexec(root: &Path, path: &[u8]) -> bool {
    let Ok(c) = CString::new(host_path(root, path).into_os_string().into_vec()) else {
        return false;
    };
    // SAFETY: zeroed statvfs is a valid value of the plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs reads the NUL-terminated path and writes `st` when it returns 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_flag & libc::ST_NOEXEC != 0
}

pub(super) fn eacces(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) {
    let intents = f.intents();
    let (want, verb) = if intents.contains(&IntentKey::Exec) {
        (1, "execute")
    } else if intents.contains(&IntentKey::Open) {
        let creat = f.syscalls.contains_key(&Syscall::Creat);
        match (f.open_flags & O_ACCMODE, creat) {
            (_, true) | (O_WRONLY, _) => (2, "write"),
            (0, _) => (4, "read"),
            _ => (6, "read and write"),
        }
    } else {
        (0, "")
    };
    let creates = f.open_flags & O_CREAT != 0 || f.syscalls.contains_key(&Syscall::Creat);
    let w: Walk = walk::walk(&env.root, &f.path, follows_final(f));
    if let Outcome::Error { at, error } = &w.outcome {
        check_failed(at, error, hints);
        return;
    }
    if f.creds.is_empty() {
        hints.push(hint(
            HintKind::NoCredentials,
            "no uid was recorded for this failure; permissions not checked".into(),
            None,
            H_INFO,
        ));
        return;
    }
    // Denials with the same node and fix are merged: "uid 33 (www-data), uid 34 (backup) cannot
    // search /srv/app".
    struct Denial {
        path: Vec<u8>,
        what: String,
        meta: Metadata,
        fix: String,
        remedy: Remedy,
        who: Vec<String>,
    }
    let mut denials: Vec<Denial> = Vec::new();
    for &(uid, gid) in f.creds.iter().take(MAX_CREDS) {
        let who = Who::new(uid, gid, &env.names);
        let Some((path, meta, need, what)) = first_denial(&w, &who, want, verb, creates) else {
            continue;
        };
        let (remedy, fix) = fix_for(&meta, &who, need, &path);
        let label = who.label();
        match denials
            .iter_mut()
            .find(|d| d.path == path && d.what == what && d.fix == fix)
        {
            Some(d) => {
                if !d.who.contains(&label) {
                    d.who.push(label);
                }
            }
            None => denials.push(Denial {
                path,
                what,
                meta,
                fix,
                remedy,
                who: vec![label],
            }),
        }
    }
    for (i, d) in denials.into_iter().enumerate() {
        let acl = if has_acl(&env.root, &d.path) {
            "; it has a POSIX ACL, the group bits shown are its mask: see getfacl"
        } else {
            ""
        };
        let message = format!(
            "{} cannot {} {} ({}){acl}",
            d.who.join(", "),
            d.what,
            escape_path(&d.path),
            describe_node(&d.meta, &env.names)
        );
        hints.push(remedied(
            HintKind::PermissionDenied,
            message,
            d.fix,
            if i == 0 { H_DENIED } else { H_DENIED_MORE },
            d.remedy,
        ));
    }
    if !hints.is_empty() {
        return;
    }
    if let Outcome::Missing { parent, name, .. } = &w.outcome
        && !creates
    {
        hints.push(hint(
            HintKind::MissingNow,
            format!(
                "{} does not exist now",
                escape_path(&join_child(parent, name))
            ),
            None,
            H_INFO,
        ));
        return;
    }
    if want == 1
        && let Outcome::Found { path, .. } = &w.outcome
        && mounted_noexec(&env.root, path)
    {
        hints.push(hint(
            HintKind::NoexecMount,
            format!("{} is on a filesystem mounted noexec", escape_path(path)),
            Some("run it from an exec-mounted filesystem, or remount without noexec".into()),
            H_NOEXEC,
        ));
        return;
    }
    let message = if f.errno == libc::EPERM {
        "permissions allow access now: fixed, or denied by an LSM (AppArmor/SELinux), an ACL, a \
         mount option, an immutable/append-only attribute (lsattr) or a seccomp filter"
    } else {
        "permissions allow access now: fixed, or denied by an LSM (AppArmor/SELinux), an ACL or a \
         mount option"
    };
    hints.push(hint(
        HintKind::PermissionsAllow,
        message.into(),
        None,
        H_ALLOWED_NOW,
    ));
}

/// The first node that denies `who`: (path, metadata, permission needed, verb).
fn first_denial(
    w: &Walk,
    who: &Who,
    want: u32,
    verb: &str,
    creates: bool,
) -> Option<(Vec<u8>, Metadata, u32, String)> {
    for s in &w.searched {
        if !who.allowed(&s.meta, 1) {
            return Some((s.path.clone(), s.meta.clone(), 1, "search".into()));
        }
    }
    match &w.outcome {
        Outcome::Found { path, meta } if want != 0 && !meta.file_type().is_symlink() => {
            (!who.allowed(meta, want)).then(|| (path.clone(), meta.clone(), want, verb.to_string()))
        }
        Outcome::Missing {
            parent,
            parent_meta,
            rest,
            ..
        } if creates && rest.is_empty() => (!who.allowed(parent_meta, 3)).then(|| {
            (
                parent.clone(),
                parent_meta.clone(),
                3,
                "create files in".into(),
            )
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::hints::hints_for;
    use crate::testutil::{
        TempDir, failure, find_hint as find, hint_env as env_for, hint_kinds as kinds,
    };
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn eacces_on_private_dir() {
        let t = TempDir::new();
        t.write("srv/secret/config.php", "");
        t.chmod("srv/secret", 0o700);
        let env = env_for(&t);
        let mut f = failure(
            &t.abs("srv/secret/config.php"),
            libc::EACCES,
            &[(Syscall::Openat, 1)],
        );
        f.creds.insert((65534, 65534));
        let h = hints_for(&f, &env);
        let d = find(&h, "permission_denied");
        let user = crate::ids::user_name(65534)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        assert!(
            d.message.starts_with(&format!(
                "uid 65534{user} cannot search {} (drwx------ 0700 ",
                t.abs("srv/secret")
            )),
            "{d:?}"
        );
        assert_eq!(
            d.suggestion.as_deref(),
            Some(format!("chmod o+x {}", t.abs("srv/secret")).as_str())
        );

        // Directory open now, file private: the file is named, with a group fix.
        t.chmod("srv/secret", 0o755);
        t.chmod("srv/secret/config.php", 0o600);
        let h = hints_for(&f, &env);
        let d = find(&h, "permission_denied");
        assert!(
            d.message
                .contains(&format!("cannot read {}", t.abs("srv/secret/config.php")))
        );
        assert!(
            d.suggestion.as_deref().unwrap().contains("chmod g+r"),
            "{d:?}"
        );

        // Two users denied alike: one hint names both.
        let mut two = f.clone();
        two.creds = [(65534, 65534), (4_242_420, 65534)].into();
        let h = hints_for(&two, &env);
        assert_eq!(kinds(&h), ["permission_denied"], "{h:#?}");
        assert!(h[0].message.contains(", uid 4242420 cannot read"), "{h:#?}");

        // Root is not denied by mode bits: the hint says so.
        let mut r = f.clone();
        r.creds = [(0, 0)].into();
        let h = hints_for(&r, &env);
        assert!(
            find(&h, "permissions_allow")
                .message
                .starts_with("permissions allow access now")
        );
    }

    #[test]
    fn mode_strings() {
        let t = TempDir::new();
        t.mkdir("d");
        std::fs::set_permissions(t.path().join("d"), std::fs::Permissions::from_mode(0o1750))
            .unwrap();
        let m = std::fs::metadata(t.path().join("d")).unwrap();
        assert_eq!(mode_string(&m), "drwxr-x--T");
    }
}
