//! Istio's `TrafficExtension` (`extensions.istio.io/v1alpha1`, Istio 1.30 and later), which
//! supersedes `WasmPlugin`: what its CRD refuses beyond what `k8s/check/validate.mjs`
//! checks (unknown fields, its enums that differ from WasmPlugin's, and its CEL rules), and
//! the WasmPlugin istiod treats it as, so that [`crate::istiod`] builds the same Envoy
//! filter from it.
//!
//! A TrafficExtension holds a WasmPlugin's module fields (`url`, `sha256`, `pluginName`,
//! `pluginConfig`, `failStrategy`, `imagePullPolicy`, `imagePullSecret`, `type`, `vmConfig`,
//! `verificationKey`) under `spec.wasm` (or Lua code under `spec.lua`, exactly one of the
//! two), and keeps the targeting (`selector`, `targetRefs`, no `targetRef`), `match`,
//! `phase` and `priority` in `spec`.

use serde_json::{Map, Value};

use crate::istio_schema::{
    env_problems, first_duplicate, label_problems, target_ref_problems, unknown_fields,
    url_problems, Shape, MAX_TARGET_REFS, METADATA, TARGET_REF,
};

/// The kustomizations in `k8s/` that render TrafficExtensions.
pub const KUSTOMIZATIONS: [&str; 2] = [
    "overlays/trafficextension",
    "overlays/example-trafficextension",
];

/// The module fields a TrafficExtension keeps under `spec.wasm`.
pub const WASM_FIELDS: [&str; 10] = [
    "url",
    "sha256",
    "pluginName",
    "pluginConfig",
    "failStrategy",
    "imagePullPolicy",
    "imagePullSecret",
    "type",
    "vmConfig",
    "verificationKey",
];

/// Its phases: "no phase" is `UNSPECIFIED` (WasmPlugin says `UNSPECIFIED_PHASE`).
const PHASES: [&str; 4] = ["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"];
/// The CRD's bounds on `lua.inlineCode`.
const MAX_LUA_CODE: usize = 65536;

const WASM: Shape = Shape::Object(&[
    ("failStrategy", Shape::Scalar),
    ("imagePullPolicy", Shape::Scalar),
    ("imagePullSecret", Shape::Scalar),
    ("pluginConfig", Shape::Any),
    ("pluginName", Shape::Scalar),
    ("sha256", Shape::Scalar),
    ("type", Shape::Scalar),
    ("url", Shape::Scalar),
    ("verificationKey", Shape::Scalar),
    (
        "vmConfig",
        Shape::Object(&[(
            "env",
            Shape::List(&Shape::Object(&[
                ("name", Shape::Scalar),
                ("value", Shape::Scalar),
                ("valueFrom", Shape::Scalar),
            ])),
        )]),
    ),
]);

const SPEC: Shape = Shape::Object(&[
    ("lua", Shape::Object(&[("inlineCode", Shape::Scalar)])),
    (
        "match",
        Shape::List(&Shape::Object(&[
            ("mode", Shape::Scalar),
            (
                "ports",
                Shape::List(&Shape::Object(&[("number", Shape::Scalar)])),
            ),
        ])),
    ),
    ("phase", Shape::Scalar),
    ("priority", Shape::Scalar),
    (
        "selector",
        Shape::Object(&[("matchLabels", Shape::Map(&Shape::Scalar))]),
    ),
    ("targetRefs", Shape::List(&TARGET_REF)),
    ("wasm", WASM),
]);

const TRAFFIC_EXTENSION: Shape = Shape::Object(&[
    ("apiVersion", Shape::Scalar),
    ("kind", Shape::Scalar),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Any),
]);

/// Whether `manifest` is an Istio TrafficExtension.
pub fn is_traffic_extension(manifest: &Value) -> bool {
    manifest["apiVersion"] == "extensions.istio.io/v1alpha1"
        && manifest["kind"] == "TrafficExtension"
}

