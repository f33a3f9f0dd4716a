//! `[tracing]` and the per-listener / per-route `sample_ratio`.

use crate::parse;

const APP: &str = "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\
    [[routes]]\nbackend = \"app\"\n[backends.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\n";

fn problems(text: &str) -> Vec<(String, String)> {
    parse(text, "t.toml")
        .expect_err("must be refused")
        .problems
        .into_iter()
        .map(|p| (p.field, p.reason))
        .collect()
}

#[test]
fn tracing_defaults_and_overrides() {
    let c = parse(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:7400\"\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nsample_ratio = 0.5\n\
         [[routes]]\nbackend = \"app\"\nsample_ratio = 0.01\n\
         [backends.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\n",
        "t.toml",
    )
    .expect("valid");
    let t = c.tracing.expect("tracing on");
    assert_eq!(t.authority, "127.0.0.1:7400");
    assert_eq!(t.path, "/v1/traces", "the OTLP path when none is written");
    assert_eq!(t.sample_ratio, 1.0);
    assert_eq!(t.service_name, "herd-gateway");
    assert_eq!(t.max_queue, 8192);
    assert_eq!(c.listeners[0].sample_ratio, Some(0.5));
    assert_eq!(c.routes[0].sample_ratio, Some(0.01));
    assert!(parse(APP, "t.toml").expect("valid").tracing.is_none());
}

#[test]
fn tracing_mistakes_name_the_field_and_the_fix() {
    let p = problems(&format!(
        "[tracing]\notlp_endpoint = \"https://collector:4318/v1/traces\"\nsample_ratio = 1.5\n\
         service_name = \" \"\nmax_queue = 0\n{APP}"
    ));
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "tracing.otlp_endpoint",
            "tracing.sample_ratio",
            "tracing.service_name",
            "tracing.max_queue"
        ],
        "{p:?}"
    );
    assert!(p[0].1.contains("http://"), "{}", p[0].1);
    assert!(p[1].1.contains("0.0 to 1.0"), "{}", p[1].1);

    let p = problems(&format!(
        "[tracing]\notlp_endpoint = \"http://localhost/v1/traces\"\n{APP}"
    ));
    assert_eq!(p[0].0, "tracing.otlp_endpoint");
    assert!(p[0].1.contains("port"), "{}", p[0].1);

    // A ratio with nowhere to send spans is a mistake, not a silent no-op.
    let p = problems(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nsample_ratio = 0.5\n\
         [[routes]]\nbackend = \"app\"\nsample_ratio = -1.0\n\
         [backends.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\n",
    );
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert!(fields.contains(&"listeners[0].sample_ratio"), "{p:?}");
    assert!(fields.contains(&"routes[0].sample_ratio"), "{p:?}");
    assert!(p.iter().any(|(_, r)| r.contains("[tracing]")), "{p:?}");
}
