//! The states of an instance and of a service, exactly seed 001's list: every instance is
//! in one of them, and a service's state is the one its rollout or scaling puts it in.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Assigned; its files are being put in place and its ports allocated.
    Provision,
    /// Started, its health not yet proven.
    Ready,
    /// Running and healthy (health passed): it takes traffic.
    Run,
    /// Being replaced by a new version (instance), or rolling out one (service).
    Update,
    /// Being put back to the previous version.
    Rollback,
    /// The instance count is changing.
    Scale,
    /// Being stopped and removed.
    Destroy,
    /// Crashed too often within the restart interval, or never became healthy: not
    /// retried until the operator acts (apply, restart, rollback).
    Failed,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Provision,
        State::Ready,
        State::Run,
        State::Update,
        State::Rollback,
        State::Scale,
        State::Destroy,
        State::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Provision => "Provision",
            State::Ready => "Ready",
            State::Run => "Run",
            State::Update => "Update",
            State::Rollback => "Rollback",
            State::Scale => "Scale",
            State::Destroy => "Destroy",
            State::Failed => "Failed",
        }
    }

    /// Case-insensitive, as an operator may type it in a query.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether an instance in this state should receive traffic.
    pub fn serves(self) -> bool {
        matches!(self, State::Run)
    }

    /// Whether the controller has to step in: nothing in this state heals by itself.
    pub fn needs_operator(self) -> bool {
        matches!(self, State::Failed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<State, D::Error> {
        let s = String::deserialize(d)?;
        State::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown state \"{s}\"; one of Provision, Ready, Run, Update, Rollback, Scale, Destroy, Failed"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
            assert_eq!(State::parse(&s.as_str().to_lowercase()), Some(s));
        }
        assert_eq!(State::parse("Running"), None);
        assert!(State::Run.serves());
        assert!(!State::Ready.serves());
        assert!(State::Failed.needs_operator());
    }
}
