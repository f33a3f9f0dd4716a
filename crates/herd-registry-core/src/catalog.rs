//! The service catalog as a layout over the key space: instance `<id>` of service `<svc>`
//! is the key `services/<svc>/<id>`, its value the JSON of an [`Instance`], attached to the
//! lease its owner keeps alive. Listing a service is a prefix range; watching it is a prefix
//! watch; an instance whose owner stops heartbeating vanishes with its lease.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::KeyValue;

/// Every catalog key starts with this.
pub const SERVICES_PREFIX: &str = "services/";
/// Longest service, instance or lock name.
pub const MAX_NAME_LEN: usize = 128;

/// Why a service, instance or lock name was refused. Names are path segments of keys and
/// URLs, so `/` (which would nest one name inside another's prefix) is never allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name of {len} bytes exceeds {MAX_NAME_LEN}")]
    TooLong { len: usize },
    #[error("character {ch:?} not allowed in a name (only A-Z a-z 0-9 . _ -)")]
    InvalidChar { ch: char },
    #[error("name {0:?} is reserved")]
    Reserved(String),
}

/// Accepts 1 to 128 characters of `[A-Za-z0-9._-]`, except `.` and `..` (they would read as
/// path steps in URLs).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::InvalidChar { ch });
    }
    if name == "." || name == ".." {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

fn default_weight() -> u32 {
    1
}

/// One registered instance of a service. Optional fields default so that a minimal
/// registration is `{"service","id","address","port"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub service: String,
    pub id: String,
    pub address: String,
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A BTreeMap so that the JSON (and so the stored value) is the same bytes everywhere.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// Why an instance was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    #[error("service name: {0}")]
    Service(NameError),
    #[error("instance id: {0}")]
    Id(NameError),
    #[error("address is empty")]
    EmptyAddress,
    #[error("address: {0}")]
    Address(AddressError),
    #[error("port 0 is not a reachable port")]
    ZeroPort,
}

impl Instance {
    pub fn validate(&self) -> Result<(), InstanceError> {
        validate_name(&self.service).map_err(InstanceError::Service)?;
        validate_name(&self.id).map_err(InstanceError::Id)?;
        if self.address.is_empty() {
            return Err(InstanceError::EmptyAddress);
        }
        check_address(&self.address).map_err(InstanceError::Address)?;
        if self.port == 0 {
            return Err(InstanceError::ZeroPort);
        }
        Ok(())
    }

    /// This instance's key.
    pub fn key(&self) -> Result<String, NameError> {
        instance_key(&self.service, &self.id)
    }

    /// The stored value: compact JSON.
    pub fn to_value(&self) -> Vec<u8> {
        // Strings, integers, a list and a string map: serde_json cannot fail on this shape.
        serde_json::to_vec(self).expect("instance serialization is infallible")
    }
}

/// Why an instance's address cannot be connected to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("\"{0}\" is not an IPv4 address (four numbers 0-255)")]
    Ipv4(String),
    #[error("\"{0}\" is not an IPv6 address")]
    Ipv6(String),
    #[error(
        "\"{0}\" is neither an IP address nor a DNS name (letters, digits and '-', labels of \
         1-63 characters, 253 at most)"
    )]
    Name(String),
}

/// An instance address is an IPv4 address, an IPv6 address (without brackets) or a DNS
/// name: what a gateway can connect to. Digits and dots alone are read as IPv4, so
/// `999.1.1.1` is refused rather than looked up as a name.
pub fn check_address(host: &str) -> Result<(), AddressError> {
    if host.contains(':') {
        return host
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| AddressError::Ipv6(host.to_string()));
    }
    if host.bytes().any(|b| b.is_ascii_digit())
        && host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return host
            .parse::<std::net::Ipv4Addr>()
            .map(drop)
            .map_err(|_| AddressError::Ipv4(host.to_string()));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(AddressError::Name(host.to_string()));
    }
    Ok(())
}

/// `services/<service>/<id>`.
pub fn instance_key(service: &str, id: &str) -> Result<String, NameError> {
    validate_name(service)?;
    validate_name(id)?;
    Ok(format!("{SERVICES_PREFIX}{service}/{id}"))
}

/// `services/<service>/`: the range (and watch) prefix of one service. The trailing slash
/// keeps service `api` from matching the instances of `api-v2`.
pub fn service_prefix(service: &str) -> Result<String, NameError> {
    validate_name(service)?;
    Ok(format!("{SERVICES_PREFIX}{service}/"))
}

/// Splits a catalog key into (service, id); `None` for any other key.
pub fn parse_instance_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(SERVICES_PREFIX)?;
    let (service, id) = rest.split_once('/')?;
    (validate_name(service).is_ok() && validate_name(id).is_ok()).then_some((service, id))
}

/// The instances among `kvs` (e.g. a range over [`service_prefix`]), in key order. Entries
/// that are not catalog keys, whose value is not an instance, or whose value names another
/// service or id than its key are skipped: the key is what the catalog indexes by, so a value
/// disagreeing with it must not be routed to.
pub fn parse_instances(kvs: &[KeyValue]) -> Vec<Instance> {
    kvs.iter()
        .filter_map(|kv| {
            let (service, id) = parse_instance_key(&kv.key)?;
            let inst: Instance = serde_json::from_slice(&kv.value).ok()?;
            (inst.service == service && inst.id == id && inst.validate().is_ok()).then_some(inst)
        })
        .collect()
}

/// Distinct service names among catalog keys in `kvs` (e.g. a range over
/// [`SERVICES_PREFIX`]), sorted.
pub fn service_names(kvs: &[KeyValue]) -> Vec<String> {
    let mut names: Vec<String> = kvs
        .iter()
        .filter_map(|kv| parse_instance_key(&kv.key).map(|(s, _)| s.to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests;
