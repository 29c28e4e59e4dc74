//! Metrics defined once at configure time and used by handle on the request path.
//!
//! Envoy keeps custom metrics under `wasmcustom.` in `/stats` (`wasmcustom.<name>`), and
//! `/stats/prometheus` prints them by their own name, without the prefix. A handle whose definition failed (for example outside a proxy)
//! does nothing, so a metric never breaks a request.

use crate::host::{self, MetricKind};

/// A counter: only goes up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter(Option<u32>);

/// A gauge: goes up and down, or is set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauge(Option<u32>);

/// A histogram: records samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Histogram(Option<u32>);

impl Counter {
    /// Defines (or finds) the counter `name`.
    pub fn define(name: &str) -> Self {
        Counter(host::define_metric(MetricKind::Counter, name).ok())
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n` (a zero is skipped: Envoy refuses it).
    pub fn add(&self, n: u64) {
        if let (Some(id), Ok(n @ 1..)) = (self.0, i64::try_from(n)) {
            // A metric that cannot be updated must not fail the request; nothing to do.
            let _ = host::increment_metric(id, n);
        }
    }
}

impl Gauge {
    /// Defines (or finds) the gauge `name`.
    pub fn define(name: &str) -> Self {
        Gauge(host::define_metric(MetricKind::Gauge, name).ok())
    }
    /// Sets the gauge.
    pub fn set(&self, value: u64) {
        if let Some(id) = self.0 {
            // See `Counter::add`: metrics never fail a request.
            let _ = host::record_metric(id, value);
        }
    }
    /// Adds `delta` (negative to go down).
    pub fn add(&self, delta: i64) {
        if let (Some(id), true) = (self.0, delta != 0) {
            // See `Counter::add`: metrics never fail a request.
            let _ = host::increment_metric(id, delta);
        }
    }
}

impl Histogram {
    /// Defines (or finds) the histogram `name`.
    pub fn define(name: &str) -> Self {
        Histogram(host::define_metric(MetricKind::Histogram, name).ok())
    }
    /// Records one sample.
    pub fn record(&self, value: u64) {
        if let Some(id) = self.0 {
            // See `Counter::add`: metrics never fail a request.
            let _ = host::record_metric(id, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_defined_outside_a_proxy_do_nothing_and_do_not_panic() {
        let c = Counter::define("x");
        c.inc();
        c.add(u64::MAX);
        Gauge::define("g").add(-1);
        Histogram::define("h").record(5);
    }
}
