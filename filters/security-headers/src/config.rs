//! The filter's configuration: the JSON users write (every field optional, unknown fields
//! refused) and its validation into the typed, immutable [`Config`] every stream shares.
//! Header values are checked and rendered here, once, so a response only copies them.

use crate::headers::{Header, Mode};
use crate::leaks::{RemovalList, DEFAULT_LEAK_HEADERS};
use crate::path_match;
use meshward_shared::config::{parse_json, ConfigError, HeaderName, HeaderValue};
use meshward_shared::matching::{PathMatch, RequestMatch};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// The plugin configuration as written; see the README for each field.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    /// Changes to the secure default headers.
    headers: Patches,
    /// Which leaking response headers to remove.
    remove_headers: RawRemove,
    /// Believe `x-forwarded-proto` when deciding whether a request came over HTTPS.
    trust_x_forwarded_proto: bool,
    /// Header changes for some request paths; the first matching override applies.
    overrides: Vec<RawOverride>,
}

/// The removal list: the defaults, plus `names`, minus `except`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRemove {
    include_defaults: bool,
    names: Vec<HeaderName>,
    except: Vec<HeaderName>,
}

impl Default for RawRemove {
    fn default() -> Self {
        RawRemove {
            include_defaults: true,
            names: Vec::new(),
            except: Vec::new(),
        }
    }
}

/// Header changes for the requests `match` selects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    r#match: RequestMatch,
    #[serde(default)]
    headers: Patches,
}

/// The header entries written at one level (`headers` or an override's), keyed by
/// [`Header::field`]; an absent entry keeps what the level above says.
#[derive(Debug, Default)]
struct Patches(Vec<(Header, Patch)>);

/// Every field of a header entry, whichever header it is for.
#[derive(Debug, Default)]
struct Patch {
    mode: Option<Mode>,
    value: Option<HeaderValue>,
    https_only: Option<bool>,
    report_only: Option<bool>,
    html_only: Option<bool>,
}

/// A header entry: how to apply it and its value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    mode: Option<Mode>,
    value: Option<HeaderValue>,
}

/// The Strict-Transport-Security entry, which may be limited to HTTPS requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHsts {
    mode: Option<Mode>,
    value: Option<HeaderValue>,
    https_only: Option<bool>,
}

/// The Content-Security-Policy entry, which may be report-only and limited to documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCsp {
    mode: Option<Mode>,
    value: Option<HeaderValue>,
    report_only: Option<bool>,
    html_only: Option<bool>,
}

impl From<RawHeader> for Patch {
    fn from(raw: RawHeader) -> Patch {
        Patch {
            mode: raw.mode,
            value: raw.value,
            ..Patch::default()
        }
    }
}

impl From<RawHsts> for Patch {
    fn from(raw: RawHsts) -> Patch {
        Patch {
            mode: raw.mode,
            value: raw.value,
            https_only: raw.https_only,
            ..Patch::default()
        }
    }
}

impl From<RawCsp> for Patch {
    fn from(raw: RawCsp) -> Patch {
        Patch {
            mode: raw.mode,
            value: raw.value,
            report_only: raw.report_only,
            html_only: raw.html_only,
            ..Patch::default()
        }
    }
}

impl<'de> Deserialize<'de> for Patches {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PatchesVisitor)
    }
}

struct PatchesVisitor;

impl<'de> Visitor<'de> for PatchesVisitor {
    type Value = Patches;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with an entry per header, such as \"x_frame_options\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Patches, A::Error> {
        let mut patches: Vec<(Header, Patch)> = Vec::new();
        while let Some(header) = map.next_key::<Header>()? {
            if patches.iter().any(|(seen, _)| *seen == header) {
                return Err(de::Error::duplicate_field(header.field()));
            }
            let patch = match header {
                Header::StrictTransportSecurity => map.next_value::<RawHsts>()?.into(),
                Header::ContentSecurityPolicy => map.next_value::<RawCsp>()?.into(),
                _ => map.next_value::<RawHeader>()?.into(),
            };
            patches.push((header, patch));
        }
        Ok(Patches(patches))
    }
}

