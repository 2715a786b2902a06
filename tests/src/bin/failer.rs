//! A child for the integration tests and the benchmark: sets its comm, then makes exactly the
//! syscalls it is told to, through raw `syscall(2)` so glibc cannot substitute another one.
//!
//! usage: failer [--comm NAME] [--threads N] [--fork] [--chdir DIR] [--setuid UID:GID]
//!               [--wait] [--repeat N] [--linger MS] [--open-flags F,...] [--nofile N] ACTION...
//!   ACTION = SYSCALL:PATH          e.g. openat:/nope, newfstatat:/nope, execve:/nope
//!          | SYSCALL@DIR:PATH       dirfd-relative: open DIR, then SYSCALL(dirfd, PATH)
//!          | empty-fstat            newfstatat(-1, "", AT_EMPTY_PATH): an fstat, not a lookup
//!          | chase:PATH             systemd's chase(): O_PATH dirfds per component, each closed at once
//!          | bad-pointer            openat with a path pointer into unmapped memory (EFAULT)
//!          | interrupted:FIFO       open FIFO for reading (blocks: no writer), interrupted by a
//!                                   signal after 50 ms; fails unless the open returned EINTR
//!          | chdir:DIR              chdir(DIR), which must succeed (relative to the current one)
//!          | wait-line              read one line from stdin, then go on (a test acts meanwhile)
//!          | pause:MS               sleep MS milliseconds (spaces the calls out)
//!          | spray:N:PREFIX         openat PREFIX0 .. PREFIX(N-1), once each (distinct paths),
//!                                   resting 1 ms after every 1,000 calls
//!          | opendir:DIR            open DIR and keep its fd: `SYSCALL@fd:PATH` is relative to it
//!          | ready                  print `ready` on stdout (a test waits for it, then acts)
//!          | forked:PATH            fork a child that fails openat(PATH) and exits; wait for it
//!          | hold-threads:N         start N threads that wait, alive, until release-threads
//!          | release-threads        let the held threads end, and join them
//!          | hold-processes:N       start N child processes that wait, alive, until
//!                                   release-processes (clone sharing our memory and files:
//!                                   processes to the kernel, at a thread's cost)
//!          | release-processes      let the held processes end, and reap them
//!   PATH may be `hex:<hex bytes>` for names that do not survive a command line.
//!   --wait: read one line from stdin before acting (lets a test move us into a cgroup first).
//!   --close-dirfds: close each SYSCALL@DIR action's directory fd after it, so the next one
//!   reuses its number (by default they stay open until exit, for /proc to read).
//!   --open-flags: the flags of open, openat and openat2 (default rdonly), of wronly, rdwr,
//!   creat, nofollow, directory.
//!   --nofile N: lower RLIMIT_NOFILE to N before acting (N = 0: every new descriptor is EMFILE).
//!   bench --calls N --rounds R [--comm NAME] [--op openat|close]: time failing openat calls (or
//!   close(-1), a syscall observer does not hook), one line per round in ns/call.
use std::ffi::CString;
use std::io::BufRead;
use std::time::Instant;

fn die(msg: &str) -> ! {
    eprintln!("failer: {msg}");
    std::process::exit(2);
}

