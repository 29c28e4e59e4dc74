//! The plugin configuration: JSON parsed once at configure time into a validated,
//! immutable [`Config`]. Every refusal names the field path and what was expected.

use crate::bucket::{Limit, MAX_PERIOD, MAX_TOKENS, MIN_PERIOD};
use crate::keys::KeyPart;
use crate::metrics::RuleMetrics;
use crate::request::Request;
use crate::table::Table;
use meshward_shared::config::{
    parse_json, Bounded, BoundedDuration, ConfigError, HeaderName, NonEmpty, Text,
};
use meshward_shared::matching::RequestMatch;
use serde::Deserialize;
use std::time::Duration;

/// Buckets a keyed rule holds when `buckets` is not given.
pub const DEFAULT_BUCKETS: u32 = 10_000;
/// The most buckets one rule may hold (about 40 MB of shared data when all are in use).
pub const MAX_BUCKETS: u32 = 1_000_000;
/// The most rules one plugin may have.
pub const MAX_RULES: usize = 64;
/// How long a rate limit service call may take when `global.timeout` is not given.
pub const DEFAULT_GLOBAL_TIMEOUT: Duration = Duration::from_millis(20);
/// The longest `global.timeout`: the request waits this long for the service.
pub const MAX_GLOBAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a rule limits or only reports.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Requests over the limit are refused.
    #[default]
    Enforce,
    /// Requests over the limit are counted, logged and let through.
    Shadow,
}

/// What happens when the buckets cannot be reached (shared data failed, or other workers
/// kept winning the compare-and-swap), or, for `global.failure_mode`, when the rate limit
/// service does not give an answer.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the request through.
    #[default]
    Allow,
    /// Refuse the request.
    Deny,
}

/// What a keyed rule does with a request that lacks part of its key.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MissingKey {
    /// Count it under the key with that part absent: all such requests share one bucket,
    /// so leaving a header out is no way around the limit.
    #[default]
    Share,
    /// The rule does not apply to it.
    Skip,
}

/// Which rate-limit headers responses carry.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseHeaders {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    pub ietf: bool,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, as Envoy's
    /// `local_ratelimit` sends with `DRAFT_VERSION_03`.
    pub x_ratelimit: bool,
    /// Also add them to responses that were let through, not only to refusals.
    pub on_allowed: bool,
}

impl Default for ResponseHeaders {
    fn default() -> Self {
        ResponseHeaders {
            ietf: true,
            x_ratelimit: false,
            on_allowed: false,
        }
    }
}

/// One validated rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The rule's name, in metrics, shared-data names and headers.
    pub name: String,
    /// What the rule applies to; `None`: every request (decided here, at load, so an
    /// unconditional rule costs nothing per request).
    pub matcher: Option<RequestMatch>,
    /// What its buckets are counted under; empty: one bucket for the rule.
    pub key: Vec<KeyPart>,
    /// What to do when part of the key is missing.
    pub missing_key: MissingKey,
    /// The local bucket, checked first; `None` for a rule only the service counts.
    pub local: Option<Local>,
    /// The rate limit service that also counts the rule, if any.
    pub global: Option<Global>,
    /// Enforce or shadow.
    pub mode: Mode,
    /// In shadow mode, a request header added upstream to requests that would have been
    /// limited, with the rule name as its value.
    pub shadow_header: Option<String>,
    /// What the rule reports. Parsing leaves the handles inert; the adapter defines them
    /// when the proxy accepts the configuration ([`Config::define_metrics`]).
    pub metrics: RuleMetrics,
}

impl Config {
    /// Defines each rule's metrics in the proxy (global-mode ones only for rules with a
    /// service). Once, when the configuration is accepted.
    pub fn define_metrics(&mut self) {
        for rule in &mut self.rules {
            rule.metrics = RuleMetrics::define(&rule.name, rule.global.is_some());
        }
    }
}

impl Rule {
    /// Whether the rule's match selects `request`.
    pub fn applies_to(&self, request: &dyn Request) -> bool {
        self.matcher.as_ref().is_none_or(|m| m.matches(request))
    }
}

