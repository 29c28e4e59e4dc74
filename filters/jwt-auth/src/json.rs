//! Reading a token's JSON strictly: an object that names a member twice is refused, at any
//! depth. JSON parsers disagree on duplicates (serde_json keeps the last, many keep the
//! first), so a backend reading a forwarded payload could otherwise act on a claim this
//! filter never checked.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// Why JSON text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (or nested deeper than serde_json's limit of 128, or a number out of
    /// range).
    Invalid,
    /// An object names the same member twice.
    DuplicateMember,
}

/// A JSON value whose objects have unique member names.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// The error text that marks a duplicate, to tell it from other parse errors.
const DUPLICATE: &str = "duplicate member name";

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(map))
    }
}

/// Parses `bytes` as JSON, refusing any object with a repeated member name.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(value)) => Ok(value),
        Err(err) if err.to_string().starts_with(DUPLICATE) => Err(JsonError::DuplicateMember),
        Err(_) => Err(JsonError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":1,"b":[true,null,"x",{"c":-2.5}],"d":{"e":18446744073709551615}}"#,
            "[]",
            "\"s\"",
            "1e300",
        ] {
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text.as_bytes()), Ok(expected), "{text}");
        }
    }

    #[test]
    fn refuses_a_member_named_twice_at_any_depth() {
        for text in [
            r#"{"sub":"alice","sub":"admin"}"#,
            r#"{"org":{"id":1,"id":2}}"#,
            r#"[{"a":1},{"b":1,"b":1}]"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            assert_eq!(
                parse(text.as_bytes()),
                Err(JsonError::DuplicateMember),
                "{text}"
            );
        }
        assert_eq!(
            parse(br#"{"a":{"x":1},"b":{"x":1}}"#),
            Ok(json!({"a":{"x":1},"b":{"x":1}}))
        );
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in [&b"{"[..], b"nope", b"{\"exp\":1e999}", b"\xff"] {
            assert_eq!(parse(text), Err(JsonError::Invalid));
        }
        let deep = "[".repeat(10_000);
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::Invalid));
    }
}
