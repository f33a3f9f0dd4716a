//! `herd demo`: the gateway in front of three tiny local HTTP servers, so that a first run
//! shows balancing, health and metrics with no setup.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;

pub fn run(listen: &str, admin: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut addrs = Vec::new();
    for n in 1..=3 {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        addrs.push(std_listener.local_addr()?);
        let _guard = rt.enter();
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        rt.spawn(serve(n, listener));
    }
    std::thread::Builder::new()
        .name("herd-demo-servers".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;

    let servers: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    let text = herd_config::demo_toml(listen, admin, &servers);
    let source = herd_gateway::ConfigSource::Text {
        name: "<demo>".into(),
        text: text.clone(),
    };
    herd_gateway::run(source, |ready| {
        crate::print_ready(ready);
        let web = ready
            .listeners
            .first()
            .map_or(listen.to_string(), |(_, a)| a.to_string());
        let admin = ready.admin.map_or(admin.to_string(), |a| a.to_string());
        eprintln!(
            "\nherd demo is running: 3 servers ({}) behind one gateway.\n\n  \
             curl http://{web}/            # answered in turn by each server\n  \
             curl http://{admin}/status    # servers, health, counters\n  \
             curl http://{admin}/metrics   # Prometheus metrics\n  \
             curl -X POST http://{admin}/backends/demo/servers/{}/drain   # take one out\n\n\
             The configuration it runs:\n\n{text}\nCtrl-C stops it.\n",
            servers.join(", "),
            servers[0],
        );
    })?;
    Ok(())
}

async fn serve(n: usize, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == "/healthz" {
                        "ok\n".to_string()
                    } else {
                        format!(
                            "hello from demo server {n}: {} {}\n",
                            req.method(),
                            req.uri()
                        )
                    };
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// `herd demo-app`: a tiny HTTP service for the cluster quick start and the tests, so a
/// deployment needs nothing installed. `/` answers `demo-app <version> <instance>`,
/// `/healthz` 200 (or 503 with `--unhealthy`); it listens on `--listen`, else
/// `127.0.0.1:$PORT` as the agent passes it. SIGTERM ends it after in-flight answers.
/// With `--busy P`, a thread spins P ms of every 100.
pub fn app(listen: Option<String>, version: &str, unhealthy: bool, busy: u8) -> anyhow::Result<()> {
    if busy > 0 {
        std::thread::spawn(move || loop {
            let start = std::time::Instant::now();
            let spin = std::time::Duration::from_millis(u64::from(busy));
            while start.elapsed() < spin {
                std::hint::spin_loop();
            }
            std::thread::sleep(std::time::Duration::from_millis(100 - u64::from(busy)));
        });
    }
    let listen = match listen {
        Some(l) => l,
        None => format!(
            "127.0.0.1:{}",
            std::env::var("PORT")
                .map_err(|_| anyhow::anyhow!("no --listen and no PORT in the environment"))?
        ),
    };
    let instance = std::env::var("HERD_INSTANCE").unwrap_or_else(|_| "-".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("demo-app {version} listening on {listen}");
        let answer = format!("demo-app {version} {instance}\n");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let (stream, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = term.recv() => return Ok(()),
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let resp = if req.uri().path() == "/healthz" {
                            let status = if unhealthy { 503 } else { 200 };
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok\n")))
                        } else {
                            // An access line on stdout (what an operator reads with `herd
                            // logs`); a closed stdout is not a reason to stop answering.
                            use std::io::Write;
                            let _ = writeln!(
                                std::io::stdout().lock(),
                                "{} {}",
                                req.method(),
                                req.uri().path()
                            );
                            hyper::Response::builder().body(Full::new(Bytes::from(answer)))
                        };
                        Ok::<_, Infallible>(resp.unwrap_or_default())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