/// A rule's local token bucket.
#[derive(Clone, Debug)]
pub struct Local {
    /// The bucket's capacity and refill.
    pub limit: Limit,
    /// Where its buckets live.
    pub table: Table,
}

/// A rule's global counting: an Envoy Rate Limit Service (`ShouldRateLimit` over gRPC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    /// The Envoy cluster of the service (HTTP/2).
    pub cluster: String,
    /// The domain sent with every request.
    pub domain: String,
    /// How long to wait for the answer.
    pub timeout: Duration,
    /// The same, in the whole milliseconds the host takes (rounded up).
    pub timeout_millis: u32,
    /// The hits each request adds.
    pub hits_addend: u32,
    /// What happens when the service gives no answer.
    pub failure_mode: FailureMode,
}

/// The validated plugin configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The rules, in the order they are checked.
    pub rules: Vec<Rule>,
    /// The status of a refusal.
    pub status: u32,
    /// What to do when the buckets cannot be reached.
    pub failure_mode: FailureMode,
    /// Compare-and-swap attempts per bucket update before the failure mode applies.
    pub cas_attempts: u32,
    /// Which rate-limit headers to send.
    pub response_headers: ResponseHeaders,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    rules: NonEmpty<RawRule>,
    status: Option<Bounded<400, 599>>,
    #[serde(default)]
    failure_mode: FailureMode,
    cas_attempts: Option<Bounded<1, 100>>,
    #[serde(default)]
    response_headers: ResponseHeaders,
}

/// Compare-and-swap attempts per bucket update when `cas_attempts` is not given.
const DEFAULT_CAS_ATTEMPTS: u32 = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default, rename = "match")]
    matcher: RequestMatch,
    #[serde(default)]
    key: Vec<RawKeyPart>,
    limit: Option<RawLimit>,
    global: Option<RawGlobal>,
    buckets: Option<Bounded<1, MAX_BUCKETS>>,
    missing_key: Option<MissingKey>,
    #[serde(default)]
    mode: Mode,
    shadow_header: Option<HeaderName>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawKeyPart {
    ClientAddress,
    XForwardedFor(RawForwardedFor),
    Header(HeaderName),
    Path,
    Method,
    Query(Text),
    Cookie(Text),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForwardedFor {
    trusted_hops: Bounded<1, 64>,
}

/// A millisecond, in the nanoseconds a [`BoundedDuration`] is given in.
const MS: u64 = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    cluster: Text,
    domain: Text,
    timeout: Option<BoundedDuration<MS, { 60_000 * MS }>>,
    hits_addend: Option<Bounded<1, { u32::MAX }>>,
    #[serde(default)]
    failure_mode: FailureMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    capacity: Bounded<1, { MAX_TOKENS as u32 }>,
    refill: Option<Bounded<1, { MAX_TOKENS as u32 }>>,
    per: BoundedDuration<{ MIN_PERIOD.as_nanos() as u64 }, { MAX_PERIOD.as_nanos() as u64 }>,
}

/// Parses and validates the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_json(bytes)?;
    let raw_rules = raw.rules.into_vec();
    if raw_rules.len() > MAX_RULES {
        return Err(ConfigError::new(
            "rules",
            format!("at most {MAX_RULES} rules, got {}", raw_rules.len()),
        ));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(raw_rules.len());
    for (i, raw_rule) in raw_rules.into_iter().enumerate() {
        let rule = rule(raw_rule).map_err(|e| e.within(&format!("rules[{i}]")))?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(ConfigError::new(
                format!("rules[{i}].name"),
                format!("{:?} is already the name of another rule", rule.name),
            ));
        }
        rules.push(rule);
    }
    Ok(Config {
        rules,
        status: raw.status.map_or(429, Bounded::get),
        failure_mode: raw.failure_mode,
        cas_attempts: raw.cas_attempts.map_or(DEFAULT_CAS_ATTEMPTS, |n| n.get()),
        response_headers: raw.response_headers,
    })
}

