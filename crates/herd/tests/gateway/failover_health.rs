use herd_testkit::prelude::*;

// Load-aware and hash policies, failover, active and passive health, through the real
// binary against real servers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- local helpers

/// A server that answers every request (any path) with a fixed status and its name as
/// the body, after a fixed delay. Own thread and runtime, stopped when dropped.
struct FixedServer {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FixedServer {
    fn start(name: &str, status: u16, delay: Duration) -> FixedServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let (name, h) = (name.to_string(), hits.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (name, h) = (name.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        let (name, h) = (name.clone(), h.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut r = hyper::Response::new(Full::new(Bytes::from(name)));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FixedServer {
            addr,
            hits,
            runtime: Some(runtime),
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for FixedServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `servers = [...]` by address.
fn servers_at(addrs: &[SocketAddr]) -> String {
    let items: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect();
    format!("servers = [{}]", items.join(", "))
}

/// In-flight count per server address of backend "app", from /status.
async fn active_by_addr(gw: &Gateway, c: &Client) -> HashMap<String, u64> {
    let s = gw.status(c).await;
    s["backends"]["app"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["addr"].as_str().unwrap().to_string(),
                x["active"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn wait_server<F>(
    gw: &Gateway,
    c: &Client,
    addr: SocketAddr,
    what: &str,
    within: Duration,
    pred: F,
) -> Value
where
    F: Fn(&Value) -> bool,
{
    eventually(what, within, || async {
        let s = gw.server_status(c, "app", addr).await;
        pred(&s).then_some(s)
    })
    .await
}

// ---------------------------------------------------------------- least_conn

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sends_new_requests_to_the_server_with_fewer_in_flight() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let gw = Gateway::start(&simple_config(&format!(
        "policy = \"least_conn\"\n{}",
        servers(&[(&a, 1), (&b, 1)])
    )));
    let c = client();
    let (ka, kb) = (a.addr.to_string(), b.addr.to_string());

    // Three slow requests, started one at a time once the gateway counts the previous one.
    let mut slow = Vec::new();
    for n in 1..=3u64 {
        let cc = c.clone();
        let url = gw.url("/slow?ms=3000");
        slow.push(tokio::spawn(async move { get(&cc, &url).await }));
        let act = eventually(
            &format!("{n} slow request(s) in flight at the gateway"),
            Duration::from_secs(2),
            || async {
                let m = active_by_addr(&gw, &c).await;
                (m[&ka] + m[&kb] == n).then_some(m)
            },
        )
        .await;
        if n == 2 {
            assert_eq!(
                (act[&ka], act[&kb]),
                (1, 1),
                "the second request must go to the idle server"
            );
        }
    }
    let act = active_by_addr(&gw, &c).await;
    let (fewer, more) = match (act[&ka], act[&kb]) {
        (1, 2) => ("a", "b"),
        (2, 1) => ("b", "a"),
        other => panic!("least_conn split 3 slow requests as {other:?}, want 2/1"),
    };

    // With 1 and 2 in flight, every quick request goes to the server with 1.
    let mut answered = Vec::new();
    for i in 0..10 {
        // Wait until the previous quick request is no longer counted.
        eventually(
            "the quick request's in-flight slot to be released",
            Duration::from_secs(1),
            || async {
                let m = active_by_addr(&gw, &c).await;
                (m[&ka] + m[&kb] == 3).then_some(())
            },
        )
        .await;
        let r = get(&c, &gw.url("/")).await.unwrap();
        assert_eq!(r.status, 200, "quick request {i}: {}", r.body);
        answered.push(r.body);
    }
    assert!(
        answered.iter().all(|s| s == fewer),
        "with {more} holding 2 slow requests and {fewer} holding 1, quick requests went to {answered:?}"
    );

    let mut bodies = Vec::new();
    for h in slow {
        let r = h.await.unwrap().expect("slow request");
        assert_eq!(r.status, 200);
        bodies.push(r.body);
    }
    let on_more = bodies.iter().filter(|s| *s == more).count();
    assert_eq!(on_more, 2, "slow requests answered by {bodies:?}");
}

// ---------------------------------------------------------------- hash policies

/// With 3 servers and `policy_lines`, the same key always lands on the same server, and
/// 30 different keys (when `distinct_keys`) use at least 2 servers.
async fn assert_sticky_hash(
    policy_lines: &str,
    distinct_keys: bool,
    request: impl Fn(&Gateway, usize) -> (String, Vec<(String, String)>),
) {
    let bs = [
        Backend::start("s1"),
        Backend::start("s2"),
        Backend::start("s3"),
    ];
    let gw = Gateway::start(&simple_config(&format!(
        "{policy_lines}\n{}",
        servers(&[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)])
    )));
    let ask = |key: usize| {
        let (url, headers) = request(&gw, key);
        async move {
            // A fresh client per request: a new connection and source port each time.
            let c = client();
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = get_with(&c, &url, &h).await.unwrap();
            assert_eq!(r.status, 200, "{url}: {}", r.body);
            r.body
        }
    };
    for key in [0, 7, 19] {
        let mut seen = HashSet::new();
        for _ in 0..20 {
            seen.insert(ask(key).await);
        }
        assert_eq!(
            seen.len(),
            1,
            "{policy_lines}: key {key} was served by {seen:?}"
        );
    }
    if distinct_keys {
        let mut seen = HashSet::new();
        for key in 0..30 {
            seen.insert(ask(key).await);
        }
        assert!(
            seen.len() >= 2,
            "{policy_lines}: 30 keys all went to {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_source_ip_is_sticky() {
    // Every client is 127.0.0.1: only stickiness (across connections) can be checked.
    assert_sticky_hash("policy = \"source_ip\"", false, |gw, _| {
        (gw.url("/"), vec![])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_uri_is_sticky_per_path() {
    assert_sticky_hash("policy = \"uri\"", true, |gw, k| {
        (gw.url(&format!("/item/{k}")), vec![])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_url_param_is_sticky_per_value() {
    assert_sticky_hash(
        "policy = \"url_param\"\nhash_key = \"user\"",
        true,
        |gw, k| {
            // Other parameters vary and must not matter.
            (gw.url(&format!("/?page={}&user=u{k}", k * 31 % 7)), vec![])
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_header_is_sticky_per_value() {
    assert_sticky_hash(
        "policy = \"header\"\nhash_key = \"X-User\"",
        true,
        |gw, k| (gw.url("/"), vec![("x-user".into(), format!("user-{k}"))]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_cookie_is_sticky_per_value() {
    assert_sticky_hash("policy = \"cookie\"\nhash_key = \"sid\"", true, |gw, k| {
        (
            gw.url("/"),
            vec![("cookie".into(), format!("theme=dark; sid=s{k}; lang=en"))],
        )
    })
    .await;
}

// ---------------------------------------------------------------- killed under load

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_under_load_causes_no_client_errors_and_comes_back() {
    let a = Backend::start("a");
    let mut b = Backend::start("b");
    let c3 = Backend::start("c");
    let b_addr = b.addr;
    // Passive ejection off: this test is about the active checks alone (the default
    // passive cooldown of 10 s would keep the restarted server out for that long).
    let gw = Gateway::start(&simple_config(&format!(
        "policy = \"round_robin\"\n{}\n\
         passive = {{ consecutive_failures = 0 }}\n\
         health = {{ kind = \"http\", path = \"/healthz\", interval = \"200ms\", \
         timeout = \"200ms\", unhealthy_threshold = 2, healthy_threshold = 2 }}",
        servers(&[(&a, 1), (&b, 1), (&c3, 1)])
    )));
    let c = client();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (stop, sent, cl, url) = (stop.clone(), sent.clone(), client(), gw.url("/"));
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut by_server: HashMap<String, u64> = HashMap::new();
            while !stop.load(Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(10)
                && sent.fetch_add(1, Ordering::SeqCst) < 3000
            {
                match get(&cl, &url).await {
                    Ok(r) if r.status == 200 => *by_server.entry(r.body).or_default() += 1,
                    Ok(r) => errors.push(format!("{} {}", r.status, r.body)),
                    Err(e) => errors.push(e),
                }
                // Pace the load so it lasts through kill, detection and recovery.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            (errors, by_server)
        }));
    }

    eventually("300 requests sent", Duration::from_secs(8), || async {
        (sent.load(Ordering::SeqCst) >= 300).then_some(())
    })
    .await;
    let before_kill = b.requests();
    assert!(before_kill > 0, "b got no traffic before the kill");
    b.kill();
    let killed_at = Instant::now();
    let st = wait_server(
        &gw,
        &c,
        b_addr,
        "killed server marked down",
        Duration::from_secs(2),
        |s| s["healthy"] == false && s["usable"] == false,
    )
    .await;
    let detect = killed_at.elapsed();
    assert_eq!(st["state"], "down", "{st}");

    // Bring it back on the same address.
    let b2 = Backend::start_on("b", b_addr);
    let restarted_at = Instant::now();
    wait_server(
        &gw,
        &c,
        b_addr,
        "restarted server marked up",
        Duration::from_secs(3),
        |s| s["healthy"] == true && s["usable"] == true,
    )
    .await;
    let recover = restarted_at.elapsed();
    eventually(
        "restarted server receives requests",
        Duration::from_secs(3),
        || async { (b2.requests() >= 5).then_some(()) },
    )
    .await;
    assert!(
        b2.state.health_checks.load(Ordering::SeqCst) >= 2,
        "restarted server saw too few health checks"
    );

    stop.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    let mut total = 0;
    for t in tasks {
        let (e, by) = t.await.unwrap();
        errors.extend(e);
        total += by.values().sum::<u64>();
    }
    assert!(
        errors.is_empty(),
        "{} of {} requests failed (detect {detect:?}, recover {recover:?}): {:?}\ngateway stderr:\n{}",
        errors.len(),
        total + errors.len() as u64,
        &errors[..errors.len().min(10)],
        gw.stderr()
    );
    assert!(total >= 300, "only {total} requests answered");
}

// ---------------------------------------------------------------- active checks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_check_takes_a_failing_server_out_and_puts_it_back() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let gw = Gateway::start(&simple_config(&format!(
        "policy = \"round_robin\"\n{}\n\
         health = {{ kind = \"http\", path = \"/healthz\", interval = \"100ms\", \
         timeout = \"500ms\", unhealthy_threshold = 2, healthy_threshold = 2 }}",
        servers(&[(&a, 1), (&b, 1)])
    )));
    let c = client();
    let counts = tally(&c, &gw.url("/"), 10).await;
    assert_eq!((counts["a"], counts["b"]), (5, 5), "{counts:?}");

    b.set_healthy(false);
    let st = wait_server(
        &gw,
        &c,
        b.addr,
        "b marked down by the health check",
        Duration::from_secs(2),
        |s| s["healthy"] == false,
    )
    .await;
    assert_eq!(st["state"], "down", "{st}");
    assert_eq!(st["usable"], false, "{st}");
    let b_before = b.requests();
    let counts = tally(&c, &gw.url("/"), 50).await;
    assert_eq!(counts.get("a"), Some(&50), "{counts:?}");
    assert_eq!(b.requests(), b_before);

    b.set_healthy(true);
    let st = wait_server(
        &gw,
        &c,
        b.addr,
        "b marked up again",
        Duration::from_secs(2),
        |s| s["healthy"] == true && s["usable"] == true,
    )
    .await;
    assert_eq!(st["state"], "up", "{st}");
    let counts = tally(&c, &gw.url("/"), 20).await;
    assert!(
        counts.get("b").copied().unwrap_or(0) >= 8,
        "b gets traffic again: {counts:?}"
    );
    // The checks really went over the network: at least 2 failing and 2 passing ones.
    let checks = b.state.health_checks.load(Ordering::SeqCst);
    assert!(checks >= 4, "b saw {checks} health checks");
    assert!(a.state.health_checks.load(Ordering::SeqCst) >= 2);
    let s = gw.status(&c).await;
    assert_eq!(s["backends"]["app"]["health_check"]["interval_ms"], 100);
}

// ---------------------------------------------------------------- passive ejection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_after_consecutive_5xx_then_trial_after_cooldown() {
    let good = Backend::start("good");
    let bad = FixedServer::start("bad", 500, Duration::ZERO);
    let cooldown = Duration::from_secs(2);
    let gw = Gateway::start(&simple_config(&format!(
        "policy = \"round_robin\"\n{}\npassive = {{ consecutive_failures = 3, cooldown = \"2s\" }}",
        servers_at(&[good.addr, bad.addr])
    )));
    let c = client();

    // Round robin alternates: the bad server's 3 consecutive 500s reach the client (a
    // response is never retried) and then it is ejected.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = get(&c, &gw.url("/")).await.unwrap();
        statuses.push(r.status);
        if statuses.iter().filter(|s| **s == 500).count() == 3 {
            break;
        }
    }
    let ejected_seen = Instant::now();
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(bad.hits(), 3, "{statuses:?}");
    let st = gw.server_status(&c, "app", bad.addr).await;
    assert_eq!(st["state"], "ejected", "{st}");
    assert_eq!(st["usable"], false, "{st}");
    assert_eq!(st["healthy"], true, "{st}");

    // During the cool-down every request goes to the good server.
    let counts = tally(&c, &gw.url("/"), 10).await;
    assert!(
        ejected_seen.elapsed() < cooldown,
        "too slow to check the cool-down"
    );
    assert_eq!(counts.get("good"), Some(&10), "{counts:?}");
    assert_eq!(bad.hits(), 3);

    // After the cool-down it is usable again, not before.
    wait_server(
        &gw,
        &c,
        bad.addr,
        "bad server back after the cool-down",
        cooldown + Duration::from_secs(2),
        |s| s["usable"] == true,
    )
    .await;
    let back_after = ejected_seen.elapsed();
    assert!(
        back_after >= cooldown - Duration::from_millis(500),
        "released after {back_after:?}, cool-down is {cooldown:?}"
    );

    // On trial: a single further failure ejects it again.
    let mut trial = Vec::new();
    for _ in 0..6 {
        let r = get(&c, &gw.url("/")).await.unwrap();
        trial.push(r.status);
        if r.status == 500 {
            break;
        }
    }
    assert_eq!(trial.last(), Some(&500), "bad never tried again: {trial:?}");
    assert_eq!(bad.hits(), 4);
    let st = gw.server_status(&c, "app", bad.addr).await;
    assert_eq!(
        st["state"], "ejected",
        "one failure on trial re-ejects: {st}"
    );
    let counts = tally(&c, &gw.url("/"), 6).await;
    assert_eq!(counts.get("good"), Some(&6), "{counts:?}");
}

// ---------------------------------------------------------------- connect failover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_fails_over_on_connect_refused_without_losing_the_body() {
    let live = Backend::start("live");
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = Gateway::start(&simple_config(&format!(
        "policy = \"round_robin\"\n{}",
        servers_at(&[dead, live.addr])
    )));
    let c = client();
    for i in 0..20 {
        let body = format!("post {i}: ").repeat(500);
        let r = post(&c, &gw.url("/echo"), &body).await.unwrap();
        assert_eq!(r.status, 200, "POST {i}: {}", r.body);
        assert_eq!(r.body.len(), body.len(), "POST {i} body length");
        assert!(r.body == body, "POST {i}: body not echoed intact");
    }
    assert_eq!(live.requests(), 20);
    let st = gw.server_status(&c, "app", dead).await;
    assert!(
        st["failures"].as_u64().unwrap() >= 1,
        "the dead server was never tried: {st}"
    );
}

// ---------------------------------------------------------------- ewma

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ewma_prefers_the_fast_server() {
    let fast = Backend::start("fast");
    let slow = FixedServer::start("slow", 200, Duration::from_millis(150));
    let gw = Gateway::start(&simple_config(&format!(
        "policy = \"ewma\"\n{}",
        servers_at(&[fast.addr, slow.addr])
    )));
    let c = client();
    let counts = tally(&c, &gw.url("/"), 40).await;
    let to_slow = counts.get("slow").copied().unwrap_or(0);
    assert!(
        to_slow <= 4,
        "the 150 ms server got {to_slow} of 40 sequential requests: {counts:?}"
    );
    assert_eq!(slow.hits(), to_slow as u64);
}
