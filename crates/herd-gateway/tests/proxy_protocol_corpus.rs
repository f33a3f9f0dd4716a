//! The fuzz target's checks, run by plain `cargo test` (cargo-fuzz needs nightly): the
//! committed corpus in `fuzz/corpus/proxy_protocol/`, then a bounded, deterministic
//! mutation loop over it, then encode/parse round trips of random addresses.

mod mutate;

use herd_balance::Rng;
use herd_gateway::proxy_protocol::{
    encode, parse, same_family, Header, ParseError, Version, V2_MAX_LEN,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn corpus() -> Vec<(String, Vec<u8>)> {
    mutate::corpus("proxy_protocol")
}

/// What the fuzz target asserts, for one input.
fn check(input: &[u8]) -> Result<(Header, usize), ParseError> {
    let r = parse(input);
    if let Ok((header, used)) = &r {
        assert!(
            *used > 0 && *used <= input.len() && *used <= V2_MAX_LEN,
            "claimed {used} of {} bytes: {input:?}",
            input.len()
        );
        if let Header::Proxied { .. } = header {
            for v in [Version::V1, Version::V2] {
                let bytes = encode(v, header);
                assert_eq!(
                    parse(&bytes),
                    Ok((*header, bytes.len())),
                    "{v:?} {header:?}"
                );
            }
        }
    }
    r
}

#[test]
fn corpus_parses_as_named() {
    let files = corpus();
    assert!(files.len() >= 30, "corpus has only {} files", files.len());
    let mut ok = 0;
    for (name, bytes) in &files {
        let r = check(bytes);
        let valid = name.starts_with("v1_tcp")
            || name.starts_with("v1_unknown")
            || ["v2_tcp4", "v2_tcp4_payload", "v2_tcp6", "v2_tcp4_tlv"].contains(&name.as_str())
            || name.starts_with("v2_local")
            || name == "v2_unspec"
            || name == "v2_unix";
        assert_eq!(r.is_ok(), valid, "{name}: {r:?}");
        if name.starts_with("garbage_") && name != "garbage_cr" {
            assert_eq!(r, Err(ParseError::BadSignature), "{name}");
        }
        if name.contains("truncated") {
            assert_eq!(r, Err(ParseError::Truncated), "{name}");
        }
        ok += usize::from(r.is_ok());
    }
    assert!(ok >= 10, "only {ok} valid headers in the corpus");
}

#[test]
fn mutations_never_panic() {
    let interesting = [
        b'\r', b'\n', b' ', b'0', b'9', b':', b'.', 0x00, 0x0f, 0x21, 0xff,
    ];
    mutate::mutations(&corpus(), 0x5eed_f00d, 200_000, &interesting, |b| {
        let _ = check(b);
    });
}

fn random_addr(rng: &mut Rng, v6: bool) -> SocketAddr {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(
            (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
    };
    SocketAddr::new(ip, rng.next_u64() as u16)
}

#[test]
fn random_addresses_round_trip() {
    let mut rng = Rng::new(42);
    for i in 0..20_000 {
        let v6 = i % 2 == 1;
        let (source, destination) =
            same_family(random_addr(&mut rng, v6), random_addr(&mut rng, v6));
        let header = Header::Proxied {
            source,
            destination,
        };
        for v in [Version::V1, Version::V2] {
            let mut bytes = encode(v, &header);
            let len = bytes.len();
            // The application's first bytes follow and must be left alone.
            bytes.extend_from_slice(b"\r\nGET / HTTP/1.1\r\n");
            assert_eq!(parse(&bytes), Ok((header, len)), "{v:?} {header:?}");
            for cut in 0..len {
                assert_eq!(parse(&bytes[..cut]), Err(ParseError::Truncated));
            }
        }
    }
    let local = encode(Version::V2, &Header::Local);
    assert_eq!(parse(&local), Ok((Header::Local, 16)));
}
