//! The security headers this filter sends: for each, its config field, its name on the wire,
//! its secure default and the check its value must pass. This is the one list to read to
//! know what the filter does by default.

use crate::{csp, hsts, permissions_policy};
use serde::Deserialize;

/// How a header is applied to a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Send the configured value, replacing any value the upstream sent.
    Overwrite,
    /// Send the configured value only when the response does not already carry the header.
    KeepUpstream,
    /// Do not touch the header: the upstream's value, if any, passes unchanged.
    Off,
}

/// A security header the filter knows; a config names it by its [`Header::field`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
pub enum Header {
    /// `Strict-Transport-Security`: the browser uses HTTPS only, for this host and its subdomains.
    StrictTransportSecurity,
    /// `Content-Security-Policy` (or its `-Report-Only` variant): where content may come from.
    ContentSecurityPolicy,
    /// `X-Content-Type-Options`: no MIME sniffing.
    XContentTypeOptions,
    /// `X-Frame-Options`: no framing by other sites (for browsers without `frame-ancestors`).
    XFrameOptions,
    /// `Referrer-Policy`: what the `Referer` header reveals.
    ReferrerPolicy,
    /// `Cross-Origin-Opener-Policy`: a separate browsing context group from cross-origin openers.
    CrossOriginOpenerPolicy,
    /// `Cross-Origin-Resource-Policy`: which sites may load this resource.
    CrossOriginResourcePolicy,
    /// `Cross-Origin-Embedder-Policy`: only load resources that opt in (off by default: it
    /// breaks pages that embed third-party resources without CORP or CORS).
    CrossOriginEmbedderPolicy,
    /// `Permissions-Policy`: powerful browser features this site does not use.
    PermissionsPolicy,
    /// `X-DNS-Prefetch-Control`: no DNS prefetching of links, which leaks what a page shows.
    XDnsPrefetchControl,
    /// `X-Permitted-Cross-Domain-Policies`: no Flash or PDF cross-domain policy files.
    XPermittedCrossDomainPolicies,
    /// `Origin-Agent-Cluster`: the page gets its own agent cluster (process) per origin.
    OriginAgentCluster,
    /// `X-XSS-Protection: 0`: turns off the legacy XSS auditor, which itself enabled leaks.
    XXssProtection,
}

/// The default Content-Security-Policy: same-origin everything, no plugins, no `<base>`
/// hijacking, no framing, no inline event handlers, and HTTPS subresources.
pub const DEFAULT_CSP: &str = "default-src 'self'; base-uri 'self'; form-action 'self'; \
     frame-ancestors 'none'; img-src 'self' data:; object-src 'none'; script-src 'self'; \
     script-src-attr 'none'; style-src 'self'; upgrade-insecure-requests";

/// The default Permissions-Policy: sensors, devices, capture, payment and tracking features
/// off; fullscreen for this origin only. WebAuthn and other credential features keep the
/// browser default (this origin) so passkey sign-in keeps working.
pub const DEFAULT_PERMISSIONS_POLICY: &str = "accelerometer=(), autoplay=(), \
     bluetooth=(), browsing-topics=(), camera=(), display-capture=(), \
     document-domain=(), encrypted-media=(), fullscreen=(self), geolocation=(), gyroscope=(), \
     hid=(), idle-detection=(), local-fonts=(), magnetometer=(), microphone=(), midi=(), \
     payment=(), picture-in-picture=(), screen-wake-lock=(), serial=(), usb=(), \
     window-management=(), xr-spatial-tracking=()";

impl Header {
    /// Every header, in the order the filter applies them.
    pub const ALL: [Header; 13] = [
        Header::StrictTransportSecurity,
        Header::ContentSecurityPolicy,
        Header::XContentTypeOptions,
        Header::XFrameOptions,
        Header::ReferrerPolicy,
        Header::CrossOriginOpenerPolicy,
        Header::CrossOriginResourcePolicy,
        Header::CrossOriginEmbedderPolicy,
        Header::PermissionsPolicy,
        Header::XDnsPrefetchControl,
        Header::XPermittedCrossDomainPolicies,
        Header::OriginAgentCluster,
        Header::XXssProtection,
    ];

