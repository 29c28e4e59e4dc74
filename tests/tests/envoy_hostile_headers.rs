//! Header values that are not UTF-8 through the default config (`envoy-config/meshward.yaml`,
//! every filter) in a real Envoy 1.40. Its HTTP/1 codec accepts obs-text (bytes 0x80-0xFF)
//! in values and hands the filters the raw bytes; no filter's VM may crash on them (a
//! crashed VM fails closed: a 503 for every later request on that worker).

use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::{Envoy, EnvoyConfig, Reply, Request, Response, Upstream};

/// Every byte 0x80-0xFF, and a few sequences that are invalid UTF-8 on their own.
fn hostile_values() -> Vec<Vec<u8>> {
    vec![
        (0x80..=0xFFu8).collect(),
        b"caf\xe9".to_vec(),
        b"\xc3\x28".to_vec(),
        b"\xff\xfe.\x80\x81.\x90".to_vec(),
    ]
}

/// The headers the filters of the default config read, with a hostile value.
fn hostile(path: &str, value: &[u8]) -> Request {
    let bearer = [b"Bearer ".as_slice(), value].concat();
    Request::get(path)
        .with_raw_header("authorization", &bearer)
        .with_raw_header("x-region-preference", value)
        .with_raw_header("x-latency-sensitive", value)
        .with_raw_header("x-session-id", value)
        .with_raw_header("x-forwarded-proto", value)
        .with_raw_header("x-jwt-sub", value)
        .with_raw_header("user-agent", value)
        .with_raw_header("cookie", value)
}

fn assert_secured(response: &Response, what: &str) {
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{what}: {response:?}"
    );
}

#[tokio::test]
async fn bytes_that_are_not_utf8_in_header_values_crash_no_filter() {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(Reply::ok().with_header("server", "leaky"));
    let config = EnvoyConfig::load("meshward.yaml")
        .unwrap()
        .upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::start(config).await.unwrap();

    // Several connections each, so both workers get hostile requests.
    for value in hostile_values() {
        for _ in 0..3 {
            let proxied = envoy.send(hostile("/", &value)).await.unwrap();
            assert_eq!(proxied.status, 200, "{value:?}: {proxied:?}");
            assert_secured(&proxied, "proxied");
            assert_eq!(proxied.header("server"), None);

            let jwt = envoy.send(hostile("/jwt/items", &value)).await.unwrap();
            assert_eq!(jwt.status, 401, "{value:?}: {jwt:?}");
            assert_secured(&jwt, "jwt-auth's 401");

            let routed = envoy.send(hostile("/regions/x", &value)).await.unwrap();
            assert_eq!(routed.status, 200, "{value:?}: {routed:?}");
            assert!(
                routed.header("x-meshward-region-decision").is_some(),
                "{routed:?}"
            );
        }
    }
    // The bytes reached the upstream (shown as U+FFFD by the rig's text view).
    let received = upstream.received();
    let forwarded = received.iter().find(|r| r.path == "/").unwrap();
    assert!(forwarded
        .header("x-session-id")
        .is_some_and(|v| v.contains('\u{fffd}')));
    // jwt-auth removes forged claim headers on paths it does not check, too.
    assert_eq!(forwarded.header("x-jwt-sub"), None, "{forwarded:?}");

    // No VM failed: ordinary requests on fresh connections (both workers) still pass.
    for _ in 0..8 {
        let after = envoy.get("/").await.unwrap();
        assert_eq!(after.status, 200, "{after:?}\n{}", envoy.log());
        assert_secured(&after, "after");
    }
    let log = envoy.log();
    assert!(
        !log.contains("Function: proxy_on") && !log.contains("wasm_fail_stream"),
        "a VM trapped:\n{log}"
    );
}
