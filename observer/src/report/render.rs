//! Output: a plain table for pipes and logs, a full-screen frame for the live view, JSON for
//! machines (one document per report, one object per line for live events).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::errno;
use crate::model::{Failure, Ranked, Totals};
use crate::report::escape::{escape_path, escape_str, sanitize_text};
use crate::report::ids;
use crate::report::time::{elapsed, rfc3339_millis};

/// Version of the JSON document `json` produces.
pub const JSON_VERSION: u64 = 1;

/// The JSON output, as Markdown for the README.
pub const JSON_SCHEMA_DOC: &str = r#"### JSON output (`--format json`, schema version 1)

One document per report:

```json
{
  "version": 1,
  "observer": "0.1.0",
  "started": "2024-05-01T12:00:00.000Z",
  "ended": "2024-05-01T12:10:00.000Z",
  "filter": { "comms": ["apache2"], "pids": [], "cgroups": [], "all": false, "errnos": [], "syscalls": [] },
  "totals": { "failures": 5321, "distinct": 5, "lost": 0, "overflow": 0 },
  "paths": [
    {
      "rank": 1,
      "path": "/var/www/html/inc/class-x.phpp",
      "errno": "ENOENT",
      "errno_code": 2,
      "count": 200,
      "syscalls": { "openat": 50, "newfstatat": 150 },
      "open_flags": 524288,
      "comms": ["apache2"],
      "uids": [{ "uid": 33, "user": "www-data", "gid": 33, "group": "www-data" }],
      "pids": [4101, 4102],
      "pid_count": 2,
      "first_seen": "2024-05-01T12:00:01.250Z",
      "last_seen": "2024-05-01T12:09:58.003Z",
      "score": 7.19,
      "reasons": ["failed open (read)", "not found", "present from start", "near-identical file exists"],
      "hints": [
        {
          "kind": "near_match",
          "message": "did you mean /var/www/html/inc/class-x.php (exists)",
          "suggestion": "correct the reference from class-x.phpp to class-x.php (or rename the file)",
          "weight": 3.0
        }
      ],
      "truncated": false,
      "resolved": true
    }
  ]
}
```

| field | meaning |
|-------|---------|
| `version` | schema version; fields are only ever added within a version |
| `observer` | observer's version |
| `started`, `ended` | capture window, RFC 3339 UTC with milliseconds |
| `filter` | what was watched, as given on the command line |
| `totals.failures` | failing calls seen, all paths |
| `totals.distinct` | distinct (path, errno) rows |
| `totals.lost` | failures the kernel could not deliver (ring buffer full): counts are lower bounds when non-zero |
| `totals.overflow` | failures delivered one by one because the in-kernel aggregate was full (not lost) |
| `totals.unreadable_paths` | live capture only: failing calls whose path pointer could not be read (counted, without a path) |
| `totals.unfollowed_processes` | live capture only: `--pid` descendants not followed because the pid map was full (their failures are not seen) |
| `totals.lost_directory_opens` | live capture only: directory opens the ring buffer could not deliver (failures relative to them may stay unresolved) |
| `paths[]` | one row per (path, errno), best culprit first |
| `path` | the path, absolute when it could be resolved. Exact when the name is valid UTF-8 (JSON escapes control characters); otherwise an escaped rendering (`\xNN` for each invalid byte) and `path_base64` holds the exact bytes (standard base64, padded) |
| `errno`, `errno_code` | symbolic (`ENOENT`) and numeric error |
| `count`, `syscalls` | failing calls, in total and per syscall |
| `open_flags` | union of the open flags of the failing open calls (0 when none) |
| `comms` | process names that made the calls |
| `uids` | credentials of the calling processes; `user`/`group` are null when the id has no name |
| `pids`, `pid_count` | a sample of the calling process ids, and how many there were |
| `first_seen`, `last_seen` | RFC 3339 UTC with milliseconds. `first_seen` is the kernel's timestamp of the first failure; repeats are counted in the kernel without reading a clock, so `last_seen` is the time of the poll (every `--interval`) that saw the count grow |
| `score`, `reasons` | the ranking score (2 decimals) and the reasons behind it |
| `hints[]` | live-filesystem findings: `kind` (e.g. `near_match`, `package_file_missing`, `permission_denied`, `exists_now`), `message`, optional `suggestion`, and the `weight` it added to the score. Paths inside messages are escaped |
| `truncated` | the kernel cut the path at PATH_MAX |
| `resolved` | false for a relative path whose process's working directory was not known |

