//! The `flow.retention` setting: how it is written in `flow.toml` and the environment.
//!
//! Either one duration for every finished status (`retention = "30d"`) or a table per status
//! (`[flow.retention]` with `succeeded`, `failed`, `cancelled`); each value is a duration in
//! humantime's grammar or `forever`. This module only reads and writes that form; pruning is
//! the engine's ([`crate::Flow::prune`]).

use crate::engine::prune::Retention;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What keeps a status's runs forever.
const FOREVER: &str = "forever";

const EXPECTED: &str = "a duration such as `30d`, `12h` or `90min`, or `forever`";

/// One status's retention, as written.
fn parse_keep(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case(FOREVER) {
        return Ok(None);
    }
    humantime::parse_duration(text)
        .map(Some)
        .map_err(|e| format!("`{text}` is not {EXPECTED} ({e})"))
}

fn show_keep(keep: Option<Duration>) -> String {
    match keep {
        Some(keep) => humantime::format_duration(keep).to_string(),
        None => FOREVER.to_owned(),
    }
}

impl Serialize for Retention {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.succeeded == self.failed && self.failed == self.cancelled {
            return s.serialize_str(&show_keep(self.succeeded));
        }
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("succeeded", &show_keep(self.succeeded))?;
        map.serialize_entry("failed", &show_keep(self.failed))?;
        map.serialize_entry("cancelled", &show_keep(self.cancelled))?;
        map.end()
    }
}

/// One status's value in the table form.
struct Keep(Option<Duration>);

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_keep(&text).map(Keep).map_err(de::Error::custom)
    }
}

/// The table form; a status left out is kept forever.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PerStatus {
    #[serde(default)]
    succeeded: Option<Keep>,
    #[serde(default)]
    failed: Option<Keep>,
    #[serde(default)]
    cancelled: Option<Keep>,
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> Visitor<'de> for Form {
            type Value = Retention;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{EXPECTED}, or a table with `succeeded`, `failed` and `cancelled`"
                )
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Retention, E> {
                let keep = parse_keep(text).map_err(E::custom)?;
                Ok(Retention {
                    succeeded: keep,
                    failed: keep,
                    cancelled: keep,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Retention, A::Error> {
                let table = PerStatus::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let keep = |k: Option<Keep>| k.and_then(|k| k.0);
                Ok(Retention {
                    succeeded: keep(table.succeeded),
                    failed: keep(table.failed),
                    cancelled: keep(table.cancelled),
                })
            }
        }
        d.deserialize_any(Form)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_retention_reads_as_one_duration_or_a_table_and_writes_back_the_same() {
        let day = Duration::from_secs(86_400);
        let all: Retention = serde_json::from_str("\"30d\"").unwrap();
        assert_eq!(all, Retention::all(30 * day));
        let table: Retention =
            serde_json::from_str(r#"{"succeeded": "7d", "failed": "forever"}"#).unwrap();
        assert_eq!(
            table,
            Retention {
                succeeded: Some(7 * day),
                ..Retention::FOREVER
            }
        );
        for value in [Retention::FOREVER, all, table] {
            let text = serde_json::to_string(&value).unwrap();
            assert_eq!(serde_json::from_str::<Retention>(&text).unwrap(), value);
        }
        assert_eq!(
            serde_json::to_string(&Retention::FOREVER).unwrap(),
            "\"forever\""
        );

        let bad = serde_json::from_str::<Retention>("\"a month\"").unwrap_err();
        assert!(
            bad.to_string().contains("`a month` is not a duration"),
            "{bad}"
        );
        let typo = serde_json::from_str::<Retention>(r#"{"succeded": "1d"}"#).unwrap_err();
        assert!(typo.to_string().contains("succeded"), "{typo}");
    }
}