    /// The field under `headers` that configures it.
    pub fn field(self) -> &'static str {
        match self {
            Header::StrictTransportSecurity => "strict_transport_security",
            Header::ContentSecurityPolicy => "content_security_policy",
            Header::XContentTypeOptions => "x_content_type_options",
            Header::XFrameOptions => "x_frame_options",
            Header::ReferrerPolicy => "referrer_policy",
            Header::CrossOriginOpenerPolicy => "cross_origin_opener_policy",
            Header::CrossOriginResourcePolicy => "cross_origin_resource_policy",
            Header::CrossOriginEmbedderPolicy => "cross_origin_embedder_policy",
            Header::PermissionsPolicy => "permissions_policy",
            Header::XDnsPrefetchControl => "x_dns_prefetch_control",
            Header::XPermittedCrossDomainPolicies => "x_permitted_cross_domain_policies",
            Header::OriginAgentCluster => "origin_agent_cluster",
            Header::XXssProtection => "x_xss_protection",
        }
    }

    /// Its name on the wire, lowercase as Envoy stores it. The CSP's report-only variant is
    /// `content-security-policy-report-only`, chosen by config.
    pub fn name(self) -> &'static str {
        match self {
            Header::StrictTransportSecurity => "strict-transport-security",
            Header::ContentSecurityPolicy => "content-security-policy",
            Header::XContentTypeOptions => "x-content-type-options",
            Header::XFrameOptions => "x-frame-options",
            Header::ReferrerPolicy => "referrer-policy",
            Header::CrossOriginOpenerPolicy => "cross-origin-opener-policy",
            Header::CrossOriginResourcePolicy => "cross-origin-resource-policy",
            Header::CrossOriginEmbedderPolicy => "cross-origin-embedder-policy",
            Header::PermissionsPolicy => "permissions-policy",
            Header::XDnsPrefetchControl => "x-dns-prefetch-control",
            Header::XPermittedCrossDomainPolicies => "x-permitted-cross-domain-policies",
            Header::OriginAgentCluster => "origin-agent-cluster",
            Header::XXssProtection => "x-xss-protection",
        }
    }

    /// The value sent when the config gives none.
    pub fn default_value(self) -> &'static str {
        match self {
            Header::StrictTransportSecurity => "max-age=63072000; includeSubDomains",
            Header::ContentSecurityPolicy => DEFAULT_CSP,
            Header::XContentTypeOptions => "nosniff",
            Header::XFrameOptions => "DENY",
            Header::ReferrerPolicy => "no-referrer",
            Header::CrossOriginOpenerPolicy => "same-origin",
            Header::CrossOriginResourcePolicy => "same-origin",
            Header::CrossOriginEmbedderPolicy => "require-corp",
            Header::PermissionsPolicy => DEFAULT_PERMISSIONS_POLICY,
            Header::XDnsPrefetchControl => "off",
            Header::XPermittedCrossDomainPolicies => "none",
            Header::OriginAgentCluster => "?1",
            Header::XXssProtection => "0",
        }
    }

    /// The mode used when the config gives none. A CSP often carries per-response nonces
    /// only the application knows, so the application's own CSP wins by default.
    pub fn default_mode(self) -> Mode {
        match self {
            Header::ContentSecurityPolicy => Mode::KeepUpstream,
            Header::CrossOriginEmbedderPolicy => Mode::Off,
            _ => Mode::Overwrite,
        }
    }

    /// Checks a configured value and returns the value to send (in canonical form). The
    /// error says what is wrong and what was expected; the caller adds the field path.
    pub fn check(self, value: &str) -> Result<String, String> {
        let value = value.trim();
        match self {
            Header::StrictTransportSecurity => hsts::check(value),
            Header::ContentSecurityPolicy => csp::check(value),
            Header::PermissionsPolicy => permissions_policy::check(value),
            Header::XContentTypeOptions => one_of(value, &["nosniff"]),
            Header::XFrameOptions => {
                if value.to_ascii_uppercase().starts_with("ALLOW-FROM") {
                    return Err(
                        "ALLOW-FROM is ignored by every current browser; use DENY or \
                                SAMEORIGIN, and CSP frame-ancestors to allow other sites"
                            .into(),
                    );
                }
                one_of(value, &["DENY", "SAMEORIGIN"])
            }
            Header::ReferrerPolicy => referrer_policy(value),
            Header::CrossOriginOpenerPolicy => with_report_to(
                value,
                &[
                    "same-origin",
                    "same-origin-allow-popups",
                    "noopener-allow-popups",
                    "unsafe-none",
                ],
            ),
            Header::CrossOriginEmbedderPolicy => {
                with_report_to(value, &["require-corp", "credentialless", "unsafe-none"])
            }
            Header::CrossOriginResourcePolicy => {
                one_of(value, &["same-origin", "same-site", "cross-origin"])
            }
            Header::XDnsPrefetchControl => one_of(value, &["off", "on"]),
            Header::XPermittedCrossDomainPolicies => one_of(
                value,
                &[
                    "none",
                    "master-only",
                    "by-content-type",
                    "by-ftp-filename",
                    "all",
                    "none-this-response",
                ],
            ),
            Header::OriginAgentCluster => one_of(value, &["?1", "?0"]),
            Header::XXssProtection => {
                if value == "0" {
                    Ok("0".into())
                } else {
                    Err(format!(
                        "only \"0\" is accepted, got {value:?}: browsers removed the XSS auditor, \
                         and where it ran, \"1\" let other sites detect page content; use mode \
                         \"off\" to leave the upstream's value"
                    ))
                }
            }
        }
    }
}

