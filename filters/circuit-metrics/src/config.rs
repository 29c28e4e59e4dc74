//! The plugin configuration: JSON parsed once at configure time into a validated, immutable
//! [`Config`]. Unknown fields are refused, and every refusal names the field path and what
//! was expected.

use crate::breaker::{Mode, Settings};
use crate::labels::Policy;
use crate::outcome::StatusPattern;
use crate::record;
use crate::window::{Spec, MAX_CALLS, MAX_SPAN};
use meshward_shared::config::{
    parse_json, Bounded, BoundedDuration, ConfigDuration, ConfigError, OneOf, Text,
};
use serde::Deserialize;
use std::time::Duration;

/// The most breakers one plugin may list.
pub const MAX_BREAKERS: usize = 256;
/// The most names a label cap may admit beyond its allow-list.
pub const MAX_LABELS: u32 = 1_000;
/// Label values per kind when `max` is not given and there is no allow-list.
pub const DEFAULT_MAX_LABELS: u32 = 20;
/// The most probes HALF_OPEN may let through.
pub const MAX_PROBES: u32 = 1_000;

/// Which clusters a breaker entry covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterMatch {
    /// Exactly this cluster.
    Exact(String),
    /// Every cluster no other entry names (`"*"`).
    Any,
}

/// One validated breaker entry.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// The clusters it covers.
    pub cluster: ClusterMatch,
    /// One breaker per route to the cluster, rather than one for the cluster.
    pub per_route: bool,
    /// The circuit's name in the refusal header; `None`: the cluster's (and route's) name.
    pub name: Option<String>,
    /// Whether an OPEN breaker refuses requests, or only says it would.
    pub enforce: bool,
    /// The state machine's settings.
    pub settings: Settings,
    /// The fingerprint of `settings`, stamped on its shared-data records.
    pub fingerprint: u64,
}

/// The validated plugin configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Statuses from the upstream a breaker counts as failures.
    pub failure_statuses: Vec<StatusPattern>,
    /// Which cluster names get their own label.
    pub clusters: Policy,
    /// Which route names get their own label.
    pub routes: Policy,
    /// The breakers, in the order written.
    pub breakers: Vec<BreakerConfig>,
}

impl Config {
    /// The breaker entry for `cluster`: the one naming it, else the `"*"` entry.
    pub fn breaker_for(&self, cluster: &str) -> Option<&BreakerConfig> {
        self.breakers
            .iter()
            .find(|b| matches!(&b.cluster, ClusterMatch::Exact(name) if name == cluster))
            .or_else(|| {
                self.breakers
                    .iter()
                    .find(|b| b.cluster == ClusterMatch::Any)
            })
    }

    /// A one-line summary for the log.
    pub fn summary(&self) -> String {
        let enforcing = self.breakers.iter().filter(|b| b.enforce).count();
        format!(
            "{} breaker(s), {enforcing} enforcing; labels: clusters {} allowed + {} more, routes {} allowed + {} more",
            self.breakers.len(),
            self.clusters.allow.len(),
            self.clusters.max,
            self.routes.allow.len(),
            self.routes.max,
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    enforce: bool,
    #[serde(default = "default_failure_statuses")]
    failure_statuses: Vec<StatusPattern>,
    #[serde(default)]
    labels: RawLabels,
    #[serde(default)]
    breakers: Vec<RawBreaker>,
}

fn default_failure_statuses() -> Vec<StatusPattern> {
    vec![StatusPattern::Class(5)]
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    #[serde(default)]
    clusters: RawPolicy,
    #[serde(default)]
    routes: RawPolicy,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    allow: Vec<Text>,
    max: Option<Bounded<0, MAX_LABELS>>,
}

/// A second, in the nanoseconds a [`BoundedDuration`] is given in.
const SECOND: u64 = 1_000_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    cluster: String,
    #[serde(default)]
    per_route: bool,
    name: Option<Text>,
    enforce: Option<bool>,
    #[serde(default)]
    mode: Mode,
    failure_rate_threshold: Option<Percent>,
    slow_call_rate_threshold: Option<Percent>,
    slow_call_duration: Option<Positive>,
    minimum_number_of_calls: Option<Bounded<1, { u32::MAX }>>,
    sliding_window: Option<OneOf<Window>>,
    wait_duration_in_open: Option<Positive>,
    permitted_calls_in_half_open: Option<Bounded<1, MAX_PROBES>>,
    max_wait_in_half_open: Option<ConfigDuration>,
}

/// `sliding_window`: the last N calls, or the calls of the last span.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Window {
    Count(Bounded<1, MAX_CALLS>),
    Time(BoundedDuration<SECOND, { MAX_SPAN.as_secs() * SECOND }>),
}

