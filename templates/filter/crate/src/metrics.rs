//! Everything the filter reports, in one list: each metric is declared once, as a field,
//! and named `meshward___SNAKE___<field>` in Envoy's `/stats/prometheus`.

meshward_shared::metrics! {
    /// The filter's metrics, defined once at configure time and copied into each stream.
    pub struct Metrics {
        prefix: "meshward___SNAKE___",
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
