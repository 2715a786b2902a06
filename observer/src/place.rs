//! Stage 2, where a process ran: its container (runtime and id, from its cgroup path) or its
//! systemd unit ([`Place`]), and its view of the filesystem ([`View`]): the mount namespace and
//! root its paths mean something in. A container's `/var/www/app` is not the host's, and
//! systemd's `PrivateTmp=` gives a service a `/tmp` of its own; hints must look where the
//! process looked.
//!
//! A view is pinned at the first sighting of its process: an fd on the process's mount
//! namespace keeps that namespace (and the mounts in it) alive, and an fd on its root is where
//! checks start (`/proc/self/fd/N/...`), so a worker that exited, or a container that stopped,
//! still gets correct hints. When the process is gone before it can be pinned, and no process of
//! the same place shares its namespace, the view is [`View::Gone`]: hints say so rather than look
//! at the host.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::ids::{Files, Names};

/// The container runtimes observer recognises in cgroup paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
    /// A Kubernetes pod, its runtime not named by the path.
    Kubernetes,
}

impl Runtime {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Runtime> {
        [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::Crio,
            Runtime::Podman,
            Runtime::Kubernetes,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A container, as its cgroup path names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Container {
    pub(crate) runtime: Runtime,
    /// The container id (64 hex digits), or the pod uid when the path names no container.
    pub(crate) id: String,
    /// The Kubernetes pod uid, when the container runs in one.
    pub(crate) pod: Option<String>,
}

/// Where a failing process ran, as reports show it: a container, else a systemd unit, else the
/// host; and whether its view of the filesystem was its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Place {
    pub(crate) container: Option<Container>,
    /// The systemd service (`apache2.service`), when not in a container.
    pub(crate) unit: Option<String>,
    /// The process saw another mount namespace or root than observer's.
    pub(crate) private: bool,
}

impl Place {
    /// The short form a table shows: `docker:3f2a9c1b2d4e`, `apache2.service`, or `-`.
    pub(crate) fn short(&self) -> String {
        match (&self.container, &self.unit) {
            (Some(c), _) => format!("{}:{}", c.runtime.as_str(), &c.id[..c.id.len().min(12)]),
            (None, Some(u)) => u.clone(),
            (None, None) => "-".into(),
        }
    }

