//! What one request's outcome was, from the facts Envoy reports when it ends: the response
//! class, how many upstream attempts it took, which upstream failures Envoy flagged, and
//! whether it counts as a success or a failure of the upstream for a circuit breaker.

use std::time::Duration;

/// Envoy's response flags (`response.flags`): the bits of its `CoreResponseFlag` enum, as
/// `StreamInfo::legacyResponseFlags()` returns them.
pub mod flags {
    /// `LH`: the local health check failed.
    pub const FAILED_LOCAL_HEALTH_CHECK: u64 = 0x1;
    /// `UH`: no healthy upstream host.
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    /// `UT`: the upstream request timed out.
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    /// `LR`: the stream was reset locally.
    pub const LOCAL_RESET: u64 = 0x8;
    /// `UR`: the upstream reset the stream.
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    /// `UF`: the upstream connection could not be made.
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    /// `UC`: the upstream connection was terminated.
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    /// `UO`: a cluster circuit breaker overflowed (connections, pending or requests).
    pub const UPSTREAM_OVERFLOW: u64 = 0x80;
    /// `NR`: no route matched.
    pub const NO_ROUTE_FOUND: u64 = 0x100;
    /// `URX`: the retry limit (or a retry budget) was exhausted.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 0x8000;
    /// `UMSDR`: the upstream stream reached its maximum duration.
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u64 = 0x80000;
    /// `UPE`: the upstream response broke the HTTP protocol.
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000;
    /// `DF`: the upstream host's name could not be resolved.
    pub const DNS_RESOLUTION_FAILED: u64 = 0x400_0000;

    /// Flags that say the upstream failed the request, whatever the status.
    pub const UPSTREAM_FAILURE: u64 = NO_HEALTHY_UPSTREAM
        | UPSTREAM_REQUEST_TIMEOUT
        | LOCAL_RESET
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_CONNECTION_TERMINATION
        | UPSTREAM_OVERFLOW
        | UPSTREAM_RETRY_LIMIT_EXCEEDED
        | UPSTREAM_MAX_STREAM_DURATION_REACHED
        | UPSTREAM_PROTOCOL_ERROR
        | DNS_RESOLUTION_FAILED;

    /// Flags counted on their own; any other flag is counted as "other".
    pub const NAMED: u64 = NO_HEALTHY_UPSTREAM
        | UPSTREAM_REQUEST_TIMEOUT
        | LOCAL_RESET
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_CONNECTION_TERMINATION
        | UPSTREAM_OVERFLOW
        | UPSTREAM_RETRY_LIMIT_EXCEEDED;
}

/// What Envoy reports about a finished request. Each fact may be missing: a request the
/// client abandoned has no response code, an old Envoy has no attempt count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// `response.code`; 0 or absent when no response was sent.
    pub status: Option<u16>,
    /// `response.flags`.
    pub flags: u64,
    /// `upstream.request_attempt_count` (or the `x-envoy-attempt-count` response header):
    /// 0 when the request never went upstream.
    pub attempts: Option<u32>,
    /// Whether `response.code_details` is `via_upstream`: the response came from the
    /// upstream, not from Envoy or a filter. `None` when Envoy did not say.
    pub from_upstream: Option<bool>,
    /// `request.duration`: from the first byte received to the last byte sent.
    pub duration: Option<Duration>,
}

/// The class of a response status, as the `code_class` label shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// No response was sent (the stream was reset), or the code is out of range.
    None,
}

impl CodeClass {
    /// Every class, in label order.
    pub const ALL: [CodeClass; 6] = [
        CodeClass::Informational,
        CodeClass::Success,
        CodeClass::Redirection,
        CodeClass::ClientError,
        CodeClass::ServerError,
        CodeClass::None,
    ];

    /// The class of `status`.
    pub fn of(status: Option<u16>) -> CodeClass {
        match status {
            Some(100..=199) => CodeClass::Informational,
            Some(200..=299) => CodeClass::Success,
            Some(300..=399) => CodeClass::Redirection,
            Some(400..=499) => CodeClass::ClientError,
            Some(500..=599) => CodeClass::ServerError,
            _ => CodeClass::None,
        }
    }

    /// The label value: `1xx` to `5xx`, or `none`.
    pub fn label(self) -> &'static str {
        match self {
            CodeClass::Informational => "1xx",
            CodeClass::Success => "2xx",
            CodeClass::Redirection => "3xx",
            CodeClass::ClientError => "4xx",
            CodeClass::ServerError => "5xx",
            CodeClass::None => "none",
        }
    }

    /// The position of this class in [`CodeClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A response status a breaker counts as a failure: one code, or a whole class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPattern {
    /// Exactly this status.
    Code(u16),
    /// Every status from `n00` to `n99`.
    Class(u16),
}

