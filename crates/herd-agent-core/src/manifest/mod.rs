//! A service's manifest (SPEC §4): what to run, how many, where, how to check it, how to
//! update and restart it, and which versions of other services it needs. Parsed from TOML
//! with every problem reported by file, field and reason; unknown keys are errors.

mod model;
mod read;
mod walk;

pub use model::*;
pub use read::substitutions;
pub use walk::Problem;

use std::fmt;
use walk::Problems;

/// Why a manifest was refused: the file and every problem in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ManifestError {
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

/// A service name: it becomes a DNS label (`<name>.service.herd.`), a directory and a
/// registry key, so lower-case letters, digits and dashes, 1-63 characters.
pub fn valid_service_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A manifest written as JSON — the same keys and shapes as the TOML (`{"name": "web",
/// "run": {"command": "..."}, ...}`) — as TOML text, which is what is stored and parsed:
/// one definition of a manifest, whichever way it was sent.
pub fn json_to_toml(json: &[u8], file: &str) -> Result<String, ManifestError> {
    let fail = |reason: String| ManifestError {
        file: file.to_string(),
        problems: vec![Problem {
            field: String::new(),
            reason,
        }],
    };
    let value: toml::Value = serde_json::from_slice(json).map_err(|e| {
        let reason = e.to_string();
        if reason.contains("invalid type: null") {
            fail(format!(
                "{reason}: JSON null has no meaning in a manifest; leave the key out"
            ))
        } else {
            fail(format!("not a JSON manifest: {reason}"))
        }
    })?;
    if !value.is_table() {
        return Err(fail(
            "a JSON manifest is one object: {\"name\": ..., \"version\": ..., \"run\": {...}}"
                .into(),
        ));
    }
    toml::to_string(&value).map_err(|e| fail(format!("cannot be written as TOML: {e}")))
}

/// Parse and validate a manifest. `file` names the source in error messages.
pub fn parse_manifest(text: &str, file: &str) -> Result<Manifest, ManifestError> {
    let fail = |problems| ManifestError {
        file: file.to_string(),
        problems,
    };
    let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: ")
            })
            .unwrap_or_default();
        fail(vec![Problem {
            field: String::new(),
            reason: format!("{at}{}", e.message()),
        }])
    })?;
    let mut p = Problems::default();
    let m = read::manifest(&root, &mut p);
    match m {
        Some(m) if p.0.is_empty() => Ok(m),
        _ => Err(fail(p.0)),
    }
}

#[cfg(test)]
mod tests;
