//! The TrafficExtension overlays (`k8s/overlays/trafficextension`, and
//! `example-trafficextension`, both from `k8s/components/trafficextension`) get the checks
//! the WasmPlugins get: every rendered manifest passes Istio's CRD schema and rules, each
//! extension is exactly the WasmPlugin it was made from (same module, phase, priority,
//! config), and each config is loaded by its filter in the harness and, as istiod
//! configures it, in `envoy --mode validate`. Needs `make setup` and `make build`.

use meshward_harness::{wasm_path, HarnessError, Host, LogLevel};
use meshward_tests::crd::{reference_crd, schema_problems};
use meshward_tests::envoy::validate;
use meshward_tests::istio_schema::check;
use meshward_tests::istiod::{
    gateway_config, http_filter, module_name, plugin_config_json, GATEWAY_REGION,
};
use meshward_tests::kustomize::{display_name, of_kind, render};
use meshward_tests::traffic_extension::{as_wasm_plugin, as_wasm_plugins, KUSTOMIZATIONS};
use serde_json::{json, Value};

/// Each TrafficExtension kustomization and the WasmPlugin one it converts.
const CONVERTS: [(&str, &str); 2] = [
    ("overlays/trafficextension", "base"),
    ("overlays/example-trafficextension", "overlays/example"),
];

/// The CRD in `../shared/reference/`, read as an extra check beside ours.
const CRD: &str = "istio-trafficextension-crd.yaml";

