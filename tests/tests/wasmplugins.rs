//! What users apply from `k8s/` is checked here before they do: every manifest the base
//! and the example overlay render passes Istio's schema and its CRD's rules, the plugins
//! sit in the phases their filters need, and every WasmPlugin's `pluginConfig` is loaded
//! by its filter, in the harness and in Envoy (configured as istiod would configure it).
//! Needs `make setup` (kubectl, and npm ci in k8s/check) and `make build`.

use meshward_harness::{wasm_path, HarnessError, Host, LogLevel};
use meshward_tests::envoy::validate;
use meshward_tests::istio_schema::check;
use meshward_tests::istiod::{
    chain_order, gateway_config, http_filter, module_name, plugin_config_json, GATEWAY_REGION,
};
use meshward_tests::kustomize::{display_name, of_kind, render, KUSTOMIZATIONS};
use meshward_tests::{repo_root, RigError};
use serde_json::{json, Value};

/// Whether `make setup` installed the schema validator (`npm ci` in `k8s/check`). Without it
/// one test fails, saying so, and the tests that need it return early rather than all
/// failing with the same message.
fn schema_checker_installed() -> bool {
    repo_root()
        .join("k8s/check/node_modules/@kubernetes-models/istio")
        .exists()
}

#[test]
fn the_schema_checker_is_installed() {
    assert!(
        schema_checker_installed(),
        "k8s/check/node_modules is missing: run `make setup` (it runs npm ci in k8s/check); \
         the schema checks of k8s/ were skipped"
    );
}

/// The filters in `filters/`, each of which needs a WasmPlugin.
fn filters() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("filters"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn plugins(manifests: &[Value]) -> Vec<Value> {
    of_kind(manifests, "WasmPlugin")
        .into_iter()
        .cloned()
        .collect()
}

fn plugin_named<'a>(manifests: &'a mut [Value], name: &str) -> &'a mut Value {
    manifests
        .iter_mut()
        .find(|m| m["kind"] == "WasmPlugin" && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no WasmPlugin {name}"))
}

// The schema and the CRD's rules.

#[test]
fn every_rendered_manifest_passes_the_istio_schema_and_the_crd_rules() {
    if !schema_checker_installed() {
        return; // the_schema_checker_is_installed fails instead
    }
    for dir in KUSTOMIZATIONS {
        let manifests = render(dir).unwrap();
        let problems: Vec<String> = manifests
            .iter()
            .zip(check(&manifests).unwrap())
            .flat_map(|(m, found)| {
                found
                    .into_iter()
                    .map(move |p| format!("{}: {p}", display_name(m)))
            })
            .collect();
        assert!(problems.is_empty(), "k8s/{dir}:\n{}", problems.join("\n"));

        let mut modules: Vec<String> = plugins(&manifests)
            .iter()
            .map(|p| module_name(p).unwrap())
            .collect();
        modules.sort();
        assert_eq!(modules, filters(), "k8s/{dir}: one WasmPlugin per filter");
    }
}

#[test]
fn the_example_overlay_pins_every_module_to_a_digest_on_its_own_gateway() {
    let manifests = render("overlays/example").unwrap();
    for plugin in plugins(&manifests) {
        let spec = &plugin["spec"];
        let name = display_name(&plugin);
        assert_eq!(plugin["metadata"]["namespace"], "edge", "{name}");
        // The chain runs the same filters on another gateway, never beside them.
        let gateway = if plugin["metadata"]["name"] == "chain" {
            "edge-internal-gateway"
        } else {
            "edge-gateway"
        };
        assert_eq!(
            spec["selector"]["matchLabels"],
            json!({ "istio": gateway }),
            "{name}"
        );
        assert_eq!(spec["sha256"].as_str().map(str::len), Some(64), "{name}");
    }
    let gateway = of_kind(&manifests, "Gateway")[0];
    assert_eq!(
        gateway["spec"]["selector"],
        json!({"istio": "edge-gateway"})
    );
}

