//! HTTP/1.1 conformance of the gateway, from RFC 9112 (message framing, §6; Host, §3.2)
//! and RFC 9110 (field values, §5.5): raw request and response framings, each with the
//! answer the client must get and what the server may see. The cases are written from
//! the RFC's words, quoted beside them, not from what the implementation happens to do.
//!
//! Every request case goes through the real `herd` binary to a server that records the
//! bytes it receives; every response case has a server that answers with exactly the
//! bytes the case gives.
//!
//! Longer than our ~600-line guide on purpose: it is one table per RFC section, each case
//! spelled out with its quote, and reading the sections side by side is the point.

use herd_testkit::prelude::*;
use herd_testkit::raw_server::{Answer, RawServer};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// One response as the client read it.
#[derive(Debug)]
struct Parsed {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// The body ended where its framing said it would (not cut by a close).
    complete: bool,
}

impl Parsed {
    fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// Split what a client read into responses, by RFC 9112 §6.3 (no HEAD requests here).
fn parse_responses(raw: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(p) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..p]).to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut after = &rest[p + 4..];
        let lower = head.to_ascii_lowercase();
        let field = |name: &str| {
            lower
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let (body, complete, used) = if (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            (Vec::new(), true, 0)
        } else if field("transfer-encoding:").is_some() {
            let mut body = Vec::new();
            let mut at = 0;
            let mut complete = false;
            while let Some(le) = after[at..].windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&after[at..at + le])
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim(),
                    16,
                );
                let Ok(size) = size else { break };
                at += le + 2;
                if size == 0 {
                    // Trailer fields, then the empty line.
                    if after[at..].starts_with(b"\r\n") {
                        at += 2;
                        complete = true;
                    } else if let Some(end) = after[at..].windows(4).position(|w| w == b"\r\n\r\n")
                    {
                        at += end + 4;
                        complete = true;
                    }
                    break;
                }
                if after.len() < at + size + 2 {
                    body.extend_from_slice(&after[at..]);
                    at = after.len();
                    break;
                }
                body.extend_from_slice(&after[at..at + size]);
                at += size + 2;
            }
            (body, complete, at)
        } else if let Some(len) = field("content-length:").and_then(|v| v.parse::<usize>().ok()) {
            let n = len.min(after.len());
            (after[..n].to_vec(), n == len, n)
        } else {
            (after.to_vec(), true, after.len())
        };
        out.push(Parsed {
            status,
            head,
            body,
            complete,
        });
        after = &after[used..];
        rest = after;
    }
    out
}

/// Send raw bytes on a new connection; read until the gateway closes it or `want`
/// complete responses are in (10 s at most).
async fn exchange(addr: std::net::SocketAddr, raw: &[u8], want: usize) -> (Vec<Parsed>, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut closed = false;
    loop {
        let parsed = parse_responses(&got);
        if parsed.iter().filter(|p| p.complete).count() >= want {
            break;
        }
        let mut b = [0u8; 8192];
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&b[..n]),
            Err(_) => break,
        }
    }
    (parse_responses(&got), closed)
}

