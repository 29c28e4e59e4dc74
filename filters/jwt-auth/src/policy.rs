//! Authorization rules: which requests need which providers' tokens, and which claims those
//! tokens must carry. The first rule whose match fits the request applies.

use crate::claims::{self, Claims};
use serde_json::Value;

/// A host a rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lowercase, no port).
    Exact(String),
    /// Any subdomain of this suffix, written `*.example.com` (stored as `.example.com`).
    Suffix(String),
}

/// How a rule matches the path (the part of `:path` before `?`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PathMatch {
    /// Any path.
    #[default]
    Any,
    /// Paths starting with this string, byte for byte (as Envoy's route `prefix`).
    Prefix(String),
    /// Exactly this path.
    Exact(String),
}

/// What a request must look like for a rule to apply. Empty lists match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matcher {
    /// Hosts; empty for any.
    pub hosts: Vec<HostPattern>,
    /// The path.
    pub path: PathMatch,
    /// Methods, uppercase; empty for any.
    pub methods: Vec<String>,
}

/// Whether one of a rule's providers suffices or all are needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// A valid token from any one provider.
    #[default]
    Any,
    /// A valid token from every provider.
    All,
}

/// A test on one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimCheck {
    /// The claim equals this JSON value.
    Equals(Value),
    /// The claim equals one of these values.
    OneOf(Vec<Value>),
    /// The claim is an array holding this value (a lone string counts as a one-item array).
    Contains(Value),
    /// The claim (a space-delimited string as OAuth's `scope`, or an array of strings)
    /// includes every one of these scopes.
    Scopes(Vec<String>),
}

/// A claim a token must carry.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimRequirement {
    /// The claim's path, outermost key first.
    pub path: Vec<String>,
    /// Only this provider's token is considered (index into the providers); `None`: any
    /// verified token may satisfy it.
    pub provider: Option<usize>,
    /// The test.
    pub check: ClaimCheck,
}

/// What a matching request needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Requirement {
    /// No token is looked at: the request passes (spoofed claim headers still removed).
    Ignore,
    /// Tokens are verified.
    Verify {
        /// Providers (indices into the configuration's providers), in order.
        providers: Vec<usize>,
        /// Any or all of them.
        mode: Mode,
        /// Whether a request without any token passes (a token that is present must
        /// still be valid).
        allow_missing: bool,
        /// Claims the verified tokens must carry.
        claims: Vec<ClaimRequirement>,
    },
}

/// A rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// When it applies.
    pub matcher: Matcher,
    /// What it requires.
    pub requirement: Requirement,
}

/// The parts of a request rules look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority`, possibly with a port.
    pub host: &'a str,
    /// `:path`, possibly with a query.
    pub path: &'a str,
}

impl Matcher {
    /// Whether the request fits.
    pub fn matches(&self, request: &RequestInfo<'_>) -> bool {
        let path = request
            .path
            .split_once('?')
            .map_or(request.path, |(p, _)| p);
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
        };
        let method_ok = self.methods.is_empty() || self.methods.iter().any(|m| m == request.method);
        path_ok && method_ok && (self.hosts.is_empty() || self.host_matches(request.host))
    }

    fn host_matches(&self, authority: &str) -> bool {
        let host = strip_port(authority).to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        self.hosts.iter().any(|pattern| match pattern {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        })
    }
}

/// `example.com:8443` → `example.com`; IPv6 literals keep their brackets.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .and_then(|end| authority.get(..=end))
            .unwrap_or(authority);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// The first rule matching `request`.
pub fn select<'r>(rules: &'r [Rule], request: &RequestInfo<'_>) -> Option<&'r Rule> {
    rules.iter().find(|rule| rule.matcher.matches(request))
}

/// Whether the request is a CORS preflight, which browsers send without credentials and
/// which must pass untouched for the real request to be attempted.
pub fn is_cors_preflight(method: &str, has_origin: bool, has_request_method: bool) -> bool {
    method == "OPTIONS" && has_origin && has_request_method
}

