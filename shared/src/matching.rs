//! Which requests a rule applies to, spelt and decided the same way in every filter:
//!
//! ```json
//! {"hosts": ["api.example.com", "*.internal"],
//!  "path": {"prefix": "/api/"},
//!  "methods": ["GET", "POST"],
//!  "headers": [{"name": "x-tenant", "exact": "blue"}, {"name": "x-debug", "present": false}]}
//! ```
//!
//! Every condition given must hold; an empty match selects every request. The semantics are
//! Envoy's route match:
//! - **hosts**: any one of them; the request's host is `:authority` (or `host`), lowercase,
//!   without its port or a trailing dot; an IPv6 literal keeps its brackets (`[::1]`).
//! - **path**: `exact`, `prefix` or `regex` (the whole path must match), on `:path` without
//!   its query or fragment, case-sensitive, byte for byte (not decoded).
//! - **methods**: any one of them, exactly as `:method`.
//! - **headers**: every one of them; `exact`, `prefix` or `regex` on the header's value (a
//!   header sent several times is its values joined by `,`, as Envoy's `HeaderMatcher` reads
//!   it), or `present: true|false`. A missing header matches only `present: false`.
//!
//! Reads are lazy: a condition that is not given costs no header read.

use crate::config::{HeaderName, HeaderValue, HostPattern, MatchRegex, Method, OneOf, RequestPath};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt;

/// A request's headers as a matcher reads them: one header at a time, so an adapter reads
/// from the host only what some condition asks for.
pub trait RequestView {
    /// The first value of header `name` (lowercase; pseudo-headers such as `:path`).
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>>;

    /// Every value of header `name` joined by `,`; `None` when it is not sent.
    fn joined(&self, name: &str) -> Option<Cow<'_, [u8]>>;
}

/// A request given as a list of headers, pseudo-headers included, duplicates kept: owned
/// ([`crate::pairs::Pair`]s) or lent from a snapshot (`(&str, &[u8])`).
impl<K: AsRef<str>, V: AsRef<[u8]>> RequestView for [(K, V)] {
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| Cow::Borrowed(v.as_ref()))
    }

    fn joined(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        join(
            self.iter()
                .filter(|(k, _)| k.as_ref() == name)
                .map(|(_, v)| v.as_ref()),
        )
    }
}

/// The same, in a `Vec` (a slice cannot be a `dyn RequestView`).
impl<K: AsRef<str>, V: AsRef<[u8]>> RequestView for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.as_slice().header(name)
    }

    fn joined(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.as_slice().joined(name)
    }
}

/// Values joined as Envoy joins a repeated header for matching: borrowed when there is one.
pub fn join<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<Cow<'a, [u8]>> {
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut all = first.to_vec();
    for value in std::iter::once(second).chain(values) {
        all.push(b',');
        all.extend_from_slice(value);
    }
    Some(Cow::Owned(all))
}

/// The request's host as rules compare it: `:authority` (else `host`), lowercase, without a
/// port or a trailing dot; an IPv6 literal keeps its brackets. `None` when neither is sent.
pub fn request_host(request: &(impl RequestView + ?Sized)) -> Option<Vec<u8>> {
    let raw = request
        .header(":authority")
        .or_else(|| request.header("host"))?;
    let host: &[u8] = if raw.starts_with(b"[") {
        match raw.iter().position(|&b| b == b']') {
            Some(end) => raw.get(..=end).unwrap_or(&raw),
            None => &raw,
        }
    } else {
        match raw.iter().rposition(|&b| b == b':') {
            Some(colon) => {
                let (name, port) = raw.split_at(colon);
                let port = port.get(1..).unwrap_or_default();
                if port.iter().all(u8::is_ascii_digit) {
                    name
                } else {
                    &raw
                }
            }
            None => &raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    Some(host.to_ascii_lowercase())
}

/// The path of a request target: everything before the first `?` or `#`.
pub fn path_of(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    target.get(..end).unwrap_or(target)
}

/// What a rule applies to. `#[serde(default, rename = "match")]` it into a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMatch {
    /// Any of these hosts; empty: any host.
    pub hosts: Vec<HostPattern>,
    /// The path condition, if any.
    pub path: Option<PathMatch>,
    /// Any of these methods; empty: any method.
    pub methods: Vec<Method>,
    /// Every one of these header conditions.
    pub headers: Vec<HeaderMatch>,
}

const MATCH_FIELDS: &[&str] = &["hosts", "path", "methods", "headers"];
const RETIRED_FIELDS: &[&str] = &["path_prefix", "path_exact", "prefix"];

impl<'de> Deserialize<'de> for RequestMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MatchVisitor)
    }
}

