//! Metrics defined once at configure time and used by handle on the request path.
//!
//! Envoy keeps custom metrics under `wasmcustom.` in `/stats` (`wasmcustom.<name>`), and
//! `/stats/prometheus` prints them by their own name, without the prefix. A handle whose definition failed (for example outside a proxy)
//! does nothing, so a metric never breaks a request.

use crate::host::{self, MetricKind};

/// Declares a filter's metrics in one place: each is a field (its handle), named by the
/// prefix and the field's name, documented once. It makes the struct, `NAMES` (every full
/// name, in order) and `define()`, which defines them all at configure time:
///
/// ```
/// meshward_shared::metrics! {
///     /// The filter's metrics, defined once at configure time and copied into each stream.
///     pub struct Metrics {
///         prefix: "meshward_hello_",
///         /// Responses the filter tagged.
///         responses_tagged: Counter,
///         /// Requests in flight.
///         in_flight: Gauge,
///     }
/// }
/// assert_eq!(Metrics::NAMES, ["meshward_hello_responses_tagged", "meshward_hello_in_flight"]);
/// let metrics = Metrics::define(); // outside a proxy the handles do nothing
/// metrics.responses_tagged.inc();
/// ```
#[macro_export]
macro_rules! metrics {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            prefix: $prefix:literal,
            $($(#[$field_meta:meta])* $field:ident: $kind:ident),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        $vis struct $name {
            $($(#[$field_meta])* pub $field: $crate::metrics::$kind,)+
        }

        impl $name {
            /// Every metric's full name, in the order declared.
            pub const NAMES: &'static [&'static str] = &[$(concat!($prefix, stringify!($field))),+];

            /// Defines (or finds) every metric.
            pub fn define() -> Self {
                $name {
                    $($field: $crate::metrics::$kind::define(concat!($prefix, stringify!($field))),)+
                }
            }
        }
    };
}

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
