//! The filter's configuration: the JSON users write (unknown fields refused) and its
//! validation into the typed, immutable [`Config`] every stream shares.

use crate::health::{HealthPolicy, MAX_MIN_REQUESTS};
use crate::sticky;
use meshward_shared::config::{
    parse_json, Bounded, BoundedDuration, ConfigDuration, ConfigError, CookieName, HeaderName,
    OneOf, Text,
};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// The most regions a configuration may list: every request reads each one's health.
pub const MAX_REGIONS: usize = 16;
/// The local region's share of the split when `split` is not given, in percent.
const DEFAULT_LOCAL_PERCENT: u32 = 70;
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
    regions: Vec<Region>,
    local_region: Option<String>,
    split: Option<OneOf<Split>>,
    preference_header: Option<HeaderName>,
    latency_header: Option<HeaderName>,
    route_header: Option<HeaderName>,
    route_header_value: Option<RouteValue>,
    decision_header: Option<HeaderName>,
    sticky: Option<OneOf<StickySource>>,
    #[serde(default)]
    health: RawHealth,
}

/// The default split: `{"local_percent": 70}` or `{"weights": {"eu-west-1": 70, ...}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Split {
    /// The local region's share; the others share the rest equally.
    LocalPercent(Bounded<0, 100>),
    /// Every region's share, by name.
    Weights(BTreeMap<String, u32>),
}

/// Each field absent keeps [`HealthPolicy::default`]'s value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    window: Option<Period>,
    min_requests: Option<Bounded<1, { MAX_MIN_REQUESTS as u32 }>>,
    failure_threshold_percent: Option<Bounded<1, 100>>,
    cool_down: Option<Period>,
    probe_percent: Option<Bounded<1, 100>>,
    probe_successes: Option<Bounded<1, 1000>>,
}

/// A health period: above 0, at most an hour.
type Period = BoundedDuration<1, { MAX_HEALTH_PERIOD.as_nanos() as u64 }>;

impl RawHealth {
    fn policy(self) -> HealthPolicy {
        let default = HealthPolicy::default();
        HealthPolicy {
            window: self.window.map_or(default.window, Period::get),
            min_requests: or(self.min_requests, default.min_requests),
            failure_threshold_percent: or(
                self.failure_threshold_percent,
                default.failure_threshold_percent,
            ),
            cool_down: self.cool_down.map_or(default.cool_down, Period::get),
            probe_percent: or(self.probe_percent, default.probe_percent),
            probe_successes: or(self.probe_successes, default.probe_successes),
        }
    }
}

/// The number given, else `default`. Every bound above fits its field's type.
fn or<T: TryFrom<u32>, const MIN: u32, const MAX: u32>(
    n: Option<Bounded<MIN, MAX>>,
    default: T,
) -> T {
    n.and_then(|n| T::try_from(n.get()).ok()).unwrap_or(default)
}

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

/// `sticky`: `{"header": "x-session-id"}` or `{"cookie": "session"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StickySource {
    Header(HeaderName),
    Cookie(CookieName),
}

