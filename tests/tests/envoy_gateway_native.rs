//! What Envoy Gateway users apply from `k8s/envoy-gateway/native/` (the native build of the
//! filters, through the EnvoyExtensionPolicy's `dynamicModule` list) is checked as
//! `envoy_gateway.rs` checks the Wasm policy: against Envoy Gateway's CRD (schema and CEL
//! rules), the same filters in the same order with the same configurations as the Wasm
//! policy of `k8s/envoy-gateway/base`, and each configuration loaded by the native modules
//! in `envoy --mode validate`. Needs `make setup` and `make build`.

use meshward_tests::crd::{reference_crd, schema_problems};
use meshward_tests::envoy::validate;
use meshward_tests::envoy_gateway::{gateway_config, is_extension_policy, rule_problems, CRD};
use meshward_tests::kustomize::{display_name, render};
use meshward_tests::Backend;
use serde_json::Value;

const NATIVE: &str = "envoy-gateway/native";

fn policy(manifests: &[Value]) -> Value {
    let policies: Vec<&Value> = manifests
        .iter()
        .filter(|m| is_extension_policy(m))
        .collect();
    assert_eq!(policies.len(), 1, "one EnvoyExtensionPolicy");
    policies[0].clone()
}

#[test]
fn the_native_policy_passes_the_crd_schema_and_its_rules() {
    let crd = reference_crd(CRD).unwrap_or_else(|| {
        panic!("../shared/reference/{CRD} is missing: Envoy Gateway's CRD is read from there")
    });
    let policy = policy(&render(NATIVE).unwrap());
    let mut found: Vec<String> = schema_problems(&crd, std::slice::from_ref(&policy))
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    found.extend(rule_problems(&policy));
    assert!(
        found.is_empty(),
        "{}:\n{}",
        display_name(&policy),
        found.join("\n")
    );
}

#[test]
fn the_native_policy_runs_the_wasm_policys_filters_in_order_with_the_same_configs() {
    let wasm = policy(&render("envoy-gateway/base").unwrap());
    let native = policy(&render(NATIVE).unwrap());
    assert!(
        native["spec"].get("wasm").is_none(),
        "the native policy loads no Wasm"
    );
    let wasm_list = wasm["spec"]["wasm"].as_array().unwrap();
    let native_list = native["spec"]["dynamicModule"].as_array().unwrap();
    let wasm_filters: Vec<&Value> = wasm_list.iter().map(|e| &e["rootID"]).collect();
    let native_filters: Vec<&Value> = native_list.iter().map(|e| &e["filterName"]).collect();
    assert_eq!(native_filters, wasm_filters);
    for (w, n) in wasm_list.iter().zip(native_list) {
        assert_eq!(n["config"], w["config"], "{}", n["filterName"]);
        assert_eq!(
            n["name"].as_str(),
            Some(format!("meshward-{}", n["filterName"].as_str().unwrap()).as_str()),
            "the module's name in the EnvoyProxy's dynamicModules list"
        );
    }
}

#[test]
fn envoy_loads_each_native_config_as_envoy_gateway_configures_it() {
    // The Wasm policy's filters on the native backend: the same configurations (the test
    // above), each loaded from out/<filter>.so with its filter name.
    let config = gateway_config(&render("envoy-gateway/base").unwrap())
        .unwrap()
        .on(Backend::Native);
    if let Err(error) = validate(&config) {
        panic!("k8s/{NATIVE}: {error}");
    }
}
