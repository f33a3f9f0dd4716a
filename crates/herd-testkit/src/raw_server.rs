//! A server that speaks HTTP/1.1 by hand, for framing tests: it records every byte the
//! gateway sends it and answers each request it receives with bytes chosen by the test,
//! however malformed. Requests are parsed only as far as needed to find where each ends
//! (Content-Length or chunked), which is enough for what a gateway forwards.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What the server does after it has read a request.
#[derive(Clone)]
pub enum Answer {
    /// Write these bytes, keep the connection for the next request.
    Keep(Vec<u8>),
    /// Write these bytes, then close the connection.
    Close(Vec<u8>),
    /// Write the first part, wait until the test calls `release`, write the rest, close.
    Paced(Vec<u8>, Vec<u8>),
}

pub struct RawServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    /// Every byte received, over all connections, in arrival order per connection.
    bytes: Vec<u8>,
    /// Complete requests received: their raw text (head and body).
    requests: Vec<Vec<u8>>,
    /// Connections the gateway closed.
    closed: usize,
}

impl RawServer {
    pub async fn start(answer: Answer) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let release = Arc::new(Notify::new());
        let (s, r) = (seen.clone(), release.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, answer.clone(), s.clone(), r.clone()));
            }
        });
        RawServer {
            addr,
            seen,
            release,
            task,
        }
    }

    /// All bytes received so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.seen
            .lock()
            .map(|s| s.bytes.clone())
            .unwrap_or_default()
    }

    /// Complete requests received so far.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.seen
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }

    /// How many connections the client side has closed so far.
    pub fn closed(&self) -> usize {
        self.seen.lock().map(|s| s.closed).unwrap_or_default()
    }

    /// Let a `Paced` answer write its second part.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    answer: Answer,
    seen: Arc<Mutex<Seen>>,
    release: Arc<Notify>,
) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = request_end(&buf) {
                break end;
            }
            let mut b = [0u8; 8192];
            match stream.read(&mut b).await {
                Ok(0) | Err(_) => {
                    if let Ok(mut s) = seen.lock() {
                        s.closed += 1;
                    }
                    return;
                }
                Ok(n) => {
                    buf.extend_from_slice(&b[..n]);
                    if let Ok(mut s) = seen.lock() {
                        s.bytes.extend_from_slice(&b[..n]);
                    }
                }
            }
        };
        let request: Vec<u8> = buf.drain(..end).collect();
        if let Ok(mut s) = seen.lock() {
            s.requests.push(request);
        }
        let ok = match &answer {
            Answer::Keep(bytes) => stream.write_all(bytes).await.is_ok(),
            Answer::Close(bytes) => {
                let _ = stream.write_all(bytes).await;
                return;
            }
            Answer::Paced(first, rest) => {
                let _ = stream.write_all(first).await;
                release.notified().await;
                let _ = stream.write_all(rest).await;
                return;
            }
        };
        if !ok {
            return;
        }
    }
}

/// Where the first complete request in `buf` ends, if it is all there.
fn request_end(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if field("transfer-encoding:").is_some_and(|v| v.ends_with("chunked")) {
        let mut at = head_end;
        loop {
            let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_text = String::from_utf8_lossy(&buf[at..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // Trailers, then the empty line.
                let rest = &buf[at..];
                if rest.starts_with(b"\r\n") {
                    return Some(at + 2);
                }
                return rest
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| at + p + 4);
            }
            if buf.len() < at + size + 2 {
                return None;
            }
            at += size + 2;
        }
    }
    let len = field("content-length:")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + len).then_some(head_end + len)
}
