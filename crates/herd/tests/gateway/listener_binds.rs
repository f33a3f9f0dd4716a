//! One port, one owner: two listeners of one file on one port are a config error, and a
//! gateway refuses a port another process already listens on (which SO_REUSEPORT would
//! otherwise let it join, the kernel then splitting connections between the two) unless
//! the listener says `reuse_port = true`.

use herd_testkit::prelude::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(config: &str) -> (i32, String) {
    let dir = temp_dir();
    let path = dir.join("herd.toml");
    std::fs::write(&path, config).unwrap();
    let o = Command::new(herd_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn listener(name: &str, bind: &str, extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"{name}\"\nprotocol = \"http\"\nbind = \"{bind}\"\n{extra}\n\
         [[routes]]\nlistener = \"{name}\"\nbackend = \"app\"\n\n"
    )
}

const BACKEND: &str = "[backends.app]\nservers = [ { addr = \"127.0.0.1:9\" } ]\n";

#[test]
fn two_listeners_on_one_port_are_a_config_error() {
    let p = free_port();
    for (a, b) in [
        (format!("127.0.0.1:{p}"), format!("127.0.0.1:{p}")),
        (format!("0.0.0.0:{p}"), format!("127.0.0.1:{p}")),
        (format!("127.0.0.1:{p}"), format!("0.0.0.0:{p}")),
    ] {
        let config = format!(
            "{}{}{BACKEND}",
            listener("open", &a, ""),
            listener("locked", &b, "deny = [\"0.0.0.0/0\"]")
        );
        let (code, err) = check(&config);
        assert_eq!(code, 2, "{a} and {b}: {err}");
        assert!(
            err.contains("listeners[1].bind") && err.contains("overlaps listener \"open\""),
            "{a} and {b}: {err}"
        );
    }
    // The admin listener counts too.
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:{p}\"\n\n{}{BACKEND}",
        listener("web", &format!("127.0.0.1:{p}"), "")
    );
    let (code, err) = check(&config);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("admin.listen"), "{err}");
    // Different ports, or two different addresses on one port, are fine; so is port 0.
    let q = free_port();
    for (a, b) in [
        (format!("127.0.0.1:{p}"), format!("127.0.0.1:{q}")),
        (format!("127.0.0.1:{p}"), format!("127.0.0.2:{p}")),
        ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string()),
    ] {
        let config = format!(
            "{}{}{BACKEND}",
            listener("a", &a, ""),
            listener("b", &b, "")
        );
        let (code, err) = check(&config);
        assert_eq!(code, 0, "{a} and {b}: {err}");
    }
}

/// A gateway process, killed on drop.
struct Running(std::process::Child, std::path::PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Start `herd gateway`: Ok once it prints its ready line, Err(exit code, stderr) if it
/// exits first (within 20 s).
fn start_or_fail(config: &str) -> Result<Running, (i32, String)> {
    use std::io::BufRead;
    let dir = temp_dir().keep();
    let path = dir.join("herd.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(herd_bin())
        .args(["gateway", "-c"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(out).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let mut running = Running(child, dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(line) = rx.try_recv() {
            assert!(line.contains("\"ready\""), "{line}");
            return Ok(running);
        }
        if let Some(s) = running.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = running.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err((s.code().unwrap_or(-1), err));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "herd gateway neither became ready nor exited within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_another_process_listens_on_is_refused_unless_shared() {
    let backend = Backend::start("one");
    let p = free_port();
    let config = |extra: &str| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n{}[backends.app]\nservers = [ {{ addr = \"{}\" }} ]\n",
            listener("web", &format!("127.0.0.1:{p}"), extra),
            backend.addr
        )
    };
    let first = Gateway::start(&config(""));
    let client = client();
    let r = get(&client, &first.url("/")).await.unwrap();
    assert_eq!(r.status, 200);

    // A second gateway on the same port: refused, and says what to do.
    match start_or_fail(&config("")) {
        Ok(_) => panic!("a second gateway started on a port the first one serves"),
        Err((code, err)) => {
            assert_eq!(code, 2, "{err}");
            assert!(
                err.contains(&format!("127.0.0.1:{p}"))
                    && err.contains("another process already listens")
                    && err.contains("reuse_port = true"),
                "{err}"
            );
            assert_eq!(err.matches("herd:").count(), 1, "printed once: {err}");
        }
    }
    // The first one was not disturbed.
    let r = get(&client, &first.url("/")).await.unwrap();
    assert_eq!(r.status, 200);

    // Opting in shares the port (an upgrade: start the new one, then stop the old).
    let second = start_or_fail(&config("reuse_port = true"))
        .unwrap_or_else(|(c, e)| panic!("reuse_port = true was refused ({c}): {e}"));
    drop(first);
    // A new client: the old one's pooled connection went with the first gateway.
    let r = get(
        &herd_testkit::http::client(),
        &format!("http://127.0.0.1:{p}/"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    drop(second);

    // A plain socket of some other program holds the port: refused either way (it did not
    // opt in to sharing).
    let holder = std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
    for extra in ["", "reuse_port = true"] {
        match start_or_fail(&config(extra)) {
            Ok(_) => panic!("started on a port another program holds ({extra:?})"),
            Err((code, err)) => {
                assert_eq!(code, 2, "{err}");
                assert!(err.contains("in use"), "{err}");
            }
        }
    }
    drop(holder);
}

/// `herd check` says what the running gateway would warn about: an admin listener other
/// machines can reach, with no token (docs/admin-api.md). It stays a warning: exit 0.
#[test]
fn check_warns_about_an_exposed_admin_listener_without_a_token() {
    let web = listener("web", "127.0.0.1:0", "");
    let exposed = format!("[admin]\nlisten = \"0.0.0.0:0\"\n\n{web}{BACKEND}");
    let (code, err) = check(&exposed);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("0.0.0.0:0") && err.contains("token_file"),
        "{err}"
    );
    for quiet in [
        format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n{web}{BACKEND}"),
        format!("[admin]\nlisten = \"[::1]:0\"\n\n{web}{BACKEND}"),
    ] {
        let (code, err) = check(&quiet);
        assert_eq!(code, 0, "{err}");
        assert!(!err.contains("warning"), "loopback needs no token: {err}");
    }
}
