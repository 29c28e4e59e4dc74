//! Local replies: deferred until the callback returns, they stop the stream, skip the
//! upstream and still run the response path through the filter, as Envoy's sendLocalReply.

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{Callback, Upstream};

#[test]
fn a_local_reply_never_reaches_the_upstream() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("local-reply:403"), ok_upstream());
    assert!(out.upstream_request.is_none());
    assert_eq!(out.response.status(), 403);
    assert_eq!(out.response.body_text(), "probe says no");
    assert_eq!(out.details, "probe_reply");
}

#[test]
fn a_local_reply_has_envoys_headers_in_envoys_order() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("local-reply:401"), ok_upstream());
    let headers: Vec<(&str, &str)> = out.response.headers().iter().collect();
    assert_eq!(
        headers,
        vec![
            (":status", "401"),
            ("x-probe-reply", "yes"),
            ("content-length", "13"),
            ("content-type", "text/plain"),
        ]
    );
}

#[test]
fn a_local_reply_goes_through_the_filters_response_path() {
    let host = probe().build().unwrap();
    let out = host.send(
        probe_request("local-reply:429,response-header:x-seen=1"),
        ok_upstream(),
    );
    assert_eq!(out.response.header_value("x-seen"), Some("1"));
    let callbacks: Vec<Callback> = out.cost.calls.iter().map(|c| c.callback).collect();
    assert!(callbacks.contains(&Callback::ResponseHeaders));
    assert!(callbacks.contains(&Callback::ResponseBody));
}

#[test]
fn a_local_reply_stops_the_stream_even_if_the_callback_returned_continue() {
    let host = probe().build().unwrap();
    let stream = host.worker(0).start(probe_request("local-reply:403"));
    assert_eq!(stream.state(), meshward_harness::StreamState::Complete);
    assert!(stream.finish().upstream_request.is_none());
}

#[test]
fn a_local_reply_in_the_response_phase_replaces_the_response() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("local-reply-response:502"), ok_upstream());
    assert_eq!(out.response.status(), 502);
    assert_eq!(out.response.body_text(), "replaced");
    assert!(out.upstream_request.is_some());
}

#[test]
fn an_envoy_generated_reply_runs_through_the_filter() {
    let host = probe().build().unwrap();
    let out = host.send(
        probe_request("response-header:x-seen=1"),
        Upstream::no_route(),
    );
    assert_eq!(out.response.status(), 404);
    assert_eq!(out.response.header_value("x-seen"), Some("1"));
    assert!(out.upstream_request.is_none());
    assert_eq!(out.details, "route_not_found");

    let out = host.send(probe_request(""), Upstream::no_healthy_upstream());
    assert_eq!(out.response.status(), 503);
    assert_eq!(out.response.body_text(), "no healthy upstream");
}

#[test]
fn closing_the_stream_resets_it() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("close"), ok_upstream());
    assert!(out.reset);
    assert!(out.upstream_request.is_none());
    assert_eq!(out.response.status(), 0);
}

#[test]
fn request_headers_stay_readable_while_a_local_reply_runs_through_the_filter() {
    let host = probe().build().unwrap();
    let out = host.send(
        probe_request("local-reply:403,check-request-in-response"),
        ok_upstream(),
    );
    assert_eq!(
        out.response.header_value("x-request-map"),
        Some("ok:/probe?q=1")
    );
}
