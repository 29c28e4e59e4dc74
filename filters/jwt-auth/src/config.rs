//! The plugin configuration: JSON with unknown fields refused, validated once at load into
//! a typed [`Config`] that every request reads. Every error names its field path.

use crate::claims::TimeRules;
use crate::forward::{ClaimHeader, Forwarding};
use crate::jwks::{self, KeySet, Limits, Strictness};
use crate::policy::{ClaimCheck, ClaimRequirement, Mode, Requirement, Rule};
use crate::remote::RemoteSource;
use crate::sources::TokenSource;
use crate::token::Algorithm;
use meshward_shared::config::{
    parse_json, Bounded, BoundedDuration, ConfigError, CookieName, HeaderName, HeaderValue,
    NonEmpty, OneOf, Text,
};
use meshward_shared::matching::RequestMatch;
use serde::{de, Deserialize, Deserializer};
use serde_json::Value;
use std::rc::Rc;
use std::time::Duration;

/// Where a provider's keys come from.
#[derive(Clone, Debug)]
pub enum Keys {
    /// Written in the configuration.
    Inline(Rc<KeySet>),
    /// Fetched: index into [`Config::sources`].
    Remote(usize),
}

/// An identity provider: whose tokens are accepted, verified with which keys.
#[derive(Clone, Debug)]
pub struct Provider {
    /// Its name, used by rules.
    pub name: String,
    /// The `iss` its tokens must carry, if set.
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty accepts any.
    pub audiences: Vec<String>,
    /// Its keys.
    pub keys: Keys,
    /// Where its tokens are looked for, in order.
    pub from: Vec<TokenSource>,
    /// What its verified tokens pass upstream.
    pub forwarding: Forwarding,
    /// Its time checks.
    pub time: TimeRules,
    /// The algorithms its tokens may use, checked before any signature work; `None`
    /// accepts whatever its keys allow.
    pub algorithms: Option<Vec<Algorithm>>,
    /// How many keys a token without `kid` is tried against, at most.
    pub max_keys_without_kid: usize,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Providers, in configuration order.
    pub providers: Vec<Provider>,
    /// Rules; a request no rule matches needs a valid token from any provider.
    pub rules: Vec<Rule>,
    /// What a request no rule matches needs.
    pub default_requirement: Requirement,
    /// The realm of `WWW-Authenticate`.
    pub realm: String,
    /// The longest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// How many verified tokens each worker remembers (0: no cache).
    pub cache_entries: usize,
    /// Whether to verify RS*/ES* signatures with Envoy's `verify_signature` when offered.
    pub host_crypto: bool,
    /// The largest RSA modulus, in bits, whose signatures are checked inside Wasm.
    pub max_wasm_rsa_bits: usize,
    /// Distinct remote key sets.
    pub sources: Vec<RemoteSource>,
    /// Every header any provider sets: removed from every incoming request.
    pub managed_headers: Vec<String>,
}

/// Durations in the bounds below, in nanoseconds.
const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;
const DAY: u64 = 86_400 * S;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    providers: NonEmpty<OneOf<KeySource, RawProvider>>,
    #[serde(default)]
    rules: Vec<RawRule>,
    realm: Option<String>,
    max_token_bytes: Option<Bounded<256, 65_536>>,
    cache: Option<RawCache>,
    host_crypto: Option<bool>,
    max_wasm_rsa_bits:
        Option<Bounded<{ jwks::MIN_RSA_BITS as u32 }, { jwks::MAX_RSA_BITS as u32 }>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_entries: Bounded<0, 100_000>,
}

