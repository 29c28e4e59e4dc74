//! `meshward-fuel`: the Wasm fuel (instructions executed) and host calls a filter spends on
//! one request and its response, measured in the harness. `make bench` (scripts/bench.sh)
//! puts these next to Envoy's CPU time per request; BENCHMARKS.md says how to read them.
//!
//! Usage: `meshward-fuel NAME MODULE CONFIG [--tokens FILE | --clients N] [NAME MODULE
//! CONFIG ...]`, for example `meshward-fuel security-headers out/security-headers.wasm '{}'`.
//! CONFIG is the plugin configuration as JSON, or `@ENVOY_YAML` for the one of the Wasm
//! filter in that Envoy config. `--tokens FILE` sends the bearer tokens of FILE (one a line,
//! as tests/tools/bench_tokens.py writes them) in turn, one per request, in `authorization`.
//! `--clients N` sends `x-client: client-1` to `client-N` as scripts/wrk/keys-10k.lua does:
//! every value once to warm up, so the filter holds N keys, then measures requests from
//! clients it has seen.
//! Prints one line per filter: the name, the fuel per request and the host calls per
//! request, tab-separated.
//!
//! The request and response are the bench's: `GET /` through Envoy to `meshward-echo`, which
//! answers 200 with a JSON body and announces itself in `server` and `x-powered-by`. Fuel
//! is deterministic, so one request measures it; a few go first so that lazy set-up in the
//! first requests does not count. With several distinct tokens the figure is the mean over
//! `MEASURED_WITH_TOKENS` requests, each with a token not seen before (when FILE holds
//! enough), as under the bench's load.
//!
//! The host offers Envoy 1.40's `verify_signature` foreign function (BoringSSL there,
//! RustCrypto here), so jwt-auth checks RS256 and ES256 signatures on the host, as in
//! Envoy; the host's work is not fuel.

use std::process::ExitCode;
use std::time::SystemTime;

use meshward_harness::{Host, Request, Response, Upstream};
use serde_json::Value;

/// Requests sent before the measured one.
const WARM_UP_REQUESTS: usize = 3;
/// Requests measured, and averaged, when the filter gets distinct tokens or clients.
const MEASURED_WITH_TOKENS: usize = 8;

const USAGE: &str = "usage: meshward-fuel NAME MODULE CONFIG [--tokens FILE | --clients N] \
                     [NAME MODULE CONFIG ...]";

/// One filter to measure, from the command line.
struct Filter {
    name: String,
    module: String,
    config: String,
    /// Bearer tokens to send in turn; none sends no `authorization`.
    tokens: Vec<String>,
    /// Distinct `x-client` values to warm up with; 0 sends no `x-client`.
    clients: usize,
}

/// A request as wrk sends it to the bench's Envoy, with the attributes Envoy 1.40 reports
/// for it that the harness does not derive: the cluster its route sends it to, and one
/// upstream attempt. (The bench route has no name, so `xds.route_name` is empty.)
fn bench_request(token: Option<&str>, client: Option<usize>) -> Request {
    let mut request = Request::get("/")
        .header("host", "127.0.0.1:19080")
        .property("xds.cluster_name", "upstream")
        .property("xds.route_name", "")
        .property("upstream.request_attempt_count", 1i64);
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    if let Some(client) = client {
        request = request.header("x-client", &format!("client-{client}"));
    }
    request
}

/// A response as `meshward-echo` sends it for `bench_request`, body of the same size.
fn bench_response() -> Response {
    Response::new(200)
        .header("content-type", "application/json")
        .header("server", "meshward-echo")
        .header("x-powered-by", "meshward-echo")
        .body(vec![b'x'; 307])
}

/// The plugin configuration of the (first) Wasm filter in an Envoy config file.
fn config_from_envoy(path: &str) -> Result<String, String> {
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

/// What one request through the filter costs once warmed up: (fuel, host calls).
fn cost_per_request(filter: &Filter) -> Result<(u64, u64), String> {
    let module = &filter.module;
    // Now, not the harness's fixed 2024 start: bench tokens are valid for a day from now.
    let host = Host::builder(module)
        .config_json(&filter.config)
        .start_time(SystemTime::now())
        .envoy_foreign_functions()
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
    let (mut fuel, mut host_calls) = (0, 0);
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
        fuel += outcome.cost.fuel();
        host_calls += outcome.cost.host_calls();
    }
    let measured = measured as u64;
    Ok((fuel / measured, host_calls / measured))
}

/// The filters named on the command line.
fn parse(args: &[String]) -> Result<Vec<Filter>, String> {
    let mut filters = Vec::new();
    let mut args = args.iter();
    while let Some(name) = args.next() {
        let (Some(module), Some(config)) = (args.next(), args.next()) else {
            return Err(format!(
                "{name}: a module and a plugin configuration must follow"
            ));
        };
        let config = match config.strip_prefix('@') {
            Some(path) => config_from_envoy(path)?,
            None => config.clone(),
        };
        filters.push(Filter {
            name: name.clone(),
            module: module.clone(),
            config,
            tokens: Vec::new(),
            clients: 0,
        });
        if args.as_slice().first().map(String::as_str) == Some("--clients") {
            args.next();
            let count = args.next().ok_or("--clients: a number must follow")?;
            let count: usize = count
                .parse()
                .map_err(|_| format!("--clients: expected a number, got {count:?}"))?;
            if let Some(filter) = filters.last_mut() {
                filter.clients = count;
            }
        } else if args.as_slice().first().map(String::as_str) == Some("--tokens") {
            args.next();
            let path = args.next().ok_or("--tokens: a file must follow")?;
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let tokens: Vec<String> = text
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            if tokens.is_empty() {
                return Err(format!("{path}: no tokens"));
            }
            if let Some(filter) = filters.last_mut() {
                filter.tokens = tokens;
            }
        }
    }
    if filters.is_empty() {
        return Err("no filter named".into());
    }
    Ok(filters)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters = match parse(&args) {
        Ok(filters) => filters,
        Err(message) => {
            eprintln!("meshward-fuel: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    for filter in &filters {
        match cost_per_request(filter) {
            Ok((fuel, host_calls)) => println!("{}\t{fuel}\t{host_calls}", filter.name),
            Err(message) => {
                eprintln!("meshward-fuel: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
