//! HTTP/1.1 Upgrade (WebSocket): `Connection: Upgrade` and `Upgrade` are hop-by-hop, so
//! the proxy path strips them; for an upgrade request they are put back, and when the
//! server answers 101 the client's and the server's connections are spliced into one
//! byte tunnel, both ways, until either side closes.

use crate::upstream::pool::FromServer;
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// A client's request to switch protocols, taken from the request before it is forwarded.
pub struct Upgrade {
    client: OnUpgrade,
    protocol: HeaderValue,
}

/// The upgrade the client asks for, if any: HTTP/1.1, `Upgrade: <protocol>` and
/// `Connection` listing "upgrade". Costs one header lookup on ordinary requests.
pub fn take(parts: &mut http::request::Parts) -> Option<Upgrade> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let protocol = parts.headers.get(header::UPGRADE)?.clone();
    let asks = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    let client = parts.extensions.remove::<OnUpgrade>()?;
    Some(Upgrade { client, protocol })
}

impl Upgrade {
    /// Put the upgrade headers back after hop-by-hop removal.
    pub fn restore(&self, h: &mut HeaderMap) {
        restore(h, &self.protocol);
    }

    /// If the server switched protocols, start the tunnel (it runs once the 101 has
    /// reached the client) and return the protocol for the client's 101.
    pub fn splice(
        self,
        resp: &mut http::Response<FromServer>,
        guard: crate::http::context::TunnelGuard,
    ) -> Option<HeaderValue> {
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return None;
        }
        let protocol = resp
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or(self.protocol);
        let FromServer::H1(body) = resp.body_mut() else {
            return None;
        };
        let (mut server, early) = body.take_upgraded()?.into_upgraded();
        let client = self.client;
        tokio::task::spawn_local(async move {
            let _guard = guard;
            let mut client = match client.await {
                Ok(c) => TokioIo::new(c),
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade abandoned by the client");
                    return;
                }
            };
            // Bytes the server sent right behind its 101 were read with the head.
            if !early.is_empty() {
                if let Err(e) = client.write_all(&early).await {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                    return;
                }
            }
            match tokio::io::copy_bidirectional(&mut client, &mut server).await {
                Ok((up, down)) => {
                    tracing::debug!(sent = up, received = down, "upgraded connection closed")
                }
                Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
            }
        });
        Some(protocol)
    }
}

/// `Connection: upgrade` and `Upgrade: <protocol>`, on a request or a 101 response.
pub fn restore(h: &mut HeaderMap, protocol: &HeaderValue) {
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, protocol.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_upgrade_requests_are_taken() {
        let (mut parts, _) = http::Request::get("/ws")
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade")
            .body(())
            .unwrap()
            .into_parts();
        // No OnUpgrade extension outside a hyper server connection: nothing to splice.
        assert!(take(&mut parts).is_none());
        let (mut parts, _) = http::Request::get("/ws")
            .header("upgrade", "websocket")
            .body(())
            .unwrap()
            .into_parts();
        assert!(take(&mut parts).is_none());
        let mut h = HeaderMap::new();
        restore(&mut h, &HeaderValue::from_static("websocket"));
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }
}
