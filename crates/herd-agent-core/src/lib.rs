//! The decisions of cluster management, as pure functions over values: the service
//! manifest and its validation, the states of instances and services (seed 001), the
//! restart policy's backoff, placement of instances on nodes, `depends_on` version
//! constraints, and the cluster's architecture revisions with their diff.
//!
//! Pure: no I/O, no clock (times are passed in as milliseconds), no threads. The agent
//! (which runs processes) and the controller (which writes to the registry) call these
//! and do what they decide; tests check the decisions with exact numbers.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod depends;
pub mod manifest;
pub mod placement;
pub mod restart;
pub mod revision;
pub mod state;

pub use manifest::{parse_manifest, Manifest, ManifestError};
pub use state::State;