    /// True for the host itself: no container, no unit, observer's own view.
    pub(crate) fn is_host(&self) -> bool {
        *self == Place::default()
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.container, &self.unit) {
            (Some(c), _) => write!(f, "{} container {}", c.runtime.as_str(), c.id),
            (None, Some(u)) => write!(f, "unit {u}"),
            (None, None) => f.write_str("the host"),
        }
    }
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container and the unit a cgroup path names (`/system.slice/docker-<id>.scope`,
/// `/docker/<id>`, `/kubepods.slice/.../cri-containerd-<id>.scope`, `/system.slice/
/// apache2.service`, ...).
pub(crate) fn parse_cgroup(path: &str) -> (Option<Container>, Option<String>) {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut pod = None;
    let mut container = None;
    let mut unit = None;
    for (i, c) in comps.iter().enumerate() {
        let bare = c.strip_suffix(".scope").unwrap_or(c);
        // The systemd driver: kubepods-burstable-pod<uid with _>.slice; cgroupfs: pod<uid>.
        if let Some(uid) = bare
            .strip_suffix(".slice")
            .unwrap_or(bare)
            .rsplit_once("pod")
            .map(|(_, u)| u)
            .filter(|_| c.starts_with("kubepods") || c.starts_with("pod"))
            && uid.len() >= 32
        {
            pod = Some(uid.replace('_', "-"));
            continue;
        }
        let typed = [
            ("docker-", Runtime::Docker),
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::Crio),
            ("libpod-", Runtime::Podman),
        ]
        .into_iter()
        .find_map(|(prefix, r)| {
            bare.strip_prefix(prefix)
                .filter(|id| is_hex_id(id))
                .map(|id| (r, id))
        });
        if let Some((runtime, id)) = typed {
            container = Some((runtime, id.to_string()));
            continue;
        }
        if is_hex_id(c) {
            let parent = if i > 0 { comps[i - 1] } else { "" };
            let runtime = match parent {
                "docker" => Some(Runtime::Docker),
                "k8s.io" | "containerd" => Some(Runtime::Containerd),
                "libpod_parent" => Some(Runtime::Podman),
                // Below a pod (the cgroupfs driver): the path does not say which runtime.
                _ if pod.is_some() => Some(Runtime::Kubernetes),
                _ => None,
            };
            if let Some(runtime) = runtime {
                container = Some((runtime, c.to_string()));
                continue;
            }
        }
        if let Some(u) = c.strip_suffix(".service")
            && !u.is_empty()
        {
            unit = Some(c.to_string());
        }
    }
    let container = match (container, pod) {
        (Some((runtime, id)), pod) => Some(Container { runtime, id, pod }),
        (None, Some(pod)) => Some(Container {
            runtime: Runtime::Kubernetes,
            id: pod.clone(),
            pod: Some(pod),
        }),
        (None, None) => None,
    };
    let unit = if container.is_some() { None } else { unit };
    (container, unit)
}

/// Where hints look for a row's paths, and whose names its uids and gids have.
#[derive(Debug)]
pub(crate) struct View {
    kind: Kind,
    names: OnceLock<Arc<Names>>,
    /// Where the view's mount table is read (`/proc/<pid>/mountinfo`), and the table, once.
    mountinfo: Option<PathBuf>,
    mounts: OnceLock<Vec<(Vec<u8>, String)>>,
}

#[derive(Debug)]
enum Kind {
    /// Observer's own root.
    Host,
    /// Another mount namespace or root, pinned by fds; `root` is `/proc/self/fd/N`.
    Pinned {
        root: PathBuf,
        _root_fd: OwnedFd,
        _ns_fd: Option<OwnedFd>,
    },
    /// A live process's root, not pinned (the history commands: `/proc/<pid>/root`).
    Live(PathBuf),
    /// The process, and every process that shared its view, was gone before observer could
    /// pin it; or too many views are pinned already.
    Gone,
}

impl View {
    fn of(kind: Kind) -> View {
        let mountinfo = match &kind {
            Kind::Host => Some(PathBuf::from("/proc/self/mountinfo")),
            Kind::Live(root) => root
                .strip_prefix("/proc")
                .ok()
                .and_then(|r| r.components().next())
                .map(|pid| Path::new("/proc").join(pid).join("mountinfo")),
            Kind::Pinned { .. } | Kind::Gone => None,
        };
        View {
            kind,
            names: OnceLock::new(),
            mountinfo,
            mounts: OnceLock::new(),
        }
    }

    /// The filesystem type `path` is on when it is a network or FUSE filesystem (`nfs4`,
    /// `fuse.sshfs`, ...), from the view's mount table (read, never the filesystem itself):
    /// such a path is not looked at, as a server that does not answer would hang the report.
    pub(crate) fn network_fs(&self, path: &[u8]) -> Option<String> {
        let mounts = self.mounts.get_or_init(|| {
            self.mountinfo
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .map(|t| parse_mountinfo(&t))
                .unwrap_or_default()
        });
        // The longest mount point that holds the path is the one it is on.
        let (_, fs) = mounts
            .iter()
            .filter(|(mp, _)| {
                mp.as_slice() == b"/"
                    || path == mp.as_slice()
                    || (path.starts_with(mp) && path.get(mp.len()) == Some(&b'/'))
            })
            .max_by_key(|(mp, _)| mp.len())?;
        is_network_fs(fs).then(|| fs.clone())
    }

    /// A view no longer reachable.
    pub(crate) fn gone() -> View {
        View::of(Kind::Gone)
    }

    /// The view under `root` (a live process's `/proc/<pid>/root`, or a test's directory).
    pub(crate) fn live(root: impl Into<PathBuf>) -> View {
        View::of(Kind::Live(root.into()))
    }

    /// The directory the process's `/` is, for lookups; `None` when the view is gone.
    pub(crate) fn root(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Host => Some(Path::new("/")),
            Kind::Pinned { root, .. } | Kind::Live(root) => Some(root),
            Kind::Gone => None,
        }
    }

    pub(crate) fn is_host(&self) -> bool {
        matches!(self.kind, Kind::Host)
    }

