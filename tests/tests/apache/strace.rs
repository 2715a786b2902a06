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
    /// Where the output of the traced window starts (after the markers).
    start: usize,
}

/// A field of `/proc/PID/status` (or of `/proc/PID/task/TID/status`, given `pid/task/tid`).
fn status_field(pid: &str, name: &str) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

pub(crate) fn tracer_of(pid: u32) -> Option<u32> {
    status_field(&pid.to_string(), "TracerPid")?.parse().ok()
}

/// The marker signal: its default action is to ignore it, and a traced thread still stops for
/// it, which strace prints as `TID --- SIGURG {`.
const MARKER: libc::c_int = libc::SIGURG;

/// What marks a request's lookup: the name of a file the document root does not have.
pub(crate) const MARKER_PATH: &str = "observer-strace-marker-";

/// Whether signal `sig` is in the hexadecimal signal mask `field` of `/proc/<at>/status`.
fn in_mask(at: &str, field: &str, sig: libc::c_int) -> bool {
    let mask = status_field(at, field)
        .and_then(|m| u64::from_str_radix(&m, 16).ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{at}/status"));
    mask & (1 << (sig - 1)) != 0
}

/// The threads of process `pid`.
pub(crate) fn threads(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A thread of `pid` the marker signal would stop: the process does not catch it (a handler
/// would run) and the thread does not block it (Apache's threaded children block every signal
/// and take them with sigwait, which no tracer sees).
fn signal_marker_thread(pid: u32) -> Option<u32> {
    if in_mask(&pid.to_string(), "SigCgt", MARKER) {
        return None;
    }
    threads(pid)
        .into_iter()
        .find(|t| !in_mask(&format!("{pid}/task/{t}"), "SigBlk", MARKER))
}

impl Strace {
    /// `strace -f -Z` attached to `pids` (and what they fork), failing calls only, and tracing
    /// each of them when this returns: each traced process has shown strace a marker, a signal,
    /// or (for one that takes no signal) the failing lookup of a marker file that a request of
    /// `get` makes it do. What strace saw until then is left out of [`Strace::detach`]'s text.
    pub(crate) fn attach(pids: &[u32], out: PathBuf, get: &dyn Fn(&str)) -> Strace {
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
        let mut s = Strace {
            child,
            out,
            start: 0,
        };
        let me = s.child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pids.iter().all(|p| tracer_of(*p) == Some(me)) {
            assert!(
                Instant::now() < deadline,
                "strace did not attach to {pids:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Seized is not yet tracing. Each tracee stops first for strace's interrupt, which strace
        // answers by restarting it under PTRACE_SYSCALL, and only then for what comes next: so
        // once strace has printed a tracee's marker, it traces that tracee's syscalls.
        let mut by_signal = Vec::new();
        let mut by_request = Vec::new();
        for &p in pids {
            match signal_marker_thread(p) {
                Some(t) => {
                    // SAFETY: a signal whose default action is to ignore it, to a thread of the
                    // instance the test started.
                    let rc = unsafe { libc::syscall(libc::SYS_tgkill, p, t, MARKER) };
                    assert_eq!(rc, 0, "tgkill {p} {t}: {}", std::io::Error::last_os_error());
                    by_signal.push((p, t));
                }
                None => by_request.push(p),
            }
        }
        let mut requests = 0;
        loop {
            let text = fs::read_to_string(&s.out).unwrap_or_default();
            // (thread, rest of the line): strace pads the thread ids to one width.
            let lines: Vec<(u32, &str)> = text
                .lines()
                .filter_map(|l| {
                    let (t, rest) = l.split_once(' ')?;
                    Some((t.parse().ok()?, rest.trim_start()))
                })
                .collect();
            // The threads whose marker lookup strace printed, and those it saw the signal stop.
            let looked: Vec<u32> = lines
                .iter()
                .filter(|(_, l)| l.contains(MARKER_PATH))
                .map(|(t, _)| *t)
                .collect();
            let signalled: Vec<u32> = lines
                .iter()
                .filter(|(_, l)| l.starts_with("--- SIGURG {"))
                .map(|(t, _)| *t)
                .collect();
            let mut unmarked: Vec<u32> = by_signal
                .iter()
                .filter(|(_, t)| !signalled.contains(t))
                .map(|(p, _)| *p)
                .collect();
            let unlooked: Vec<u32> = by_request
                .iter()
                .copied()
                .filter(|p| !looked.iter().any(|t| threads(*p).contains(t)))
                .collect();
            unmarked.extend(&unlooked);
            if unmarked.is_empty() {
                // Requests are answered after their lookups, which strace printed before letting
                // them go on: nothing of the markers comes after this.
                s.start = text.len();
                eprintln!(
                    "strace traces {pids:?}: marked by a signal {by_signal:?}, by {requests} \
                     request(s) {by_request:?}"
                );
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "strace does not trace {unmarked:?} yet (no marker in its output):\n{text}"
            );
            if unlooked.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            } else {
                requests += 1;
                get(&format!("/{MARKER_PATH}{requests}.html"));
            }
        }
    }

    /// Detaches (SIGINT) and returns what it wrote once it traced every process.
    pub(crate) fn detach(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait().expect("wait strace");
        assert!(
            st.success() || st.code() == Some(130) || st.code().is_none(),
            "strace: {st}"
        );
        let text = fs::read_to_string(&self.out).expect("strace output");
        let after = &text[self.start..];
        // A line cut at the start (a marker's, whose newline strace writes with the next line)
        // belongs to the markers.
        if self.start > 0 && !text[..self.start].ends_with('\n') {
            after
                .split_once('\n')
                .map_or("", |(_, rest)| rest)
                .to_string()
        } else {
            after.to_string()
        }
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
