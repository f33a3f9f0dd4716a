//! TCP (L4) listeners and the PROXY protocol, through the real binary: echo round trips,
//! least_conn over long-lived connections, connect failover, PROXY v1/v2 to servers, PROXY
//! from an upstream balancer on tcp and http listeners, max_connections, and drain.

use herd_gateway::proxy_protocol::{self, Header};
use herd_testkit::prelude::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP echo server on its own runtime. With `proxy`, each connection must start with a
/// PROXY header, which is recorded.
struct EchoServer {
    addr: SocketAddr,
    state: Arc<EchoState>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Default)]
struct EchoState {
    accepted: AtomicUsize,
    active: AtomicUsize,
    headers: Mutex<Vec<Header>>,
}

impl EchoServer {
    fn start(proxy: bool) -> EchoServer {
        let state = Arc::new(EchoState::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let st = state.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.accepted.fetch_add(1, Ordering::SeqCst);
                st.active.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = echo(stream, proxy, &st).await;
                    st.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        EchoServer {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    fn active(&self) -> usize {
        self.state.active.load(Ordering::SeqCst)
    }

    fn headers(&self) -> Vec<Header> {
        self.state.headers.lock().unwrap().clone()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn echo(mut stream: TcpStream, proxy: bool, st: &EchoState) -> std::io::Result<()> {
    if proxy {
        let (header, rest) = proxy_protocol::read_header(&mut stream, IO_TIMEOUT)
            .await
            .map_err(std::io::Error::other)?;
        st.headers.lock().unwrap().push(header);
        stream.write_all(&rest).await?;
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Write `msg` and read the same bytes back.
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Result<(), String> {
    stream
        .write_all(msg)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(IO_TIMEOUT, stream.read_exact(&mut back))
        .await
        .map_err(|_| "echo timed out".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    if back != msg {
        return Err(format!("echoed {back:?}, sent {msg:?}"));
    }
    Ok(())
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// True if the peer closes (EOF or reset) within the timeout without sending anything.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(IO_TIMEOUT, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn tcp_config(listener_extra: &str, backend: &str) -> String {
    format!(
        "[[listeners]]\nname = \"db\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:0\"\nbackend = \"db\"\n{listener_extra}\n\n\
         [backends.db]\n{backend}\n"
    )
}

fn echo_servers(list: &[&EchoServer]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|s| format!("{{ addr = \"{}\" }}", s.addr))
        .collect();
    format!("servers = [{}]", items.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_echo_round_trip_and_counters() {
    let echo = EchoServer::start(false);
    let gw = Gateway::start(&tcp_config("", &echo_servers(&[&echo])));
    let addr = gw.listeners["db"];
    let mut s = connect(addr).await;
    round_trip(&mut s, b"hello through herd").await.unwrap();
    // A large transfer in both directions at once.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut wr) = s.into_split();
    let sent = big.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, r.read_to_end(&mut back))
        .await
        .expect("read timed out")
        .expect("read");
    writer.await.unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big, "echoed bytes differ");

    let c = client();
    let server = eventually("tcp counters in /status", IO_TIMEOUT, || async {
        let s = gw.server_status(&c, "db", echo.addr).await;
        (s["tcp_bytes_received"].as_u64() == Some(1_000_018)).then_some(s)
    })
    .await;
    assert_eq!(server["tcp_connections"], 1);
    assert_eq!(server["tcp_bytes_sent"], 1_000_018);
    let status = gw.status(&c).await;
    let l = &status["listeners"][0];
    assert_eq!(l["protocol"], "tcp");
    assert_eq!(l["backend"], "db");
    assert_eq!(l["connections"], 1);
    let metrics = get(&c, &gw.admin_url("/metrics")).await.unwrap().body;
    let line = format!(
        "herd_server_tcp_connections_total{{backend=\"db\",server=\"{}\"}} 1",
        echo.addr
    );
    assert!(metrics.contains(&line), "no {line} in:\n{metrics}");
    assert!(
        metrics.contains("herd_listener_connections_total{listener=\"db\",protocol=\"tcp\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_spreads_long_lived_connections() {
    let a = EchoServer::start(false);
    let b = EchoServer::start(false);
    let gw = Gateway::start(&tcp_config(
        "",
        &format!("policy = \"least_conn\"\n{}", echo_servers(&[&a, &b])),
    ));
    let addr = gw.listeners["db"];
    let mut held = Vec::new();
    for i in 0..4 {
        let mut s = connect(addr).await;
        // Through to a server before the next one opens: each pick sees the ones before.
        round_trip(&mut s, format!("conn {i}").as_bytes())
            .await
            .unwrap();
        held.push(s);
    }
    assert_eq!((a.active(), b.active()), (2, 2));
    let c = client();
    let sa = gw.server_status(&c, "db", a.addr).await;
    assert_eq!(sa["active"], 2, "{sa}");
    // Closing the clients ends the pairs and frees the servers' counts.
    drop(held);
    eventually("servers see the connections close", IO_TIMEOUT, || async {
        (a.active() + b.active() == 0).then_some(())
    })
    .await;
    eventually("active counts return to 0", IO_TIMEOUT, || async {
        let s = gw.status(&c).await;
        let servers = s["backends"]["db"]["servers"].as_array().cloned()?;
        servers.iter().all(|x| x["active"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_fails_over_before_any_byte() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let live = EchoServer::start(false);
    let gw = Gateway::start(&tcp_config(
        "",
        &format!(
            "policy = \"round_robin\"\nservers = [{{ addr = \"{dead_addr}\" }}, {{ addr = \"{}\" }}]\n\
             [backends.db.passive]\nconsecutive_failures = 0",
            live.addr
        ),
    ));
    for i in 0..10 {
        let mut s = connect(gw.listeners["db"]).await;
        round_trip(&mut s, format!("attempt {i}").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
    assert_eq!(live.state.accepted.load(Ordering::SeqCst), 10);
    let c = client();
    let d = gw.server_status(&c, "db", dead_addr).await;
    assert!(d["failures"].as_u64().unwrap() >= 4, "{d}");
}

async fn proxy_header_reaches_server(version: &str) {
    let echo = EchoServer::start(true);
    let gw = Gateway::start(&tcp_config(
        "",
        &format!("proxy_protocol = \"{version}\"\n{}", echo_servers(&[&echo])),
    ));
    let listener = gw.listeners["db"];
    let mut s = connect(listener).await;
    let me = s.local_addr().unwrap();
    round_trip(&mut s, b"who am i").await.unwrap();
    assert_eq!(
        echo.headers(),
        vec![Header::Proxied {
            source: me,
            destination: listener
        }]
    );
    assert_eq!(me.ip().to_string(), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_to_servers_carries_the_client() {
    proxy_header_reaches_server("v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_to_servers_carries_the_client() {
    proxy_header_reaches_server("v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_accepts_proxy_and_passes_it_on() {
    // A balancer in front sends v1; our server gets the original client in v2, and the
    // bytes that came in the same packet as the header are relayed, not lost.
    let echo = EchoServer::start(true);
    let gw = Gateway::start(&tcp_config(
        "accept_proxy_protocol = true",
        &format!("proxy_protocol = \"v2\"\n{}", echo_servers(&[&echo])),
    ));
    let mut s = connect(gw.listeners["db"]).await;
    s.write_all(b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 3306\r\nfirst")
        .await
        .unwrap();
    let mut back = [0u8; 5];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"first");
    round_trip(&mut s, b" and more").await.unwrap();
    assert_eq!(
        echo.headers(),
        vec![Header::Proxied {
            source: "203.0.113.7:40000".parse().unwrap(),
            destination: "198.51.100.1:3306".parse().unwrap(),
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_proxy_header_closes_the_connection() {
    let echo = EchoServer::start(false);
    let gw = Gateway::start(&tcp_config(
        "accept_proxy_protocol = true",
        &echo_servers(&[&echo]),
    ));
    let mut s = connect(gw.listeners["db"]).await;
    s.write_all(b"HELLO I AM NOT A PROXY HEADER\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut s).await, "connection stayed open");
    assert_eq!(echo.state.accepted.load(Ordering::SeqCst), 0);
    let c = client();
    let status = gw.status(&c).await;
    assert_eq!(status["listeners"][0]["proxy_protocol_errors"], 1);
    assert!(
        gw.stderr().contains("bad PROXY protocol header"),
        "{}",
        gw.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_takes_client_address_from_proxy_header() {
    let app = Backend::start("app");
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\naccept_proxy_protocol = true\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\npolicy = \"source_ip\"\n{}\n",
        servers(&[(&app, 1)])
    ));
    let mut s = connect(gw.listeners["web"]).await;
    // Header and request in one write: the request bytes read with the header must reach hyper.
    s.write_all(
        b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 80\r\n\
          GET /headers HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7");
    assert_eq!(seen["x-real-ip"], "203.0.113.7");
    assert!(
        seen["forwarded"]
            .as_str()
            .unwrap()
            .starts_with("for=203.0.113.7;"),
        "{seen}"
    );

    // Without a header the listener refuses the connection: it must come through a balancer.
    let mut plain = connect(gw.listeners["web"]).await;
    plain
        .write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut plain).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_closes_the_one_over_the_limit() {
    let echo = EchoServer::start(false);
    let gw = Gateway::start(&tcp_config("max_connections = 2", &echo_servers(&[&echo])));
    let addr = gw.listeners["db"];
    let mut first = connect(addr).await;
    round_trip(&mut first, b"one").await.unwrap();
    let mut second = connect(addr).await;
    round_trip(&mut second, b"two").await.unwrap();
    let mut third = connect(addr).await;
    let _ = third.write_all(b"three").await;
    assert!(
        closed_by_peer(&mut third).await,
        "third connection was served"
    );
    round_trip(&mut second, b"still fine").await.unwrap();

    let c = client();
    let status = gw.status(&c).await;
    assert_eq!(status["listeners"][0]["rejected_connections"], 1);
    assert_eq!(status["listeners"][0]["active_connections"], 2);
    let metrics = get(&c, &gw.admin_url("/metrics")).await.unwrap().body;
    assert!(
        metrics.contains(
            "herd_listener_rejected_connections_total{listener=\"db\",protocol=\"tcp\"} 1"
        ),
        "{metrics}"
    );

    // A slot freed is a slot taken again.
    drop(first);
    eventually("a new connection after one closed", IO_TIMEOUT, || async {
        let mut s = connect(addr).await;
        round_trip(&mut s, b"again").await.ok().map(|_| s)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_open_tcp_pairs_until_drain_timeout() {
    let echo = EchoServer::start(false);
    let mut gw = Gateway::start(&format!(
        "[gateway]\ndrain_timeout = \"2s\"\n\n{}",
        tcp_config("", &echo_servers(&[&echo]))
    ));
    let addr = gw.listeners["db"];
    let mut s = connect(addr).await;
    round_trip(&mut s, b"before").await.unwrap();
    gw.signal("TERM");
    // The established pair still relays while the gateway drains...
    round_trip(&mut s, b"during drain").await.unwrap();
    // ...new connections are not accepted...
    eventually("listener closed", IO_TIMEOUT, || async {
        match TcpStream::connect(addr).await {
            Err(_) => Some(()),
            Ok(mut c) => closed_by_peer(&mut c).await.then_some(()),
        }
    })
    .await;
    // ...and the process exits once drain_timeout is up.
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(closed_by_peer(&mut s).await);
}

/// A minimal HTTP/1.1 server behind PROXY: every response body is "<source> <n>", the
/// client address from the connection's PROXY header and the connection's number.
async fn proxy_http_server(state: Arc<EchoState>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let n = state.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        let st = state.clone();
        tokio::spawn(async move {
            let Ok((header, mut buf)) = proxy_protocol::read_header(&mut stream, IO_TIMEOUT).await
            else {
                return;
            };
            st.headers.lock().unwrap().push(header);
            let source = match header {
                Header::Proxied { source, .. } => source.to_string(),
                Header::Local => "local".into(),
            };
            let mut chunk = [0u8; 4096];
            loop {
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    let body = format!("{source} {n}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
        });
    }
}

/// GET `path` `count` times over one client connection; the bodies.
async fn gets_on_one_connection(addr: SocketAddr, count: usize) -> (SocketAddr, Vec<String>) {
    use http_body_util::BodyExt;
    let stream = connect(addr).await;
    let me = stream.local_addr().unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut bodies = Vec::new();
    for _ in 0..count {
        let req = hyper::Request::get("/")
            .header("host", "app")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        bodies.push(String::from_utf8_lossy(&body).into_owned());
    }
    (me, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_with_proxy_protocol_keeps_upstreams_per_client() {
    let state = Arc::new(EchoState::default());
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let backend_addr = std_listener.local_addr().unwrap();
    let server = tokio::spawn(proxy_http_server(
        state.clone(),
        tokio::net::TcpListener::from_std(std_listener).unwrap(),
    ));
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n[[routes]]\nbackend = \"app\"\n\n\
         [backends.app]\nproxy_protocol = \"v1\"\nservers = [{{ addr = \"{backend_addr}\" }}]\n"
    ));
    let web = gw.listeners["web"];
    // Two requests on one client connection share one upstream connection...
    let (me, bodies) = gets_on_one_connection(web, 2).await;
    assert_eq!(bodies, vec![format!("{me} 1"), format!("{me} 1")]);
    // ...and another client never gets it: its own connection, its own PROXY header.
    let (other, bodies) = gets_on_one_connection(web, 1).await;
    assert_ne!(me, other);
    assert_eq!(bodies, vec![format!("{other} 2")]);
    assert_eq!(state.accepted.load(Ordering::SeqCst), 2);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_new_tcp_connections_and_keeps_open_ones() {
    let a = EchoServer::start(false);
    let b = EchoServer::start(false);
    let gw = Gateway::start(&tcp_config("", &echo_servers(&[&a])));
    let addr = gw.listeners["db"];
    let mut old = connect(addr).await;
    round_trip(&mut old, b"on a").await.unwrap();
    // Same listener (as written, so the same socket), new backend servers.
    gw.write_config(&tcp_config("", &echo_servers(&[&b])));
    let c = client();
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let mut new = connect(addr).await;
    round_trip(&mut new, b"on b").await.unwrap();
    assert_eq!(b.state.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(a.state.accepted.load(Ordering::SeqCst), 1);
    round_trip(&mut old, b"still on a").await.unwrap();
}
