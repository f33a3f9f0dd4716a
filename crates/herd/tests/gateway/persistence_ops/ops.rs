//! Operating a running gateway: reload under load, a bad reload refused, graceful
//! shutdown, streaming without buffering, the access log, the runtime API.

use super::*;

// ---------------------------------------------------------------- 4

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_continuous_load_loses_no_request() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let gw = Gateway::start(&simple_config(&servers(&[(&a, 1)])));
    let c = client();
    assert_eq!(revision(&gw, &c).await, 1);

    const MAX_REQUESTS: usize = 2000;
    let started = Instant::now();
    let budget = Duration::from_secs(8);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = gw.url("/");
        let stop = stop.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut bad: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst)
                && started.elapsed() < budget
                && done.fetch_add(1, Ordering::SeqCst) < MAX_REQUESTS
            {
                match get(&c, &url).await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => bad.push(format!("{}: {}", r.status, r.body)),
                    Err(e) => bad.push(e),
                }
            }
            bad
        }));
    }

    // Let some requests through between reloads, so each reload happens under load.
    let wait_for_traffic = |n: usize| {
        let done = done.clone();
        async move {
            let target = done.load(Ordering::SeqCst) + n;
            eventually("traffic between reloads", Duration::from_secs(5), || {
                let done = done.clone();
                async move { (done.load(Ordering::SeqCst) >= target).then_some(()) }
            })
            .await
        }
    };

    let configs = [
        servers(&[(&a, 1), (&b, 1)]),
        servers(&[(&a, 2), (&b, 1)]),
        servers(&[(&a, 1), (&b, 3)]),
        format!("policy = \"least_conn\"\n{}", servers(&[(&a, 1), (&b, 1)])),
        servers(&[(&a, 1), (&b, 2)]),
    ];
    for (i, body) in configs.iter().enumerate() {
        wait_for_traffic(100).await;
        gw.write_config(&simple_config(body));
        let want = i as u64 + 2;
        if i % 2 == 0 {
            let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            let v: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["revision"], want, "{}", r.body);
        } else {
            gw.signal("HUP");
        }
        eventually(
            &format!("config_revision {want}"),
            Duration::from_secs(5),
            || async { (revision(&gw, &c).await == want).then_some(()) },
        )
        .await;
    }
    let b_after_last_reload = b.requests();
    wait_for_traffic(100).await;
    stop.store(true, Ordering::SeqCst);

    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    let total = done.load(Ordering::SeqCst).min(MAX_REQUESTS);
    eprintln!(
        "{total} requests by 4 clients across 5 reloads in {:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of ~{total} requests failed during reloads: {:?}\nstderr:\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        gw.stderr()
    );
    assert_eq!(revision(&gw, &c).await, 6);
    assert!(
        b.requests() > b_after_last_reload,
        "the added server takes requests after the last reload ({} before, {} now)",
        b_after_last_reload,
        b.requests()
    );
    let st = gw.server_status(&c, "app", b.addr).await;
    assert_eq!(st["weight"], 2);
    let m = get(&c, &gw.admin_url("/metrics")).await.unwrap();
    assert!(
        m.body
            .contains("herd_gateway_reloads_total{result=\"ok\"} 5"),
        "{}",
        m.body
    );
}

