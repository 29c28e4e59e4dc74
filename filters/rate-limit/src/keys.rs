//! What a request is counted under: a rule's key is built from one or more parts of the
//! request, each canonicalised so that spelling a value differently does not earn a new
//! bucket.

use crate::request::Request;
use meshward_shared::http;
use std::net::{IpAddr, SocketAddr};

/// One part of a rule's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    /// The connection's peer address (Envoy's `source.address`), without the port.
    ClientAddress,
    /// The client address from `x-forwarded-for`: the `trusted_hops`-th address from the
    /// right, as the filter sees the header. A header with fewer addresses, or a value
    /// there that is not an IP address, falls back to the connection's peer address.
    ForwardedFor {
        /// How many addresses at the right of the header trusted proxies appended.
        trusted_hops: u32,
    },
    /// The first value of a request header (a claim header set by jwt-auth, an API key).
    Header(String),
    /// The path, without the query string.
    Path,
    /// The method.
    Method,
    /// A query parameter's first value that is not empty, percent-decoded
    /// (`meshward_shared::http`'s rules).
    Query(String),
    /// A cookie's first value that is not empty, unquoted (`meshward_shared::http`'s rules).
    Cookie(String),
}

/// A request's key for a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The encoded key: each part length-prefixed, so parts cannot run into each other.
    pub bytes: Vec<u8>,
    /// Some part was absent from the request (it is encoded as absent).
    pub incomplete: bool,
}

/// Builds the key of `request` from `parts`. No parts: the empty key, one bucket.
pub fn build(parts: &[KeyPart], request: &dyn Request) -> Key {
    let mut bytes = Vec::new();
    let mut incomplete = false;
    for part in parts {
        match part_value(part, request) {
            Some(v) => {
                bytes.push(1);
                bytes.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
                bytes.extend_from_slice(&v);
            }
            None => {
                bytes.push(0);
                incomplete = true;
            }
        }
    }
    Key { bytes, incomplete }
}

/// The value of one key part in `request`, canonicalised; `None` when the request lacks it.
pub fn part_value(part: &KeyPart, request: &dyn Request) -> Option<Vec<u8>> {
    match part {
        KeyPart::ClientAddress => peer_address(request),
        KeyPart::ForwardedFor { trusted_hops } => {
            forwarded_address(request, *trusted_hops).or_else(|| peer_address(request))
        }
        KeyPart::Header(name) => request.header(name),
        KeyPart::Path => Some(request.path()),
        KeyPart::Method => Some(request.method()),
        KeyPart::Query(name) => http::query_param(&request.query()?, name).first(),
        KeyPart::Cookie(name) => cookie_value(request, name),
    }
}

/// The canonical text of an address: IPv4-mapped IPv6 as IPv4, IPv6 compressed, no port.
fn canonical_ip(text: &str) -> Option<String> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(ip.to_canonical().to_string())
}

fn peer_address(request: &dyn Request) -> Option<Vec<u8>> {
    let raw = request.source_address()?;
    // A peer that is not an IP (a Unix socket) is still one peer: keep its text.
    Some(canonical_ip(&raw).unwrap_or(raw).into_bytes())
}

fn forwarded_address(request: &dyn Request, trusted_hops: u32) -> Option<Vec<u8>> {
    // Several x-forwarded-for headers read as one comma-separated list.
    let values = request.header_values("x-forwarded-for");
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let entry = std::str::from_utf8(http::forwarded_for(&values, trusted_hops)?).ok()?;
    canonical_ip(entry).map(String::into_bytes)
}