/// A provider's keys: exactly one of these keys, beside its other fields.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeySource {
    /// A JWKS object, or a string holding one (as Envoy's `inline_string`).
    Jwks(Value),
    RemoteJwks(RawRemote),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<Text>,
    from: Option<NonEmpty<OneOf<Place, SourceFields>>>,
    #[serde(default)]
    forward: bool,
    #[serde(default)]
    claims_to_headers: Vec<RawClaimHeader>,
    payload_header: Option<SettableHeader>,
    clock_skew: Option<BoundedDuration<0, { 3600 * S }>>,
    require_exp: Option<bool>,
    max_lifetime: Option<BoundedDuration<S, { 3650 * DAY }>>,
    algorithms: Option<NonEmpty<Algorithm>>,
    max_keys_without_kid: Option<Bounded<0, 256>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    cluster: Text,
    uri: String,
    timeout: Option<BoundedDuration<MS, { 60 * S }>>,
    cache_duration: Option<BoundedDuration<S, { 30 * DAY }>>,
    min_refetch_interval: Option<BoundedDuration<S, DAY>>,
    retry_interval: Option<BoundedDuration<{ 100 * MS }, { 3600 * S }>>,
    max_bytes: Option<Bounded<1024, 1_048_576>>,
    max_keys: Option<Bounded<1, 256>>,
}

/// Where a token is looked for: exactly one of these keys, and a `prefix` for a header.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Place {
    Header(HeaderName),
    Query(Text),
    Cookie(CookieName),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFields {
    prefix: Option<HeaderValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimHeader {
    claim: ClaimPath,
    header: SettableHeader,
}

/// Whether a rule needs a token.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TokenMode {
    #[default]
    Required,
    Optional,
    Ignored,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default, rename = "match")]
    matcher: RequestMatch,
    providers: Option<NonEmpty<String>>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    token: TokenMode,
    #[serde(default)]
    claims: Vec<OneOf<ClaimCheck, ClaimFields>>,
}

/// A claim requirement's fields beside its check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimFields {
    claim: ClaimPath,
    provider: Option<String>,
}

/// A claim path: `"a.b"` (split at dots) or `["a", "b.c"]` (for keys holding dots).
struct ClaimPath(Vec<String>);

impl<'de> Deserialize<'de> for ClaimPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let parts: Vec<String> = match &value {
            Value::String(text) => text.split('.').map(str::to_owned).collect(),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if parts.is_empty() || parts.iter().any(String::is_empty) {
            return Err(de::Error::custom(format!("expected a claim name such as \"sub\", a dotted path such as \"realm_access.roles\", or an array of keys, got {value}")));
        }
        Ok(ClaimPath(parts))
    }
}

/// A header the filter may set: a valid lowercase name, not one that routes or frames the
/// request.
struct SettableHeader(String);

impl<'de> Deserialize<'de> for SettableHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = HeaderName::deserialize(deserializer)?.into_string();
        const RESERVED: [&str; 6] = [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "upgrade",
        ];
        if RESERVED.contains(&name.as_str()) {
            return Err(de::Error::custom(format!("{name:?} cannot carry claims")));
        }
        Ok(SettableHeader(name))
    }
}