// ---------------------------------------------------------------- 5

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_on_reload_is_refused_and_the_old_one_keeps_serving() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let gw = Gateway::start(&simple_config(&servers(&[(&a, 1), (&b, 1)])));
    let c = client();
    let bad = Backend::start("bad");

    // Out-of-range weight, via the admin API.
    gw.write_config(&simple_config(&servers(&[(&bad, 0)])));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("error is JSON");
    let err = v["error"].as_str().expect("error field");
    assert!(err.contains("backends.app.servers[0].weight"), "{err}");
    assert!(err.contains("1-100"), "{err}");
    assert_eq!(revision(&gw, &c).await, 1);
    let counts = tally(&c, &gw.url("/"), 10).await;
    assert_eq!(counts.get("a"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");

    // A misspelt key: refused, naming the key.
    gw.write_config(&simple_config(&format!(
        "{}\nretrys = 3",
        servers(&[(&bad, 1)])
    )));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("error is JSON");
    let err = v["error"].as_str().expect("error field");
    assert!(err.contains("retrys"), "{err}");
    assert_eq!(revision(&gw, &c).await, 1);

    // The same bad file by SIGHUP: refused, process alive, still serving the old config.
    gw.signal("HUP");
    eventually(
        "the SIGHUP reload to be refused",
        Duration::from_secs(5),
        || async {
            let m = get(&c, &gw.admin_url("/metrics")).await.ok()?;
            m.body
                .contains("herd_gateway_reloads_total{result=\"error\"} 3")
                .then_some(())
        },
    )
    .await;
    let mut gw = gw;
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "gateway exited on a bad SIGHUP reload:\n{}",
        gw.stderr()
    );
    assert_eq!(revision(&gw, &c).await, 1);
    let counts = tally(&c, &gw.url("/"), 10).await;
    assert_eq!(counts.get("a"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");
    assert_eq!(bad.requests(), 0);
    assert!(gw.stderr().contains("reload refused"), "{}", gw.stderr());

    // A good file afterwards is the next revision.
    gw.write_config(&simple_config(&servers(&[(&bad, 1)])));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(revision(&gw, &c).await, 2);
    assert_eq!(get(&c, &gw.url("/")).await.unwrap().body, "bad");
}

/// A file that validates but cannot be built (its access log cannot be opened) is refused
/// like any other, and does not use up a revision number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refused_while_building_keeps_revision_numbers_contiguous() {
    let a = Backend::start("a");
    let gw = Gateway::start(&simple_config(&servers(&[(&a, 1)])));
    let c = client();
    let missing_dir = gw.dir.join("no-such-dir").join("access.log");
    gw.write_config(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\naccess_log = \"{}\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n[backends.app]\n{}\n",
        missing_dir.display(),
        servers(&[(&a, 1)])
    ));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("access_log"), "{}", r.body);
    assert_eq!(revision(&gw, &c).await, 1);
    assert_eq!(get(&c, &gw.url("/")).await.unwrap().status, 200);

    gw.write_config(&simple_config(&servers(&[(&a, 2)])));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v["revision"],
        2,
        "the first successful reload after a refused one should be revision 2; stderr:\n{}",
        gw.stderr()
    );
    assert_eq!(revision(&gw, &c).await, 2);
}