fn set_comm(name: &str) {
    let c = CString::new(name).unwrap_or_else(|_| die("comm with NUL"));
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

fn path_bytes(s: &str) -> Vec<u8> {
    match s.strip_prefix("hex:") {
        Some(h) => (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap_or_else(|_| die("bad hex")))
            .collect(),
        None => s.as_bytes().to_vec(),
    }
}

#[derive(Clone)]
struct Action {
    syscall: String,
    dir: Option<Vec<u8>>,
    path: Vec<u8>,
}

fn parse_action(a: &str) -> Action {
    if matches!(
        a,
        "empty-fstat"
            | "bad-pointer"
            | "wait-line"
            | "ready"
            | "release-threads"
            | "release-processes"
    ) {
        return Action {
            syscall: a.into(),
            dir: None,
            path: Vec::new(),
        };
    }
    let (head, path) = a
        .split_once(':')
        .unwrap_or_else(|| die(&format!("bad action {a}")));
    let (syscall, dir) = match head.split_once('@') {
        Some((s, d)) => (s.to_string(), Some(path_bytes(d))),
        None => (head.to_string(), None),
    };
    Action {
        syscall,
        dir,
        path: path_bytes(path),
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `--open-flags wronly,creat,...` as open(2) flags.
fn open_flags(list: &str) -> i32 {
    list.split(',').fold(libc::O_RDONLY, |acc, f| {
        acc | match f {
            "rdonly" => libc::O_RDONLY,
            "wronly" => libc::O_WRONLY,
            "rdwr" => libc::O_RDWR,
            "creat" => libc::O_CREAT,
            "nofollow" => libc::O_NOFOLLOW,
            "directory" => libc::O_DIRECTORY,
            other => die(&format!("unknown open flag {other}")),
        }
    })
}

/// The flags of the open calls (`--open-flags`).
static OPEN_FLAGS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Makes the call; returns the raw result (negative errno as -1 with errno set).
fn call(a: &Action, dirfd: i32) -> i64 {
    let flags = OPEN_FLAGS.load(std::sync::atomic::Ordering::Relaxed);
    let p = CString::new(a.path.clone()).unwrap_or_else(|_| die("path with NUL"));
    let p = p.as_ptr();
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    let mut stx = std::mem::MaybeUninit::<libc::statx>::uninit();
    let argv: [*const libc::c_char; 2] = [p, std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: raw syscalls with valid pointers for their duration.
    unsafe {
        match a.syscall.as_str() {
            "open" => libc::syscall(libc::SYS_open, p, flags, 0o644),
            "openat" => libc::syscall(libc::SYS_openat, dirfd, p, flags, 0o644),
            "openat2" => {
                let how = OpenHow {
                    flags: flags as u64,
                    mode: if flags & libc::O_CREAT != 0 { 0o644 } else { 0 },
                    resolve: 0,
                };
                libc::syscall(
                    libc::SYS_openat2,
                    dirfd,
                    p,
                    &how,
                    std::mem::size_of::<OpenHow>(),
                )
            }
            "creat" => libc::syscall(libc::SYS_creat, p, 0o644),
            "newstat" => libc::syscall(libc::SYS_stat, p, st.as_mut_ptr()),
            "newlstat" => libc::syscall(libc::SYS_lstat, p, st.as_mut_ptr()),
            "newfstatat" => libc::syscall(libc::SYS_newfstatat, dirfd, p, st.as_mut_ptr(), 0),
            "statx" => libc::syscall(
                libc::SYS_statx,
                dirfd,
                p,
                0,
                libc::STATX_BASIC_STATS,
                stx.as_mut_ptr(),
            ),
            "access" => libc::syscall(libc::SYS_access, p, libc::R_OK),
            "faccessat" => libc::syscall(libc::SYS_faccessat, dirfd, p, libc::R_OK),
            "faccessat2" => libc::syscall(libc::SYS_faccessat2, dirfd, p, libc::R_OK, 0),
            "execve" => libc::syscall(libc::SYS_execve, p, argv.as_ptr(), envp.as_ptr()),
            "execveat" => libc::syscall(
                libc::SYS_execveat,
                dirfd,
                p,
                argv.as_ptr(),
                envp.as_ptr(),
                0,
            ),
            "bad-pointer" => {
                libc::syscall(libc::SYS_openat, libc::AT_FDCWD, 8usize, libc::O_RDONLY)
            }
            "empty-fstat" => libc::syscall(
                libc::SYS_newfstatat,
                -1,
                c"".as_ptr(),
                st.as_mut_ptr(),
                libc::AT_EMPTY_PATH,
            ),
            other => die(&format!("unknown syscall {other}")),
        }
    }
}

/// systemd's chase(): walk PATH from "/" with O_PATH directory fds, one component at a time,
/// closing each fd at once; open the last component relative to its parent's fd.
fn chase(path: &[u8]) {
    let comps: Vec<&[u8]> = path
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let open_dir = |dirfd: i32, name: &[u8]| -> i32 {
        let c = CString::new(name.to_vec()).unwrap_or_else(|_| die("NUL in path"));
        // SAFETY: valid C string; raw openat so the syscall is exactly this one.
        unsafe {
            libc::syscall(
                libc::SYS_openat,
                dirfd,
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            ) as i32
        }
    };
    let mut fd = open_dir(libc::AT_FDCWD, b"/");
    let Some((last, dirs)) = comps.split_last() else {
        return;
    };
    for d in dirs {
        let next = open_dir(fd, d);
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        if next < 0 {
            return;
        }
        fd = next;
    }
    let c = CString::new(last.to_vec()).unwrap_or_else(|_| die("NUL in path"));
    // SAFETY: valid C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat,
            fd,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: our fds.
    unsafe {
        if r >= 0 {
            libc::close(r as i32);
        }
        libc::close(fd);
    }
}

/// `N:PREFIX`: N failing opens of distinct paths.
fn spray(arg: &[u8]) {
    let arg = String::from_utf8_lossy(arg);
    let (n, prefix) = arg.split_once(':').unwrap_or_else(|| die("spray:N:PREFIX"));
    let n: u64 = n.parse().unwrap_or_else(|_| die("spray count"));
    for i in 0..n {
        let c = CString::new(format!("{prefix}{i}")).unwrap_or_else(|_| die("NUL in path"));
        // SAFETY: a valid C string; the raw syscall.
        let r = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), 0) };
        if r >= 0 {
            // SAFETY: our fd.
            unsafe { libc::close(r as i32) };
        }
        if i % 1000 == 999 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Opens a FIFO nobody writes to, and lets SIGALRM (no SA_RESTART) interrupt it: the kernel
/// returns -ERESTARTSYS at sys_exit and turns it into EINTR on the way out.
fn interrupted_open(fifo: &[u8]) {
    let c = CString::new(fifo.to_vec()).unwrap_or_else(|_| die("NUL in path"));
    // SAFETY: a handler that does nothing; a one-shot timer; a raw open of a valid C string.
    let (r, err) = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        sa.sa_flags = 0;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let t = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
        let r = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY);
        (r, *libc::__errno_location())
    };
    if r >= 0 || err != libc::EINTR {
        die(&format!(
            "interrupted open returned {r} (errno {err}), not EINTR"
        ));
    }
}

/// Threads held alive by `hold-threads`: their ids, and the write end of the pipe they block
/// reading (closing it lets them end).
type Held = (Vec<libc::pthread_t>, i32);

extern "C" fn held_thread(fd: *mut libc::c_void) -> *mut libc::c_void {
    let mut b = 0u8;
    // SAFETY: a read of one byte into our own buffer; it returns when the pipe's write end closes.
    unsafe { libc::read(fd as usize as i32, (&raw mut b).cast(), 1) };
    std::ptr::null_mut()
}

/// N threads that block until `release-threads`. Plain pthreads with the smallest stack and no
/// guard page: Rust's threads map a signal stack and two guards each, and N of them would pass
/// the kernel's limit on mappings (vm.max_map_count) before the pid map fills.
fn hold_threads(n: &[u8]) -> Held {
    let n: usize = String::from_utf8_lossy(n)
        .parse()
        .unwrap_or_else(|_| die("hold-threads:N"));
    let mut fds = [0i32; 2];
    // SAFETY: pipe fills two fds; the attribute calls act on our own attr; pthread_create gets
    // a thread function that only reads the pipe.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            die("pipe");
        }
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        libc::pthread_attr_init(attr.as_mut_ptr());
        libc::pthread_attr_setstacksize(attr.as_mut_ptr(), libc::PTHREAD_STACK_MIN);
        libc::pthread_attr_setguardsize(attr.as_mut_ptr(), 0);
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let mut t: libc::pthread_t = 0;
            let r = libc::pthread_create(
                &mut t,
                attr.as_ptr(),
                held_thread,
                fds[0] as usize as *mut libc::c_void,
            );
            if r != 0 {
                die(&format!(
                    "cannot start thread {} of {n}: {}",
                    ids.len() + 1,
                    std::io::Error::from_raw_os_error(r)
                ));
            }
            ids.push(t);
        }
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (ids, fds[1])
    }
}

