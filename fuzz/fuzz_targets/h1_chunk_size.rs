//! Any chunk-size line a server sends: the size is exactly the hex digits before BWS and
//! any extension (RFC 9112 §7.1), at most 16 of them, or the line is refused.
#![no_main]

use herd_gateway::h1::parse_chunk_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Ok(n) = parse_chunk_size(line) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let digits: Vec<u8> = size
            .iter()
            .copied()
            .take_while(u8::is_ascii_hexdigit)
            .collect();
        assert!(!digits.is_empty() && digits.len() <= 16);
        let text = std::str::from_utf8(&digits).unwrap_or_default();
        assert_eq!(u64::from_str_radix(text, 16).ok(), Some(n));
    }
});
