//! Everything jwt-auth reports, in one list. Envoy shows each as `wasmcustom.<name>` in
//! `/stats` and as `<name>` in `/stats/prometheus`; with the stats tag of
//! `envoy-config/jwt-auth.yaml` the denials become one metric,
//! `meshward_jwt_auth_denied{reason="<reason>"}`.

use crate::deny::Reason;
use crate::verdict::Tally;
use meshward_shared::metrics::Counter;

/// Requests let through (valid tokens, optional or ignored tokens, CORS preflights).
pub const ALLOWED: &str = "meshward_jwt_auth_allowed";
/// Denied requests: this prefix and a [`Reason`] name (`…_denied_expired`).
pub const DENIED_PREFIX: &str = "meshward_jwt_auth_denied_";
/// Remote JWKS fetches that published a key set.
pub const JWKS_FETCH_OK: &str = "meshward_jwt_auth_jwks_fetch_ok";
/// Remote JWKS fetches that failed (the last good keys stayed in use).
pub const JWKS_FETCH_FAILED: &str = "meshward_jwt_auth_jwks_fetch_failed";
/// Tokens found in the verified-token cache.
pub const CACHE_HIT: &str = "meshward_jwt_auth_cache_hit";
/// Tokens verified in full.
pub const CACHE_MISS: &str = "meshward_jwt_auth_cache_miss";
/// Signatures checked by Envoy's `verify_signature` (BoringSSL).
pub const SIGNATURE_HOST: &str = "meshward_jwt_auth_signature_host";
/// Signatures checked in Rust inside the Wasm module.
pub const SIGNATURE_WASM: &str = "meshward_jwt_auth_signature_wasm";
/// Tokens refused because their signature failed moments ago (not verified again).
pub const FAILED_CACHE_HIT: &str = "meshward_jwt_auth_failed_cache_hit";

/// The metric handles.
#[derive(Clone, Debug)]
pub struct Metrics {
    allowed: Counter,
    denied: Vec<(Reason, Counter)>,
    /// See [`JWKS_FETCH_OK`].
    pub jwks_fetch_ok: Counter,
    /// See [`JWKS_FETCH_FAILED`].
    pub jwks_fetch_failed: Counter,
    cache_hit: Counter,
    cache_miss: Counter,
    signature_host: Counter,
    signature_wasm: Counter,
    failed_cache_hit: Counter,
}

impl Metrics {
    /// Defines every metric (Envoy shares metrics of the same name across workers).
    pub fn define() -> Self {
        Metrics {
            allowed: Counter::define(ALLOWED),
            denied: Reason::ALL
                .iter()
                .map(|r| (*r, Counter::define(&format!("{DENIED_PREFIX}{}", r.name()))))
                .collect(),
            jwks_fetch_ok: Counter::define(JWKS_FETCH_OK),
            jwks_fetch_failed: Counter::define(JWKS_FETCH_FAILED),
            cache_hit: Counter::define(CACHE_HIT),
            cache_miss: Counter::define(CACHE_MISS),
            signature_host: Counter::define(SIGNATURE_HOST),
            signature_wasm: Counter::define(SIGNATURE_WASM),
            failed_cache_hit: Counter::define(FAILED_CACHE_HIT),
        }
    }

    /// Counts an allowed request.
    pub fn allowed(&self) {
        self.allowed.inc();
    }

    /// Counts a denied request.
    pub fn denied(&self, reason: Reason) {
        if let Some((_, counter)) = self.denied.iter().find(|(r, _)| *r == reason) {
            counter.inc();
        }
    }

    /// Adds what a verdict did.
    pub fn record(&self, tally: &Tally) {
        self.cache_hit.add(tally.cache_hits);
        self.cache_miss.add(tally.cache_misses);
        self.signature_host.add(tally.host_checks);
        self.signature_wasm.add(tally.wasm_checks);
        self.failed_cache_hit.add(tally.failed_hits);
    }
}

/// Every metric name, for documentation and tests.
pub fn names() -> Vec<String> {
    let mut names = vec![ALLOWED.to_string()];
    names.extend(
        Reason::ALL
            .iter()
            .map(|r| format!("{DENIED_PREFIX}{}", r.name())),
    );
    names.extend(
        [
            JWKS_FETCH_OK,
            JWKS_FETCH_FAILED,
            CACHE_HIT,
            CACHE_MISS,
            SIGNATURE_HOST,
            SIGNATURE_WASM,
            FAILED_CACHE_HIT,
        ]
        .map(String::from),
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_one_counter_per_denial_reason() {
        let names = names();
        assert_eq!(names.len(), 1 + 10 + 7);
        assert!(names.contains(&"meshward_jwt_auth_denied_insufficient_claims".to_string()));
    }

    #[test]
    fn counting_outside_a_proxy_does_nothing() {
        let metrics = Metrics::define();
        metrics.denied(Reason::Expired);
        metrics.record(&Tally {
            cache_hits: 1,
            ..Tally::default()
        });
    }
}
