//! The no-op fixture: a request and its response pass through untouched, and its cost is
//! the floor for benchmarks.

use meshward_harness::{wasm_path, Callback, Host, Request, Response, StreamState, Upstream};

fn noop() -> Host {
    Host::builder(wasm_path("fixture-noop")).build().unwrap()
}

#[test]
fn passes_the_request_and_the_response_through_untouched() {
    let host = noop();
    let out = host.send(
        Request::get("/x")
            .header("host", "a.example")
            .header("accept", "*/*"),
        Upstream::reply(Response::new(200).header("server", "nginx").body("hi")),
    );
    assert_eq!(out.response.status(), 200);
    assert_eq!(out.response.header_value("server"), Some("nginx"));
    assert_eq!(out.response.body_text(), "hi");
    let upstream = out.upstream_request.unwrap();
    assert_eq!(upstream.header_value(":authority"), Some("a.example"));
    assert_eq!(upstream.path(), "/x");
    assert_eq!(out.details, "via_upstream");
}

#[test]
fn reports_a_nonzero_deterministic_cost_per_callback() {
    let host = noop();
    let run = || {
        host.send(Request::get("/"), Upstream::reply(Response::new(204)))
            .cost
    };
    let (first, second) = (run(), run());
    assert_eq!(first, second);
    assert!(first.of(Callback::RequestHeaders).fuel > 0);
    assert_eq!(first.host_calls(), 0);
    let callbacks: Vec<Callback> = first.calls.iter().map(|c| c.callback).collect();
    assert_eq!(
        callbacks,
        vec![
            Callback::ContextCreate,
            Callback::RequestHeaders,
            Callback::ResponseHeaders,
            Callback::Log,
            Callback::Done,
            Callback::Delete
        ]
    );
}

#[test]
fn a_stream_in_step_mode_waits_for_the_upstream() {
    let host = noop();
    let stream = host.worker(0).start(Request::post("/upload").body("data"));
    assert_eq!(stream.state(), StreamState::AwaitingUpstream);
    assert_eq!(
        stream.respond(Upstream::reply(Response::new(201))),
        StreamState::Complete
    );
    let out = stream.finish();
    assert_eq!(out.response.status(), 201);
    assert_eq!(out.upstream_request.unwrap().body_text(), "data");
}
