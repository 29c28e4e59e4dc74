//! Everything jwt-auth reports, named `meshward_jwt_auth.<stat>`; denials carry their
//! reason as a label (`meshward_jwt_auth.reason=.=<reason>;.;denied`). Envoy shows each as
//! `wasmcustom.<name>` in `/stats`; in `/stats/prometheus`, with the stats tag of
//! `envoy-config/jwt-auth.yaml` (or Istio's `extraStatTags: [reason]`), the denials are one
//! metric, `meshward_jwt_auth_denied{reason="<reason>"}`.

use crate::deny::Reason;
use crate::verdict::Tally;

meshward_shared::metrics! {
    /// The counters without a label.
    pub struct Counters {
        prefix: "meshward_jwt_auth",
        /// Requests let through (valid tokens, optional or ignored tokens, CORS preflights).
        allowed: Counter,
        /// Remote JWKS fetches that published a key set.
        jwks_fetch_ok: Counter,
        /// Remote JWKS fetches that failed (the last good keys stayed in use).
        jwks_fetch_failed: Counter,
        /// Tokens found in the verified-token cache.
        cache_hit: Counter,
        /// Tokens verified in full.
        cache_miss: Counter,
        /// Signatures checked by Envoy's `verify_signature` (BoringSSL).
        signature_host: Counter,
        /// Signatures checked in Rust inside the Wasm module.
        signature_wasm: Counter,
        /// Tokens refused because their signature failed moments ago (not verified again).
        failed_cache_hit: Counter,
    }
}

meshward_shared::metrics! {
    /// Denied requests. Label: `reason` (a [`Reason`] name).
    pub struct Denials {
        prefix: "meshward_jwt_auth",
        /// Requests denied, by reason.
        denied: Counter,
    }
}

/// The metric handles.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// The counters without a label.
    pub counters: Counters,
    /// The denials, by reason.
    denied: Vec<(Reason, Denials)>,
}

impl Metrics {
    /// Defines every metric (Envoy shares metrics of the same name across workers).
    pub fn define() -> Self {
        Metrics {
            counters: Counters::define(&[]),
            denied: Reason::ALL
                .iter()
                .map(|r| (*r, Denials::define(&[("reason", r.name())])))
                .collect(),
        }
    }

    /// Counts an allowed request.
    pub fn allowed(&self) {
        self.counters.allowed.inc();
    }

    /// Counts a denied request.
    pub fn denied(&self, reason: Reason) {
        if let Some((_, denials)) = self.denied.iter().find(|(r, _)| *r == reason) {
            denials.denied.inc();
        }
    }

    /// Adds what a verdict did.
    pub fn record(&self, tally: &Tally) {
        let c = &self.counters;
        c.cache_hit.add(tally.cache_hits);
        c.cache_miss.add(tally.cache_misses);
        c.signature_host.add(tally.host_checks);
        c.signature_wasm.add(tally.wasm_checks);
        c.failed_cache_hit.add(tally.failed_hits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::metrics::unlisted;

    #[test]
    fn the_readme_lists_every_metric_and_every_reason() {
        let readme = include_str!("../README.md");
        let mut missing = unlisted(readme, Counters::PREFIX, Counters::STATS);
        missing.extend(unlisted(readme, Denials::PREFIX, Denials::STATS));
        missing.extend(
            Reason::ALL
                .iter()
                .map(|r| format!("| `{}` |", r.name()))
                .filter(|row| !readme.contains(row.as_str())),
        );
        assert_eq!(
            missing,
            Vec::<String>::new(),
            "README.md does not list these"
        );
    }

    #[test]
    fn a_denial_is_named_with_its_reason_as_a_label() {
        assert_eq!(
            Denials::name(&[("reason", Reason::UnknownKid.name())], "denied"),
            "meshward_jwt_auth.reason=.=unknown_kid;.;denied"
        );
        assert_eq!(
            Counters::name(&[], "cache_hit"),
            "meshward_jwt_auth.cache_hit"
        );
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
