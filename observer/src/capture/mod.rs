//! Stage 1: capture. Loads the eBPF program with the operator's filter, fills its pid and
//! cgroup maps, attaches the syscall hook, and reads what the kernel reports: new keys over the
//! ring buffer (decoded in [`sighting`]), counts from the in-kernel aggregate, loss counters.
//! [`session`] runs a capture for a command; [`filter`] encodes what to watch; [`host`] checks
//! and reads the host; [`kbtf`] finds a field in the kernel's BTF.

mod filter;
mod host;
mod kbtf;
mod session;
mod sighting;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, RawTracePoint, TracePoint, raw_trace_point::RawTracePointLinkId,
        tp_btf::BtfTracePointLinkId,
    },
};
use observer_common::{
    AggKey, AggVal, CONFIG_GLOBAL, MAP_AGG, MAP_CGROUPS, MAP_EVENTS, MAP_GATE, MAP_PIDS, MAP_STATS,
    PID_EXPLICIT, PID_INHERITED, STAT_COUNT, Stat, Syscall,
};

pub use filter::Filter;
pub(crate) use host::{cgroup2_mounts, check_privilege, processes, read_ppid};
pub(crate) use session::{Handler, Loop, Polled, Session};
pub use sighting::KernelStats;
pub(crate) use sighting::{Clock, Sighting, monotonic_ns};

/// The eBPF object, built by `cargo xtask build-ebpf` and embedded by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer.bpf.o"));

/// The running kernel's BTF.
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The syscall hook: one program on the raw sys_exit tracepoint, BTF-typed or plain.
const SYS_EXIT_BTF: &str = "observer_sys_exit";
const SYS_EXIT_RAW: &str = "observer_sys_exit_raw";

/// Which variant of the syscall hook is loaded, and its link while attached.
enum SysHook {
    None,
    Btf(Option<BtfTracePointLinkId>),
    Raw(Option<RawTracePointLinkId>),
}

/// A loaded and attached capture.
pub struct Capture {
    sys_hook: SysHook,
    ebpf: Ebpf,
    events: Option<RingBuf<MapData>>,
    /// Hooks attached, as "syscall" names.
    pub(crate) attached: Vec<Syscall>,
    /// Hooks skipped, with why.
    pub(crate) skipped: Vec<(Syscall, String)>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    cgroup_paths: Vec<PathBuf>,
    /// `--container` id prefixes, resolved to cgroups at every refresh.
    containers: Vec<String>,
    /// The path hash's secret key in this load.
    hash_key: [u64; 2],
    /// `--pid` descendants found at start that the pid map had no room for (counted with the
    /// kernel's unfollowed forks).
    unseeded: u64,
}

/// Where the BTF-typed hook finds what it loads straight from the current task, in the running
/// kernel's `task_struct`: `comm` (else it calls bpf_get_current_comm) and the path to its mount
/// namespace's inode (else first sightings say 0 and userspace asks /proc). All 0 without kernel
/// BTF, or before Linux 5.11, which lacks bpf_get_current_task_btf (probed, not guessed from the
/// version: distributions backport).
fn task_offsets(kernel_btf: &[u8], config: &mut observer_common::Config) {
    let helper = aya::sys::is_helper_supported(
        aya::programs::ProgramType::RawTracePoint,
        aya::sys::BpfHelper::BPF_FUNC_get_current_task_btf,
    );
    if !matches!(helper, Ok(true)) {
        log::debug!("no bpf_get_current_task_btf ({helper:?}): comm read with a helper call");
        return;
    }
    let off = |s: &str, m: &str| kbtf::member_offset(kernel_btf, s, m);
    config.task_comm_off = off("task_struct", "comm").unwrap_or(0);
    if let (Some(nsproxy), Some(mnt_ns), Some(ns), Some(inum)) = (
        off("task_struct", "nsproxy"),
        off("nsproxy", "mnt_ns"),
        off("mnt_namespace", "ns"),
        off("ns_common", "inum"),
    ) {
        config.task_nsproxy_off = nsproxy;
        config.nsproxy_mnt_ns_off = mnt_ns;
        config.mnt_ns_inum_off = ns + inum;
    } else {
        log::debug!("no mount namespace in the kernel's BTF: first sightings ask /proc");
    }
}

impl Capture {
    /// Loads the program with `filter`, fills the pid/cgroup maps, and attaches the hooks.
    pub fn start(filter: &Filter, verbose: bool) -> Result<Capture> {
        Self::start_gated(filter, verbose, true)
    }

