//! Stage 4, resolving a path the way the kernel does, one component at a time, keeping what each step
//! saw: the directories searched (for permission checks), the first missing component, the
//! component that is not a directory, the symlink that loops.
//!
//! Only `lstat` and `readlink` are used: nothing is opened, so a FIFO or a device in the path
//! cannot block, and no file is read.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The kernel's limit on symlinks followed in one lookup (MAXSYMLINKS).
pub(crate) const MAX_SYMLINKS: usize = 40;

/// Components examined before giving up (a hostile tree of long symlinks cannot make a walk
/// cost more than this many lstat calls).
const MAX_STEPS: usize = 8192;

/// A directory the lookup searched (needed search permission on).
#[derive(Debug)]
pub(crate) struct Searched {
    /// Absolute path as the process sees it (inside the walk's root).
    pub(crate) path: Vec<u8>,
    pub(crate) meta: Metadata,
}

/// A symlink the lookup followed.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) path: Vec<u8>,
    pub(crate) target: Vec<u8>,
    /// Components left after this link's target (counted from the end), and how many the target
    /// added: a component with `k` components after it came from this target when
    /// `rest <= k < rest + added`.
    rest: usize,
    added: usize,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every component exists. `meta` is the final object's (the symlink's own when the final
    /// symlink was not followed).
    Found { path: Vec<u8>, meta: Metadata },
    /// `parent/name` does not exist; `rest` are the components that were still to come.
    Missing {
        parent: Vec<u8>,
        parent_meta: Metadata,
        name: Vec<u8>,
        rest: Vec<Vec<u8>>,
        /// The symlink whose target named the missing component, if any.
        via_link: Option<Link>,
    },
    /// `path` exists, is not a directory, and the lookup needed to go through it.
    NotDir { path: Vec<u8>, meta: Metadata },
    /// Resolution hit a loop at `link` (or more than MAX_SYMLINKS links).
    Loop { link: Vec<u8>, chain: Vec<Link> },
    /// The check itself failed (e.g. a NUL byte in the name, an I/O error).
    Error { at: Vec<u8>, error: io::Error },
}

#[derive(Debug)]
pub(crate) struct Walk {
    pub(crate) searched: Vec<Searched>,
    pub(crate) outcome: Outcome,
}

