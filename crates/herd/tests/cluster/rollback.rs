//! Versions across services: `depends_on` refusing an apply that breaks a dependent,
//! `herd rollout undo` taking a dependent back with the service it needs, `herd diff`,
//! `herd restart`, and `herd scale`.

use crate::{all_run, apply, herd, ids, named_manifest, status, try_apply};
use herd_testkit::prelude::*;
use serde_json::Value;
use std::time::Duration;

fn needs(range: &str) -> String {
    format!("\n[depends_on]\ndb = \"{range}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_refuses_a_breaking_apply_and_undo_takes_the_dependent_back() {
    let dir = TestDir::new("cluster-undo");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _a = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23500-23549",
    );

    apply(&server, &dir.path, &named_manifest("db", "1.0.0", 1, ""));
    apply(
        &server,
        &dir.path,
        &named_manifest("api", "1.0.0", 1, &needs(">=1.0, <2")),
    );
    // db 2.0.0 would break api 1.0.0's range: refused, with the range named; nothing changes.
    let (code, _, err) = try_apply(&server, &dir.path, &named_manifest("db", "2.0.0", 1, ""));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("api") && err.contains("db") && err.contains("<2"),
        "{err}"
    );
    assert_eq!(
        status(&api, &server, "db").await.unwrap()["version"],
        "1.0.0"
    );

    // The dependent first, then db: both allowed.
    apply(
        &server,
        &dir.path,
        &named_manifest("api", "2.0.0", 1, &needs(">=1.0, <3")),
    );
    apply(&server, &dir.path, &named_manifest("db", "2.0.0", 1, ""));
    let r = apply(
        &server,
        &dir.path,
        &named_manifest("api", "3.0.0", 1, &needs(">=2.0, <3")),
    );
    let before_undo = r["revision"].as_u64().unwrap();
    all_run(&api, &server, "db", 1, "2.0.0").await;
    all_run(&api, &server, "api", 1, "3.0.0").await;

    // Undo db: db 1.0.0 breaks api 3.0.0 (needs >=2.0), so api goes back to what it ran
    // beside db 1.0.0 — shown first by --dry-run, which changes nothing.
    let (code, out, err) = herd(&server, &["rollout", "undo", "db", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let steps: Vec<(String, String, String)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap_or("").to_string();
            (f("service"), f("from"), f("to"))
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("db".to_string(), "2.0.0".to_string(), "1.0.0".to_string()),
            ("api".to_string(), "3.0.0".to_string(), "2.0.0".to_string())
        ],
        "{out}"
    );
    assert_eq!(
        status(&api, &server, "db").await.unwrap()["version"],
        "2.0.0",
        "dry run"
    );
    let (code, out, err) = herd(&server, &["rollout", "undo", "db"]);
    assert_eq!(code, 0, "{err}");
    let done: Value = serde_json::from_str(&out).unwrap();
    let rev = done["revision"].as_u64().unwrap();
    all_run(&api, &server, "db", 1, "1.0.0").await;
    all_run(&api, &server, "api", 1, "2.0.0").await;

    // One revision for the whole rollback; diff shows both services moving.
    let (code, out, err) = herd(
        &server,
        &["diff", &before_undo.to_string(), &rev.to_string()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("revision {before_undo} -> {rev}\n~ api: 3.0.0 x1 -> 2.0.0 x1\n~ db: 2.0.0 x1 -> 1.0.0 x1\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_every_instance_and_scale_changes_the_count_within_bounds() {
    let dir = TestDir::new("cluster-restart");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _a = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23550-23599",
    );
    apply(&server, &dir.path, &named_manifest("web", "1.0.0", 2, ""));
    let before = ids(&all_run(&api, &server, "web", 2, "1.0.0").await);

    let (code, _, err) = herd(&server, &["restart", "web"]);
    assert_eq!(code, 0, "{err}");
    let after = eventually(
        "every instance replaced",
        Duration::from_secs(30),
        || async {
            let s = status(&api, &server, "web").await?;
            let now = ids(&s);
            let all_run = s["instances"]
                .as_array()?
                .iter()
                .all(|i| i["state"] == "Run");
            (now.len() == 2 && now.is_disjoint(&before) && all_run).then_some(now)
        },
    )
    .await;
    assert_eq!(after.len(), 2);

    let (code, _, err) = herd(&server, &["scale", "web", "4"]);
    assert_eq!(code, 0, "{err}");
    all_run(&api, &server, "web", 4, "1.0.0").await;
    let (code, _, err) = herd(&server, &["scale", "web", "11"]);
    assert_ne!(code, 0);
    assert!(err.contains("outside instances.min..max (1..10)"), "{err}");
    let (code, _, err) = herd(&server, &["scale", "web", "1"]);
    assert_eq!(code, 0, "{err}");
    all_run(&api, &server, "web", 1, "1.0.0").await;
    let (code, out, err) = herd(&server, &["history", "web"]);
    assert_eq!(code, 0, "{err}");
    let h: Value = serde_json::from_str(&out).unwrap();
    let changes: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["change"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        ["apply web 1.0.0", "scale web 4", "scale web 1"],
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_waits_for_promote_then_the_update_goes_on() {
    let dir = TestDir::new("cluster-canary");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _a = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23600-23649",
    );
    let canary = |v: &str| {
        named_manifest("web", v, 2, "").replace("max_parallel = 1", "max_parallel = 1\ncanary = 1")
    };
    apply(&server, &dir.path, &canary("1.0.0"));
    all_run(&api, &server, "web", 2, "1.0.0").await;
    apply(&server, &dir.path, &canary("2.0.0"));
    let versions = |s: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = s["instances"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|i| {
                        (
                            i["version"].as_str().unwrap_or("").into(),
                            i["state"].as_str().unwrap_or("").into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let want = vec![
        ("1.0.0".to_string(), "Run".to_string()),
        ("1.0.0".to_string(), "Run".to_string()),
        ("2.0.0".to_string(), "Run".to_string()),
    ];
    eventually(
        "one canary beside the two old instances",
        Duration::from_secs(20),
        || async {
            let s = status(&api, &server, "web").await?;
            (versions(&s) == want).then_some(())
        },
    )
    .await;
    // Past min_healthy_time (0.5 s) nothing moves without a promote.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(versions(&status(&api, &server, "web").await.unwrap()), want);
    let (code, _, err) = herd(&server, &["rollout", "promote", "web"]);
    assert_eq!(code, 0, "{err}");
    all_run(&api, &server, "web", 2, "2.0.0").await;
    let (code, _, err) = herd(&server, &["rollout", "promote", "web"]);
    assert_ne!(code, 0, "promoting twice is refused");
    assert!(err.contains("already promoted"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_surge_gives_every_new_instance_its_own_id() {
    // max_parallel = count: the whole new version starts in one pass, beside the old one;
    // each new instance needs a fresh cluster-unique id in that same pass.
    let dir = TestDir::new("cluster-surge");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _a = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "",
        "23650-23674",
    );
    let _b = AgentProc::start(
        server.addr,
        dir.node("agent-b"),
        "node-b",
        "",
        "23675-23699",
    );
    let wide =
        |v: &str| named_manifest("web", v, 4, "").replace("max_parallel = 1", "max_parallel = 4");
    apply(&server, &dir.path, &wide("1.0.0"));
    let before = ids(&all_run(&api, &server, "web", 4, "1.0.0").await);
    apply(&server, &dir.path, &wide("2.0.0"));
    let after = ids(&all_run(&api, &server, "web", 4, "2.0.0").await);
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after.is_disjoint(&before));
}