Live events (`--format jsonl`), one object per line, emitted when a distinct failure is first seen:

```json
{"event":"new_failure","time":"2024-05-01T12:00:01.250Z","path":"/var/www/html/inc/class-x.phpp","errno":"ENOENT","errno_code":2,"syscall":"openat","comm":"apache2","pid":4101,"tid":4101,"uid":33,"gid":33,"flags":524288,"truncated":false,"resolved":true}
```

`path_base64` is added under the same rule as above.
"#;

/// Options for [`table`].
#[derive(Clone, Debug)]
pub struct TableOpts {
    /// Print a "why:" line with the reasons under each row.
    pub reasons: bool,
    /// Print "hint:"/"fix:" lines under each row.
    pub hints: bool,
    /// Process names shown per row before "+N".
    pub max_comms: usize,
}

impl Default for TableOpts {
    fn default() -> Self {
        TableOpts {
            reasons: true,
            hints: true,
            max_comms: 3,
        }
    }
}

/// What the JSON document says about the capture itself.
#[derive(Clone, Debug)]
pub struct JsonMeta {
    pub started: SystemTime,
    pub ended: SystemTime,
    /// The selection the capture used (comms, pids, cgroups, errnos...), as the caller wants it
    /// to appear.
    pub filter: Value,
}

