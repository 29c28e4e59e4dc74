//! Global mode: which rules ask the rate limit service about a request, the descriptor each
//! one sends, and what the service's answer (or the lack of one) means. Pure: it takes the
//! request, the local verdict, the gRPC event and the time it took, and returns decisions.

use crate::config::{Config, FailureMode, Global, MissingKey, Mode, Rule};
use crate::keys::{self, KeyPart};
use crate::limiter::{Outcome, Verdict};
use crate::metrics::RuleMetrics;
use crate::request::Request;
use crate::rls::{Code, RateLimitRequest, RateLimitResponse};
use meshward_shared::host::Status;
use meshward_shared::metrics::Counter;
use meshward_shared::GrpcEvent;
use std::time::Duration;

/// The gRPC status Envoy gives both a timed-out call and a refused connection.
pub const GRPC_UNAVAILABLE: u32 = 14;

/// A call to make: rule `rule` asks its service with `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The rule's index.
    pub rule: usize,
    /// The encoded `RateLimitRequest`.
    pub message: Vec<u8>,
}

/// A header from the service, checked: a lowercase HTTP token and a value without CR, LF
/// or NUL.
pub type Header = (String, Vec<u8>);

/// What the service said, or why it said nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Under the limit: the request goes on.
    Ok {
        /// Headers to add to the request upstream.
        request_headers: Vec<Header>,
        /// Headers to add to the response.
        response_headers: Vec<Header>,
    },
    /// Over the limit.
    OverLimit {
        /// Headers to add to the refusal (a `retry-after` among them is dropped when
        /// `retry_after` is known).
        response_headers: Vec<Header>,
        /// When the over-limit descriptor's window resets, if the service said.
        retry_after: Option<Duration>,
    },
    /// No usable answer; the rule's `failure_mode` decides.
    Failed(Failure),
}

/// Why there is no answer, one kind per metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Status 14 once the timeout had (nearly) passed.
    Timeout,
    /// Status 14 before the timeout: the service could not be reached.
    Unreachable,
    /// Any other gRPC status.
    Error {
        /// The gRPC status code.
        status: u32,
        /// Its message.
        message: String,
    },
    /// The host refused to start the call (the cluster is not one it knows).
    UnknownCluster(Status),
    /// The service answered something that is not a usable `RateLimitResponse`.
    BadReply(String),
}

impl Failure {
    /// Its counter among `metrics` (`global_failed_<kind>`).
    pub fn counter(&self, metrics: &RuleMetrics) -> Counter {
        match self {
            Failure::Timeout => metrics.global.global_failed_timeout,
            Failure::Unreachable => metrics.global.global_failed_unreachable,
            Failure::Error { .. } => metrics.global.global_failed_error,
            Failure::UnknownCluster(_) => metrics.global.global_failed_unknown_cluster,
            Failure::BadReply(_) => metrics.global.global_failed_bad_reply,
        }
    }

    /// The metric suffix: `global_failed_<kind>`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::Error { .. } => "error",
            Failure::UnknownCluster(_) => "unknown_cluster",
            Failure::BadReply(_) => "bad_reply",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => write!(f, "the rate limit service did not answer in time"),
            Failure::Unreachable => write!(f, "the rate limit service could not be reached"),
            Failure::Error { status, message } => {
                write!(f, "the rate limit service failed: gRPC status {status} {message:?}")
            }
            Failure::UnknownCluster(status) => write!(
                f,
                "the proxy refused the call to the rate limit service ({status}): is the cluster defined?"
            ),
            Failure::BadReply(why) => {
                write!(f, "the rate limit service's answer is unusable: {why}")
            }
        }
    }
}

/// The name a key part has in the descriptor.
pub fn entry_key(part: &KeyPart) -> String {
    match part {
        KeyPart::ClientAddress | KeyPart::ForwardedFor { .. } => "remote_address".into(),
        KeyPart::Header(name) => name.clone(),
        KeyPart::Path => "path".into(),
        KeyPart::Method => "method".into(),
        KeyPart::Query(name) => format!("query.{name}"),
        KeyPart::Cookie(name) => format!("cookie.{name}"),
    }
}

