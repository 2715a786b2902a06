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

fn read_ppid(pid: u32) -> Option<u32> {
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
fn cgroup2_mounts() -> Vec<String> {
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
