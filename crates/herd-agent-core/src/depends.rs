//! `depends_on` (SPEC §4): each service names the versions of others it works with, as
//! semver ranges. A set of versions is consistent when every range is met; an apply that
//! breaks one is refused with the reason, and a rollback that would break a dependent
//! takes the dependent back with it, to the version it had in the revision rolled back to.

use crate::revision::{Architecture, ServiceEntry};
use semver::{Version, VersionReq};
use std::collections::BTreeMap;
use std::fmt;

/// One unmet range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The service whose `depends_on` is not met.
    pub service: String,
    pub needs: String,
    pub range: VersionReq,
    /// The version of `needs` in the set; None when it is not deployed.
    pub found: Option<Version>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.found {
            Some(v) => write!(
                f,
                "{} needs {} {}, which would be at {v}",
                self.service, self.needs, self.range
            ),
            None => write!(
                f,
                "{} needs {} {}, which is not deployed",
                self.service, self.needs, self.range
            ),
        }
    }
}

/// Every unmet range in a set of services, in name order.
pub fn violations(services: &BTreeMap<String, ServiceEntry>) -> Vec<Violation> {
    let mut out = Vec::new();
    for (name, entry) in services {
        for (needs, range) in &entry.depends_on {
            let found = services.get(needs).map(|e| e.version.clone());
            if !found.as_ref().is_some_and(|v| range.matches(v)) {
                out.push(Violation {
                    service: name.clone(),
                    needs: needs.clone(),
                    range: range.clone(),
                    found,
                });
            }
        }
    }
    out
}

/// Check an apply: `current` with `service` set to `entry`. Ok when every range holds,
/// including the ones other services have on this one.
pub fn check_apply(
    current: &Architecture,
    service: &str,
    entry: ServiceEntry,
) -> Result<(), Vec<Violation>> {
    let mut next = current.services.clone();
    next.insert(service.to_string(), entry);
    let v = violations(&next);
    if v.is_empty() {
        Ok(())
    } else {
        Err(v)
    }
}

/// A rollback's plan: the services to set, each to its entry in `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPlan {
    /// (service, version now, version after), `service` first, then the dependents.
    pub steps: Vec<(String, Version, Version)>,
}

/// Roll `service` back to what it was in revision `to`. Dependents whose range the older
/// version breaks are rolled back too, to their own version in `to`, and so on
/// transitively. Refused (with what would stay broken) when that cannot make the set
/// consistent — a dependent that did not exist in `to`, say.
pub fn plan_rollback(
    current: &Architecture,
    to: &Architecture,
    service: &str,
) -> Result<RollbackPlan, Vec<Violation>> {
    let mut next = current.services.clone();
    let mut steps = Vec::new();
    let mut queue = vec![service.to_string()];
    while let Some(name) = queue.pop() {
        let (Some(now), Some(then)) = (current.services.get(&name), to.services.get(&name)) else {
            continue;
        };
        if steps
            .iter()
            .any(|(s, _, _): &(String, Version, Version)| *s == name)
        {
            continue;
        }
        next.insert(name.clone(), then.clone());
        if now.version != then.version || now.depends_on != then.depends_on {
            steps.push((name.clone(), now.version.clone(), then.version.clone()));
        }
        // Whoever now depends on `name` and is broken by the older version goes back too.
        for v in violations(&next) {
            if v.needs == name && !queue.contains(&v.service) {
                queue.push(v.service);
            }
        }
    }
    let remaining = violations(&next);
    if remaining.is_empty() {
        Ok(RollbackPlan { steps })
    } else {
        Err(remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: &str, deps: &[(&str, &str)]) -> ServiceEntry {
        ServiceEntry {
            version: Version::parse(v).unwrap(),
            count: 1,
            depends_on: deps
                .iter()
                .map(|(s, r)| (s.to_string(), VersionReq::parse(r).unwrap()))
                .collect(),
        }
    }

    fn arch(rev: u64, s: &[(&str, ServiceEntry)]) -> Architecture {
        Architecture {
            revision: rev,
            services: s.iter().map(|(n, e)| (n.to_string(), e.clone())).collect(),
        }
    }

    #[test]
    fn an_apply_that_breaks_a_range_is_refused_with_the_reason() {
        let now = arch(
            3,
            &[
                ("db-proxy", entry("2.3.0", &[])),
                ("api", entry("1.4.2", &[("db-proxy", ">=2.1, <3")])),
            ],
        );
        assert_eq!(check_apply(&now, "db-proxy", entry("2.9.1", &[])), Ok(()));
        let err = check_apply(&now, "db-proxy", entry("3.0.0", &[])).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(
            err[0].to_string(),
            "api needs db-proxy >=2.1, <3, which would be at 3.0.0"
        );
        let err = check_apply(&now, "web", entry("1.0.0", &[("cache", "^1")])).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "web needs cache ^1, which is not deployed"
        );
    }

    #[test]
    fn a_rollback_takes_broken_dependents_back_with_it() {
        // Revision 1: db 2.0, api 1.0 (needs db ^2), web 1.0 (needs api ^1). Revision 2:
        // db 3.0, api 2.0 (needs db ^3), web 1.1 (needs api >=2). Rolling db back to
        // revision 1 breaks api; api's return to 1.0 breaks web, which goes back too.
        let r1 = arch(
            1,
            &[
                ("db", entry("2.0.0", &[])),
                ("api", entry("1.0.0", &[("db", "^2")])),
                ("web", entry("1.0.0", &[("api", "^1")])),
            ],
        );
        let r2 = arch(
            2,
            &[
                ("db", entry("3.0.0", &[])),
                ("api", entry("2.0.0", &[("db", "^3")])),
                ("web", entry("1.1.0", &[("api", ">=2")])),
            ],
        );
        let plan = plan_rollback(&r2, &r1, "db").unwrap();
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(
            plan.steps,
            vec![
                ("db".to_string(), v("3.0.0"), v("2.0.0")),
                ("api".to_string(), v("2.0.0"), v("1.0.0")),
                ("web".to_string(), v("1.1.0"), v("1.0.0")),
            ]
        );
        // A dependent that did not exist then cannot go back: refused, with the reason.
        let r2b = arch(
            2,
            &[
                ("db", entry("3.0.0", &[])),
                ("api", entry("2.0.0", &[("db", "^3")])),
                ("jobs", entry("1.0.0", &[("db", "^3")])),
            ],
        );
        let err = plan_rollback(&r2b, &r1, "db").unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "jobs needs db ^3, which would be at 2.0.0"
        );
        // Rolling back a service whose old version needs an older dependency is refused:
        // a rollback takes dependents along, never the services depended on.
        let err = plan_rollback(&r2, &r1, "web").unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "web needs api ^1, which would be at 2.0.0"
        );
        // With nothing depending on it, a rollback is the service alone.
        let one = |v: &str| arch(0, &[("static", entry(v, &[])), ("db", entry("3.0.0", &[]))]);
        let plan = plan_rollback(&one("1.1.0"), &one("1.0.0"), "static").unwrap();
        assert_eq!(
            plan.steps,
            vec![("static".to_string(), v("1.1.0"), v("1.0.0"))]
        );
    }
}
