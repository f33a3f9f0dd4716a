//! From the TOML table to a [`Manifest`], field by field, every problem collected.

use super::model::*;
use super::valid_service_name;
use super::walk::{Problems, Table};
use semver::{Version, VersionReq};
use std::time::Duration;

pub(super) fn manifest(root: &toml::Table, p: &mut Problems) -> Option<Manifest> {
    let mut t = Table::root(root);
    let name = t.required_string("name", p);
    if let Some(n) = &name {
        if !valid_service_name(n) {
            p.add(
                "name",
                format!(
                    "\"{n}\" is not a service name; use 1-63 lower-case letters, digits and dashes"
                ),
            );
        }
    }
    let version = t
        .required_string("version", p)
        .and_then(|v| match Version::parse(&v) {
            Ok(v) => Some(v),
            Err(e) => {
                p.add(
                    "version",
                    format!("\"{v}\" is not a semantic version ({e}); write e.g. \"1.4.2\""),
                );
                None
            }
        });
    let artifact_text = t.string("artifact", p);
    let sha256 = t.string("sha256", p);
    let artifact = artifact(artifact_text, sha256, p);

    let mut run_t = t.table("run", p);
    if !run_t.present() {
        p.add("run", "is required: [run] with at least command = \"...\"");
    }
    let run = read_run(&mut run_t, p);
    run_t.finish(
        &[
            "command",
            "args",
            "env",
            "ports",
            "stop_signal",
            "stop_timeout",
        ],
        p,
    );

    let mut inst_t = t.table("instances", p);
    let instances = read_instances(&mut inst_t, p);
    inst_t.finish(&["count", "min", "max"], p);

    let mut place_t = t.table("placement", p);
    let placement = read_placement(&mut place_t, p);
    place_t.finish(&["labels", "spread"], p);

    let mut health_t = t.table("health", p);
    let health = if health_t.present() {
        read_health(
            &mut health_t,
            run.as_ref().map(|r| &r.ports[..]).unwrap_or(&[]),
            p,
        )
    } else {
        None
    };
    health_t.finish(
        &[
            "kind",
            "path",
            "port",
            "expect_status",
            "interval",
            "timeout",
            "healthy_threshold",
            "unhealthy_threshold",
        ],
        p,
    );

    let mut update_t = t.table("update", p);
    let update = read_update(&mut update_t, p);
    update_t.finish(
        &[
            "max_parallel",
            "min_healthy_time",
            "healthy_deadline",
            "auto_revert",
            "canary",
        ],
        p,
    );

    let mut restart_t = t.table("restart", p);
    let restart = read_restart(&mut restart_t, p);
    restart_t.finish(&["attempts", "interval", "delay", "max_delay"], p);

    let mut deps = Vec::new();
    for (svc, req) in t.string_map("depends_on", p) {
        let field = format!("depends_on.{svc}");
        if !valid_service_name(&svc) {
            p.add(&field, "is not a service name");
            continue;
        }
        if name.as_deref() == Some(svc.as_str()) {
            p.add(&field, "a service cannot depend on itself");
            continue;
        }
        match VersionReq::parse(&req) {
            Ok(r) => deps.push((svc, r)),
            Err(e) => p.add(
                &field,
                format!("\"{req}\" is not a version range ({e}); write e.g. \">=2.1, <3\""),
            ),
        }
    }

    let mut scale_t = t.table("autoscale", p);
    let autoscale = if scale_t.present() {
        read_autoscale(&mut scale_t, p)
    } else {
        None
    };
    scale_t.finish(&["metric", "target", "cooldown"], p);
    if let (Some(_), Some(i)) = (&autoscale, &instances) {
        if i.min == i.max {
            p.add(
                "autoscale",
                format!("instances.min and instances.max are both {}: there is nothing to scale; raise instances.max", i.min),
            );
        }
    }
    if let (Some(i), Some(u)) = (&instances, &update) {
        if u.canary > i.count {
            p.add(
                "update.canary",
                format!(
                    "{} canaries for {} instances; use at most instances.count",
                    u.canary, i.count
                ),
            );
        }
    }

    t.finish(
        &[
            "name",
            "version",
            "artifact",
            "sha256",
            "run",
            "instances",
            "placement",
            "health",
            "update",
            "restart",
            "depends_on",
            "autoscale",
        ],
        p,
    );
    Some(Manifest {
        name: name?,
        version: version?,
        artifact: artifact?,
        run: run?,
        instances: instances?,
        placement: placement?,
        health,
        update: update?,
        restart: restart?,
        depends_on: deps,
        autoscale,
    })
}

