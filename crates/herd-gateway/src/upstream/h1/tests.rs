use super::*;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

#[test]
fn chunk_sizes() {
    assert_eq!(parse_chunk_size(b"1a\r\n").unwrap(), 26);
    assert_eq!(parse_chunk_size(b"0\r\n").unwrap(), 0);
    assert_eq!(parse_chunk_size(b"A;name=value\r\n").unwrap(), 10);
    assert_eq!(parse_chunk_size(b"ff \n").unwrap(), 255);
    assert_eq!(parse_chunk_size(b"ffffffffffffffff\r\n").unwrap(), u64::MAX);
    assert!(parse_chunk_size(b"\r\n").is_err());
    assert!(parse_chunk_size(b"xyz\r\n").is_err());
    assert!(parse_chunk_size(b"-1\r\n").is_err());
    assert!(parse_chunk_size(b"10000000000000000\r\n").is_err());
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn response_framing_follows_rfc_9112() {
    let ok = StatusCode::OK;
    let f = |head, status, h: &[(&str, &str)]| response_framing(head, status, &headers(h));
    assert_eq!(
        f(true, ok, &[("content-length", "10")]).unwrap(),
        RespFraming::Empty
    );
    assert_eq!(
        f(false, StatusCode::NO_CONTENT, &[]).unwrap(),
        RespFraming::Empty
    );
    assert_eq!(
        f(false, StatusCode::NOT_MODIFIED, &[("content-length", "5")]).unwrap(),
        RespFraming::Empty
    );
    assert_eq!(
        f(false, ok, &[("content-length", "10")]).unwrap(),
        RespFraming::Length(10)
    );
    assert_eq!(
        f(false, ok, &[("content-length", "0")]).unwrap(),
        RespFraming::Empty
    );
    assert_eq!(
        f(false, ok, &[("content-length", "7, 7")]).unwrap(),
        RespFraming::Length(7)
    );
    assert!(f(false, ok, &[("content-length", "7, 8")]).is_err());
    assert!(f(
        false,
        ok,
        &[("content-length", "7"), ("content-length", "8")]
    )
    .is_err());
    assert!(f(false, ok, &[("content-length", "+7")]).is_err());
    assert!(f(false, ok, &[("content-length", "")]).is_err());
    // Transfer-Encoding wins over Content-Length; only a final "chunked" is chunked.
    assert_eq!(
        f(
            false,
            ok,
            &[("transfer-encoding", "chunked"), ("content-length", "3")]
        )
        .unwrap(),
        RespFraming::Chunked(Chunk::Size)
    );
    assert_eq!(
        f(false, ok, &[("transfer-encoding", "gzip, Chunked")]).unwrap(),
        RespFraming::Chunked(Chunk::Size)
    );
    assert_eq!(
        f(false, ok, &[("transfer-encoding", "gzip")]).unwrap(),
        RespFraming::UntilClose
    );
    assert_eq!(f(false, ok, &[]).unwrap(), RespFraming::UntilClose);
    // Codings no sender may use are refused rather than guessed at (RFC 9112 §6.1).
    for te in [
        &[("transfer-encoding", "identity"), ("content-length", "3")][..],
        &[("transfer-encoding", "identity")],
        &[("transfer-encoding", "chunked, identity")],
        &[("transfer-encoding", "chunked, gzip")],
        &[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ],
        &[("transfer-encoding", "chunked, chunked")],
        &[("transfer-encoding", "gzip,,chunked")],
    ] {
        assert!(f(false, ok, te).is_err(), "{te:?}");
    }
    assert_eq!(
        f(
            false,
            ok,
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked")
            ]
        )
        .unwrap(),
        RespFraming::Chunked(Chunk::Size)
    );
}

#[test]
fn head_parsing_waits_for_the_whole_head_and_keeps_the_body() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1"[..]);
    assert!(parse_head(&mut buf).unwrap().is_none());
    assert_eq!(buf.len(), 42, "a partial head is left in place");
    buf.extend_from_slice(b"\r\nx-a: 2\r\n\r\nhello");
    let head = parse_head(&mut buf).unwrap().unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.headers["content-length"], "5");
    let xa: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(xa, ["1", "2"]);
    assert_eq!(&buf[..], b"hello");

    let mut buf = BytesMut::from(&b"HTTP/1.0 404 Not Found\r\n\r\n"[..]);
    let head = parse_head(&mut buf).unwrap().unwrap();
    assert_eq!(head.version, Version::HTTP_10);
    assert_eq!(head.status, StatusCode::NOT_FOUND);

    let mut buf = BytesMut::from(&b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..]);
    let err = parse_head(&mut buf).unwrap_err();
    assert!(err.to_string().contains("invalid response head"), "{err}");
}

