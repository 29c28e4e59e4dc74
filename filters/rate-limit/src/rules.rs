//! Which requests a rule applies to: host, path (exact, prefix or regex) and method.
//! Every condition given must hold; a rule with no conditions applies to every request.

use crate::request::Request;
use regex::bytes::Regex;

/// A host condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// This host exactly (lowercase).
    Exact(String),
    /// Any host ending in this suffix, which starts with a dot (`*.example.com`).
    Suffix(String),
}

/// A path condition, on the path without its query string.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// This path exactly.
    Exact(String),
    /// Paths starting with this.
    Prefix(String),
    /// Paths the regex matches in full (as Envoy's `safe_regex` does).
    Regex(Regex),
}

/// What a rule applies to.
#[derive(Clone, Debug, Default)]
pub struct Match {
    /// Any of these hosts; empty: any host.
    pub hosts: Vec<HostPattern>,
    /// The path condition, if any.
    pub path: Option<PathMatch>,
    /// Any of these methods (uppercase); empty: any method.
    pub methods: Vec<String>,
}

impl Match {
    /// Whether `request` meets every condition.
    pub fn matches(&self, request: &dyn Request) -> bool {
        self.host_matches(request) && self.path_matches(request) && self.method_matches(request)
    }

    fn host_matches(&self, request: &dyn Request) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let Some(host) = request.host() else {
            return false;
        };
        self.hosts.iter().any(|pattern| match pattern {
            HostPattern::Exact(name) => host == *name,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        })
    }

    fn path_matches(&self, request: &dyn Request) -> bool {
        let Some(condition) = &self.path else {
            return true;
        };
        let path = request.path();
        match condition {
            PathMatch::Exact(p) => path == p.as_bytes(),
            PathMatch::Prefix(p) => path.starts_with(p.as_bytes()),
            PathMatch::Regex(re) => re.is_match(&path),
        }
    }

    fn method_matches(&self, request: &dyn Request) -> bool {
        if self.methods.is_empty() {
            return true;
        }
        let method = request.method();
        self.methods.iter().any(|m| m.as_bytes() == method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::request;
    use crate::request::HeaderList;

    fn get(host: &str, path: &str) -> HeaderList {
        request(
            &[(":authority", host), (":path", path), (":method", "GET")],
            None,
        )
    }

    #[test]
    fn an_empty_match_applies_to_everything() {
        assert!(Match::default().matches(&get("a", "/")));
        assert!(Match::default().matches(&HeaderList::default()));
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard_suffix_ignoring_case_and_port() {
        let m = Match {
            hosts: vec![
                HostPattern::Exact("api.example.com".into()),
                HostPattern::Suffix(".internal".into()),
            ],
            ..Match::default()
        };
        assert!(m.matches(&get("API.example.com:443", "/")));
        assert!(m.matches(&get("svc.internal", "/")));
        assert!(!m.matches(&get(".internal", "/")));
        assert!(!m.matches(&get("example.com", "/")));
        assert!(!m.matches(&HeaderList::default()));
    }

    #[test]
    fn paths_match_exactly_by_prefix_or_by_a_full_regex_ignoring_the_query() {
        let with = |path| Match {
            path: Some(path),
            ..Match::default()
        };
        let exact = with(PathMatch::Exact("/login".into()));
        assert!(exact.matches(&get("h", "/login?next=/")));
        assert!(!exact.matches(&get("h", "/login/x")));
        let prefix = with(PathMatch::Prefix("/api/".into()));
        assert!(prefix.matches(&get("h", "/api/v1")));
        assert!(!prefix.matches(&get("h", "/apix")));
        let regex = with(PathMatch::Regex(Regex::new(r"^(?:/users/\d+)$").unwrap()));
        assert!(regex.matches(&get("h", "/users/42?x")));
        assert!(!regex.matches(&get("h", "/users/42/posts")));
    }

    #[test]
    fn methods_match_any_of_the_list() {
        let m = Match {
            methods: vec!["POST".into(), "PUT".into()],
            ..Match::default()
        };
        let with_method = |method| request(&[(":method", method)], None);
        assert!(m.matches(&with_method("PUT")));
        assert!(!m.matches(&with_method("GET")));
    }
}
