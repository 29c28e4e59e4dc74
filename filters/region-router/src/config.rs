//! The filter's configuration: the JSON users write (unknown fields refused) and its
//! validation into the typed, immutable [`Config`] every stream shares.

use crate::health::HealthPolicy;
use crate::sticky;
use meshward_shared::config::{
    check_header_name, check_header_value, parse_json, Bounded, BoundedDuration, ConfigDuration,
    ConfigError,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The most regions a configuration may list: every request reads each one's health.
pub const MAX_REGIONS: usize = 16;
/// The longest region name accepted.
pub const MAX_REGION_NAME: usize = 63;
/// The longest `window` or `cool_down` accepted.
pub const MAX_HEALTH_PERIOD: Duration = Duration::from_secs(3600);

/// Request headers the routing header may not be: changing them would change more than the
/// route, or they are the filter's own inputs.
const RESERVED_ROUTE_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "authorization",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "x-request-id",
];

/// The plugin configuration as written; see the README for each field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    regions: Vec<RawRegion>,
    local_region: Option<String>,
    split: Option<RawSplit>,
    preference_header: Option<String>,
    latency_header: Option<String>,
    route_header: Option<String>,
    route_header_value: Option<RouteValue>,
    decision_header: Option<String>,
    sticky: Option<RawSticky>,
    #[serde(default)]
    health: RawHealth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: String,
    cluster: String,
    latency: Option<ConfigDuration>,
    allow_preference: Option<bool>,
}

/// Exactly one of `local_percent` and `weights`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSplit {
    local_percent: Option<u32>,
    weights: Option<BTreeMap<String, u32>>,
}

/// Exactly one of `header` and `cookie`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSticky {
    header: Option<String>,
    cookie: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    window: Option<Period>,
    min_requests: Option<Bounded<1, { crate::health::MAX_MIN_REQUESTS as u32 }>>,
    failure_threshold_percent: Option<Bounded<1, 100>>,
    cool_down: Option<Period>,
    probe_percent: Option<Bounded<1, 100>>,
    probe_successes: Option<Bounded<1, 1000>>,
}

/// A health period: above 0, at most an hour.
type Period = BoundedDuration<1, { MAX_HEALTH_PERIOD.as_nanos() as u64 }>;

/// What the routing header carries: the region's Envoy cluster (for a route with
/// `cluster_header`) or the region's name (for routes that match the header per region).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteValue {
    /// The cluster name.
    #[default]
    Cluster,
    /// The region name.
    Region,
}

/// Where the key that keeps a session in one region comes from. Requests without it fall
/// back to `x-request-id`, which spreads them by the weights without stickiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StickyKey {
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// Only `x-request-id`.
    RequestId,
}

/// One region: where its traffic goes and how it ranks.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// The name clients and metrics use, lowercase.
    pub name: String,
    /// The Envoy cluster serving it.
    pub cluster: String,
    /// The expected latency from this proxy, if known (the local region's defaults to 0).
    pub latency: Option<Duration>,
    /// Its share of the default split, in percent (may be fractional, may be 0).
    pub weight: f64,
    /// Whether a client may ask for it by name.
    pub allow_preference: bool,
    /// The region's seed for rendezvous hashing, from its name.
    pub seed: u64,
    /// The shared-data key of its health record.
    pub health_key: String,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The regions, in the order configured.
    pub regions: Vec<Region>,
    /// The index of the local region.
    pub local: usize,
    /// Region indices, nearest first: by latency (unknown latencies last, in configured
    /// order).
    pub by_latency: Vec<usize>,
    /// The request header listing the client's preferred regions.
    pub preference_header: String,
    /// The request header saying the request is latency-sensitive.
    pub latency_header: String,
    /// The request header the filter sets for the route table.
    pub route_header: String,
    /// What the routing header carries.
    pub route_value: RouteValue,
    /// The response header explaining the decision, if wanted.
    pub decision_header: Option<String>,
    /// Where the session key comes from.
    pub sticky: StickyKey,
    /// When a region counts as failing and how it comes back.
    pub health: HealthPolicy,
}

