//! The rate-limit filter's global mode in the harness: the descriptor it sends to the rate
//! limit service, each answer (OK with headers both ways, OVER_LIMIT with `Retry-After`,
//! shadow mode), each failure (timeout, unreachable, other gRPC error, unknown cluster,
//! unparsable reply) under both failure modes, a local bucket in front, and the metrics.
//! Needs `make build` (out/rate-limit.wasm).

use meshward_harness::{
    wasm_path, GrpcCall, GrpcCallReply, HarnessError, Host, HostBuilder, LogLevel, Outcome,
    Request, Response, StreamState, Upstream, GRPC_UNAVAILABLE,
};
use meshward_rate_limit::rls::{Code, DescriptorStatus, RateLimitRequest, RateLimitResponse};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

// Fixtures.

const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";

/// A rule counted by the service on cluster `rls`, `extra` merged into the rule and
/// `global` into its `global` object.
fn global_rule(extra: Value, global: Value) -> Value {
    let mut rule = json!({
        "name": "per_user",
        "key": [{"header": "x-user"}],
        "global": {"cluster": "rls", "domain": "meshward"},
    });
    for (k, v) in extra.as_object().unwrap() {
        rule[k] = v.clone();
    }
    for (k, v) in global.as_object().unwrap() {
        rule["global"][k] = v.clone();
    }
    json!({ "rules": [rule] })
}

fn builder(config: &Value) -> HostBuilder {
    Host::builder(wasm_path("rate-limit")).config_json(&config.to_string())
}

/// A host whose `rls` cluster answers every call with `reply`.
fn host_answering(
    config: &Value,
    reply: impl Fn(&GrpcCall) -> GrpcCallReply + Send + Sync + 'static,
) -> Host {
    builder(config)
        .grpc_responder("rls", reply)
        .build()
        .unwrap_or_else(|e| panic!("the filter refused {config}: {e}"))
}

fn answer(response: RateLimitResponse) -> impl Fn(&GrpcCall) -> GrpcCallReply + Send + Sync {
    let bytes = response.encode();
    move |_| GrpcCallReply::Respond(bytes.clone())
}

fn ok_reply() -> RateLimitResponse {
    RateLimitResponse {
        overall_code: Code::Ok,
        ..RateLimitResponse::default()
    }
}

fn over_limit_reply(reset: Option<Duration>) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: Code::OverLimit,
        statuses: vec![DescriptorStatus {
            code: Code::OverLimit,
            duration_until_reset: reset,
            ..DescriptorStatus::default()
        }],
        response_headers_to_add: vec![
            ("x-ratelimit-limit".into(), b"20".to_vec()),
            ("x-ratelimit-remaining".into(), b"0".to_vec()),
        ],
        ..RateLimitResponse::default()
    }
}

fn alice() -> Request {
    Request::get("/api/items?page=2").header("x-user", "alice")
}

fn ok() -> Upstream {
    Upstream::reply(Response::new(200).body("ok"))
}

fn stat(host: &Host, rule: &str, stat: &str) -> Option<u64> {
    host.counter(&format!("meshward_rate_limit.rule=.={rule};.;{stat}"))
}

fn counter(host: &Host, stat_name: &str) -> u64 {
    stat(host, "per_user", stat_name).unwrap_or_else(|| panic!("no counter {stat_name}"))
}

/// Every global counter of rule `per_user` that is not zero.
fn global_counts(host: &Host) -> Vec<(&'static str, u64)> {
    [
        "global_ok",
        "global_over_limit",
        "global_failed_timeout",
        "global_failed_unreachable",
        "global_failed_error",
        "global_failed_unknown_cluster",
        "global_failed_bad_reply",
    ]
    .into_iter()
    .map(|name| (name, counter(host, name)))
    .filter(|(_, n)| *n > 0)
    .collect()
}

fn header<'a>(out: &'a Outcome, name: &str) -> Option<&'a str> {
    out.response.header_value(name)
}

// The request the service gets.

