//! Stage 1: load the eBPF program, set its filters, attach its tracepoints, and read what it
//! reports: new keys over the ring buffer, counts from the in-kernel aggregate, loss counters.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
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
    AggKey, AggVal, COMM_LEN, CONFIG_GLOBAL, CONFIG_VERBOSE, Config, EVENT_HEADER_LEN, EventHeader,
    FILTER_ALL, FILTER_CGROUP, FILTER_COMM, FILTER_ERRNO, FILTER_PID, MAP_AGG, MAP_CGROUPS,
    MAP_EVENTS, MAP_PIDS, MAP_STATS, MAX_COMMS, PID_EXPLICIT, PID_INHERITED, STAT_COUNT, Stat,
    Syscall,
};

/// The eBPF object, built by `cargo xtask build-ebpf` and embedded by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer.bpf.o"));

const TRACEFS: &str = "/sys/kernel/tracing";

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
    /// Checks what the kernel cannot hold; the messages are meant for the operator.
    pub fn validate(&self) -> Result<()> {
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
    pub fn effective_comms(&self) -> Vec<String> {
        if self.comms.is_empty() && self.pids.is_empty() && self.cgroups.is_empty() && !self.all {
            vec!["apache2".to_string()]
        } else {
            self.comms.clone()
        }
    }

    fn config(&self, verbose: bool, hooked: &[Syscall]) -> Config {
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

    /// A short human description: "comm apache2", "pid 12 (and descendants)", ...
    pub fn describe(&self) -> String {
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

/// A decoded ring-buffer record: the first failure of a key (or, when the aggregate was full, one
/// failure on its own).
#[derive(Clone, Debug)]
pub struct Sighting {
    pub hdr: EventHeader,
    pub path: Vec<u8>,
}

impl Sighting {
    /// Decodes one record, checking its length first.
    pub fn decode(buf: &[u8]) -> Result<Sighting> {
        if buf.len() < EVENT_HEADER_LEN {
            bail!("short ring-buffer record: {} bytes", buf.len());
        }
        // SAFETY: EventHeader is repr(C), Copy, every bit pattern valid; length checked above.
        let hdr: EventHeader = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
        let len = hdr.path_len as usize;
        let path = buf
            .get(EVENT_HEADER_LEN..EVENT_HEADER_LEN + len)
            .ok_or_else(|| anyhow!("ring-buffer record shorter than its path length {len}"))?
            .to_vec();
        Ok(Sighting { hdr, path })
    }

    pub fn comm(&self) -> String {
        let end = self
            .hdr
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(COMM_LEN);
        String::from_utf8_lossy(&self.hdr.comm[..end]).into_owned()
    }
}

/// Kernel-side counters (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub lost: u64,
    pub overflow: u64,
    pub path_faults: u64,
    pub pids_full: u64,
    pub dirfd_lost: u64,
}

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

impl KernelStats {
    /// One warning per counter that limits what a report can say and has just become non-zero
    /// (each is said once; `lost` has its own messages).
    pub fn new_warnings(&self, before: &KernelStats) -> Vec<String> {
        let mut w = Vec::new();
        if self.pids_full > 0 && before.pids_full == 0 {
            w.push(format!(
                "the --pid map is full: {} new descendant(s) are not followed, and their failures \
                 are not seen",
                self.pids_full
            ));
        }
        if self.dirfd_lost > 0 && before.dirfd_lost == 0 {
            w.push(format!(
                "the ring buffer was full: {} directory open(s) lost; failures relative to those \
                 directories may stay unresolved",
                self.dirfd_lost
            ));
        }
        if self.path_faults > 0 && before.path_faults == 0 {
            w.push(format!(
                "{} failing call(s) passed a path pointer the kernel could not read; they are \
                 counted without a path",
                self.path_faults
            ));
        }
        w
    }
}

/// A loaded and attached capture.
pub struct Capture {
    sys_hook: SysHook,
    ebpf: Ebpf,
    pub events: Option<RingBuf<MapData>>,
    /// Hooks attached, as "syscall" names.
    pub attached: Vec<Syscall>,
    /// Hooks skipped, with why.
    pub skipped: Vec<(Syscall, String)>,
    _logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub logger_fd: Option<i32>,
    cgroup_paths: Vec<PathBuf>,
}

/// Where `comm` sits in the running kernel's `task_struct`, for the BTF-typed hook to load it
/// directly; 0 (use bpf_get_current_comm) without kernel BTF, or before Linux 5.11, which lacks
/// bpf_get_current_task_btf (probed, not guessed from the version: distributions backport).
fn task_comm_offset(kernel_btf: &[u8]) -> u32 {
    let helper = aya::sys::is_helper_supported(
        aya::programs::ProgramType::RawTracePoint,
        aya::sys::BpfHelper::BPF_FUNC_get_current_task_btf,
    );
    if !matches!(helper, Ok(true)) {
        log::debug!("no bpf_get_current_task_btf ({helper:?}): comm read with a helper call");
        return 0;
    }
    crate::kbtf::member_offset(kernel_btf, "task_struct", "comm").unwrap_or(0)
}

/// Does this process have what loading BPF tracing programs needs?
pub fn check_privilege() -> Result<()> {
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

impl Capture {
    /// Loads the program with `filter`, fills the pid/cgroup maps, and attaches the hooks.
    pub fn start(filter: &Filter, verbose: bool) -> Result<Capture> {
        filter.validate()?;
        if EBPF_OBJECT.is_empty() {
            bail!(
                "this observer binary was built without its eBPF program; build it with `cargo xtask build`"
            );
        }
        check_privilege()?;
        raise_memlock();
        ensure_tracefs();

        // Which of the wanted syscalls this kernel has: its per-syscall tracepoints list them
        // (observer itself hooks the raw sys_exit tracepoint, which is far cheaper).
        let wanted: Vec<Syscall> = if filter.syscalls.is_empty() {
            Syscall::ALL.to_vec()
        } else {
            filter.syscalls.clone()
        };
        let events = Path::new(TRACEFS).join("events/syscalls");
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
        config.task_comm_off = kernel_btf.as_deref().map_or(0, task_comm_offset);
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
        let logger_fd = logger.as_ref().map(|l| l.as_raw_fd());

        let mut cap = Capture {
            sys_hook: SysHook::None,
            ebpf,
            events: None,
            attached: Vec::new(),
            skipped: Vec::new(),
            _logger: logger,
            logger_fd,
            cgroup_paths: filter.cgroups.clone(),
        };

        if !filter.pids.is_empty() {
            // Exits drop followed pids (a reused pid is not watched); forks extend --pid.
            cap.attach_one("observer_exit", "sched", "sched_process_exit")
                .context("attaching sched/sched_process_exit")?;
            // Follow forks first, then seed: a fork between the two is then not missed.
            cap.attach_one("observer_fork", "sched", "sched_process_fork")
                .context("attaching sched/sched_process_fork to follow --pid descendants")?;
            cap.seed_pids(&filter.pids)?;
        }
        if !filter.cgroups.is_empty() {
            cap.refresh_cgroups()?;
        }

        cap.attached = attached;
        cap.skipped = skipped
            .into_iter()
            .map(|s| (s, "no such syscall on this kernel".to_string()))
            .collect();
        cap.attach_syscalls(kernel_btf.as_deref())?;
        let events: RingBuf<MapData> = cap
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or_else(|| anyhow!("eBPF object has no {MAP_EVENTS} map"))?
            .try_into()
            .context("opening the ring buffer")?;
        cap.events = Some(events);
        Ok(cap)
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
    fn attach_syscalls(&mut self, kernel_btf: Option<&[u8]>) -> Result<()> {
        if let Some(raw) = kernel_btf {
            let btf =
                Btf::parse(raw, aya::Endianness::default()).context("reading the kernel's BTF")?;
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
        let descendants = descendants_of(pids);
        let mut map: BpfHashMap<&mut MapData, u32, u32> = self
            .ebpf
            .map_mut(MAP_PIDS)
            .ok_or_else(|| anyhow!("no {MAP_PIDS} map"))?
            .try_into()?;
        for &p in pids {
            map.insert(p, PID_EXPLICIT, 0)
                .context("filling the pid map")?;
        }
        for p in descendants {
            if !pids.contains(&p) {
                let _ = map.insert(p, PID_INHERITED, 0);
            }
        }
        Ok(())
    }

    /// (Re)reads each `--cgroup` directory and its descendants into the CGROUPS map. Called at
    /// start and on every refresh, so a restarted unit (a new cgroup with a new id) is followed.
    pub fn refresh_cgroups(&mut self) -> Result<()> {
        if self.cgroup_paths.is_empty() {
            return Ok(());
        }
        let mut ids = BTreeSet::new();
        for path in &self.cgroup_paths {
            collect_cgroup_ids(path, &mut ids, 0)
                .with_context(|| format!("--cgroup {}", path.display()))?;
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

    /// Removes keys from the in-kernel aggregate (history mode evicts idle keys).
    pub fn forget_keys(&mut self, keys: &[AggKey]) -> Result<()> {
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
            pids_full: sums[Stat::PidsFull as usize],
            dirfd_lost: sums[Stat::DirfdLost as usize],
        })
    }

    /// Kernel log records (aya-log), when `--verbose`.
    pub fn flush_logs(&mut self) {
        if let Some(l) = self._logger.as_mut() {
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

fn raise_memlock() {
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
fn ensure_tracefs() {
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
pub fn descendants_of(roots: &[u32]) -> BTreeSet<u32> {
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

fn collect_cgroup_ids(path: &Path, ids: &mut BTreeSet<u64>, depth: usize) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).with_context(|| "no such cgroup directory".to_string())?;
    if !md.is_dir() {
        bail!("not a directory");
    }
    if depth == 0 {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: statfs with a valid C string and an out struct.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
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
pub fn cgroup2_mounts() -> Vec<String> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_counter_warnings_are_said_once_each() {
        let zero = KernelStats::default();
        let one = KernelStats {
            pids_full: 2,
            dirfd_lost: 1,
            path_faults: 3,
            ..zero
        };
        let w = one.new_warnings(&zero);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("2 new descendant(s)"), "{w:?}");
        let more = KernelStats {
            pids_full: 5,
            ..one
        };
        assert!(more.new_warnings(&one).is_empty());
        assert!(zero.new_warnings(&zero).is_empty());
    }

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

    #[test]
    fn decode_checks_lengths() {
        assert!(Sighting::decode(&[0u8; 10]).is_err());
        // path_len sits at offset 24 + 8 + 8 + 8 + 12 = 60.
        let mut buf = vec![0u8; EVENT_HEADER_LEN + 3];
        buf[60..64].copy_from_slice(&3u32.to_ne_bytes());
        buf[EVENT_HEADER_LEN..].copy_from_slice(b"/ab");
        let s = Sighting::decode(&buf).unwrap();
        assert_eq!(s.path, b"/ab");
        buf[60..64].copy_from_slice(&4u32.to_ne_bytes());
        assert!(Sighting::decode(&buf).is_err());
    }
}
