//! Manifests checked against a CustomResourceDefinition's `openAPIV3Schema` by
//! `k8s/check/crd.mjs` (ajv), as the API server does with strict field validation: types,
//! enums, patterns, lengths, required and unknown fields. The CRD's CEL rules are each
//! kind's own module's part ([`crate::traffic_extension`], [`crate::envoy_gateway`]).
//!
//! The CRDs are not kept in this repository: the tests read them from
//! `../shared/reference/` beside it ([`reference_crd`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

use crate::{repo_root, RigError};

/// `../shared/reference/<file>` beside the repository (or in `$MESHWARD_REFERENCE_DIR`), if
/// it is there.
pub fn reference_crd(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MESHWARD_REFERENCE_DIR")
        .map_or_else(|| repo_root().join("../shared/reference"), PathBuf::from);
    let path = dir.join(file);
    path.exists().then_some(path)
}

/// Every manifest's problems against the CRD in `crd` (YAML), in order; an empty list
/// means the API server would take it (CEL rules aside).
pub fn schema_problems(crd: &Path, manifests: &[Value]) -> Result<Vec<Vec<String>>, RigError> {
    let command = format!("node k8s/check/crd.mjs {}", crd.display());
    let tool = |message: String| RigError::Tool {
        command: command.clone(),
        message,
    };
    let text = std::fs::read_to_string(crd).map_err(|e| tool(format!("reading the CRD: {e}")))?;
    let definition = Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text))
        .map_err(|e| tool(format!("the CRD is not YAML: {e}")))?;
    let mut file = tempfile::NamedTempFile::new().map_err(|e| tool(e.to_string()))?;
    file.write_all(definition.to_string().as_bytes())
        .map_err(|e| tool(e.to_string()))?;

    let dir = repo_root().join("k8s/check");
    if !dir.join("node_modules/ajv").exists() {
        return Err(tool(
            "k8s/check/node_modules is missing: run `make setup` (it runs npm ci there)".into(),
        ));
    }
    let mut child = Command::new("node")
        .arg(dir.join("crd.mjs"))
        .arg(file.path())
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tool(format!(
                "{e}: Node.js runs the schema validator; install it"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(Value::Array(manifests.to_vec()).to_string().as_bytes())
            .map_err(|e| tool(format!("writing the manifests: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| tool(format!("waiting for it: {e}")))?;
    if !output.status.success() {
        return Err(tool(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    let results: Vec<Vec<String>> = serde_json::from_slice(&output.stdout)
        .map_err(|e| tool(format!("unreadable answer: {e}")))?;
    if results.len() != manifests.len() {
        return Err(tool(format!(
            "answered for {} manifests, sent {}",
            results.len(),
            manifests.len()
        )));
    }
    Ok(results)
}
