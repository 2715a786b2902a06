//! Each hint kind made from a real state of the file system, through the real binary and
//! kernel: a failing call of a child, then the state the report sees (a read-only or noexec
//! tmpfs mounted here and unmounted after, a descriptor limit lowered in the child, a path
//! repaired or removed before the report, the dynamic loader's own search path).

use std::ffi::CString;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use observer_tests::{Observer, TempDir, failer, row, unique_comm};
use serde_json::Value;

/// The kinds of a row's hints, in order.
fn kinds(r: &Value) -> Vec<&str> {
    r["hints"]
        .as_array()
        .unwrap_or_else(|| panic!("no hints: {r:#}"))
        .iter()
        .filter_map(|h| h["kind"].as_str())
        .collect()
}

/// The row's only hint, of `kind`.
fn only_hint<'a>(r: &'a Value, kind: &str) -> &'a Value {
    assert_eq!(kinds(r), [kind], "{r:#}");
    &r["hints"][0]
}

fn message(h: &Value) -> &str {
    h["message"].as_str().unwrap_or("")
}

/// A tmpfs mounted at `dir` with `flags` (MS_RDONLY, MS_NOEXEC) on this host, unmounted on drop
/// (also when the test panics).
struct Tmpfs(CString);

impl Tmpfs {
    fn mount(dir: &str, flags: libc::c_ulong) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let at = CString::new(dir).unwrap();
        // SAFETY: NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"observer-test".as_ptr(),
                at.as_ptr(),
                c"tmpfs".as_ptr(),
                flags | libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755,size=4m".as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {dir}: {}",
            std::io::Error::last_os_error()
        );
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path; a lazy unmount if something still holds it.
        unsafe {
            if libc::umount(self.0.as_ptr()) != 0 {
                libc::umount2(self.0.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// EMFILE: a process whose RLIMIT_NOFILE is spent opens a file that exists.
#[test]
fn a_process_out_of_descriptors_gets_fd_exhausted() {
    let comm = unique_comm("obs-hfd");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "--nofile",
        "0",
        "--repeat",
        "3",
        "openat:/etc/hostname",
    ]);
    let report = obs.stop();
    let r = row(&report, b"/etc/hostname", "EMFILE");
    assert_eq!(r["count"], 3, "{r:#}");
    let h = only_hint(r, "fd_exhausted");
    assert!(
        message(h).contains("ran out of file descriptors (its RLIMIT_NOFILE)"),
        "{h:#}"
    );
    assert!(
        h["suggestion"]
            .as_str()
            .is_some_and(|s| s.contains("LimitNOFILE=")),
        "{h:#}"
    );
}

/// EROFS: a file created on a filesystem mounted read-only, by creat() and by an
/// O_WRONLY|O_CREAT open.
#[test]
fn a_write_on_a_read_only_mount_gets_read_only_fs() {
    let tmp = TempDir::new("hint-rofs");
    let dir = tmp.join("ro");
    let _ro = Tmpfs::mount(&dir, libc::MS_RDONLY);
    let comm = unique_comm("obs-hro");
    let obs = Observer::start(&["--comm", &comm]);
    let file = format!("{dir}/app.log");
    failer(&["--comm", &comm, &format!("creat:{file}")]);
    failer(&[
        "--comm",
        &comm,
        "--open-flags",
        "wronly,creat",
        &format!("openat:{file}"),
    ]);
    let report = obs.stop();
    let r = row(&report, file.as_bytes(), "EROFS");
    assert_eq!(r["syscalls"]["creat"], 1, "{r:#}");
    assert_eq!(r["syscalls"]["openat"], 1, "{r:#}");
    let h = only_hint(r, "read_only_fs");
    assert_eq!(
        message(h),
        format!("{file} is on a read-only filesystem (a write was attempted)")
    );
}

/// EISDIR: a directory opened for writing.
#[test]
fn a_directory_opened_for_writing_gets_is_directory() {
    let tmp = TempDir::new("hint-isdir");
    let dir = tmp.join("uploads");
    std::fs::create_dir(&dir).unwrap();
    let comm = unique_comm("obs-hdir");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "--open-flags",
        "wronly",
        &format!("openat:{dir}"),
        &format!("creat:{dir}"),
    ]);
    let report = obs.stop();
    let r = row(&report, dir.as_bytes(), "EISDIR");
    assert_eq!(r["count"], 2, "{r:#}");
    let h = only_hint(r, "is_directory");
    assert_eq!(
        message(h),
        format!("{dir} is a directory (opened for writing?)")
    );
}

/// EACCES on exec: a program on a filesystem mounted noexec (still mounted when the report
/// looks).
#[test]
fn an_exec_from_a_noexec_mount_gets_noexec_mount() {
    let tmp = TempDir::new("hint-noexec");
    let dir = tmp.join("nx");
    let mnt = Tmpfs::mount(&dir, libc::MS_NOEXEC);
    let prog = format!("{dir}/job");
    std::fs::copy("/bin/true", &prog).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let comm = unique_comm("obs-hnx");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&["--comm", &comm, &format!("execve:{prog}")]);
    let report = obs.stop();
    drop(mnt);
    let r = row(&report, prog.as_bytes(), "EACCES");
    assert_eq!(r["syscalls"]["execve"], 1, "{r:#}");
    let h = only_hint(r, "noexec_mount");
    assert_eq!(
        message(h),
        format!("{prog} is on a filesystem mounted noexec")
    );
}

