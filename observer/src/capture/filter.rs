//! Stage 1, what to watch: the operator's selection ([`Filter`]) and its encoding into the
//! program's frozen configuration ([`Config`]), which the verifier sees as constants.

use std::path::PathBuf;

use anyhow::{Result, bail};
use observer_common::{
    COMM_LEN, CONFIG_OPENED, CONFIG_VERBOSE, Config, FILTER_ALL, FILTER_CGROUP, FILTER_COMM,
    FILTER_ERRNO, FILTER_PID, KIND_CHDIR, KIND_FCHDIR, MAX_COMMS, NR_CHDIR, NR_FCHDIR, Syscall,
};

/// What observer watches when no selector is given: the web stack. Debian's Apache is
/// `apache2`, RHEL's `httpd`; PHP-FPM's workers keep their binary's name (`php-fpm8.2` on Debian,
/// `php-fpm` on RHEL, `php-fpm82` on Alpine): it changes only its argv.
pub(crate) const WEB_STACK: [&str; 3] = ["apache2", "httpd", "php-fpm*"];

use crate::model::Watched;

/// Which processes to watch and which failures to keep. Kinds combine with AND, values within a
/// kind with OR; with no selector at all the default is the web stack ([`WEB_STACK`]). A comm
/// is a name, or a prefix ending in `*`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub comms: Vec<String>,
    pub pids: Vec<u32>,
    pub cgroups: Vec<PathBuf>,
    /// Container id prefixes (lowercase hex): the cgroups of the containers they name.
    pub containers: Vec<String>,
    pub all: bool,
    pub errnos: Vec<i32>,
    pub syscalls: Vec<Syscall>,
    /// Do not report the files watched processes read (the referrer search then falls back to
    /// the configuration directories). For the benchmark's comparison.
    pub no_opened: bool,
}

impl Filter {
    /// The filter with its syscalls in order and without repeats, once it passed [`validate`].
    ///
    /// [`validate`]: Filter::validate
    pub(crate) fn checked(mut self) -> Result<Filter> {
        self.syscalls.sort();
        self.syscalls.dedup();
        for c in &mut self.containers {
            *c = c.to_ascii_lowercase();
        }
        self.validate()?;
        Ok(self)
    }

    /// True when any selector (comm, pid, cgroup, container, all) is given.
    pub(crate) fn selects(&self) -> bool {
        !self.comms.is_empty() || !self.pids.is_empty() || self.by_cgroup() || self.all
    }

    /// True when a cgroup selector (--cgroup or --container, one kind in the kernel) is given.
    pub(crate) fn by_cgroup(&self) -> bool {
        !self.cgroups.is_empty() || !self.containers.is_empty()
    }

