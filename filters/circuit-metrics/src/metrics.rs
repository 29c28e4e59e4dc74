//! Everything the filter reports, in one list.
//!
//! Labels are written into the stat name in the form Istio's `extraStatTags` extract:
//! `meshward_circuit_metrics.cluster=.=<cluster>;.;route=.=<route>;.;retries`. The
//! `stats_tags` in `envoy-config/circuit-metrics.yaml` (or, in Istio, `extraStatTags:
//! [cluster, route, code_class, to_state]`) lift each `<tag>=.=<value>;.;` out of the name
//! into a label, so `/stats/prometheus` shows
//! `meshward_circuit_metrics_retries{cluster="...",route="..."}`.

use crate::breaker::State;
use crate::outcome::{CodeClass, Outcome};
use meshward_shared::metrics::Counter;
use std::time::Duration;

/// The label names of a breaker's metrics: by cluster, or by cluster and route.
const BREAKER_LABELS: [&[&str]; 2] = [&["cluster"], &["cluster", "route"]];

/// Declares every labelled family at configure time, for the native build (which can
/// define no metric later; see [`meshward_shared::metrics::declare_family`]).
pub fn declare_families() {
    RouteMetrics::declare(&["cluster", "route"]);
    Responses::declare(&["cluster", "route", "code_class"]);
    for labels in BREAKER_LABELS {
        BreakerMetrics::declare(labels);
        Transitions::declare(&[labels, &["to_state"]].concat());
    }
}

meshward_shared::metrics! {
    /// What every request to a (cluster, route) did. Labels: `cluster`, `route`.
    pub struct RouteMetrics {
        prefix: "meshward_circuit_metrics",
        /// Requests that ended (any outcome, this filter's own refusals included).
        requests: Counter,
        /// Retries: upstream attempts after the first, summed over requests.
        retries: Counter,
        /// Upstream attempts per request (0: never sent upstream).
        attempts: Histogram,
        /// Requests Envoy flagged URX: retries or the retry budget ran out.
        retries_exhausted: Counter,
        /// Requests Envoy flagged UO: a cluster circuit breaker of Envoy's overflowed.
        overflows: Counter,
        /// Requests Envoy flagged UT: the upstream request timed out.
        timeouts: Counter,
        /// Requests Envoy flagged UF: no connection to the upstream could be made.
        connection_failures: Counter,
        /// Requests Envoy flagged UH: the cluster had no healthy host.
        no_healthy_upstream: Counter,
        /// Requests Envoy flagged UR, UC or LR: the upstream stream or connection was reset.
        upstream_resets: Counter,
        /// Requests with any other response flag (NR, DC, RL, ...).
        other_flags: Counter,
        /// Request duration in milliseconds, first byte in to last byte out.
        duration_ms: Histogram,
    }
}

meshward_shared::metrics! {
    /// Responses by class. Labels: `cluster`, `route`, `code_class` (`1xx` to `5xx`, `none`).
    pub struct Responses {
        prefix: "meshward_circuit_metrics",
        /// Requests that ended, by response class.
        responses: Counter,
    }
}

meshward_shared::metrics! {
    /// Shared-data reads or writes that failed; no labels. The request went on unmeasured
    /// by its breaker (or with its label as `other`).
    pub struct StoreFailures {
        prefix: "meshward_circuit_metrics",
        /// Shared-data reads or writes that failed.
        store_failures: Counter,
    }
}

meshward_shared::metrics! {
    /// Breaker transitions, by the state entered. Labels: the breaker's, and `to_state`.
    pub struct Transitions {
        prefix: "meshward_circuit_metrics",
        /// Transitions into a state.
        breaker_transitions: Counter,
    }
}

meshward_shared::metrics! {
    /// One breaker's state. Labels: `cluster`, and `route` for a breaker per route.
    pub struct BreakerMetrics {
        prefix: "meshward_circuit_metrics",
        /// 0 closed, 1 open, 2 half_open, 3 metrics_only, 4 forced_open.
        breaker_state: Gauge,
        /// Failed calls in the window, percent (rounded down).
        breaker_failure_rate: Gauge,
        /// Slow calls in the window, percent (rounded down).
        breaker_slow_call_rate: Gauge,
        /// Calls in the window (HALF_OPEN: probes finished); rates mean something from the
        /// minimum number of calls.
        breaker_calls: Gauge,
        /// Requests the breaker refused with a 503 (enforcement on).
        not_permitted: Counter,
        /// Requests the breaker would have refused, let through because enforcement is off.
        not_permitted_dry_run: Counter,
    }
}