extern "C" fn held_process(fd: *mut libc::c_void) -> libc::c_int {
    let mut b = 0u8;
    // SAFETY: a raw read of one byte into this child's own stack; it returns when the pipe's
    // write end closes. Nothing else runs here: the child shares our memory.
    unsafe { libc::syscall(libc::SYS_read, fd as usize as libc::c_long, &raw mut b, 1) };
    0
}

/// N child processes that block until `release-processes`: clone(2) without CLONE_THREAD, so
/// each is a process of its own (its own pid and tgid) to the kernel, but sharing our memory,
/// files and handlers, so that 16,000 of them cost what as many threads do.
fn hold_processes(n: &[u8]) -> Held {
    const STACK: usize = 16 * 1024;
    let n: usize = String::from_utf8_lossy(n)
        .parse()
        .unwrap_or_else(|_| die("hold-processes:N"));
    let mut fds = [0i32; 2];
    // SAFETY: pipe fills two fds; mmap gives fresh stacks no one else uses; each child runs
    // held_process alone on its own stack.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            die("pipe");
        }
        let stacks = libc::mmap(
            std::ptr::null_mut(),
            n * STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if stacks == libc::MAP_FAILED {
            die("mmap of the stacks");
        }
        let flags = libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::SIGCHLD;
        let mut pids = Vec::with_capacity(n);
        for i in 0..n {
            let top = stacks.cast::<u8>().add((i + 1) * STACK).cast();
            let pid = libc::clone(
                held_process,
                top,
                flags,
                fds[0] as usize as *mut libc::c_void,
            );
            if pid < 0 {
                die(&format!(
                    "cannot start process {} of {n}: {}",
                    i + 1,
                    std::io::Error::last_os_error()
                ));
            }
            pids.push(pid as libc::pthread_t);
        }
        (pids, fds[1])
    }
}

