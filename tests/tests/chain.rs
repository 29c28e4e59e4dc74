//! The meshward chain in the harness: the five filters in one module (out/chain.wasm)
//! against the same five as separate hosts put one after the other the way Envoy runs
//! separate filters (request in order, response in reverse, a local reply passing back
//! through the filters before the one that sent it, shared data in one registry). Every
//! scenario (plain requests, each filter's local reply, a remote JWKS fetch, a rate limit
//! service's answers and failures, a breaker opening, ticks) must give identical
//! responses, upstream requests and metrics. Also: configuration errors name their path,
//! and the chain's cost per request (VM entries, host calls, fuel) has a ceiling.
//! Needs `make build`.

use meshward_harness::{
    wasm_path, Callback, GrpcCall, GrpcCallReply, HarnessError, Host, HostBuilder, HttpCall,
    HttpCallReply, MetricKind, MetricValue, Outcome, Request, Response, SharedData, StreamState,
    Upstream,
};
use meshward_jwt_auth::fixtures::{self, AUDIENCE, ISSUER};
use meshward_jwt_auth::token::Algorithm;
use meshward_rate_limit::rls::{Code, DescriptorStatus, RateLimitRequest, RateLimitResponse};
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

// Fixtures.

const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The five filters' configurations, in the order of `envoy-config/meshward.yaml`: every
/// filter acts on some request below.
fn five() -> Vec<(&'static str, Value)> {
    vec![
        ("security-headers", json!({})),
        (
            "jwt-auth",
            json!({
                "providers": [
                    {
                        "name": "inline",
                        "issuer": ISSUER,
                        "audiences": [AUDIENCE],
                        "jwks": fixtures::jwks(),
                        "claims_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}],
                    },
                    {
                        "name": "remote",
                        "issuer": "https://remote.meshward.test",
                        "audiences": [AUDIENCE],
                        "remote_jwks": {
                            "cluster": "jwks",
                            "uri": format!("https://idp.test{JWKS_PATH}"),
                            "cache_duration": "10m",
                        },
                        "claims_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}],
                    }
                ],
                "rules": [{"match": {"path": {"prefix": "/jwt/"}}}, {"token": "ignored"}],
            }),
        ),
        (
            "rate-limit",
            json!({
                "rules": [
                    {"name": "per_client", "key": [{"header": "x-client"}],
                     "limit": {"capacity": 2, "refill": 1, "per": "10s"}},
                    {"name": "global_user", "match": {"path": {"prefix": "/global/"}},
                     "key": [{"header": "x-user"}],
                     "global": {"cluster": "rls", "domain": "meshward", "timeout": "50ms"}}
                ]
            }),
        ),
        (
            "circuit-metrics",
            json!({
                "enforce": true,
                "breakers": [{"cluster": "backend", "minimum_number_of_calls": 4,
                              "sliding_window": {"count": 4}, "wait_duration_in_open": "5s"}]
            }),
        ),
        (
            "region-router",
            json!({
                "regions": [
                    {"name": "eu-west-1", "cluster": "eu", "latency": "2ms"},
                    {"name": "us-east-1", "cluster": "us", "latency": "80ms"}
                ],
                "local_region": "eu-west-1",
                "sticky": {"header": "x-session-id"},
                "decision_header": "x-meshward-region-decision",
            }),
        ),
    ]
}

/// The chain's configuration for `filters`.
fn chain_config(filters: &[(&str, Value)]) -> Value {
    let list: Vec<Value> = filters
        .iter()
        .map(|(name, config)| json!({"name": name, "config": config}))
        .collect();
    json!({ "filters": list })
}

/// The JWKS endpoint's answer: the fixture keys.
fn jwks_reply() -> HttpCallReply {
    HttpCallReply::Respond(Response::new(200).body(fixtures::public_jwks().to_string()))
}

