//! The syntax of the values an operator types, on the command line and in the configuration
//! file alike: durations (`30s`, `1.5`), sizes (`512MiB`), points in time (`2h`, `12:00`,
//! `2024-05-01T10:00Z`), errno names and syscall names or groups. Each parser returns a value or
//! a one-line error that says what would have been accepted.

use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use observer_common::Syscall;

/// A point in time as the operator gave it: relative to now, or absolute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum When {
    Now,
    Ago(Duration),
    At(SystemTime),
}

impl When {
    pub(crate) fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            When::Now => now,
            When::Ago(d) => now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH),
            When::At(t) => t,
        }
    }
}

/// `now`, a duration back from now (`2h`), or a date and time (local unless it carries `Z` or
/// an offset).
pub(crate) fn parse_when(s: &str) -> Result<When> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(When::Now);
    }
    if t.starts_with(|c: char| c.is_ascii_digit())
        && !t.contains('-')
        && let Ok(d) = parse_duration(t)
    {
        return Ok(When::Ago(d));
    }
    // A time alone (12:00, 12:00:30) is today's.
    let dated;
    let t = if !t.contains('-') && t.contains(':') && !t.contains(' ') {
        dated = format!("{} {t}", local_today());
        dated.as_str()
    } else {
        t
    };
    parse_datetime(t).map(When::At).ok_or_else(|| {
        anyhow::anyhow!(
            "invalid time {s:?}: use a duration back from now (30m, 2h, 1d), `now`, a time today \
             (12:00), or a date and time such as 2024-05-01 12:00 (local) or 2024-05-01T10:00:00Z"
        )
    })
}