/// fork(); the child fails openat(PATH) and leaves; the parent waits for it.
fn forked(path: &[u8]) {
    let c = CString::new(path.to_vec()).unwrap_or_else(|_| die("NUL in path"));
    // SAFETY: the child only makes raw syscalls and _exits; the parent waits for it.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            die("fork failed");
        }
        if pid == 0 {
            libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY);
            libc::_exit(0);
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
}

fn perform(actions: &[Action], repeat: u64, close_dirfds: bool) {
    let mut kept_dirfd = None;
    let mut held: Option<Held> = None;
    let mut held_procs: Option<Held> = None;
    for a in actions {
        if a.syscall == "ready" {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready").and_then(|()| out.flush());
            continue;
        }
        if a.syscall == "opendir" {
            let c = CString::new(a.path.clone()).unwrap_or_else(|_| die("dir with NUL"));
            // SAFETY: a valid C string.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
            if fd < 0 {
                die("cannot open the opendir directory");
            }
            kept_dirfd = Some(fd);
            continue;
        }
        if a.syscall == "forked" {
            forked(&a.path);
            continue;
        }
        if a.syscall == "hold-threads" {
            held = Some(hold_threads(&a.path));
            continue;
        }
        if a.syscall == "release-threads" {
            if let Some((ids, release)) = held.take() {
                // SAFETY: closing our pipe's write end; joining threads we started.
                unsafe {
                    libc::close(release);
                    for t in ids {
                        libc::pthread_join(t, std::ptr::null_mut());
                    }
                }
            }
            continue;
        }
        if a.syscall == "hold-processes" {
            held_procs = Some(hold_processes(&a.path));
            continue;
        }
        if a.syscall == "release-processes" {
            if let Some((pids, release)) = held_procs.take() {
                // SAFETY: closing our pipe's write end; reaping children we started.
                unsafe {
                    libc::close(release);
                    for p in pids {
                        libc::waitpid(p as libc::pid_t, std::ptr::null_mut(), 0);
                    }
                }
            }
            continue;
        }
        if a.syscall == "wait-line" {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            continue;
        }
        if a.syscall == "chdir" {
            let c = CString::new(a.path.clone()).unwrap_or_else(|_| die("dir with NUL"));
            // SAFETY: a valid C string; the raw syscall, so it is exactly chdir.
            if unsafe { libc::syscall(libc::SYS_chdir, c.as_ptr()) } != 0 {
                die("chdir failed");
            }
            continue;
        }
        if a.syscall == "interrupted" {
            interrupted_open(&a.path);
            continue;
        }
        if a.syscall == "pause" {
            let ms: u64 = String::from_utf8_lossy(&a.path)
                .parse()
                .unwrap_or_else(|_| die("pause:MS"));
            std::thread::sleep(std::time::Duration::from_millis(ms));
            continue;
        }
        if a.syscall == "spray" {
            spray(&a.path);
            continue;
        }
        if a.syscall == "chase" {
            for _ in 0..repeat {
                chase(&a.path);
            }
            continue;
        }
        let dirfd = match &a.dir {
            Some(d) if d == b"fd" => kept_dirfd.unwrap_or_else(|| die("@fd before opendir")),
            Some(d) => {
                let c = CString::new(d.clone()).unwrap_or_else(|_| die("dir with NUL"));
                // SAFETY: valid C string.
                let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
                if fd < 0 {
                    die("cannot open dirfd directory");
                }
                fd
            }
            None => libc::AT_FDCWD,
        };
        for _ in 0..repeat {
            let r = call(a, dirfd);
            if r >= 0 && (a.syscall.starts_with("open") || a.syscall == "creat") {
                // SAFETY: r is an fd we own.
                unsafe { libc::close(r as i32) };
            }
        }
        // The dirfd stays open until exit, so observer can read where it points; or it closes,
        // so that the next action's dirfd reuses the number.
        if close_dirfds && dirfd >= 0 && a.dir.as_deref() != Some(b"fd") {
            // SAFETY: our fd.
            unsafe { libc::close(dirfd) };
        }
    }
}

