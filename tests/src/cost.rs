//! What one bench request costs a filter in the harness: Wasm fuel, host calls by kind and
//! VM entries, exact and deterministic. `meshward-fuel` prints it for `make bench`, and
//! `tests/cost.rs` holds each filter to it.
//!
//! The request and response are the bench's: `GET /` through Envoy to `meshward-echo`, which
//! answers 200 with a JSON body and announces itself in `server` and `x-powered-by`. Fuel
//! is deterministic, so one request measures it; a few go first so that lazy set-up in the
//! first requests does not count. With several distinct tokens or clients the figure is the
//! mean over `MEASURED_WITH_TOKENS` requests, each with a token not seen before (when there
//! are enough), as under the bench's load.
//!
//! The host offers Envoy 1.40's `verify_signature` foreign function (BoringSSL there,
//! RustCrypto here), so jwt-auth checks RS256 and ES256 signatures on the host, as in
//! Envoy; the host's work is not fuel.

use std::collections::BTreeMap;
use std::time::SystemTime;

use meshward_harness::{GrpcCallReply, Host, Request, Response, Upstream};
use meshward_rate_limit::rls::{Code, CurrentLimit, DescriptorStatus, RateLimitResponse};
use serde_json::Value;
use std::time::Duration;

/// Requests sent before the measured one: enough for state that builds over requests to
/// reach what it is under the bench's load (region-router's outcome ring holds up to 64).
const WARM_UP_REQUESTS: usize = 64;
/// Requests measured, and averaged, when the filter gets distinct tokens or clients.
const MEASURED_WITH_TOKENS: usize = 8;

/// One filter to measure.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Its name in the output.
    pub name: String,
    /// The `.wasm` path.
    pub module: String,
    /// The plugin configuration, JSON.
    pub config: String,
    /// Bearer tokens to send in turn; none sends no `authorization`.
    pub tokens: Vec<String>,
    /// Distinct `x-client` values to warm up with; 0 sends no `x-client`.
    pub clients: usize,
}

/// What one request costs, once warmed up (a mean when several were measured).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestCost {
    /// Wasm fuel (see `meshward_harness::cost` for the unit), root-context callbacks that
    /// acted for the request included.
    pub fuel: u64,
    /// The part of `fuel` spent in root-context callbacks acting for the request (callout
    /// answers, ticks): work Envoy does on the worker for this request, but outside its
    /// stream callbacks.
    pub root_fuel: u64,
    /// Host calls, all kinds.
    pub host_calls: u64,
    /// Times the host entered the VM (exported callbacks it called).
    pub vm_entries: u64,
    /// Host calls by import name; a mean over the measured requests.
    pub kinds: BTreeMap<String, f64>,
    /// Each callback of the (last) measured request: its export, fuel and host calls.
    pub callbacks: Vec<(&'static str, u64, String)>,
}

impl RequestCost {
    /// Host calls of one kind (`proxy_get_property`); 0 when none.
    pub fn calls(&self, kind: &str) -> f64 {
        self.kinds.get(kind).copied().unwrap_or(0.0)
    }

    /// The kinds as one field: `proxy_get_header_map_value=1,proxy_increment_metric=2`, or
    /// `-` when the filter made no host call.
    pub fn kinds_field(&self) -> String {
        if self.kinds.is_empty() {
            return "-".into();
        }
        let parts: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
        parts.join(",")
    }
}

/// A request as wrk sends it to the bench's Envoy: only `host` (the harness adds
/// `x-forwarded-proto` and `x-request-id`, as Envoy's connection manager does). The route's
/// cluster (`upstream`) and name (none, so `xds.route_name` is empty) are the host's, see
/// [`measure`].
pub fn bench_request(token: Option<&str>, client: Option<usize>) -> Request {
    let mut request = Request::get("/").header("host", "127.0.0.1:19080");
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    if let Some(client) = client {
        request = request.header("x-client", &format!("client-{client}"));
    }
    request
}

/// A response as `meshward-echo` sends it for `bench_request`, body of the same size, its
/// headers in the same order (`content-length` first, as `http1::encode_response` writes
/// it); the harness then adds `x-envoy-upstream-service-time`, as Envoy's router does
/// before the filters see the response.
pub fn bench_response() -> Response {
    Response::new(200)
        .header("content-length", "307")
        .header("content-type", "application/json")
        .header("server", "meshward-echo")
        .header("x-powered-by", "meshward-echo")
        .body(vec![b'x'; 307])
}

