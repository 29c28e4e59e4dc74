//! Property values as a test gives them (`HostBuilder::property`, `Request::property`),
//! encoded the way Envoy serializes CEL values, and the keys a filter names them by.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::headers::HeaderMap;

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