    /// Opens `path` (absolute, as the view's processes name it) for reading, resolved inside
    /// the view (`openat2` with `RESOLVE_IN_ROOT`): a symlink in a container cannot lead to the
    /// host's files, a magic link is refused, a FIFO does not block.
    pub(crate) fn open(&self, path: &[u8]) -> std::io::Result<std::fs::File> {
        self.open_as(path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
    }

    /// What `path` is in the view (its metadata, followed as the process would), without
    /// opening it for reading.
    pub(crate) fn stat(&self, path: &[u8]) -> std::io::Result<std::fs::Metadata> {
        self.open_as(path, libc::O_PATH)?.metadata()
    }

    fn open_as(&self, path: &[u8], flags: libc::c_int) -> std::io::Result<std::fs::File> {
        use std::os::fd::{FromRawFd, RawFd};
        static HOST_ROOT: OnceLock<Option<OwnedFd>> = OnceLock::new();
        let live;
        let dirfd: RawFd = match &self.kind {
            Kind::Host => HOST_ROOT
                .get_or_init(|| open_dir("/"))
                .as_ref()
                .map(|f| f.as_raw_fd())
                .ok_or_else(std::io::Error::last_os_error)?,
            Kind::Pinned { _root_fd, .. } => _root_fd.as_raw_fd(),
            Kind::Live(root) => {
                live = open_dir(root).ok_or_else(std::io::Error::last_os_error)?;
                live.as_raw_fd()
            }
            Kind::Gone => return Err(std::io::ErrorKind::NotFound.into()),
        };
        let rel: &[u8] = match path.iter().position(|&b| b != b'/') {
            Some(i) => &path[i..],
            None => b".",
        };
        let c = std::ffi::CString::new(rel)?;
        // SAFETY: an all-zero open_how is valid (its fields are plain integers).
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: openat2 reads the NUL-terminated path and `how` (whose size we pass) and
        // returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &raw const how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a new fd that nothing else owns.
        Ok(unsafe { std::fs::File::from_raw_fd(fd as RawFd) })
    }

    /// User and group names as the view's processes see them: the host's NSS, or the view's
    /// own `/etc/passwd` and `/etc/group` (read once).
    pub(crate) fn names(&self) -> Arc<Names> {
        self.names
            .get_or_init(|| match &self.kind {
                Kind::Host => Arc::new(Names::System),
                Kind::Pinned { root, .. } | Kind::Live(root) => {
                    Arc::new(Names::Files(Files::load(root)))
                }
                Kind::Gone => Arc::new(Names::Files(Files::default())),
            })
            .clone()
    }
}

/// Network and user-space filesystems, whose servers can stop answering.
fn is_network_fs(fs: &str) -> bool {
    fs.starts_with("fuse")
        || fs.starts_with("nfs")
        || matches!(
            fs,
            "cifs"
                | "smb3"
                | "smbfs"
                | "9p"
                | "ceph"
                | "glusterfs"
                | "afs"
                | "lustre"
                | "davfs"
                | "ncpfs"
                | "coda"
                | "gfs2"
                | "ocfs2"
                | "beegfs"
                | "gpfs"
                | "orangefs"
        )
}

/// (mount point, filesystem type) of each line of a `mountinfo` (mount points unescaped).
fn parse_mountinfo(text: &[u8]) -> Vec<(Vec<u8>, String)> {
    let unescape = |f: &[u8]| {
        let mut out = Vec::with_capacity(f.len());
        let mut i = 0;
        while i < f.len() {
            if f[i] == b'\\'
                && i + 3 < f.len()
                && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&f[i + 1..i + 4]), 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
            out.push(f[i]);
            i += 1;
        }
        out
    };
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        // id parent major:minor root mount-point options [optional...] - fstype source ...
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if fields.len() < 5 || dash + 1 >= fields.len() {
            continue;
        }
        out.push((
            unescape(fields[4]),
            String::from_utf8_lossy(fields[dash + 1]).into_owned(),
        ));
    }
    out
}

fn open_dir(p: impl AsRef<Path>) -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(p)
        .ok()
        .map(OwnedFd::from)
}

/// A shared view, as rows hold it: two rows are in the same view when they hold the same one.
#[derive(Clone, Debug)]
pub(crate) struct ViewRef(pub(crate) Arc<View>);

