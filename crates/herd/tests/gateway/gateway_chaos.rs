//! Gateway chaos (issue 12): the real `herd gateway` with real servers on 127.0.0.1,
//! broken while clients load it. What docs/gateway.md promises under faults: a server
//! killed mid-load costs idempotent clients nothing (failover), a server dying inside a
//! response is an error the client can detect, reloads under load lose no request and
//! route only to the servers in force, and SIGTERM drains in-flight requests — or, when
//! the drain timeout cuts them, exits non-zero saying how many.

use herd_testkit::chaos::{CrashingBackend, Death, DyingBackend};
use herd_testkit::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bounds for every load loop: per client, at most a given number of requests (see each
/// test) and this long.
const MAX_LOAD_TIME: Duration = Duration::from_secs(20);
const CLIENTS: usize = 4;

fn server_list(addrs: &[std::net::SocketAddr]) -> String {
    let items: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ addr = \"{a}\", weight = 1 }}"))
        .collect();
    format!("servers = [{}]", items.join(", "))
}

/// One answered (or failed) request: when it was sent, when it ended, what came back.
struct Sample {
    sent: Instant,
    ended: Instant,
    outcome: Result<String, String>,
}

/// `CLIENTS` keep-alive clients, each GETting `url` in a loop until `stop`, its own
/// request cap (`max_each`) or `MAX_LOAD_TIME`. `done` counts finished requests across all of them.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(url: String, max_each: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (url, stop, done) = (url.clone(), stop.clone(), done.clone());
                tokio::spawn(async move {
                    let c = client();
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::SeqCst)
                        && samples.len() < max_each
                        && started.elapsed() < MAX_LOAD_TIME
                    {
                        let sent = Instant::now();
                        let outcome = match get(&c, &url).await {
                            Ok(r) if r.status == 200 => Ok(r.body),
                            Ok(r) => Err(format!("status {}: {}", r.status, r.body)),
                            Err(e) => Err(e),
                        };
                        samples.push(Sample {
                            sent,
                            ended: Instant::now(),
                            outcome,
                        });
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    samples
                })
            })
            .collect();
        Load { stop, done, tasks }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Wait until `n` more requests have finished (proof the load is running now).
    async fn wait_for(&self, n: usize, what: &str) {
        let target = self.done() + n;
        let what = format!(
            "{what} (waiting from {} done, with {} clients still running then; a client \
             stops at its request cap or MAX_LOAD_TIME)",
            self.done(),
            self.tasks.iter().filter(|t| !t.is_finished()).count()
        );
        eventually(&what, Duration::from_secs(15), || async {
            (self.done() >= target).then_some(())
        })
        .await
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("load task"));
        }
        all
    }
}

fn failures(samples: &[Sample]) -> Vec<&String> {
    samples
        .iter()
        .filter_map(|s| s.outcome.as_ref().err())
        .collect()
}

fn tally(samples: &[Sample]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for s in samples {
        if let Ok(body) = &s.outcome {
            *t.entry(body.clone()).or_insert(0) += 1;
        }
    }
    t
}

// ---------------------------------------------------------------- 1: a server crashes

/// Three servers, one crashes under load (listener gone, every connection reset, pooled
/// ones included). Every GET must still get its 200: a refused connect and a reset before
/// any response byte fail over to another server (docs/gateway.md, "Failover").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_crashing_under_load_costs_get_clients_nothing() {
    let a = CrashingBackend::start("a");
    let b = CrashingBackend::start("b");
    let mut victim = CrashingBackend::start("victim");
    let gw = Gateway::start(&simple_config(&server_list(&[a.addr, b.addr, victim.addr])));

    let load = Load::start(gw.url("/"), 2000);
    eventually(
        "the victim takes its share of the load",
        Duration::from_secs(15),
        || async { (victim.served() >= 50).then_some(()) },
    )
    .await;
    let (a_before, b_before) = (a.served(), b.served());
    victim.kill();
    let victim_total = victim.served();
    load.wait_for(400, "400 requests after the crash").await;
    let samples = load.finish().await;

    let failed = failures(&samples);
    assert!(
        failed.is_empty(),
        "{} of {} GETs failed around a server crash, first: {:?}\ngateway stderr:\n{}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)],
        gw.stderr()
    );
    let t = tally(&samples);
    let known: HashSet<&str> = ["a", "b", "victim"].into();
    assert!(t.keys().all(|k| known.contains(k.as_str())), "{t:?}");
    assert!(t["victim"] as u64 <= victim_total, "{t:?}");
    assert!(
        a.served() > a_before && b.served() > b_before,
        "the survivors carry the load after the crash: a {a_before}->{}, b {b_before}->{}",
        a.served(),
        b.served()
    );
    eprintln!("{} GETs, 0 failed, across a crash: {t:?}", samples.len());
}

