//! Envoy's shared data, process-wide: what every worker's filters read and write with
//! compare-and-swap in the native build (`native::sys` serves `proxy_*_shared_data` from it), with the semantics Envoy gives Wasm modules
//! (`shared_data.rs` relies on them): a read returns the value and its version; a write with
//! a non-zero version fails if the key was written since; a write to an absent key always
//! succeeds; every write takes a fresh version from one process-wide counter.
//!
//! Plain Rust, so its unit tests run in every build's tests; only the `native` feature puts
//! it in a module. One module (`.so`) has one store: Envoy loads a file once per process, and every
//! configuration of it shares the store, as every plugin of one Wasm `vm_id` shares its.

use std::collections::HashMap;
#[cfg(any(test, feature = "native"))]
use std::sync::{Mutex, OnceLock};

/// A stored value and the version its last write got.
struct Entry {
    bytes: Vec<u8>,
    version: u32,
}

/// Keys, their values and versions, with Envoy's rules; the process-wide store is one of
/// these behind a lock, and `shared_data::MemoryStore` (for tests) is one of its own.
#[derive(Default)]
pub(crate) struct Versioned {
    entries: HashMap<String, Entry>,
    /// The last version handed out.
    last_version: u32,
}

impl Versioned {
    /// The value of `key` and its version, `None` when absent.
    pub(crate) fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.get(key).map(|e| (e.bytes.clone(), e.version))
    }

    /// Writes `key` if its version is still `cas` (0: unconditionally; an absent key:
    /// always).
    pub(crate) fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        if let Some(entry) = self.entries.get(key) {
            if cas != 0 && cas != entry.version {
                return Err(WriteError::CasMismatch);
            }
        }
        // Version 0 means "no version" to a writer: skip it when the counter wraps.
        let version = self.last_version.wrapping_add(1).max(1);
        self.last_version = version;
        self.entries.insert(
            key.to_owned(),
            Entry {
                bytes: value.to_vec(),
                version,
            },
        );
        Ok(())
    }

    /// The version the last write got: how many writes there were, short of a wrap.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn last_version(&self) -> u32 {
        self.last_version
    }

    /// Every key with its value.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn values(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries
            .iter()
            .map(|(k, e)| (k.as_str(), e.bytes.as_slice()))
    }
}

#[cfg(any(test, feature = "native"))]
fn store() -> &'static Mutex<Versioned> {
    static STORE: OnceLock<Mutex<Versioned>> = OnceLock::new();
    STORE.get_or_init(Mutex::default)
}

/// Why a write did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The key was written since the version given.
    CasMismatch,
}

/// The value of `key` and its version, `None` when absent.
#[cfg(any(test, feature = "native"))]
pub fn get(key: &str) -> Option<(Vec<u8>, u32)> {
    // A poisoned lock means a panic while holding it; the map itself is still whole (every
    // write is one insert), so keep serving it.
    store().lock().unwrap_or_else(|p| p.into_inner()).get(key)
}

/// Writes `key` if its version is still `cas` (0: unconditionally; an absent key: always).
#[cfg(any(test, feature = "native"))]
pub fn set(key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
    store()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .set(key, value, cas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_with_a_stale_version_loses_and_one_to_an_absent_key_wins() {
        assert_eq!(get("store-test-a"), None);
        set("store-test-a", b"1", 12345).unwrap();
        let (bytes, v1) = get("store-test-a").unwrap();
        assert_eq!(bytes, b"1");
        set("store-test-a", b"2", v1).unwrap();
        assert_eq!(set("store-test-a", b"3", v1), Err(WriteError::CasMismatch));
        let (bytes, v2) = get("store-test-a").unwrap();
        assert_eq!(bytes, b"2");
        assert_ne!(v1, v2);
        // A version another key's write got is one this key cannot hold.
        set("store-test-b", b"", 0).unwrap();
        let (_, other) = get("store-test-b").unwrap();
        assert_eq!(
            set("store-test-a", b"4", other),
            Err(WriteError::CasMismatch)
        );
        set("store-test-a", b"5", 0).unwrap();
        assert_eq!(get("store-test-a").unwrap().0, b"5");
    }
}