/// One broken WasmPlugin per rule, and the path its refusal must name.
fn broken_plugins(valid: &Value) -> Vec<(&'static str, Value, &'static str)> {
    let with = |change: &dyn Fn(&mut Value)| {
        let mut plugin = valid.clone();
        change(&mut plugin);
        plugin
    };
    let set = |pointer: &'static str, value: Value| {
        with(&move |p: &mut Value| *p.pointer_mut(pointer).unwrap() = value.clone())
    };
    let add = |field: &'static str, value: Value| {
        with(&move |p: &mut Value| {
            p["spec"][field] = value.clone();
        })
    };
    let env = |variables: Value| add("vmConfig", json!({"env": variables}));
    vec![
        (
            "an unknown spec field",
            add("phases", json!("AUTHN")),
            "spec.phases: unknown field",
        ),
        (
            "an unknown nested field",
            add("vmConfig", json!({"envs": []})),
            "spec.vmConfig.envs: unknown field",
        ),
        (
            "an unknown metadata field",
            with(&|p| p["metadata"]["label"] = json!({"a": "b"})),
            "metadata.label: unknown field",
        ),
        (
            "Envoy's name for the fail strategy",
            add("failStrategy", json!("FAIL_CLOSED")),
            "spec.failStrategy: must be one of FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD",
        ),
        (
            "an unknown phase",
            add("phase", json!("AUTHENTICATION")),
            "spec.phase: must be one of",
        ),
        (
            "a pull policy Istio lacks",
            add("imagePullPolicy", json!("Never")),
            "spec.imagePullPolicy: must be one of",
        ),
        (
            "an unknown plugin type",
            add("type", json!("TCP")),
            "spec.type: must be one of",
        ),
        (
            "an unknown traffic mode",
            add("match", json!([{"mode": "BOTH"}])),
            "spec.match[0].mode: must be one of",
        ),
        (
            "a port out of range",
            add("match", json!([{"ports": [{"number": 70000}]}])),
            "spec.match[0].ports[0].number: must be <= 65535",
        ),
        (
            "a port listed twice",
            add(
                "match",
                json!([{"ports": [{"number": 80}, {"number": 80}]}]),
            ),
            "spec.match[0].ports: port 80 is listed twice",
        ),
        (
            "a sha256 in capitals",
            add("sha256", json!("AB".repeat(32))),
            "spec.sha256: must match pattern",
        ),
        (
            "a short sha256",
            add("sha256", json!("ab12")),
            "spec.sha256: must match pattern",
        ),
        (
            "a digest in the URL that is not the sha256",
            with(&|p| {
                p["spec"]["url"] =
                    json!(format!("oci://r.example.com/m@sha256:{}", "a".repeat(64)));
                p["spec"]["sha256"] = json!("b".repeat(64));
            }),
            "spec.sha256: ",
        ),
        (
            "an ftp URL",
            set("/spec/url", json!("ftp://r.example.com/m.wasm")),
            "spec.url: url must have schema one of",
        ),
        (
            "a URL with a space",
            set("/spec/url", json!("oci://r.example.com/m 1")),
            "spec.url:",
        ),
        (
            "no URL",
            with(&|p| {
                p["spec"].as_object_mut().unwrap().remove("url");
            }),
            "spec: url is required",
        ),
        (
            "a selector and targetRefs",
            add(
                "targetRefs",
                json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "api"}]),
            ),
            "spec: only one of targetRefs or selector can be set",
        ),
        (
            "a selector and a targetRef",
            add("targetRef", json!({"kind": "Gateway", "name": "api"})),
            "spec: only one of targetRefs or selector can be set",
        ),
        (
            "a targetRef in another namespace",
            with(&|p| {
                p["spec"].as_object_mut().unwrap().remove("selector");
                p["spec"]["targetRefs"] =
                    json!([{"kind": "Gateway", "name": "api", "namespace": "other"}]);
            }),
            "spec.targetRefs[0].namespace: cross namespace referencing is not currently supported",
        ),
        (
            "a wildcard label value",
            set("/spec/selector/matchLabels", json!({"istio": "ingress*"})),
            "spec.selector.matchLabels.istio: wildcard not allowed in label value match",
        ),
        (
            "a value for a variable taken from the host",
            env(json!([{"name": "REGION", "valueFrom": "HOST", "value": "eu"}])),
            "spec.vmConfig.env[0]: value may only be set when valueFrom is INLINE",
        ),
        (
            "an unknown value source",
            env(json!([{"name": "REGION", "valueFrom": "ENV"}])),
            "spec.vmConfig.env[0].valueFrom: must be one of INLINE, HOST",
        ),
        (
            "a variable without a name",
            env(json!([{"value": "eu"}])),
            "spec.vmConfig.env[0]: name is required",
        ),
        (
            "a variable listed twice",
            env(json!([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])),
            "spec.vmConfig.env: \"A\" is listed twice",
        ),
        (
            "a priority in quotes",
            add("priority", json!("10")),
            "spec.priority: must be integer",
        ),
        (
            "a pluginConfig that is a list",
            add("pluginConfig", json!([])),
            "spec.pluginConfig: must be object",
        ),
    ]
}

