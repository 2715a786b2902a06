//! Timestamps: Unix milliseconds (the history's), RFC 3339 in UTC for machines, local wall-clock
//! for operators.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds and milliseconds since the epoch (negative seconds before it).
fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            d.subsec_millis(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
            if d.subsec_nanos() == 0 {
                (-secs, 0)
            } else {
                // Round toward -inf so the millis stay positive.
                let ms = 1000 - (d.subsec_nanos().div_ceil(1_000_000)).min(1000);
                if ms == 1000 {
                    (-secs, 0)
                } else {
                    (-secs - 1, ms)
                }
            }
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A time of Unix milliseconds (negative before 1970).
/// The time of Unix milliseconds `ms`, held to 1970..=9999 (a value out of that range can only
/// come from a damaged or hostile history, and would overflow the calendar arithmetic).
pub(crate) fn time_of_ms(ms: i64) -> SystemTime {
    const MAX_MS: i64 = 253_402_300_799_999;
    UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_MS) as u64)
}

/// Unix milliseconds of a time.
pub(crate) fn ms_of(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// `2024-05-01T12:03:10.123Z`.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let (secs, ms) = split(t);
    // Clamp to years 0..=9999 so the format stays RFC 3339.
    let secs = secs.clamp(-62_167_219_200, 253_402_300_799);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Local broken-down time, or UTC when the local zone cannot be read.
fn local_tm(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let (secs, _) = split(t);
    // 64-bit time_t (every target observer supports).
    let tt: libc::time_t = secs;
    // SAFETY: zeroed tm is a valid value of the plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r fills `tm` from `tt` and returns null on failure.
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    if !r.is_null() {
        let u = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
        return (
            i64::from(tm.tm_year) + 1900,
            u(tm.tm_mon) + 1,
            u(tm.tm_mday),
            u(tm.tm_hour),
            u(tm.tm_min),
            u(tm.tm_sec),
        );
    }
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil(days);
    (
        y,
        mo,
        d,
        (sod / 3600) as u32,
        (sod % 3600 / 60) as u32,
        (sod % 60) as u32,
    )
}

/// `12:03:10` in local time, or `2024-05-01 12:03:10` when `t` is not on the same local day as
/// `reference`.
pub(crate) fn local_clock(t: SystemTime, reference: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = local_tm(t);
    let (ry, rmo, rd, ..) = local_tm(reference);
    if (y, mo, d) == (ry, rmo, rd) {
        format!("{h:02}:{mi:02}:{s:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    }
}

/// `1:02:03` / `02:03` for an elapsed duration.
pub(crate) fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_990_123);
        assert_eq!(rfc3339_millis(t), "2024-05-01T12:03:10.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day
        assert_eq!(rfc3339_millis(t), "2000-02-29T00:00:00.000Z");
        let t = UNIX_EPOCH - Duration::from_millis(1);
        assert_eq!(rfc3339_millis(t), "1969-12-31T23:59:59.999Z");
        assert_eq!(elapsed(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(elapsed(Duration::from_secs(65)), "01:05");
    }
}
