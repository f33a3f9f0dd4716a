//! Unit tests of the config crate: whole files in, exact `Config` values or exact problem
//! lists out. Long because each case is a config file written out in full; split by
//! concern when a new area of keys arrives.

use super::*;
use std::time::Duration;

const SPEC_EXAMPLE: &str = r#"
[admin]
listen = "127.0.0.1:9901"

[[listeners]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"

[[routes]]
listener = "web"
host = "img.example.com"
path_prefix = "/static/"
backend = "images"

[[routes]]
listener = "web"
headers = { "Accept-Language" = "^zh" }
backend = "app"

[backends.images]
servers = [ { addr = "10.0.0.9:9000" } ]

[backends.app]
policy = "round_robin"
servers = [ { addr = "10.0.0.1:9000", weight = 3 }, { addr = "10.0.0.2:9000", weight = 1 } ]

[backends.app.health]
kind = "http"
path = "/healthz"
expect_status = [200]
interval = "2s"
timeout = "1s"
unhealthy_threshold = 2
healthy_threshold = 2

[backends.app.persistence]
mode = "insert_cookie"
cookie = "HERDSRV"
max_age = "1h"
"#;

#[test]
fn spec_example_parses_with_defaults() {
    let c = parse(SPEC_EXAMPLE, "herd.toml").expect("valid");
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].idle_timeout, Duration::from_secs(60));
    assert_eq!(c.routes.len(), 2);
    assert_eq!(
        c.routes[0].host,
        Some(HostMatch::Exact("img.example.com".into()))
    );
    let app = &c.backends["app"];
    assert_eq!(app.policy, Policy::RoundRobin);
    assert_eq!(app.servers[0].weight, 3);
    assert_eq!(app.servers[1].weight, 1);
    let h = app.health.as_ref().unwrap();
    assert_eq!(h.kind, CheckKind::Http);
    assert_eq!(h.interval, Duration::from_secs(2));
    assert!(h.status_ok(200) && !h.status_ok(204));
    assert_eq!(
        app.persistence,
        Some(Persistence::InsertCookie {
            cookie: "HERDSRV".into(),
            max_age: Some(Duration::from_secs(3600)),
            http_only: true,
            secure: false,
            same_site: SameSite::Lax,
        })
    );
    assert_eq!(c.backends["images"].servers[0].weight, 1);
    assert_eq!(c.backends["images"].retries, 2);
}

fn problems(text: &str) -> Vec<(String, String)> {
    parse(text, "t.toml")
        .expect_err("must be refused")
        .problems
        .into_iter()
        .map(|p| (p.field, p.reason))
        .collect()
}

const BASE: &str =
    "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n[[routes]]\nbackend = \"app\"\n";

#[test]
fn weight_out_of_range_names_the_field() {
    let p = problems(&format!(
        "{BASE}[backends.app]\nservers = [{{ addr = \"127.0.0.1:1\", weight = 0 }}, {{ addr = \"127.0.0.1:2\", weight = 101 }}]\n"
    ));
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].0, "backends.app.servers[0].weight");
    assert!(p[0].1.contains("1-100"));
    assert_eq!(p[1].0, "backends.app.servers[1].weight");
}

#[test]
fn unknown_key_is_an_error_with_line() {
    let err = parse(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nbindd = \"x\"\n",
        "t.toml",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("t.toml: line 4"), "{text}");
    assert!(text.contains("bindd"), "{text}");
}

