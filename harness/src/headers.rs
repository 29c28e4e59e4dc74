//! Header maps as Envoy keeps them (lowercase names, pseudo-headers first, insertion order,
//! duplicates allowed, names and values as raw bytes) and the Proxy-Wasm wire format for
//! lists of pairs.

use std::fmt;

/// One entry: the exact bytes, and their text form for the `&str` API.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    name: Vec<u8>,
    value: Vec<u8>,
    name_text: String,
    value_text: String,
}

impl Entry {
    fn new(name: Vec<u8>, value: Vec<u8>) -> Self {
        Self {
            name_text: lossy(&name),
            value_text: lossy(&value),
            name,
            value,
        }
    }

    fn is_pseudo(&self) -> bool {
        self.name.first() == Some(&b':')
    }
}

/// An ordered list of header (or trailer, or metadata) entries.
///
/// Names and values are bytes, as in Envoy's `HeaderMapImpl`: HTTP/1 allows any byte
/// 0x80-0xFF (obs-text) in a value, and a filter reads and writes exactly those bytes.
/// The `&str` getters ([`get`](Self::get), [`iter`](Self::iter)...) show bytes that are not
/// UTF-8 as U+FFFD; the `_bytes` getters give them exactly.
///
/// Names are lowercased (ASCII) on insertion, as Envoy's `LowerCaseString` does.
/// Pseudo-headers (`:path`, `:status`...) stay ahead of regular headers, as in Envoy's
/// `HeaderMapImpl`, so the order a filter sees matches what Envoy would give it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<Entry>,
    /// Which of Envoy's typed maps this is, for its inline headers (see [`Slots`]).
    slots: Slots,
}

/// Envoy's request and response header maps keep some headers in one inline slot: adding
/// such a header again (from the client's or upstream's duplicate lines, or
/// `proxy_add_header_map_value`) appends `,value` to the one entry instead of making a
/// second one. Which headers are inline depends on the build (extensions register more);
/// the lists below are those of the PyPI Envoy 1.40 the tests use, found by sending each
/// header twice (`tests/tests/differential.rs` keeps checking a few).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Slots {
    /// No inline headers (trailers, metadata, callout maps, test-built maps).
    #[default]
    None,
    /// Envoy's `RequestHeaderMap`.
    Request,
    /// Envoy's `ResponseHeaderMap`.
    Response,
}

/// Inline in both maps (`INLINE_REQ_RESP_*` and headers extensions register for both).
const INLINE_BOTH: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "keep-alive",
    "proxy-connection",
    "proxy-status",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-envoy-attempt-count",
    "x-envoy-decorator-operation",
    "x-request-id",
    "cache-control",
];

