//! Everything the filter reports, in one list: counters per rule, named
//! `meshward_rate_limit.rule.<rule>.<stat>` so a `stats_tags` regex can lift the rule name
//! into a tag. Envoy shows them as `wasmcustom.meshward_rate_limit.rule.<rule>.<stat>` in
//! `/stats`, and in `/stats/prometheus` (which drops the `wasmcustom` namespace) as
//! `meshward_rate_limit_rule_<rule>_<stat>`, or `meshward_rate_limit_rule_<stat>{rule="<rule>"}`
//! with the stats tag of `envoy-config/rate-limit.yaml`.

use meshward_shared::metrics::{Counter, Histogram};

macro_rules! rule_stats {
    (
        every rule { $($stat:ident: $doc:literal,)+ }
        global rules { $($gstat:ident: $gdoc:literal,)+ }
        global histograms { $($hist:ident: $hdoc:literal,)+ }
    ) => {
        /// One rule's metrics. Those of global mode are defined only for rules with a
        /// `global` service; elsewhere their handles do nothing.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct RuleMetrics {
            $(#[doc = $doc] pub $stat: Counter,)+
            $(#[doc = $gdoc] pub $gstat: Counter,)+
            $(#[doc = $hdoc] pub $hist: Histogram,)+
        }

        impl RuleMetrics {
            /// The names of the stats, in the order they are declared.
            pub const STATS: &'static [&'static str] =
                &[$(stringify!($stat),)+ $(stringify!($gstat),)+ $(stringify!($hist),)+];

            /// Defines (or finds) the metrics of rule `rule`; `global`: it has a service.
            pub fn define(rule: &str, global: bool) -> Self {
                let mut metrics = RuleMetrics {
                    $($stat: Counter::define(&metric_name(rule, stringify!($stat))),)+
                    ..RuleMetrics::default()
                };
                if global {
                    $(metrics.$gstat = Counter::define(&metric_name(rule, stringify!($gstat)));)+
                    $(metrics.$hist = Histogram::define(&metric_name(rule, stringify!($hist)));)+
                }
                metrics
            }
        }
    };
}

rule_stats! {
    every rule {
        allowed: "Requests the rule's local bucket counted that had a token (in either mode).",
        limited: "Requests an enforced rule refused (its local bucket was empty, or its service said OVER_LIMIT).",
        shadow_limited: "Requests a shadow rule would have refused (bucket or service) and let through.",
        failed_open: "Requests let through because the local bucket could not be reached.",
        failed_closed: "Requests refused because the local bucket could not be reached.",
        contention_fallbacks: "Requests whose bucket update lost the compare-and-swap `cas_attempts` times in a row, so the failure policy decided (also counted in `failed_open` or `failed_closed`).",
        reclaimed: "Keys that took the slot of an idle key whose bucket had refilled.",
        overflowed: "Requests counted in the shared overflow bucket because their set was full.",
    }
    global rules {
        global_ok: "The rate limit service answered OK.",
        global_over_limit: "The rate limit service answered OVER_LIMIT (in either mode).",
        global_failed_timeout: "Calls that got no answer within `global.timeout`.",
        global_failed_unreachable: "Calls that failed before the timeout with status 14 (the service could not be reached).",
        global_failed_error: "Calls that ended with another gRPC status.",
        global_failed_unknown_cluster: "Calls the proxy refused to start (the cluster is not defined).",
        global_failed_bad_reply: "Answers that were not a usable RateLimitResponse.",
    }
    global histograms {
        global_latency_ms: "Milliseconds from the call to its answer or failure.",
    }
}

/// The full metric name of `stat` for `rule`.
pub fn metric_name(rule: &str, stat: &str) -> String {
    format!("meshward_rate_limit.rule.{rule}.{stat}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_put_the_rule_where_a_tag_regex_can_find_it() {
        assert_eq!(
            metric_name("per_ip", "allowed"),
            "meshward_rate_limit.rule.per_ip.allowed"
        );
        assert_eq!(RuleMetrics::STATS.len(), 16);
        // Defining outside a proxy gives handles that do nothing.
        RuleMetrics::define("x", true).allowed.inc();
        RuleMetrics::define("x", false).global_latency_ms.record(3);
    }
}
