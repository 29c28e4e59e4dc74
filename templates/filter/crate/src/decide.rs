//! The filter's decisions, pure: from the configuration and what the request carried to
//! what to do. Unit-tested on the host; the adapter in `lib.rs` only applies them.

use crate::config::Config;
use meshward_shared::host::HeaderError;
use meshward_shared::matching::RequestView;

/// Whether the filter leaves `request` alone: one of the `skip` matches selects it. Only
/// what those matches ask for is read.
pub fn skipped(config: &Config, request: &(impl RequestView + ?Sized)) -> bool {
    config.skip.iter().any(|m| m.matches(request))
}

/// The header and value to set on a response, or `None` to leave it alone. A reply Envoy
/// sent before the request reached the filter was never skipped, so it is tagged.
pub fn tag(config: &Config, skipped: bool) -> Option<(&str, &str)> {
    (!skipped).then_some((config.header.as_str(), config.value.as_str()))
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
        Config::parse(
            br#"{"header": "x-seen", "value": "yes", "skip": [{"path": {"prefix": "/healthz"}}]}"#,
        )
        .unwrap()
    }

    fn get(path: &str) -> Vec<(String, Vec<u8>)> {
        vec![(":path".into(), path.into()), (":method".into(), "GET".into())]
    }

    #[test]
    fn tags_a_request_the_skip_matches_do_not_select() {
        let config = config();
        assert!(!skipped(&config, &get("/app")));
        assert_eq!(tag(&config, false), Some(("x-seen", "yes")));
    }

    #[test]
    fn leaves_a_skipped_request_alone() {
        let config = config();
        assert!(skipped(&config, &get("/healthz")));
        assert!(skipped(&config, &get("/healthz/live?x=1")));
        assert_eq!(tag(&config, true), None);
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