/// Inline in the request map only.
const INLINE_REQUEST: &[&str] = &[
    "accept",
    "accept-encoding",
    "access-control-request-headers",
    "access-control-request-method",
    "authorization",
    "expect",
    "grpc-accept-encoding",
    "grpc-timeout",
    "if-modified-since",
    "if-none-match",
    "origin",
    "pragma",
    "referer",
    "te",
    "user-agent",
    "x-client-trace-id",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-external-address",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-is-timeout-retry",
    "x-envoy-max-retries",
    "x-envoy-original-path",
    "x-envoy-original-url",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-rq-timeout-ms",
    "x-forwarded-client-cert",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Inline in the response map only.
const INLINE_RESPONSE: &[&str] = &[
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-max-age",
    "date",
    "etag",
    "grpc-message",
    "grpc-status",
    "location",
    "server",
    "vary",
    "x-envoy-degraded",
    "x-envoy-immediate-health-check-fail",
    "x-envoy-ratelimited",
    "x-envoy-upstream-canary",
    "x-envoy-upstream-healthchecked-cluster",
    "x-envoy-upstream-service-time",
];

impl Slots {
    fn is_inline(self, name: &[u8]) -> bool {
        let listed = |list: &[&str]| list.iter().any(|n| n.as_bytes() == name);
        match self {
            Self::None => false,
            Self::Request => {
                name.first() == Some(&b':') || listed(INLINE_BOTH) || listed(INLINE_REQUEST)
            }
            Self::Response => {
                name.first() == Some(&b':') || listed(INLINE_BOTH) || listed(INLINE_RESPONSE)
            }
        }
    }
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from pairs (text or bytes), adding each in order.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut map = Self::new();
        for (name, value) in pairs {
            map.add(name, value);
        }
        map
    }

    /// A map that keeps Envoy's inline headers of a request or response map in one entry.
    pub(crate) fn with_slots(slots: Slots) -> Self {
        Self {
            entries: Vec::new(),
            slots,
        }
    }

    /// Appends an entry (text or bytes), keeping any existing ones with the same name;
    /// in a request or response map, a header Envoy keeps inline is appended to the
    /// existing entry as `,value` instead (Envoy's `addCopy`).
    pub fn add(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let lower = name.as_ref().to_ascii_lowercase();
        if self.slots.is_inline(&lower) {
            if let Some(existing) = self.entries.iter_mut().find(|e| e.name == lower) {
                let mut merged = existing.value.clone();
                if !merged.is_empty() {
                    merged.push(b',');
                }
                merged.extend_from_slice(value.as_ref());
                *existing = Entry::new(lower, merged);
                return;
            }
        }
        let entry = Entry::new(lower, value.as_ref().to_vec());
        if entry.is_pseudo() {
            let at = self.entries.iter().take_while(|e| e.is_pseudo()).count();
            self.entries.insert(at, entry);
        } else {
            self.entries.push(entry);
        }
    }

    /// Removes every entry with this name, then appends one with the value. This is
    /// Envoy's `setCopy`, which is what `proxy_replace_header_map_value` calls.
    pub fn set(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.remove(name.as_ref());
        self.add(name, value);
    }

    /// Gives the first entry with this name the value and drops the others, keeping its
    /// place; adds the entry if there is none. For building messages, not for filters.
    pub(crate) fn set_in_place(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let lower = name.as_ref().to_ascii_lowercase();
        match self.entries.iter().position(|e| e.name == lower) {
            Some(at) => {
                self.entries[at] = Entry::new(lower.clone(), value.as_ref().to_vec());
                let mut seen = 0;
                self.entries.retain(|e| {
                    seen += usize::from(e.name == lower);
                    e.name != lower || seen == 1
                });
            }
            None => self.add(name, value),
        }
    }

    /// Removes every entry with this name.
    pub fn remove(&mut self, name: impl AsRef<[u8]>) {
        let name = name.as_ref().to_ascii_lowercase();
        self.entries.retain(|e| e.name != name);
    }

    fn find(&self, name: &[u8]) -> impl Iterator<Item = &Entry> {
        let name = name.to_ascii_lowercase();
        self.entries.iter().filter(move |e| e.name == name)
    }

    /// The first value under this name, as `proxy_get_header_map_value` returns it; bytes
    /// that are not UTF-8 read as U+FFFD (see [`get_bytes`](Self::get_bytes)).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name.as_bytes())
            .next()
            .map(|e| e.value_text.as_str())
    }

    /// The first value under this name, byte for byte.
    pub fn get_bytes(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.find(name.as_ref()).next().map(|e| e.value.as_slice())
    }

    /// Every value under this name, in order (non-UTF-8 bytes as U+FFFD).
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.find(name.as_bytes())
            .map(|e| e.value_text.as_str())
            .collect()
    }

    /// Every value under this name, in order, byte for byte.
    pub fn get_all_bytes(&self, name: impl AsRef<[u8]>) -> Vec<&[u8]> {
        self.find(name.as_ref())
            .map(|e| e.value.as_slice())
            .collect()
    }

    /// Whether any entry has this name.
    pub fn contains(&self, name: impl AsRef<[u8]>) -> bool {
        self.find(name.as_ref()).next().is_some()
    }

    /// Every value under this name joined with `,`, as Envoy's
    /// `getAllOfHeaderAsString` gives `request.headers.<name>`; `None` if there is none.
    pub(crate) fn get_joined(&self, name: &[u8]) -> Option<Vec<u8>> {
        let values = self.get_all_bytes(name);
        if values.is_empty() {
            return None;
        }
        Some(values.join(&b","[..]))
    }

    /// The map as Envoy serializes a CEL header map (`request.headers`): each name once,
    /// in order of first appearance, with its values joined by `,`.
    pub(crate) fn to_wire_joined(&self) -> Vec<u8> {
        let mut names: Vec<&[u8]> = Vec::new();
        for e in &self.entries {
            if !names.contains(&e.name.as_slice()) {
                names.push(&e.name);
            }
        }
        let joined: Vec<(Vec<u8>, Vec<u8>)> = names
            .iter()
            .map(|n| (n.to_vec(), self.get_joined(n).unwrap_or_default()))
            .collect();
        let pairs: Vec<(&[u8], &[u8])> = joined
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        encode_pairs(&pairs)
    }

    /// The entries in order (non-UTF-8 bytes as U+FFFD).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.name_text.as_str(), e.value_text.as_str()))
    }

    /// The entries in order, byte for byte.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|e| (e.name.as_slice(), e.value.as_slice()))
    }

    /// The names in order, with repeats.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name_text.as_str()).collect()
    }

    /// How many entries the map holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Serializes the map in the Proxy-Wasm pairs format.
    pub(crate) fn to_wire(&self) -> Vec<u8> {
        let pairs: Vec<(&[u8], &[u8])> = self.iter_bytes().collect();
        encode_pairs(&pairs)
    }

    /// Replaces the map's entries with pairs decoded from the wire, as
    /// `proxy_set_header_map_pairs` does.
    pub(crate) fn replace_with(&mut self, pairs: Vec<(Vec<u8>, Vec<u8>)>) {
        self.entries.clear();
        for (name, value) in pairs {
            self.add(name, value);
        }
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for e in &self.entries {
            match (std::str::from_utf8(&e.name), std::str::from_utf8(&e.value)) {
                (Ok(name), Ok(value)) => list.entry(&(name, value)),
                _ => list.entry(&(
                    e.name.escape_ascii().to_string(),
                    e.value.escape_ascii().to_string(),
                )),
            };
        }
        list.finish()
    }
}