/// One of `allowed`, in any case; returns the allowed spelling.
fn one_of(value: &str, allowed: &[&str]) -> Result<String, String> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .map(|a| (*a).to_string())
        .ok_or_else(|| format!("expected one of {}, got {value:?}", allowed.join(", ")))
}

/// A comma-separated list of referrer policies; browsers use the last one they know, so a
/// list may name a fallback first.
fn referrer_policy(value: &str) -> Result<String, String> {
    const POLICIES: &[&str] = &[
        "no-referrer",
        "no-referrer-when-downgrade",
        "origin",
        "origin-when-cross-origin",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
        "unsafe-url",
    ];
    let tokens = value
        .split(',')
        .map(|token| one_of(token.trim(), POLICIES))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tokens.join(", "))
}

/// A token from `allowed`, optionally with a reporting endpoint: `same-origin; report-to="coop"`.
fn with_report_to(value: &str, allowed: &[&str]) -> Result<String, String> {
    let (token, params) = match value.split_once(';') {
        Some((token, params)) => (token.trim(), Some(params.trim())),
        None => (value, None),
    };
    let mut out = one_of(token, allowed)?;
    if let Some(params) = params {
        let endpoint = params
            .strip_prefix("report-to=\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .filter(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            });
        let Some(endpoint) = endpoint else {
            return Err(format!(
                "after {token:?} only a reporting endpoint may follow, as report-to=\"name\", got {params:?}"
            ));
        };
        out.push_str("; report-to=\"");
        out.push_str(endpoint);
        out.push('"');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_header_is_read_by_its_config_field_name() {
        for header in Header::ALL {
            let json = format!("{:?}", header.field());
            assert_eq!(serde_json::from_str::<Header>(&json).unwrap(), header);
        }
    }

    #[test]
    fn every_default_value_passes_its_own_check_unchanged() {
        for header in Header::ALL {
            assert_eq!(
                header.check(header.default_value()).as_deref(),
                Ok(header.default_value()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn enumerated_values_are_accepted_in_any_case_and_sent_canonically() {
        assert_eq!(
            Header::XFrameOptions.check("sameorigin").unwrap(),
            "SAMEORIGIN"
        );
        assert_eq!(
            Header::ReferrerPolicy
                .check("no-referrer , Strict-Origin-When-Cross-Origin")
                .unwrap(),
            "no-referrer, strict-origin-when-cross-origin"
        );
        assert_eq!(
            Header::CrossOriginOpenerPolicy
                .check("same-origin;report-to=\"coop\"")
                .unwrap(),
            "same-origin; report-to=\"coop\""
        );
    }

    #[test]
    fn refuses_values_outside_each_headers_vocabulary() {
        let cases = [
            (
                Header::XFrameOptions,
                "ALLOW-FROM https://a.example",
                "ALLOW-FROM",
            ),
            (
                Header::XFrameOptions,
                "always",
                "expected one of DENY, SAMEORIGIN",
            ),
            (
                Header::ReferrerPolicy,
                "never",
                "expected one of no-referrer",
            ),
            (
                Header::CrossOriginOpenerPolicy,
                "same-origin; report-to=coop",
                "report-to",
            ),
            (
                Header::CrossOriginEmbedderPolicy,
                "require-cors",
                "expected one of",
            ),
            (
                Header::CrossOriginResourcePolicy,
                "same-host",
                "expected one of",
            ),
            (Header::XContentTypeOptions, "sniff", "nosniff"),
            (Header::XDnsPrefetchControl, "false", "off, on"),
            (Header::XPermittedCrossDomainPolicies, "any", "master-only"),
            (Header::OriginAgentCluster, "1", "?1"),
            (Header::XXssProtection, "1; mode=block", "only \"0\""),
        ];
        for (header, value, expected) in cases {
            let err = header.check(value).unwrap_err();
            assert!(err.contains(expected), "{header:?} {value:?}: {err}");
        }
    }
}
