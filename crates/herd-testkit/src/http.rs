//! HTTP from the outside: a keep-alive client like a service's client library, and the
//! answer read whole.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A keep-alive HTTP/1.1 client, like a browser or a service's client library.
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http()
}

/// An answer read whole: the body as received (`bytes`) and as lossy UTF-8 text (`body`),
/// which is what most assertions compare.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub bytes: Bytes,
}

impl Reply {
    pub fn new(status: u16, headers: http::HeaderMap, bytes: Bytes) -> Reply {
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        self.body.clone()
    }

    /// The body as JSON; panics (with the body) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub async fn send(client: &Client, req: Request<Full<Bytes>>) -> Result<Reply, String> {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .map_err(|_| "request timed out".to_string())?
        .map_err(|e| format!("request failed: {e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body failed: {e}"))?
        .to_bytes();
    Ok(Reply::new(status, headers, body))
}

pub async fn get(client: &Client, url: &str) -> Result<Reply, String> {
    send(
        client,
        Request::get(url).body(Full::new(Bytes::new())).unwrap(),
    )
    .await
}

pub async fn get_with(
    client: &Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn post(client: &Client, url: &str, body: &str) -> Result<Reply, String> {
    send(
        client,
        Request::post(url)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

pub async fn put(client: &Client, url: &str, body: &str) -> Result<Reply, String> {
    send(
        client,
        Request::put(url)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}