    /// Checks what the kernel cannot hold; the messages are meant for the operator.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.comms.len() > MAX_COMMS {
            bail!(
                "at most {MAX_COMMS} --comm names are supported, {} given",
                self.comms.len()
            );
        }
        for c in &self.comms {
            let (name, prefix) = match c.strip_suffix('*') {
                Some(n) => (n, true),
                None => (c.as_str(), false),
            };
            if name.is_empty() {
                bail!(if prefix {
                    "--comm '*' would match every process: use --all"
                } else {
                    "--comm needs a non-empty process name"
                });
            }
            if name.contains('*') {
                bail!(
                    "--comm {c:?}: only a trailing * is understood (a prefix: --comm 'php-fpm*')"
                );
            }
            if name.len() > COMM_LEN - 1 {
                let cut = String::from_utf8_lossy(&name.as_bytes()[..COMM_LEN - 1]);
                bail!(
                    "--comm {c:?} is {} bytes, but the kernel keeps only the first {} bytes of a \
                     process name (TASK_COMM_LEN), so it can never match; use --comm {cut:?}{}",
                    name.len(),
                    COMM_LEN - 1,
                    if prefix { "*" } else { "" }
                );
            }
        }
        for c in &self.containers {
            if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "--container {c:?}: a container id is 64 hex digits; give it, or a prefix of \
                     it (as `docker ps` shows: 3f2a9c1b2d4e)"
                );
            }
        }
        if self.containers.len() > MAX_COMMS {
            bail!("at most {MAX_COMMS} --container ids are supported");
        }
        if self.all && (!self.comms.is_empty() || !self.pids.is_empty() || self.by_cgroup()) {
            bail!(
                "--all watches every process; it cannot be combined with --comm, --pid, --cgroup \
                 or --container"
            );
        }
        Ok(())
    }

    /// The comm names in effect (the default when no selector is given).
    pub(crate) fn effective_comms(&self) -> Vec<String> {
        if self.selects() {
            self.comms.clone()
        } else {
            WEB_STACK.iter().map(|s| s.to_string()).collect()
        }
    }

    /// The program's configuration for this filter, hooking `hooked`.
    pub(crate) fn config(&self, verbose: bool, hooked: &[Syscall]) -> Config {
        let mut c = Config::DEFAULT;
        c.flags = 0;
        for &s in hooked {
            c.sys_kind[s.nr() as usize] = s as u8;
        }
        // Always: a relative failure resolves against the directory it was made in.
        c.sys_kind[NR_CHDIR as usize] = KIND_CHDIR;
        c.sys_kind[NR_FCHDIR as usize] = KIND_FCHDIR;
        let comms = self.effective_comms();
        if self.all {
            c.flags |= FILTER_ALL;
        }
        if !comms.is_empty() {
            c.flags |= FILTER_COMM;
            for (i, name) in comms.iter().enumerate().take(MAX_COMMS) {
                (c.comms[i], c.comm_masks[i]) = observer_common::comm_pattern(name.as_bytes());
            }
            c.ncomms = comms.len() as u32;
        }
        if !self.pids.is_empty() {
            c.flags |= FILTER_PID;
        }
        if self.by_cgroup() {
            c.flags |= FILTER_CGROUP;
        }
        if !self.errnos.is_empty() {
            c.flags |= FILTER_ERRNO;
            for &e in &self.errnos {
                let e = e as usize;
                if e < 64 * c.errno_mask.len() {
                    c.errno_mask[e / 64] |= 1 << (e % 64);
                }
            }
        }
        if verbose {
            c.flags |= CONFIG_VERBOSE;
        }
        // The files watched processes read: where a failing name is referenced.
        if !self.no_opened {
            c.flags |= CONFIG_OPENED;
        }
        c.self_tgid = std::process::id();
        c.hash_key = random_key();
        c
    }

    /// What this filter watches, as reports and the history show it.
    pub(crate) fn watched(&self) -> Watched {
        Watched {
            comms: self.effective_comms(),
            pids: self.pids.clone(),
            cgroups: self
                .cgroups
                .iter()
                .map(|c| c.display().to_string())
                .collect(),
            containers: self.containers.clone(),
            all: self.all,
            errnos: self.errnos.iter().map(|&e| crate::errno::name(e)).collect(),
            syscalls: self.syscalls.iter().map(|s| s.name().to_string()).collect(),
        }
    }

    /// What the start line says is watched, counted among `procs` (tgid, name) now: "apache2 (6
    /// processes), httpd (none running), php-fpm* (3: php-fpm8.2)". Also whether a selection by
    /// name alone matches nothing running.
    pub(crate) fn matching(&self, procs: &[(u32, String)]) -> (String, bool) {
        let mut parts = Vec::new();
        if self.all {
            parts.push("every process".to_string());
        }
        let comms = self.effective_comms();
        let mut named = Vec::new();
        let mut any = false;
        for c in &comms {
            let mut names: Vec<&str> = procs
                .iter()
                .filter(|(_, n)| comm_matches(c, n))
                .map(|(_, n)| n.as_str())
                .collect();
            let count = names.len();
            any |= count > 0;
            names.sort_unstable();
            names.dedup();
            named.push(match (count, c.ends_with('*')) {
                (0, _) => format!("{c} (none running)"),
                (1, false) => format!("{c} (1 process)"),
                (n, false) => format!("{c} ({n} processes)"),
                (n, true) => format!("{c} ({n}: {})", names.join(", ")),
            });
        }
        if !named.is_empty() {
            parts.push(named.join(", "));
        }
        if !self.pids.is_empty() {
            let p: Vec<String> = self.pids.iter().map(u32::to_string).collect();
            let family = super::host::descendants_of(&self.pids).len();
            parts.push(format!(
                "pid {} and descendants ({family} process{})",
                p.join("|"),
                if family == 1 { "" } else { "es" }
            ));
        }
        let mut places = Vec::new();
        for c in &self.cgroups {
            let n = super::host::cgroup_processes(c);
            places.push(format!(
                "cgroup {} ({n} process{})",
                c.display(),
                if n == 1 { "" } else { "es" }
            ));
        }
        for prefix in &self.containers {
            let found = crate::place::container_cgroups(prefix);
            let n: usize = found
                .iter()
                .map(|(dir, _)| super::host::cgroup_processes(dir))
                .sum();
            places.push(match found.first() {
                None => format!("container {prefix} (not running)"),
                Some((_, c)) => format!(
                    "container {} ({}, {n} process{})",
                    &c.id[..c.id.len().min(12)],
                    c.runtime.as_str(),
                    if n == 1 { "" } else { "es" }
                ),
            });
        }
        if !places.is_empty() {
            parts.push(places.join(" or "));
        }
        let mut s = parts.join(" and ");
        if !self.errnos.is_empty() {
            let e: Vec<String> = self.errnos.iter().map(|&e| crate::errno::name(e)).collect();
            s.push_str(&format!(", errno {}", e.join("|")));
        }
        let names_only = !comms.is_empty() && self.pids.is_empty() && !self.by_cgroup();
        (s, names_only && !any)
    }

    /// A short human description: "comm apache2", "pid 12 (and descendants)", ...
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.all {
            parts.push("every process".to_string());
        }
        let comms = self.effective_comms();
        if !comms.is_empty() {
            parts.push(format!("comm {}", comms.join("|")));
        }
        if !self.pids.is_empty() {
            let p: Vec<String> = self.pids.iter().map(u32::to_string).collect();
            parts.push(format!("pid {} (and descendants)", p.join("|")));
        }
        let mut places: Vec<String> = self
            .cgroups
            .iter()
            .map(|c| format!("cgroup {}", c.display()))
            .collect();
        places.extend(self.containers.iter().map(|c| format!("container {c}")));
        if !places.is_empty() {
            parts.push(places.join(" or "));
        }
        let mut s = parts.join(" and ");
        if !self.errnos.is_empty() {
            let e: Vec<String> = self.errnos.iter().map(|&e| crate::errno::name(e)).collect();
            s.push_str(&format!(", errno {}", e.join("|")));
        }
        s
    }
}

