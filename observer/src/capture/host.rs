//! Stage 1, what the host must offer before a capture can start, and what it says about the
//! processes to watch: privilege, the memlock limit, tracefs, process trees in `/proc`, cgroup v2
//! directories.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub(crate) const TRACEFS: &str = "/sys/kernel/tracing";

/// Does this process have what loading BPF tracing programs needs?
pub(crate) fn check_privilege() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u64 = 21;
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    let has = |c: u64| eff & (1 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!(
        "observer needs root (or CAP_BPF and CAP_PERFMON) to load its eBPF program: run it with sudo"
    )
}

pub(crate) fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer. Refusal is fine: since 5.11 BPF memory is
    // charged to the cgroup, not to RLIMIT_MEMLOCK.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!("setrlimit(RLIMIT_MEMLOCK) refused; relying on cgroup accounting");
    }
}

/// Mounts tracefs if it is missing (aya's tracepoint attach reads event ids from it).
pub(crate) fn ensure_tracefs() {
    if Path::new(TRACEFS).join("events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return;
    }
    let r = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS])
        .status();
    if !matches!(r, Ok(s) if s.success()) {
        log::warn!("tracefs is not mounted at {TRACEFS} and mounting it failed");
    }
}

/// All current descendants of `roots`, from /proc's parent links.
pub(crate) fn descendants_of(roots: &[u32]) -> BTreeSet<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = read_ppid(pid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut set: BTreeSet<u32> = roots.iter().copied().collect();
    loop {
        let before = set.len();
        for &(pid, ppid) in &parent_of {
            if set.contains(&ppid) {
                set.insert(pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    set
}

pub(crate) fn read_ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may hold spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The ids of the cgroup v2 directory `path` and of its descendants (16 levels deep at most).
pub(crate) fn collect_cgroup_ids(path: &Path, ids: &mut BTreeSet<u64>, depth: usize) -> Result<()> {
    let md = std::fs::metadata(path).with_context(|| "no such cgroup directory".to_string())?;
    if !md.is_dir() {
        bail!("not a directory");
    }
    if depth == 0 {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: an all-zero `statfs` is a valid value of the plain C struct.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: statfs with a valid C string and an out struct.
        if unsafe { libc::statfs(c.as_ptr(), &mut sfs) } == 0
            && sfs.f_type != libc::CGROUP2_SUPER_MAGIC
        {
            let v2 = cgroup2_mounts();
            bail!(
                "not a cgroup v2 directory ({})",
                match v2.first() {
                    Some(m) => format!("this host's cgroup v2 hierarchy is mounted at {m}"),
                    None => "this host has no cgroup v2 hierarchy mounted".to_string(),
                }
            );
        }
    }
    // On cgroup v2 a cgroup's id is its directory's inode number.
    ids.insert(md.ino());
    if depth < 16 {
        for e in std::fs::read_dir(path)?.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_cgroup_ids(&e.path(), ids, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Mount points of cgroup v2 (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones).
pub(crate) fn cgroup2_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| dir.to_string())
        })
        .collect()
}

/// Every process (its tgid and name), from /proc.
pub(crate) fn processes() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                out.push((pid, c.trim_end_matches('\n').to_string()));
            }
        }
    }
    out
}

/// The processes (tgid, name, port) listening on TCP `ports`, from /proc/net/tcp{,6} and the
/// sockets in each process's fd table.
pub(crate) fn listeners(ports: &[u16]) -> Vec<(u32, String, u16)> {
    let mut inodes: Vec<(u64, u16)> = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode (the 10th field)
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A"
                && let (Some(port), Ok(inode)) = (port, inode.parse::<u64>())
                && ports.contains(&port)
            {
                inodes.push((inode, port));
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (pid, comm) in processes() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if let Some(&(_, port)) = inodes.iter().find(|(i, _)| *i == inode)
                && !out.iter().any(|(p, _, q)| *p == pid && *q == port)
            {
                out.push((pid, comm.clone(), port));
            }
        }
    }
    out.sort();
    out
}

/// Running systemd services whose name contains one of `words`: `*.service` cgroups with
/// processes in them, below the cgroup v2 hierarchy's `system.slice`.
pub(crate) fn services_like(words: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for root in cgroup2_mounts() {
        let Ok(rd) = std::fs::read_dir(Path::new(&root).join("system.slice")) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let lower = name.to_ascii_lowercase();
            let busy = std::fs::read_to_string(e.path().join("cgroup.procs"))
                .is_ok_and(|p| !p.trim().is_empty());
            if lower.ends_with(".service") && busy && words.iter().any(|w| lower.contains(w)) {
                out.push(name);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// How many processes a cgroup directory and its descendants hold.
pub(crate) fn cgroup_processes(path: &Path) -> usize {
    let mut n = std::fs::read_to_string(path.join("cgroup.procs"))
        .map(|p| p.lines().count())
        .unwrap_or(0);
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += cgroup_processes(&e.path());
            }
        }
    }
    n
}