#[test]
fn the_checks_refuse_each_broken_wasm_plugin_naming_the_field() {
    if !schema_checker_installed() {
        return; // the_schema_checker_is_installed fails instead
    }
    let mut manifests = render("base").unwrap();
    let valid = plugin_named(&mut manifests, "security-headers").clone();
    let cases = broken_plugins(&valid);
    let mut sent = vec![valid.clone()];
    sent.extend(cases.iter().map(|(_, plugin, _)| plugin.clone()));
    let mut answers = check(&sent).unwrap().into_iter();

    let for_valid = answers.next().unwrap();
    assert!(for_valid.is_empty(), "the unbroken plugin: {for_valid:?}");
    let mut missed = Vec::new();
    for ((what, _, expected), problems) in cases.iter().zip(answers) {
        if !problems.iter().any(|p| p.starts_with(expected)) {
            missed.push(format!("{what}: expected {expected:?}, got {problems:?}"));
        }
    }
    assert!(missed.is_empty(), "\n{}", missed.join("\n"));
}

// Phases.

#[test]
fn the_plugins_run_where_their_filters_need_to() {
    let manifests = render("base").unwrap();
    let all = plugins(&manifests);
    // The plugins of the main gateway; the meshward chain runs on the internal one alone.
    let refs: Vec<&Value> = all
        .iter()
        .filter(|p| p["spec"]["selector"]["matchLabels"]["istio"] == "ingressgateway")
        .collect();
    let internal: Vec<&Value> = all
        .iter()
        .filter(|p| p["spec"]["selector"]["matchLabels"]["istio"] == "internal-gateway")
        .collect();
    assert_eq!(internal.len(), 1);
    assert_eq!(module_name(internal[0]).unwrap(), "chain");
    let chain: Vec<String> = chain_order(&refs)
        .iter()
        .map(|p| module_name(p).unwrap())
        .collect();
    // security-headers first, so that every reply (jwt-auth's 401s, Istio's 403s) passes
    // through it; rate-limit after jwt-auth, whose claim headers it keys on; region-router
    // last, right before the router picks the route it set. Filters added later sit where
    // their phase puts them: this pins only the order these need among themselves.
    let needed = [
        "security-headers",
        "jwt-auth",
        "rate-limit",
        "circuit-metrics",
        "region-router",
    ];
    let among_them: Vec<&str> = chain
        .iter()
        .map(String::as_str)
        .filter(|m| needed.contains(m))
        .collect();
    assert_eq!(among_them, needed, "the chain: {chain:?}");
    assert_eq!(chain.first().map(String::as_str), Some("security-headers"));
    assert_eq!(chain.last().map(String::as_str), Some("region-router"));
    let phase = |name: &str| {
        let plugin = all.iter().find(|p| p["metadata"]["name"] == name).unwrap();
        plugin["spec"]["phase"]
            .as_str()
            .unwrap_or("none")
            .to_owned()
    };
    assert_eq!(phase("jwt-auth"), "AUTHN");
    assert_eq!(phase("rate-limit"), "AUTHZ");
    assert_eq!(phase("circuit-metrics"), "STATS");
    assert_eq!(phase("region-router"), "none");
}

// pluginConfig in the harness.

