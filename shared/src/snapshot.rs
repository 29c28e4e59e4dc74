//! A header map as one `proxy_get_header_map_pairs` call returned it, kept as the host's
//! bytes and read in place: lookups borrow, nothing is copied per header.
//!
//! `host` keeps one snapshot per stream map and phase (see [`crate::host::snapshot`]): the
//! dispatcher forgets them whenever the host enters the VM, since another filter may have
//! changed the map in between, and `host`'s own writes edit them, so every reader in the
//! module (several filters of one context included) sees the map as the host now holds it.

use crate::pairs::Pair;

/// Where a name or value lies in the snapshot's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    len: usize,
}

/// One header: its name and value, as spans of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    name: Span,
    value: Span,
}

/// A header map read once: its entries in the host's order, duplicates kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderSnapshot {
    /// The host's map bytes, then the names and values written since.
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl HeaderSnapshot {
    /// Indexes the Proxy-Wasm map form (see [`crate::pairs`]) without copying it. `None`
    /// when the bytes are not a well-formed map, or a name is not UTF-8.
    pub fn decode(bytes: Vec<u8>) -> Option<HeaderSnapshot> {
        if bytes.is_empty() {
            return Some(HeaderSnapshot::default());
        }
        let count = read_u32(&bytes, 0)? as usize;
        // Each entry needs at least 8 bytes of sizes and 2 NULs: bounds the allocation.
        if count > bytes.len() / 10 {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        let mut pos = 4 + count * 8;
        for i in 0..count {
            let at = 4 + i * 8;
            let name_len = read_u32(&bytes, at)? as usize;
            let value_len = read_u32(&bytes, at + 4)? as usize;
            let name = take_terminated(&bytes, &mut pos, name_len)?;
            std::str::from_utf8(bytes.get(name.start..name.start + name.len)?).ok()?;
            let value = take_terminated(&bytes, &mut pos, value_len)?;
            entries.push(Entry { name, value });
        }
        Some(HeaderSnapshot { bytes, entries })
    }

    fn slice(&self, span: Span) -> &[u8] {
        self.bytes
            .get(span.start..span.start + span.len)
            .unwrap_or_default()
    }

    fn name_of(&self, entry: &Entry) -> &str {
        // Names were checked to be UTF-8 when they came in.
        std::str::from_utf8(self.slice(entry.name)).unwrap_or_default()
    }

    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| self.slice(e.name).eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The first value of `name` (any case), as `proxy_get_header_map_value` gives it.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.named(name).next().map(|e| self.slice(e.value))
    }

    /// The first value of `name` if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.get(name)?).ok()
    }

    /// Every value of `name`, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.named(name).map(|e| self.slice(e.value))
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.entries
            .iter()
            .map(|e| (self.name_of(e), self.slice(e.value)))
    }

    /// How many headers (duplicates counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty (also what Envoy answers for a map not available).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An owned copy, as `host::headers` returns it.
    pub fn to_pairs(&self) -> Vec<Pair> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    fn push_bytes(&mut self, bytes: &[u8], lowercase: bool) -> Span {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        if lowercase {
            if let Some(pushed) = self.bytes.get_mut(start..) {
                pushed.make_ascii_lowercase();
            }
        }
        Span {
            start,
            len: bytes.len(),
        }
    }

    /// Adds a value, keeping existing ones (Envoy's `addCopy`): pseudo-headers go after the
    /// other pseudo-headers, the rest at the end.
    pub(crate) fn add(&mut self, name: &str, value: &[u8]) {
        let entry = Entry {
            name: self.push_bytes(name.as_bytes(), true),
            value: self.push_bytes(value, false),
        };
        if name.starts_with(':') {
            let at = self
                .entries
                .iter()
                .take_while(|e| self.slice(e.name).starts_with(b":"))
                .count();
            self.entries.insert(at, entry);
        } else {
            self.entries.push(entry);
        }
    }

    /// Removes every value of `name`, then adds `value` (Envoy's `setCopy`, which
    /// `proxy_replace_header_map_value` calls).
    pub(crate) fn set(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }

    /// Removes every value of `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        let bytes = &self.bytes;
        self.entries.retain(|e| {
            !bytes
                .get(e.name.start..e.name.start + e.name.len)
                .unwrap_or_default()
                .eq_ignore_ascii_case(name.as_bytes())
        });
    }
}

fn take_terminated(bytes: &[u8], pos: &mut usize, len: usize) -> Option<Span> {
    let end = pos.checked_add(len)?;
    if *bytes.get(end)? != 0 {
        return None;
    }
    let span = Span { start: *pos, len };
    *pos = end + 1;
    Some(span)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairs;

    fn snapshot(headers: &[(&str, &str)]) -> HeaderSnapshot {
        HeaderSnapshot::decode(pairs::encode(headers)).unwrap()
    }

    #[test]
    fn reads_what_the_pairs_decoder_reads_without_copying() {
        let wire = pairs::encode(&[
            (":path", "/a?b"),
            ("cookie", "a=1"),
            ("x-raw", "\u{ff}"),
            ("Cookie", "b=2"),
        ]);
        let s = HeaderSnapshot::decode(wire.clone()).unwrap();
        assert_eq!(s.to_pairs(), pairs::decode(&wire).unwrap());
        assert_eq!(s.get(":path"), Some(&b"/a?b"[..]));
        assert_eq!(s.get("COOKIE"), Some(&b"a=1"[..]));
        let cookies: Vec<&[u8]> = s.values("cookie").collect();
        assert_eq!(cookies, [&b"a=1"[..], &b"b=2"[..]]);
        assert_eq!(s.get("absent"), None);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn refuses_what_the_pairs_decoder_refuses() {
        let good = pairs::encode(&[("a", "b")]);
        for cut in 1..good.len() {
            assert_eq!(HeaderSnapshot::decode(good[..cut].to_vec()), None);
        }
        assert_eq!(
            HeaderSnapshot::decode(u32::MAX.to_le_bytes().to_vec()),
            None
        );
        let not_utf8 = pairs::encode(&[(&[0xffu8][..], &b"v"[..])]);
        assert_eq!(HeaderSnapshot::decode(not_utf8), None);
        assert!(HeaderSnapshot::decode(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn edits_follow_envoys_set_add_and_remove() {
        let mut s = snapshot(&[(":status", "200"), ("server", "a"), ("x", "1"), ("x", "2")]);
        s.set("X", b"3");
        s.remove("server");
        s.add(":extra", b"e");
        s.add("x", b"4");
        let got: Vec<(&str, &[u8])> = s.iter().collect();
        assert_eq!(
            got,
            [
                (":status", &b"200"[..]),
                (":extra", &b"e"[..]),
                ("x", &b"3"[..]),
                ("x", &b"4"[..])
            ]
        );
    }
}