/// The (cluster, route) counters and histograms, plus responses by class.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// The per-request stats.
    pub route: RouteMetrics,
    /// Responses, in [`CodeClass::ALL`] order.
    pub responses: [Counter; 6],
}

impl Traffic {
    /// Defines (or finds) the stats of requests to `cluster` on `route` (label values).
    pub fn define(cluster: &str, route: &str) -> Traffic {
        let responses = CodeClass::ALL.map(|class| {
            let labels = [
                ("cluster", cluster),
                ("route", route),
                ("code_class", class.label()),
            ];
            Responses::define(&labels).responses
        });
        Traffic {
            route: RouteMetrics::define(&[("cluster", cluster), ("route", route)]),
            responses,
        }
    }

    /// Counts one finished request.
    pub fn count(&self, outcome: &Outcome) {
        let m = &self.route;
        m.requests.inc();
        if let Some(counter) = self.responses.get(outcome.class.index()) {
            counter.inc();
        }
        m.retries.add(u64::from(outcome.retries));
        if let Some(attempts) = outcome.attempts {
            m.attempts.record(u64::from(attempts));
        }
        let flagged = &outcome.flagged;
        for (set, counter) in [
            (flagged.retries_exhausted, &m.retries_exhausted),
            (flagged.overflow, &m.overflows),
            (flagged.timeout, &m.timeouts),
            (flagged.connection_failure, &m.connection_failures),
            (flagged.no_healthy_upstream, &m.no_healthy_upstream),
            (flagged.reset, &m.upstream_resets),
            (flagged.other, &m.other_flags),
        ] {
            if set {
                counter.inc();
            }
        }
        if let Some(duration) = outcome.duration {
            m.duration_ms.record(whole_millis(duration));
        }
    }
}

fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One breaker's stats, plus its transitions by state entered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Breaker {
    /// The gauges and refusal counters.
    pub stats: BreakerMetrics,
    /// Transitions into CLOSED, OPEN and HALF_OPEN.
    pub to_closed: Counter,
    /// See `to_closed`.
    pub to_open: Counter,
    /// See `to_closed`.
    pub to_half_open: Counter,
}

impl Breaker {
    /// Defines (or finds) the stats of the breaker with these labels.
    pub fn define(labels: &[(&str, &str)]) -> Breaker {
        let transition = |to: State| {
            let mut tags = labels.to_vec();
            tags.push(("to_state", to.name()));
            Transitions::define(&tags).breaker_transitions
        };
        Breaker {
            stats: BreakerMetrics::define(labels),
            to_closed: transition(State::Closed),
            to_open: transition(State::Open),
            to_half_open: transition(State::HalfOpen),
        }
    }

    /// Counts a transition into `to`.
    pub fn transitioned(&self, to: State) {
        match to {
            State::Closed => self.to_closed.inc(),
            State::Open => self.to_open.inc(),
            State::HalfOpen => self.to_half_open.inc(),
            State::MetricsOnly | State::ForcedOpen => {}
        }
    }
}

/// Defines (or finds) the unlabelled store-failure counter.
pub fn store_failures() -> Counter {
    StoreFailures::define(&[]).store_failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::metrics::unlisted;

    #[test]
    fn names_carry_their_labels_in_the_form_a_tag_regex_lifts_out() {
        assert_eq!(
            RouteMetrics::name(&[("cluster", "upstream"), ("route", "retry")], "retries"),
            "meshward_circuit_metrics.cluster=.=upstream;.;route=.=retry;.;retries"
        );
        assert_eq!(
            StoreFailures::name(&[], "store_failures"),
            "meshward_circuit_metrics.store_failures"
        );
    }

    #[test]
    fn defining_outside_a_proxy_gives_handles_that_do_nothing() {
        Traffic::define("a", "b").route.requests.inc();
        Breaker::define(&[("cluster", "a")]).transitioned(State::Open);
        store_failures().inc();
    }

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../README.md");
        let prefix = RouteMetrics::PREFIX;
        let mut missing = unlisted(readme, prefix, RouteMetrics::STATS);
        missing.extend(unlisted(readme, prefix, Responses::STATS));
        missing.extend(unlisted(readme, prefix, StoreFailures::STATS));
        missing.extend(unlisted(readme, prefix, Transitions::STATS));
        missing.extend(unlisted(readme, prefix, BreakerMetrics::STATS));
        assert_eq!(
            missing,
            Vec::<String>::new(),
            "README.md does not list these"
        );
    }
}