/// The plugin configuration of the (first) Wasm filter in an Envoy config file.
pub fn config_from_envoy(path: &str) -> Result<String, String> {
    fn find(value: &Value) -> Option<&str> {
        match value {
            Value::Object(map) => {
                if map.contains_key("vm_config") {
                    if let Some(text) = map
                        .get("configuration")
                        .and_then(|c| c.get("value"))
                        .and_then(Value::as_str)
                    {
                        return Some(text);
                    }
                }
                map.values().find_map(find)
            }
            Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let yaml: Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    find(&yaml)
        .map(str::to_owned)
        .ok_or_else(|| format!("{path}: no Wasm filter with a string configuration"))
}

/// The cluster of the Rate Limit Service in the bench's configs.
const RATE_LIMIT_SERVICE: &str = "rate_limit_service";

/// The answer the bench's Rate Limit Service gives a request under its limit: OK, with the
/// descriptor's status (the limit, what is left, when the window resets), so a global rule
/// is measured encoding its call and decoding the answer, as under the bench's load.
fn rate_limit_service_ok() -> Vec<u8> {
    RateLimitResponse {
        overall_code: Code::Ok,
        statuses: vec![DescriptorStatus {
            code: Code::Ok,
            current_limit: Some(CurrentLimit {
                requests_per_unit: 1_000_000,
                unit: 3,
                name: String::new(),
            }),
            limit_remaining: 999_999,
            duration_until_reset: Some(Duration::from_secs(3_599)),
        }],
        ..RateLimitResponse::default()
    }
    .encode()
}

/// What one bench request through the filter costs once warmed up.
pub fn measure(filter: &Filter) -> Result<RequestCost, String> {
    let module = &filter.module;
    // Now, not the harness's fixed 2024 start: bench tokens are valid for a day from now.
    let host = Host::builder(module)
        .cluster_name("upstream")
        .route_name("")
        .config_json(&filter.config)
        .start_time(SystemTime::now())
        .envoy_foreign_functions()
        .grpc_responder(RATE_LIMIT_SERVICE, |_| {
            GrpcCallReply::Respond(rate_limit_service_ok())
        })
        .build()
        .map_err(|e| format!("{module}: {e}"))?;
    let mut tokens = filter.tokens.iter().map(String::as_str).cycle();
    // Clients 1..=N once each, then from 1 again: every measured client is one seen before.
    let mut clients = (1..=filter.clients).cycle();
    for _ in 0..WARM_UP_REQUESTS.max(filter.clients) {
        host.send(
            bench_request(tokens.next(), clients.next()),
            Upstream::reply(bench_response()),
        );
    }
    let measured = if filter.tokens.len() > 1 || filter.clients > 1 {
        MEASURED_WITH_TOKENS
    } else {
        1
    };
    let mut sum = RequestCost::default();
    for _ in 0..measured {
        let outcome = host.send(
            bench_request(tokens.next(), clients.next()),
            Upstream::reply(bench_response()),
        );
        if outcome.response.status() != 200 || !host.vm_alive(0) {
            return Err(format!(
                "{module}: the request was answered {} ({}), not passed to the upstream",
                outcome.response.status(),
                outcome.details
            ));
        }
        sum.callbacks = outcome
            .cost
            .calls
            .iter()
            .map(|c| (c.callback.export_name(), c.cost.fuel, c.kinds.to_string()))
            .collect();
        sum.fuel += outcome.cost.fuel();
        sum.root_fuel += outcome.cost.root().fuel;
        sum.host_calls += outcome.cost.host_calls();
        sum.vm_entries += outcome.cost.vm_entries() as u64;
        for (kind, n) in outcome.cost.host_calls_by_kind().0 {
            *sum.kinds.entry(kind.to_string()).or_insert(0.0) += n as f64;
        }
    }
    let n = measured as u64;
    Ok(RequestCost {
        fuel: sum.fuel / n,
        root_fuel: sum.root_fuel / n,
        host_calls: sum.host_calls / n,
        vm_entries: sum.vm_entries / n,
        kinds: sum
            .kinds
            .into_iter()
            .map(|(k, v)| (k, v / n as f64))
            .collect(),
        callbacks: sum.callbacks,
    })
}
