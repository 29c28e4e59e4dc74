//! HTTP and gRPC callouts: what the filter sends, and each way a call can end (answered,
//! timed out, reset or failed), delivered to the root context as Envoy delivers them.

mod common;

use std::time::Duration;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{
    Callback, GrpcCallReply, HttpCallReply, Phase, Response, StreamState, Upstream,
    GRPC_UNAVAILABLE,
};

fn callout_report(stream: &meshward_harness::Stream<'_>) -> String {
    stream
        .request()
        .unwrap()
        .header_value("x-callout")
        .unwrap_or("")
        .to_string()
}

#[test]
fn an_http_call_carries_what_the_filter_sent() {
    let host = probe().cluster("authz").build().unwrap();
    let stream = host.worker(0).start(probe_request("http-call:authz"));
    assert_eq!(stream.state(), StreamState::Paused(Phase::RequestHeaders));
    let calls = host.worker(0).pending_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.cluster, "authz");
    assert_eq!(call.header(":path"), Some("/check"));
    assert_eq!(call.header("x-original-path"), Some("/probe?q=1"));
    assert_eq!(call.header("content-length"), Some("5"));
    assert_eq!(call.body, b"probe".to_vec());
    assert_eq!(call.timeout, Some(Duration::from_secs(1)));
    assert_eq!(call.context_id, stream.id());
}

#[test]
fn an_answered_call_resumes_the_stream_with_the_answer_readable() {
    let host = probe().cluster("authz").build().unwrap();
    let worker = host.worker(0);
    let stream = worker.start(probe_request("http-call:authz"));
    let token = worker.pending_http_calls()[0].token;
    assert!(worker.respond_http_call(
        token,
        Response::new(200).header("x-auth", "ok").body("granted")
    ));
    assert_eq!(stream.state(), StreamState::AwaitingUpstream);
    assert_eq!(
        callout_report(&stream),
        r#"headers=2;status=Ok("200");body=Ok("granted");failure="#
    );
    assert_eq!(stream.respond(ok_upstream()), StreamState::Complete);
    assert_eq!(stream.finish().response.status(), 200);
}

#[test]
fn a_denying_answer_leads_to_a_local_reply_without_the_upstream() {
    let host = probe()
        .http_responder("authz", |_| HttpCallReply::Respond(Response::new(403)))
        .build()
        .unwrap();
    let out = host.send(probe_request("http-call:authz"), ok_upstream());
    assert_eq!(out.response.status(), 403);
    assert_eq!(out.response.body_text(), "denied by callout");
    assert!(out.upstream_request.is_none());
}

#[test]
fn a_call_times_out_when_the_clock_passes_its_deadline() {
    let host = probe().cluster("authz").build().unwrap();
    let stream = host.worker(0).start(probe_request("http-call:authz:250"));
    host.advance(Duration::from_millis(249));
    assert_eq!(stream.state(), StreamState::Paused(Phase::RequestHeaders));
    host.advance(Duration::from_millis(1));
    assert_eq!(stream.state(), StreamState::AwaitingUpstream);
    assert_eq!(
        callout_report(&stream),
        r#"headers=3;status=Ok("504");body=Ok("upstream request timeout");failure="#
    );
}

