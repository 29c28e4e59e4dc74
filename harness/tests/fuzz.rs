//! Fuzz tests of the host itself: random sequences of ABI use, driven through the probe
//! fixture's commands (headers, local replies, pauses, metrics, shared data and queues,
//! properties, HTTP and gRPC callouts answered, failed or timed out, foreign functions,
//! traps) across two workers, interleaved with clock advances and open streams finished in
//! any order; and damaged modules. The host must never panic, only a trap may kill a VM,
//! and a dead VM fails closed.

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{
    wasm_path, GrpcCallReply, GrpcStreamReply, Host, HttpCallReply, Request, Response, Upstream,
};
use meshward_shared::fuzzing::{config as cases, within};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use std::time::Duration;

// Each case's heap is counted: `within` bounds it.
meshward_shared::count_allocations!();

/// Commands the probe runs (see `harness/fixtures/probe/src/commands.rs`).
const COMMANDS: &[&str] = &[
    "add-request",
    "set-request",
    "remove-request",
    "response-header",
    "local-reply",
    "pause",
    "close",
    "count",
    "gauge",
    "histogram",
    "metric-rules",
    "shared-incr",
    "shared-stale",
    "copy-request",
    "queue-register",
    "queue-resolve",
    "queue-enqueue",
    "queue-dequeue",
    "queue-token-enqueue",
    "queue-token-dequeue",
    "http-call",
    "http-call-incomplete",
    "grpc-call",
    "grpc-call-proto",
    "grpc-cancel",
    "grpc-stream",
    "grpc-stream-proto",
    "grpc-stream-cancel",
    "grpc-send-misuse",
    "trap",
    "property",
    "set-property",
    "response-map-in-request",
    "config-in-stream",
    "pairs",
    "log",
    "stdout",
    "stderr",
    "time",
    "random",
    "foreign",
    "effective-bad",
    "check-request-in-response",
    "trap-response",
    "pause-response",
    "local-reply-response",
    "response-body-append",
    "on-log-read",
    "lifecycle",
];

/// Arguments, odd ones included; no commas (they separate commands).
const ARGUMENTS: &[&str] = &[
    "",
    "authz",
    "authz:250",
    "authz:0",
    "nowhere",
    "x-a=1",
    "x-a=",
    "=",
    "q",
    "q=v",
    "x-probe=x-copy",
    "200",
    "403",
    "99999",
    "-1",
    "0",
    "4294967295",
    "request.path",
    "source.address",
    "plugin_name",
    "a.b.c",
    "x=y",
    "4:hello",
    "0:x",
    "verify_signature=abc",
    "missing=1",
    "k",
    "\u{e9}",
    ":",
    "::",
    "1:2:3",
];

fn command() -> impl Strategy<Value = String> {
    (select(COMMANDS), select(ARGUMENTS)).prop_map(|(name, arg)| {
        if arg.is_empty() {
            name.to_string()
        } else {
            format!("{name}:{arg}")
        }
    })
}

fn commands() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(command(), 1..5)
}

#[derive(Clone, Debug)]
enum Step {
    /// A whole request on a worker, answered by this upstream.
    Send(usize, Vec<String>, u16),
    /// A request started and left open (paused, or waiting on a callout).
    Start(usize, Vec<String>),
    /// One open stream answered by the upstream and finished.
    Finish(Index, u16),
    /// A pending HTTP callout answered, reset or timed out.
    Http(Index, u8, u16),
    /// A pending gRPC call answered (with these bytes) or failed.
    Grpc(Index, u8, Vec<u8>),
    /// A message, metadata or close on an open gRPC stream.
    Stream(Index, u8, Vec<u8>),
    /// The clock moves (timers, callout timeouts).
    Advance(u64),
    /// Queued items are delivered.
    QueueReady,
}

fn step() -> impl Strategy<Value = Step> {
    let status = prop_oneof![Just(200u16), Just(403), Just(503), 100u16..600];
    prop_oneof![
        3 => (0usize..2, commands(), status.clone()).prop_map(|(w, c, s)| Step::Send(w, c, s)),
        2 => (0usize..2, commands()).prop_map(|(w, c)| Step::Start(w, c)),
        2 => (any::<Index>(), status.clone()).prop_map(|(i, s)| Step::Finish(i, s)),
        2 => (any::<Index>(), 0u8..3, status).prop_map(|(i, k, s)| Step::Http(i, k, s)),
        2 => (any::<Index>(), 0u8..3, proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(i, k, b)| Step::Grpc(i, k, b)),
        1 => (any::<Index>(), 0u8..4, prop_oneof![Just(b"reply:hi".to_vec()), Just(b"end:x".to_vec()), Just(b"close".to_vec()), Just(b"cancel".to_vec()), proptest::collection::vec(any::<u8>(), 0..8)]).prop_map(|(i, k, b)| Step::Stream(i, k, b)),
        1 => (0u64..120_000).prop_map(Step::Advance),
        1 => Just(Step::QueueReady),
    ]
}

