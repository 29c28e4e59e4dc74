//! "Exactly one of these fields": an object such as `{"count": 100}` or `{"time": "60s"}`
//! read into an enum, one variant per field, so a configuration type never holds two
//! `Option`s and a check that only one is set.

use serde::de::{self, Visitor};
use serde::Deserializer;
use std::fmt;

/// Declares an enum whose JSON form is an object with exactly one of the named fields; the
/// field's value is read as the variant's type, so a validated type checks it and the
/// error names `field.count`. Two fields, none, or an unknown one are refused with the list
/// of fields:
///
/// ```
/// meshward_shared::one_of! {
///     /// How a window is sized.
///     #[derive(Debug, PartialEq)]
///     pub enum Window {
///         /// The last N calls.
///         "count" => Count(u32),
///         /// The calls of the last span.
///         "time" => Time(meshward_shared::config::ConfigDuration),
///     }
/// }
/// let parsed: Window = meshward_shared::config::parse_json(br#"{"count": 100}"#).unwrap();
/// assert_eq!(parsed, Window::Count(100));
/// let both = meshward_shared::config::parse_json::<Window>(br#"{"count": 1, "time": "1s"}"#);
/// assert_eq!(both.unwrap_err().to_string(), "give exactly one of count or time");
/// ```
#[macro_export]
macro_rules! one_of {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $field:literal => $variant:ident($ty:ty)),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant($ty)),+
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> ::core::result::Result<Self, D::Error>
            where
                D: $crate::__serde::Deserializer<'de>,
            {
                use $crate::__serde::de::{self, MapAccess};
                const FIELDS: &[&str] = &[$($field),+];
                struct Fields;
                impl<'de> de::Visitor<'de> for Fields {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        f.write_str(&$crate::config::one_of_expecting(FIELDS))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let mut found: Option<$name> = None;
                        while let Some(key) = map.next_key_seed($crate::config::FieldKey(FIELDS, &[]))? {
                            let value = match key.as_str() {
                                $($field => $name::$variant(map.next_value()?),)+
                                other => return Err(de::Error::unknown_field(other, FIELDS)),
                            };
                            if found.replace(value).is_some() {
                                return Err(de::Error::custom($crate::config::one_of_message(FIELDS)));
                            }
                        }
                        found.ok_or_else(|| de::Error::custom($crate::config::one_of_message(FIELDS)))
                    }
                }
                deserializer.deserialize_map(Fields)
            }
        }
    };
}

/// `give exactly one of a, b or c`: the one wording of every [`one_of!`] refusal.
#[doc(hidden)]
pub fn one_of_message(fields: &[&str]) -> String {
    format!("give exactly one of {}", one_of_list(fields))
}

/// What a [`one_of!`] type expects, for a value that is not an object.
#[doc(hidden)]
pub fn one_of_expecting(fields: &[&str]) -> String {
    format!("an object with exactly one of {}", one_of_list(fields))
}

fn one_of_list(fields: &[&str]) -> String {
    match fields.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => fields.join(""),
    }
}

/// A map key that must be one of the known fields (or a retired one, which the caller
/// refuses at its value with the spelling that replaced it): an unknown key fails as it is
/// read, as serde's derived `deny_unknown_fields` does, so the error names the key's path.
pub struct FieldKey(pub &'static [&'static str], pub &'static [&'static str]);

impl<'de> de::DeserializeSeed<'de> for FieldKey {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for FieldKey {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if self.0.contains(&key) || self.1.contains(&key) {
            Ok(key.to_string())
        } else {
            Err(E::unknown_field(key, self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_json, Bounded, ConfigError};
    use serde::Deserialize;

    crate::one_of! {
        #[derive(Debug, PartialEq)]
        enum Sticky {
            "header" => Header(String),
            "cookie" => Cookie(String),
            "percent" => Percent(Bounded<1, 100>),
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Holder {
        #[allow(dead_code)]
        sticky: Sticky,
    }

    fn refusal(json: &str) -> ConfigError {
        match parse_json::<Holder>(json.as_bytes()) {
            Ok(parsed) => panic!("{json} was accepted as {parsed:?}"),
            Err(err) => err,
        }
    }

    #[test]
    fn one_field_picks_its_variant() {
        let parsed: Sticky = parse_json(br#"{"cookie": "session"}"#).unwrap();
        assert_eq!(parsed, Sticky::Cookie("session".into()));
        let parsed: Sticky = parse_json(br#"{"percent": 5}"#).unwrap();
        assert_eq!(parsed, Sticky::Percent(Bounded::new(5).unwrap()));
    }

    #[test]
    fn two_fields_none_or_an_unknown_one_are_refused_at_the_object() {
        let both = refusal(r#"{"sticky": {"header": "x-session", "cookie": "s"}}"#);
        assert_eq!(
            both.to_string(),
            "sticky: give exactly one of header, cookie or percent"
        );
        let none = refusal(r#"{"sticky": {}}"#);
        assert_eq!(none, both);
        let unknown = refusal(r#"{"sticky": {"query": "s"}}"#);
        assert_eq!(unknown.path, "sticky.query");
        assert!(
            unknown.message.starts_with(
                "unknown field `query`, expected one of `header`, `cookie`, `percent`"
            ),
            "{unknown}"
        );
        let not_an_object = refusal(r#"{"sticky": "session"}"#);
        assert!(
            not_an_object
                .message
                .ends_with("expected an object with exactly one of header, cookie or percent"),
            "{not_an_object}"
        );
    }

    #[test]
    fn a_bad_value_is_named_by_its_field() {
        let err = refusal(r#"{"sticky": {"percent": 0}}"#);
        assert_eq!(err.to_string(), "sticky.percent: expected 1 to 100, got 0");
    }
}