/// ENOTDIR and ELOOP, repaired before the report: a file where a directory belongs is replaced
/// by one, a symlink loop by a directory. The report says the path resolves now.
#[test]
fn a_path_repaired_before_the_report_gets_resolves_now() {
    let tmp = TempDir::new("hint-resolves");
    let d = tmp.path();
    let file = format!("{d}/cache");
    std::fs::write(&file, b"not a directory").unwrap();
    symlink(format!("{d}/b"), format!("{d}/a")).unwrap();
    symlink(format!("{d}/a"), format!("{d}/b")).unwrap();
    let comm = unique_comm("obs-hres");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        &format!("openat:{file}/page.html"),
        &format!("openat:{d}/a/page.html"),
    ]);
    // The repair: a directory where the file was, and where the loop was.
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    std::fs::remove_file(format!("{d}/a")).unwrap();
    std::fs::create_dir(format!("{d}/a")).unwrap();
    let report = obs.stop();
    let r = row(&report, format!("{file}/page.html").as_bytes(), "ENOTDIR");
    let h = only_hint(r, "resolves_now");
    assert_eq!(message(h), "every directory in the path is a directory now");
    let r = row(&report, format!("{d}/a/page.html").as_bytes(), "ELOOP");
    let h = only_hint(r, "resolves_now");
    assert_eq!(message(h), "the path resolves without a loop now");
}

/// ELOOP from O_NOFOLLOW: an open that refuses to follow a final symlink met one.
#[test]
fn an_o_nofollow_open_of_a_symlink_gets_nofollow_symlink() {
    let tmp = TempDir::new("hint-nofollow");
    let d = tmp.path();
    std::fs::write(format!("{d}/real.conf"), b"x").unwrap();
    let link = format!("{d}/current.conf");
    symlink(format!("{d}/real.conf"), &link).unwrap();
    let comm = unique_comm("obs-hnof");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "--open-flags",
        "nofollow",
        &format!("openat:{link}"),
    ]);
    let report = obs.stop();
    let r = row(&report, link.as_bytes(), "ELOOP");
    let h = only_hint(r, "nofollow_symlink");
    assert_eq!(
        message(h),
        format!("{link} is a symlink and the open used O_NOFOLLOW")
    );
}

/// EACCES on a file that was removed (and its directory opened up) before the report: nothing
/// denies now, and the file is gone.
#[test]
fn a_denied_file_removed_before_the_report_gets_missing_now() {
    let tmp = TempDir::new("hint-missing");
    let secret = tmp.join("secret");
    std::fs::create_dir(&secret).unwrap();
    let file = format!("{secret}/config.php");
    std::fs::write(&file, b"<?php\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let comm = unique_comm("obs-hmis");
    let obs = Observer::start(&["--comm", &comm]);
    failer(&[
        "--comm",
        &comm,
        "--setuid",
        "65534:65534",
        &format!("openat:{file}"),
    ]);
    std::fs::remove_file(&file).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o755)).unwrap();
    let report = obs.stop();
    let r = row(&report, file.as_bytes(), "EACCES");
    assert_eq!(r["uids"][0]["uid"], 65534, "{r:#}");
    let h = only_hint(r, "missing_now");
    assert_eq!(message(h), format!("{file} does not exist now"));
}

/// The dynamic loader with LD_LIBRARY_PATH: it looks for libc.so.6 in that directory first,
/// fails, and finds it in the system's library directory. observer, with its own library
/// search path, says the library was found elsewhere.
#[test]
fn a_library_the_loader_found_on_its_search_path_gets_found_elsewhere() {
    let tmp = TempDir::new("hint-ldpath");
    let libs = tmp.join("libs");
    std::fs::create_dir(&libs).unwrap();
    let comm = unique_comm("obs-hlib");
    // The process is named after the program it runs: a copy of true, named as the comm.
    let prog = tmp.join(&comm);
    std::fs::copy("/bin/true", &prog).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let obs = Observer::start(&["--comm", &comm]);
    let st = Command::new(&prog)
        .env_clear()
        .env("LD_LIBRARY_PATH", &libs)
        .status()
        .expect("run the program");
    assert!(st.success(), "{st}");
    let report = obs.stop();
    let missing = format!("{libs}/libc.so.6");
    let r = row(&report, missing.as_bytes(), "ENOENT");
    // One try in the directory itself (after the hwcaps subdirectories, probes of their own).
    assert_eq!(r["count"], 1, "{r:#}");
    assert_eq!(r["syscalls"]["openat"], 1, "{r:#}");
    assert!(
        r["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "library load"),
        "{r:#}"
    );
    let h = only_hint(r, "found_elsewhere");
    let msg = message(h);
    let (found, _) = msg
        .split_once(" exists on the library search path")
        .unwrap_or_else(|| panic!("{h:#}"));
    assert!(
        found.ends_with("/libc.so.6") && !found.starts_with(&tmp.path()),
        "{h:#}"
    );
    assert!(
        std::fs::metadata(found).is_ok_and(|m| m.is_file()),
        "{found} is where the loader found libc: {h:#}"
    );
    assert!(h["weight"].as_f64() < Some(0.0), "{h:#}");
}
