//! `meshward-rls --listen ADDR --redis URL --limits FILE`: serves Envoy's rate limit
//! protocol on ADDR (port 0 picks a free one) with limitador counting in Redis.
//!
//! Prints `listening on <addr>` once it accepts connections. SIGUSR1 prints the tally
//! (`calls=N ok=N over_limit=N errors=N`); SIGTERM or SIGINT prints it and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use meshward_rls::grpc::rate_limit_service_server::RateLimitServiceServer;
use meshward_rls::limits;
use meshward_rls::service::Rls;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

const USAGE: &str = "usage: meshward-rls --listen ADDR --redis URL --limits FILE";

struct Args {
    listen: String,
    redis: String,
    limits: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut redis = None;
    let mut limits = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--redis" => &mut redis,
            "--limits" => &mut limits,
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        };
        *slot = Some(
            args.next()
                .ok_or(format!("{flag} needs a value; {USAGE}"))?,
        );
    }
    Ok(Args {
        listen: listen.ok_or(format!("--listen is required; {USAGE}"))?,
        redis: redis.ok_or(format!("--redis is required; {USAGE}"))?,
        limits: limits
            .map(PathBuf::from)
            .ok_or(format!("--limits is required; {USAGE}"))?,
    })
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let limits = limits::load(&args.limits)?;
    let storage = AsyncRedisStorage::new(&args.redis)
        .await
        .map_err(|e| format!("--redis {}: {e}", args.redis))?;
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    limiter
        .configure_with(limits)
        .await
        .map_err(|e| format!("--limits {}: {e}", args.limits.display()))?;
    let rls = Rls::new(limiter);
    let tally = rls.tally();

    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let incoming = TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;

    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut report = signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?;
    let reporting_tally = tally.clone();
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = report.recv() => say(&reporting_tally.line()).await,
            }
        }
    };

    say(&format!("listening on {addr}")).await;
    Server::builder()
        .add_service(RateLimitServiceServer::new(rls))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("serving on {addr}: {e}"))?;
    say(&tally.line()).await;
    Ok(())
}

/// One line on stdout, flushed at once: whoever started the service reads it.
async fn say(line: &str) {
    let mut out = tokio::io::stdout();
    let _ = out.write_all(format!("{line}\n").as_bytes()).await;
    let _ = out.flush().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("meshward-rls: {message}");
            ExitCode::FAILURE
        }
    }
}
