use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn proxied(src: &str, dst: &str) -> Header {
    Header::Proxied {
        source: sa(src),
        destination: sa(dst),
    }
}

#[test]
fn v1_spec_examples() {
    // proxy-protocol.txt §2.1: the example line and the worst cases.
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    assert_eq!(
        parse(line),
        Ok((proxied("192.168.0.1:56324", "192.168.0.11:443"), 47))
    );
    let worst4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(worst4.len(), 56);
    assert_eq!(
        parse(worst4),
        Ok((
            proxied("255.255.255.255:65535", "255.255.255.255:65535"),
            56
        ))
    );
    let worst6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(worst6.len(), 104);
    assert_eq!(parse(worst6).map(|(_, n)| n), Ok(104));
    let unknown_long = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(unknown_long.len(), V1_MAX_LEN);
    assert_eq!(parse(unknown_long), Ok((Header::Local, 107)));
    assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok((Header::Local, 15)));
    assert_eq!(
        parse(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"),
        Ok((proxied("[2001:db8::1]:1", "[::1]:65535"), 36))
    );
}

#[test]
fn v1_errors_are_precise() {
    use ParseError::*;
    for prefix in [
        "",
        "P",
        "PROXY",
        "PROXY ",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
    ] {
        assert_eq!(parse(prefix.as_bytes()), Err(Truncated), "{prefix:?}");
    }
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(BadSignature));
    assert_eq!(parse(b"PROXYTCP4"), Err(BadSignature));
    assert_eq!(parse(b"proxy TCP4"), Err(BadSignature));
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN, b'x');
    assert_eq!(parse(&long), Err(TooLong));
    // CR as the 107th byte: the LF would be the 108th.
    long[V1_MAX_LEN - 1] = b'\r';
    long.push(b'\n');
    assert_eq!(parse(&long), Err(TooLong));
    let malformed: &[&[u8]] = &[
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.\xff.8 1 2\r\n",
    ];
    for m in malformed {
        assert!(
            matches!(parse(m), Err(Malformed(_))),
            "{:?} gave {:?}",
            String::from_utf8_lossy(m),
            parse(m)
        );
    }
}

/// The v2 header of proxy-protocol.txt §2.2 for TCP over IPv4, byte by byte.
const V2_TCP4: [u8; 28] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
    0x21, // version 2, PROXY
    0x11, // AF_INET, STREAM
    0x00, 0x0C, // 12 address bytes
    192, 168, 0, 1, // source
    192, 168, 0, 11, // destination
    0xDC, 0x04, // 56324
    0x01, 0xBB, // 443
];

#[test]
fn v2_exact_bytes() {
    assert_eq!(
        parse(&V2_TCP4),
        Ok((proxied("192.168.0.1:56324", "192.168.0.11:443"), 28))
    );
    assert_eq!(
        encode_v2(&proxied("192.168.0.1:56324", "192.168.0.11:443")),
        V2_TCP4
    );
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    assert_eq!(parse(&local), Ok((Header::Local, 16)));
    assert_eq!(encode_v2(&Header::Local), local);
    // TCP over IPv6, then application bytes that must not be consumed.
    let mut v6 = V2_SIGNATURE.to_vec();
    v6.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
    v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    v6.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    v6.extend_from_slice(&[0x30, 0x39, 0x00, 0x50]);
    let encoded = encode_v2(&proxied("[2001:db8::1]:12345", "[2001:db8::2]:80"));
    assert_eq!(encoded, v6);
    v6.extend_from_slice(b"GET /");
    assert_eq!(
        parse(&v6),
        Ok((proxied("[2001:db8::1]:12345", "[2001:db8::2]:80"), 52))
    );
}

#[test]
fn v2_tlvs_local_unspec_and_unix_are_skipped() {
    // PROXY over IPv4 with a 7-byte TLV after the addresses: the length covers it.
    let mut tlv = V2_TCP4.to_vec();
    tlv[15] = 12 + 7;
    tlv.extend_from_slice(&[0x04, 0x00, 0x04, b'n', b'o', b'o', b'p']);
    tlv.extend_from_slice(b"payload");
    assert_eq!(
        parse(&tlv),
        Ok((proxied("192.168.0.1:56324", "192.168.0.11:443"), 35))
    );
    // LOCAL with an address block (a balancer's health check): skipped, no addresses.
    let mut local = V2_TCP4.to_vec();
    local[12] = 0x20;
    assert_eq!(parse(&local), Ok((Header::Local, 28)));
    // AF_UNSPEC with PROXY: the receiver must accept it and use its own addresses.
    let mut unspec = V2_SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
    assert_eq!(parse(&unspec), Ok((Header::Local, 16)));
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
    unix.resize(16 + 216, 0);
    assert_eq!(parse(&unix), Ok((Header::Local, 232)));
}

