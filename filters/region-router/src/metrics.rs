//! Everything the filter reports. Per-region stats carry the region as a label
//! (`meshward_region_router.region=.=<region>;.;<stat>`), and decisions the reason too
//! (`meshward_region_router.region=.=<region>;.;reason=.=<reason>;.;decisions`): the form
//! in which Istio's `extraStatTags: [region, reason]` (or the stats tags of
//! `envoy-config/region-router.yaml`) lift them into labels, so `/stats/prometheus` shows
//! `meshward_region_router_decisions{region="eu-west-1",reason="split"}`.

use crate::config::Config;
use crate::decide::Reason;
use crate::health::State;

meshward_shared::metrics! {
    /// One region's stats, besides its decisions. Label: `region`.
    pub struct RegionStats {
        prefix: "meshward_region_router",
        /// Times the region was marked unhealthy and its traffic moved away (a failed
        /// probe included).
        failovers: Counter,
        /// Times the region's probes succeeded and it took its share again.
        restored: Counter,
        /// Requests routed to the region that it answered (any status below 500).
        successes: Counter,
        /// Requests routed to the region that failed: 5xx from it, or Envoy could not
        /// reach it.
        failures: Counter,
        /// The region's state: 0 healthy, 1 probing, 2 unhealthy.
        state: Gauge,
    }
}

meshward_shared::metrics! {
    /// Requests sent to a region. Labels: `region`, `reason`.
    pub struct Decisions {
        prefix: "meshward_region_router",
        /// Requests sent to the region, by the reason it was chosen.
        decisions: Counter,
    }
}

meshward_shared::metrics! {
    /// Counters about the filter as a whole.
    pub struct FilterStats {
        prefix: "meshward_region_router",
        /// Requests that arrived with the routing header set: the client's value was
        /// removed.
        route_header_stripped: Counter,
        /// Requests whose preference list named a region that is not configured.
        preference_ignored: Counter,
        /// Requests whose routing header or route refresh the proxy refused; they took the
        /// route table's default.
        route_errors: Counter,
        /// Health reads or updates that failed (shared data unavailable or contended);
        /// reads then count the region healthy.
        health_errors: Counter,
    }
}

/// One region's handles.
#[derive(Clone, Debug, Default)]
pub struct RegionMetrics {
    /// Decisions for this region, indexed by [`Reason::index`].
    pub decisions: [Decisions; Reason::ALL.len()],
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
                decisions: Reason::ALL.map(|reason| {
                    Decisions::define(&[("region", &region.name), ("reason", reason.name())])
                }),
                stats: RegionStats::define(&[("region", &region.name)]),
            })
            .collect();
        Metrics {
            regions,
            filter: FilterStats::define(&[]),
        }
    }

    /// Counts a decision.
    pub fn decided(&self, region: usize, reason: Reason) {
        if let Some(counter) = self
            .regions
            .get(region)
            .and_then(|r| r.decisions.get(reason.index()))
        {
            counter.decisions.inc();
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
    use meshward_shared::metrics::unlisted;

    #[test]
    fn names_carry_region_and_reason_as_labels() {
        assert_eq!(
            Decisions::name(
                &[
                    ("region", "eu-west-1"),
                    ("reason", Reason::PreferenceFallback.name())
                ],
                "decisions"
            ),
            "meshward_region_router.region=.=eu-west-1;.;reason=.=preference_fallback;.;decisions"
        );
        assert_eq!(
            RegionStats::name(&[("region", "us-east-1")], "state"),
            "meshward_region_router.region=.=us-east-1;.;state"
        );
        assert_eq!(
            FilterStats::name(&[], "health_errors"),
            "meshward_region_router.health_errors"
        );
        // Handles defined outside a proxy do nothing.
        Metrics::default().decided(3, Reason::Split);
        Metrics::default().region(9).failovers.inc();
    }

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../README.md");
        let mut missing = unlisted(readme, RegionStats::PREFIX, RegionStats::STATS);
        missing.extend(unlisted(readme, Decisions::PREFIX, Decisions::STATS));
        missing.extend(unlisted(readme, FilterStats::PREFIX, FilterStats::STATS));
        assert_eq!(
            missing,
            Vec::<String>::new(),
            "README.md does not list these"
        );
    }
}
