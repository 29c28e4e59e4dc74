//! The meshward chain in a real Envoy against the same five filters as five Wasm filters:
//! two Envoys, each with its own upstream, JWKS server and Rate Limit Service (limitador on
//! redis-server), get the same requests: every filter letting a request through, each of
//! jwt-auth, rate-limit (local bucket and the service) and circuit-metrics answering
//! itself, a remote JWKS fetch, Envoy's own 404, upstream failures. The clients' responses,
//! the requests the upstreams got, the JWKS fetches and every meshward counter and gauge
//! must be the same. Also: envoy-config/chain.yaml answers as envoy-config/meshward.yaml.
//! Needs `make setup` (redis-server), `make build` and scripts/build-rls.sh (run on demand).

use meshward_jwt_auth::fixtures::{self, AUDIENCE, ISSUER};
use meshward_jwt_auth::token::Algorithm;
use meshward_tests::http1::Header;
use meshward_tests::rls::{self, Rls};
use meshward_tests::{Envoy, EnvoyConfig, Reply, Request, Response, Upstream, WasmFilter};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const UPSTREAM: u16 = 8080;
const JWKS: u16 = 8081;
const RLS: u16 = 8082;
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The five filters' configurations, in envoy-config/meshward.yaml's order.
fn five() -> Vec<(&'static str, Value)> {
    vec![
        ("security-headers", json!({})),
        (
            "jwt-auth",
            json!({
                "providers": [
                    {"name": "inline", "issuer": ISSUER, "audiences": [AUDIENCE],
                     "jwks": fixtures::jwks(),
                     "claims_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]},
                    {"name": "remote", "issuer": "https://remote.meshward.test",
                     "audiences": [AUDIENCE],
                     "remote_jwks": {"cluster": "jwks", "uri": format!("http://idp.test{JWKS_PATH}"),
                                     "cache_duration": "10m"},
                     "claims_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]}
                ],
                "rules": [{"match": {"path": {"prefix": "/jwt/"}}}, {"token": "ignored"}],
            }),
        ),
        (
            "rate-limit",
            json!({"rules": [
                {"name": "per_client", "key": [{"header": "x-client"}],
                 "limit": {"capacity": 2, "refill": 1, "per": "1h"}},
                {"name": "global_user", "match": {"path": {"prefix": "/global/"}},
                 "key": [{"header": "x-user"}],
                 "global": {"cluster": "rate_limit_service", "domain": "meshward"}}
            ]}),
        ),
        (
            "circuit-metrics",
            json!({"enforce": true,
                   "breakers": [{"cluster": "upstream", "minimum_number_of_calls": 4,
                                 "sliding_window": {"count": 4}, "wait_duration_in_open": "1h"}]}),
        ),
        (
            "region-router",
            json!({"regions": [{"name": "eu-west-1", "cluster": "upstream"},
                               {"name": "us-east-1", "cluster": "upstream-us"}],
                   "local_region": "eu-west-1",
                   // Sticky by client, not by the request id each Envoy draws at random.
                   "sticky": {"header": "x-client"},
                   "decision_header": "x-meshward-region-decision"}),
        ),
    ]
}

fn chain_filter(filters: &[(&str, Value)]) -> WasmFilter {
    let list: Vec<Value> = filters
        .iter()
        .map(|(name, config)| json!({"name": name, "config": config}))
        .collect();
    WasmFilter::new("chain", json!({ "filters": list }))
}

/// One Envoy with its own upstream, JWKS server and Rate Limit Service.
struct Rig {
    envoy: Envoy,
    upstream: Upstream,
    jwks: Upstream,
    _rls: Rls,
}

impl Rig {
    async fn start(filters: &[WasmFilter]) -> Rig {
        let upstream = Upstream::start().await.unwrap();
        let jwks = Upstream::start().await.unwrap();
        jwks.reply_with(
            Reply::status(200)
                .with_header("content-type", "application/json")
                .with_body(fixtures::public_jwks().to_string()),
        );
        let rls = Rls::start(rls::limit("meshward", "global_user", 1, 3600, &["x-user"]))
            .await
            .unwrap();
        let mut config = EnvoyConfig::with_filters(filters)
            .upstream(UPSTREAM, upstream.port())
            .upstream(JWKS, jwks.port())
            .upstream(RLS, rls.port());
        let clusters = config.value_mut()["static_resources"]["clusters"]
            .as_array_mut()
            .unwrap();
        clusters.push(json!({
            "name": "jwks", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "jwks", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": JWKS}}}}]}]},
        }));
        clusters.push(json!({
            "name": "rate_limit_service", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            },
            "load_assignment": {"cluster_name": "rate_limit_service", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": RLS}}}}]}]},
        }));
        // One worker: per-worker state (jwt-auth's token cache) then sees the same requests
        // in both Envoys, whichever connection carries them.
        let envoy = Envoy::builder(config).concurrency(1).start().await.unwrap();
        Rig {
            envoy,
            upstream,
            jwks,
            _rls: rls,
        }
    }

    /// Sends `request` with the upstream answering `reply`; what the client got and what
    /// the upstream got, without what differs between two Envoys by nature (the date, the
    /// listener's port in `host`, the random request id).
    async fn exchange(&self, request: Request, reply: Reply) -> String {
        self.upstream.clear();
        self.upstream.reply_with(reply);
        let response = self.envoy.send(request).await.unwrap();
        let received: Vec<String> = self
            .upstream
            .received()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {:?}",
                    r.method,
                    r.path,
                    stable(&r.headers),
                    String::from_utf8_lossy(&r.body)
                )
            })
            .collect();
        format!(
            "{} {:?} {:?} upstream {:?}",
            response.status,
            stable(&response.headers),
            String::from_utf8_lossy(&response.body),
            received
        )
    }

    /// Every meshward counter and gauge, by name and labels.
    async fn meshward_stats(&self) -> Vec<String> {
        let stats = self.envoy.stats().await.unwrap();
        let mut lines: Vec<String> = stats
            .samples()
            .iter()
            .filter(|s| s.name.starts_with("meshward"))
            .filter(|s| {
                !["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|x| s.name.ends_with(x))
            })
            .map(|s| format!("{}{:?} {}", s.name, s.labels, s.value))
            .collect();
        lines.sort();
        lines
    }
}

