//! Every config in `envoy-config/` is one Envoy accepts, and a plugin config a filter
//! refuses makes Envoy refuse the whole config. `envoy --mode validate` loads each Wasm
//! module and runs its configure step, so these need `make build` first.

use std::path::{Path, PathBuf};

use meshward_tests::envoy::{validate, validate_file};
use meshward_tests::{repo_root, EnvoyConfig, RigError, WasmFilter};
use serde_json::json;

fn config_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
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
