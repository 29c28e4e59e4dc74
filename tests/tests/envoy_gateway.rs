//! What Envoy Gateway users apply from `k8s/envoy-gateway/` is checked here: the
//! EnvoyExtensionPolicy against Envoy Gateway's CRD (its schema with ajv, read from
//! `../shared/reference/` as no package models it, and its CEL rules in
//! `tests/src/envoy_gateway.rs`), the HTTPRoutes against the Gateway API models; the
//! policy holds every filter in the chain order Istio uses, with the same configuration
//! as `k8s/base` but for cluster names; and each configuration is loaded by its filter in
//! the harness and, as Envoy Gateway configures it, in `envoy --mode validate`. Needs
//! `make setup` and `make build`.

use meshward_harness::{wasm_path, LogLevel};
use meshward_tests::crd::{reference_crd, schema_problems};
use meshward_tests::envoy::validate;
use meshward_tests::envoy_gateway::{
    extension_module, gateway_config, is_extension_policy, route_clusters, rule_problems, CRD,
    KUSTOMIZATIONS,
};
use meshward_tests::istio_schema::check;
use meshward_tests::istiod::{chain_order, module_name};
use meshward_tests::kustomize::{display_name, of_kind, render};
use serde_json::{json, Value};

fn policy(manifests: &[Value]) -> Value {
    let policies: Vec<&Value> = manifests
        .iter()
        .filter(|m| is_extension_policy(m))
        .collect();
    assert_eq!(policies.len(), 1, "one EnvoyExtensionPolicy");
    policies[0].clone()
}

fn extensions(policy: &Value) -> Vec<Value> {
    policy["spec"]["wasm"].as_array().unwrap().clone()
}

fn crd() -> std::path::PathBuf {
    reference_crd(CRD).unwrap_or_else(|| {
        panic!("../shared/reference/{CRD} is missing: Envoy Gateway's CRD is read from there")
    })
}

/// Every problem the API server would find: the CRD's schema and rules for the policy, the
/// Gateway API models for the routes.
fn problems(manifests: &[Value]) -> Vec<String> {
    let (policies, others): (Vec<Value>, Vec<Value>) =
        manifests.iter().cloned().partition(is_extension_policy);
    let mut found = Vec::new();
    for (policy, problems) in policies
        .iter()
        .zip(schema_problems(&crd(), &policies).unwrap())
    {
        let name = display_name(policy);
        found.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
        found.extend(
            rule_problems(policy)
                .into_iter()
                .map(|p| format!("{name}: {p}")),
        );
    }
    for (manifest, problems) in others.iter().zip(check(&others).unwrap()) {
        let name = display_name(manifest);
        found.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
    }
    found
}

#[test]
fn every_rendered_manifest_passes_the_crd_schema_and_its_rules() {
    for dir in KUSTOMIZATIONS {
        let found = problems(&render(dir).unwrap());
        assert!(found.is_empty(), "k8s/{dir}:\n{}", found.join("\n"));
    }
}

#[test]
fn the_policy_runs_every_filter_in_the_order_istio_runs_them() {
    let base = render("base").unwrap();
    // The policy is the ingress gateway's chain; k8s/base's `chain` plugin, the same
    // filters as one module, is for another gateway.
    let plugins: Vec<&Value> = of_kind(&base, "WasmPlugin")
        .into_iter()
        .filter(|p| p["spec"]["selector"]["matchLabels"]["istio"] == "ingressgateway")
        .collect();
    let istio_order: Vec<String> = chain_order(&plugins)
        .iter()
        .map(|p| module_name(p).unwrap())
        .collect();
    for dir in KUSTOMIZATIONS {
        let policy = policy(&render(dir).unwrap());
        let order: Vec<String> = extensions(&policy)
            .iter()
            .map(|e| extension_module(e).unwrap())
            .collect();
        assert_eq!(
            order, istio_order,
            "k8s/{dir}: k8s/envoy-gateway/base/meshward.yaml's wasm list should hold every \
             filter of k8s/base, in the order of Istio's chain"
        );
        for extension in extensions(&policy) {
            // A module bundling several filters picks one by root_id.
            assert_eq!(
                extension["rootID"],
                json!(extension_module(&extension).unwrap())
            );
        }
    }
}

