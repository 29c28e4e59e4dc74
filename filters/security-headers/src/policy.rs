//! The decision for one response: given the config, what the request told us and the
//! response's headers, the edits to make. Pure: the adapter reads and applies.

use crate::config::Config;
use crate::request::RequestFacts;

/// One change to the response headers. Names and values borrow from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Set `name` to `value`, replacing any value it had.
    Set {
        /// Lowercase header name.
        name: &'a str,
        /// The value to send.
        value: &'a str,
    },
    /// Remove every value of this header.
    Remove(&'a str),
}

/// Media types a browser may render as a document that runs scripts: a CSP matters there.
const DOCUMENT_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
];

/// The edits for one response. `response` is `None` when its headers could not be read: then
/// nothing is removed and `keep_upstream` headers are left alone, since the upstream may have
/// sent them.
///
/// The headers are any list of (name, value) pairs: the adapter lends them straight from
/// the host's bytes (a [`meshward_shared::snapshot::HeaderSnapshot`]), without copies.
pub fn decide<'a, K: AsRef<str>, V: AsRef<[u8]>>(
    config: &'a Config,
    facts: &RequestFacts,
    response: Option<&[(K, V)]>,
) -> Vec<Edit<'a>> {
    let policy = facts.policy(config);
    let headers = response.unwrap_or_default();
    let mut edits = Vec::with_capacity(policy.rules.len() + 2);
    for (name, _) in headers {
        if let Some(name) = config.remove.find(name.as_ref()) {
            let edit = Edit::Remove(name);
            if !edits.contains(&edit) {
                edits.push(edit);
            }
        }
    }
    let present = |name: &str| response.is_none_or(|_| find(headers, name).is_some());
    let document = is_document(find(headers, "content-type"));
    for rule in &policy.rules {
        let skip = (rule.https_only && facts.https != Some(true))
            || (rule.html_only && !document)
            || (rule.keep_upstream && present(rule.name));
        if !skip {
            edits.push(Edit::Set {
                name: rule.name,
                value: &rule.value,
            });
        }
    }
    edits
}

fn find<'h, K: AsRef<str>, V: AsRef<[u8]>>(headers: &'h [(K, V)], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

