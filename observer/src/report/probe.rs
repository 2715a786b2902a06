//! Stage 4, the lookups a healthy server makes all the time (`.htaccess` at every level,
//! DirectoryIndex siblings, translations, NSS, the dynamic loader's search path...): the score
//! demotes them, never hides them.

use crate::model::{Failure, IntentKey};
use crate::report::walk::basename;

pub(crate) fn is_library(path: &[u8]) -> bool {
    let base = basename(path);
    base.ends_with(b".so") || base.windows(4).any(|w| w == b".so.")
}

/// A failing open that reads nothing: of a directory (`opendir`, `scandir`: `O_DIRECTORY`), or
/// of a path only (`O_PATH`: systemd's chase() walks `/run/host/userdb` that way). It looks
/// whether an optional directory is there. The label says which.
pub(crate) fn lookup_probe(f: &Failure) -> Option<&'static str> {
    const O_DIRECTORY: u64 = 0o200000;
    const O_PATH: u64 = 0o10000000;
    if f.intents().contains(&IntentKey::Exec) {
        return None;
    }
    if f.open_flags & O_PATH != 0 {
        Some("O_PATH lookup")
    } else if f.open_flags & O_DIRECTORY != 0 {
        Some("directory probe")
    } else {
        None
    }
}

/// True when the row only stat'ed or access'ed the path (no open, no exec).
pub(crate) fn probe_only(f: &Failure) -> bool {
    let i = f.intents();
    !i.contains(&IntentKey::Open) && !i.contains(&IntentKey::Exec)
}

/// Names the dynamic loader appends to each library directory when it searches (legacy hwcaps,
/// `tls`, and the glibc-hwcaps subdirectories).
const LDSO_SUBDIRS: [&[u8]; 14] = [
    b"tls",
    b"haswell",
    b"x86_64",
    b"avx512_1",
    b"i686",
    b"i586",
    b"sse2",
    b"glibc-hwcaps",
    b"x86-64-v2",
    b"x86-64-v3",
    b"x86-64-v4",
    b"aarch64",
    b"power9",
    b"z15",
];

const LIB_DIRS: [&[u8]; 9] = [
    b"/lib/x86_64-linux-gnu/",
    b"/usr/lib/x86_64-linux-gnu/",
    b"/lib/aarch64-linux-gnu/",
    b"/usr/lib/aarch64-linux-gnu/",
    b"/lib64/",
    b"/usr/lib64/",
    b"/lib/",
    b"/usr/lib/",
    b"/usr/local/lib/",
];

const DIRECTORY_INDEX: [&[u8]; 12] = [
    b"index.html",
    b"index.htm",
    b"index.cgi",
    b"index.pl",
    b"index.xhtml",
    b"index.shtml",
    b"index.jsp",
    b"default.htm",
    b"default.html",
    b"default.asp",
    b"default.aspx",
    b"home.html",
];

const COMMON_404: [&[u8]; 7] = [
    b"favicon.ico",
    b"robots.txt",
    b"sitemap.xml",
    b"ads.txt",
    b"apple-touch-icon.png",
    b"apple-touch-icon-precomposed.png",
    b"security.txt",
];

const USERDB_DIRS: [&[u8]; 6] = [
    b"/run/systemd/userdb",
    b"/run/userdb",
    b"/run/host/userdb",
    b"/etc/userdb",
    b"/usr/lib/userdb",
    b"/usr/local/lib/userdb",
];