impl Config {
    /// Parses and validates the plugin configuration. `node_region` is the proxy's own
    /// locality region, used when `local_region` is not set.
    pub fn parse(bytes: &[u8], node_region: Option<&str>) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        raw.validate(node_region)
    }

    /// The index of the region named `name` (already lowercase).
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// The value the routing header gets for region `index`.
    pub fn route_value_of(&self, index: usize) -> Option<&str> {
        let region = self.regions.get(index)?;
        Some(match self.route_value {
            RouteValue::Cluster => &region.cluster,
            RouteValue::Region => &region.name,
        })
    }

    /// One line for the log: the regions and their weights.
    pub fn summary(&self) -> String {
        let regions: Vec<String> = self
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let local = if i == self.local { " (local)" } else { "" };
                format!("{}{local} -> {} {:.1}%", r.name, r.cluster, r.weight)
            })
            .collect();
        format!("regions: {}", regions.join(", "))
    }
}

impl RawConfig {
    fn validate(self, node_region: Option<&str>) -> Result<Config, ConfigError> {
        let mut regions = validate_regions(self.regions)?;
        let local = local_region(&regions, self.local_region.as_deref(), node_region)?;
        set_weights(&mut regions, local, self.split)?;

        let preference_header = header_name(
            "preference_header",
            self.preference_header,
            "x-region-preference",
        )?;
        let latency_header =
            header_name("latency_header", self.latency_header, "x-latency-sensitive")?;
        let route_header = header_name("route_header", self.route_header, "x-meshward-cluster")?;
        let decision_header = match self.decision_header {
            Some(name) => Some(header_name("decision_header", Some(name), "")?),
            None => None,
        };
        let sticky = validate_sticky(self.sticky)?;

        if RESERVED_ROUTE_HEADERS.contains(&route_header.as_str()) {
            return Err(ConfigError::new(
                "route_header",
                format!("{route_header:?} carries more than a route; choose a header of its own such as \"x-meshward-cluster\""),
            ));
        }
        let inputs = [
            ("preference_header", preference_header.as_str()),
            ("latency_header", latency_header.as_str()),
        ];
        for (field, name) in inputs {
            if *name == route_header {
                return Err(ConfigError::new(
                    "route_header",
                    format!("must differ from {field} ({name:?}): the filter replaces whatever the client sent in it"),
                ));
            }
        }
        if preference_header == latency_header {
            return Err(ConfigError::new(
                "latency_header",
                format!("must differ from preference_header ({preference_header:?})"),
            ));
        }
        if let StickyKey::Header(name) = &sticky {
            if *name == route_header {
                return Err(ConfigError::new(
                    "sticky.header",
                    format!("must differ from route_header ({route_header:?}), which the filter overwrites"),
                ));
            }
        }

        let by_latency = nearest_first(&regions, local);
        Ok(Config {
            regions,
            local,
            by_latency,
            preference_header,
            latency_header,
            route_header,
            route_value: self.route_header_value.unwrap_or_default(),
            decision_header,
            sticky,
            health: health_policy(self.health),
        })
    }
}

fn validate_regions(raw: Vec<RawRegion>) -> Result<Vec<Region>, ConfigError> {
    if raw.len() < 2 {
        return Err(ConfigError::new(
            "regions",
            format!(
                "expected at least 2 regions to route between, got {}",
                raw.len()
            ),
        ));
    }
    if raw.len() > MAX_REGIONS {
        return Err(ConfigError::new(
            "regions",
            format!("at most {MAX_REGIONS} regions, got {}", raw.len()),
        ));
    }
    let mut regions: Vec<Region> = Vec::with_capacity(raw.len());
    for (i, region) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("regions[{i}].{field}");
        check_region_name(&at("name"), &region.name)?;
        if region.cluster.is_empty() {
            return Err(ConfigError::new(
                at("cluster"),
                "expected an Envoy cluster name",
            ));
        }
        check_header_value(&at("cluster"), &region.cluster)?;
        if let Some(other) = regions.iter().position(|r| r.name == region.name) {
            return Err(ConfigError::new(
                at("name"),
                format!("{:?} is already regions[{other}]", region.name),
            ));
        }
        if let Some(other) = regions.iter().position(|r| r.cluster == region.cluster) {
            return Err(ConfigError::new(
                at("cluster"),
                format!(
                    "{:?} already serves regions[{other}]; each region needs its own cluster",
                    region.cluster
                ),
            ));
        }
        regions.push(Region {
            seed: sticky::region_seed(&region.name),
            health_key: health_key(&region.name, &region.cluster),
            name: region.name,
            cluster: region.cluster,
            latency: region.latency.map(|d| d.0),
            weight: 0.0,
            allow_preference: region.allow_preference.unwrap_or(true),
        });
    }
    Ok(regions)
}