/// "openat 3, newfstatat 9".
pub fn syscalls_summary(f: &Failure) -> String {
    f.syscalls
        .iter()
        .map(|(s, n)| format!("{} {n}", s.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn comms_summary(f: &Failure, max: usize) -> String {
    let max = max.max(1);
    let mut s = f
        .comms
        .iter()
        .take(max)
        .map(|c| escape_str(c))
        .collect::<Vec<_>>()
        .join(",");
    if f.comms.len() > max {
        let _ = write!(s, ",+{}", f.comms.len() - max);
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

fn totals_line(totals: &Totals) -> String {
    let mut s = format!(
        "failures {}  distinct {}  lost {}",
        totals.failures, totals.distinct, totals.lost
    );
    if totals.overflow > 0 {
        let _ = write!(s, "  overflow {}", totals.overflow);
    }
    s
}

struct Cells {
    rank: String,
    score: String,
    count: String,
    errno: String,
    syscalls: String,
    comms: String,
    path: String,
}

impl Cells {
    /// The column titles, for the table and the live view.
    fn header() -> Cells {
        Cells {
            rank: "RANK".into(),
            score: "SCORE".into(),
            count: "COUNT".into(),
            errno: "ERRNO".into(),
            syscalls: "SYSCALLS".into(),
            comms: "COMMS".into(),
            path: "PATH".into(),
        }
    }
}

/// The path as a table shows it. An empty one would be an empty cell: it is named instead (the
/// kernel could not read the caller's pointer, EFAULT, or the caller passed "", which fails with
/// ENOENT and is a real bug worth seeing).
fn path_text(f: &Failure) -> String {
    match (f.path.is_empty(), f.errno) {
        (false, _) => escape_path(&f.path),
        (true, libc::EFAULT) => "(path unreadable: bad pointer)".to_string(),
        (true, _) => "\"\" (empty path)".to_string(),
    }
}

fn cells(r: &Ranked, max_comms: usize) -> Cells {
    let f = &r.failure;
    let mut path = path_text(f);
    if f.truncated {
        path.push_str(" [truncated]");
    }
    if f.unresolved && !f.path.is_empty() {
        path.push_str(" [relative]");
    }
    Cells {
        rank: r.rank.to_string(),
        score: format!("{:.2}", r.score),
        count: f.count.to_string(),
        errno: errno::name(f.errno),
        syscalls: syscalls_summary(f),
        comms: comms_summary(f, max_comms),
        path,
    }
}

/// The plain table for pipes and logs. No colours; paths and comms escaped; the path is the last
/// column, so a long one only makes its own line long.
pub fn table(ranked: &[Ranked], totals: &Totals, top: Option<usize>, opts: &TableOpts) -> String {
    let shown = top.map_or(ranked.len(), |n| n.min(ranked.len()));
    let mut out = totals_line(totals);
    if shown < ranked.len() {
        let _ = write!(out, "  (top {shown} of {} shown)", ranked.len());
    }
    out.push('\n');
    if ranked.is_empty() {
        out.push_str("no failed opens or stats recorded\n");
        return out;
    }
    let rows: Vec<Cells> = ranked[..shown]
        .iter()
        .map(|r| cells(r, opts.max_comms))
        .collect();
    let head = Cells::header();
    let w = |get: fn(&Cells) -> &String| {
        rows.iter()
            .chain(std::iter::once(&head))
            .map(|c| width_of(get(c)))
            .max()
            .unwrap_or(0)
    };
    let widths = [
        w(|c| &c.rank),
        w(|c| &c.score),
        w(|c| &c.count),
        w(|c| &c.errno),
        w(|c| &c.syscalls),
        w(|c| &c.comms),
    ];
    let line = |c: &Cells| {
        let mut s = String::new();
        s.push_str(&pad_left(&c.rank, widths[0]));
        s.push_str("  ");
        s.push_str(&pad_left(&c.score, widths[1]));
        s.push_str("  ");
        s.push_str(&pad_left(&c.count, widths[2]));
        s.push_str("  ");
        s.push_str(&pad_right(&c.errno, widths[3]));
        s.push_str("  ");
        s.push_str(&pad_right(&c.syscalls, widths[4]));
        s.push_str("  ");
        s.push_str(&pad_right(&c.comms, widths[5]));
        s.push_str("  ");
        s.push_str(&c.path);
        s
    };
    out.push_str(&line(&head));
    out.push('\n');
    for (r, c) in ranked[..shown].iter().zip(&rows) {
        out.push_str(&line(c));
        out.push('\n');
        if opts.reasons && !r.reasons.is_empty() {
            let why: Vec<String> = r.reasons.iter().map(|s| sanitize_text(s)).collect();
            let _ = writeln!(out, "      why: {}", why.join(", "));
        }
        if opts.hints {
            for h in &r.hints {
                let _ = writeln!(out, "      hint: {}", sanitize_text(&h.message));
                if let Some(s) = &h.suggestion {
                    let _ = writeln!(out, "        fix: {}", sanitize_text(s));
                }
            }
        }
    }
    out
}

/// One frame of the live view, drawn over the previous one: cursor home, each line cleared to
/// its end, everything below cleared. Fits `width` x `height` cells.
pub fn live_frame(
    ranked: &[Ranked],
    totals: &Totals,
    top: Option<usize>,
    width: usize,
    height: usize,
    elapsed_time: Duration,
    header_info: &str,
) -> String {
    const HOME: &str = "\x1b[H";
    const EOL: &str = "\x1b[K";
    const EOS: &str = "\x1b[J";
    const BOLD: &str = "\x1b[1m";
    const RESET: &str = "\x1b[0m";
    if width == 0 || height == 0 {
        return format!("{HOME}{EOS}");
    }
    let mut lines: Vec<String> = Vec::new();
    let mut head = String::from("observer");
    let info = sanitize_text(header_info);
    if !info.is_empty() {
        head.push_str("  ");
        head.push_str(&info);
    }
    let _ = write!(head, "  {}  {}", elapsed(elapsed_time), totals_line(totals));
    lines.push(format!("{BOLD}{}{RESET}", truncate_end(&head, width)));

    let total = top.map_or(ranked.len(), |n| n.min(ranked.len()));
    if height >= 2 {
        if ranked.is_empty() {
            lines.push(truncate_end("no failed opens or stats yet", width));
        } else {
            let rows: Vec<Cells> = ranked[..total].iter().map(|r| cells(r, 2)).collect();
            let cap = |get: fn(&Cells) -> &String, min: usize, max: usize| {
                rows.iter()
                    .map(|c| width_of(get(c)))
                    .max()
                    .unwrap_or(0)
                    .clamp(min, max)
            };
            let wr = cap(|c| &c.rank, 4, 6);
            let ws = cap(|c| &c.score, 5, 7);
            let wc = cap(|c| &c.count, 5, 10);
            let we = cap(|c| &c.errno, 5, 12);
            let mut wy = cap(|c| &c.syscalls, 8, 20);
            let mut wm = cap(|c| &c.comms, 5, 12);
            // The path matters most: drop COMMS, then SYSCALLS, before it gets less than 40% of
            // the line (or less than it needs).
            let want_path = cap(|c| &c.path, 4, usize::MAX).min((width * 2 / 5).max(24));
            let fixed = |wy: usize, wm: usize| {
                wr + ws
                    + wc
                    + we
                    + 8
                    + if wy > 0 { wy + 2 } else { 0 }
                    + if wm > 0 { wm + 2 } else { 0 }
            };
            if width.saturating_sub(fixed(wy, wm)) < want_path {
                wm = 0;
            }
            if width.saturating_sub(fixed(wy, wm)) < want_path {
                wy = 0;
            }
            let wp = width.saturating_sub(fixed(wy, wm)).max(12);
            let row = |c: &Cells| {
                let mut s = format!(
                    "{}  {}  {}  {}  ",
                    pad_left(&c.rank, wr),
                    pad_left(&c.score, ws),
                    pad_left(&c.count, wc),
                    pad_right(&truncate_end(&c.errno, we), we),
                );
                if wy > 0 {
                    s.push_str(&pad_right(&truncate_end(&c.syscalls, wy), wy));
                    s.push_str("  ");
                }
                if wm > 0 {
                    s.push_str(&pad_right(&truncate_end(&c.comms, wm), wm));
                    s.push_str("  ");
                }
                s.push_str(&truncate_middle(&c.path, wp));
                s
            };
            let header = Cells::header();
            lines.push(truncate_end(&row(&header), width));
            // Rows first; spare lines show the top rows' first hint (or reasons).
            let avail = height - lines.len();
            let reserve = if avail > 6 { total.min(3) } else { 0 };
            let n_rows = total.min(avail - reserve);
            let mut spare = avail - n_rows;
            for (r, c) in ranked[..n_rows].iter().zip(&rows) {
                lines.push(truncate_end(&row(c), width));
                if spare > 0 {
                    let detail = match r.hints.first() {
                        Some(h) => format!("      \u{21b3} {}", sanitize_text(&h.message)),
                        None => format!("      why: {}", sanitize_text(&r.reasons.join(", "))),
                    };
                    lines.push(truncate_end(&detail, width));
                    spare -= 1;
                }
            }
        }
    }
    lines.truncate(height);
    let mut out = String::from(HOME);
    out.push_str(&lines.join(&format!("{EOL}\r\n")));
    out.push_str(EOL);
    out.push_str(EOS);
    out
}

fn path_fields(map: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            map.insert(key.into(), Value::String(s.to_string()));
        }
        Err(_) => {
            map.insert(key.into(), Value::String(escape_path(bytes)));
            map.insert(format!("{key}_base64"), Value::String(base64(bytes)));
        }
    }
}

fn round2(x: f64) -> Value {
    let r = (x * 100.0).round() / 100.0;
    serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number)
}

fn path_json(r: &Ranked) -> Value {
    let f = &r.failure;
    let mut m = Map::new();
    m.insert("rank".into(), json!(r.rank));
    path_fields(&mut m, "path", &f.path);
    m.insert("errno".into(), json!(errno::name(f.errno)));
    m.insert("errno_code".into(), json!(f.errno));
    m.insert("count".into(), json!(f.count));
    let syscalls: Map<String, Value> = f
        .syscalls
        .iter()
        .map(|(s, n)| (s.name().to_string(), json!(n)))
        .collect();
    m.insert("syscalls".into(), Value::Object(syscalls));
    m.insert("open_flags".into(), json!(f.open_flags));
    m.insert("comms".into(), json!(f.comms.iter().collect::<Vec<_>>()));
    let uids: Vec<Value> = f
        .creds
        .iter()
        .map(|(uid, gid)| {
            json!({
                "uid": uid,
                "user": ids::user_name(*uid),
                "gid": gid,
                "group": ids::group_name(*gid),
            })
        })
        .collect();
    m.insert("uids".into(), Value::Array(uids));
    m.insert("pids".into(), json!(f.pids.iter().collect::<Vec<_>>()));
    m.insert("pid_count".into(), json!(f.pid_count));
    m.insert("first_seen".into(), json!(rfc3339_millis(f.first_seen)));
    m.insert("last_seen".into(), json!(rfc3339_millis(f.last_seen)));
    m.insert("score".into(), round2(r.score));
    m.insert("reasons".into(), json!(r.reasons));
    let hints: Vec<Value> = r
        .hints
        .iter()
        .map(|h| {
            let mut o = Map::new();
            o.insert("kind".into(), json!(h.kind));
            o.insert("message".into(), json!(h.message));
            if let Some(s) = &h.suggestion {
                o.insert("suggestion".into(), json!(s));
            }
            o.insert("weight".into(), round2(h.weight));
            Value::Object(o)
        })
        .collect();
    m.insert("hints".into(), Value::Array(hints));
    m.insert("truncated".into(), json!(f.truncated));
    m.insert("resolved".into(), json!(!f.unresolved));
    Value::Object(m)
}

/// The report as a JSON document (schema version 1, see [`JSON_SCHEMA_DOC`]).
pub fn json(ranked: &[Ranked], totals: &Totals, meta: &JsonMeta) -> Value {
    let mut t = json!({
        "failures": totals.failures,
        "distinct": totals.distinct,
        "lost": totals.lost,
        "overflow": totals.overflow,
    });
    if let (Some(c), Some(o)) = (totals.capture, t.as_object_mut()) {
        o.insert("unreadable_paths".into(), json!(c.unreadable_paths));
        o.insert("unfollowed_processes".into(), json!(c.unfollowed_processes));
        o.insert("lost_directory_opens".into(), json!(c.lost_directory_opens));
    }
    json!({
        "version": JSON_VERSION,
        "observer": env!("CARGO_PKG_VERSION"),
        "started": rfc3339_millis(meta.started),
        "ended": rfc3339_millis(meta.ended),
        "filter": meta.filter,
        "totals": t,
        "paths": ranked.iter().map(path_json).collect::<Vec<_>>(),
    })
}

/// One live event for a distinct failure seen for the first time (`f` as first recorded: its
/// first syscall, comm, pid and credentials are the ones reported).
pub fn jsonl_event(f: &Failure, tid: u32) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), json!("new_failure"));
    m.insert("time".into(), json!(rfc3339_millis(f.first_seen)));
    path_fields(&mut m, "path", &f.path);
    m.insert("errno".into(), json!(errno::name(f.errno)));
    m.insert("errno_code".into(), json!(f.errno));
    m.insert(
        "syscall".into(),
        json!(f.syscalls.keys().next().map(|s| s.name())),
    );
    m.insert("comm".into(), json!(f.comms.iter().next()));
    m.insert("pid".into(), json!(f.pids.iter().next()));
    m.insert("tid".into(), json!(tid));
    let cred = f.creds.iter().next();
    m.insert("uid".into(), json!(cred.map(|c| c.0)));
    m.insert("gid".into(), json!(cred.map(|c| c.1)));
    m.insert("flags".into(), json!(f.open_flags));
    m.insert("truncated".into(), json!(f.truncated));
    m.insert("resolved".into(), json!(!f.unresolved));
    Value::Object(m)
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = |shift: u32| char::from(A[((n >> shift) & 63) as usize]);
        out.push(idx(18));
        out.push(idx(12));
        out.push(if chunk.len() > 1 { idx(6) } else { '=' });
        out.push(if chunk.len() > 2 { idx(0) } else { '=' });
    }
    out
}