fn request(commands: &[String]) -> Request {
    probe_request(&commands.join(","))
}

fn upstream(status: u16) -> Upstream {
    Upstream::reply(Response::new(status).header("server", "fuzz").body("hello"))
}

fn is_trap(command: &str) -> bool {
    command == "trap" || command.starts_with("trap:") || command.starts_with("trap-response")
}

fn run(host: &Host, steps: &[Step]) -> [bool; 2] {
    let mut open = Vec::new();
    let mut trapped = [false; 2];
    for step in steps {
        match step {
            Step::Send(worker, commands, status) => {
                trapped[*worker] |= commands.iter().any(|c| is_trap(c));
                host.worker(*worker)
                    .send(request(commands), upstream(*status));
            }
            Step::Start(worker, commands) => {
                trapped[*worker] |= commands.iter().any(|c| is_trap(c));
                open.push(host.worker(*worker).start(request(commands)));
            }
            Step::Finish(which, status) => {
                if !open.is_empty() {
                    let stream = open.swap_remove(which.index(open.len()));
                    stream.respond(upstream(*status));
                    stream.finish();
                }
            }
            Step::Http(which, kind, status) => {
                for w in 0..2 {
                    let calls = host.worker(w).pending_http_calls();
                    if let Some(call) = calls.get(which.index(calls.len().max(1))) {
                        let reply = match kind {
                            0 => HttpCallReply::Respond(Response::new(*status).body("callout")),
                            1 => HttpCallReply::Reset,
                            _ => HttpCallReply::TimeOut,
                        };
                        host.worker(w).settle_http_call(call.token, reply);
                    }
                }
            }
            Step::Grpc(which, kind, bytes) => {
                for w in 0..2 {
                    let calls = host.worker(w).pending_grpc_calls();
                    if let Some(call) = calls.get(which.index(calls.len().max(1))) {
                        let reply = match kind {
                            0 => GrpcCallReply::Respond(bytes.clone()),
                            1 => GrpcCallReply::Fail {
                                status: u32::from(bytes.first().copied().unwrap_or(14)),
                                message: "fuzz".into(),
                            },
                            _ => GrpcCallReply::TimeOut,
                        };
                        host.worker(w).settle_grpc_call(call.token, reply);
                    }
                }
            }
            Step::Stream(which, kind, bytes) => {
                for w in 0..2 {
                    let streams = host.worker(w).grpc_streams();
                    if let Some(stream) = streams.get(which.index(streams.len().max(1))) {
                        let reply = match kind {
                            0 => GrpcStreamReply::Message(bytes.clone()),
                            1 => GrpcStreamReply::InitialMetadata(Default::default()),
                            2 => GrpcStreamReply::TrailingMetadata(Default::default()),
                            _ => GrpcStreamReply::Close {
                                status: 0,
                                message: String::from_utf8_lossy(bytes).into_owned(),
                            },
                        };
                        host.worker(w).reply_on_grpc_stream(stream.token, reply);
                    }
                }
            }
            Step::Advance(ms) => host.advance(Duration::from_millis(*ms)),
            Step::QueueReady => host.deliver_queue_ready(),
        }
    }
    for stream in open {
        stream.respond(ok_upstream());
        stream.finish();
    }
    trapped
}

proptest! {
    #![proptest_config(cases(24, 50))]

    /// Random ABI use never panics the host; a VM dies only by a trap it was asked for,
    /// and a dead VM answers 503 (fail closed) while a live one serves.
    #[test]
    fn random_abi_use_never_panics_the_host(steps in proptest::collection::vec(step(), 1..14)) {
        let host = probe()
            .workers(2)
            .cluster("authz")
            .envoy_foreign_functions()
            .build()
            .unwrap();
        let trapped = within(Duration::from_secs(20), "the sequence", || run(&host, &steps))?;
        for (worker, trapped) in trapped.into_iter().enumerate() {
            let alive = host.vm_alive(worker);
            prop_assert!(alive || trapped, "worker {worker} died without a trap");
            let out = host.worker(worker).send(probe_request("pairs"), ok_upstream());
            if alive {
                prop_assert_eq!(out.response.status(), 200);
            } else {
                prop_assert_eq!(out.response.status(), 503);
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(6, 200))]

    /// A damaged module is refused at load or runs; the host never panics.
    #[test]
    fn damaged_modules_are_refused_or_run(
        flips in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let mut bytes = std::fs::read(wasm_path("fixture-probe")).unwrap();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(host) = Host::from_bytes(bytes).build() {
            let _ = host.send(probe_request("pairs"), ok_upstream());
        }
    }
}
