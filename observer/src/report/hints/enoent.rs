//! Stage 4, ENOENT: the path exists now, or what is missing on the way and what nearby name
//! the process probably meant (a typo, a case or extension variant, a version), and a library
//! the loader found elsewhere.

use crate::escape::{escape_path, shell_quote};
use crate::model::{Failure, Hint, HintKind, IntentKey, Remedy};
use crate::report::probe::is_library;
use crate::report::score::{
    H_DIGITS, H_EXISTS_NOW, H_FOUND_ELSEWHERE, H_INFO, H_INTERPRETER, H_NEAR, H_NEAR_DIR,
    H_PARENT_MISSING, H_SIMILAR_DIR, H_VERSION_LINK,
};
use crate::report::walk::{self, Outcome, basename, dirname, host_path, join_child};

use super::near::{self, Likeness};
use super::{HintEnv, Memo, check_failed, dpkg, follows_final, hint, links, remedied};

pub(super) fn enoent(f: &Failure, env: &HintEnv, memo: &mut Memo, hints: &mut Vec<Hint>) {
    if locale_normalized(f, env, hints) {
        return;
    }
    let w = walk::walk(&env.root, &f.path, follows_final(f));
    match w.outcome {
        Outcome::Found { path, .. }
            if f.intents().contains(&IntentKey::Exec)
                && let Some(interp) = missing_interpreter(env, &path) =>
        {
            hints.push(hint(
                HintKind::InterpreterMissing,
                format!(
                    "{} exists, but its {} {} does not: the exec fails on it",
                    escape_path(&f.path),
                    interp.what,
                    escape_path(&interp.path)
                ),
                Some(format!(
                    "install {}, or correct {}",
                    escape_path(&interp.path),
                    match interp.what {
                        "interpreter" => format!("the #! line of {}", escape_path(&f.path)),
                        _ => "the program's build (its ELF interpreter)".to_string(),
                    }
                )),
                H_INTERPRETER,
            ));
        }
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
    if !memo.budget.take(entries.len()) {
        hints.push(not_searched(dir));
        return;
    }
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
    let message = format!("did you mean {} (exists)", escape_path(&found));
    // A typo or a case is corrected in the reference; a version (digits, a soname link) may be
    // a real change of version, which observer does not decide.
    hints.push(match like {
        Likeness::Case | Likeness::Typo => remedied(
            HintKind::NearMatch,
            message,
            suggestion,
            weight,
            Remedy::Rename {
                from: want.to_vec(),
                to: e.name.clone(),
            },
        ),
        Likeness::VersionLink | Likeness::Digits => {
            hint(HintKind::NearMatch, message, Some(suggestion), weight)
        }
    });
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
    if !memo.budget.take(entries.len()) {
        hints.push(not_searched(parent));
        return;
    }
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
        hints.push(remedied(
            HintKind::NearMatch,
            format!("did you mean {} (exists)", escape_path(&full)),
            format!(
                "correct the directory in the reference from {} to {}",
                escape_path(want),
                escape_path(&e.name)
            ),
            H_NEAR_DIR,
            Remedy::Rename {
                from: want.to_vec(),
                to: e.name.clone(),
            },
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

fn not_searched(dir: &[u8]) -> Hint {
    hint(
        HintKind::NotChecked,
        format!(
            "near matches in {} not searched: this report's budget for them was spent",
            escape_path(dir)
        ),
        None,
        H_INFO,
    )
}

/// The locale directory glibc tries after `name` (`C.UTF-8` -> `C.utf8`): the codeset
/// normalized as `_nl_normalize_codeset` does (letters and digits only, lowercase, `iso` before
/// an all-digit one). `None` when normalizing changes nothing.
fn normalized_locale(name: &[u8]) -> Option<Vec<u8>> {
    let dot = name.iter().position(|&b| b == b'.')?;
    let end = name[dot..]
        .iter()
        .position(|&b| b == b'@')
        .map_or(name.len(), |i| dot + i);
    let codeset = &name[dot + 1..end];
    let mut norm: Vec<u8> = codeset
        .iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(u8::to_ascii_lowercase)
        .collect();
    if !norm.is_empty() && norm.iter().all(u8::is_ascii_digit) {
        norm.splice(0..0, *b"iso");
    }
    if norm == codeset {
        return None;
    }
    let mut out = name[..=dot].to_vec();
    out.extend_from_slice(&norm);
    out.extend_from_slice(&name[end..]);
    Some(out)
}

/// glibc looks a locale up by the name it was given, then by its normalized name: a miss under
/// `/usr/lib/locale/C.UTF-8/` with `C.utf8/` present is that first try, not a fault.
fn locale_normalized(f: &Failure, env: &HintEnv, hints: &mut Vec<Hint>) -> bool {
    const BASE: &[u8] = b"/usr/lib/locale/";
    let Some(rest) = f.path.strip_prefix(BASE) else {
        return false;
    };
    let Some(slash) = rest.iter().position(|&b| b == b'/') else {
        return false;
    };
    let Some(norm) = normalized_locale(&rest[..slash]) else {
        return false;
    };
    let mut cand = BASE.to_vec();
    cand.extend_from_slice(&norm);
    cand.extend_from_slice(&rest[slash..]);
    if std::fs::symlink_metadata(host_path(&env.root, &cand)).is_err() {
        return false;
    }
    hints.push(hint(
        HintKind::FoundElsewhere,
        format!(
            "{} exists: glibc tries the locale's given name first, then this normalized one",
            escape_path(&cand)
        ),
        None,
        H_FOUND_ELSEWHERE,
    ));
    true
}

/// What an executable needs to run and lacks.
struct Interpreter {
    /// `interpreter` (a script's `#!` line) or `dynamic loader` (an ELF's `PT_INTERP`).
    what: &'static str,
    path: Vec<u8>,
}

/// The interpreter of the script, or the dynamic loader of the ELF program, at `path` (resolved,
/// in the view), when it does not exist.
fn missing_interpreter(env: &HintEnv, path: &[u8]) -> Option<Interpreter> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    env.view
        .open(path)
        .ok()?
        .take(4096)
        .read_to_end(&mut head)
        .ok()?;
    let (what, interp) = if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next()?;
        let p: Vec<u8> = line
            .trim_ascii()
            .split(|b| b.is_ascii_whitespace())
            .next()?
            .to_vec();
        ("interpreter", p)
    } else {
        ("dynamic loader", elf_interp(&head)?)
    };
    if !interp.starts_with(b"/") {
        return None;
    }
    match walk::walk(&env.root, &interp, true).outcome {
        Outcome::Missing { .. } => Some(Interpreter { what, path: interp }),
        _ => None,
    }
}

/// The `PT_INTERP` path of a 64-bit little-endian ELF image whose program headers are in `head`.
fn elf_interp(head: &[u8]) -> Option<Vec<u8>> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?));
    // ELFCLASS64, ELFDATA2LSB.
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum.min(64) {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        // p_type PT_INTERP = 3.
        if u32::from(u16_at(ph)?) | (u32::from(u16_at(ph + 2)?) << 16) == 3 {
            let off = usize::try_from(u64_at(ph + 8)?).ok()?;
            let len = usize::try_from(u64_at(ph + 32)?).ok()?.min(4096);
            let raw = head.get(off..off.checked_add(len)?)?;
            return Some(raw.split(|&b| b == 0).next()?.to_vec());
        }
    }
    None
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
    fn a_locale_found_by_its_normalized_name_is_glibcs_first_try_not_a_fault() {
        assert_eq!(
            super::normalized_locale(b"C.UTF-8").as_deref(),
            Some(&b"C.utf8"[..])
        );
        assert_eq!(
            super::normalized_locale(b"de_DE.ISO-8859-1@euro").as_deref(),
            Some(&b"de_DE.iso88591@euro"[..])
        );
        assert_eq!(super::normalized_locale(b"C.utf8"), None);
        assert_eq!(super::normalized_locale(b"en_US"), None);
        let t = TempDir::new();
        t.write("usr/lib/locale/C.utf8/LC_CTYPE", "");
        let mut env = crate::report::hints::HintEnv::new(t.path(), t.path().join("dpkg"));
        env.lib_dirs.clear();
        let f = failure(
            "/usr/lib/locale/C.UTF-8/LC_CTYPE",
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        assert_eq!(kinds(&h), ["found_elsewhere"], "{h:?}");
        assert!(
            h[0].message
                .contains("/usr/lib/locale/C.utf8/LC_CTYPE exists")
        );
        // Not there under either name: the usual hints.
        let f = failure(
            "/usr/lib/locale/de_DE.UTF-8/LC_CTYPE",
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        assert!(!kinds(&hints_for(&f, &env)).contains(&"found_elsewhere"));
    }

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

    /// A library missing from one directory of the loader's search path and present in another
    /// was found there: `found_elsewhere`, naming where, which lowers the row's score. Missing
    /// from every directory, or not a library, it gets no such hint.
    #[test]
    fn a_library_missing_from_one_lib_dir_and_present_in_another_was_found_elsewhere() {
        let t = TempDir::new();
        t.mkdir("lib-a");
        t.write("lib-b/libobserver-test.so.1", "");
        t.write("lib-b/notalib.conf", "");
        let mut env = env_for(&t);
        env.lib_dirs = vec![t.abs("lib-a").into_bytes(), t.abs("lib-b").into_bytes()];
        let f = failure(
            &t.abs("lib-a/libobserver-test.so.1"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        let h = hints_for(&f, &env);
        let e = find(&h, "found_elsewhere");
        assert_eq!(
            e.message,
            format!(
                "{} exists on the library search path: the loader probably found it there",
                t.abs("lib-b/libobserver-test.so.1")
            )
        );
        assert!(e.weight < 0.0, "{e:?}");
        // Missing everywhere: nothing was found elsewhere.
        let f = failure(
            &t.abs("lib-a/libobserver-none.so.1"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        assert!(!kinds(&hints_for(&f, &env)).contains(&"found_elsewhere"));
        // Not a library: the loader does not look for it.
        let f = failure(
            &t.abs("lib-a/notalib.conf"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        assert!(!kinds(&hints_for(&f, &env)).contains(&"found_elsewhere"));
        // With no directory configured, as the other tests run, it never fires.
        env.lib_dirs.clear();
        let f = failure(
            &t.abs("lib-a/libobserver-test.so.1"),
            libc::ENOENT,
            &[(Syscall::Openat, 1)],
        );
        assert!(!kinds(&hints_for(&f, &env)).contains(&"found_elsewhere"));
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