#[test]
fn v2_errors_are_precise() {
    use ParseError::*;
    for n in 0..V2_TCP4.len() {
        assert_eq!(parse(&V2_TCP4[..n]), Err(Truncated), "{n} bytes");
    }
    let mut bad_sig = V2_TCP4;
    bad_sig[7] = b'X';
    assert_eq!(parse(&bad_sig), Err(BadSignature));
    assert_eq!(parse(&bad_sig[..8]), Err(BadSignature));
    let with = |i: usize, v: u8| {
        let mut b = V2_TCP4;
        b[i] = v;
        parse(&b)
    };
    assert_eq!(with(12, 0x11), Err(UnsupportedVersion(1)));
    assert_eq!(with(12, 0x22), Err(UnsupportedCommand(2)));
    assert_eq!(with(13, 0x41), Err(UnsupportedFamily(4)));
    assert_eq!(with(13, 0x12), Err(UnsupportedTransport(2)));
    assert_eq!(with(13, 0x10), Err(UnsupportedTransport(0)));
    assert_eq!(
        with(15, 11),
        Err(AddressBlockTooShort { len: 11, need: 12 })
    );
    assert_eq!(
        with(13, 0x21),
        Err(AddressBlockTooShort { len: 12, need: 36 })
    );
    // The fixed part is judged before the rest arrives: no waiting on garbage.
    let mut head = V2_TCP4[..16].to_vec();
    head[12] = 0x31;
    assert_eq!(parse(&head), Err(UnsupportedVersion(3)));
    // The largest header the 16-bit length allows is accepted.
    let mut max = V2_SIGNATURE.to_vec();
    max.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    max.resize(V2_MAX_LEN, 7);
    assert_eq!(parse(&max).map(|(_, n)| n), Ok(V2_MAX_LEN));
    assert_eq!(parse(&max[..V2_MAX_LEN - 1]), Err(Truncated));
}

#[test]
fn encode_mixes_families_into_one() {
    let mixed = proxied("[::ffff:10.0.0.1]:1000", "10.0.0.2:80");
    assert_eq!(
        encode_v1(&mixed),
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\n"
    );
    let mixed6 = proxied("10.0.0.1:1000", "[2001:db8::2]:80");
    assert_eq!(
        encode_v1(&mixed6),
        b"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1000 80\r\n"
    );
    assert_eq!(encode_v1(&Header::Local), b"PROXY UNKNOWN\r\n");
    let (h, n) = parse(&encode_v2(&mixed6)).unwrap();
    assert_eq!(n, 52);
    assert_eq!(h, proxied("[::ffff:10.0.0.1]:1000", "[2001:db8::2]:80"));
}

#[tokio::test]
async fn read_header_keeps_the_bytes_after_it() {
    let (mut client, mut server) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        // In pieces, as a slow network delivers it.
        for piece in [
            &b"PROXY TCP4 203.0"[..],
            b".113.7 10.0.0.1 4000 80\r",
            b"\nhello",
        ] {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    let (h, rest) = read_header(&mut server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(h, proxied("203.0.113.7:4000", "10.0.0.1:80"));
    let _client = writer.await.unwrap();
    let mut more = rest;
    while more.len() < 5 {
        let mut b = [0u8; 8];
        let n = server.read(&mut b).await.unwrap();
        more.extend_from_slice(&b[..n]);
    }
    assert_eq!(more, b"hello");
}

#[tokio::test]
async fn read_header_refuses_garbage_and_early_close() {
    let (mut client, mut server) = tokio::io::duplex(64);
    use tokio::io::AsyncWriteExt;
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert!(matches!(
        read_header(&mut server, Duration::from_secs(5)).await,
        Err(ReadError::Parse(ParseError::BadSignature))
    ));
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(b"PROXY TCP4").await.unwrap();
    drop(client);
    assert!(matches!(
        read_header(&mut server, Duration::from_secs(5)).await,
        Err(ReadError::Closed(10))
    ));
}

#[tokio::test(start_paused = true)]
async fn read_header_times_out() {
    let (_client, mut server) = tokio::io::duplex(64);
    assert!(matches!(
        read_header(&mut server, Duration::from_secs(5)).await,
        Err(ReadError::Timeout(_))
    ));
}
