//! The hash chain: an entry's canonical content and how its hash links it to
//! the entry before.
//!
//! `hash(n) = SHA-256(hash(n-1) ‖ canonical(n))`, where `hash(0)` is 32 zero
//! bytes and `canonical(n)` is the UTF-8 JSON of
//!
//! ```text
//! {"action","actor":{"id","type"},"after","at","before","operator","request_id","seq","target"}
//! ```
//!
//! written compactly (no whitespace) with the keys of every object, nested
//! ones included, in byte order; strings and numbers as `serde_json` writes
//! them. `at` is RFC 3339 in UTC with exactly six fractional digits
//! (`2026-11-27T13:34:09.123456Z`): PostgreSQL keeps microseconds, so the time
//! read back renders to the same text. `operator` is the operator's numeric
//! id (null for platform-wide entries), which never changes, unlike what a
//! reader might rename. Absent `before`, `after`, `request_id` and actor id
//! are `null`.
//!
//! `before` and `after` are stored as JSONB, which keeps the value but not
//! its text: key order and number spelling change (`1e3` comes back as
//! `1000`). Both sides parse to the same `serde_json` value, except negative
//! zero, which JSONB turns into zero; it is written as zero here, so the hash
//! is the same before and after the round trip.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A link of the chain: SHA-256 output.
pub type Hash = [u8; 32];

/// The hash "before" the first entry.
pub const GENESIS: Hash = [0; 32];

/// Everything an entry's hash covers, borrowed from an entry being written or
/// one read back.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub operator: Option<i16>,
    pub actor_type: &'a str,
    pub actor_id: Option<&'a str>,
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<&'a Value>,
    pub after: Option<&'a Value>,
    pub request_id: Option<&'a str>,
}

/// The hash of `content` following the entry whose hash is `previous`.
pub fn link(previous: &Hash, content: &Content<'_>) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical(content).as_bytes());
    hasher.finalize().into()
}

/// `at` as the canonical form writes it.
pub fn render_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The canonical JSON text of `content`.
pub fn canonical(content: &Content<'_>) -> String {
    let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::String(s.to_owned()));
    let value = serde_json::json!({
        "seq": content.seq,
        "at": render_time(content.at),
        "operator": content.operator,
        "actor": {"type": content.actor_type, "id": text(content.actor_id)},
        "action": content.action,
        "target": content.target,
        "before": content.before,
        "after": content.after,
        "request_id": text(content.request_id),
    });
    let mut out = String::with_capacity(256);
    write_canonical(&value, &mut out);
    out
}

/// Compact JSON with every object's keys in byte order, whatever order the
/// map keeps them in.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Number(n) if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) && n.is_f64() => {
            out.push_str("0.0");
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut String) {
    // Writing a JSON scalar to a String cannot fail.
    let _ = write!(out, "{value}");
}

/// Lower-case hex of a hash, as the API shows it.
pub fn hex(hash: &Hash) -> String {
    hex::encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn content<'a>(before: Option<&'a Value>, after: Option<&'a Value>) -> Content<'a> {
        Content {
            seq: 7,
            at: DateTime::from_timestamp_micros(1_795_786_449_000_120).unwrap(),
            operator: Some(1),
            actor_type: "staff",
            actor_id: Some("s-1"),
            action: "player.status",
            target: "player:alice",
            before,
            after,
            request_id: None,
        }
    }

    #[test]
    fn the_canonical_form_sorts_keys_at_every_depth_and_has_no_whitespace() {
        let after = json!({"z": 1, "a": {"y": [true, null], "b": "é\"\n"}});
        assert_eq!(
            canonical(&content(None, Some(&after))),
            r#"{"action":"player.status","actor":{"id":"s-1","type":"staff"},"after":{"a":{"b":"é\"\n","y":[true,null]},"z":1},"at":"2026-11-27T13:34:09.000120Z","before":null,"operator":1,"request_id":null,"seq":7,"target":"player:alice"}"#
        );
    }

    #[test]
    fn times_have_six_fractional_digits_even_when_whole() {
        let whole = DateTime::from_timestamp(1_795_786_449, 0).unwrap();
        assert_eq!(render_time(whole), "2026-11-27T13:34:09.000000Z");
    }

    #[test]
    fn a_value_that_went_through_jsonb_hashes_as_the_one_written() {
        let written = json!({"b": -0.0, "a": 1e3, "c": [1.5, -2]});
        // What PostgreSQL answers for it: keys reordered, numbers respelled.
        let read_back: Value = serde_json::from_str(r#"{"a": 1000.0, "b": 0.0, "c": [1.5, -2]}"#).unwrap();
        assert_eq!(
            link(&GENESIS, &content(Some(&written), None)),
            link(&GENESIS, &content(Some(&read_back), None))
        );
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let base = content(None, None);
        let hash = link(&GENESIS, &base);
        let before = json!({"status": "active"});
        let variants = [
            Content { seq: 8, ..base },
            Content { at: base.at + chrono::TimeDelta::microseconds(1), ..base },
            Content { operator: None, ..base },
            Content { actor_type: "player", ..base },
            Content { actor_id: None, ..base },
            Content { action: "player.create", ..base },
            Content { target: "player:bob", ..base },
            Content { before: Some(&before), ..base },
            Content { after: Some(&before), ..base },
            Content { request_id: Some("r"), ..base },
        ];
        for variant in variants {
            assert_ne!(link(&GENESIS, &variant), hash, "{variant:?}");
        }
        assert_ne!(link(&[1; 32], &base), hash);
    }
}
