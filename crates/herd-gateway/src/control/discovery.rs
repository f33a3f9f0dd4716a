//! Registry-backed backend groups (`service = "name"`): list the service's instances, then
//! follow its watch stream, and swap a new snapshot whenever membership changes — no
//! reload. The gateway is a client of the registry's public API (herd-api), nothing more.
//!
//! A broken stream is resumed from the last seen revision + 1 on any registry node, so no
//! change is missed; if that history was compacted, the service is listed again.

use crate::state::shared::Shared;
use herd_api::{EventKind, Instance, RegistryClient, WatchItem};
use herd_config::Server;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Instances as the gateway's server list: "address:port" (IPv6 bracketed) and the
/// registered weight, clamped to the gateway's 1-100.
pub fn servers_of(members: &BTreeMap<String, Instance>) -> Vec<Server> {
    members
        .values()
        .map(|i| Server {
            addr: if i.address.contains(':') && !i.address.starts_with('[') {
                format!("[{}]:{}", i.address, i.port)
            } else {
                format!("{}:{}", i.address, i.port)
            },
            weight: i.weight.clamp(1, 100),
        })
        .collect()
}

pub fn spawn(
    shared: Arc<Shared>,
    client: RegistryClient,
    backend: String,
    service: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            follow(&shared, &client, &backend, &service).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// List, then watch until the stream cannot be resumed; returns to be listed again.
async fn follow(shared: &Shared, client: &RegistryClient, backend: &str, service: &str) {
    let (revision, instances) = match client.instances(service).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(backend, service, error = %e, "cannot list service instances; retrying");
            return;
        }
    };
    let mut members: BTreeMap<String, Instance> =
        instances.into_iter().map(|i| (i.id.clone(), i)).collect();
    shared.set_discovered(backend, servers_of(&members));
    let prefix = format!("services/{service}/");
    let mut from = revision + 1;
    loop {
        let mut watch = match client.watch(&prefix, true, from).await {
            Ok(w) => w,
            Err(e) if e.status() == Some(410) => return,
            Err(e) => {
                tracing::warn!(backend, service, error = %e, "cannot watch service; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(item) = watch.next().await {
            match item {
                WatchItem::Event(e) => {
                    from = e.revision + 1;
                    let Some(id) = e.kv.key.strip_prefix(&prefix) else {
                        continue;
                    };
                    let changed = match e.kind {
                        EventKind::Put => match serde_json::from_slice::<Instance>(&e.kv.value) {
                            Ok(inst) if inst.validate().is_ok() => {
                                members.insert(id.to_string(), inst);
                                true
                            }
                            _ => {
                                tracing::warn!(backend, key = %e.kv.key, "ignoring malformed instance");
                                false
                            }
                        },
                        EventKind::Delete => members.remove(id).is_some(),
                    };
                    if changed {
                        shared.set_discovered(backend, servers_of(&members));
                    }
                }
                WatchItem::Progress(r) => from = from.max(r + 1),
                WatchItem::Error(e) => {
                    tracing::warn!(backend, service, error = %e, "watch ended; listing again");
                    return;
                }
            }
        }
    }
}