#[test]
fn images_are_pinned_by_digest_and_http_modules_by_checksum() {
    for (dir, kind, field) in [
        ("envoy-gateway/base", "Image", "image"),
        ("envoy-gateway/http", "HTTP", "http"),
    ] {
        for extension in extensions(&policy(&render(dir).unwrap())) {
            let code = &extension["code"];
            assert_eq!(code["type"], kind, "k8s/{dir}: {extension}");
            assert_eq!(
                code[field]["sha256"].as_str().map(str::len),
                Some(64),
                "k8s/{dir}"
            );
            if kind == "HTTP" {
                assert!(code["http"]["url"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://"));
            }
        }
    }
}

/// `value` without the fields that name clusters or the local region, which differ
/// between Istio and Envoy Gateway.
fn without_cluster_names(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(key, _)| !["cluster", "local_region"].contains(&key.as_str()))
                .map(|(key, child)| (key.clone(), without_cluster_names(child)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_cluster_names).collect()),
        other => other.clone(),
    }
}

#[test]
fn each_config_is_the_istio_bases_but_for_cluster_names() {
    let base = render("base").unwrap();
    let policy = policy(&render("envoy-gateway/base").unwrap());
    for extension in extensions(&policy) {
        let module = extension_module(&extension).unwrap();
        let plugin = of_kind(&base, "WasmPlugin")
            .into_iter()
            .find(|p| module_name(p).unwrap() == module)
            .unwrap();
        assert_eq!(
            without_cluster_names(&extension["config"]),
            without_cluster_names(&plugin["spec"]["pluginConfig"]),
            "{module}"
        );
        let fail_open = plugin["spec"]["failStrategy"] == "FAIL_OPEN";
        assert_eq!(extension["failOpen"], json!(fail_open), "{module}");
    }
}

#[test]
fn every_cluster_a_config_names_is_a_route_rules_cluster() {
    let manifests = render("envoy-gateway/base").unwrap();
    let clusters = route_clusters(&manifests);
    let policy = policy(&manifests);
    let mut named = Vec::new();
    collect_clusters(&policy["spec"]["wasm"], &mut named);
    assert!(named.len() >= 4, "{named:?}");
    for name in named.iter().filter(|name| *name != "*") {
        assert!(
            clusters.contains(name),
            "{name} is no HTTPRoute rule's cluster: {clusters:?}"
        );
    }
}

fn collect_clusters(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child.as_str()) {
                    ("cluster", Some(name)) => into.push(name.to_owned()),
                    _ => collect_clusters(child, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_clusters(item, into)),
        _ => {}
    }
}

