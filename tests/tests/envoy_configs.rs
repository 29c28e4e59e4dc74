//! Every config in `envoy-config/` is one Envoy accepts, and a plugin config a filter
//! refuses makes Envoy refuse the whole config. `envoy --mode validate` loads each Wasm
//! module and runs its configure step, so these need `make build` first.
//!
//! `envoy-config/ecds/` holds ECDS resources (filter configs that a bootstrap's
//! `config_discovery` reads from a file), not bootstraps: validate mode does not read them,
//! so each one is checked here inside a bootstrap of its own instead.

use std::path::{Path, PathBuf};

use meshward_tests::envoy::{validate, validate_file};
use meshward_tests::{repo_root, EnvoyConfig, RigError, WasmFilter};
use serde_json::{json, Value};

/// The directory of ECDS resources, under `envoy-config/`.
const ECDS_DIR: &str = "ecds";

fn config_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with(ECDS_DIR) {
            continue;
        }
        if path.is_dir() {
            files.extend(config_files(&path));
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn envoy_accepts_every_config_in_envoy_config() {
    let files = config_files(&repo_root().join("envoy-config"));
    assert!(
        files.iter().any(|f| f.ends_with("meshward.yaml")),
        "envoy-config/meshward.yaml is missing; found {files:?}"
    );
    let refused: Vec<String> = files
        .iter()
        .filter_map(|file| validate_file(file).err())
        .map(|error| error.to_string())
        .collect();
    assert!(refused.is_empty(), "\n{}", refused.join("\n\n"));
}

#[test]
fn envoy_refuses_a_config_whose_plugin_configuration_the_filter_refuses() {
    let with = |plugin_config| {
        EnvoyConfig::with_filters(&[WasmFilter::new("security-headers", plugin_config)])
    };
    validate(&with(json!({}))).expect("the default plugin configuration is accepted");

    match validate(&with(json!({"no_such_field": true}))) {
        Err(RigError::Refused { log, .. }) => {
            assert!(
                log.contains("no_such_field"),
                "the refusal should name the field:\n{log}"
            )
        }
        other => panic!("expected Envoy to refuse the config, got {other:?}"),
    }
}

/// A bootstrap with `resource` (a `TypedExtensionConfig`) as a static HTTP filter.
fn with_extension_config(resource: &Value) -> EnvoyConfig {
    let mut config = EnvoyConfig::with_filters(&[]);
    let filters = config
        .value_mut()
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(Value::as_array_mut)
        .unwrap();
    filters.insert(
        0,
        json!({"name": resource["name"], "typed_config": resource["typed_config"]}),
    );
    config
}

#[test]
fn envoy_accepts_every_ecds_resource_in_envoy_config() {
    let dir = repo_root().join("envoy-config").join(ECDS_DIR);
    let files = config_files_in(&dir);
    assert!(!files.is_empty(), "no ECDS resources in {}", dir.display());
    let mut refused = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let response: Value = serde_yaml_ng::from_str(&text).unwrap();
        let resources = response["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!resources.is_empty(), "{} has no resources", file.display());
        for resource in &resources {
            assert_eq!(
                resource["@type"],
                json!("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"),
                "{}",
                file.display()
            );
            if let Err(error) = validate(&with_extension_config(resource)) {
                refused.push(format!("{}: {error}", file.display()));
            }
        }
    }
    assert!(refused.is_empty(), "\n{}", refused.join("\n\n"));
}

fn config_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}
