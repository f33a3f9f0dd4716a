//! The gateway suite: the real `herd` binary in front of real backends on 127.0.0.1, spoken
//! to over the network like a user. One test binary (one link of the whole stack) with a
//! module per concern; the harness is `herd-testkit`.

mod admin_security;
mod alerts;
mod cert_cli;
mod client_http1;
mod discovery;
mod failover_health;
mod gateway_basics;
mod gateway_chaos;
mod gateway_page;
mod http1_conformance;
mod listener_binds;
mod persistence_ops;
mod tcp_proxy;
mod tls_h2_ws;
mod tls_upstream;
mod tracing;
mod traffic_control;
mod upstream_http1;
