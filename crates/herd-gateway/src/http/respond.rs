//! The response on its way to the client: its body (a server's, streamed, or one we wrote),
//! and the completion record that fires when it ends — it returns the upstream connection
//! to the worker's pool (only if the body was read to the end), ends the in-flight count
//! and writes the access log line.

use crate::clock;
use crate::codec::body::BodyError;
use crate::codec::headers;
use crate::http::context::{ClientConn, Worker};
use crate::state::access_log::AccessLogSink;
use crate::state::snapshot::ServerState;
use crate::traffic::ConnLimit;
use crate::upstream::pool::FromServer;
use crate::upstream::pool::Sender;
use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The response body sent to the client.
pub struct ProxyBody {
    inner: Inner,
    bytes: u64,
    finished: bool,
    on_done: Option<Done>,
}

enum Inner {
    Upstream(FromServer),
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(body: FromServer, done: Done) -> ProxyBody {
        ProxyBody {
            inner: Inner::Upstream(body),
            bytes: 0,
            finished: false,
            on_done: Some(done),
        }
    }
    pub fn full(data: impl Into<Bytes>, done: Option<Done>) -> ProxyBody {
        let data = data.into();
        ProxyBody {
            bytes: 0,
            finished: false,
            inner: Inner::Full((!data.is_empty()).then_some(data)),
            on_done: done,
        }
    }
    /// The text of a response the gateway made itself, taken out (the body is then
    /// empty); None for a server's body.
    pub fn take_local(&mut self) -> Option<Bytes> {
        match &mut self.inner {
            Inner::Full(data) => Some(data.take().unwrap_or_default()),
            Inner::Upstream(_) => None,
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        self.settle(true);
    }

    /// Fire the completion record; a finished HTTP/1.1 body hands its server connection
    /// back with it, to be pooled.
    fn settle(&mut self, finished: bool) {
        let Some(mut d) = self.on_done.take() else {
            return;
        };
        if finished {
            if let Inner::Upstream(FromServer::H1(b)) = &mut self.inner {
                if let Some(conn) = b.take_reusable() {
                    d.give_back(crate::upstream::pool::Sender::H1(conn));
                }
            }
        }
        d.complete(self.bytes, finished);
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper stops polling a body that reports end-of-stream, so "finished" also
        // covers a body whose last byte arrived without a final poll.
        let finished = self.finished || self.is_end_stream();
        self.settle(finished);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Upstream(b) => b.poll(cx),
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Full(d) => d.is_none(),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// What happens when a response body is finished or abandoned.
pub struct Done {
    pub(crate) worker: Option<Rc<Worker>>,
    pub(crate) server: Option<Arc<ServerState>>,
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) sender: Option<Sender>,
    /// Set when the connection is private to this client connection (PROXY header sent).
    pub(crate) owner: Option<Rc<ClientConn>>,
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) status: u16,
    pub(crate) log: Option<LogRecord>,
}

impl Done {
    pub(crate) fn local(mut log: Option<LogRecord>, route: Option<String>) -> Done {
        if let Some(l) = &mut log {
            l.route = route;
        }
        Done {
            worker: None,
            server: None,
            in_flight: None,
            sender: None,
            owner: None,
            max_idle: 0,
            idle_timeout: Duration::ZERO,
            status: 0,
            log,
        }
    }

    /// The server connection, handed back by a response body that ended cleanly.
    pub fn give_back(&mut self, sender: Sender) {
        self.sender = Some(sender);
    }

    pub fn complete(&mut self, body_bytes: u64, finished: bool) {
        self.in_flight = None;
        if let Some(server) = &self.server {
            // An abandoned body leaves unread bytes on the connection: never reuse it.
            if let (true, Some(w), Some(s)) = (finished, &self.worker, self.sender.take()) {
                match &self.owner {
                    Some(conn) if !s.is_closed() && self.max_idle > 0 => {
                        *conn.private_upstream.borrow_mut() = Some((server.pool_key, s));
                    }
                    Some(_) => {}
                    None => w
                        .pool
                        .checkin(server.pool_key, s, self.max_idle, self.idle_timeout),
                }
            }
        }
        if let Some(log) = self.log.take() {
            log.write(self.status, self.server.as_ref(), body_bytes, finished);
        }
    }
}

/// Fields of an access-log line that must be captured before the request is consumed.
pub struct LogRecord {
    /// None when the record exists only for the request's span.
    pub(crate) sink: Option<Arc<AccessLogSink>>,
    pub(crate) trace: Option<Box<crate::http::trace::RequestTrace>>,
    pub(crate) start_nanos: u64,
    pub(crate) unix_ms: u64,
    pub(crate) listener: String,
    pub(crate) client: SocketAddr,
    pub(crate) method: Method,
    pub(crate) target: String,
    pub(crate) host: Option<String>,
    pub(crate) route: Option<String>,
}

impl LogRecord {
    pub(crate) fn new(
        sink: Option<&Arc<AccessLogSink>>,
        listener: &str,
        client: SocketAddr,
        parts: &http::request::Parts,
    ) -> LogRecord {
        LogRecord {
            sink: sink.cloned(),
            trace: None,
            start_nanos: clock::now_nanos(),
            unix_ms: clock::unix_ms(),
            listener: listener.to_string(),
            client,
            method: parts.method.clone(),
            target: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            host: headers::request_host(&parts.headers, &parts.uri).map(str::to_string),
            route: None,
        }
    }

    fn write(self, status: u16, server: Option<&Arc<ServerState>>, bytes: u64, finished: bool) {
        if let Some(sink) = &self.sink {
            let duration_ms = clock::now_nanos().saturating_sub(self.start_nanos) as f64 / 1e6;
            let line = serde_json::json!({
                "ts_ms": self.unix_ms,
                "listener": self.listener,
                "client": self.client.to_string(),
                "method": self.method.as_str(),
                "target": self.target,
                "host": self.host,
                "route": self.route,
                "server": server.map(|s| s.addr.as_str()),
                "status": status,
                "bytes": bytes,
                "duration_ms": (duration_ms * 1000.0).round() / 1000.0,
                "complete": finished,
            });
            sink.write(format!("{line}\n"));
        }
        if let Some(t) = self.trace {
            t.finish(
                self.method,
                self.target,
                self.host,
                self.listener,
                self.client.ip(),
                status,
                server.cloned(),
                bytes,
                finished,
            );
        }
    }
}

/// Counts a request against its server from send until the response body ends. A guard,
/// because the client may hang up and drop the request future at any await.
pub struct InFlight(Option<Arc<ServerState>>, Option<Arc<ConnLimit>>);

impl InFlight {
    pub(crate) fn begin(server: &Arc<ServerState>) -> InFlight {
        server.load.inc_in_flight();
        InFlight(Some(server.clone()), None)
    }
    /// A slot already taken under `max_conns_per_server`; giving it back wakes the queue.
    pub(crate) fn adopt(server: &Arc<ServerState>, limit: Arc<ConnLimit>) -> InFlight {
        InFlight(Some(server.clone()), Some(limit))
    }
    pub(crate) fn server(&self) -> Option<&Arc<ServerState>> {
        self.0.as_ref()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.load.dec_in_flight();
            if let Some(limit) = self.1.take() {
                limit.released();
            }
        }
    }
}
