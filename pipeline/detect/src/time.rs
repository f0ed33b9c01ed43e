//! Event time: EVE timestamps to microseconds since the Unix epoch and back.
//!
//! Hand-written rather than through a date crate: the input is one fixed format
//! (`2024-01-31T12:34:56.123456+0000`, also `Z` or `+01:00` offsets and no fraction), parsed
//! for every record on the hot path, where a general parser would cost more than the rest of
//! the record's work.

/// Microseconds since the Unix epoch (event time).
pub type Micros = i64;

pub const MICROS_PER_SEC: i64 = 1_000_000;

/// Parses an EVE or certificate timestamp: `YYYY-MM-DDTHH:MM:SS[.frac][Z|+HHMM|+HH:MM]`
/// (no offset means UTC). `None` when it is not one.
pub fn parse(s: &str) -> Option<Micros> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let (h, mi, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000i64;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac += i64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset = offset_secs(&b[i..])?;
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * MICROS_PER_SEC + frac)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// `""`, `Z`, `+HHMM`, `-HHMM`, `+HH:MM`: the offset east of UTC in seconds.
fn offset_secs(b: &[u8]) -> Option<i64> {
    match b {
        [] | [b'Z'] => Some(0),
        [s @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest.len() {
                4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                2 => (digits(rest, 0, 2)?, 0),
                _ => return None,
            };
            let v = h * 3600 + m * 60;
            Some(if *s == b'-' { -v } else { v })
        }
        _ => None,
    }
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian (Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats event time as EVE does: `2024-01-31T12:34:56.123456+0000`.
pub fn format(t: Micros) -> String {
    let secs = t.div_euclid(MICROS_PER_SEC);
    let us = t.rem_euclid(MICROS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{us:06}+0000",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// A duration in rule files: `90s`, `5m`, `1h`, `1d`, or plain seconds; in microseconds.
pub fn parse_duration(s: &str) -> Option<Micros> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        "ms" => 1_000,
        "s" => MICROS_PER_SEC,
        "m" => 60 * MICROS_PER_SEC,
        "h" => 3600 * MICROS_PER_SEC,
        "d" => 86_400 * MICROS_PER_SEC,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_eve_and_certificate_forms() {
        assert_eq!(parse("1970-01-01T00:00:00.000000+0000"), Some(0));
        assert_eq!(
            parse("2024-01-01T00:00:00Z"),
            Some(1_704_067_200 * MICROS_PER_SEC)
        );
        assert_eq!(
            parse("2024-01-01T01:00:00+01:00"),
            Some(1_704_067_200 * MICROS_PER_SEC)
        );
        assert_eq!(parse("2024-02-29T23:59:59.5"), Some(1_709_251_199_500_000));
        assert_eq!(parse("2024-13-01T00:00:00"), None);
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("2024-01-01T00:00:00+0x00"), None);
    }

    #[test]
    fn formats_back_what_it_parsed() {
        for s in [
            "2024-02-29T23:59:59.500000+0000",
            "1999-12-31T00:00:01.000001+0000",
        ] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("90s"), Some(90 * MICROS_PER_SEC));
        assert_eq!(parse_duration("5m"), Some(300 * MICROS_PER_SEC));
        assert_eq!(parse_duration("2"), Some(2 * MICROS_PER_SEC));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
    }
}
