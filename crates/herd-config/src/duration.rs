//! Human durations as operators write them in TOML: "250ms", "2s", "1m30s", "1h".

use std::time::Duration;

/// Parse "1h30m", "2s", "250ms", "1.5s". A bare number is refused: a unit-less
/// "30" is ambiguous between seconds and milliseconds, and guessing wrong is silent.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. \"2s\" or \"500ms\"".into());
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "\"{text}\" is not a duration; write a number followed by a unit (ms, s, m, h, d), e.g. \"2s\""
            ));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("\"{text}\": \"{}\" is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            "" => {
                return Err(format!(
                    "\"{text}\" has no unit; add one of ms, s, m, h, d (e.g. \"{number}s\")"
                ))
            }
            other => {
                return Err(format!(
                    "\"{text}\": unknown unit \"{other}\"; use ms, s, m, h or d"
                ))
            }
        };
        total_nanos += (number * unit_nanos) as u128;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| format!("\"{text}\" is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(" 10us ").unwrap(), Duration::from_micros(10));
    }

    #[test]
    fn refuses_ambiguous_or_bad_text() {
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("2x").unwrap_err().contains("unknown unit"));
    }
}
