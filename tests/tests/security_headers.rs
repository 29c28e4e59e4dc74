//! The security-headers filter in the harness: what a client sees on upstream responses
//! and on Envoy's own replies, what the metrics say, and which configurations it refuses.
//! Needs `make build` (out/security-headers.wasm).

use meshward_harness::{wasm_path, HarnessError, Host, LogLevel, Request, Response, Upstream};
use serde_json::{json, Value};

// Fixtures.

/// The headers every response gets from an empty configuration, with their values.
const DEFAULT_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; \
         img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; \
         style-src 'self'; upgrade-insecure-requests",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "accelerometer=(), autoplay=(), bluetooth=(), browsing-topics=(), camera=(), \
         display-capture=(), document-domain=(), encrypted-media=(), fullscreen=(self), \
         geolocation=(), gyroscope=(), hid=(), idle-detection=(), local-fonts=(), \
         magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), \
         screen-wake-lock=(), serial=(), usb=(), window-management=(), xr-spatial-tracking=()",
    ),
    ("x-dns-prefetch-control", "off"),
    ("x-permitted-cross-domain-policies", "none"),
    ("origin-agent-cluster", "?1"),
    ("x-xss-protection", "0"),
];

const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data: https:";

const DECORATED: &str = "meshward_security_headers.responses_decorated";
const REMOVED: &str = "meshward_security_headers.headers_removed";

/// A host running the filter with this plugin configuration.
fn host(config: Value) -> Host {
    Host::builder(wasm_path("security-headers"))
        .config_json(&config.to_string())
        .build()
        .unwrap_or_else(|e| panic!("the filter refused {config}: {e}"))
}