/// Every unknown key and wrong type is listed, each at its own line, not only the first;
/// a required key of the wrong type is reported as that, not also as missing.
#[test]
fn every_structural_problem_is_listed_with_its_line() {
    let text = "[admin]\nlisten = \"127.0.0.1:9901\"\nbogus = 1\n\n\
                [[listeners]]\nname = \"web\"\nbind = 8080\ncolor = \"red\"\n\n\
                [[routes]]\nbackend = \"app\"\nweight = \"x\"\n\n\
                [backends.app]\nservers = [ { addr = \"10.0.0.1:9000\", weight = \"heavy\" } ]\n";
    let p = problems(text);
    let lines: Vec<&str> = p
        .iter()
        .map(|(_, r)| r.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        [
            "line 3, column 1",
            "line 7, column 8",
            "line 8, column 1",
            "line 12, column 1",
            "line 15, column 48"
        ],
        "{p:#?}"
    );
    for (i, word) in ["bogus", "8080", "color", "weight", "heavy"]
        .iter()
        .enumerate()
    {
        assert!(p[i].1.contains(word), "{}: {}", word, p[i].1);
    }
    assert!(
        !p.iter().any(|(_, r)| r.contains("missing field")),
        "{p:#?}"
    );

    // A syntax error is reported alone: what follows it cannot be read.
    let p = problems("[admin]\nlisten = \"127.0.0.1:9901\nbogus = 1\n[[listeners]]\ncolor = 2\n");
    assert_eq!(p.len(), 1, "{p:#?}");
    // A genuinely missing key is still reported.
    let p = problems("[[listeners]]\nname = \"web\"\n");
    assert!(p.iter().any(|(_, r)| r.contains("missing field")), "{p:#?}");
}

#[test]
fn route_to_missing_backend_and_bad_regex() {
    let p = problems(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n[[routes]]\nbackend = \"nope\"\npath_regex = \"([\"\n",
    );
    let fields: Vec<_> = p.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(fields, vec!["routes[0].backend", "routes[0].path_regex"]);
}

#[test]
fn health_thresholds_bounded_2_to_10() {
    let p = problems(&format!(
        "{BASE}[backends.app]\nservers = [{{ addr = \"127.0.0.1:1\" }}]\n[backends.app.health]\nunhealthy_threshold = 1\nhealthy_threshold = 11\ninterval = \"200ms\"\n"
    ));
    let fields: Vec<_> = p.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "backends.app.health.unhealthy_threshold",
            "backends.app.health.healthy_threshold"
        ]
    );
}

#[test]
fn hash_policies_need_their_key() {
    let p = problems(&format!(
        "{BASE}[backends.app]\npolicy = \"header\"\nservers = [{{ addr = \"127.0.0.1:1\" }}]\n"
    ));
    assert_eq!(p[0].0, "backends.app.hash_key");
    let c = parse(
        &format!("{BASE}[backends.app]\npolicy = \"header\"\nhash_key = \"X-User\"\nservers = [{{ addr = \"127.0.0.1:1\" }}]\n"),
        "t",
    )
    .unwrap();
    assert_eq!(c.backends["app"].policy, Policy::Header("x-user".into()));
}

#[test]
fn display_lists_file_field_reason() {
    let err = parse(
        &format!("{BASE}[backends.app]\nservers = [{{ addr = \"nope\" }}]\n"),
        "/etc/herd.toml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/herd.toml: backends.app.servers[0].addr: \"nope\" is not host:port; write e.g. \"127.0.0.1:8080\""
    );
}

struct Req<'a> {
    method: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
}

impl RequestView for Req<'_> {
    fn method(&self) -> &str {
        self.method
    }
    fn host(&self) -> Option<&str> {
        self.host
    }
    fn path(&self) -> &str {
        self.path
    }
    fn header_matches(&self, name: &str, re: &regex::Regex) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && re.is_match(v))
    }
}

#[test]
fn route_matching_host_wildcard_path_method_header() {
    let c = parse(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
[[routes]]
host = "*.example.com"
path_prefix = "/static/"
methods = ["get", "HEAD"]
backend = "a"
[[routes]]
headers = { "Accept-Language" = "^zh" }
backend = "b"
[[routes]]
path_regex = "^/v[0-9]+/"
backend = "a"
[backends.a]
servers = [{ addr = "127.0.0.1:1" }]
[backends.b]
servers = [{ addr = "127.0.0.1:2" }]
"#,
        "t",
    )
    .unwrap();
    let first = |r: &Req<'_>| c.routes.iter().position(|x| x.matches(r));
    let req = |method, host, path, headers| Req {
        method,
        host,
        path,
        headers,
    };
    assert_eq!(
        first(&req("GET", Some("img.example.com"), "/static/a.png", &[])),
        Some(0)
    );
    assert_eq!(
        first(&req("POST", Some("img.example.com"), "/static/a.png", &[])),
        None
    );
    assert_eq!(
        first(&req("GET", Some("example.com"), "/static/a.png", &[])),
        None
    );
    assert_eq!(
        first(&req(
            "GET",
            None,
            "/",
            &[("accept-language", "zh-CN,zh;q=0.9")]
        )),
        Some(1)
    );
    assert_eq!(
        first(&req("GET", None, "/", &[("accept-language", "en-US")])),
        None
    );
    assert_eq!(first(&req("PUT", None, "/v2/items", &[])), Some(2));
}