/// Whether a response with this Content-Type may be a document. A response without one
/// counts as a document: browsers sniff its type.
fn is_document(content_type: Option<&[u8]>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let media_type = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or(value)
        .trim_ascii();
    DOCUMENT_TYPES
        .iter()
        .any(|t| media_type.eq_ignore_ascii_case(t.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::pairs::Pair;

    /// A response without headers.
    const EMPTY: &[Pair] = &[];

    fn config(json: &str) -> Config {
        Config::parse(json.as_bytes()).unwrap()
    }

    fn response(headers: &[(&str, &str)]) -> Vec<Pair> {
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn sets<'a>(edits: &[Edit<'a>]) -> Vec<&'a str> {
        edits
            .iter()
            .filter_map(|e| match e {
                Edit::Set { name, .. } => Some(*name),
                Edit::Remove(_) => None,
            })
            .collect()
    }

    fn removes<'a>(edits: &[Edit<'a>]) -> Vec<&'a str> {
        edits
            .iter()
            .filter_map(|e| match e {
                Edit::Remove(name) => Some(*name),
                Edit::Set { .. } => None,
            })
            .collect()
    }

    const HTTPS: RequestFacts = RequestFacts {
        override_index: None,
        https: Some(true),
    };

    #[test]
    fn a_plain_response_gets_every_default_header_and_loses_its_leaks() {
        let c = config("{}");
        let upstream = response(&[
            (":status", "200"),
            ("content-type", "text/html; charset=utf-8"),
            ("server", "nginx/1.25.3"),
            ("x-powered-by", "PHP/8.3"),
            ("x-powered-by", "again"),
            ("x-envoy-upstream-service-time", "3"),
        ]);
        let edits = decide(&c, &HTTPS, Some(&upstream));
        assert_eq!(
            removes(&edits),
            ["server", "x-powered-by", "x-envoy-upstream-service-time"]
        );
        assert_eq!(sets(&edits).len(), 12);
        assert!(edits.contains(&Edit::Set {
            name: "x-frame-options",
            value: "DENY"
        }));
    }

    #[test]
    fn keep_upstream_leaves_the_applications_own_value() {
        let c = config("{}");
        let with_csp = response(&[("content-security-policy", "script-src 'nonce-r4nd0m'")]);
        assert!(!sets(&decide(&c, &HTTPS, Some(&with_csp))).contains(&"content-security-policy"));
        assert!(sets(&decide(&c, &HTTPS, Some(EMPTY))).contains(&"content-security-policy"));
    }

    #[test]
    fn overwrite_replaces_the_upstreams_value() {
        let c = config("{}");
        let weak = response(&[
            ("x-frame-options", "ALLOWALL"),
            ("x-xss-protection", "1; mode=block"),
        ]);
        let edits = decide(&c, &HTTPS, Some(&weak));
        assert!(edits.contains(&Edit::Set {
            name: "x-frame-options",
            value: "DENY"
        }));
        assert!(edits.contains(&Edit::Set {
            name: "x-xss-protection",
            value: "0"
        }));
    }

    #[test]
    fn https_only_hsts_is_sent_only_when_the_request_is_known_to_be_https() {
        let c = config(r#"{"headers": {"strict_transport_security": {"https_only": true}}}"#);
        let hsts = |https| {
            let facts = RequestFacts {
                override_index: None,
                https,
            };
            sets(&decide(&c, &facts, Some(EMPTY))).contains(&"strict-transport-security")
        };
        assert!(hsts(Some(true)));
        assert!(!hsts(Some(false)));
        assert!(!hsts(None));
        let always = config("{}");
        let plain = RequestFacts {
            override_index: None,
            https: Some(false),
        };
        assert!(sets(&decide(&always, &plain, Some(EMPTY))).contains(&"strict-transport-security"));
    }

    #[test]
    fn html_only_csp_goes_on_documents_and_untyped_responses_only() {
        let c = config(r#"{"headers": {"content_security_policy": {"html_only": true}}}"#);
        let csp = |content_type: Option<&str>| {
            let headers = response(
                &content_type
                    .map(|t| ("content-type", t))
                    .into_iter()
                    .collect::<Vec<_>>(),
            );
            sets(&decide(&c, &HTTPS, Some(&headers))).contains(&"content-security-policy")
        };
        assert!(csp(Some("text/html")));
        assert!(csp(Some("TEXT/HTML ; charset=utf-8")));
        assert!(csp(Some("application/xhtml+xml")));
        assert!(csp(Some("image/svg+xml")));
        assert!(csp(None));
        assert!(!csp(Some("application/json")));
        assert!(!csp(Some("text/plain")));
        assert!(!csp(Some("text/htmlx")));
    }

    #[test]
    fn report_only_sends_the_report_only_header() {
        let c = config(r#"{"headers": {"content_security_policy": {"report_only": true}}}"#);
        let names = sets(&decide(&c, &HTTPS, Some(EMPTY)));
        assert!(names.contains(&"content-security-policy-report-only"));
        assert!(!names.contains(&"content-security-policy"));
    }

    #[test]
    fn an_override_changes_only_its_paths() {
        let c = config(
            r#"{"overrides": [{"match": {"path": {"prefix": "/docs/"}}, "headers": {
                "content_security_policy": {"mode": "overwrite", "value": "default-src 'self' https:"}}}]}"#,
        );
        let path = |p: &str| vec![(":path".to_string(), p.as_bytes().to_vec())];
        let docs = RequestFacts::learn(&c, Some(&path("/docs/x")), Some("https"), None);
        assert!(decide(&c, &docs, Some(EMPTY)).contains(&Edit::Set {
            name: "content-security-policy",
            value: "default-src 'self' https:"
        }));
        let app = RequestFacts::learn(&c, Some(&path("/app")), Some("https"), None);
        assert!(decide(&c, &app, Some(EMPTY)).contains(&Edit::Set {
            name: "content-security-policy",
            value: crate::headers::DEFAULT_CSP
        }));
    }

    #[test]
    fn unreadable_response_headers_still_get_the_overwrite_headers() {
        let c = config("{}");
        let edits = decide(&c, &HTTPS, None::<&[Pair]>);
        assert!(removes(&edits).is_empty());
        let names = sets(&edits);
        assert!(names.contains(&"x-content-type-options"));
        assert!(
            !names.contains(&"content-security-policy"),
            "keep_upstream cannot tell, so leaves it"
        );
    }

    #[test]
    fn removal_matches_names_in_any_case() {
        let c = config("{}");
        let edits = decide(&c, &HTTPS, Some(&response(&[("Server", "x")])));
        assert_eq!(removes(&edits), ["server"]);
    }
}