/// One header's resolved settings at one level (top level or an override).
#[derive(Clone, Debug)]
struct Setting {
    header: Header,
    mode: Mode,
    value: String,
    https_only: bool,
    report_only: bool,
    html_only: bool,
}

fn default_settings() -> Vec<Setting> {
    Header::ALL
        .iter()
        .map(|&header| Setting {
            header,
            mode: header.default_mode(),
            value: header.default_value().to_string(),
            https_only: false,
            report_only: false,
            html_only: false,
        })
        .collect()
}

/// Applies the entries written at `at` (`headers` or `overrides[2].headers`) on top of the
/// settings inherited from the level above, checking each value given.
fn apply(settings: &mut [Setting], patches: Patches, at: &str) -> Result<(), ConfigError> {
    for (header, patch) in patches.0 {
        let path = format!("{at}.{}", header.field());
        let Some(setting) = settings.iter_mut().find(|s| s.header == header) else {
            continue;
        };
        let more_than_mode = patch.value.is_some()
            || patch.https_only.is_some()
            || patch.report_only.is_some()
            || patch.html_only.is_some();
        if patch.mode.is_none() && setting.mode == Mode::Off && more_than_mode {
            return Err(ConfigError::new(
                path,
                "the header is off here, so these settings would have no effect; add \
                 \"mode\": \"overwrite\" or \"keep_upstream\" to send it",
            ));
        }
        if let Some(value) = patch.value {
            setting.value = header
                .check(value.as_str())
                .map_err(|m| ConfigError::new(format!("{path}.value"), m))?;
        }
        setting.mode = patch.mode.unwrap_or(setting.mode);
        setting.https_only = patch.https_only.unwrap_or(setting.https_only);
        setting.report_only = patch.report_only.unwrap_or(setting.report_only);
        setting.html_only = patch.html_only.unwrap_or(setting.html_only);
    }
    Ok(())
}

/// A header to send, rendered once at configure time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The lowercase header name.
    pub name: &'static str,
    /// The value, checked and in canonical form.
    pub value: String,
    /// Leave the response alone when it already carries `name`.
    pub keep_upstream: bool,
    /// Send only when the request is known to have come over HTTPS.
    pub https_only: bool,
    /// Send only on documents (HTML and the like) and responses without a Content-Type.
    pub html_only: bool,
}

/// The headers sent on one group of requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The headers to send, in `Header::ALL` order; headers whose mode is `off` are absent.
    pub rules: Vec<Rule>,
}

impl Policy {
    fn render(settings: &[Setting]) -> Policy {
        let rules = settings
            .iter()
            .filter(|s| s.mode != Mode::Off)
            .map(|s| Rule {
                name: if s.header == Header::ContentSecurityPolicy && s.report_only {
                    "content-security-policy-report-only"
                } else {
                    s.header.name()
                },
                value: s.value.clone(),
                keep_upstream: s.mode == Mode::KeepUpstream,
                https_only: s.https_only,
                html_only: s.html_only,
            })
            .collect();
        Policy { rules }
    }
}

/// An override, resolved into the full policy the requests it selects get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// Which requests it applies to.
    pub matcher: RequestMatch,
    /// The headers those paths get.
    pub policy: Policy,
}

/// The validated configuration every stream reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The headers for requests no override matches (and for replies with no request).
    pub base: Policy,
    /// The overrides, in config order; the first match wins.
    pub overrides: Vec<Override>,
    /// Response headers to remove.
    pub remove: RemovalList,
    /// Whether `x-forwarded-proto` decides if a request came over HTTPS.
    pub trust_x_forwarded_proto: bool,
    /// Whether a request's path matters (some override could match it): else the
    /// adapter does not read `:path`.
    pub reads_path: bool,
    /// Whether a request came over HTTPS matters (some header is sent on HTTPS
    /// only): else the adapter reads neither `:scheme` nor `x-forwarded-proto`.
    pub reads_scheme: bool,
}