impl ClaimCheck {
    /// Whether `value` (the claim, if present) passes.
    pub fn holds(&self, value: Option<&Value>) -> bool {
        let Some(value) = value else {
            return false;
        };
        match self {
            ClaimCheck::Equals(expected) => value == expected,
            ClaimCheck::OneOf(options) => options.contains(value),
            ClaimCheck::Contains(item) => match value {
                Value::Array(items) => items.contains(item),
                single @ Value::String(_) => single == item,
                _ => false,
            },
            ClaimCheck::Scopes(required) => {
                let granted: Vec<&str> = match value {
                    Value::String(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    _ => return false,
                };
                required
                    .iter()
                    .all(|scope| granted.contains(&scope.as_str()))
            }
        }
    }
}

/// The first requirement none of the verified tokens meets. `verified` pairs a provider
/// index with that provider's verified claims.
pub fn unmet<'r>(
    requirements: &'r [ClaimRequirement],
    verified: &[(usize, &Claims)],
) -> Option<&'r ClaimRequirement> {
    requirements.iter().find(|requirement| {
        !verified.iter().any(|(provider, claims)| {
            requirement.provider.is_none_or(|p| p == *provider)
                && requirement
                    .check
                    .holds(claims::lookup(claims, &requirement.path))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(method: &'a str, host: &'a str, path: &'a str) -> RequestInfo<'a> {
        RequestInfo { method, host, path }
    }

    #[test]
    fn matches_host_path_and_method_together() {
        let matcher = Matcher {
            hosts: vec![HostPattern::Exact("api.example.com".into())],
            path: PathMatch::Prefix("/admin".into()),
            methods: vec!["POST".into()],
        };
        assert!(matcher.matches(&request("POST", "api.example.com", "/admin/users?x=1")));
        assert!(matcher.matches(&request("POST", "API.Example.com:443", "/admin")));
        assert!(!matcher.matches(&request("GET", "api.example.com", "/admin")));
        assert!(!matcher.matches(&request("POST", "www.example.com", "/admin")));
        assert!(!matcher.matches(&request("POST", "api.example.com", "/public/admin")));
    }

    #[test]
    fn the_query_string_is_not_part_of_the_path() {
        let matcher = Matcher {
            path: PathMatch::Exact("/health".into()),
            ..Matcher::default()
        };
        assert!(matcher.matches(&request("GET", "h", "/health?verbose")));
        assert!(!matcher.matches(&request("GET", "h", "/healthz")));
    }

    #[test]
    fn wildcard_hosts_match_subdomains_only() {
        let matcher = Matcher {
            hosts: vec![HostPattern::Suffix(".example.com".into())],
            ..Matcher::default()
        };
        assert!(matcher.matches(&request("GET", "a.example.com", "/")));
        assert!(matcher.matches(&request("GET", "a.b.example.com.", "/")));
        assert!(!matcher.matches(&request("GET", "example.com", "/")));
        assert!(!matcher.matches(&request("GET", "badexample.com", "/")));
    }

    #[test]
    fn ports_and_ipv6_literals_are_handled() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.com"), "a.com");
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rule = |prefix: &str, requirement| Rule {
            matcher: Matcher {
                path: PathMatch::Prefix(prefix.into()),
                ..Matcher::default()
            },
            requirement,
        };
        let rules = vec![
            rule("/public", Requirement::Ignore),
            rule(
                "/",
                Requirement::Verify {
                    providers: vec![0],
                    mode: Mode::Any,
                    allow_missing: false,
                    claims: vec![],
                },
            ),
        ];
        assert_eq!(
            select(&rules, &request("GET", "h", "/public/x"))
                .unwrap()
                .requirement,
            Requirement::Ignore
        );
        assert_ne!(
            select(&rules, &request("GET", "h", "/private"))
                .unwrap()
                .requirement,
            Requirement::Ignore
        );
        assert!(select(&rules[..1], &request("GET", "h", "/private")).is_none());
    }

    #[test]
    fn claim_checks_compare_json_values() {
        let eq = ClaimCheck::Equals(json!("ann"));
        assert!(eq.holds(Some(&json!("ann"))));
        assert!(!eq.holds(Some(&json!(["ann"]))));
        assert!(!eq.holds(None));
        let one_of = ClaimCheck::OneOf(vec![json!(1), json!(2)]);
        assert!(one_of.holds(Some(&json!(2))));
        assert!(!one_of.holds(Some(&json!("2"))));
        let contains = ClaimCheck::Contains(json!("admins"));
        assert!(contains.holds(Some(&json!(["staff", "admins"]))));
        assert!(contains.holds(Some(&json!("admins"))));
        assert!(!contains.holds(Some(&json!(["staff"]))));
        assert!(!contains.holds(Some(&json!({ "admins": true }))));
    }

    #[test]
    fn scopes_are_space_delimited_or_an_array() {
        let needs = ClaimCheck::Scopes(vec!["read".into(), "write".into()]);
        assert!(needs.holds(Some(&json!("openid read  write"))));
        assert!(needs.holds(Some(&json!(["write", "read"]))));
        assert!(!needs.holds(Some(&json!("read"))));
        assert!(!needs.holds(Some(&json!("readwrite"))));
        assert!(!needs.holds(Some(&json!(7))));
    }

    #[test]
    fn a_requirement_is_met_by_any_verified_token_unless_tied_to_a_provider() {
        let a = json!({ "role": "admin" });
        let b = json!({ "role": "user" });
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        let requirement = |provider| ClaimRequirement {
            path: vec!["role".into()],
            provider,
            check: ClaimCheck::Equals(json!("admin")),
        };
        let reqs = [requirement(None)];
        assert!(unmet(&reqs, &[(0, a), (1, b)]).is_none());
        let reqs = [requirement(Some(1))];
        assert_eq!(unmet(&reqs, &[(0, a), (1, b)]), Some(&reqs[0]));
        assert_eq!(unmet(&reqs, &[]), Some(&reqs[0]));
    }

    #[test]
    fn only_options_with_origin_and_request_method_is_a_preflight() {
        assert!(is_cors_preflight("OPTIONS", true, true));
        assert!(!is_cors_preflight("OPTIONS", true, false));
        assert!(!is_cors_preflight("OPTIONS", false, true));
        assert!(!is_cors_preflight("GET", true, true));
    }
}
