//! The filter's configuration: the JSON users write (every field optional, unknown fields
//! refused) and its validation into the typed, immutable [`Config`] every stream shares.

use meshward_shared::config::{parse_json, ConfigError, HeaderName, HeaderValue};
use meshward_shared::matching::RequestMatch;
use serde::Deserialize;

/// The header the filter sets when the configuration names none.
pub const DEFAULT_HEADER: &str = "x-meshward-__NAME__";
/// Its value when the configuration gives none.
pub const DEFAULT_VALUE: &str = "seen";

/// The plugin configuration as written; see the README for each field. Each field's type
/// checks it as it is read (a refusal names the field), so parsing is declarations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    header: Option<HeaderName>,
    value: Option<HeaderValue>,
    #[serde(default)]
    skip: Vec<RequestMatch>,
    required_header: Option<HeaderName>,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The response header to set, lowercase.
    pub header: String,
    /// Its value.
    pub value: String,
    /// Requests one of these selects are left alone (meshward's request match:
    /// docs/configuration.md).
    pub skip: Vec<RequestMatch>,
    /// A request header every other request must carry exactly once, if set.
    pub required_header: Option<String>,
}

impl Config {
    /// Parses and validates the JSON configuration; the error names the field.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        if let Some(i) = raw.skip.iter().position(RequestMatch::is_empty) {
            return Err(ConfigError::new(
                format!("skip[{i}]"),
                "give at least one condition; an empty match would skip every request",
            ));
        }
        Ok(Config {
            header: raw
                .header
                .map_or_else(|| DEFAULT_HEADER.to_owned(), |h| h.as_str().to_owned()),
            value: raw
                .value
                .map_or_else(|| DEFAULT_VALUE.to_owned(), |v| v.as_str().to_owned()),
            skip: raw.skip,
            required_header: raw.required_header.map(|h| h.as_str().to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(json: &str) -> String {
        Config::parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn an_empty_config_tags_with_the_default_header() {
        let config = Config::parse(b"").unwrap();
        assert_eq!(config.header, DEFAULT_HEADER);
        assert_eq!(config.value, DEFAULT_VALUE);
        assert!(config.skip.is_empty());
        assert_eq!(config.required_header, None);
    }

    #[test]
    fn refuses_a_misspelt_field_by_name() {
        let error = refusal(r#"{"headr": "x-a"}"#);
        assert!(error.contains("unknown field `headr`"), "{error}");
    }

    #[test]
    fn names_the_skip_condition_that_is_wrong() {
        assert!(refusal(
            r#"{"skip": [{"path": {"prefix": "/healthz"}}, {"path": {"prefix": "metrics"}}]}"#
        )
        .starts_with("skip[1].path.prefix: expected a path starting with '/'"));
        assert!(refusal(r#"{"skip": [{}]}"#).starts_with("skip[0]: give at least one condition"));
    }

    #[test]
    fn refuses_header_names_and_values_envoy_would_mangle() {
        assert!(refusal(r#"{"header": "X-Upper"}"#).starts_with("header: "));
        assert!(refusal(r#"{"value": "a\r\nset-cookie: b"}"#).starts_with("value: "));
        assert!(refusal(r#"{"required_header": "X-Tenant"}"#).starts_with("required_header: "));
    }
}
