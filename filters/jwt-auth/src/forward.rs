//! What an allowed request carries upstream: claims copied to headers, the payload as a
//! header, and the token removed when it is not forwarded. Incoming copies of every header
//! the filter sets are removed first, so a client cannot forge them.

use crate::cache::Verified;
use crate::claims;
use crate::sources::{self, Header, TokenSource};

/// A claim copied to a request header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHeader {
    /// The claim's path, outermost key first.
    pub path: Vec<String>,
    /// The header to set.
    pub header: String,
}

/// What a provider passes upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Claims copied to headers.
    pub claims_to_headers: Vec<ClaimHeader>,
    /// The header that gets the payload segment (base64url JSON), if any.
    pub payload_header: Option<String>,
    /// Whether the token stays in the request.
    pub keep_token: bool,
}

impl Forwarding {
    /// Every header this provider may set.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.claims_to_headers
            .iter()
            .map(|c| c.header.as_str())
            .chain(self.payload_header.as_deref())
    }
}

/// One change to the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Remove every value of a header.
    Remove(String),
    /// Set a header, replacing any value.
    Set(String, String),
    /// Replace `:path` (to drop the token's query parameter).
    SetPath(String),
    /// Replace the `cookie` header (to drop the token's cookie); `None` removes it.
    SetCookie(Option<Vec<u8>>),
}

/// The claim and payload headers for a token `verified` by a provider with `forwarding`.
pub fn claim_edits(forwarding: &Forwarding, verified: &Verified) -> Vec<Edit> {
    let mut out = Vec::new();
    for claim in &forwarding.claims_to_headers {
        let value = claims::lookup(&verified.claims, &claim.path).and_then(claims::header_value);
        if let Some(value) = value {
            out.push(Edit::Set(claim.header.clone(), value));
        }
    }
    if let Some(header) = &forwarding.payload_header {
        out.push(Edit::Set(header.clone(), verified.payload_segment.clone()));
    }
    out
}

/// The edits that take the tokens at `locations` out of the request: each header removed,
/// the query parameters dropped from `:path` in one rewrite, the cookies dropped from
/// `cookie` in one. Only what the request holds is edited.
pub fn strip(locations: &[&TokenSource], headers: &[Header<'_>], path: &str) -> Vec<Edit> {
    let mut out = Vec::new();
    let mut queries: Vec<&str> = Vec::new();
    let mut cookies: Vec<&str> = Vec::new();
    for location in locations {
        match location {
            TokenSource::Header { name, .. } => {
                let edit = Edit::Remove(name.clone());
                if headers.iter().any(|(k, _)| k == name) && !out.contains(&edit) {
                    out.push(edit);
                }
            }
            TokenSource::Query(name) => queries.push(name),
            TokenSource::Cookie(name) => cookies.push(name),
        }
    }
    if !queries.is_empty() {
        let stripped = sources::without_query_params(path, &queries);
        if stripped != path {
            out.push(Edit::SetPath(stripped));
        }
    }
    if cookies
        .iter()
        .any(|name| sources::has_cookie(headers, name))
    {
        out.push(Edit::SetCookie(sources::without_cookies(headers, &cookies)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Times;
    use serde_json::json;

    fn verified() -> Verified {
        Verified {
            claims: json!({ "sub": "ann", "org": { "id": "acme" }, "groups": ["a", "b"], "evil": "x\r\ny: z" })
                .as_object()
                .unwrap()
                .clone(),
            times: Times::default(),
            payload_segment: "eyJzdWIiOiJhbm4ifQ".into(),
        }
    }

    fn claim(path: &[&str], header: &str) -> ClaimHeader {
        ClaimHeader {
            path: path.iter().map(|s| s.to_string()).collect(),
            header: header.into(),
        }
    }

    fn bearer() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }

    #[test]
    fn copies_claims_by_path_and_joins_arrays() {
        let forwarding = Forwarding {
            claims_to_headers: vec![
                claim(&["sub"], "x-sub"),
                claim(&["org", "id"], "x-org"),
                claim(&["groups"], "x-groups"),
                claim(&["absent"], "x-absent"),
                claim(&["evil"], "x-evil"),
            ],
            payload_header: Some("x-payload".into()),
            keep_token: true,
        };
        assert_eq!(
            claim_edits(&forwarding, &verified()),
            vec![
                Edit::Set("x-sub".into(), "ann".into()),
                Edit::Set("x-org".into(), "acme".into()),
                Edit::Set("x-groups".into(), "a,b".into()),
                Edit::Set("x-payload".into(), "eyJzdWIiOiJhbm4ifQ".into()),
            ]
        );
    }

    #[test]
    fn strips_every_token_location_the_request_holds_in_one_edit_each() {
        let query = TokenSource::Query("t".into());
        let query2 = TokenSource::Query("u".into());
        let cookie = TokenSource::Cookie("jwt".into());
        let cookie2 = TokenSource::Cookie("alt".into());
        let headers = vec![
            ("authorization".to_string(), b"Bearer x".to_vec()),
            ("cookie".to_string(), b"jwt=x; theme=dark; alt=y".to_vec()),
        ];
        assert_eq!(
            strip(
                &[&bearer(), &query, &cookie, &query2, &cookie2, &bearer()],
                &sources::lend(&headers),
                "/a?t=x&b=1&u=y"
            ),
            vec![
                Edit::Remove("authorization".into()),
                Edit::SetPath("/a?b=1".into()),
                Edit::SetCookie(Some(b"theme=dark".to_vec())),
            ]
        );
        // Nothing to take out: no edit, no host call.
        assert_eq!(strip(&[&bearer(), &query, &cookie], &[], "/a?b=1"), vec![]);
        let only = vec![("cookie", &b"jwt=x"[..])];
        assert_eq!(strip(&[&cookie], &only, "/"), vec![Edit::SetCookie(None)]);
    }
}
