//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): writing an
//! image to a folder, and reading one back, checking every digest, to push it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};

use crate::blob::{sha256_hex, Blob};
use crate::error::{Error, Result};
use crate::image::{descriptor, Image};

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_VERSION: &str = "1.0.0";

/// Writes `image` as an OCI image layout in `dir`. A folder that already holds a layout is
/// replaced, so no blob of an earlier build stays behind; any other non-empty folder is
/// refused.
pub fn write(dir: &Path, image: &Image) -> Result<()> {
    prepare(dir)?;
    let blobs_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs_dir).map_err(Error::io(&blobs_dir))?;
    for blob in image.blobs.iter().chain([&image.manifest]) {
        let path = blobs_dir.join(&blob.hex);
        fs::write(&path, &blob.bytes).map_err(Error::io(path))?;
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor(
            MediaType::from(image.manifest_media_type.as_str()),
            &image.manifest,
            None,
        )?])
        .build()
        .map_err(|source| Error::Spec {
            what: "index",
            source,
        })?;
    write_json(&dir.join(INDEX_FILE), "index.json", &index)?;
    write_json(
        &dir.join(LAYOUT_FILE),
        "oci-layout",
        &serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }),
    )
}

fn prepare(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return fs::create_dir_all(dir).map_err(Error::io(dir));
    }
    if !dir.is_dir() {
        return Err(Error::Layout {
            path: dir.to_path_buf(),
            reason: "exists and is not a folder".to_string(),
        });
    }
    let not_empty = fs::read_dir(dir).map_err(Error::io(dir))?.next().is_some();
    if not_empty && !dir.join(LAYOUT_FILE).is_file() {
        return Err(Error::Layout {
            path: dir.to_path_buf(),
            reason: "exists, is not empty and holds no oci-layout file; refusing to overwrite it"
                .to_string(),
        });
    }
    for part in ["blobs", INDEX_FILE, LAYOUT_FILE] {
        let path = dir.join(part);
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else if path.exists() {
            fs::remove_file(&path)
        } else {
            Ok(())
        };
        removed.map_err(Error::io(path))?;
    }
    Ok(())
}

fn write_json(path: &Path, what: &'static str, value: &impl serde::Serialize) -> Result<()> {
    let bytes = crate::blob::canonical_json(what, value)?;
    fs::write(path, bytes).map_err(Error::io(path))
}

/// Reads the single image in the layout at `dir`, checking that every blob it names is
/// present and matches its digest and size.
pub fn read(dir: &Path) -> Result<Image> {
    let layout_path = dir.join(LAYOUT_FILE);
    let layout: serde_json::Value = read_json(&layout_path)?;
    if layout.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some(LAYOUT_VERSION) {
        return Err(layout_error(
            &layout_path,
            format!("expected imageLayoutVersion \"{LAYOUT_VERSION}\""),
        ));
    }
    let index_path = dir.join(INDEX_FILE);
    let index: ImageIndex = read_json(&index_path)?;
    let [manifest_descriptor] = index.manifests().as_slice() else {
        return Err(layout_error(
            &index_path,
            format!(
                "expected exactly one manifest, found {}",
                index.manifests().len()
            ),
        ));
    };
    let manifest_media_type = manifest_descriptor.media_type().to_string();
    let manifest = read_blob(dir, manifest_descriptor.digest().as_ref(), None)?;
    let manifest_path = blob_path(dir, &manifest.hex);
    let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|error| layout_error(&manifest_path, format!("not an image manifest: {error}")))?;

    let mut seen = HashSet::new();
    let mut blobs = Vec::new();
    for descriptor in std::iter::once(parsed.config()).chain(parsed.layers()) {
        let digest = descriptor.digest().to_string();
        if seen.insert(digest.clone()) {
            blobs.push(read_blob(dir, &digest, Some(descriptor.size()))?);
        }
    }
    Ok(Image {
        manifest,
        manifest_media_type,
        blobs,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(Error::io(path))?;
    serde_json::from_slice(&bytes).map_err(|error| layout_error(path, error.to_string()))
}

fn read_blob(dir: &Path, digest: &str, size: Option<u64>) -> Result<Blob> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(layout_error(
            &dir.join(INDEX_FILE),
            format!("digest {digest:?} is not sha256"),
        ));
    };
    let path = blob_path(dir, hex);
    let bytes = fs::read(&path).map_err(Error::io(&path))?;
    if sha256_hex(&bytes) != hex {
        return Err(layout_error(
            &path,
            "content does not match its digest".to_string(),
        ));
    }
    if let Some(size) = size.filter(|&size| size != bytes.len() as u64) {
        return Err(layout_error(
            &path,
            format!("is {} bytes, the manifest says {size}", bytes.len()),
        ));
    }
    Ok(Blob::new(bytes))
}

fn blob_path(dir: &Path, hex: &str) -> PathBuf {
    dir.join("blobs").join("sha256").join(hex)
}

fn layout_error(path: &Path, reason: String) -> Error {
    Error::Layout {
        path: path.to_path_buf(),
        reason,
    }
}
