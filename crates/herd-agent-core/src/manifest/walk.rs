//! Reading a TOML table field by field, collecting every problem instead of stopping at
//! the first: a manifest with three mistakes gets three messages, each with its field path.

use std::time::Duration;
use toml::Value;

/// One thing wrong with a manifest: the field (dotted path) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

/// The problems found so far.
#[derive(Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, field: &str, reason: impl Into<String>) {
        self.0.push(Problem {
            field: field.to_string(),
            reason: reason.into(),
        });
    }
}

/// A table being read: each key taken is marked, so the ones never asked for are
/// reported as unknown (a typo must not be ignored silently).
pub(crate) struct Table<'a> {
    path: String,
    table: Option<&'a toml::Table>,
    taken: Vec<&'a str>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl<'a> Table<'a> {
    pub(crate) fn root(table: &'a toml::Table) -> Table<'a> {
        Table {
            path: String::new(),
            table: Some(table),
            taken: Vec::new(),
        }
    }

    pub(crate) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Value> {
        let v = self.table?.get(key)?;
        self.taken.push(key);
        Some(v)
    }

    /// A sub-table; absent reads as empty. Not a table is a problem.
    pub(crate) fn table(&mut self, key: &'a str, p: &mut Problems) -> Table<'a> {
        let path = self.field(key);
        let table = match self.get(key) {
            Some(Value::Table(t)) => Some(t),
            Some(v) => {
                p.add(&path, format!("must be a table, not {}", type_name(v)));
                None
            }
            None => None,
        };
        Table {
            path,
            table,
            taken: Vec::new(),
        }
    }

    pub(crate) fn present(&self) -> bool {
        self.table.is_some()
    }

    pub(crate) fn string(&mut self, key: &'a str, p: &mut Problems) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            v => {
                p.add(
                    &self.field(key),
                    format!("must be a string, not {}", type_name(v)),
                );
                None
            }
        }
    }

    pub(crate) fn required_string(&mut self, key: &'a str, p: &mut Problems) -> Option<String> {
        let present = self.table.is_some_and(|t| t.contains_key(key));
        if !present {
            p.add(&self.field(key), "is required");
            return None;
        }
        self.string(key, p)
    }

    pub(crate) fn boolean(&mut self, key: &'a str, p: &mut Problems) -> Option<bool> {
        match self.get(key)? {
            Value::Boolean(b) => Some(*b),
            v => {
                p.add(
                    &self.field(key),
                    format!("must be true or false, not {}", type_name(v)),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn int(
        &mut self,
        key: &'a str,
        min: i64,
        max: i64,
        p: &mut Problems,
    ) -> Option<i64> {
        match self.get(key)? {
            Value::Integer(n) if (min..=max).contains(n) => Some(*n),
            Value::Integer(n) => {
                p.add(
                    &self.field(key),
                    format!("{n} is out of range; use {min} to {max}"),
                );
                None
            }
            v => {
                p.add(
                    &self.field(key),
                    format!("must be an integer, not {}", type_name(v)),
                );
                None
            }
        }
    }

    /// A number (integer or float) in `min..=max`.
    pub(crate) fn number(
        &mut self,
        key: &'a str,
        min: f64,
        max: f64,
        p: &mut Problems,
    ) -> Option<f64> {
        let n = match self.get(key)? {
            Value::Integer(n) => *n as f64,
            Value::Float(f) => *f,
            v => {
                p.add(
                    &self.field(key),
                    format!("must be a number, not {}", type_name(v)),
                );
                return None;
            }
        };
        if !(min..=max).contains(&n) {
            p.add(
                &self.field(key),
                format!("{n} is out of range; use {min} to {max}"),
            );
            return None;
        }
        Some(n)
    }

    /// A duration written as "2s", "500ms", "1m30s"; zero is refused.
    pub(crate) fn duration(&mut self, key: &'a str, p: &mut Problems) -> Option<Duration> {
        let text = self.string(key, p)?;
        match herd_config::parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                p.add(&self.field(key), "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                p.add(&self.field(key), e);
                None
            }
        }
    }

    pub(crate) fn strings(&mut self, key: &'a str, p: &mut Problems) -> Option<Vec<String>> {
        let field = self.field(key);
        match self.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        v => p.add(
                            &format!("{field}[{i}]"),
                            format!("must be a string, not {}", type_name(v)),
                        ),
                    }
                }
                Some(out)
            }
            v => {
                p.add(
                    &field,
                    format!("must be an array of strings, not {}", type_name(v)),
                );
                None
            }
        }
    }

    /// An array of integers, each in `min..=max`.
    pub(crate) fn ints(
        &mut self,
        key: &'a str,
        min: i64,
        max: i64,
        p: &mut Problems,
    ) -> Option<Vec<i64>> {
        let field = self.field(key);
        match self.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::Integer(n) if (min..=max).contains(n) => out.push(*n),
                        Value::Integer(n) => p.add(
                            &format!("{field}[{i}]"),
                            format!("{n} is out of range; use {min} to {max}"),
                        ),
                        v => p.add(
                            &format!("{field}[{i}]"),
                            format!("must be an integer, not {}", type_name(v)),
                        ),
                    }
                }
                Some(out)
            }
            v => {
                p.add(
                    &field,
                    format!("must be an array of integers, not {}", type_name(v)),
                );
                None
            }
        }
    }

    /// A table of string values (`env`, `labels`, `depends_on`), in key order.
    pub(crate) fn string_map(&mut self, key: &'a str, p: &mut Problems) -> Vec<(String, String)> {
        let field = self.field(key);
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Table(t)) => {
                let mut out = Vec::with_capacity(t.len());
                for (k, v) in t {
                    match v {
                        Value::String(s) => out.push((k.clone(), s.clone())),
                        v => p.add(
                            &format!("{field}.{k}"),
                            format!("must be a string, not {}", type_name(v)),
                        ),
                    }
                }
                out
            }
            Some(v) => {
                p.add(
                    &field,
                    format!("must be a table of strings, not {}", type_name(v)),
                );
                Vec::new()
            }
        }
    }

    /// Report the keys nobody asked for. Call once every known key was read.
    pub(crate) fn finish(self, known: &[&str], p: &mut Problems) {
        let Some(t) = self.table else {
            return;
        };
        for k in t.keys() {
            if !self.taken.contains(&k.as_str()) {
                let hint = known
                    .iter()
                    .min_by_key(|c| edit_distance(c, k))
                    .filter(|c| edit_distance(c, k) <= 2)
                    .map(|c| format!("; did you mean \"{c}\"?"))
                    .unwrap_or_default();
                p.add(
                    &self.field(k),
                    format!("unknown key{hint} (known here: {})", known.join(", ")),
                );
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" on short key names.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
