//! The registry CLI as a script or a person meets it: `herd svc register` keeps its
//! instance alive until interrupted, `herd lease keepalive` keeps renewing, exit codes tell
//! "not found" from "unreachable" from "bad input", a closed output pipe is not a crash, and
//! an address that cannot be one is refused before anything is sent.

use herd_testkit::prelude::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn herd(server: &ServerProc, args: &[&str]) -> Command {
    let mut cmd = Command::new(herd_bin());
    cmd.args(args)
        .arg("--server")
        .arg(server.addr.to_string())
        .env_remove("HERD_SERVER")
        .env_remove("HERD_TOKEN")
        .stdin(Stdio::null());
    cmd
}

fn run(server: &ServerProc, args: &[&str]) -> Output {
    herd(server, args).output().expect("run herd")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} failed");
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herd did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// First line of the child's stdout (the registration's JSON starts with `{`), read on a
/// thread so a silent child fails the test instead of hanging it.
fn first_json(child: &mut Child) -> Value {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let _ = tx.send(v);
                text.clear();
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(15))
        .expect("herd printed no JSON within 15 s")
}

async fn instances(api: &Api, server: &ServerProc, service: &str) -> Vec<String> {
    let r = api
        .get(server.addr, &format!("/v1/services/{service}"))
        .await
        .expect("list instances");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let list = v["instances"].as_array().cloned().unwrap_or_default();
    list.iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svc_register_keeps_its_instance_until_interrupted() {
    let dir = TestDir::new("cli-register");
    let server = ServerProc::start(&dir.node("n1"), free_port(), None, None);
    let api = Api::default();

    // A 1 s lease: without renewal the instance would be gone after one second.
    let mut reg = herd(
        &server,
        &[
            "svc",
            "register",
            "web",
            "web-1",
            "127.0.0.1:9000",
            "--ttl",
            "1",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn herd svc register");
    let answer = first_json(&mut reg);
    assert!(
        answer["lease"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some(),
        "the lease id is a decimal string: {answer}"
    );
    assert_eq!(instances(&api, &server, "web").await, vec!["web-1"]);

    // Four TTLs later it is still there, every time we look.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(
            instances(&api, &server, "web").await,
            vec!["web-1"],
            "the instance vanished while `herd svc register` was running"
        );
        assert!(reg.try_wait().unwrap().is_none(), "svc register exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGTERM deregisters before exiting: gone at once, not a TTL later.
    signal(&reg, "TERM");
    assert_eq!(wait_exit(&mut reg, Duration::from_secs(10)), 0);
    assert!(
        instances(&api, &server, "web").await.is_empty(),
        "instance still registered after svc register exited"
    );

    // --detach registers and exits; with nobody renewing, the instance lapses with its lease.
    let o = run(
        &server,
        &[
            "svc",
            "register",
            "web",
            "web-2",
            "127.0.0.1:9001",
            "--ttl",
            "1",
            "--detach",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(instances(&api, &server, "web").await, vec!["web-2"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !instances(&api, &server, "web").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "a detached 1 s registration never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keepalive_renews_until_interrupted() {
    let dir = TestDir::new("cli-keepalive");
    let server = ServerProc::start(&dir.node("n1"), free_port(), None, None);
    let api = Api::default();
    let grant = run(&server, &["lease", "grant", "1"]);
    assert_eq!(code(&grant), 0, "{}", stderr(&grant));
    let v: Value = serde_json::from_slice(&grant.stdout).expect("grant prints JSON");
    let id = v["id"].as_str().expect("lease id (a string)").to_string();

    let mut keep = herd(&server, &["lease", "keepalive", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herd lease keepalive");
    let first = first_json(&mut keep);
    assert_eq!(first["id"].as_str().map(str::to_string), Some(id.clone()));
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let r = api
            .get(server.addr, &format!("/v1/lease/{id}"))
            .await
            .unwrap();
        assert_eq!(
            r.status,
            200,
            "lease {id} lapsed under keepalive: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&keep, "INT");
    assert_eq!(wait_exit(&mut keep, Duration::from_secs(10)), 0);

    // --once renews once and exits; a revoked lease is "not found".
    let o = run(&server, &["lease", "keepalive", &id, "--once"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&server, &["lease", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&server, &["lease", "keepalive", &id]);
    assert_eq!(code(&o), 1, "keepalive of a revoked lease: {}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_failures_apart() {
    let dir = TestDir::new("cli-codes");
    let server = ServerProc::start(&dir.node("n1"), free_port(), None, None);

    let o = run(&server, &["kv", "put", "a", "1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&server, &["kv", "get", "a"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");

    // 1: the key is not there.
    let o = run(&server, &["kv", "get", "missing"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));

    // 3: nobody answers.
    let closed = free_port();
    let o = Command::new(herd_bin())
        .args(["kv", "get", "a", "--server", &format!("127.0.0.1:{closed}")])
        .env_remove("HERD_SERVER")
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));

    // 2: bad input, refused before anything is sent; the message says what and how.
    for addr in ["999.1.1.1:9000", "10.0.0.7", "10.0.0.7:0", "2001:db8::1:80"] {
        let o = run(
            &server,
            &[
                "svc", "register", "web", "w", addr, "--detach", "--ttl", "5",
            ],
        );
        assert_eq!(code(&o), 2, "{addr}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(addr) && e.contains("host:port"), "{addr}: {e}");
        assert_eq!(e.matches("herd:").count(), 1, "error printed once: {e}");
    }
    let r = Api::default()
        .get(server.addr, "/v1/services/web")
        .await
        .unwrap();
    assert!(
        r.json()["instances"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "a refused address reached the registry: {}",
        r.text()
    );

    // 4: the registry refused a well-formed request (a compare that does not hold).
    let o = run(&server, &["kv", "put", "a", "2", "--cas", "1000"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_output_pipe_ends_quietly() {
    let dir = TestDir::new("cli-pipe");
    let server = ServerProc::start(&dir.node("n1"), free_port(), None, None);
    for i in 0..200 {
        let o = run(
            &server,
            &["kv", "put", &format!("k/{i:04}"), &"x".repeat(200)],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    // The reader is gone before herd writes a byte (`herd kv ls | true`).
    let mut child = herd(&server, &["kv", "ls", "k/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(code(&o), 0, "{e}");
}