#[test]
fn the_service_gets_one_descriptor_naming_the_rule_and_its_key_with_the_domain_and_hits() {
    let config = global_rule(
        json!({"key": [{"header": "x-user"}, "method", "path", {"query": "page"}, "client_address"]}),
        json!({"domain": "shop", "hits_addend": 3}),
    );
    let host = builder(&config).cluster("rls").build().unwrap();
    let worker = host.worker(0);
    let stream = worker.start(alice().source("10.1.2.3:5555"));
    assert_eq!(
        stream.state(),
        StreamState::Paused(meshward_harness::Phase::RequestHeaders),
        "the request waits for the service"
    );
    let calls = worker.pending_grpc_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.cluster, "rls");
    assert_eq!(
        (call.service.as_str(), call.method.as_str()),
        (SERVICE, "ShouldRateLimit")
    );
    assert_eq!(
        call.timeout,
        Some(Duration::from_millis(20)),
        "the default timeout"
    );
    let sent = RateLimitRequest::decode(&call.message).unwrap();
    assert_eq!(sent.domain, "shop");
    assert_eq!(sent.hits_addend, 3);
    let entries: Vec<(&str, &str)> = sent.descriptors[0]
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("rule", "per_user"),
            ("x-user", "alice"),
            ("method", "GET"),
            ("path", "/api/items"),
            ("query.page", "2"),
            ("remote_address", "10.1.2.3"),
        ]
    );
    assert_eq!(sent.descriptors.len(), 1);
}

#[test]
fn a_request_without_the_key_sends_it_empty_or_skips_the_service() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let ok_bytes = ok_reply().encode();
    let host = host_answering(&global_rule(json!({}), json!({})), move |call| {
        let sent = RateLimitRequest::decode(&call.message).unwrap();
        record.lock().unwrap().push(sent.descriptors[0].clone());
        GrpcCallReply::Respond(ok_bytes.clone())
    });
    assert_eq!(host.send(Request::get("/"), ok()).response.status(), 200);
    assert_eq!(
        seen.lock().unwrap()[0],
        [
            ("rule".to_string(), "per_user".to_string()),
            ("x-user".into(), String::new())
        ]
    );

    let skip = host_answering(
        &global_rule(json!({"missing_key": "skip"}), json!({})),
        answer(ok_reply()),
    );
    assert_eq!(skip.send(Request::get("/"), ok()).response.status(), 200);
    assert_eq!(counter(&skip, "global_ok"), 0, "the service was not asked");
}

// The answers.

#[test]
fn ok_lets_the_request_through_with_the_services_headers_added_up_and_down() {
    let reply = RateLimitResponse {
        request_headers_to_add: vec![("x-quota-tier".into(), b"gold".to_vec())],
        response_headers_to_add: vec![("x-ratelimit-remaining".into(), b"19".to_vec())],
        ..ok_reply()
    };
    let host = host_answering(&global_rule(json!({}), json!({})), answer(reply));
    let out = host.send(alice(), ok());
    assert_eq!(out.response.status(), 200);
    let upstream = out
        .upstream_request
        .as_ref()
        .expect("the upstream was called");
    assert_eq!(upstream.header_value("x-quota-tier"), Some("gold"));
    assert_eq!(header(&out, "x-ratelimit-remaining"), Some("19"));
    assert_eq!(global_counts(&host), [("global_ok", 1)]);
    assert_eq!(counter(&host, "limited"), 0);
}