impl StatusPattern {
    /// Parses `"503"` or `"5xx"`.
    pub fn parse(text: &str) -> Option<StatusPattern> {
        let bytes = text.as_bytes();
        match bytes {
            [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
                Some(StatusPattern::Class(u16::from(d - b'0')))
            }
            [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => text.parse().ok().map(StatusPattern::Code),
            _ => None,
        }
    }

    /// Whether `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusPattern::Code(code) => status == code,
            StatusPattern::Class(class) => status / 100 == class,
        }
    }
}

impl<'de> serde::Deserialize<'de> for StatusPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        StatusPattern::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a status such as \"503\" or a class such as \"5xx\", got {text:?}"
            ))
        })
    }
}

/// How a finished request counts for a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered as it should.
    Success,
    /// The upstream failed: a failure status, or a failure Envoy flagged (timeout, reset,
    /// connection failure, overflow, no healthy host, retries exhausted).
    Failure,
    /// Says nothing about the upstream: the request never reached it (another filter or
    /// Envoy answered, no route matched) or the client went away first.
    Ignored,
}

/// Which upstream failures Envoy flagged on a request, one counter each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flagged {
    /// `URX`: retries were exhausted.
    pub retries_exhausted: bool,
    /// `UO`: a cluster circuit breaker of Envoy's overflowed.
    pub overflow: bool,
    /// `UT`: the upstream request timed out.
    pub timeout: bool,
    /// `UF`: no connection to the upstream could be made.
    pub connection_failure: bool,
    /// `UH`: the cluster had no healthy host.
    pub no_healthy_upstream: bool,
    /// `UR`, `UC` or `LR`: the upstream stream or connection was reset.
    pub reset: bool,
    /// Any flag not listed above (`NR`, `DC`, `RL`, ...).
    pub other: bool,
}

impl Flagged {
    /// Reads the flag bits.
    pub fn from_bits(bits: u64) -> Flagged {
        let has = |flag: u64| bits & flag != 0;
        Flagged {
            retries_exhausted: has(flags::UPSTREAM_RETRY_LIMIT_EXCEEDED),
            overflow: has(flags::UPSTREAM_OVERFLOW),
            timeout: has(flags::UPSTREAM_REQUEST_TIMEOUT),
            connection_failure: has(flags::UPSTREAM_CONNECTION_FAILURE),
            no_healthy_upstream: has(flags::NO_HEALTHY_UPSTREAM),
            reset: has(flags::UPSTREAM_REMOTE_RESET
                | flags::UPSTREAM_CONNECTION_TERMINATION
                | flags::LOCAL_RESET),
            other: bits & !flags::NAMED != 0,
        }
    }
}

/// One request's outcome, ready to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The response class.
    pub class: CodeClass,
    /// Upstream attempts, when Envoy said.
    pub attempts: Option<u32>,
    /// Retries: attempts after the first.
    pub retries: u32,
    /// The failures Envoy flagged.
    pub flagged: Flagged,
    /// How the request counts for a breaker.
    pub verdict: Verdict,
    /// How long the request took, when Envoy said.
    pub duration: Option<Duration>,
}

/// Classifies a finished request. `failure_statuses` are the statuses a breaker counts as
/// failures when the upstream sent them.
pub fn classify(facts: &Facts, failure_statuses: &[StatusPattern]) -> Outcome {
    let status = facts.status.filter(|&s| s != 0);
    let attempts = facts.attempts;
    Outcome {
        class: CodeClass::of(status),
        attempts,
        retries: attempts.map_or(0, |a| a.saturating_sub(1)),
        flagged: Flagged::from_bits(facts.flags),
        verdict: verdict(facts, status, failure_statuses),
        duration: facts.duration,
    }
}

