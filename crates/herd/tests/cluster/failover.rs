//! The controller of a three-server registry: exactly one leads (herd's own election);
//! when its server dies, another takes over within its lease and the cluster keeps
//! obeying changes — and the instances keep running meanwhile.

use crate::{all_run, apply, demo_manifest, status};
use herd_testkit::prelude::*;
use std::net::SocketAddr;
use std::time::Duration;

async fn controller_at(api: &Api, nodes: &[&ServerProc]) -> Option<String> {
    for n in nodes.iter().filter(|n| n.is_running()) {
        if let Ok(r) = api.get(n.addr, "/v1/election/herd-controller").await {
            if r.status == 200 {
                return r.json()["leader"]["value"].as_str().map(str::to_string);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_servers_controller_takes_over_when_the_leading_one_dies() {
    let dir = TestDir::new("cluster-ctl-failover");
    let api = Api::default();
    let mut servers = start_cluster(&dir, 3, None);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let _a = AgentProc::start_with(&addrs, dir.node("agent-a"), "node-a", "", "23700-23749");
    let _b = AgentProc::start_with(&addrs, dir.node("agent-b"), "node-b", "", "23750-23799");
    apply(&servers[0], &dir.path, &demo_manifest("1.0.0", 2, ""));
    all_run(&api, &servers[0], "web", 2, "1.0.0").await;

    let refs: Vec<&ServerProc> = servers.iter().collect();
    let leading = controller_at(&api, &refs)
        .await
        .expect("a controller leads");
    let i = servers
        .iter()
        .position(|s| s.addr.to_string() == leading)
        .expect("the leader is one of the servers");
    servers[i].kill9();
    let survivor = (i + 1) % 3;

    // Scale through a survivor (once the registry has a leader again: the dead server may
    // have led the Raft group too). Only a controller that took over can carry it out.
    let via = servers[survivor].addr.to_string();
    eventually(
        "the scale accepted by the surviving servers",
        Duration::from_secs(15),
        || async {
            let o = std::process::Command::new(herd_bin())
                .args(["scale", "web", "3", "--server", &via])
                .env_remove("HERD_SERVER")
                .output()
                .ok()?;
            o.status.success().then_some(())
        },
    )
    .await;
    all_run(&api, &servers[survivor], "web", 3, "1.0.0").await;
    let refs: Vec<&ServerProc> = servers.iter().collect();
    let now = eventually(
        "a controller on a surviving server",
        Duration::from_secs(20),
        || async { controller_at(&api, &refs).await.filter(|l| *l != leading) },
    )
    .await;
    assert_ne!(now, leading);
    let s = status(&api, &servers[survivor], "web").await.unwrap();
    assert_eq!(s["instances"].as_array().unwrap().len(), 3, "{s}");
}