#[test]
fn over_limit_answers_429_with_retry_after_from_the_reset_and_the_services_headers() {
    let host = host_answering(
        &global_rule(json!({}), json!({})),
        answer(over_limit_reply(Some(Duration::from_millis(41_200)))),
    );
    let out = host.send(alice(), ok());
    assert_eq!(out.response.status(), 429);
    assert!(
        out.upstream_request.is_none(),
        "a refused request never reaches the upstream"
    );
    assert_eq!(out.details, "meshward_rate_limited");
    assert_eq!(
        header(&out, "retry-after"),
        Some("42"),
        "whole seconds, rounded up"
    );
    assert_eq!(header(&out, "x-ratelimit-limit"), Some("20"));
    assert_eq!(header(&out, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&out, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(out.response.body_bytes()).unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(
        body["message"],
        "rate limit per_user exceeded; retry in 42 s"
    );
    assert_eq!(global_counts(&host), [("global_over_limit", 1)]);
    assert_eq!(counter(&host, "limited"), 1);
}

#[test]
fn over_limit_without_a_reset_has_no_retry_after_and_the_configured_status() {
    let config = json!({
        "rules": [{"name": "per_user", "global": {"cluster": "rls", "domain": "d"}}],
        "status": 503,
    });
    let host = host_answering(&config, answer(over_limit_reply(None)));
    let out = host.send(alice(), ok());
    assert_eq!(out.response.status(), 503);
    assert_eq!(header(&out, "retry-after"), None);
    assert_eq!(header(&out, "x-ratelimit-limit"), Some("20"));
}

#[test]
fn shadow_mode_counts_logs_and_marks_what_the_service_would_limit_and_lets_it_through() {
    let host = host_answering(
        &global_rule(
            json!({"mode": "shadow", "shadow_header": "x-rate-limit-shadow"}),
            json!({"failure_mode": "deny"}),
        ),
        answer(over_limit_reply(Some(Duration::from_secs(5)))),
    );
    let out = host.send(alice(), ok());
    assert_eq!(out.response.status(), 200);
    let upstream = out.upstream_request.as_ref().unwrap();
    assert_eq!(
        upstream.header_value("x-rate-limit-shadow"),
        Some("per_user")
    );
    assert_eq!(header(&out, "retry-after"), None);
    assert_eq!(global_counts(&host), [("global_over_limit", 1)]);
    assert_eq!(counter(&host, "shadow_limited"), 1);
    assert_eq!(counter(&host, "limited"), 0);
    let logs = host.log_messages(LogLevel::Info).join("\n");
    assert!(
        logs.contains("rule per_user: the rate limit service would limit GET /api/items"),
        "{logs}"
    );
}

// Failures.

/// How a call fails.
#[derive(Clone, Copy, Debug)]
enum Failing {
    Timeout,
    Unreachable,
    Error,
    UnknownCluster,
    BadReply,
}

/// Sends one request whose call fails as `how`, under `failure_mode`.
fn fail(how: Failing, failure_mode: &str) -> (Host, Outcome) {
    let cluster = if matches!(how, Failing::UnknownCluster) {
        "nowhere"
    } else {
        "rls"
    };
    let config = global_rule(
        json!({}),
        json!({"cluster": cluster, "failure_mode": failure_mode}),
    );
    let reply = move |_: &GrpcCall| match how {
        Failing::Unreachable => GrpcCallReply::Fail {
            status: GRPC_UNAVAILABLE,
            message: "upstream connect error or disconnect/reset before headers".into(),
        },
        Failing::Error => GrpcCallReply::Fail {
            status: 12,
            message: "unknown service".into(),
        },
        Failing::BadReply => GrpcCallReply::Respond(vec![0x12, 0x40, 0x08]),
        // Neither reaches a responder.
        Failing::Timeout | Failing::UnknownCluster => GrpcCallReply::TimeOut,
    };
    let host = match how {
        Failing::Timeout => builder(&config).cluster("rls").build().unwrap(),
        Failing::UnknownCluster => builder(&config).build().unwrap(),
        _ => host_answering(&config, reply),
    };
    let out = if let Failing::Timeout = how {
        let stream = host.worker(0).start(alice());
        host.advance(Duration::from_millis(19));
        assert_eq!(
            host.worker(0).pending_grpc_calls().len(),
            1,
            "still waiting at 19 ms"
        );
        host.advance(Duration::from_millis(1));
        if stream.state() == StreamState::AwaitingUpstream {
            stream.respond(ok());
        }
        stream.finish()
    } else {
        host.send(alice(), ok())
    };
    (host, out)
}

#[test]
fn each_failure_is_counted_by_kind_and_lets_the_request_through_with_failure_mode_allow() {
    for (how, metric) in [
        (Failing::Timeout, "global_failed_timeout"),
        (Failing::Unreachable, "global_failed_unreachable"),
        (Failing::Error, "global_failed_error"),
        (Failing::UnknownCluster, "global_failed_unknown_cluster"),
        (Failing::BadReply, "global_failed_bad_reply"),
    ] {
        let (host, out) = fail(how, "allow");
        assert_eq!(out.response.status(), 200, "{how:?}");
        assert!(out.upstream_request.is_some(), "{how:?}");
        assert_eq!(global_counts(&host), [(metric, 1)], "{how:?}");
        let warnings = host.log_messages(LogLevel::Warn).join("\n");
        assert!(
            warnings.contains("rule per_user:") && warnings.contains("let through"),
            "{how:?}: {warnings}"
        );
    }
}

#[test]
fn each_failure_is_counted_by_kind_and_refuses_the_request_with_failure_mode_deny() {
    for (how, metric) in [
        (Failing::Timeout, "global_failed_timeout"),
        (Failing::Unreachable, "global_failed_unreachable"),
        (Failing::Error, "global_failed_error"),
        (Failing::UnknownCluster, "global_failed_unknown_cluster"),
        (Failing::BadReply, "global_failed_bad_reply"),
    ] {
        let (host, out) = fail(how, "deny");
        assert_eq!(out.response.status(), 429, "{how:?}");
        assert!(out.upstream_request.is_none(), "{how:?}");
        let body: Value = serde_json::from_slice(out.response.body_bytes()).unwrap();
        assert_eq!(body["error"], "rate_limit_unavailable", "{how:?}");
        assert_eq!(header(&out, "retry-after"), Some("1"), "{how:?}");
        assert_eq!(global_counts(&host), [(metric, 1)], "{how:?}");
        assert!(host.vm_alive(0));
    }
}

#[test]
fn a_timeout_waits_for_the_configured_timeout() {
    let config = global_rule(
        json!({}),
        json!({"timeout": "150ms", "failure_mode": "deny"}),
    );
    let host = builder(&config).cluster("rls").build().unwrap();
    let stream = host.worker(0).start(alice());
    assert_eq!(
        host.worker(0).pending_grpc_calls()[0].timeout,
        Some(Duration::from_millis(150))
    );
    host.advance(Duration::from_millis(149));
    assert_ne!(stream.state(), StreamState::Complete);
    host.advance(Duration::from_millis(1));
    assert_eq!(stream.finish().response.status(), 429);
    assert_eq!(global_counts(&host), [("global_failed_timeout", 1)]);
}

// A local bucket in front.

#[test]
fn a_local_bucket_in_front_sends_only_the_requests_it_allows_to_the_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let ok_bytes = ok_reply().encode();
    let host = host_answering(
        &global_rule(json!({"limit": {"capacity": 3, "per": "1m"}}), json!({})),
        move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            GrpcCallReply::Respond(ok_bytes.clone())
        },
    );
    let statuses: Vec<u16> = (0..8)
        .map(|_| host.send(alice(), ok()).response.status())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "only locally allowed requests reach the service"
    );
    assert_eq!(counter(&host, "allowed"), 3);
    assert_eq!(counter(&host, "limited"), 5);
    assert_eq!(global_counts(&host), [("global_ok", 3)]);
    // A refusal by the local bucket carries the local bucket's headers.
    let out = host.send(alice(), ok());
    assert_eq!(header(&out, "retry-after"), Some("20"));
    assert_eq!(
        header(&out, "ratelimit-policy"),
        Some("\"per_user\";q=3;w=60")
    );
}

