//! Everything the filter reports: counters per rule, named
//! `meshward_rate_limit.rule=.=<rule>;.;<stat>`, the form in which Istio's
//! `extraStatTags: [rule]` (or the stats tag of `envoy-config/rate-limit.yaml`) lifts the
//! rule into a label: `/stats/prometheus` shows `meshward_rate_limit_<stat>{rule="<rule>"}`.

meshward_shared::metrics! {
    /// What every rule counts. Label: `rule`.
    pub struct RuleCounters {
        prefix: "meshward_rate_limit",
        /// Requests the rule's local bucket counted that had a token (in either mode).
        allowed: Counter,
        /// Requests an enforced rule refused (its local bucket was empty, or its service
        /// said OVER_LIMIT).
        limited: Counter,
        /// Requests a shadow rule would have refused (bucket or service) and let through.
        shadow_limited: Counter,
        /// Requests let through because the local bucket could not be reached.
        failed_open: Counter,
        /// Requests refused because the local bucket could not be reached.
        failed_closed: Counter,
        /// Requests whose bucket update lost the compare-and-swap `cas_attempts` times in a
        /// row, so the failure policy decided (also counted in `failed_open` or
        /// `failed_closed`).
        contention_fallbacks: Counter,
        /// Keys that took the slot of an idle key whose bucket had refilled.
        reclaimed: Counter,
        /// Requests counted in the shared overflow bucket because their set was full.
        overflowed: Counter,
    }
}

meshward_shared::metrics! {
    /// What a rule with a `global` service counts besides. Label: `rule`.
    pub struct GlobalCounters {
        prefix: "meshward_rate_limit",
        /// The rate limit service answered OK.
        global_ok: Counter,
        /// The rate limit service answered OVER_LIMIT (in either mode).
        global_over_limit: Counter,
        /// Calls that got no answer within `global.timeout`.
        global_failed_timeout: Counter,
        /// Calls that failed before the timeout with status 14 (the service could not be
        /// reached).
        global_failed_unreachable: Counter,
        /// Calls that ended with another gRPC status.
        global_failed_error: Counter,
        /// Calls the proxy refused to start (the cluster is not defined).
        global_failed_unknown_cluster: Counter,
        /// Answers that were not a usable RateLimitResponse.
        global_failed_bad_reply: Counter,
        /// Milliseconds from the call to its answer or failure.
        global_latency_ms: Histogram,
    }
}

/// One rule's metrics. Those of global mode are defined only for rules with a `global`
/// service; elsewhere their handles do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuleMetrics {
    /// What every rule counts.
    pub rule: RuleCounters,
    /// What a global rule counts besides.
    pub global: GlobalCounters,
}

impl RuleMetrics {
    /// Defines (or finds) the metrics of rule `rule`; `global`: it has a service.
    pub fn define(rule: &str, global: bool) -> Self {
        let labels = [("rule", rule)];
        RuleMetrics {
            rule: RuleCounters::define(&labels),
            global: if global {
                GlobalCounters::define(&labels)
            } else {
                GlobalCounters::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::metrics::unlisted;

    #[test]
    fn names_carry_the_rule_as_a_label() {
        assert_eq!(
            RuleCounters::name(&[("rule", "per_ip")], "allowed"),
            "meshward_rate_limit.rule=.=per_ip;.;allowed"
        );
        assert_eq!(RuleCounters::STATS.len() + GlobalCounters::STATS.len(), 16);
        // Defining outside a proxy gives handles that do nothing.
        RuleMetrics::define("x", true).rule.allowed.inc();
        RuleMetrics::define("x", false)
            .global
            .global_latency_ms
            .record(3);
    }

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../README.md");
        let mut missing = unlisted(readme, RuleCounters::PREFIX, RuleCounters::STATS);
        missing.extend(unlisted(
            readme,
            GlobalCounters::PREFIX,
            GlobalCounters::STATS,
        ));
        assert_eq!(
            missing,
            Vec::<String>::new(),
            "README.md does not list these"
        );
    }
}