/// The shared-data key of a region's health record (`health_store` reads and writes it).
/// The cluster is part of it: two plugins that share a VM id and a region name but route
/// it to different clusters keep apart.
fn health_key(name: &str, cluster: &str) -> String {
    format!("meshward.region_router.v1.{name}.{cluster}")
}

fn check_region_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !first_ok || !rest_ok || name.len() > MAX_REGION_NAME {
        return Err(ConfigError::new(
            path,
            format!("expected a region name of lowercase letters, digits, - and _ (at most {MAX_REGION_NAME}), such as \"eu-west-1\", got {name:?}"),
        ));
    }
    Ok(())
}

fn local_region(
    regions: &[Region],
    configured: Option<&str>,
    node_region: Option<&str>,
) -> Result<usize, ConfigError> {
    let names = || {
        regions
            .iter()
            .map(|r| format!("{:?}", r.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (configured, node_region) {
        (Some(name), _) => regions.iter().position(|r| r.name == name).ok_or_else(|| {
            ConfigError::new(
                "local_region",
                format!("{name:?} is not one of the regions ({})", names()),
            )
        }),
        (None, Some(node)) => {
            let lower = node.to_ascii_lowercase();
            regions.iter().position(|r| r.name == lower).ok_or_else(|| {
                ConfigError::new(
                    "local_region",
                    format!(
                        "not set, and the proxy's locality region {node:?} is not one of the regions ({}); set local_region",
                        names()
                    ),
                )
            })
        }
        (None, None) if meshward_shared::host::NATIVE => Err(ConfigError::new(
            "local_region",
            "not set, and the native build cannot read the proxy's node locality (Envoy's dynamic \
             module ABI has no node attribute); set local_region to one of the regions",
        )),
        (None, None) => Err(ConfigError::new(
            "local_region",
            "not set, and the proxy's node has no locality region; set local_region to one of the regions",
        )),
    }
}

fn set_weights(
    regions: &mut [Region],
    local: usize,
    split: Option<RawSplit>,
) -> Result<(), ConfigError> {
    let split = split.unwrap_or(RawSplit {
        local_percent: Some(70),
        weights: None,
    });
    match (split.local_percent, split.weights) {
        (Some(percent), None) => {
            if percent > 100 {
                return Err(ConfigError::new(
                    "split.local_percent",
                    format!("expected a percentage from 0 to 100, got {percent}"),
                ));
            }
            let others = regions.len().saturating_sub(1).max(1) as f64;
            let each = f64::from(100 - percent) / others;
            for (i, region) in regions.iter_mut().enumerate() {
                region.weight = if i == local { f64::from(percent) } else { each };
            }
            Ok(())
        }
        (None, Some(weights)) => {
            for name in weights.keys() {
                if !regions.iter().any(|r| &r.name == name) {
                    return Err(ConfigError::new(
                        format!("split.weights.{name}"),
                        "is not one of the regions",
                    ));
                }
            }
            let mut total = 0u64;
            for region in regions.iter_mut() {
                let Some(weight) = weights.get(&region.name) else {
                    return Err(ConfigError::new(
                        "split.weights",
                        format!("no weight for region {:?}; give it 0 to keep it out of the split", region.name),
                    ));
                };
                total += u64::from(*weight);
                region.weight = f64::from(*weight);
            }
            if total != 100 {
                return Err(ConfigError::new(
                    "split.weights",
                    format!("weights add up to {total}, expected 100"),
                ));
            }
            Ok(())
        }
        _ => Err(ConfigError::new(
            "split",
            "set exactly one of local_percent (for example 70) or weights (for example {\"eu-west-1\": 70, \"us-east-1\": 30})",
        )),
    }
}

fn header_name(field: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let name = value.unwrap_or_else(|| default.to_string());
    check_header_name(field, &name)?;
    Ok(name)
}

fn validate_sticky(raw: Option<RawSticky>) -> Result<StickyKey, ConfigError> {
    let Some(raw) = raw else {
        return Ok(StickyKey::RequestId);
    };
    match (raw.header, raw.cookie) {
        (Some(name), None) => {
            check_header_name("sticky.header", &name)?;
            Ok(StickyKey::Header(name))
        }
        (None, Some(name)) => {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(ConfigError::new(
                    "sticky.cookie",
                    format!("expected a cookie name (letters, digits and -_.), got {name:?}"),
                ));
            }
            Ok(StickyKey::Cookie(name))
        }
        _ => Err(ConfigError::new(
            "sticky",
            "set exactly one of header (for example \"x-session-id\") or cookie (for example \"session\")",
        )),
    }
}

fn health_policy(raw: RawHealth) -> HealthPolicy {
    let defaults = HealthPolicy::default();
    // Every value was range-checked, as it was read, against a bound that fits its type.
    HealthPolicy {
        window: raw.window.map_or(defaults.window, Period::get),
        min_requests: raw.min_requests.map_or(defaults.min_requests, |n| {
            u8::try_from(n.get()).unwrap_or(defaults.min_requests)
        }),
        failure_threshold_percent: raw
            .failure_threshold_percent
            .map_or(defaults.failure_threshold_percent, |n| {
                u8::try_from(n.get()).unwrap_or(defaults.failure_threshold_percent)
            }),
        cool_down: raw.cool_down.map_or(defaults.cool_down, Period::get),
        probe_percent: raw.probe_percent.map_or(defaults.probe_percent, |n| {
            u8::try_from(n.get()).unwrap_or(defaults.probe_percent)
        }),
        probe_successes: raw.probe_successes.map_or(defaults.probe_successes, |n| {
            u16::try_from(n.get()).unwrap_or(defaults.probe_successes)
        }),
    }
}

/// How far region `i` is: its latency; the local region is 0 away unless its latency is
/// given; `None` when unknown.
fn distance(regions: &[Region], local: usize, i: usize) -> Option<Duration> {
    let region = regions.get(i)?;
    match region.latency {
        Some(latency) => Some(latency),
        None if i == local => Some(Duration::ZERO),
        None => None,
    }
}

/// Region indices nearest first; regions with no latency come last, in configured order.
fn nearest_first(regions: &[Region], local: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..regions.len()).collect();
    // `None` sorts after every `Some`; the index keeps configured order among equals.
    order.sort_by_key(|&i| {
        let d = distance(regions, local, i);
        (d.is_none(), d, i)
    });
    order
}

impl Config {
    /// How far region `i` is from this proxy: its configured latency, 0 for the local
    /// region unless it has one, `None` when unknown.
    pub fn distance(&self, i: usize) -> Option<Duration> {
        distance(&self.regions, self.local, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn three_regions() -> serde_json::Value {
        json!({
            "regions": [
                {"name": "eu-west-1", "cluster": "backend-eu", "latency": "2ms"},
                {"name": "us-east-1", "cluster": "backend-us", "latency": "80ms"},
                {"name": "ap-south-1", "cluster": "backend-ap", "latency": "120ms"}
            ],
            "local_region": "eu-west-1"
        })
    }

    fn parse(value: serde_json::Value) -> Result<Config, ConfigError> {
        Config::parse(value.to_string().as_bytes(), None)
    }

    fn refusal(value: serde_json::Value) -> String {
        parse(value).unwrap_err().to_string()
    }

    fn with(
        mut base: serde_json::Value,
        field: &str,
        value: serde_json::Value,
    ) -> serde_json::Value {
        base[field] = value;
        base
    }

    #[test]
    fn the_default_split_gives_70_percent_to_the_local_region_and_spreads_the_rest() {
        let config = parse(three_regions()).unwrap();
        let weights: Vec<f64> = config.regions.iter().map(|r| r.weight).collect();
        assert_eq!(weights, vec![70.0, 15.0, 15.0]);
        assert_eq!(config.local, 0);
        assert_eq!(config.route_header, "x-meshward-cluster");
        assert_eq!(config.preference_header, "x-region-preference");
        assert_eq!(config.latency_header, "x-latency-sensitive");
        assert_eq!(config.sticky, StickyKey::RequestId);
        assert_eq!(config.decision_header, None);
        assert_eq!(config.health, HealthPolicy::default());
    }

    #[test]
    fn explicit_weights_must_name_every_region_and_add_up_to_100() {
        let ok = with(
            three_regions(),
            "split",
            json!({"weights": {"eu-west-1": 50, "us-east-1": 50, "ap-south-1": 0}}),
        );
        let weights: Vec<f64> = parse(ok)
            .unwrap()
            .regions
            .iter()
            .map(|r| r.weight)
            .collect();
        assert_eq!(weights, vec![50.0, 50.0, 0.0]);

        let short = with(
            three_regions(),
            "split",
            json!({"weights": {"eu-west-1": 50, "us-east-1": 40, "ap-south-1": 0}}),
        );
        assert_eq!(
            refusal(short),
            "split.weights: weights add up to 90, expected 100"
        );

        let missing = with(
            three_regions(),
            "split",
            json!({"weights": {"eu-west-1": 100}}),
        );
        assert!(refusal(missing).starts_with("split.weights: no weight for region \"us-east-1\""));

        let unknown = with(
            three_regions(),
            "split",
            json!({"weights": {"eu-west-1": 100, "mars-1": 0}}),
        );
        assert_eq!(
            refusal(unknown),
            "split.weights.mars-1: is not one of the regions"
        );

        let both = with(
            three_regions(),
            "split",
            json!({"local_percent": 70, "weights": {"eu-west-1": 100}}),
        );
        assert!(refusal(both).starts_with("split: set exactly one of"));

        let too_much = with(three_regions(), "split", json!({"local_percent": 101}));
        assert!(refusal(too_much).starts_with("split.local_percent: expected a percentage"));
    }

    #[test]
    fn the_local_region_comes_from_the_config_or_else_from_the_node_locality() {
        let mut no_local = three_regions();
        no_local.as_object_mut().unwrap().remove("local_region");
        let bytes = no_local.to_string();
        let config = Config::parse(bytes.as_bytes(), Some("us-east-1")).unwrap();
        assert_eq!(config.local, 1);
        assert_eq!(config.regions[1].weight, 70.0);

        let err = Config::parse(bytes.as_bytes(), Some("mars-1")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("local_region: not set, and the proxy's locality region \"mars-1\""),
            "{err}"
        );
        let err = Config::parse(bytes.as_bytes(), None).unwrap_err();
        assert_eq!(err.path, "local_region");

        let unknown = with(three_regions(), "local_region", json!("mars-1"));
        assert!(refusal(unknown).starts_with("local_region: \"mars-1\" is not one of the regions"));
    }

    #[test]
    fn regions_must_be_distinct_well_named_and_at_least_two() {
        let mut dup = three_regions();
        dup["regions"][2]["name"] = json!("eu-west-1");
        assert_eq!(
            refusal(dup),
            "regions[2].name: \"eu-west-1\" is already regions[0]"
        );

        let mut dup_cluster = three_regions();
        dup_cluster["regions"][1]["cluster"] = json!("backend-eu");
        assert!(refusal(dup_cluster)
            .starts_with("regions[1].cluster: \"backend-eu\" already serves regions[0]"));

        let mut upper = three_regions();
        upper["regions"][1]["name"] = json!("US-East-1");
        assert!(refusal(upper).starts_with("regions[1].name: expected a region name"));

        let mut dotted = three_regions();
        dotted["regions"][1]["name"] = json!("us.east");
        assert!(refusal(dotted).starts_with("regions[1].name"));

        let one = json!({"regions": [{"name": "a", "cluster": "a"}], "local_region": "a"});
        assert!(refusal(one).starts_with("regions: expected at least 2 regions"));

        let mut bad_latency = three_regions();
        bad_latency["regions"][0]["latency"] = json!("fast");
        assert_eq!(
            refusal(bad_latency),
            "regions[0].latency: expected a duration such as \"1s\" or \"500ms\", got \"fast\""
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let typo = with(three_regions(), "local_regoin", json!("eu-west-1"));
        assert!(refusal(typo).starts_with("local_regoin: unknown field `local_regoin`"));
        let mut nested = three_regions();
        nested["regions"][0]["weight"] = json!(10);
        let err = refusal(nested);
        assert!(
            err.starts_with("regions[0].weight: unknown field `weight`"),
            "{err}"
        );
        let health = with(three_regions(), "health", json!({"threshold": 50}));
        assert!(refusal(health).starts_with("health.threshold: unknown field `threshold`"));
    }

    #[test]
    fn header_names_are_checked_and_kept_apart() {
        let upper = with(three_regions(), "route_header", json!("X-Cluster"));
        assert!(refusal(upper).starts_with("route_header: header names are lowercase"));
        let host = with(three_regions(), "route_header", json!("host"));
        assert!(refusal(host).starts_with("route_header: \"host\" carries more than a route"));
        let same = with(
            three_regions(),
            "route_header",
            json!("x-region-preference"),
        );
        assert!(refusal(same).starts_with("route_header: must differ from preference_header"));
        let sticky_route = with(
            three_regions(),
            "sticky",
            json!({"header": "x-meshward-cluster"}),
        );
        assert!(refusal(sticky_route).starts_with("sticky.header: must differ from route_header"));
        let both = with(
            three_regions(),
            "sticky",
            json!({"header": "a", "cookie": "b"}),
        );
        assert!(refusal(both).starts_with("sticky: set exactly one"));
        let cookie = with(three_regions(), "sticky", json!({"cookie": "session id"}));
        assert!(refusal(cookie).starts_with("sticky.cookie: expected a cookie name"));
    }

    #[test]
    fn health_settings_are_range_checked() {
        let cases = [
            (
                json!({"min_requests": 0}),
                "health.min_requests: expected 1 to 64, got 0",
            ),
            (
                json!({"min_requests": 65}),
                "health.min_requests: expected 1 to 64, got 65",
            ),
            (
                json!({"failure_threshold_percent": 0}),
                "health.failure_threshold_percent: expected 1 to 100, got 0",
            ),
            (
                json!({"probe_percent": 101}),
                "health.probe_percent: expected 1 to 100, got 101",
            ),
            (
                json!({"window": "0s"}),
                "health.window: expected 1ns to 1h, got 0ns",
            ),
            (
                json!({"cool_down": "2h"}),
                "health.cool_down: expected 1ns to 1h, got 2h",
            ),
        ];
        for (health, expected) in cases {
            assert_eq!(refusal(with(three_regions(), "health", health)), expected);
        }
        let tuned = with(
            three_regions(),
            "health",
            json!({"window": "2s", "min_requests": 10, "failure_threshold_percent": 30,
                   "cool_down": "1s", "probe_percent": 20, "probe_successes": 3}),
        );
        let policy = parse(tuned).unwrap().health;
        assert_eq!(policy.window, Duration::from_secs(2));
        assert_eq!(policy.min_requests, 10);
        assert_eq!(policy.failure_threshold_percent, 30);
        assert_eq!(policy.cool_down, Duration::from_secs(1));
        assert_eq!(policy.probe_percent, 20);
        assert_eq!(policy.probe_successes, 3);
    }

    #[test]
    fn regions_are_ranked_nearest_first_with_unknown_latencies_last() {
        let value = json!({
            "regions": [
                {"name": "far", "cluster": "c-far"},
                {"name": "home", "cluster": "c-home"},
                {"name": "near", "cluster": "c-near", "latency": "10ms"},
                {"name": "mid", "cluster": "c-mid", "latency": "40ms"}
            ],
            "local_region": "home"
        });
        let config = parse(value).unwrap();
        let names: Vec<&str> = config
            .by_latency
            .iter()
            .map(|&i| config.regions[i].name.as_str())
            .collect();
        assert_eq!(names, vec!["home", "near", "mid", "far"]);
    }

    #[test]
    fn the_route_header_carries_the_cluster_or_the_region() {
        let config = parse(three_regions()).unwrap();
        assert_eq!(config.route_value_of(1), Some("backend-us"));
        let by_region = with(three_regions(), "route_header_value", json!("region"));
        assert_eq!(
            parse(by_region).unwrap().route_value_of(1),
            Some("us-east-1")
        );
        let bad = with(three_regions(), "route_header_value", json!("host"));
        assert!(refusal(bad).starts_with("route_header_value: unknown variant `host`"));
    }
}