/// One region: where its traffic goes and how it ranks. Read as written under `regions`;
/// [`Config::parse`] then sets the fields users do not write (`weight`, `seed`, `health_key`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// The name clients and metrics use, lowercase.
    #[serde(deserialize_with = "region_name")]
    pub name: String,
    /// The Envoy cluster serving it.
    #[serde(deserialize_with = "Text::deserialize_string")]
    pub cluster: String,
    /// The expected latency from this proxy, if known (the local region's defaults to 0).
    pub latency: Option<ConfigDuration>,
    /// Whether a client may ask for it by name.
    #[serde(default = "yes", deserialize_with = "or_yes")]
    pub allow_preference: bool,
    /// Its share of the default split, in percent (may be fractional, may be 0).
    #[serde(skip)]
    pub weight: f64,
    /// The region's seed for rendezvous hashing, from its name.
    #[serde(skip)]
    pub seed: u64,
    /// The shared-data key of its health record.
    #[serde(skip)]
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

    /// How far region `i` is from this proxy: its configured latency, 0 for the local
    /// region unless it has one, `None` when unknown.
    pub fn distance(&self, i: usize) -> Option<Duration> {
        match self.regions.get(i)?.latency {
            Some(latency) => Some(latency.0),
            None if i == self.local => Some(Duration::ZERO),
            None => None,
        }
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
        let mut regions = self.regions;
        check_regions(&regions)?;
        for region in &mut regions {
            region.seed = sticky::region_seed(&region.name);
            region.health_key = health_key(&region.name, &region.cluster);
        }
        let local = local_region(&regions, self.local_region.as_deref(), node_region)?;
        set_weights(&mut regions, local, self.split.map(|split| split.choice))?;

        let name = |given: Option<HeaderName>, default: &str| {
            given.map_or_else(|| default.to_string(), HeaderName::into_string)
        };
        let preference_header = name(self.preference_header, "x-region-preference");
        let latency_header = name(self.latency_header, "x-latency-sensitive");
        let route = name(self.route_header, "x-meshward-cluster");
        let sticky = match self.sticky.map(|sticky| sticky.choice) {
            Some(StickySource::Header(name)) => StickyKey::Header(name.into_string()),
            Some(StickySource::Cookie(name)) => StickyKey::Cookie(name.into_string()),
            None => StickyKey::RequestId,
        };
        let clashes = [
            (
                RESERVED_ROUTE_HEADERS.contains(&route.as_str()),
                "route_header",
                format!("{route:?} carries more than a route; choose a header of its own such as \"x-meshward-cluster\""),
            ),
            (
                route == preference_header,
                "route_header",
                format!("must differ from preference_header ({route:?}): the filter replaces whatever the client sent in it"),
            ),
            (
                route == latency_header,
                "route_header",
                format!("must differ from latency_header ({route:?}): the filter replaces whatever the client sent in it"),
            ),
            (
                preference_header == latency_header,
                "latency_header",
                format!("must differ from preference_header ({preference_header:?})"),
            ),
            (
                sticky == StickyKey::Header(route.clone()),
                "sticky.header",
                format!("must differ from route_header ({route:?}), which the filter overwrites"),
            ),
        ];
        if let Some((_, path, problem)) = clashes.into_iter().find(|clash| clash.0) {
            return Err(ConfigError::new(path, problem));
        }

        let mut config = Config {
            regions,
            local,
            by_latency: Vec::new(),
            preference_header,
            latency_header,
            route_header: route,
            route_value: self.route_header_value.unwrap_or_default(),
            decision_header: self.decision_header.map(HeaderName::into_string),
            sticky,
            health: self.health.policy(),
        };
        // Nearest first; `None` sorts after every `Some`, the index keeps configured order.
        let mut order: Vec<usize> = (0..config.regions.len()).collect();
        order.sort_by_key(|&i| (config.distance(i).is_none(), config.distance(i), i));
        config.by_latency = order;
        Ok(config)
    }
}

fn check_regions(regions: &[Region]) -> Result<(), ConfigError> {
    if !(2..=MAX_REGIONS).contains(&regions.len()) {
        return Err(ConfigError::new(
            "regions",
            format!(
                "expected 2 to {MAX_REGIONS} regions to route between, got {}",
                regions.len()
            ),
        ));
    }
    for (i, region) in regions.iter().enumerate() {
        let earlier = regions.get(..i).unwrap_or_default();
        if let Some(other) = earlier.iter().position(|r| r.name == region.name) {
            return Err(ConfigError::new(
                format!("regions[{i}].name"),
                format!("{:?} is already regions[{other}]", region.name),
            ));
        }
        if let Some(other) = earlier.iter().position(|r| r.cluster == region.cluster) {
            return Err(ConfigError::new(
                format!("regions[{i}].cluster"),
                format!(
                    "{:?} already serves regions[{other}]; each region needs its own cluster",
                    region.cluster
                ),
            ));
        }
    }
    Ok(())
}

/// The shared-data key of a region's health record (`health_store` reads and writes it).
/// The cluster is part of it: two plugins that share a VM id and a region name but route
/// it to different clusters keep apart.
fn health_key(name: &str, cluster: &str) -> String {
    format!("meshward.region_router.v1.{name}.{cluster}")
}

