//! WasmPlugins turned into the Envoy config istiod gives the gateway they select, so that
//! `envoy --mode validate` can load each module with its `pluginConfig` as a gateway would.
//!
//! For each WasmPlugin istiod builds an `envoy.extensions.filters.http.wasm.v3.Wasm`:
//! `name` `<namespace>.<name>`, `root_id` from `pluginName`, `configuration` a
//! `google.protobuf.StringValue` holding `pluginConfig` as JSON, the V8 runtime, and the
//! `failure_policy` of `failStrategy`. It orders the plugins by phase (AUTHN, AUTHZ, STATS,
//! then those without one, right before the router) and, within a phase, by priority,
//! highest first. The code is a remote URL that the istio-agent fetches, checks against
//! `sha256` and replaces by the local file; here it is `out/<module>.wasm` from
//! `make build`, `<module>` being the image's name (`.../meshward/<module>:<tag>`).

use serde_json::{json, Map, Value};

use crate::kustomize::{display_name, of_kind};
use crate::{EnvoyConfig, RigError};

/// The region the example gateway runs in: k8s/base/region-router.yaml is the eu-west-1
/// cluster's copy, and leaves the local region to the node's locality, as a gateway pod
/// in that region has it.
pub const GATEWAY_REGION: &str = "eu-west-1";

/// Where istiod puts a phase in the chain: AUTHN first, no phase last.
fn phase_rank(phase: &Value) -> u8 {
    match phase.as_str() {
        Some("AUTHN") => 0,
        Some("AUTHZ") => 1,
        Some("STATS") => 2,
        _ => 3,
    }
}