#[test]
fn request_heads_are_framed() {
    let mut out = Vec::new();
    let req = Request::get("/a?b=1")
        .header("host", "example.com")
        .header("x-forwarded-for", "10.0.0.1")
        .body(UpstreamBody::Empty)
        .unwrap();
    assert_eq!(encode_head(&mut out, &req), ReqFraming::None);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\nx-forwarded-for: 10.0.0.1\r\n\r\n"
    );
    let req = Request::post("/form").body(UpstreamBody::Empty).unwrap();
    assert_eq!(encode_head(&mut out, &req), ReqFraming::None);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "POST /form HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
    );
    let req = Request::put("/x")
        .header("content-length", "3")
        .body(UpstreamBody::Empty)
        .unwrap();
    assert_eq!(encode_head(&mut out, &req), ReqFraming::Length);
    let req = Request::get("http://h:1/p/q")
        .body(UpstreamBody::Empty)
        .unwrap();
    encode_head(&mut out, &req);
    assert!(out.starts_with(b"GET /p/q HTTP/1.1\r\n"));

    let mut out = Vec::new();
    let mut data = Bytes::from_static(b"hello");
    encode_data(&mut out, &ReqFraming::Chunked, &mut data);
    encode_last_chunk(&mut out, Some(&headers(&[("grpc-status", "0")])));
    assert_eq!(out, b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n");
}

#[test]
fn connection_tokens() {
    assert!(has_token(b"keep-alive, Close", b"close"));
    assert!(has_token(b"close", b"close"));
    assert!(!has_token(b"closed", b"close"));
    assert!(!has_token(b"", b"close"));
}

/// A server that answers each request on one connection with the next canned answer,
/// written in the given pieces (to split heads and chunks across reads), then closes.
async fn canned(answers: Vec<Vec<&'static [u8]>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for pieces in answers {
            // Wait for a whole request head (the tests send no bodies).
            loop {
                if let Some(p) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    seen.drain(..p + 4);
                    break;
                }
                let mut b = [0u8; 1024];
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&b[..n]),
                }
            }
            for p in pieces {
                if s.write_all(p).await.is_err() {
                    return;
                }
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        }
    });
    addr
}

async fn conn_to(addr: std::net::SocketAddr) -> H1Conn {
    H1Conn::new(Io::Plain(TcpStream::connect(addr).await.unwrap()))
}

fn get(path: &str) -> Request<UpstreamBody> {
    Request::get(path).body(UpstreamBody::Empty).unwrap()
}

/// The whole body as bytes, the trailers, and the connection if it may be reused.
async fn read_all(mut body: H1Body) -> io::Result<(Vec<u8>, Option<HeaderMap>, Option<H1Conn>)> {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    Ok((data, trailers, body.take_reusable()))
}

