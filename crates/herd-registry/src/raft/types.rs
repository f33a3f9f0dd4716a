//! openraft's type configuration for the registry: log entries are the state machine's
//! `Command`s, answers are its `Response`s.

use serde::{Deserialize, Serialize};
use std::io::Cursor;

pub type NodeId = u64;

/// What applying an entry answered: `None` for Raft's own entries (blank, membership).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Option<herd_registry_core::Response>);

openraft::declare_raft_types!(
    pub TypeConfig:
        D = herd_registry_core::Command,
        R = Reply,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Node = openraft::BasicNode;
