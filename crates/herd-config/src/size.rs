//! Byte sizes as operators write them: "10MB", "512KiB", "1.5GB", or a bare integer of bytes.
//! Decimal units are powers of 1000 (KB, MB, GB), binary ones powers of 1024 (KiB, MiB,
//! GiB), as their names say.

/// Parse "10MB", "64 KiB", "1.5GB", "512B". Units are case-insensitive except that the
/// `i` of the binary ones must be there to mean 1024 ("kb" is 1000, "kib" 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    if num.is_empty() {
        return Err(format!(
            "\"{text}\" is not a size; write a number and a unit, e.g. \"10MB\" or \"512KiB\""
        ));
    }
    let number: f64 = num
        .parse()
        .map_err(|_| format!("\"{text}\": \"{num}\" is not a number"))?;
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "\"{text}\": unknown unit \"{other}\"; use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    let bytes = (number * factor).round();
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("\"{text}\" is too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn units() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("512B").unwrap(), 512);
        assert_eq!(parse_size("10KB").unwrap(), 10_000);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size(" 64 kib ").unwrap(), 65536);
    }

    #[test]
    fn bad_input() {
        assert!(parse_size("").unwrap_err().contains("not a size"));
        assert!(parse_size("MB").unwrap_err().contains("not a size"));
        assert!(parse_size("10XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("1.2.3MB").unwrap_err().contains("not a number"));
        assert!(parse_size("99999999999999999999999GB")
            .unwrap_err()
            .contains("too large"));
    }
}
