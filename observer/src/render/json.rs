//! Stage 5, JSON for machines: one document per report ([`JSON_SCHEMA_DOC`]), one object per
//! line for the live stream of new failures.

use serde_json::{Map, Value, json};

use crate::aggregate::NewFailure;
use crate::errno;
use crate::escape::escape_path;
use crate::model::{Failure, Intent, Ranked, Totals};
use crate::report::referrers::Target;
use crate::report::{HistorySource, Report};
use crate::time::{rfc3339_millis, time_of_ms};

/// Version of the JSON document `document` produces.
const JSON_VERSION: u64 = 1;

/// The JSON output, as Markdown for the README.
#[cfg(test)]
pub(crate) const JSON_SCHEMA_DOC: &str = r#"### JSON output (`--format json`, schema version 1)

One document per report:

```json
{
  "version": 1,
  "observer": "0.1.0",
  "started": "2024-05-01T12:00:00.000Z",
  "ended": "2024-05-01T12:10:00.000Z",
  "filter": { "comms": ["apache2", "httpd", "php-fpm*"], "pids": [], "cgroups": [], "containers": [], "all": false, "errnos": [], "syscalls": [] },
  "totals": { "failures": 5321, "distinct": 5, "lost": 0, "overflow": 0, "dropped": 0,
              "unlisted_paths": 0, "unlisted_failures": 0 },
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
      "container": null,
      "unit": "apache2.service",
      "view": "private",
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
      "resolved": true,
      "referrers": [
        { "file": "/var/www/html/inc/loader.php", "line": 12, "text": "require __DIR__ . '/class-x.phpp';", "directive": "require", "names": "file" }
      ],
      "changed": [
        { "path": "/var/www/html/inc/loader.php", "what": "modified", "time": "2024-05-01T12:00:00.850Z", "seconds_before_first_failure": 0.4 }
      ],
      "fix": {
        "kind": "edit_line",
        "file": "/var/www/html/inc/loader.php",
        "line": 12,
        "old": "require __DIR__ . '/class-x.phpp';",
        "new": "require __DIR__ . '/class-x.php';",
        "why": "did you mean /var/www/html/inc/class-x.php (exists)",
        "reload": { "unit": "apache2.service" }
      }
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
| `totals.unlisted_paths`, `totals.unlisted_failures` | rows past the report's limit of 10,000 (the least likely culprits), and their failures: counted in `failures`, not listed in `paths` |
| `totals.dropped` | failures counted but in no row: observer's bound on distinct paths held in memory was reached (see "Security model and limits") |
| `totals.unreadable_paths` | live capture only: failing calls whose path pointer could not be read (counted, without a path) |
| `totals.unfollowed_processes` | live capture only: `--pid` descendants not followed because the pid map was full (their failures are not seen) |
| `totals.lost_directory_opens` | live capture only: directory opens the ring buffer could not deliver (failures relative to them may stay unresolved) |
| `paths[]` | one row per (path, errno, place), best culprit first: the same path failing in two containers is two rows |
| `path` | the path, absolute when it could be resolved. Exact when the name is valid UTF-8 (JSON escapes control characters, and observer also writes C1 controls, bidirectional overrides and invisible tag characters as `\uXXXX`, so a terminal that shows the raw document is safe; a JSON parser reads the same text); otherwise an escaped rendering (`\xNN` for each invalid byte) and `path_base64` holds the exact bytes (standard base64, padded) |
| `errno`, `errno_code` | symbolic (`ENOENT`) and numeric error |
| `count`, `syscalls` | failing calls, in total and per syscall |
| `open_flags` | union of the open flags of the failing open calls (0 when none) |
| `comms` | process names that made the calls |
| `container` | the container the processes ran in, from their cgroup path: `runtime` (`docker`, `containerd`, `crio`, `podman`, or `kubernetes` when only the pod is named), `id` (64 hex digits; the pod uid for `kubernetes`), `pod` (the Kubernetes pod uid, or null); null outside containers |
| `unit` | the systemd service they ran in (`apache2.service`), when not in a container; null on the host |
| `view` | where the hints looked: `host` (the processes saw observer's own filesystem), `private` (their own mount namespace or root, e.g. a container or `PrivateTmp=`: checked there), `gone` (that view ended before observer could keep it: no filesystem checks) |
| `uids` | credentials of the calling processes; `user`/`group` are null when the id has no name (names come from the processes' view: a container's own `/etc/passwd` and `/etc/group`) |
| `pids`, `pid_count` | a sample of the calling process ids, and how many there were |
| `first_seen`, `last_seen` | RFC 3339 UTC with milliseconds. `first_seen` is the kernel's timestamp of the first failure; repeats are counted in the kernel without reading a clock, so `last_seen` is the time of the poll (every `--interval`) that saw the count grow |
| `score`, `reasons` | the ranking score (2 decimals) and the reasons behind it |
| `hints[]` | live-filesystem findings: `kind` (e.g. `near_match`, `package_file_missing`, `permission_denied`, `exists_now`), `message`, optional `suggestion`, and the `weight` it added to the score. Paths inside messages are escaped |
| `truncated` | the kernel cut the path at PATH_MAX |
| `resolved` | false for a relative path whose process's working directory was not known |
| `referrers[]` | for a culprit (a failing open or exec that is not a probe): lines that name its path, in the files its processes read (or, when none does, in the web stack's configuration directories and the files beside it): `file`, `line` (1-based), `text` (the line, cut to 400 bytes around the name), `directive` (`require`, `include`, `Include`, `IncludeOptional`, `LoadModule`, `extension`, `extension_dir`, or null), `names` (`file`, or `directory` for a line naming its missing directory). At most 5, the most precise first |
| `changed[]` | for a culprit with a referrer or a strong hint: what changed between 30 minutes before its first failure and the report: `path`, `what` (`modified`: the mtime; `mode or owner changed`: the ctime alone; `entries added or removed`: a directory's mtime), `time`, `seconds_before_first_failure` (negative: after it) |
| `fix` | null for rows observer proposes no fix for; else `kind`: `edit_line` (`file`, `line`, the `old` and `new` texts of that line), `permission` (`path`, `chgrp` or null, symbolic `chmod`), `reinstall` (`path`, `packages`, `confmiss`), each with `why` and `reload` (`{"unit": ...}`, `{"pid", "comm", "signal"}` for a master outside systemd, or null); or `none` with `why` when observer is not sure |

Live events (`--format jsonl`), one object per line, emitted when a distinct failure is first seen:

```json
{"event":"new_failure","time":"2024-05-01T12:00:01.250Z","path":"/var/www/html/inc/class-x.phpp","errno":"ENOENT","errno_code":2,"syscall":"openat","comm":"apache2","pid":4101,"tid":4101,"uid":33,"gid":33,"flags":524288,"truncated":false,"resolved":true,"container":null,"unit":"apache2.service","view":"private"}
```

`path_base64` is added under the same rule as above; `container`, `unit` and `view` mean what
they mean in a report row.
"#;

pub(super) fn path_fields(map: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
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
    place_fields(&mut m, f);
    let names = f.view.names();
    let uids: Vec<Value> = f
        .creds
        .iter()
        .map(|(uid, gid)| {
            json!({
                "uid": uid,
                "user": names.user_name(*uid),
                "gid": gid,
                "group": names.group_name(*gid),
            })
        })
        .collect();
    m.insert("uids".into(), Value::Array(uids));
    m.insert("pids".into(), json!(f.pids.iter().collect::<Vec<_>>()));
    m.insert("pid_count".into(), json!(f.pid_count));
    m.insert("first_seen".into(), json!(rfc3339_millis(f.first_seen)));
    m.insert("last_seen".into(), json!(rfc3339_millis(f.last_seen)));
    m.insert("score".into(), round2(r.score));
    m.insert(
        "reasons".into(),
        json!(
            r.reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
    );
    let hints: Vec<Value> = r
        .hints
        .iter()
        .map(|h| {
            let mut o = Map::new();
            o.insert("kind".into(), json!(h.kind.as_str()));
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
    place_fields(&mut m, f);
    let ev = &r.evidence;
    let referrers: Vec<Value> = ev
        .referrers
        .iter()
        .map(|x| {
            let mut o = Map::new();
            path_fields(&mut o, "file", &x.file);
            o.insert("line".into(), json!(x.line));
            path_fields(&mut o, "text", &x.shown());
            o.insert("directive".into(), json!(x.directive.map(|d| d.as_str())));
            o.insert(
                "names".into(),
                json!(match x.target {
                    Target::File => "file",
                    Target::Directory => "directory",
                }),
            );
            Value::Object(o)
        })
        .collect();
    m.insert("referrers".into(), Value::Array(referrers));
    let changed: Vec<Value> = ev
        .changed
        .iter()
        .map(|c| {
            let mut o = Map::new();
            path_fields(&mut o, "path", &c.path);
            o.insert("what".into(), json!(c.kind.as_str()));
            o.insert("time".into(), json!(rfc3339_millis(c.at)));
            o.insert(
                "seconds_before_first_failure".into(),
                round2(c.seconds_before(f.first_seen)),
            );
            Value::Object(o)
        })
        .collect();
    m.insert("changed".into(), Value::Array(changed));
    m.insert(
        "fix".into(),
        ev.plan.as_ref().map_or(Value::Null, super::fix::json_of),
    );
    Value::Object(m)
}

/// The report as a JSON document (schema version 1, see [`JSON_SCHEMA_DOC`]), with at most
/// `top` paths.
pub(super) fn document(r: &Report, top: Option<usize>) -> Value {
    let totals = &r.totals;
    let mut t = json!({
        "failures": totals.failures,
        "distinct": totals.distinct,
        "lost": totals.lost,
        "overflow": totals.overflow,
        "dropped": totals.dropped,
        "unlisted_paths": totals.unlisted_paths,
        "unlisted_failures": totals.unlisted_failures,
    });
    if let (Some(c), Some(o)) = (totals.capture, t.as_object_mut()) {
        o.insert("unreadable_paths".into(), json!(c.unreadable_paths));
        o.insert("unfollowed_processes".into(), json!(c.unfollowed_processes));
        o.insert("lost_directory_opens".into(), json!(c.lost_directory_opens));
    }
    let shown = top.map_or(r.ranked.len(), |n| n.min(r.ranked.len()));
    let mut doc = json!({
        "version": JSON_VERSION,
        "observer": env!("CARGO_PKG_VERSION"),
        "started": rfc3339_millis(r.started),
        "ended": rfc3339_millis(r.ended),
        "filter": r.filter,
        "totals": t,
        "paths": r.ranked[..shown].iter().map(path_json).collect::<Vec<_>>(),
    });
    if let (Some(h), Some(obj)) = (&r.history, doc.as_object_mut()) {
        obj.insert("history".into(), history(h));
    }
    doc
}

/// Where a report from the history comes from (`history` member).
fn history(h: &HistorySource) -> Value {
    json!({
        "db": h.db.display().to_string(),
        "baseline": h.baseline,
        "recorded_since": h.recorded_since.map(|e| rfc3339_millis(time_of_ms(e))),
        "sessions": h.sessions.iter().map(|s| json!({
            "started": rfc3339_millis(time_of_ms(s.started_ms)),
            "until": rfc3339_millis(time_of_ms(s.until_ms)),
            "ended": s.ended,
            "filter": s.watched.as_ref().and_then(|w| serde_json::to_value(w).ok()).unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
        "gaps": gaps(&h.gaps),
        "dropped": h.dropped,
    })
}

/// `[{"from": ..., "to": ...}]`.
pub(super) fn gaps(gaps: &[(i64, i64)]) -> Value {
    Value::Array(
        gaps.iter()
            .map(|(a, b)| {
                json!({"from": rfc3339_millis(time_of_ms(*a)), "to": rfc3339_millis(time_of_ms(*b))})
            })
            .collect(),
    )
}

/// The JSON-lines stream's summary line (`--format jsonl`).
pub(super) fn summary(totals: &Totals) -> String {
    format!(
        "{}\n",
        json!({
            "event": "summary",
            "failures": totals.failures,
            "distinct": totals.distinct,
            "lost": totals.lost,
            "overflow": totals.overflow,
            "dropped": totals.dropped,
        })
    )
}

/// A first sighting as a one-row failure (what `--format jsonl` streams).
fn first_sighting(n: &NewFailure) -> Failure {
    let i = &n.info;
    let mut f = Failure::new(i.path.clone(), i.errno, n.time, n.time);
    let open_flags = if i.syscall.intent() == Intent::Open {
        i.flags
    } else {
        0
    };
    f.add_calls(i.syscall, 1, open_flags, n.time, n.time);
    f.comms.insert(i.comm.clone());
    f.creds.insert((i.uid, i.gid));
    f.pids.insert(i.tgid);
    f.pid_count = 1;
    f.truncated = i.truncated;
    f.unresolved = i.unresolved;
    f.place = i.place.place.clone();
    f.view = i.place.view.clone();
    f
}

/// The line `--format jsonl` (and `record --jsonl`) writes for a new distinct failure.
pub(crate) fn jsonl_line(n: &NewFailure) -> String {
    crate::escape::safe_json(&jsonl_event(&first_sighting(n), n.info.tid).to_string())
}

/// One live event for a distinct failure seen for the first time (`f` as first recorded: its
/// first syscall, comm, pid and credentials are the ones reported).
pub(super) fn jsonl_event(f: &Failure, tid: u32) -> Value {
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
    place_fields(&mut m, f);
    Value::Object(m)
}

/// Where the row's processes ran: `container`, `unit` and `view`.
fn place_fields(m: &mut Map<String, Value>, f: &Failure) {
    m.insert(
        "container".into(),
        f.place.container.as_ref().map_or(
            Value::Null,
            |c| json!({"runtime": c.runtime.as_str(), "id": c.id, "pod": c.pod}),
        ),
    );
    m.insert("unit".into(), json!(f.place.unit));
    let view = if !f.place.private {
        "host"
    } else if f.view.root().is_some() {
        "private"
    } else {
        "gone"
    };
    m.insert("view".into(), json!(view));
}

/// Standard base64 (RFC 4648, with padding).
pub(super) fn base64(bytes: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
