//! The SNI parser over real ClientHellos made by rustls, split and cut every way, and over
//! mutations of them: it must find the name, ask for more on every strict prefix, and
//! never panic.

use super::*;
use rustls::pki_types::ServerName;
use std::sync::Arc;

/// The bytes a rustls client sends first: its ClientHello in one or more records.
fn hello(name: ServerName<'static>, max_fragment: Option<usize>, tls12_only: bool) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.max_fragment_size = max_fragment;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_string()).unwrap()
}

#[test]
fn finds_the_name_in_real_hellos() {
    let h = hello(dns("a.example.com"), None, false);
    assert_eq!(scan(&h), Scan::Hello(Some("a.example.com".into())));
    let h = hello(dns("x.b.example.com"), None, true);
    assert_eq!(scan(&h), Scan::Hello(Some("x.b.example.com".into())));
    // An IP address is never sent as SNI.
    let ip = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    assert_eq!(scan(&hello(ip, None, false)), Scan::Hello(None));
}

#[test]
fn reassembles_a_hello_split_over_records() {
    let h = hello(dns("split.example.com"), Some(64), false);
    assert!(h.len() > 5 + 64, "rustls made one record only");
    assert_ne!(usize::from(u16::from_be_bytes([h[3], h[4]])) + 5, h.len());
    assert_eq!(scan(&h), Scan::Hello(Some("split.example.com".into())));
}

#[test]
fn every_strict_prefix_asks_for_more() {
    for frag in [None, Some(64)] {
        let h = hello(dns("a.example.com"), frag, false);
        for n in 0..h.len() {
            assert_eq!(scan(&h[..n]), Scan::NeedMore, "prefix of {n} bytes");
        }
        // Bytes after the hello (a client that does not wait) change nothing.
        let mut more = h.clone();
        more.extend_from_slice(b"\x17\x03\x03\x00\x05hello");
        assert_eq!(scan(&more), Scan::Hello(Some("a.example.com".into())));
    }
}

#[test]
fn other_protocols_and_broken_hellos_are_not_hellos() {
    assert!(matches!(scan(b"GET / HTTP/1.1\r\n"), Scan::NotHello(_)));
    assert!(matches!(scan(b"SSH-2.0-OpenSSH\r\n"), Scan::NotHello(_)));
    assert!(matches!(scan(b"\x16\x02"), Scan::NotHello(_)));
    // A zero-length or oversized record.
    assert!(matches!(scan(b"\x16\x03\x01\x00\x00"), Scan::NotHello(_)));
    assert!(matches!(scan(b"\x16\x03\x01\x40\x01"), Scan::NotHello(_)));
    // A handshake message that is not a ClientHello (a ServerHello).
    assert!(matches!(
        scan(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"),
        Scan::NotHello(_)
    ));
    // A ClientHello that claims more than 16 KiB.
    assert!(matches!(
        scan(b"\x16\x03\x01\x00\x04\x01\x01\x00\x00"),
        Scan::NotHello(_)
    ));
    // A complete but empty ClientHello.
    assert!(matches!(
        scan(b"\x16\x03\x01\x00\x04\x01\x00\x00\x00"),
        Scan::NotHello(_)
    ));
    // A record of another type in the middle of a split hello.
    let h = hello(dns("a.example.com"), Some(64), false);
    let second = 5 + usize::from(u16::from_be_bytes([h[3], h[4]]));
    let mut bad = h.clone();
    bad[second] = 23;
    assert!(matches!(scan(&bad), Scan::NotHello(_)));
}

#[test]
fn a_name_with_odd_bytes_is_malformed_and_a_trailing_dot_is_dropped() {
    let h = hello(dns("abc.example.com"), None, false);
    let at = h.windows(15).position(|w| w == b"abc.example.com").unwrap();
    let mut bad = h.clone();
    bad[at] = b' ';
    assert_eq!(scan(&bad), Scan::NotHello("malformed ClientHello"));
    let mut upper = h.clone();
    upper[at] = b'A';
    assert_eq!(scan(&upper), Scan::Hello(Some("abc.example.com".into())));
    assert_eq!(host_name(b"a.example.com."), Some("a.example.com".into()));
    assert_eq!(host_name(b"."), None);
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_hellos_never_panic() {
    let seeds = [
        hello(dns("a.example.com"), None, false),
        hello(dns("b.example.com"), Some(40), true),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..50_000 {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                1 => {
                    let at = rng.below(b.len());
                    b[at] ^= 1 << rng.below(8);
                }
                2 => {
                    let at = rng.below(b.len());
                    b.truncate(at.max(1));
                }
                _ => {
                    let at = rng.below(b.len());
                    let byte = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
                    b.insert(at, byte);
                }
            }
        }
        let _ = scan(&b);
    }
    // Random bytes behind a plausible record header.
    for _ in 0..20_000 {
        let len = rng.below(300);
        let mut b = vec![0x16, 0x03, 0x01, (len >> 8) as u8, len as u8, 0x01];
        b.extend((0..len).map(|_| rng.next() as u8));
        let _ = scan(&b);
    }
}
