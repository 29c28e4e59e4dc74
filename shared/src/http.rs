//! What filters read out of a request's bytes, parsed one way for every filter: cookies,
//! the query string and its percent-escapes, and the client address `x-forwarded-for`
//! names at a trusted hop. Pure and byte-based: a value that is not UTF-8 is still a value,
//! and nothing here can panic on hostile input.
//!
//! The rules, the same wherever a filter reads these:
//! - **Cookies** (RFC 6265 §5.4, as browsers send them): every `cookie` header counts (HTTP/2
//!   may split one into several); pairs are split on `;`, spaces and tabs around a pair and
//!   around its name and value are dropped, a pair with no `=` is skipped, names match
//!   exactly (case-sensitive), and a value in double quotes is the value inside them. An
//!   empty value is the same as no cookie. A name sent twice, even with an empty value, is
//!   [`Lookup::Repeated`]: each filter decides what that means (jwt-auth refuses the
//!   request, as a backend may read either; a sticky session or a rate-limit key takes the
//!   first value that is not empty).
//! - **Query**: the part of `:path` after the first `?` and before any `#`; pairs are split
//!   on `&`, empty pairs skipped, a pair with no `=` has an empty value. Names and values are
//!   percent-decoded; `+` stays `+` (it is a space only in HTML forms, and tokens and keys
//!   are not form fields). A malformed escape is kept as it is.
//! - **x-forwarded-for**: every header's entries, in order, as one comma-separated list;
//!   trusted hop `n` is the `n`-th entry from the right, spaces and tabs trimmed.

use std::borrow::Cow;

/// One cookie of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie<'a> {
    /// Its name.
    pub name: &'a [u8],
    /// Its value, without the double quotes a quoted value came in.
    pub value: &'a [u8],
    /// The pair as sent (`name=value`, quotes kept), spaces around it trimmed: what a filter
    /// writes back when it rebuilds the header without some cookies.
    pub pair: &'a [u8],
}

/// What a request says about one cookie (`V` = `&[u8]`, borrowed from the header) or
/// query parameter (`V` = `Vec<u8>`, decoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<V> {
    /// Not there, or there once with an empty value.
    Absent,
    /// There once.
    One(V),
    /// There more than once.
    Repeated {
        /// The first value sent that is not empty.
        first: Option<V>,
    },
}

impl<V: AsRef<[u8]>> Lookup<V> {
    /// The value, or the first of several that is not empty.
    pub fn first(self) -> Option<V> {
        match self {
            Lookup::Absent => None,
            Lookup::One(value) => Some(value),
            Lookup::Repeated { first } => first,
        }
    }

    /// Each value changed by `f`.
    pub fn map<W>(self, f: impl FnOnce(V) -> W) -> Lookup<W> {
        match self {
            Lookup::Absent => Lookup::Absent,
            Lookup::One(value) => Lookup::One(f(value)),
            Lookup::Repeated { first } => Lookup::Repeated {
                first: first.map(f),
            },
        }
    }

    fn of(values: impl Iterator<Item = V>) -> Self {
        let mut count = 0usize;
        let mut first = None;
        for value in values {
            count += 1;
            if first.is_none() && !value.as_ref().is_empty() {
                first = Some(value);
            }
        }
        match (count, first) {
            (0 | 1, None) => Lookup::Absent,
            (1, Some(value)) => Lookup::One(value),
            (_, first) => Lookup::Repeated { first },
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(start), Some(end)) => bytes.get(start..=end).unwrap_or_default(),
        _ => &[],
    }
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == separator)?;
    Some((bytes.get(..at)?, bytes.get(at + 1..)?))
}

/// Every cookie in the `cookie` header values given, in order.
pub fn cookies<'a, I>(headers: I) -> impl Iterator<Item = Cookie<'a>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    headers
        .into_iter()
        .flat_map(|header| header.split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = trim(pair);
            let (name, value) = split_once(pair, b'=')?;
            let value = trim(value);
            let value = value
                .strip_prefix(b"\"")
                .and_then(|inner| inner.strip_suffix(b"\""))
                .unwrap_or(value);
            Some(Cookie {
                name: trim(name),
                value,
                pair,
            })
        })
}

