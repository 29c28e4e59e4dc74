//! The filter's decision, pure: from the configuration and the request path to the header
//! to set, if any. Unit-tested on the host; the adapter in `lib.rs` only applies it.

use crate::config::Config;

/// The header and value to set on the response of a request for `path`, or `None` to
/// leave it alone. A response with no known path (a reply Envoy sent before the request
/// reached the filter) is tagged: no skipped prefix can match it.
pub fn tag<'c>(config: &'c Config, path: Option<&str>) -> Option<(&'c str, &'c str)> {
    let skipped = path.is_some_and(|path| {
        config
            .skip_prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    });
    (!skipped).then_some((config.header.as_str(), config.value.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(br#"{"header": "x-seen", "value": "yes", "skip_prefixes": ["/healthz"]}"#)
            .unwrap()
    }

    #[test]
    fn tags_a_request_outside_the_skipped_prefixes() {
        assert_eq!(tag(&config(), Some("/app")), Some(("x-seen", "yes")));
        assert_eq!(tag(&config(), None), Some(("x-seen", "yes")));
    }

    #[test]
    fn leaves_a_skipped_prefix_alone() {
        assert_eq!(tag(&config(), Some("/healthz")), None);
        assert_eq!(tag(&config(), Some("/healthz/live")), None);
    }
}