/// The descriptor `rule` sends for `request`: `("rule", name)`, then one entry per key
/// part. `None` when part of the key is missing and the rule skips such requests; with
/// `missing_key: share` the entry goes with an empty value. Bytes that are not UTF-8 are
/// replaced, as protobuf strings must be UTF-8.
pub fn descriptor(rule: &Rule, request: &dyn Request) -> Option<Vec<(String, String)>> {
    let mut entries = Vec::with_capacity(rule.key.len() + 1);
    entries.push(("rule".to_string(), rule.name.clone()));
    for part in &rule.key {
        let value = match keys::part_value(part, request) {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None if rule.missing_key == MissingKey::Skip => return None,
            None => String::new(),
        };
        entries.push((entry_key(part), value));
    }
    Some(entries)
}

/// The encoded request for one descriptor.
pub fn message(global: &Global, entries: Vec<(String, String)>) -> Vec<u8> {
    RateLimitRequest {
        domain: global.domain.clone(),
        descriptors: vec![entries],
        hits_addend: global.hits_addend,
    }
    .encode()
}

/// The calls to make for `request`, once the local rules let it through (`verdict` has no
/// refusal). A rule with a local bucket asks the service only for requests its bucket
/// allowed (or let through because the bucket could not be reached): a request the bucket
/// refuses, even in shadow mode, is never counted globally.
/// What a rule's service answer does to the request. The policy of a local rule's
/// ([`crate::limiter::fails_closed`]) in global form: a shadow rule never refuses; an
/// enforced one refuses when over the limit, and on a failure only under
/// `global.failure_mode: deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Under the limit.
    Allowed,
    /// Over the limit, let through: the rule is in shadow mode.
    ShadowLimited,
    /// Over the limit: refused (429).
    Limited,
    /// No answer, under `failure_mode: deny` (the request is refused, 503, unless the rule
    /// is in shadow mode: see [`Effect::refuses`]).
    FailedClosed,
    /// No answer, under `failure_mode: allow`: let through.
    FailedOpen,
}

impl Effect {
    /// True if the request is refused.
    pub fn refuses(self, rule: &Rule) -> bool {
        match self {
            Effect::Limited => true,
            Effect::FailedClosed => rule.mode == Mode::Enforce,
            Effect::Allowed | Effect::ShadowLimited | Effect::FailedOpen => false,
        }
    }
}

/// The [`Effect`] of `answer` from `service`, the service of `rule`.
pub fn effect(rule: &Rule, service: &Global, answer: &Answer) -> Effect {
    match answer {
        Answer::Ok { .. } => Effect::Allowed,
        Answer::OverLimit { .. } if rule.mode == Mode::Shadow => Effect::ShadowLimited,
        Answer::OverLimit { .. } => Effect::Limited,
        Answer::Failed(_) if service.failure_mode == FailureMode::Deny => Effect::FailedClosed,
        Answer::Failed(_) => Effect::FailedOpen,
    }
}

pub fn plan(config: &Config, request: &dyn Request, verdict: &Verdict) -> Vec<Call> {
    let mut calls = Vec::new();
    for (index, rule) in config.rules.iter().enumerate() {
        let Some(global) = &rule.global else {
            continue;
        };
        let passes = if rule.local.is_some() {
            verdict.results.iter().any(|r| {
                r.rule == index && matches!(r.outcome, Outcome::Allowed { .. } | Outcome::Failed(_))
            })
        } else {
            rule.applies_to(request)
        };
        if !passes {
            continue;
        }
        if let Some(entries) = descriptor(rule, request) {
            calls.push(Call {
                rule: index,
                message: message(global, entries),
            });
        }
    }
    calls
}

/// Whether a status 14 after `elapsed` is the call's own timeout firing: Envoy's timer
/// fires at the deadline, so a margin of a tenth of the timeout (at most 5 ms) covers the
/// clock's granularity and still tells a refused connection (which fails at once) apart.
pub fn timed_out(elapsed: Option<Duration>, timeout: Duration) -> bool {
    let margin = (timeout / 10).min(Duration::from_millis(5));
    elapsed.is_some_and(|e| e + margin >= timeout)
}

