//! Plugin configuration: JSON parsed into a filter's typed config, unknown fields refused,
//! and every error naming the field path and what was expected.

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A configuration the filter refuses. `Display` reads
/// `rules[1].limit.per: expected a duration such as "1s" or "500ms", got "fast"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the problem is, as `a.b[2].c`; empty for the document itself.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error, seen from one level up: `inner.within("rules[1]")`.
    pub fn within(mut self, parent: &str) -> Self {
        self.path = if self.path.is_empty() {
            parent.to_string()
        } else if self.path.starts_with('[') {
            format!("{parent}{}", self.path)
        } else {
            format!("{parent}.{}", self.path)
        };
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses a JSON configuration. Put `#[serde(deny_unknown_fields)]` on every struct so a
/// misspelt field is an error, not a silently ignored default. Empty input parses as `{}`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        // A syntax error has no field to name (serde_path_to_error shows `?`); the message
        // carries the line and column instead.
        let path = if path == "." || inner.is_syntax() || inner.is_eof() {
            String::new()
        } else {
            path
        };
        ConfigError::new(path, clean_serde_message(&inner))
    })?;
    de.end()
        .map_err(|err| ConfigError::new("", clean_serde_message(&err)))?;
    Ok(value)
}

/// serde_json appends " at line L column C"; keep it only for syntax errors, where it helps.
fn clean_serde_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if err.is_syntax() || err.is_eof() {
        return format!("invalid JSON: {text}");
    }
    match text.rfind(" at line ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_string(),
        None => text,
    }
}

/// A duration written as `"250ms"`, `"1s"`, `"1.5s"`, `"2m"`, `"1h"` or `"500us"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text)
            .map(ConfigDuration)
            .ok_or_else(|| format!("expected a duration such as \"1s\" or \"500ms\", got {text:?}"))
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let nanos_per_unit: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let nanos = value * nanos_per_unit;
    // Ten years is far beyond any sensible proxy timeout and keeps the cast exact.
    if !nanos.is_finite() || nanos > 3.2e17 {
        return None;
    }
    Some(Duration::from_nanos(nanos.round() as u64))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ConfigDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A whole number from `MIN` to `MAX`, refused in the one wording every filter uses:
/// `expected 1 to 100, got 0`. A `u32`: every count a filter configures fits, and it keeps
/// a raw configuration as small as the plain integers it replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bounded<const MIN: u32, const MAX: u32>(u32);

impl<const MIN: u32, const MAX: u32> Bounded<MIN, MAX> {
    /// Checks `n`.
    pub fn new(n: u32) -> Result<Self, String> {
        if (MIN..=MAX).contains(&n) {
            Ok(Bounded(n))
        } else {
            Err(format!("expected {MIN} to {MAX}, got {n}"))
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        let refused = || format!("expected {MIN} to {MAX}, got {n}");
        let n = u32::try_from(n).map_err(|_| serde::de::Error::custom(refused()))?;
        Bounded::new(n).map_err(serde::de::Error::custom)
    }
}

/// A duration from `MIN_NANOS` to `MAX_NANOS`, written as [`ConfigDuration`] is and refused
/// in the same wording as [`Bounded`]: `expected 1ms to 60s, got 500µs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedDuration<const MIN_NANOS: u64, const MAX_NANOS: u64>(Duration);

impl<const MIN_NANOS: u64, const MAX_NANOS: u64> BoundedDuration<MIN_NANOS, MAX_NANOS> {
    /// Checks `duration`.
    pub fn new(duration: Duration) -> Result<Self, String> {
        let (min, max) = (
            Duration::from_nanos(MIN_NANOS),
            Duration::from_nanos(MAX_NANOS),
        );
        if (min..=max).contains(&duration) {
            Ok(BoundedDuration(duration))
        } else {
            Err(format!(
                "expected {} to {}, got {}",
                human(min),
                human(max),
                human(duration)
            ))
        }
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de, const MIN_NANOS: u64, const MAX_NANOS: u64> Deserialize<'de>
    for BoundedDuration<MIN_NANOS, MAX_NANOS>
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ConfigDuration(duration) = ConfigDuration::deserialize(deserializer)?;
        BoundedDuration::new(duration).map_err(serde::de::Error::custom)
    }
}

/// A duration as a user writes one: `1h`, `2m`, `30s`, `250ms`, else Rust's `1.5s`, `500µs`.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_nanos() == 0 && secs > 0 {
        if secs.is_multiple_of(3600) {
            return format!("{}h", secs / 3600);
        }
        if secs.is_multiple_of(60) && secs >= 600 {
            return format!("{}m", secs / 60);
        }
    }
    format!("{duration:?}")
}

