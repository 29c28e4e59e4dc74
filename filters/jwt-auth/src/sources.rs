//! Where a token is found (a header with a prefix, a query parameter, a cookie) and how it
//! is taken out of the request when it is not forwarded.
//!
//! A source that carries two tokens (two `Authorization` headers, a parameter or cookie
//! given twice) is ambiguous: proxies and applications may each pick a different one, so
//! the request is refused rather than guessed at.

use meshward_shared::pairs::Pair;

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
pub struct Found {
    /// The token.
    pub token: String,
    /// Which of the provider's sources held it (index into its list).
    pub source: usize,
}

/// Every token `sources` find in the request, in the order of `sources`: each source is
/// read, not only the first that holds a token, so that no token reaches the upstream
/// unchecked. A source holding two values is an error.
pub fn extract_all(
    sources: &[TokenSource],
    headers: &[Pair],
    path: &str,
) -> Result<Vec<Found>, SourceError> {
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

fn from_header(headers: &[Pair], name: &str, prefix: &str) -> Result<Option<String>, SourceError> {
    let Some(value) = only_one(headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v))? else {
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
        .map(|rest| rest.trim_matches(' ').to_string()))
}

/// The query string's `name=value` pairs, percent-decoded; `+` is left alone (a JWT never
/// holds one, and treating it as a space would only corrupt tokens).
fn query_pairs(path: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(name), percent_decode(value))
    })
}

fn from_query(path: &str, name: &str) -> Result<Option<String>, SourceError> {
    only_one(query_pairs(path).filter(|(k, _)| k == name).map(|(_, v)| v))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|&h| char::from(h).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every `name=value` cookie across all `cookie` headers (HTTP/2 may split them).
fn cookies(headers: &[Pair]) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .filter(|(k, _)| k == "cookie")
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

fn from_cookies(headers: &[Pair], name: &str) -> Result<Option<String>, SourceError> {
    let value = only_one(cookies(headers).filter(|(k, _)| *k == name).map(|(_, v)| v))?;
    Ok(value.map(|v| v.trim_matches('"').to_string()))
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
            !pair.is_empty() && !names.contains(&percent_decode(key).as_str())
        })
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// The `cookie` header value with the cookies `names` removed, from all `cookie` headers
/// joined; `None` when no cookie is left.
pub fn without_cookies(headers: &[Pair], names: &[&str]) -> Option<String> {
    let kept: Vec<String> = cookies(headers)
        .filter(|(k, _)| !names.contains(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Whether the request carries a cookie named `name`.
pub fn has_cookie(headers: &[Pair], name: &str) -> bool {
    cookies(headers).any(|(k, _)| k == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Vec<Pair> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn bearer() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }

    fn found(token: &str, source: usize) -> Vec<Found> {
        vec![Found {
            token: token.into(),
            source,
        }]
    }

    fn extract(
        sources: &[TokenSource],
        headers: &[Pair],
        path: &str,
    ) -> Result<Vec<Found>, SourceError> {
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
        let h = vec![("authorization".to_string(), b"Bearer \xff".to_vec())];
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
                    token: t.to_string(),
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
            Some("a=1; b=2; alt=y")
        );
        assert_eq!(
            without_cookies(&h, &["jwt", "alt"]).as_deref(),
            Some("a=1; b=2")
        );
        let h = headers(&[("cookie", "jwt=x")]);
        assert_eq!(without_cookies(&h, &["jwt"]), None);
        assert!(has_cookie(&h, "jwt"));
        assert!(!has_cookie(&h, "jw"));
    }

    #[test]
    fn percent_decoding_never_panics_on_broken_escapes() {
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