fn cookie_value(request: &dyn Request, name: &str) -> Option<Vec<u8>> {
    let values = request.header_values("cookie");
    http::cookie(values.iter().map(Vec::as_slice), name)
        .first()
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::request;
    use crate::request::HeaderList;

    fn key(parts: &[KeyPart], headers: &[(&str, &str)], source: Option<&str>) -> Key {
        build(parts, &request(headers, source))
    }

    fn one(part: KeyPart, headers: &[(&str, &str)], source: Option<&str>) -> Option<Vec<u8>> {
        part_value(&part, &request(headers, source))
    }

    #[test]
    fn the_client_address_drops_the_port_and_is_canonical() {
        let addr = |s| one(KeyPart::ClientAddress, &[], Some(s));
        assert_eq!(addr("10.0.0.1:5555"), Some(b"10.0.0.1".to_vec()));
        assert_eq!(addr("[2001:db8:0::1]:80"), Some(b"2001:db8::1".to_vec()));
        assert_eq!(addr("[::ffff:10.0.0.1]:80"), Some(b"10.0.0.1".to_vec()));
        assert_eq!(addr("/run/envoy.sock"), Some(b"/run/envoy.sock".to_vec()));
        assert_eq!(one(KeyPart::ClientAddress, &[], None), None);
    }

    #[test]
    fn x_forwarded_for_trusts_only_the_configured_hops() {
        let xff = |hops, header: &str| {
            one(
                KeyPart::ForwardedFor { trusted_hops: hops },
                &[("x-forwarded-for", header)],
                Some("192.0.2.9:1000"),
            )
        };
        // The client may write anything at the left; the proxies append at the right.
        let header = "6.6.6.6, 203.0.113.7, 198.51.100.2";
        assert_eq!(xff(1, header), Some(b"198.51.100.2".to_vec()));
        assert_eq!(xff(2, header), Some(b"203.0.113.7".to_vec()));
        // Fewer addresses than trusted hops, or garbage there: the connection's peer.
        assert_eq!(xff(4, header), Some(b"192.0.2.9".to_vec()));
        assert_eq!(xff(1, "10.0.0.1, not-an-ip"), Some(b"192.0.2.9".to_vec()));
        // Several headers are one list.
        let two = one(
            KeyPart::ForwardedFor { trusted_hops: 2 },
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
            ],
            None,
        );
        assert_eq!(two, Some(b"1.1.1.1".to_vec()));
    }

    #[test]
    fn query_parameters_are_percent_decoded_so_spellings_share_a_bucket() {
        let q = |path| one(KeyPart::Query("api_key".into()), &[(":path", path)], None);
        assert_eq!(q("/x?a=1&api_key=abc"), Some(b"abc".to_vec()));
        assert_eq!(q("/x?api%5Fkey=%61bc"), Some(b"abc".to_vec()));
        assert_eq!(q("/x?api_key=%zz%4"), Some(b"%zz%4".to_vec()));
        // An empty value is none, so `missing_key` decides (meshward_shared::http's rule).
        assert_eq!(q("/x?api_key"), None);
        assert_eq!(q("/x?api_key=&api_key=abc"), Some(b"abc".to_vec()));
        assert_eq!(q("/x?other=1"), None);
        assert_eq!(q("/x"), None);
    }

    #[test]
    fn cookies_are_found_among_several_headers() {
        let c = |headers: &[(&str, &str)]| one(KeyPart::Cookie("session".into()), headers, None);
        assert_eq!(
            c(&[("cookie", "a=1; session=s1; b=2")]),
            Some(b"s1".to_vec())
        );
        assert_eq!(
            c(&[("cookie", "a=1"), ("cookie", "session=s2")]),
            Some(b"s2".to_vec())
        );
        assert_eq!(c(&[("cookie", "sessionx=1")]), None);
    }

    #[test]
    fn parts_cannot_run_into_each_other() {
        let parts = [KeyPart::Header("a".into()), KeyPart::Header("b".into())];
        let k1 = key(&parts, &[("a", "xy"), ("b", "z")], None);
        let k2 = key(&parts, &[("a", "x"), ("b", "yz")], None);
        assert_ne!(k1.bytes, k2.bytes);
        assert!(!k1.incomplete);
    }

    #[test]
    fn a_missing_part_is_marked_and_differs_from_an_empty_one() {
        let parts = [KeyPart::Header("x-api-key".into())];
        let missing = key(&parts, &[], None);
        let empty = key(&parts, &[("x-api-key", "")], None);
        assert!(missing.incomplete);
        assert!(!empty.incomplete);
        assert_ne!(missing.bytes, empty.bytes);
    }

    #[test]
    fn path_and_method_keys() {
        let parts = [KeyPart::Method, KeyPart::Path];
        let a = key(&parts, &[(":method", "GET"), (":path", "/a?x=1")], None);
        let b = key(&parts, &[(":method", "GET"), (":path", "/a?x=2")], None);
        assert_eq!(a, b);
        assert!(build(&[], &HeaderList::default()).bytes.is_empty());
    }
}