/// What Istio's CRD refuses in a TrafficExtension beyond the types, enums and patterns of
/// the module fields, which `k8s/check/validate.mjs` checks as a WasmPlugin's.
pub fn rule_problems(extension: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    unknown_fields(extension, &TRAFFIC_EXTENSION, "", &mut problems);
    let Some(spec) = extension["spec"].as_object() else {
        problems.push("spec: spec is required".to_owned());
        return problems;
    };
    let has = |field: &str| spec.get(field).is_some_and(|v| !v.is_null());
    // "exactly one of wasm or lua must be set"
    if has("wasm") == has("lua") {
        problems.push("spec: exactly one of wasm or lua must be set".to_owned());
    }
    // "only one of targetRefs or selector can be set"
    if has("selector") && has("targetRefs") {
        problems.push("spec: only one of targetRefs or selector can be set".to_owned());
    }
    if let Some(phase) = spec.get("phase").and_then(Value::as_str) {
        if !PHASES.contains(&phase) {
            problems.push(format!("spec.phase: must be one of {}", PHASES.join(", ")));
        }
    }
    if let Some(wasm) = spec.get("wasm") {
        problems.extend(wasm_problems(wasm));
    }
    if let Some(lua) = spec.get("lua") {
        match lua["inlineCode"].as_str() {
            None => problems.push("spec.lua: inlineCode is required".to_owned()),
            Some(code) if code.is_empty() || code.len() > MAX_LUA_CODE => problems.push(format!(
                "spec.lua.inlineCode: must be 1 to {MAX_LUA_CODE} characters"
            )),
            Some(_) => {}
        }
    }
    if let Some(labels) = spec
        .get("selector")
        .and_then(|s| s["matchLabels"].as_object())
    {
        problems.extend(label_problems(labels));
    }
    let target_refs = spec
        .get("targetRefs")
        .and_then(Value::as_array)
        .map(Vec::as_slice);
    for (i, target) in target_refs.unwrap_or_default().iter().enumerate() {
        problems.extend(target_ref_problems(
            target,
            &format!("spec.targetRefs[{i}]"),
        ));
    }
    if target_refs.is_some_and(|refs| refs.len() > MAX_TARGET_REFS) {
        problems.push(format!("spec.targetRefs: at most {MAX_TARGET_REFS} items"));
    }
    let matches = spec.get("match").and_then(Value::as_array);
    for (i, selector) in matches
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let ports = selector["ports"].as_array().map(Vec::as_slice);
        let numbers = ports
            .unwrap_or_default()
            .iter()
            .map(|p| p["number"].to_string());
        if let Some(duplicate) = first_duplicate(numbers) {
            problems.push(format!(
                "spec.match[{i}].ports: port {duplicate} is listed twice"
            ));
        }
    }
    problems
}

/// The module's rules, the WasmPlugin ones moved under `spec.wasm`.
fn wasm_problems(wasm: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    match wasm["url"].as_str() {
        Some(url) => problems.extend(url_problems(url, wasm["sha256"].as_str())),
        None => problems.push("spec.wasm: url is required".to_owned()),
    }
    if let Some(env) = wasm["vmConfig"]["env"].as_array() {
        problems.extend(env_problems(env));
    }
    problems
        .into_iter()
        .map(|problem| match problem.strip_prefix("spec.") {
            Some(rest) if !rest.starts_with("wasm") => format!("spec.wasm.{rest}"),
            _ => problem,
        })
        .collect()
}

/// The WasmPlugin istiod treats a Wasm TrafficExtension as: the module fields back in
/// `spec`, `UNSPECIFIED` as no phase. `None` for a Lua extension.
pub fn as_wasm_plugin(extension: &Value) -> Option<Value> {
    let spec = extension["spec"].as_object()?;
    let wasm = spec.get("wasm")?.as_object()?;
    let mut plugin_spec: Map<String, Value> = spec
        .iter()
        .filter(|(key, _)| *key != "wasm" && *key != "lua")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if plugin_spec.get("phase").and_then(Value::as_str) == Some("UNSPECIFIED") {
        plugin_spec.remove("phase");
    }
    plugin_spec.extend(wasm.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut plugin = extension.clone();
    plugin["kind"] = Value::from("WasmPlugin");
    plugin["spec"] = Value::Object(plugin_spec);
    Some(plugin)
}

/// `manifests` with every Wasm TrafficExtension replaced by its WasmPlugin, for
/// [`crate::istiod::gateway_config`] and the harness.
pub fn as_wasm_plugins(manifests: &[Value]) -> Vec<Value> {
    manifests
        .iter()
        .map(|m| {
            if is_traffic_extension(m) {
                as_wasm_plugin(m).unwrap_or_else(|| m.clone())
            } else {
                m.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extension(spec: Value) -> Value {
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "TrafficExtension",
            "metadata": {"name": "e", "namespace": "n"},
            "spec": spec,
        })
    }

    #[test]
    fn a_plain_wasm_extension_breaks_no_rule() {
        let ok = extension(json!({
            "selector": {"matchLabels": {"istio": "ingressgateway"}},
            "phase": "AUTHN",
            "wasm": {"url": "oci://r.example.com/m:1", "pluginConfig": {"a": [1]}},
        }));
        assert_eq!(rule_problems(&ok), Vec::<String>::new());
    }

    #[test]
    fn module_fields_left_in_spec_are_unknown_there() {
        let problems = rule_problems(&extension(json!({
            "url": "oci://r.example.com/m:1",
            "wasm": {"url": "oci://r.example.com/m:1"},
        })));
        assert_eq!(
            problems,
            ["spec.url: unknown field \"url\", expected one of lua, match, phase, priority, selector, targetRefs, wasm"]
        );
    }

    #[test]
    fn the_url_rule_names_the_wasm_path() {
        let problems = rule_problems(&extension(json!({"wasm": {"url": "ftp://x/m.wasm"}})));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("spec.wasm.url: url must have schema one of"),
            "{problems:?}"
        );
    }

    #[test]
    fn becomes_the_wasm_plugin_it_was_made_from() {
        let plugin = as_wasm_plugin(&extension(json!({
            "phase": "UNSPECIFIED",
            "priority": 10,
            "wasm": {"url": "oci://r/m:1", "pluginName": "m", "failStrategy": "FAIL_OPEN"},
        })))
        .unwrap();
        assert_eq!(plugin["kind"], "WasmPlugin");
        assert_eq!(
            plugin["spec"],
            json!({"priority": 10, "url": "oci://r/m:1", "pluginName": "m", "failStrategy": "FAIL_OPEN"})
        );
    }
}