#[test]
fn demo_config_is_valid() {
    let text = demo_toml(
        "127.0.0.1:8080",
        "127.0.0.1:9901",
        &["127.0.0.1:9001".into(), "127.0.0.1:9002".into()],
    );
    let c = parse(&text, "demo").unwrap();
    assert_eq!(c.backends["demo"].servers.len(), 2);
}

const TCP_SPEC_EXAMPLE: &str = r#"
[[listeners]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
accept_proxy_protocol = true

[[listeners]]
name = "mysql"
protocol = "tcp"
bind = "0.0.0.0:3306"
backend = "db"
accept_proxy_protocol = true
max_connections = 500

[[routes]]
listener = "web"
backend = "app"

[backends.app]
servers = [ { addr = "10.0.0.1:9000" } ]
proxy_protocol = "v1"

[backends.db]
policy = "least_conn"
servers = [ { addr = "10.0.0.5:3306" }, { addr = "10.0.0.6:3306" } ]
proxy_protocol = "v2"
"#;

#[test]
fn tcp_listener_and_proxy_protocol_keys_parse() {
    let c = parse(TCP_SPEC_EXAMPLE, "herd.toml").expect("valid");
    let web = &c.listeners[0];
    assert_eq!(web.protocol, Protocol::Http);
    assert!(web.accept_proxy_protocol);
    assert_eq!(web.idle_timeout, Duration::from_secs(60));
    let db = &c.listeners[1];
    assert_eq!(db.protocol, Protocol::Tcp);
    assert_eq!(db.backend.as_deref(), Some("db"));
    assert!(db.accept_proxy_protocol);
    assert_eq!(db.max_connections, Some(500));
    assert_eq!(db.idle_timeout, Duration::from_secs(3600));
    assert_eq!(c.backends["db"].proxy_protocol, Some(ProxyProtocol::V2));
    assert_eq!(c.backends["app"].proxy_protocol, Some(ProxyProtocol::V1));
    assert_eq!(c.listeners[0].max_connections, None);
}

#[test]
fn tcp_only_config_needs_no_routes() {
    let c = parse(
        "[[listeners]]\nname = \"db\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:0\"\nbackend = \"db\"\nidle_timeout = \"5m\"\n\
         [backends.db]\nservers = [{ addr = \"127.0.0.1:1\" }]\n",
        "t",
    )
    .expect("valid");
    assert_eq!(c.listeners[0].idle_timeout, Duration::from_secs(300));
    assert!(c.routes.is_empty());
}

#[test]
fn tcp_listener_mistakes_name_the_field() {
    let p = problems(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
backend = "app"
max_connections = 0
[[listeners]]
name = "db"
protocol = "tcp"
bind = "127.0.0.1:0"
access_log = "stdout"
[[listeners]]
name = "db2"
protocol = "tcp"
bind = "127.0.0.1:0"
backend = "nope"
[[listeners]]
name = "db3"
protocol = "tcp"
bind = "127.0.0.1:0"
backend = "app"
[[routes]]
listener = "db"
backend = "app"
[backends.app]
policy = "uri"
servers = [{ addr = "127.0.0.1:1" }]
proxy_protocol = "v3"
"#,
    );
    let fields: Vec<_> = p.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "listeners[0].backend",
            "listeners[0].max_connections",
            "listeners[1].backend",
            "listeners[1].access_log",
            "backends.app.proxy_protocol",
            "listeners[2].backend",
            "listeners[3].backend",
            "routes[0].listener",
        ],
        "{p:#?}"
    );
    assert!(p[0].1.contains("[[routes]]"), "{}", p[0].1);
    assert!(p[2].1.contains("backend = \"<name>\""), "{}", p[2].1);
    assert!(p[4].1.contains("\"v1\" or \"v2\""), "{}", p[4].1);
    assert!(p[5].1.contains("define [backends.nope]"), "{}", p[5].1);
    assert!(p[6].1.contains("source_ip"), "{}", p[6].1);
    assert!(p[7].1.contains("tcp listener"), "{}", p[7].1);
}

