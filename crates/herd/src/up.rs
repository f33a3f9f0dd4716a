//! `herd up`: everything on one machine with embedded defaults — a single-node registry
//! with its controller, an agent (node `local`, data in `<data-dir>/agent`) and a gateway
//! whose backend follows a service in the catalog and whose spans go to the registry (so
//! the page at `/ui/` shows the traffic). `herd apply` a manifest and its
//! instances take traffic; register instances by hand and they do too.

use std::io::Write;
use std::path::PathBuf;

pub struct UpOptions {
    pub data_dir: PathBuf,
    pub server_listen: String,
    pub listen: String,
    pub admin: String,
    pub service: String,
}

pub fn gateway_toml(registry: &str, listen: &str, admin: &str, service: &str) -> String {
    format!(
        "[admin]\nlisten = \"{admin}\"\n\n[registry]\nservers = [\"{registry}\"]\n\n\
         [tracing]\notlp_endpoint = \"http://{registry}/v1/traces\"\n\n\
         [[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"{listen}\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"{service}\"\n\n\
         [backends.{service}]\npolicy = \"round_robin\"\nservice = \"{service}\"\n\
         passive = {{ consecutive_failures = 3, cooldown = \"5s\" }}\n"
    )
}

pub fn run(opts: UpOptions) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let server_opts = herd_registry::ServerOptions {
        data_dir: opts.data_dir.clone(),
        listen: opts.server_listen.clone(),
        join: None,
        token: None,
        read_token: None,
        insecure: false,
        trace_spans: herd_registry::DEFAULT_MAX_SPANS,
        dns: None,
        tls: None,
    };
    let server = std::thread::Builder::new()
        .name("herd-server".into())
        .spawn(move || {
            let ready_tx = tx.clone();
            let result = herd_registry::run(server_opts, move |ready| {
                let _ = ready_tx.send(Ok(ready.clone()));
            });
            if let Err(e) = result {
                let _ = tx.send(Err(e.to_string()));
            }
        })?;
    let ready = match rx.recv() {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => anyhow::bail!("registry did not start: {e}"),
        Err(_) => anyhow::bail!("registry did not start"),
    };
    // The registry's ready line waits for the gateway's: "up" means both serve, and a busy
    // gateway port must not follow a line that told a supervisor we were ready.
    let registry_ready = ready.to_json();
    let registry = ready.addr.to_string();
    crate::agent::start_controller(registry.clone(), None, None);
    let agent = start_agent(&registry, &opts.data_dir)?;
    let text = gateway_toml(&registry, &opts.listen, &opts.admin, &opts.service);
    let source = herd_gateway::ConfigSource::Text {
        name: "<herd up>".into(),
        text: text.clone(),
    };
    let service = opts.service.clone();
    herd_gateway::run(source, |gw| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{registry_ready}");
        drop(out);
        crate::print_ready(gw);
        let web = gw
            .listeners
            .first()
            .map_or(opts.listen.clone(), |(_, a)| a.to_string());
        let admin = gw.admin.map_or(opts.admin.clone(), |a| a.to_string());
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "\nherd is up: registry at {registry} (data in {}), gateway at {web}.\n\n  \
             herd apply -f examples/web.toml --server {registry}   # deploy 3 instances of web\n  \
             herd status --server {registry}                       # every instance\n  \
             herd svc register {service} {service}-1 127.0.0.1:9000 --server {registry}   # or add one by hand\n  \
             curl http://{web}/                                  # routed to service \"{service}\"\n  \
             herd svc ls {service} --server {registry}\n  \
             curl http://{admin}/status                          # gateway state\n  \
             curl http://{registry}/status                       # registry node state\n  \
             open http://{registry}/ui/                          # the cluster's page, live\n\n\
             `herd svc register` stays in the foreground keeping its instance alive (on a\n\
             10 s lease); Ctrl-C there deregisters it.\n\nCtrl-C here stops both.\n",
            opts.data_dir.display()
        );
    })?;
    // The agent and the registry threads saw the same signal: the agent stops its
    // instances (out of the catalog first), then the registry shuts down.
    let _ = agent.join();
    let _ = server.join();
    Ok(())
}

/// The machine's agent, on its own thread and runtime, until SIGINT/SIGTERM.
fn start_agent(
    registry: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let opts = herd_agent::AgentOptions {
        servers: vec![registry.to_string()],
        token: None,
        tls: None,
        admin: "127.0.0.1:0".into(),
        data_dir: data_dir.join("agent"),
        name: "local".into(),
        labels: Default::default(),
        address: "127.0.0.1".into(),
        ports: (21000, 21999),
        lease_ttl: std::time::Duration::from_secs(5),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    Ok(std::thread::Builder::new()
        .name("herd-agent".into())
        .spawn(move || {
            let result = rt.block_on(herd_agent::run(opts, |_| {}, crate::agent::interrupted()));
            if let Err(e) = result {
                tracing::error!(error = %e, "agent stopped");
            }
        })?)
}
