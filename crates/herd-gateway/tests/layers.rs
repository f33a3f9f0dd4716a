//! The gateway's floors, checked from its sources: each folder is a place on a request's
//! path, and a file may name (`crate::<folder>`) only its own folder or one below it.
//! `control/` and `observe/` read everything; nothing below imports them. A `use` that
//! points up fails here, naming the file and the line. (`clock.rs` and the crate root's
//! shared types are below or beside every floor and are not checked.)

use std::path::{Path, PathBuf};

/// Bottom first.
const FLOORS: &[&[&str]] = &[
    &["codec"],
    &["traffic"],
    &["state"],
    &["upstream"],
    &["http"],
    &["session"],
    &["runtime"],
    &["control", "observe"],
];

fn floor_of(folder: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&folder))
}

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
fn imports_point_down_the_request_path() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    let mut checked = 0;
    for floor in FLOORS {
        for folder in *floor {
            let here = floor_of(folder).unwrap_or(0);
            let mut files = Vec::new();
            rust_files(&src.join(folder), &mut files);
            assert!(!files.is_empty(), "no sources under src/{folder}");
            for f in files {
                checked += 1;
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                for (n, line) in text.lines().enumerate() {
                    if line.trim_start().starts_with("//") {
                        continue;
                    }
                    for (i, _) in line.match_indices("crate::") {
                        let name: String = line[i + 7..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if floor_of(&name).is_some_and(|there| there > here) {
                            wrong.push(format!(
                                "{}:{}: {folder}/ names {name}/, a floor above it: {}",
                                f.display(),
                                n + 1,
                                line.trim()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} files found");
    assert!(
        wrong.is_empty(),
        "imports pointing up the request path:\n{}",
        wrong.join("\n")
    );
}
