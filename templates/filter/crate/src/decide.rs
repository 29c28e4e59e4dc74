//! The filter's decisions, pure: from the configuration and what the request carried to
//! what to do. Unit-tested on the host; the adapter in `lib.rs` only applies them.

use crate::config::Config;
use meshward_shared::host::HeaderError;

/// Whether the filter leaves a request for `path` alone. A response with no known path (a
/// reply Envoy sent before the request reached the filter) is not skipped: no skipped
/// prefix can match it.
pub fn skipped(config: &Config, path: Option<&str>) -> bool {
    path.is_some_and(|path| {
        config
            .skip_prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    })
}

/// The header and value to set on the response of a request for `path`, or `None` to
/// leave it alone.
pub fn tag<'c>(config: &'c Config, path: Option<&str>) -> Option<(&'c str, &'c str)> {
    (!skipped(config, path)).then_some((config.header.as_str(), config.value.as_str()))
}

/// A request the filter answers itself: the reply's code (also in Envoy's response code
/// details as `meshward_<code>`) and the message the client reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A short machine-readable reason.
    pub code: &'static str,
    /// What the client reads.
    pub message: String,
}

/// Lets a request through if the required header `name` came exactly once, as UTF-8
/// (`value` is what `host::header_unique` read). Anything else is refused: absent, repeated
/// (a check of the first value would pass while the upstream sees both), not UTF-8, or not
/// readable.
pub fn admit(name: &str, value: Result<Option<String>, HeaderError>) -> Result<(), Refusal> {
    match value {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Refusal {
            code: "missing_header",
            message: format!("the request must carry the header {name}"),
        }),
        Err(error) => Err(Refusal {
            code: "bad_header",
            message: format!("{name}: {error}"),
        }),
    }
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

    #[test]
    fn admits_only_a_single_readable_value() {
        assert_eq!(admit("x-tenant", Ok(Some("acme".into()))), Ok(()));
        assert_eq!(admit("x-tenant", Ok(None)).unwrap_err().code, "missing_header");
        let repeated = admit("x-tenant", Err(HeaderError::Repeated(2))).unwrap_err();
        assert_eq!(repeated.code, "bad_header");
        assert_eq!(repeated.message, "x-tenant: the header appears 2 times");
        assert!(admit("x-tenant", Err(HeaderError::NotUtf8)).is_err());
    }
}