struct MatchVisitor;

impl<'de> Visitor<'de> for MatchVisitor {
    type Value = RequestMatch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a match: hosts, path, methods and headers, each optional")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestMatch, A::Error> {
        let mut m = RequestMatch::default();
        let mut seen = Vec::new();
        while let Some(key) = map.next_key_seed(MatchKey)? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            match key.as_str() {
                "hosts" => m.hosts = map.next_value()?,
                "path" => m.path = Some(map.next_value::<PathSpelling>()?.0),
                "methods" => m.methods = map.next_value()?,
                "headers" => m.headers = map.next_value()?,
                // Spellings meshward used before one match language: refused at the field,
                // with the spelling that replaced it.
                "path_prefix" | "prefix" => {
                    map.next_value::<Retired<UsePathPrefix>>()?;
                }
                "path_exact" => {
                    map.next_value::<Retired<UsePathExact>>()?;
                }
                other => return Err(de::Error::unknown_field(other, MATCH_FIELDS)),
            }
            seen.push(key);
        }
        Ok(m)
    }
}

impl RequestMatch {
    /// Whether `request` meets every condition; cheap conditions are read first.
    pub fn matches(&self, request: &(impl RequestView + ?Sized)) -> bool {
        self.method_matches(request)
            && self.path_matches(request)
            && self.host_matches(request)
            && self.headers.iter().all(|h| h.matches(request))
    }

    /// Whether there is no condition: every request matches, and nothing need be read.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.path.is_none()
            && self.methods.is_empty()
            && self.headers.is_empty()
    }

    /// Whether some condition is on the path, so the path must be read.
    pub fn reads_path(&self) -> bool {
        self.path.is_some()
    }

    fn method_matches(&self, request: &(impl RequestView + ?Sized)) -> bool {
        if self.methods.is_empty() {
            return true;
        }
        let method = request.header(":method").unwrap_or_default();
        self.methods
            .iter()
            .any(|m| m.as_str().as_bytes() == method.as_ref())
    }

    fn path_matches(&self, request: &(impl RequestView + ?Sized)) -> bool {
        let Some(condition) = &self.path else {
            return true;
        };
        let target = request.header(":path").unwrap_or_default();
        condition.matches(path_of(&target))
    }

    fn host_matches(&self, request: &(impl RequestView + ?Sized)) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let Some(host) = request_host(request) else {
            return false;
        };
        self.hosts.iter().any(|pattern| pattern.matches(&host))
    }
}

/// A path condition, on the path without its query string: `{"exact" | "prefix" | "regex":
/// ...}`, read as a [`OneOf`] (a bare string is refused with the object to write instead).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathMatch {
    /// This path exactly.
    Exact(RequestPath),
    /// Paths starting with this (`/docs/` matches `/docs/a`, not `/docs`).
    Prefix(RequestPath),
    /// Paths the regex matches in full.
    Regex(MatchRegex),
}

impl PathMatch {
    /// Whether `path` (no query) meets the condition.
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathMatch::Exact(exact) => path == exact.as_str().as_bytes(),
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str().as_bytes()),
            PathMatch::Regex(regex) => regex.is_match(path),
        }
    }
}

/// `"path"` as written: the [`OneOf`] object, or a string refused with a hint.
struct PathSpelling(PathMatch);

impl<'de> Deserialize<'de> for PathSpelling {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PathVisitor)
    }
}

struct PathVisitor;