/// A fresh 128-bit key from the kernel's random pool (getrandom), for the path hash. Never
/// written anywhere: a file name cannot be crafted to share another's kernel key.
fn random_key() -> [u64; 2] {
    let mut b = [0u8; 16];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n <= 0 {
            // Before the pool is ready (early boot): the time and pid still vary per load.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            return [
                t ^ 0x9e37_79b9_7f4a_7c15,
                u64::from(std::process::id()).rotate_left(32) ^ t,
            ];
        }
        got += n as usize;
    }
    [
        u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
        u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
    ]
}

/// Does the process name `comm` match `pattern` (a name, or a prefix ending in `*`), as the
/// kernel compares them?
pub(crate) fn comm_matches(pattern: &str, comm: &str) -> bool {
    let (want, mask) = observer_common::comm_pattern(pattern.as_bytes());
    let have = observer_common::comm_words(comm.as_bytes());
    have[0] & mask[0] == want[0] && have[1] & mask[1] == want[1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_hex_prefixes_and_narrow_like_a_cgroup() {
        let f = |ids: &[&str]| Filter {
            containers: ids.iter().map(|s| s.to_string()).collect(),
            ..Filter::default()
        };
        let ok = f(&["3F2A9C"]).checked().unwrap();
        assert_eq!(ok.containers, vec!["3f2a9c"]);
        assert!(ok.selects(), "a container replaces the default web stack");
        assert!(ok.effective_comms().is_empty());
        assert_ne!(ok.config(false, &[]).flags & FILTER_CGROUP, 0);
        assert_eq!(ok.describe(), "container 3f2a9c");
        for bad in ["", "xyz", "3f2a-9c", &"a".repeat(65)] {
            let e = f(&[bad]).checked().unwrap_err().to_string();
            assert!(e.contains("64 hex digits"), "{bad:?}: {e}");
        }
        let all = Filter {
            all: true,
            ..f(&["3f"])
        };
        assert!(
            all.checked()
                .unwrap_err()
                .to_string()
                .contains("--container")
        );
    }

    #[test]
    fn comm_longer_than_kernel_limit_is_rejected_with_the_reason() {
        let f = Filter {
            comms: vec!["a-very-long-process-name".into()],
            ..Filter::default()
        };
        let e = format!("{:#}", f.validate().unwrap_err());
        assert!(e.contains("first 15 bytes"), "{e}");
        assert!(e.contains("\"a-very-long-pro\""), "{e}");
    }

    #[test]
    fn default_is_the_web_stack_and_selectors_replace_it() {
        assert_eq!(
            Filter::default().effective_comms(),
            vec!["apache2", "httpd", "php-fpm*"]
        );
        let f = Filter {
            pids: vec![1],
            ..Filter::default()
        };
        assert!(f.effective_comms().is_empty());
        let c = f.config(false, &Syscall::ALL);
        assert_eq!(c.flags & (FILTER_COMM | FILTER_PID), FILTER_PID);
    }

    #[test]
    fn the_start_line_counts_what_each_name_matches() {
        let procs: Vec<(u32, String)> = [
            (1, "apache2"),
            (2, "apache2"),
            (3, "php-fpm8.2"),
            (4, "php-fpm8.2"),
            (5, "php-fpm8.3"),
            (6, "sshd"),
        ]
        .iter()
        .map(|(p, n)| (*p, n.to_string()))
        .collect();
        let (line, nothing) = Filter::default().matching(&procs);
        assert_eq!(
            line,
            "apache2 (2 processes), httpd (none running), php-fpm* (3: php-fpm8.2, php-fpm8.3)"
        );
        assert!(!nothing);
        let (_, nothing) = Filter::default().matching(&procs[5..]);
        assert!(nothing, "only sshd runs");
    }

    #[test]
    fn comm_patterns_are_checked() {
        let check = |c: &str| {
            Filter {
                comms: vec![c.into()],
                ..Filter::default()
            }
            .validate()
            .map_err(|e| format!("{e:#}"))
        };
        assert!(check("php-fpm*").is_ok());
        assert!(check("abcdefghijklmno*").is_ok(), "15 bytes and a *");
        assert!(check("*").unwrap_err().contains("--all"));
        assert!(check("php*fpm").unwrap_err().contains("trailing *"));
        assert!(
            check("abcdefghijklmnop*")
                .unwrap_err()
                .contains("first 15 bytes")
        );
    }

    #[test]
    fn config_encodes_comms_and_errnos() {
        let f = Filter {
            comms: vec!["php-fpm8.2".into(), "apache2".into()],
            errnos: vec![2, 13],
            ..Filter::default()
        };
        let c = f.config(false, &Syscall::ALL);
        assert_eq!(c.ncomms, 2);
        assert_eq!(c.comms[0], observer_common::comm_words(b"php-fpm8.2"));
        assert_eq!(c.comms[0][1] >> 16, 0, "NUL padded after 10 bytes");
        assert_eq!(
            c.comm_masks[0][1], 0xff_ffff,
            "10 bytes and the NUL compared"
        );
        assert!(c.errno_wanted(13) && c.errno_wanted(2) && !c.errno_wanted(1));
    }
}
