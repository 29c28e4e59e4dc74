//! The compat layer: a gzipped tar holding one file, `plugin.wasm`, written byte-for-byte the
//! same every time (fixed owner, mode and time; no gzip name or time).

use std::io::Write as _;

use flate2::{Compression, GzBuilder};

/// The file name Istio looks for in a compat layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// A layer's compressed bytes and the SHA-256 (hex) of its uncompressed tar, the `diff_id`
/// an image config lists.
pub struct CompatLayer {
    /// The `tar+gzip` bytes stored as the layer blob.
    pub gzip: Vec<u8>,
    /// Hex SHA-256 of the tar before compression.
    pub diff_id_hex: String,
}

/// Packs `wasm` as `plugin.wasm` in a tar, owned by 0:0, mode 0644, time 0, then gzips it
/// without a file name or timestamp.
pub fn compat_layer(wasm: &[u8]) -> std::io::Result<CompatLayer> {
    let tar = plugin_tar(wasm)?;
    let diff_id_hex = crate::blob::sha256_hex(&tar);
    // GzBuilder writes mtime 0, no file name and the "unknown" OS byte unless told otherwise.
    let mut encoder = GzBuilder::new().write(Vec::new(), Compression::best());
    encoder.write_all(&tar)?;
    let gzip = encoder.finish()?;
    Ok(CompatLayer { gzip, diff_id_hex })
}

fn plugin_tar(wasm: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm)?;
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn the_tar_holds_exactly_plugin_wasm_with_the_module_bytes() {
        let wasm = b"\0asm\x01\0\0\0 a module".to_vec();
        let layer = compat_layer(&wasm).unwrap();

        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer.gzip[..]));
        let mut entries = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            entries.push((entry.path().unwrap().display().to_string(), header, bytes));
        }

        assert_eq!(entries.len(), 1);
        let (path, header, bytes) = &entries[0];
        assert_eq!(path, "plugin.wasm");
        assert_eq!(bytes, &wasm);
        assert_eq!(header.mode().unwrap(), 0o644);
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
    }

    #[test]
    fn the_gzip_header_carries_no_time_or_name() {
        let layer = compat_layer(b"\0asm\x01\0\0\0").unwrap();
        // RFC 1952: ID1 ID2 CM FLG MTIME(4) XFL OS.
        assert_eq!(
            &layer.gzip[..4],
            &[0x1f, 0x8b, 8, 0],
            "no FNAME or other flags"
        );
        assert_eq!(&layer.gzip[4..8], &[0, 0, 0, 0], "MTIME is zero");
    }
}
