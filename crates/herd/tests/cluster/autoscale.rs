//! Autoscaling on requests per second: a gateway with tracing on sends its spans to the
//! server; the controller reads the calls into the service from them and scales it up
//! within `instances.max`, writing why into the cluster's history.

use super::*;

/// The first change in web's history that starts with `prefix` (an autoscale's reason).
async fn history_change(api: &Api, server: &ServerProc, prefix: &str) -> String {
    let history = api
        .get(server.addr, "/v1/deployments/web/history")
        .await
        .unwrap()
        .json();
    history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["change"].as_str())
        .find(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no \"{prefix}\" in the history: {history}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_the_gateway_scales_a_service_up_and_history_says_why() {
    let dir = TestDir::new("cluster-autoscale");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _agent = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23500-23549",
    );
    let manifest = demo_manifest("1.0.0", 1, "").replace("min = 1\nmax = 10", "min = 1\nmax = 3")
        + "\n[autoscale]\nmetric = \"rps_per_instance\"\ntarget = 2\ncooldown = \"1s\"\n";
    apply(&server, &dir.path, &manifest);
    all_run(&api, &server, "web", 1, "1.0.0").await;
    let gw = Gateway::start(&format!(
        "[registry]\nservers = [\"{0}\"]\n\n[tracing]\notlp_endpoint = \"http://{0}/v1/traces\"\n\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\nservice = \"web\"\n",
        server.addr
    ));
    let c = client();
    eventually(
        "the gateway to route to web",
        Duration::from_secs(20),
        || async { get(&c, &gw.url("/")).await.ok().filter(|r| r.status == 200) },
    )
    .await;
    // 600 calls: over the one or two minutes the rate is measured on, 5 to 10 per second,
    // against a target of 2 per instance — more than one instance's worth either way.
    for _ in 0..600 {
        assert_eq!(get(&c, &gw.url("/")).await.unwrap().status, 200);
    }
    // Up to instances.max (3), in one step or two (a measure taken mid-load may ask for 2).
    eventually(
        "web to scale up to instances.max",
        Duration::from_secs(30),
        || async {
            let s = status(&api, &server, "web").await?;
            (s["count"].as_u64()? == 3).then_some(s)
        },
    )
    .await;
    let change = history_change(&api, &server, "autoscale web").await;
    assert!(
        change.contains("requests/s over 1 instances") && change.contains("target 2"),
        "{change}"
    );
    all_run(&api, &server, "web", 3, "1.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_report_their_cpu_and_a_cpu_autoscaled_service_scales_down() {
    let dir = TestDir::new("cluster-autoscale-cpu");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _agent = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23550-23599",
    );
    let manifest = demo_manifest("1.0.0", 2, "").replace("min = 1\nmax = 10", "min = 1\nmax = 3")
        + "\n[autoscale]\nmetric = \"cpu\"\ntarget = 50\ncooldown = \"1s\"\n";
    apply(&server, &dir.path, &manifest);
    // The agents sample each instance's CPU every 5 s; idle demo apps use next to none.
    let s = eventually(
        "both instances to report their CPU",
        Duration::from_secs(30),
        || async {
            let s = status(&api, &server, "web").await?;
            let list = s["instances"].as_array()?;
            (list.len() == 2 && list.iter().all(|i| i["cpu_percent"].as_f64().is_some()))
                .then_some(s)
        },
    )
    .await;
    for i in s["instances"].as_array().unwrap() {
        let cpu = i["cpu_percent"].as_f64().unwrap();
        assert!((0.0..50.0).contains(&cpu), "an idle demo app at {cpu}% CPU");
    }
    eventually(
        "web to scale down to instances.min",
        Duration::from_secs(30),
        || async {
            let s = status(&api, &server, "web").await?;
            (s["count"].as_u64()? == 1).then_some(())
        },
    )
    .await;
    let change = history_change(&api, &server, "autoscale web 1").await;
    assert!(
        change.contains("% CPU over 2 instances") && change.contains("target 50: 1 instances"),
        "{change}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_instance_reports_its_cpu_and_a_cpu_autoscaled_service_scales_up() {
    let dir = TestDir::new("cluster-autoscale-cpu-up");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _agent = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23600-23649",
    );
    // One instance keeping 30 % of a core busy, a target of 20 % each: it needs two.
    let manifest = demo_manifest("1.0.0", 1, "")
        .replace("min = 1\nmax = 10", "min = 1\nmax = 2")
        .replace(
            "args = [\"demo-app\", \"--version\", \"1.0.0\"]",
            "args = [\"demo-app\", \"--version\", \"1.0.0\", \"--busy\", \"30\"]",
        )
        + "\n[autoscale]\nmetric = \"cpu\"\ntarget = 20\ncooldown = \"1s\"\n";
    assert!(manifest.contains("--busy"), "{manifest}");
    apply(&server, &dir.path, &manifest);
    eventually(
        "web to scale up to instances.max",
        Duration::from_secs(40),
        || async {
            let s = status(&api, &server, "web").await?;
            (s["count"].as_u64()? == 2).then_some(())
        },
    )
    .await;
    let change = history_change(&api, &server, "autoscale web 2").await;
    assert!(
        change.contains("% CPU over 1 instances") && change.contains("target 20: 2 instances"),
        "{change}"
    );
    // The CPU it scaled on is the instance's own, as the agent measured it.
    let cpu: f64 = change
        .split(": ")
        .nth(1)
        .and_then(|t| t.split('%').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no CPU figure in {change}"));
    assert!(
        (20.0..=60.0).contains(&cpu),
        "a 30 % busy instance measured at {cpu}%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_spans_a_service_keeps_its_count_and_once_traced_and_idle_it_scales_down() {
    let dir = TestDir::new("cluster-autoscale-rps-down");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _agent = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23650-23699",
    );
    let manifest = demo_manifest("1.0.0", 3, "").replace("min = 1\nmax = 10", "min = 1\nmax = 3")
        + "\n[autoscale]\nmetric = \"rps_per_instance\"\ntarget = 5\ncooldown = \"1s\"\n";
    apply(&server, &dir.path, &manifest);
    all_run(&api, &server, "web", 3, "1.0.0").await;
    // No gateway exports spans: no measure at all, which must not read as "no load".
    herd_testkit::eventually_blocking(
        "the controller to say it sees no spans",
        Duration::from_secs(20),
        || server.stderr().contains("sees no spans").then_some(()),
    );
    let s = status(&api, &server, "web").await.unwrap();
    assert_eq!(s["count"], 3, "{s}");

    // A gateway that traces, and a trickle of calls far under the target: down to min.
    let gw = Gateway::start(&format!(
        "[registry]\nservers = [\"{0}\"]\n\n[tracing]\notlp_endpoint = \"http://{0}/v1/traces\"\n\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\nservice = \"web\"\n",
        server.addr
    ));
    let c = client();
    eventually(
        "the gateway to route to web",
        Duration::from_secs(20),
        || async { get(&c, &gw.url("/")).await.ok().filter(|r| r.status == 200) },
    )
    .await;
    for _ in 0..10 {
        assert_eq!(get(&c, &gw.url("/")).await.unwrap().status, 200);
    }
    eventually(
        "web to scale down to instances.min",
        Duration::from_secs(30),
        || async {
            let s = status(&api, &server, "web").await?;
            (s["count"].as_u64()? == 1).then_some(())
        },
    )
    .await;
    let change = history_change(&api, &server, "autoscale web 1").await;
    assert!(
        change.contains("requests/s over 3 instances") && change.contains("target 5: 1 instances"),
        "{change}"
    );
}
