//! Prometheus text exposition format, version 0.0.4.

use std::fmt::Write as _;

use crate::Histogram;

/// `Content-Type` header value for a rendered [`TextEncoder`] body.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kind of a metric family, as written in its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Writes Prometheus text into a `String`.
///
/// Call [`family`](Self::family) once per metric family, then write all of
/// that family's samples before starting the next family (the format forbids
/// interleaving and repeated `# TYPE` lines; the encoder does not check).
/// Metric and label names are checked only by `debug_assert!`.
#[derive(Debug, Default)]
pub struct TextEncoder {
    out: String,
}

impl TextEncoder {
    pub fn new() -> Self {
        TextEncoder { out: String::new() }
    }

    /// Encoder whose buffer starts with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Self {
        TextEncoder {
            out: String::with_capacity(capacity),
        }
    }

    /// Writes the `# HELP` and `# TYPE` lines of a family.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) {
        debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// Writes `name{l1="v1",l2="v2"} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, "", labels, None);
        write_f64(&mut self.out, value);
        self.out.push('\n');
    }

    /// Writes a counter sample; the value is printed exactly.
    pub fn counter(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series(name, "", labels, None);
        let _ = writeln!(self.out, "{value}");
    }

    /// Writes a gauge sample; the value is printed exactly.
    pub fn gauge(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.series(name, "", labels, None);
        let _ = writeln!(self.out, "{value}");
    }

    /// Writes `name_bucket{...,le="..."}` for every bucket including `+Inf`,
    /// then `name_sum` and `name_count`, from one snapshot so that `+Inf`
    /// equals `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        debug_assert!(
            labels.iter().all(|(k, _)| *k != "le"),
            "`le` is reserved in histogram labels"
        );
        let buckets = h.cumulative();
        let count = buckets.last().map_or(0, |b| b.1);
        for (le, n) in buckets {
            self.series(name, "_bucket", labels, Some(le));
            let _ = writeln!(self.out, "{n}");
        }
        self.series(name, "_sum", labels, None);
        write_f64(&mut self.out, h.sum_secs());
        self.out.push('\n');
        self.series(name, "_count", labels, None);
        let _ = writeln!(self.out, "{count}");
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// Writes `name suffix {labels[,le="x"]} ` up to and including the space
    /// before the value.
    fn series(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], le: Option<f64>) {
        debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(k), "invalid label name {k:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, v);
                self.out.push('"');
            }
            if let Some(le) = le {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str("le=\"");
                write_f64(&mut self.out, le);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Formats a float the way Prometheus expects: `NaN`, `+Inf`, `-Inf`;
/// integral values below 2^53 without a fraction (`1`, not `1.0`); very large
/// or very small values in exponent form; otherwise shortest round-trip
/// decimal (`0.0005`, `2.5`).
pub(crate) fn write_f64(out: &mut String, v: f64) {
    const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53
    let _ = if v.is_nan() {
        out.write_str("NaN")
    } else if v.is_infinite() {
        out.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else if v.fract() == 0.0 && v.abs() < EXACT_INT {
        write!(out, "{}", v as i64)
    } else if v.abs() >= EXACT_INT || v.abs() < 1e-4 {
        write!(out, "{v:e}")
    } else {
        write!(out, "{v}")
    };
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