/// `None` when refused; `Some(None)` when absent.
fn artifact(
    text: Option<String>,
    sha256: Option<String>,
    p: &mut Problems,
) -> Option<Option<Artifact>> {
    let Some(text) = text else {
        if sha256.is_some() {
            p.add(
                "sha256",
                "belongs to an artifact URL; set artifact = \"https://...\" or remove it",
            );
            return None;
        }
        return Some(None);
    };
    if text.is_empty() {
        p.add(
            "artifact",
            "empty; name a file, a directory or an http(s) URL, or remove the key",
        );
        return None;
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        match sha256 {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(Some(Artifact::Url {
                    url: text,
                    sha256: h.to_ascii_lowercase(),
                }))
            }
            Some(h) => {
                p.add(
                    "sha256",
                    format!("\"{h}\" is not a SHA-256; write its 64 hex digits"),
                );
                None
            }
            None => {
                p.add(
                    "sha256",
                    "is required with an artifact URL: a download is used only when its SHA-256 matches",
                );
                None
            }
        }
    } else if text.contains("://") {
        p.add(
            "artifact",
            format!("\"{text}\": only http:// and https:// URLs, or a local path"),
        );
        None
    } else {
        if sha256.is_some() {
            p.add(
                "sha256",
                "is checked only for artifact URLs; remove it for a local path",
            );
        }
        Some(Some(Artifact::Path(text)))
    }
}

fn read_run(t: &mut Table<'_>, p: &mut Problems) -> Option<Run> {
    let present = t.present();
    let command = if present {
        t.required_string("command", p)
    } else {
        None
    };
    if command.as_deref() == Some("") {
        p.add(&t.field("command"), "empty; name the program to run");
    }
    let args = t.strings("args", p).unwrap_or_default();
    let env = t.string_map("env", p);
    for (k, _) in &env {
        if k.is_empty()
            || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || k.as_bytes()[0].is_ascii_digit()
        {
            p.add(
                &format!("{}.{k}", t.field("env")),
                "is not an environment variable name",
            );
        } else if k == "PORT" || k.starts_with("PORT_") {
            p.add(
                &format!("{}.{k}", t.field("env")),
                "PORT and PORT_<NAME> are set by the agent from run.ports",
            );
        }
    }
    let ports = t.strings("ports", p).unwrap_or_default();
    for (i, name) in ports.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            p.add(
                &format!("{}[{i}]", t.field("ports")),
                format!("\"{name}\" is not a port name; use letters, digits and _"),
            );
        } else if ports[..i].iter().any(|o| o.eq_ignore_ascii_case(name)) {
            p.add(
                &format!("{}[{i}]", t.field("ports")),
                format!("\"{name}\" is listed twice"),
            );
        }
    }
    // Every ${...} in args must be a port the agent will fill in.
    for (i, a) in args.iter().enumerate() {
        for var in substitutions(a) {
            let known = var == "PORT"
                || var
                    .strip_prefix("PORT_")
                    .is_some_and(|n| ports.iter().any(|p| p.eq_ignore_ascii_case(n)));
            if !known {
                p.add(
                    &format!("{}[{i}]", t.field("args")),
                    format!("${{{var}}} is not set by the agent; use ${{PORT}} or ${{PORT_<NAME>}} of a name in run.ports"),
                );
            } else if ports.is_empty() {
                p.add(
                    &format!("{}[{i}]", t.field("args")),
                    "uses ${PORT} but run.ports is empty; add e.g. ports = [\"http\"]",
                );
            }
        }
    }
    let stop_signal = match t.string("stop_signal", p) {
        None => StopSignal::Term,
        Some(s) => match StopSignal::parse(&s) {
            Some(sig) => sig,
            None => {
                p.add(
                    &t.field("stop_signal"),
                    format!("\"{s}\" is not a stop signal; use SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 or SIGUSR2"),
                );
                StopSignal::Term
            }
        },
    };
    let stop_timeout = t
        .duration("stop_timeout", p)
        .unwrap_or(Duration::from_secs(10));
    Some(Run {
        command: command?,
        args,
        env,
        ports,
        stop_signal,
        stop_timeout,
    })
}

