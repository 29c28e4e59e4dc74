//! The process-wide cache of compiled modules: a second host for the same module reuses
//! the compilation instead of compiling again.

use meshward_harness::{wasm_path, Host};

/// A minimal Proxy-Wasm module; the comment makes its bytes unique to this test, so no
/// other test in the binary compiles it first.
const MODULE: &str = r#"(module
  ;; module_cache.rs: a_second_host_for_the_same_bytes_reuses_the_compiled_module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))"#;

#[test]
fn a_second_host_for_the_same_bytes_reuses_the_compiled_module() {
    let first = Host::from_bytes(MODULE).build().unwrap();
    let second = Host::from_bytes(MODULE).build().unwrap();
    assert!(!first.module_was_cached(), "the first host compiles");
    assert!(second.module_was_cached(), "the second host reuses it");
}

#[test]
fn a_second_host_for_the_same_file_reuses_the_compiled_module_and_a_changed_file_compiles_again() {
    let dir = std::env::temp_dir().join(format!("meshward-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("noop-copy.wasm");
    std::fs::copy(wasm_path("fixture-noop"), &path).unwrap();
    let first = Host::builder(&path).build().unwrap();
    let second = Host::builder(&path).build().unwrap();
    assert!(!first.module_was_cached());
    assert!(second.module_was_cached());

    // Same path, different content (size): a new compilation.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0, 5, 4, b'p', b'a', b'd', b'!']); // a custom section "pad!"
    std::fs::write(&path, bytes).unwrap();
    let changed = Host::builder(&path).build().unwrap();
    assert!(!changed.module_was_cached());
    std::fs::remove_dir_all(&dir).unwrap();
}
