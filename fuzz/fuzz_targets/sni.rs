//! Any bytes a client sends first on a tcp listener with sni_routes: the ClientHello scan
//! must answer without panicking, and a name it returns is a plain lower-case host name.
#![no_main]

use herd_gateway::sni::{scan, Scan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Scan::Hello(Some(name)) = scan(data) {
        assert!(!name.is_empty() && name.len() <= 253);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
    }
});