/// Today's local date, `YYYY-MM-DD`.
fn local_today() -> String {
    // SAFETY: zeroed tm is a valid value of the plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: time(NULL) and localtime_r with a valid tm; a null return leaves it zeroed.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        libc::localtime_r(&now, &mut tm);
    }
    format!(
        "{:04}-{:02}-{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday
    )
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.fff]]][Z|(+|-)HH[:]MM]`.
fn parse_datetime(s: &str) -> Option<SystemTime> {
    let num = |x: &str| -> Option<i64> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let (date, rest) = match s.find([' ', 'T', 't']) {
        Some(i) => (&s[..i], s[i + 1..].trim()),
        None => (s, ""),
    };
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some()
        || !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
    {
        return None;
    }
    // Only ASCII from here: byte offsets below are character boundaries.
    if !rest.is_ascii() {
        return None;
    }
    // Split a zone off the time: Z, or +HH:MM / -HH:MM / +HHMM.
    let (time, zone) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, Some(0i64))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let z = &rest[i + 1..];
        let (h, m) = match z.split_once(':') {
            Some((h, m)) => (num(h)?, num(m)?),
            None if z.len() == 4 => (num(&z[..2])?, num(&z[2..])?),
            None => (num(z)?, 0),
        };
        if h > 23 || m > 59 {
            return None;
        }
        let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
        (&rest[..i], Some(sign * (h * 3600 + m * 60)))
    } else {
        (rest, None)
    };
    let (mut h, mut mi, mut sec, mut ms) = (0, 0, 0, 0);
    if !time.is_empty() {
        let mut p = time.split(':');
        h = num(p.next()?)?;
        mi = num(p.next()?)?;
        if let Some(x) = p.next() {
            let (a, frac) = x.split_once('.').unwrap_or((x, ""));
            sec = num(a)?;
            if !frac.is_empty() {
                num(frac)?;
                let f: String = frac.chars().chain("000".chars()).take(3).collect();
                ms = num(&f)?;
            }
        }
        if p.next().is_some() || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
    }
    let secs = match zone {
        Some(off) => days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + sec - off,
        // (The ranges checked above keep this far from overflowing.)
        None => {
            // SAFETY: zeroed tm is a valid value of the plain C struct.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            tm.tm_year = (y - 1900) as i32;
            tm.tm_mon = (mo - 1) as i32;
            tm.tm_mday = da as i32;
            tm.tm_hour = h as i32;
            tm.tm_min = mi as i32;
            tm.tm_sec = sec as i32;
            tm.tm_isdst = -1;
            // SAFETY: mktime normalises the valid `tm` and reads the local zone.
            let t = unsafe { libc::mktime(&mut tm) };
            if t == -1 {
                return None;
            }
            t
        }
    };
    let ms_total = secs.checked_mul(1000)?.checked_add(ms)?;
    Some(if ms_total >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms_total as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms_total.unsigned_abs())
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A size in bytes: a number with an optional unit, K/KiB M/MiB G/GiB T/TiB (powers of 1024) or
/// KB MB GB TB (powers of 1000).
pub(crate) fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = (t[..split].trim(), t[split..].trim());
    let n: f64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {s:?}: use e.g. 512MiB, 2G, 1000000"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        _ => bail!("invalid size {s:?}: unknown unit {unit:?} (use KiB, MiB, GiB, or KB, MB, GB)"),
    };
    let v = n * mult;
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        bail!("invalid size {s:?}");
    }
    Ok(v as u64)
}

/// The longest duration observer takes (a century): longer ones overflow the clocks they are
/// added to, and mean nothing for a capture, a retention or a window.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A duration: seconds (`1.5`), or with units (`30s`, `5m`, `1h 30m`, `14d`), at most
/// [`MAX_DURATION`].
pub(crate) fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let d = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            bail!("invalid duration {s:?}");
        }
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    } else {
        humantime::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("invalid duration {s:?} ({e}); use e.g. 30s, 5m, 1h"))?
    };
    if d.is_zero() {
        bail!("duration must be greater than zero");
    }
    if d > MAX_DURATION {
        bail!("duration {s:?} is too long (at most 100 years)");
    }
    Ok(d)
}

pub(crate) fn parse_errno(s: &str) -> Result<i32> {
    crate::errno::parse(s).ok_or_else(|| {
        anyhow::anyhow!("unknown errno {s:?} (use a name such as ENOENT or a number)")
    })
}

pub(crate) fn parse_syscalls(s: &str) -> Result<Vec<Syscall>> {
    use observer_common::Intent;
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_prefix("sys_").unwrap_or(&s);
    let group = |i: Intent| -> Vec<Syscall> {
        Syscall::ALL
            .iter()
            .copied()
            .filter(|x| x.intent() == i)
            .collect()
    };
    Ok(match s {
        "open" => group(Intent::Open),
        "stat" => group(Intent::Stat),
        "access" => group(Intent::Access),
        "exec" => group(Intent::Exec),
        "all" => Syscall::ALL.to_vec(),
        name => match Syscall::ALL.iter().find(|x| x.name() == name) {
            Some(&x) => vec![x],
            None => {
                let names: Vec<&str> = Syscall::ALL.iter().map(|x| x.name()).collect();
                bail!(
                    "unknown syscall {name:?}: use open, stat, access, exec, all, or one of {}",
                    names.join(", ")
                )
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn syscall_groups_and_names() {
        assert_eq!(parse_syscalls("openat").unwrap(), vec![Syscall::Openat]);
        assert_eq!(parse_syscalls("stat").unwrap().len(), 4);
        assert_eq!(
            parse_syscalls("exec").unwrap(),
            vec![Syscall::Execve, Syscall::Execveat]
        );
        assert!(parse_syscalls("read").is_err());
    }

    #[test]
    fn when_values() {
        assert_eq!(parse_when("now").unwrap(), When::Now);
        assert_eq!(
            parse_when("90m").unwrap(),
            When::Ago(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_when("1d").unwrap(),
            When::Ago(Duration::from_secs(86_400))
        );
        let at = |s| match parse_when(s).unwrap() {
            When::At(t) => t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            w => panic!("{w:?}"),
        };
        assert_eq!(at("2024-05-01T12:03:10.123Z"), 1_714_564_990_123);
        assert_eq!(at("2024-05-01 14:03:10+02:00"), 1_714_564_990_000);
        assert_eq!(at("2024-05-01T07:03:10-0500"), 1_714_564_990_000);
        assert_eq!(at("2000-02-29T00:00Z"), 951_782_400_000);
        // Local times go through the local zone; they parse.
        assert!(matches!(
            parse_when("2024-05-01 12:00").unwrap(),
            When::At(_)
        ));
        assert!(matches!(parse_when("2024-05-01").unwrap(), When::At(_)));
        // A time alone is today's.
        let today = parse_when(&format!("{} 12:00", local_today())).unwrap();
        assert_eq!(parse_when("12:00").unwrap(), today);
        for bad in ["soon", "2024-13-01", "2024-05-01 25:00", "25:00", "-2h", ""] {
            assert!(parse_when(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5 GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn values_that_used_to_panic_are_errors() {
        for d in [
            "1e20",
            "1e19",
            "18446744073709551616",
            "1e308",
            "100000000000y",
        ] {
            let e = parse_duration(d).unwrap_err().to_string();
            assert!(e.contains("duration"), "{d}: {e}");
        }
        assert!(parse_duration("36500d").is_ok());
        for w in [
            "1e20",
            "2024-05-01T12:00+a€",
            "2024-05-01T12:00+€€",
            "2024-05-01T12:00:00.€",
            "99999999999999-01-01",
            "2024-05-01T12:00+99:99",
            "2024-05-01T12:00:00.99999999999999999999",
        ] {
            assert!(parse_when(w).is_err(), "{w}");
        }
        assert!(parse_size("1e400").is_err());
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Any input: a value or an error, never a panic.
            #[test]
            fn parsers_never_panic(s in "\\PC{0,40}") {
                let _ = parse_duration(&s);
                let _ = parse_size(&s);
                let _ = parse_when(&s);
                let _ = parse_errno(&s);
                let _ = parse_syscalls(&s);
                let _ = crate::capture::Filter { comms: vec![s.clone()], ..Default::default() }.validate();
                let _ = crate::capture::Filter { containers: vec![s.clone()], ..Default::default() }.validate();
            }

            /// Shaped like the values they take, with numbers and zones out of range.
            #[test]
            fn near_valid_values_never_panic(
                n in any::<f64>(), unit in "(|s|m|h|d|y|ms|KiB|GB|e[0-9]{1,3})",
                y in any::<i64>(), mo in 0i64..20, d in 0i64..40, h in 0i64..30, z in "(Z|[+-][0-9]{0,4}|[+-].{0,3}|)",
            ) {
                let _ = parse_duration(&format!("{n}{unit}"));
                let _ = parse_size(&format!("{n}{unit}"));
                let _ = parse_when(&format!("{n}{unit}"));
                let _ = parse_when(&format!("{y}-{mo:02}-{d:02}T{h:02}:00{z}"));
                let _ = parse_when(&format!("{y}-{mo}-{d} {h}:61:61.{n}"));
            }

            /// A configuration file of any text: a setting or a one-line error.
            #[test]
            fn config_files_never_panic(text in "\\PC{0,200}", key in "(flush-interval|retention|max-db-size|comm|errno|syscalls|metrics|metrics-top|db|jsonl|pid|container)", value in "\\PC{0,20}|[0-9e.]{1,25}") {
                let _ = crate::service::config::parse_text(&text);
                let _ = crate::service::config::parse_text(&format!("{key} = \"{value}\"\n"));
                let _ = crate::service::config::parse_text(&format!("{key} = {value}\n"));
            }
        }
    }
}
