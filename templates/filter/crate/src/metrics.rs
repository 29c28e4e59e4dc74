//! Everything the filter reports, in one list. Envoy shows each counter in
//! `/stats/prometheus` under its name below.

use meshward_shared::metrics::Counter;

/// Responses the filter tagged.
pub const RESPONSES_TAGGED: &str = "meshward___SNAKE___responses_tagged";
/// Responses left alone because their path is skipped.
pub const RESPONSES_SKIPPED: &str = "meshward___SNAKE___responses_skipped";
/// Tags the proxy refused to set; those responses went out untagged.
pub const EDIT_FAILURES: &str = "meshward___SNAKE___edit_failures";

/// The filter's counters, defined once at configure time and copied into each stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    /// See [`RESPONSES_TAGGED`].
    pub responses_tagged: Counter,
    /// See [`RESPONSES_SKIPPED`].
    pub responses_skipped: Counter,
    /// See [`EDIT_FAILURES`].
    pub edit_failures: Counter,
}

impl Metrics {
    /// Defines (or finds) every counter.
    pub fn define() -> Self {
        Metrics {
            responses_tagged: Counter::define(RESPONSES_TAGGED),
            responses_skipped: Counter::define(RESPONSES_SKIPPED),
            edit_failures: Counter::define(EDIT_FAILURES),
        }
    }
}
