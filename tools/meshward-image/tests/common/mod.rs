//! What the image tool's tests share: a small Wasm module, running the `meshward-image`
//! binary, and reading the digests it prints.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

/// A valid Wasm module: the header and one custom section whose payload is `payload`, so
/// tests can make modules that differ.
pub fn module(payload: &str) -> Vec<u8> {
    let name = b"meshward-test";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    assert!(section.len() < 128, "one-byte LEB128 section size");
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.push(0);
    bytes.push(section.len() as u8);
    bytes.extend_from_slice(&section);
    bytes
}

/// Writes `module(payload)` to `dir/<name>.wasm` and returns its path.
pub fn module_file(dir: &Path, name: &str, payload: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, module(payload)).unwrap();
    path
}

/// Runs `meshward-image` with `args`, which must succeed, and returns what it printed.
pub fn tool(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_meshward-image"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "meshward-image {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `meshward-image` with `args`, which must fail, and returns its error output.
pub fn tool_fails(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_meshward-image"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "meshward-image {args:?} succeeded"
    );
    String::from_utf8(output.stderr).unwrap()
}

/// The hex digest on the line `<label> sha256:<hex>` of the tool's output.
pub fn printed_digest(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(label)?.trim_start();
            rest.strip_prefix("sha256:").map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no `{label} sha256:` line in {output:?}"))
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Every entry of a `tar+gzip` archive, as `(path, bytes)`.
pub fn untar_gzip(gzip: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gzip));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.path().unwrap().display().to_string(), bytes)
        })
        .collect()
}