/// A server that dies inside a 200's body: that request may fail, but never as a 200
/// whose body looks complete. Either nothing was sent yet and the gateway answers 502, or
/// the client's connection breaks before the framing says the body is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_mid_response_is_an_error_the_client_detects() {
    for death in [Death::ShortOfLength, Death::ResetMidChunk] {
        let dying = DyingBackend::start(death).await;
        let gw = Gateway::start(&simple_config(&server_list(&[dying.addr])));
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            stream_request(gw.listeners["web"], "GET", "/", 0),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("{death:?}: no outcome within 20 s; a hung client is not a detectable error")
        });
        match &outcome {
            // The connection ended before the framing said the answer was over: before the
            // head (today: the gateway holds the head until body bytes accumulate) or
            // inside the body. Either way the client's HTTP library reports an error.
            Err(_) => {}
            Ok((status, _)) => assert!(
                *status == 502,
                "{death:?}: the client got {outcome:?}, a response that looks whole \
                 although the server died after 1000 bytes"
            ),
        }
        // The gateway itself is unharmed.
        let mut gw = gw;
        assert_eq!(
            gw.child.try_wait().ok().flatten(),
            None,
            "{death:?}: gateway died"
        );
        eprintln!("{death:?}: client saw {outcome:?}");
    }
}

// ---------------------------------------------------------------- 2: reloads under load

/// Every 0.5 s a reload — POST /reload and SIGHUP in turn — flips the backend between two
/// overlapping server sets, {x, y} and {y, z}, under load. No request may fail, and every
/// answer must come from a server in a set that was in force while that request ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_every_half_second_under_load_lose_nothing_and_route_to_the_set_in_force() {
    let x = Backend::start("x");
    let y = Backend::start("y");
    let z = Backend::start("z");
    let set_a = [(&x, "x"), (&y, "y")];
    let set_b = [(&y, "y"), (&z, "z")];
    let config_of =
        |set: &[(&Backend, &str); 2]| simple_config(&server_list(&[set[0].0.addr, set[1].0.addr]));
    let names_of = |set: &[(&Backend, &str); 2]| -> HashSet<String> {
        set.iter().map(|(_, n)| n.to_string()).collect()
    };
    let gw = Gateway::start(&config_of(&set_a));
    let c = client();
    // Twelve reloads take over 6 s; 5 ms answers keep the clients from using up their
    // request caps (thousands a second over loopback otherwise) before the last one.
    let load = Load::start(gw.url("/slow?ms=5"), 10_000);

    const RELOADS: u64 = 12;
    // Set k may be in force from the moment reload k is asked for until reload k+1 is
    // confirmed; set 0 (the start-up config) from the beginning.
    let mut windows: Vec<(Instant, Option<Instant>, HashSet<String>)> = vec![(
        Instant::now() - Duration::from_secs(3600),
        None,
        names_of(&set_a),
    )];
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.tick().await;
    for k in 1..=RELOADS {
        tick.tick().await;
        load.wait_for(10, "traffic between reloads").await;
        let set = if k % 2 == 1 { &set_b } else { &set_a };
        gw.write_config(&config_of(set));
        let asked = Instant::now();
        let want = k + 1;
        if k % 2 == 1 {
            let r = post(&c, &gw.admin_url("/reload"), "")
                .await
                .expect("POST /reload");
            assert_eq!(r.status, 200, "reload {k}: {}", r.body);
            let v: Value = serde_json::from_str(&r.body).expect("reload answer is JSON");
            assert_eq!(v["revision"], want, "reload {k}: {}", r.body);
        } else {
            gw.signal("HUP");
            eventually(
                &format!("SIGHUP reload {k} to revision {want}"),
                Duration::from_secs(10),
                || async { (gw.status(&c).await["config_revision"] == want).then_some(()) },
            )
            .await;
        }
        let confirmed = Instant::now();
        if let Some(last) = windows.last_mut() {
            last.1 = Some(confirmed);
        }
        windows.push((asked, None, names_of(set)));
    }
    eprintln!("{RELOADS} reloads, {} requests so far", load.done());
    load.wait_for(50, "traffic after the last reload").await;
    let samples = load.finish().await;

    let failed = failures(&samples);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across {RELOADS} reloads, first: {:?}\ngateway stderr:\n{}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)],
        gw.stderr()
    );
    let mut misrouted = Vec::new();
    for s in &samples {
        let Ok(body) = &s.outcome else { continue };
        let allowed = windows.iter().any(|(from, until, names)| {
            *from <= s.ended && until.is_none_or(|u| s.sent <= u) && names.contains(body)
        });
        if !allowed {
            misrouted.push(body.clone());
        }
    }
    assert!(
        misrouted.is_empty(),
        "{} of {} answers came from a server outside every set in force while the request \
         ran: {:?}",
        misrouted.len(),
        samples.len(),
        &misrouted[..misrouted.len().min(10)]
    );
    let t = tally(&samples);
    assert!(
        t.contains_key("x") && t.contains_key("z"),
        "both sets served: {t:?}"
    );
    let m = get(&c, &gw.admin_url("/metrics")).await.expect("metrics");
    assert!(
        m.body.contains(&format!(
            "herd_gateway_reloads_total{{result=\"ok\"}} {RELOADS}"
        )),
        "{}",
        m.body
    );
    eprintln!(
        "{} requests across {RELOADS} reloads, 0 failed: {t:?}",
        samples.len()
    );
}