    /// As `start`; with `open` false, the attached program records nothing until
    /// [`Capture::set_gate`] opens it.
    pub fn start_gated(filter: &Filter, verbose: bool, open: bool) -> Result<Capture> {
        filter.validate()?;
        if EBPF_OBJECT.is_empty() {
            bail!(
                "this observer binary was built without its eBPF program; build it with `cargo xtask build`"
            );
        }
        check_privilege()?;
        host::raise_memlock();
        host::ensure_tracefs();

        // Which of the wanted syscalls this kernel has: its per-syscall tracepoints list them
        // (observer itself hooks the raw sys_exit tracepoint, which is far cheaper).
        let wanted: Vec<Syscall> = if filter.syscalls.is_empty() {
            Syscall::ALL.to_vec()
        } else {
            filter.syscalls.clone()
        };
        let events = Path::new(host::TRACEFS).join("events/syscalls");
        let (attached, skipped): (Vec<Syscall>, Vec<Syscall>) = wanted.into_iter().partition(|s| {
            !events.exists() || events.join(format!("sys_enter_{}", s.name())).exists()
        });
        if attached.is_empty() {
            bail!("none of the requested syscalls exists on this kernel");
        }
        // The kernel's BTF, read once: the comm offset comes from it and the BTF-typed hook is
        // loaded against it. Without it (or with OBSERVER_RAW_TRACEPOINTS=1, which forces the
        // fallback so it can be tested on a kernel with BTF) the plain raw tracepoint is used.
        let force_raw = std::env::var_os("OBSERVER_RAW_TRACEPOINTS").is_some_and(|v| v == "1");
        let kernel_btf = if force_raw {
            None
        } else {
            std::fs::read(KERNEL_BTF).ok()
        };
        let mut config = filter.config(verbose, &attached);
        if let Some(btf) = kernel_btf.as_deref() {
            task_offsets(btf, &mut config);
        }
        // Not held while aya's loader parses the same BTF for itself (it always does): the
        // start's peak is then one copy of the kernel's BTF, not two.
        let kernel_btf = kernel_btf.is_some();
        let log_level: u8 = if verbose { 0xff } else { 0 };
        let mut ebpf = EbpfLoader::new()
            .override_global(CONFIG_GLOBAL, &config, true)
            .override_global("AYA_LOG_LEVEL", &log_level, false)
            .load(EBPF_OBJECT)
            .map_err(|e| explain_load_error(anyhow::Error::from(e)))
            .context("loading the eBPF program")?;

        let logger = if verbose {
            match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(l) => Some(l),
                Err(e) => {
                    log::warn!("kernel-side logging unavailable: {e}");
                    None
                }
            }
        } else {
            None
        };
        let mut cap = Capture {
            sys_hook: SysHook::None,
            ebpf,
            events: None,
            attached: Vec::new(),
            skipped: Vec::new(),
            logger,
            cgroup_paths: filter.cgroups.clone(),
            containers: filter.containers.clone(),
            hash_key: config.hash_key,
            unseeded: 0,
        };

        if !filter.pids.is_empty() {
            // Exits drop followed pids (a reused pid is not watched); forks extend --pid.
            cap.attach_one("observer_exit", "sched", "sched_process_exit")
                .context("attaching sched/sched_process_exit")?;
            // Follow forks first, then seed: a fork between the two is then not missed.
            cap.attach_one("observer_fork", "task", "task_newtask")
                .context("attaching task/task_newtask to follow --pid descendants")?;
            cap.seed_pids(&filter.pids)?;
        }
        if filter.by_cgroup() {
            cap.refresh_cgroups()?;
        }
        cap.set_gate(open)?;