// ---- Display width ----

/// Terminal cells a character takes: 0 for combining marks, 2 for East Asian wide and emoji,
/// 1 otherwise. (Escaped text holds no control characters.)
fn char_width(c: char) -> usize {
    let u = c as u32;
    let zero = [
        (0x0300, 0x036f),
        (0x0483, 0x0489),
        (0x0591, 0x05bd),
        (0x0610, 0x061a),
        (0x064b, 0x065f),
        (0x1ab0, 0x1aff),
        (0x1dc0, 0x1dff),
        (0x200b, 0x200f),
        (0x20d0, 0x20ff),
        (0xfe00, 0xfe0f),
        (0xfe20, 0xfe2f),
    ];
    if zero.iter().any(|(a, b)| (*a..=*b).contains(&u)) {
        return 0;
    }
    let wide = [
        (0x1100, 0x115f),
        (0x2e80, 0x303e),
        (0x3041, 0x33ff),
        (0x3400, 0x4dbf),
        (0x4e00, 0x9fff),
        (0xa000, 0xa4cf),
        (0xac00, 0xd7a3),
        (0xf900, 0xfaff),
        (0xfe30, 0xfe4f),
        (0xff00, 0xff60),
        (0xffe0, 0xffe6),
        (0x1f300, 0x1f64f),
        (0x1f900, 0x1f9ff),
        (0x20000, 0x2fffd),
        (0x30000, 0x3fffd),
    ];
    if wide.iter().any(|(a, b)| (*a..=*b).contains(&u)) {
        2
    } else {
        1
    }
}