fn bench(args: &[String]) {
    let mut calls = 1_000_000u64;
    let mut rounds = 5;
    let mut op = String::from("openat");
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--calls" => calls = args[i + 1].parse().unwrap_or_else(|_| die("--calls")),
            "--rounds" => rounds = args[i + 1].parse().unwrap_or_else(|_| die("--rounds")),
            "--comm" => set_comm(&args[i + 1]),
            "--op" => op = args[i + 1].clone(),
            a => die(&format!("unknown bench arg {a}")),
        }
        i += 2;
    }
    let p = c"/nonexistent-observer-bench/missing.php";
    for _ in 0..rounds {
        let t = Instant::now();
        match op.as_str() {
            "openat" => {
                for _ in 0..calls {
                    // SAFETY: valid C string.
                    unsafe {
                        libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.as_ptr(), libc::O_RDONLY)
                    };
                }
            }
            // A syscall observer does not hook, failing cheaply (EBADF).
            "close" => {
                for _ in 0..calls {
                    // SAFETY: closing an invalid fd only returns EBADF.
                    unsafe { libc::syscall(libc::SYS_close, -1) };
                }
            }
            o => die(&format!("unknown --op {o}")),
        }
        println!("{:.1}", t.elapsed().as_nanos() as f64 / calls as f64);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bench") {
        return bench(&args[1..]);
    }
    let mut threads = 1usize;
    let mut fork = false;
    let mut wait = false;
    let mut close_dirfds = false;
    let mut repeat = 1u64;
    let mut linger_ms = 0u64;
    let mut nofile: Option<u64> = None;
    let mut actions = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let next = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a {
            "--comm" => {
                set_comm(&next());
                i += 1;
            }
            "--threads" => {
                threads = next().parse().unwrap_or_else(|_| die("--threads"));
                i += 1;
            }
            "--repeat" => {
                repeat = next().parse().unwrap_or_else(|_| die("--repeat"));
                i += 1;
            }
            "--open-flags" => {
                OPEN_FLAGS.store(open_flags(&next()), std::sync::atomic::Ordering::Relaxed);
                i += 1;
            }
            "--nofile" => {
                nofile = Some(next().parse().unwrap_or_else(|_| die("--nofile N")));
                i += 1;
            }
            "--linger" => {
                linger_ms = next().parse().unwrap_or_else(|_| die("--linger MS"));
                i += 1;
            }
            "--chdir" => {
                std::env::set_current_dir(next()).unwrap_or_else(|e| die(&format!("chdir: {e}")));
                i += 1;
            }
            "--setuid" => {
                let v = next();
                let (u, g) = v.split_once(':').unwrap_or_else(|| die("--setuid UID:GID"));
                let (u, g): (u32, u32) = (
                    u.parse().unwrap_or_else(|_| die("uid")),
                    g.parse().unwrap_or_else(|_| die("gid")),
                );
                // SAFETY: plain credential syscalls; groups cleared first.
                unsafe {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(g) != 0
                        || libc::setuid(u) != 0
                    {
                        die("cannot drop privileges");
                    }
                }
                i += 1;
            }
            "--fork" => fork = true,
            "--wait" => wait = true,
            "--close-dirfds" => close_dirfds = true,
            _ => actions.push(parse_action(a)),
        }
        i += 1;
    }
    if wait {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    if let Some(n) = nofile {
        let lim = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            die("cannot lower RLIMIT_NOFILE");
        }
    }
    if fork {
        // SAFETY: single-threaded here; the child only makes syscalls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            perform(&actions, repeat, close_dirfds);
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        println!("{pid}");
        return;
    }
    if threads > 1 {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let acts = actions.clone();
                std::thread::spawn(move || perform(&acts, repeat, close_dirfds))
            })
            .collect();
        for h in hs {
            let _ = h.join();
        }
    } else {
        perform(&actions, repeat, close_dirfds);
    }
    // A server worker outlives its failing call; a short-lived child that must have its
    // relative paths resolved lingers like one.
    std::thread::sleep(std::time::Duration::from_millis(linger_ms));
}
