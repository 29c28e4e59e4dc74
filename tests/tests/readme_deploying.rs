//! The copy-paste examples of README.md's "Deploying" section do what it says: the
//! TrafficExtension overlay renders what `k8s/overlays/example-trafficextension` renders,
//! the WasmPlugin, TrafficExtension and both Envoy Gateway policies pass their CRD's schema
//! and rules and load in `envoy --mode validate` as their control plane would configure
//! Envoy, and the standalone Envoy filter loads too. Needs `make setup` and `make build`.

use meshward_tests::crd::{reference_crd, schema_problems};
use meshward_tests::envoy::validate;
use meshward_tests::istio_schema::check;
use meshward_tests::kustomize::render;
use meshward_tests::traffic_extension::as_wasm_plugins;
use meshward_tests::{envoy_gateway, istiod, repo_root, EnvoyConfig, RigError};
use serde_json::{json, Value};

/// The README's example manifest that starts with `first_lines`, its placeholder digests
/// filled in.
fn readme_manifest(first_lines: &str) -> Value {
    let block = readme_block(first_lines);
    let filled = block
        .replace("<the image's manifest digest>", &"ab".repeat(32))
        .replace("<the .wasm file's sha256>", &"cd".repeat(32));
    serde_yaml_ng::from_str(&filled).unwrap()
}

/// Fails with Envoy's answer unless it loads `config`.
fn loads(what: &str, config: Result<EnvoyConfig, RigError>) {
    if let Err(error) = config.and_then(|c| validate(&c)) {
        panic!("README.md's {what}: {error}");
    }
}

#[test]
fn the_readmes_istio_examples_pass_istios_schema_and_load_as_istiod_configures_them() {
    for kind in ["WasmPlugin", "TrafficExtension"] {
        let manifest = readme_manifest(&format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: {kind}"
        ));
        let problems = check(std::slice::from_ref(&manifest)).unwrap().concat();
        assert!(problems.is_empty(), "README.md's {kind}: {problems:?}");
        let plugins = match kind {
            "WasmPlugin" => vec![manifest],
            _ => as_wasm_plugins(&[manifest]),
        };
        assert_eq!(
            plugins.len(),
            1,
            "README.md's {kind} converts to one plugin"
        );
        loads(kind, istiod::gateway_config(&plugins));
    }
}

#[test]
fn the_readmes_envoy_gateway_policies_pass_the_crd_and_load_as_envoy_gateway_configures_them() {
    let crd = reference_crd(envoy_gateway::CRD)
        .unwrap_or_else(|| panic!("../shared/reference/{} is missing", envoy_gateway::CRD));
    for source in ["OCI image", "HTTPS"] {
        let first_line = match source {
            "OCI image" => "# from an OCI image",
            _ => "# over HTTPS",
        };
        let policy = readme_manifest(first_line);
        let mut problems = schema_problems(&crd, std::slice::from_ref(&policy))
            .unwrap()
            .concat();
        problems.extend(envoy_gateway::rule_problems(&policy));
        assert!(
            problems.is_empty(),
            "README.md's policy ({source}): {problems:?}"
        );
        loads(
            &format!("policy ({source})"),
            envoy_gateway::gateway_config(&[policy]),
        );
    }
}

/// The fenced block of README.md that starts with `first_line`.
fn readme_block(first_line: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find(first_line)
        .unwrap_or_else(|| panic!("README.md has no block starting {first_line:?}"));
    let block = &readme[start..];
    block[..block.find("```").unwrap()].to_owned()
}

#[test]
fn the_readmes_overlay_renders_what_the_example_trafficextension_overlay_does() {
    let overlays = repo_root().join("k8s/overlays");
    let dir = tempfile::tempdir_in(&overlays).unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        readme_block("# k8s/overlays/<yours>/kustomization.yaml"),
    )
    .unwrap();
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        render(&format!("overlays/{name}")).unwrap(),
        render("overlays/example-trafficextension").unwrap()
    );
}

#[test]
fn the_readmes_standalone_envoy_filter_loads_in_envoy() {
    let block = readme_block("- name: envoy.filters.http.wasm");
    let mut filters: Vec<Value> = serde_yaml_ng::from_str(&block).unwrap();
    let code = &mut filters[0]["typed_config"]["config"]["vm_config"]["code"]["local"];
    code["filename"] = json!("out/rate-limit.wasm");
    let config = EnvoyConfig::with_http_filters(filters);
    if let Err(error) = validate(&config) {
        panic!("{error}");
    }
}