/// Parses and validates the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_json(bytes)?;
    let raw_providers = raw.providers.into_vec();
    let mut sources: Vec<RemoteSource> = Vec::new();
    let mut providers = Vec::with_capacity(raw_providers.len());
    for (i, provider) in raw_providers.into_iter().enumerate() {
        let path = format!("providers[{i}]");
        let provider = build_provider(provider.choice, provider.fields, &mut sources)
            .map_err(|e| e.within(&path))?;
        if providers.iter().any(|p: &Provider| p.name == provider.name) {
            return Err(ConfigError::new(
                format!("{path}.name"),
                format!(
                    "provider names must be unique, {:?} is used twice",
                    provider.name
                ),
            ));
        }
        providers.push(provider);
    }
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    let rules = raw
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| build_rule(rule, &names).map_err(|e| e.within(&format!("rules[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let realm = raw.realm.unwrap_or_else(|| "meshward".into());
    let quotable = |b: u8| b.is_ascii() && !b"\"\\\r\n\0".contains(&b);
    if realm.is_empty() || !realm.bytes().all(quotable) {
        return Err(ConfigError::new(
            "realm",
            "expected non-empty ASCII text without quotes, backslashes, CR, LF or NUL",
        ));
    }
    let mut managed_headers: Vec<String> = Vec::new();
    for header in providers.iter().flat_map(|p| p.forwarding.headers()) {
        if !managed_headers.iter().any(|h| h == header) {
            managed_headers.push(header.to_string());
        }
    }
    Ok(Config {
        default_requirement: Requirement::Verify {
            providers: (0..providers.len()).collect(),
            mode: Mode::Any,
            allow_missing: false,
            claims: Vec::new(),
        },
        providers,
        rules,
        realm,
        max_token_bytes: raw.max_token_bytes.map_or(8 * 1024, |n| n.get() as usize),
        cache_entries: raw.cache.map_or(1024, |c| c.max_entries.get() as usize),
        host_crypto: raw.host_crypto.unwrap_or(true),
        max_wasm_rsa_bits: raw.max_wasm_rsa_bits.map_or(4096, |n| n.get() as usize),
        sources,
        managed_headers,
    })
}

fn build_provider(
    keys: KeySource,
    raw: RawProvider,
    sources: &mut Vec<RemoteSource>,
) -> Result<Provider, ConfigError> {
    let valid_name = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if raw.name.is_empty() || !raw.name.chars().all(valid_name) {
        return Err(ConfigError::new(
            "name",
            format!(
                "expected letters, digits, '-', '_' or '.', got {:?}",
                raw.name
            ),
        ));
    }
    if raw.issuer.as_deref() == Some("") {
        return Err(ConfigError::new(
            "issuer",
            "must not be empty (leave it out to accept any issuer)",
        ));
    }
    let keys = match keys {
        KeySource::Jwks(inline) => Keys::Inline(Rc::new(inline_jwks(&inline)?)),
        KeySource::RemoteJwks(remote) => {
            Keys::Remote(remote_source(remote, sources).map_err(|e| e.within("remote_jwks"))?)
        }
    };
    let from = match raw.from {
        None => vec![TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }],
        Some(list) => list
            .into_vec()
            .into_iter()
            .enumerate()
            .map(|(i, s)| token_source(s).map_err(|e| e.within(&format!("from[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let algorithms = raw.algorithms.map(NonEmpty::into_vec);
    for (i, alg) in algorithms.iter().flatten().enumerate() {
        if algorithms.iter().flatten().take(i).any(|a| a == alg) {
            return Err(ConfigError::new(
                format!("algorithms[{i}]"),
                format!("{} is listed twice", alg.name()),
            ));
        }
    }
    let claims_to_headers = raw.claims_to_headers.into_iter();
    Ok(Provider {
        name: raw.name,
        issuer: raw.issuer,
        audiences: raw.audiences.into_iter().map(Text::into_string).collect(),
        keys,
        from,
        forwarding: Forwarding {
            claims_to_headers: claims_to_headers
                .map(|c| ClaimHeader {
                    path: c.claim.0,
                    header: c.header.0,
                })
                .collect(),
            payload_header: raw.payload_header.map(|h| h.0),
            keep_token: raw.forward,
        },
        time: TimeRules {
            skew_secs: raw.clock_skew.map_or(60, |d| d.get().as_secs()),
            require_exp: raw.require_exp.unwrap_or(true),
            max_lifetime_secs: raw.max_lifetime.map(|d| d.get().as_secs()),
        },
        algorithms,
        max_keys_without_kid: raw.max_keys_without_kid.map_or(4, |n| n.get() as usize),
    })
}

/// Inline keys: a JWKS object, or a string holding one (as Envoy's `inline_string`).
fn inline_jwks(value: &Value) -> Result<KeySet, ConfigError> {
    let limits = Limits {
        max_bytes: usize::MAX,
        max_keys: 256,
    };
    let parsed = match value {
        Value::String(text) => jwks::parse(text.as_bytes(), limits, Strictness::Strict),
        other => jwks::parse_value(other, limits, Strictness::Strict),
    };
    parsed
        .map(|p| p.set)
        .map_err(|err| ConfigError::new(err.path(), err.message()).within("jwks"))
}

fn remote_source(raw: RawRemote, sources: &mut Vec<RemoteSource>) -> Result<usize, ConfigError> {
    let cluster = raw.cluster.into_string();
    let (authority, path) = split_uri(&raw.uri).ok_or_else(|| {
        ConfigError::new("uri", format!("expected an http or https URL such as \"https://idp.example.com/.well-known/jwks.json\", got {:?}", raw.uri))
    })?;
    let secs = Duration::from_secs;
    let source = RemoteSource {
        shared_key: format!("meshward-jwt-auth|jwks|{cluster}|{authority}{path}"),
        cluster,
        authority,
        path,
        timeout: raw.timeout.map_or(secs(5), BoundedDuration::get),
        cache_duration: raw.cache_duration.map_or(secs(600), BoundedDuration::get),
        min_refetch_interval: raw
            .min_refetch_interval
            .map_or(secs(30), BoundedDuration::get),
        retry_interval: raw.retry_interval.map_or(secs(10), BoundedDuration::get),
        limits: Limits {
            max_bytes: raw.max_bytes.map_or(64 * 1024, |n| n.get() as usize),
            max_keys: raw.max_keys.map_or(32, |n| n.get() as usize),
        },
    };
    if let Some(existing) = sources
        .iter()
        .position(|s| s.shared_key == source.shared_key)
    {
        if sources.get(existing) != Some(&source) {
            return Err(ConfigError::new(
                "",
                "another provider fetches the same JWKS with different settings; give them the same settings",
            ));
        }
        return Ok(existing);
    }
    sources.push(source);
    Ok(sources.len() - 1)
}

/// `https://idp.example.com:8443/keys?x=1` → (`idp.example.com:8443`, `/keys?x=1`).
fn split_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if authority.is_empty() || !printable(authority) || !printable(&path) || authority.contains('@')
    {
        return None;
    }
    Some((authority.to_string(), path))
}

fn token_source(raw: OneOf<Place, SourceFields>) -> Result<TokenSource, ConfigError> {
    match (raw.choice, raw.fields.prefix.map(HeaderValue::into_string)) {
        (Place::Header(name), prefix) => {
            let name = name.into_string();
            let bearer = if name == "authorization" {
                "Bearer "
            } else {
                ""
            };
            let prefix = prefix.unwrap_or_else(|| bearer.into());
            Ok(TokenSource::Header { name, prefix })
        }
        (_, Some(_)) => Err(ConfigError::new(
            "prefix",
            "only a header source has a prefix",
        )),
        (Place::Query(name), None) => Ok(TokenSource::Query(name.into_string())),
        (Place::Cookie(name), None) => Ok(TokenSource::Cookie(name.into_string())),
    }
}

fn provider_index(names: &[&str], path: &str, name: &str) -> Result<usize, ConfigError> {
    names.iter().position(|n| *n == name).ok_or_else(|| {
        ConfigError::new(
            path,
            format!(
                "unknown provider {name:?}; the providers are {}",
                names.join(", ")
            ),
        )
    })
}

fn build_rule(raw: RawRule, names: &[&str]) -> Result<Rule, ConfigError> {
    let providers: Vec<usize> = match &raw.providers {
        None => (0..names.len()).collect(),
        Some(list) => list
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, name)| provider_index(names, &format!("providers[{i}]"), name))
            .collect::<Result<_, _>>()?,
    };
    let requirement = match raw.token {
        TokenMode::Ignored => {
            if raw.providers.is_some() || !raw.claims.is_empty() || raw.mode != Mode::Any {
                return Err(ConfigError::new(
                    "token",
                    "a rule with \"token\": \"ignored\" verifies nothing: remove its providers, mode and claims",
                ));
            }
            Requirement::Ignore
        }
        token => {
            if token == TokenMode::Optional && !raw.claims.is_empty() {
                return Err(ConfigError::new(
                    "claims",
                    "claims cannot be required when the token is optional: use \"token\": \"required\"",
                ));
            }
            let claims = raw
                .claims
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    build_claim(c, names, &providers).map_err(|e| e.within(&format!("claims[{i}]")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Requirement::Verify {
                providers,
                mode: raw.mode,
                allow_missing: token == TokenMode::Optional,
                claims,
            }
        }
    };
    Ok(Rule {
        matcher: raw.matcher,
        requirement,
    })
}

fn build_claim(
    raw: OneOf<ClaimCheck, ClaimFields>,
    names: &[&str],
    rule_providers: &[usize],
) -> Result<ClaimRequirement, ConfigError> {
    let provider = match &raw.fields.provider {
        None => None,
        Some(name) => {
            let index = provider_index(names, "provider", name)?;
            if !rule_providers.contains(&index) {
                return Err(ConfigError::new(
                    "provider",
                    format!("{name:?} is not one of this rule's providers"),
                ));
            }
            Some(index)
        }
    };
    if let ClaimCheck::Scopes(scopes) = &raw.choice {
        if let Some(i) = scopes.iter().position(|s| s.is_empty() || s.contains(' ')) {
            return Err(ConfigError::new(
                format!("scopes[{i}]"),
                "a scope is one non-empty word",
            ));
        }
    }
    Ok(ClaimRequirement {
        path: raw.fields.claim.0,
        provider,
        check: raw.choice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use meshward_shared::config::HostPattern;
    use serde_json::json;

    fn provider() -> Value {
        json!({ "name": "idp", "issuer": fixtures::ISSUER, "jwks": fixtures::jwks() })
    }

    fn error(config: Value) -> String {
        parse(config.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_minimal_config_requires_a_bearer_token_from_the_provider() {
        let config = parse(json!({ "providers": [provider()] }).to_string().as_bytes()).unwrap();
        assert_eq!(config.providers.len(), 1);
        assert_eq!(
            config.providers[0].from,
            vec![TokenSource::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into()
            }]
        );
        assert_eq!(config.providers[0].time.skew_secs, 60);
        assert!(config.providers[0].time.require_exp);
        assert!(config.rules.is_empty());
        assert!(matches!(
            config.default_requirement,
            Requirement::Verify {
                allow_missing: false,
                ..
            }
        ));
        assert_eq!(config.realm, "meshward");
        assert!(config.host_crypto);
    }

    #[test]
    fn refuses_unknown_fields_with_their_path() {
        let mut p = provider();
        p["issure"] = json!("x");
        let text = error(json!({ "providers": [p] }));
        assert!(
            text.starts_with("providers[0].issure: unknown field `issure`"),
            "{text}"
        );
    }

    #[test]
    fn names_the_bad_key_inside_an_inline_jwks() {
        let mut jwks = fixtures::jwks();
        jwks["keys"][1]["crv"] = json!("P-521");
        let mut p = provider();
        p["jwks"] = jwks;
        let text = error(json!({ "providers": [p] }));
        assert!(
            text.starts_with("providers[0].jwks.keys[1].crv: expected \"P-256\" or \"P-384\""),
            "{text}"
        );
    }

    #[test]
    fn accepts_an_inline_jwks_as_a_string() {
        let mut p = provider();
        p["jwks"] = json!(fixtures::jwks().to_string());
        assert!(parse(json!({ "providers": [p] }).to_string().as_bytes()).is_ok());
    }

    #[test]
    fn requires_exactly_one_key_source() {
        let both = json!({ "name": "a", "jwks": fixtures::jwks(), "remote_jwks": { "cluster": "c", "uri": "https://x/" } });
        let one = "providers[0]: give exactly one of jwks or remote_jwks";
        assert_eq!(error(json!({ "providers": [both] })), one);
        assert_eq!(error(json!({ "providers": [{ "name": "a" }] })), one);
        assert_eq!(
            error(json!({ "providers": [] })),
            "providers: expected at least one item"
        );
    }

    #[test]
    fn parses_a_remote_jwks_uri_and_shares_identical_sources() {
        let remote = json!({ "cluster": "jwks", "uri": "https://idp.example.com:8443/keys", "cache_duration": "5m" });
        let config = parse(
            json!({ "providers": [
                { "name": "a", "remote_jwks": remote },
                { "name": "b", "remote_jwks": remote, "audiences": ["x"] },
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(config.sources.len(), 1);
        let source = &config.sources[0];
        assert_eq!(source.authority, "idp.example.com:8443");
        assert_eq!(source.path, "/keys");
        assert_eq!(source.cache_duration, Duration::from_secs(300));
        assert_eq!(source.timeout, Duration::from_secs(5));
        assert!(matches!(config.providers[1].keys, Keys::Remote(0)));
    }

    #[test]
    fn refuses_bad_remote_settings_by_field() {
        let with =
            |remote: Value| error(json!({ "providers": [{ "name": "a", "remote_jwks": remote }] }));
        assert!(with(json!({ "cluster": "c", "uri": "ftp://x/" }))
            .starts_with("providers[0].remote_jwks.uri: expected an http or https URL"));
        assert!(with(json!({ "cluster": "", "uri": "https://x/" }))
            .starts_with("providers[0].remote_jwks.cluster:"));
        assert_eq!(
            with(json!({ "cluster": "c", "uri": "https://x/", "timeout": "soon" })),
            "providers[0].remote_jwks.timeout: expected a duration such as \"1s\" or \"500ms\", got \"soon\""
        );
        assert_eq!(
            with(json!({ "cluster": "c", "uri": "https://x/", "timeout": "2m" })),
            "providers[0].remote_jwks.timeout: expected 1ms to 60s, got 120s"
        );
    }

    #[test]
    fn token_sources_need_exactly_one_place() {
        let with = |from: Value| {
            let mut p = provider();
            p["from"] = from;
            error(json!({ "providers": [p] }))
        };
        assert_eq!(
            with(json!([{ "header": "x-a", "query": "t" }])),
            "providers[0].from[0]: give exactly one of header, query or cookie"
        );
        assert_eq!(
            with(json!([{ "query": "t", "prefix": "x" }])),
            "providers[0].from[0].prefix: only a header source has a prefix"
        );
        assert!(with(json!([{ "header": "X-Token" }]))
            .starts_with("providers[0].from[0].header: header names are lowercase"));
        assert_eq!(
            with(json!([])),
            "providers[0].from: expected at least one item"
        );
    }

    #[test]
    fn claim_headers_need_a_path_and_a_settable_header() {
        let with = |item: Value| {
            let mut p = provider();
            p["claims_to_headers"] = json!([item]);
            error(json!({ "providers": [p] }))
        };
        assert!(with(json!({ "claim": "a..b", "header": "x-a" }))
            .starts_with("providers[0].claims_to_headers[0].claim:"));
        assert!(with(json!({ "claim": 5, "header": "x-a" }))
            .starts_with("providers[0].claims_to_headers[0].claim:"));
        assert_eq!(
            with(json!({ "claim": "sub", "header": "host" })),
            "providers[0].claims_to_headers[0].header: \"host\" cannot carry claims"
        );
    }

    #[test]
    fn collects_every_header_the_filter_sets() {
        let mut p = provider();
        p["claims_to_headers"] = json!([{ "claim": "sub", "header": "x-sub" }, { "claim": ["org", "id"], "header": "x-org" }]);
        p["payload_header"] = json!("x-payload");
        let config = parse(json!({ "providers": [p] }).to_string().as_bytes()).unwrap();
        assert_eq!(config.managed_headers, ["x-sub", "x-org", "x-payload"]);
        assert_eq!(
            config.providers[0].forwarding.claims_to_headers[1].path,
            ["org", "id"]
        );
    }

    #[test]
    fn rules_name_known_providers_and_consistent_requirements() {
        let with = |rule: Value| error(json!({ "providers": [provider()], "rules": [rule] }));
        assert_eq!(
            with(json!({ "providers": ["nope"] })),
            "rules[0].providers[0]: unknown provider \"nope\"; the providers are idp"
        );
        assert!(with(
            json!({ "token": "optional", "claims": [{ "claim": "sub", "equals": "a" }] })
        )
        .starts_with("rules[0].claims:"));
        assert!(with(json!({ "token": "ignored", "providers": ["idp"] }))
            .starts_with("rules[0].token:"));
        assert_eq!(with(json!({ "token": "maybe" })), "rules[0].token: unknown variant `maybe`, expected one of `required`, `optional`, `ignored`");
        assert_eq!(
            with(json!({ "claims": [{ "claim": "sub", "equals": "a", "one_of": ["b"] }] })),
            "rules[0].claims[0]: give exactly one of equals, one_of, contains or scopes"
        );
        assert_eq!(
            with(json!({ "claims": [{ "claim": "sub", "equal": "a" }] })),
            "rules[0].claims[0].equal: unknown field `equal`, expected one of `claim`, `provider`, `equals`, `one_of`, `contains`, `scopes`"
        );
        assert_eq!(
            with(json!({ "claims": [{ "claim": "sub", "one_of": [] }] })),
            "rules[0].claims[0].one_of: expected at least one item"
        );
        assert_eq!(
            with(json!({ "claims": [{ "claim": "scope", "scopes": ["a b"] }] })),
            "rules[0].claims[0].scopes[0]: a scope is one non-empty word"
        );
        assert!(with(json!({ "match": { "methods": ["get"] } }))
            .starts_with("rules[0].match.methods[0]:"));
        assert!(with(json!({ "match": { "path": { "prefix": "api" } } }))
            .starts_with("rules[0].match.path.prefix:"));
        assert_eq!(
            with(json!({ "match": { "path_prefix": "/api/" } })),
            r#"rules[0].match.path_prefix: unknown field; use "path": {"prefix": ...}"#
        );
        assert!(with(json!({ "match": { "hosts": ["a.*.com"] } }))
            .starts_with("rules[0].match.hosts[0]:"));
    }

    #[test]
    fn builds_rules_with_matchers_and_claims() {
        let config = parse(
            json!({
                "providers": [provider()],
                "rules": [
                    { "match": { "path": { "prefix": "/health" } }, "token": "ignored" },
                    { "match": { "hosts": ["*.Example.com"], "methods": ["POST"], "path": { "exact": "/admin" } },
                      "claims": [{ "claim": "realm_access.roles", "contains": "admin" }, { "claim": "scope", "scopes": ["write"] }] },
                ]
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(config.rules[0].requirement, Requirement::Ignore);
        assert_eq!(
            config.rules[1].matcher.hosts,
            vec![HostPattern::Suffix(".example.com".into())]
        );
        let Requirement::Verify {
            claims, providers, ..
        } = &config.rules[1].requirement
        else {
            panic!("expected a verifying rule");
        };
        assert_eq!(providers, &vec![0]);
        assert_eq!(claims[0].path, ["realm_access", "roles"]);
        assert_eq!(claims[1].check, ClaimCheck::Scopes(vec!["write".into()]));
    }

    #[test]
    fn top_level_limits_are_checked() {
        let base = || json!({ "providers": [provider()] });
        let mut c = base();
        c["max_token_bytes"] = json!(10);
        assert_eq!(error(c), "max_token_bytes: expected 256 to 65536, got 10");
        let mut c = base();
        c["realm"] = json!("a\"b");
        assert!(error(c).starts_with("realm:"));
        let mut c = base();
        c["cache"] = json!({ "max_entries": 1_000_000 });
        assert!(error(c).starts_with("cache.max_entries:"));
        let mut c = base();
        c["max_wasm_rsa_bits"] = json!(16384);
        assert_eq!(
            error(c),
            "max_wasm_rsa_bits: expected 2048 to 8192, got 16384"
        );
        let config = parse(base().to_string().as_bytes()).unwrap();
        assert_eq!(config.max_wasm_rsa_bits, 4096);
    }

    #[test]
    fn a_provider_may_narrow_its_algorithms_and_keys_tried_without_kid() {
        let with = |field: &str, value: Value| {
            let mut p = provider();
            p[field] = value;
            json!({ "providers": [p] })
        };
        let config = parse(
            with("algorithms", json!(["ES256", "RS256"]))
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            config.providers[0].algorithms,
            Some(vec![Algorithm::ES256, Algorithm::RS256])
        );
        assert_eq!(config.providers[0].max_keys_without_kid, 4);
        assert_eq!(
            error(with("algorithms", json!(["RS256", "none"]))),
            "providers[0].algorithms[1]: unknown variant `none`, expected one of `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256`, `ES384`, `EdDSA`"
        );
        assert!(error(with("algorithms", json!([]))).starts_with("providers[0].algorithms:"));
        assert_eq!(
            error(with("algorithms", json!(["RS256", "RS256"]))),
            "providers[0].algorithms[1]: RS256 is listed twice"
        );
        assert_eq!(
            error(with("max_keys_without_kid", json!(257))),
            "providers[0].max_keys_without_kid: expected 0 to 256, got 257"
        );
    }

    #[test]
    fn provider_names_are_unique() {
        let text = error(json!({ "providers": [provider(), provider()] }));
        assert_eq!(
            text,
            "providers[1].name: provider names must be unique, \"idp\" is used twice"
        );
    }
}
