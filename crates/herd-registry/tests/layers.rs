//! The crate's floors, checked from its sources: `raft/` (consensus and storage) is the
//! bottom and imports neither the HTTP API nor DNS; `api/` and `dns/` both stand on it and
//! never on each other; `telemetry/` (the trace store) stands beside `raft/`, on nothing. A `use crate::` that points up (or across) fails here, naming the
//! file and the line.

use std::path::{Path, PathBuf};

/// (folder, what no file in it may name)
const RULES: &[(&str, &[&str])] = &[
    ("raft", &["crate::api", "crate::dns"]),
    ("dns", &["crate::api"]),
    ("api", &["crate::dns"]),
    ("telemetry", &["crate::api", "crate::dns", "crate::raft"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_point_down_the_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (folder, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(folder), &mut files);
        assert!(!files.is_empty(), "no sources under src/{folder}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for bad in *forbidden {
                    if line.contains(bad) {
                        wrong.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports pointing up a floor:\n{}",
        wrong.join("\n")
    );
}