impl ViewRef {
    /// The host's view (shared by every row that has no other).
    pub(crate) fn host() -> ViewRef {
        static HOST: OnceLock<Arc<View>> = OnceLock::new();
        ViewRef(HOST.get_or_init(|| Arc::new(View::of(Kind::Host))).clone())
    }
}

impl PartialEq for ViewRef {
    fn eq(&self, other: &ViewRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for ViewRef {
    type Target = View;
    fn deref(&self) -> &View {
        &self.0
    }
}

/// How many views an ad-hoc capture pins (two fds each).
const MAX_PINNED: usize = 256;

/// A view's identity: its mount namespace and its root directory (device, inode).
type ViewId = (u64, (u64, u64));

fn view_id(ns: &str, root: &str) -> Option<ViewId> {
    let ns = std::fs::metadata(ns).ok()?.ino();
    let root = std::fs::metadata(root).ok()?;
    Some((ns, (root.dev(), root.ino())))
}

/// Observer's own mount namespace and root: processes that share them are read directly.
fn own_view() -> &'static Option<ViewId> {
    static OWN: OnceLock<Option<ViewId>> = OnceLock::new();
    OWN.get_or_init(|| view_id("/proc/self/ns/mnt", "/"))
}

/// The host's view, PID 1's (or kthreadd's, which shares the initial namespace, where PID 1's
/// cannot be read): what "private" is measured against. Not observer's own, which under its
/// systemd unit (PrivateTmp=, ProtectSystem=) is a namespace of its own.
fn host_view() -> &'static Option<ViewId> {
    static HOST: OnceLock<Option<ViewId>> = OnceLock::new();
    HOST.get_or_init(|| {
        view_id("/proc/1/ns/mnt", "/proc/1/root")
            .or_else(|| view_id("/proc/2/ns/mnt", "/proc/2/root"))
            .or(*own_view())
    })
}

/// The mount namespace inode of `pid` (0 when it cannot be read).
fn mnt_ns_of(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map_or(0, |m| m.ino())
}

/// Is `pid`'s view (in mount namespace `mnt_ns`) the same as `other`?
fn same_view(pid: u32, mnt_ns: u64, other: &Option<ViewId>) -> Option<bool> {
    let (ns, root_id) = (*other)?;
    let root = std::fs::metadata(format!("/proc/{pid}/root")).ok()?;
    Some(mnt_ns == ns && (root.dev(), root.ino()) == root_id)
}

/// A place and the view of the process seen there.
#[derive(Debug)]
pub(crate) struct Where {
    pub(crate) place: Place,
    pub(crate) view: ViewRef,
}

/// What observer knows of the places its watched processes ran in: by (cgroup id, mount
/// namespace), which the kernel reports with each first sighting.
pub(crate) struct Places {
    /// Pin views (the ad-hoc mode, which makes hints at the end); the recorder keeps only the
    /// place, for the history.
    pin: bool,
    known: HashMap<(u64, u64), Arc<Where>>,
    pinned: usize,
    /// cgroup id -> path below the cgroup v2 mount, for processes that are gone.
    cgroup_paths: HashMap<u64, String>,
    /// cgroup ids a walk of the hierarchy did not find (removed since): not walked for again.
    cgroup_missing: std::collections::HashSet<u64>,
}

impl Places {
    pub(crate) fn new(pin: bool) -> Places {
        Places {
            pin,
            known: HashMap::new(),
            pinned: 0,
            cgroup_paths: HashMap::new(),
            cgroup_missing: std::collections::HashSet::new(),
        }
    }

