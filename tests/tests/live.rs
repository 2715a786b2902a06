//! The live view, as a person sees it: observer in a real terminal (a private tmux server), its
//! screen read back with `capture-pane`. The default format (live on a terminal, a table
//! otherwise), the refreshing view with the culprit, its hint and the totals, hostile names that
//! must not reach the terminal raw, and the final report after Ctrl-C, SIGTERM or `--duration`,
//! on a clean screen with exit status 0.

use std::process::Command;
use std::time::{Duration, Instant};

use observer_tests::{Observer, TempDir, ensure_packages, failer, hex, observer_bin, unique_comm};

/// A tmux server of the test's own (`-L`), one window with no status line, in which a shell
/// script runs observer, then says its exit status and waits: the terminal stays as observer
/// left it (a pane whose command ended would have its cursor hidden by tmux). Killed on drop.
struct Term {
    socket: String,
    _dir: TempDir,
}

impl Term {
    /// Runs observer with `args` in a `cols` x `rows` terminal.
    fn start(tag: &str, cols: u16, rows: u16, args: &[&str]) -> Term {
        ensure_packages(&["tmux"]);
        let dir = TempDir::new(&format!("tmux-{tag}"));
        let conf = dir.join("tmux.conf");
        std::fs::write(&conf, "set -g status off\nset -g history-limit 5000\n")
            .expect("write tmux.conf");
        let mut cmd = format!("'{}'", observer_bin().display());
        for a in args {
            cmd.push_str(&format!(" '{a}'"));
        }
        // The shell ignores Ctrl-C's SIGINT with a trap (observer, exec'd, gets the default
        // disposition back): it must outlive observer to say its status.
        let script = dir.join("run.sh");
        std::fs::write(
            &script,
            format!(
                "trap true INT\n{cmd}\necho \"observer exited with status $?\"\nexec sleep 3600\n"
            ),
        )
        .expect("write run.sh");
        let t = Term {
            socket: format!("observer-test-{tag}-{}", std::process::id()),
            _dir: dir,
        };
        let (c, r) = (cols.to_string(), rows.to_string());
        let out = Command::new("tmux")
            .args(["-L", &t.socket, "-f", &conf, "new-session", "-d", "-s", "t"])
            .args(["-x", &c, "-y", &r, &format!("bash {script}")])
            .env_remove("TMUX")
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A format variable of the pane (`alternate_on`, `cursor_flag`, `pane_title`, ...).
    fn var(&self, name: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", "t", &format!("#{{{name}}}")])
            .trim()
            .to_string()
    }

    /// What the screen shows now, as text (no attributes).
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen with its attributes as escape sequences (`capture-pane -e`).
    fn screen_with_attributes(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-e", "-t", "t"])
    }

    /// Everything on the normal screen, its scrollback included.
    fn history(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
    }

    /// observer's pid: the child of the pane's shell.
    fn observer_pid(&self) -> i32 {
        let shell: u32 = self.var("pane_pid").parse().expect("pane_pid");
        observer_tests_children(shell)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no observer under the pane's shell {shell}"))
    }

    /// Waits until `pred` holds for the screen; panics with the screen when it does not.
    fn wait_screen(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("{what}: not on screen within {timeout:?}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until observer has ended; returns its exit status.
    fn wait_exit(&self, timeout: Duration) -> i32 {
        const SAID: &str = "observer exited with status ";
        let s = self.wait_screen("observer's exit", timeout, |s| s.contains(SAID));
        let line = s.lines().find(|l| l.contains(SAID)).unwrap_or_default();
        line[line.find(SAID).unwrap_or(0) + SAID.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("status in {line:?}"))
    }

    /// Waits for the live view: the alternate screen and observer's header line.
    fn wait_live(&self) -> String {
        self.wait_screen("the live view", Duration::from_secs(60), |s| {
            s.starts_with("observer  ")
        });
        assert_eq!(
            self.var("alternate_on"),
            "1",
            "the live view is on the alternate screen"
        );
        assert_eq!(
            self.var("cursor_flag"),
            "0",
            "the cursor is hidden while it draws"
        );
        self.screen()
    }

    /// After exit: the normal screen is back, the cursor shown, and nothing of the live view
    /// is left on it.
    fn assert_clean_after_exit(&self) -> String {
        assert_eq!(self.var("alternate_on"), "0", "alternate screen left");
        assert_eq!(self.var("cursor_flag"), "1", "cursor shown again");
        let h = self.history();
        assert!(
            !h.lines().any(|l| l.starts_with("observer  ")),
            "the live view's frame leaked onto the normal screen:\n{h}"
        );
        h
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The pids whose parent is `ppid`.
fn observer_tests_children(ppid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid_of = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid_of == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

/// The index of the screen line that shows `needle`.
fn line_of(screen: &str, needle: &str) -> usize {
    screen
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{screen}"))
}

#[test]
fn the_live_view_shows_the_culprit_and_ctrl_c_leaves_the_report_on_a_clean_screen() {
    let comm = unique_comm("obs-lv");
    let tmp = TempDir::new("live");
    std::fs::write(tmp.join("helpers.php"), "<?php\n").unwrap();
    let culprit = tmp.join("helpers.phpp");
    // A name that would clear the screen, retitle the terminal, turn it red, leave the
    // alternate screen and forge a line, were it printed raw.
    let hostile = format!(
        "{}/evil\x1b[2J\x1b[H\x1b]2;pwned\x07\x1b[31mRED\x1b[?1049l\x1b[?25h\r\nFAKE",
        tmp.path()
    );
    // No --format: on a terminal the default is the live view.
    let term = Term::start("live", 200, 40, &["--comm", &comm, "--interval", "200ms"]);
    let first = term.wait_live();
    assert!(
        first.contains("failures 0  distinct 0  lost 0") && first.contains("no failed opens"),
        "{first}"
    );
    failer(&[
        "--comm",
        &comm,
        "--repeat",
        "2",
        &format!("openat:{culprit}"),
        &format!("newfstatat:{}", hex(hostile.as_bytes())),
    ]);
    // The view refreshes by itself: the failures appear without a key pressed.
    let s = term.wait_screen("the culprit", Duration::from_secs(10), |s| {
        s.contains("failures 4  distinct 2  lost 0") && s.contains("did you mean")
    });
    let lines: Vec<&str> = s.lines().collect();
    let header = line_of(&s, "RANK");
    assert!(lines[header].contains("PATH"), "{s}");
    let row = line_of(&s, "helpers.phpp");
    assert!(
        lines[row].trim_start().starts_with("1 ")
            && lines[row].contains("ENOENT")
            && lines[row].contains(&comm),
        "the culprit is row 1: {s}"
    );
    assert_eq!(row, header + 1, "{s}");
    assert!(
        lines[row + 1].contains(&format!("did you mean {}/helpers.php (exists)", tmp.path())),
        "its hint is under it: {s}"
    );
    // The hostile name is shown escaped, and did nothing to the terminal.
    assert!(
        s.contains(r"evil\e[2J\e[H\e]2;pwned\x07\e[31mRED\e[?1049l\e[?25h\r\nFAKE"),
        "{s}"
    );
    assert!(
        lines[0].starts_with("observer  "),
        "screen not cleared: {s}"
    );
    assert!(
        !s.lines().any(|l| l.starts_with("FAKE")),
        "no forged line: {s}"
    );
    assert_ne!(term.var("pane_title"), "pwned", "terminal not retitled");
    assert_eq!(
        term.var("alternate_on"),
        "1",
        "still on the alternate screen"
    );
    assert_eq!(term.var("cursor_flag"), "0", "cursor still hidden");
    let attrs = term.screen_with_attributes();
    assert!(!attrs.contains("\x1b[31m"), "no red text: {attrs:?}");

    term.tmux(&["send-keys", "-t", "t", "C-c"]);
    assert_eq!(
        term.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        term.screen()
    );
    let h = term.assert_clean_after_exit();
    assert!(h.contains("observer: watching"), "{h}");
    assert!(h.contains("failures 4  distinct 2  lost 0"), "{h}");
    let lines: Vec<&str> = h.lines().collect();
    let row = line_of(&h, "helpers.phpp");
    assert!(
        lines[row].trim_start().starts_with("1 ") && lines[row - 1].starts_with("RANK"),
        "{h}"
    );
    assert!(
        h.contains(&format!(
            "hint: did you mean {}/helpers.php (exists)",
            tmp.path()
        )),
        "{h}"
    );
    assert!(
        h.contains(r"evil\e[2J\e[H\e]2;pwned\x07\e[31mRED\e[?1049l\e[?25h\r\nFAKE"),
        "{h}"
    );
    assert!(!h.lines().any(|l| l.starts_with("FAKE")), "{h}");
    assert_ne!(term.var("pane_title"), "pwned");
}

#[test]
fn sigterm_and_duration_end_the_live_view_with_the_report_and_status_0() {
    let comm = unique_comm("obs-lt");
    let missing = "/nonexistent-observer-live/term.conf";

    let term = Term::start("term", 160, 30, &["--comm", &comm, "--interval", "200ms"]);
    term.wait_live();
    failer(&["--comm", &comm, &format!("openat:{missing}")]);
    term.wait_screen("the failure", Duration::from_secs(10), |s| {
        s.contains("term.conf")
    });
    // SAFETY: signalling the pane's observer, which this test started.
    unsafe { libc::kill(term.observer_pid(), libc::SIGTERM) };
    assert_eq!(
        term.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        term.screen()
    );
    let h = term.assert_clean_after_exit();
    assert!(
        h.contains("failures 1  distinct 1  lost 0") && h.contains(missing),
        "{h}"
    );
    drop(term);

    let started = Instant::now();
    let term = Term::start(
        "dur",
        160,
        30,
        &["--comm", &comm, "--interval", "200ms", "--duration", "3s"],
    );
    term.wait_live();
    failer(&["--comm", &comm, &format!("openat:{missing}")]);
    assert_eq!(
        term.wait_exit(Duration::from_secs(60)),
        0,
        "{}",
        term.screen()
    );
    let h = term.assert_clean_after_exit();
    assert!(h.contains("report in 3s"), "{h}");
    assert!(
        h.contains("failures 1  distinct 1  lost 0") && h.contains(missing),
        "{h}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
}

/// Not a terminal (a pipe): the default is the plain table, with no escape sequence in it.
#[test]
fn without_a_terminal_the_default_is_the_plain_table() {
    let comm = unique_comm("obs-pipe");
    let missing = "/nonexistent-observer-live/pipe.php";
    let obs = Observer::start_with(&["--comm", &comm], &[]);
    failer(&["--comm", &comm, &format!("openat:{missing}")]);
    let (out, _) = obs.stop_raw();
    assert!(out.starts_with("failures 1  distinct 1  lost 0\n"), "{out}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("RANK")),
        "{out}"
    );
    assert!(out.contains(missing), "{out}");
    assert!(
        !out.contains('\x1b'),
        "no escape sequence in a pipe: {out:?}"
    );
}