/// What a gRPC event on the call means. `elapsed` is the time since the call was made
/// (`None` if the clock could not tell).
pub fn answer(event: &GrpcEvent, elapsed: Option<Duration>, timeout: Duration) -> Answer {
    match event {
        GrpcEvent::Message(bytes) => match reply(bytes) {
            Ok(answer) => answer,
            Err(why) => Answer::Failed(Failure::BadReply(why)),
        },
        GrpcEvent::Close { status: 0, .. } => {
            Answer::Failed(Failure::BadReply("the call ended without a message".into()))
        }
        GrpcEvent::Close {
            status: GRPC_UNAVAILABLE,
            ..
        } if timed_out(elapsed, timeout) => Answer::Failed(Failure::Timeout),
        GrpcEvent::Close {
            status: GRPC_UNAVAILABLE,
            ..
        } => Answer::Failed(Failure::Unreachable),
        GrpcEvent::Close { status, message } => Answer::Failed(Failure::Error {
            status: *status,
            message: message.clone(),
        }),
    }
}

fn reply(bytes: &[u8]) -> Result<Answer, String> {
    let response = RateLimitResponse::decode(bytes).map_err(|e| e.to_string())?;
    let headers = |list: Vec<(String, Vec<u8>)>, which: &str| {
        list.into_iter()
            .map(|(name, value)| checked_header(name, value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| format!("{which}: {why}"))
    };
    match response.overall_code {
        Code::Ok => Ok(Answer::Ok {
            request_headers: headers(response.request_headers_to_add, "request_headers_to_add")?,
            response_headers: headers(response.response_headers_to_add, "response_headers_to_add")?,
        }),
        Code::OverLimit => {
            let retry_after = response
                .statuses
                .iter()
                .filter(|s| s.code == Code::OverLimit)
                .filter_map(|s| s.duration_until_reset)
                .max();
            let mut response_headers =
                headers(response.response_headers_to_add, "response_headers_to_add")?;
            if retry_after.is_some() {
                response_headers.retain(|(name, _)| name != "retry-after");
            }
            Ok(Answer::OverLimit {
                response_headers,
                retry_after,
            })
        }
        Code::Unknown => Err("overall_code is UNKNOWN".into()),
        Code::Other(n) => Err(format!("overall_code {n} is not a known code")),
    }
}

/// A service's header, lowercased as Envoy stores names, or why it cannot be sent.
fn checked_header(name: String, value: Vec<u8>) -> Result<Header, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("{name:?} is not a header name"));
    }
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("the value of {name:?} holds CR, LF or NUL"));
    }
    Ok((name.to_ascii_lowercase(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::limiter;
    use crate::request::tests::request;
    use crate::rls::DescriptorStatus;
    use meshward_shared::shared_data::MemoryStore;

    const TIMEOUT: Duration = Duration::from_millis(20);

    fn config(json: &str) -> Config {
        parse(json.as_bytes()).unwrap()
    }

    fn sent(call: &Call) -> RateLimitRequest {
        RateLimitRequest::decode(&call.message).unwrap()
    }

    fn plan_for(c: &Config, headers: &[(&str, &str)], store: &mut MemoryStore) -> Vec<Call> {
        let mut all = vec![(":method", "GET"), (":path", "/a/b?page=2")];
        all.extend_from_slice(headers);
        let r = request(&all, Some("[::ffff:10.0.0.9]:5000"));
        let verdict = limiter::check(c, &r, || Some(0), store);
        assert_eq!(verdict.refusal, None);
        plan(c, &r, &verdict)
    }

    #[test]
    fn an_answer_refuses_by_the_rules_mode_and_failure_mode() {
        let rules = |mode: &str, failure_mode: &str| {
            config(&format!(
                r#"{{"rules":[{{"name":"g","key":["path"],"mode":"{mode}",
                    "global":{{"cluster":"rls","domain":"d","failure_mode":"{failure_mode}"}}}}]}}"#
            ))
        };
        let ok = Answer::Ok {
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        };
        let over = Answer::OverLimit {
            response_headers: Vec::new(),
            retry_after: None,
        };
        let failed = Answer::Failed(Failure::Timeout);
        // (mode, failure_mode) → the effect and whether it refuses, for ok, over, failed.
        let cases = [
            (
                ("enforce", "deny"),
                [
                    (Effect::Allowed, false),
                    (Effect::Limited, true),
                    (Effect::FailedClosed, true),
                ],
            ),
            (
                ("enforce", "allow"),
                [
                    (Effect::Allowed, false),
                    (Effect::Limited, true),
                    (Effect::FailedOpen, false),
                ],
            ),
            (
                ("shadow", "deny"),
                [
                    (Effect::Allowed, false),
                    (Effect::ShadowLimited, false),
                    (Effect::FailedClosed, false),
                ],
            ),
            (
                ("shadow", "allow"),
                [
                    (Effect::Allowed, false),
                    (Effect::ShadowLimited, false),
                    (Effect::FailedOpen, false),
                ],
            ),
        ];
        for ((mode, failure_mode), expected) in cases {
            let c = rules(mode, failure_mode);
            let rule = &c.rules[0];
            let service = rule.global.as_ref().unwrap();
            for (answer, (want, refuses)) in [&ok, &over, &failed].into_iter().zip(expected) {
                let got = effect(rule, service, answer);
                assert_eq!(
                    (got, got.refuses(rule)),
                    (want, refuses),
                    "{mode}, {failure_mode}, {answer:?}"
                );
            }
        }
    }

    #[test]
    fn the_descriptor_names_the_rule_then_each_key_part() {
        let c = config(
            r#"{"rules":[{"name":"per_user","key":["client_address",{"x_forwarded_for":{"trusted_hops":1}},
                {"header":"x-user"},"path","method",{"query":"page"},{"cookie":"sid"}],
                "global":{"cluster":"rls","domain":"meshward","hits_addend":2}}]}"#,
        );
        let calls = plan_for(
            &c,
            &[
                ("x-user", "alice"),
                ("cookie", "sid=s1"),
                ("x-forwarded-for", "1.2.3.4"),
            ],
            &mut MemoryStore::default(),
        );
        assert_eq!(calls.len(), 1);
        let request = sent(&calls[0]);
        assert_eq!(request.domain, "meshward");
        assert_eq!(request.hits_addend, 2);
        let entries: Vec<(&str, &str)> = request.descriptors[0]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            entries,
            [
                ("rule", "per_user"),
                ("remote_address", "10.0.0.9"),
                ("remote_address", "1.2.3.4"),
                ("x-user", "alice"),
                ("path", "/a/b"),
                ("method", "GET"),
                ("query.page", "2"),
                ("cookie.sid", "s1"),
            ]
        );
    }

    #[test]
    fn a_missing_key_part_is_sent_empty_or_skips_the_rule() {
        let share = config(
            r#"{"rules":[{"name":"k","key":[{"header":"x-api-key"}],
                "global":{"cluster":"rls","domain":"d"}}]}"#,
        );
        let calls = plan_for(&share, &[], &mut MemoryStore::default());
        assert_eq!(
            sent(&calls[0]).descriptors[0][1],
            ("x-api-key".to_string(), String::new())
        );
        let skip = config(
            r#"{"rules":[{"name":"k","key":[{"header":"x-api-key"}],"missing_key":"skip",
                "global":{"cluster":"rls","domain":"d"}}]}"#,
        );
        assert!(plan_for(&skip, &[], &mut MemoryStore::default()).is_empty());
    }

    #[test]
    fn only_rules_that_match_and_have_a_service_are_asked() {
        let c = config(
            r#"{"rules":[
                {"name":"local_only","limit":{"capacity":5,"per":"1s"}},
                {"name":"login","match":{"path":{"exact":"/login"}},"global":{"cluster":"rls","domain":"d"}},
                {"name":"all","global":{"cluster":"rls","domain":"d"}}]}"#,
        );
        let calls = plan_for(&c, &[], &mut MemoryStore::default());
        assert_eq!(calls.iter().map(|c| c.rule).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_local_bucket_in_front_lets_only_the_requests_it_allows_reach_the_service() {
        for mode in ["enforce", "shadow"] {
            let c = config(&format!(
                r#"{{"rules":[{{"name":"r","mode":"{mode}","limit":{{"capacity":2,"per":"1m"}},
                    "global":{{"cluster":"rls","domain":"d"}}}}]}}"#
            ));
            let mut store = MemoryStore::default();
            let r = request(&[(":path", "/")], None);
            let asked = (0..5)
                .filter(|_| {
                    let verdict = limiter::check(&c, &r, || Some(0), &mut store);
                    verdict.refusal.is_none() && !plan(&c, &r, &verdict).is_empty()
                })
                .count();
            assert_eq!(asked, 2, "{mode}");
        }
    }

    fn message(response: &RateLimitResponse) -> GrpcEvent {
        GrpcEvent::Message(response.encode())
    }

    #[test]
    fn ok_carries_the_headers_for_both_directions() {
        let response = RateLimitResponse {
            overall_code: Code::Ok,
            request_headers_to_add: vec![("X-Quota".into(), b"plenty".to_vec())],
            response_headers_to_add: vec![("x-ratelimit-remaining".into(), b"7".to_vec())],
            ..RateLimitResponse::default()
        };
        assert_eq!(
            answer(&message(&response), Some(TIMEOUT / 4), TIMEOUT),
            Answer::Ok {
                request_headers: vec![("x-quota".into(), b"plenty".to_vec())],
                response_headers: vec![("x-ratelimit-remaining".into(), b"7".to_vec())],
            }
        );
    }

    #[test]
    fn over_limit_retries_after_the_over_limit_descriptors_reset() {
        let status = |code, reset| DescriptorStatus {
            code,
            duration_until_reset: reset,
            ..DescriptorStatus::default()
        };
        let response = RateLimitResponse {
            overall_code: Code::OverLimit,
            statuses: vec![
                status(Code::Ok, Some(Duration::from_secs(3600))),
                status(Code::OverLimit, Some(Duration::from_millis(1500))),
            ],
            response_headers_to_add: vec![
                ("retry-after".into(), b"99".to_vec()),
                ("x-ratelimit-limit".into(), b"20".to_vec()),
            ],
            ..RateLimitResponse::default()
        };
        assert_eq!(
            answer(&message(&response), None, TIMEOUT),
            Answer::OverLimit {
                response_headers: vec![("x-ratelimit-limit".into(), b"20".to_vec())],
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
        // Without a reset the service's own retry-after stands.
        let response = RateLimitResponse {
            overall_code: Code::OverLimit,
            response_headers_to_add: vec![("retry-after".into(), b"99".to_vec())],
            ..RateLimitResponse::default()
        };
        assert!(matches!(
            answer(&message(&response), None, TIMEOUT),
            Answer::OverLimit { retry_after: None, response_headers } if response_headers.len() == 1
        ));
    }

    #[test]
    fn status_14_is_a_timeout_at_the_deadline_and_unreachable_before_it() {
        let closed = |status| GrpcEvent::Close {
            status,
            message: "x".into(),
        };
        let at = |ms| answer(&closed(14), Some(Duration::from_millis(ms)), TIMEOUT);
        assert_eq!(at(20), Answer::Failed(Failure::Timeout));
        assert_eq!(at(19), Answer::Failed(Failure::Timeout));
        assert_eq!(at(25), Answer::Failed(Failure::Timeout));
        assert_eq!(at(1), Answer::Failed(Failure::Unreachable));
        assert_eq!(at(17), Answer::Failed(Failure::Unreachable));
        assert_eq!(
            answer(&closed(14), None, TIMEOUT),
            Answer::Failed(Failure::Unreachable)
        );
        assert_eq!(
            answer(&closed(13), Some(TIMEOUT), TIMEOUT),
            Answer::Failed(Failure::Error {
                status: 13,
                message: "x".into()
            })
        );
        // A long timeout keeps the margin at 5 ms.
        assert!(!timed_out(
            Some(Duration::from_millis(994)),
            Duration::from_secs(1)
        ));
        assert!(timed_out(
            Some(Duration::from_millis(995)),
            Duration::from_secs(1)
        ));
    }

    #[test]
    fn unusable_replies_are_bad_replies() {
        let bad = |event: GrpcEvent| {
            let a = answer(&event, Some(Duration::ZERO), TIMEOUT);
            match a {
                Answer::Failed(f @ Failure::BadReply(_)) => f.kind(),
                other => panic!("{other:?}"),
            }
        };
        bad(GrpcEvent::Message(vec![0x12, 0x7f]));
        bad(GrpcEvent::Message(Vec::new()));
        bad(GrpcEvent::Message(vec![0x08, 0x07]));
        bad(GrpcEvent::Close {
            status: 0,
            message: String::new(),
        });
        for (name, value) in [
            ("bad name", &b"v"[..]),
            ("", b"v"),
            (":status", b"200"),
            ("x-split", b"a\r\nset-cookie: x"),
        ] {
            let response = RateLimitResponse {
                overall_code: Code::Ok,
                response_headers_to_add: vec![(name.into(), value.to_vec())],
                ..RateLimitResponse::default()
            };
            assert_eq!(bad(message(&response)), "bad_reply");
        }
    }
}
