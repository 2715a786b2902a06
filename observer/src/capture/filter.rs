//! Stage 1, what to watch: the operator's selection ([`Filter`]) and its encoding into the
//! program's frozen configuration ([`Config`]), which the verifier sees as constants.

use std::path::PathBuf;

use anyhow::{Result, bail};
use observer_common::{
    COMM_LEN, CONFIG_VERBOSE, Config, FILTER_ALL, FILTER_CGROUP, FILTER_COMM, FILTER_ERRNO,
    FILTER_PID, MAX_COMMS, Syscall,
};

use crate::model::Watched;

/// Which processes to watch and which failures to keep. Kinds combine with AND, values within a
/// kind with OR; with no selector at all the default is `comm apache2`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub comms: Vec<String>,
    pub pids: Vec<u32>,
    pub cgroups: Vec<PathBuf>,
    pub all: bool,
    pub errnos: Vec<i32>,
    pub syscalls: Vec<Syscall>,
}

impl Filter {
    /// The filter with its syscalls in order and without repeats, once it passed [`validate`].
    ///
    /// [`validate`]: Filter::validate
    pub(crate) fn checked(mut self) -> Result<Filter> {
        self.syscalls.sort();
        self.syscalls.dedup();
        self.validate()?;
        Ok(self)
    }

    /// True when any selector (comm, pid, cgroup, all) is given.
    pub(crate) fn selects(&self) -> bool {
        !self.comms.is_empty() || !self.pids.is_empty() || !self.cgroups.is_empty() || self.all
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
            if c.is_empty() {
                bail!("--comm needs a non-empty process name");
            }
            if c.len() > COMM_LEN - 1 {
                let cut = String::from_utf8_lossy(&c.as_bytes()[..COMM_LEN - 1]);
                bail!(
                    "--comm {c:?} is {} bytes, but the kernel keeps only the first {} bytes of a \
                     process name (TASK_COMM_LEN), so it can never match; use --comm {cut:?}",
                    c.len(),
                    COMM_LEN - 1
                );
            }
        }
        if self.all && (!self.comms.is_empty() || !self.pids.is_empty() || !self.cgroups.is_empty())
        {
            bail!(
                "--all watches every process; it cannot be combined with --comm, --pid or --cgroup"
            );
        }
        Ok(())
    }

    /// The comm names in effect (the default when no selector is given).
    pub(crate) fn effective_comms(&self) -> Vec<String> {
        if self.selects() {
            self.comms.clone()
        } else {
            vec!["apache2".to_string()]
        }
    }

    /// The program's configuration for this filter, hooking `hooked`.
    pub(crate) fn config(&self, verbose: bool, hooked: &[Syscall]) -> Config {
        let mut c = Config::DEFAULT;
        c.flags = 0;
        for &s in hooked {
            c.sys_kind[s.nr() as usize] = s as u8;
        }
        let comms = self.effective_comms();
        if self.all {
            c.flags |= FILTER_ALL;
        }
        if !comms.is_empty() {
            c.flags |= FILTER_COMM;
            for (slot, name) in c.comms.iter_mut().zip(&comms) {
                *slot = observer_common::comm_words(name.as_bytes());
            }
            c.ncomms = comms.len() as u32;
        }
        if !self.pids.is_empty() {
            c.flags |= FILTER_PID;
        }
        if !self.cgroups.is_empty() {
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
        c.self_tgid = std::process::id();
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
            all: self.all,
            errnos: self.errnos.iter().map(|&e| crate::errno::name(e)).collect(),
            syscalls: self.syscalls.iter().map(|s| s.name().to_string()).collect(),
        }
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
        for c in &self.cgroups {
            parts.push(format!("cgroup {}", c.display()));
        }
        let mut s = parts.join(" and ");
        if !self.errnos.is_empty() {
            let e: Vec<String> = self.errnos.iter().map(|&e| crate::errno::name(e)).collect();
            s.push_str(&format!(", errno {}", e.join("|")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn default_is_apache2_and_selectors_replace_it() {
        assert_eq!(Filter::default().effective_comms(), vec!["apache2"]);
        let f = Filter {
            pids: vec![1],
            ..Filter::default()
        };
        assert!(f.effective_comms().is_empty());
        let c = f.config(false, &Syscall::ALL);
        assert_eq!(c.flags & (FILTER_COMM | FILTER_PID), FILTER_PID);
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
        assert!(c.errno_wanted(13) && c.errno_wanted(2) && !c.errno_wanted(1));
    }
}
