//! Bodies in and out: the request body with its limit, the one JSON body parser, and the
//! streamed body of watches (one JSON line per event).

use crate::api::error::{bad, ApiError};
use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::StatusCode;
use herd_registry_core::MAX_VALUE_BYTES;
use http_body::Frame;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Largest request body the client API (`/v1/`) reads: one value of
/// [`MAX_VALUE_BYTES`] raw, or a transaction's JSON (values in base64) up to this size.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Largest body a peer may send on `/raft/`: a log entry is at most a client request
/// re-encoded, an AppendEntries batch is cut at `MAX_APPEND_BYTES` (or is one entry), and
/// a snapshot chunk is `SNAPSHOT_CHUNK_BYTES`.
pub const MAX_RAFT_BODY_BYTES: usize = 64 << 20;

/// A `/v1/` request body; one beyond [`MAX_REQUEST_BYTES`] is a JSON 413 naming the limits.
pub struct RequestBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RequestBody(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body exceeds the limit of {MAX_REQUEST_BYTES} bytes; a value may have at most {MAX_VALUE_BYTES} bytes (1 MiB)"
                ),
            )),
            Err(e) => Err(bad(format!("could not read the request body: {e}"))),
        }
    }
}

/// Whether a request may leave its JSON body out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// The body is required: an empty one is a 400.
    Refuse,
    /// Every field has a default: an empty body reads as `{}`.
    AsObject,
}

/// The one JSON body parser: a 400 naming the problem and the shape expected.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    empty: Empty,
    shape: &str,
) -> Result<T, ApiError> {
    let body = match (body.is_empty(), empty) {
        (true, Empty::AsObject) => &b"{}"[..],
        (true, Empty::Refuse) => return Err(bad(format!("empty body; expected {shape}"))),
        (false, _) => body,
    };
    serde_json::from_slice(body)
        .map_err(|e| bad(format!("invalid JSON body ({e}); expected {shape}")))
}

/// A streamed answer: whatever the sender sends, as it comes.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// One JSON value and a newline: a line of a streamed answer.
pub fn json_line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}