/// The rate limit service: over the limit for `x-user: heavy`, unavailable for the
/// domain `down`, else OK.
fn rls_reply(call: &GrpcCall) -> GrpcCallReply {
    let request = RateLimitRequest::decode(&call.message).unwrap_or_default();
    if request.domain == "down" {
        return GrpcCallReply::Fail {
            status: 14,
            message: "unavailable".into(),
        };
    }
    let heavy = request
        .descriptors
        .iter()
        .flatten()
        .any(|(_, value)| value == "heavy");
    let code = if heavy { Code::OverLimit } else { Code::Ok };
    GrpcCallReply::Respond(
        RateLimitResponse {
            overall_code: code,
            statuses: vec![DescriptorStatus {
                code,
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode(),
    )
}

fn with_services(builder: HostBuilder) -> HostBuilder {
    builder
        .http_responder("jwks", |_: &HttpCall| jwks_reply())
        .grpc_responder("rls", rls_reply)
}

/// One way to run the filters: one host per filter, or the chain's one host.
struct Setup {
    hosts: Vec<Host>,
}

impl Setup {
    fn separate(filters: &[(&str, Value)]) -> Setup {
        let registry = SharedData::new();
        let hosts = filters
            .iter()
            .map(|(name, config)| {
                with_services(Host::builder(wasm_path(name)))
                    .config_json(&config.to_string())
                    .vm_id(&format!("meshward-{name}"))
                    .root_id(name)
                    .shared_data(&registry)
                    .build()
                    .unwrap_or_else(|e| panic!("{name} refused {config}: {e}"))
            })
            .collect();
        Setup { hosts }
    }

    fn chain(filters: &[(&str, Value)]) -> Setup {
        let config = chain_config(filters);
        let host = with_services(Host::builder(wasm_path("chain")))
            .config_json(&config.to_string())
            .vm_id("meshward-chain")
            .root_id("chain")
            .build()
            .unwrap_or_else(|e| panic!("the chain refused {config}: {e}"));
        Setup { hosts: vec![host] }
    }

    /// Sends `request` through every host in order and the response back in reverse, as
    /// Envoy runs separate filters; callouts are answered by the services above.
    fn send(&self, request: Request, upstream: Response) -> Outcome {
        let mut streams = Vec::new();
        let mut request = request;
        let mut answer: Option<Outcome> = None;
        for host in &self.hosts {
            let stream = host.worker(0).start(request.clone());
            settle(host, &stream);
            if stream.state() == StreamState::AwaitingUpstream {
                request = stream
                    .request()
                    .expect("a stream awaiting the upstream has a request");
                streams.push(stream);
            } else {
                answer = Some(stream.finish());
                break;
            }
        }
        let mut outcome = match answer {
            Some(outcome) => outcome,
            None => {
                let last = streams.pop().expect("at least one host");
                last.respond(Upstream::reply(upstream));
                last.finish()
            }
        };
        let reached = outcome.upstream_request.clone();
        while let Some(stream) = streams.pop() {
            let back = if outcome.details == "via_upstream" {
                Upstream::reply(outcome.response.clone())
            } else {
                Upstream::filter_reply(&outcome.response, &outcome.details)
            };
            stream.respond(back);
            outcome = stream.finish();
        }
        outcome.upstream_request = reached;
        outcome
    }

    fn advance(&self, by: Duration) {
        for host in &self.hosts {
            host.advance(by);
        }
    }

    /// Every metric of every host, by kind and name.
    fn metrics(&self) -> Vec<(MetricKind, String, MetricValue)> {
        let mut all: Vec<_> = self.hosts.iter().flat_map(|h| h.metrics()).collect();
        all.sort_by(|a, b| a.1.cmp(&b.1));
        all
    }

    fn now_secs(&self) -> u64 {
        self.hosts[0]
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Answers the callouts a paused stream waits for, until it stops waiting.
fn settle(host: &Host, stream: &meshward_harness::Stream<'_>) {
    for _ in 0..8 {
        if !matches!(stream.state(), StreamState::Paused(_)) {
            return;
        }
        let worker = host.worker(0);
        let http = worker.pending_http_calls();
        let grpc = worker.pending_grpc_calls();
        if http.is_empty() && grpc.is_empty() {
            return;
        }
        for call in http {
            worker.settle_http_call(call.token, jwks_reply());
        }
        for call in grpc {
            worker.settle_grpc_call(call.token, rls_reply(&call));
        }
    }
}

/// What a client and the upstream saw, in a form two runs can be compared by.
fn seen(outcome: &Outcome) -> String {
    let response = &outcome.response;
    let upstream = outcome.upstream_request.as_ref().map(|r| {
        format!(
            "{} {} {:?} {:?}",
            r.method(),
            r.path(),
            r.headers(),
            r.body_text()
        )
    });
    format!(
        "status {} headers {:?} body {:?} details {} upstream {:?}",
        response.status(),
        response.headers(),
        response.body_text(),
        outcome.details,
        upstream
    )
}

fn ok() -> Response {
    Response::new(200)
        .header("server", "nginx")
        .header("content-type", "text/plain")
        .body("ok")
}

fn failing() -> Response {
    Response::new(503).body("down")
}

/// The scenarios: each request with the upstream's answer, and time moving between them.
fn scenarios(setup: &Setup) -> Vec<String> {
    let now = setup.now_secs();
    let inline_token = fixtures::token(Algorithm::ES256, now);
    let mut remote_claims = fixtures::claims(now);
    remote_claims["iss"] = json!("https://remote.meshward.test");
    remote_claims["sub"] = json!("remote-user");
    let remote_token = fixtures::token_with(Algorithm::RS256, &remote_claims);
    let bearer = |token: &str| format!("Bearer {token}");
    let mut seen_all = Vec::new();
    let mut run = |request: Request, upstream: Response| {
        seen_all.push(seen(&setup.send(request, upstream)));
    };
    // Every filter lets it through and decorates the response.
    run(
        Request::get("/")
            .header("x-client", "a")
            .header("x-session-id", "s1"),
        ok(),
    );
    // A forged claim header is stripped, a valid inline token forwarded.
    run(
        Request::get("/jwt/items")
            .header("x-client", "b")
            .header("x-jwt-sub", "forged")
            .header("authorization", &bearer(&inline_token)),
        ok(),
    );
    // jwt-auth's 401 passes back through security-headers only.
    run(Request::get("/jwt/items").header("x-client", "b"), ok());
    // A remote JWKS fetch (an HTTP callout) pauses the request; the keys resume it.
    run(
        Request::get("/jwt/remote")
            .header("x-client", "c")
            .header("authorization", &bearer(&remote_token)),
        ok(),
    );
    // rate-limit's 429 on the third request of a client.
    for _ in 0..3 {
        run(Request::get("/").header("x-client", "d"), ok());
    }
    // The rate limit service (a gRPC callout): allowed, then over the limit.
    run(
        Request::get("/global/a")
            .header("x-client", "e")
            .header("x-user", "light"),
        ok(),
    );
    run(
        Request::get("/global/a")
            .header("x-client", "f")
            .header("x-user", "heavy"),
        ok(),
    );
    // Failures open the breaker; circuit-metrics then refuses with its 503.
    for client in ["g1", "g2", "g3", "g4", "g5", "g6"] {
        run(Request::get("/").header("x-client", client), failing());
    }
    // Time moves: ticks (jwt-auth every 250 ms, region-router every second), the breaker
    // half-opens, buckets refill.
    setup.advance(Duration::from_secs(6));
    run(Request::get("/").header("x-client", "d"), ok());
    run(Request::get("/").header("x-client", "h"), ok());
    seen_all
}

// The differential.

#[test]
fn the_chain_answers_every_scenario_as_the_five_separate_filters_do() {
    let separate = Setup::separate(&five());
    let chain = Setup::chain(&five());

    let apart = scenarios(&separate);
    let together = scenarios(&chain);

    assert_eq!(apart.len(), together.len());
    for (i, (a, t)) in apart.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "scenario {i}: separate filters vs the chain");
    }
    // Envoy calls every Wasm filter's on_log, also for a request a filter before it
    // answered (tests/tests/envoy_chain.rs checks that the chain does too). Put one after
    // the other, the harness's separate hosts never see such a request: circuit-metrics,
    // fourth, counts only the requests jwt-auth and rate-limit let through. So its traffic
    // counts are compared with what Envoy would count, and every other metric as is.
    // The request durations too: Envoy gives `request.duration` in every on_log, so each
    // logged request records one (the harness derives it since it answers as Envoy does).
    let traffic = |(_, name, _): &(MetricKind, String, MetricValue)| {
        name.starts_with("meshward_circuit_metrics.cluster=")
            && (name.ends_with(";responses")
                || name.ends_with(";requests")
                || name.ends_with(";duration_ms"))
    };
    let (chain_traffic, chain_rest): (Vec<_>, Vec<_>) =
        chain.metrics().into_iter().partition(traffic);
    let apart_rest: Vec<_> = separate
        .metrics()
        .into_iter()
        .filter(|m| !traffic(m))
        .collect();
    assert_eq!(apart_rest, chain_rest);
    let count = |suffix: &str| {
        chain_traffic
            .iter()
            .find(|(_, name, _)| name.ends_with(suffix))
            .map(|(_, _, value)| value.clone())
    };
    assert_eq!(count(";requests"), Some(MetricValue::Counter(17)));
    assert_eq!(
        count(";duration_ms"),
        Some(MetricValue::Histogram(vec![0; 17])),
        "one duration per logged request"
    );
    assert_eq!(
        count("code_class=.=4xx;.;responses"),
        Some(MetricValue::Counter(4)),
        "jwt-auth's 401 and rate-limit's three 429s"
    );
    // The scenarios did reach every filter's interesting path.
    let statuses: Vec<&str> = together
        .iter()
        .map(|s| s.get(7..10).unwrap_or(""))
        .collect();
    for status in ["200", "401", "429", "503"] {
        assert!(statuses.contains(&status), "no {status} in {statuses:?}");
    }
    let counter = |name: &str| chain.hosts[0].counter(name).unwrap_or(0);
    assert_eq!(counter("meshward_jwt_auth.jwks_fetch_ok"), 1);
    assert!(counter("meshward_security_headers.responses_decorated") > 0);
}

#[test]
fn a_local_reply_passes_back_only_through_the_filters_before_the_one_that_sent_it() {
    // region-router sets its decision header on every response it sees; placed after
    // rate-limit, it must not see rate-limit's 429, and security-headers before it must.
    let filters = vec![
        ("security-headers", json!({})),
        (
            "rate-limit",
            json!({"rules": [{"name": "all", "key": [],
                              "limit": {"capacity": 1, "refill": 1, "per": "1m"}}]}),
        ),
        (
            "region-router",
            json!({"regions": [{"name": "eu-west-1", "cluster": "eu"},
                               {"name": "us-east-1", "cluster": "us"}],
                   "local_region": "eu-west-1",
                   "decision_header": "x-meshward-region-decision"}),
        ),
    ];
    for setup in [Setup::separate(&filters), Setup::chain(&filters)] {
        let first = setup.send(Request::get("/"), ok());
        assert_eq!(first.response.status(), 200);
        assert!(first
            .response
            .header_value("x-meshward-region-decision")
            .is_some());
        let refused = setup.send(Request::get("/"), ok());
        assert_eq!(refused.response.status(), 429);
        assert_eq!(
            refused.response.header_value("x-meshward-region-decision"),
            None
        );
        assert!(refused
            .response
            .header_value("x-content-type-options")
            .is_some());
        assert!(refused.upstream_request.is_none());
    }
}

#[test]
fn an_unreachable_rate_limit_service_fails_as_configured_in_both() {
    let filters = vec![
        ("security-headers", json!({})),
        (
            "rate-limit",
            json!({"rules": [{"name": "g", "key": [{"header": "x-user"}],
                              "global": {"cluster": "rls", "domain": "down",
                                         "failure_mode": "deny"}}]}),
        ),
    ];
    let separate = Setup::separate(&filters);
    let chain = Setup::chain(&filters);
    let request = || Request::get("/").header("x-user", "u");
    let apart = separate.send(request(), ok());
    let together = chain.send(request(), ok());
    assert_eq!(seen(&apart), seen(&together));
    assert_eq!(separate.metrics(), chain.metrics());
}

// Configuration.

fn refusal(config: &Value) -> String {
    match Host::builder(wasm_path("chain"))
        .config_json(&config.to_string())
        .build()
    {
        Ok(_) => panic!("the chain accepted {config}"),
        Err(error @ HarnessError::LoadFailed { .. }) => error
            .logs()
            .iter()
            .map(|l| l.message.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn a_member_error_names_its_path_from_the_chain() {
    let mut filters = five();
    filters[2].1["rules"][0]["limit"]["per"] = json!("fast");
    let logs = refusal(&chain_config(&filters));
    assert!(
        logs.contains(
            r#"chain: configuration refused: filters[2].config.rules[0].limit.per: expected a duration such as "1s" or "500ms", got "fast""#
        ),
        "{logs}"
    );
}

#[test]
fn unknown_filters_and_fields_are_refused_by_name() {
    let logs = refusal(&json!({"filters": [{"name": "security-headers"}, {"name": "waf"}]}));
    assert!(
        logs.contains(r#"filters[1].name: unknown filter "waf"; expected one of security-headers, jwt-auth, rate-limit, circuit-metrics, region-router"#),
        "{logs}"
    );
    let logs = refusal(&json!({"filters": [{"name": "security-headers", "confg": {}}]}));
    assert!(
        logs.contains("filters[0].confg: unknown field `confg`, expected `name` or `config`"),
        "{logs}"
    );
    let logs = refusal(&json!({"filters": [], "extra": 1}));
    assert!(logs.contains("unknown field `extra`"), "{logs}");
    let logs = refusal(&json!({"filters": []}));
    assert!(
        logs.contains("filters: expected at least one filter"),
        "{logs}"
    );
    let logs = refusal(&json!({"filters": [{"name": "security-headers", "config": {"hsts": 1}}]}));
    assert!(logs.contains("filters[0].config.hsts: "), "{logs}");
}

// Cost.

#[test]
fn a_request_through_the_chain_enters_the_vm_once_per_phase_within_its_budget() {
    let setup = Setup::chain(&five());
    let host = &setup.hosts[0];
    let out = host.worker(0).send(
        Request::get("/")
            .header("x-client", "a")
            .header("x-session-id", "s1"),
        Upstream::reply(ok()),
    );
    assert_eq!(out.response.status(), 200);
    let entries: Vec<Callback> = out.cost.calls.iter().map(|c| c.callback).collect();
    assert_eq!(
        entries,
        [
            Callback::ContextCreate,
            Callback::RequestHeaders,
            Callback::ResponseHeaders,
            Callback::Log,
            Callback::Delete
        ],
        "one VM entry per phase"
    );
    let calls = |callback| out.cost.of(callback).host_calls;
    let fuel = out.cost.fuel();
    println!(
        "chain, five filters, one request: host calls create {} request {} response {} log {} total {}; fuel {fuel}",
        calls(Callback::ContextCreate),
        calls(Callback::RequestHeaders),
        calls(Callback::ResponseHeaders),
        calls(Callback::Log),
        out.cost.host_calls()
    );
    // Ceilings: the figures printed above at this commit (0, 32, 5, 44; 81 in all; fuel
    // 122,657) plus a small margin. The chain adds no host call of its own: these are the
    // five filters' calls, each made once per request as when they run apart, less the
    // header reads they share through one snapshot per phase. They rose from (0, 18, 5,
    // 36; 59; fuel 88,637) when the harness began to derive `xds.cluster_name` as Envoy
    // does: circuit-metrics' breaker for cluster `backend` now covers the request (its
    // circuit in shared data: 5 reads, 4 CAS writes, the clock, and its metrics defined
    // on first use), where the harness used to answer NotFound and the filter skipped it.
    assert_eq!(calls(Callback::ContextCreate), 0);
    assert!(calls(Callback::RequestHeaders) <= 34);
    assert!(calls(Callback::ResponseHeaders) <= 6);
    assert!(calls(Callback::Log) <= 46);
    assert!(out.cost.host_calls() <= 85);
    assert!(fuel <= 128_000, "fuel {fuel}");
}