/// A rate threshold: a percentage above 0 and at most 100.
struct Percent(f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match f64::deserialize(deserializer)? {
            v if v > 0.0 && v <= 100.0 => Ok(Percent(v)),
            v => Err(serde::de::Error::custom(format!(
                "expected a percentage above 0 and at most 100, got {v}"
            ))),
        }
    }
}

/// A duration above zero.
struct Positive(Duration);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ConfigDuration::deserialize(deserializer)? {
            ConfigDuration(d) if d.is_zero() => Err(serde::de::Error::custom(
                "expected a duration above zero, such as \"1s\" or \"500ms\"",
            )),
            ConfigDuration(d) => Ok(Positive(d)),
        }
    }
}

/// Parses and validates the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_json(bytes)?;
    if raw.breakers.len() > MAX_BREAKERS {
        return Err(ConfigError::new(
            "breakers",
            format!(
                "at most {MAX_BREAKERS} breakers, got {}",
                raw.breakers.len()
            ),
        ));
    }
    let mut breakers: Vec<BreakerConfig> = Vec::with_capacity(raw.breakers.len());
    for (i, entry) in raw.breakers.into_iter().enumerate() {
        let path = format!("breakers[{i}]");
        let breaker = breaker(entry, raw.enforce).map_err(|e| e.within(&path))?;
        if breakers.iter().any(|b| b.cluster == breaker.cluster) {
            let cluster = match &breaker.cluster {
                ClusterMatch::Exact(name) => name.as_str(),
                ClusterMatch::Any => "*",
            };
            return Err(ConfigError::new(
                format!("{path}.cluster"),
                format!(
                    "cluster {cluster:?} already has a breaker; each cluster may be listed once"
                ),
            ));
        }
        breakers.push(breaker);
    }
    Ok(Config {
        failure_statuses: raw.failure_statuses,
        clusters: policy(raw.labels.clusters).map_err(|e| e.within("labels.clusters"))?,
        routes: policy(raw.labels.routes).map_err(|e| e.within("labels.routes"))?,
        breakers,
    })
}

fn policy(RawPolicy { allow, max }: RawPolicy) -> Result<Policy, ConfigError> {
    let allow: Vec<String> = allow.into_iter().map(Text::into_string).collect();
    for (i, name) in allow.iter().enumerate() {
        if allow.get(..i).is_some_and(|before| before.contains(name)) {
            return Err(ConfigError::new(
                format!("allow[{i}]"),
                format!("{name:?} is listed twice"),
            ));
        }
    }
    let max = match (max, allow.is_empty()) {
        (Some(max), _) => max.get(),
        (None, true) => DEFAULT_MAX_LABELS,
        (None, false) => 0,
    };
    Ok(Policy { allow, max })
}

