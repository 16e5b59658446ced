//! Unix seconds ↔ RFC 3339 UTC and TOML date-times, without a calendar crate.
#![forbid(unsafe_code)]

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-23T19:00:00Z`
pub fn rfc3339(unix: u64) -> String {
    let secs = unix as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `2026-11-23`
pub fn date(unix: u64) -> String {
    let (y, mo, d) = civil_from_days((unix as i64).div_euclid(86_400));
    format!("{y:04}-{mo:02}-{d:02}")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DateError {
    #[error("a date-time needs a UTC offset (like 2026-12-31T00:00:00Z) or must be a plain date (2026-12-31)")]
    NoOffset,
    #[error("a time of day alone is not a date")]
    TimeOnly,
    #[error("the date lies before 1970")]
    BeforeEpoch,
}

/// Unix seconds of a TOML offset date-time or local date (midnight UTC).
/// A local date-time (no offset) or a bare time is refused.
pub fn from_toml(dt: &toml::value::Datetime) -> Result<u64, DateError> {
    let date = dt.date.ok_or(DateError::TimeOnly)?;
    let days = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    let mut secs = days * 86_400;
    match (dt.time, dt.offset) {
        (None, None) => {}
        (Some(_), None) => return Err(DateError::NoOffset),
        (None, Some(_)) => return Err(DateError::NoOffset),
        (Some(t), Some(off)) => {
            secs += i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second);
            if let toml::value::Offset::Custom { minutes } = off {
                secs -= i64::from(minutes) * 60;
            }
        }
    }
    u64::try_from(secs).map_err(|_| DateError::BeforeEpoch)
}

/// Parses `2026-12-31` or an RFC 3339 date-time with offset, as a CLI argument.
pub fn parse(text: &str) -> Result<u64, DateError> {
    let dt: toml::value::Datetime = text.trim().parse().map_err(|_| DateError::NoOffset)?;
    from_toml(&dt)
}

/// A TOML datetime value for unix seconds (UTC, `Z`).
pub fn to_toml(unix: u64) -> toml::value::Datetime {
    rfc3339(unix)
        .parse()
        .expect("rfc3339() always yields a valid TOML offset date-time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_111_111_109), "2005-03-18T01:58:29Z");
        assert_eq!(rfc3339(1_798_761_600), "2027-01-01T00:00:00Z");
        assert_eq!(date(951_782_400), "2000-02-29");
    }

    #[test]
    fn round_trip_over_many_days() {
        for day in (0..40_000).step_by(37) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn toml_dates_and_offsets_are_understood() {
        assert_eq!(parse("2026-12-31").unwrap(), 1_798_675_200);
        assert_eq!(parse("2026-12-31T00:00:00Z").unwrap(), 1_798_675_200);
        assert_eq!(parse("2026-12-31T02:00:00+02:00").unwrap(), 1_798_675_200);
        assert_eq!(parse("2026-12-31T00:00:00"), Err(DateError::NoOffset));
        assert!(parse("tomorrow").is_err());
        assert_eq!(to_toml(0).to_string(), "1970-01-01T00:00:00Z");
    }
}