/// The filters in `filters/`, each of which needs a TrafficExtension.
fn filters() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(meshward_tests::repo_root().join("filters"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn extensions(manifests: &[Value]) -> Vec<Value> {
    of_kind(manifests, "TrafficExtension")
        .into_iter()
        .cloned()
        .collect()
}

fn problems_of(manifests: &[Value], answers: Vec<Vec<String>>) -> Vec<String> {
    manifests
        .iter()
        .zip(answers)
        .flat_map(|(m, found)| {
            found
                .into_iter()
                .map(move |p| format!("{}: {p}", display_name(m)))
        })
        .collect()
}

#[test]
fn every_rendered_manifest_passes_the_istio_schema_and_the_crd_rules() {
    for dir in KUSTOMIZATIONS {
        let manifests = render(dir).unwrap();
        let problems = problems_of(&manifests, check(&manifests).unwrap());
        assert!(problems.is_empty(), "k8s/{dir}:\n{}", problems.join("\n"));
        assert!(
            of_kind(&manifests, "WasmPlugin").is_empty(),
            "k8s/{dir}: a WasmPlugin is left beside the TrafficExtensions"
        );
        let mut modules: Vec<String> = extensions(&manifests)
            .iter()
            .map(|e| module_name(&as_wasm_plugin(e).unwrap()).unwrap())
            .collect();
        modules.sort();
        assert_eq!(
            modules,
            filters(),
            "k8s/{dir}: one TrafficExtension per filter"
        );
    }
}

#[test]
fn every_rendered_extension_passes_the_reference_crd_too() {
    let crd = reference_crd(CRD).unwrap_or_else(|| {
        panic!(
            "../shared/reference/{CRD} is missing: Istio's TrafficExtension CRD is read from there"
        )
    });
    for dir in KUSTOMIZATIONS {
        let found = extensions(&render(dir).unwrap());
        let problems = problems_of(&found, schema_problems(&crd, &found).unwrap());
        assert!(problems.is_empty(), "k8s/{dir}:\n{}", problems.join("\n"));
    }
}

#[test]
fn each_extension_is_the_wasm_plugin_it_was_made_from() {
    for (extensions_dir, plugins_dir) in CONVERTS {
        let converted = as_wasm_plugins(&render(extensions_dir).unwrap());
        let plugins = render(plugins_dir).unwrap();
        // Same images (and digests), pluginConfig, fail strategy, selector, phase and
        // priority; and the other resources (ServiceEntries, the Gateway) unchanged.
        assert_eq!(
            converted, plugins,
            "k8s/{extensions_dir} against k8s/{plugins_dir}"
        );
    }
}

/// One broken TrafficExtension per rule, the path its refusal must name, and whether
/// the CRD's schema alone (ajv, without CEL) refuses it too.
fn broken_extensions(valid: &Value) -> Vec<(&'static str, Value, &'static str, bool)> {
    let with = |change: &dyn Fn(&mut Value)| {
        let mut extension = valid.clone();
        change(&mut extension);
        extension
    };
    let wasm = |field: &'static str, value: Value| {
        with(&move |e: &mut Value| e["spec"]["wasm"][field] = value.clone())
    };
    vec![
        (
            "a module field left in spec",
            with(&|e| e["spec"]["url"] = json!("oci://r.example.com/m:1")),
            "spec.url: unknown field",
            true,
        ),
        (
            "WasmPlugin's targetRef, which TrafficExtension lacks",
            with(&|e| e["spec"]["targetRef"] = json!({"kind": "Gateway", "name": "api"})),
            "spec.targetRef: unknown field",
            true,
        ),
        (
            "an unknown field in wasm",
            wasm("phase", json!("AUTHN")),
            "spec.wasm.phase: unknown field",
            true,
        ),
        (
            "WasmPlugin's name for no phase",
            with(&|e| e["spec"]["phase"] = json!("UNSPECIFIED_PHASE")),
            "spec.phase: must be one of UNSPECIFIED, AUTHN, AUTHZ, STATS",
            true,
        ),
        (
            "Envoy's name for the fail strategy",
            wasm("failStrategy", json!("FAIL_CLOSED")),
            "spec.wasm.failStrategy: must be one of FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD",
            true,
        ),
        (
            "a sha256 in capitals",
            wasm("sha256", json!("AB".repeat(32))),
            "spec.wasm.sha256: must match pattern",
            true,
        ),
        (
            "an ftp URL",
            wasm("url", json!("ftp://r.example.com/m.wasm")),
            "spec.wasm.url: url must have schema one of",
            false,
        ),
        (
            "no URL",
            with(&|e| {
                e["spec"]["wasm"].as_object_mut().unwrap().remove("url");
            }),
            "spec.wasm: url is required",
            true,
        ),
        (
            "both wasm and lua",
            with(&|e| e["spec"]["lua"] = json!({"inlineCode": "function envoy_on_request(h) end"})),
            "spec: exactly one of wasm or lua must be set",
            true,
        ),
        (
            "neither wasm nor lua",
            with(&|e| {
                e["spec"].as_object_mut().unwrap().remove("wasm");
            }),
            "spec: exactly one of wasm or lua must be set",
            false,
        ),
        (
            "a selector and targetRefs",
            with(&|e| {
                e["spec"]["targetRefs"] = json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "api"}])
            }),
            "spec: only one of targetRefs or selector can be set",
            false,
        ),
        (
            "a wildcard label value",
            with(&|e| e["spec"]["selector"]["matchLabels"] = json!({"istio": "ingress*"})),
            "spec.selector.matchLabels.istio: wildcard not allowed in label value match",
            false,
        ),
        (
            "a variable listed twice",
            wasm(
                "vmConfig",
                json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
            ),
            "spec.wasm.vmConfig.env: \"A\" is listed twice",
            false,
        ),
        (
            "a pluginConfig that is a list",
            wasm("pluginConfig", json!([])),
            "spec.wasm.pluginConfig: must be object",
            true,
        ),
    ]
}

