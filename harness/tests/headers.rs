//! Header maps as Envoy exposes them: which map a filter can reach in which phase, and how
//! changes show in what the upstream and the client get.

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{LogLevel, Request, Response, Upstream};

#[test]
fn request_header_changes_reach_the_upstream_in_order() {
    let host = probe().build().unwrap();
    let out = host.send(
        probe_request("add-request:x-added=1,set-request:accept=json,remove-request:x-drop")
            .header("accept", "text")
            .header("x-drop", "a")
            .header("x-drop", "b"),
        ok_upstream(),
    );
    let upstream = out.upstream_request.unwrap();
    assert_eq!(upstream.header_value("x-added"), Some("1"));
    assert_eq!(upstream.headers().get_all("accept"), vec!["json"]);
    assert!(!upstream.headers().contains("x-drop"));
    let names = upstream.headers().names();
    assert_eq!(&names[..4], &[":authority", ":path", ":method", ":scheme"]);
    assert_eq!(
        names.last(),
        Some(&"accept"),
        "a replaced header moves last, as Envoy's setCopy does"
    );
}

#[test]
fn the_connection_manager_adds_forwarded_proto_and_a_request_id() {
    let host = probe().build().unwrap();
    let out = host.send(Request::get("/"), ok_upstream());
    let upstream = out.upstream_request.unwrap();
    assert_eq!(upstream.header_value("x-forwarded-proto"), Some("http"));
    assert!(upstream.header_value("x-request-id").is_some());
}

#[test]
fn response_headers_are_not_available_while_the_request_is_processed() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("response-map-in-request"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-response-map"),
        Some("err:2")
    );
}

#[test]
fn request_headers_are_gone_in_the_response_phase_once_the_request_continued() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("check-request-in-response"), ok_upstream());
    assert_eq!(out.response.header_value("x-request-map"), Some("err:2"));
}

#[test]
fn response_headers_added_by_the_filter_reach_the_client() {
    let host = probe().build().unwrap();
    let out = host.send(
        probe_request("response-header:x-frame-options=DENY"),
        ok_upstream(),
    );
    assert_eq!(out.response.header_value("x-frame-options"), Some("DENY"));
    assert_eq!(out.response.header_value("server"), Some("nginx"));
}

#[test]
fn get_header_map_pairs_lists_duplicates() {
    let host = probe().build().unwrap();
    let out = host.send(
        probe_request("pairs").header("dup", "1").header("dup", "2"),
        ok_upstream(),
    );
    let count = out.upstream_request.unwrap();
    // :authority :path :method :scheme x-probe dup dup x-forwarded-proto x-request-id
    assert_eq!(count.header_value("x-pairs-count"), Some("ok:9"));
}

#[test]
fn in_on_log_maps_are_read_only_and_missing_ones_are_not_found() {
    let host = probe().build().unwrap();
    host.send(probe_request("on-log-read"), ok_upstream());
    let logs = host.log_messages(LogLevel::Info);
    let line = logs.iter().find(|m| m.starts_with("on_log")).unwrap();
    assert_eq!(
        line,
        r#"on_log path=Ok("/probe?q=1") status=Ok("200") request_trailers=Err(1) add=2"#
    );
}

#[test]
fn the_request_body_can_be_replaced() {
    let host = probe().build().unwrap();
    let out = host.send(
        Request::post("/")
            .header("x-probe", "body-replace:new,read-body")
            .body("old body"),
        Upstream::reply(Response::new(200)),
    );
    assert_eq!(out.upstream_request.unwrap().body_text(), "new");
    assert!(host
        .log_messages(LogLevel::Info)
        .contains(&"request body: new".to_string()));
}

#[test]
fn the_response_body_can_be_appended_to() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("response-body-append: world"), ok_upstream());
    assert_eq!(out.response.body_text(), "hello world");
}

#[test]
fn header_values_that_are_not_utf8_reach_the_filter_and_the_upstream_byte_for_byte() {
    let host = probe().build().unwrap();
    let raw: &[u8] = b"caf\xe9 \x80\xff";
    let out = host.send(
        probe_request("copy-request:x-raw=x-copied").header_bytes("x-raw", raw),
        ok_upstream(),
    );
    let upstream = out.upstream_request.unwrap();
    assert_eq!(upstream.header_value_bytes("x-raw"), Some(raw));
    assert_eq!(upstream.header_value_bytes("x-copied"), Some(raw));
    assert_eq!(
        upstream.header_value("x-copied"),
        Some("caf\u{fffd} \u{fffd}\u{fffd}")
    );
    assert!(host.vm_alive(0));
}