/// A list with at least one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonEmpty<T>(Vec<T>);

impl<T> NonEmpty<T> {
    /// The items.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// For `#[serde(deserialize_with = "NonEmpty::deserialize_vec")]` on a `Vec` field (or
    /// newtype variant) that must hold at least one item.
    pub fn deserialize_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        T: Deserialize<'de>,
    {
        NonEmpty::deserialize(deserializer).map(NonEmpty::into_vec)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(deserializer)?;
        if items.is_empty() {
            return Err(serde::de::Error::custom("expected at least one item"));
        }
        Ok(NonEmpty(items))
    }
}

/// An object holding exactly one of the keys that name `E`'s variants, beside the fields of
/// `F`: "exactly one of" read as an enum, not as `Option`s and a check. `E` is a serde enum
/// of newtype variants in serde's default form (`#[serde(rename_all = "lowercase")] enum
/// Place { Header(HeaderName), Cookie(CookieName) }`); `F` is a derived struct
/// ([`NoFields`] when the choice stands alone). `{"header": "x-token", "prefix": "Bearer "}`
/// reads as `OneOf { choice: Place::Header(..), fields: .. }`. No choice, or two, is refused
/// at the object's path as `give exactly one of header or cookie`; a key that is neither a
/// choice nor a field is refused at its own path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneOf<E, F = NoFields> {
    /// The variant the object's key chose.
    pub choice: E,
    /// The object's other fields.
    pub fields: F,
}

/// Nothing beside a [`OneOf`]'s choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

impl<'de, E: Deserialize<'de>, F: Deserialize<'de>> Deserialize<'de> for OneOf<E, F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let keys = Names {
            variants: names_of::<E>().variants,
            fields: names_of::<F>().fields,
        };
        let mut choice = None;
        let fields = F::deserialize(Split {
            inner: deserializer,
            keys,
            choice: &mut choice,
        })?;
        // Split refused an object without a choice while reading it, where the error
        // gets the object's path; this only covers a non-object F accepted some other way.
        let choice = choice.ok_or_else(|| de::Error::custom(keys.exactly_one()))?;
        Ok(OneOf { choice, fields })
    }
}

/// The names a derived `Deserialize` declares: an enum's variants, a struct's fields. For a
/// [`OneOf`], the keys its object may hold.
#[derive(Clone, Copy, Default)]
struct Names {
    variants: &'static [&'static str],
    fields: &'static [&'static str],
}

impl Names {
    fn exactly_one(self) -> String {
        format!("give exactly one of {}", either(self.variants))
    }
}

fn names_of<'de, T: Deserialize<'de>>() -> Names {
    let mut names = Names::default();
    // The probe refuses every read; deserializing only hands it the declared names.
    let _refused = T::deserialize(NameProbe(&mut names));
    names
}

struct NameProbe<'n>(&'n mut Names);

impl<'de> Deserializer<'de> for NameProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only names are read"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.variants = variants;
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.fields = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// `a`, `a or b`, `a, b or c`.
fn either(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The object as `F` reads it, with the choice's entry taken out as it passes: wraps the
/// object's deserializer, then its visitor, then its map.
struct Split<'c, D, E> {
    inner: D,
    keys: Names,
    choice: &'c mut Option<E>,
}