#[test]
fn the_checks_refuse_each_broken_policy_naming_the_field() {
    let manifests = render("envoy-gateway/base").unwrap();
    let valid = policy(&manifests);
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut policy = valid.clone();
        change(&mut policy);
        policy
    };
    let cases = [
        (
            "an unknown field in an extension",
            broken(&|p| p["spec"]["wasm"][0]["root_id"] = json!("x")),
            "spec.wasm[0].root_id: unknown field",
        ),
        (
            "failOpen as a string",
            broken(&|p| p["spec"]["wasm"][0]["failOpen"] = json!("false")),
            "spec.wasm[0].failOpen: must be boolean",
        ),
        (
            "a code type Envoy Gateway lacks",
            broken(&|p| p["spec"]["wasm"][0]["code"]["type"] = json!("OCI")),
            "spec.wasm[0].code.type: must be one of",
        ),
        (
            "an HTTP code with an image source",
            broken(&|p| p["spec"]["wasm"][0]["code"]["type"] = json!("HTTP")),
            "spec.wasm[0].code: If type is HTTP, http field needs to be set.",
        ),
        (
            "a target outside the Gateway API",
            broken(&|p| p["spec"]["targetRefs"][0]["group"] = json!("networking.istio.io")),
            "spec.targetRefs[0]: this policy can only have a targetRef.group of gateway.networking.k8s.io",
        ),
        (
            "a Service as the target",
            broken(&|p| p["spec"]["targetRefs"][0]["kind"] = json!("Service")),
            "spec.targetRefs[0]: this policy can only have a targetRef.kind of",
        ),
        (
            "targetRef and targetRefs",
            broken(&|p| p["spec"]["targetRef"] = p["spec"]["targetRefs"][0].clone()),
            "spec: either targetRef or targetRefs must be used",
        ),
        (
            "mergeType on a Gateway",
            broken(&|p| p["spec"]["mergeType"] = json!("StrategicMerge")),
            "spec.mergeType: mergeType can only be used with xRoute targets",
        ),
        (
            "a digest in capitals",
            broken(&|p| p["spec"]["wasm"][0]["code"]["image"]["sha256"] = json!("AB".repeat(32))),
            "spec.wasm[0].code.image.sha256: expected 64 lowercase hex digits",
        ),
        (
            "more than 16 extensions",
            broken(&|p| p["spec"]["wasm"] = json!(vec![p["spec"]["wasm"][0].clone(); 17])),
            "spec.wasm: must NOT have more than 16 items",
        ),
    ];
    let mut missed = Vec::new();
    for (what, policy, expected) in &cases {
        let found = problems(std::slice::from_ref(policy));
        if !found.iter().any(|p| p.contains(expected)) {
            missed.push(format!("{what}: expected {expected:?}, got {found:?}"));
        }
    }
    assert!(missed.is_empty(), "\n{}", missed.join("\n"));
}

#[test]
fn every_config_loads_in_its_filter_in_the_harness() {
    for dir in KUSTOMIZATIONS {
        let manifests = render(dir).unwrap();
        let clusters = route_clusters(&manifests);
        for extension in extensions(&policy(&manifests)) {
            let module = extension_module(&extension).unwrap();
            let mut builder = meshward_harness::Host::builder(wasm_path(&module))
                .plugin_name(extension["name"].as_str().unwrap())
                .root_id(extension["rootID"].as_str().unwrap())
                .config_json(&extension["config"].to_string());
            for cluster in &clusters {
                builder = builder.cluster(cluster);
            }
            if let Err(error) = builder.build() {
                let logs: Vec<String> = error
                    .logs()
                    .iter()
                    .filter(|entry| entry.level == LogLevel::Error)
                    .map(|entry| entry.message.clone())
                    .collect();
                panic!(
                    "k8s/{dir}: {module} refused its config:\n{}",
                    logs.join("\n")
                );
            }
        }
    }
}

#[test]
fn envoy_loads_the_policy_as_envoy_gateway_configures_it() {
    for dir in KUSTOMIZATIONS {
        let config = gateway_config(&render(dir).unwrap()).unwrap();
        if let Err(error) = validate(&config) {
            panic!("k8s/{dir}: {error}");
        }
    }
}

#[test]
fn envoy_refuses_a_policy_whose_config_its_filter_refuses() {
    let mut manifests = render("envoy-gateway/base").unwrap();
    let policy = manifests
        .iter_mut()
        .find(|m| is_extension_policy(m))
        .unwrap();
    policy["spec"]["wasm"][2]["config"]["rules"][0]["limit"]["per"] = json!("fast");
    match validate(&gateway_config(&manifests).unwrap()) {
        Err(meshward_tests::RigError::Refused { log, .. }) => {
            assert!(log.contains("rules[0].limit.per"), "{log}")
        }
        other => panic!("expected Envoy to refuse the config, got {other:?}"),
    }
}