#[test]
fn https_needs_certificates_and_resolves_them_beside_the_file() {
    let p = problems(
        "[[listeners]]\nname = \"s\"\nprotocol = \"https\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"w\"\nbind = \"127.0.0.1:0\"\n\
         certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\n\
         [[routes]]\nbackend = \"app\"\n[backends.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\n\
         protocol = \"h3\"\n",
    );
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "listeners[0].certificates",
            "listeners[1].certificates",
            "backends.app.protocol"
        ],
        "{p:#?}"
    );
    assert!(p[0].1.contains("at least one certificate"), "{}", p[0].1);

    let c = parse(
        "[[listeners]]\nname = \"s\"\nprotocol = \"https\"\nbind = \"127.0.0.1:0\"\n\
         certificates = [{ cert = \"site.pem\", key = \"/abs/site.key\" }]\n\
         [[routes]]\nbackend = \"app\"\nredirect_https = true\n\
         [backends.app]\nprotocol = \"h2c\"\nservers = [{ addr = \"127.0.0.1:1\" }]\n",
        "/etc/herd/herd.toml",
    )
    .unwrap();
    let l = &c.listeners[0];
    assert_eq!(l.protocol, Protocol::Https);
    assert_eq!(
        l.certificates[0].cert,
        std::path::Path::new("/etc/herd/site.pem")
    );
    assert_eq!(l.certificates[0].key, std::path::Path::new("/abs/site.key"));
    assert!(c.routes[0].redirect_https);
    assert_eq!(c.backends["app"].protocol, UpstreamProtocol::H2c);
}

// ---------------------------------------------------------------- traffic control

const TRAFFIC: &str = r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
allow = ["10.0.0.0/8", "127.0.0.1/32", "::1"]
deny = ["10.9.0.0/16"]
max_conns_per_ip = 20
max_body_size = "10MB"
header_read_timeout = "3s"

[[listeners]]
name = "db"
protocol = "tcp"
bind = "127.0.0.1:0"
backend = "db"
deny = ["192.168.0.0/16"]
max_conns_per_ip = 4

[[routes]]
listener = "web"
path_prefix = "/api/"
backend = "app"
rate_limit = { key = "header:X-Api-Key", per_second = 100, burst = 200 }
hours = { from = "08:00", to = "18:00", utc_offset = "+08:00" }
max_body_size = "1KiB"
deny = ["127.0.0.2"]

[[routes]]
listener = "web"
backend = "app"
rate_limit = { per_second = 2.5 }

[backends.app]
servers = [ { addr = "127.0.0.1:9000" } ]
max_conns_per_server = 100
queue = { max = 50, timeout = "2s" }
circuit_breaker = { consecutive_failures = 5, error_rate = 0.5, min_requests = 20, window = "10s", open_for = "5s", half_open_probes = 3 }

[backends.db]
servers = [ { addr = "127.0.0.1:5432" } ]
"#;

