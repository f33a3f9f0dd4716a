//! Validation of the TLS keys that are not certificates of https listeners: TLS towards a
//! backend's servers (`[backends.x.tls]`) and TLS passthrough routes of tcp listeners
//! (`sni_routes`). Paths only: the gateway reads the CA files.

use super::Checker;
use crate::model::{HostMatch, Protocol, SniRoute, UpstreamTls};
use crate::raw::{RawSniRoute, RawUpstreamTls};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// `[backends.x.tls]`: present (and not `enabled = false`) turns TLS on. Without a
/// bundled set of public roots, `ca` is required unless verification is turned off.
pub(super) fn upstream(
    c: &mut Checker,
    f: &str,
    raw: Option<&RawUpstreamTls>,
) -> Option<UpstreamTls> {
    let raw = raw?;
    let f = format!("{f}.tls");
    if raw.enabled == Some(false) {
        return None;
    }
    let verify = raw.verify.unwrap_or(true);
    let ca = match (&raw.ca, verify) {
        (Some(ca), _) if ca.is_empty() => {
            c.fail(
                format!("{f}.ca"),
                "empty; give the path of a PEM file of CA certificates",
            );
            None
        }
        (Some(_), false) => {
            c.fail(
                format!("{f}.ca"),
                "verify = false accepts any certificate, so a CA is never used; remove ca or \
                 set verify = true",
            );
            None
        }
        (Some(ca), true) => Some(c.base_dir.join(ca)),
        (None, true) => {
            c.fail(
                format!("{f}.ca"),
                "required: the PEM bundle of CAs that sign the servers' certificates, e.g. \
                 ca = \"certs/internal-ca.pem\" (there are no built-in public roots; \
                 verify = false skips verification, insecurely)",
            );
            None
        }
        (None, false) => None,
    };
    let sni = raw.sni.as_ref().map(|s| {
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<IpAddr>().is_err() && !dns_name_ok(&name) {
            c.fail(
                format!("{f}.sni"),
                format!("\"{s}\" is not a DNS name or an IP address"),
            );
        }
        name
    });
    Some(UpstreamTls { ca, sni, verify })
}

