//! Any bytes a client sends first on a listener with accept_proxy_protocol: the parser must
//! answer (header or error) without panicking, and never claim more bytes than it was given.
#![no_main]

use herd_gateway::proxy_protocol::{encode, parse, Header, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, used)) = parse(data) {
        assert!(used > 0 && used <= data.len());
        // What we parsed we can write again, and it reads back the same.
        if let Header::Proxied { .. } = header {
            for v in [Version::V1, Version::V2] {
                let bytes = encode(v, &header);
                let (again, n) = parse(&bytes).expect("re-encoded header parses");
                assert_eq!(n, bytes.len());
                assert_eq!(again, header);
            }
        }
    }
});
