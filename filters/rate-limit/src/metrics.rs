//! Everything the filter reports, in one list: counters per rule, named
//! `meshward_rate_limit.rule.<rule>.<stat>` so a `stats_tags` regex can lift the rule name
//! into a tag. Envoy shows them as `wasmcustom.meshward_rate_limit.rule.<rule>.<stat>` in
//! `/stats`, and in `/stats/prometheus` (which drops the `wasmcustom` namespace) as
//! `meshward_rate_limit_rule_<rule>_<stat>`, or `meshward_rate_limit_rule_<stat>{rule="<rule>"}`
//! with the stats tag of `envoy-config/rate-limit.yaml`.

use meshward_shared::metrics::Counter;

macro_rules! rule_stats {
    ($($stat:ident: $doc:literal,)+) => {
        /// One rule's counters.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct RuleMetrics {
            $(#[doc = $doc] pub $stat: Counter,)+
        }

        impl RuleMetrics {
            /// The names of the stats, in the order they are declared.
            pub const STATS: &'static [&'static str] = &[$(stringify!($stat)),+];

            /// Defines (or finds) the counters of rule `rule`.
            pub fn define(rule: &str) -> Self {
                RuleMetrics {
                    $($stat: Counter::define(&metric_name(rule, stringify!($stat))),)+
                }
            }
        }
    };
}

rule_stats! {
    allowed: "Requests the rule counted that had a token (in either mode).",
    limited: "Requests an enforced rule refused.",
    shadow_limited: "Requests a shadow rule would have refused and let through.",
    failed_open: "Requests let through because the bucket could not be reached.",
    failed_closed: "Requests refused because the bucket could not be reached.",
    contention_fallbacks: "Requests whose bucket update lost the compare-and-swap `cas_attempts` times in a row, so the failure policy decided (also counted in `failed_open` or `failed_closed`).",
    reclaimed: "Keys that took the slot of an idle key whose bucket had refilled.",
    overflowed: "Requests counted in the shared overflow bucket because their set was full.",
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
        assert_eq!(RuleMetrics::STATS.len(), 8);
        // Defining outside a proxy gives handles that do nothing.
        RuleMetrics::define("x").allowed.inc();
    }
}
