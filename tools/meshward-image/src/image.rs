//! An image in memory: the manifest and the blobs it names, for a module in Istio's "compat"
//! layout (one `tar+gzip` layer holding `plugin.wasm`) or its "oci" layout (a runtime-config
//! layer and a raw Wasm layer).

use std::collections::HashMap;
use std::str::FromStr;

use oci_spec::image::{
    Arch, Descriptor, DescriptorBuilder, Digest, ImageConfigurationBuilder, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder,
};

use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::layer::{compat_layer, PLUGIN_FILE};

/// The manifest media type this tool writes and a registry is told on push.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The compat layer's media type, the one Istio's compat extraction accepts.
pub const COMPAT_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The oci layout's Wasm layer: the module's bytes, uncompressed.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The oci layout's runtime config, both the manifest's config and its first layer.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// The manifest annotation the compat spec asks for, with the value `compat`.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Which of the two layouts Istio reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One `application/vnd.oci.image.layer.v1.tar+gzip` layer holding `plugin.wasm`; any
    /// registry and tool (docker, crane, skopeo) handles it.
    Compat,
    /// Two layers, a runtime config and `application/vnd.module.wasm.content.layer.v1+wasm`;
    /// the registry must accept custom media types.
    Oci,
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(text: &str) -> Result<Format> {
        match text {
            "compat" => Ok(Format::Compat),
            "oci" => Ok(Format::Oci),
            other => Err(Error::Usage(format!(
                "--format: expected \"compat\" or \"oci\", got {other:?}"
            ))),
        }
    }
}

/// A manifest and every blob it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The manifest's bytes; their digest is the image's digest, which an `oci://`
    /// WasmPlugin pins in `sha256`.
    pub manifest: Blob,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// The config and layer blobs, each once, in the order the manifest names them.
    pub blobs: Vec<Blob>,
}

/// Builds the image for `wasm` in `format`. `root_id` goes in the oci layout's runtime config
/// (the compat layout has no place for it).
pub fn build(wasm: &[u8], format: Format, root_id: &str) -> Result<Image> {
    match format {
        Format::Compat => build_compat(wasm),
        Format::Oci => build_oci(wasm, root_id),
    }
}

fn build_compat(wasm: &[u8]) -> Result<Image> {
    let layer = compat_layer(wasm).map_err(|source| Error::Io {
        path: PLUGIN_FILE.into(),
        source,
    })?;
    let layer_blob = Blob::new(layer.gzip);
    // No `created` time, so that the config, and the manifest that names it, depend only on
    // the module.
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Wasm)
        .os(Os::Other("wasip1".to_string()))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![format!("sha256:{}", layer.diff_id_hex)])
                .build()
                .map_err(spec("image config rootfs"))?,
        )
        .build()
        .map_err(spec("image config"))?;
    let config_blob = Blob::json("image config", &config)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(MediaType::ImageConfig, &config_blob, None)?)
        .layers(vec![descriptor(
            MediaType::ImageLayerGzip,
            &layer_blob,
            None,
        )?])
        .annotations(HashMap::from([(
            VARIANT_ANNOTATION.to_string(),
            "compat".to_string(),
        )]))
        .build()
        .map_err(spec("manifest"))?;
    Ok(Image {
        manifest: Blob::json("manifest", &manifest)?,
        manifest_media_type: MANIFEST_MEDIA_TYPE.to_string(),
        blobs: vec![config_blob, layer_blob],
    })
}

fn build_oci(wasm: &[u8], root_id: &str) -> Result<Image> {
    let runtime_config = Blob::json(
        "runtime config",
        &serde_json::json!({
            "type": "envoy_proxy",
            "abiVersions": ["proxy_abi_version_0_2_1"],
            "config": {"rootIds": [root_id]},
        }),
    )?;
    let wasm_blob = Blob::new(wasm.to_vec());
    let config_type = MediaType::Other(WASM_CONFIG_MEDIA_TYPE.to_string());
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(config_type.clone(), &runtime_config, None)?)
        .layers(vec![
            descriptor(config_type, &runtime_config, Some("runtime-config.json"))?,
            descriptor(
                MediaType::Other(WASM_LAYER_MEDIA_TYPE.to_string()),
                &wasm_blob,
                Some(PLUGIN_FILE),
            )?,
        ])
        .build()
        .map_err(spec("manifest"))?;
    Ok(Image {
        manifest: Blob::json("manifest", &manifest)?,
        manifest_media_type: MANIFEST_MEDIA_TYPE.to_string(),
        blobs: vec![runtime_config, wasm_blob],
    })
}

/// The descriptor of `blob` with `media_type`, titled `title` if given.
pub fn descriptor(media_type: MediaType, blob: &Blob, title: Option<&str>) -> Result<Descriptor> {
    let digest = Digest::from_str(&blob.digest()).map_err(spec("digest"))?;
    let mut builder = DescriptorBuilder::default()
        .media_type(media_type)
        .size(blob.size())
        .digest(digest);
    if let Some(title) = title {
        builder = builder.annotations(HashMap::from([(
            TITLE_ANNOTATION.to_string(),
            title.to_string(),
        )]));
    }
    builder.build().map_err(spec("descriptor"))
}

fn spec(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> Error {
    move |source| Error::Spec { what, source }
}