/// The cookie `name` in the `cookie` header values given.
pub fn cookie<'a, I>(headers: I, name: &str) -> Lookup<&'a [u8]>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    Lookup::of(
        cookies(headers)
            .filter(|c| c.name == name.as_bytes())
            .map(|c| c.value),
    )
}

/// `:path` split into the path and the query string (without `?`, and without any `#`
/// fragment).
pub fn split_path(path: &[u8]) -> (&[u8], Option<&[u8]>) {
    match split_once(path, b'?') {
        Some((path, query)) => (
            path,
            Some(split_once(query, b'#').map_or(query, |(q, _)| q)),
        ),
        None => (path, None),
    }
}

/// The query string's pairs, raw (not decoded), in order.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| split_once(pair, b'=').unwrap_or((pair, &[])))
}

/// The value of query parameter `name` (names compared after decoding), decoded, with the
/// rules of [`cookie`]: an empty value is none, a name given twice is repeated. (A raw
/// value is empty exactly when its decoding is, so only the value kept is decoded.)
pub fn query_param(query: &[u8], name: &str) -> Lookup<Vec<u8>> {
    Lookup::of(
        query_pairs(query)
            .filter(|(key, _)| percent_decode(key).as_ref() == name.as_bytes())
            .map(|(_, value)| value),
    )
    .map(|value| percent_decode(value).into_owned())
}

