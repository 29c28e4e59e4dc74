//! `meshward-failover`: the region-router failover drill, in a real Envoy, for `make bench`.
//!
//! Each round starts Envoy with `envoy-config/region-router.yaml` and three local servers as
//! its regions, puts steady load through it (a new session per request, so the 70/15/15
//! split spreads it), stops eu-west-1's server (the local region, 70 % of the traffic)
//! mid-load, starts it again 2 s later, and waits until the filter has restored the region.
//! It reports how many requests failed, how many were in flight at the stop, how long after
//! the stop the last failure came (traffic had moved by then), and how long after the
//! restart eu-west-1 took its split share again (the rest of the 5 s cool-down, then 5 good
//! probes).
//!
//! Usage: `meshward-failover [--rounds N] [--clients N] [--record FILE]`. Prints a Markdown
//! table; with `--record`, also writes it between the `region-router-failover` markers of
//! FILE (BENCHMARKS.md). Needs `make build` and `make setup`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::load::{Failover, Load, Sample};
use meshward_tests::{Envoy, EnvoyConfig, Reply, Request, RigError, Upstream};

const USAGE: &str = "usage: meshward-failover [--rounds N] [--clients N] [--record FILE]";
const START: &str = "<!-- region-router-failover:start -->";
const END: &str = "<!-- region-router-failover:end -->";
const DECISION: &str = "x-meshward-region-decision";
/// Load before the stop, and the outage.
const BEFORE_STOP: Duration = Duration::from_secs(2);
const OUTAGE: Duration = Duration::from_secs(2);
/// How long to wait for the region to be restored.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

struct Options {
    rounds: usize,
    clients: usize,
    record: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        rounds: 3,
        clients: 8,
        record: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--rounds" => {
                options.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?
            }
            "--clients" => {
                options.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?
            }
            "--record" => options.record = Some(value()?),
            _ => return Err(USAGE.to_owned()),
        }
    }
    if options.rounds == 0 || options.clients == 0 {
        return Err(format!("rounds and clients must be above 0\n{USAGE}"));
    }
    Ok(options)
}

async fn server(name: &str) -> Result<Upstream, RigError> {
    let upstream = Upstream::start().await?;
    upstream.reply_with(Reply::ok().with_header("x-served-by", name));
    Ok(upstream)
}

async fn restored(envoy: &Envoy) -> Result<bool, RigError> {
    let stats = envoy.stats().await?;
    Ok(stats.get(
        "meshward_region_router_restored",
        &[("region", "eu-west-1")],
    ) == Some(1.0))
}

/// One drill; the measure and the requests per second of the load.
async fn drill(clients: usize) -> Result<(Failover, f64), String> {
    let fail = |e: RigError| e.to_string();
    let mut eu = server("eu").await.map_err(fail)?;
    let us = server("us").await.map_err(fail)?;
    let ap = server("ap").await.map_err(fail)?;
    let config = EnvoyConfig::load("region-router.yaml")
        .map_err(fail)?
        .upstream(UPSTREAM_PORT, eu.port())
        .upstream(UPSTREAM_PORT + 1, us.port())
        .upstream(UPSTREAM_PORT + 2, ap.port());
    let envoy = Envoy::start(config).await.map_err(fail)?;
    let load = Load::start(envoy.addr(), clients, DECISION, |n| {
        Request::get("/").with_header("x-session-id", &format!("drill-{n}"))
    });
    tokio::time::sleep(BEFORE_STOP).await;
    let stopped_at = load.elapsed();
    eu.stop().await;
    tokio::time::sleep(OUTAGE).await;
    let restarted_at = load.elapsed();
    eu.restart().await.map_err(fail)?;
    let waiting = Instant::now();
    while !restored(&envoy).await.map_err(fail)? {
        if waiting.elapsed() > RESTORE_TIMEOUT {
            return Err(format!(
                "eu-west-1 was not restored within {RESTORE_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ran_for = load.elapsed();
    let samples = load.stop().await;
    let back = |s: &Sample| s.label.as_deref() == Some("region=eu-west-1; reason=split");
    let measure = Failover::measure(&samples, stopped_at, restarted_at, back);
    let rate = samples.len() as f64 / ran_for.as_secs_f64();
    Ok((measure, rate))
}

fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn table(clients: usize, rounds: &[(Failover, f64)]) -> String {
    let mut out = String::from(
        "| round | requests/s | failed | in flight at the stop | last failure after the stop | back in eu-west-1 after the restart |\n\
         |---|---|---|---|---|---|\n",
    );
    for (i, (m, rate)) in rounds.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {rate:.0} | {}{} | {} | {} | {} |\n",
            i + 1,
            m.failed,
            if m.failed_outside > 0 {
                format!(" (+{} outside the outage)", m.failed_outside)
            } else {
                String::new()
            },
            m.in_flight_at_stop,
            millis(m.time_to_failover),
            m.time_to_recover.map_or("never".to_owned(), millis),
        ));
    }
    out.push_str(&format!(
        "\n{clients} clients, a new session per request; eu-west-1 (70 % of the split) stopped \
         after {}s and restarted {}s later. Config: `envoy-config/region-router.yaml` \
         (min_requests 20, failure_threshold_percent 50, cool_down 5s, probe_percent 10, \
         probe_successes 5), Envoy with 2 workers.\n",
        BEFORE_STOP.as_secs(),
        OUTAGE.as_secs()
    ));
    out
}

fn record(path: &str, text: &str) -> Result<(), String> {
    let page = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    let (Some(start), Some(end)) = (page.find(START), page.find(END)) else {
        return Err(format!("{path} has no {START} ... {END} markers"));
    };
    if end < start {
        return Err(format!("{path}: the failover markers are out of order"));
    }
    let before = page.get(..start + START.len()).unwrap_or_default();
    let after = page.get(end..).unwrap_or_default();
    let updated = format!("{before}\n{text}{after}");
    std::fs::write(path, updated).map_err(|e| format!("writing {path}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match options() {
        Ok(o) => o,
        Err(message) => {
            eprintln!("meshward-failover: {message}");
            return ExitCode::from(2);
        }
    };
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        match drill(options.clients).await {
            Ok(result) => {
                eprintln!(
                    "meshward-failover: round {round}: {} failed, last failure {:?} after the stop",
                    result.0.failed, result.0.time_to_failover
                );
                rounds.push(result);
            }
            Err(message) => {
                eprintln!("meshward-failover: round {round}: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    let text = table(options.clients, &rounds);
    print!("{text}");
    if let Some(path) = options.record {
        if let Err(message) = record(&path, &text) {
            eprintln!("meshward-failover: {message}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
