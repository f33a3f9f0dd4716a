//! The controller: runs inside every `herd server`, and exactly one acts at a time — the
//! leader of herd's own election `herd-controller`. It reconciles what operators applied
//! (`herd/deployments/`) with what agents report (`herd/nodes/`, `herd/instances/`) by
//! writing assignments (`herd/assignments/<node>/<instance>`); agents do the rest.
//!
//! It is an ordinary registry client (herd-api over HTTP, like a Kubernetes controller and
//! its API server), and every write it makes is a transaction that first compares its own
//! election key's create revision — its fencing token: a controller that lost its lease
//! (paused, cut off) cannot write after another took over. The decisions are `plan`'s,
//! pure; so are the alert rules' (`alerts/`), evaluated by the same leader. This crate must
//! not import the registry's server code, nor the agent.

pub mod alerts;
pub mod autoscale;
pub mod plan;

use herd_api::wire::{
    keys, Assignment, CampaignRequest, DeploymentRecord, InstanceReport, KeepAliveAnswer, KvRange,
    LeaderAnswer, LeaseAnswer, LeaseGrantRequest, NodeReport, TxnAnswer,
};
use herd_api::{ApiError, RegistryClient};
use herd_registry_core::{Compare, CompareOp, CompareTarget, Op, Txn, MAX_TXN_OPS};
use http::Method;
use plan::{plan, Action, Snapshot};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How often the leader looks at the cluster again.
const PASS_EVERY: Duration = Duration::from_millis(500);
/// The controller's lease: a paused leader loses its place this long after its last renewal.
const LEASE_TTL_S: f64 = 4.0;
/// A campaign call's wait before it asks again (well under the client's 30 s timeout).
const CAMPAIGN_WAIT_S: f64 = 20.0;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How often an idle controller looks whether cluster management is in use.
const IDLE_LOOK_EVERY: Duration = Duration::from_secs(1);

