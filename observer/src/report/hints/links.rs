//! Stage 4, links and path shapes: a dangling symlink, a symlink loop, O_NOFOLLOW meeting a
//! link, a file where the path needs a directory (ENOTDIR), a name too long (ENAMETOOLONG).

use std::fs::Metadata;
use std::os::unix::fs::FileTypeExt;

use crate::escape::{escape_path, shell_quote};
use crate::model::{Failure, Hint, HintKind};
use crate::report::score::{
    H_DANGLING, H_EXPANDED, H_NAME_TOO_LONG, H_NOFOLLOW, H_NOT_DIR, H_RESOLVES_NOW, H_SYMLINK_LOOP,
};
use crate::report::walk::{self, Link, Outcome};

use super::{HintEnv, NAME_MAX, O_NOFOLLOW, PATH_MAX, check_failed, follows_final, hint};

pub(super) fn dangling(link: &Link, missing: &[u8], hints: &mut Vec<Hint>) {
    hints.push(hint(
        HintKind::DanglingSymlink,
        format!(
            "symlink {} -> {} points to a missing {}",
            escape_path(&link.path),
            escape_path(&link.target),
            escape_path(missing)
        ),
        Some(format!(
            "re-point or remove the link: ls -l {}",
            shell_quote(&link.path)
        )),
        H_DANGLING,
    ));
}

fn kind_name(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_file() {
        "a regular file"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "not a directory"
    }
}

pub(super) fn not_dir(path: &[u8], meta: &Metadata, hints: &mut Vec<Hint>) {
    hints.push(hint(
        HintKind::NotADirectory,
        format!(
            "{} is {}, not a directory, but the path continues below it",
            escape_path(path),
            kind_name(meta)
        ),
        None,
        H_NOT_DIR,
    ));
}

pub(super) fn enotdir(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) {
    let w = walk::walk(&env.root, &f.path, follows_final(f));
    match w.outcome {
        Outcome::NotDir { path, meta, .. } => not_dir(&path, &meta, hints),
        Outcome::Error { at, error } => check_failed(&at, &error, hints),
        _ => hints.push(hint(
            HintKind::ResolvesNow,
            "every directory in the path is a directory now".into(),
            None,
            H_RESOLVES_NOW,
        )),
    }
}

pub(super) fn symlink_loop(link: &[u8], chain: &[Link], hints: &mut Vec<Hint>) {
    let mut shown = String::new();
    for (i, l) in chain.iter().enumerate() {
        if i > 0 {
            shown.push_str(", ");
        }
        shown.push_str(&format!(
            "{} -> {}",
            escape_path(&l.path),
            escape_path(&l.target)
        ));
    }
    hints.push(hint(
        HintKind::SymlinkLoop,
        format!("symlink loop at {}: {shown}", escape_path(link)),
        Some(format!(
            "re-point or remove the link: ls -l {}",
            shell_quote(link)
        )),
        H_SYMLINK_LOOP,
    ));
}

pub(super) fn eloop(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) {
    if f.open_flags & O_NOFOLLOW != 0 {
        let w = walk::walk(&env.root, &f.path, false);
        if let Outcome::Found { path, meta } = &w.outcome
            && meta.file_type().is_symlink()
        {
            hints.push(hint(
                HintKind::NofollowSymlink,
                format!(
                    "{} is a symlink and the open used O_NOFOLLOW",
                    escape_path(path)
                ),
                None,
                H_NOFOLLOW,
            ));
            return;
        }
    }
    let w = walk::walk(&env.root, &f.path, true);
    match w.outcome {
        Outcome::Loop { link, chain } => symlink_loop(&link, &chain, hints),
        Outcome::Error { at, error } => check_failed(&at, &error, hints),
        _ => hints.push(hint(
            HintKind::ResolvesNow,
            "the path resolves without a loop now".into(),
            None,
            H_RESOLVES_NOW,
        )),
    }
}

pub(super) fn name_too_long(f: &Failure, hints: &mut Vec<Hint>) {
    if let Some(c) = walk::split(&f.path).find(|c| c.len() > NAME_MAX) {
        let head: Vec<u8> = c.iter().take(40).copied().collect();
        hints.push(hint(
            HintKind::NameTooLong,
            format!(
                "component {}... is {} bytes, longer than NAME_MAX ({NAME_MAX})",
                escape_path(&head),
                c.len()
            ),
            None,
            H_NAME_TOO_LONG,
        ));
    } else if f.path.len() >= PATH_MAX || f.truncated {
        hints.push(hint(
            HintKind::NameTooLong,
            format!(
                "the path is {}{} bytes, PATH_MAX is {PATH_MAX} (NUL included)",
                f.path.len(),
                if f.truncated { "+ (truncated)" } else { "" }
            ),
            None,
            H_NAME_TOO_LONG,
        ));
    } else {
        hints.push(hint(
            HintKind::NameTooLong,
            "no component exceeds NAME_MAX and the path is below PATH_MAX: a symlink probably \
             expanded it"
                .into(),
            None,
            H_EXPANDED,
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Syscall;
    use crate::report::hints::hints_for;
    use crate::testutil::{
        TempDir, failure, find_hint as find, hint_env as env_for, hint_kinds as kinds,
    };
    use std::os::unix::fs::symlink;

    #[test]
    fn enotdir_and_eloop() {
        let t = TempDir::new();
        t.write("www/index.php", "");
        symlink("b", t.path().join("www/a")).unwrap();
        symlink("a", t.path().join("www/b")).unwrap();
        let env = env_for(&t);
        let f = failure(
            &t.abs("www/index.php/.htaccess"),
            libc::ENOTDIR,
            &[(Syscall::Openat, 1)],
        );
        let n = find(&hints_for(&f, &env), "not_a_directory").clone();
        assert!(
            n.message
                .starts_with(&format!("{} is a regular file", t.abs("www/index.php")))
        );

        let f = failure(&t.abs("www/a/x"), libc::ELOOP, &[(Syscall::Openat, 1)]);
        let l = find(&hints_for(&f, &env), "symlink_loop").clone();
        assert!(
            l.message
                .starts_with(&format!("symlink loop at {}", t.abs("www/a"))),
            "{l:?}"
        );
    }

    #[test]
    fn dangling_symlink_and_unresolved_and_long() {
        let t = TempDir::new();
        t.mkdir("conf.d");
        t.write("mods/redis.ini", "");
        symlink(
            t.abs("mods/redis2.ini"),
            t.path().join("conf.d/20-redis.ini"),
        )
        .unwrap();
        let env = env_for(&t);
        let f = failure(
            &t.abs("conf.d/20-redis.ini"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        assert!(
            find(&h, "dangling_symlink")
                .message
                .contains("points to a missing")
        );
        assert!(find(&h, "near_match").message.contains("redis.ini"));

        let mut f = failure("wp-config.php", libc::ENOENT, &[(Syscall::Openat, 1)]);
        f.unresolved = true;
        assert_eq!(kinds(&hints_for(&f, &env)), ["unresolved"]);

        let long = format!("/tmp/{}", "x".repeat(300));
        let f = failure(&long, libc::ENAMETOOLONG, &[(Syscall::Openat, 1)]);
        assert!(
            find(&hints_for(&f, &env), "name_too_long")
                .message
                .contains("300 bytes")
        );
    }
}