fn gateway_to(server: &RawServer) -> Gateway {
    Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n\
         [backends.app]\nretries = 0\nservers = [ {{ addr = \"{}\" }} ]\n",
        server.addr
    ))
}

/// What the server may receive for a request case.
#[derive(Debug, Clone, Copy)]
enum Server {
    /// Nothing at all: the request was refused before any byte went on.
    Nothing,
    /// Never a complete request (a head may have gone on before the body broke).
    NoCompleteRequest,
    /// Exactly this many complete requests.
    Requests(usize),
}

struct Case {
    name: &'static str,
    raw: &'static [u8],
    /// Statuses the client may get, in order of the responses expected.
    statuses: &'static [u16],
    server: Server,
}

/// Request framings from RFC 9112 §6 and §2-5; the expected answers are what the RFC
/// requires of a server, or of an intermediary forwarding the message.
const REQUEST_CASES: &[Case] = &[
    Case {
        // §6.3 (3): "If a message is received with both a Transfer-Encoding and a
        // Content-Length header field, the Transfer-Encoding overrides the Content-Length.
        // Such a message might indicate an attempt to perform request smuggling (Section 11.2)
        // ... A server MAY reject a request that contains both ... Regardless, the server
        // MUST close the connection after responding to such a request."
        name: "CL then TE",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "TE then CL",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §6.3 (5): "If a message is received without Transfer-Encoding and with an invalid
        // Content-Length header field, then the message framing is invalid and the
        // recipient MUST treat it as an unrecoverable error ... the server MUST respond
        // with a 400 (Bad Request) status code and then close the connection."
        name: "two different Content-Length",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "Content-Length list of different values",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 30\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "signed Content-Length",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "negative Content-Length",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "Content-Length with trailing junk",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "Content-Length overflowing 64 bits",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §6.3 (4): "If a Transfer-Encoding header field is present in a request and the
        // chunked transfer coding is not the final encoding, the message body length
        // cannot be determined reliably; the server MUST respond with the 400 (Bad
        // Request) status code and then close the connection."
        name: "TE without chunked",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "TE chunked not final",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "TE identity",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "TE with a misspelt chunked",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §5.2: "A server that receives an obs-fold in a request message ... MUST either
        // reject the message by sending a 400 (Bad Request) ... or replace each received
        // obs-fold with one or more SP octets". We reject.
        name: "TE by obs-fold",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §5.1: "A server MUST reject, with a response status code of 400 (Bad Request),
        // any received request message that contains whitespace between a header field
        // name and colon."
        name: "whitespace before the colon",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §7.1: chunk-size = 1*HEXDIG. The body is invalid; the server must never see it
        // complete (the head may already be on its way when the bad chunk arrives).
        name: "chunk size not hex",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        statuses: &[400],
        server: Server::NoCompleteRequest,
    },
    Case {
        name: "chunk size overflowing 64 bits",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nabc\r\n0\r\n\r\n",
        statuses: &[400],
        server: Server::NoCompleteRequest,
    },
    Case {
        name: "chunk data longer than its size",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcdef\r\n0\r\n\r\n",
        statuses: &[400],
        server: Server::NoCompleteRequest,
    },
    Case {
        // RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
        // dangerous ... a recipient MUST either reject the message or replace each of those
        // characters with SP". We reject.
        name: "NUL in a field value",
        raw: b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §2.2: "A recipient of such a bare CR MUST consider that element to be invalid or
        // replace each bare CR with SP before processing the element or forwarding".
        name: "bare CR in a field value",
        raw: b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §2.2: "A recipient that receives whitespace between the start-line and the first
        // header field MUST either reject the message as invalid or consume each
        // whitespace-preceded line without further processing of it".
        name: "whitespace before the first field",
        raw: b"GET / HTTP/1.1\r\n Host: evil\r\nHost: a\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
        // request message that lacks a Host header field and to any request message that
        // contains more than one Host header field line or a Host header field with an
        // invalid field value."
        name: "two Host headers",
        raw: b"GET / HTTP/1.1\r\nHost: a\r\nHost: c\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "two equal Host headers",
        raw: b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "no Host in HTTP/1.1",
        raw: b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "invalid Host value",
        raw: b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "Host with a path",
        raw: b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "two Host headers with a body",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nHost: c\r\nContent-Length: 3\r\n\r\nabc",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // HTTP/1.0 has no Host requirement.
        name: "HTTP/1.0 without Host",
        raw: b"GET / HTTP/1.0\r\n\r\n",
        statuses: &[200],
        server: Server::Requests(1),
    },
    Case {
        // §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is
        // faulty, even if a Content-Length is present, and close the connection after
        // processing the message."
        name: "HTTP/1.0 with Transfer-Encoding",
        raw: b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        // §9.3.2: pipelined requests are answered in order.
        name: "pipelined GETs",
        raw: b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        statuses: &[200, 200, 200],
        server: Server::Requests(3),
    },
    Case {
        name: "pipelined POST then GET",
        raw: b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        statuses: &[200, 200],
        server: Server::Requests(2),
    },
    Case {
        name: "chunked request with extensions and trailers",
        raw: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
        statuses: &[200],
        server: Server::Requests(1),
    },
    Case {
        name: "request line with two spaces",
        raw: b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
    Case {
        name: "lower-case protocol name",
        raw: b"GET / http/1.1\r\nHost: a\r\n\r\n",
        statuses: &[400],
        server: Server::Nothing,
    },
];

#[tokio::test]
async fn request_framings_follow_rfc_9112() {
    let server = RawServer::start(Answer::Keep(OK.to_vec())).await;
    let gw = gateway_to(&server);
    let addr = gw.listeners["web"];
    let mut failures = Vec::new();
    for case in REQUEST_CASES {
        let before_bytes = server.bytes().len();
        let before_requests = server.requests().len();
        let (responses, _) = exchange(addr, case.raw, case.statuses.len()).await;
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        if statuses != case.statuses {
            failures.push(format!(
                "{}: client got {statuses:?}, want {:?}",
                case.name, case.statuses
            ));
        }
        // Whatever was refused stays refused: a later look must not find it either.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let bytes = server.bytes()[before_bytes..].to_vec();
        let requests = server.requests()[before_requests..].to_vec();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let ok = match case.server {
            Server::Nothing => bytes.is_empty(),
            Server::NoCompleteRequest => requests.is_empty(),
            Server::Requests(n) => requests.len() == n,
        };
        if !ok || text.contains("smuggled") {
            failures.push(format!(
                "{}: server saw {} complete requests, bytes {text:?}, want {:?}",
                case.name,
                requests.len(),
                case.server
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// §3.2.2: "When an origin server receives a request with an absolute-form of
/// request-target, the origin server MUST ignore the received Host header field (if any)
/// and instead use the host information of the request-target." The gateway routes by the
/// target's authority and the server sees that one host only.
#[tokio::test]
async fn absolute_form_authority_wins_over_host_for_routing_and_forwarding() {
    let allowed = RawServer::start(Answer::Keep(
        b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nallowed".to_vec(),
    ))
    .await;
    let admin = RawServer::start(Answer::Keep(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nadmin".to_vec(),
    ))
    .await;
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\nhost = \"admin.example\"\nbackend = \"admin\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n\
         [backends.admin]\nservers = [ {{ addr = \"{}\" }} ]\n\n\
         [backends.app]\nservers = [ {{ addr = \"{}\" }} ]\n",
        admin.addr, allowed.addr
    ));
    let addr = gw.listeners["web"];
    for (raw, want) in [
        (
            &b"GET http://admin.example/x HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n"[..],
            "admin",
        ),
        (
            b"GET http://public.example/x HTTP/1.1\r\nHost: admin.example\r\nConnection: close\r\n\r\n",
            "allowed",
        ),
        (
            b"GET http://admin.example/x HTTP/1.1\r\nConnection: close\r\n\r\n",
            "admin",
        ),
    ] {
        let (r, _) = exchange(addr, raw, 1).await;
        assert_eq!(r.len(), 1, "{}", String::from_utf8_lossy(raw));
        assert_eq!((r[0].status, r[0].body.as_slice()), (200, want.as_bytes()));
    }
    for server in [&admin, &allowed] {
        for req in server.requests() {
            let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
            let hosts: Vec<&str> = text.lines().filter(|l| l.starts_with("host:")).collect();
            assert_eq!(hosts.len(), 1, "{text}");
            assert!(text.starts_with("get /x http/1.1\r\n"), "{text}");
        }
    }
    let admin_hosts: Vec<String> = admin
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(r).to_ascii_lowercase())
        .collect();
    assert!(
        admin_hosts
            .iter()
            .all(|t| t.contains("host: admin.example\r\n")),
        "{admin_hosts:?}"
    );
}

/// The defect that opened this suite: a route that denies `/admin` by host must not be
/// passed by a second Host header that the server reads instead.
#[tokio::test]
async fn a_second_host_header_cannot_pass_a_host_rule() {
    let server = RawServer::start(Answer::Keep(OK.to_vec())).await;
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\nhost = \"internal.example\"\nbackend = \"app\"\n\
         deny = [\"0.0.0.0/0\", \"::/0\"]\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n\
         [backends.app]\nservers = [ {{ addr = \"{}\" }} ]\n",
        server.addr
    ));
    let addr = gw.listeners["web"];
    let (r, _) = exchange(
        addr,
        b"GET /admin HTTP/1.1\r\nHost: internal.example\r\nConnection: close\r\n\r\n",
        1,
    )
    .await;
    assert_eq!(r[0].status, 403, "the rule works for one Host");
    for raw in [
        &b"GET /admin HTTP/1.1\r\nHost: public.example\r\nHost: internal.example\r\n\r\n"[..],
        b"GET /admin HTTP/1.1\r\nHost: internal.example\r\nHost: public.example\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut got = Vec::new();
        // The gateway must end the connection after its 400: read to the end.
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .expect("the connection ends after the 400")
            .unwrap();
        let r = parse_responses(&got);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 400, "{}", String::from_utf8_lossy(raw));
    }
    assert!(server.bytes().is_empty(), "the server saw nothing");
}

struct ResponseCase {
    name: &'static str,
    /// What the server answers, then closes.
    answer: &'static [u8],
    /// What the client must get: Ok(body) for a 200 with exactly that body, complete and
    /// framed; Err(()) for a failure the client can detect (a 502, or a body cut short of
    /// its framing by the connection's end) — never a complete response with a wrong body.
    want: Result<&'static [u8], ()>,
}

const RESPONSE_CASES: &[ResponseCase] = &[
    ResponseCase {
        // §6.3 (3): "the Transfer-Encoding overrides the Content-Length ... A sender MUST
        // remove the received Content-Length field prior to forwarding such a message."
        name: "CL and TE chunked",
        answer: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhello, the world\r\n0\r\n\r\n",
        want: Ok(b"hello, the world"),
    },
    ResponseCase {
        name: "TE chunked and CL",
        answer: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        want: Ok(b"hello"),
    },
    ResponseCase {
        // "identity" is no transfer coding (RFC 7230 removed it); a peer reading it as none
        // would trust the Content-Length, another would read to the close: refused.
        name: "TE identity with CL",
        answer: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
        want: Err(()),
    },
    ResponseCase {
        name: "chunk size not hex",
        answer: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        want: Err(()),
    },
    ResponseCase {
        name: "chunk size overflowing",
        answer: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        want: Err(()),
    },
    ResponseCase {
        name: "chunk data longer than its size",
        answer: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        want: Err(()),
    },
    ResponseCase {
        // §6.3 (7)/§8: a message "that is received with fewer octets than its indicated
        // Content-Length ... the recipient MUST consider the message to be incomplete".
        name: "body shorter than Content-Length",
        answer: b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello",
        want: Err(()),
    },
    ResponseCase {
        name: "chunked body without its last chunk",
        answer: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        want: Err(()),
    },
    ResponseCase {
        name: "two different Content-Length",
        answer: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 2\r\n\r\nhello",
        want: Err(()),
    },
    ResponseCase {
        name: "Content-Length not a number",
        answer: b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
        want: Err(()),
    },
    ResponseCase {
        name: "NUL in a field value",
        answer: b"HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 5\r\n\r\nhello",
        want: Err(()),
    },
    ResponseCase {
        name: "obs-fold",
        answer: b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 5\r\n\r\nhello",
        want: Err(()),
    },
    ResponseCase {
        name: "chunk extensions and trailers",
        answer: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        want: Ok(b"hello"),
    },
    ResponseCase {
        name: "body until close",
        answer: b"HTTP/1.1 200 OK\r\n\r\nhello",
        want: Ok(b"hello"),
    },
    ResponseCase {
        name: "interim 100 then the answer",
        answer: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        want: Ok(b"hello"),
    },
];

/// Each response framing, with two pipelined requests behind it: the client must get
/// exactly what the case says for the first, and never a response it did not ask for.
#[tokio::test]
async fn response_framings_follow_rfc_9112() {
    let mut failures = Vec::new();
    for via_hyper in [false, true] {
        for case in RESPONSE_CASES {
            let server = RawServer::start(Answer::Close(case.answer.to_vec())).await;
            let gw = gateway_to(&server);
            let addr = gw.listeners["web"];
            // A body makes the gateway take the request through hyper's server; without
            // one it stays on the gateway's own HTTP/1.1 loop. Both must frame the same.
            let first: &[u8] = if via_hyper {
                b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"
            } else {
                b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            };
            let mut raw = first.to_vec();
            raw.extend_from_slice(b"GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            let (responses, _) = exchange(addr, &raw, 2).await;
            let path = if via_hyper { "hyper" } else { "own loop" };
            let got: Vec<(u16, String, bool)> = responses
                .iter()
                .map(|r| {
                    (
                        r.status,
                        String::from_utf8_lossy(&r.body).to_string(),
                        r.complete,
                    )
                })
                .collect();
            let first = responses.first();
            let ok = match case.want {
                Ok(body) => first.is_some_and(|r| {
                    r.status == 200
                        && r.complete
                        && r.body == body
                        && r.header("content-length").len() <= 1
                }),
                Err(()) => first.is_none_or(|r| r.status == 502 || !r.complete),
            };
            // Whatever happened to the first, a second response may only be a complete
            // answer of the gateway's own or the server's OK — never bytes of the first
            // body taken as a response (response splitting).
            let split = responses.len() > 2
                || responses
                    .iter()
                    .skip(1)
                    .any(|r| ![200, 502, 503].contains(&r.status));
            if !ok || split {
                failures.push(format!("{} ({path}): client got {got:?}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A server that sends a little and pauses (server-sent events, long polls, progress
/// output): what it sent reaches the client before it sends more. The server waits for
/// the client to have the first event before it sends the second, so a gateway that
/// holds bytes back fails this by a timeout, not by a timing threshold.
#[tokio::test]
async fn a_pausing_server_stream_reaches_the_client_as_it_is_sent() {
    for (name, head) in [
        ("chunked", &b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"[..]),
        ("until close", b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"),
        ("content-length", b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 30\r\n\r\n"),
    ] {
        let chunked = name == "chunked";
        let event = |n: u8| {
            let data = format!("data: event {n}\n\n");
            if chunked {
                format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
            } else {
                data.into_bytes()
            }
        };
        let mut first = head.to_vec();
        first.extend_from_slice(&event(1));
        let mut rest = event(2);
        if chunked {
            rest.extend_from_slice(b"0\r\n\r\n");
        }
        let server = RawServer::start(Answer::Paced(first, rest)).await;
        let gw = gateway_to(&server);
        for via in ["own loop", "hyper"] {
            let mut s = TcpStream::connect(gw.listeners["web"]).await.unwrap();
            let req: &[u8] = if via == "hyper" {
                b"POST /events HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
            } else {
                b"GET /events HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            };
            s.write_all(req).await.unwrap();
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !String::from_utf8_lossy(&got).contains("event 1") {
                let mut b = [0u8; 4096];
                match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&b[..n]),
                    other => panic!(
                        "{name} ({via}): the first event did not arrive while the server paused ({other:?}); got {:?}",
                        String::from_utf8_lossy(&got)
                    ),
                }
            }
            assert!(!String::from_utf8_lossy(&got).contains("event 2"));
            server.release();
            let mut tail = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut tail)).await;
            got.extend_from_slice(&tail);
            let r = parse_responses(&got);
            assert_eq!(r.len(), 1, "{name} ({via})");
            assert!(r[0].complete, "{name} ({via}): {r:?}");
            assert_eq!(
                r[0].body,
                b"data: event 1\n\ndata: event 2\n\n",
                "{name} ({via})"
            );
        }
    }
}

/// One HTTP/2 request with prior knowledge (h2c) on a new connection.
async fn h2_send(
    addr: std::net::SocketAddr,
    req: http::Request<http_body_util::Empty<bytes::Bytes>>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt as _;
    let io = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

/// RFC 9113 §8.3.1: "A server SHOULD treat a request as malformed if it contains a Host
/// header field that identifies an entity that differs from the entity in the
/// ":authority" pseudo-header field." Routing by one and forwarding the other would let
/// a client pass a host rule, as with two Host headers over HTTP/1.1.
#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let server = RawServer::start(Answer::Keep(OK.to_vec())).await;
    let gw = gateway_to(&server);
    let addr = gw.listeners["web"];
    let req = |host: Option<&str>| {
        let mut b = http::Request::get("http://a.example/x");
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(http_body_util::Empty::new()).unwrap()
    };
    let (status, _, _) = h2_send(addr, req(Some("c.example"))).await;
    assert_eq!(status, 400);
    assert!(server.bytes().is_empty(), "the server saw nothing");
    for host in [None, Some("a.example"), Some("A.Example")] {
        let (status, _, body) = h2_send(addr, req(host)).await;
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]), "{host:?}");
    }
    for r in server.requests() {
        let text = String::from_utf8_lossy(&r).to_ascii_lowercase();
        assert_eq!(text.matches("\r\nhost:").count(), 1, "{text}");
    }
}

/// A gRPC client reads the outcome from grpc-status: when the gateway cannot reach a
/// server it answers as a gRPC server would (UNAVAILABLE, 14), with its reason in
/// grpc-message, and a deadline as DEADLINE_EXCEEDED (4). HTTP clients still get 502.
#[tokio::test]
async fn grpc_clients_get_grpc_errors_from_the_gateway() {
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let silent = RawServer::start(Answer::Paced(Vec::new(), Vec::new())).await;
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\npath_prefix = \"/slow.\"\nbackend = \"slow\"\ntimeout = \"300ms\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n\
         [backends.app]\nservers = [ {{ addr = \"{gone}\" }} ]\n\n\
         [backends.slow]\nservers = [ {{ addr = \"{}\" }} ]\n",
        silent.addr
    ));
    let addr = gw.listeners["web"];
    let grpc = |path: &str| {
        http::Request::post(format!("http://a.example{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    let (status, h, body) = h2_send(addr, grpc("/pkg.Svc/Call")).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(h["grpc-status"], "14", "UNAVAILABLE");
    let message = h["grpc-message"].to_str().unwrap();
    assert!(message.contains("backend \"app\""), "{message}");
    assert!(body.is_empty());

    let (_, h, _) = h2_send(addr, grpc("/slow.Svc/Call")).await;
    assert_eq!(h["grpc-status"], "4", "DEADLINE_EXCEEDED");

    let plain = http::Request::get("http://a.example/x")
        .body(http_body_util::Empty::new())
        .unwrap();
    let (status, h, _) = h2_send(addr, plain).await;
    assert_eq!(status, 502);
    assert!(h.get("grpc-status").is_none());
}
