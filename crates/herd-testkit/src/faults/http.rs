//! A tiny blocking HTTP/1.1 client over `TcpStream`, one connection per request.
//!
//! Why not the hyper client the other suites use: under a partition a pooled keep-alive
//! connection hangs until its own timeout, and a fault test must know exactly which
//! request reached which node. A fresh connection per call with a hard deadline makes
//! every outcome one of three things: an answer, a refused connection, or a timeout.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `Value::Null` when it is not JSON (the caller's assert then
    /// prints the text).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, String> {
    let left = remaining(deadline)?;
    let s = TcpStream::connect_timeout(&addr, left).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).ok();
    Ok(s)
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timed out".into())
    } else {
        Ok(left)
    }
}

fn write_request(
    s: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    close: bool,
) -> Result<(), String> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    let mut buf = head.into_bytes();
    buf.extend_from_slice(body);
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(&buf)
        .map_err(|e| format!("send to {addr}: {e}"))
}

/// Reads more bytes into `buf` before `deadline`; Ok(false) at end of stream.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<bool, String> {
    let left = remaining(deadline)?;
    s.set_read_timeout(Some(left)).ok();
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk) {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err("timed out".into())
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

struct Head {
    status: u16,
    chunked: bool,
    length: Option<usize>,
    /// Bytes after the head.
    rest: Vec<u8>,
}

fn read_head(s: &mut TcpStream, deadline: Instant) -> Result<Head, String> {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("bad status line {status_line:?}"))?;
            let (mut chunked, mut length) = (false, None);
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                } else if name == "content-length" {
                    length = value.parse().ok();
                }
            }
            return Ok(Head {
                status,
                chunked,
                length,
                rest: buf[end + 4..].to_vec(),
            });
        }
        if !fill(s, &mut buf, deadline)? {
            return Err("connection closed before a response".into());
        }
    }
}

/// Moves every complete chunk of `raw` into `out`; true once the last chunk was seen.
fn dechunk(raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<bool, String> {
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok(false);
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        if size == 0 {
            return Ok(true);
        }
        if raw.len() < eol + 2 + size + 2 {
            return Ok(false);
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw.drain(..eol + 2 + size + 2);
    }
}

/// One request on a fresh connection; Err on connect failure, a broken answer or when
/// no complete answer came within `timeout` (never on a 4xx/5xx).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Resp, String> {
    let deadline = Instant::now() + timeout;
    let mut s = connect(addr, deadline)?;
    write_request(&mut s, addr, method, path, body, true)?;
    let head =
        read_head(&mut s, deadline).map_err(|e| format!("{method} {path} on {addr}: {e}"))?;
    let mut raw = head.rest;
    let mut body = Vec::new();
    loop {
        if head.chunked {
            if dechunk(&mut raw, &mut body)? {
                break;
            }
        } else if let Some(n) = head.length {
            if raw.len() >= n {
                raw.truncate(n);
                body = raw;
                break;
            }
        }
        if !fill(&mut s, &mut raw, deadline)
            .map_err(|e| format!("{method} {path} on {addr}: {e}"))?
        {
            if head.chunked || head.length.is_some() {
                return Err(format!("{method} {path} on {addr}: body cut short"));
            }
            body = raw;
            break;
        }
    }
    Ok(Resp {
        status: head.status,
        body,
    })
}

/// An open NDJSON watch stream.
pub struct Watch {
    stream: TcpStream,
    chunked: bool,
    raw: Vec<u8>,
    data: Vec<u8>,
    ended: bool,
}

/// What `Watch::next` saw.
#[derive(Debug)]
pub enum Line {
    Json(Value),
    /// The stream ended or broke (e.g. the node died).
    Ended(String),
    TimedOut,
}

impl Watch {
    /// Opens `GET path`; Err with the status and body when the answer is not 200.
    pub fn open(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Watch, String> {
        let deadline = Instant::now() + timeout;
        let mut s = connect(addr, deadline)?;
        write_request(&mut s, addr, "GET", path, b"", false)?;
        let head =
            read_head(&mut s, deadline).map_err(|e| format!("watch {path} on {addr}: {e}"))?;
        let mut w = Watch {
            stream: s,
            chunked: head.chunked,
            raw: head.rest,
            data: Vec::new(),
            ended: false,
        };
        if head.status != 200 {
            let _ = w.pump();
            return Err(format!(
                "watch {path} on {addr}: {} {}",
                head.status,
                String::from_utf8_lossy(&w.data)
            ));
        }
        w.pump()?;
        Ok(w)
    }

    fn pump(&mut self) -> Result<(), String> {
        if self.chunked {
            if dechunk(&mut self.raw, &mut self.data)? {
                self.ended = true;
            }
        } else {
            self.data.append(&mut self.raw);
        }
        Ok(())
    }

    /// The next non-empty line as JSON, within `within`.
    pub fn next(&mut self, within: Duration) -> Line {
        let deadline = Instant::now() + within;
        loop {
            if let Some(pos) = self.data.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.data.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if text.is_empty() {
                    continue;
                }
                return match serde_json::from_str(&text) {
                    Ok(v) => Line::Json(v),
                    Err(e) => Line::Ended(format!("watch line {text:?} is not JSON: {e}")),
                };
            }
            if self.ended {
                return Line::Ended("stream ended".into());
            }
            match fill(&mut self.stream, &mut self.raw, deadline) {
                Ok(true) => {
                    if let Err(e) = self.pump() {
                        return Line::Ended(e);
                    }
                }
                Ok(false) => self.ended = true,
                Err(e) if e == "timed out" => return Line::TimedOut,
                Err(e) => return Line::Ended(e),
            }
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64, as the API carries values in JSON.
pub fn b64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; None on a character outside the alphabet.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