fn region_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    let start = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if name.len() > MAX_REGION_NAME
        || !name.bytes().next().is_some_and(start)
        || !name.bytes().all(|b| start(b) || b == b'-' || b == b'_')
    {
        return Err(D::Error::custom(format!("expected a region name of lowercase letters, digits, - and _ (at most {MAX_REGION_NAME}), such as \"eu-west-1\", got {name:?}")));
    }
    Ok(name)
}

fn yes() -> bool {
    true
}

/// `null` is as good as leaving the field out.
fn or_yes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or(true))
}

fn local_region(
    regions: &[Region],
    configured: Option<&str>,
    node_region: Option<&str>,
) -> Result<usize, ConfigError> {
    let names: Vec<String> = regions.iter().map(|r| format!("{:?}", r.name)).collect();
    let names = names.join(", ");
    let index = |name: &str| regions.iter().position(|r| r.name == name);
    let problem = match (configured, node_region) {
        (Some(name), _) => match index(name) {
            Some(i) => return Ok(i),
            None => format!("{name:?} is not one of the regions ({names})"),
        },
        (None, Some(node)) => match index(&node.to_ascii_lowercase()) {
            Some(i) => return Ok(i),
            None => format!("not set, and the proxy's locality region {node:?} is not one of the regions ({names}); set local_region"),
        },
        (None, None) if meshward_shared::host::NATIVE => "not set, and the native build cannot read the proxy's node locality (Envoy's dynamic \
             module ABI has no node attribute); set local_region to one of the regions".to_string(),
        (None, None) => "not set, and the proxy's node has no locality region; set local_region to one of the regions".to_string(),
    };
    Err(ConfigError::new("local_region", problem))
}

fn set_weights(
    regions: &mut [Region],
    local: usize,
    split: Option<Split>,
) -> Result<(), ConfigError> {
    let weights = match split {
        Some(Split::Weights(weights)) => weights,
        local_percent => {
            let percent = match local_percent {
                Some(Split::LocalPercent(percent)) => percent.get(),
                _ => DEFAULT_LOCAL_PERCENT,
            };
            let others = regions.len().saturating_sub(1).max(1) as f64;
            let each = f64::from(100u32.saturating_sub(percent)) / others;
            for (i, region) in regions.iter_mut().enumerate() {
                region.weight = if i == local { f64::from(percent) } else { each };
            }
            return Ok(());
        }
    };
    if let Some(name) = weights
        .keys()
        .find(|&name| !regions.iter().any(|r| &r.name == name))
    {
        return Err(ConfigError::new(
            format!("split.weights.{name}"),
            "is not one of the regions",
        ));
    }
    for region in regions.iter_mut() {
        let Some(weight) = weights.get(&region.name) else {
            return Err(ConfigError::new(
                "split.weights",
                format!(
                    "no weight for region {:?}; give it 0 to keep it out of the split",
                    region.name
                ),
            ));
        };
        region.weight = f64::from(*weight);
    }
    let total: u64 = weights.values().map(|&w| u64::from(w)).sum();
    if total != 100 {
        return Err(ConfigError::new(
            "split.weights",
            format!("weights add up to {total}, expected 100"),
        ));
    }
    Ok(())
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
        assert!(refusal(both).starts_with("split: give exactly one of local_percent or weights"));

        let too_much = with(three_regions(), "split", json!({"local_percent": 101}));
        assert_eq!(
            refusal(too_much),
            "split.local_percent: expected 0 to 100, got 101"
        );
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
        assert_eq!(
            refusal(one),
            "regions: expected 2 to 16 regions to route between, got 1"
        );

        let mut no_cluster = three_regions();
        no_cluster["regions"][1]["cluster"] = json!("");
        assert_eq!(refusal(no_cluster), "regions[1].cluster: must not be empty");

        let mut null_preference = three_regions();
        null_preference["regions"][1]["allow_preference"] = json!(null);
        null_preference["regions"][2]["allow_preference"] = json!(false);
        let config = parse(null_preference).unwrap();
        let open: Vec<bool> = config.regions.iter().map(|r| r.allow_preference).collect();
        assert_eq!(open, vec![true, true, false]);

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
        assert!(refusal(both).starts_with("sticky: give exactly one of header or cookie"));
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
