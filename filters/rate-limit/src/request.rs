//! What the filter reads of a request: headers by name and the connection's client
//! address. Matching and keys ask through the [`Request`] trait, so the adapter fetches
//! only the headers some rule needs, and tests use a plain [`HeaderList`].

use meshward_shared::http;
use meshward_shared::matching::{self, RequestView};
use meshward_shared::pairs::Pair;
use std::borrow::Cow;

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
}

/// The shared matcher ([`meshward_shared::matching`]) reads a request through this.
impl RequestView for dyn Request + '_ {
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        Request::header(self, name).map(Cow::Owned)
    }

    fn joined(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        let values = self.header_values(name);
        matching::join(values.iter().map(Vec::as_slice)).map(|v| Cow::Owned(v.into_owned()))
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
    fn every_value_of_a_repeated_header_is_kept_in_order() {
        let r = request(&[("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")], None);
        assert_eq!(r.header("cookie"), Some(b"a=1".to_vec()));
        assert_eq!(
            r.header_values("cookie"),
            vec![b"a=1".to_vec(), b"b=2".to_vec()]
        );
    }
}