fn verdict(facts: &Facts, status: Option<u16>, failure_statuses: &[StatusPattern]) -> Verdict {
    if facts.flags & flags::UPSTREAM_FAILURE != 0 {
        return Verdict::Failure;
    }
    // Whether the response is the upstream's: Envoy says so in the code details; an Envoy
    // that does not say is believed when the request went upstream at least once.
    let answered_by_upstream = match (facts.from_upstream, facts.attempts) {
        (Some(from_upstream), _) => from_upstream,
        (None, Some(attempts)) => attempts > 0,
        (None, None) => false,
    };
    match status {
        Some(status) if answered_by_upstream => {
            if failure_statuses.iter().any(|p| p.matches(status)) {
                Verdict::Failure
            } else {
                Verdict::Success
            }
        }
        _ => Verdict::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_XX: &[StatusPattern] = &[StatusPattern::Class(5)];

    fn upstream(status: u16) -> Facts {
        Facts {
            status: Some(status),
            attempts: Some(1),
            from_upstream: Some(true),
            ..Facts::default()
        }
    }

    #[test]
    fn an_upstream_5xx_is_a_failure_and_a_4xx_a_success() {
        assert_eq!(classify(&upstream(503), FIVE_XX).verdict, Verdict::Failure);
        assert_eq!(classify(&upstream(404), FIVE_XX).verdict, Verdict::Success);
        assert_eq!(classify(&upstream(200), FIVE_XX).verdict, Verdict::Success);
        let with_429 = [StatusPattern::Class(5), StatusPattern::Code(429)];
        assert_eq!(
            classify(&upstream(429), &with_429).verdict,
            Verdict::Failure
        );
    }

    #[test]
    fn a_reply_from_another_filter_says_nothing_about_the_upstream() {
        let jwt_refusal = Facts {
            status: Some(401),
            attempts: Some(0),
            from_upstream: Some(false),
            ..Facts::default()
        };
        assert_eq!(classify(&jwt_refusal, FIVE_XX).verdict, Verdict::Ignored);
        let no_route = Facts {
            status: Some(404),
            flags: flags::NO_ROUTE_FOUND,
            from_upstream: Some(false),
            ..Facts::default()
        };
        let outcome = classify(&no_route, FIVE_XX);
        assert_eq!(outcome.verdict, Verdict::Ignored);
        assert!(outcome.flagged.other);
    }

    #[test]
    fn flagged_upstream_failures_are_failures_even_without_a_5xx() {
        for flag in [
            flags::UPSTREAM_REQUEST_TIMEOUT,
            flags::UPSTREAM_CONNECTION_FAILURE,
            flags::UPSTREAM_OVERFLOW,
            flags::NO_HEALTHY_UPSTREAM,
            flags::UPSTREAM_RETRY_LIMIT_EXCEEDED,
            flags::UPSTREAM_REMOTE_RESET,
        ] {
            let facts = Facts {
                status: Some(503),
                flags: flag,
                attempts: Some(0),
                from_upstream: Some(false),
                ..Facts::default()
            };
            assert_eq!(classify(&facts, &[]).verdict, Verdict::Failure, "{flag:#x}");
        }
    }

    #[test]
    fn retries_are_attempts_after_the_first() {
        let retried = Facts {
            attempts: Some(3),
            ..upstream(200)
        };
        assert_eq!(classify(&retried, FIVE_XX).retries, 2);
        assert_eq!(classify(&upstream(200), FIVE_XX).retries, 0);
        let never_sent = Facts {
            attempts: Some(0),
            ..upstream(503)
        };
        assert_eq!(classify(&never_sent, FIVE_XX).retries, 0);
    }

    #[test]
    fn flags_are_counted_by_kind() {
        let bits = flags::UPSTREAM_RETRY_LIMIT_EXCEEDED
            | flags::UPSTREAM_CONNECTION_TERMINATION
            | flags::NO_ROUTE_FOUND;
        let flagged = Flagged::from_bits(bits);
        assert!(flagged.retries_exhausted && flagged.reset && flagged.other);
        assert!(!flagged.timeout && !flagged.overflow && !flagged.connection_failure);
        assert_eq!(Flagged::from_bits(0), Flagged::default());
    }

    #[test]
    fn a_stream_reset_before_any_response_has_no_class() {
        let abandoned = Facts {
            status: Some(0),
            flags: 0x4000, // DC: the client went away
            attempts: Some(1),
            ..Facts::default()
        };
        let outcome = classify(&abandoned, FIVE_XX);
        assert_eq!(outcome.class, CodeClass::None);
        assert_eq!(outcome.verdict, Verdict::Ignored);
    }

    #[test]
    fn without_code_details_a_request_that_went_upstream_is_believed() {
        let facts = Facts {
            from_upstream: None,
            ..upstream(502)
        };
        assert_eq!(classify(&facts, FIVE_XX).verdict, Verdict::Failure);
        let unknown = Facts {
            attempts: None,
            from_upstream: None,
            ..upstream(502)
        };
        assert_eq!(classify(&unknown, FIVE_XX).verdict, Verdict::Ignored);
    }

    #[test]
    fn status_patterns_parse_codes_and_classes() {
        assert_eq!(StatusPattern::parse("5xx"), Some(StatusPattern::Class(5)));
        assert_eq!(StatusPattern::parse("429"), Some(StatusPattern::Code(429)));
        for bad in ["", "6xx", "0xx", "5x", "5000", "abc", "099", "-50"] {
            assert_eq!(StatusPattern::parse(bad), None, "{bad:?}");
        }
        assert!(StatusPattern::Class(5).matches(599));
        assert!(!StatusPattern::Class(5).matches(600));
    }

    #[test]
    fn classes_have_labels() {
        let labels: Vec<&str> = CodeClass::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(labels, ["1xx", "2xx", "3xx", "4xx", "5xx", "none"]);
        assert_eq!(CodeClass::of(Some(700)), CodeClass::None);
        assert_eq!(CodeClass::ServerError.index(), 4);
    }
}
