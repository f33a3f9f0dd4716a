//! The registry suite: real `herd server` processes on 127.0.0.1 (single nodes and
//! clusters), their HTTP API, DNS and the CLI, spoken to like a user. One test binary with a
//! module per concern; the harness is `herd-testkit`.

mod basics;
mod cli;
mod coordination;
mod dns;
mod election;
mod errors;