// ---------------------------------------------------------------- 3: SIGTERM

fn drain_config(drain_timeout: &str, backend: &Backend) -> String {
    format!(
        "[gateway]\ndrain_timeout = \"{drain_timeout}\"\n\n{}",
        simple_config(&server_list(&[backend.addr]))
    )
}

/// `n` slow GETs, each on its own connection, and a wait until the server holds all of
/// them: from then on they are in flight through the gateway.
async fn slow_requests_in_flight(
    gw: &Gateway,
    backend: &Backend,
    n: usize,
    ms: u64,
) -> Vec<tokio::task::JoinHandle<Result<Reply, String>>> {
    let tasks = (0..n)
        .map(|_| {
            let url = gw.url(&format!("/slow?ms={ms}"));
            tokio::spawn(async move { get(&client(), &url).await })
        })
        .collect();
    eventually(
        &format!("{n} slow requests in flight at the server"),
        Duration::from_secs(15),
        || async { (backend.state.active.load(Ordering::SeqCst) == n).then_some(()) },
    )
    .await;
    tasks
}

/// `n` clients, each with one kept-alive connection that has served a request and now
/// sits idle: SIGTERM must close these at once, neither waiting for them nor counting
/// them as cut.
async fn idle_keepalive_clients(gw: &Gateway, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let c = client();
        let r = get(&c, &gw.url("/")).await.expect("warm-up request");
        assert_eq!(r.status, 200, "{}", r.body);
        clients.push(c);
    }
    clients
}

/// A connection through a tcp listener that has relayed one HTTP exchange and stays open.
async fn open_tcp_pair(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the tcp listener");
    s.write_all(b"GET / HTTP/1.1\r\nhost: pair\r\n\r\n")
        .await
        .expect("write through the pair");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"a") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answer through the tcp pair within 10 s")
            .expect("read through the pair");
        assert!(
            n > 0,
            "pair closed early: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    s
}

/// SIGTERM with 8 requests in flight that take 1.5 s (and 3 idle keep-alive connections):
/// every one completes with its 200 and the gateway exits 0, well inside its 20 s drain
/// timeout; were the idle connections waited for, the timeout would cut them and the exit
/// would not be 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_every_in_flight_request_finish_then_exits_zero() {
    let a = Backend::start("a");
    let mut gw = Gateway::start(&drain_config("20s", &a));
    let _idle = idle_keepalive_clients(&gw, 3).await;
    let tasks = slow_requests_in_flight(&gw, &a, 8, 1500).await;
    gw.signal("TERM");
    for t in tasks {
        let r = t
            .await
            .expect("client task")
            .expect("in-flight request completes");
        assert_eq!((r.status, r.body.as_str()), (200, "a"));
    }
    let code = gw.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "stderr:\n{}", gw.stderr());
    let stderr = gw.stderr();
    assert!(stderr.contains("gateway stopped"), "{stderr}");
    assert!(!stderr.contains("drain timeout ("), "{stderr}");
}

