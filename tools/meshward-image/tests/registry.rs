//! `meshward-image push` against a real registry (Debian's `docker-registry`) on 127.0.0.1,
//! and the image pulled back the way Istio's image fetcher does: the manifest, its last layer
//! (or the Wasm layer of the oci variant), then `plugin.wasm`, checked by sha256.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{module, module_file, printed_digest, sha256_hex, tool, untar_gzip};
use serde_json::Value;

/// What go-containerregistry, which Istio uses, accepts when it fetches a manifest.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A `docker-registry` serving from a temporary folder on a free loopback port; killed on drop.
struct Registry {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start docker-registry ({error}); `make setup` installs Debian's docker-registry")
            });
        let mut registry = Registry {
            child,
            address,
            dir,
        };
        registry.wait_until_ready();
        registry
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://{}/v2/", self.address);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            if ureq::get(&url).call().is_ok_and(|r| r.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry not ready on {url} after 20s:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// GETs `path` under `/v2/`, which must answer 200; returns the Docker-Content-Digest and
    /// Content-Type headers and the body.
    fn get(&self, path: &str, accept: &str) -> (Option<String>, Option<String>, Vec<u8>) {
        let url = format!("http://{}/v2/{path}", self.address);
        let response = ureq::get(&url)
            .header("accept", accept)
            .call()
            .unwrap_or_else(|error| panic!("GET {url}: {error}\n{}", self.log()));
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let digest = header("docker-content-digest");
        let content_type = header("content-type");
        let body = response
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap();
        (digest, content_type, body)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The registry may already have exited; either way it must not outlive the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pulls `repository:tag` as Istio does, returning the manifest digest the registry reports
/// and the module extracted from the image.
fn pull_like_istio(registry: &Registry, repository: &str, tag: &str) -> (String, Vec<u8>) {
    let (header_digest, content_type, manifest_bytes) =
        registry.get(&format!("{repository}/manifests/{tag}"), MANIFEST_ACCEPT);
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest_bytes));
    assert_eq!(header_digest.as_deref(), Some(manifest_digest.as_str()));
    assert_eq!(
        content_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let fetch = |layer: &Value| {
        let digest = layer["digest"].as_str().unwrap();
        let (_, _, blob) = registry.get(&format!("{repository}/blobs/{digest}"), "*/*");
        assert_eq!(
            format!("sha256:{}", sha256_hex(&blob)),
            digest,
            "blob digest"
        );
        blob
    };
    let last = layers.last().unwrap();
    let wasm = if last["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip" {
        // compat: the last layer, gunzipped and untarred; the entry whose base name is plugin.wasm.
        untar_gzip(&fetch(last))
            .into_iter()
            .find(|(path, _)| Path::new(path).file_name().unwrap() == "plugin.wasm")
            .map(|(_, bytes)| bytes)
            .expect("plugin.wasm in the layer")
    } else {
        // oci: exactly two layers, one of them the raw module.
        assert_eq!(layers.len(), 2);
        let layer = layers
            .iter()
            .find(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
            .expect("a Wasm content layer");
        fetch(layer)
    };
    (manifest_digest, wasm)
}

fn build_and_push(
    dir: &Path,
    registry: &Registry,
    name: &str,
    format: &str,
    tag: &str,
) -> (String, String, String) {
    let wasm = module_file(dir, name, "pushed");
    let layout = dir.join(format!("{name}-{format}"));
    let built = tool(&[
        "build",
        wasm.to_str().unwrap(),
        layout.to_str().unwrap(),
        "--format",
        format,
    ]);
    let reference = format!("{}/meshward/{name}:{tag}", registry.address);
    let pushed = tool(&["push", layout.to_str().unwrap(), &reference]);
    (built, pushed, reference)
}

#[test]
fn a_pushed_compat_image_pulls_back_with_the_same_wasm_and_the_printed_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();

    let (built, pushed, reference) =
        build_and_push(dir.path(), &registry, "security-headers", "compat", "0.1.0");

    let (manifest_digest, wasm) = pull_like_istio(&registry, "meshward/security-headers", "0.1.0");
    assert_eq!(sha256_hex(&wasm), sha256_hex(&module("pushed")));
    assert_eq!(sha256_hex(&wasm), printed_digest(&built, "wasm"));
    let pinned = printed_digest(&pushed, "manifest");
    assert_eq!(manifest_digest, format!("sha256:{pinned}"));
    assert_eq!(
        pinned,
        printed_digest(&built, "manifest"),
        "push pins what build printed"
    );
    assert!(
        pushed.contains(&format!("url: oci://{reference}  sha256: {pinned}")),
        "{pushed}"
    );
}

#[test]
fn a_pushed_oci_image_pulls_back_with_the_same_wasm_and_the_printed_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();

    let (built, pushed, _) = build_and_push(dir.path(), &registry, "jwt-auth", "oci", "0.1.0");

    let (manifest_digest, wasm) = pull_like_istio(&registry, "meshward/jwt-auth", "0.1.0");
    assert_eq!(wasm, module("pushed"));
    assert_eq!(
        manifest_digest,
        format!("sha256:{}", printed_digest(&pushed, "manifest"))
    );
    assert_eq!(
        printed_digest(&pushed, "manifest"),
        printed_digest(&built, "manifest")
    );
}

#[test]
fn pushing_again_under_a_new_tag_uploads_no_blob_and_pins_the_same_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, first, _) = build_and_push(dir.path(), &registry, "rate-limit", "compat", "0.1.0");
    let layout = dir.path().join("rate-limit-compat");

    let again = tool(&[
        "push",
        layout.to_str().unwrap(),
        &format!("{}/meshward/rate-limit:latest", registry.address),
    ]);

    assert!(
        again.contains("(0 blobs uploaded, 2 already there)"),
        "{again}"
    );
    assert_eq!(
        printed_digest(&again, "manifest"),
        printed_digest(&first, "manifest")
    );
    let (digest, _) = pull_like_istio(&registry, "meshward/rate-limit", "latest");
    assert_eq!(
        digest,
        format!("sha256:{}", printed_digest(&first, "manifest"))
    );
}
