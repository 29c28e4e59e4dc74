//! The __NAME__ filter in the harness: what a client sees, what the metrics say, and which
//! configurations it refuses. Needs `make build` (out/__NAME__.wasm).

use meshward_harness::{wasm_path, HarnessError, Host, LogLevel, Reply, Request, Upstream};
use serde_json::json;

const TAGGED: &str = "meshward___SNAKE__.responses_tagged";
const SKIPPED: &str = "meshward___SNAKE__.responses_skipped";
const REFUSED: &str = "meshward___SNAKE__.requests_refused";

/// A host running the filter with this plugin configuration.
fn host(config: serde_json::Value) -> Host {
    Host::builder(wasm_path("__NAME__"))
        .workers(2)
        .config_json(&config.to_string())
        .build()
        .unwrap_or_else(|e| panic!("the filter refused {config}: {e}"))
}

#[test]
fn tags_responses_outside_the_skipped_paths() {
    let host = host(json!({"header": "x-seen", "value": "yes", "skip": [{"path": {"prefix": "/healthz"}}]}));

    let tagged = host.worker(0).send(
        Request::get("/app"),
        Upstream::reply(Reply::new(200).with_body("hi")),
    );
    let skipped = host
        .worker(1)
        .send(Request::get("/healthz"), Upstream::reply(Reply::new(200)));

    assert_eq!(tagged.response.status(), 200);
    assert_eq!(tagged.response.header_value("x-seen"), Some("yes"));
    assert_eq!(skipped.response.header_value("x-seen"), None);
    assert_eq!(host.counter(TAGGED), Some(1));
    assert_eq!(host.counter(SKIPPED), Some(1));
    assert!(host.log_messages(LogLevel::Error).is_empty());
}

#[test]
fn tags_the_proxys_own_replies_too() {
    let host = host(json!({}));

    let out = host
        .worker(0)
        .send(Request::get("/missing"), Upstream::no_route());

    assert_eq!(out.response.status(), 404);
    assert_eq!(
        out.response.header_value("x-meshward-__NAME__"),
        Some("seen")
    );
}

#[test]
fn refuses_a_required_header_that_is_absent_repeated_or_not_utf8() {
    let host = host(json!({"required_header": "x-tenant", "skip": [{"path": {"prefix": "/healthz"}}]}));
    let send = |request: Request| host.worker(0).send(request, Upstream::reply(Reply::ok()));

    let once = send(Request::get("/app").with_header("x-tenant", "acme"));
    let absent = send(Request::get("/app"));
    let repeated = send(
        Request::get("/app")
            .with_header("x-tenant", "acme")
            .with_header("x-tenant", "evil"),
    );
    let not_utf8 = send(Request::get("/app").with_raw_header("x-tenant", b"acme\xff"));
    let skipped = send(Request::get("/healthz"));

    assert_eq!(once.response.status(), 200);
    assert!(once.upstream_request.is_some());
    for (what, out) in [("absent", &absent), ("repeated", &repeated), ("not UTF-8", &not_utf8)] {
        assert_eq!(out.response.status(), 400, "{what}");
        assert!(out.upstream_request.is_none(), "{what} reached the upstream");
    }
    assert!(absent.response.text().contains("must carry the header x-tenant"));
    assert!(repeated.response.text().contains("appears 2 times"));
    assert_eq!(skipped.response.status(), 200);
    assert_eq!(host.counter(REFUSED), Some(3));
}

#[test]
fn refuses_a_misspelt_field_naming_it() {
    let error = Host::builder(wasm_path("__NAME__"))
        .config_json(r#"{"skips": [{"path": {"prefix": "/healthz"}}]}"#)
        .build()
        .err()
        .expect("the filter accepted a misspelt field");
    assert!(matches!(error, HarnessError::LoadFailed { .. }), "{error}");
    let logged: Vec<String> = error
        .logs()
        .iter()
        .filter(|entry| entry.level == LogLevel::Error)
        .map(|entry| entry.message.clone())
        .collect();
    assert!(
        logged.iter().any(|m| m.contains("skips")),
        "the refusal should name the field: {logged:?}"
    );
}