impl<'de, D: Deserializer<'de>, E: Deserialize<'de>> Deserializer<'de> for Split<'_, D, E> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(Split {
            inner: visitor,
            keys: self.keys,
            choice: self.choice,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, V: Visitor<'de>, E: Deserialize<'de>> Visitor<'de> for Split<'_, V, E> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with one of {}", either(self.keys.variants))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let mut entries = Split {
            inner: map,
            keys: self.keys,
            choice: self.choice,
        };
        let value = self.inner.visit_map(&mut entries)?;
        if entries.choice.is_none() {
            return Err(de::Error::custom(self.keys.exactly_one()));
        }
        Ok(value)
    }
}

impl<'de, A: MapAccess<'de>, E: Deserialize<'de>> MapAccess<'de> for Split<'_, A, E> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            let key = self.inner.next_key_seed(KeySeed {
                keys: self.keys,
                seed: &mut seed,
            })?;
            match key {
                None => return Ok(None),
                Some(Ok(field)) => return Ok(Some(field)),
                Some(Err(variant)) => {
                    let chosen = E::deserialize(Entry {
                        key: variant,
                        map: &mut self.inner,
                    })?;
                    if self.choice.replace(chosen).is_some() {
                        return Err(de::Error::custom(self.keys.exactly_one()));
                    }
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// Reads one key: a field's goes to `F`'s seed (`Ok`), a choice's is handed back (`Err`),
/// any other is refused here, so its error names the key's path.
struct KeySeed<'s, K> {
    keys: Names,
    seed: &'s mut Option<K>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Result<K::Value, &'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(deserializer)?;
        if let Some(choice) = self.keys.variants.iter().find(|c| **c == key) {
            return Ok(Err(choice));
        }
        match self.seed.take() {
            Some(seed) if self.keys.fields.contains(&key.as_str()) => seed
                .deserialize(de::value::StrDeserializer::new(&key))
                .map(Ok),
            _ => {
                let known: Vec<String> = self
                    .keys
                    .fields
                    .iter()
                    .chain(self.keys.variants)
                    .map(|k| format!("`{k}`"))
                    .collect();
                Err(de::Error::custom(format!(
                    "unknown field `{key}`, expected one of {}",
                    known.join(", ")
                )))
            }
        }
    }
}

/// The choice's entry, read as an externally tagged enum: the key names the variant, the
/// value is its content.
struct Entry<'m, A> {
    key: &'static str,
    map: &'m mut A,
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Entry<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, A: MapAccess<'de>> de::EnumAccess<'de> for Entry<'_, A> {
    type Error = A::Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), A::Error> {
        let variant = seed.deserialize(de::value::StrDeserializer::new(self.key))?;
        Ok((variant, self))
    }
}

