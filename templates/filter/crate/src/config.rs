//! The filter's configuration: the JSON users write (every field optional, unknown fields
//! refused) and its validation into the typed, immutable [`Config`] every stream shares.

use meshward_shared::config::{check_header_name, check_header_value, parse_json, ConfigError};
use serde::Deserialize;

/// The header the filter sets when the configuration names none.
pub const DEFAULT_HEADER: &str = "x-meshward-__NAME__";
/// Its value when the configuration gives none.
pub const DEFAULT_VALUE: &str = "seen";

/// The plugin configuration as written; see the README for each field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    header: Option<String>,
    value: Option<String>,
    #[serde(default)]
    skip_prefixes: Vec<String>,
    required_header: Option<String>,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The response header to set, lowercase.
    pub header: String,
    /// Its value.
    pub value: String,
    /// Requests whose path starts with one of these are left alone.
    pub skip_prefixes: Vec<String>,
    /// A request header every other request must carry exactly once, if set.
    pub required_header: Option<String>,
}

impl Config {
    /// Parses and validates the JSON configuration; the error names the field.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        let header = raw.header.unwrap_or_else(|| DEFAULT_HEADER.to_owned());
        check_header_name("header", &header)?;
        let value = raw.value.unwrap_or_else(|| DEFAULT_VALUE.to_owned());
        check_header_value("value", &value)?;
        for (i, prefix) in raw.skip_prefixes.iter().enumerate() {
            if !prefix.starts_with('/') {
                return Err(ConfigError::new(
                    format!("skip_prefixes[{i}]"),
                    format!("expected a path prefix starting with \"/\", got {prefix:?}"),
                ));
            }
        }
        if let Some(name) = &raw.required_header {
            check_header_name("required_header", name)?;
        }
        Ok(Config {
            header,
            value,
            skip_prefixes: raw.skip_prefixes,
            required_header: raw.required_header,
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
        assert!(config.skip_prefixes.is_empty());
        assert_eq!(config.required_header, None);
    }

    #[test]
    fn refuses_a_misspelt_field_by_name() {
        let error = refusal(r#"{"headr": "x-a"}"#);
        assert!(error.contains("unknown field `headr`"), "{error}");
    }

    #[test]
    fn names_the_prefix_that_is_not_a_path() {
        assert_eq!(
            refusal(r#"{"skip_prefixes": ["/healthz", "metrics"]}"#),
            r#"skip_prefixes[1]: expected a path prefix starting with "/", got "metrics""#
        );
    }

    #[test]
    fn refuses_header_names_and_values_envoy_would_mangle() {
        assert!(refusal(r#"{"header": "X-Upper"}"#).starts_with("header: "));
        assert!(refusal(r#"{"value": "a\r\nset-cookie: b"}"#).starts_with("value: "));
        assert!(refusal(r#"{"required_header": "X-Tenant"}"#).starts_with("required_header: "));
    }
}