    /// Where process `tgid` (its cgroup `cgroup_id`, its mount namespace `mnt_ns`, 0 when the
    /// kernel could not say) ran.
    pub(crate) fn of(&mut self, tgid: u32, cgroup_id: u64, mnt_ns: u32) -> Arc<Where> {
        let ns = match mnt_ns {
            0 => mnt_ns_of(tgid),
            n => u64::from(n),
        };
        if let Some(w) = self.known.get(&(cgroup_id, ns)) {
            return w.clone();
        }
        let cgroup = self.cgroup_path(tgid, cgroup_id);
        let (container, unit) = cgroup.as_deref().map(parse_cgroup).unwrap_or_default();
        // Another live process of the same cgroup, when this one is gone.
        let pid = if ns != 0 && mnt_ns_of(tgid) == ns {
            Some(tgid)
        } else {
            cgroup.as_deref().and_then(|c| sibling_in(c, ns))
        };
        // Private: another view than the host's. Read directly: observer's own view (which is
        // the host's, unless observer runs in a namespace of its own, as under its unit).
        let own = pid.and_then(|p| same_view(p, ns, own_view()));
        let host = pid.and_then(|p| same_view(p, ns, host_view()));
        let (private, view) = match (pid, own) {
            (_, Some(true)) => (host == Some(false), ViewRef::host()),
            (Some(p), Some(false)) => (host != Some(true), ViewRef(Arc::new(self.pin_view(p, ns)))),
            // Nothing to look at: if the kernel said it was our namespace, it was the host's.
            _ => match own_view() {
                Some((own_ns, _)) if *own_ns == ns => (false, ViewRef::host()),
                _ => (
                    host_view().is_none_or(|(h, _)| h != ns),
                    ViewRef(Arc::new(View::gone())),
                ),
            },
        };
        let w = Arc::new(Where {
            place: Place {
                container,
                unit,
                private,
            },
            view,
        });
        if self.known.len() < 4096 {
            self.known.insert((cgroup_id, ns), w.clone());
        }
        w
    }

    fn pin_view(&mut self, pid: u32, ns: u64) -> View {
        if !self.pin {
            return View::gone();
        }
        if self.pinned >= MAX_PINNED {
            log::debug!("{MAX_PINNED} views pinned already: pid {pid}'s is not");
            return View::gone();
        }
        let open = |p: String, flags: libc::c_int| -> Option<OwnedFd> {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags | libc::O_CLOEXEC)
                .open(p)
                .ok()
                .map(OwnedFd::from)
        };
        let ns_fd = open(format!("/proc/{pid}/ns/mnt"), 0);
        let Some(root_fd) = open(
            format!("/proc/{pid}/root"),
            libc::O_PATH | libc::O_DIRECTORY,
        ) else {
            return View::gone();
        };
        // The pid may have been reused since the record: the namespace must be the one the
        // kernel reported.
        if ns != 0 && mnt_ns_of(pid) != ns {
            return View::gone();
        }
        self.pinned += 1;
        let view = View::of(Kind::Pinned {
            root: PathBuf::from(format!("/proc/self/fd/{}", root_fd.as_raw_fd())),
            _root_fd: root_fd,
            _ns_fd: ns_fd,
        });
        // Its mount table now, while a process of it runs (the view outlives it).
        let table = std::fs::read(format!("/proc/{pid}/mountinfo"))
            .map(|t| parse_mountinfo(&t))
            .unwrap_or_default();
        let _ = view.mounts.set(table);
        view
    }

    /// The cgroup v2 path of `tgid` (from /proc), or of cgroup `id` (by its directory's inode)
    /// when the process is gone.
    fn cgroup_path(&mut self, tgid: u32, id: u64) -> Option<String> {
        if let Some(p) = cgroup_of_pid(tgid) {
            return Some(p);
        }
        if id == 0 || self.cgroup_missing.contains(&id) {
            return None;
        }
        if !self.cgroup_paths.contains_key(&id) {
            // One walk of the whole hierarchy per unknown id, at most: a busy host has
            // thousands of cgroups.
            self.cgroup_paths = cgroup_dirs_by_id();
            if !self.cgroup_paths.contains_key(&id) && self.cgroup_missing.len() < 4096 {
                self.cgroup_missing.insert(id);
            }
        }
        self.cgroup_paths.get(&id).cloned()
    }
}

/// The cgroup path of `pid`: the v2 line (`0::/...`), or a v1 line naming a container (hybrid
/// hosts put Docker's containers in the v1 hierarchies only), or systemd's named v1 hierarchy.
pub(crate) fn cgroup_of_pid(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    let mut best = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if id == "0" && ctrl.is_empty() {
            v2 = Some(path.to_string());
        } else if parse_cgroup(path).0.is_some() || (ctrl == "name=systemd" && best.is_none()) {
            best = Some(path.to_string());
        }
    }
    match (v2, best) {
        (Some(v2), _) if v2 != "/" => Some(v2),
        (_, Some(b)) => Some(b),
        (v2, None) => v2,
    }
}

