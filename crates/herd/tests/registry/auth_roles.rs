//! Tokens from files, two roles: the admin token may do anything, the read token only
//! read (and send spans); a wrong or missing token is 401, a read token's write 403 with
//! the reason; every write let through is in the audit log with its role.

use herd_testkit::prelude::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Secured {
    child: Child,
    addr: std::net::SocketAddr,
    stderr: std::path::PathBuf,
}

impl Drop for Secured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &TestDir, extra: &[&str]) -> Result<Secured, String> {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    start_in(dir, &args)
}

/// `herd server --data-dir <dir>/data` with these arguments; Err(its stderr) if it stops.
fn start_in(dir: &TestDir, args: &[&str]) -> Result<Secured, String> {
    std::fs::create_dir_all(&dir.path).unwrap();
    let stderr = dir.node("server.stderr");
    let mut child = Command::new(herd_bin())
        .arg("server")
        .arg("--data-dir")
        .arg(dir.node("data"))
        .args(args)
        .env_remove("HERD_TOKEN")
        .env("HERD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    match herd_testkit::ready_line(&mut child, Duration::from_secs(20)) {
        Ok(line) => {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            Ok(Secured {
                child,
                addr: v["addr"].as_str().unwrap().parse().unwrap(),
                stderr,
            })
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(std::fs::read_to_string(&stderr).unwrap_or_default())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_token_reads_the_admin_token_writes_and_writes_are_audited() {
    let dir = TestDir::new("auth-roles");
    let admin = dir.node("admin.token");
    let read = dir.node("read.token");
    std::fs::create_dir_all(admin.parent().unwrap()).unwrap();
    std::fs::write(&admin, "admin-secret\n").unwrap();
    std::fs::write(&read, "read-secret\n").unwrap();
    let s = start(
        &dir,
        &[
            "--token-file",
            admin.to_str().unwrap(),
            "--read-token-file",
            read.to_str().unwrap(),
        ],
    )
    .expect("server with token files");
    let anon = Api::new(None);
    let reader = Api::new(Some("read-secret"));
    let adm = Api::new(Some("admin-secret"));
    let wrong = Api::new(Some("admin-secreT"));
    eventually("a leader", Duration::from_secs(10), || async {
        let st = adm.status(s.addr).await.ok()?;
        (st["role"] == "leader").then_some(())
    })
    .await;

    assert_eq!(anon.get(s.addr, "/v1/kv/k").await.unwrap().status, 401);
    assert_eq!(wrong.get(s.addr, "/v1/kv/k").await.unwrap().status, 401);
    assert_eq!(reader.get(s.addr, "/v1/kv/k").await.unwrap().status, 404);
    let r = reader.put(s.addr, "k", "v").await.unwrap();
    assert_eq!(r.status, 403);
    assert!(
        error_message(&r, 403).contains("admin token"),
        "{}",
        r.text()
    );
    let r = reader
        .request(
            "POST",
            s.addr,
            "/v1/cluster/members",
            "{\"addr\":\"127.0.0.1:1\"}",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "a read token may not change membership");
    // Anonymous membership changes: a join (add) and a removal, both refused.
    let r = anon
        .request(
            "POST",
            s.addr,
            "/v1/cluster/members",
            "{\"id\":9,\"addr\":\"127.0.0.1:1\"}",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "an anonymous member add");
    let r = anon
        .request("DELETE", s.addr, "/v1/cluster/members/1", "")
        .await
        .unwrap();
    assert_eq!(r.status, 401, "an anonymous member removal");
    assert_eq!(adm.put(s.addr, "k", "v").await.unwrap().status, 200);
    assert_eq!(reader.get(s.addr, "/v1/kv/k").await.unwrap().status, 200);
    assert_eq!(reader.get(s.addr, "/metrics").await.unwrap().status, 200);
    let spans = reader
        .request_with(
            "POST",
            s.addr,
            "/v1/traces",
            &[("content-type", "application/json")],
            "{\"resourceSpans\":[]}",
        )
        .await
        .unwrap();
    assert_eq!(
        spans.status, 200,
        "an application with the read token may send spans"
    );
    assert_eq!(anon.get(s.addr, "/healthz").await.unwrap().status, 200);

    // The CLI takes the token from a file too.
    let cli = |token: &std::path::Path| {
        Command::new(herd_bin())
            .args([
                "kv",
                "put",
                "from-cli",
                "x",
                "--server",
                &s.addr.to_string(),
                "--token-file",
            ])
            .arg(token)
            .env_remove("HERD_TOKEN")
            .output()
            .unwrap()
    };
    assert!(cli(&admin).status.success());
    let refused = cli(&read);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin token"));

    let log = eventually("the audit lines", Duration::from_secs(10), || async {
        let log = std::fs::read_to_string(&s.stderr).ok()?;
        log.contains("from-cli").then_some(log)
    })
    .await;
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("herd::audit")).collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("role=\"admin\"") || l.contains("role=admin")),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("/v1/kv/k") && l.contains("status=200")),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("read") && l.contains("403")),
        "the refused write is logged: {audit:#?}"
    );
    assert!(
        audit.iter().any(|l| l.contains("/v1/cluster/members")
            && l.contains("401")
            && l.contains("role=\"none\"")),
        "the anonymous membership change is logged: {audit:#?}"
    );
    assert!(!log.contains("admin-secret"), "a token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_without_an_admin_token_is_refused_at_start() {
    let dir = TestDir::new("auth-read-only");
    let read = dir.node("read.token");
    std::fs::create_dir_all(read.parent().unwrap()).unwrap();
    std::fs::write(&read, "r\n").unwrap();
    let err = start(&dir, &["--read-token-file", read.to_str().unwrap()])
        .err()
        .expect("must not start");
    assert!(err.contains("needs an admin token"), "{err}");
    let empty = dir.node("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    let err = start(&dir, &["--token-file", empty.to_str().unwrap()])
        .err()
        .expect("must not start");
    assert!(err.contains("is empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_other_machines_reach_needs_a_token_or_an_explicit_insecure() {
    let dir = TestDir::new("auth-insecure");
    let start_on = |extra: &[&str]| {
        let mut args = vec!["--listen", "0.0.0.0:0"];
        args.extend_from_slice(extra);
        // Each attempt its own data dir: a refused start must not leave a member behind.
        let sub = TestDir::new(&format!("auth-insecure-{}", extra.len()));
        start_in(&sub, &args).map(|s| (s, sub))
    };
    let err = start_on(&[])
        .err()
        .expect("an open registry on 0.0.0.0 must not start");
    assert!(
        err.contains("--token-file") && err.contains("--insecure"),
        "{err}"
    );
    let (open, _d) = start_on(&["--insecure"]).expect("--insecure starts");
    let log = std::fs::read_to_string(&open.stderr).unwrap_or_default();
    assert!(log.contains("running open with --insecure"), "{log}");
    drop(open);
    let token = dir.node("admin.token");
    std::fs::create_dir_all(token.parent().unwrap()).unwrap();
    std::fs::write(&token, "t\n").unwrap();
    start_on(&["--token-file", token.to_str().unwrap()]).expect("a token is enough");
}