#[tokio::test]
async fn keep_alive_connection_carries_a_second_request() {
    let addr = canned(vec![
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"],
        vec![b"HTTP/1.1 201 Created\r\ncontent-length: 3\r\n\r\n", b"two"],
    ])
    .await;
    let conn = conn_to(addr).await;
    let resp = conn.send(get("/1")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (data, _, conn) = read_all(resp.into_body()).await.unwrap();
    assert_eq!(data, b"hello");
    let mut conn = conn.expect("a complete Content-Length body leaves the connection reusable");
    assert!(conn.is_usable());
    let resp = conn.send(get("/2")).await.unwrap();
    assert_eq!(resp.status(), 201);
    let (data, _, _) = read_all(resp.into_body()).await.unwrap();
    assert_eq!(data, b"two");
}

#[tokio::test]
async fn chunked_body_split_anywhere_with_trailers_and_interim_answer() {
    let addr = canned(vec![vec![
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Enc",
        b"oding: chunked\r\n\r\n5\r",
        b"\nhel",
        b"lo\r\n1;ext=1\r\n!\r\n0\r\n",
        b"grpc-status: 0\r\n\r\n",
    ]])
    .await;
    let resp = conn_to(addr).await.send(get("/")).await.unwrap();
    assert_eq!(resp.status(), 200, "the 100 Continue is skipped");
    let (data, trailers, conn) = read_all(resp.into_body()).await.unwrap();
    assert_eq!(data, b"hello!");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    assert!(
        conn.is_some(),
        "a finished chunked body leaves the connection reusable"
    );
}

#[tokio::test]
async fn body_until_close_is_read_to_the_end_and_not_reused() {
    let addr = canned(vec![vec![b"HTTP/1.1 200 OK\r\n\r\nall of ", b"it"]]).await;
    let resp = conn_to(addr).await.send(get("/")).await.unwrap();
    let (data, _, conn) = read_all(resp.into_body()).await.unwrap();
    assert_eq!(data, b"all of it");
    assert!(conn.is_none());
}

#[tokio::test]
async fn connection_close_and_http10_answers_are_not_reused() {
    let addr = canned(vec![vec![
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    ]])
    .await;
    let resp = conn_to(addr).await.send(get("/")).await.unwrap();
    let (_, _, conn) = read_all(resp.into_body()).await.unwrap();
    assert!(conn.is_none());
    let addr = canned(vec![vec![
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]])
    .await;
    let resp = conn_to(addr).await.send(get("/")).await.unwrap();
    let (_, _, conn) = read_all(resp.into_body()).await.unwrap();
    assert!(conn.is_none());
}

#[tokio::test]
async fn truncated_bodies_and_silent_servers_are_errors() {
    let addr = canned(vec![vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    ]])
    .await;
    let resp = conn_to(addr).await.send(get("/")).await.unwrap();
    let err = read_all(resp.into_body()).await.err().unwrap();
    assert!(err.to_string().contains("7 bytes before the end"), "{err}");

    let addr = canned(vec![vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ]])
    .await;
    let resp = conn_to(addr).await.send(get("/")).await.unwrap();
    assert!(read_all(resp.into_body()).await.is_err());

    let addr = canned(vec![vec![]]).await;
    match conn_to(addr).await.send(get("/")).await {
        Err(SendError::Server(e, again)) => {
            assert!(e.to_string().contains("before answering"), "{e}");
            let again = again.expect("a bodiless request comes back to be resent");
            assert_eq!(again.uri(), "/");
        }
        other => panic!(
            "expected a server error, got {:?}",
            other.map(|r| r.status())
        ),
    }
}

#[tokio::test]
async fn oversized_head_is_refused() {
    static BIG: [u8; MAX_HEAD + 10] = [b'a'; MAX_HEAD + 10];
    let addr = canned(vec![vec![b"HTTP/1.1 200 OK\r\nx-big: ", &BIG]]).await;
    match conn_to(addr).await.send(get("/")).await {
        Err(SendError::Server(e, _)) => assert!(e.to_string().contains("longer than"), "{e}"),
        other => panic!(
            "expected a server error, got {:?}",
            other.map(|r| r.status())
        ),
    }
}

#[tokio::test]
async fn an_idle_connection_the_server_closed_is_not_usable() {
    let addr = canned(vec![vec![b"HTTP/1.1 204 No Content\r\n\r\n"]]).await;
    let resp = conn_to(addr).await.send(get("/")).await.unwrap();
    let (_, _, conn) = read_all(resp.into_body()).await.unwrap();
    let mut conn = conn.expect("a 204 has no body; the connection is reusable");
    // The canned server closes after its one answer; the FIN reaches us shortly.
    let deadline = crate::clock::now() + std::time::Duration::from_secs(5);
    loop {
        if !conn.is_usable() {
            break;
        }
        assert!(crate::clock::now() < deadline, "close never noticed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn switching_protocols_hands_over_the_stream_and_early_bytes() {
    let addr = canned(vec![vec![
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly",
    ]])
    .await;
    let mut resp = conn_to(addr).await.send(get("/ws")).await.unwrap();
    assert_eq!(resp.status(), 101);
    let conn = resp
        .body_mut()
        .take_upgraded()
        .expect("101 keeps the stream");
    let (_io, early) = conn.into_upgraded();
    assert_eq!(&early[..], b"early");
}

#[tokio::test]
async fn a_reused_connection_closed_before_answering_is_stale() {
    let addr = canned(vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"]]).await;
    let resp = conn_to(addr).await.send(get("/a")).await.unwrap();
    let (_, _, conn) = read_all(resp.into_body()).await.unwrap();
    // Skip the idle check: this is the race where the close crosses the next request.
    match conn.unwrap().send(get("/b")).await {
        Err(SendError::Stale(_, Some(again))) => assert_eq!(again.uri(), "/b"),
        Err(SendError::Unsent(again, _)) => assert_eq!(again.uri(), "/b"),
        other => panic!(
            "expected a stale connection, got {other:?}",
            other = other.map(|r| r.status())
        ),
    }
}