/// Every directory of the cgroup v2 hierarchy, by id (inode), as a path below the mount.
fn cgroup_dirs_by_id() -> HashMap<u64, String> {
    fn walk(base: &Path, rel: &str, out: &mut HashMap<u64, String>, depth: usize) {
        let dir = base.join(rel.trim_start_matches('/'));
        if let Ok(m) = std::fs::metadata(&dir) {
            out.insert(
                m.ino(),
                if rel.is_empty() {
                    "/".into()
                } else {
                    rel.into()
                },
            );
        }
        if depth > 16 {
            return;
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    walk(base, &format!("{rel}/{name}"), out, depth + 1);
                }
            }
        }
    }
    let mut out = HashMap::new();
    for root in crate::capture::cgroup2_mounts() {
        walk(Path::new(&root), "", &mut out, 0);
    }
    out
}

/// The cgroup v2 directories of the containers whose id starts with `prefix` (lowercase hex):
/// each container's top directory once (its sub-cgroups are below it), with what its path says.
pub(crate) fn container_cgroups(prefix: &str) -> Vec<(PathBuf, Container)> {
    fn walk(
        dir: &Path,
        rel: &str,
        prefix: &str,
        out: &mut Vec<(PathBuf, Container)>,
        depth: usize,
    ) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = format!("{rel}/{name}");
            match parse_cgroup(&rel).0 {
                // The first directory that names the container: its children are its own.
                Some(c) if c.runtime != Runtime::Kubernetes || c.pod.as_deref() != Some(&c.id) => {
                    let wanted = c.id.starts_with(prefix);
                    if wanted {
                        out.push((e.path(), c));
                    }
                }
                _ if depth < 8 => walk(&e.path(), &rel, prefix, out, depth + 1),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for root in crate::capture::cgroup2_mounts() {
        walk(Path::new(&root), "", prefix, &mut out, 0);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A live process in cgroup `path` (below the v2 mount) with mount namespace `ns`.
fn sibling_in(path: &str, ns: u64) -> Option<u32> {
    for root in crate::capture::cgroup2_mounts() {
        let procs = Path::new(&root)
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs");
        let text = std::fs::read_to_string(procs).unwrap_or_default();
        for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            if ns == 0 || mnt_ns_of(pid) == ns {
                return Some(pid);
            }
        }
    }
    None
}

/// The view of a recorded place now (for reports from the history, made by another process
/// than the one that recorded): the host's for the host, a live process's of the same container
/// or unit otherwise, or gone. A zombie (its root no longer readable) does not count.
pub(crate) fn live_view(place: &Place) -> ViewRef {
    if !place.private {
        return ViewRef::host();
    }
    for (pid, _) in crate::capture::processes() {
        let Some(c) = cgroup_of_pid(pid) else {
            continue;
        };
        let (container, unit) = parse_cgroup(&c);
        let same = match (&place.container, &place.unit) {
            (Some(want), _) => container.as_ref().is_some_and(|c| c.id == want.id),
            (None, Some(u)) => unit.as_deref() == Some(u.as_str()),
            (None, None) => false,
        };
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        if same && std::fs::metadata(&root).is_ok() {
            return ViewRef(Arc::new(View::live(root)));
        }
    }
    ViewRef(Arc::new(View::gone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    fn container(path: &str) -> Option<(Runtime, String, Option<String>)> {
        parse_cgroup(path).0.map(|c| (c.runtime, c.id, c.pod))
    }

    #[test]
    fn container_ids_from_every_runtime_layout() {
        let docker = Some((Runtime::Docker, ID.to_string(), None));
        assert_eq!(
            container(&format!("/system.slice/docker-{ID}.scope")),
            docker
        );
        assert_eq!(container(&format!("/docker/{ID}")), docker);
        assert_eq!(
            container(&format!("/system.slice/libpod-{ID}.scope")).map(|c| c.0),
            Some(Runtime::Podman)
        );
        assert_eq!(
            container(&format!("/system.slice/crio-{ID}.scope")).map(|c| c.0),
            Some(Runtime::Crio)
        );
        let pod = "1234abcd-5678-90ef-1234-567890abcdef";
        let k8s = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            pod.replace('-', "_")
        );
        assert_eq!(
            container(&k8s),
            Some((Runtime::Containerd, ID.to_string(), Some(pod.to_string())))
        );
        let k8s_fs = format!("/kubepods/besteffort/pod{pod}/{ID}");
        assert_eq!(
            container(&k8s_fs),
            Some((Runtime::Kubernetes, ID.to_string(), Some(pod.to_string())))
        );
        assert_eq!(
            container(&format!("/k8s.io/{ID}")).map(|c| c.0),
            Some(Runtime::Containerd)
        );
        assert_eq!(container(&format!("/somewhere/{ID}")), None);
        // A pod without a container id in the path.
        assert_eq!(
            container(&format!("/kubepods/besteffort/pod{pod}")).map(|c| c.0),
            Some(Runtime::Kubernetes)
        );
    }

    #[test]
    fn units_and_the_host() {
        assert_eq!(
            parse_cgroup("/system.slice/apache2.service"),
            (None, Some("apache2.service".into()))
        );
        assert_eq!(
            parse_cgroup("/system.slice/php8.2-fpm.service/worker"),
            (None, Some("php8.2-fpm.service".into()))
        );
        assert_eq!(parse_cgroup("/"), (None, None));
        assert_eq!(
            parse_cgroup("/user.slice/user-0.slice/session-3.scope"),
            (None, None)
        );
        // Not an id: a short hex name is only a directory.
        assert_eq!(parse_cgroup("/system.slice/docker-abc.scope"), (None, None));
    }

    #[test]
    fn short_forms() {
        let p = Place {
            container: Some(Container {
                runtime: Runtime::Docker,
                id: ID.into(),
                pod: None,
            }),
            unit: None,
            private: true,
        };
        assert_eq!(p.short(), "docker:3f2a9c1b2d4e");
        assert_eq!(p.to_string(), format!("docker container {ID}"));
        let u = Place {
            unit: Some("apache2.service".into()),
            ..Place::default()
        };
        assert_eq!(u.short(), "apache2.service");
        assert_eq!(Place::default().short(), "-");
        assert!(Place::default().is_host());
    }

    #[test]
    fn files_open_inside_the_view_and_symlinks_stay_in_it() {
        use std::io::Read;
        let t = crate::testutil::TempDir::new();
        t.write("etc/app.conf", "inside");
        std::os::unix::fs::symlink("/etc/app.conf", t.path().join("etc/abs-link")).unwrap();
        let v = View::live(t.path());
        let mut s = String::new();
        v.open(b"/etc/abs-link")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(
            s, "inside",
            "an absolute link resolves in the view, not on the host"
        );
        // `..` stops at the view's root: the host's /etc/passwd is not reached.
        assert!(v.open(b"/../../../../etc/passwd").is_err());
        assert!(View::gone().open(b"/etc/app.conf").is_err());
        let mut host = String::new();
        ViewRef::host()
            .open(t.abs("etc/app.conf").as_bytes())
            .unwrap()
            .read_to_string(&mut host)
            .unwrap();
        assert_eq!(host, "inside");
    }

    #[test]
    fn network_and_fuse_mounts_are_known_from_the_mount_table() {
        let t = b"22 1 0:21 / / rw - ext4 /dev/sda1 rw\n\
                  30 22 0:40 / /srv/share rw - nfs4 srv:/x rw\n\
                  31 30 0:41 / /srv/share/local rw - tmpfs none rw\n\
                  32 22 0:42 / /mnt/my\\040drive rw shared:1 - fuse.sshfs me@h: rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 4);
        assert_eq!(m[3].0, b"/mnt/my drive");
        let v = View::gone();
        let _ = v.mounts.set(m);
        assert_eq!(
            v.network_fs(b"/srv/share/www/x.php").as_deref(),
            Some("nfs4")
        );
        assert_eq!(v.network_fs(b"/srv/share/local/x"), None);
        assert_eq!(v.network_fs(b"/srv/shared/x"), None);
        assert_eq!(
            v.network_fs(b"/mnt/my drive/a").as_deref(),
            Some("fuse.sshfs")
        );
        assert_eq!(v.network_fs(b"/etc/passwd"), None);
    }

    #[test]
    fn our_own_process_is_seen_in_the_host_view() {
        let mut places = Places::new(true);
        let w = places.of(std::process::id(), 0, 0);
        assert!(w.view.is_host(), "{w:?}");
        assert!(!w.place.private);
    }
}