/// SIGTERM with 5 requests the server holds for 20 s and a drain timeout of 1 s: the
/// timeout cuts them, and that is not a clean stop — the exit status is non-zero and one
/// line says how many connections and requests were cut: those 5, not the 3 idle
/// keep-alive connections also open, which SIGTERM closed at once, nor a TCP pair, which
/// the drain timeout ends by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_drain_timeout_exits_non_zero_and_says_how_many_were_cut() {
    let a = Backend::start("a");
    // Beside "web", a tcp listener relaying to the same server: its pairs end at the drain
    // timeout by design (docs/gateway.md, "Shutdown") and are not counted as cut.
    let config = format!(
        "{}
[[listeners]]
name = \"raw\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         backend = \"pairs\"\n\n[backends.pairs]\n{}\n",
        drain_config("1s", &a),
        server_list(&[a.addr])
    );
    let mut gw = Gateway::start(&config);
    let _pair = open_tcp_pair(gw.listeners["raw"]).await;
    let _idle = idle_keepalive_clients(&gw, 3).await;
    let tasks = slow_requests_in_flight(&gw, &a, 5, 20_000).await;
    let signalled = Instant::now();
    gw.signal("TERM");
    let code = gw.wait_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    let stderr = gw.stderr();
    let code = code.unwrap_or_else(|| panic!("no exit 15 s after SIGTERM; stderr:\n{stderr}"));
    assert_ne!(
        code, 0,
        "cut requests must not look like a clean stop\n{stderr}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the 1 s drain timeout"
    );
    let line =
        "herd: drain timeout (1s) cut 5 HTTP client connection(s) with 5 request(s) in flight";
    assert_eq!(
        stderr.matches(line).count(),
        1,
        "one line naming what was cut, want {line:?} in:\n{stderr}"
    );
    assert!(
        stderr.contains("tcp_pairs=1"),
        "the TCP pair's close is logged:\n{stderr}"
    );
    for t in tasks {
        let r = t.await.expect("client task");
        assert!(
            r.is_err(),
            "a cut request must not look answered: {:?}",
            r.map(|r| r.status)
        );
    }
}

/// A WebSocket session open at SIGTERM is in flight like a TCP pair: it should keep
/// relaying through the drain and end when the client closes it (or at the drain timeout).
/// Today the tunnel is reset within milliseconds of the signal and the gateway exits 0: the
/// spliced tunnel (http/upgrade.rs) holds no connection slot, so its worker stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_a_websocket_tunnel_relaying_through_the_drain() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let echo = herd_testkit::chaos::WsEcho::start();
    let mut gw = Gateway::start(&format!(
        "[gateway]\ndrain_timeout = \"30s\"\n\n{}",
        simple_config(&server_list(&[echo.addr]))
    ));
    let web = gw.listeners["web"];
    let tcp = tokio::net::TcpStream::connect(web).await.expect("connect");
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{web}/chat"), tcp)
        .await
        .expect("WebSocket handshake through the gateway");
    assert_eq!(resp.status(), 101);
    gw.signal("TERM");
    // Give the signal time to land before the next message, so it crosses a draining
    // gateway; the drain itself is what is under test, not this pause.
    eventually("the listener closes", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(web).await.err().map(|_| ())
    })
    .await;
    ws.send(Message::text("during drain"))
        .await
        .expect("send during drain");
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an answer within 5 s");
    assert_eq!(
        back.map(|r| r.map_err(|e| e.to_string())),
        Some(Ok(Message::text("during drain"))),
        "the tunnel relays while the gateway drains"
    );
    ws.close(None).await.expect("close the session");
    drop(ws);
    // Well inside the 30 s drain timeout: the session's end, not the deadline, ends the
    // drain.
    let code = gw.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "stderr:\n{}", gw.stderr());
}