/// A DNS name as SNI carries it: letters, digits, hyphens and dots, labels of 1-63
/// characters, 253 in all, not starting or ending with a hyphen.
fn dns_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `sni_routes` of a tcp listener. Backends are checked once they are all known.
pub(super) fn sni_routes(
    c: &mut Checker,
    f: &str,
    protocol: Protocol,
    raw: Option<Vec<RawSniRoute>>,
) -> Vec<SniRoute> {
    let Some(list) = raw else {
        return Vec::new();
    };
    if protocol != Protocol::Tcp {
        c.fail(
            format!("{f}.sni_routes"),
            "only tcp listeners route TLS by SNI without terminating it; an https listener \
             chooses backends through [[routes]] (host = \"...\")",
        );
        return Vec::new();
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (j, r) in list.into_iter().enumerate() {
        let rf = format!("{f}.sni_routes[{j}]");
        if r.server_names.is_empty() {
            c.fail(
                format!("{rf}.server_names"),
                "empty; list the names this route takes, e.g. [\"a.example.com\", \"*.b.example.com\"]",
            );
        }
        let mut names = Vec::with_capacity(r.server_names.len());
        for (k, raw_name) in r.server_names.iter().enumerate() {
            let nf = format!("{rf}.server_names[{k}]");
            let name = raw_name.trim_end_matches('.').to_ascii_lowercase();
            let (ok, m) = match name.strip_prefix("*.") {
                Some(rest) => (dns_name_ok(rest), HostMatch::Suffix(format!(".{rest}"))),
                None => (dns_name_ok(&name), HostMatch::Exact(name.clone())),
            };
            if !ok {
                c.fail(
                    nf,
                    format!(
                        "\"{raw_name}\" is not a server name; use a DNS name (\"a.example.com\") \
                         or a wildcard (\"*.example.com\")"
                    ),
                );
                continue;
            }
            if let Some(first) = seen.insert(name.clone(), j) {
                c.fail(
                    nf,
                    format!("\"{raw_name}\" is already routed by sni_routes[{first}]; the first match wins, so this entry would never be used"),
                );
            }
            names.push(m);
        }
        out.push(SniRoute {
            server_names: names,
            backend: r.backend,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "[[listeners]]\nname = \"t\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:0\"\nbackend = \"d\"\n";

    fn problems(text: &str) -> String {
        match crate::parse(text, "herd.toml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn http_with(backend: &str) -> String {
        format!(
            "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n[[routes]]\nbackend = \"app\"\n\
             [backends.app]\nservers = [ {{ addr = \"app.internal:443\" }} ]\n{backend}"
        )
    }

    #[test]
    fn upstream_tls_keys() {
        let cfg = crate::parse(
            &http_with("[backends.app.tls]\nca = \"certs/ca.pem\"\nsni = \"App.Example.com.\"\n"),
            "/etc/herd/herd.toml",
        )
        .unwrap();
        let tls = cfg.backends["app"].tls.clone().unwrap();
        assert_eq!(tls.ca, Some("/etc/herd/certs/ca.pem".into()));
        assert_eq!(tls.sni.as_deref(), Some("app.example.com"));
        assert!(tls.verify);
        let cfg =
            crate::parse(&http_with("[backends.app.tls]\nverify = false\n"), "h.toml").unwrap();
        assert_eq!(
            cfg.backends["app"].tls.as_ref().map(|t| t.verify),
            Some(false)
        );
        let cfg = crate::parse(
            &http_with("[backends.app.tls]\nenabled = false\n"),
            "h.toml",
        )
        .unwrap();
        assert!(cfg.backends["app"].tls.is_none());
        let cfg = crate::parse(&http_with(""), "h.toml").unwrap();
        assert!(cfg.backends["app"].tls.is_none());

        let e = problems(&http_with("[backends.app.tls]\n"));
        assert!(
            e.contains("herd.toml: backends.app.tls.ca: required"),
            "{e}"
        );
        let e = problems(&http_with(
            "[backends.app.tls]\nca = \"ca.pem\"\nverify = false\n",
        ));
        assert!(e.contains("backends.app.tls.ca: verify = false"), "{e}");
        let e = problems(&http_with(
            "[backends.app.tls]\nca = \"ca.pem\"\nsni = \"a b\"\n",
        ));
        assert!(
            e.contains("backends.app.tls.sni: \"a b\" is not a DNS name"),
            "{e}"
        );
        let e = problems(&http_with(
            "[backends.app.tls]\nca = \"ca.pem\"\nca_file = \"x\"\n",
        ));
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn sni_routes_keys() {
        let text = format!(
            "{TCP}sni_routes = [ {{ server_names = [\"A.example.com\", \"*.b.example.com\"], backend = \"a\" }} ]\n\
             [backends.d]\nservers = [ {{ addr = \"127.0.0.1:1\" }} ]\n\
             [backends.a]\nservers = [ {{ addr = \"127.0.0.1:2\" }} ]\n"
        );
        let cfg = crate::parse(&text, "h.toml").unwrap();
        let r = &cfg.listeners[0].sni_routes[0];
        assert_eq!(r.backend, "a");
        assert!(r.matches("a.example.com") && r.matches("x.b.example.com"));
        assert!(!r.matches("b.example.com") && !r.matches("c.example.com"));

        let bad = format!(
            "{TCP}sni_routes = [ {{ server_names = [\"a.example.com\", \"*\"], backend = \"nope\" }},\
             {{ server_names = [\"a.example.com\"], backend = \"tls\" }}, {{ server_names = [], backend = \"d\" }} ]\n\
             [backends.d]\nservers = [ {{ addr = \"127.0.0.1:1\" }} ]\n\
             [backends.tls]\nservers = [ {{ addr = \"127.0.0.1:2\" }} ]\n[backends.tls.tls]\nverify = false\n"
        );
        let e = problems(&bad);
        for want in [
            "listeners[0].sni_routes[0].server_names[1]: \"*\" is not a server name",
            "listeners[0].sni_routes[0].backend: no backend named \"nope\"",
            "listeners[0].sni_routes[1].server_names[0]: \"a.example.com\" is already routed by sni_routes[0]",
            "listeners[0].sni_routes[1].backend: backend \"tls\" speaks TLS to its servers",
            "listeners[0].sni_routes[2].server_names: empty",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        let e = problems(&http_with(
            "[[listeners]]\nname = \"s\"\nbind = \"127.0.0.1:0\"\nsni_routes = []\n",
        ));
        assert!(
            e.contains("listeners[1].sni_routes: only tcp listeners"),
            "{e}"
        );
    }

    #[test]
    fn dns_names() {
        assert!(dns_name_ok("a.example.com"));
        assert!(dns_name_ok("localhost"));
        assert!(!dns_name_ok(""));
        assert!(!dns_name_ok("a..b"));
        assert!(!dns_name_ok("-a.b"));
        assert!(!dns_name_ok("a b"));
        assert!(!dns_name_ok("*.a"));
        assert!(!dns_name_ok(&"a".repeat(64)));
    }
}