/// Campaign, lead while the lease lives, campaign again: forever. `identity` names this
/// controller in the election (its server's address).
///
/// A registry nobody deploys to stays exactly as its users left it: the controller only
/// campaigns (which writes an election key, a revision) once a deployment or an agent's
/// node key exists under `herd/`.
pub async fn run(client: RegistryClient, identity: String) {
    while !in_use(&client).await {
        tokio::time::sleep(IDLE_LOOK_EVERY).await;
    }
    loop {
        match lead(&client, &identity).await {
            Ok(()) => tracing::warn!("controller: lost leadership; campaigning again"),
            Err(e) => {
                tracing::debug!(error = %e, "controller: not leading");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Whether any key of cluster management exists (a local, serializable read: no Raft round).
async fn in_use(client: &RegistryClient) -> bool {
    let r: Result<KvRange, ApiError> = client
        .get(Method::GET, "/v1/kv/herd/?prefix&limit=1&serializable")
        .await;
    r.is_ok_and(|r| !r.kvs.is_empty())
}

struct Leadership {
    key: String,
    token: u64,
    lost: watch::Receiver<bool>,
    _keeper: tokio::task::JoinHandle<()>,
}

async fn lead(client: &RegistryClient, identity: &str) -> Result<(), ApiError> {
    let lease: LeaseAnswer = client
        .send(
            Method::POST,
            "/v1/lease",
            &LeaseGrantRequest { ttl_s: LEASE_TTL_S },
        )
        .await?;
    let (tx, lost) = watch::channel(false);
    let keeper = tokio::spawn(keep_alive(client.clone(), lease.id, tx));
    let leadership = loop {
        let req = CampaignRequest {
            value: identity.to_string(),
            lease: Some(lease.id),
            ttl_s: None,
            timeout_s: Some(CAMPAIGN_WAIT_S),
        };
        let path = format!("/v1/election/{}/campaign", keys::CONTROLLER_ELECTION);
        match client
            .send::<_, LeaderAnswer>(Method::POST, &path, &req)
            .await
        {
            Ok(won) => {
                break Leadership {
                    key: won.leader.key,
                    token: won.leader.revision,
                    lost: lost.clone(),
                    _keeper: keeper,
                }
            }
            Err(e) if e.status() == Some(408) && !*lost.borrow() => continue,
            Err(e) => {
                keeper.abort();
                return Err(e);
            }
        }
    };
    tracing::info!(token = leadership.token, "controller: leading the cluster");
    let alerting = tokio::spawn(alerts::run(
        client.clone(),
        alerts::Fence {
            key: leadership.key.clone(),
            token: leadership.token,
        },
        leadership.lost.clone(),
    ));
    let result = reconcile_while_leading(client, &leadership).await;
    if let Err(e) = &result {
        // Whatever failed, this controller no longer knows it leads: it lets go and
        // campaigns again, and says so (a paused or cut-off server's controller ends here).
        tracing::warn!(error = %e, "controller: lost leadership: a call failed; campaigning again");
    }
    alerting.abort();
    let _ = client
        .call(
            Method::DELETE,
            &format!("/v1/lease/{}", lease.id),
            Vec::new(),
        )
        .await;
    result
}

async fn keep_alive(client: RegistryClient, lease: u64, lost: watch::Sender<bool>) {
    let every = Duration::from_secs_f64(LEASE_TTL_S / 4.0);
    let path = format!("/v1/lease/{lease}/keepalive");
    loop {
        tokio::time::sleep(every).await;
        match client.get::<KeepAliveAnswer>(Method::POST, &path).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(404) => {
                let _ = lost.send(true);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "controller: renewing its lease failed; retrying")
            }
        }
    }
}

async fn reconcile_while_leading(client: &RegistryClient, l: &Leadership) -> Result<(), ApiError> {
    let mut lost = l.lost.clone();
    let mut last_short: BTreeMap<String, String> = BTreeMap::new();
    let mut next_autoscale = 0u64;
    let mut said_untraced = false;
    loop {
        if *lost.borrow() {
            return Ok(());
        }
        let snapshot = read(client).await?;
        // Plan once counting the ids it takes (plan is pure: the same inputs decide the
        // same), fetch exactly that many cluster-unique ids, then plan with them.
        let now = now_ms();
        let mut wanted = 0u32;
        let _ = plan(&snapshot, now, l.token, &mut |_: &str| {
            wanted += 1;
            String::new()
        });
        let mut fresh = fresh_ids(client, wanted).await?.into_iter();
        let mut spare = 0u32;
        let mut next_id = |service: &str| match fresh.next() {
            Some(id) => format!("{service}-{}", base36(id)),
            // Not reached (as many ids as the first plan took); unique all the same.
            None => {
                spare += 1;
                format!("{service}-{}x{spare}", base36(now))
            }
        };
        let plan::Plan {
            actions,
            shortfalls: short,
            reverts,
        } = plan(&snapshot, now, l.token, &mut next_id);
        for r in &reverts {
            tracing::warn!(service = %r.service, from = %r.from, to = %r.to, reason = %r.reason, "controller: update failed; reverting");
            let path = format!(
                "/v1/deployments/{}?reason={}&{}",
                r.service,
                percent_encode(&format!("auto-revert {} -> {}: {}", r.from, r.to, r.reason)),
                fence_query(l)
            );
            if let Err(e) = client
                .call_as(Method::PUT, &path, r.manifest.clone(), "application/toml")
                .await
            {
                tracing::warn!(service = %r.service, error = %e, "controller: the revert was refused");
            }
        }
        for s in &short {
            if last_short.get(&s.service) != Some(&s.reason) {
                tracing::warn!(service = %s.service, reason = %s.reason, "controller: cannot place every instance");
            }
        }
        last_short = short.into_iter().map(|s| (s.service, s.reason)).collect();
        if now >= next_autoscale {
            next_autoscale = now + AUTOSCALE_EVERY.as_millis() as u64;
            if let Err(e) = autoscale_pass(client, l, &snapshot, now, &mut said_untraced).await {
                tracing::debug!(error = %e, "controller: autoscaling skipped this pass");
            }
        }
        if !actions.is_empty() && !write(client, l, &actions).await? {
            tracing::warn!(
                "controller: a write was refused by the fence: another controller leads"
            );
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(PASS_EVERY) => {}
            _ = lost.changed() => {}
        }
    }
}

/// How often autoscaled services are measured against their target.
const AUTOSCALE_EVERY: Duration = Duration::from_secs(5);

/// Scale each autoscaled service to its load: requests per second into it over the last
/// minute as the gateways' spans count them (cluster-wide aggregates), or its instances' CPU.
async fn autoscale_pass(
    client: &RegistryClient,
    l: &Leadership,
    snapshot: &Snapshot,
    now: u64,
    said_untraced: &mut bool,
) -> Result<(), ApiError> {
    let scaled: Vec<(&DeploymentRecord, herd_agent_core::Manifest)> = snapshot
        .deployments
        .iter()
        .filter_map(|d| {
            let m = herd_agent_core::parse_manifest(&d.manifest, &d.name).ok()?;
            m.autoscale.is_some().then_some((d, m))
        })
        .collect();
    if scaled.is_empty() {
        return Ok(());
    }
    let calls: herd_api::wire::TelemetryDump = client
        .get(Method::GET, "/v1/telemetry/aggregates?window=60s")
        .await?;
    let reports: Vec<InstanceReport> = snapshot.reports.values().cloned().collect();
    // Not one span from anywhere in the window: no gateway traces into this cluster, and
    // "no calls" would read as "no load" and shrink every service to its minimum.
    let traced = !calls.services.is_empty();
    let on_rps = scaled.iter().any(|(_, m)| {
        m.autoscale
            .is_some_and(|a| a.metric == herd_agent_core::manifest::ScaleMetric::RpsPerInstance)
    });
    if on_rps && !traced && !*said_untraced {
        tracing::warn!(
            "controller: autoscaling on rps_per_instance sees no spans from any gateway in the \
             last minute; those services keep their count until a gateway exports spans here \
             ([tracing] otlp_endpoint = \"http://<server>/v1/traces\")"
        );
    }
    *said_untraced = on_rps && !traced;
    for (d, m) in scaled {
        let into: u64 = calls
            .edges
            .iter()
            .filter(|(_, to, _)| *to == d.name)
            .map(|(_, _, s)| s.calls)
            .sum();
        let rps = into as f64 / (calls.covered_ms.max(1_000) as f64 / 1000.0);
        let load = autoscale::Load {
            rps: traced.then_some(rps),
        };
        let Some(decision) = autoscale::decide(d, &m, &reports, load, now) else {
            continue;
        };
        tracing::info!(service = %decision.service, from = decision.from, to = decision.to, reason = %decision.reason, "controller: autoscale");
        let body = herd_api::wire::ScaleRequest {
            count: decision.to,
            reason: Some(decision.reason.clone()),
        };
        let path = format!(
            "/v1/deployments/{}/scale?{}",
            decision.service,
            fence_query(l)
        );
        if let Err(e) = client
            .send::<_, herd_api::wire::ChangeAnswer>(Method::POST, &path, &body)
            .await
        {
            tracing::warn!(service = %decision.service, error = %e, "controller: the autoscale was refused");
        }
    }
    Ok(())
}

/// `count` cluster-unique ids (none asked for: no call).
async fn fresh_ids(client: &RegistryClient, count: u32) -> Result<Vec<u64>, ApiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let a: herd_api::wire::IdsAnswer = client
        .get(
            Method::POST,
            &format!("/v1/ids?count={}", count.min(10_000)),
        )
        .await?;
    Ok(a.ids)
}

/// The fence a deployment change carries: the registry applies it only while this
/// controller's election key still has the create revision it won with.
fn fence_query(l: &Leadership) -> String {
    format!(
        "fence_key={}&fence_revision={}",
        percent_encode(&l.key),
        l.token
    )
}

/// A query value: everything but unreserved characters percent-encoded (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

async fn prefix<T: DeserializeOwned>(
    client: &RegistryClient,
    prefix: &str,
) -> Result<Vec<T>, ApiError> {
    let r: KvRange = client
        .get(Method::GET, &format!("/v1/kv/{prefix}?prefix"))
        .await?;
    Ok(r.kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

async fn read(client: &RegistryClient) -> Result<Snapshot, ApiError> {
    let deployments: Vec<DeploymentRecord> = prefix(client, keys::DEPLOYMENTS).await?;
    let nodes: Vec<NodeReport> = prefix(client, keys::NODES).await?;
    let assignments: Vec<Assignment> = prefix(client, keys::ASSIGNMENTS).await?;
    let reports: Vec<InstanceReport> = prefix(client, keys::INSTANCES).await?;
    Ok(Snapshot {
        deployments,
        nodes,
        assignments,
        reports: reports.into_iter().map(|r| (r.id.clone(), r)).collect(),
    })
}

/// Apply the actions in fenced transactions; false when the fence refused (deposed).
async fn write(
    client: &RegistryClient,
    l: &Leadership,
    actions: &[Action],
) -> Result<bool, ApiError> {
    let mut ops = Vec::new();
    for a in actions {
        match a {
            Action::Assign(a) => {
                tracing::info!(service = %a.service, instance = %a.instance, node = %a.node, version = %a.version, "controller: assign");
                ops.push(Op::Put {
                    key: keys::assignment(&a.node, &a.instance),
                    value: serde_json::to_vec(a).unwrap_or_default(),
                    lease: None,
                });
            }
            Action::Unassign {
                node,
                instance,
                why,
            } => {
                tracing::info!(%instance, %node, why, "controller: unassign");
                ops.push(Op::Delete {
                    key: keys::assignment(node, instance),
                    prefix: false,
                });
            }
        }
    }
    for chunk in ops.chunks(MAX_TXN_OPS) {
        let txn = Txn {
            compares: vec![Compare {
                key: l.key.clone(),
                target: CompareTarget::CreateRevision(l.token),
                op: CompareOp::Eq,
            }],
            success: chunk.to_vec(),
            failure: vec![],
        };
        let answer: TxnAnswer = client.send(Method::POST, "/v1/txn", &txn).await?;
        if !answer.succeeded {
            return Ok(false);
        }
    }
    Ok(true)
}
