//! The image layout `meshward-image build` writes: its shape and media types in both of
//! Istio's variants, its reproducibility, and the inputs it refuses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::{module, module_file, printed_digest, sha256_hex, tool, tool_fails, untar_gzip};
use serde_json::Value;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &Value) -> Vec<u8> {
    let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
    fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// The manifest the layout's index.json names, checked against its digest.
fn manifest(layout: &Path) -> (String, Value) {
    assert_eq!(
        json(&layout.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = json(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(
        manifests[0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let bytes = blob(layout, &manifests[0]["digest"]);
    assert_eq!(manifests[0]["size"], bytes.len());
    let hex = sha256_hex(&bytes);
    assert_eq!(manifests[0]["digest"], format!("sha256:{hex}"));
    (hex, serde_json::from_slice(&bytes).unwrap())
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                found.insert(name, fs::read(&path).unwrap());
            }
        }
    }
    found
}

#[test]
fn a_compat_image_has_one_tar_gzip_layer_holding_exactly_plugin_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = module_file(dir.path(), "security-headers", "v1");
    let layout = dir.path().join("image");

    let output = tool(&["build", wasm.to_str().unwrap(), layout.to_str().unwrap()]);

    let (hex, manifest) = manifest(&layout);
    assert_eq!(printed_digest(&output, "manifest"), hex);
    assert_eq!(printed_digest(&output, "wasm"), sha256_hex(&module("v1")));
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({"module.wasm.image/variant": "compat"})
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&layout, &layers[0]["digest"]);
    assert_eq!(layers[0]["size"], layer.len());
    assert_eq!(
        untar_gzip(&layer),
        vec![("plugin.wasm".to_string(), module("v1"))]
    );

    let config = json(
        &layout.join("blobs/sha256").join(
            manifest["config"]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        ),
    );
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");
    assert!(
        config.get("created").is_none(),
        "no build time in the config"
    );
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut tar).unwrap();
    assert_eq!(
        config["rootfs"],
        serde_json::json!({"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]})
    );
    assert_eq!(
        files(&layout).len(),
        5,
        "oci-layout, index.json and three blobs"
    );
}

#[test]
fn an_oci_image_has_a_runtime_config_layer_and_the_raw_wasm_as_its_second_layer() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = module_file(dir.path(), "jwt-auth", "v1");
    let layout = dir.path().join("image");

    tool(&[
        "build",
        wasm.to_str().unwrap(),
        layout.to_str().unwrap(),
        "--format",
        "oci",
    ]);

    let (_, manifest) = manifest(&layout);
    let layers = manifest["layers"].as_array().unwrap();
    let media_types: Vec<&str> = layers
        .iter()
        .map(|layer| layer["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        media_types,
        [
            "application/vnd.module.wasm.config.v1+json",
            "application/vnd.module.wasm.content.layer.v1+wasm"
        ]
    );
    assert_eq!(blob(&layout, &layers[1]["digest"]), module("v1"));
    assert_eq!(
        layers[1]["annotations"]["org.opencontainers.image.title"],
        "plugin.wasm"
    );
    let runtime_config: Value =
        serde_json::from_slice(&blob(&layout, &layers[0]["digest"])).unwrap();
    assert_eq!(runtime_config["type"], "envoy_proxy");
    assert_eq!(
        runtime_config["config"]["rootIds"],
        serde_json::json!(["jwt-auth"])
    );
    assert_eq!(manifest["config"]["digest"], layers[0]["digest"]);
}

#[test]
fn building_the_same_module_twice_gives_identical_files_and_digests() {
    for format in ["compat", "oci"] {
        let dir = tempfile::tempdir().unwrap();
        let wasm = module_file(dir.path(), "rate-limit", "v1");
        let first = dir.path().join("first");
        let second = dir.path().join("second");

        let a = tool(&[
            "build",
            wasm.to_str().unwrap(),
            first.to_str().unwrap(),
            "--format",
            format,
        ]);
        let b = tool(&[
            "build",
            wasm.to_str().unwrap(),
            second.to_str().unwrap(),
            "--format",
            format,
        ]);

        assert_eq!(
            printed_digest(&a, "manifest"),
            printed_digest(&b, "manifest"),
            "{format}"
        );
        assert_eq!(files(&first), files(&second), "{format}");
    }
}

#[test]
fn a_changed_module_changes_the_manifest_digest() {
    let dir = tempfile::tempdir().unwrap();
    let one = module_file(dir.path(), "one", "v1");
    let two = module_file(dir.path(), "two", "v2");

    let a = tool(&[
        "build",
        one.to_str().unwrap(),
        dir.path().join("a").to_str().unwrap(),
    ]);
    let b = tool(&[
        "build",
        two.to_str().unwrap(),
        dir.path().join("b").to_str().unwrap(),
    ]);

    assert_ne!(
        printed_digest(&a, "manifest"),
        printed_digest(&b, "manifest")
    );
}

#[test]
fn rebuilding_into_the_same_folder_leaves_no_blob_of_the_old_module() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("image");
    let old = module_file(dir.path(), "old", "v1");
    let new = module_file(dir.path(), "new", "v2");
    tool(&["build", old.to_str().unwrap(), layout.to_str().unwrap()]);
    let fresh = dir.path().join("fresh");
    tool(&["build", new.to_str().unwrap(), fresh.to_str().unwrap()]);

    tool(&["build", new.to_str().unwrap(), layout.to_str().unwrap()]);

    assert_eq!(files(&layout), files(&fresh));
}

#[test]
fn refuses_a_file_that_is_not_a_wasm_module() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("filter.wasm");
    fs::write(&not_wasm, "#!/bin/sh\n").unwrap();

    let error = tool_fails(&[
        "build",
        not_wasm.to_str().unwrap(),
        dir.path().join("out").to_str().unwrap(),
    ]);

    assert!(
        error.contains("filter.wasm: not a WebAssembly module"),
        "{error}"
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn refuses_to_overwrite_a_folder_that_is_not_an_image_layout() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = module_file(dir.path(), "filter", "v1");
    fs::write(dir.path().join("notes.txt"), "keep me").unwrap();

    let error = tool_fails(&[
        "build",
        wasm.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);

    assert!(
        error.contains("holds no oci-layout file; refusing to overwrite it"),
        "{error}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn refuses_an_unknown_format_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = module_file(dir.path(), "filter", "v1");

    let error = tool_fails(&["build", wasm.to_str().unwrap(), "out", "--format", "docker"]);

    assert!(
        error.contains(r#"--format: expected "compat" or "oci", got "docker""#),
        "{error}"
    );
}

#[test]
fn push_refuses_a_layout_whose_blob_was_altered_naming_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = module_file(dir.path(), "filter", "v1");
    let layout = dir.path().join("image");
    tool(&["build", wasm.to_str().unwrap(), layout.to_str().unwrap()]);
    let (_, manifest) = manifest(&layout);
    let layer_hex = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    fs::write(layout.join("blobs/sha256").join(layer_hex), "tampered").unwrap();

    // Port 9 on loopback is never a registry; the tool must stop before it connects.
    let error = tool_fails(&[
        "push",
        layout.to_str().unwrap(),
        "127.0.0.1:9/meshward/filter:1",
    ]);

    assert!(error.contains(layer_hex), "{error}");
    assert!(
        error.contains("content does not match its digest"),
        "{error}"
    );
}
