//! `herd cert init|issue`, then the certificate in use: a gateway https listener serves it
//! and a client that trusts only the CA's ca.pem (curl) gets through; keys are 0600; the
//! CA is never overwritten; issuing without a CA says how to make one.

use herd_testkit::prelude::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn herd(args: &[&str]) -> std::process::Output {
    Command::new(herd_bin()).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_herd_cert_serves_https_to_a_client_trusting_the_ca() {
    let dir = temp_dir();
    let pki = dir.join("pki");
    let pki_s = pki.to_str().unwrap();
    let none = herd(&["cert", "issue", "--dir", pki_s, "--name", "edge"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("herd cert init --dir"));

    assert!(herd(&["cert", "init", "--dir", pki_s]).status.success());
    let issued = herd(&[
        "cert",
        "issue",
        "--dir",
        pki_s,
        "--name",
        "edge",
        "--ip",
        "127.0.0.1",
        "--dns",
        "localhost",
    ]);
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    for key in ["ca.key", "edge.key"] {
        let mode = std::fs::metadata(pki.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let again = herd(&["cert", "init", "--dir", pki_s]);
    assert!(!again.status.success(), "the CA must not be replaced");
    let bad = herd(&["cert", "issue", "--dir", pki_s, "--name", "../x"]);
    assert!(!bad.status.success());

    let backend = Backend::start("secure-app");
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"https\"\nbind = \"127.0.0.1:0\"\n\
         certificates = [{{ cert = \"{0}/edge.pem\", key = \"{0}/edge.key\" }}]\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\n{1}\n",
        pki.display(),
        servers(&[(&backend, 1)])
    ));
    let port = gw.listeners["web"].port();
    let curl = |ca: &std::path::Path, host: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(ca)
            .arg(format!("https://{host}:{port}/"))
            .output()
            .unwrap()
    };
    for host in ["127.0.0.1", "localhost"] {
        let ok = curl(&pki.join("ca.pem"), host);
        assert!(
            ok.status.success(),
            "{host}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "secure-app");
    }
    // Another CA's clients do not trust it.
    let other = dir.join("other");
    assert!(herd(&["cert", "init", "--dir", other.to_str().unwrap()])
        .status
        .success());
    assert!(!curl(&other.join("ca.pem"), "127.0.0.1").status.success());
}
