//! One instance's life on this node, from the assignment to its end: Provision (files,
//! ports) → Ready (started; health not proven) → Run (health passed: in the catalog, takes
//! traffic) → Destroy (out of the catalog, drained, stop signal, SIGKILL after
//! `stop_timeout`). A process that exits on its own is started again after the restart
//! policy's backoff, or is Failed past `restart.attempts` crashes within `restart.interval`
//! — visible in its report, not retried until the operator acts.

pub mod download;
pub mod prepare;

use crate::health;
use crate::logs;
use crate::ports::Ports;
use crate::process::{self, Ledger, Recorded};
use crate::report;
use herd_agent_core::manifest::Manifest;
use herd_agent_core::restart::{Crashes, Decision};
use herd_agent_core::{parse_manifest, State};
use herd_api::wire::{Assignment, InstanceReport};
use herd_api::RegistryClient;
use prepare::Launch;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Between leaving the catalog and the stop signal: the gateways learn of the
/// deregistration through their watch within milliseconds; this covers a lagging one and
/// lets requests already sent finish.
pub const DRAIN: Duration = Duration::from_secs(1);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What every instance of this agent shares.
pub struct Ctx {
    pub client: RegistryClient,
    pub node: String,
    /// Where instances are reached from other machines (their catalog address).
    pub address: String,
    pub dir: PathBuf,
    pub ports: Ports,
    pub ledger: Arc<Ledger>,
    /// The node's lease: reports and catalog entries live on it.
    pub lease: watch::Receiver<u64>,
}

/// The instance's report and whether it is in the catalog, written on every change.
struct Life {
    ctx: Arc<Ctx>,
    report: InstanceReport,
    in_catalog: bool,
    /// Why the controller started it (the assignment's purpose), shown as the state until
    /// it first runs: Update, Scale or Rollback rather than Provision/Ready.
    purpose: Option<State>,
    has_run: bool,
}

impl Life {
    async fn set(&mut self, state: State, message: impl Into<String>) {
        let message = message.into();
        self.has_run |= state == State::Run;
        let state = match (state, self.purpose) {
            (State::Provision | State::Ready, Some(p)) if !self.has_run => p,
            (s, _) => s,
        };
        if self.report.state != state.as_str() || self.report.message != message {
            tracing::info!(instance = %self.report.id, state = %state, %message, "agent: instance");
            self.report.state = state.as_str().to_string();
            self.report.since_ms = now_ms();
            self.report.message = message;
        }
        self.publish().await;
    }

    async fn publish(&self) {
        let lease = *self.ctx.lease.borrow();
        if let Err(e) = report::put(&self.ctx.client, lease, &self.report).await {
            tracing::warn!(instance = %self.report.id, error = %e, "agent: cannot write the instance's report");
        }
    }

    async fn enter_catalog(&mut self) {
        let Some(port) = self.report.port else {
            return; // no port: nothing to send traffic to
        };
        let lease = *self.ctx.lease.borrow();
        match report::register(
            &self.ctx.client,
            lease,
            &self.report,
            &self.ctx.address,
            port,
        )
        .await
        {
            Ok(()) => self.in_catalog = true,
            Err(e) => {
                tracing::warn!(instance = %self.report.id, error = %e, "agent: cannot register in the catalog")
            }
        }
    }

    async fn leave_catalog(&mut self) {
        if self.in_catalog {
            report::deregister(&self.ctx.client, &self.report.service, &self.report.id).await;
            self.in_catalog = false;
        }
    }
}

enum Ended {
    Exited(String),
    Stop,
}

/// Run the assigned instance until `stop` turns true. With `adopt`, its process is
/// already running, left by a previous run of this agent (which checked it runs this very
/// assignment): it is watched, not started.
pub async fn run(
    ctx: Arc<Ctx>,
    a: Assignment,
    mut stop: watch::Receiver<bool>,
    adopt: Option<Recorded>,
) {
    let mut life = Life {
        ctx: ctx.clone(),
        report: InstanceReport {
            id: a.instance.clone(),
            service: a.service.clone(),
            node: ctx.node.clone(),
            version: a.version.clone(),
            state: String::new(),
            since_ms: now_ms(),
            pid: None,
            ports: Default::default(),
            port: None,
            restarts: 0,
            health: "unknown".into(),
            message: String::new(),
            cpu_percent: None,
        },
        in_catalog: false,
        purpose: match a.purpose.as_str() {
            "update" => Some(State::Update),
            "scale" => Some(State::Scale),
            "rollback" => Some(State::Rollback),
            _ => None,
        },
        has_run: false,
    };
    let mut held = Vec::new();
    match parse_manifest(&a.manifest, &a.service) {
        Err(e) => life.set(State::Failed, format!("manifest: {e}")).await,
        Ok(m) => {
            life.set(State::Provision, "").await;
            let given = adopt.as_ref().map(|r| &r.ports);
            match provision(&ctx, &m, &a, &mut held, given).await {
                Err(e) => life.set(State::Failed, e).await,
                Ok((launch, ports)) => {
                    life.report.ports = ports.iter().cloned().collect();
                    life.report.port = ports.first().map(|(_, p)| *p);
                    supervise(&mut life, &m, &launch, &a.manifest, &mut stop, adopt).await;
                }
            }
        }
    }
    // Failed (or finished): stay visible until the assignment goes.
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    life.leave_catalog().await;
    ctx.ports.release(held);
    report::delete(&ctx.client, &a.service, &a.instance).await;
}