#[test]
fn a_reset_call_reports_no_headers_and_a_broken_connection() {
    let host = probe()
        .http_responder("authz", |_| HttpCallReply::Reset)
        .build()
        .unwrap();
    let out = host.send(probe_request("http-call:authz"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-callout"),
        Some("headers=0;status=Err(2);body=Err(1);failure=11:reset")
    );
}

#[test]
fn send_times_out_calls_nobody_answers() {
    let host = probe().cluster("authz").build().unwrap();
    let out = host.send(probe_request("http-call:authz"), ok_upstream());
    let report = out
        .upstream_request
        .unwrap()
        .header_value("x-callout")
        .unwrap()
        .to_string();
    assert!(report.contains(r#"status=Ok("504")"#), "{report}");
}

#[test]
fn calls_to_unknown_clusters_or_without_required_headers_are_bad_arguments() {
    let host = probe().cluster("authz").build().unwrap();
    let out = host.send(probe_request("http-call:nowhere"), ok_upstream());
    assert_eq!(
        out.upstream_request
            .unwrap()
            .header_value("x-callout-error"),
        Some("2")
    );
    let out = host.send(probe_request("http-call-incomplete:authz"), ok_upstream());
    assert_eq!(
        out.upstream_request
            .unwrap()
            .header_value("x-callout-error"),
        Some("2")
    );
}

#[test]
fn the_callout_response_callback_is_charged_to_the_stream_it_acted_for() {
    let host = probe()
        .http_responder("authz", |_| HttpCallReply::Respond(Response::new(200)))
        .build()
        .unwrap();
    let out = host.send(probe_request("http-call:authz"), ok_upstream());
    let answer = out.cost.of(Callback::HttpCallResponse);
    assert!(answer.host_calls > 0);
    // Counted apart from the stream's own callbacks: the root context did that work.
    assert_eq!(out.cost.root(), answer);
    assert_eq!(out.cost.stream() + out.cost.root(), out.cost.total());
    assert!(out.cost.stream().fuel > 0);
}

#[test]
fn a_grpc_call_by_cluster_name_is_answered_with_a_message() {
    let host = probe().cluster("grpc-authz").build().unwrap();
    let worker = host.worker(0);
    let stream = worker.start(probe_request("grpc-call:grpc-authz"));
    let call = worker.pending_grpc_calls().remove(0);
    assert_eq!(
        (call.service.as_str(), call.method.as_str()),
        ("probe.Checker", "Check")
    );
    assert_eq!(call.message, b"ping".to_vec());
    assert_eq!(call.initial_metadata.get("x-probe-metadata"), Some("1"));
    assert!(worker.respond_grpc_call(call.token, "pong"));
    assert_eq!(
        stream.request().unwrap().header_value("x-grpc"),
        Some("ok:pong")
    );
}

#[test]
fn a_grpc_call_can_name_its_cluster_in_a_serialized_grpc_service() {
    let host = probe()
        .grpc_responder("grpc-authz", |_| GrpcCallReply::Respond(b"yes".to_vec()))
        .build()
        .unwrap();
    let out = host.send(probe_request("grpc-call-proto:grpc-authz"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-grpc"),
        Some("ok:yes")
    );
}

#[test]
fn a_failed_or_timed_out_grpc_call_is_closed_with_its_status() {
    let host = probe()
        .grpc_responder("denier", |_| GrpcCallReply::Fail {
            status: 7,
            message: "denied".to_string(),
        })
        .cluster("silent")
        .build()
        .unwrap();
    let out = host.send(probe_request("grpc-call:denier"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-grpc"),
        Some("closed:7:7:denied")
    );

    let stream = host.worker(0).start(probe_request("grpc-call:silent"));
    host.advance(Duration::from_secs(1));
    let expected = format!("closed:{GRPC_UNAVAILABLE}:{GRPC_UNAVAILABLE}:upstream request timeout");
    assert_eq!(
        stream.request().unwrap().header_value("x-grpc"),
        Some(expected.as_str())
    );
}

#[test]
fn grpc_calls_to_unknown_clusters_are_refused_as_envoy_does() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("grpc-call:nowhere"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-grpc-error"),
        Some("4")
    );
    let out = host.send(probe_request("grpc-call-proto:nowhere"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-grpc-error"),
        Some("10")
    );
}

#[test]
fn a_cancelled_grpc_call_is_forgotten() {
    let host = probe().cluster("grpc-authz").build().unwrap();
    let out = host.send(
        probe_request("grpc-cancel:grpc-authz"),
        Upstream::reply(Response::new(200)),
    );
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-grpc-cancel"),
        Some("0")
    );
    assert!(host.worker(0).pending_grpc_calls().is_empty());
}
