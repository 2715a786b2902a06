//! The strace oracle: `strace -f` attached to the same workers for the same traffic, its output
//! parsed into (pid, absolute path, errno), the way observer resolves paths.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const STRACE_SYSCALLS: &str = "open,openat,openat2,creat,stat,lstat,newfstatat,statx,access,\
                               faccessat,faccessat2,execve,execveat";

pub(crate) struct Strace {
    child: Child,
    out: PathBuf,
}

pub(crate) fn tracer_of(pid: u32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

impl Strace {
    /// `strace -f -Z` attached to `pids` (and what they fork), failing calls only.
    pub(crate) fn attach(pids: &[u32], out: PathBuf) -> Strace {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-Z", "-y", "-s", "65535", "-e"])
            .arg(format!("trace={STRACE_SYSCALLS}"))
            .arg("-o")
            .arg(&out);
        for p in pids {
            cmd.arg("-p").arg(p.to_string());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run strace: {e}"));
        let s = Strace { child, out };
        let me = s.child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pids.iter().all(|p| tracer_of(*p) == Some(me)) {
            assert!(
                Instant::now() < deadline,
                "strace did not attach to {pids:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Seized is not yet tracing: let strace restart each tracee under PTRACE_SYSCALL.
        std::thread::sleep(Duration::from_millis(500));
        s
    }

    /// Detaches (SIGINT) and returns what it wrote.
    pub(crate) fn detach(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait().expect("wait strace");
        assert!(
            st.success() || st.code() == Some(130) || st.code().is_none(),
            "strace: {st}"
        );
        fs::read_to_string(&self.out).expect("strace output")
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A C string as strace prints it (`"..."` with `\"`, `\\`, `\n`, `\xNN`, octal escapes),
/// starting at the opening quote; returns the bytes and the rest after the closing quote.
pub(crate) fn strace_string(s: &str) -> Option<(Vec<u8>, &str)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let c = *b.get(i + 1)?;
                i += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'v' => out.push(0x0b),
                    b'f' => out.push(0x0c),
                    b'x' => {
                        let h = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
                        out.push(u8::from_str_radix(h, 16).ok()?);
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        let mut n = 1;
                        while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                            v = v * 8 + u32::from(b[i] - b'0');
                            i += 1;
                            n += 1;
                        }
                        out.push(v as u8);
                    }
                    other => out.push(other),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// observer's join: `.` and empty components dropped, `..` kept, a trailing slash kept.
pub(crate) fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
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

/// Syscalls whose path is the second argument, after a directory descriptor.
pub(crate) fn has_dirfd(name: &str) -> bool {
    matches!(
        name,
        "openat" | "openat2" | "newfstatat" | "statx" | "faccessat" | "faccessat2" | "execveat"
    )
}

/// One failing call of `strace -f -y -Z` output as (pid, path made absolute, errno name).
/// `cwd` gives a process's working directory for paths relative to it without `-y` decoration.
pub(crate) fn parse_strace_line(
    line: &str,
    cwd: &dyn Fn(u32) -> Vec<u8>,
) -> Option<(u32, Vec<u8>, String)> {
    let (pid, rest) = line.split_once(' ')?;
    let pid: u32 = pid.parse().ok()?;
    let rest = rest.trim_start();
    let open = rest.find('(')?;
    let name = &rest[..open];
    if !STRACE_SYSCALLS.split(',').any(|s| s == name) {
        return None;
    }
    assert!(
        !rest.contains("<unfinished") && !rest.contains("resumed>"),
        "split strace line: {line}"
    );
    let args = &rest[open + 1..];
    let (dir, path_part) = if has_dirfd(name) {
        let (fd, after) = args.split_once(", ")?;
        // `AT_FDCWD</cwd>` or `3</dir>` with -y.
        let dir = fd
            .find('<')
            .map(|i| fd.as_bytes()[i + 1..fd.len() - 1].to_vec());
        (dir, after)
    } else {
        (None, args)
    };
    let (path, _) = strace_string(path_part)?;
    let errno = line.rsplit_once("= -1 ")?.1.split_whitespace().next()?;
    if path.is_empty() {
        // newfstatat(fd, "", AT_EMPTY_PATH): a stat of the descriptor, not a path lookup.
        return None;
    }
    let abs = if path.starts_with(b"/") {
        path
    } else {
        join(&dir.unwrap_or_else(|| cwd(pid)), &path)
    };
    Some((pid, abs, errno.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_lines_parse_like_observer_resolves() {
        let cwd = |_: u32| b"/srv/www".to_vec();
        let p = |l: &str| {
            parse_strace_line(l, &cwd).map(|(pid, p, e)| (pid, String::from_utf8(p).unwrap(), e))
        };
        assert_eq!(
            p(
                r#"31055 openat(3</usr>, "nope/x", O_RDONLY) = -1 ENOENT (No such file or directory)"#
            ),
            Some((31055, "/usr/nope/x".into(), "ENOENT".into()))
        );
        assert_eq!(
            p(r#"7 openat(AT_FDCWD</tmp/stt>, "./rel-nope", O_RDONLY) = -1 ENOENT (No such file)"#),
            Some((7, "/tmp/stt/rel-nope".into(), "ENOENT".into()))
        );
        assert_eq!(
            p(r#"7 access("/nope\"q\n\x41\101", F_OK)        = -1 EACCES (Permission denied)"#),
            Some((7, "/nope\"q\nAA".into(), "EACCES".into()))
        );
        assert_eq!(
            p(r#"7 access("x.php", R_OK) = -1 ENOENT (No such file or directory)"#),
            Some((7, "/srv/www/x.php".into(), "ENOENT".into()))
        );
        assert_eq!(
            p(r#"7 newfstatat(5</x>, "", 0x7ffd, AT_EMPTY_PATH) = -1 EBADF (Bad file descriptor)"#),
            None
        );
        assert_eq!(p("7 +++ exited with 0 +++"), None);
        assert_eq!(p("7 read(3, \"\", 4) = -1 EAGAIN (x)"), None);
    }
}
