//! Properties (`proxy_get_property`) in Envoy's encodings, derived from the stream and the
//! plugin the way Envoy's `Context::getProperty` does, plus values the test sets.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::headers::HeaderMap;
use crate::stream::StreamData;

/// A property value as a test gives it; encoded the way Envoy serializes CEL values.
#[derive(Clone, Debug, PartialEq)]
pub enum PropertyValue {
    /// Strings and bytes: the raw bytes.
    Bytes(Vec<u8>),
    /// Integers: 8-byte little-endian `int64`.
    Int(i64),
    /// Booleans: one byte, 0 or 1.
    Bool(bool),
    /// Durations: `int64` nanoseconds, little-endian.
    Duration(Duration),
    /// Timestamps: `int64` nanoseconds since the Unix epoch, little-endian.
    Timestamp(SystemTime),
    /// String maps: the Proxy-Wasm pairs format.
    Map(Vec<(String, String)>),
}

impl PropertyValue {
    /// The bytes `proxy_get_property` returns for this value.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Bytes(bytes) => bytes.clone(),
            Self::Int(n) => n.to_le_bytes().to_vec(),
            Self::Bool(b) => vec![u8::from(*b)],
            Self::Duration(d) => (d.as_nanos() as i64).to_le_bytes().to_vec(),
            Self::Timestamp(t) => unix_nanos(*t).to_le_bytes().to_vec(),
            Self::Map(pairs) => HeaderMap::from_pairs(pairs.iter().cloned()).to_wire(),
        }
    }
}

impl From<&str> for PropertyValue {
    fn from(value: &str) -> Self {
        Self::Bytes(value.as_bytes().to_vec())
    }
}

impl From<String> for PropertyValue {
    fn from(value: String) -> Self {
        Self::Bytes(value.into_bytes())
    }
}

impl From<Vec<u8>> for PropertyValue {
    fn from(value: Vec<u8>) -> Self {
        Self::Bytes(value)
    }
}

impl From<&[u8]> for PropertyValue {
    fn from(value: &[u8]) -> Self {
        Self::Bytes(value.to_vec())
    }
}

impl From<i64> for PropertyValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<bool> for PropertyValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<Duration> for PropertyValue {
    fn from(value: Duration) -> Self {
        Self::Duration(value)
    }
}

impl From<SystemTime> for PropertyValue {
    fn from(value: SystemTime) -> Self {
        Self::Timestamp(value)
    }
}

/// Nanoseconds since the Unix epoch, as Envoy encodes timestamps.
pub(crate) fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Turns a dot-separated path (`"request.path"`) into the NUL-separated key a filter sends.
pub(crate) fn path_key(path: &str) -> Vec<u8> {
    path.replace('.', "\0").into_bytes()
}