#[test]
fn the_service_can_refuse_what_the_local_bucket_allowed() {
    let host = host_answering(
        &global_rule(json!({"limit": {"capacity": 100, "per": "1s"}}), json!({})),
        answer(over_limit_reply(Some(Duration::from_secs(2)))),
    );
    let out = host.send(alice(), ok());
    assert_eq!(out.response.status(), 429);
    assert_eq!(header(&out, "retry-after"), Some("2"));
    assert_eq!(counter(&host, "allowed"), 1);
    assert_eq!(counter(&host, "global_over_limit"), 1);
}

// Several rules, late answers.

#[test]
fn several_global_rules_are_asked_at_once_and_any_over_limit_refuses() {
    let config = json!({"rules": [
        {"name": "per_user", "key": [{"header": "x-user"}], "global": {"cluster": "rls", "domain": "d"}},
        {"name": "per_path", "key": ["path"], "global": {"cluster": "rls", "domain": "d"}},
    ]});
    let host = builder(&config).cluster("rls").build().unwrap();
    let worker = host.worker(0);
    let stream = worker.start(alice());
    let calls = worker.pending_grpc_calls();
    assert_eq!(calls.len(), 2, "both calls are in flight together");
    let ok_with_header = RateLimitResponse {
        response_headers_to_add: vec![("x-from-first".into(), b"1".to_vec())],
        ..ok_reply()
    };
    worker.respond_grpc_call(calls[0].token, ok_with_header.encode());
    assert_ne!(
        stream.state(),
        StreamState::AwaitingUpstream,
        "still waiting for the second"
    );
    worker.respond_grpc_call(calls[1].token, over_limit_reply(None).encode());
    let out = stream.finish();
    assert_eq!(out.response.status(), 429);
    assert_eq!(
        header(&out, "x-from-first"),
        None,
        "an OK rule's headers are not on the refusal"
    );
    assert_eq!(stat(&host, "per_path", "global_over_limit"), Some(1));
    assert_eq!(stat(&host, "per_user", "global_ok"), Some(1));

    // Both OK: the request goes on once the last answer is in.
    let stream = worker.start(alice());
    let calls = worker.pending_grpc_calls();
    worker.respond_grpc_call(calls[1].token, ok_reply().encode());
    assert_ne!(stream.state(), StreamState::AwaitingUpstream);
    worker.respond_grpc_call(calls[0].token, ok_reply().encode());
    assert_eq!(stream.state(), StreamState::AwaitingUpstream);
}