async fn provision(
    ctx: &Ctx,
    m: &Manifest,
    a: &Assignment,
    held: &mut Vec<u16>,
    given: Option<&std::collections::BTreeMap<String, u16>>,
) -> Result<(Launch, Vec<(String, u16)>), String> {
    let workdir = prepare::files(&ctx.dir, m).await?;
    let mut ports = Vec::new();
    for name in &m.run.ports {
        // An adopted process listens where it was told to: keep its ports.
        let p = match given.and_then(|g| g.get(name)) {
            Some(&p) => {
                ctx.ports.claim(p);
                p
            }
            None => ctx.ports.take().ok_or_else(|| {
                let [lo, hi] = ctx.ports.range();
                format!("no free port left in the agent's range {lo}-{hi}")
            })?,
        };
        held.push(p);
        ports.push((name.clone(), p));
    }
    let ids = [
        ("HERD_SERVICE", a.service.as_str()),
        ("HERD_INSTANCE", a.instance.as_str()),
        ("HERD_VERSION", a.version.as_str()),
    ];
    Ok((prepare::launch(m, workdir, &ports, ids), ports))
}

fn spawn(ctx: &Ctx, service: &str, instance: &str, l: &Launch) -> std::io::Result<Child> {
    let (out, err) = logs::paths(&ctx.dir, service, instance);
    Command::new(&l.program)
        .args(&l.args)
        .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&l.workdir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(logs::open_for_child(&out)?)
        .stderr(logs::open_for_child(&err)?)
        .spawn()
}

/// An instance's process: one this agent started (its child), or one a previous run of
/// the agent started and this one adopted — not its child, so watched through /proc and
/// its exit status unknown.
enum Proc {
    Child(Child),
    Adopted { pid: u32, start_time: u64 },
}

impl Proc {
    fn pid(&self) -> Option<u32> {
        match self {
            Proc::Child(c) => c.id(),
            Proc::Adopted { pid, start_time } => {
                process::running(*pid, *start_time).then_some(*pid)
            }
        }
    }

    /// Until the process ends; how it ended.
    async fn wait(&mut self) -> String {
        match self {
            Proc::Child(c) => describe(c.wait().await),
            Proc::Adopted { pid, start_time } => {
                while process::running(*pid, *start_time) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                "exited (adopted from a previous run of the agent: its status is unknown)".into()
            }
        }
    }
}

/// Aborts a task when dropped: the log keeper lives as long as its instance's supervision.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "exited".into(),
        },
        Err(e) => format!("lost: {e}"),
    }
}

async fn supervise(
    life: &mut Life,
    m: &Manifest,
    l: &Launch,
    manifest_text: &str,
    stop: &mut watch::Receiver<bool>,
    mut adopt: Option<Recorded>,
) {
    let ctx = life.ctx.clone();
    let a_service = life.report.service.clone();
    let a_id = life.report.id.clone();
    let (out, err) = logs::paths(&ctx.dir, &a_service, &a_id);
    let _logs = AbortOnDrop(tokio::spawn(logs::keep_bounded([out, err])));
    let mut crashes = Crashes::default();
    if let Some(r) = &adopt {
        crashes.restarts = r.restarts;
        life.report.restarts = r.restarts;
    }
    loop {
        let adopted = adopt.take().map(|r| Proc::Adopted {
            pid: r.pid,
            start_time: r.start_time,
        });
        let was_adopted = adopted.is_some();
        let started = match adopted {
            Some(p) => Ok(p),
            None => spawn(&ctx, &a_service, &a_id, l).map(Proc::Child),
        };
        let ended = match started {
            Err(e) => Ended::Exited(format!("could not start {}: {e}", l.program.display())),
            Ok(mut proc) => {
                let pid = proc.pid();
                life.report.pid = pid;
                if let Some(pid) = pid {
                    if let Some(start_time) = process::start_time(pid) {
                        ctx.ledger.add(Recorded {
                            instance: a_id.clone(),
                            pid,
                            start_time,
                            version: life.report.version.clone(),
                            manifest: manifest_text.to_string(),
                            ports: life.report.ports.clone(),
                            restarts: crashes.restarts,
                        });
                    }
                }
                if was_adopted {
                    tracing::info!(instance = %a_id, ?pid, "agent: adopted the instance's running process");
                }
                let ended = watch_process(life, m, &mut proc, stop, was_adopted).await;
                if let Ended::Stop = ended {
                    stop_process(life, m, &mut proc).await;
                    ctx.ledger.remove(&a_id);
                    return;
                }
                ctx.ledger.remove(&a_id);
                ended
            }
        };
        let Ended::Exited(why) = ended else {
            return;
        };
        life.leave_catalog().await;
        life.report.pid = None;
        life.report.health = "unknown".into();
        match crashes.on_exit(&m.restart, now_ms()) {
            Decision::RestartAfter(delay) => {
                life.report.restarts = crashes.restarts;
                life.set(
                    State::Provision,
                    format!("{why}; starting again in {:.1}s", delay.as_secs_f64()),
                )
                .await;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = wait_true(stop) => return,
                }
            }
            Decision::Failed { crashes: n } => {
                life.set(
                    State::Failed,
                    format!(
                        "{why}; crashed {n} times within {}s (restart.attempts = {}): not restarted until the service is applied, restarted or scaled again",
                        m.restart.interval.as_secs(),
                        m.restart.attempts
                    ),
                )
                .await;
                return;
            }
        }
    }
}

