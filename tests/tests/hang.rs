//! A filesystem that stops answering (an NFS server gone, a FUSE daemon stuck) must not hang
//! observer's report: paths on network and FUSE filesystems are not looked at, and the report
//! comes out on time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use observer_tests::{Observer, TempDir, ensure_packages, failer, row, unique_comm};

struct HangFs {
    child: Child,
    mnt: String,
}

impl HangFs {
    fn mount(mnt: &str) -> HangFs {
        ensure_packages(&["fuse3", "python3-fusepy"]);
        std::fs::create_dir_all(mnt).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hangfs.py");
        let child = Command::new("/usr/bin/python3")
            .args([script, mnt])
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 hangfs.py");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mounted = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .any(|l| l.contains(&format!(" {mnt} ")) && l.contains(" - fuse"));
            if mounted {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the FUSE filesystem did not mount"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HangFs {
            child,
            mnt: mnt.to_string(),
        }
    }
}

impl Drop for HangFs {
    fn drop(&mut self) {
        // Abort the connection first: a process stuck in a lookup (observer, when the test
        // fails) is released with an error instead of staying in D state.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let minor = mountinfo
            .lines()
            .find(|l| l.contains(&format!(" {} ", self.mnt)))
            .and_then(|l| l.split(' ').nth(2))
            .and_then(|dev| dev.split(':').nth(1))
            .map(str::to_string);
        if let Some(minor) = minor {
            let ctl = "/sys/fs/fuse/connections";
            if std::fs::read_dir(ctl).map_or(true, |mut d| d.next().is_none()) {
                let _ = Command::new("mount")
                    .args(["-t", "fusectl", "fusectl", ctl])
                    .status();
            }
            let _ = std::fs::write(format!("{ctl}/{minor}/abort"), "1");
        }
        let _ = Command::new("umount").args(["-l", &self.mnt]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_path_on_a_filesystem_that_hangs_does_not_hang_the_report() {
    let comm = unique_comm("obs-hang");
    let tmp = TempDir::new("hang");
    let mnt = tmp.join("mnt");
    let fs = HangFs::mount(&mnt);
    let culprit = format!("{mnt}/app/config.php");
    let obs = Observer::start(&["--comm", &comm]);
    // Answered once (ENOENT); anyone who looks again hangs.
    failer(&["--comm", &comm, &format!("openat:{culprit}")]);
    let t = Instant::now();
    let report = obs.stop();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(30), "the report took {took:?}");
    let r = row(&report, culprit.as_bytes(), "ENOENT");
    assert_eq!(r["hints"][0]["kind"], "not_checked", "{r:#}");
    assert!(
        r["hints"][0]["message"].as_str().unwrap().contains("fuse"),
        "{r:#}"
    );
    drop(fs);
}
