//! `meshward-fuel`: the Wasm fuel (wasmtime's unit: one per operator, structural operators
//! free, bulk memory one per byte; `meshward_harness::cost`) and host calls a filter spends on
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
//! Prints one line per filter, tab-separated: the name, the fuel per request, the host
//! calls per request, the VM entries (callbacks) per request, and the host calls by kind
//! (`proxy_get_header_map_value=1,proxy_increment_metric=2`, or `-` when none). With
//! `MESHWARD_FUEL_CALLBACKS=1` it prints one line per callback of the measured request
//! instead: the name, the export, its fuel and its host calls; root-context callbacks that
//! acted for the request (a callout answer, a tick) are the lines of `proxy_on_tick`,
//! `proxy_on_http_call_response`, `proxy_on_grpc_*`, so the request's own work and the
//! root's are told apart (`RequestCost::root_fuel` is the latter's part of the fuel).
//!
//! The request and response are the bench's: `GET /` through Envoy to `meshward-echo`, which
//! answers 200 with a JSON body (`content-length` first) and announces itself in `server`
//! and `x-powered-by`; the harness adds what Envoy adds before the filters see them
//! (`x-forwarded-proto`, `x-request-id`; `x-envoy-upstream-service-time`), and the body
//! comes as Envoy's HTTP/1 codec gives it. Fuel
//! is deterministic, so one request measures it; a few go first so that lazy set-up in the
//! first requests does not count. With several distinct tokens the figure is the mean over
//! `MEASURED_WITH_TOKENS` requests, each with a token not seen before (when FILE holds
//! enough), as under the bench's load.
//!
//! The host offers Envoy 1.40's `verify_signature` foreign function (BoringSSL there,
//! RustCrypto here), so jwt-auth checks RS256 and ES256 signatures on the host, as in
//! Envoy; the host's work is not fuel.

use std::process::ExitCode;

use meshward_tests::cost::{config_from_envoy, measure, Filter};

const USAGE: &str = "usage: meshward-fuel NAME MODULE CONFIG [--tokens FILE | --clients N] \
                     [NAME MODULE CONFIG ...]";

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
        match measure(filter) {
            Ok(cost) if std::env::var_os("MESHWARD_FUEL_CALLBACKS").is_some() => {
                for (callback, fuel, calls) in &cost.callbacks {
                    println!("{}\t{callback}\t{fuel}\t{calls}", filter.name);
                }
            }
            Ok(cost) => println!(
                "{}\t{}\t{}\t{}\t{}",
                filter.name,
                cost.fuel,
                cost.host_calls,
                cost.vm_entries,
                cost.kinds_field()
            ),
            Err(message) => {
                eprintln!("meshward-fuel: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