impl<'de, A: MapAccess<'de>> de::VariantAccess<'de> for Entry<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        Err(de::Error::custom("a OneOf choice holds a value"))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, A::Error> {
        Err(de::Error::custom("a OneOf choice holds one value"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, A::Error> {
        Err(de::Error::custom("a OneOf choice holds one value"))
    }
}

/// Checks a header value a filter will send: no CR, LF or NUL, which would split or
/// truncate the header on the wire.
pub fn check_header_value(path: &str, value: &str) -> Result<(), ConfigError> {
    header_value(value).map_err(|message| ConfigError::new(path, message))
}

/// Checks a header name: a non-empty HTTP token, lowercase as Envoy stores it.
pub fn check_header_name(path: &str, name: &str) -> Result<(), ConfigError> {
    header_name(name).map_err(|message| ConfigError::new(path, message))
}

/// A validated value read from a JSON string: the text is checked by `check`, and a refusal
/// names the field (serde_path_to_error supplies the path) and what was expected.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `text`; the error says what was expected.
            pub fn parse(text: &str) -> Result<Self, String> {
                $check(text).map(|()| $name(text.to_string()))
            }

            /// The checked text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The checked text, without a copy.
            pub fn into_string(self) -> String {
                self.0
            }

            /// For `#[serde(deserialize_with = "...")]` on a `String` field checked as this.
            pub fn deserialize_string<'de, D: Deserializer<'de>>(
                deserializer: D,
            ) -> Result<String, D::Error> {
                $name::deserialize(deserializer).map($name::into_string)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

checked_string!(
    /// A header name as Envoy stores it: a lowercase HTTP token.
    HeaderName,
    header_name
);

checked_string!(
    /// A header value a filter sends or compares: no CR, LF or NUL.
    HeaderValue,
    header_value
);

checked_string!(
    /// An HTTP method, uppercase as Envoy gives `:method` (`GET`, `M-SEARCH`).
    Method,
    method
);

checked_string!(
    /// A request path: starts with `/`, has no query (`?`) or fragment (`#`).
    RequestPath,
    request_path
);

checked_string!(
    /// Text a filter names something by: an Envoy cluster, a rate limit domain, an
    /// audience, a query parameter. Not empty, and no CR, LF or NUL (it may reach a header
    /// or a log line).
    Text,
    text
);

checked_string!(
    /// A cookie name: an HTTP token (letters, digits and ``!#$%&'*+-.^_`|~``), any case.
    CookieName,
    cookie_name
);

fn header_name(name: &str) -> Result<(), String> {
    if !is_token(name) {
        return Err(format!(
            "expected a header name (letters, digits and -), got {name:?}"
        ));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("header names are lowercase in Envoy, got {name:?}"));
    }
    Ok(())
}

fn is_token(text: &str) -> bool {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !text.is_empty() && text.bytes().all(tchar)
}

fn cookie_name(name: &str) -> Result<(), String> {
    if !is_token(name) {
        return Err(format!(
            "expected a cookie name (letters, digits and -_.), got {name:?}"
        ));
    }
    Ok(())
}

fn text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".to_string());
    }
    header_value(text)
}

fn header_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("must not contain CR, LF or NUL characters".to_string());
    }
    Ok(())
}

fn method(method: &str) -> Result<(), String> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
        return Err(format!(
            "expected an uppercase method such as \"GET\", got {method:?}"
        ));
    }
    Ok(())
}

fn request_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/')
        || path.contains(['?', '#'])
        || path.bytes().any(|b| !b.is_ascii_graphic())
    {
        return Err(format!(
            "expected a path starting with '/', without a query, spaces or control characters, got {path:?}"
        ));
    }
    Ok(())
}

/// A host a rule selects, compared with the request's host lowercase, without its port or
/// a trailing dot. Written `api.example.com`, `*.example.com` (any subdomain, not the name
/// itself) or an IP literal (`10.0.0.1`, `[::1]` or `::1`, kept in brackets as Envoy writes
/// it in `:authority`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// This host exactly.
    Exact(String),
    /// Any host ending in this suffix, which starts with a dot.
    Suffix(String),
}

