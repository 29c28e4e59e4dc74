//! What the filter reads of a request, as plain values: its headers and the connection's
//! client address. Matching and keys work on this, so they are tested without a proxy.

use meshward_shared::pairs::Pair;

/// A request as the filter sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The request headers, pseudo-headers (`:path`, `:method`, `:authority`) included.
    pub headers: Vec<Pair>,
    /// The connection's peer address (Envoy's `source.address`), port included.
    pub source_address: Option<String>,
}

impl Request {
    /// Every value of header `name`, in order.
    pub fn header_values<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_values(name).next()
    }

    /// The path without its query string.
    pub fn path(&self) -> &[u8] {
        let full = self.header(":path").unwrap_or_default();
        match full.iter().position(|&b| b == b'?') {
            Some(at) => full.get(..at).unwrap_or(full),
            None => full,
        }
    }

    /// The query string, without the `?`.
    pub fn query(&self) -> Option<&[u8]> {
        let full = self.header(":path")?;
        let at = full.iter().position(|&b| b == b'?')?;
        full.get(at + 1..)
    }

    /// The method.
    pub fn method(&self) -> &[u8] {
        self.header(":method").unwrap_or_default()
    }

    /// The host, lowercase, without a port or trailing dot.
    pub fn host(&self) -> Option<String> {
        let raw = self.header(":authority").or_else(|| self.header("host"))?;
        let raw = std::str::from_utf8(raw).ok()?;
        let host = if let Some(rest) = raw.strip_prefix('[') {
            // An IPv6 literal: `[::1]:8080`.
            rest.split(']').next().unwrap_or(rest)
        } else {
            match raw.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => raw,
            }
        };
        Some(host.trim_end_matches('.').to_ascii_lowercase())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request with these headers and peer address.
    pub(crate) fn request(headers: &[(&str, &str)], source: Option<&str>) -> Request {
        Request {
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
        assert_eq!(r.query(), Some(&b"x=1&y=2"[..]));
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
        assert_eq!(request(&[], None).host(), None);
    }
}
