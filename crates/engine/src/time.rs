//! Time as the engine sees it: nanoseconds since the Unix epoch, passed in by the caller.
//!
//! Kubernetes writes times in two RFC 3339 shapes (`2024-05-01T12:00:03Z` and
//! `2024-05-01T12:00:03.123456Z`); both are parsed here without allocation because replay parses
//! several of them per event.

use std::fmt;
use std::time::Duration;

/// An instant, in nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(i64::MIN);

    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    pub const fn from_unix_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Whether the instant sits exactly on a whole second, as second-granularity fields do.
    pub const fn is_whole_second(self) -> bool {
        self.0 % 1_000_000_000 == 0
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_nanos(d)))
    }

    pub fn saturating_sub(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(duration_nanos(d)))
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// Parses an RFC 3339 date-time (`Z` or a numeric offset, up to nanosecond fractions).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        if !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        let hour = digits(&b[11..13])?;
        let minute = digits(&b[14..16])?;
        let second = digits(&b[17..19])?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut rest = &b[19..];
        let mut nanos: i64 = 0;
        if let Some((&b'.', frac)) = rest.split_first() {
            let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if len == 0 {
                return None;
            }
            for (i, c) in frac[..len].iter().enumerate() {
                if i < 9 {
                    nanos = nanos * 10 + i64::from(c - b'0');
                }
            }
            for _ in len..9 {
                nanos *= 10;
            }
            rest = &frac[len..];
        }
        let offset_secs = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let h = digits(&[*h1, *h2])?;
                let m = digits(&[*m1, *m2])?;
                let total = h * 3600 + m * 60;
                if *sign == b'+' { total } else { -total }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        Some(Timestamp(
            secs.checked_mul(1_000_000_000)?.checked_add(nanos)?,
        ))
    }

    /// Formats as RFC 3339 in UTC with microseconds, the precision Kubernetes `MicroTime` has.
    pub fn to_rfc3339_micros(self) -> String {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60,
            nanos / 1000
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339_micros())
    }
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil calendar algorithms (public domain), exact for the proleptic Gregorian
// calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 in and out, as Kubernetes writes times (the `serde` feature; `eventspan::wire`
/// decodes with it).
#[cfg(feature = "serde")]
mod serde_rfc3339 {
    use std::fmt;

    use super::Timestamp;

    impl<'de> serde::Deserialize<'de> for Timestamp {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct TimeVisitor;
            impl serde::de::Visitor<'_> for TimeVisitor {
                type Value = Timestamp;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an RFC 3339 timestamp")
                }
                fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                    Timestamp::parse_rfc3339(s)
                        .ok_or_else(|| E::custom(format!("invalid RFC 3339 timestamp {s:?}")))
                }
            }
            d.deserialize_str(TimeVisitor)
        }
    }

    impl serde::Serialize for Timestamp {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&self.to_rfc3339_micros())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_shapes() {
        let whole = Timestamp::parse_rfc3339("2024-05-01T12:00:03Z").unwrap();
        assert_eq!(whole.unix_nanos(), 1_714_564_803_000_000_000);
        assert!(whole.is_whole_second());
        let micro = Timestamp::parse_rfc3339("2024-05-01T12:00:03.123456Z").unwrap();
        assert_eq!(micro.unix_nanos(), 1_714_564_803_123_456_000);
        let offset = Timestamp::parse_rfc3339("2024-05-01T14:00:03+02:00").unwrap();
        assert_eq!(offset, whole);
        let nanos = Timestamp::parse_rfc3339("1970-01-01T00:00:00.000000001Z").unwrap();
        assert_eq!(nanos.unix_nanos(), 1);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:03",
            "2024-05-01T12:00:03.Z",
            "2024-05-01T12:00:03Zjunk",
            "2024-05-0xT12:00:03Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["2024-02-29T23:59:59.999999Z", "1999-12-31T00:00:00.000001Z"] {
            assert_eq!(Timestamp::parse_rfc3339(s).unwrap().to_rfc3339_micros(), s);
        }
    }
}
