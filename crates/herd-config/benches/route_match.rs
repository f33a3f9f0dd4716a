//! Route matching: the first matching route of 50, as the gateway looks it up for every
//! request (host exact and wildcard, path prefix and regex, method, header regex).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use herd_config::{parse, Regex, RequestView};

struct Req {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    accept_language: &'static str,
}

impl RequestView for Req {
    fn method(&self) -> &str {
        self.method
    }
    fn host(&self) -> Option<&str> {
        Some(self.host)
    }
    fn path(&self) -> &str {
        self.path
    }
    fn header_matches(&self, name: &str, re: &Regex) -> bool {
        name == "accept-language" && re.is_match(self.accept_language)
    }
}

fn config() -> String {
    let mut t = String::from(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [backends.app]\nservers = [ { addr = \"127.0.0.1:9001\" } ]\n\n",
    );
    for i in 0..12 {
        t += &format!("[[routes]]\nhost = \"svc{i}.example.com\"\nbackend = \"app\"\n\n");
        t += &format!("[[routes]]\nhost = \"*.tenant{i}.example.com\"\nbackend = \"app\"\n\n");
        t += &format!("[[routes]]\npath_prefix = \"/api/v{i}/\"\nmethods = [\"GET\", \"POST\"]\nbackend = \"app\"\n\n");
        t += &format!("[[routes]]\npath_regex = \"^/items/[0-9]+/v{i}$\"\nbackend = \"app\"\n\n");
    }
    t += "[[routes]]\nheaders = { accept-language = \"^zh\" }\nbackend = \"app\"\n\n";
    t += "[[routes]]\nbackend = \"app\"\n";
    t
}

fn route_match(c: &mut Criterion) {
    let cfg = match parse(&config(), "bench.toml") {
        Ok(cfg) => cfg,
        Err(e) => panic!("bench config: {e}"),
    };
    let first = Req {
        method: "GET",
        host: "svc0.example.com",
        path: "/",
        accept_language: "en",
    };
    let last = Req {
        method: "GET",
        host: "www.example.org",
        path: "/index.html",
        accept_language: "zh-CN,zh;q=0.9",
    };
    let find = |req: &Req| cfg.routes.iter().position(|r| r.matches(req));
    assert_eq!(find(&first), Some(0));
    assert_eq!(find(&last), Some(cfg.routes.len() - 2));
    c.bench_function("route/first_of_50", |b| {
        b.iter(|| black_box(find(black_box(&first))))
    });
    c.bench_function("route/header_rule_49th_of_50", |b| {
        b.iter(|| black_box(find(black_box(&last))))
    });
}

criterion_group!(benches, route_match);
criterion_main!(benches);
