//! The request's inputs to the decision, parsed from untrusted header bytes: the preferred
//! regions, the latency-sensitive flag, and the session key.

use crate::config::Config;
use meshward_shared::http;

/// At most this many entries of a preference list are looked at.
pub const MAX_PREFERENCES: usize = 8;

/// The regions a client asked for, in its order: `Some(index)` for a configured region,
/// `None` for a name that is not one. Names are trimmed and compared case-insensitively;
/// empty entries are skipped and only the first [`MAX_PREFERENCES`] count.
pub fn parse_preference(config: &Config, value: &[u8]) -> Vec<Option<usize>> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|name| !name.is_empty())
        .take(MAX_PREFERENCES)
        .map(|name| {
            config
                .regions
                .iter()
                .position(|r| r.name.as_bytes().eq_ignore_ascii_case(name))
        })
        .collect()
}

/// Whether a boolean header says yes: `true`, `1`, `yes` or `on`, any case. Anything else,
/// including garbage, is no.
pub fn parse_flag(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    [&b"true"[..], b"1", b"yes", b"on"]
        .iter()
        .any(|yes| value.eq_ignore_ascii_case(yes))
}

/// The value of cookie `name` in the `cookie` header values given: the first that is not
/// empty, unquoted (`meshward_shared::http`'s rules, as every meshward filter reads cookies).
pub fn cookie_value<'a>(cookie_headers: &[&'a [u8]], name: &str) -> Option<&'a [u8]> {
    http::cookie(cookie_headers.iter().copied(), name).first()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let value = json!({
            "regions": [
                {"name": "eu-west-1", "cluster": "a"},
                {"name": "us-east-1", "cluster": "b"}
            ],
            "local_region": "eu-west-1"
        });
        Config::parse(value.to_string().as_bytes(), None).unwrap()
    }

    #[test]
    fn preferences_keep_the_clients_order_and_mark_unknown_names() {
        let c = config();
        assert_eq!(parse_preference(&c, b"us-east-1"), vec![Some(1)]);
        assert_eq!(
            parse_preference(&c, b" US-EAST-1 ,mars-1,, eu-west-1 "),
            vec![Some(1), None, Some(0)]
        );
        assert_eq!(parse_preference(&c, b""), vec![]);
        assert_eq!(parse_preference(&c, b"\xff\xfe"), vec![None]);
        let long = "x,".repeat(100) + "eu-west-1";
        assert_eq!(parse_preference(&c, long.as_bytes()).len(), MAX_PREFERENCES);
    }

    #[test]
    fn only_clear_yes_values_make_a_request_latency_sensitive() {
        for yes in ["true", "TRUE", " 1 ", "yes", "On"] {
            assert!(parse_flag(yes.as_bytes()), "{yes}");
        }
        for no in ["false", "0", "", "no", "off", "truthy", "\u{0}"] {
            assert!(!parse_flag(no.as_bytes()), "{no:?}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let headers: [&[u8]; 2] = [
            b"theme=dark; sid=",
            b"xsession=1; session = abc ; session=def",
        ];
        assert_eq!(cookie_value(&headers, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&headers, "sid"), None);
        assert_eq!(cookie_value(&headers, "missing"), None);
        assert_eq!(cookie_value(&[b"broken"], "broken"), None);
    }
}
