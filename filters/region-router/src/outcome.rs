//! What counts as a region's failure: how a request that went to a region ended, judged
//! from the response code, Envoy's response flags and its response code details.

use crate::health::Outcome;

/// Envoy's response flags (`response.flags`, a bitmask of `StreamInfo::CoreResponseFlag`,
/// bit n = flag n) that say the region could not answer.
pub mod flags {
    /// `UH`: no healthy host in the cluster.
    pub const NO_HEALTHY_UPSTREAM: i64 = 1 << 1;
    /// `UT`: the upstream did not answer within the route's timeout.
    pub const UPSTREAM_REQUEST_TIMEOUT: i64 = 1 << 2;
    /// `UR`: the upstream reset the stream.
    pub const UPSTREAM_REMOTE_RESET: i64 = 1 << 4;
    /// `UF`: the connection to the upstream failed (refused, connect timeout).
    pub const UPSTREAM_CONNECTION_FAILURE: i64 = 1 << 5;
    /// `UC`: the upstream connection closed before the response.
    pub const UPSTREAM_CONNECTION_TERMINATION: i64 = 1 << 6;
    /// `UO`: the cluster's circuit breakers refused the request (overflow).
    pub const UPSTREAM_OVERFLOW: i64 = 1 << 7;

    /// Every flag above: any of them makes the outcome a failure.
    pub const FAILURE: i64 = NO_HEALTHY_UPSTREAM
        | UPSTREAM_REQUEST_TIMEOUT
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_CONNECTION_TERMINATION
        | UPSTREAM_OVERFLOW;
}

/// The response code details Envoy gives a response that came from the upstream.
pub const VIA_UPSTREAM: &str = "via_upstream";

/// How a request routed to a region ended, from the final `response.code`,
/// `response.flags` and `response.code_details`; `None` when it says nothing about the
/// region:
///
/// - any failure flag: a failure, whatever the code;
/// - otherwise a response the upstream sent (details `via_upstream`, or details unknown):
///   5xx is a failure, anything else a success;
/// - a reply made on the proxy by something else (a later filter's 429, a direct
///   response), or no response at all (the client went away first): `None`.
pub fn classify(
    status: Option<i64>,
    response_flags: Option<i64>,
    details: Option<&str>,
) -> Option<Outcome> {
    if response_flags.unwrap_or(0) & flags::FAILURE != 0 {
        return Some(Outcome::Failure);
    }
    if details.is_some_and(|d| d != VIA_UPSTREAM) {
        return None;
    }
    match status? {
        500..=599 => Some(Outcome::Failure),
        100..=499 => Some(Outcome::Success),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_answers_are_judged_by_status() {
        assert_eq!(
            classify(Some(200), Some(0), Some(VIA_UPSTREAM)),
            Some(Outcome::Success)
        );
        assert_eq!(
            classify(Some(404), Some(0), Some(VIA_UPSTREAM)),
            Some(Outcome::Success)
        );
        assert_eq!(
            classify(Some(503), Some(0), Some(VIA_UPSTREAM)),
            Some(Outcome::Failure)
        );
        assert_eq!(classify(Some(500), None, None), Some(Outcome::Failure));
    }

    #[test]
    fn envoy_failures_to_reach_the_region_are_failures() {
        let refused = "upstream_reset_before_response_started{remote_connection_failure}";
        assert_eq!(
            classify(
                Some(503),
                Some(flags::UPSTREAM_CONNECTION_FAILURE),
                Some(refused)
            ),
            Some(Outcome::Failure)
        );
        for flag in [
            flags::NO_HEALTHY_UPSTREAM,
            flags::UPSTREAM_REQUEST_TIMEOUT,
            flags::UPSTREAM_REMOTE_RESET,
            flags::UPSTREAM_CONNECTION_TERMINATION,
            flags::UPSTREAM_OVERFLOW,
        ] {
            assert_eq!(
                classify(Some(503), Some(flag), Some("x")),
                Some(Outcome::Failure)
            );
        }
        // A reset after the response started: the code was 200, the flag says it failed.
        assert_eq!(
            classify(
                Some(200),
                Some(flags::UPSTREAM_REMOTE_RESET),
                Some(VIA_UPSTREAM)
            ),
            Some(Outcome::Failure)
        );
    }

    #[test]
    fn replies_made_on_the_proxy_say_nothing_about_the_region() {
        assert_eq!(
            classify(Some(429), Some(0), Some("meshward_too_many_requests")),
            None
        );
        assert_eq!(classify(Some(503), Some(0), Some("wasm_fail_stream")), None);
        // NR (no route, bit 8) is the route table's doing, not the region's.
        assert_eq!(
            classify(Some(404), Some(1 << 8), Some("route_not_found")),
            None
        );
    }

    #[test]
    fn no_response_says_nothing() {
        assert_eq!(classify(None, Some(0), None), None);
        assert_eq!(classify(Some(0), Some(1 << 14), None), None);
    }
}