#[test]
fn traffic_keys_parse_with_their_values_and_defaults() {
    use crate::traffic::*;
    let c = parse(TRAFFIC, "t.toml").unwrap();
    let web = &c.listeners[0].traffic;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert!(web.acl.permits(ip("10.1.2.3")));
    assert!(!web.acl.permits(ip("10.9.1.1")), "deny wins");
    assert!(!web.acl.permits(ip("192.168.1.1")), "not in allow");
    assert!(web.acl.permits(ip("::1")));
    assert_eq!(web.max_conns_per_ip, Some(20));
    assert_eq!(web.max_body_size, Some(10_000_000));
    assert_eq!(web.header_read_timeout, Duration::from_secs(3));
    let db = &c.listeners[1].traffic;
    assert_eq!(db.max_conns_per_ip, Some(4));
    assert_eq!(db.header_read_timeout, Duration::from_secs(10), "default");

    let api = &c.routes[0].traffic;
    assert_eq!(
        api.rate_limit,
        Some(RateLimit {
            key: RateKey::Header("x-api-key".into()),
            per_second: 100.0,
            burst: 200
        })
    );
    let hours = api.hours.unwrap();
    assert_eq!(
        (hours.from_min, hours.to_min, hours.utc_offset_min),
        (480, 1080, 480)
    );
    assert_eq!(api.max_body_size, Some(1024));
    let other = c.routes[1].traffic.rate_limit.as_ref().unwrap();
    assert_eq!(other.key, RateKey::ClientIp);
    assert_eq!(other.burst, 3, "burst defaults to ceil(per_second)");

    let b = &c.backends["app"].traffic;
    assert_eq!(b.max_conns_per_server, Some(100));
    assert_eq!(
        b.queue,
        Some(ConnQueue {
            max: 50,
            timeout: Duration::from_secs(2)
        })
    );
    let cb = b.circuit_breaker.as_ref().unwrap();
    assert_eq!(cb.consecutive_failures, 5);
    assert_eq!(cb.error_rate, Some(0.5));
    assert_eq!(cb.half_open_probes, 3);
    assert_eq!(cb.open_for, Duration::from_secs(5));
    // Nothing configured: all empty.
    let plain = parse(
        &format!("{BASE}[backends.app]\nservers = [{{ addr = \"127.0.0.1:1\" }}]\n"),
        "t.toml",
    )
    .unwrap();
    assert!(plain.routes[0].traffic == RouteTraffic::default());
    assert!(plain.backends["app"].traffic == BackendTraffic::default());
    assert!(plain.listeners[0].traffic.acl.is_empty());
}

#[test]
fn time_window_wraps_midnight_and_applies_the_offset() {
    use crate::traffic::TimeWindow;
    let day = TimeWindow {
        from_min: 8 * 60,
        to_min: 18 * 60,
        utc_offset_min: 8 * 60,
    };
    let at = |h: u64, m: u64| (h * 3600 + m * 60) * 1000 + 86_400_000 * 19_000;
    // 00:00 UTC is 08:00 at +08:00: inside; 09:59 UTC is 17:59 local; 10:00 UTC is 18:00.
    assert!(day.contains(at(0, 0)));
    assert!(day.contains(at(9, 59)));
    assert!(!day.contains(at(10, 0)));
    assert!(!day.contains(at(23, 59)), "07:59 local");
    let night = TimeWindow {
        from_min: 22 * 60,
        to_min: 6 * 60,
        utc_offset_min: 0,
    };
    assert!(night.contains(at(23, 0)));
    assert!(night.contains(at(5, 59)));
    assert!(!night.contains(at(6, 0)));
    assert!(!night.contains(at(12, 0)));
}

