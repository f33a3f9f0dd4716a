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

/// A deposed controller's revert or autoscale cannot land: a deployment change carrying
/// a fence (an election key and the create revision it was won with) is refused once the
/// key is gone, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_change_is_refused_once_its_holder_no_longer_leads() {
    let dir = TestDir::new("cluster-fence");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let lease = api.lease_ok(server.addr, 30.0).await;
    let won = api
        .request(
            "POST",
            server.addr,
            "/v1/election/fence-test/campaign",
            format!("{{\"value\":\"me\",\"lease\":\"{lease}\"}}"),
        )
        .await
        .unwrap();
    assert_eq!(won.status, 200, "{}", won.text());
    let leader = won.json();
    let key = leader["leader"]["key"].as_str().unwrap().to_string();
    let rev = leader["leader"]["revision"].as_u64().unwrap();
    let fence = format!("fence_key={}&fence_revision={rev}", key.replace('/', "%2F"));

    let v1 = demo_manifest("1.0.0", 1, "");
    let r = api
        .request(
            "PUT",
            server.addr,
            &format!("/v1/deployments/web?{fence}"),
            v1,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "while the fence holds: {}", r.text());
    let before = status(&api, &server, "web").await.unwrap();

    api.lease_revoke(server.addr, lease).await.unwrap();
    let v2 = demo_manifest("2.0.0", 1, "");
    let r = api
        .request(
            "PUT",
            server.addr,
            &format!("/v1/deployments/web?{fence}"),
            v2,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(error_message(&r, 409).contains("fenced"), "{}", r.text());
    let r = api
        .request(
            "POST",
            server.addr,
            &format!("/v1/deployments/web/scale?{fence}"),
            "{\"count\": 2}",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    let after = status(&api, &server, "web").await.unwrap();
    assert_eq!(after["version"], "1.0.0");
    assert_eq!(after["count"], 1);
    assert_eq!(after["revision"], before["revision"], "nothing changed");
    let r = api
        .request(
            "PUT",
            server.addr,
            "/v1/deployments/web?fence_key=x",
            demo_manifest("2.0.0", 1, ""),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "half a fence is refused: {}", r.text());
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// The keys of every assignment (instance → node decisions) in the registry.
async fn assignments(api: &Api, via: &ServerProc) -> Option<Vec<String>> {
    let r = api
        .get(via.addr, "/v1/kv/herd/assignments/?prefix")
        .await
        .ok()?;
    if r.status != 200 {
        return None;
    }
    Some(
        r.json()["kvs"]
            .as_array()?
            .iter()
            .filter_map(|kv| kv["key"].as_str().map(str::to_string))
            .collect(),
    )
}

/// The leading controller's whole server is paused (SIGSTOP) past its lease: another takes
/// over and carries out a change made meanwhile. When the paused one wakes up it still
/// holds the plan it was making and its old fencing token; nothing it writes may land:
/// the instances stay exactly as the new leader decided, with no extra assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_paused_past_its_lease_wakes_up_deposed_and_changes_nothing() {
    let dir = TestDir::new("cluster-ctl-paused");
    let api = Api::default();
    let servers = start_cluster(&dir, 3, None);
    let refs: Vec<&ServerProc> = servers.iter().collect();
    // Cluster management in use, so that the controllers campaign.
    apply(&servers[0], &dir.path, &demo_manifest("1.0.0", 2, ""));
    let leading = eventually("a controller leads", Duration::from_secs(20), || {
        controller_at(&api, &refs)
    })
    .await;
    let i = servers
        .iter()
        .position(|s| s.addr.to_string() == leading)
        .unwrap();
    let others: Vec<&ServerProc> = servers
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != i)
        .map(|(_, s)| s)
        .collect();
    // The agents and the test speak to the two that stay awake: a paused server accepts
    // connections (the kernel does) and answers nothing.
    let awake: Vec<SocketAddr> = others.iter().map(|s| s.addr).collect();
    let _a = AgentProc::start_with(&awake, dir.node("agent-a"), "node-a", "", "23950-23974");
    let _b = AgentProc::start_with(&awake, dir.node("agent-b"), "node-b", "", "23975-23999");
    all_run(&api, others[0], "web", 2, "1.0.0").await;

    signal(servers[i].pid(), "-STOP");
    let now = eventually(
        "another controller leads while the first is paused",
        Duration::from_secs(30),
        || async { controller_at(&api, &others).await.filter(|l| *l != leading) },
    )
    .await;
    let via = others[0].addr.to_string();
    let o = std::process::Command::new(herd_bin())
        .args(["scale", "web", "3", "--server", &via])
        .env_remove("HERD_SERVER")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    all_run(&api, others[0], "web", 3, "1.0.0").await;
    let decided = assignments(&api, others[0]).await.unwrap();
    assert_eq!(decided.len(), 3, "{decided:?}");

    signal(servers[i].pid(), "-CONT");
    // The woken controller learns it was deposed (its lease is gone, or the fence refuses
    // its write) once its server has caught up with the new term. Until then and for at
    // least 5 s, nothing changes: the same three assignments, three instances in Run.
    let woke = std::time::Instant::now();
    let deposed =
        |log: &str| log.contains("lost leadership") || log.contains("refused by the fence");
    loop {
        let s = status(&api, others[1], "web").await.unwrap();
        let list = s["instances"].as_array().unwrap();
        assert_eq!(list.len(), 3, "{s}");
        assert!(list.iter().all(|x| x["state"] == "Run"), "{s}");
        assert_eq!(assignments(&api, others[1]).await.unwrap(), decided);
        let waited = woke.elapsed();
        if waited > Duration::from_secs(5) && deposed(&servers[i].stderr()) {
            break;
        }
        assert!(
            waited < Duration::from_secs(45),
            "the woken controller never noticed it was deposed:\n{}",
            servers[i].stderr_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        controller_at(&api, &others).await.as_deref(),
        Some(now.as_str()),
        "the new controller still leads"
    );
}

/// The raft leader's id as a node sees it, and each node's id.
async fn raft_roles(api: &Api, nodes: &[&ServerProc]) -> Option<(u64, Vec<u64>)> {
    let mut ids = Vec::new();
    let mut leader = None;
    for n in nodes {
        let st = api.get(n.addr, "/status").await.ok()?.json();
        ids.push(st["id"].as_u64()?);
        leader = leader.or(st["leader"].as_u64());
    }
    Some((leader?, ids))
}

/// A registry node the agent speaks to first hangs (SIGSTOP: the kernel still accepts its
/// connections, nothing answers) for several lease periods: the agent's renewals pass it
/// over for the next node in time, so its node is never lost and its instance never
/// moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_keeps_its_lease_when_the_first_registry_node_it_knows_hangs() {
    let dir = TestDir::new("cluster-node-hangs");
    let api = Api::default();
    let servers = start_cluster(&dir, 3, None);
    let refs: Vec<&ServerProc> = servers.iter().collect();
    apply(&servers[0], &dir.path, &demo_manifest("1.0.0", 1, ""));
    let leading = eventually("a controller leads", Duration::from_secs(20), || {
        controller_at(&api, &refs)
    })
    .await;
    let (raft_leader, ids) = eventually("a raft leader", Duration::from_secs(20), || {
        raft_roles(&api, &refs)
    })
    .await;
    // Hang a node that neither leads Raft nor hosts the leading controller: the point is
    // the agent's client, not a failover of the cluster.
    let h = (0..3)
        .find(|&k| ids[k] != raft_leader && servers[k].addr.to_string() != leading)
        .expect("a node that leads nothing");
    let mut order: Vec<SocketAddr> = vec![servers[h].addr];
    order.extend(
        servers
            .iter()
            .filter(|s| s.addr != servers[h].addr)
            .map(|s| s.addr),
    );
    let awake = servers.iter().find(|s| s.addr != servers[h].addr).unwrap();
    let _a = AgentProc::start_with(&order, dir.node("agent-a"), "node-a", "", "24000-24049");
    let s = all_run(&api, awake, "web", 1, "1.0.0").await;
    let instance = s["instances"][0]["id"].as_str().unwrap().to_string();

    signal(servers[h].pid(), "-STOP");
    // Four lease periods (the agent's lease is 2 s): the node stays, the instance stays.
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < until {
        let nodes = api.get(awake.addr, "/v1/nodes").await.unwrap().json();
        assert!(
            nodes["nodes"]
                .as_array()
                .is_some_and(|l| l.iter().any(|n| n["name"] == "node-a")),
            "node-a was lost while one registry node hung: {nodes}"
        );
        let s = status(&api, awake, "web").await.unwrap();
        let list = s["instances"].as_array().unwrap();
        assert!(
            list.len() == 1 && list[0]["id"] == instance.as_str() && list[0]["state"] == "Run",
            "the instance moved or stopped: {s}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    signal(servers[h].pid(), "-CONT");
}