/// Loads a WasmPlugin's module with its pluginConfig as the gateway would, with the
/// clusters the rendered ServiceEntries make and the gateway's locality.
fn load_in_harness(plugin: &Value, manifests: &[Value]) -> Result<Host, HarnessError> {
    let spec = &plugin["spec"];
    let config = gateway_config(manifests).unwrap();
    let clusters = config.value()["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    let filter = http_filter(plugin).unwrap();
    let mut builder = Host::builder(wasm_path(&module_name(plugin).unwrap()))
        .plugin_name(filter["name"].as_str().unwrap())
        .root_id(spec["pluginName"].as_str().unwrap_or_default())
        .config_json(&plugin_config_json(&spec["pluginConfig"]))
        .property("xds.node.locality.region", GATEWAY_REGION);
    for cluster in clusters {
        builder = builder.cluster(cluster["name"].as_str().unwrap());
    }
    builder.build()
}

fn error_logs(error: &HarnessError) -> String {
    error
        .logs()
        .iter()
        .filter(|entry| entry.level == LogLevel::Error)
        .map(|entry| entry.message.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_plugin_config_loads_in_its_filter_in_the_harness() {
    for dir in KUSTOMIZATIONS {
        let manifests = render(dir).unwrap();
        for plugin in plugins(&manifests) {
            let name = display_name(&plugin);
            // A module bundling several filters picks one by root_id: pluginName.
            assert_eq!(
                plugin["spec"]["pluginName"],
                json!(module_name(&plugin).unwrap()),
                "{name}"
            );
            if let Err(error) = load_in_harness(&plugin, &manifests) {
                panic!(
                    "k8s/{dir}: {name} refused its pluginConfig:\n{}",
                    error_logs(&error)
                );
            }
        }
    }
}

#[test]
fn a_plugin_config_its_filter_refuses_fails_to_load_in_the_harness() {
    let mut manifests = render("base").unwrap();
    let plugin = plugin_named(&mut manifests, "rate-limit");
    plugin["spec"]["pluginConfig"]["rules"][0]["limit"]["per"] = json!("fast");
    let plugin = plugin.clone();
    match load_in_harness(&plugin, &manifests) {
        Ok(_) => panic!("rate-limit accepted per: fast"),
        Err(error) => {
            let logs = error_logs(&error);
            assert!(logs.contains("rules[0].limit.per"), "{logs}");
        }
    }
}

// pluginConfig in Envoy.

#[test]
fn envoy_loads_every_rendered_plugin_as_istiod_configures_it() {
    for dir in KUSTOMIZATIONS {
        let manifests = render(dir).unwrap();
        let config = gateway_config(&manifests).unwrap();
        if let Err(error) = validate(&config) {
            panic!("k8s/{dir}: {error}");
        }
    }
}

#[test]
fn the_fail_strategy_becomes_envoys_failure_policy() {
    let manifests = render("base").unwrap();
    for plugin in plugins(&manifests) {
        let filter = http_filter(&plugin).unwrap();
        let config = &filter["typed_config"]["config"];
        let expected = match plugin["spec"]["failStrategy"].as_str() {
            Some("FAIL_OPEN") => "FAIL_OPEN",
            _ => "FAIL_CLOSED",
        };
        assert_eq!(
            config["failure_policy"],
            expected,
            "{}",
            display_name(&plugin)
        );
        assert_eq!(config["root_id"], plugin["spec"]["pluginName"]);
        let value: Value =
            serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(value, plugin["spec"]["pluginConfig"]);
    }
}

#[test]
fn envoy_refuses_a_wasm_plugin_whose_plugin_config_its_filter_refuses() {
    let mut manifests = render("base").unwrap();
    let plugin = plugin_named(&mut manifests, "jwt-auth");
    plugin["spec"]["pluginConfig"]["providers"][0]["audience"] = json!("api.example.com");
    match validate(&gateway_config(&manifests).unwrap()) {
        Err(RigError::Refused { log, .. }) => {
            let refusal = log
                .lines()
                .find(|line| line.contains("jwt-auth") && line.contains("refused"));
            assert!(
                refusal.is_some_and(|line| line.contains("providers[0].audience")),
                "the refusal should name the field:\n{log}"
            )
        }
        other => panic!("expected Envoy to refuse the config, got {other:?}"),
    }
}
