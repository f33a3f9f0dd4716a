//! `herd top|graph|traces|trace`: the cluster's traced calls as tables, from
//! `/v1/telemetry/` (any server answers for all of them).

use crate::client::Target;
use crate::exit::{out, print_json, Usage};
use clap::Args;
use herd_api::wire::{
    AlertList, Coverage, GraphAnswer, TopAnswer, TopRow, TraceAnswer, TracesAnswer,
};
use http::Method;

#[derive(Args)]
pub struct TopArgs {
    /// Rank by calls, p99 or errors.
    #[arg(long, default_value = "calls")]
    pub by: String,
    /// How far back: 30s, 5m, 1h (aggregates are kept for an hour).
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// Rows of each table.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub n: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GraphArgs {
    #[arg(long, default_value = "5m")]
    pub window: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TracesArgs {
    /// Traces that passed through this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Traces at least this long, e.g. 100ms.
    #[arg(long, value_name = "DURATION")]
    pub min_duration: Option<String>,
    /// Only traces with an error.
    #[arg(long)]
    pub errors: bool,
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum Alerts {
    /// The alerts firing now (the default).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check a rules file and store it for the whole cluster (replaces the rules stored).
    Apply {
        #[arg(short, long, value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Print the rules stored.
    Rules,
}

#[derive(Args)]
pub struct LatencyArgs {
    pub service: String,
    /// One endpoint (span name, e.g. "GET /pay"); the whole service without it.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "5m")]
    pub window: String,
    #[arg(long)]
    pub json: bool,
}

pub enum Call {
    Latency(LatencyArgs),
    Alerts(Alerts),
    Top(TopArgs),
    Graph(GraphArgs),
    Traces(TracesArgs),
    Trace { id: String, json: bool },
}

pub fn run(target: Target, call: Call) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(dispatch(target, call))
}

fn q(v: &str) -> String {
    let mut s = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

async fn dispatch(target: Target, call: Call) -> anyhow::Result<()> {
    let c = target.client();
    match call {
        Call::Alerts(Alerts::Apply { file }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Usage(format!("cannot read {}: {e}", file.display())))?;
            // Refused here with the file's own name before anything is sent.
            let rules = herd_config::parse_alert_rules(&text, &file.display().to_string())
                .map_err(|e| Usage(e.to_string()))?;
            let answer = c
                .call_as(Method::PUT, "/v1/alerts/rules", text, "application/toml")
                .await?;
            eprintln!(
                "herd: {} alert rule(s) stored; the controller evaluates them every 2 s",
                rules.rules.len()
            );
            print_json(&answer.body)?;
        }
        Call::Alerts(Alerts::Rules) => {
            let answer = c.call(Method::GET, "/v1/alerts/rules", Vec::new()).await?;
            out(&String::from_utf8_lossy(&answer.body))?;
        }
        Call::Alerts(Alerts::List { json }) => {
            let answer = c.call(Method::GET, "/v1/alerts", Vec::new()).await?;
            if json {
                return print_json(&answer.body);
            }
            let l: AlertList = answer.json()?;
            let mut s = String::new();
            if l.alerts.is_empty() {
                s.push_str(&format!("no alert firing ({} rule(s) stored)\n", l.rules));
            }
            for a in &l.alerts {
                s.push_str(&format!(
                    "FIRING {:<20} {:<20} since {}  {}\n",
                    a.rule,
                    a.kind,
                    herd_api::wire::AlertRecord::clock(a.since_ms),
                    a.summary
                ));
            }
            out(&s)?;
        }
        Call::Latency(a) => {
            let mut path = format!(
                "/v1/telemetry/latency?service={}&window={}",
                q(&a.service),
                q(&a.window)
            );
            if let Some(n) = &a.name {
                path.push_str(&format!("&name={}", q(n)));
            }
            let answer = c.call(Method::GET, &path, Vec::new()).await?;
            if a.json {
                return print_json(&answer.body);
            }
            let l: herd_api::wire::LatencyAnswer = answer.json()?;
            let mut s = format!(
                "{}{} over the last {}s: {} calls, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
                l.service,
                l.name.as_deref().map(|n| format!(" {n}")).unwrap_or_default(),
                l.window_s,
                l.calls,
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms
            );
            let most = l.buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
            s.push_str(&format!("{:>12} {:>9}\n", "<= MS", "CALLS"));
            for b in &l.buckets {
                let bar = "#".repeat(((b.count * 40).div_ceil(most)) as usize);
                s.push_str(&format!("{:>12.2} {:>9}  {bar}\n", b.le_ms, b.count));
            }
            out(&(s + &footer(&l.coverage)))?;
        }
        Call::Top(a) => {
            let path = format!(
                "/v1/telemetry/top?by={}&window={}&n={}",
                q(&a.by),
                q(&a.window),
                a.n
            );
            let answer = c.call(Method::GET, &path, Vec::new()).await?;
            if a.json {
                return print_json(&answer.body);
            }
            let t: TopAnswer = answer.json()?;
            out(&top_table(&t))?;
        }
        Call::Graph(a) => {
            let path = format!("/v1/telemetry/graph?window={}", q(&a.window));
            let answer = c.call(Method::GET, &path, Vec::new()).await?;
            if a.json {
                return print_json(&answer.body);
            }
            let g: GraphAnswer = answer.json()?;
            out(&graph_table(&g))?;
        }
        Call::Traces(a) => {
            let mut path = format!("/v1/telemetry/traces?limit={}", a.limit);
            if let Some(s) = &a.service {
                path.push_str(&format!("&service={}", q(s)));
            }
            if let Some(d) = &a.min_duration {
                path.push_str(&format!("&min_duration={}", q(d)));
            }
            if a.errors {
                path.push_str("&error=true");
            }
            let answer = c.call(Method::GET, &path, Vec::new()).await?;
            if a.json {
                return print_json(&answer.body);
            }
            let t: TracesAnswer = answer.json()?;
            out(&traces_table(&t))?;
        }
        Call::Trace { id, json } => {
            let path = format!("/v1/telemetry/traces/{}", q(&id));
            let answer = c.call(Method::GET, &path, Vec::new()).await?;
            if json {
                return print_json(&answer.body);
            }
            let t: TraceAnswer = answer.json()?;
            out(&trace_tree(&t))?;
        }
    }
    Ok(())
}

fn footer(c: &Coverage) -> String {
    if c.nodes_missing.is_empty() {
        String::new()
    } else {
        format!(
            "partial answer: servers {:?} did not answer in time (answered: {:?})\n",
            c.nodes_missing, c.nodes_answered
        )
    }
}

fn rows(title: &str, rows: &[TopRow], s: &mut String) {
    s.push_str(&format!(
        "{:<40} {:>8} {:>9} {:>7} {:>7} {:>9} {:>9}\n",
        title, "CALLS", "RATE/S", "ERRORS", "ERR%", "P50 MS", "P99 MS"
    ));
    for r in rows {
        let name = match &r.name {
            Some(n) => format!("{} {}", r.service, n),
            None => r.service.clone(),
        };
        s.push_str(&format!(
            "{:<40} {:>8} {:>9.2} {:>7} {:>6.1}% {:>9.1} {:>9.1}\n",
            name,
            r.calls,
            r.rate_per_s,
            r.errors,
            r.error_ratio * 100.0,
            r.p50_ms,
            r.p99_ms
        ));
    }
}

fn top_table(t: &TopAnswer) -> String {
    let mut s = format!("top by {} over the last {}s\n", t.by, t.window_s);
    if t.services.is_empty() {
        s.push_str(
            "no traced calls in this window; point a gateway's [tracing] otlp_endpoint or an \
             OpenTelemetry SDK at http://<server>/v1/traces\n",
        );
        return s + &footer(&t.coverage);
    }
    rows("SERVICE", &t.services, &mut s);
    s.push('\n');
    rows("ENDPOINT", &t.endpoints, &mut s);
    s + &footer(&t.coverage)
}

fn graph_table(g: &GraphAnswer) -> String {
    let mut s = format!("calls between services over the last {}s\n", g.window_s);
    s.push_str(&format!(
        "{:<20}    {:<20} {:>8} {:>9} {:>7} {:>9}\n",
        "FROM", "TO", "CALLS", "RATE/S", "ERR%", "P99 MS"
    ));
    for e in &g.edges {
        s.push_str(&format!(
            "{:<20} -> {:<20} {:>8} {:>9.2} {:>6.1}% {:>9.1}{}\n",
            e.from,
            e.to,
            e.calls,
            e.rate_per_s,
            e.error_ratio * 100.0,
            e.p99_ms,
            if e.in_cycle { "  CYCLE" } else { "" }
        ));
    }
    if g.edges.is_empty() {
        s.push_str("no calls between services in this window\n");
    }
    for c in &g.cycles {
        let mut ring = c.join(" -> ");
        if let Some(first) = c.first() {
            ring.push_str(&format!(" -> {first}"));
        }
        s.push_str(&format!(
            "dependency cycle: {{{}}} call each other round ({ring}): a service in it cannot \
             start, fail or roll back alone\n",
            c.join(", ")
        ));
    }
    s + &footer(&g.coverage)
}

fn traces_table(t: &TracesAnswer) -> String {
    let mut s = format!(
        "{:<32}  {:>10} {:>6}  {:<5}  {:<30} SERVICES\n",
        "TRACE", "MS", "SPANS", "ERROR", "ROOT"
    );
    for tr in &t.traces {
        s.push_str(&format!(
            "{:<32}  {:>10.1} {:>6}  {:<5}  {:<30} {}\n",
            tr.trace_id,
            tr.duration_ms,
            tr.spans,
            if tr.error { "yes" } else { "" },
            format!("{} {}", tr.root_service, tr.root_name),
            tr.services.join(",")
        ));
    }
    if t.traces.is_empty() {
        s.push_str("no trace matches\n");
    }
    s + &footer(&t.coverage)
}

fn trace_tree(t: &TraceAnswer) -> String {
    let mut s = format!("trace {}  {:.1} ms\n", t.trace_id, t.duration_ms);
    s.push_str(&format!(
        "{:<60} {:>9} {:>9} {:>9}\n",
        "SPAN", "START MS", "MS", "SELF MS"
    ));
    for sp in &t.spans {
        let label = format!(
            "{}{} {}{}",
            "  ".repeat(sp.depth as usize),
            sp.service,
            sp.name,
            if sp.error { " [error]" } else { "" }
        );
        s.push_str(&format!(
            "{:<60} {:>9.1} {:>9.1} {:>9.1}\n",
            label, sp.offset_ms, sp.duration_ms, sp.self_ms
        ));
    }
    s + &footer(&t.coverage)
}
