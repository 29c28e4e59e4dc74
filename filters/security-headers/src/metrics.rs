//! Everything the filter reports. Envoy shows each counter as `wasmcustom.<name>` in
//! `/stats`, and under its bare `<name>` in `/stats/prometheus`, which drops the
//! `wasmcustom` namespace.

use meshward_shared::metrics::Counter;

/// Responses that got at least one security header.
pub const RESPONSES_DECORATED: &str = "meshward_security_headers_responses_decorated";
/// Leaking headers removed (one per header name removed from a response).
pub const HEADERS_REMOVED: &str = "meshward_security_headers_headers_removed";
/// Header edits the proxy refused (for example on a response already sent); the response
/// went out without that edit.
pub const EDIT_FAILURES: &str = "meshward_security_headers_edit_failures";

/// The filter's counters, defined once at configure time and copied into each stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    /// See [`RESPONSES_DECORATED`].
    pub responses_decorated: Counter,
    /// See [`HEADERS_REMOVED`].
    pub headers_removed: Counter,
    /// See [`EDIT_FAILURES`].
    pub edit_failures: Counter,
}

impl Metrics {
    /// Defines (or finds) every counter.
    pub fn define() -> Self {
        Metrics {
            responses_decorated: Counter::define(RESPONSES_DECORATED),
            headers_removed: Counter::define(HEADERS_REMOVED),
            edit_failures: Counter::define(EDIT_FAILURES),
        }
    }
}
