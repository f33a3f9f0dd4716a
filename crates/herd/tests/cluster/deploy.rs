//! Deploy, supervise, update and reschedule: `herd apply` to instances answering through
//! the gateway, restarts after a crash, Failed after a crash loop, a rolling update under
//! load with no failed request, and an agent lost and back.

use crate::{all_run, apply, demo_manifest, gateway_for, ids, status};
use herd_testkit::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every answer through the gateway until each of `ids` has answered (`demo-app V ID`).
async fn reached_through_gateway(c: &Client, gw: &Gateway, version: &str, ids: &BTreeSet<String>) {
    let seen = Mutex::new(BTreeSet::new());
    eventually(
        &format!("every instance {ids:?} answering {version} through the gateway"),
        Duration::from_secs(15),
        || async {
            let r = get(c, &gw.url("/")).await.ok()?;
            let mut words = r.body.split_whitespace();
            if r.status == 200 && words.next() == Some("demo-app") && words.next() == Some(version)
            {
                seen.lock().unwrap().insert(words.next()?.to_string());
            }
            (seen.lock().unwrap().is_superset(ids)).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_runs_every_instance_through_the_gateway_and_a_killed_one_comes_back() {
    let dir = TestDir::new("cluster-apply");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _a = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "zone=a",
        "23100-23149",
    );
    let _b = AgentProc::start(
        server.addr,
        dir.node("agent-b"),
        "node-b",
        "zone=b",
        "23150-23199",
    );
    let gw = gateway_for(&server);
    let c = client();

    let answer = apply(&server, &dir.path, &demo_manifest("1.0.0", 3, ""));
    assert_eq!(answer["version"], "1.0.0", "{answer}");
    assert!(answer["revision"].as_u64() >= Some(1), "{answer}");
    let s = all_run(&api, &server, "web", 3, "1.0.0").await;
    let nodes: BTreeMap<String, usize> =
        s["instances"]
            .as_array()
            .unwrap()
            .iter()
            .fold(BTreeMap::new(), |mut m, i| {
                *m.entry(i["node"].as_str().unwrap().to_string())
                    .or_default() += 1;
                m
            });
    assert_eq!(nodes.len(), 2, "spread over both agents: {nodes:?}");
    for i in s["instances"].as_array().unwrap() {
        assert_eq!(i["health"], "passing", "{i}");
        let port = i["port"].as_u64().expect("a port");
        assert!(
            (23100..23200).contains(&port),
            "from the agents' ranges: {i}"
        );
        assert!(i["pid"].as_u64().is_some(), "{i}");
    }
    assert_eq!(s["state"], "Run", "{s}");
    let first = ids(&s);
    reached_through_gateway(&c, &gw, "1.0.0", &first).await;

    // kill -9 one instance: the agent starts it again (same instance, restarts = 1), it
    // passes its health check and is back in rotation.
    let victim = &s["instances"][0];
    let (id, pid) = (
        victim["id"].as_str().unwrap().to_string(),
        victim["pid"].as_u64().unwrap(),
    );
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    let back = eventually(
        "the killed instance restarted and Run",
        Duration::from_secs(20),
        || async {
            let s = status(&api, &server, "web").await?;
            let i = s["instances"]
                .as_array()?
                .iter()
                .find(|i| i["id"] == id.as_str())?
                .clone();
            (i["state"] == "Run" && i["restarts"] == 1 && i["pid"].as_u64() != Some(pid))
                .then_some(s)
        },
    )
    .await;
    assert_eq!(ids(&back), first, "the same instances, none added");
    reached_through_gateway(&c, &gw, "1.0.0", &first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_crashes_on_start_is_failed_after_its_attempts_and_not_retried() {
    let dir = TestDir::new("cluster-crash");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let mut agent = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23200-23249",
    );
    let manifest = r#"name = "crashy"
version = "0.1.0"
[run]
command = "/bin/sh"
args = ["-c", "echo starting; echo failing >&2; exit 3"]
[restart]
attempts = 2
interval = "60s"
delay = "1s"
max_delay = "1s"
"#;
    apply(&server, &dir.path, manifest);
    // `herd logs -f` started once the first run wrote its stderr prints the later runs'
    // lines as they are written (restarts come 1 s apart).
    let log_dir = dir.node("agent-a").join("logs").join("crashy");
    eventually(
        "the first run's stderr file",
        Duration::from_secs(10),
        || async {
            std::fs::read_dir(&log_dir)
                .ok()?
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(".stderr.log"))
                .then_some(())
        },
    )
    .await;
    let mut follow = std::process::Command::new(herd_bin())
        .args(["logs", "crashy", "--stderr", "-f", "--data-dir"])
        .arg(dir.node("agent-a"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut failing = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while failing < 3 && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            failing += usize::from(line == "failing");
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(failing, 3, "herd logs -f printed each run's stderr line");
    let s = eventually(
        "the instance to be Failed",
        Duration::from_secs(20),
        || async {
            let s = status(&api, &server, "crashy").await?;
            (s["instances"][0]["state"] == "Failed").then_some(s)
        },
    )
    .await;
    let i = &s["instances"][0];
    assert_eq!(
        i["restarts"], 2,
        "two restarts, then the third crash is Failed: {i}"
    );
    let msg = i["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("exited with status 3") && msg.contains("restart.attempts = 2"),
        "{msg}"
    );
    assert_eq!(s["state"], "Failed", "{s}");
    // Not retried: a second later it is still the same Failed instance.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let again = status(&api, &server, "crashy").await.unwrap();
    assert_eq!(again["instances"][0]["restarts"], 2, "{again}");
    assert_eq!(again["instances"][0]["state"], "Failed");
    // Its output went to the agent's log files.
    let o = std::process::Command::new(herd_bin())
        .args(["logs", "crashy", "--stderr", "--data-dir"])
        .arg(dir.node("agent-a"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("failing")
            .count(),
        3
    );

    // Alerts on the cluster's state: the Failed instance, the service under its minimum,
    // and — once its agent is killed and its lease runs out — the node.
    let rules = "[[rules]]\nname = \"failed\"\nkind = \"instance_failed\"\n\n\
                 [[rules]]\nname = \"short\"\nkind = \"instances_below_min\"\n\n\
                 [[rules]]\nname = \"lost\"\nkind = \"node_lost\"\n";
    let r = api
        .request("PUT", server.addr, "/v1/alerts/rules", rules)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let id = s["instances"][0]["id"].as_str().unwrap().to_string();
    let alerts = eventually(
        "the Failed and below-min alerts",
        Duration::from_secs(20),
        || async {
            let l = api.get(server.addr, "/v1/alerts").await.ok()?.json();
            (l["alerts"].as_array()?.len() == 2).then_some(l)
        },
    )
    .await;
    let subjects: Vec<(&str, &str)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["rule"].as_str().unwrap(), a["subject"].as_str().unwrap()))
        .collect();
    assert!(
        subjects.contains(&("failed", &format!("crashy/{id}"))),
        "{alerts}"
    );
    assert!(subjects.contains(&("short", "crashy")), "{alerts}");
    agent.kill9();
    eventually("the lost node's alert", Duration::from_secs(20), || async {
        let l = api.get(server.addr, "/v1/alerts").await.ok()?.json();
        l["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["rule"] == "lost" && a["subject"] == "node-a")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_and_an_auto_revert_under_load_fail_no_request() {
    let dir = TestDir::new("cluster-roll");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _a = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23300-23349",
    );
    let _b = AgentProc::start(
        server.addr,
        dir.node("agent-b"),
        "node-b",
        "",
        "23350-23399",
    );
    let gw = gateway_for(&server);
    let c = client();
    apply(&server, &dir.path, &demo_manifest("1.0.0", 2, ""));
    let s = all_run(&api, &server, "web", 2, "1.0.0").await;
    reached_through_gateway(&c, &gw, "1.0.0", &ids(&s)).await;

    // A counting client: every answer's status and version, bounded in count and time.
    let done = Arc::new(AtomicBool::new(false));
    let load = {
        let (c, url, done) = (c.clone(), gw.url("/"), done.clone());
        tokio::spawn(async move {
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut versions: Vec<String> = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            let mut n = 0;
            while !done.load(Ordering::SeqCst)
                && std::time::Instant::now() < deadline
                && n < 200_000
            {
                n += 1;
                let (status, v) = match get(&c, &url).await {
                    Ok(r) => (
                        r.status,
                        r.body.split_whitespace().nth(1).unwrap_or("").to_string(),
                    ),
                    Err(_) => (0, String::new()),
                };
                *statuses.entry(status).or_default() += 1;
                if versions.last() != Some(&v) {
                    versions.push(v);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (statuses, versions)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    apply(&server, &dir.path, &demo_manifest("2.0.0", 2, ""));
    let s = all_run(&api, &server, "web", 2, "2.0.0").await;
    reached_through_gateway(&c, &gw, "2.0.0", &ids(&s)).await;

    // 3.0.0 never passes its health check: past healthy_deadline (3 s) the controller
    // reverts to 2.0.0, whose instances never stopped serving.
    let broken = demo_manifest("3.0.0", 2, "")
        .replace(
            r#"args = ["demo-app", "--version", "3.0.0"]"#,
            r#"args = ["demo-app", "--version", "3.0.0", "--unhealthy"]"#,
        )
        .replace(r#"healthy_deadline = "30s""#, r#"healthy_deadline = "3s""#);
    assert!(broken.contains("--unhealthy") && broken.contains(r#""3s""#));
    apply(&server, &dir.path, &broken);
    eventually(
        "3.0.0 started, in state Update (seed 001), and the service in Update",
        Duration::from_secs(10),
        || async {
            let s = status(&api, &server, "web").await?;
            let updating = s["instances"]
                .as_array()?
                .iter()
                .any(|i| i["version"] == "3.0.0" && i["state"] == "Update");
            (updating && s["state"] == "Update").then_some(())
        },
    )
    .await;
    let reverted = eventually(
        "the deployment back at 2.0.0",
        Duration::from_secs(20),
        || async {
            let s = status(&api, &server, "web").await?;
            (s["version"] == "2.0.0").then_some(s)
        },
    )
    .await;
    assert!(reverted["revision"].as_u64() >= Some(4), "{reverted}");
    all_run(&api, &server, "web", 2, "2.0.0").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::SeqCst);
    let (statuses, versions) = load.await.unwrap();
    let total: u64 = statuses.values().sum();
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "every request answered 200 during the update: {statuses:?}"
    );
    assert!(total > 100, "the load ran through the update: {statuses:?}");
    assert_eq!(
        versions.first().map(String::as_str),
        Some("1.0.0"),
        "{versions:?}"
    );
    assert_eq!(
        versions.last().map(String::as_str),
        Some("2.0.0"),
        "{versions:?}"
    );

    // Two revisions, in order.
    let h = api
        .get(server.addr, "/v1/deployments/web/history")
        .await
        .unwrap()
        .json();
    let versions: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["services"]["web"]["version"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0", "3.0.0", "2.0.0"], "{h}");
    let last = h.as_array().unwrap().last().unwrap()["change"]
        .as_str()
        .unwrap_or("");
    assert!(
        last.starts_with("apply web 2.0.0: auto-revert 3.0.0 -> 2.0.0")
            && last.contains("healthy_deadline"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agents_instances_run_elsewhere_and_it_stops_its_stale_ones_on_return() {
    let dir = TestDir::new("cluster-lost");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let mut a = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23400-23449",
    );
    let _b = AgentProc::start(
        server.addr,
        dir.node("agent-b"),
        "node-b",
        "",
        "23450-23499",
    );
    apply(&server, &dir.path, &demo_manifest("1.0.0", 2, ""));
    let s = all_run(&api, &server, "web", 2, "1.0.0").await;
    let on_a: Vec<Value> = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["node"] == "node-a")
        .cloned()
        .collect();
    assert_eq!(on_a.len(), 1, "one per node: {s}");
    let stale_pid = on_a[0]["pid"].as_u64().unwrap() as u32;

    a.kill9();
    // The lease (2 s) lapses, the controller moves the instance to node-b.
    eventually(
        "both instances Run on node-b",
        Duration::from_secs(30),
        || async {
            let s = status(&api, &server, "web").await?;
            let list = s["instances"].as_array()?;
            (list.len() == 2
                && list
                    .iter()
                    .all(|i| i["node"] == "node-b" && i["state"] == "Run"))
            .then_some(())
        },
    )
    .await;
    // The orphan still runs (its own process group) until its agent returns…
    assert!(alive(stale_pid), "the orphan runs");
    a.restart();
    // … and the returning agent stops it: no duplicate.
    eventually(
        "the stale instance stopped",
        Duration::from_secs(15),
        || async { (!alive(stale_pid)).then_some(()) },
    )
    .await;
    let s = status(&api, &server, "web").await.unwrap();
    assert_eq!(s["instances"].as_array().unwrap().len(), 2, "{s}");
}

/// Running: /proc knows it and it is not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The demo service as a JSON manifest: the TOML's keys, each table an object.
fn json_manifest(version: &str, count: u32) -> String {
    serde_json::json!({
        "name": "web",
        "version": version,
        "run": {
            "command": herd_bin(),
            "args": ["demo-app", "--version", version],
            "ports": ["http"],
            "stop_timeout": "5s"
        },
        "instances": {"count": count, "min": 1, "max": 4},
        "health": {"kind": "http", "path": "/healthz", "interval": "200ms", "timeout": "200ms",
                   "healthy_threshold": 1, "unhealthy_threshold": 2},
        "update": {"max_parallel": 1, "min_healthy_time": "500ms", "healthy_deadline": "30s"}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_manifest_deploys_through_the_api_and_the_cli_like_its_toml() {
    let dir = TestDir::new("cluster-json");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _agent = AgentProc::start(server.addr, dir.node("agent"), "node-a", "", "23560-23599");
    let json = [("content-type", "application/json")];
    let r = api
        .request_with(
            "PUT",
            server.addr,
            "/v1/deployments/web",
            &json,
            json_manifest("1.0.0", 2),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    all_run(&api, &server, "web", 2, "1.0.0").await;

    // A mistake is named by its field, as in TOML; JSON's null is refused with the fix.
    let bad = json_manifest("1.0.1", 2)
        .replace("\"healthy_threshold\":1", "\"healthy_threshold\":\"one\"");
    assert!(bad.contains("\"one\""), "the replacement applies: {bad}");
    let r = api
        .request_with("PUT", server.addr, "/v1/deployments/web", &json, bad)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("health.healthy_threshold"),
        "{}",
        r.text()
    );
    let r = api
        .request_with(
            "PUT",
            server.addr,
            "/v1/deployments/web",
            &json,
            r#"{"name": "web", "artifact": null}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("leave the key out"), "{}", r.text());

    // The CLI takes a .json file too, and the update rolls like any other.
    let file = dir.path.join("web.json");
    std::fs::write(&file, json_manifest("2.0.0", 2)).unwrap();
    let out = std::process::Command::new(herd_bin())
        .args(["apply", "-f"])
        .arg(&file)
        .args(["--server", &server.addr.to_string()])
        .env_remove("HERD_SERVER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    all_run(&api, &server, "web", 2, "2.0.0").await;
    let d = status(&api, &server, "web").await.unwrap();
    assert_eq!(d["version"], "2.0.0", "{d}");
}