impl<'de> Visitor<'de> for PathVisitor {
    type Value = PathSpelling;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"one of {"exact": ...}, {"prefix": ...} or {"regex": ...}"#)
    }

    fn visit_str<E: de::Error>(self, path: &str) -> Result<PathSpelling, E> {
        Err(E::custom(format!(
            r#"a path condition is an object; use "path": {{"exact": {path:?}}} or {{"prefix": {path:?}}}"#
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PathSpelling, A::Error> {
        let path = OneOf::<PathMatch>::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(PathSpelling(path.choice))
    }
}

/// A condition on one request header: `{"name": ..., "exact" | "prefix" | "regex" |
/// "present": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "OneOf<HeaderCondition, HeaderNamed>")]
pub struct HeaderMatch {
    /// The header.
    pub name: HeaderName,
    /// What its value must be.
    pub condition: HeaderCondition,
}

/// What a header's value must be: exactly one of these.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderCondition {
    /// Exactly this value.
    Exact(HeaderValue),
    /// A value starting with this.
    Prefix(HeaderValue),
    /// A value the regex matches in full.
    Regex(MatchRegex),
    /// `true`: the header is sent, with any value; `false`: it is not sent.
    Present(bool),
}

/// The field of a header condition beside its choice.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderNamed {
    name: HeaderName,
}

impl From<OneOf<HeaderCondition, HeaderNamed>> for HeaderMatch {
    fn from(OneOf { choice, fields }: OneOf<HeaderCondition, HeaderNamed>) -> Self {
        HeaderMatch {
            name: fields.name,
            condition: choice,
        }
    }
}

impl HeaderMatch {
    /// Whether `request`'s header meets the condition.
    pub fn matches(&self, request: &(impl RequestView + ?Sized)) -> bool {
        let value = request.joined(self.name.as_str());
        match (&self.condition, value) {
            (HeaderCondition::Present(wanted), value) => *wanted == value.is_some(),
            (_, None) => false,
            (HeaderCondition::Exact(exact), Some(v)) => v.as_ref() == exact.as_str().as_bytes(),
            (HeaderCondition::Prefix(prefix), Some(v)) => v.starts_with(prefix.as_str().as_bytes()),
            (HeaderCondition::Regex(regex), Some(v)) => regex.is_match(&v),
        }
    }
}

/// A match's key: one of [`MATCH_FIELDS`] (or a retired one, refused at its value). An
/// unknown key fails as it is read, as serde's derived `deny_unknown_fields` does, so the
/// error names the key's path.
struct MatchKey;

impl<'de> de::DeserializeSeed<'de> for MatchKey {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for MatchKey {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if MATCH_FIELDS.contains(&key) || RETIRED_FIELDS.contains(&key) {
            Ok(key.to_string())
        } else {
            Err(E::unknown_field(key, MATCH_FIELDS))
        }
    }
}

/// A field meshward no longer reads: always refused, with the spelling that replaced it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Retired<H>(std::marker::PhantomData<H>);

/// The replacement a [`Retired`] field names.
trait Hint {
    const USE: &'static str;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct UsePathPrefix;

impl Hint for UsePathPrefix {
    const USE: &'static str = r#"unknown field; use "path": {"prefix": ...}"#;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct UsePathExact;

impl Hint for UsePathExact {
    const USE: &'static str = r#"unknown field; use "path": {"exact": ...}"#;
}

impl<'de, H: Hint> Deserialize<'de> for Retired<H> {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom(H::USE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_json, ConfigError};
    use crate::pairs::Pair;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        #[serde(default, rename = "match")]
        matcher: RequestMatch,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        rules: Vec<Rule>,
    }

    fn matcher(json: &str) -> RequestMatch {
        let doc: Doc = parse_json(format!(r#"{{"rules":[{{"match":{json}}}]}}"#).as_bytes())
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        doc.rules.into_iter().next().unwrap().matcher
    }

    fn refused(json: &str) -> String {
        match parse_json::<Doc>(format!(r#"{{"rules":[{{"match":{json}}}]}}"#).as_bytes()) {
            Ok(doc) => panic!("accepted {json}: {doc:?}"),
            Err(ConfigError { path, message }) => format!("{path}: {message}"),
        }
    }

    fn request(headers: &[(&str, &str)]) -> Vec<Pair> {
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn get(host: &str, path: &str) -> Vec<Pair> {
        request(&[(":authority", host), (":path", path), (":method", "GET")])
    }

    #[test]
    fn an_empty_match_selects_every_request_even_one_without_headers() {
        let m = matcher("{}");
        assert!(m.is_empty());
        assert!(m.matches(get("a", "/").as_slice()));
        assert!(m.matches(request(&[]).as_slice()));
        assert!(Rule::deserialize(serde_json::json!({}))
            .unwrap()
            .matcher
            .is_empty());
    }

    #[test]
    fn paths_match_without_the_query_exactly_by_prefix_or_by_a_whole_regex() {
        let exact = matcher(r#"{"path":{"exact":"/login"}}"#);
        assert!(exact.matches(get("a", "/login?next=/").as_slice()));
        assert!(exact.matches(get("a", "/login#top").as_slice()));
        assert!(!exact.matches(get("a", "/login/x").as_slice()));
        assert!(!exact.matches(get("a", "/LOGIN").as_slice()));

        let prefix = matcher(r#"{"path":{"prefix":"/api/"}}"#);
        assert!(prefix.matches(get("a", "/api/v1").as_slice()));
        assert!(!prefix.matches(get("a", "/api").as_slice()));
        assert!(!prefix.matches(get("a", "/x?/api/").as_slice()));

        let regex = matcher(r#"{"path":{"regex":"/users/\\d+"}}"#);
        assert!(regex.matches(get("a", "/users/42?x=1").as_slice()));
        assert!(!regex.matches(get("a", "/users/42/edit").as_slice()));
        assert!(!regex.matches(get("a", "/v2/users/42").as_slice()));
        // A request without :path has the empty path.
        assert!(!prefix.matches(request(&[(":method", "GET")]).as_slice()));
    }

    #[test]
    fn paths_are_compared_as_sent_not_decoded() {
        let prefix = matcher(r#"{"path":{"prefix":"/admin"}}"#);
        assert!(!prefix.matches(get("a", "/%61dmin").as_slice()));
    }

    #[test]
    fn hosts_match_without_port_case_or_trailing_dot_and_ipv6_keeps_brackets() {
        let m = matcher(r#"{"hosts":["API.example.com","*.internal","::1","[2001:db8::1]"]}"#);
        for host in [
            "api.example.com",
            "Api.Example.COM:8443",
            "api.example.com.",
            "svc.internal",
            "a.b.internal:80",
            "[::1]",
            "[::1]:8080",
            "[2001:DB8::1]:443",
        ] {
            assert!(m.matches(get(host, "/").as_slice()), "{host}");
        }
        for host in [
            "example.com",
            "internal",
            ".internal",
            "api.example.com.evil",
            "::1",
            "",
        ] {
            assert!(!m.matches(get(host, "/").as_slice()), "{host}");
        }
        assert!(!m.matches(request(&[(":path", "/")]).as_slice()));
        assert!(m.matches(request(&[("host", "svc.internal")]).as_slice()));
    }

    #[test]
    fn methods_match_exactly() {
        let m = matcher(r#"{"methods":["GET","POST"]}"#);
        assert!(m.matches(get("a", "/").as_slice()));
        assert!(!m.matches(request(&[(":method", "get")]).as_slice()));
        assert!(!m.matches(request(&[(":method", "PUT")]).as_slice()));
        assert!(!m.matches(request(&[]).as_slice()));
    }

    #[test]
    fn headers_match_on_all_their_values_joined_or_on_presence() {
        let m = matcher(
            r#"{"headers":[{"name":"x-tenant","exact":"blue"},
                           {"name":"x-debug","present":false},
                           {"name":"user-agent","prefix":"curl/"},
                           {"name":"x-id","regex":"[0-9]+"}]}"#,
        );
        let base = [
            ("x-tenant", "blue"),
            ("user-agent", "curl/8"),
            ("x-id", "12"),
        ];
        assert!(m.matches(request(&base).as_slice()));
        let with = |extra: (&'static str, &'static str)| {
            let mut h = base.to_vec();
            h.push(extra);
            request(&h)
        };
        assert!(!m.matches(with(("x-debug", "")).as_slice()));
        // A repeated header is its values joined by ",", as Envoy reads it.
        assert!(!m.matches(with(("x-tenant", "red")).as_slice()));
        let joined = matcher(r#"{"headers":[{"name":"x-tenant","exact":"blue,red"}]}"#);
        assert!(joined.matches(with(("x-tenant", "red")).as_slice()));
        assert!(!m.matches(request(&base[..2]).as_slice()), "x-id missing");
        let present = matcher(r#"{"headers":[{"name":"x-id","present":true}]}"#);
        assert!(present.matches(request(&[("x-id", "")]).as_slice()));
        assert!(!present.matches(request(&[]).as_slice()));
    }

    #[test]
    fn every_condition_must_hold() {
        let m = matcher(
            r#"{"hosts":["a.com"],"path":{"prefix":"/x"},"methods":["GET"],
                "headers":[{"name":"x-k","present":true}]}"#,
        );
        let full = [
            (":authority", "a.com"),
            (":path", "/x"),
            (":method", "GET"),
            ("x-k", "1"),
        ];
        assert!(m.matches(request(&full).as_slice()));
        for drop in 0..full.len() {
            let mut h = full.to_vec();
            h.remove(drop);
            assert!(
                !m.matches(request(&h).as_slice()),
                "without {:?}",
                full[drop]
            );
        }
    }

    #[test]
    fn bad_conditions_are_refused_naming_the_field() {
        let cases = [
            (
                r#"{"hosts":["a.com:80"]}"#,
                "rules[0].match.hosts[0]: expected a host",
            ),
            (
                r#"{"hosts":["*"]}"#,
                "rules[0].match.hosts[0]: expected a host",
            ),
            (
                r#"{"hosts":["a..com"]}"#,
                "rules[0].match.hosts[0]: expected a host",
            ),
            (
                r#"{"methods":["get"]}"#,
                "rules[0].match.methods[0]: expected an uppercase method",
            ),
            (
                r#"{"path":{"prefix":"api"}}"#,
                "rules[0].match.path.prefix: expected a path starting with '/'",
            ),
            (
                r#"{"path":{"exact":"/a?b"}}"#,
                "rules[0].match.path.exact: expected a path",
            ),
            (
                r#"{"path":{"regex":"/users/[0-9"}}"#,
                "rules[0].match.path.regex: not a valid regex",
            ),
            (
                r#"{"path":{"regex":"a{1000}{1000}"}}"#,
                "rules[0].match.path.regex: not a valid regex",
            ),
            (
                r#"{"path":{"prefix":"/a","exact":"/b"}}"#,
                "rules[0].match.path: give exactly one of exact, prefix or regex",
            ),
            (
                r#"{"path":{}}"#,
                "rules[0].match.path: give exactly one of exact, prefix or regex",
            ),
            (
                r#"{"path":{"suffix":"/b"}}"#,
                "rules[0].match.path.suffix: unknown field `suffix`",
            ),
            (
                r#"{"headers":[{"name":"X-Tenant","exact":"a"}]}"#,
                "rules[0].match.headers[0].name: header names are lowercase",
            ),
            (
                r#"{"headers":[{"name":"x-t"}]}"#,
                "rules[0].match.headers[0]: give exactly one of exact, prefix, regex or present",
            ),
            (
                r#"{"headers":[{"name":"x-t","exact":"a","present":true}]}"#,
                "rules[0].match.headers[0]: give exactly one",
            ),
            (
                r#"{"headers":[{"exact":"a"}]}"#,
                "rules[0].match.headers[0]: missing field `name`",
            ),
            (
                r#"{"headers":[{"name":"x-t","exact":"a\r\nb"}]}"#,
                "rules[0].match.headers[0].exact: must not contain CR",
            ),
            (
                r#"{"headers":[{"name":"x-t","contains":"a"}]}"#,
                "rules[0].match.headers[0].contains: unknown field `contains`",
            ),
            (
                r#"{"host":["a.com"]}"#,
                "rules[0].match.host: unknown field `host`, expected one of `hosts`, `path`, `methods`, `headers`",
            ),
        ];
        for (json, expected) in cases {
            let got = refused(json);
            assert!(
                got.starts_with(expected),
                "{json}\n got {got}\nwant {expected}"
            );
        }
    }

    #[test]
    fn retired_spellings_are_refused_with_the_new_one() {
        assert_eq!(
            refused(r#"{"path_prefix":"/api/"}"#),
            r#"rules[0].match.path_prefix: unknown field; use "path": {"prefix": ...}"#
        );
        assert_eq!(
            refused(r#"{"path_exact":"/login"}"#),
            r#"rules[0].match.path_exact: unknown field; use "path": {"exact": ...}"#
        );
        assert_eq!(
            refused(r#"{"prefix":"/docs/"}"#),
            r#"rules[0].match.prefix: unknown field; use "path": {"prefix": ...}"#
        );
        assert_eq!(
            refused(r#"{"path":"/login"}"#),
            r#"rules[0].match.path: a path condition is an object; use "path": {"exact": "/login"} or {"prefix": "/login"}"#
        );
    }

    #[test]
    fn the_request_host_is_normalised_once_for_every_filter() {
        let host = |h: &str| request_host(request(&[(":authority", h)]).as_slice());
        assert_eq!(
            host("API.Example.com:8443").as_deref(),
            Some(&b"api.example.com"[..])
        );
        assert_eq!(host("example.com.").as_deref(), Some(&b"example.com"[..]));
        assert_eq!(host("[::1]:80").as_deref(), Some(&b"[::1]"[..]));
        assert_eq!(host("[::1]").as_deref(), Some(&b"[::1]"[..]));
        // A port that is not digits is not a port.
        assert_eq!(host("a.com:x").as_deref(), Some(&b"a.com:x"[..]));
        assert_eq!(request_host(request(&[]).as_slice()), None);
    }

    #[test]
    fn joins_repeated_values_and_borrows_a_single_one() {
        let one: Vec<&[u8]> = vec![b"a"];
        assert!(matches!(join(one.into_iter()), Some(Cow::Borrowed(b"a"))));
        let two: Vec<&[u8]> = vec![b"a", b"b", b"c"];
        assert_eq!(join(two.into_iter()).as_deref(), Some(&b"a,b,c"[..]));
        assert_eq!(join(std::iter::empty()), None);
    }
}
