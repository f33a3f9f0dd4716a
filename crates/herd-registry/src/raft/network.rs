//! Raft RPCs between nodes: JSON over HTTP/1.1 to the peer's listen address, the same
//! port that serves the API (SPEC §1: one ADDR for API, admin and peer traffic).
//!
//! Snapshot chunks are the exception: their bytes travel raw after a small JSON header
//! ([`encode_snapshot_chunk`]), since JSON would spell each byte as a number.

use crate::raft::types::{Node, NodeId, TypeConfig};
use bytes::Bytes;
use herd_api::{TlsError, TlsMaterial};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How a node speaks to its peers (and to itself): plain HTTP, or TLS with the node's own
/// certificate as its client certificate and the cluster's CA as the only trust.
#[derive(Clone)]
pub struct HttpClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: &'static str,
}

impl HttpClient {
    pub fn new(tls: Option<&Arc<TlsMaterial>>) -> Result<HttpClient, TlsError> {
        let (config, scheme) = match tls {
            Some(tls) => (tls.client_config()?, "https"),
            None => (herd_api::tls::no_tls_config(), "http"),
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(HttpClient {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            scheme,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }

    /// The URL of `path` (with its query) on the node at `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    pub fn request(&self, req: http::Request<Full<Bytes>>) -> ResponseFuture {
        self.http.request(req)
    }
}

#[derive(Clone)]
pub struct Network {
    pub client: HttpClient,
    pub token: Option<String>,
}

pub struct Peer {
    target: NodeId,
    addr: String,
    client: HttpClient,
    token: Option<String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            client: self.client.clone(),
            token: self.token.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RpcFailure(String);

/// Content type of an InstallSnapshot chunk on the wire.
pub const SNAPSHOT_CHUNK_TYPE: &str = "application/x-herd-snapshot-chunk";

/// Everything of an InstallSnapshot request but its bytes.
#[derive(Serialize, serde::Deserialize)]
struct SnapshotChunkHeader {
    vote: Vote<NodeId>,
    meta: SnapshotMeta<NodeId, Node>,
    offset: u64,
    done: bool,
}

/// Why a snapshot chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotChunkError {
    #[error("snapshot chunk of {len} bytes is shorter than its {need}-byte header")]
    Truncated { len: usize, need: usize },
    #[error("snapshot chunk header is not valid JSON: {0}")]
    Header(#[from] serde_json::Error),
}

/// `[header length: u32 big-endian][header JSON][raw snapshot bytes]`.
pub fn encode_snapshot_chunk(
    rpc: InstallSnapshotRequest<TypeConfig>,
) -> Result<Vec<u8>, serde_json::Error> {
    let header = serde_json::to_vec(&SnapshotChunkHeader {
        vote: rpc.vote,
        meta: rpc.meta,
        offset: rpc.offset,
        done: rpc.done,
    })?;
    let mut body = Vec::with_capacity(4 + header.len() + rpc.data.len());
    // A header is a few hundred bytes; u32 holds any that serde_json could produce here.
    body.extend_from_slice(&(header.len() as u32).to_be_bytes());
    body.extend_from_slice(&header);
    body.extend_from_slice(&rpc.data);
    Ok(body)
}

pub fn decode_snapshot_chunk(
    body: &[u8],
) -> Result<InstallSnapshotRequest<TypeConfig>, SnapshotChunkError> {
    let truncated = |need| SnapshotChunkError::Truncated {
        len: body.len(),
        need,
    };
    let (len, rest) = body.split_first_chunk::<4>().ok_or(truncated(4))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(truncated(4 + len));
    }
    let (header, data) = rest.split_at(len);
    let header: SnapshotChunkHeader = serde_json::from_slice(header)?;
    Ok(InstallSnapshotRequest {
        vote: header.vote,
        meta: header.meta,
        offset: header.offset,
        data: data.to_vec(),
        done: header.done,
    })
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_raw(path, body, "application/json", ttl).await
    }

    /// Posts `body` as is; the answer is JSON either way.
    async fn call_raw<Resp, E>(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut builder = http::Request::post(self.client.url(&self.addr, path))
            .header(http::header::CONTENT_TYPE, content_type);
        if let Some(t) = &self.token {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let resp = match tokio::time::timeout(ttl, self.client.request(request)).await {
            Err(_) => {
                return Err(RPCError::Unreachable(Unreachable::new(&RpcFailure(
                    format!(
                        "no answer from node {} at {} within {ttl:?}",
                        self.target, self.addr
                    ),
                ))))
            }
            Ok(Err(e)) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?
            .to_bytes();
        if !status.is_success() {
            return Err(RPCError::Network(NetworkError::new(&RpcFailure(format!(
                "node {} answered {status}: {}",
                self.target,
                String::from_utf8_lossy(&bytes)
            )))));
        }
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/raft/append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let body =
            encode_snapshot_chunk(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_raw(
            "/raft/snapshot",
            body,
            SNAPSHOT_CHUNK_TYPE,
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/raft/vote", &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests;
