//! Process identity and a tiny metrics toolkit for herd.
//!
//! This crate owns:
//! - [`ProcessId`]: the global identity of one running herd process,
//!   `host:port:start_unix_ms:pid`, unique per run.
//! - [`Counter`], [`Gauge`] and [`Histogram`]: plain atomics meant to be
//!   embedded in the objects they describe (servers, routes). Updating them is
//!   lock-free and allocation-free, so they are safe on the data-plane hot path.
//! - [`TextEncoder`]: renders those values as Prometheus text exposition format
//!   (version 0.0.4) when scraped.
//! - [`trace`]: W3C trace context, the span model, OTLP/HTTP traces in protobuf and JSON,
//!   mergeable latency digests and cycle finding — the pieces the gateway's spans and the
//!   server's trace store share.
//!
//! We do not use `prometheus-client` because its labelled families take a lock
//! on every increment; here the labels live with the owning object and are
//! only spelled out at scrape time.
//!
//! What this crate must not do: no I/O other than reading the clock, the
//! hostname and the pid for [`ProcessId::new`]; no threads; no global
//! registry. Callers decide what to render and where to serve it.
//!
//! ```
//! use herd_telemetry::{Counter, Histogram, MetricKind, TextEncoder};
//!
//! let requests = Counter::new();
//! let latency = Histogram::latency();
//! requests.inc();
//! latency.observe_nanos(3_000_000);
//!
//! let mut e = TextEncoder::new();
//! e.family("herd_requests_total", MetricKind::Counter, "Requests served.");
//! e.counter("herd_requests_total", &[("route", "api")], requests.get());
//! e.family("herd_latency_seconds", MetricKind::Histogram, "Latency.");
//! e.histogram("herd_latency_seconds", &[("route", "api")], &latency);
//! let text = e.finish();
//! assert!(text.contains("herd_requests_total{route=\"api\"} 1\n"));
//! assert!(text.contains("herd_latency_seconds_bucket{route=\"api\",le=\"0.005\"} 1\n"));
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod histogram;
mod metrics;
mod process;
mod text;
pub mod trace;

pub use histogram::{Histogram, LATENCY_BUCKETS};
pub use metrics::{Counter, Gauge};
pub use process::{ParseProcessIdError, ProcessId};
pub use text::{MetricKind, TextEncoder, CONTENT_TYPE};

#[cfg(test)]
mod histogram_tests;
#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
mod process_tests;
#[cfg(test)]
mod text_tests;