/// Joins absolute components into "/a/b".
pub(crate) fn join(components: &[Vec<u8>]) -> Vec<u8> {
    if components.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in components {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

pub(crate) fn join_child(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = parent.to_vec();
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// `root` + the absolute path `abs`: where to look on this machine.
pub(crate) fn host_path(root: &Path, abs: &[u8]) -> PathBuf {
    let rel = abs.strip_prefix(b"/").unwrap_or(abs);
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// The last component of a path (`b` of `/a/b`; the whole of a name without `/`).
pub(crate) fn basename(path: &[u8]) -> &[u8] {
    path.rsplit(|b| *b == b'/').next().unwrap_or(path)
}

/// The directory part of a path (`/a` of `/a/b`, `/` of `/a`, empty for a bare name).
pub(crate) fn dirname(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(0) => b"/",
        Some(i) => &path[..i],
        None => b"",
    }
}

pub(crate) fn split(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty())
}

/// Resolves the absolute `path` under `root`. `follow_final`: whether a symlink as the last
/// component is followed (false for lstat and O_NOFOLLOW).
pub(crate) fn walk(root: &Path, path: &[u8], follow_final: bool) -> Walk {
    let mut todo: VecDeque<Vec<u8>> = split(path).map(<[u8]>::to_vec).collect();
    let mut cur: Vec<Vec<u8>> = Vec::new();
    let mut searched = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    let mut seen_links: HashSet<Vec<u8>> = HashSet::new();
    // The root itself is followed: a pinned view's is a /proc/self/fd/N link.
    let mut cur_meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(error) => {
            return Walk {
                searched,
                outcome: Outcome::Error {
                    at: b"/".to_vec(),
                    error,
                },
            };
        }
    };
    let mut steps = 0usize;
    while let Some(name) = todo.pop_front() {
        steps += 1;
        if steps > MAX_STEPS {
            return Walk {
                searched,
                outcome: Outcome::Error {
                    at: join(&cur),
                    error: io::Error::other("too many path components to check"),
                },
            };
        }
        if name == b"." {
            continue;
        }
        searched.push(Searched {
            path: join(&cur),
            meta: cur_meta.clone(),
        });
        if name == b".." {
            cur.pop();
            let up = host_path(root, &join(&cur));
            let meta = if cur.is_empty() {
                std::fs::metadata(up)
            } else {
                std::fs::symlink_metadata(up)
            };
            match meta {
                Ok(m) => cur_meta = m,
                Err(error) => {
                    let at = join(&cur);
                    return Walk {
                        searched,
                        outcome: Outcome::Error { at, error },
                    };
                }
            }
            continue;
        }
        let mut here = cur.clone();
        here.push(name.clone());
        let here_path = join(&here);
        let meta = match std::fs::symlink_metadata(host_path(root, &here_path)) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let k = todo.len();
                let via_link = links
                    .iter()
                    .rev()
                    .find(|l| l.rest <= k && k < l.rest + l.added)
                    .cloned();
                return Walk {
                    searched,
                    outcome: Outcome::Missing {
                        parent: join(&cur),
                        parent_meta: cur_meta,
                        name,
                        rest: todo.into_iter().collect(),
                        via_link,
                    },
                };
            }
            Err(error) => {
                return Walk {
                    searched,
                    outcome: Outcome::Error {
                        at: here_path,
                        error,
                    },
                };
            }
        };
        let ft = meta.file_type();
        if ft.is_symlink() && (follow_final || !todo.is_empty()) {
            let target = match std::fs::read_link(host_path(root, &here_path)) {
                Ok(t) => t.into_os_string().into_vec(),
                Err(error) => {
                    return Walk {
                        searched,
                        outcome: Outcome::Error {
                            at: here_path,
                            error,
                        },
                    };
                }
            };
            let rest = todo.len();
            let parts: Vec<Vec<u8>> = split(&target).map(<[u8]>::to_vec).collect();
            let link = Link {
                path: here_path.clone(),
                target: target.clone(),
                rest,
                added: parts.len(),
            };
            let looped = !seen_links.insert(here_path.clone());
            links.push(link);
            if looped || links.len() > MAX_SYMLINKS {
                let chain = links.iter().rev().take(8).rev().cloned().collect();
                return Walk {
                    searched,
                    outcome: Outcome::Loop {
                        link: here_path,
                        chain,
                    },
                };
            }
            for p in parts.into_iter().rev() {
                todo.push_front(p);
            }
            if target.starts_with(b"/") {
                cur.clear();
                cur_meta = match std::fs::metadata(root) {
                    Ok(m) => m,
                    Err(error) => {
                        return Walk {
                            searched,
                            outcome: Outcome::Error {
                                at: b"/".to_vec(),
                                error,
                            },
                        };
                    }
                };
            }
            if todo.is_empty() {
                // A link to "/" (or to "."): the directory we are in is the result.
                return Walk {
                    searched,
                    outcome: Outcome::Found {
                        path: join(&cur),
                        meta: cur_meta,
                    },
                };
            }
            continue;
        }
        if ft.is_dir() {
            cur = here;
            cur_meta = meta;
            continue;
        }
        if !todo.is_empty() {
            return Walk {
                searched,
                outcome: Outcome::NotDir {
                    path: here_path,
                    meta,
                },
            };
        }
        return Walk {
            searched,
            outcome: Outcome::Found {
                path: here_path,
                meta,
            },
        };
    }
    Walk {
        searched,
        outcome: Outcome::Found {
            path: join(&cur),
            meta: cur_meta,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::symlink;

    #[test]
    fn outcomes() {
        let t = TempDir::new();
        t.mkdir("a/b");
        t.write("a/b/f", "x");
        symlink("b", t.path().join("a/l")).unwrap();
        symlink("loop2", t.path().join("a/loop1")).unwrap();
        symlink("loop1", t.path().join("a/loop2")).unwrap();
        symlink("/a/b/gone", t.path().join("a/dangling")).unwrap();
        let root = t.path();

        match walk(root, b"/a/l/f", true).outcome {
            Outcome::Found { path, .. } => assert_eq!(path, b"/a/b/f"),
            o => panic!("{o:?}"),
        }
        match walk(root, b"/a/b/missing/x", true).outcome {
            Outcome::Missing {
                parent, name, rest, ..
            } => {
                assert_eq!(parent, b"/a/b");
                assert_eq!(name, b"missing");
                assert_eq!(rest, vec![b"x".to_vec()]);
            }
            o => panic!("{o:?}"),
        }
        match walk(root, b"/a/b/f/.htaccess", true).outcome {
            Outcome::NotDir { path, .. } => assert_eq!(path, b"/a/b/f"),
            o => panic!("{o:?}"),
        }
        match walk(root, b"/a/loop1", true).outcome {
            Outcome::Loop { link, .. } => assert_eq!(link, b"/a/loop1"),
            o => panic!("{o:?}"),
        }
        match walk(root, b"/a/dangling", true).outcome {
            Outcome::Missing {
                parent, via_link, ..
            } => {
                assert_eq!(parent, b"/a/b");
                assert_eq!(via_link.unwrap().path, b"/a/dangling");
            }
            o => panic!("{o:?}"),
        }
        match walk(root, b"/a/dangling", false).outcome {
            Outcome::Found { meta, .. } => assert!(meta.file_type().is_symlink()),
            o => panic!("{o:?}"),
        }
        // Hostile names: no panic.
        assert!(matches!(
            walk(root, b"/a/\0b", true).outcome,
            Outcome::Error { .. }
        ));
        let long = vec![b'x'; 300];
        let _ = walk(root, &long, true);
        assert!(matches!(
            walk(root, b"/../..", true).outcome,
            Outcome::Found { .. }
        ));
    }
}