impl HostPattern {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        let refused = || {
            format!(
                "expected a host such as \"api.example.com\" or \"*.example.com\", without a port, got {text:?}"
            )
        };
        let bare_v6 = lower
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(&lower);
        if bare_v6.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(HostPattern::Exact(format!("[{bare_v6}]")));
        }
        let (suffix, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let label = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name.split('.').all(label) {
            return Err(refused());
        }
        Ok(if suffix {
            HostPattern::Suffix(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// Whether `host` (already lowercase, without port or trailing dot, as
    /// [`crate::matching::request_host`] gives it) is selected.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(name) => host == name.as_bytes(),
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_bytes())
            }
        }
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HostPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The compiled size one configured regex may take, so a config cannot make a worker
/// build a huge automaton.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regex that must match the whole input, as Envoy's `safe_regex` (RE2) does: the `regex`
/// crate, which like RE2 runs in time linear in the input, with a bounded compiled size.
#[derive(Clone, Debug)]
pub struct MatchRegex(regex::bytes::Regex);

impl MatchRegex {
    /// Compiles `pattern`, anchored at both ends.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(MatchRegex)
            .map_err(|e| format!("not a valid regex: {}", one_line(&e.to_string())))
    }

    /// Whether the regex matches all of `input`.
    pub fn is_match(&self, input: &[u8]) -> bool {
        self.0.is_match(input)
    }

    /// The anchored pattern.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for MatchRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MatchRegex {}

impl<'de> Deserialize<'de> for MatchRegex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        MatchRegex::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The regex crate explains errors over several lines with a caret; a log line wants one.
fn one_line(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        #[allow(dead_code)]
        per: ConfigDuration,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        rules: Vec<Rule>,
    }

    #[test]
    fn names_the_field_path_and_the_expected_form() {
        let err = parse_json::<Doc>(br#"{"rules":[{"per":"1s"},{"per":"fast"}]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"rules[1].per: expected a duration such as "1s" or "500ms", got "fast""#
        );
    }

    #[test]
    fn refuses_unknown_fields_by_name() {
        let err = parse_json::<Doc>(br#"{"rulez":[]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `rulez`"), "{err}");
    }

    #[test]
    fn reports_syntax_errors_with_their_position() {
        let err = parse_json::<Doc>(b"{\"rules\": [").unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON"), "{err}");
        assert!(err.message.contains("line 1 column"), "{err}");
    }

    #[test]
    fn empty_config_is_the_empty_object() {
        assert!(parse_json::<Doc>(b"").unwrap().rules.is_empty());
        assert!(parse_json::<Doc>(b"  \n").unwrap().rules.is_empty());
    }

    #[test]
    fn parses_durations_in_every_unit() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(ConfigDuration::parse("250ms").unwrap().0, ms(250));
        assert_eq!(ConfigDuration::parse("1s").unwrap().0, ms(1000));
        assert_eq!(ConfigDuration::parse("1.5s").unwrap().0, ms(1500));
        assert_eq!(ConfigDuration::parse("2m").unwrap().0, ms(120_000));
        assert_eq!(ConfigDuration::parse("1h").unwrap().0, ms(3_600_000));
        assert_eq!(
            ConfigDuration::parse("500us").unwrap().0,
            Duration::from_micros(500)
        );
        for bad in [
            "",
            "1",
            "s",
            "1 s",
            "-1s",
            "1.s",
            ".5s",
            "1e3s",
            "1d",
            "99999999999h",
        ] {
            assert!(
                ConfigDuration::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn bounds_are_refused_in_one_wording() {
        assert_eq!(Bounded::<1, 100>::new(100).unwrap().get(), 100);
        assert_eq!(
            Bounded::<1, 100>::new(0).unwrap_err(),
            "expected 1 to 100, got 0"
        );
        const MS: u64 = 1_000_000;
        type Timeout = BoundedDuration<MS, { 60_000 * MS }>;
        assert_eq!(
            Timeout::new(Duration::from_millis(60_000)).unwrap().get(),
            Duration::from_secs(60)
        );
        assert_eq!(
            Timeout::new(Duration::from_micros(500)).unwrap_err(),
            "expected 1ms to 60s, got 500µs"
        );
        type Window = BoundedDuration<1, { 3_600_000 * MS }>;
        assert_eq!(
            Window::new(Duration::from_secs(7200)).unwrap_err(),
            "expected 1ns to 1h, got 2h"
        );
    }

    #[test]
    fn checked_fields_name_their_path() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Limits {
            attempts: Bounded<1, 100>,
            names: NonEmpty<HeaderName>,
        }
        let refused = |json: &str| {
            parse_json::<Limits>(json.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(r#"{"attempts": 101, "names": ["a"]}"#),
            "attempts: expected 1 to 100, got 101"
        );
        assert_eq!(
            refused(r#"{"attempts": 1, "names": []}"#),
            "names: expected at least one item"
        );
        assert!(refused(r#"{"attempts": 1, "names": ["A"]}"#)
            .starts_with("names[0]: header names are lowercase"));
        assert!(
            refused(r#"{"attempts": -1, "names": ["a"]}"#).starts_with("attempts: invalid value")
        );
    }

    #[test]
    fn one_of_reads_exactly_one_choice_beside_the_other_fields() {
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Place {
            Header(HeaderName),
            Cookie(String),
        }
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            prefix: Option<String>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            from: Vec<OneOf<Place, Fields>>,
            #[serde(default)]
            sticky: Option<OneOf<Place>>,
        }
        let doc = parse_json::<Doc>(
            br#"{"from": [{"prefix": "Bearer ", "header": "authorization"}, {"cookie": "t"}],
                 "sticky": {"cookie": "s"}}"#,
        )
        .unwrap();
        assert_eq!(
            doc.from[0].choice,
            Place::Header(HeaderName::parse("authorization").unwrap())
        );
        assert_eq!(doc.from[0].fields.prefix.as_deref(), Some("Bearer "));
        assert_eq!(doc.from[1].choice, Place::Cookie("t".into()));
        assert_eq!(doc.sticky.unwrap().choice, Place::Cookie("s".into()));
        let refused = |json: &str| parse_json::<Doc>(json.as_bytes()).unwrap_err().to_string();
        assert_eq!(
            refused(r#"{"from": [{"header": "a", "cookie": "b"}]}"#),
            "from[0]: give exactly one of header or cookie"
        );
        assert_eq!(
            refused(r#"{"from": [{"prefix": "x"}]}"#),
            "from[0]: give exactly one of header or cookie"
        );
        assert_eq!(
            refused(r#"{"from": [{"cookie": "b", "prefx": "x"}]}"#),
            "from[0].prefx: unknown field `prefx`, expected one of `prefix`, `header`, `cookie`"
        );
        assert!(refused(r#"{"from": [{"header": "A"}]}"#)
            .starts_with("from[0].header: header names are lowercase"));
        assert_eq!(
            refused(r#"{"from": [], "sticky": {"cookie": "s", "prefix": "x"}}"#),
            "sticky.prefix: unknown field `prefix`, expected one of `header`, `cookie`"
        );
        assert!(refused(r#"{"from": ["header"]}"#).starts_with("from[0]: invalid type: string"));
    }

    #[test]
    fn cookie_names_are_http_tokens() {
        assert!(CookieName::parse("__Host-session.id").is_ok());
        assert!(CookieName::parse("Session").is_ok());
        for bad in ["", "a b", "a=b", "a;b", "a\"b"] {
            assert!(CookieName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn text_is_not_empty_and_has_no_line_breaks() {
        assert_eq!(
            Text::parse("backend-eu").map(Text::into_string),
            Ok("backend-eu".into())
        );
        assert_eq!(Text::parse(""), Err("must not be empty".to_string()));
        assert_eq!(
            Text::parse("a\nb"),
            Err("must not contain CR, LF or NUL characters".to_string())
        );
        #[derive(Debug, Deserialize)]
        struct Named {
            #[serde(deserialize_with = "Text::deserialize_string")]
            cluster: String,
        }
        let named: Named = parse_json(br#"{"cluster": "a"}"#).unwrap();
        assert_eq!(named.cluster, "a");
        let err = parse_json::<Named>(br#"{"cluster": ""}"#).unwrap_err();
        assert_eq!(err.to_string(), "cluster: must not be empty");
    }

    #[test]
    fn header_values_with_line_breaks_are_refused() {
        assert!(check_header_value("a", "ok value").is_ok());
        let err = check_header_value("headers.x", "a\r\nSet-Cookie: x").unwrap_err();
        assert_eq!(err.path, "headers.x");
    }

    #[test]
    fn header_names_must_be_lowercase_tokens() {
        assert!(check_header_name("n", "x-powered-by").is_ok());
        assert!(check_header_name("n", "X-Powered-By").is_err());
        assert!(check_header_name("n", "bad name").is_err());
        assert!(check_header_name("n", "").is_err());
    }
}
