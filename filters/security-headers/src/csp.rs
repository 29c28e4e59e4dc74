//! Content-Security-Policy checks: known directive names, well-formed source lists, and the
//! mistakes that silently weaken a policy (unquoted keywords, `'none'` mixed with sources, a
//! nonce that would be the same on every response).

/// Checks a policy such as `default-src 'self'; object-src 'none'` and returns it in
/// canonical form: directive names lowercase, one space between sources, `"; "` between
/// directives. The error says which directive or source is wrong and what was expected.
pub fn check(policy: &str) -> Result<String, String> {
    if let Some(bad) = policy
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ' || *c == '\t'))
    {
        return Err(format!(
            "a policy is printable ASCII only, found {bad:?}; write non-ASCII hosts in punycode"
        ));
    }
    if policy.contains(',') {
        return Err(
            "a comma separates two policies in one header; write one policy with directives separated by ';'"
                .into(),
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for directive in policy.split(';') {
        let mut words = directive.split_ascii_whitespace();
        let Some(name) = words.next() else {
            continue;
        };
        let sources: Vec<&str> = words.collect();
        let lower = name.to_ascii_lowercase();
        let Some(kind) = kind_of(&lower) else {
            return Err(unknown_directive(name));
        };
        if seen.contains(&kind.0) {
            return Err(format!(
                "directive {name:?} appears twice; browsers ignore the second, so merge them"
            ));
        }
        seen.push(kind.0);
        check_values(kind, &sources)?;
        let mut rendered = kind.0.to_string();
        for source in &sources {
            rendered.push(' ');
            rendered.push_str(source);
        }
        out.push(rendered);
    }
    if out.is_empty() {
        return Err(
            "the policy has no directives; turn the header off with mode \"off\" instead".into(),
        );
    }
    Ok(out.join("; "))
}

/// What a directive's value is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Values {
    /// A source list: `'self' https://cdn.example.com data:`.
    Sources,
    /// No value at all.
    Nothing,
    /// `allow-*` sandbox flags, possibly none.
    SandboxFlags,
    /// One or more URIs.
    Uris,
    /// Exactly one reporting endpoint name.
    OneToken,
    /// Exactly `'script'`.
    TrustedTypesSink,
    /// Trusted Types policy names and keywords.
    TrustedTypesPolicies,
    /// `'allow'` or `'block'`.
    WebRtc,
}

type Kind = (&'static str, Values);

/// Every directive of CSP Level 3 that browsers implement, with its value form.
const DIRECTIVES: &[Kind] = &[
    ("default-src", Values::Sources),
    ("script-src", Values::Sources),
    ("script-src-elem", Values::Sources),
    ("script-src-attr", Values::Sources),
    ("style-src", Values::Sources),
    ("style-src-elem", Values::Sources),
    ("style-src-attr", Values::Sources),
    ("img-src", Values::Sources),
    ("font-src", Values::Sources),
    ("connect-src", Values::Sources),
    ("media-src", Values::Sources),
    ("object-src", Values::Sources),
    ("frame-src", Values::Sources),
    ("child-src", Values::Sources),
    ("worker-src", Values::Sources),
    ("manifest-src", Values::Sources),
    ("fenced-frame-src", Values::Sources),
    ("base-uri", Values::Sources),
    ("form-action", Values::Sources),
    ("frame-ancestors", Values::Sources),
    ("sandbox", Values::SandboxFlags),
    ("upgrade-insecure-requests", Values::Nothing),
    ("block-all-mixed-content", Values::Nothing),
    ("report-uri", Values::Uris),
    ("report-to", Values::OneToken),
    ("require-trusted-types-for", Values::TrustedTypesSink),
    ("trusted-types", Values::TrustedTypesPolicies),
    ("webrtc", Values::WebRtc),
];

/// Directives browsers dropped, with what to use instead.
const RETIRED: &[(&str, &str)] = &[
    (
        "plugin-types",
        "plugins are gone from browsers; use object-src 'none'",
    ),
    (
        "prefetch-src",
        "browsers removed it; default-src governs prefetches",
    ),
    ("navigate-to", "browsers never shipped it"),
    (
        "referrer",
        "use the Referrer-Policy header (headers.referrer_policy)",
    ),
    (
        "reflected-xss",
        "browsers removed it; keep X-XSS-Protection at 0",
    ),
    (
        "disown-opener",
        "use Cross-Origin-Opener-Policy (headers.cross_origin_opener_policy)",
    ),
    ("require-sri-for", "browsers never shipped it"),
];

const SANDBOX_FLAGS: &[&str] = &[
    "allow-downloads",
    "allow-forms",
    "allow-modals",
    "allow-orientation-lock",
    "allow-pointer-lock",
    "allow-popups",
    "allow-popups-to-escape-sandbox",
    "allow-presentation",
    "allow-same-origin",
    "allow-scripts",
    "allow-storage-access-by-user-activation",
    "allow-top-navigation",
    "allow-top-navigation-by-user-activation",
    "allow-top-navigation-to-custom-protocols",
];

/// Quoted keywords a source list may hold, lowercase and without quotes.
const KEYWORDS: &[&str] = &[
    "self",
    "none",
    "unsafe-inline",
    "unsafe-eval",
    "unsafe-hashes",
    "strict-dynamic",
    "report-sample",
    "wasm-unsafe-eval",
    "unsafe-allow-redirects",
    "inline-speculation-rules",
    "trusted-types-eval",
    "report-sha256",
    "report-sha384",
    "report-sha512",
];

fn kind_of(name: &str) -> Option<Kind> {
    DIRECTIVES.iter().copied().find(|(known, _)| *known == name)
}

fn unknown_directive(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if let Some((_, instead)) = RETIRED.iter().find(|(retired, _)| *retired == lower) {
        return format!("directive {name:?} is no longer supported: {instead}");
    }
    format!(
        "unknown directive {name:?}; expected a CSP directive such as default-src, script-src, \
         style-src, img-src, connect-src, frame-ancestors, base-uri, form-action or report-to"
    )
}

fn check_values((name, values): Kind, sources: &[&str]) -> Result<(), String> {
    match values {
        Values::Sources => check_source_list(name, sources),
        Values::Nothing => match sources.first() {
            None => Ok(()),
            Some(extra) => Err(format!("{name} takes no value, got {extra:?}")),
        },
        Values::SandboxFlags => match sources
            .iter()
            .find(|flag| !SANDBOX_FLAGS.contains(&flag.to_ascii_lowercase().as_str()))
        {
            None => Ok(()),
            Some(flag) => Err(format!(
                "sandbox: unknown flag {flag:?}; expected flags such as allow-scripts or allow-forms"
            )),
        },
        Values::Uris => {
            if sources.is_empty() {
                Err(format!("{name} needs at least one URI"))
            } else {
                Ok(())
            }
        }
        Values::OneToken => match sources {
            [endpoint] if endpoint.bytes().all(is_token_byte) => Ok(()),
            _ => Err(format!(
                "{name} takes exactly one endpoint name (defined in a Reporting-Endpoints header), got {:?}",
                sources.join(" ")
            )),
        },
        Values::TrustedTypesSink => match sources {
            [sink] if sink.eq_ignore_ascii_case("'script'") => Ok(()),
            _ => Err(format!("{name} takes exactly 'script', got {:?}", sources.join(" "))),
        },
        Values::TrustedTypesPolicies => match sources.iter().find(|p| !is_trusted_types_item(p)) {
            None => Ok(()),
            Some(bad) => Err(format!(
                "{name}: {bad:?} is not a policy name, *, 'none' or 'allow-duplicates'"
            )),
        },
        Values::WebRtc => match sources {
            [v] if v.eq_ignore_ascii_case("'allow'") || v.eq_ignore_ascii_case("'block'") => Ok(()),
            _ => Err(format!("{name} takes 'allow' or 'block', got {:?}", sources.join(" "))),
        },
    }
}

fn check_source_list(directive: &str, sources: &[&str]) -> Result<(), String> {
    let has_none = sources.iter().any(|s| s.eq_ignore_ascii_case("'none'"));
    if has_none && sources.len() > 1 {
        return Err(format!(
            "{directive}: 'none' cannot be combined with other sources (browsers then ignore 'none')"
        ));
    }
    for source in sources {
        check_source(directive, source)?;
    }
    Ok(())
}

fn check_source(directive: &str, source: &str) -> Result<(), String> {
    let lower = source.to_ascii_lowercase();
    if let Some(inner) = lower.strip_prefix('\'') {
        let Some(inner) = inner.strip_suffix('\'') else {
            return Err(format!(
                "{directive}: {source:?} opens a quote it does not close"
            ));
        };
        if KEYWORDS.contains(&inner) {
            return Ok(());
        }
        if inner.starts_with("nonce-") {
            return Err(format!(
                "{directive}: {source:?} is a fixed nonce, the same on every response, so it \
                 protects nothing; use hashes ('sha256-...') or let the application send its own \
                 policy (mode \"keep_upstream\")"
            ));
        }
        if let Some(digest) = ["sha256-", "sha384-", "sha512-"]
            .iter()
            .find_map(|alg| inner.strip_prefix(alg))
        {
            let base64 = |b: u8| b.is_ascii_alphanumeric() || b"+/-_".contains(&b);
            let digits = digest.trim_end_matches('=');
            if !digits.is_empty() && digits.bytes().all(base64) {
                return Ok(());
            }
            return Err(format!("{directive}: {source:?} is not a base64 hash"));
        }
        return Err(format!(
            "{directive}: unknown keyword {source:?}; expected 'self', 'none', 'unsafe-inline', \
             'strict-dynamic', 'sha256-...' or another CSP keyword"
        ));
    }
    let bare_keyword = KEYWORDS.contains(&lower.as_str())
        || ["nonce-", "sha256-", "sha384-", "sha512-"]
            .iter()
            .any(|p| lower.starts_with(p));
    if bare_keyword {
        return Err(format!(
            "{directive}: {source:?} must be in single quotes ('{source}'); unquoted it names a host"
        ));
    }
    if is_scheme_source(source) || is_host_source(source) {
        return Ok(());
    }
    Err(format!(
        "{directive}: {source:?} is not a source; expected a keyword such as 'self', a scheme \
         such as https: or data:, or a host such as https://cdn.example.com or *.example.com"
    ))
}

/// `https:`, `data:`, `blob:`.
fn is_scheme_source(source: &str) -> bool {
    source.strip_suffix(':').is_some_and(is_scheme)
}

fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// `*`, `example.com`, `*.example.com:443`, `https://cdn.example.com/path/`.
fn is_host_source(source: &str) -> bool {
    let rest = match source.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => rest,
        Some(_) => return false,
        None => source,
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = host == "*" || {
        let labels = host.strip_prefix("*.").unwrap_or(host);
        !labels.is_empty()
            && labels.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    let port_ok =
        port.is_none_or(|p| p == "*" || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
    let path_ok = path.bytes().all(|b| b.is_ascii_graphic() && b != b'\'');
    host_ok && port_ok && path_ok
}

fn is_trusted_types_item(item: &str) -> bool {
    let lower = item.to_ascii_lowercase();
    lower == "*"
        || lower == "'none'"
        || lower == "'allow-duplicates'"
        || item
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-#=_/@.%".contains(&b))
}

/// An HTTP token character (RFC 9110).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &str) -> String {
        check(policy).expect_err(policy)
    }

    #[test]
    fn accepts_a_typical_policy_and_renders_it_canonically() {
        assert_eq!(
            check("Default-Src  'self' ;img-src 'self' data: https://cdn.example.com:443/img/;; upgrade-insecure-requests;").unwrap(),
            "default-src 'self'; img-src 'self' data: https://cdn.example.com:443/img/; upgrade-insecure-requests"
        );
        check("script-src 'self' 'strict-dynamic' 'sha256-AbC+/9=' *.example.com; object-src 'none'; report-to csp; sandbox allow-scripts allow-forms; require-trusted-types-for 'script'; trusted-types app-policy 'allow-duplicates'").unwrap();
    }

    #[test]
    fn refuses_unknown_and_retired_directive_names() {
        assert!(refused("default-src 'self'; scrpit-src 'self'")
            .contains(r#"unknown directive "scrpit-src""#));
        assert!(refused("plugin-types application/pdf").contains("no longer supported"));
    }

    #[test]
    fn refuses_keywords_without_quotes_because_they_would_name_a_host() {
        let err = refused("default-src self");
        assert!(
            err.contains(r#""self" must be in single quotes ('self')"#),
            "{err}"
        );
    }

    #[test]
    fn refuses_none_mixed_with_other_sources() {
        assert!(refused("script-src 'none' https:").contains("'none' cannot be combined"));
    }

    #[test]
    fn refuses_a_fixed_nonce() {
        assert!(refused("script-src 'nonce-abc123'").contains("fixed nonce"));
    }

    #[test]
    fn refuses_a_directive_given_twice() {
        assert!(refused("img-src 'self'; IMG-SRC data:").contains("appears twice"));
    }

    #[test]
    fn refuses_malformed_sources_and_values() {
        for bad in [
            "default-src 'self",
            "default-src 'unsafe-everything'",
            "default-src https://exa mple.com/'",
            "default-src https://*bad.example.com",
            "default-src http://example.com:port",
            "upgrade-insecure-requests 1",
            "sandbox allow-everything",
            "report-to a b",
            "report-uri",
            "webrtc allow",
            "default-src 'self', img-src data:",
            "default-src 'sha256-'",
            ";;",
            "default-src caf\u{e9}.example",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
