//! What the client is told: `Retry-After`, the IETF `RateLimit-Policy` and `RateLimit`
//! fields (draft-ietf-httpapi-ratelimit-headers-11) and Envoy's `X-RateLimit-*` form,
//! all computed from the bucket itself.

use crate::bucket::Limit;
use crate::config::{ResponseHeaders, Rule};
use meshward_shared::time::whole_seconds_until;
use std::time::Duration;

/// A header to send: name and value.
pub type Header = (&'static str, String);

/// Whole seconds, rounded up: a client that waits this long finds a token.
pub fn seconds(wait: Duration) -> u64 {
    whole_seconds_until(Duration::ZERO, wait)
}

/// The policy item of a rule: `"<rule>";q=<tokens per window>;w=<window seconds>`, with
/// `;meshward-burst=<capacity>` when the burst differs from the quota. The window is the
/// refill period rounded up to whole seconds, as the draft allows no fractions.
pub fn policy_item(name: &str, limit: &Limit) -> String {
    let period = limit.period().as_nanos();
    let window = period.div_ceil(1_000_000_000).max(1);
    let quota = u128::from(limit.refill()) * window * 1_000_000_000 / period;
    let mut item = format!("\"{name}\";q={quota};w={window}");
    if u128::from(limit.capacity()) != quota {
        item.push_str(&format!(";meshward-burst={}", limit.capacity()));
    }
    item
}

/// The service-limit item of a rule: `"<rule>";r=<remaining>;t=<seconds>`, `t` being the
/// seconds until the bucket gains its next token.
pub fn limit_item(name: &str, remaining: u64, next_token_in: Duration) -> String {
    format!("\"{name}\";r={remaining};t={}", seconds(next_token_in))
}

/// The headers of a refusal by `rule`.
pub fn refusal_headers(
    rule: &Rule,
    retry_after: Duration,
    options: &ResponseHeaders,
) -> Vec<Header> {
    let wait = seconds(retry_after);
    let mut headers = vec![("retry-after", wait.to_string())];
    let Some(local) = &rule.local else {
        return headers;
    };
    if options.ietf {
        headers.push(("ratelimit-policy", policy_item(&rule.name, &local.limit)));
        headers.push(("ratelimit", limit_item(&rule.name, 0, retry_after)));
    }
    if options.x_ratelimit {
        headers.extend(x_ratelimit(&local.limit, 0, wait));
    }
    headers
}

/// A rule's local bucket that let a request through, with what it had left.
#[derive(Clone, Copy, Debug)]
pub struct Allowance<'a> {
    /// The rule's name.
    pub name: &'a str,
    /// Its bucket's limit.
    pub limit: &'a Limit,
    /// Whole tokens left.
    pub remaining: u64,
    /// Time until the next token.
    pub next_token_in: Duration,
}

/// The headers of a response that was let through by `allowances` (enforced rules only:
/// shadow rules are not shown to clients). The `X-RateLimit-*` form has room for one rule:
/// the one with the fewest tokens left.
pub fn allowed_headers(allowances: &[Allowance<'_>], options: &ResponseHeaders) -> Vec<Header> {
    let mut headers = Vec::new();
    if allowances.is_empty() {
        return headers;
    }
    if options.ietf {
        let policies: Vec<String> = allowances
            .iter()
            .map(|a| policy_item(a.name, a.limit))
            .collect();
        let limits: Vec<String> = allowances
            .iter()
            .map(|a| limit_item(a.name, a.remaining, a.next_token_in))
            .collect();
        headers.push(("ratelimit-policy", policies.join(", ")));
        headers.push(("ratelimit", limits.join(", ")));
    }
    if options.x_ratelimit {
        if let Some(tightest) = allowances.iter().min_by_key(|a| a.remaining) {
            headers.extend(x_ratelimit(
                tightest.limit,
                tightest.remaining,
                seconds(tightest.next_token_in),
            ));
        }
    }
    headers
}

fn x_ratelimit(limit: &Limit, remaining: u64, reset: u64) -> [Header; 3] {
    [
        ("x-ratelimit-limit", limit.capacity().to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn rule(limit: &str) -> Rule {
        let json = format!(r#"{{"rules":[{{"name":"api","limit":{limit}}}]}}"#);
        parse(json.as_bytes()).unwrap().rules.remove(0)
    }

    fn all() -> ResponseHeaders {
        ResponseHeaders {
            ietf: true,
            x_ratelimit: true,
            on_allowed: true,
        }
    }

    #[test]
    fn a_refusal_says_when_to_retry_in_every_form() {
        let r = rule(r#"{"capacity":100,"per":"1m"}"#);
        let headers = refusal_headers(&r, Duration::from_millis(4200), &all());
        assert_eq!(
            headers,
            vec![
                ("retry-after", "5".to_string()),
                ("ratelimit-policy", "\"api\";q=100;w=60".to_string()),
                ("ratelimit", "\"api\";r=0;t=5".to_string()),
                ("x-ratelimit-limit", "100".to_string()),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset", "5".to_string()),
            ]
        );
        let only_retry = ResponseHeaders {
            ietf: false,
            x_ratelimit: false,
            on_allowed: false,
        };
        assert_eq!(
            refusal_headers(&r, Duration::from_secs(1), &only_retry).len(),
            1
        );
    }

    #[test]
    fn policies_state_the_quota_per_whole_second_window_and_a_different_burst() {
        let limit = |json| rule(json).local.unwrap().limit;
        assert_eq!(
            policy_item("a", &limit(r#"{"capacity":50,"refill":10,"per":"1s"}"#)),
            "\"a\";q=10;w=1;meshward-burst=50"
        );
        assert_eq!(
            policy_item("a", &limit(r#"{"capacity":10,"per":"500ms"}"#)),
            "\"a\";q=20;w=1;meshward-burst=10"
        );
        assert_eq!(
            policy_item("a", &limit(r#"{"capacity":1,"per":"1h"}"#)),
            "\"a\";q=1;w=3600"
        );
    }

    #[test]
    fn allowed_responses_list_every_enforced_rule_and_the_tightest_in_x_form() {
        let a = rule(r#"{"capacity":10,"per":"1s"}"#).local.unwrap().limit;
        let b = rule(r#"{"capacity":1000,"per":"1h"}"#).local.unwrap().limit;
        let allowances = [
            Allowance {
                name: "api",
                limit: &a,
                remaining: 7,
                next_token_in: Duration::from_millis(100),
            },
            Allowance {
                name: "hourly",
                limit: &b,
                remaining: 3,
                next_token_in: Duration::from_secs(3),
            },
        ];
        let headers = allowed_headers(&allowances, &all());
        assert_eq!(headers[0].1, "\"api\";q=10;w=1, \"hourly\";q=1000;w=3600");
        assert_eq!(headers[1].1, "\"api\";r=7;t=1, \"hourly\";r=3;t=3");
        assert_eq!(headers[2], ("x-ratelimit-limit", "1000".to_string()));
        assert_eq!(headers[3], ("x-ratelimit-remaining", "3".to_string()));
        assert!(allowed_headers(&[], &all()).is_empty());
    }
}
