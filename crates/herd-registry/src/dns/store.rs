//! The node's applied store as the DNS [`Catalog`].

use super::answer::Catalog;
use crate::raft::node::RegistryNode;
use herd_registry_core::catalog::{self, Instance};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The node's store as a [`Catalog`], read without a read barrier (serializable).
pub(crate) struct StoreCatalog {
    node: Arc<RegistryNode>,
    /// Lowercase service name -> the registered spellings, rebuilt when the revision moves
    /// (names are case-insensitive in DNS, not in the catalog).
    names: Mutex<(u64, HashMap<String, Vec<String>>)>,
}

impl StoreCatalog {
    pub(crate) fn new(node: Arc<RegistryNode>) -> Self {
        StoreCatalog {
            node,
            names: Mutex::new((u64::MAX, HashMap::new())),
        }
    }
}

impl Catalog for StoreCatalog {
    fn instances(&self, service: &str) -> Vec<Instance> {
        let Ok(applied) = self.node.state.applied.read() else {
            return Vec::new();
        };
        let store = &applied.store;
        let Ok(mut names) = self.names.lock() else {
            return Vec::new();
        };
        if names.0 != store.revision() {
            let (kvs, _) = store.range(catalog::SERVICES_PREFIX, 0);
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for name in catalog::service_names(&kvs) {
                map.entry(name.to_ascii_lowercase()).or_default().push(name);
            }
            *names = (store.revision(), map);
        }
        let Some(spellings) = names.1.get(&service.to_ascii_lowercase()) else {
            return Vec::new();
        };
        spellings
            .iter()
            .filter_map(|s| catalog::service_prefix(s).ok())
            .flat_map(|prefix| catalog::parse_instances(&store.range(&prefix, 0).0))
            .collect()
    }

    fn revision(&self) -> u64 {
        self.node
            .state
            .applied
            .read()
            .map(|a| a.store.revision())
            .unwrap_or(0)
    }
}