/// Display width of a string.
pub fn width_of(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn pad_left(s: &str, w: usize) -> String {
    let n = w.saturating_sub(width_of(s));
    format!("{}{s}", " ".repeat(n))
}

fn pad_right(s: &str, w: usize) -> String {
    let n = w.saturating_sub(width_of(s));
    format!("{s}{}", " ".repeat(n))
}

/// Cuts `s` to `max` cells, ending with `…` when cut.
pub fn truncate_end(s: &str, max: usize) -> String {
    if width_of(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if w + cw > max - 1 {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('\u{2026}');
    out
}

/// Cuts `s` to `max` cells by removing its middle (`/var/www/…/class-x.php`): the file name at
/// the end is what matters most, so the tail keeps two thirds.
pub fn truncate_middle(s: &str, max: usize) -> String {
    if width_of(s) <= max {
        return s.to_string();
    }
    if max <= 1 {
        return "\u{2026}".repeat(max);
    }
    let budget = max - 1;
    let head_w = budget / 3;
    let tail_w = budget - head_w;
    let mut head = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if w + cw > head_w {
            break;
        }
        head.push(c);
        w += cw;
    }
    let mut tail: Vec<char> = Vec::new();
    let mut w = 0;
    for c in s.chars().rev() {
        let cw = char_width(c);
        if w + cw > tail_w {
            break;
        }
        tail.push(c);
        w += cw;
    }
    tail.reverse();
    let mut out = head;
    out.push('\u{2026}');
    out.extend(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hint, Syscall};
    use crate::report::testutil::{failure, golden, golden_json, t0};
    use std::time::Duration;

    fn hint(kind: &str, message: &str, suggestion: Option<&str>, weight: f64) -> Hint {
        Hint {
            kind: kind.into(),
            message: message.into(),
            suggestion: suggestion.map(Into::into),
            weight,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const HOSTILE: &[u8] = b"/var/www/html/\x1b[31mred\nline\xff\xfe.php";

    /// A fixed report: no filesystem, no clock, no NSS beyond uid/gid 0.
    fn fixture() -> (Vec<Ranked>, Totals) {
        let mut require = failure(
            "/var/www/html/wp-content/plugins/shop/class-shop.phpp",
            libc::ENOENT,
            &[(Syscall::Openat, 50), (Syscall::Newfstatat, 150)],
        );
        require.open_flags = 0o2000000;
        require.pids = [4101, 4102].into();
        require.pid_count = 2;
        let mut denied = failure("/etc/app/config.php", libc::EACCES, &[(Syscall::Openat, 3)]);
        denied.creds = [(4_242_420, 4_242_420)].into();
        denied.comms = ["php-fpm8.2".to_string()].into();
        denied.first_seen = t0() + Duration::from_millis(312_250);
        denied.last_seen = t0() + Duration::from_millis(598_003);
        let hta = failure(
            "/var/www/html/wp-content/.htaccess",
            libc::ENOENT,
            &[(Syscall::Openat, 5000)],
        );
        let mut hostile = failure(
            "/",
            libc::ENOENT,
            &[(Syscall::Newfstatat, 2), (Syscall::Newlstat, 2)],
        );
        hostile.path = HOSTILE.to_vec();
        hostile.comms = ["apache2".to_string(), "evil\x1b]0;x\x07".to_string()].into();
        let mut long = failure(
            &format!(
                "/srv/{}/deep/config.inc.php",
                "very-long-directory-name/".repeat(6)
            ),
            libc::ENOTDIR,
            &[(Syscall::Openat, 7)],
        );
        long.comms = [
            "apache2".into(),
            "php-fpm8.2".into(),
            "cron".into(),
            "sh".into(),
        ]
        .into();
        let ranked = vec![
            Ranked {
                rank: 1,
                failure: require,
                score: 7.186_543,
                reasons: strings(&[
                    "failed open (read)",
                    "not found",
                    "present from start",
                    "near-identical file exists",
                ]),
                hints: vec![hint(
                    "near_match",
                    "did you mean /var/www/html/wp-content/plugins/shop/class-shop.php (exists)",
                    Some(
                        "correct the reference from class-shop.phpp to class-shop.php (or rename the file)",
                    ),
                    3.0,
                )],
            },
            Ranked {
                rank: 2,
                failure: denied,
                score: 6.873,
                reasons: strings(&[
                    "failed open (read)",
                    "permission denied",
                    "new since 12:05:12",
                    "denied by permissions",
                ]),
                hints: vec![hint(
                    "permission_denied",
                    "uid 4242420 cannot read /etc/app/config.php (-rw------- 0600 root:root)",
                    Some(
                        "chgrp 4242420 /etc/app/config.php && chmod g+r /etc/app/config.php (or: chmod o+r /etc/app/config.php, for every user)",
                    ),
                    3.0,
                )],
            },
            Ranked {
                rank: 3,
                failure: hostile,
                score: 2.1,
                reasons: strings(&["stat probe", "not found", "present from start"]),
                hints: vec![],
            },
            Ranked {
                rank: 4,
                failure: long,
                score: 2.055,
                reasons: strings(&[
                    "failed open (read)",
                    "not a directory",
                    "present from start",
                ]),
                hints: vec![hint(
                    "not_a_directory",
                    "/srv/x is a regular file, not a directory, but the path continues below it",
                    None,
                    0.3,
                )],
            },
            Ranked {
                rank: 5,
                failure: hta,
                score: 1.61,
                reasons: strings(&[
                    "failed open (read)",
                    "not found",
                    "present from start",
                    "probe pattern (.htaccess)",
                ]),
                hints: vec![],
            },
        ];
        let totals = Totals {
            failures: 5216,
            distinct: 5,
            lost: 2,
            overflow: 0,
            capture: None,
        };
        (ranked, totals)
    }

    fn meta() -> JsonMeta {
        JsonMeta {
            started: t0(),
            ended: t0() + Duration::from_secs(600),
            filter: json!({"comm": ["apache2", "php-fpm8.2"]}),
        }
    }

    #[test]
    fn table_golden() {
        let (r, t) = fixture();
        let out = table(&r, &t, None, &TableOpts::default());
        golden("table.txt", &out);
        assert!(!out.contains('\x1b'), "raw ESC in table output");
        assert!(out.contains("\\e[31mred\\nline\\xff\\xfe.php"));
        let top = table(
            &r,
            &t,
            Some(2),
            &TableOpts {
                reasons: false,
                hints: false,
                max_comms: 1,
            },
        );
        golden("table_top2.txt", &top);
        let empty = table(&[], &Totals::default(), None, &TableOpts::default());
        assert_eq!(
            empty,
            "failures 0  distinct 0  lost 0\nno failed opens or stats recorded\n"
        );
    }

    #[test]
    fn json_golden() {
        let (r, t) = fixture();
        let mut v = json(&r, &t, &meta());
        assert_eq!(v["observer"], env!("CARGO_PKG_VERSION"));
        v["observer"] = json!("VERSION");
        let hostile = &v["paths"][2];
        assert_eq!(
            hostile["path"],
            "/var/www/html/\\e[31mred\\nline\\xff\\xfe.php"
        );
        assert_eq!(hostile["path_base64"], base64(HOSTILE));
        // Valid UTF-8 comms go out exact.
        assert_eq!(hostile["comms"][1], "evil\x1b]0;x\x07");
        assert!(v["paths"][0].get("path_base64").is_none());
        golden_json("report.json", &v);

        let ev = jsonl_event(&r[2].failure, 4103);
        assert_eq!(ev["path_base64"], base64(HOSTILE));
        let line = serde_json::to_string(&ev).unwrap();
        assert!(!line.contains('\n') && !line.contains('\x1b'));
        golden("event.jsonl", &(line + "\n"));
    }

    #[test]
    fn exact_utf8_path_with_controls_in_json() {
        let (mut r, t) = fixture();
        r[0].failure.path = b"/tmp/\x1b[31mx\n.php".to_vec();
        let v = json(&r[..1], &t, &meta());
        assert_eq!(v["paths"][0]["path"], "/tmp/\x1b[31mx\n.php");
        assert!(v["paths"][0].get("path_base64").is_none());
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains('\x1b') && !text.contains('\n'));
        let t = table(&r[..1], &t, None, &TableOpts::default());
        assert!(t.contains("/tmp/\\e[31mx\\n.php"));
    }

    #[test]
    fn live_golden_and_fit() {
        let (r, t) = fixture();
        let frame = live_frame(
            &r,
            &t,
            None,
            100,
            12,
            Duration::from_secs(75),
            "comm apache2,php-fpm8.2",
        );
        golden("live.txt", &frame);
        for (width, height) in [
            (100, 12),
            (80, 4),
            (40, 30),
            (20, 3),
            (1, 1),
            (200, 50),
            (0, 0),
        ] {
            let frame = live_frame(&r, &t, Some(4), width, height, Duration::ZERO, "x\x1b[2J");
            assert!(frame.starts_with("\x1b[H"));
            assert!(frame.ends_with("\x1b[J"));
            let body = &frame[3..frame.len() - 3];
            let lines: Vec<&str> = if body.is_empty() {
                vec![]
            } else {
                body.split("\r\n").collect()
            };
            assert!(
                lines.len() <= height,
                "{width}x{height}: {} lines",
                lines.len()
            );
            for l in lines {
                let l = l.strip_suffix("\x1b[K").expect("line not cleared to end");
                let plain = l.replace("\x1b[1m", "").replace("\x1b[0m", "");
                assert!(!plain.contains('\x1b'), "stray escape in {plain:?}");
                assert!(width_of(&plain) <= width, "{width}x{height}: {plain:?}");
            }
        }
    }

    #[test]
    fn empty_paths_are_named_not_blank() {
        let mut f = failure("/", libc::ENOENT, &[(Syscall::Openat, 1)]);
        f.path = Vec::new();
        f.unresolved = true;
        assert_eq!(path_text(&f), "\"\" (empty path)");
        f.errno = libc::EFAULT;
        let r = Ranked {
            rank: 1,
            failure: f,
            score: 1.0,
            reasons: vec![],
            hints: vec![],
        };
        assert_eq!(cells(&r, 3).path, "(path unreadable: bad pointer)");
    }

    #[test]
    fn truncation() {
        assert_eq!(
            truncate_middle("/var/www/html/index.php", 12),
            "/va…ndex.php"
        );
        assert_eq!(width_of(&truncate_middle("/srv/日本語/ファイル.php", 9)), 9);
        assert!(width_of(&truncate_middle("/srv/日本語/ファイル.php", 10)) <= 10);
        assert_eq!(truncate_end("abcdef", 4), "abc…");
        assert_eq!(truncate_end("abc", 3), "abc");
        assert_eq!(truncate_middle("abc", 1), "…");
    }

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"\xff\xfe\x00"), "//4A");
    }
}
