//! Session persistence, hot reload, graceful shutdown, streaming, the access log and the
//! runtime API, through the real binary. Session persistence is here; reload, shutdown,
//! streaming, the access log and the runtime API are in `ops`.

mod ops;

use herd_testkit::prelude::*;

use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn three() -> [Backend; 3] {
    [
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    ]
}

fn index_of(backends: &[Backend], name: &str) -> usize {
    backends
        .iter()
        .position(|b| b.name == name)
        .unwrap_or_else(|| panic!("no backend named {name:?}"))
}

/// The value of cookie `name` in a Set-Cookie header ("NAME=value; attrs...").
fn set_cookie_value<'a>(set_cookie: &'a str, name: &str) -> &'a str {
    let first = set_cookie.split(';').next().unwrap();
    first
        .strip_prefix(&format!("{name}="))
        .unwrap_or_else(|| panic!("Set-Cookie {set_cookie:?} does not set {name}"))
}

fn headers_seen(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

async fn revision(gw: &Gateway, c: &Client) -> u64 {
    gw.status(c).await["config_revision"].as_u64().unwrap()
}

// ---------------------------------------------------------------- 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_cookie_pins_a_client_and_repins_after_its_server_dies() {
    let mut bs = three();
    let gw = Gateway::start(&simple_config(&format!(
        "{}\n\n[backends.app.persistence]\nmode = \"insert_cookie\"\ncookie = \"HERDSRV\"\nmax_age = \"1h\"\n",
        servers(&[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)])
    )));
    let c = client();

    // First visit: no cookie, so the balancer picks and the gateway pins.
    let r = get(&c, &gw.url("/headers")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.header("x-backend").unwrap().to_string();
    let set = r
        .header("set-cookie")
        .expect("first response sets the cookie");
    let id = set_cookie_value(set, "HERDSRV").to_string();
    assert_eq!(
        set,
        format!("HERDSRV={id}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax")
    );
    let first_idx = index_of(&bs, &first);
    let st = gw.server_status(&c, "app", bs[first_idx].addr).await;
    assert_eq!(st["id"], id.as_str(), "cookie carries the server's id");

    // Pinned: 20 requests, same server, no new cookie, and the application never sees
    // the gateway's cookie (its own cookies pass through untouched).
    let cookie = format!("theme=dark; HERDSRV={id}");
    for i in 0..20 {
        let r = get_with(&c, &gw.url("/headers"), &[("cookie", &cookie)])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-backend"), Some(first.as_str()), "request {i}");
        assert_eq!(
            r.header("set-cookie"),
            None,
            "request {i} re-set the cookie"
        );
        let seen = headers_seen(&r);
        assert_eq!(seen["cookie"], "theme=dark", "request {i}: {seen}");
    }

    // The pinned server dies: the next request with the old cookie goes elsewhere and is
    // re-pinned there.
    bs[first_idx].kill();
    let r = get_with(&c, &gw.url("/headers"), &[("cookie", &cookie)])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}\nstderr:\n{}", r.body, gw.stderr());
    let second = r.header("x-backend").unwrap().to_string();
    assert_ne!(second, first);
    let set = r
        .header("set-cookie")
        .expect("re-pinned response sets a new cookie");
    let new_id = set_cookie_value(set, "HERDSRV").to_string();
    assert_ne!(new_id, id);
    assert_eq!(
        set,
        format!("HERDSRV={new_id}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax")
    );

    let cookie = format!("HERDSRV={new_id}");
    for i in 0..20 {
        let r = get_with(&c, &gw.url("/headers"), &[("cookie", &cookie)])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-backend"), Some(second.as_str()), "request {i}");
        assert_eq!(r.header("set-cookie"), None, "request {i}");
        assert!(headers_seen(&r).get("cookie").is_none(), "request {i}");
    }
}

// ---------------------------------------------------------------- 2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_cookie_prefixes_the_application_cookie_and_strips_it_on_the_way_back() {
    let bs = three();
    let gw = Gateway::start(&simple_config(&format!(
        "{}\n\n[backends.app.persistence]\nmode = \"rewrite_cookie\"\ncookie = \"SESSION\"\n",
        servers(&[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)])
    )));
    let c = client();

    let r = get(&c, &gw.url("/set-cookie?name=SESSION&value=v1"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let owner = r.body.clone();
    let set = r.header("set-cookie").expect("Set-Cookie passes through");
    let value = set_cookie_value(set, "SESSION").to_string();
    let (id, rest) = value
        .split_once('~')
        .unwrap_or_else(|| panic!("SESSION not rewritten: {set}"));
    assert_eq!(rest, "v1");
    assert!(set.ends_with("; Path=/"), "attributes kept: {set}");
    let st = gw
        .server_status(&c, "app", bs[index_of(&bs, &owner)].addr)
        .await;
    assert_eq!(st["id"], id);

    // Another cookie of the application is not touched.
    let r = get(&c, &gw.url("/set-cookie?name=OTHER&value=v2"))
        .await
        .unwrap();
    assert_eq!(r.header("set-cookie"), Some("OTHER=v2; Path=/"));

    let cookie = format!("SESSION={value}; lang=en");
    for i in 0..20 {
        let r = get_with(&c, &gw.url("/headers"), &[("cookie", &cookie)])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-backend"), Some(owner.as_str()), "request {i}");
        let seen = headers_seen(&r);
        assert_eq!(seen["cookie"], "SESSION=v1; lang=en", "request {i}");
    }
}

// ---------------------------------------------------------------- 3

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_persistence_keeps_a_client_on_one_server_where_round_robin_spreads() {
    let bs = three();
    let list = servers(&[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)]);
    let gw = Gateway::start(&format!(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"

[[listeners]]
name = "plain"
bind = "127.0.0.1:0"

[[routes]]
listener = "web"
backend = "sticky"

[[routes]]
listener = "plain"
backend = "spread"

[backends.sticky]
policy = "round_robin"
{list}
persistence = {{ mode = "source_ip", timeout = "10m" }}

[backends.spread]
policy = "round_robin"
{list}
"#
    ));
    let c = client();
    let sticky = tally(&c, &gw.url("/"), 30).await;
    assert_eq!(sticky.len(), 1, "source_ip must pin: {sticky:?}");
    assert_eq!(sticky.values().sum::<usize>(), 30);

    let spread = tally(&c, &gw.listener_url("plain", "/"), 30).await;
    assert_eq!(spread.len(), 3, "round robin must spread: {spread:?}");
    for (name, n) in &spread {
        assert_eq!(*n, 10, "{name}: {spread:?}");
    }

    let s = gw.status(&c).await;
    assert_eq!(s["backends"]["sticky"]["persistence"], "source_ip");
    assert_eq!(s["backends"]["sticky"]["source_ip_pins"], 1);
    assert_eq!(s["backends"]["spread"]["source_ip_pins"], Value::Null);
}
