//! Where a token is found (a header with a prefix, a query parameter, a cookie) and how it
//! is taken out of the request when it is not forwarded.
//!
//! A source that carries two tokens (two `Authorization` headers, a parameter or cookie
//! given twice) is ambiguous: proxies and applications may each pick a different one, so
//! the request is refused rather than guessed at.

use meshward_shared::http::{self, Lookup};
use std::borrow::Cow;

/// A request header as the filter reads it: its name (lowercase) and value, lent by the
/// request's header snapshot, so no header is copied to be read.
pub type Header<'a> = (&'a str, &'a [u8]);

/// Where a provider looks for its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header (lowercase name); the value must start with `prefix`, matched
    /// without regard to ASCII case (`Bearer ` by default for `authorization`).
    Header {
        /// The header name.
        name: String,
        /// The text before the token; may be empty.
        prefix: String,
    },
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
}

/// Why a request's token cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceError {
    /// The source holds more than one value.
    Ambiguous,
    /// The value is not text.
    NotText,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceError::Ambiguous => "the request carries more than one token in the same place",
            SourceError::NotText => "the token is not text",
        })
    }
}

/// A token found in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// The token: lent by the request, unless percent-decoding a query parameter made it.
    pub token: Cow<'a, str>,
    /// Which of the provider's sources held it (index into its list).
    pub source: usize,
}

/// Every token `sources` find in the request, in the order of `sources`: each source is
/// read, not only the first that holds a token, so that no token reaches the upstream
/// unchecked. A source holding two values is an error.
pub fn extract_all<'a>(
    sources: &[TokenSource],
    headers: &[Header<'a>],
    path: &'a str,
) -> Result<Vec<Found<'a>>, SourceError> {
    let mut found = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let token = match source {
            TokenSource::Header { name, prefix } => from_header(headers, name, prefix)?,
            TokenSource::Query(name) => from_query(path, name)?,
            TokenSource::Cookie(name) => from_cookies(headers, name)?,
        };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            found.push(Found {
                token,
                source: index,
            });
        }
    }
    Ok(found)
}

fn only_one<T>(mut values: impl Iterator<Item = T>) -> Result<Option<T>, SourceError> {
    let first = values.next();
    if values.next().is_some() {
        return Err(SourceError::Ambiguous);
    }
    Ok(first)
}

fn from_header<'a>(
    headers: &[Header<'a>],
    name: &str,
    prefix: &str,
) -> Result<Option<Cow<'a, str>>, SourceError> {
    let Some(value) = only_one(headers.iter().filter(|(k, _)| *k == name).map(|(_, v)| *v))? else {
        return Ok(None);
    };
    let value = std::str::from_utf8(value).map_err(|_| SourceError::NotText)?;
    let starts = value
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
    if !starts {
        // Another scheme (`Basic …`) is not this provider's token.
        return Ok(None);
    }
    Ok(value
        .get(prefix.len()..)
        .map(|rest| Cow::Borrowed(rest.trim_matches(' '))))
}

fn from_query<'a>(path: &'a str, name: &str) -> Result<Option<Cow<'a, str>>, SourceError> {
    let query = http::split_path(path.as_bytes()).1.unwrap_or_default();
    match http::query_param(query, name) {
        Lookup::Absent => Ok(None),
        // A token is base64url text: bytes that decode to anything else fail verification.
        Lookup::One(value) => Ok(Some(Cow::Owned(
            String::from_utf8_lossy(&value).into_owned(),
        ))),
        Lookup::Repeated { .. } => Err(SourceError::Ambiguous),
    }
}

fn cookie_headers<'h, 'a>(headers: &'h [Header<'a>]) -> impl Iterator<Item = &'a [u8]> + 'h {
    headers
        .iter()
        .filter(|(k, _)| *k == "cookie")
        .map(|(_, v)| *v)
}