fn under(path: &[u8], dir: &[u8]) -> bool {
    path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// A library looked up in one of the subdirectories the dynamic loader tries before the
/// directory itself (`<dir>/tls/haswell/x86_64/libfoo.so.1`, `<dir>/glibc-hwcaps/x86-64-v3/...`).
fn ldso_probe(p: &[u8]) -> bool {
    let mut dirs: Vec<&[u8]> = p.split(|b| *b == b'/').filter(|c| !c.is_empty()).collect();
    dirs.pop(); // the file name
    let mut stripped = Vec::new();
    while let Some(last) = dirs.last() {
        if LDSO_SUBDIRS.contains(last) || last.starts_with(b"x86-64-v") {
            stripped.push(*last);
            dirs.pop();
        } else {
            break;
        }
    }
    if stripped.is_empty() {
        return false;
    }
    // tls/, glibc-hwcaps/ and the hwcap names only appear as loader probes; a bare x86_64/ or
    // i686/ only counts below a system library directory.
    let distinctive = stripped
        .iter()
        .any(|c| matches!(*c, b"tls" | b"glibc-hwcaps" | b"haswell" | b"avx512_1"));
    let mut prefix = Vec::new();
    for d in &dirs {
        prefix.push(b'/');
        prefix.extend_from_slice(d);
    }
    prefix.push(b'/');
    distinctive || LIB_DIRS.contains(&prefix.as_slice())
}

/// The benign lookup pattern `f` matches, if any (the label shown as "probe pattern (label)").
pub(crate) fn probe_pattern(f: &Failure) -> Option<&'static str> {
    let p = &f.path[..];
    let base = basename(p);
    let stat_only = probe_only(f);
    if base == b".htaccess" {
        return Some(".htaccess");
    }
    if base == b".user.ini" {
        return Some(".user.ini");
    }
    if under(p, b"/proc") {
        return Some("/proc");
    }
    if under(p, b"/sys") {
        return Some("/sys");
    }
    if base.ends_with(b".mo") || base.ends_with(b".gmo") {
        return Some("translation");
    }
    if p.starts_with(b"/usr/share/locale") || under(p, b"/usr/lib/locale") {
        return Some("locale");
    }
    if p == b"/etc/nsswitch.conf" || (base.starts_with(b"libnss_") && is_library(p)) {
        return Some("NSS");
    }
    if USERDB_DIRS.iter().any(|d| under(p, d)) {
        return Some("userdb");
    }
    if p == b"/etc/ld.so.preload" {
        return Some("ld.so.preload");
    }
    if matches!(
        p,
        b"/etc/gai.conf" | b"/etc/suid-debug" | b"/etc/ld.so.nohwcap" | b"/etc/malloc.conf"
    ) {
        return Some("libc optional file");
    }
    if is_library(p) && ldso_probe(p) {
        return Some("ld.so search path");
    }
    let is_php_ini = base == b"php.ini" || (base.starts_with(b"php-") && base.ends_with(b".ini"));
    if is_php_ini && !p.starts_with(b"/etc/php") {
        return Some("php.ini search");
    }
    if stat_only {
        if DIRECTORY_INDEX.contains(&base) {
            return Some("DirectoryIndex");
        }
        if COMMON_404.contains(&base) || p.windows(13).any(|w| w == b"/.well-known/") {
            return Some("common 404");
        }
        let parent = &p[..p.len() - base.len()];
        let parent = parent.strip_suffix(b"/").unwrap_or(parent);
        if base.ends_with(b".d") || basename(parent).ends_with(b".d") {
            return Some("drop-in");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Syscall;
    use crate::testutil::failure;

    #[test]
    fn probe_patterns() {
        let f = |p: &str, s: Syscall| failure(p, libc::ENOENT, &[(s, 1)]);
        let cases = [
            ("/var/www/a/b/.htaccess", Syscall::Openat, Some(".htaccess")),
            (
                "/var/www/index.html",
                Syscall::Newfstatat,
                Some("DirectoryIndex"),
            ),
            ("/var/www/index.html", Syscall::Openat, None),
            (
                "/usr/share/locale/de/LC_MESSAGES/php.mo",
                Syscall::Openat,
                Some("translation"),
            ),
            (
                "/usr/share/locale-langpack/de/x",
                Syscall::Openat,
                Some("locale"),
            ),
            (
                "/lib/x86_64-linux-gnu/tls/libfoo.so.1",
                Syscall::Openat,
                Some("ld.so search path"),
            ),
            (
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1",
                Syscall::Openat,
                None,
            ),
            ("/etc/ld.so.preload", Syscall::Access, Some("ld.so.preload")),
            (
                "/etc/php/8.2/apache2/conf.d/99-x.ini",
                Syscall::Newfstatat,
                Some("drop-in"),
            ),
            (
                "/etc/php/8.2/apache2/conf.d/20-redis.ini",
                Syscall::Openat,
                None,
            ),
            ("/etc/php/8.2/apache2/php.ini", Syscall::Openat, None),
            ("/usr/sbin/php.ini", Syscall::Openat, Some("php.ini search")),
            ("/proc/1/status", Syscall::Openat, Some("/proc")),
            ("/processes", Syscall::Openat, None),
            (
                "/run/systemd/userdb/io.systemd.Machine",
                Syscall::Openat,
                Some("userdb"),
            ),
        ];
        for (p, s, want) in cases {
            assert_eq!(probe_pattern(&f(p, s)), want, "{p} {s:?}");
        }
    }
}
