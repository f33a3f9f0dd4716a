use super::*;
use semver::Version;
use std::time::Duration;

const FULL: &str = r#"
name = "api"
version = "1.4.2"
artifact = "/srv/releases/api-1.4.2"

[run]
command = "bin/api"
args = ["--listen", "127.0.0.1:${PORT}", "--admin", "127.0.0.1:${PORT_ADMIN}"]
env = { RUST_LOG = "info" }
ports = ["http", "admin"]
stop_signal = "SIGINT"
stop_timeout = "5s"

[instances]
count = 3
min = 2
max = 10

[placement]
labels = { zone = "a" }
spread = "node"

[health]
kind = "http"
path = "/healthz"
interval = "1s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 3

[update]
max_parallel = 1
min_healthy_time = "5s"
healthy_deadline = "60s"
auto_revert = true
canary = 0

[restart]
attempts = 5
interval = "60s"
delay = "1s"
max_delay = "30s"

[depends_on]
db-proxy = ">=2.1, <3"

[autoscale]
metric = "rps_per_instance"
target = 500
cooldown = "30s"
"#;

fn problems(text: &str) -> Vec<String> {
    match parse_manifest(text, "svc.toml") {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(e) => e
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.reason))
            .collect(),
    }
}

#[test]
fn the_spec_example_parses_to_exact_values() {
    let m = parse_manifest(FULL, "api.toml").unwrap();
    assert_eq!(m.name, "api");
    assert_eq!(m.version, Version::new(1, 4, 2));
    assert_eq!(
        m.artifact,
        Some(Artifact::Path("/srv/releases/api-1.4.2".into()))
    );
    assert_eq!(m.run.command, "bin/api");
    assert_eq!(m.run.ports, ["http", "admin"]);
    assert_eq!(m.run.env, [("RUST_LOG".to_string(), "info".to_string())]);
    assert_eq!(m.run.stop_signal, StopSignal::Int);
    assert_eq!(m.run.stop_timeout, Duration::from_secs(5));
    assert_eq!(
        m.instances,
        Instances {
            count: 3,
            min: 2,
            max: 10
        }
    );
    assert_eq!(m.placement.labels, [("zone".to_string(), "a".to_string())]);
    assert_eq!(m.placement.spread, Spread::Node);
    let h = m.health.unwrap();
    assert_eq!(
        h.kind,
        HealthKind::Http {
            path: "/healthz".into(),
            expect_status: vec![200]
        }
    );
    assert_eq!(h.port, "http");
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 3));
    assert_eq!(m.update.max_parallel, 1);
    assert_eq!(m.update.healthy_deadline, Duration::from_secs(60));
    assert!(m.update.auto_revert);
    assert_eq!(m.restart.attempts, 5);
    assert_eq!(m.restart.max_delay, Duration::from_secs(30));
    assert_eq!(m.depends_on.len(), 1);
    assert_eq!(m.depends_on[0].0, "db-proxy");
    assert!(m.depends_on[0].1.matches(&Version::new(2, 9, 0)));
    assert!(!m.depends_on[0].1.matches(&Version::new(3, 0, 0)));
    let a = m.autoscale.unwrap();
    assert_eq!((a.metric, a.target), (ScaleMetric::RpsPerInstance, 500.0));
}

#[test]
fn a_minimal_manifest_takes_the_defaults() {
    let m = parse_manifest(
        "name = \"job\"\nversion = \"0.1.0\"\n[run]\ncommand = \"/bin/sleep\"\nargs = [\"60\"]\n",
        "job.toml",
    )
    .unwrap();
    assert_eq!(
        m.instances,
        Instances {
            count: 1,
            min: 1,
            max: 1
        }
    );
    assert_eq!(m.health, None);
    assert_eq!(m.run.stop_signal, StopSignal::Term);
    assert_eq!(m.run.stop_timeout, Duration::from_secs(10));
    assert_eq!(m.restart.attempts, 5);
    assert_eq!(m.restart.delay, Duration::from_secs(1));
    assert_eq!(m.update.min_healthy_time, Duration::from_secs(5));
    assert_eq!(m.update.canary, 0);
    assert!(m.depends_on.is_empty());
    // count alone sets min and max to it.
    let m = parse_manifest(
        "name = \"w\"\nversion = \"1.0.0\"\n[run]\ncommand = \"w\"\n[instances]\ncount = 4\n",
        "w.toml",
    )
    .unwrap();
    assert_eq!(
        m.instances,
        Instances {
            count: 4,
            min: 4,
            max: 4
        }
    );
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let got = problems(
        r#"
name = "Bad_Name"
version = "1.4"
colour = "blue"
[run]
command = "x"
args = ["${PORT_DB}"]
ports = ["http"]
stop_signal = "SIGSTOP"
[instances]
count = 20
max = 10
[health]
kind = "http"
path = "healthz"
port = "grpc"
[update]
max_paralel = 2
[restart]
delay = "5 seconds"
[depends_on]
db = "latest"
"#,
    );
    let want = [
        "name: \"Bad_Name\" is not a service name",
        "version: \"1.4\" is not a semantic version",
        "run.args[0]: ${PORT_DB} is not set by the agent",
        "run.stop_signal: \"SIGSTOP\" is not a stop signal",
        "instances.count: 20 is outside min..max",
        "health.path: \"healthz\" must start with /",
        "health.port: \"grpc\" is not in run.ports (http)",
        "update.max_paralel: unknown key; did you mean \"max_parallel\"?",
        "restart.delay: ",
        "depends_on.db: \"latest\" is not a version range",
        "colour: unknown key",
    ];
    for w in want {
        assert!(
            got.iter().any(|g| g.starts_with(w)),
            "missing {w:?} in:\n{}",
            got.join("\n")
        );
    }
    assert_eq!(got.len(), want.len(), "{}", got.join("\n"));
}

