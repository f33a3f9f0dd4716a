//! /metrics and /status: they read the state, nothing on the request path imports them.

pub(crate) mod metrics;
pub(crate) mod traffic_report;