#[test]
fn traffic_mistakes_name_the_field_and_the_fix() {
    let p = problems(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
allow = ["10.0.0.0/33", "nonsense"]
max_conns_per_ip = 0
max_body_size = "10XB"

[[listeners]]
name = "db"
protocol = "tcp"
bind = "127.0.0.1:1"
backend = "app"
max_body_size = 100
header_read_timeout = "1s"

[[routes]]
listener = "web"
backend = "app"
rate_limit = { key = "cookie:x", per_second = 0, burst = 0 }
hours = { from = "8am", to = "18:00", utc_offset = "+15:00" }
deny = ["10.1.2.3/8"]

[backends.app]
servers = [ { addr = "127.0.0.1:9000" } ]
queue = { max = -1 }
circuit_breaker = { consecutive_failures = 0, half_open_probes = 0 }
"#,
    );
    let has = |field: &str, words: &str| {
        assert!(
            p.iter().any(|(f, r)| f == field && r.contains(words)),
            "no problem at {field} mentioning {words:?} in {p:#?}"
        )
    };
    has("listeners[0].allow[0]", "0-32");
    has("listeners[0].allow[1]", "not an IP address");
    has("listeners[0].max_conns_per_ip", "1-1000000");
    has("listeners[0].max_body_size", "unknown unit");
    has("listeners[1].max_body_size", "http listeners only");
    has("listeners[1].header_read_timeout", "http listeners only");
    has("routes[0].rate_limit.key", "header:NAME");
    has("routes[0].rate_limit.per_second", "out of range");
    has("routes[0].rate_limit.burst", "1-1000000");
    has("routes[0].hours.from", "HH:MM");
    has("routes[0].hours.utc_offset", "+08:00");
    has("routes[0].deny[0]", "10.0.0.0/8");
    has("backends.app.queue", "max_conns_per_server");
    has("backends.app.queue.max", "0-100000");
    has("backends.app.circuit_breaker", "nothing would open");
    has("backends.app.circuit_breaker.half_open_probes", "1-100");
}

#[test]
fn unknown_traffic_keys_are_refused() {
    let e = parse(
        &format!("{BASE}rate_limit = {{ per_second = 1, brust = 2 }}\n[backends.app]\nservers = [{{ addr = \"127.0.0.1:1\" }}]\n"),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("brust"), "{e}");
}

#[test]
fn tcp_listener_backend_refuses_http_only_traffic_rules() {
    let p = problems(
        r#"
[[listeners]]
name = "db"
protocol = "tcp"
bind = "127.0.0.1:0"
backend = "db"

[backends.db]
servers = [ { addr = "127.0.0.1:5432" } ]
max_conns_per_server = 10
circuit_breaker = { consecutive_failures = 3 }
"#,
    );
    assert!(
        p.iter()
            .any(|(f, r)| f == "listeners[0].backend" && r.contains("max_connections")),
        "{p:#?}"
    );
}

#[test]
fn rate_limit_slower_than_one_an_hour_is_refused() {
    let slow = |rate: &str| {
        parse(
            &format!(
                "{BASE}rate_limit = {{ per_second = {rate} }}\n\
                 [backends.app]\nservers = [{{ addr = \"127.0.0.1:1\" }}]\n"
            ),
            "t.toml",
        )
    };
    let e = slow("0.0001").unwrap_err().to_string();
    assert!(
        e.contains("routes[0].rate_limit.per_second") && e.contains("one request an hour"),
        "{e}"
    );
    let cfg = slow("0.000278").expect("one an hour is allowed");
    let rl = cfg.routes[0].traffic.rate_limit.as_ref().unwrap();
    assert_eq!(rl.burst, 1);
}

#[test]
fn admin_security_keys() {
    let c = parse(
        "[admin]\nlisten = \"127.0.0.1:9901\"\ntoken_file = \"admin.token\"\ntoken_for_reads = true\nallowed_hosts = [\"gw1.internal\"]\n\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n[[routes]]\nbackend = \"app\"\n\n\
         [backends.app]\nservers = [ { addr = \"127.0.0.1:9\" } ]\n",
        "/etc/herd/herd.toml",
    )
    .unwrap();
    let admin = c.admin.unwrap();
    assert_eq!(
        admin.token_file.unwrap(),
        std::path::PathBuf::from("/etc/herd/admin.token")
    );
    assert!(admin.token_for_reads);
    assert_eq!(admin.allowed_hosts, vec!["gw1.internal".to_string()]);
    let err = parse(
        "[admin]\nlisten = \"127.0.0.1:9901\"\nallowed_hosts = [\"gw1:9901\"]\ntoken_file = \"\"\n\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n[[routes]]\nbackend = \"app\"\n\n\
         [backends.app]\nservers = [ { addr = \"127.0.0.1:9\" } ]\n",
        "/etc/herd/herd.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("admin.allowed_hosts[0]"), "{err}");
    assert!(err.contains("admin.token_file"), "{err}");
}
