//! Everything the filter reports, in one list: each metric is declared once, as a field,
//! and named `meshward___SNAKE___<field>` in Envoy's `/stats/prometheus`.

meshward_shared::metrics! {
    /// The filter's metrics, defined once at configure time and copied into each stream.
    pub struct Metrics {
        prefix: "meshward___SNAKE__",
        /// Responses the filter tagged.
        responses_tagged: Counter,
        /// Responses left alone because their path is skipped.
        responses_skipped: Counter,
        /// Tags the proxy refused to set; those responses went out untagged.
        edit_failures: Counter,
        /// Requests refused with a 400 because `required_header` was absent, repeated or
        /// not UTF-8.
        requests_refused: Counter,
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
