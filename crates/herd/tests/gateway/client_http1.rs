//! The gateway's own HTTP/1.1 loop towards clients, spoken to over raw TCP: pipelined
//! requests, HEAD, Connection: close, a body request or a malformed one handed to hyper
//! in the middle of a connection, and the framing of what comes back.

use herd_testkit::prelude::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read responses until `n` complete ones (Content-Length or chunked framed) are in, or
/// the connection closes. Returns the raw text.
async fn read_responses(s: &mut TcpStream, n: usize) -> String {
    let mut raw = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if count_complete(&raw) >= n {
            break;
        }
        let mut b = [0u8; 8192];
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(k)) => raw.extend_from_slice(&b[..k]),
            Err(_) => panic!("timed out; got so far:\n{}", String::from_utf8_lossy(&raw)),
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

/// How many complete responses `raw` holds (none of them answers a HEAD).
fn count_complete(raw: &[u8]) -> usize {
    let text = String::from_utf8_lossy(raw);
    let mut rest: &str = &text;
    let mut n = 0;
    while let Some(head_end) = rest.find("\r\n\r\n") {
        let head = rest[..head_end].to_ascii_lowercase();
        let after = &rest[head_end + 4..];
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let consumed = if let Some(len) = len {
            if after.len() < len {
                return n;
            }
            len
        } else if head.contains("transfer-encoding: chunked") {
            match after.find("0\r\n\r\n") {
                Some(p) => p + 5,
                None => return n,
            }
        } else {
            0
        };
        n += 1;
        rest = &after[consumed..];
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_a_hand_off_to_hyper_on_one_connection() {
    let a = Backend::start("a");
    let gw = Gateway::start(&simple_config(&servers(&[(&a, 1)])));
    let addr = gw.listeners["web"];
    let mut s = TcpStream::connect(addr).await.unwrap();

    // Three pipelined GETs in one write: three answers, in order.
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /headers HTTP/1.1\r\nHost: x\r\nX-Trace: 7\r\n\r\n\
          GET /bytes?n=3 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_responses(&mut s, 3).await;
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{text}");
    let first = text
        .find("\r\n\r\na")
        .expect("first body is the backend's name");
    let second = text
        .find("\"x-trace\":\"7\"")
        .expect("second body echoes headers");
    assert!(first < second, "answers in request order:\n{text}");
    assert!(text.to_ascii_lowercase().contains("date: "), "{text}");

    // A body request on the same connection goes to hyper, which serves the rest.
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let text = read_responses(&mut s, 1).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("hello"), "{text}");
    s.write_all(b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = read_responses(&mut s, 1).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "the connection closes after Connection: close"
    );
    assert_eq!(a.requests(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_close_and_malformed_requests() {
    let a = Backend::start("a");
    let gw = Gateway::start(&simple_config(&servers(&[(&a, 1)])));
    let addr = gw.listeners["web"];

    // HEAD: headers (with the length a GET would have) and no body; the connection stays
    // usable for a GET whose body must not be confused with anything left over.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"HEAD /bytes?n=10 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "connection closed early");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    s.write_all(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n"),
        "the HEAD answer had no body; the next answer starts right after it:\n{rest}"
    );
    assert!(
        rest.to_ascii_lowercase().contains("connection: close"),
        "{rest}"
    );
    assert!(rest.ends_with("\r\n\r\na"), "{rest}");

    // Malformed: hyper answers 400 and closes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
}
