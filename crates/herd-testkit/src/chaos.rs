//! Servers that fail the way real ones do, for the gateway chaos tests: one that crashes
//! (listener gone, every connection reset) and one that dies halfway through a response.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Linger zero makes close send RST instead of FIN, as a crashed process's kernel
/// does for connections with unread or unacknowledged data. tokio deprecates this setter
/// because a non-zero linger blocks the thread in close; zero never blocks.
#[allow(deprecated)]
fn reset_on_close(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// An HTTP/1.1 server answering every request with its name, on its own runtime so that
/// `kill` takes down its listener and every connection at once.
pub struct CrashingBackend {
    pub name: String,
    pub addr: SocketAddr,
    served: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl CrashingBackend {
    pub fn start(name: &str) -> CrashingBackend {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("backend runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind backend");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("backend address");
        let served = Arc::new(AtomicU64::new(0));
        let (name_owned, counter) = (name.to_string(), served.clone());
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                reset_on_close(&stream);
                let (name, counter) = (name_owned.clone(), counter.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = Full::new(Bytes::from(name.clone()));
                        async move { Ok::<_, Infallible>(Response::new(body)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        CrashingBackend {
            name: name.to_string(),
            addr,
            served,
            runtime: Some(runtime),
        }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Crash: the listener closes (new connects are refused) and every open connection is
    /// reset. Returns once the sockets are gone.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // A runtime cannot be dropped from inside the test's runtime; a plain thread can
            // wait for its workers to drop every task (and so every socket).
            let _ = std::thread::spawn(move || rt.shutdown_timeout(Duration::from_secs(5))).join();
        }
    }
}

impl Drop for CrashingBackend {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// How a `DyingBackend` dies after the first part of its answer.
#[derive(Clone, Copy, Debug)]
pub enum Death {
    /// `Content-Length: 100000`, 1,000 bytes of body, then a clean close (FIN).
    ShortOfLength,
    /// Chunked, one 1,000-byte chunk, then a reset in the middle of the next chunk.
    ResetMidChunk,
}

/// A server that reads each request head, starts a 200 answer and dies in its body.
pub struct DyingBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DyingBackend {
    pub async fn start(death: Death) -> DyingBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind dying backend");
        let addr = listener.local_addr().expect("dying backend address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(answer_and_die(stream, death));
            }
        });
        DyingBackend { addr, task }
    }
}

impl Drop for DyingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer_and_die(mut stream: TcpStream, death: Death) {
    // Read the request head (a GET without a body); give up on anything odd or slow.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && head.len() < 64 * 1024 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let body = vec![b'x'; 1000];
    let mut out = Vec::new();
    match death {
        Death::ShortOfLength => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n");
            out.extend_from_slice(&body);
        }
        Death::ResetMidChunk => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\r\n3e8\r\nxxxx");
        }
    }
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let _ = stream.flush().await;
    match death {
        Death::ShortOfLength => {
            let _ = stream.shutdown().await;
            // Keep the socket until the gateway closes its side, so the close is a clean
            // FIN and not a reset of unread bytes.
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        }
        Death::ResetMidChunk => {
            // Give the gateway time to relay the first chunk, so the reset lands mid-body
            // rather than racing the head.
            tokio::time::sleep(Duration::from_millis(200)).await;
            reset_on_close(&stream);
        }
    }
}

/// A WebSocket echo server (tungstenite) on its own runtime: every text or binary message
/// comes back.
pub struct WsEcho {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl WsEcho {
    pub fn start() -> WsEcho {
        use futures_util::{SinkExt, StreamExt};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("ws runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ws echo");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("ws echo address");
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        WsEcho {
            addr,
            runtime: Some(runtime),
        }
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