fn stable(headers: &[Header]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.to_ascii_lowercase().as_str(),
                "date" | "host" | "x-request-id" | "x-envoy-upstream-service-time"
            )
        })
        .map(|(name, value)| format!("{}: {value}", name.to_ascii_lowercase()))
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ok() -> Reply {
    Reply::status(200)
        .with_header("server", "nginx")
        .with_header("content-type", "text/plain")
        .with_body("ok")
}

/// The scenarios, in order; each entry is what a client and the upstream saw.
async fn scenarios(rig: &Rig, inline: &str, remote: &str) -> Vec<String> {
    let get = |path: &str, client: &str| Request::get(path).with_header("x-client", client);
    let bearer = |token: &str| format!("Bearer {token}");
    let mut seen = Vec::new();
    // Every filter lets it through.
    seen.push(rig.exchange(get("/", "a"), ok()).await);
    // A forged claim header stripped, a valid inline token forwarded.
    let request = get("/jwt/items", "b")
        .with_header("x-jwt-sub", "forged")
        .with_header("authorization", &bearer(inline));
    seen.push(rig.exchange(request, ok()).await);
    // jwt-auth's 401.
    seen.push(rig.exchange(get("/jwt/items", "b"), ok()).await);
    // A remote JWKS fetch: the request waits for the keys, then goes on.
    let request = get("/jwt/remote", "c").with_header("authorization", &bearer(remote));
    seen.push(rig.exchange(request, ok()).await);
    // rate-limit's 429 on a client's third request.
    for _ in 0..3 {
        seen.push(rig.exchange(get("/", "d"), ok()).await);
    }
    // The rate limit service: one request per user, then over the limit.
    for _ in 0..2 {
        let request = get("/global/a", "e").with_header("x-user", "u1");
        seen.push(rig.exchange(request, ok()).await);
    }
    // Envoy's own 404 passes back through every filter.
    seen.push(rig.exchange(get("/local-reply/x", "f"), ok()).await);
    // Upstream failures open the breaker; circuit-metrics answers the next with its 503.
    for client in ["g1", "g2", "g3", "g4", "g5"] {
        seen.push(
            rig.exchange(get("/", client), Reply::status(503).with_body("down"))
                .await,
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_answers_as_the_five_separate_filters_do_in_envoy() {
    let filters = five();
    let separate: Vec<WasmFilter> = filters
        .iter()
        .map(|(name, config)| WasmFilter::new(name, config.clone()))
        .collect();
    let apart = Rig::start(&separate).await;
    let together = Rig::start(&[chain_filter(&filters)]).await;

    // Both fetch the remote keys at start (jwt-auth's root, on its first tick); a request
    // arriving before a worker has seen them would wait for them, which changes its cache
    // counts by timing alone. So the scenarios start once every worker has them.
    for rig in [&apart, &together] {
        rig.envoy
            .wait_for_stat("meshward_jwt_auth_jwks_fetch_ok", &[], 1.0)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let now = now_secs();
    let inline = fixtures::token(Algorithm::ES256, now);
    let mut claims = fixtures::claims(now);
    claims["iss"] = json!("https://remote.meshward.test");
    claims["sub"] = json!("remote-user");
    let remote = fixtures::token_with(Algorithm::RS256, &claims);

    let seen_apart = scenarios(&apart, &inline, &remote).await;
    let seen_together = scenarios(&together, &inline, &remote).await;
    for (i, (a, t)) in seen_apart.iter().zip(&seen_together).enumerate() {
        assert_eq!(a, t, "scenario {i}: five Wasm filters vs the chain");
    }
    let statuses: Vec<&str> = seen_together.iter().map(|s| &s[..3]).collect();
    for status in ["200", "401", "429", "404", "503"] {
        assert!(statuses.contains(&status), "no {status} in {statuses:?}");
    }
    assert_eq!(apart.jwks.received().len(), 1);
    assert_eq!(together.jwks.received().len(), 1);

    // on_log runs after the response is sent: give the last one a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let apart_stats = apart.meshward_stats().await;
    let together_stats = together.meshward_stats().await;
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|x| !b.contains(x)).cloned().collect()
    };
    assert!(
        apart_stats == together_stats,
        "five filters only: {:?}\nchain only: {:?}",
        only(&apart_stats, &together_stats),
        only(&together_stats, &apart_stats)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_config_chain_yaml_answers_as_meshward_yaml() {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(ok());
    let start = |file: &'static str| {
        let config = EnvoyConfig::load(file)
            .unwrap()
            .upstream(8080, upstream.port());
        Envoy::start(config)
    };
    let meshward = start("meshward.yaml").await.unwrap();
    let chain = start("chain.yaml").await.unwrap();
    let token = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjLXAyNTYiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5tZXNod2FyZC50ZXN0IiwiYXVkIjoiYXBpLm1lc2h3YXJkLnRlc3QiLCJzdWIiOiJkZW1vLXVzZXIiLCJzY29wZSI6InJlYWQiLCJpYXQiOjE3NjM2ODMyMDAsImV4cCI6NDEwMjQ0NDgwMH0.4XMxNiLF8Iq0Y1m7VWLQwD171pbcjjnjcL8xe9eqZfwpbhz8BUQaRVxuGnKQemlFSsvn_a1GWN053Shttr18jw";
    let requests = || {
        vec![
            Request::get("/"),
            Request::get("/local-reply"),
            Request::get("/jwt/items"),
            Request::get("/jwt/items").with_header("authorization", &format!("Bearer {token}")),
            Request::get("/jwt/admin").with_header("authorization", &format!("Bearer {token}")),
            Request::get("/regions/x").with_header("x-session-id", "s1"),
        ]
    };
    for (a, b) in requests().into_iter().zip(requests()) {
        let path = a.path.clone();
        let from_meshward: Response = meshward.send(a).await.unwrap();
        let from_chain: Response = chain.send(b).await.unwrap();
        assert_eq!(from_meshward.status, from_chain.status, "{path}");
        assert_eq!(
            stable(&from_meshward.headers),
            stable(&from_chain.headers),
            "{path}"
        );
    }
}

/// Envoy's resident memory (VmRSS, kB) once it has started and served a few requests.
async fn resident_kb(file: &str, workers: u32, upstream: &Upstream, token: &str) -> u64 {
    let config = EnvoyConfig::load(file)
        .unwrap()
        .upstream(8080, upstream.port())
        .upstream(19081, upstream.port());
    let envoy = Envoy::builder(config)
        .concurrency(workers)
        .start()
        .await
        .unwrap();
    for i in 0..(8 * workers) {
        let request = Request::get("/")
            .with_header("x-client", &format!("c{i}"))
            .with_header("authorization", &format!("Bearer {token}"));
        envoy.send(request).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", envoy.pid())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap()
}

/// The figures of BENCHMARKS.md's "The meshward chain": Envoy's resident memory with no
/// filter, the five filters as five Wasm filters, the chain of the five, meshward.yaml and
/// chain.yaml, at 1 and 4 workers. Not a check (memory varies a little from run to run):
/// `cargo test -p meshward-tests --test envoy_chain -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn resident_memory_per_configuration() {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(ok());
    let token = fixtures::token(Algorithm::ES256, now_secs());
    for workers in [1, 4] {
        let none = resident_kb("bench/no-filter.yaml", workers, &upstream, &token).await;
        for file in [
            "bench/no-filter.yaml",
            "bench/five-filters.yaml",
            "bench/chain.yaml",
            "meshward.yaml",
            "chain.yaml",
        ] {
            let kb = resident_kb(file, workers, &upstream, &token).await;
            println!(
                "workers {workers}: {file:<26} VmRSS {:6.1} MB, {:+6.1} MB over no filter",
                kb as f64 / 1024.0,
                (kb as f64 - none as f64) / 1024.0
            );
        }
    }
}
