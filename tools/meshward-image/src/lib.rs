//! meshward-image: packages a filter's `.wasm` as an OCI image that Istio's WasmPlugin pulls,
//! written reproducibly as an OCI image layout on disk, and pushes that layout to a registry.

pub mod blob;
pub mod error;
pub mod image;
pub mod layer;
pub mod layout;
pub mod reference;
pub mod registry;

use std::path::Path;

pub use error::{Error, Result};
pub use image::Format;

/// The digests a build reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Hex SHA-256 of the manifest: what a WasmPlugin with an `oci://` URL pins in `sha256`.
    pub manifest_hex: String,
    /// Hex SHA-256 of the module itself (what an `http://` or `file://` WasmPlugin would pin).
    pub wasm_hex: String,
}

/// Reads the module at `wasm_path` and writes its image in `format` as a layout in `out_dir`.
pub fn build_layout(
    wasm_path: &Path,
    out_dir: &Path,
    format: Format,
    root_id: &str,
) -> Result<Built> {
    let wasm = std::fs::read(wasm_path).map_err(Error::io(wasm_path))?;
    if !wasm.starts_with(b"\0asm") {
        return Err(Error::NotWasm {
            path: wasm_path.to_path_buf(),
        });
    }
    let image = image::build(&wasm, format, root_id)?;
    layout::write(out_dir, &image)?;
    Ok(Built {
        manifest_hex: image.manifest.hex.clone(),
        wasm_hex: blob::sha256_hex(&wasm),
    })
}