/// Turns bytes from the VM into text, for logs, names and messages the harness keeps as
/// strings (never for header maps, which keep the bytes).
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Encodes pairs as Proxy-Wasm does: a little-endian u32 count, then each name and value
/// length as u32, then each name and value followed by a NUL byte.
pub(crate) fn encode_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Decodes the Proxy-Wasm pairs format. Like proxy-wasm-cpp-host's `toPairs`, a buffer
/// too short for its own counts yields no pairs.
pub(crate) fn decode_pairs(buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let read_u32 = |at: usize| -> Option<usize> {
        let bytes = buf.get(at..at + 4)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    };
    let Some(count) = read_u32(0) else {
        return Vec::new();
    };
    if count.saturating_mul(8).saturating_add(4) > buf.len() {
        return Vec::new();
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let (Some(name), Some(value)) = (read_u32(4 + i * 8), read_u32(8 + i * 8)) else {
            return Vec::new();
        };
        sizes.push((name, value));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for (name_len, value_len) in sizes {
        let Some(name) = buf.get(at..at + name_len) else {
            return Vec::new();
        };
        at += name_len + 1;
        let Some(value) = buf.get(at..at + value_len) else {
            return Vec::new();
        };
        at += value_len + 1;
        pairs.push((name.to_vec(), value.to_vec()));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_pseudo_headers_ahead_of_regular_ones() {
        let mut map = HeaderMap::new();
        map.add("Host-Like", "a");
        map.add(":path", "/");
        map.add(":method", "GET");
        assert_eq!(map.names(), vec![":path", ":method", "host-like"]);
    }

    #[test]
    fn set_replaces_every_value_and_moves_the_entry_last() {
        let mut map = HeaderMap::from_pairs([("a", "1"), ("b", "2"), ("a", "3")]);
        map.set("A", "4");
        assert_eq!(map.iter().collect::<Vec<_>>(), vec![("b", "2"), ("a", "4")]);
    }

    #[test]
    fn pairs_round_trip_through_the_wire_format() {
        let map = HeaderMap::from_pairs([(":status", "200"), ("x", ""), ("x", "y")]);
        let mut back = HeaderMap::new();
        back.replace_with(decode_pairs(&map.to_wire()));
        assert_eq!(back, map);
    }

    #[test]
    fn a_truncated_pairs_buffer_decodes_to_nothing() {
        let wire = HeaderMap::from_pairs([("name", "value")]).to_wire();
        assert!(decode_pairs(&wire[..wire.len() - 3]).is_empty());
    }

    #[test]
    fn values_that_are_not_utf8_keep_their_bytes() {
        let mut map = HeaderMap::new();
        map.add("X-Raw", b"caf\xe9 \xff");
        assert_eq!(map.get_bytes("x-raw"), Some(&b"caf\xe9 \xff"[..]));
        assert_eq!(map.get("x-raw"), Some("caf\u{fffd} \u{fffd}"));
        let mut back = HeaderMap::new();
        back.replace_with(decode_pairs(&map.to_wire()));
        assert_eq!(back.get_bytes("x-raw"), Some(&b"caf\xe9 \xff"[..]));
    }
}
