//! Packet time. Everything downstream of capture takes time from packets, never from the wall
//! clock, so that a replay gives the same records on every run.

/// Nanoseconds since the Unix epoch, as recorded in the capture (or stamped at receive time live).
pub type Ts = u64;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Formats a packet timestamp the way Suricata's EVE does: `2024-01-31T12:34:56.123456+0000`.
pub fn format_eve(ts: Ts) -> String {
    let (y, m, d, h, mi, s, us) = civil(ts);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}+0000")
}

/// UTC calendar fields of a timestamp: year, month, day, hour, minute, second, microsecond.
pub fn civil(ts: Ts) -> (u64, u32, u32, u32, u32, u32, u32) {
    let secs = ts / NANOS_PER_SEC;
    let micros = ((ts % NANOS_PER_SEC) / 1_000) as u32;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = (secs % 86_400) as u32;
    (
        y.max(0) as u64,
        m,
        d,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        micros,
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm; a date crate would be a dependency for one function).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_and_a_leap_day() {
        assert_eq!(format_eve(0), "1970-01-01T00:00:00.000000+0000");
        // 2024-02-29T23:59:59.5Z
        assert_eq!(
            format_eve(1_709_251_199 * NANOS_PER_SEC + 500_000_000),
            "2024-02-29T23:59:59.500000+0000"
        );
    }
}