/// The WasmPlugins in the order of the filter chain istiod builds: by phase, then by
/// priority (highest first, default 0), then by namespace and name.
pub fn chain_order<'a>(plugins: &[&'a Value]) -> Vec<&'a Value> {
    let mut ordered = plugins.to_vec();
    ordered.sort_by_key(|p| {
        let spec = &p["spec"];
        (
            phase_rank(&spec["phase"]),
            std::cmp::Reverse(spec["priority"].as_i64().unwrap_or(0)),
            p["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    });
    ordered
}

/// The module a WasmPlugin's URL names: the last path segment, without tag or digest
/// (`oci://registry.example.com/meshward/jwt-auth:0.1.0` is `jwt-auth`).
pub fn module_name(plugin: &Value) -> Result<String, RigError> {
    let url = plugin["spec"]["url"].as_str().unwrap_or_default();
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let last = path.rsplit('/').next().unwrap_or_default();
    let name = last.split(['@', ':']).next().unwrap_or_default();
    let name = name.strip_suffix(".wasm").unwrap_or(name);
    if name.is_empty() {
        return Err(RigError::Config {
            source: display_name(plugin),
            message: format!("spec.url {url:?} names no module"),
        });
    }
    Ok(name.to_owned())
}

/// Envoy's `failure_policy` for a `failStrategy` (FAIL_CLOSE when unset).
pub fn failure_policy(fail_strategy: &Value) -> Result<&'static str, String> {
    match fail_strategy.as_str() {
        None | Some("FAIL_CLOSE") => Ok("FAIL_CLOSED"),
        Some("FAIL_OPEN") => Ok("FAIL_OPEN"),
        Some("FAIL_RELOAD") => Ok("FAIL_RELOAD"),
        Some(other) => Err(format!("spec.failStrategy: unknown value {other:?}")),
    }
}

/// `pluginConfig` as istiod passes it: a `google.protobuf.Struct` marshalled to JSON, in
/// which every number is a double (so `5` stays `5` but `2^60 + 1` loses its low bit).
pub fn plugin_config_json(plugin_config: &Value) -> String {
    as_struct(plugin_config).to_string()
}

fn as_struct(value: &Value) -> Value {
    match value {
        Value::Number(number) => {
            let double = number.as_f64().unwrap_or_default();
            // protojson prints integral doubles below 1e21 without a fraction or exponent;
            // those up to u64's range are exact as integers (the casts cannot overflow).
            match double {
                d if d.fract() == 0.0 && (0.0..1.8e19).contains(&d) => json!(d as u64),
                d if d.fract() == 0.0 && (-9.2e18..0.0).contains(&d) => json!(d as i64),
                d => json!(d),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(as_struct).collect()),
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(k, v)| (k.clone(), as_struct(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `http_filters` entry istiod makes for one WasmPlugin.
pub fn http_filter(plugin: &Value) -> Result<Value, RigError> {
    let refused = |message: String| RigError::Config {
        source: display_name(plugin),
        message,
    };
    let spec = &plugin["spec"];
    let name = format!(
        "{}.{}",
        plugin["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default"),
        plugin["metadata"]["name"].as_str().unwrap_or_default()
    );
    if spec["type"].as_str().is_some_and(|t| t == "NETWORK") {
        return Err(refused(
            "spec.type: NETWORK plugins are not HTTP filters".into(),
        ));
    }
    let mut config = Map::new();
    config.insert("name".into(), json!(name));
    config.insert("root_id".into(), spec["pluginName"].clone());
    // istiod leaves `configuration` empty when pluginConfig has no fields.
    if spec["pluginConfig"]
        .as_object()
        .is_some_and(|c| !c.is_empty())
    {
        config.insert(
            "configuration".into(),
            json!({
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": plugin_config_json(&spec["pluginConfig"]),
            }),
        );
    }
    let mut vm_config = json!({
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": format!("out/{}.wasm", module_name(plugin)?)}},
    });
    if let Some(env) = spec["vmConfig"]["env"].as_array() {
        let mut inline = Map::new();
        let mut host = Vec::new();
        for variable in env {
            let name = variable["name"].clone();
            match variable["valueFrom"].as_str() {
                Some("HOST") => host.push(name),
                _ => {
                    let key = name.as_str().unwrap_or_default().to_owned();
                    inline.insert(key, json!(variable["value"].as_str().unwrap_or_default()));
                }
            }
        }
        vm_config["environment_variables"] = json!({"key_values": inline, "host_env_keys": host});
    }
    config.insert("vm_config".into(), vm_config);
    config.insert(
        "failure_policy".into(),
        json!(failure_policy(&spec["failStrategy"]).map_err(refused)?),
    );
    Ok(json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }))
}

/// A gateway's bootstrap with every WasmPlugin in `manifests` in istiod's order, a cluster
/// `outbound|<port>||<host>` for each ServiceEntry host and port (the names filters call
/// out to), and the node's locality in [`GATEWAY_REGION`].
pub fn gateway_config(manifests: &[Value]) -> Result<EnvoyConfig, RigError> {
    let plugins = of_kind(manifests, "WasmPlugin");
    let filters = chain_order(&plugins)
        .into_iter()
        .map(http_filter)
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = EnvoyConfig::with_http_filters(filters);
    let value = config.value_mut();
    value["node"] = json!({
        "id": "router~10.0.0.1~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local",
        "cluster": "istio-ingressgateway.istio-system",
        "locality": {"region": GATEWAY_REGION},
    });
    if let Some(clusters) = value
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
    {
        clusters.extend(service_entry_clusters(manifests));
    }
    Ok(config)
}

/// The outbound clusters istiod makes for ServiceEntries, pointed at loopback.
fn service_entry_clusters(manifests: &[Value]) -> Vec<Value> {
    let mut clusters = Vec::new();
    for entry in of_kind(manifests, "ServiceEntry") {
        let spec = &entry["spec"];
        let hosts = spec["hosts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ports = spec["ports"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for host in hosts.iter().filter_map(Value::as_str) {
            for port in ports.iter().filter_map(|p| p["number"].as_u64()) {
                let name = format!("outbound|{port}||{host}");
                clusters.push(json!({
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                            "socket_address": {"address": "127.0.0.1", "port_value": port},
                        }}}]}],
                    },
                }));
            }
        }
    }
    clusters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, phase: Option<&str>, priority: Option<i64>) -> Value {
        json!({
            "kind": "WasmPlugin",
            "metadata": {"name": name, "namespace": "istio-system"},
            "spec": {"url": format!("oci://r/{name}:1"), "phase": phase, "priority": priority},
        })
    }

    #[test]
    fn orders_by_phase_then_by_priority_highest_first() {
        let plugins = [
            plugin("last", None, Some(5000)),
            plugin("stats", Some("STATS"), None),
            plugin("authz", Some("AUTHZ"), None),
            plugin("authn-low", Some("AUTHN"), None),
            plugin("authn-high", Some("AUTHN"), Some(10)),
        ];
        let refs: Vec<&Value> = plugins.iter().collect();
        let names: Vec<&str> = chain_order(&refs)
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["authn-high", "authn-low", "authz", "stats", "last"]);
    }

    #[test]
    fn numbers_reach_the_filter_as_doubles_do() {
        let config = json!({"capacity": 5, "rate": 0.5, "seed": 1_152_921_504_606_846_977_u64});
        assert_eq!(
            plugin_config_json(&config),
            r#"{"capacity":5,"rate":0.5,"seed":1152921504606846976}"#
        );
    }

    #[test]
    fn the_module_is_the_image_name() {
        let named = |url: &str| module_name(&json!({"spec": {"url": url}})).unwrap();
        assert_eq!(
            named("oci://r.example.com/meshward/jwt-auth:0.1.0"),
            "jwt-auth"
        );
        assert_eq!(named("r.example.com/jwt-auth@sha256:ab"), "jwt-auth");
        assert_eq!(named("file:///opt/filters/jwt-auth.wasm"), "jwt-auth");
        assert!(module_name(&json!({"spec": {"url": "oci://r/"}})).is_err());
    }
}