fn rule(raw: RawRule) -> Result<Rule, ConfigError> {
    check_name(&raw.name)?;
    let limit = match &raw.limit {
        Some(l) => Some(limit(l).map_err(|e| e.within("limit"))?),
        None => None,
    };
    let global = match raw.global {
        Some(g) => Some(global(g).map_err(|e| e.within("global"))?),
        None => None,
    };
    if limit.is_none() && global.is_none() {
        return Err(ConfigError::new(
            "",
            "expected \"limit\" (a local bucket), \"global\" (a rate limit service), or both",
        ));
    }
    let key: Vec<KeyPart> = raw.key.into_iter().map(key_part).collect();
    let buckets = match (key.is_empty(), raw.buckets) {
        (_, Some(_)) if limit.is_none() => {
            return Err(ConfigError::new(
                "buckets",
                "only applies to a rule with a local \"limit\"",
            ))
        }
        (true, Some(_)) => {
            return Err(ConfigError::new(
                "buckets",
                "a rule without a key has one bucket; add a key or remove buckets",
            ))
        }
        (true, None) => 1,
        (false, None) => DEFAULT_BUCKETS,
        (false, Some(n)) => n.get(),
    };
    if key.is_empty() && raw.missing_key.is_some() {
        return Err(ConfigError::new(
            "missing_key",
            "only applies to a rule with a key",
        ));
    }
    let shadow_header = match (&raw.shadow_header, raw.mode) {
        (Some(_), Mode::Enforce) => {
            return Err(ConfigError::new(
                "shadow_header",
                "only applies with \"mode\": \"shadow\"",
            ))
        }
        (Some(name), Mode::Shadow) => Some(name.as_str().to_string()),
        (None, _) => None,
    };
    Ok(Rule {
        local: limit.map(|limit| Local {
            table: Table::new(&raw.name, &limit, buckets),
            limit,
        }),
        global,
        name: raw.name,
        matcher: (!raw.matcher.is_empty()).then_some(raw.matcher),
        key,
        missing_key: raw.missing_key.unwrap_or_default(),
        mode: raw.mode,
        shadow_header,
        metrics: RuleMetrics::default(),
    })
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    if name.is_empty() || name.len() > 64 || !name.bytes().all(ok) {
        return Err(ConfigError::new(
            "name",
            format!(
                "expected 1 to 64 lowercase letters, digits or '_' (it names metrics), got {name:?}"
            ),
        ));
    }
    Ok(())
}

fn limit(raw: &RawLimit) -> Result<Limit, ConfigError> {
    let capacity = raw.capacity.get();
    let refill = raw.refill.map_or(capacity, Bounded::get);
    Limit::new(u64::from(capacity), u64::from(refill), raw.per.get())
        .ok_or_else(|| ConfigError::new("", "limit out of the supported range"))
}

fn global(raw: RawGlobal) -> Result<Global, ConfigError> {
    let timeout = raw
        .timeout
        .map_or(DEFAULT_GLOBAL_TIMEOUT, BoundedDuration::get);
    let timeout_millis = u32::try_from(timeout.as_nanos().div_ceil(1_000_000))
        .map_err(|_| ConfigError::new("timeout", "out of range"))?;
    Ok(Global {
        cluster: raw.cluster.into_string(),
        domain: raw.domain.into_string(),
        timeout,
        timeout_millis,
        hits_addend: raw.hits_addend.map_or(1, |n| n.get()),
        failure_mode: raw.failure_mode,
    })
}