/// The names inside `${...}` in `s`.
pub fn substitutions(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

fn read_instances(t: &mut Table<'_>, p: &mut Problems) -> Option<Instances> {
    const MAX: i64 = 10_000;
    let count = t.int("count", 0, MAX, p).unwrap_or(1) as u32;
    let min = t.int("min", 0, MAX, p).map(|n| n as u32);
    let max = t.int("max", 0, MAX, p).map(|n| n as u32);
    let min = min.unwrap_or(count.min(max.unwrap_or(count)));
    let max = max.unwrap_or(count.max(min));
    if min > max {
        p.add(&t.field("min"), format!("min ({min}) is above max ({max})"));
        return None;
    }
    if !(min..=max).contains(&count) {
        p.add(
            &t.field("count"),
            format!("{count} is outside min..max ({min}..{max})"),
        );
        return None;
    }
    Some(Instances { count, min, max })
}

fn read_placement(t: &mut Table<'_>, p: &mut Problems) -> Option<Placement> {
    let labels = t.string_map("labels", p);
    let spread = match t.string("spread", p).as_deref() {
        None | Some("node") => Spread::Node,
        Some("none") => Spread::None,
        Some(other) => {
            p.add(
                &t.field("spread"),
                format!("\"{other}\": use \"node\" or \"none\""),
            );
            Spread::Node
        }
    };
    Some(Placement { labels, spread })
}

fn read_health(t: &mut Table<'_>, ports: &[String], p: &mut Problems) -> Option<Health> {
    let kind_text = t.string("kind", p).unwrap_or_else(|| "tcp".into());
    let path = t.string("path", p);
    let expect_status = t
        .ints("expect_status", 100, 599, p)
        .map(|v| v.into_iter().map(|n| n as u16).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![200]);
    let port = t.string("port", p);
    let interval = t.duration("interval", p).unwrap_or(Duration::from_secs(2));
    let timeout = t.duration("timeout", p).unwrap_or(Duration::from_secs(1));
    let healthy_threshold = t.int("healthy_threshold", 1, 10, p).unwrap_or(2) as u32;
    let unhealthy_threshold = t.int("unhealthy_threshold", 1, 10, p).unwrap_or(2) as u32;
    let kind = match kind_text.as_str() {
        "tcp" => {
            if path.is_some() {
                p.add(&t.field("path"), "belongs to kind = \"http\"");
            }
            HealthKind::Tcp
        }
        "http" => HealthKind::Http {
            path: path.unwrap_or_else(|| "/healthz".into()),
            expect_status,
        },
        other => {
            p.add(
                &t.field("kind"),
                format!("\"{other}\": use \"tcp\" or \"http\""),
            );
            return None;
        }
    };
    if let HealthKind::Http { path, .. } = &kind {
        if !path.starts_with('/') {
            p.add(&t.field("path"), format!("\"{path}\" must start with /"));
        }
    }
    if ports.is_empty() {
        p.add(
            &t.field("kind"),
            "a health check connects to a port, but run.ports is empty; add e.g. ports = [\"http\"]",
        );
        return None;
    }
    let port = match port {
        None => ports[0].clone(),
        Some(name) if ports.contains(&name) => name,
        Some(name) => {
            p.add(
                &t.field("port"),
                format!("\"{name}\" is not in run.ports ({})", ports.join(", ")),
            );
            return None;
        }
    };
    if timeout > interval {
        p.add(&t.field("timeout"), "must not be longer than interval");
    }
    Some(Health {
        kind,
        port,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
    })
}

fn read_update(t: &mut Table<'_>, p: &mut Problems) -> Option<Update> {
    let u = Update {
        max_parallel: t.int("max_parallel", 1, 10_000, p).unwrap_or(1) as u32,
        min_healthy_time: t
            .duration("min_healthy_time", p)
            .unwrap_or(Duration::from_secs(5)),
        healthy_deadline: t
            .duration("healthy_deadline", p)
            .unwrap_or(Duration::from_secs(60)),
        auto_revert: t.boolean("auto_revert", p).unwrap_or(true),
        canary: t.int("canary", 0, 10_000, p).unwrap_or(0) as u32,
    };
    if u.min_healthy_time >= u.healthy_deadline {
        p.add(
            &t.field("healthy_deadline"),
            "must be longer than min_healthy_time: an instance has to stay healthy that long within it",
        );
    }
    Some(u)
}

fn read_restart(t: &mut Table<'_>, p: &mut Problems) -> Option<RestartPolicy> {
    let r = RestartPolicy {
        attempts: t.int("attempts", 0, 1000, p).unwrap_or(5) as u32,
        interval: t.duration("interval", p).unwrap_or(Duration::from_secs(60)),
        delay: t.duration("delay", p).unwrap_or(Duration::from_secs(1)),
        max_delay: t
            .duration("max_delay", p)
            .unwrap_or(Duration::from_secs(30)),
    };
    if r.delay > r.max_delay {
        p.add(&t.field("max_delay"), "must not be shorter than delay");
    }
    Some(r)
}

fn read_autoscale(t: &mut Table<'_>, p: &mut Problems) -> Option<Autoscale> {
    let metric = match t.required_string("metric", p).as_deref() {
        Some("rps_per_instance") => Some(ScaleMetric::RpsPerInstance),
        Some("cpu") => Some(ScaleMetric::Cpu),
        Some(other) => {
            p.add(
                &t.field("metric"),
                format!("\"{other}\": use \"rps_per_instance\" or \"cpu\""),
            );
            None
        }
        None => None,
    };
    let target = t.number("target", 0.001, 1e9, p);
    if target.is_none() && !p.0.iter().any(|x| x.field == t.field("target")) {
        p.add(
            &t.field("target"),
            "is required: the value per instance to keep the metric at",
        );
    }
    let cooldown = t.duration("cooldown", p).unwrap_or(Duration::from_secs(30));
    Some(Autoscale {
        metric: metric?,
        target: target?,
        cooldown,
    })
}