fn from_cookies<'a>(
    headers: &[Header<'a>],
    name: &str,
) -> Result<Option<Cow<'a, str>>, SourceError> {
    match http::cookie(cookie_headers(headers), name) {
        Lookup::Absent => Ok(None),
        Lookup::One(value) => std::str::from_utf8(value)
            .map(|v| Some(Cow::Borrowed(v)))
            .map_err(|_| SourceError::NotText),
        Lookup::Repeated { .. } => Err(SourceError::Ambiguous),
    }
}

/// `path` without the query parameters `names` (the tokens', when they are not
/// forwarded).
pub fn without_query_params(path: &str, names: &[&str]) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let key = http::percent_decode(key.as_bytes());
            !pair.is_empty() && !names.iter().any(|name| name.as_bytes() == key.as_ref())
        })
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// The `cookie` header value with the cookies `names` removed, from all `cookie` headers
/// joined, each other cookie as it was sent; `None` when no cookie is left.
pub fn without_cookies(headers: &[Header<'_>], names: &[&str]) -> Option<Vec<u8>> {
    let kept: Vec<&[u8]> = http::cookies(cookie_headers(headers))
        .filter(|c| !names.iter().any(|name| name.as_bytes() == c.name))
        .map(|c| c.pair)
        .collect();
    (!kept.is_empty()).then(|| kept.join(&b"; "[..]))
}

/// Whether the request carries a cookie named `name`, empty or not.
pub fn has_cookie(headers: &[Header<'_>], name: &str) -> bool {
    http::cookies(cookie_headers(headers)).any(|c| c.name == name.as_bytes())
}

/// Owned headers lent as the adapter lends the snapshot's, for tests.
#[cfg(test)]
pub(crate) fn lend(headers: &[meshward_shared::pairs::Pair]) -> Vec<Header<'_>> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(list: &[(&'a str, &'a str)]) -> Vec<Header<'a>> {
        list.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
    }

    fn bearer() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }

    fn found(token: &str, source: usize) -> Vec<Found<'_>> {
        vec![Found {
            token: token.into(),
            source,
        }]
    }

    fn extract<'a>(
        sources: &[TokenSource],
        headers: &[Header<'a>],
        path: &'a str,
    ) -> Result<Vec<Found<'a>>, SourceError> {
        extract_all(sources, headers, path)
    }

    #[test]
    fn reads_a_bearer_token_in_any_case() {
        for value in ["Bearer abc", "bearer abc", "BEARER   abc "] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                extract(&[bearer()], &h, "/"),
                Ok(found("abc", 0)),
                "{value}"
            );
        }
    }

    #[test]
    fn another_scheme_or_an_empty_token_is_no_token() {
        for value in [
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "Bearer",
            "Bearer   ",
            "Bearerabc",
        ] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(extract(&[bearer()], &h, "/"), Ok(vec![]), "{value}");
        }
    }

    #[test]
    fn two_authorization_headers_are_ambiguous() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(extract(&[bearer()], &h, "/"), Err(SourceError::Ambiguous));
    }

    #[test]
    fn a_header_that_is_not_utf8_is_refused() {
        let h = vec![("authorization", &b"Bearer \xff"[..])];
        assert_eq!(extract(&[bearer()], &h, "/"), Err(SourceError::NotText));
    }

    #[test]
    fn every_source_is_read_in_the_configured_order() {
        let sources = [
            TokenSource::Header {
                name: "x-token".into(),
                prefix: String::new(),
            },
            TokenSource::Query("access_token".into()),
            TokenSource::Cookie("jwt".into()),
        ];
        let h = headers(&[
            ("cookie", "a=1; jwt=from-cookie"),
            ("x-token", "from-header"),
        ]);
        let all = |pairs: &[(&str, usize)]| -> Vec<Found> {
            pairs
                .iter()
                .map(|(t, s)| Found {
                    token: t.to_string().into(),
                    source: *s,
                })
                .collect()
        };
        assert_eq!(
            extract(&sources, &h, "/?access_token=from-query"),
            Ok(all(&[
                ("from-header", 0),
                ("from-query", 1),
                ("from-cookie", 2)
            ]))
        );
        let h = headers(&[("cookie", "a=1; jwt=from-cookie")]);
        assert_eq!(
            extract(&sources, &h, "/?other=1"),
            Ok(found("from-cookie", 2))
        );
        assert_eq!(extract(&sources, &[], "/"), Ok(vec![]));
    }

    #[test]
    fn repeated_query_parameters_and_cookies_are_ambiguous() {
        let q = [TokenSource::Query("t".into())];
        assert_eq!(extract(&q, &[], "/?t=a&t=b"), Err(SourceError::Ambiguous));
        assert_eq!(extract(&q, &[], "/?t=a%2Eb"), Ok(found("a.b", 0)));
        let c = [TokenSource::Cookie("jwt".into())];
        let h = headers(&[("cookie", "jwt=a"), ("cookie", "jwt=b")]);
        assert_eq!(extract(&c, &h, "/"), Err(SourceError::Ambiguous));
    }

    #[test]
    fn removes_only_the_token_parameters() {
        assert_eq!(without_query_params("/a?t=x&b=2", &["t"]), "/a?b=2");
        assert_eq!(without_query_params("/a?b=2&t=x", &["t"]), "/a?b=2");
        assert_eq!(without_query_params("/a?t=x", &["t"]), "/a");
        assert_eq!(without_query_params("/a?tt=x", &["t"]), "/a?tt=x");
        assert_eq!(without_query_params("/a", &["t"]), "/a");
        assert_eq!(
            without_query_params("/a?t=x&b=2&u=y", &["t", "u"]),
            "/a?b=2"
        );
    }

    #[test]
    fn removes_only_the_token_cookies() {
        let h = headers(&[("cookie", "a=1; jwt=x"), ("cookie", "b=2; alt=y")]);
        assert_eq!(
            without_cookies(&h, &["jwt"]).as_deref(),
            Some(&b"a=1; b=2; alt=y"[..])
        );
        assert_eq!(
            without_cookies(&h, &["jwt", "alt"]).as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        let h = headers(&[("cookie", "jwt=x")]);
        assert_eq!(without_cookies(&h, &["jwt"]), None);
        assert!(has_cookie(&h, "jwt"));
        assert!(!has_cookie(&h, "jw"));
    }

    #[test]
    fn a_query_token_with_broken_escapes_is_kept_as_sent() {
        // meshward_shared::http keeps a malformed escape; bytes that are not UTF-8 become
        // U+FFFD, which no token holds, so such a token fails verification.
        let token = |path| from_query(path, "jwt").unwrap();
        assert_eq!(token("/?jwt=%"), Some("%".into()));
        assert_eq!(token("/?jwt=%zz%41"), Some("%zzA".into()));
        assert_eq!(token("/?jwt=%ff"), Some("\u{fffd}".into()));
    }

    #[test]
    fn non_utf8_cookies_of_others_survive_the_token_cookie_removal() {
        let h = vec![("cookie", &b"jwt=x; pref=\xff\xfe"[..])];
        assert_eq!(
            without_cookies(&h, &["jwt"]),
            Some(b"pref=\xff\xfe".to_vec())
        );
    }

    #[test]
    fn an_empty_or_repeated_token_cookie_or_parameter() {
        let c = |cookie| from_cookies(&headers(&[("cookie", cookie)]), "jwt");
        assert_eq!(c("jwt="), Ok(None));
        assert_eq!(c("jwt=\"a.b.c\""), Ok(Some("a.b.c".into())));
        assert_eq!(c("jwt=a; jwt="), Err(SourceError::Ambiguous));
        assert_eq!(from_query("/?jwt=", "jwt"), Ok(None));
        assert_eq!(
            from_query("/?jwt=&jwt=a", "jwt"),
            Err(SourceError::Ambiguous)
        );
    }
}
