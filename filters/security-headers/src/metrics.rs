//! Everything the filter reports, named `meshward_security_headers.<stat>`: Envoy shows
//! each as `wasmcustom.meshward_security_headers.<stat>` in `/stats`, and as
//! `meshward_security_headers_<stat>` in `/stats/prometheus`.

meshward_shared::metrics! {
    /// The filter's counters, defined once at configure time and copied into each stream.
    pub struct Metrics {
        prefix: "meshward_security_headers",
        /// Responses that got at least one security header.
        responses_decorated: Counter,
        /// Leaking headers removed (one per header name removed from a response).
        headers_removed: Counter,
        /// Header edits the proxy refused (for example on a response already sent); the
        /// response went out without that edit.
        edit_failures: Counter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../README.md");
        let unlisted = meshward_shared::metrics::unlisted(readme, Metrics::PREFIX, Metrics::STATS);
        assert_eq!(
            unlisted,
            Vec::<String>::new(),
            "README.md does not list these"
        );
    }
}