fn key_part(raw: RawKeyPart) -> KeyPart {
    match raw {
        RawKeyPart::ClientAddress => KeyPart::ClientAddress,
        RawKeyPart::XForwardedFor(RawForwardedFor { trusted_hops }) => KeyPart::ForwardedFor {
            trusted_hops: trusted_hops.get(),
        },
        RawKeyPart::Header(name) => KeyPart::Header(name.into_string()),
        RawKeyPart::Path => KeyPart::Path,
        RawKeyPart::Method => KeyPart::Method,
        RawKeyPart::Query(name) => KeyPart::Query(name.into_string()),
        RawKeyPart::Cookie(name) => KeyPart::Cookie(name.into_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid configuration with one rule, `extra` merged into the rule.
    pub(crate) fn with_rule(extra: &str) -> String {
        format!(r#"{{"rules":[{{"name":"api","limit":{{"capacity":10,"per":"1s"}}{extra}}}]}}"#)
    }

    fn refused(json: &str) -> String {
        match parse(json.as_bytes()) {
            Ok(_) => panic!("accepted {json}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_minimal_rule_limits_everything_with_one_bucket() {
        let c = parse(with_rule("").as_bytes()).unwrap();
        let r = &c.rules[0];
        assert_eq!(r.name, "api");
        let local = r.local.as_ref().unwrap();
        assert_eq!(
            local.limit,
            Limit::new(10, 10, Duration::from_secs(1)).unwrap()
        );
        assert!(r.key.is_empty());
        assert_eq!(local.table.capacity(), 1);
        assert_eq!(r.global, None);
        assert_eq!(r.mode, Mode::Enforce);
        assert_eq!(c.status, 429);
        assert_eq!(c.failure_mode, FailureMode::Allow);
        assert_eq!(c.response_headers, ResponseHeaders::default());
    }

    #[test]
    fn a_full_configuration_parses() {
        let json = r#"{
            "rules": [{
                "name": "per_client",
                "match": {"hosts": ["API.example.com", "*.internal"],
                          "path": {"regex": "/users/\\d+"}, "methods": ["GET", "POST"]},
                "key": ["client_address", {"x_forwarded_for": {"trusted_hops": 2}},
                        {"header": "x-user"}, "path", "method",
                        {"query": "api_key"}, {"cookie": "session"}],
                "limit": {"capacity": 100, "refill": 10, "per": "1m"},
                "buckets": 20000,
                "missing_key": "skip",
                "mode": "shadow",
                "shadow_header": "x-rate-limit-shadow"
            }],
            "status": 503,
            "failure_mode": "deny",
            "cas_attempts": 4,
            "response_headers": {"ietf": false, "x_ratelimit": true, "on_allowed": true}
        }"#;
        let c = parse(json.as_bytes()).unwrap();
        let r = &c.rules[0];
        assert_eq!(r.key.len(), 7);
        assert_eq!(r.key[1], KeyPart::ForwardedFor { trusted_hops: 2 });
        assert_eq!(r.local.as_ref().unwrap().table.capacity(), 20000);
        assert_eq!(r.missing_key, MissingKey::Skip);
        assert_eq!(r.shadow_header.as_deref(), Some("x-rate-limit-shadow"));
        let matcher = r.matcher.as_ref().unwrap();
        assert_eq!(matcher.hosts.len(), 2);
        assert_eq!(matcher.methods.len(), 2);
        assert!(matcher.path.is_some());
        assert_eq!(c.status, 503);
        assert_eq!(c.failure_mode, FailureMode::Deny);
        assert!(c.response_headers.on_allowed);
    }

    /// A rule with only a `global` object, `global` merged with `extra`.
    fn global_rule(extra: &str) -> String {
        format!(
            r#"{{"rules":[{{"name":"g","global":{{"cluster":"rls","domain":"meshward"{extra}}}}}]}}"#
        )
    }

    #[test]
    fn a_global_rule_takes_the_defaults_and_needs_no_local_limit() {
        let c = parse(global_rule("").as_bytes()).unwrap();
        let r = &c.rules[0];
        assert!(r.local.is_none());
        assert_eq!(
            r.global,
            Some(Global {
                cluster: "rls".into(),
                domain: "meshward".into(),
                timeout: Duration::from_millis(20),
                timeout_millis: 20,
                hits_addend: 1,
                failure_mode: FailureMode::Allow,
            })
        );
    }

    #[test]
    fn a_global_rule_can_have_a_local_bucket_in_front() {
        let json = r#"{"rules":[{"name":"per_user","key":[{"header":"x-user"}],"buckets":96,
            "limit":{"capacity":20,"refill":10,"per":"1s"},
            "global":{"cluster":"rate_limit_service","domain":"d","timeout":"1500us",
                      "hits_addend":3,"failure_mode":"deny"}}]}"#;
        let c = parse(json.as_bytes()).unwrap();
        let r = &c.rules[0];
        assert_eq!(r.local.as_ref().unwrap().table.capacity(), 96);
        let g = r.global.as_ref().unwrap();
        assert_eq!(g.timeout, Duration::from_micros(1500));
        assert_eq!(g.timeout_millis, 2, "the host takes whole milliseconds");
        assert_eq!(g.hits_addend, 3);
        assert_eq!(g.failure_mode, FailureMode::Deny);
    }

    #[test]
    fn refuses_global_settings_that_cannot_work() {
        let cases = [
            (
                global_rule(r#","port":8081"#),
                "rules[0].global.port: unknown field `port`",
            ),
            (
                r#"{"rules":[{"name":"g","global":{"domain":"d"}}]}"#.into(),
                "rules[0].global: missing field `cluster`",
            ),
            (
                r#"{"rules":[{"name":"g","global":{"cluster":"rls"}}]}"#.into(),
                "rules[0].global: missing field `domain`",
            ),
            (
                r#"{"rules":[{"name":"g","global":{"cluster":"","domain":"d"}}]}"#.into(),
                "rules[0].global.cluster: must not be empty",
            ),
            (
                r#"{"rules":[{"name":"g","global":{"cluster":"rls","domain":""}}]}"#.into(),
                "rules[0].global.domain: must not be empty",
            ),
            (
                global_rule(r#","hits_addend":0"#),
                "rules[0].global.hits_addend: expected 1 to 4294967295, got 0",
            ),
            (
                global_rule(r#","hits_addend":-1"#),
                "rules[0].global.hits_addend: invalid value",
            ),
            (
                global_rule(r#","timeout":"soon""#),
                r#"rules[0].global.timeout: expected a duration such as "1s" or "500ms", got "soon""#,
            ),
            (
                global_rule(r#","timeout":"500us""#),
                "rules[0].global.timeout: expected 1ms to 60s, got 500µs",
            ),
            (
                global_rule(r#","timeout":"0ms""#),
                "rules[0].global.timeout: expected 1ms to 60s, got 0ns",
            ),
            (
                global_rule(r#","timeout":"2m""#),
                "rules[0].global.timeout: expected 1ms to 60s, got 120s",
            ),
            (
                global_rule(r#","failure_mode":"open""#),
                "rules[0].global.failure_mode: unknown variant `open`",
            ),
            (
                r#"{"rules":[{"name":"g","buckets":9,"key":["path"],
                    "global":{"cluster":"rls","domain":"d"}}]}"#
                    .into(),
                "rules[0].buckets: only applies to a rule with a local \"limit\"",
            ),
            (
                r#"{"rules":[{"name":"neither"}]}"#.into(),
                r#"rules[0]: expected "limit" (a local bucket), "global" (a rate limit service), or both"#,
            ),
        ];
        for (json, expected) in cases {
            let err = refused(&json);
            assert!(
                err.starts_with(expected),
                "{json}\n  got: {err}\n  want: {expected}"
            );
        }
    }

    #[test]
    fn refuses_a_zero_capacity_naming_the_field() {
        let json = r#"{"rules":[{"name":"a","limit":{"capacity":0,"per":"1s"}}]}"#;
        assert_eq!(
            refused(json),
            "rules[0].limit.capacity: expected 1 to 1000000000, got 0"
        );
    }

    #[test]
    fn refuses_an_unknown_key_source() {
        let err = refused(&with_rule(r#","key":[{"ip":{}}]"#));
        assert!(err.starts_with("rules[0].key[0]"), "{err}");
        assert!(err.contains("unknown variant `ip`"), "{err}");
    }

    #[test]
    fn refuses_a_bad_regex_in_one_line() {
        let err = refused(&with_rule(r#","match":{"path":{"regex":"/users/[0-9"}}"#));
        assert!(
            err.starts_with("rules[0].match.path.regex: not a valid regex"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn refuses_unknown_fields_everywhere() {
        for (json, field) in [
            (
                r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"1s"}}],"burst":1}"#
                    .to_string(),
                "burst",
            ),
            (with_rule(r#","limits":{}"#), "limits"),
            (
                r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"1s","burst":2}}]}"#
                    .to_string(),
                "burst",
            ),
            (with_rule(r#","match":{"host":["a"]}"#), "host"),
            (
                with_rule(r#","key":[{"x_forwarded_for":{"hops":1}}]"#),
                "hops",
            ),
            (with_rule(r#","response_headers":{}"#), "response_headers"),
        ] {
            let err = refused(&json);
            assert!(
                err.contains(&format!("unknown field `{field}`")),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn refuses_what_cannot_work() {
        let cases = [
            (r#"{"rules":[]}"#.to_string(), "rules: expected at least one item"),
            (
                r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"1s"}}],"status":200}"#.into(),
                "status: expected 400 to 599, got 200",
            ),
            (
                r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"1s"}}],"cas_attempts":0}"#.into(),
                "cas_attempts: expected 1 to 100, got 0",
            ),
            (
                r#"{"rules":[{"name":"Bad-Name","limit":{"capacity":1,"per":"1s"}}]}"#.into(),
                "rules[0].name: expected 1 to 64 lowercase letters",
            ),
            (
                r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"fast"}}]}"#.into(),
                r#"rules[0].limit.per: expected a duration such as "1s" or "500ms", got "fast""#,
            ),
            (
                r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"1us"}}]}"#.into(),
                "rules[0].limit.per: expected 1ms to 8784h, got 1µs",
            ),
            (
                r#"{"rules":[{"name":"a","limit":{"capacity":1,"refill":0,"per":"1s"}}]}"#.into(),
                "rules[0].limit.refill: expected 1 to",
            ),
            (with_rule(r#","buckets":5"#), "rules[0].buckets: a rule without a key"),
            (
                with_rule(r#","key":["path"],"buckets":0"#),
                "rules[0].buckets: expected 1 to 1000000",
            ),
            (with_rule(r#","missing_key":"skip""#), "rules[0].missing_key"),
            (
                with_rule(r#","shadow_header":"x-s""#),
                "rules[0].shadow_header: only applies with",
            ),
            (
                with_rule(r#","mode":"shadow","shadow_header":"X-S""#),
                "rules[0].shadow_header: header names are lowercase",
            ),
            (
                with_rule(r#","key":[{"header":"bad header"}]"#),
                "rules[0].key[0].header: expected a header name",
            ),
            (
                with_rule(r#","key":[{"x_forwarded_for":{"trusted_hops":0}}]"#),
                "rules[0].key[0].x_forwarded_for.trusted_hops: expected 1 to 64",
            ),
            (with_rule(r#","key":[{"query":""}]"#), "rules[0].key[0].query"),
            (
                with_rule(r#","match":{"hosts":["a.com:80"]}"#),
                "rules[0].match.hosts[0]: expected a host",
            ),
            (
                with_rule(r#","match":{"methods":["get"]}"#),
                "rules[0].match.methods[0]: expected an uppercase method",
            ),
            (
                with_rule(r#","match":{"path":{"prefix":"api"}}"#),
                "rules[0].match.path.prefix: expected a path starting with '/'",
            ),
            (with_rule(r#","mode":"dry_run""#), "rules[0].mode: unknown variant `dry_run`"),
            (
                r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"1s"}},{"name":"a","limit":{"capacity":1,"per":"1s"}}]}"#.into(),
                r#"rules[1].name: "a" is already the name of another rule"#,
            ),
        ];
        for (json, expected) in cases {
            let err = refused(&json);
            assert!(
                err.starts_with(expected),
                "{json}\n  got: {err}\n  want: {expected}"
            );
        }
    }
}