        cap.attached = attached;
        cap.skipped = skipped
            .into_iter()
            .map(|s| (s, "no such syscall on this kernel".to_string()))
            .collect();
        cap.attach_syscalls(kernel_btf)?;
        let events: RingBuf<MapData> = cap
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or_else(|| anyhow!("eBPF object has no {MAP_EVENTS} map"))?
            .try_into()
            .context("opening the ring buffer")?;
        cap.events = Some(events);
        Ok(cap)
    }

    /// The ring buffer, once: the session registers it with the runtime.
    pub(crate) fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        self.events.take().context("ring buffer already taken")
    }

    /// The loaded program `name`, as its type.
    fn program<'a, T>(&'a mut self, name: &str) -> Result<&'a mut T>
    where
        &'a mut aya::programs::Program: TryInto<&'a mut T, Error = aya::programs::ProgramError>,
    {
        Ok(self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
            .try_into()?)
    }

    /// Loads and attaches the raw syscall exit hook: BTF-typed when the kernel has BTF
    /// (registers read with plain loads), else the plain raw tracepoint variant
    /// (bpf_probe_read_kernel).
    fn attach_syscalls(&mut self, kernel_btf: bool) -> Result<()> {
        if kernel_btf {
            let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
            self.program::<BtfTracePoint>(SYS_EXIT_BTF)?
                .load("sys_exit", &btf)
                .map_err(|e| explain_load_error(anyhow::Error::from(e)))
                .with_context(|| format!("loading {SYS_EXIT_BTF}"))?;
            self.sys_hook = SysHook::Btf(None);
        } else {
            log::debug!("no kernel BTF: using a plain raw tracepoint");
            self.program::<RawTracePoint>(SYS_EXIT_RAW)?
                .load()
                .map_err(|e| explain_load_error(anyhow::Error::from(e)))
                .with_context(|| format!("loading {SYS_EXIT_RAW}"))?;
            self.sys_hook = SysHook::Raw(None);
        }
        self.resume()
    }

    /// Attaches the (loaded) syscall hook. Does nothing when it is attached.
    pub fn resume(&mut self) -> Result<()> {
        match self.sys_hook {
            SysHook::Btf(None) => {
                let link = self
                    .program::<BtfTracePoint>(SYS_EXIT_BTF)?
                    .attach()
                    .context("attaching tp_btf/sys_exit")?;
                self.sys_hook = SysHook::Btf(Some(link));
            }
            SysHook::Raw(None) => {
                let link = self
                    .program::<RawTracePoint>(SYS_EXIT_RAW)?
                    .attach("sys_exit")
                    .context("attaching raw_tp/sys_exit")?;
                self.sys_hook = SysHook::Raw(Some(link));
            }
            _ => {}
        }
        Ok(())
    }

    /// The syscall hook's run count and total run time, as the kernel accounts them while run
    /// time statistics are enabled (`aya::sys::enable_stats`; the benchmark reads them).
    pub fn hook_run_stats(&mut self) -> Result<(u64, std::time::Duration)> {
        let info = match self.sys_hook {
            SysHook::Btf(_) => self.program::<BtfTracePoint>(SYS_EXIT_BTF)?.info()?,
            SysHook::Raw(_) => self.program::<RawTracePoint>(SYS_EXIT_RAW)?.info()?,
            SysHook::None => bail!("the syscall hook is not loaded"),
        };
        Ok((info.run_count(), info.run_time()))
    }

    /// Detaches the syscall hook; the maps and what they hold stay, and `resume` attaches it
    /// again. (The benchmark uses this to compare traced and untraced calls a few
    /// milliseconds apart.)
    pub fn pause(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.sys_hook, SysHook::None) {
            SysHook::Btf(Some(link)) => {
                self.sys_hook = SysHook::Btf(None);
                self.program::<BtfTracePoint>(SYS_EXIT_BTF)?
                    .detach(link)
                    .context("detaching tp_btf/sys_exit")?;
            }
            SysHook::Raw(Some(link)) => {
                self.sys_hook = SysHook::Raw(None);
                self.program::<RawTracePoint>(SYS_EXIT_RAW)?
                    .detach(link)
                    .context("detaching raw_tp/sys_exit")?;
            }
            other => self.sys_hook = other,
        }
        Ok(())
    }

    fn attach_one(&mut self, prog: &str, category: &str, name: &str) -> Result<()> {
        let p = self.program::<TracePoint>(prog)?;
        p.load()
            .map_err(|e| explain_load_error(anyhow::Error::from(e)))
            .with_context(|| format!("loading {prog}"))?;
        p.attach(category, name)
            .with_context(|| format!("attaching {category}/{name}"))?;
        Ok(())
    }

    /// Puts the `--pid` targets and their current descendants in the PIDS map.
    fn seed_pids(&mut self, pids: &[u32]) -> Result<()> {
        for &p in pids {
            if !Path::new(&format!("/proc/{p}")).exists() {
                bail!("--pid {p}: no such process");
            }
        }
        let descendants = host::descendants_of(pids);
        let mut map: BpfHashMap<&mut MapData, u32, u32> = self
            .ebpf
            .map_mut(MAP_PIDS)
            .ok_or_else(|| anyhow!("no {MAP_PIDS} map"))?
            .try_into()?;
        for &p in pids {
            map.insert(p, PID_EXPLICIT, 0)
                .context("filling the pid map")?;
        }
        let mut unseeded = 0;
        for p in descendants {
            if !pids.contains(&p) && map.insert(p, PID_INHERITED, 0).is_err() {
                // The map is full: this process is not followed, and says so in the counts.
                unseeded += 1;
            }
        }
        self.unseeded = unseeded;
        Ok(())
    }

    /// (Re)reads each `--cgroup` directory and each `--container`'s cgroup, with their
    /// descendants, into the CGROUPS map. Called at start and on every refresh, so a restarted
    /// unit or container (a new cgroup with a new id) is followed, and a container that starts
    /// later is picked up.
    pub(crate) fn refresh_cgroups(&mut self) -> Result<()> {
        if self.cgroup_paths.is_empty() && self.containers.is_empty() {
            return Ok(());
        }
        let mut ids = BTreeSet::new();
        for path in &self.cgroup_paths {
            host::collect_cgroup_ids(path, &mut ids, 0)
                .with_context(|| format!("--cgroup {}", path.display()))?;
        }
        for prefix in &self.containers {
            let found = crate::place::container_cgroups(prefix);
            let mut distinct: Vec<&str> = found.iter().map(|(_, c)| c.id.as_str()).collect();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() > 1 {
                let shown: Vec<&str> = distinct.iter().map(|id| &id[..12]).collect();
                bail!(
                    "--container {prefix} names {} containers ({}): give more of the id",
                    distinct.len(),
                    shown.join(", ")
                );
            }
            for (dir, _) in &found {
                // A container that stops while being read is not an error.
                let _ = host::collect_cgroup_ids(dir, &mut ids, 0);
            }
        }
        let mut map: BpfHashMap<&mut MapData, u64, u32> = self
            .ebpf
            .map_mut(MAP_CGROUPS)
            .ok_or_else(|| anyhow!("no {MAP_CGROUPS} map"))?
            .try_into()?;
        let stale: Vec<u64> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !ids.contains(k))
            .collect();
        for k in stale {
            let _ = map.remove(&k);
        }
        for id in ids {
            let _ = map.insert(id, 1, 0);
        }
        Ok(())
    }

    /// Reads every (key, value) of the in-kernel aggregate.
    pub fn read_aggregate(&self) -> Result<Vec<(AggKey, AggVal)>> {
        let map: BpfHashMap<&MapData, AggKey, AggVal> = self
            .ebpf
            .map(MAP_AGG)
            .ok_or_else(|| anyhow!("no {MAP_AGG} map"))?
            .try_into()?;
        let mut out = Vec::new();
        for item in map.iter() {
            match item {
                Ok(kv) => out.push(kv),
                // A key deleted between get_next_key and lookup: skip it.
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(e).context("reading the aggregate map"),
            }
        }
        Ok(out)
    }

    /// Opens or closes the program's gate: closed, it records nothing (see `MAP_GATE`).
    pub fn set_gate(&mut self, open: bool) -> Result<()> {
        let mut gate: aya::maps::Array<&mut MapData, u32> = self
            .ebpf
            .map_mut(MAP_GATE)
            .ok_or_else(|| anyhow!("no {MAP_GATE} map"))?
            .try_into()?;
        gate.set(0, u32::from(open), 0)
            .context("setting the capture's gate")?;
        Ok(())
    }

    /// The path hash's key in this load (the test that checks the kernel's keys needs it).
    pub fn hash_key(&self) -> [u64; 2] {
        self.hash_key
    }

    /// Removes keys from the in-kernel aggregate and returns what they counted, each read and
    /// deleted in one step (`BPF_MAP_LOOKUP_AND_DELETE_ELEM`): a failure counted between a read
    /// and a delete is not lost. Keys already gone are skipped. Kernels before 5.14 cannot do
    /// this for hash maps: there the key is read, then deleted.
    pub fn take_keys(&mut self, keys: &[AggKey]) -> Result<Vec<(AggKey, AggVal)>> {
        use std::os::fd::{AsFd, AsRawFd};
        let map = match self.ebpf.map(MAP_AGG) {
            Some(aya::maps::Map::HashMap(m)) => m,
            _ => bail!("no {MAP_AGG} hash map"),
        };
        let fd = map.fd().as_fd().as_raw_fd();
        let mut out = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let mut v = AggVal {
                count: 0,
                first_ns: 0,
            };
            // The bpf(2) attribute of the map-element commands: map_fd, key, value, flags.
            #[repr(C)]
            struct Elem {
                map_fd: u32,
                _pad: u32,
                key: u64,
                value: u64,
                flags: u64,
            }
            let attr = Elem {
                map_fd: fd as u32,
                _pad: 0,
                key: (k as *const AggKey) as u64,
                value: (&raw mut v) as u64,
                flags: 0,
            };
            // SAFETY: bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM) reads `attr` (its size passed), the key
            // it points to, and writes one value of the map's value size into `v`.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    21, // BPF_MAP_LOOKUP_AND_DELETE_ELEM
                    &raw const attr,
                    std::mem::size_of::<Elem>(),
                )
            };
            if rc == 0 {
                out.push((*k, v));
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOENT) => {}
                // An old kernel (ENOTSUPP is the kernel's 524): read, then delete.
                Some(libc::EINVAL | libc::EOPNOTSUPP | 524) => {
                    return self.take_rest(&keys[i..], out);
                }
                _ => {
                    return Err(std::io::Error::last_os_error())
                        .context("reading and deleting a kernel key");
                }
            }
        }
        Ok(out)
    }

    /// `take_keys` on a kernel without lookup-and-delete for hash maps.
    fn take_rest(
        &mut self,
        keys: &[AggKey],
        mut out: Vec<(AggKey, AggVal)>,
    ) -> Result<Vec<(AggKey, AggVal)>> {
        let mut m: BpfHashMap<&mut MapData, AggKey, AggVal> = self
            .ebpf
            .map_mut(MAP_AGG)
            .ok_or_else(|| anyhow!("no {MAP_AGG} map"))?
            .try_into()?;
        for k in keys {
            if let Ok(v) = m.get(k, 0) {
                out.push((*k, v));
            }
            let _ = m.remove(k);
        }
        Ok(out)
    }

    /// Removes keys from the in-kernel aggregate (history mode evicts idle keys).
    pub(crate) fn forget_keys(&mut self, keys: &[AggKey]) -> Result<()> {
        let mut map: BpfHashMap<&mut MapData, AggKey, AggVal> = self
            .ebpf
            .map_mut(MAP_AGG)
            .ok_or_else(|| anyhow!("no {MAP_AGG} map"))?
            .try_into()?;
        for k in keys {
            let _ = map.remove(k);
        }
        Ok(())
    }

    /// The kernel's counters: lost, overflow, unreadable paths, unfollowed pids, lost directory
    /// opens.
    pub fn kernel_stats(&self) -> Result<KernelStats> {
        let arr: PerCpuArray<&MapData, u64> = self
            .ebpf
            .map(MAP_STATS)
            .ok_or_else(|| anyhow!("no {MAP_STATS} map"))?
            .try_into()?;
        let mut sums = [0u64; STAT_COUNT as usize];
        for (i, s) in sums.iter_mut().enumerate() {
            let v = arr.get(&(i as u32), 0).context("reading kernel counters")?;
            *s = v.iter().sum();
        }
        Ok(KernelStats {
            lost: sums[Stat::Lost as usize],
            overflow: sums[Stat::AggOverflow as usize],
            path_faults: sums[Stat::PathFault as usize],
            pids_full: sums[Stat::PidsFull as usize] + self.unseeded,
            dirfd_lost: sums[Stat::DirfdLost as usize],
        })
    }

    /// Kernel log records (aya-log), when `--verbose`.
    pub(crate) fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}

/// Turns the errors an operator can meet into one clear line (the verifier log stays available
/// with --verbose).
fn explain_load_error(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        return anyhow!(
            "the kernel refused to load the eBPF program (EPERM): observer needs root, or \
             CAP_BPF and CAP_PERFMON; in a container, also a seccomp profile that allows bpf()"
        );
    }
    if log::log_enabled!(log::Level::Debug) {
        return e;
    }
    // Verifier logs are long: keep the line saying what was rejected unless --verbose.
    let verdict = text
        .lines()
        .take_while(|l| !l.starts_with("verification time"))
        .filter(|l| !l.trim().is_empty())
        .last()
        .unwrap_or_default();
    let first = text.lines().next().unwrap_or_default();
    if first.len() < text.len() {
        let first = first.split(" Verifier output:").next().unwrap_or(first);
        anyhow!("{first}: verifier: {verdict} (run with --verbose for the whole log)")
    } else {
        e
    }
}