/// Why the filter refused this configuration: its error log lines.
fn refusal(config: &str) -> String {
    match Host::builder(wasm_path("security-headers"))
        .config_json(config)
        .build()
    {
        Ok(_) => panic!("the filter accepted {config}"),
        Err(error @ HarnessError::LoadFailed { .. }) => error
            .logs()
            .iter()
            .filter(|entry| entry.level == LogLevel::Error)
            .map(|entry| entry.message.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(other) => panic!("expected the filter to refuse {config}, got {other}"),
    }
}

/// An HTML page from an upstream that names its software.
fn leaky_page() -> Response {
    Response::new(200)
        .header("content-type", "text/html; charset=utf-8")
        .header("server", "Apache/2.4.58 (Ubuntu)")
        .header("x-powered-by", "PHP/8.3.1")
        .header("x-aspnet-version", "4.0.30319")
        .header("x-aspnetmvc-version", "5.2")
        .header("x-envoy-upstream-service-time", "12")
        .header("set-cookie", "session=abc; Secure; HttpOnly")
        .body("<!doctype html><p>hello</p>")
}

fn page(content_type: &str) -> Upstream {
    Upstream::reply(
        Response::new(200)
            .header("content-type", content_type)
            .body("x"),
    )
}

fn html() -> Upstream {
    page("text/html")
}

/// Asserts that `response` carries every default header with its default value.
fn assert_default_headers(response: &Response) {
    for (name, value) in DEFAULT_HEADERS {
        assert_eq!(
            response.header_value(name),
            Some(*value),
            "{name} on {response:?}"
        );
    }
    assert_eq!(response.header_value("cross-origin-embedder-policy"), None);
}

// Defaults and removal.

#[test]
fn an_upstream_response_gets_the_secure_default_headers() {
    let out = host(json!({})).send(Request::get("/"), Upstream::reply(leaky_page()));
    assert_eq!(out.response.status(), 200);
    assert_default_headers(&out.response);
    assert_eq!(out.response.body_text(), "<!doctype html><p>hello</p>");
}

#[test]
fn headers_that_name_the_software_behind_the_proxy_are_removed() {
    let host = host(json!({}));
    let out = host.send(Request::get("/"), Upstream::reply(leaky_page()));
    for leak in [
        "server",
        "x-powered-by",
        "x-aspnet-version",
        "x-aspnetmvc-version",
        "x-envoy-upstream-service-time",
    ] {
        assert_eq!(out.response.header_value(leak), None, "{leak}");
    }
    assert_eq!(
        out.response.header_value("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        out.response.header_value("set-cookie"),
        Some("session=abc; Secure; HttpOnly")
    );
    assert_eq!(host.counter(REMOVED), Some(5));
    assert_eq!(host.counter(DECORATED), Some(1));
}

#[test]
fn the_removal_list_can_grow_and_keep_a_default() {
    let host =
        host(json!({"remove_headers": {"names": ["x-internal-node"], "except": ["x-b3-traceid"]}}));
    let out = host.send(
        Request::get("/"),
        Upstream::reply(
            Response::new(200)
                .header("x-internal-node", "10.0.3.7")
                .header("x-b3-traceid", "80f198ee56343ba8")
                .header("x-powered-by", "Express"),
        ),
    );
    assert_eq!(out.response.header_value("x-internal-node"), None);
    assert_eq!(out.response.header_value("x-powered-by"), None);
    assert_eq!(
        out.response.header_value("x-b3-traceid"),
        Some("80f198ee56343ba8")
    );
}

// Changing, turning off and keeping headers.

#[test]
fn an_applications_own_csp_is_kept_unless_the_config_says_overwrite() {
    let with_nonce = || {
        Upstream::reply(
            Response::new(200)
                .header("content-type", "text/html")
                .header("content-security-policy", "script-src 'nonce-r4nd0m'"),
        )
    };
    let kept = host(json!({})).send(Request::get("/"), with_nonce());
    assert_eq!(
        kept.response.headers().get_all("content-security-policy"),
        ["script-src 'nonce-r4nd0m'"]
    );

    let enforced = host(json!({"headers": {"content_security_policy": {"mode": "overwrite"}}}))
        .send(Request::get("/"), with_nonce());
    assert_eq!(
        enforced
            .response
            .headers()
            .get_all("content-security-policy"),
        [DEFAULT_HEADERS[1].1]
    );
}

#[test]
fn weak_values_from_the_upstream_are_overwritten() {
    let out = host(json!({})).send(
        Request::get("/"),
        Upstream::reply(
            Response::new(200)
                .header("x-xss-protection", "1; mode=block")
                .header("x-frame-options", "ALLOWALL")
                .header("strict-transport-security", "max-age=60"),
        ),
    );
    assert_eq!(out.response.headers().get_all("x-xss-protection"), ["0"]);
    assert_eq!(out.response.headers().get_all("x-frame-options"), ["DENY"]);
    assert_eq!(
        out.response.headers().get_all("strict-transport-security"),
        ["max-age=63072000; includeSubDomains"]
    );
}

#[test]
fn each_header_can_be_changed_turned_off_or_left_to_the_upstream() {
    let host = host(json!({"headers": {
        "x_frame_options": {"value": "sameorigin"},
        "referrer_policy": {"mode": "off"},
        "permissions_policy": {"mode": "keep_upstream"},
        "cross_origin_embedder_policy": {"mode": "overwrite", "value": "credentialless"}
    }}));
    let upstream = || {
        Upstream::reply(
            Response::new(200)
                .header("referrer-policy", "unsafe-url")
                .header("permissions-policy", "camera=(self)"),
        )
    };
    let out = host.send(Request::get("/"), upstream());
    assert_eq!(
        out.response.header_value("x-frame-options"),
        Some("SAMEORIGIN")
    );
    assert_eq!(
        out.response.header_value("referrer-policy"),
        Some("unsafe-url")
    );
    assert_eq!(
        out.response.header_value("permissions-policy"),
        Some("camera=(self)")
    );
    assert_eq!(
        out.response.header_value("cross-origin-embedder-policy"),
        Some("credentialless")
    );

    let bare = host.send(Request::get("/"), Upstream::reply(Response::new(200)));
    assert_eq!(bare.response.header_value("referrer-policy"), None);
    assert_eq!(
        bare.response.header_value("permissions-policy"),
        Some(DEFAULT_HEADERS[7].1)
    );
}

// Per-path overrides.

fn docs_override() -> Value {
    json!({"overrides": [{
        "match": {"path": {"prefix": "/docs/"}},
        "headers": {"content_security_policy": {"mode": "overwrite", "value": DOCS_CSP}}
    }]})
}

#[test]
fn an_override_loosens_the_csp_under_its_prefix_only() {
    let host = host(docs_override());
    let csp = |path: &str| {
        host.send(Request::get(path), html())
            .response
            .header_value("content-security-policy")
            .map(str::to_owned)
    };
    assert_eq!(csp("/docs/intro?lang=en").as_deref(), Some(DOCS_CSP));
    assert_eq!(csp("/").as_deref(), Some(DEFAULT_HEADERS[1].1));
    assert_eq!(csp("/docs").as_deref(), Some(DEFAULT_HEADERS[1].1));
}

#[test]
fn a_path_that_climbs_out_of_the_override_gets_the_top_level_headers() {
    let host = host(docs_override());
    for tricky in [
        "/docs/..%2fadmin",
        "/docs/../admin",
        "/docs/%2e%2e/admin",
        "/docs//x",
    ] {
        let out = host.send(Request::get(tricky), html());
        assert_eq!(
            out.response.header_value("content-security-policy"),
            Some(DEFAULT_HEADERS[1].1),
            "{tricky}"
        );
    }
}

// CSP and HSTS options.

#[test]
fn an_html_only_csp_goes_on_pages_but_not_on_api_responses() {
    let host = host(json!({"headers": {"content_security_policy": {"html_only": true}}}));
    let csp = |upstream| {
        host.send(Request::get("/"), upstream)
            .response
            .header_value("content-security-policy")
            .is_some()
    };
    assert!(csp(html()));
    assert!(csp(page("application/xhtml+xml")));
    assert!(csp(page("image/svg+xml")));
    assert!(
        csp(Upstream::reply(Response::new(204))),
        "no content-type: browsers sniff"
    );
    assert!(!csp(page("application/json")));
    assert!(!csp(page("image/png")));
    let json_out = host.send(Request::get("/api"), page("application/json"));
    assert_eq!(
        json_out.response.header_value("x-content-type-options"),
        Some("nosniff")
    );
}

#[test]
fn a_report_only_csp_is_sent_as_content_security_policy_report_only() {
    let out = host(json!({"headers": {"content_security_policy": {"report_only": true}}}))
        .send(Request::get("/"), html());
    assert_eq!(out.response.header_value("content-security-policy"), None);
    assert_eq!(
        out.response
            .header_value("content-security-policy-report-only"),
        Some(DEFAULT_HEADERS[1].1)
    );
}

#[test]
fn https_only_hsts_is_sent_over_https_and_not_over_http() {
    let host = host(json!({"headers": {"strict_transport_security": {"https_only": true}}}));
    let hsts = |request: Request| {
        host.send(request, html())
            .response
            .header_value("strict-transport-security")
            .map(str::to_owned)
    };
    assert_eq!(
        hsts(Request::get("/").header(":scheme", "https")).as_deref(),
        Some("max-age=63072000; includeSubDomains")
    );
    assert_eq!(hsts(Request::get("/")), None);
    assert_eq!(
        hsts(Request::get("/").header("x-forwarded-proto", "https")),
        None,
        "x-forwarded-proto counts only when trusted"
    );
}

#[test]
fn a_trusted_x_forwarded_proto_marks_requests_from_a_tls_balancer_as_https() {
    let host = host(json!({
        "trust_x_forwarded_proto": true,
        "headers": {"strict_transport_security": {"https_only": true}}
    }));
    let hsts = |xfp: &str| {
        host.send(Request::get("/").header("x-forwarded-proto", xfp), html())
            .response
            .header_value("strict-transport-security")
            .is_some()
    };
    assert!(hsts("https"));
    assert!(hsts("https, http"));
    assert!(!hsts("http"));
}

#[test]
fn hsts_is_sent_over_plain_http_by_default_where_browsers_ignore_it() {
    let out = host(json!({})).send(Request::get("/"), html());
    assert_eq!(
        out.response.header_value("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains")
    );
}

// Replies the upstream did not make.

#[test]
fn envoys_own_replies_get_the_headers_too() {
    let host = host(json!({}));
    let replies = [
        ("no route", Upstream::no_route(), 404),
        ("no healthy upstream", Upstream::no_healthy_upstream(), 503),
        ("upstream timeout", Upstream::timeout(), 504),
        ("upstream reset", Upstream::reset(), 503),
    ];
    for (what, upstream, status) in replies {
        let out = host.send(Request::get("/"), upstream);
        assert_eq!(out.response.status(), status, "{what}");
        assert_default_headers(&out.response);
    }
    assert_eq!(host.counter(DECORATED), Some(4));
}

#[test]
fn another_filters_local_reply_gets_the_headers_too() {
    // What Envoy's RBAC filter, placed after this one, answers a denied request with.
    let rbac_denied = Upstream::local_reply(
        403,
        "RBAC: access denied",
        "rbac_access_denied_matched_policy[internal]",
        0,
    );
    let out = host(json!({})).send(Request::get("/internal/x"), rbac_denied);
    assert_eq!(out.response.status(), 403);
    assert_eq!(out.response.body_text(), "RBAC: access denied");
    assert_default_headers(&out.response);
}

// Refused configurations.

#[test]
fn a_bad_configuration_is_refused_with_the_field_named() {
    let cases = [
        (
            r#"{"headers": {"strict_transport_security": {"value": "max-age=abc"}}}"#,
            r#"headers.strict_transport_security.value: max-age must be a whole number of seconds, got "abc""#,
        ),
        (
            r#"{"headers": {"content_security_policy": {"value": "default-src self"}}}"#,
            r#"headers.content_security_policy.value: default-src: "self" must be in single quotes"#,
        ),
        (
            r#"{"headers": {"x_frame_options": {"value": "ALLOW-FROM https://a.example"}}}"#,
            "headers.x_frame_options.value: ALLOW-FROM is ignored",
        ),
        (
            r#"{"headers": {"referrer_policy": {"value": "no-referrer\r\nset-cookie: a=b"}}}"#,
            "headers.referrer_policy.value: must not contain CR, LF or NUL",
        ),
        (
            r#"{"headers": {"x_frame_options": {"https_only": true}}}"#,
            "headers.x_frame_options.https_only: unknown field `https_only`",
        ),
        (
            r#"{"overrides": [{"match": {"path": {"prefix": "docs"}}, "headers": {"x_frame_options": {"mode": "off"}}}]}"#,
            "overrides[0].match.path.prefix: expected a path starting with '/'",
        ),
        (
            r#"{"remove_headers": {"names": ["content-security-policy"]}}"#,
            r#"remove_headers.names[0]: "content-security-policy" is a header this filter sends"#,
        ),
    ];
    for (config, expected) in cases {
        let log = refusal(config);
        assert!(
            log.contains(&format!("configuration refused: {expected}")),
            "{config}\nlog: {log}\nwant: {expected}"
        );
    }
}

// The examples in the docs.

#[test]
fn the_readme_example_configuration_is_accepted() {
    let readme = std::fs::read_to_string(
        meshward_tests::repo_root().join("filters/security-headers/README.md"),
    )
    .unwrap();
    let example = readme
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README has a JSON example");
    let config: Value = serde_json::from_str(example).unwrap();
    let out = host(config).send(
        Request::get("/docs/a").header("x-forwarded-proto", "https"),
        html(),
    );
    assert_eq!(
        out.response.header_value("x-frame-options"),
        Some("SAMEORIGIN")
    );
}

#[test]
fn the_istio_example_plugin_config_is_accepted() {
    let path = meshward_tests::repo_root().join("k8s/base/security-headers.yaml");
    let manifest: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let config = manifest["spec"]["pluginConfig"].clone();
    assert!(config.is_object());
    let out = host(config).send(
        Request::get("/widget/embed").header("x-forwarded-proto", "https"),
        html(),
    );
    assert_eq!(out.response.header_value("x-frame-options"), None);
    assert_eq!(
        out.response.header_value("cross-origin-resource-policy"),
        Some("cross-origin")
    );
    assert_eq!(
        out.response.header_value("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains; preload")
    );
}