async fn wait_true(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How often the CPU of an instance that autoscales on CPU is sampled and reported.
const CPU_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Ready → Run → (health lost) Ready …, until the process exits or the stop comes.
async fn watch_process(
    life: &mut Life,
    m: &Manifest,
    child: &mut Proc,
    stop: &mut watch::Receiver<bool>,
    adopted: bool,
) -> Ended {
    let mut lease = life.ctx.lease.clone();
    let check = m.health.clone().and_then(|h| {
        let port = life.report.ports.get(&h.port).copied()?;
        Some((h, SocketAddr::from(([127, 0, 0, 1], port))))
    });
    if check.is_none() {
        life.set(State::Run, "").await;
        life.enter_catalog().await;
    } else {
        life.set(State::Ready, "").await;
    }
    let interval = check
        .as_ref()
        .map_or(Duration::from_secs(3600), |(h, _)| h.interval);
    let mut tick = tokio::time::interval(interval);
    // An adopted process was serving a moment ago: one passing probe puts it back.
    let (mut passes, mut fails) = match (&check, adopted) {
        (Some((h, _)), true) => (h.healthy_threshold.saturating_sub(1), 0u32),
        _ => (0u32, 0u32),
    };
    // CPU is sampled (and written) only for a service that autoscales on it.
    let cpu_metric = m
        .autoscale
        .is_some_and(|a| a.metric == herd_agent_core::manifest::ScaleMetric::Cpu);
    let mut cpu_tick = tokio::time::interval(CPU_SAMPLE_EVERY);
    let mut cpu_last: Option<(std::time::Instant, u64)> = None;
    loop {
        tokio::select! {
            _ = cpu_tick.tick(), if cpu_metric => {
                let Some(ticks) = child.pid().and_then(crate::process::cpu_ticks) else { continue };
                let now = std::time::Instant::now();
                if let Some((at, before)) = cpu_last {
                    let secs = now.duration_since(at).as_secs_f64();
                    let used = ticks.saturating_sub(before) as f64 / crate::process::ticks_per_second();
                    let percent = (used / secs.max(1e-3) * 1000.0).round() / 10.0;
                    life.report.cpu_percent = Some(percent);
                    life.publish().await;
                }
                cpu_last = Some((now, ticks));
            }
            why = child.wait() => return Ended::Exited(why),
            _ = wait_true(stop) => return Ended::Stop,
            changed = lease.changed() => {
                if changed.is_ok() {
                    // The node has a new lease: our report and catalog entry lived on the old.
                    life.publish().await;
                    if life.in_catalog {
                        life.enter_catalog().await;
                    }
                }
            }
            _ = tick.tick(), if check.is_some() => {
                let Some((h, addr)) = &check else { continue };
                match health::probe(h, *addr).await {
                    Ok(()) => {
                        passes += 1;
                        fails = 0;
                        if passes >= h.healthy_threshold && life.report.health != "passing" {
                            life.report.health = "passing".into();
                            life.set(State::Run, "").await;
                            life.enter_catalog().await;
                        }
                    }
                    Err(why) => {
                        fails += 1;
                        passes = 0;
                        if fails >= h.unhealthy_threshold && life.report.health != "failing" {
                            life.report.health = "failing".into();
                            life.leave_catalog().await;
                            life.set(State::Ready, format!("health check failing: {why}")).await;
                        }
                    }
                }
            }
        }
    }
}

/// Out of the catalog, drained, the stop signal to the whole group, SIGKILL after
/// `stop_timeout`.
async fn stop_process(life: &mut Life, m: &Manifest, child: &mut Proc) {
    life.set(State::Destroy, "").await;
    let was_serving = life.in_catalog;
    life.leave_catalog().await;
    if was_serving {
        tokio::time::sleep(DRAIN).await;
    }
    let Some(pid) = child.pid() else {
        return; // already gone
    };
    process::signal_group(pid, process::signal_number(m.run.stop_signal));
    if tokio::time::timeout(m.run.stop_timeout, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(instance = %life.report.id, "agent: no exit within stop_timeout; SIGKILL");
        process::signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever else the group started goes with it.
    process::signal_group(pid, libc::SIGKILL);
}
