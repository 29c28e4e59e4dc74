//! The one wasmtime engine and the process-wide cache of compiled modules, so a test
//! suite compiles each filter once however many hosts it builds.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use wasmtime::{Config, Engine, Module};

use crate::error::HarnessError;

/// The shared engine: Cranelift, fuel metering on.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(true);
        // Fuel metering is the only non-default setting; a config wasmtime refuses is a
        // bug in this file, so failing loudly here is right.
        Engine::new(&config).expect("wasmtime accepts a default config with fuel metering")
    })
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum ModuleKey {
    File {
        path: PathBuf,
        modified: Option<SystemTime>,
        len: u64,
    },
    Bytes {
        hash: u64,
        len: usize,
    },
}

type Slot = Arc<OnceLock<Result<Module, String>>>;

fn slot(key: ModuleKey) -> Slot {
    static CACHE: OnceLock<Mutex<HashMap<ModuleKey, Slot>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // A poisoned lock only means another test panicked while inserting; the map is
    // still usable.
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key).or_default().clone()
}

/// Compiles a module file, or returns the cached compilation of the same file (same
/// path, modification time and size); the flag says whether it came from the cache.
pub(crate) fn load_file(path: &Path) -> Result<(Module, bool), HarnessError> {
    let meta = std::fs::metadata(path).map_err(|_| HarnessError::WasmMissing {
        path: path.to_path_buf(),
    })?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let key = ModuleKey::File {
        path: canonical,
        modified: meta.modified().ok(),
        len: meta.len(),
    };
    let slot = slot(key);
    let mut compiled_here = false;
    let compiled = slot.get_or_init(|| {
        compiled_here = true;
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        Module::new(engine(), bytes).map_err(|e| format!("{e:#}"))
    });
    let module = compiled.clone().map_err(|message| HarnessError::Compile {
        what: path.display().to_string(),
        message,
    })?;
    Ok((module, !compiled_here))
}

/// Compiles a module from bytes (binary or WAT text), cached by content; the flag says
/// whether it came from the cache.
pub(crate) fn load_bytes(bytes: &[u8]) -> Result<(Module, bool), HarnessError> {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let key = ModuleKey::Bytes {
        hash: hasher.finish(),
        len: bytes.len(),
    };
    let slot = slot(key);
    let mut compiled_here = false;
    let compiled = slot.get_or_init(|| {
        compiled_here = true;
        Module::new(engine(), bytes).map_err(|e| format!("{e:#}"))
    });
    let module = compiled.clone().map_err(|message| HarnessError::Compile {
        what: "<bytes>".to_string(),
        message,
    })?;
    Ok((module, !compiled_here))
}
