//! An agent killed and started again on the same data directory adopts the instances it
//! left running (same processes, same ports, their output still reaching their log files,
//! back in the gateway's rotation) instead of restarting them; one that died meanwhile is
//! started anew; and no instance ever runs twice.

use crate::{all_run, apply, demo_manifest, gateway_for, status};
use herd_testkit::eventually_blocking;
use herd_testkit::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The live processes whose environment names this instance (HERD_INSTANCE=<id>).
fn processes_of(instance: &str) -> Vec<u32> {
    let want = format!("HERD_INSTANCE={instance}");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) && running(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// In /proc and not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn pids(s: &Value) -> BTreeMap<String, u64> {
    s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["pid"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_the_instances_it_left_running_and_restarts_only_the_dead() {
    let dir = TestDir::new("cluster-adopt");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    // A lease long enough that the controller does not give the node up during the restart.
    let mut agent =
        AgentProc::start_with_lease(server.addr, dir.node("agent"), "node-a", "23500-23549", 20);
    apply(&server, &dir.path, &demo_manifest("1.0.0", 2, ""));
    let before = all_run(&api, &server, "web", 2, "1.0.0").await;
    let before_pids = pids(&before);
    let ids: Vec<String> = before_pids.keys().cloned().collect();
    let (kept, lost) = (ids[0].clone(), ids[1].clone());
    let ports: BTreeMap<String, u64> = before["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["port"].as_u64().unwrap(),
            )
        })
        .collect();

    agent.kill9();
    // One instance dies while its agent is away; the other keeps running untended.
    let lost_pid = before_pids[&lost] as i32;
    assert!(std::process::Command::new("kill")
        .args(["-9", &lost_pid.to_string()])
        .status()
        .unwrap()
        .success());
    agent.restart();

    let after = eventually(
        "both instances Run again, the survivor adopted and the dead one started anew",
        Duration::from_secs(30),
        || async {
            let s = status(&api, &server, "web").await?;
            let list = s["instances"].as_array()?;
            let p = pids(&s);
            (list.len() == 2
                && list.iter().all(|i| i["state"] == "Run")
                && p.get(&kept) == before_pids.get(&kept)
                && p.get(&lost)
                    .is_some_and(|&n| n != 0 && n != before_pids[&lost]))
            .then_some(s)
        },
    )
    .await;
    let adopted = after["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == kept.as_str())
        .unwrap()
        .clone();
    assert_eq!(adopted["port"].as_u64(), Some(ports[&kept]), "{adopted}");
    assert_eq!(adopted["restarts"], 0, "adopted, not restarted: {adopted}");
    assert!(
        agent
            .stderr()
            .contains("adopted the instance's running process"),
        "{}",
        agent.stderr()
    );
    // Exactly one process per instance: nothing was started twice.
    for id in [&kept, &lost] {
        let p = processes_of(id);
        assert_eq!(p.len(), 1, "{id}: {p:?}");
        assert_eq!(u64::from(p[0]), pids(&after)[id]);
    }

    // The adopted process's output still reaches its log file, and it takes traffic.
    let gw = gateway_for(&server);
    let c = client();
    let port = ports[&kept];
    let direct = get(&c, &format!("http://127.0.0.1:{port}/after-adoption"))
        .await
        .unwrap();
    assert_eq!(direct.status, 200);
    let log = agent
        .dir
        .join("logs")
        .join("web")
        .join(format!("{kept}.stdout.log"));
    eventually_blocking(
        "the adopted process's access line in its log file",
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("GET /after-adoption")
                .then_some(())
        },
    );
    // `herd logs` asks the agent, as it would on another machine: one instance as written,
    // every instance line by line with its name, and -f keeps following.
    let logs = |args: &[&str]| {
        let mut cmd = std::process::Command::new(herd_bin());
        cmd.args(["logs", "web", "--server", &server.addr.to_string()])
            .args(args)
            .env_remove("HERD_SERVER")
            .env_remove("HERD_TOKEN");
        cmd
    };
    let one = logs(&["--instance", &kept]).output().unwrap();
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    assert!(text.contains("GET /after-adoption"), "{text}");
    let all = logs(&["--stderr"]).output().unwrap();
    let text = String::from_utf8_lossy(&all.stdout);
    for id in [&kept, &lost] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{id} | demo-app 1.0.0 listening"))),
            "{id}: {text}"
        );
    }
    let tail = logs(&["--instance", &kept, "--tail", "5"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&tail.stdout), "tion\n");
    let follow_out = dir.node("follow.out");
    let mut follower = logs(&["-f"])
        .stdout(std::fs::File::create(&follow_out).unwrap())
        .spawn()
        .unwrap();
    eventually(
        "the follower to print a request made after it started",
        Duration::from_secs(10),
        || async {
            let _ = get(&c, &format!("http://127.0.0.1:{port}/followed")).await;
            let text = std::fs::read_to_string(&follow_out).ok()?;
            text.lines()
                .any(|l| l == format!("{kept} | GET /followed"))
                .then_some(())
        },
    )
    .await;
    let _ = follower.kill();
    let _ = follower.wait();

    eventually(
        "the gateway to reach both instances",
        Duration::from_secs(10),
        || async {
            let mut seen = BTreeSet::new();
            for _ in 0..8 {
                let r = get(&c, &gw.url("/")).await.ok()?;
                if r.status != 200 {
                    return None;
                }
                seen.insert(r.body.split_whitespace().nth(2)?.to_string());
            }
            (seen.len() == 2).then_some(())
        },
    )
    .await;

    // Stopped for good, the agent takes its instances with it.
    assert_eq!(agent.terminate(), Some(0));
    for id in [&kept, &lost] {
        assert!(
            processes_of(id).is_empty(),
            "{id} outlived its agent's stop"
        );
    }
}
