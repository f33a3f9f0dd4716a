//! The cluster's architecture versions (seed 001's "service manifest" whose every change
//! is recorded): each apply, scale or rollback makes a new revision holding every
//! service's version and what it needs of the others, so any two can be compared and any
//! one returned to.

use semver::{Version, VersionReq};
use std::collections::BTreeMap;

/// One service as a revision records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub version: Version,
    pub count: u32,
    pub depends_on: Vec<(String, VersionReq)>,
}

/// Every service of the cluster at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Architecture {
    pub revision: u64,
    pub services: BTreeMap<String, ServiceEntry>,
}

/// How one service differs between two revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub service: String,
    /// None: the service was not in the first revision.
    pub from: Option<(Version, u32)>,
    /// None: the service is gone in the second.
    pub to: Option<(Version, u32)>,
}

/// What changed from `a` to `b`, by service name.
pub fn diff(a: &Architecture, b: &Architecture) -> Vec<Change> {
    let names: std::collections::BTreeSet<&String> =
        a.services.keys().chain(b.services.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let from = a.services.get(name).map(|e| (e.version.clone(), e.count));
            let to = b.services.get(name).map(|e| (e.version.clone(), e.count));
            (from != to).then(|| Change {
                service: name.clone(),
                from,
                to,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(v: &str, count: u32, deps: &[(&str, &str)]) -> ServiceEntry {
        ServiceEntry {
            version: Version::parse(v).unwrap(),
            count,
            depends_on: deps
                .iter()
                .map(|(s, r)| (s.to_string(), VersionReq::parse(r).unwrap()))
                .collect(),
        }
    }

    #[test]
    fn diff_names_every_change() {
        let a = Architecture {
            revision: 1,
            services: BTreeMap::from([
                ("api".into(), entry("1.0.0", 3, &[])),
                ("db".into(), entry("2.1.0", 1, &[])),
                ("old".into(), entry("0.1.0", 1, &[])),
            ]),
        };
        let b = Architecture {
            revision: 2,
            services: BTreeMap::from([
                ("api".into(), entry("1.1.0", 3, &[])),
                ("db".into(), entry("2.1.0", 1, &[])),
                ("new".into(), entry("1.0.0", 2, &[])),
            ]),
        };
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(
            diff(&a, &b),
            vec![
                Change {
                    service: "api".into(),
                    from: Some((v("1.0.0"), 3)),
                    to: Some((v("1.1.0"), 3))
                },
                Change {
                    service: "new".into(),
                    from: None,
                    to: Some((v("1.0.0"), 2))
                },
                Change {
                    service: "old".into(),
                    from: Some((v("0.1.0"), 1)),
                    to: None
                },
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