// ---------------------------------------------------------------- 6

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_slow_request_then_exits_zero() {
    let a = Backend::start("a");
    let mut gw = Gateway::start(&simple_config(&servers(&[(&a, 1)])));
    let addr = gw.listeners["web"];
    let url = gw.url("/slow?ms=2000");
    let slow = tokio::spawn(async move {
        let c = client();
        get(&c, &url).await
    });
    eventually(
        "the slow request in flight",
        Duration::from_secs(5),
        || async { (a.state.active.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;

    gw.signal("TERM");
    // New connections are refused while the slow request is still being served.
    eventually(
        "new connections to be refused",
        Duration::from_secs(5),
        || async {
            match tokio::net::TcpStream::connect(addr).await {
                Err(_) => Some(()),
                Ok(_) => None,
            }
        },
    )
    .await;
    assert!(
        !slow.is_finished(),
        "the listener should close before the in-flight request ends"
    );
    let r = slow.await.unwrap().expect("in-flight request completes");
    assert_eq!((r.status, r.body.as_str()), (200, "a"));

    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "stderr:\n{}", gw.stderr());
    assert!(gw.stderr().contains("draining"), "{}", gw.stderr());
}

// ---------------------------------------------------------------- 7

fn peak_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_100_mib_stream_both_ways_without_being_buffered() {
    const N: u64 = 100 * 1024 * 1024;
    let a = Backend::start("a");
    let gw = Gateway::start(&simple_config(&servers(&[(&a, 1)])));
    let addr = gw.listeners["web"];
    let pid = gw.child.id();
    let before = peak_rss_kib(pid);

    let t = Instant::now();
    let (status, echoed) = stream_request(addr, "POST", "/echo", N).await.unwrap();
    let upload = t.elapsed();
    assert_eq!((status, echoed), (200, N), "stderr:\n{}", gw.stderr());

    let t = Instant::now();
    let (status, got) = stream_request(addr, "GET", &format!("/bytes?n={N}"), 0)
        .await
        .unwrap();
    let download = t.elapsed();
    assert_eq!((status, got), (200, N), "stderr:\n{}", gw.stderr());

    assert_eq!(a.requests(), 2, "both bodies went through the gateway");
    let peak = peak_rss_kib(pid);
    eprintln!(
        "100 MiB echo took {upload:?}, 100 MiB download took {download:?}; \
         gateway peak RSS {before} KiB before, {peak} KiB after"
    );
    assert!(
        peak < 60 * 1024,
        "gateway peak RSS {peak} KiB: a 100 MiB body was buffered"
    );
}

// ---------------------------------------------------------------- 8

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_json_line_per_request_only_where_configured() {
    let a = Backend::start("a");
    let log_dir = temp_dir();
    let log = log_dir.join("access.log");
    let gw = Gateway::start(&format!(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
access_log = "{}"

[[listeners]]
name = "quiet"
bind = "127.0.0.1:0"

[[routes]]
backend = "app"

[backends.app]
{}
"#,
        log.display(),
        servers(&[(&a, 1)])
    ));
    let c = client();
    let read_lines = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };

    assert_eq!(get(&c, &gw.url("/")).await.unwrap().status, 200);
    assert_eq!(get(&c, &gw.url("/headers?x=1")).await.unwrap().status, 200);
    let r = post(&c, &gw.url("/echo"), "hello").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));

    let lines = eventually("3 access log lines", Duration::from_secs(5), || async {
        let l = read_lines();
        (l.len() >= 3).then_some(l)
    })
    .await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let want = [
        ("GET", "/", 1u64),
        ("GET", "/headers?x=1", 0),
        ("POST", "/echo", 5),
    ];
    for (line, (method, target, bytes)) in lines.iter().zip(want) {
        for field in [
            "listener",
            "client",
            "method",
            "target",
            "status",
            "bytes",
            "duration_ms",
            "server",
            "route",
        ] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
        assert_eq!(line["listener"], "web", "{line}");
        assert!(
            line["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{line}"
        );
        assert_eq!(line["method"], method, "{line}");
        assert_eq!(line["target"], target, "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["server"], a.addr.to_string(), "{line}");
        assert_eq!(line["route"], "0:app", "{line}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        if bytes > 0 {
            assert_eq!(line["bytes"], bytes, "{line}");
        } else {
            assert!(line["bytes"].as_u64().unwrap() > 0, "{line}");
        }
    }

    // The quiet listener serves but logs nowhere; a later request on "web" is the marker
    // that everything before it has been written.
    for _ in 0..3 {
        let r = get(&c, &gw.listener_url("quiet", "/")).await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(get(&c, &gw.url("/marker")).await.unwrap().status, 200);
    let lines = eventually("the marker line", Duration::from_secs(5), || async {
        let l = read_lines();
        (l.len() >= 4).then_some(l)
    })
    .await;
    assert_eq!(lines.len(), 4, "quiet listener was logged: {lines:?}");
    assert_eq!(lines[3]["target"], "/marker");
    assert!(lines.iter().all(|l| l["listener"] == "web"), "{lines:?}");
    let files: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("access.log")]);
    drop(gw);
    let _ = std::fs::remove_dir_all(log_dir);
}

