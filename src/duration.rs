//! Go-style durations (`5s`, `1m30s`, `250ms`), as Kubernetes users write them.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 500ms, 5s, 1m30s, 2h)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// The longest duration Go (and so Kubernetes tooling) can express: 2^63-1 ns, about 292 years.
/// Anything longer is a mistake, and would overflow the arithmetic of whoever adds it to a time.
const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(err("empty"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..digits].parse().map_err(|_| err("bad number"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        total = Duration::try_from_secs_f64(value * scale)
            .ok()
            .and_then(|part| total.checked_add(part))
            .filter(|t| *t <= MAX)
            .ok_or_else(|| err("out of range"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("2562047h"), Ok(Duration::from_secs(2_562_047 * 3600)));
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "-1s",
            "1m30",
            "2562048h",
            "10000000000000000000s10000000000000000000s",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