#[test]
fn required_keys_and_types() {
    let got = problems("version = 3\n[run]\nargs = \"x\"\n");
    assert_eq!(
        got,
        [
            "name: is required",
            "version: must be a string, not an integer",
            "run.command: is required",
            "run.args: must be an array of strings, not a string",
        ]
    );
    let got = problems("name = \"a\"\nversion = \"1.0.0\"\n");
    assert_eq!(
        got,
        ["run: is required: [run] with at least command = \"...\""]
    );
    let err = parse_manifest("name = \"a\"\nversion = \n", "bad.toml").unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.to_string().starts_with("bad.toml: line 2: "), "{err}");
}

#[test]
fn artifacts_local_or_checked_downloads() {
    let base = "name = \"a\"\nversion = \"1.0.0\"\n[run]\ncommand = \"a\"\n";
    let hash = "ab".repeat(32);
    let m = parse_manifest(
        &format!(
            "artifact = \"https://releases.example/a.tar\"\nsha256 = \"{}\"\n{base}",
            hash.to_uppercase()
        ),
        "a.toml",
    )
    .unwrap();
    assert_eq!(
        m.artifact,
        Some(Artifact::Url {
            url: "https://releases.example/a.tar".into(),
            sha256: hash
        })
    );
    assert_eq!(
        problems(&format!("artifact = \"https://r.example/a\"\n{base}")),
        ["sha256: is required with an artifact URL: a download is used only when its SHA-256 matches"]
    );
    assert_eq!(
        problems(&format!("artifact = \"ftp://r.example/a\"\n{base}")),
        ["artifact: \"ftp://r.example/a\": only http:// and https:// URLs, or a local path"]
    );
    assert_eq!(
        problems(&format!(
            "artifact = \"https://r.example/a\"\nsha256 = \"abc\"\n{base}"
        )),
        ["sha256: \"abc\" is not a SHA-256; write its 64 hex digits"]
    );
}

#[test]
fn ports_env_and_health_must_agree() {
    let got = problems(
        "name = \"a\"\nversion = \"1.0.0\"\n[run]\ncommand = \"a\"\nargs = [\"${PORT}\"]\nenv = { PORT = \"1\", \"9X\" = \"y\" }\n[health]\nkind = \"tcp\"\n",
    );
    assert_eq!(
        got,
        [
            "run.env.9X: is not an environment variable name",
            "run.env.PORT: PORT and PORT_<NAME> are set by the agent from run.ports",
            "run.args[0]: uses ${PORT} but run.ports is empty; add e.g. ports = [\"http\"]",
            "health.kind: a health check connects to a port, but run.ports is empty; add e.g. ports = [\"http\"]",
        ]
    );
    assert_eq!(substitutions("a${PORT}b${PORT_X}c${"), ["PORT", "PORT_X"]);
}

#[test]
fn autoscale_needs_room_and_canaries_need_instances() {
    let got = problems(
        "name = \"a\"\nversion = \"1.0.0\"\n[run]\ncommand = \"a\"\n[instances]\ncount = 2\n[update]\ncanary = 3\n[autoscale]\nmetric = \"memory\"\n",
    );
    assert_eq!(
        got,
        [
            "autoscale.metric: \"memory\": use \"rps_per_instance\" or \"cpu\"",
            "autoscale.target: is required: the value per instance to keep the metric at",
            "update.canary: 3 canaries for 2 instances; use at most instances.count",
        ]
    );
    let got = problems(
        "name = \"a\"\nversion = \"1.0.0\"\n[run]\ncommand = \"a\"\n[instances]\ncount = 2\n[autoscale]\nmetric = \"cpu\"\ntarget = 70\n",
    );
    assert_eq!(
        got,
        ["autoscale: instances.min and instances.max are both 2: there is nothing to scale; raise instances.max"]
    );
    assert!(!valid_service_name("-a"));
    assert!(!valid_service_name(&"a".repeat(64)));
    assert!(valid_service_name("db-proxy2"));
}

#[test]
fn a_json_manifest_means_what_the_same_toml_means() {
    let toml_form = parse_manifest(FULL, "api.toml").unwrap();
    // The same manifest, each table an object, written the way a JSON client would.
    let table: toml::Table = FULL.parse().unwrap();
    let json = serde_json::to_vec(&table).unwrap();
    let text = json_to_toml(&json, "api.json").unwrap();
    assert_eq!(parse_manifest(&text, "api.json").unwrap(), toml_form);

    let null = json_to_toml(br#"{"name": "api", "artifact": null}"#, "api.json").unwrap_err();
    assert!(null.to_string().contains("leave the key out"), "{null}");
    let list = json_to_toml(br#"["name", "api"]"#, "api.json").unwrap_err();
    assert!(list.to_string().contains("one object"), "{list}");
    let broken = json_to_toml(br#"{"name": "api""#, "api.json").unwrap_err();
    assert!(
        broken
            .to_string()
            .starts_with("api.json: not a JSON manifest"),
        "{broken}"
    );
    // A wrong key is named like in TOML.
    let text = json_to_toml(
        br#"{"name": "api", "version": "1.0.0", "run": {"comand": "x"}}"#,
        "api.json",
    )
    .unwrap();
    let e = parse_manifest(&text, "api.json").unwrap_err().to_string();
    assert!(e.contains("run.comand"), "{e}");
}