impl Config {
    /// Parses and validates the plugin configuration; errors name the field path.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::build(parse_json(bytes)?)
    }

    fn build(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut top = default_settings();
        apply(&mut top, raw.headers, "headers")?;
        let mut overrides = Vec::with_capacity(raw.overrides.len());
        for (i, o) in raw.overrides.into_iter().enumerate() {
            let at = format!("overrides[{i}]");
            let matcher = checked_match(o.r#match).map_err(|e| e.within(&at))?;
            if o.headers.0.is_empty() {
                return Err(ConfigError::new(
                    format!("{at}.headers"),
                    "an override must change at least one header",
                ));
            }
            let mut settings = top.clone();
            apply(&mut settings, o.headers, &format!("{at}.headers"))?;
            overrides.push(Override {
                matcher,
                policy: Policy::render(&settings),
            });
        }
        let base = Policy::render(&top);
        let remove = removal_list(raw.remove_headers, &base, &overrides)?;
        let reads_scheme = std::iter::once(&base)
            .chain(overrides.iter().map(|o| &o.policy))
            .any(|p| p.rules.iter().any(|r| r.https_only));
        Ok(Config {
            reads_path: !overrides.is_empty(),
            reads_scheme,
            base,
            overrides,
            remove,
            trust_x_forwarded_proto: raw.trust_x_forwarded_proto,
        })
    }

    /// A one-line description for the log.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.base.rules.iter().map(|r| r.name).collect();
        format!(
            "sets {} headers ({}), removes {} leaking headers, {} path overrides, x-forwarded-proto {}",
            names.len(),
            names.join(", "),
            self.remove.len(),
            self.overrides.len(),
            if self.trust_x_forwarded_proto { "trusted" } else { "ignored" }
        )
    }
}

/// An override's match, with what only this filter asks of it: at least one condition (the
/// top-level `headers` are for every request), and a path condition in normal form, since a
/// request whose path is not never selects an override.
fn checked_match(matcher: RequestMatch) -> Result<RequestMatch, ConfigError> {
    if matcher.is_empty() {
        return Err(ConfigError::new(
            "match",
            "give at least one condition (for example \"path\": {\"prefix\": \"/docs/\"}); the top-level headers are for every request",
        ));
    }
    let (field, text) = match &matcher.path {
        Some(PathMatch::Exact(path)) => ("exact", path.as_str()),
        // A prefix may end in a partial segment ("/docs/." is not a dot segment of any
        // path it matches), so only check what a full path must be.
        Some(PathMatch::Prefix(prefix)) => ("prefix", prefix.as_str().trim_end_matches('.')),
        Some(PathMatch::Regex(_)) | None => return Ok(matcher),
    };
    if !path_match::is_normal(text) {
        return Err(ConfigError::new(
            format!("match.path.{field}"),
            format!(
                "{text:?} is not in normal form (dot segments, // or encoded . / \\), and requests \
                 with such paths never select an override"
            ),
        ));
    }
    Ok(matcher)
}