// ---------------------------------------------------------------- 9

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_api_drains_enables_and_reweights_a_server() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let gw = Gateway::start(&simple_config(&format!(
        "policy = \"round_robin\"\n{}",
        servers(&[(&a, 1), (&b, 1)])
    )));
    let c = client();
    let server_url = |addr: std::net::SocketAddr, action: &str| {
        gw.admin_url(&format!("/backends/app/servers/{addr}/{action}"))
    };

    let r = post(&c, &server_url(a.addr, "drain"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["admin"], "drain", "{v}");
    assert_eq!(v["usable"], false, "{v}");
    let counts = tally(&c, &gw.url("/"), 20).await;
    assert_eq!(counts, HashMap::from([("b".to_string(), 20)]));

    let r = post(&c, &server_url(a.addr, "enable"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let counts = tally(&c, &gw.url("/"), 20).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");

    let r = put(&c, &server_url(a.addr, "weight"), r#"{"weight": 3}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["weight"], 3, "{v}");
    let counts = tally(&c, &gw.url("/"), 400).await;
    let share_a = counts.get("a").copied().unwrap_or(0) as f64 / 400.0;
    assert!(
        (share_a - 0.75).abs() <= 0.05,
        "a got {share_a:.3}, want 0.75 ± 0.05 ({counts:?})"
    );

    let r = put(&c, &server_url(a.addr, "weight"), r#"{"weight": 101}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("0-100"), "{v}");
    assert_eq!(gw.server_status(&c, "app", a.addr).await["weight"], 3);

    let unknown: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let r = post(&c, &server_url(unknown, "drain"), "").await.unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("127.0.0.1:1"), "{v}");
    let r = post(
        &c,
        &gw.admin_url(&format!("/backends/nope/servers/{}/drain", a.addr)),
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
}

// ---------------------------------------------------------------- 9b

/// HAProxy semantics: a drained server keeps its pinned clients but takes no new ones;
/// maint sends even pinned clients elsewhere. A reload keeps the admin state and restores
/// the file's weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_pinned_clients_maint_moves_them_and_reload_keeps_admin_state() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let body = format!(
        "{}\n\n[backends.app.persistence]\nmode = \"insert_cookie\"\n",
        servers(&[(&a, 1), (&b, 1)])
    );
    let gw = Gateway::start(&simple_config(&body));
    let c = client();
    let a_id = gw.server_status(&c, "app", a.addr).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pinned = format!("HERDSRV={a_id}");
    let action = |act: &str| gw.admin_url(&format!("/backends/app/servers/{}/{act}", a.addr));

    let r = post(&c, &action("drain"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for i in 0..10 {
        let r = get_with(&c, &gw.url("/"), &[("cookie", &pinned)])
            .await
            .unwrap();
        assert_eq!(r.body, "a", "pinned request {i} left a drained server");
        let r = get(&c, &gw.url("/")).await.unwrap();
        assert_eq!(r.body, "b", "new client {i} sent to a drained server");
    }

    // A reload (weights changed) keeps the drain, and resets a runtime weight.
    let r = put(&c, &action("weight"), r#"{"weight": 7}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    gw.write_config(&simple_config(
        &body.replace("weight = 1 }", "weight = 2 }"),
    ));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let st = gw.server_status(&c, "app", a.addr).await;
    assert_eq!(st["admin"], "drain", "{st}");
    assert_eq!(st["weight"], 2, "{st}");
    let counts = tally(&c, &gw.url("/"), 10).await;
    assert_eq!(counts, HashMap::from([("b".to_string(), 10)]));

    let r = post(&c, &action("maint"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get_with(&c, &gw.url("/"), &[("cookie", &pinned)])
        .await
        .unwrap();
    assert_eq!(r.body, "b", "maint must move pinned clients");
    let set = r.header("set-cookie").expect("re-pinned");
    assert!(set.starts_with("HERDSRV="), "{set}");
    assert_ne!(set_cookie_value(set, "HERDSRV"), a_id);
}
