//! The registry's fault suite (docs/RELIABILITY.md): clusters in network namespaces the
//! tests create and remove, nodes killed, paused and cut off. Its own binary so that its
//! scenarios (serialized by the lab) never share the machine with the other suites' tests.

mod data;
mod leases;