#[test]
fn the_checks_refuse_each_broken_traffic_extension_naming_the_field() {
    let manifests = render("overlays/trafficextension").unwrap();
    let valid = extensions(&manifests)
        .into_iter()
        .find(|e| e["metadata"]["name"] == "security-headers")
        .unwrap();
    let cases = broken_extensions(&valid);
    let mut sent = vec![valid.clone()];
    sent.extend(cases.iter().map(|(_, extension, _, _)| extension.clone()));

    let mut answers = check(&sent).unwrap().into_iter();
    let for_valid = answers.next().unwrap();
    assert!(
        for_valid.is_empty(),
        "the unbroken extension: {for_valid:?}"
    );
    let mut missed = Vec::new();
    for ((what, _, expected, _), problems) in cases.iter().zip(answers) {
        if !problems.iter().any(|p| p.starts_with(expected)) {
            missed.push(format!("{what}: expected {expected:?}, got {problems:?}"));
        }
    }

    // The reference CRD's schema refuses the same (what only its CEL rules refuse aside),
    // so our checks are no looser than the API server's.
    if let Some(crd) = reference_crd(CRD) {
        let mut answers = schema_problems(&crd, &sent).unwrap().into_iter();
        let for_valid = answers.next().unwrap();
        assert!(
            for_valid.is_empty(),
            "the CRD, on the unbroken extension: {for_valid:?}"
        );
        for ((what, _, _, by_schema), problems) in cases.iter().zip(answers) {
            if *by_schema && problems.is_empty() {
                missed.push(format!("{what}: the reference CRD's schema took it"));
            }
        }
    }
    assert!(missed.is_empty(), "\n{}", missed.join("\n"));
}

/// Loads an extension's module with its pluginConfig as the gateway would.
fn load_in_harness(extension: &Value, manifests: &[Value]) -> Result<Host, HarnessError> {
    let plugin = as_wasm_plugin(extension).unwrap();
    let config = gateway_config(&as_wasm_plugins(manifests)).unwrap();
    let filter = http_filter(&plugin).unwrap();
    let mut builder = Host::builder(wasm_path(&module_name(&plugin).unwrap()))
        .plugin_name(filter["name"].as_str().unwrap())
        .root_id(plugin["spec"]["pluginName"].as_str().unwrap_or_default())
        .config_json(&plugin_config_json(&plugin["spec"]["pluginConfig"]))
        .property("xds.node.locality.region", GATEWAY_REGION);
    let clusters = config.value()["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    for cluster in clusters {
        builder = builder.cluster(cluster["name"].as_str().unwrap());
    }
    builder.build()
}

#[test]
fn every_extension_config_loads_in_its_filter_in_the_harness() {
    for dir in KUSTOMIZATIONS {
        let manifests = render(dir).unwrap();
        for extension in extensions(&manifests) {
            if let Err(error) = load_in_harness(&extension, &manifests) {
                let logs: Vec<String> = error
                    .logs()
                    .iter()
                    .filter(|entry| entry.level == LogLevel::Error)
                    .map(|entry| entry.message.clone())
                    .collect();
                panic!(
                    "k8s/{dir}: {} refused its pluginConfig:\n{}",
                    display_name(&extension),
                    logs.join("\n")
                );
            }
        }
    }
}

#[test]
fn envoy_loads_every_rendered_extension_as_istiod_configures_it() {
    for dir in KUSTOMIZATIONS {
        let manifests = as_wasm_plugins(&render(dir).unwrap());
        if let Err(error) = validate(&gateway_config(&manifests).unwrap()) {
            panic!("k8s/{dir}: {error}");
        }
    }
}

#[test]
fn envoy_refuses_an_extension_whose_plugin_config_its_filter_refuses() {
    let mut manifests = render("overlays/trafficextension").unwrap();
    let extension = manifests
        .iter_mut()
        .find(|m| m["kind"] == "TrafficExtension" && m["metadata"]["name"] == "rate-limit")
        .unwrap();
    extension["spec"]["wasm"]["pluginConfig"]["rules"][0]["limit"]["per"] = json!("fast");
    match validate(&gateway_config(&as_wasm_plugins(&manifests)).unwrap()) {
        Err(meshward_tests::RigError::Refused { log, .. }) => {
            assert!(log.contains("rules[0].limit.per"), "{log}")
        }
        other => panic!("expected Envoy to refuse the config, got {other:?}"),
    }
}
