//! Authorization rules: which requests need which providers' tokens, and which claims those
//! tokens must carry. The first rule whose match fits the request applies.

use crate::claims::{self, Claims};
use meshward_shared::config::NonEmpty;
use meshward_shared::matching::{RequestMatch, RequestView};
use serde::Deserialize;
use serde_json::Value;

/// Whether one of a rule's providers suffices or all are needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A valid token from any one provider.
    #[default]
    Any,
    /// A valid token from every provider.
    All,
}

/// A test on one claim, configured as `{"equals": ...}`, `{"one_of": [...]}`,
/// `{"contains": ...}` or `{"scopes": [...]}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimCheck {
    /// The claim equals this JSON value.
    Equals(Value),
    /// The claim equals one of these values.
    #[serde(deserialize_with = "NonEmpty::deserialize_vec")]
    OneOf(Vec<Value>),
    /// The claim is an array holding this value (a lone string counts as a one-item array).
    Contains(Value),
    /// The claim (a space-delimited string as OAuth's `scope`, or an array of strings)
    /// includes every one of these scopes.
    #[serde(deserialize_with = "NonEmpty::deserialize_vec")]
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
    pub matcher: RequestMatch,
    /// What it requires.
    pub requirement: Requirement,
}

/// The first rule matching `request`.
pub fn select<'r>(rules: &'r [Rule], request: &(impl RequestView + ?Sized)) -> Option<&'r Rule> {
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
    use meshward_shared::config::RequestPath;
    use meshward_shared::matching::PathMatch;
    use meshward_shared::pairs::Pair;
    use serde_json::json;

    fn request(method: &str, path: &str) -> Vec<Pair> {
        vec![
            (":method".to_string(), method.as_bytes().to_vec()),
            (":path".to_string(), path.as_bytes().to_vec()),
        ]
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rule = |prefix: &str, requirement| Rule {
            matcher: RequestMatch {
                path: Some(PathMatch::Prefix(RequestPath::parse(prefix).unwrap())),
                ..RequestMatch::default()
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
            select(&rules, request("GET", "/public/x").as_slice())
                .unwrap()
                .requirement,
            Requirement::Ignore
        );
        assert_ne!(
            select(&rules, request("GET", "/private").as_slice())
                .unwrap()
                .requirement,
            Requirement::Ignore
        );
        assert!(select(&rules[..1], request("GET", "/private").as_slice()).is_none());
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
