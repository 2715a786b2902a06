//! Stage 4, ENOENT: the path exists now, or what is missing on the way and what nearby name
//! the process probably meant (a typo, a case or extension variant, a version), and a library
//! the loader found elsewhere.

use crate::escape::{escape_path, shell_quote};
use crate::model::{Failure, Hint, HintKind, IntentKey};
use crate::report::probe::is_library;
use crate::report::score::{
    H_DIGITS, H_EXISTS_NOW, H_FOUND_ELSEWHERE, H_NEAR, H_NEAR_DIR, H_PARENT_MISSING, H_SIMILAR_DIR,
    H_VERSION_LINK,
};
use crate::report::walk::{self, Outcome, basename, dirname, host_path, join_child};

use super::near::{self, Likeness};
use super::{HintEnv, Memo, check_failed, dpkg, follows_final, hint, links};

pub(super) fn enoent(f: &Failure, env: &HintEnv, memo: &mut Memo, hints: &mut Vec<Hint>) {
    let w = walk::walk(&env.root, &f.path, follows_final(f));
    match w.outcome {
        Outcome::Found { path, .. } => {
            let shown = if path == f.path {
                escape_path(&f.path)
            } else {
                format!("{} (-> {})", escape_path(&f.path), escape_path(&path))
            };
            hints.push(hint(
                HintKind::ExistsNow,
                format!("{shown} exists now (transient, or already fixed)"),
                None,
                H_EXISTS_NOW,
            ));
        }
        Outcome::Missing {
            parent,
            name,
            rest,
            via_link,
            ..
        } => {
            let missing = join_child(&parent, &name);
            if let Some(link) = &via_link {
                links::dangling(link, &missing, hints);
            }
            if rest.is_empty() {
                near_in_dir(env, memo, &parent, &name, hints);
            } else {
                hints.push(hint(
                    HintKind::ParentMissing,
                    format!(
                        "directory {} does not exist (deepest existing: {})",
                        escape_path(&missing),
                        escape_path(&parent)
                    ),
                    None,
                    H_PARENT_MISSING,
                ));
                near_parent(env, memo, &parent, &name, &rest, hints);
            }
            let mut resolved = missing;
            for r in &rest {
                resolved = join_child(&resolved, r);
            }
            dpkg::package_owner(f, env, &resolved, hints);
            if f.intents().contains(&IntentKey::Open) && is_library(&f.path) {
                found_elsewhere(f, env, hints);
            }
        }
        Outcome::NotDir { path, meta, .. } => links::not_dir(&path, &meta, hints),
        Outcome::Loop { link, chain } => links::symlink_loop(&link, &chain, hints),
        Outcome::Error { at, error } => check_failed(&at, &error, hints),
    }
}

fn near_in_dir(env: &HintEnv, memo: &mut Memo, dir: &[u8], want: &[u8], hints: &mut Vec<Hint>) {
    let entries = memo.list(env, dir);
    let Some((e, like)) = near::best_match(want, &entries, false) else {
        return;
    };
    let found = join_child(dir, &e.name);
    let missing = join_child(dir, want);
    let (suggestion, weight) = match like {
        Likeness::Case => (
            format!(
                "names are case-sensitive: correct the reference to {}",
                escape_path(&e.name)
            ),
            H_NEAR,
        ),
        Likeness::Typo => (
            format!(
                "correct the reference from {} to {} (or rename the file)",
                escape_path(want),
                escape_path(&e.name)
            ),
            H_NEAR,
        ),
        Likeness::VersionLink => (
            if is_library(want) {
                format!(
                    "recreate the link: ln -s {} {} (ldconfig recreates soname links)",
                    shell_quote(&e.name),
                    shell_quote(&missing)
                )
            } else {
                format!("ln -s {} {}", shell_quote(&e.name), shell_quote(&missing))
            },
            H_VERSION_LINK,
        ),
        Likeness::Digits => (
            format!(
                "if the version changed, update the reference from {} to {}",
                escape_path(want),
                escape_path(&e.name)
            ),
            H_DIGITS,
        ),
    };
    hints.push(hint(
        HintKind::NearMatch,
        format!("did you mean {} (exists)", escape_path(&found)),
        Some(suggestion),
        weight,
    ));
}