fn removal_list(
    raw: RawRemove,
    base: &Policy,
    overrides: &[Override],
) -> Result<RemovalList, ConfigError> {
    let mut remove: Vec<String> = if raw.include_defaults {
        DEFAULT_LEAK_HEADERS.iter().map(|n| n.to_string()).collect()
    } else {
        Vec::new()
    };
    // Lookups below and on every response binary-search this list.
    remove.sort_unstable();
    remove.dedup();
    let except: Vec<String> = raw
        .except
        .into_iter()
        .map(HeaderName::into_string)
        .collect();
    for (i, name) in except.iter().enumerate() {
        let path = format!("remove_headers.except[{i}]");
        if !raw.include_defaults {
            return Err(ConfigError::new(
                path,
                "except keeps names from the default list, but include_defaults is false",
            ));
        }
        let Ok(at) = remove.binary_search(name) else {
            return Err(ConfigError::new(
                path,
                format!("{name:?} is not in the default list, so there is nothing to keep"),
            ));
        };
        remove.remove(at);
    }
    let sent = |name: &str| {
        std::iter::once(base)
            .chain(overrides.iter().map(|o| &o.policy))
            .flat_map(|p| p.rules.iter())
            .any(|r| r.name == name)
    };
    for (i, name) in raw
        .names
        .into_iter()
        .map(HeaderName::into_string)
        .enumerate()
    {
        let path = format!("remove_headers.names[{i}]");
        if except.contains(&name) {
            return Err(ConfigError::new(
                path,
                format!("{name:?} is also in except"),
            ));
        }
        if sent(&name) {
            return Err(ConfigError::new(
                path,
                format!(
                    "{name:?} is a header this filter sends; set its mode to \"off\" under \
                     headers (and in every override) before removing it"
                ),
            ));
        }
        if let Err(at) = remove.binary_search(&name) {
            remove.insert(at, name);
        }
    }
    Ok(RemovalList::new(remove))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{DEFAULT_CSP, DEFAULT_PERMISSIONS_POLICY};
    use meshward_shared::config::RequestPath;

    fn parse(json: &str) -> Config {
        Config::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn refused(json: &str) -> String {
        Config::parse(json.as_bytes()).expect_err(json).to_string()
    }

    fn rule<'a>(policy: &'a Policy, name: &str) -> Option<&'a Rule> {
        policy.rules.iter().find(|r| r.name == name)
    }

    #[test]
    fn an_empty_config_sends_the_secure_default_set() {
        let config = parse("");
        let sent: Vec<(&str, &str)> = config
            .base
            .rules
            .iter()
            .map(|r| (r.name, r.value.as_str()))
            .collect();
        assert_eq!(
            sent,
            [
                (
                    "strict-transport-security",
                    "max-age=63072000; includeSubDomains"
                ),
                ("content-security-policy", DEFAULT_CSP),
                ("x-content-type-options", "nosniff"),
                ("x-frame-options", "DENY"),
                ("referrer-policy", "no-referrer"),
                ("cross-origin-opener-policy", "same-origin"),
                ("cross-origin-resource-policy", "same-origin"),
                ("permissions-policy", DEFAULT_PERMISSIONS_POLICY),
                ("x-dns-prefetch-control", "off"),
                ("x-permitted-cross-domain-policies", "none"),
                ("origin-agent-cluster", "?1"),
                ("x-xss-protection", "0"),
            ]
        );
        let csp = rule(&config.base, "content-security-policy").unwrap();
        assert!(
            csp.keep_upstream,
            "an application's own CSP wins by default"
        );
        assert!(config.base.rules.iter().filter(|r| r.keep_upstream).count() == 1);
        assert!(config.remove.find("server").is_some());
        assert!(!config.trust_x_forwarded_proto);
        assert_eq!(parse("{}"), config);
    }

    #[test]
    fn each_header_can_be_changed_turned_off_or_kept_from_the_upstream() {
        let config = parse(
            r#"{"headers": {
                "x_frame_options": {"value": "sameorigin"},
                "referrer_policy": {"mode": "off"},
                "permissions_policy": {"mode": "keep_upstream", "value": "camera=()"},
                "cross_origin_embedder_policy": {"mode": "overwrite"},
                "content_security_policy": {"mode": "overwrite", "value": "default-src 'none'", "report_only": true, "html_only": true},
                "strict_transport_security": {"value": "max-age=31536000", "https_only": true}
            }}"#,
        );
        let base = &config.base;
        assert_eq!(rule(base, "x-frame-options").unwrap().value, "SAMEORIGIN");
        assert!(rule(base, "referrer-policy").is_none());
        let pp = rule(base, "permissions-policy").unwrap();
        assert!(pp.keep_upstream && pp.value == "camera=()");
        assert_eq!(
            rule(base, "cross-origin-embedder-policy").unwrap().value,
            "require-corp"
        );
        assert!(rule(base, "content-security-policy").is_none());
        let csp = rule(base, "content-security-policy-report-only").unwrap();
        assert!(csp.html_only && !csp.keep_upstream && csp.value == "default-src 'none'");
        let hsts = rule(base, "strict-transport-security").unwrap();
        assert!(hsts.https_only && hsts.value == "max-age=31536000");
    }

    #[test]
    fn an_override_inherits_every_setting_it_does_not_change() {
        let config = parse(
            r#"{
                "headers": {"content_security_policy": {"html_only": true}},
                "overrides": [
                    {"match": {"path": {"prefix": "/docs/"}}, "headers": {"content_security_policy": {"value": "default-src 'self' https:"}}},
                    {"match": {"path": {"exact": "/embed"}}, "headers": {"x_frame_options": {"mode": "off"}}}
                ]
            }"#,
        );
        let docs = &config.overrides[0];
        assert_eq!(
            docs.matcher.path,
            Some(PathMatch::Prefix(RequestPath::parse("/docs/").unwrap()))
        );
        let csp = rule(&docs.policy, "content-security-policy").unwrap();
        assert_eq!(csp.value, "default-src 'self' https:");
        assert!(csp.html_only && csp.keep_upstream);
        assert_eq!(rule(&docs.policy, "x-frame-options").unwrap().value, "DENY");
        let embed = &config.overrides[1];
        assert_eq!(
            embed.matcher.path,
            Some(PathMatch::Exact(RequestPath::parse("/embed").unwrap()))
        );
        assert!(rule(&embed.policy, "x-frame-options").is_none());
        assert_eq!(
            rule(&embed.policy, "content-security-policy")
                .unwrap()
                .value,
            DEFAULT_CSP
        );
    }

    #[test]
    fn the_removal_list_is_the_defaults_plus_names_minus_except() {
        let config =
            parse(r#"{"remove_headers": {"names": ["x-debug-node"], "except": ["x-b3-traceid"]}}"#);
        assert!(config.remove.find("x-debug-node").is_some());
        assert!(config.remove.find("x-b3-traceid").is_none());
        assert!(config.remove.find("server").is_some());
        assert_eq!(config.remove.len(), DEFAULT_LEAK_HEADERS.len());

        let only = parse(
            r#"{"remove_headers": {"include_defaults": false, "names": ["via", "server", "via"]}}"#,
        );
        assert_eq!(only.remove.names(), ["via", "server"]);
    }

    #[test]
    fn refuses_bad_values_naming_the_field() {
        let cases = [
            (
                r#"{"headers": {"strict_transport_security": {"value": "max-age=abc"}}}"#,
                r#"headers.strict_transport_security.value: max-age must be a whole number of seconds, got "abc""#,
            ),
            (
                r#"{"headers": {"x_frame_options": {"value": "DENY\r\nSet-Cookie: a=b"}}}"#,
                "headers.x_frame_options.value: must not contain CR, LF or NUL characters",
            ),
            (
                r#"{"headers": {"x_frame_options": {"mode": "off"}, "x_frame_options": {}}}"#,
                "headers: duplicate field `x_frame_options`",
            ),
            (
                r#"{"headers": {"x_frame_options": {"value": "ALLOWALL"}}}"#,
                r#"headers.x_frame_options.value: expected one of DENY, SAMEORIGIN, got "ALLOWALL""#,
            ),
            (
                r#"{"overrides": [{"match": {"path": {"prefix": "/a/"}}, "headers": {"content_security_policy": {"value": "default-src self"}}}]}"#,
                "overrides[0].headers.content_security_policy.value: default-src: \"self\" must be in single quotes",
            ),
            (
                r#"{"headers": {"permissions_policy": {"value": "camera 'none'"}}}"#,
                "headers.permissions_policy.value: this looks like the old Feature-Policy syntax",
            ),
            (
                r#"{"headers": {"referrer_policy": {"mode": "sometimes"}}}"#,
                "headers.referrer_policy.mode: unknown variant `sometimes`, expected one of `overwrite`, `keep_upstream`, `off`",
            ),
            (
                r#"{"headers": {"cross_origin_embedder_policy": {"value": "credentialless"}}}"#,
                "headers.cross_origin_embedder_policy: the header is off here",
            ),
        ];
        for (json, expected) in cases {
            let err = refused(json);
            assert!(
                err.starts_with(expected),
                "{json}\n got: {err}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn refuses_unknown_fields_anywhere() {
        for (json, field) in [
            (r#"{"header": {}}"#, "header: unknown field `header`"),
            (r#"{"headers": {"x_frame_option": {}}}"#, "headers.x_frame_option: unknown field `x_frame_option`"),
            (r#"{"headers": {"x_frame_options": {"https_only": true}}}"#, "headers.x_frame_options.https_only: unknown field `https_only`, expected `mode` or `value`"),
            (r#"{"remove_headers": {"name": []}}"#, "remove_headers.name: unknown field `name`"),
            (r#"{"overrides": [{"match": {"paths": {}}, "headers": {}}]}"#, "overrides[0].match.paths: unknown field `paths`, expected one of `hosts`, `path`, `methods`, `headers`"),
        ] {
            let err = refused(json);
            assert!(err.starts_with(field), "{json}: {err}");
        }
    }

    #[test]
    fn refuses_contradictory_or_malformed_overrides_and_removals() {
        let cases = [
            (
                r#"{"overrides": [{"headers": {"x_frame_options": {"mode": "off"}}}]}"#,
                "overrides[0]: missing field `match`",
            ),
            (
                r#"{"overrides": [{"match": {}, "headers": {"x_frame_options": {"mode": "off"}}}]}"#,
                "overrides[0].match: give at least one condition",
            ),
            (
                r#"{"overrides": [{"match": {"path": {"prefix": "/a", "exact": "/b"}}, "headers": {"x_frame_options": {"mode": "off"}}}]}"#,
                "overrides[0].match.path: give exactly one of exact, prefix or regex",
            ),
            (
                r#"{"overrides": [{"match": {"prefix": "/docs/"}, "headers": {"x_frame_options": {"mode": "off"}}}]}"#,
                r#"overrides[0].match.prefix: unknown field; use "path": {"prefix": ...}"#,
            ),
            (
                r#"{"overrides": [{"match": {"path": {"exact": "/a b"}}, "headers": {"x_frame_options": {"mode": "off"}}}]}"#,
                "overrides[0].match.path.exact: expected a path starting with '/'",
            ),
            (
                r#"{"overrides": [{"match": {"path": {"prefix": "/a/../b/"}}, "headers": {"x_frame_options": {"mode": "off"}}}]}"#,
                "overrides[0].match.path.prefix: \"/a/../b/\" is not in normal form",
            ),
            (
                r#"{"overrides": [{"match": {"path": {"prefix": "/a/"}}}]}"#,
                "overrides[0].headers: an override must change at least one header",
            ),
            (
                r#"{"remove_headers": {"names": ["X-Powered-By"]}}"#,
                "remove_headers.names[0]: header names are lowercase",
            ),
            (
                r#"{"remove_headers": {"names": [":status"]}}"#,
                "remove_headers.names[0]: expected a header name",
            ),
            (
                r#"{"remove_headers": {"names": ["x-frame-options"]}}"#,
                "remove_headers.names[0]: \"x-frame-options\" is a header this filter sends",
            ),
            (
                r#"{"remove_headers": {"except": ["via"]}}"#,
                "remove_headers.except[0]: \"via\" is not in the default list",
            ),
            (
                r#"{"remove_headers": {"include_defaults": false, "except": ["server"]}}"#,
                "remove_headers.except[0]: except keeps names",
            ),
            (
                r#"{"remove_headers": {"names": ["server"], "except": ["server"]}}"#,
                "remove_headers.names[0]: \"server\" is also in except",
            ),
        ];
        for (json, expected) in cases {
            let err = refused(json);
            assert!(
                err.starts_with(expected),
                "{json}\n got: {err}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn a_header_turned_off_everywhere_may_be_removed() {
        let config = parse(
            r#"{"headers": {"x_frame_options": {"mode": "off"}}, "remove_headers": {"names": ["x-frame-options"]}}"#,
        );
        assert!(config.remove.find("x-frame-options").is_some());
        let err = refused(
            r#"{"headers": {"x_frame_options": {"mode": "off"}}, "remove_headers": {"names": ["x-frame-options"]},
            "overrides": [{"match": {"path": {"prefix": "/x/"}}, "headers": {"x_frame_options": {"mode": "overwrite"}}}]}"#,
        );
        assert!(err.contains("is a header this filter sends"), "{err}");
    }

    #[test]
    fn refuses_syntax_errors_and_wrong_types() {
        assert!(refused("{").contains("invalid JSON"));
        assert!(refused(r#"{"trust_x_forwarded_proto": "yes"}"#)
            .starts_with("trust_x_forwarded_proto: invalid type"));
        assert!(refused(r#"{"headers": {"x_frame_options": "DENY"}}"#)
            .starts_with("headers.x_frame_options: invalid type"));
    }
}
