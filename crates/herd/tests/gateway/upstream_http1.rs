//! The gateway's own HTTP/1.1 client against a hand-written server that answers in the
//! shapes real servers use: chunked with trailers, 1xx before the answer, HEAD and 304
//! without bodies, a body that runs until close, and keep-alive connections that the
//! server closes while they sit idle in the gateway's pool.

use herd_testkit::prelude::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct RawServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

/// One answer per request, chosen by path; the server closes the connection after
/// answering `/close-after` (no Connection header: like a keep-alive timeout) and after
/// `/until-close` (the body has no length).
async fn raw_server() -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    RawServer { addr, accepted }
}

async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let answer: &[u8] = match path.as_str() {
            "/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                6\r\nhello \r\n6;ext=1\r\nchunks\r\n0\r\nx-checksum: 42\r\n\r\n"
            }
            "/interim" => {
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
                HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
            }
            "/head" if method == "HEAD" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Shape: head\r\n\r\n"
            }
            "/not-modified" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
            "/until-close" => b"HTTP/1.1 200 OK\r\n\r\nno length, ends at close",
            "/close-after" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain",
        };
        if s.write_all(answer).await.is_err() {
            return;
        }
        if path == "/until-close" || path == "/close-after" {
            return;
        }
    }
}

fn config(server: &RawServer) -> String {
    // One worker: one pool, so connection reuse is visible in the accept count.
    format!(
        "[gateway]\nworkers = 1\n\n{}",
        simple_config(&format!("servers = [{{ addr = \"{}\" }}]", server.addr))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_shapes_pass_through_and_connections_are_reused() {
    let server = raw_server().await;
    let gw = Gateway::start(&config(&server));
    let c = client();

    for i in 0..10 {
        let r = get(&c, &gw.url("/chunked")).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "hello chunks"),
            "request {i}"
        );
        let r = get(&c, &gw.url("/interim")).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "final"),
            "the 103 is skipped"
        );
        let r = get(&c, &gw.url("/not-modified")).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (304, ""));
        assert_eq!(r.header("etag"), Some("\"v1\""));
        let r = send(
            &c,
            hyper::Request::head(gw.url("/head"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-shape"), Some("head"));
        assert_eq!(r.header("content-length"), Some("1000"));
        assert_eq!(r.body, "", "a HEAD answer has no body");
    }
    // 40 requests, every answer framed exactly, so the gateway kept its connection.
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        1,
        "one server connection carried all 40 requests"
    );

    let r = get(&c, &gw.url("/until-close")).await.unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "no length, ends at close")
    );
    let r = get(&c, &gw.url("/plain")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "plain"));
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        2,
        "a body that ends at close cannot leave its connection for reuse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_closed_while_idle_are_never_used() {
    let server = raw_server().await;
    let gw = Gateway::start(&config(&server));
    let c = client();
    // Each answer is followed by the server closing its end, so every pooled connection
    // is dead, or dying, when the next request arrives: either the gateway sees the close
    // before it reuses the connection, or the request meets it and goes again on a fresh
    // one. No request may fail, and the server must not be blamed.
    for i in 0..50 {
        let r = get(&c, &gw.url("/close-after")).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}");
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 50);
    let status = gw.server_status(&c, "app", server.addr).await;
    assert_eq!(status["failures"], 0, "{status}");
}

/// A pooled connection that idles past the backend's idle_timeout is closed by the
/// gateway even when no request comes to check it out: a burst must not leave the
/// server's connection slots (and the gateway's descriptors) held for good.
#[tokio::test]
async fn idle_pooled_connections_are_closed_after_idle_timeout() {
    let server =
        herd_testkit::raw_server::RawServer::start(herd_testkit::raw_server::Answer::Keep(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        ))
        .await;
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n\
         [backends.app]\nidle_timeout = \"1s\"\nservers = [ {{ addr = \"{}\" }} ]\n",
        server.addr
    ));
    let client = client();
    let r = get(&client, &gw.url("/")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(
        server.closed(),
        0,
        "pooled, not closed, right after the response"
    );
    eventually(
        "the idle pooled connection is closed",
        std::time::Duration::from_secs(10),
        || async { (server.closed() == 1).then_some(()) },
    )
    .await;
}
