//! `herd up` as the README's quick start uses it: one process with the registry, the
//! controller, an agent and a gateway; `examples/web.toml` applied verbatim answers through
//! the gateway; SIGINT stops everything, instances included.

use herd_testkit::prelude::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_up_runs_the_example_service_and_stops_it_on_sigint() {
    let dir = TestDir::new("up");
    let bin_dir = std::path::Path::new(herd_bin())
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut up = Command::new(herd_bin())
        .args([
            "up",
            "--server-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--admin", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path.join("data"))
        .env("PATH", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path.join("up.stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let server: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let gateway: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let registry = server["addr"].as_str().unwrap().to_string();
    let web = gateway["listeners"]["web"].as_str().unwrap().to_string();

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/web.toml");
    let o = Command::new(herd_bin())
        .args(["apply", "-f", example, "--server", &registry])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = client();
    let api = Api::default();
    let addr: std::net::SocketAddr = registry.parse().unwrap();
    let pids: Vec<u64> = eventually("3 instances Run", Duration::from_secs(30), || async {
        let s = api.get(addr, "/v1/deployments/web").await.ok()?.json();
        let list = s["instances"].as_array()?;
        (list.len() == 3 && list.iter().all(|i| i["state"] == "Run"))
            .then(|| list.iter().filter_map(|i| i["pid"].as_u64()).collect())
    })
    .await;
    eventually(
        "the example answering through the gateway",
        Duration::from_secs(10),
        || async {
            let r = get(&c, &format!("http://{web}/")).await.ok()?;
            (r.status == 200 && r.body.starts_with("demo-app 1.0.0 web-")).then_some(())
        },
    )
    .await;

    let _ = Command::new("kill")
        .args(["-INT", &up.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "herd up did not exit within 30 s of SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code.code(), Some(0));
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
            && !stat.is_empty();
        assert!(!running, "instance process {pid} outlived herd up");
    }
}
