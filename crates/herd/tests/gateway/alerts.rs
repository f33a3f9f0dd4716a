//! Alerts end to end: rules stored with the CLI in a real `herd server`, evaluated by its
//! controller from the spans a real gateway and a real service export; a webhook (which
//! refuses the first delivery, so the sender must retry) hears the alert fire when the
//! service starts failing and resolve when it recovers; `GET /v1/alerts` agrees.

use herd_testkit::prelude::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_ratio_alert_fires_to_the_webhook_and_resolves() {
    let dir = TestDir::new("alerts");
    let api = Api::new(None);
    let server = single_node(&dir, &api).await;
    let otlp = format!("http://{}/v1/traces", server.addr);
    let app = TracedService::start("app", &otlp);
    app.set_status(500);
    let gw = Gateway::start(&format!(
        "[tracing]\notlp_endpoint = \"{otlp}\"\n\n\
         [[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\nservers = [{{ addr = \"{}\" }}]\n\n\
         [backends.app.passive]\non_5xx = false\n",
        app.addr
    ));
    let hook = Webhook::start(1);
    let rules = dir.node("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "webhook = \"{}\"\n\n[[rules]]\nname = \"app-errors\"\nkind = \"error_ratio\"\n\
             service = \"app\"\nabove = 0.2\nwindow = \"5m\"\nfor = \"2s\"\n",
            hook.url()
        ),
    )
    .unwrap();
    let applied = std::process::Command::new(herd_bin())
        .args([
            "alerts",
            "apply",
            "--server",
            &server.addr.to_string(),
            "-f",
        ])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let client = client();
    for _ in 0..5 {
        assert_eq!(get(&client, &gw.url("/")).await.unwrap().status, 500);
    }
    let fired = eventually(
        "the alert to reach the webhook",
        Duration::from_secs(30),
        || async {
            hook.received()
                .into_iter()
                .find(|a| a["status"] == "firing")
        },
    )
    .await;
    assert_eq!(fired["rule"], "app-errors");
    assert_eq!(fired["kind"], "error_ratio");
    assert_eq!(fired["subject"], "app");
    assert_eq!(fired["value"], 1.0);
    assert_eq!(fired["threshold"], 0.2);
    let held = fired["fired_ms"].as_u64().unwrap() - fired["since_ms"].as_u64().unwrap();
    assert!(
        held >= 2000,
        "fired {held} ms after the condition began, before `for`"
    );
    assert!(
        hook.attempts() >= 2,
        "the refused first delivery was not retried"
    );
    let listed = get(&client, &server.url("/v1/alerts"))
        .await
        .unwrap()
        .json();
    assert_eq!(listed["rules"], 1);
    assert_eq!(listed["alerts"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["alerts"][0]["subject"], "app");

    // Recovered: enough good calls bring the window's ratio under 20%.
    app.set_status(200);
    for _ in 0..45 {
        assert_eq!(get(&client, &gw.url("/")).await.unwrap().status, 200);
    }
    let resolved = eventually("the alert to resolve", Duration::from_secs(30), || async {
        hook.received()
            .into_iter()
            .find(|a| a["status"] == "resolved")
    })
    .await;
    assert_eq!(resolved["subject"], "app");
    assert!(resolved["resolved_ms"].as_u64().is_some());
    let firing: Vec<Value> = hook
        .received()
        .into_iter()
        .filter(|a| a["status"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "one firing notice, not one per pass");
    let listed = get(&client, &server.url("/v1/alerts"))
        .await
        .unwrap()
        .json();
    assert_eq!(listed["alerts"], serde_json::json!([]));

    // Bad rules are refused whole, naming the field; the stored ones stay.
    let bad = dir.node("bad.toml");
    std::fs::write(
        &bad,
        "[[rules]]\nname = \"x\"\nkind = \"error_ratio\"\nabove = 7\n",
    )
    .unwrap();
    let refused = std::process::Command::new(herd_bin())
        .args([
            "alerts",
            "apply",
            "--server",
            &server.addr.to_string(),
            "-f",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("rules[0].above"), "{err}");
    let listed = get(&client, &server.url("/v1/alerts"))
        .await
        .unwrap()
        .json();
    assert_eq!(listed["rules"], 1);
}
