//! Any bytes a client sends as a request head: the parser must answer without panicking;
//! a request it serves itself carries no body framing or protocol step and no CR, LF or
//! NUL in a value; any other verdict leaves the bytes as they were, for hyper.
#![no_main]

use bytes::BytesMut;
use herd_gateway::h1::{parse_request, RequestHead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    match parse_request(&mut buf) {
        Ok(Some(RequestHead::Serve(req, _))) => {
            let used = data.len() - buf.len();
            assert!(used > 0 && data[..used].ends_with(b"\n"));
            let h = req.headers();
            assert!(!h.contains_key("transfer-encoding"));
            for value in h.values() {
                assert!(!value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
            }
        }
        _ => assert_eq!(&buf[..], data),
    }
});
