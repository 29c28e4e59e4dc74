//! The manifests a kustomization in `k8s/` renders, as `kubectl kustomize` gives them to
//! `kubectl apply`.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

use crate::{repo_root, RigError};

/// The kustomizations users apply: the base and the example overlay, relative to `k8s/`.
pub const KUSTOMIZATIONS: [&str; 2] = ["base", "overlays/example"];

/// Runs `kubectl kustomize k8s/<dir>` and returns each manifest it renders.
pub fn render(dir: &str) -> Result<Vec<Value>, RigError> {
    let path = repo_root().join("k8s").join(dir);
    let command = format!("kubectl kustomize {}", path.display());
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| RigError::Tool {
            command: command.clone(),
            message: format!(
                "{error}: kubectl (1.27 or later, for kustomize v5) renders k8s/; install it"
            ),
        })?;
    if !output.status.success() {
        return Err(RigError::Tool {
            command,
            message: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    parse_documents(&path, &String::from_utf8_lossy(&output.stdout))
}

/// The documents of a multi-document YAML stream, empty ones left out.
pub fn parse_documents(source: &Path, yaml: &str) -> Result<Vec<Value>, RigError> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = Value::deserialize(document).map_err(|e| RigError::Config {
            source: source.display().to_string(),
            message: e.to_string(),
        })?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// The manifests of `kind` among `manifests`.
pub fn of_kind<'a>(manifests: &'a [Value], kind: &str) -> Vec<&'a Value> {
    manifests.iter().filter(|m| m["kind"] == kind).collect()
}

/// `<namespace>/<name>` of a manifest, for messages.
pub fn display_name(manifest: &Value) -> String {
    let text = |field: &str| {
        manifest["metadata"][field]
            .as_str()
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "{} {}/{}",
        manifest["kind"].as_str().unwrap_or("?"),
        text("namespace"),
        text("name")
    )
}