/// Plugin-wide facts Envoy exposes as properties, and the properties the test set.
#[derive(Clone, Debug, Default)]
pub(crate) struct PluginFacts {
    pub plugin_name: String,
    pub root_id: String,
    pub vm_id: String,
    pub cluster_name: String,
    pub route_name: String,
    pub node_id: String,
    pub node_cluster: String,
    pub listener_direction: i64,
    pub overrides: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Finds a property for a context: the stream's own (set by the filter, then by the test),
/// then what Envoy derives from the stream, then plugin-wide values.
pub(crate) fn lookup(
    plugin: &PluginFacts,
    stream: Option<&StreamData>,
    path: &[u8],
) -> Option<Vec<u8>> {
    if let Some(stream) = stream {
        if let Some(value) = stream.set_properties.get(path) {
            return Some(value.clone());
        }
        if let Some(value) = stream.property_overrides.get(path) {
            return Some(value.clone());
        }
        if let Some(value) = derive_stream(plugin, stream, path) {
            return Some(value);
        }
    }
    if let Some(value) = plugin.overrides.get(path) {
        return Some(value.clone());
    }
    derive_plugin(plugin, path)
}

fn derive_plugin(plugin: &PluginFacts, path: &[u8]) -> Option<Vec<u8>> {
    let text = |s: &str| Some(s.as_bytes().to_vec());
    match path {
        b"plugin_name" => text(&plugin.plugin_name),
        b"plugin_root_id" => text(&plugin.root_id),
        b"plugin_vm_id" => text(&plugin.vm_id),
        b"node\0id" => text(&plugin.node_id),
        b"node\0cluster" => text(&plugin.node_cluster),
        b"listener_direction" => Some(plugin.listener_direction.to_le_bytes().to_vec()),
        _ => None,
    }
}

fn derive_stream(plugin: &PluginFacts, stream: &StreamData, path: &[u8]) -> Option<Vec<u8>> {
    let request = &stream.request;
    let text = |s: &str| Some(s.as_bytes().to_vec());
    let int = |n: i64| Some(n.to_le_bytes().to_vec());
    let header = |name: &str| request.headers.get_bytes(name).map(<[u8]>::to_vec);
    let path_header = request.headers.get(":path").unwrap_or("");
    if let Some(name) = path.strip_prefix(b"request\0headers\0") {
        return request.headers.get_bytes(name).map(<[u8]>::to_vec);
    }
    if let Some(name) = path.strip_prefix(b"response\0headers\0") {
        let response = stream.response.as_ref()?;
        return response.headers.get_bytes(name).map(<[u8]>::to_vec);
    }
    if let Some(name) = path.strip_prefix(b"response\0trailers\0") {
        let response = stream.response.as_ref()?;
        return response.trailers.get_bytes(name).map(<[u8]>::to_vec);
    }
    match path {
        b"request\0path" => header(":path"),
        b"request\0url_path" => text(path_header.split('?').next().unwrap_or("")),
        b"request\0query" => text(path_header.split_once('?').map(|(_, q)| q).unwrap_or("")),
        b"request\0host" => header(":authority"),
        b"request\0method" => header(":method"),
        b"request\0scheme" => header(":scheme"),
        b"request\0protocol" => text(&request.protocol),
        b"request\0id" => header("x-request-id"),
        b"request\0referer" => header("referer"),
        b"request\0useragent" => header("user-agent"),
        b"request\0headers" => Some(request.headers.to_wire()),
        b"request\0time" => int(stream.start_ns),
        b"request\0size" => int(request.body.len() as i64),
        b"source\0address" => text(&request.source),
        b"source\0port" => port(&request.source).and_then(int),
        b"destination\0address" => text(&request.destination),
        b"destination\0port" => port(&request.destination).and_then(int),
        b"connection\0mtls" => Some(vec![0]),
        b"connection_id" => int(stream.connection_id as i64),
        b"response\0code" => stream
            .response
            .as_ref()
            .map(|r| r.status() as i64)
            .and_then(int),
        b"response\0code_details" => stream.details.as_deref().and_then(text),
        b"response\0flags" => int(stream.flags as i64),
        b"response\0headers" => stream.response.as_ref().map(|r| r.headers.to_wire()),
        b"response\0trailers" => stream.response.as_ref().map(|r| r.trailers.to_wire()),
        b"response\0size" => stream
            .response
            .as_ref()
            .map(|r| r.body.len() as i64)
            .and_then(int),
        b"cluster_name" => text(&plugin.cluster_name),
        b"route_name" => text(&plugin.route_name),
        _ => None,
    }
}

fn port(address: &str) -> Option<i64> {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_eight_byte_little_endian() {
        assert_eq!(
            PropertyValue::Int(200).encode(),
            vec![200, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn durations_are_nanoseconds() {
        let encoded = PropertyValue::Duration(Duration::from_millis(2)).encode();
        assert_eq!(i64::from_le_bytes(encoded.try_into().unwrap()), 2_000_000);
    }

    #[test]
    fn dotted_paths_become_nul_separated_keys() {
        assert_eq!(
            path_key("request.headers.x-a"),
            b"request\0headers\0x-a".to_vec()
        );
    }
}