fn near_parent(
    env: &HintEnv,
    memo: &mut Memo,
    parent: &[u8],
    want: &[u8],
    rest: &[Vec<u8>],
    hints: &mut Vec<Hint>,
) {
    let entries = memo.list(env, parent);
    let Some((e, _)) = near::best_match(want, &entries, true) else {
        return;
    };
    let dir = join_child(parent, &e.name);
    let mut full = dir.clone();
    for r in rest {
        full = join_child(&full, r);
    }
    let full_exists = matches!(
        walk::walk(&env.root, &full, true).outcome,
        Outcome::Found { .. }
    );
    if full_exists {
        hints.push(hint(
            HintKind::NearMatch,
            format!("did you mean {} (exists)", escape_path(&full)),
            Some(format!(
                "correct the directory in the reference from {} to {}",
                escape_path(want),
                escape_path(&e.name)
            )),
            H_NEAR_DIR,
        ));
    } else {
        hints.push(hint(
            HintKind::NearMatch,
            format!(
                "did you mean directory {} (exists, but not {} in it)",
                escape_path(&dir),
                escape_path(&full[dir.len()..])
            ),
            None,
            H_SIMILAR_DIR,
        ));
    }
}

fn found_elsewhere(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) {
    let base = basename(&f.path);
    let dir = dirname(&f.path);
    for d in &env.lib_dirs {
        if d.as_slice() == dir {
            continue;
        }
        let cand = join_child(d, base);
        if std::fs::metadata(host_path(&env.root, &cand)).is_ok_and(|m| m.is_file()) {
            hints.push(hint(
                HintKind::FoundElsewhere,
                format!(
                    "{} exists on the library search path: the loader probably found it there",
                    escape_path(&cand)
                ),
                None,
                H_FOUND_ELSEWHERE,
            ));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Syscall;
    use crate::report::hints::hints_for;
    use crate::testutil::{
        TempDir, failure, find_hint as find, hint_env as env_for, hint_kinds as kinds,
    };

    #[test]
    fn near_match_typo_case_and_extension() {
        let t = TempDir::new();
        t.write("app/class-x.php", "<?php");
        t.write("app/Config.ini", "");
        t.write("app/x.php5", "");
        t.write("app/site.conf.dpkg-dist", "");
        let env = env_for(&t);

        let f = failure(
            &t.abs("app/class-x.phpp"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        let n = find(&h, "near_match");
        assert_eq!(
            n.message,
            format!("did you mean {} (exists)", t.abs("app/class-x.php"))
        );
        assert!(n.weight >= 3.0);

        let f = failure(
            &t.abs("app/config.ini"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let n = find(&hints_for(&f, &env), "near_match").clone();
        assert!(n.message.contains("Config.ini"), "{n:?}");
        assert!(n.suggestion.unwrap().contains("case-sensitive"));

        let f = failure(&t.abs("app/x.php"), libc::ENOENT, &[(Syscall::Openat, 1)]);
        assert!(
            find(&hints_for(&f, &env), "near_match")
                .message
                .contains("x.php5")
        );

        // A package manager's leftover is not what the process meant.
        let f = failure(
            &t.abs("app/site.conf"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        assert!(!kinds(&hints_for(&f, &env)).contains(&"near_match"));
    }

    #[test]
    fn missing_parent_with_near_sibling() {
        let t = TempDir::new();
        t.write("usr/lib/php/20220829/redis.so", "");
        let env = env_for(&t);
        let f = failure(
            &t.abs("usr/lib/php/20220828/redis.so"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        let p = find(&h, "parent_missing");
        assert!(p.message.contains(&t.abs("usr/lib/php/20220828")), "{p:?}");
        assert!(
            p.message
                .contains(&format!("deepest existing: {}", t.abs("usr/lib/php")))
        );
        let n = find(&h, "near_match");
        assert_eq!(
            n.message,
            format!(
                "did you mean {} (exists)",
                t.abs("usr/lib/php/20220829/redis.so")
            )
        );
    }

    #[test]
    fn exists_now() {
        let t = TempDir::new();
        t.write("here.php", "");
        let env = env_for(&t);
        let f = failure(&t.abs("here.php"), libc::ENOENT, &[(Syscall::Openat, 1)]);
        let h = hints_for(&f, &env);
        let e = find(&h, "exists_now");
        assert!(e.weight < 0.0);
        assert!(e.message.contains("exists now"));
    }
}
