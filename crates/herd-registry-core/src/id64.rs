//! 64-bit identifiers on the JSON wire. Lease ids and snowflake ids use all 64 bits, and a
//! JSON number above 2^53 is rounded by JavaScript and jq (two distinct ids print equal), so
//! answers write them as decimal strings, as etcd's JSON gateway does. Requests may send a
//! string or a number: both are read exactly.
//!
//! `#[serde(with = "id64")]` on a `u64`, `#[serde(with = "id64::option")]` on an
//! `Option<u64>`; `deserialize_with` alone where the stored form must stay a number (the
//! Raft log) but a request may bring either.

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(IdVisitor)
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a 64-bit id as a decimal string (\"1234\") or a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("id {v} is negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        Err(E::custom(format!(
            "id {v} is not an integer; send it as a string, e.g. \"1234\""
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom(format!("id \"{v}\" is not a decimal integer")));
        }
        v.parse()
            .map_err(|_| E::custom(format!("id \"{v}\" does not fit in 64 bits")))
    }
}

/// The same for `Option<u64>`: `null` (or an absent field, with `#[serde(default)]`) is None.
pub mod option {
    use super::IdVisitor;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.collect_str(id),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(OptVisitor)
    }

    struct OptVisitor;

    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null or a 64-bit id")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(IdVisitor).map(Some)
        }
    }
}

/// The same for a list of ids.
pub mod list {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ids: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(ids.len()))?;
        for id in ids {
            seq.serialize_element(&id.to_string())?;
        }
        seq.end()
    }

    #[derive(Deserialize)]
    struct One(#[serde(with = "super")] u64);

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        Vec::<One>::deserialize(d).map(|v| v.into_iter().map(|One(id)| id).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(with = "super")]
        id: u64,
        #[serde(with = "super::option", default)]
        lease: Option<u64>,
        #[serde(with = "super::list", default)]
        ids: Vec<u64>,
    }

    #[test]
    fn ids_above_2_pow_53_survive_as_strings() {
        let big = (1u64 << 53) + 1;
        let t = T {
            id: big,
            lease: Some(u64::MAX),
            ids: vec![big, big + 1],
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(
            text,
            r#"{"id":"9007199254740993","lease":"18446744073709551615","ids":["9007199254740993","9007199254740994"]}"#
        );
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), t);
        let none = serde_json::to_string(&T { lease: None, ..t }).unwrap();
        assert!(none.contains(r#""lease":null"#), "{none}");
    }

    #[test]
    fn requests_may_send_numbers_or_strings_and_nothing_else() {
        let read = |s: &str| serde_json::from_str::<T>(s).map_err(|e| e.to_string());
        let num = read(r#"{"id":7,"lease":8,"ids":[1,"2"]}"#).unwrap();
        assert_eq!((num.id, num.lease, num.ids), (7, Some(8), vec![1, 2]));
        assert_eq!(read(r#"{"id":"7","lease":null}"#).unwrap().lease, None);
        assert_eq!(read(r#"{"id":"7"}"#).unwrap().lease, None);
        for (bad, says) in [
            (r#"{"id":-1}"#, "negative"),
            (r#"{"id":1.5}"#, "not an integer"),
            (r#"{"id":"0x10"}"#, "not a decimal integer"),
            (r#"{"id":" 1"}"#, "not a decimal integer"),
            (r#"{"id":""}"#, "not a decimal integer"),
            (r#"{"id":"18446744073709551616"}"#, "64 bits"),
            (r#"{"id":true}"#, "64-bit id"),
        ] {
            let e = read(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
