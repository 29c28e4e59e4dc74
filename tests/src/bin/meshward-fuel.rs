//! `meshward-fuel`: the Wasm fuel (instructions executed) and host calls a filter spends on
//! one request and its response, measured in the harness. `make bench` (scripts/bench.sh)
//! puts these next to Envoy's CPU time per request; BENCHMARKS.md says how to read them.
//!
//! Usage: `meshward-fuel NAME MODULE CONFIG [NAME MODULE CONFIG ...]`, for example
//! `meshward-fuel security-headers out/security-headers.wasm '{}'`. Prints one line per
//! filter: the name, the fuel per request and the host calls per request, tab-separated.
//!
//! The request and response are the bench's: `GET /` through Envoy to `meshward-echo`, which
//! answers 200 with a JSON body and announces itself in `server` and `x-powered-by`. Fuel
//! is deterministic, so one request measures it; a few go first so that lazy set-up in the
//! first requests does not count.

use std::process::ExitCode;

use meshward_harness::{Host, Request, Response, Upstream};

/// Requests sent before the measured one.
const WARM_UP_REQUESTS: usize = 3;

const USAGE: &str = "usage: meshward-fuel NAME MODULE CONFIG [NAME MODULE CONFIG ...]";

/// A request as wrk sends it to the bench's Envoy, with the attributes Envoy 1.40 reports
/// for it that the harness does not derive: the cluster its route sends it to, and one
/// upstream attempt. (The bench route has no name, so `xds.route_name` is empty.)
fn bench_request() -> Request {
    Request::get("/")
        .header("host", "127.0.0.1:19080")
        .property("xds.cluster_name", "upstream")
        .property("xds.route_name", "")
        .property("upstream.request_attempt_count", 1i64)
}

/// A response as `meshward-echo` sends it for `bench_request`, body of the same size.
fn bench_response() -> Response {
    Response::new(200)
        .header("content-type", "application/json")
        .header("server", "meshward-echo")
        .header("x-powered-by", "meshward-echo")
        .body(vec![b'x'; 307])
}

/// What one request through the filter costs once warmed up: (fuel, host calls).
fn cost_per_request(module: &str, config: &str) -> Result<(u64, u64), String> {
    let host = Host::builder(module)
        .config_json(config)
        .build()
        .map_err(|e| format!("{module}: {e}"))?;
    for _ in 0..WARM_UP_REQUESTS {
        host.send(bench_request(), Upstream::reply(bench_response()));
    }
    let outcome = host.send(bench_request(), Upstream::reply(bench_response()));
    if outcome.response.status() != 200 || !host.vm_alive(0) {
        return Err(format!(
            "{module}: the request was answered {} ({}), not passed to the upstream",
            outcome.response.status(),
            outcome.details
        ));
    }
    Ok((outcome.cost.fuel(), outcome.cost.host_calls()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(3) {
        eprintln!("meshward-fuel: {USAGE}");
        return ExitCode::from(2);
    }
    for filter in args.chunks(3) {
        let [name, module, config] = filter else {
            continue;
        };
        match cost_per_request(module, config) {
            Ok((fuel, host_calls)) => println!("{name}\t{fuel}\t{host_calls}"),
            Err(message) => {
                eprintln!("meshward-fuel: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
