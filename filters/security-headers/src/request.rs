//! What the filter remembers from a request: which policy it selects and whether it came
//! over HTTPS. Worked out once from the request's headers as the adapter offers them.

use crate::config::{Config, Policy};
use crate::path_match;
use meshward_shared::matching::RequestView;

/// The facts about a request that decide its response headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The matching override's index, or `None` for the top-level headers.
    pub override_index: Option<usize>,
    /// Whether the request came over HTTPS; `None` when nothing says.
    pub https: Option<bool>,
}

impl RequestFacts {
    /// Works out the facts from the request's headers (read only for the overrides' match;
    /// `None` when there are none), the scheme (`:scheme` or the `request.scheme` property)
    /// and `x-forwarded-proto`, which counts only when the config trusts it. Any of them may
    /// be missing, for example on a reply Envoy sent before the request reached this filter:
    /// that request gets the top-level headers.
    pub fn learn(
        config: &Config,
        request: Option<&dyn RequestView>,
        scheme: Option<&str>,
        forwarded_proto: Option<&str>,
    ) -> RequestFacts {
        let override_index = request.and_then(|request| {
            path_match::select(config.overrides.iter().map(|o| &o.matcher), request)
        });
        let forwarded = forwarded_proto
            .filter(|_| config.trust_x_forwarded_proto)
            // Each proxy on the way may append; the first entry is the client's hop.
            .and_then(|list| list.split(',').next())
            .map(str::trim)
            .filter(|proto| !proto.is_empty());
        let https = forwarded
            .or(scheme)
            .map(|proto| proto.eq_ignore_ascii_case("https"));
        RequestFacts {
            override_index,
            https,
        }
    }

    /// The policy these facts select.
    pub fn policy<'a>(&self, config: &'a Config) -> &'a Policy {
        self.override_index
            .and_then(|i| config.overrides.get(i))
            .map_or(&config.base, |o| &o.policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        Config::parse(json.as_bytes()).unwrap()
    }

    const DOCS: &str = r#"{"overrides": [{"match": {"path": {"prefix": "/docs/"}}, "headers": {"x_frame_options": {"mode": "off"}}}]"#;

    #[test]
    fn the_path_selects_an_override_and_anything_else_the_top_level() {
        let c = config(&format!("{DOCS}}}"));
        let path = |p: &str| vec![(":path".to_string(), p.as_bytes().to_vec())];
        let docs = RequestFacts::learn(&c, Some(&path("/docs/a?b")), None, None);
        assert_eq!(docs.override_index, Some(0));
        assert!(std::ptr::eq(docs.policy(&c), &c.overrides[0].policy));
        let (app, tricky, none) = (
            path("/app"),
            path("/docs/../app"),
            Vec::<meshward_shared::pairs::Pair>::new(),
        );
        let others: [Option<&dyn RequestView>; 4] = [Some(&app), Some(&tricky), Some(&none), None];
        for other in others {
            let facts = RequestFacts::learn(&c, other, None, None);
            assert_eq!(facts.override_index, None);
            assert!(std::ptr::eq(facts.policy(&c), &c.base));
        }
    }

    #[test]
    fn the_scheme_says_whether_the_request_came_over_https() {
        let c = config("{}");
        let https = |scheme| RequestFacts::learn(&c, None, scheme, Some("https")).https;
        assert_eq!(https(Some("https")), Some(true));
        assert_eq!(https(Some("HTTPS")), Some(true));
        assert_eq!(
            https(Some("http")),
            Some(false),
            "x-forwarded-proto is ignored unless trusted"
        );
        assert_eq!(https(None), None);
    }

    #[test]
    fn a_trusted_x_forwarded_proto_wins_over_the_scheme() {
        let c = config(r#"{"trust_x_forwarded_proto": true}"#);
        let https = |scheme, xfp| RequestFacts::learn(&c, None, scheme, xfp).https;
        assert_eq!(https(Some("http"), Some("https")), Some(true));
        assert_eq!(https(Some("https"), Some("http")), Some(false));
        assert_eq!(https(Some("http"), Some("https, http")), Some(true));
        assert_eq!(
            https(Some("http"), Some(" ")),
            Some(false),
            "an empty header falls back to the scheme"
        );
        assert_eq!(https(None, None), None);
    }
}
