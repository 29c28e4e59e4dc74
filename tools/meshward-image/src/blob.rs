//! Content-addressed blobs: bytes with their `sha256:` digest, and canonical JSON so the same
//! document always has the same digest.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Bytes as stored under `blobs/sha256/<hex>` and in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The content.
    pub bytes: Vec<u8>,
    /// The lowercase hex SHA-256 of `bytes`, without the `sha256:` prefix.
    pub hex: String,
}

impl Blob {
    /// Hashes `bytes` into a blob.
    pub fn new(bytes: Vec<u8>) -> Blob {
        let hex = sha256_hex(&bytes);
        Blob { bytes, hex }
    }

    /// Serialises `value` as canonical JSON (keys sorted, no whitespace) into a blob.
    pub fn json(what: &'static str, value: &impl Serialize) -> Result<Blob> {
        Ok(Blob::new(canonical_json(what, value)?))
    }

    /// The OCI digest string, `sha256:<hex>`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.hex)
    }

    /// The size in bytes, as a descriptor states it.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `value` as compact JSON with every object's keys sorted. The OCI types keep annotations
/// in hash maps, whose order changes from run to run; sorting makes the bytes, and so the
/// digests, depend only on the content.
pub fn canonical_json(what: &'static str, value: &impl Serialize) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).map_err(|source| Error::Json { what, source })?;
    serde_json::to_vec(&sorted(value)).map_err(|source| Error::Json { what, source })
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (key, value) in entries {
                out.insert(key, sorted(value));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_digest_of_empty_bytes_is_the_well_known_one() {
        assert_eq!(
            Blob::new(Vec::new()).digest(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let mut inner = HashMap::new();
        for key in ["zeta", "alpha", "mid", "beta", "omega"] {
            inner.insert(key, 1);
        }
        let value = serde_json::json!({"b": [inner], "a": 1});
        let bytes = canonical_json("test", &value).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":1,"b":[{"alpha":1,"beta":1,"mid":1,"omega":1,"zeta":1}]}"#
        );
    }
}