fn breaker(raw: RawBreaker, enforce_default: bool) -> Result<BreakerConfig, ConfigError> {
    let cluster = match raw.cluster.as_str() {
        "" => {
            return Err(ConfigError::new(
                "cluster",
                "expected a cluster name, or \"*\" for every other cluster",
            ))
        }
        "*" => ClusterMatch::Any,
        name => ClusterMatch::Exact(name.to_string()),
    };
    let defaults = Settings::default();
    let settings = Settings {
        mode: raw.mode,
        failure_rate_threshold: raw
            .failure_rate_threshold
            .map_or(defaults.failure_rate_threshold, |p| p.0),
        slow_call_rate_threshold: raw
            .slow_call_rate_threshold
            .map_or(defaults.slow_call_rate_threshold, |p| p.0),
        slow_call_duration: raw
            .slow_call_duration
            .map_or(defaults.slow_call_duration, |d| d.0),
        minimum_number_of_calls: raw
            .minimum_number_of_calls
            .map_or(defaults.minimum_number_of_calls, Bounded::get),
        window: match raw.sliding_window {
            None => defaults.window,
            Some(OneOf {
                choice: Window::Count(calls),
                ..
            }) => Spec::Count { calls: calls.get() },
            Some(OneOf {
                choice: Window::Time(span),
                ..
            }) => Spec::time(span.get()),
        },
        wait_duration_in_open: raw
            .wait_duration_in_open
            .map_or(defaults.wait_duration_in_open, |d| d.0),
        permitted_calls_in_half_open: raw
            .permitted_calls_in_half_open
            .map_or(defaults.permitted_calls_in_half_open, Bounded::get),
        max_wait_in_half_open: match raw.max_wait_in_half_open {
            None => defaults.max_wait_in_half_open,
            Some(ConfigDuration(wait)) if wait.is_zero() => None,
            Some(ConfigDuration(wait)) => Some(wait),
        },
    };
    Ok(BreakerConfig {
        cluster,
        per_route: raw.per_route,
        name: raw.name.map(Text::into_string),
        enforce: raw.enforce.unwrap_or(enforce_default),
        fingerprint: record::fingerprint(&settings),
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(json: &str) -> String {
        match parse(json.as_bytes()) {
            Ok(config) => panic!("accepted {json}: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_empty_configuration_measures_and_breaks_nothing() {
        let config = parse(b"{}").unwrap();
        assert!(config.breakers.is_empty());
        assert_eq!(config.failure_statuses, vec![StatusPattern::Class(5)]);
        assert_eq!(config.clusters.max, DEFAULT_MAX_LABELS);
        assert_eq!(config.routes.max, DEFAULT_MAX_LABELS);
    }

    #[test]
    fn a_breaker_takes_resilience4j_defaults() {
        let config = parse(br#"{"breakers": [{"cluster": "upstream"}]}"#).unwrap();
        let breaker = &config.breakers[0];
        assert_eq!(breaker.settings, Settings::default());
        assert!(!breaker.enforce);
        assert_eq!(breaker.cluster, ClusterMatch::Exact("upstream".into()));
    }

    #[test]
    fn every_field_is_read() {
        let config = parse(
            br#"{
              "enforce": true,
              "failure_statuses": ["5xx", "429"],
              "labels": {"clusters": {"allow": ["a"], "max": 3}, "routes": {"allow": ["r"]}},
              "breakers": [{
                "cluster": "*", "per_route": true, "name": "api", "enforce": false,
                "mode": "metrics_only",
                "failure_rate_threshold": 25.5, "slow_call_rate_threshold": 80,
                "slow_call_duration": "2s", "minimum_number_of_calls": 20,
                "sliding_window": {"time": "30s"}, "wait_duration_in_open": "5s",
                "permitted_calls_in_half_open": 3, "max_wait_in_half_open": "0s"
              }]
            }"#,
        )
        .unwrap();
        assert_eq!(
            config.failure_statuses,
            vec![StatusPattern::Class(5), StatusPattern::Code(429)]
        );
        assert_eq!(
            config.clusters,
            Policy {
                allow: vec!["a".into()],
                max: 3
            }
        );
        assert_eq!(
            config.routes.max, 0,
            "an allow-list alone admits nothing else"
        );
        let b = &config.breakers[0];
        assert_eq!((b.per_route, b.enforce), (true, false));
        assert_eq!(b.name.as_deref(), Some("api"));
        assert_eq!(
            b.settings,
            Settings {
                mode: Mode::MetricsOnly,
                failure_rate_threshold: 25.5,
                slow_call_rate_threshold: 80.0,
                slow_call_duration: Duration::from_secs(2),
                minimum_number_of_calls: 20,
                window: Spec::time(Duration::from_secs(30)),
                wait_duration_in_open: Duration::from_secs(5),
                permitted_calls_in_half_open: 3,
                max_wait_in_half_open: None,
            }
        );
    }

    #[test]
    fn the_top_level_enforce_is_each_breakers_default() {
        let config =
            parse(br#"{"enforce": true, "breakers": [{"cluster": "a"}, {"cluster": "b", "enforce": false}]}"#)
                .unwrap();
        assert!(config.breakers[0].enforce);
        assert!(!config.breakers[1].enforce);
    }

    #[test]
    fn a_named_cluster_wins_over_the_wildcard() {
        let config = parse(
            br#"{"breakers": [{"cluster": "*", "name": "any"}, {"cluster": "a", "name": "a"}]}"#,
        )
        .unwrap();
        assert_eq!(config.breaker_for("a").unwrap().name.as_deref(), Some("a"));
        assert_eq!(
            config.breaker_for("z").unwrap().name.as_deref(),
            Some("any")
        );
        let no_wildcard = parse(br#"{"breakers": [{"cluster": "a"}]}"#).unwrap();
        assert!(no_wildcard.breaker_for("z").is_none());
    }

    #[test]
    fn rates_outside_0_to_100_are_refused() {
        for bad in ["0", "-5", "100.5", "150"] {
            let err = refusal(&format!(
                r#"{{"breakers": [{{"cluster": "a", "failure_rate_threshold": {bad}}}]}}"#
            ));
            assert!(
                err.starts_with("breakers[0].failure_rate_threshold: expected a percentage above 0 and at most 100"),
                "{err}"
            );
        }
        let err = refusal(r#"{"breakers": [{"cluster": "a", "slow_call_rate_threshold": 101}]}"#);
        assert!(
            err.starts_with("breakers[0].slow_call_rate_threshold:"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_window_is_refused() {
        let err = refusal(r#"{"breakers": [{"cluster": "a", "sliding_window": {"count": 0}}]}"#);
        assert!(
            err.starts_with("breakers[0].sliding_window.count: expected 1 to 10000, got 0"),
            "{err}"
        );
        let err = refusal(r#"{"breakers": [{"cluster": "a", "sliding_window": {"time": "0s"}}]}"#);
        assert!(
            err.starts_with("breakers[0].sliding_window.time: expected 1s to 1h, got 0ns"),
            "{err}"
        );
        let err = refusal(r#"{"breakers": [{"cluster": "a", "sliding_window": {}}]}"#);
        assert!(
            err.starts_with("breakers[0].sliding_window: give exactly one of count or time"),
            "{err}"
        );
        let err = refusal(
            r#"{"breakers": [{"cluster": "a", "sliding_window": {"count": 5, "time": "5s"}}]}"#,
        );
        assert!(
            err.starts_with("breakers[0].sliding_window: give exactly one of count or time"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = refusal(r#"{"breakers": [{"cluster": "a", "failure_rate": 50}]}"#);
        assert!(
            err.starts_with("breakers[0].failure_rate: unknown field `failure_rate`"),
            "{err}"
        );
        let err = refusal(r#"{"label": {}}"#);
        assert!(err.contains("unknown field `label`"), "{err}");
        let err = refusal(r#"{"breakers": [{"cluster": "a", "sliding_window": {"size": 5}}]}"#);
        assert!(
            err.starts_with("breakers[0].sliding_window.size: unknown field `size`"),
            "{err}"
        );
    }

    #[test]
    fn other_mistakes_name_their_field() {
        let cases = [
            (
                r#"{"breakers": [{"cluster": ""}]}"#,
                "breakers[0].cluster: expected a cluster name",
            ),
            (
                r#"{"breakers": [{"cluster": "a"}, {"cluster": "a"}]}"#,
                "breakers[1].cluster: cluster \"a\" already has a breaker",
            ),
            (
                r#"{"breakers": [{"cluster": "a", "minimum_number_of_calls": 0}]}"#,
                "breakers[0].minimum_number_of_calls: expected 1 to 4294967295, got 0",
            ),
            (
                r#"{"breakers": [{"cluster": "a", "permitted_calls_in_half_open": 0}]}"#,
                "breakers[0].permitted_calls_in_half_open: expected 1 to 1000",
            ),
            (
                r#"{"breakers": [{"cluster": "a", "wait_duration_in_open": "0s"}]}"#,
                "breakers[0].wait_duration_in_open: expected a duration above zero",
            ),
            (
                r#"{"breakers": [{"cluster": "a", "slow_call_duration": "fast"}]}"#,
                "breakers[0].slow_call_duration: expected a duration such as",
            ),
            (
                r#"{"breakers": [{"cluster": "a", "sliding_window": {"count": 20000}}]}"#,
                "breakers[0].sliding_window.count: expected 1 to 10000",
            ),
            (
                r#"{"breakers": [{"cluster": "a", "mode": "off"}]}"#,
                "breakers[0].mode: unknown variant `off`",
            ),
            (
                r#"{"breakers": [{"cluster": "a", "name": "x\r\ny"}]}"#,
                "breakers[0].name: must not contain CR, LF or NUL",
            ),
            (
                r#"{"failure_statuses": ["5xx", "50"]}"#,
                "failure_statuses[1]: expected a status",
            ),
            (
                r#"{"labels": {"routes": {"max": 5000}}}"#,
                "labels.routes.max: expected 0 to 1000, got 5000",
            ),
            (
                r#"{"labels": {"clusters": {"allow": ["a", "a"]}}}"#,
                "labels.clusters.allow[1]: \"a\" is listed twice",
            ),
        ];
        for (json, expected) in cases {
            let err = refusal(json);
            assert!(
                err.starts_with(expected),
                "{json}\n  gave: {err}\n  want: {expected}"
            );
        }
    }
}