#[test]
fn answers_after_a_refusal_change_nothing() {
    let config = json!({"rules": [
        {"name": "first", "global": {"cluster": "rls", "domain": "d"}},
        {"name": "second", "global": {"cluster": "rls", "domain": "d"}},
    ]});
    let host = builder(&config).cluster("rls").build().unwrap();
    let worker = host.worker(0);
    let stream = worker.start(alice());
    let calls = worker.pending_grpc_calls();
    worker.respond_grpc_call(calls[0].token, over_limit_reply(None).encode());
    assert_eq!(stream.state(), StreamState::Complete);
    worker.respond_grpc_call(calls[1].token, ok_reply().encode());
    assert_eq!(stream.finish().response.status(), 429);
    assert_eq!(
        stat(&host, "second", "global_ok"),
        Some(0),
        "a late answer is not applied"
    );
    assert!(host.vm_alive(0));
}

// Metrics.

#[test]
fn the_call_latency_is_recorded_in_milliseconds() {
    let host = builder(&global_rule(json!({}), json!({})))
        .cluster("rls")
        .build()
        .unwrap();
    let worker = host.worker(0);
    let stream = worker.start(alice());
    host.advance(Duration::from_millis(7));
    worker.respond_grpc_call(worker.pending_grpc_calls()[0].token, ok_reply().encode());
    assert_eq!(stream.respond(ok()), StreamState::Complete);
    assert_eq!(
        host.histogram("meshward_rate_limit.rule=.=per_user;.;global_latency_ms"),
        Some(vec![7])
    );
}

#[test]
fn rules_without_a_service_define_no_global_metrics() {
    let config = json!({"rules": [{"name": "local", "limit": {"capacity": 1, "per": "1s"}}]});
    let host = builder(&config).build().unwrap();
    assert_eq!(host.send(Request::get("/"), ok()).response.status(), 200);
    assert_eq!(stat(&host, "local", "allowed"), Some(1));
    assert_eq!(stat(&host, "local", "global_ok"), None);
    assert!(host
        .histogram("meshward_rate_limit.rule=.=local;.;global_latency_ms")
        .is_none());
}

// Configuration.

#[test]
fn a_rule_with_neither_a_limit_nor_a_service_is_refused_at_load() {
    let config = r#"{"rules":[{"name":"nothing","key":["path"]}]}"#;
    match Host::builder(wasm_path("rate-limit"))
        .config_json(config)
        .build()
    {
        Err(error @ HarnessError::LoadFailed { .. }) => {
            let logs: Vec<String> = error.logs().iter().map(|e| e.message.clone()).collect();
            let logs = logs.join("\n");
            assert!(
                logs.contains(r#"rules[0]: expected "limit" (a local bucket), "global" (a rate limit service), or both"#),
                "{logs}"
            );
        }
        Ok(_) => panic!("the filter accepted {config}"),
        Err(other) => panic!("expected a refusal, got {other}"),
    }
    let bad = global_rule(json!({}), json!({"hits_addend": 0}));
    let error = builder(&bad).build().err().expect("refused");
    let logs: Vec<String> = error.logs().iter().map(|e| e.message.clone()).collect();
    assert!(logs
        .join("\n")
        .contains("rules[0].global.hits_addend: expected 1 to 4294967295, got 0"));
}
