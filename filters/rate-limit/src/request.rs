//! What the filter reads of a request: headers by name and the connection's client
//! address. Matching and keys ask through the [`Request`] trait, so the adapter fetches
//! only the headers some rule needs, and tests use a plain [`HeaderList`].

use meshward_shared::http;
use meshward_shared::pairs::Pair;

/// A request as the filter sees it.
pub trait Request {
    /// The first value of header `name` (lowercase; pseudo-headers such as `:path`).
    fn header(&self, name: &str) -> Option<Vec<u8>>;

    /// Every value of header `name`, in order.
    fn header_values(&self, name: &str) -> Vec<Vec<u8>>;

    /// The connection's peer address (Envoy's `source.address`), port included.
    fn source_address(&self) -> Option<String>;

    /// The path without its query string.
    fn path(&self) -> Vec<u8> {
        let full = self.header(":path").unwrap_or_default();
        http::split_path(&full).0.to_vec()
    }

    /// The query string, without the `?` (and without a `#` fragment).
    fn query(&self) -> Option<Vec<u8>> {
        let full = self.header(":path")?;
        http::split_path(&full).1.map(<[u8]>::to_vec)
    }

    /// The method.
    fn method(&self) -> Vec<u8> {
        self.header(":method").unwrap_or_default()
    }

    /// The host, lowercase, without a port or trailing dot.
    fn host(&self) -> Option<String> {
        let raw = self.header(":authority").or_else(|| self.header("host"))?;
        let raw = String::from_utf8(raw).ok()?;
        let host = if let Some(rest) = raw.strip_prefix('[') {
            // An IPv6 literal: `[::1]:8080`.
            rest.split(']').next().unwrap_or(rest)
        } else {
            match raw.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => &raw,
            }
        };
        Some(host.trim_end_matches('.').to_ascii_lowercase())
    }
}

/// A request given as a list of headers and a peer address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderList {
    /// The request headers, pseudo-headers (`:path`, `:method`, `:authority`) included.
    pub headers: Vec<Pair>,
    /// The connection's peer address, port included.
    pub source_address: Option<String>,
}

impl Request for HeaderList {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn source_address(&self) -> Option<String> {
        self.source_address.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request with these headers and peer address.
    pub(crate) fn request(headers: &[(&str, &str)], source: Option<&str>) -> HeaderList {
        HeaderList {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            source_address: source.map(str::to_string),
        }
    }

    #[test]
    fn splits_the_path_from_its_query() {
        let r = request(&[(":path", "/a/b?x=1&y=2")], None);
        assert_eq!(r.path(), b"/a/b");
        assert_eq!(r.query(), Some(b"x=1&y=2".to_vec()));
        let r = request(&[(":path", "/plain")], None);
        assert_eq!(r.path(), b"/plain");
        assert_eq!(r.query(), None);
    }

    #[test]
    fn the_host_is_lowercase_without_its_port() {
        let host = |h| request(&[(":authority", h)], None).host();
        assert_eq!(
            host("API.Example.com:8443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host("[::1]").as_deref(), Some("::1"));
        assert_eq!(HeaderList::default().host(), None);
    }

    #[test]
    fn every_value_of_a_repeated_header_is_kept_in_order() {
        let r = request(&[("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")], None);
        assert_eq!(r.header("cookie"), Some(b"a=1".to_vec()));
        assert_eq!(
            r.header_values("cookie"),
            vec![b"a=1".to_vec(), b"b=2".to_vec()]
        );
    }
}
