//! Checks Istio manifests as the API server would before it stores them: the schema of
//! every kind, through the npm package `@kubernetes-models/istio` (`k8s/check/`), and for
//! `WasmPlugin` what that package leaves out: unknown fields and the rules of Istio's CRD
//! (its `x-kubernetes-validations`), plus the `sha256`-in-URL rule its API documents; for
//! `TrafficExtension`, which the package lacks, [`crate::traffic_extension`] has the rest.
//!
//! Every problem reads `<path>: <message>`, for example
//! `spec.failStrategy: must be one of FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD`.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Map, Value};

use crate::{repo_root, RigError};

/// The fields a WasmPlugin may have, as Istio's CRD (`wasmplugins.extensions.istio.io`,
/// v1alpha1) lists them. Types, enums, patterns and lengths are the npm validator's part.
pub(crate) enum Shape {
    /// Anything: `pluginConfig` (preserve-unknown-fields) and `status`.
    Any,
    /// A string, number or boolean.
    Scalar,
    /// An object with these fields and no others.
    Object(&'static [(&'static str, Shape)]),
    /// An object whose keys are free and whose values have this shape (`matchLabels`).
    Map(&'static Shape),
    /// A list of items of this shape.
    List(&'static Shape),
}

pub(crate) const TARGET_REF: Shape = Shape::Object(&[
    ("group", Shape::Scalar),
    ("kind", Shape::Scalar),
    ("name", Shape::Scalar),
    ("namespace", Shape::Scalar),
]);

const SPEC: Shape = Shape::Object(&[
    ("failStrategy", Shape::Scalar),
    ("imagePullPolicy", Shape::Scalar),
    ("imagePullSecret", Shape::Scalar),
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
    ("pluginConfig", Shape::Any),
    ("pluginName", Shape::Scalar),
    ("priority", Shape::Scalar),
    (
        "selector",
        Shape::Object(&[("matchLabels", Shape::Map(&Shape::Scalar))]),
    ),
    ("sha256", Shape::Scalar),
    ("targetRef", TARGET_REF),
    ("targetRefs", Shape::List(&TARGET_REF)),
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

/// Kubernetes' ObjectMeta, which every kind shares.
pub(crate) const METADATA: Shape = Shape::Object(&[
    ("annotations", Shape::Map(&Shape::Scalar)),
    ("creationTimestamp", Shape::Any),
    ("deletionGracePeriodSeconds", Shape::Scalar),
    ("deletionTimestamp", Shape::Any),
    ("finalizers", Shape::List(&Shape::Scalar)),
    ("generateName", Shape::Scalar),
    ("generation", Shape::Scalar),
    ("labels", Shape::Map(&Shape::Scalar)),
    ("managedFields", Shape::Any),
    ("name", Shape::Scalar),
    ("namespace", Shape::Scalar),
    ("ownerReferences", Shape::Any),
    ("resourceVersion", Shape::Scalar),
    ("selfLink", Shape::Scalar),
    ("uid", Shape::Scalar),
]);

const WASM_PLUGIN: Shape = Shape::Object(&[
    ("apiVersion", Shape::Scalar),
    ("kind", Shape::Scalar),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Any),
]);

/// The URL schemes the CRD allows; none means `oci://`.
const URL_SCHEMES: [&str; 4] = ["http", "https", "oci", "file"];
/// The CRD's `maxItems`.
pub(crate) const MAX_TARGET_REFS: usize = 16;
const MAX_ENV: usize = 256;

/// Every manifest's problems, in order: the npm validator's, then (for WasmPlugins) the
/// CRD rules it does not check. An empty list means the API server would take it.
pub fn check(manifests: &[Value]) -> Result<Vec<Vec<String>>, RigError> {
    let mut problems = schema_problems(manifests)?;
    for (manifest, found) in manifests.iter().zip(problems.iter_mut()) {
        if is_wasm_plugin(manifest) {
            found.extend(wasm_plugin_rule_problems(manifest));
        }
        if crate::traffic_extension::is_traffic_extension(manifest) {
            found.extend(crate::traffic_extension::rule_problems(manifest));
        }
    }
    Ok(problems)
}

fn is_wasm_plugin(manifest: &Value) -> bool {
    manifest["apiVersion"] == "extensions.istio.io/v1alpha1" && manifest["kind"] == "WasmPlugin"
}

/// Runs `node k8s/check/validate.mjs`: each manifest against its kind's schema from
/// `@kubernetes-models/istio` (installed by `make setup` with `npm ci`).
pub fn schema_problems(manifests: &[Value]) -> Result<Vec<Vec<String>>, RigError> {
    let dir = repo_root().join("k8s/check");
    let command = "node k8s/check/validate.mjs".to_owned();
    let tool = |message: String| RigError::Tool {
        command: command.clone(),
        message,
    };
    if !dir.join("node_modules/@kubernetes-models/istio").exists() {
        return Err(tool(
            "k8s/check/node_modules is missing: run `make setup` (it runs npm ci there)".into(),
        ));
    }
    let mut child = Command::new("node")
        .arg(dir.join("validate.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tool(format!(
                "{e}: Node.js runs the schema validator; install it"
            ))
        })?;
    let input = Value::Array(manifests.to_vec()).to_string();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| tool(format!("writing the manifests: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| tool(format!("waiting for it: {e}")))?;
    if !output.status.success() {
        return Err(tool(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    let results: Vec<Vec<String>> = serde_json::from_slice(&output.stdout)
        .map_err(|e| tool(format!("unreadable answer: {e}")))?;
    if results.len() != manifests.len() {
        return Err(tool(format!(
            "answered for {} manifests, sent {}",
            results.len(),
            manifests.len()
        )));
    }
    Ok(results)
}

/// What Istio's CRD refuses in a WasmPlugin beyond types, enums and patterns.
pub fn wasm_plugin_rule_problems(plugin: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    unknown_fields(plugin, &WASM_PLUGIN, "", &mut problems);
    let spec = &plugin["spec"];
    // "only one of targetRefs or selector can be set"
    let set: Vec<&str> = ["selector", "targetRef", "targetRefs"]
        .into_iter()
        .filter(|field| spec.get(field).is_some_and(|v| !v.is_null()))
        .collect();
    if set.len() > 1 {
        problems.push(format!(
            "spec: only one of targetRefs or selector can be set, found {}",
            set.join(" and ")
        ));
    }
    if let Some(url) = spec["url"].as_str() {
        problems.extend(url_problems(url, spec["sha256"].as_str()));
    }
    if let Some(labels) = spec["selector"]["matchLabels"].as_object() {
        problems.extend(label_problems(labels));
    }
    let target_refs = spec["targetRefs"].as_array().map(Vec::as_slice);
    for (i, target) in target_refs.unwrap_or_default().iter().enumerate() {
        problems.extend(target_ref_problems(
            target,
            &format!("spec.targetRefs[{i}]"),
        ));
    }
    if target_refs.is_some_and(|refs| refs.len() > MAX_TARGET_REFS) {
        problems.push(format!("spec.targetRefs: at most {MAX_TARGET_REFS} items"));
    }
    if spec["targetRef"].is_object() {
        problems.extend(target_ref_problems(&spec["targetRef"], "spec.targetRef"));
    }
    if let Some(env) = spec["vmConfig"]["env"].as_array() {
        problems.extend(env_problems(env));
    }
    if let Some(matches) = spec["match"].as_array() {
        for (i, selector) in matches.iter().enumerate() {
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
    }
    problems
}

/// Fields `shape` does not list, anywhere under `value`.
pub(crate) fn unknown_fields(value: &Value, shape: &Shape, path: &str, problems: &mut Vec<String>) {
    match (shape, value) {
        (Shape::Object(fields), Value::Object(object)) => {
            for (key, child) in object {
                let child_path = join(path, key);
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, child_shape)) => {
                        unknown_fields(child, child_shape, &child_path, problems)
                    }
                    None => problems.push(format!(
                        "{child_path}: unknown field {key:?}{}",
                        suggestion(key, fields)
                    )),
                }
            }
        }
        (Shape::Map(values), Value::Object(object)) => {
            for (key, child) in object {
                unknown_fields(child, values, &join(path, key), problems);
            }
        }
        (Shape::List(item), Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                unknown_fields(child, item, &format!("{path}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// ", expected one of ..." for an unknown field.
fn suggestion(key: &str, fields: &[(&str, Shape)]) -> String {
    let lower = key.to_ascii_lowercase();
    let close = fields.iter().map(|(name, _)| *name).find(|name| {
        let name = name.to_ascii_lowercase();
        lower.starts_with(&name) || name.starts_with(&lower)
    });
    match close {
        Some(name) => format!(" (did you mean {name:?}?)"),
        None => {
            let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
            format!(", expected one of {}", names.join(", "))
        }
    }
}

/// The CRD's scheme rule, and the API's: a digest in the URL (`@sha256:`) must be the
/// `sha256` field when both are set.
pub(crate) fn url_problems(url: &str, sha256: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if url.chars().any(char::is_whitespace) {
        problems.push(format!("spec.url: {url:?} is not a URL"));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        if !URL_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            problems.push(format!(
                "spec.url: url must have schema one of [http, https, file, oci], got {scheme:?}"
            ));
        } else if rest.is_empty() {
            problems.push(format!("spec.url: nothing after {scheme}://"));
        }
    }
    if let (Some((_, digest)), Some(sha256)) = (url.split_once("@sha256:"), sha256) {
        if !sha256.is_empty() && digest != sha256 {
            problems.push(format!(
                "spec.sha256: {sha256} differs from the digest in spec.url ({digest})"
            ));
        }
    }
    problems
}

pub(crate) fn label_problems(labels: &Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in labels {
        let path = format!("spec.selector.matchLabels.{key}");
        if key.is_empty() {
            problems.push("spec.selector.matchLabels: key must not be empty".to_owned());
        }
        if key.contains('*') {
            problems.push(format!("{path}: wildcard not allowed in label key match"));
        }
        if value.as_str().is_some_and(|v| v.contains('*')) {
            problems.push(format!("{path}: wildcard not allowed in label value match"));
        }
    }
    problems
}

pub(crate) fn target_ref_problems(target: &Value, path: &str) -> Vec<String> {
    match target["namespace"].as_str() {
        Some(namespace) if !namespace.is_empty() => vec![format!(
            "{path}.namespace: cross namespace referencing is not currently supported"
        )],
        _ => Vec::new(),
    }
}

/// The CRD's `valueFrom` rule, its list-map key (`name`) and its `maxItems`.
pub(crate) fn env_problems(env: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, variable) in env.iter().enumerate() {
        if variable["valueFrom"] == "HOST" && variable.get("value").is_some() {
            problems.push(format!(
                "spec.vmConfig.env[{i}]: value may only be set when valueFrom is INLINE"
            ));
        }
    }
    let names = env
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_owned());
    if let Some(duplicate) = first_duplicate(names) {
        problems.push(format!(
            "spec.vmConfig.env: {duplicate:?} is listed twice (name is the list's key)"
        ));
    }
    if env.len() > MAX_ENV {
        problems.push(format!("spec.vmConfig.env: at most {MAX_ENV} items"));
    }
    problems
}

pub(crate) fn first_duplicate(items: impl Iterator<Item = String>) -> Option<String> {
    let mut seen = BTreeSet::new();
    items.into_iter().find(|item| !seen.insert(item.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plugin(spec: Value) -> Value {
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": {"name": "p", "namespace": "n"},
            "spec": spec,
        })
    }

    #[test]
    fn a_plain_plugin_breaks_no_rule() {
        let ok = plugin(json!({
            "url": "oci://registry.example.com/p:1",
            "selector": {"matchLabels": {"istio": "ingressgateway"}},
            "pluginConfig": {"anything": {"goes": [1, 2]}},
            "vmConfig": {"env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": "HOST"}]},
        }));
        assert_eq!(wasm_plugin_rule_problems(&ok), Vec::<String>::new());
    }

    #[test]
    fn names_an_unknown_field_by_its_path_and_the_field_meant() {
        let problems = wasm_plugin_rule_problems(&plugin(json!({
            "url": "x",
            "vmConfig": {"envs": []},
        })));
        assert_eq!(
            problems,
            ["spec.vmConfig.envs: unknown field \"envs\" (did you mean \"env\"?)"]
        );
    }

    #[test]
    fn a_url_without_a_scheme_is_an_oci_image() {
        assert!(url_problems("registry.example.com/p:1", None).is_empty());
        assert!(url_problems("file:///opt/p.wasm", None).is_empty());
        assert_eq!(url_problems("ftp://x/p.wasm", None).len(), 1);
    }
}
