//! Envoy Gateway's `EnvoyExtensionPolicy` (`gateway.envoyproxy.io/v1alpha1`): the CEL
//! rules of its CRD (`x-kubernetes-validations`), which [`crate::crd`]'s schema check
//! does not run, and the Envoy config Envoy Gateway makes of a policy's `wasm` list, so
//! that `envoy --mode validate` and the harness load each module with its `config`.
//!
//! No npm or PyPI package models this kind; its schema is checked with ajv against the
//! CRD itself ([`crate::crd`]), and its rules here, each worded as the CRD words it.

use serde_json::{json, Map, Value};

use crate::istiod::module_name;
use crate::kustomize::of_kind;
use crate::{EnvoyConfig, RigError};

/// The kustomizations in `k8s/` that render Envoy Gateway resources.
pub const KUSTOMIZATIONS: [&str; 2] = ["envoy-gateway/base", "envoy-gateway/http"];
/// The CRD in `../shared/reference/`.
pub const CRD: &str = "envoy-gateway-envoyextensionpolicy-crd.yaml";

/// The kinds a policy may target.
const TARGET_KINDS: [&str; 7] = [
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "UDPRoute",
    "TCPRoute",
    "TLSRoute",
];
const ROUTE_KINDS: [&str; 5] = ["HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute"];
const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Whether `manifest` is an Envoy Gateway EnvoyExtensionPolicy.
pub fn is_extension_policy(manifest: &Value) -> bool {
    manifest["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
        && manifest["kind"] == "EnvoyExtensionPolicy"
}

/// What the CRD's CEL rules refuse in a policy, and the `sha256` format its API documents
/// (64 lowercase hex digits).
pub fn rule_problems(policy: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let spec = &policy["spec"];
    let has = |field: &str| spec.get(field).is_some_and(|v| !v.is_null());
    let selectors = spec["targetSelectors"].as_array().map_or(0, Vec::len);
    if has("targetRef") == has("targetRefs") && selectors == 0 {
        problems.push("spec: either targetRef or targetRefs must be used".to_owned());
    }
    let mut refs: Vec<(String, &Value)> = Vec::new();
    if has("targetRef") {
        refs.push(("spec.targetRef".to_owned(), &spec["targetRef"]));
    }
    for (i, target) in spec["targetRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        refs.push((format!("spec.targetRefs[{i}]"), target));
    }
    for (path, target) in &refs {
        if target["group"] != GATEWAY_API_GROUP {
            problems.push(format!(
                "{path}: this policy can only have a targetRef.group of {GATEWAY_API_GROUP}"
            ));
        }
        if !target["kind"]
            .as_str()
            .is_some_and(|kind| TARGET_KINDS.contains(&kind))
        {
            problems.push(format!(
                "{path}: this policy can only have a targetRef.kind of {}",
                TARGET_KINDS.join("/")
            ));
        }
    }
    let targets_only_routes = refs.iter().all(|(_, target)| {
        target["kind"]
            .as_str()
            .is_some_and(|kind| ROUTE_KINDS.contains(&kind))
    });
    if has("mergeType") && !targets_only_routes {
        problems.push("spec.mergeType: mergeType can only be used with xRoute targets".to_owned());
    }
    for (i, extension) in spec["wasm"].as_array().into_iter().flatten().enumerate() {
        let path = format!("spec.wasm[{i}].code");
        let code = &extension["code"];
        for (kind, field) in [("HTTP", "http"), ("Image", "image")] {
            if (code["type"] == kind) != code.get(field).is_some() {
                problems.push(format!(
                    "{path}: If type is {kind}, {field} field needs to be set."
                ));
            }
        }
        let pull_secret = &code["image"]["pullSecretRef"];
        if pull_secret.is_object() && pull_secret["kind"].as_str().unwrap_or("Secret") != "Secret" {
            problems.push(format!(
                "{path}.image.pullSecretRef: only support Secret kind."
            ));
        }
        for field in ["http", "image"] {
            if let Some(sha256) = code[field]["sha256"].as_str() {
                let hex = sha256.len() == 64
                    && sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !hex {
                    problems.push(format!(
                        "{path}.{field}.sha256: expected 64 lowercase hex digits, got {sha256:?}"
                    ));
                }
            }
        }
    }
    problems
}

/// The module an extension's code names: the image's or the file's name.
pub fn extension_module(extension: &Value) -> Result<String, RigError> {
    let code = &extension["code"];
    let url = code["image"]["url"]
        .as_str()
        .or_else(|| code["http"]["url"].as_str())
        .unwrap_or_default();
    module_name(&json!({"metadata": {"name": extension["name"]}, "spec": {"url": url}}))
}

/// The `http_filters` Envoy Gateway makes of a policy's `wasm` list, in its order: an
/// `envoy.extensions.filters.http.wasm.v3.Wasm` each, `config` as JSON in a
/// `StringValue`, `rootID` as `root_id`, `failOpen` as the failure policy; the code is
/// `out/<module>.wasm`, where Envoy Gateway would serve its cached copy.
pub fn http_filters(policy: &Value) -> Result<Vec<Value>, RigError> {
    let namespace = policy["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let policy_name = policy["metadata"]["name"].as_str().unwrap_or_default();
    let mut filters = Vec::new();
    for (i, extension) in policy["spec"]["wasm"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = format!("envoyextensionpolicy/{namespace}/{policy_name}/wasm/{i}");
        let mut config = Map::new();
        config.insert(
            "name".into(),
            json!(extension["name"].as_str().unwrap_or(&name)),
        );
        config.insert("root_id".into(), extension["rootID"].clone());
        if !extension["config"].is_null() {
            config.insert(
                "configuration".into(),
                json!({
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": extension["config"].to_string(),
                }),
            );
        }
        config.insert(
            "vm_config".into(),
            json!({
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": format!("out/{}.wasm", extension_module(extension)?)}},
            }),
        );
        let policy = if extension["failOpen"] == true {
            "FAIL_OPEN"
        } else {
            "FAIL_CLOSED"
        };
        config.insert("failure_policy".into(), json!(policy));
        filters.push(json!({
            "name": name,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": config,
            },
        }));
    }
    Ok(filters)
}

/// The clusters Envoy Gateway makes for the HTTPRoutes among `manifests`:
/// `httproute/<namespace>/<name>/rule/<index>`.
pub fn route_clusters(manifests: &[Value]) -> Vec<String> {
    let mut names = Vec::new();
    for route in of_kind(manifests, "HTTPRoute") {
        let namespace = route["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = route["metadata"]["name"].as_str().unwrap_or_default();
        let rules = route["spec"]["rules"].as_array().map_or(0, Vec::len);
        names.extend((0..rules).map(|i| format!("httproute/{namespace}/{name}/rule/{i}")));
    }
    names
}

/// A proxy's bootstrap with the one EnvoyExtensionPolicy among `manifests` in its chain and
/// a loopback cluster for each HTTPRoute rule.
pub fn gateway_config(manifests: &[Value]) -> Result<EnvoyConfig, RigError> {
    let policies: Vec<&Value> = manifests
        .iter()
        .filter(|m| is_extension_policy(m))
        .collect();
    let [policy] = policies.as_slice() else {
        return Err(RigError::Config {
            source: "envoy-gateway".into(),
            message: format!(
                "expected one EnvoyExtensionPolicy, found {}",
                policies.len()
            ),
        });
    };
    let mut config = EnvoyConfig::with_http_filters(http_filters(policy)?);
    if let Some(clusters) = config
        .value_mut()
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
    {
        for name in route_clusters(manifests) {
            clusters.push(json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": 9},
                    }}}]}],
                },
            }));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: Value) -> Value {
        json!({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyExtensionPolicy",
            "metadata": {"name": "p", "namespace": "n"},
            "spec": spec,
        })
    }

    #[test]
    fn a_policy_on_a_gateway_with_an_image_breaks_no_rule() {
        let ok = policy(json!({
            "targetRefs": [{"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": "eg"}],
            "wasm": [{"code": {"type": "Image", "image": {"url": "r/m:1", "sha256": "a".repeat(64)}}}],
        }));
        assert_eq!(rule_problems(&ok), Vec::<String>::new());
    }

    #[test]
    fn an_image_code_with_an_http_source_breaks_both_code_rules() {
        let broken = policy(json!({
            "targetRefs": [{"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": "eg"}],
            "wasm": [{"code": {"type": "Image", "http": {"url": "https://x/m.wasm"}}}],
        }));
        assert_eq!(
            rule_problems(&broken),
            [
                "spec.wasm[0].code: If type is HTTP, http field needs to be set.",
                "spec.wasm[0].code: If type is Image, image field needs to be set."
            ]
        );
    }

    #[test]
    fn envoy_gateway_names_a_route_rules_cluster_by_route_and_index() {
        let route = json!({
            "kind": "HTTPRoute",
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"rules": [{}, {}]},
        });
        assert_eq!(
            route_clusters(&[route]),
            [
                "httproute/default/api/rule/0",
                "httproute/default/api/rule/1"
            ]
        );
    }
}
