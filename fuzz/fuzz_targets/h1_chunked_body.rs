//! Any chunked response body a server sends, arriving in pieces of any size: decoding
//! never panics, never yields more data than arrived, and gives the same data, trailers
//! and verdict however the bytes were split (RFC 9112 §7.1 framing has no notion of
//! packets).
#![no_main]

use bytes::BytesMut;
use herd_gateway::chunked::{decode, Step};
use herd_gateway::h1::Chunk;
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], piece: usize) -> (Vec<u8>, Option<Vec<(String, Vec<u8>)>>, bool) {
    let mut state = Chunk::Size;
    let mut buf = BytesMut::new();
    let (mut data, mut fed) = (Vec::new(), 0);
    loop {
        match decode(&mut buf, &mut state) {
            Ok(Step::Data(d)) => data.extend_from_slice(&d),
            Ok(Step::End(t)) => {
                let t = t.map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                        .collect()
                });
                return (data, t, true);
            }
            Ok(Step::NeedMore(_)) if fed < input.len() => {
                let end = (fed + piece).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            Ok(Step::NeedMore(_)) | Err(_) => return (data, None, false),
        }
    }
}

fuzz_target!(|body: &[u8]| {
    let whole = run(body, body.len().max(1));
    // One piece size per input, varied by its length: every split is reached over a run.
    let pieces = run(body, body.len() % 13 + 1);
    assert!(whole.0.len() <= body.len());
    // Data may stop earlier on the error path only by what was fed; the verdict and, on
    // success, everything decoded must agree.
    assert_eq!(whole.2, pieces.2);
    if whole.2 {
        assert_eq!(whole.0, pieces.0);
        assert_eq!(whole.1, pieces.1);
    }
});
