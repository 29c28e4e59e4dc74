//! The copy-paste examples of README.md's "Deploying" section do what it says: the
//! TrafficExtension overlay renders what `k8s/overlays/example-trafficextension` renders,
//! and the standalone Envoy filter loads in `envoy --mode validate`. Needs `make setup`
//! and `make build`.

use meshward_tests::envoy::validate;
use meshward_tests::kustomize::render;
use meshward_tests::{repo_root, EnvoyConfig};
use serde_json::{json, Value};

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
