//! herd's configuration model: the TOML file as written (`raw`), and the validated
//! `Config` the data plane runs from, with every problem reported by file, field and reason.
//!
//! Pure: no I/O (the caller reads the file), no sockets, no threads. Key names are the
//! contract of SPEC §2; add keys freely, never rename one without keeping the old spelling.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod alerts;
mod cidr;
mod duration;
mod model;
pub mod raw;
mod size;
mod structure;
pub mod traffic;
mod validate;

pub use alerts::{parse_alert_rules, AlertKind, AlertRule, AlertRules};
pub use duration::parse_duration;
pub use model::*;
pub use regex::Regex;
pub use size::parse_size;
pub use validate::Problem;

use std::fmt;

/// Why a configuration was refused: the file and every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.field.is_empty() {
                write!(f, "{}: {}", self.file, p.reason)?;
            } else {
                write!(f, "{}: {}: {}", self.file, p.field, p.reason)?;
            }
        }
        Ok(())
    }
}

/// Parse and validate a configuration. `file` names the source in error messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: raw::FileConfig = toml::from_str(text).map_err(|e| ConfigError {
        file: file.to_string(),
        problems: structure::every_problem(text, &e)
            .into_iter()
            .map(|reason| Problem {
                field: String::new(),
                reason,
            })
            .collect(),
    })?;
    let mut checker = validate::Checker {
        base_dir: std::path::Path::new(file)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        ..Default::default()
    };
    let config = validate::validate(raw, &mut checker);
    if checker.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError {
            file: file.to_string(),
            problems: checker.problems,
        })
    }
}

/// The configuration `herd up` and `herd demo` use when given no file: one HTTP listener
/// in front of three local demo servers, with active health checks.
pub fn demo_toml(listen: &str, admin: &str, servers: &[String]) -> String {
    let mut s = format!(
        "[admin]\nlisten = \"{admin}\"\n\n[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"{listen}\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"demo\"\n\n[backends.demo]\npolicy = \"round_robin\"\nservers = ["
    );
    for (i, addr) in servers.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{{ addr = \"{addr}\" }}"));
    }
    s.push_str(
        "]\n\n[backends.demo.health]\nkind = \"http\"\npath = \"/healthz\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
    );
    s
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tracing_tests;
