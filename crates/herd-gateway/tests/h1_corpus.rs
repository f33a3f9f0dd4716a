//! The HTTP/1.1 parsers — the request head clients send, the response head and chunk-size
//! line servers send — checked as the fuzz targets check them, by plain `cargo test`: the
//! committed corpora in `fuzz/corpus/h1_request_head/`, `h1_response_head/`,
//! `h1_chunk_size/` and `h1_chunked_body/` with the answer RFC 9112 gives for each named
//! case, then a bounded, deterministic mutation loop.

mod mutate;

use bytes::BytesMut;
use herd_gateway::chunked::{decode, Step};
use herd_gateway::h1::{parse_chunk_size, parse_head, parse_request, Chunk, Head, RequestHead};
use http::{StatusCode, Version};

/// What the response-head target asserts, for one input: a parsed head consumed a whole
/// head (ending in an empty line), has a status of three digits, and no value carries CR,
/// LF or NUL; nothing is consumed when more bytes are needed or the head is refused.
fn check_head(input: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut buf = BytesMut::from(input);
    match parse_head(&mut buf) {
        Ok(Some(head)) => {
            let used = input.len() - buf.len();
            assert!(used > 0, "a head consumed nothing: {input:?}");
            assert!(
                input[..used].ends_with(b"\n\n") || input[..used].ends_with(b"\n\r\n"),
                "consumed {used} bytes that do not end a head: {input:?}"
            );
            assert!((100..=999).contains(&head.status.as_u16()));
            for (name, value) in &head.headers {
                assert!(
                    !value
                        .as_bytes()
                        .iter()
                        .any(|b| matches!(b, b'\r' | b'\n' | 0)),
                    "{name} carries CR, LF or NUL: {input:?}"
                );
            }
            Ok(Some((head, used)))
        }
        Ok(None) => {
            assert_eq!(buf.len(), input.len(), "partial head consumed bytes");
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// RFC 9112 §7.1's chunk-size, written out: 1*HEXDIG, then BWS before an extension; a
/// recipient may take a bare LF for CRLF. At most 16 digits (a u64).
fn reference_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let size = line.split(|&b| b == b';').next()?;
    let end = size
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    let digits = &size[..end];
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[test]
fn response_heads_parse_as_the_rfc_says() {
    let corpus = mutate::corpus("h1_response_head");
    assert!(corpus.len() >= 20, "corpus has {} files", corpus.len());
    for (name, bytes) in &corpus {
        let _ = check_head(bytes).map_err(|e| format!("{name}: {e}"));
    }
    let head = |name: &str| check_head(mutate::entry(&corpus, name));

    let (h, used) = head("ok_length").unwrap().unwrap();
    assert_eq!((h.status, h.version), (StatusCode::OK, Version::HTTP_11));
    assert_eq!(h.headers["content-length"], "5");
    assert_eq!(
        used,
        mutate::entry(&corpus, "ok_length").len() - 5,
        "the body is not the head's"
    );

    let (h, _) = head("http10_no_reason").unwrap().unwrap();
    assert_eq!(
        (h.status, h.version),
        (StatusCode::NO_CONTENT, Version::HTTP_10)
    );

    // An interim answer is a head of its own: the final one stays in the buffer.
    let (h, used) = head("continue_then_ok").unwrap().unwrap();
    assert_eq!(h.status, StatusCode::CONTINUE);
    assert!(mutate::entry(&corpus, "continue_then_ok")[used..].starts_with(b"HTTP/1.1 200"));

    // §2.2: a recipient may take a bare LF as a line terminator.
    assert_eq!(head("bare_lf").unwrap().unwrap().0.status, StatusCode::OK);
    // Both framings are seen here; which one wins is the framing step's decision.
    let (h, _) = head("cl_and_te").unwrap().unwrap();
    assert!(
        h.headers.contains_key("content-length") && h.headers.contains_key("transfer-encoding")
    );

    for needs_more in ["partial", "empty"] {
        assert!(head(needs_more).unwrap().is_none(), "{needs_more}");
    }
    // §5.2: a proxy that does not replace obs-fold with SP must refuse the message (502).
    // RFC 9110 §5.5: CR, LF or NUL in a value is refused. §4: the status is three digits,
    // 1xx-5xx classes; a line without a colon is not a field; an unknown version is not
    // HTTP/1.1.
    for refused in [
        "obs_fold",
        "nul_in_value",
        "status_99",
        "status_1000",
        "header_no_colon",
        "http2_line",
        "garbage",
        "many_headers",
    ] {
        assert!(head(refused).is_err(), "{refused}: {:?}", head(refused));
    }
}

/// What the request-head target asserts: a request served on the fast path consumed one
/// whole head and carries no body framing or protocol step (those go to hyper); every
/// other verdict leaves the bytes exactly as they were, for hyper to read.
fn check_request(input: &[u8]) -> Option<RequestHead> {
    let mut buf = BytesMut::from(input);
    let r = parse_request(&mut buf);
    match &r {
        Ok(Some(RequestHead::Serve(req, _))) => {
            let used = input.len() - buf.len();
            assert!(
                used > 0
                    && (input[..used].ends_with(b"\n\n") || input[..used].ends_with(b"\n\r\n")),
                "consumed {used} bytes that do not end a head: {input:?}"
            );
            let h = req.headers();
            assert!(!h.contains_key("transfer-encoding"), "{input:?}");
            assert!(
                !h.contains_key("upgrade") && !h.contains_key("expect"),
                "{input:?}"
            );
            assert!(h
                .get_all("content-length")
                .iter()
                .all(|v| v.as_bytes().trim_ascii() == b"0"));
            assert_ne!(req.method(), http::Method::CONNECT);
            for (name, value) in h {
                assert!(
                    !value
                        .as_bytes()
                        .iter()
                        .any(|b| matches!(b, b'\r' | b'\n' | 0)),
                    "{name} carries CR, LF or NUL: {input:?}"
                );
            }
        }
        _ => assert_eq!(&buf[..], input, "a verdict other than serve consumed bytes"),
    }
    r.ok().flatten()
}

#[test]
fn request_heads_parse_as_the_rfc_says() {
    let corpus = mutate::corpus("h1_request_head");
    assert!(corpus.len() >= 20, "corpus has {} files", corpus.len());
    for (_, bytes) in &corpus {
        check_request(bytes);
    }
    let verdict = |name: &str| {
        let mut buf = BytesMut::from(mutate::entry(&corpus, name));
        (parse_request(&mut buf), buf)
    };
    let serve = |name: &str| match verdict(name) {
        (Ok(Some(RequestHead::Serve(req, keep))), rest) => (req, keep, rest),
        (other, _) => panic!("{name}: not served: {:?}", other.map(|o| o.is_some())),
    };
    let (req, keep, _) = serve("get");
    assert_eq!(
        (req.method().as_str(), req.uri().path(), keep),
        ("GET", "/", true)
    );
    assert!(
        !serve("get_close").1,
        "Connection: close ends the connection"
    );
    // Pipelined: exactly the first head is taken; the second waits in the buffer.
    let (req, _, rest) = serve("get_pipelined");
    assert_eq!(req.uri().path(), "/1");
    assert!(rest.starts_with(b"GET /2 HTTP/1.1"));
    // §3.2.2: the absolute form's authority is kept for the Host rule that follows.
    assert_eq!(serve("absolute_form").0.uri().host(), Some("b.example"));
    assert_eq!(serve("cl_zero").0.method(), http::Method::POST);
    // Two Host fields reach the Host rule (which refuses them) both, not one of them.
    assert_eq!(
        serve("two_hosts")
            .0
            .headers()
            .get_all("host")
            .iter()
            .count(),
        2
    );

    // A body, a protocol step, or another version: hyper takes the connection.
    for name in [
        "cl_body",
        "te_chunked",
        "expect",
        "upgrade",
        "connect",
        "http10",
    ] {
        assert!(
            matches!(verdict(name).0, Ok(Some(RequestHead::HandOff))),
            "{name}"
        );
    }
    // §6.3: both Transfer-Encoding and Content-Length: refused, never guessed at.
    for name in ["cl_and_te", "te_and_cl", "cl_zero_and_te"] {
        assert!(
            matches!(verdict(name).0, Ok(Some(RequestHead::Refuse(_)))),
            "{name}"
        );
    }
    // §5.2 obs-fold and §5.1 whitespace before the colon: a server must reject them (400);
    // RFC 9110 §5.5: NUL in a value; no HTTP-version; too many fields; not HTTP at all.
    for name in [
        "obs_fold",
        "space_before_colon",
        "nul_in_value",
        "no_version",
        "many_headers",
        "garbage_tls",
    ] {
        assert!(verdict(name).0.is_err(), "{name}");
    }
    for name in ["partial", "empty"] {
        assert!(matches!(verdict(name).0, Ok(None)), "{name}");
    }
}

#[test]
fn chunk_sizes_parse_as_the_rfc_says() {
    let corpus = mutate::corpus("h1_chunk_size");
    assert!(corpus.len() >= 15, "corpus has {} files", corpus.len());
    for (name, line) in &corpus {
        assert_eq!(
            parse_chunk_size(line).ok(),
            reference_chunk_size(line),
            "{name}: {line:?}"
        );
    }
    let size = |name: &str| parse_chunk_size(mutate::entry(&corpus, name)).ok();
    assert_eq!(size("zero"), Some(0));
    assert_eq!(size("hex_lower"), Some(26));
    assert_eq!(size("hex_upper"), Some(26));
    assert_eq!(size("ext"), Some(5));
    assert_eq!(size("ext_bws"), Some(5));
    assert_eq!(size("lf_only"), Some(7));
    assert_eq!(size("sixteen_f"), Some(u64::MAX));
    // The caller cuts the line at its LF; the terminator itself is optional here.
    assert_eq!(size("no_crlf"), Some(0xabc));
    for refused in [
        "seventeen_digits",
        "negative",
        "plus",
        "empty",
        "leading_space",
        "underscore",
        "hex_prefix",
        "nul",
    ] {
        assert_eq!(size(refused), None, "{refused}");
    }
}

#[test]
fn mutations_keep_the_properties() {
    let requests = mutate::corpus("h1_request_head");
    let interesting = [
        b'\r', b'\n', b' ', b'\t', b':', b'0', b'/', b'H', 0x00, 0x7f, 0xff,
    ];
    mutate::mutations(&requests, 0x5245_5155, 100_000, &interesting, |b| {
        check_request(b);
    });
    let heads = mutate::corpus("h1_response_head");
    let interesting = [
        b'\r', b'\n', b' ', b'\t', b':', b'0', b'9', b'/', 0x00, 0x7f, 0xff,
    ];
    mutate::mutations(&heads, 0x4854_5450, 100_000, &interesting, |b| {
        let _ = check_head(b);
    });
    let sizes = mutate::corpus("h1_chunk_size");
    let interesting = [
        b'\r', b'\n', b' ', b'\t', b';', b'0', b'f', b'F', b'g', b'x', 0x00,
    ];
    mutate::mutations(&sizes, 0x6368_756e, 100_000, &interesting, |line| {
        assert_eq!(
            parse_chunk_size(line).ok(),
            reference_chunk_size(line),
            "{line:?}"
        );
    });
}

/// What the chunked-body target asserts: (data, trailers as text, complete) of `body` fed
/// in pieces of `piece` bytes.
fn chunked(body: &[u8], piece: usize) -> (Vec<u8>, Vec<String>, bool) {
    let mut state = Chunk::Size;
    let mut buf = BytesMut::new();
    let (mut data, mut fed) = (Vec::new(), 0);
    loop {
        match decode(&mut buf, &mut state) {
            Ok(Step::Data(d)) => data.extend_from_slice(&d),
            Ok(Step::End(t)) => {
                let t = t
                    .map(|t| t.iter().map(|(k, v)| format!("{k}: {v:?}")).collect())
                    .unwrap_or_default();
                assert!(data.len() <= body.len());
                return (data, t, true);
            }
            Ok(Step::NeedMore(_)) if fed < body.len() => {
                let end = (fed + piece).min(body.len());
                buf.extend_from_slice(&body[fed..end]);
                fed = end;
            }
            Ok(Step::NeedMore(_)) | Err(_) => {
                assert!(data.len() <= body.len());
                return (data, Vec::new(), false);
            }
        }
    }
}

fn split_invariant(body: &[u8]) {
    let whole = chunked(body, body.len().max(1));
    for piece in 1..=16 {
        let p = chunked(body, piece);
        assert_eq!(
            p.2, whole.2,
            "verdict differs in pieces of {piece}: {body:?}"
        );
        if whole.2 {
            assert_eq!(
                (&p.0, &p.1),
                (&whole.0, &whole.1),
                "pieces of {piece}: {body:?}"
            );
        }
    }
}

#[test]
fn chunked_bodies_decode_as_the_rfc_says_in_any_pieces() {
    let corpus = mutate::corpus("h1_chunked_body");
    let expect: &[(&str, Option<&[u8]>)] = &[
        ("simple", Some(b"hello")),
        ("two_chunks", Some(b"hello world")),
        ("extensions", Some(b"hello")),
        ("hex_upper", Some(b"0123456789")),
        ("lf_only", Some(b"hello")),
        ("trailers", Some(b"abc")),
        ("empty_body", Some(b"")),
        ("data_longer_than_size", None),
        ("bad_size", None),
        ("size_overflow", None),
        ("cut_in_data", None),
        ("bad_trailer", None),
    ];
    assert_eq!(
        corpus.len(),
        expect.len(),
        "every corpus entry has its answer here"
    );
    for (name, want) in expect {
        let body = mutate::entry(&corpus, name);
        let (data, trailers, complete) = chunked(body, 3);
        match want {
            Some(d) => assert!(complete && data == *d, "{name}: {data:?}"),
            None => assert!(!complete, "{name} must not decode"),
        }
        if *name == "trailers" {
            assert_eq!(trailers, ["grpc-status: \"0\"", "x-a: \"1\""]);
        }
        split_invariant(body);
    }
    let interesting = [b'\r', b'\n', b';', b'0', b'1', b'a', b'f', b':', b' ', 0x00];
    mutate::mutations(&corpus, 0x6368_6b64, 20_000, &interesting, split_invariant);
}
