//! Any bytes a server sends as a response head: the parser must answer without panicking,
//! consume a whole head or nothing, and never keep CR, LF or NUL in a value.
#![no_main]

use bytes::BytesMut;
use herd_gateway::h1::parse_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(head)) = parse_head(&mut buf) {
        let used = data.len() - buf.len();
        assert!(used > 0 && data[..used].ends_with(b"\n"));
        assert!((100..=999).contains(&head.status.as_u16()));
        for value in head.headers.values() {
            assert!(!value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
        }
    } else {
        // Needing more bytes or refusing consumes nothing worth keeping.
    }
});
