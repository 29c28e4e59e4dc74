//! Everything the filter reports, in one list. Per-region stats are named
//! `meshward_region_router.region.<region>.<stat>` (decisions as
//! `meshward_region_router.region.<region>.reason.<reason>.decisions`) so that `stats_tags`
//! regexes can lift the region and the reason into tags; the README gives them.

use crate::config::Config;
use crate::decide::Reason;
use crate::health::State;
use meshward_shared::metrics::{Counter, Gauge};

/// The prefix of every metric name.
pub const PREFIX: &str = "meshward_region_router";

macro_rules! region_stats {
    ($($stat:ident: $kind:ident, $doc:literal;)+) => {
        /// One region's stats, besides its decisions.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct RegionStats {
            $(#[doc = $doc] pub $stat: $kind,)+
        }

        impl RegionStats {
            /// The stat names, in the order declared.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($stat)),+];

            fn define(region: &str) -> Self {
                RegionStats {
                    $($stat: $kind::define(&region_metric(region, stringify!($stat))),)+
                }
            }
        }
    };
}

region_stats! {
    failovers: Counter, "Times the region was marked unhealthy and its traffic moved away (a failed probe included).";
    restored: Counter, "Times the region's probes succeeded and it took its share again.";
    successes: Counter, "Requests routed to the region that it answered (any status below 500).";
    failures: Counter, "Requests routed to the region that failed: 5xx from it, or Envoy could not reach it.";
    state: Gauge, "The region's state: 0 healthy, 1 probing, 2 unhealthy.";
}

macro_rules! filter_stats {
    ($($stat:ident: $doc:literal;)+) => {
        /// Counters about the filter as a whole.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct FilterStats {
            $(#[doc = $doc] pub $stat: Counter,)+
        }

        impl FilterStats {
            /// The stat names, in the order declared.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($stat)),+];

            fn define() -> Self {
                FilterStats {
                    $($stat: Counter::define(&format!("{PREFIX}.{}", stringify!($stat))),)+
                }
            }
        }
    };
}

filter_stats! {
    route_header_stripped: "Requests that arrived with the routing header set: the client's value was removed.";
    preference_ignored: "Requests whose preference list named a region that is not configured.";
    route_errors: "Requests whose routing header or route refresh the proxy refused; they took the route table's default.";
    health_errors: "Health reads or updates that failed (shared data unavailable or contended); reads then count the region healthy.";
}

/// The full name of a per-region stat.
pub fn region_metric(region: &str, stat: &str) -> String {
    format!("{PREFIX}.region.{region}.{stat}")
}

/// The full name of a per-region, per-reason decision counter.
pub fn decision_metric(region: &str, reason: Reason) -> String {
    format!(
        "{PREFIX}.region.{region}.reason.{}.decisions",
        reason.name()
    )
}

/// One region's handles.
#[derive(Clone, Debug, Default)]
pub struct RegionMetrics {
    /// Decisions for this region, indexed by [`Reason::index`].
    pub decisions: [Counter; Reason::ALL.len()],
    /// The other stats.
    pub stats: RegionStats,
}

/// Every metric, defined once at configure time.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Per region, in configured order.
    pub regions: Vec<RegionMetrics>,
    /// Filter-wide counters.
    pub filter: FilterStats,
}

impl Metrics {
    /// Defines (or finds) every metric for the configured regions.
    pub fn define(config: &Config) -> Self {
        let regions = config
            .regions
            .iter()
            .map(|region| RegionMetrics {
                decisions: Reason::ALL
                    .map(|reason| Counter::define(&decision_metric(&region.name, reason))),
                stats: RegionStats::define(&region.name),
            })
            .collect();
        Metrics {
            regions,
            filter: FilterStats::define(),
        }
    }

    /// Counts a decision.
    pub fn decided(&self, region: usize, reason: Reason) {
        if let Some(counter) = self
            .regions
            .get(region)
            .and_then(|r| r.decisions.get(reason.index()))
        {
            counter.inc();
        }
    }

    /// The stats of region `index` (handles that do nothing for an unknown index).
    pub fn region(&self, index: usize) -> RegionStats {
        self.regions.get(index).map(|r| r.stats).unwrap_or_default()
    }

    /// Sets every region's state gauge.
    pub fn set_states(&self, states: &[State]) {
        for (region, state) in self.regions.iter().zip(states) {
            region.stats.state.set(state.gauge_value());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_put_region_and_reason_where_tag_regexes_find_them() {
        assert_eq!(
            decision_metric("eu-west-1", Reason::PreferenceFallback),
            "meshward_region_router.region.eu-west-1.reason.preference_fallback.decisions"
        );
        assert_eq!(
            region_metric("us-east-1", "state"),
            "meshward_region_router.region.us-east-1.state"
        );
        assert_eq!(
            RegionStats::NAMES,
            &["failovers", "restored", "successes", "failures", "state"]
        );
        assert_eq!(
            FilterStats::NAMES,
            &[
                "route_header_stripped",
                "preference_ignored",
                "route_errors",
                "health_errors"
            ]
        );
        // Handles defined outside a proxy do nothing.
        Metrics::default().decided(3, Reason::Split);
        Metrics::default().region(9).failovers.inc();
    }
}
