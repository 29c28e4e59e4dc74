//! The Proxy-Wasm wire form of a header map: a count, the key and value sizes, then the
//! NUL-terminated keys and values. Decoding is strict and never panics on hostile bytes.

/// One header, as the host sends it: a lowercase name and raw value bytes.
pub type Pair = (String, Vec<u8>);

/// Encodes `pairs` in the Proxy-Wasm map form.
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let payload: usize = pairs
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + payload);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len_u32(k.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.as_ref().len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Decodes the Proxy-Wasm map form. Returns `None` when the bytes are not a well-formed map;
/// names that are not UTF-8 are refused too (Envoy only sends valid header names).
pub fn decode(bytes: &[u8]) -> Option<Vec<Pair>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    // Each entry needs at least 8 bytes of sizes and 2 NULs: bounds the allocation below.
    if count > bytes.len() / 10 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let at = 4 + i * 8;
        sizes.push((
            read_u32(bytes, at)? as usize,
            read_u32(bytes, at + 4)? as usize,
        ));
    }
    let mut pos = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for (klen, vlen) in sizes {
        let key = take_terminated(bytes, &mut pos, klen)?;
        let value = take_terminated(bytes, &mut pos, vlen)?;
        pairs.push((String::from_utf8(key.to_vec()).ok()?, value.to_vec()));
    }
    Some(pairs)
}

fn take_terminated<'a>(bytes: &'a [u8], pos: &mut usize, len: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(len)?;
    let field = bytes.get(*pos..end)?;
    if *bytes.get(end)? != 0 {
        return None;
    }
    *pos = end + 1;
    Some(field)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Sizes on the wire are u32; anything larger cannot be a header and is clamped so the
/// host refuses the map rather than the filter trapping.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// What writing `wanted` over `current` changes, for a host that edits one name at a
/// time (the native build): the names to remove (in `current`, not in `wanted`), and the
/// index in `wanted` of the first header of each name whose values change (set it to
/// every value of that name in `wanted`, in order). Names compare in any case; a name
/// whose values stay the same, in the same order, is left alone.
pub fn edits<'a>(
    current: &[(&'a [u8], &[u8])],
    wanted: &[(&[u8], &[u8])],
) -> (Vec<&'a [u8]>, Vec<usize>) {
    let removed = current
        .iter()
        .enumerate()
        .filter(|(at, (name, _))| {
            !named_before(current, *at, name) && values_of(wanted, name).next().is_none()
        })
        .map(|(_, (name, _))| *name)
        .collect();
    let changed = wanted
        .iter()
        .enumerate()
        .filter(|(at, (name, _))| {
            !named_before(wanted, *at, name)
                && !values_of(wanted, name).eq(values_of(current, name))
        })
        .map(|(at, _)| at)
        .collect();
    (removed, changed)
}

/// The values of the headers named `name` (in any case), in order.
pub fn values_of<'a>(
    headers: &'a [(&'a [u8], &'a [u8])],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// True if a header before index `at` is named `name` (in any case).
fn named_before(headers: &[(&[u8], &[u8])], at: usize, name: &[u8]) -> bool {
    headers
        .iter()
        .take(at)
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_remove_what_goes_and_set_only_the_names_whose_values_change() {
        let current: Vec<(&[u8], &[u8])> = vec![
            (b"server", b"envoy"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"x-frame-options", b"SAMEORIGIN"),
            (b"content-type", b"text/html"),
        ];
        let wanted: Vec<(&[u8], &[u8])> = vec![
            (b"Set-Cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"x-frame-options", b"DENY"),
            (b"content-type", b"text/html"),
            (b"x-content-type-options", b"nosniff"),
        ];
        let (removed, changed) = edits(&current, &wanted);
        // `server` goes; set-cookie (same values, same order, any case) and content-type
        // stay; x-frame-options changes and x-content-type-options is new.
        assert_eq!(removed, [b"server".as_slice()]);
        assert_eq!(changed, [2, 4]);
        // A repeated name counts once, and a change of order is a change.
        let swapped: Vec<(&[u8], &[u8])> = vec![(b"set-cookie", b"b=2"), (b"set-cookie", b"a=1")];
        let (removed, changed) = edits(&current[1..3], &swapped);
        assert!(removed.is_empty());
        assert_eq!(changed, [0]);
        // Nothing wanted: every name goes, once.
        let (removed, changed) = edits(&current, &[]);
        assert_eq!(removed.len(), 4);
        assert!(changed.is_empty());
    }

    #[test]
    fn round_trips_ordered_duplicate_headers() {
        let pairs = vec![
            ("set-cookie".to_string(), b"a=1".to_vec()),
            ("set-cookie".to_string(), b"b=2".to_vec()),
            (":status".to_string(), b"200".to_vec()),
        ];
        assert_eq!(decode(&encode(&pairs)), Some(pairs));
    }

    #[test]
    fn keeps_values_that_are_not_utf8() {
        let pairs = vec![("x-raw".to_string(), vec![0xff, 0xfe, b'a'])];
        assert_eq!(decode(&encode(&pairs)), Some(pairs));
    }

    #[test]
    fn an_empty_buffer_is_an_empty_map() {
        assert_eq!(decode(&[]), Some(vec![]));
        assert_eq!(decode(&encode::<&str, &str>(&[])), Some(vec![]));
    }

    #[test]
    fn refuses_truncated_and_lying_maps() {
        let good = encode(&[("a", "b")]);
        for cut in 1..good.len() {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        // A count far larger than the buffer could hold.
        assert_eq!(decode(&u32::MAX.to_le_bytes()), None);
        // A missing NUL terminator.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] = b'x';
        assert_eq!(decode(&bad), None);
        // A size that overflows the buffer.
        let mut huge = good;
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
    }
}
