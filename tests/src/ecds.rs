//! Filter configs delivered through ECDS from files, for hot-reload tests: a temporary
//! directory Envoy watches, and writes into it that Envoy sees as one atomic update.
//!
//! `envoy-config/ecds-hot-reload.yaml` reads its filter's config from
//! `envoy-config/ecds/<name>.yaml` (a `DiscoveryResponse` of `TypedExtensionConfig`s). A
//! test must not change the repository's copy, so it makes an [`EcdsDir`], copies the
//! resource in, and points the config at it with [`EnvoyConfig::watch_ecds_in`]:
//!
//! ```no_run
//! use meshward_tests::ecds::EcdsDir;
//! use meshward_tests::{Envoy, EnvoyConfig};
//! # async fn example() -> Result<(), meshward_tests::RigError> {
//! let ecds = EcdsDir::new()?;
//! let mut resource = ecds.copy_from_repo("security-headers.yaml")?;
//! let config = EnvoyConfig::load("ecds-hot-reload.yaml")?.watch_ecds_in(&ecds);
//! let envoy = Envoy::start(config).await?;
//! resource["version_info"] = "2".into();
//! ecds.write("security-headers.yaml", &resource)?; // Envoy applies it to new requests
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use crate::config::absolute_wasm_paths;
use crate::{repo_root, EnvoyConfig, RigError};

/// A temporary directory of ECDS resource files, removed when dropped.
pub struct EcdsDir {
    dir: TempDir,
}

impl EcdsDir {
    /// Makes an empty directory.
    pub fn new() -> Result<Self, RigError> {
        let dir = TempDir::with_prefix("meshward-ecds-")
            .map_err(RigError::io("making a directory for ECDS files"))?;
        Ok(EcdsDir { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Reads `envoy-config/ecds/<file>`, writes it here, and returns it (as JSON) for the
    /// test to change and [`write`](Self::write) again.
    pub fn copy_from_repo(&self, file: &str) -> Result<Value, RigError> {
        let path = repo_root().join("envoy-config/ecds").join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(RigError::io(format!("reading {}", path.display())))?;
        let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| RigError::Config {
            source: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.write(file, &value)?;
        Ok(value)
    }

    /// Replaces `file` with `resource` the way Envoy needs it: written in full to a hidden
    /// file in the same directory, then renamed over the old one, so that Envoy, which
    /// reloads when an entry is moved into the directory, never reads half a file. `out/`
    /// paths in it are made absolute, as for the bootstrap.
    pub fn write(&self, file: &str, resource: &Value) -> Result<(), RigError> {
        let mut resource = resource.clone();
        absolute_wasm_paths(&mut resource, &repo_root())?;
        let text = serde_json::to_string_pretty(&resource).map_err(|e| RigError::Config {
            source: file.to_owned(),
            message: e.to_string(),
        })?;
        let staging = self.path().join(format!(".{file}.new"));
        std::fs::write(&staging, text)
            .map_err(RigError::io(format!("writing {}", staging.display())))?;
        let target = self.path().join(file);
        std::fs::rename(&staging, &target).map_err(RigError::io(format!(
            "renaming {} to {}",
            staging.display(),
            target.display()
        )))
    }
}

impl EnvoyConfig {
    /// Points every file-based config source (`path_config_source`) at the file of the same
    /// name in `dir`, and its `watched_directory` at `dir`.
    pub fn watch_ecds_in(mut self, dir: &EcdsDir) -> Self {
        redirect_path_sources(self.value_mut(), dir.path());
        self
    }
}

fn redirect_path_sources(value: &mut Value, dir: &Path) {
    match value {
        Value::Object(object) => {
            if let Some(source) = object.get_mut("path_config_source") {
                let file = source
                    .get("path")
                    .and_then(Value::as_str)
                    .and_then(|p| Path::new(p).file_name())
                    .map(|name| dir.join(name));
                if let (Some(file), Some(source)) = (file, source.as_object_mut()) {
                    source.insert("path".into(), path_value(file));
                    source.insert(
                        "watched_directory".into(),
                        serde_json::json!({ "path": path_value(dir.to_path_buf()) }),
                    );
                }
            }
            object
                .values_mut()
                .for_each(|v| redirect_path_sources(v, dir));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redirect_path_sources(v, dir)),
        _ => {}
    }
}

fn path_value(path: PathBuf) -> Value {
    Value::String(path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn points_file_sources_at_the_directory_and_leaves_the_rest() {
        let mut value = json!({"http_filters": [
            {"name": "a", "config_discovery": {"config_source": {"path_config_source": {
                "path": "envoy-config/ecds/a.yaml",
                "watched_directory": {"path": "envoy-config/ecds"},
            }}}},
            {"name": "b", "typed_config": {"path": "keep/me.yaml"}},
        ]});
        redirect_path_sources(&mut value, Path::new("/tmp/x"));
        let source = &value["http_filters"][0]["config_discovery"]["config_source"];
        assert_eq!(source["path_config_source"]["path"], json!("/tmp/x/a.yaml"));
        assert_eq!(
            source["path_config_source"]["watched_directory"]["path"],
            json!("/tmp/x")
        );
        assert_eq!(
            value["http_filters"][1]["typed_config"]["path"],
            json!("keep/me.yaml")
        );
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_staging_file() {
        let dir = EcdsDir::new().unwrap();
        dir.write("f.yaml", &json!({"version_info": "1"})).unwrap();
        dir.write("f.yaml", &json!({"version_info": "2"})).unwrap();
        let text = std::fs::read_to_string(dir.path().join("f.yaml")).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["version_info"], json!("2"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.yaml")]);
    }
}