/// Decodes `%XX` escapes; a malformed escape is kept as it is. Borrows when there is none.
pub fn percent_decode(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(bytes);
    }
    let hex = |at: usize| bytes.get(at).and_then(|&h| char::from(h).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits are at most 255.
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// The entry of the `x-forwarded-for` header values given at trusted hop `hops` (1: the
/// rightmost, the address the nearest trusted proxy saw), trimmed; `None` when the list is
/// shorter or `hops` is 0.
pub fn forwarded_for<'a>(values: &[&'a [u8]], hops: u32) -> Option<&'a [u8]> {
    let from_right = usize::try_from(hops).ok()?.checked_sub(1)?;
    values
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(|&b| b == b','))
        .nth(from_right)
        .map(trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all<'a>(headers: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        cookies(headers.iter().map(|h| h.as_bytes()))
            .map(|c| {
                (
                    std::str::from_utf8(c.name).unwrap(),
                    std::str::from_utf8(c.value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn cookies_are_read_from_every_header_trimmed_and_unquoted() {
        assert_eq!(
            all(&["a=1; b = 2 ;\tc=\"three\"", "d=4;e;f="]),
            [
                ("a", "1"),
                ("b", "2"),
                ("c", "three"),
                ("d", "4"),
                ("f", "")
            ]
        );
        // A lone quote is a value, not an empty quoted one.
        assert_eq!(all(&["q=\""]), [("q", "\"")]);
        assert_eq!(all(&["q=\"\""]), [("q", "")]);
        // `=` inside a value stays.
        assert_eq!(all(&["t=a.b=c"]), [("t", "a.b=c")]);
    }

    #[test]
    fn a_cookie_is_absent_empty_one_or_repeated() {
        let look =
            |headers: &[&'static str], name| cookie(headers.iter().map(|h| h.as_bytes()), name);
        assert_eq!(look(&["a=1"], "b"), Lookup::Absent);
        assert_eq!(look(&["a="], "a"), Lookup::Absent);
        assert_eq!(look(&["a=\"\""], "a"), Lookup::Absent);
        assert_eq!(look(&["a=1"], "a"), Lookup::One(&b"1"[..]));
        assert_eq!(
            look(&["A=1"], "a"),
            Lookup::Absent,
            "names are case-sensitive"
        );
        assert_eq!(
            look(&["a=1", "a=2"], "a"),
            Lookup::Repeated {
                first: Some(&b"1"[..])
            }
        );
        assert_eq!(look(&["a=1; a=2"], "a").first(), Some(&b"1"[..]));
        // An empty duplicate still makes the name repeated; the first value is the first
        // that is not empty.
        assert_eq!(
            look(&["a=; a=1"], "a"),
            Lookup::Repeated {
                first: Some(&b"1"[..])
            }
        );
        assert_eq!(look(&["a=; a="], "a"), Lookup::Repeated { first: None });
    }

    #[test]
    fn cookies_keep_the_pair_as_sent_for_rebuilding() {
        let pairs: Vec<&[u8]> = cookies([&b" a=\"1\" ;b=2"[..]]).map(|c| c.pair).collect();
        assert_eq!(pairs, [&b"a=\"1\""[..], b"b=2"]);
    }

    #[test]
    fn cookie_bytes_need_not_be_utf8() {
        let header = b"k=\xff\xfe";
        assert_eq!(cookie([&header[..]], "k"), Lookup::One(&b"\xff\xfe"[..]));
    }

    #[test]
    fn a_bare_name_is_a_parameter_too() {
        // Found by the fuzz property in CI: `k` then `&k=a` names `k` twice, so a check on
        // the one with a value cannot be fooled by the bare one (or the other way round).
        assert_eq!(
            query_param(b"k&k=a", "k"),
            Lookup::Repeated {
                first: Some(b"a".to_vec())
            }
        );
        assert_eq!(query_param(b"k", "k"), Lookup::Absent);
        assert_eq!(query_param(b"%6b=b&k=a", "k").first(), Some(b"b".to_vec()));
    }

    #[test]
    fn the_query_ends_at_a_fragment_and_pairs_are_decoded_by_name_and_value() {
        assert_eq!(split_path(b"/a/b"), (&b"/a/b"[..], None));
        assert_eq!(
            split_path(b"/a?x=1&y#frag"),
            (&b"/a"[..], Some(&b"x=1&y"[..]))
        );
        assert_eq!(split_path(b"/a?"), (&b"/a"[..], Some(&b""[..])));
        let pairs: Vec<_> = query_pairs(b"a=1&&b&c=&=d").collect();
        assert_eq!(
            pairs,
            [
                (&b"a"[..], &b"1"[..]),
                (b"b", b""),
                (b"c", b""),
                (b"", b"d")
            ]
        );
        assert_eq!(
            query_param(b"x%5Fid=a%2Eb&y=2", "x_id"),
            Lookup::One(b"a.b".to_vec())
        );
        assert_eq!(query_param(b"t=", "t"), Lookup::Absent);
        assert_eq!(
            query_param(b"t=&t=1", "t"),
            Lookup::Repeated {
                first: Some(b"1".to_vec())
            }
        );
        assert_eq!(
            query_param(b"t=1&t=2", "t"),
            Lookup::Repeated {
                first: Some(b"1".to_vec())
            }
        );
        assert_eq!(query_param(b"t=a+b", "t").first(), Some(b"a+b".to_vec()));
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes_and_borrows_when_it_can() {
        assert!(matches!(percent_decode(b"plain"), Cow::Borrowed(_)));
        assert_eq!(percent_decode(b"%41%4a%zz%4").as_ref(), b"AJ%zz%4");
        assert_eq!(percent_decode(b"%").as_ref(), b"%");
        assert_eq!(percent_decode(b"%ff%00").as_ref(), b"\xff\x00");
    }

    #[test]
    fn x_forwarded_for_counts_trusted_hops_from_the_right_across_headers() {
        let values: [&[u8]; 2] = [b"1.1.1.1, 2.2.2.2", b" 3.3.3.3 ,4.4.4.4"];
        assert_eq!(forwarded_for(&values, 1), Some(&b"4.4.4.4"[..]));
        assert_eq!(forwarded_for(&values, 2), Some(&b"3.3.3.3"[..]));
        assert_eq!(forwarded_for(&values, 4), Some(&b"1.1.1.1"[..]));
        assert_eq!(forwarded_for(&values, 5), None);
        assert_eq!(forwarded_for(&values, 0), None);
        assert_eq!(forwarded_for(&[], 1), None);
    }
}
