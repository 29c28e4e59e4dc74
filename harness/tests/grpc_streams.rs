//! Streaming gRPC: what a stream sends, what the test's upstream answers on it (metadata,
//! messages, a close with a status), delivered to the root context as Envoy delivers them,
//! and the ways a stream ends (closed, cancelled, failing to start).

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{GrpcStreamReply, HeaderMap, Host, LogLevel, GRPC_UNAVAILABLE};

/// What the probe's root context logged about gRPC streams, in order.
fn stream_logs(host: &Host) -> Vec<String> {
    host.log_messages(LogLevel::Info)
        .into_iter()
        .filter(|m| m.starts_with("grpc stream"))
        .collect()
}

/// Opens a stream with the probe on `cluster` and returns its token.
fn open_stream(host: &Host, cluster: &str) -> u32 {
    let out = host.send(
        probe_request(&format!("grpc-stream:{cluster}")),
        ok_upstream(),
    );
    let report = out.upstream_request.unwrap();
    let token = report.header_value("x-grpc-stream").unwrap();
    token.strip_prefix("ok:").unwrap().parse().unwrap()
}

#[test]
fn a_stream_carries_what_the_filter_sent() {
    let host = probe().cluster("watcher").build().unwrap();
    let token = open_stream(&host, "watcher");
    let streams = host.worker(0).grpc_streams();
    assert_eq!(streams.len(), 1);
    let stream = &streams[0];
    assert_eq!(stream.token, token);
    assert!(token.is_multiple_of(2), "Envoy gives streams even tokens");
    assert_eq!(stream.cluster, "watcher");
    assert_eq!(stream.service, "probe.Watcher");
    assert_eq!(stream.method, "Watch");
    assert_eq!(stream.initial_metadata.get("x-probe-metadata"), Some("1"));
    assert_eq!(stream.messages_text(), ["hello"]);
    assert!(!stream.end_stream);
    assert!(stream.is_open());
}

#[test]
fn a_stream_can_name_its_cluster_in_a_serialized_grpc_service() {
    let host = probe().cluster("watcher").build().unwrap();
    let out = host.send(probe_request("grpc-stream-proto:watcher"), ok_upstream());
    let report = out.upstream_request.unwrap();
    assert!(report
        .header_value("x-grpc-stream")
        .unwrap()
        .starts_with("ok:"));
    assert_eq!(host.worker(0).grpc_streams()[0].cluster, "watcher");
}

#[test]
fn what_the_upstream_answers_reaches_the_root_context_in_order() {
    let host = probe().cluster("watcher").build().unwrap();
    let worker = host.worker(0);
    let token = open_stream(&host, "watcher");
    let metadata = HeaderMap::from_pairs([("x-probe-stream", "first"), ("x-other", "1")]);
    assert!(worker.reply_on_grpc_stream(token, GrpcStreamReply::InitialMetadata(metadata)));
    assert!(worker.reply_on_grpc_stream(token, GrpcStreamReply::Message(b"one".to_vec())));
    assert!(worker.reply_on_grpc_stream(token, GrpcStreamReply::Message(b"two".to_vec())));
    let trailers = HeaderMap::from_pairs([("x-probe-stream", "last")]);
    assert!(worker.reply_on_grpc_stream(token, GrpcStreamReply::TrailingMetadata(trailers)));
    assert!(worker.reply_on_grpc_stream(
        token,
        GrpcStreamReply::Close {
            status: 0,
            message: String::new()
        }
    ));
    assert_eq!(
        stream_logs(&host),
        [
            format!("grpc stream {token} initial metadata: count=2 x-probe-stream=first"),
            format!("grpc stream {token} message: one"),
            format!("grpc stream {token} message: two"),
            format!("grpc stream {token} trailing metadata: count=1 x-probe-stream=last"),
            format!("grpc stream {token} closed: 0 0:"),
        ]
    );
    assert_eq!(host.counter("probe_grpc_stream_messages"), Some(2));
    assert!(!worker.grpc_streams()[0].is_open());
    assert!(
        !worker.reply_on_grpc_stream(token, GrpcStreamReply::Message(b"late".to_vec())),
        "nothing arrives on a stream the upstream closed"
    );
}

#[test]
fn the_filter_answers_on_the_stream_and_ends_its_side() {
    let host = probe().cluster("watcher").build().unwrap();
    let worker = host.worker(0);
    let token = open_stream(&host, "watcher");
    worker.reply_on_grpc_stream(token, GrpcStreamReply::Message(b"reply:again".to_vec()));
    worker.reply_on_grpc_stream(token, GrpcStreamReply::Message(b"end:bye".to_vec()));
    let stream = worker.grpc_stream(token).unwrap();
    assert_eq!(stream.messages_text(), ["hello", "again", "bye"]);
    assert!(stream.end_stream);
    assert_eq!(
        stream_logs(&host),
        [
            format!("grpc stream {token} message: reply:again -> send 0"),
            format!("grpc stream {token} message: end:bye -> send end 0"),
        ]
    );
}

#[test]
fn a_stream_the_filter_closed_still_receives_until_the_upstream_closes() {
    let host = probe().cluster("watcher").build().unwrap();
    let worker = host.worker(0);
    let token = open_stream(&host, "watcher");
    worker.reply_on_grpc_stream(token, GrpcStreamReply::Message(b"close".to_vec()));
    assert!(worker.grpc_stream(token).unwrap().closed_by_filter);
    assert!(worker.reply_on_grpc_stream(token, GrpcStreamReply::Message(b"reply:x".to_vec())));
    worker.reply_on_grpc_stream(
        token,
        GrpcStreamReply::Close {
            status: 0,
            message: String::new(),
        },
    );
    assert_eq!(
        stream_logs(&host),
        [
            format!("grpc stream {token} message: close -> close 0"),
            format!("grpc stream {token} message: reply:x -> send 0"),
            format!("grpc stream {token} closed: 0 0:"),
        ]
    );
}

#[test]
fn a_failing_stream_is_closed_with_its_status_and_message() {
    let host = probe().cluster("watcher").build().unwrap();
    let token = open_stream(&host, "watcher");
    assert!(host.worker(0).reply_on_grpc_stream(
        token,
        GrpcStreamReply::Close {
            status: GRPC_UNAVAILABLE,
            message: "upstream connect error".to_string(),
        }
    ));
    assert_eq!(
        stream_logs(&host),
        [format!(
            "grpc stream {token} closed: {GRPC_UNAVAILABLE} {GRPC_UNAVAILABLE}:upstream connect error"
        )]
    );
    let stream = host.worker(0).grpc_stream(token).unwrap();
    assert_eq!(
        stream.closed_by_upstream,
        Some((GRPC_UNAVAILABLE, "upstream connect error".to_string()))
    );
}

#[test]
fn a_cancelled_stream_gets_nothing_more_and_its_token_is_forgotten() {
    let host = probe().cluster("watcher").build().unwrap();
    let out = host.send(probe_request("grpc-stream-cancel:watcher"), ok_upstream());
    assert_eq!(
        out.upstream_request
            .unwrap()
            .header_value("x-grpc-stream-cancel"),
        Some("cancel=0;send=1;close=1")
    );
    let stream = host.worker(0).grpc_streams().remove(0);
    assert!(stream.cancelled);
    assert_eq!(
        stream.messages_text(),
        ["hello"],
        "nothing sent after cancel"
    );
    assert!(!host
        .worker(0)
        .reply_on_grpc_stream(stream.token, GrpcStreamReply::Message(b"x".to_vec())));
    assert!(stream_logs(&host).is_empty());
}

#[test]
fn the_filter_can_cancel_a_stream_from_its_callback() {
    let host = probe().cluster("watcher").build().unwrap();
    let worker = host.worker(0);
    let token = open_stream(&host, "watcher");
    worker.reply_on_grpc_stream(token, GrpcStreamReply::Message(b"cancel".to_vec()));
    assert!(worker.grpc_stream(token).unwrap().cancelled);
    assert!(!worker.reply_on_grpc_stream(
        token,
        GrpcStreamReply::Close {
            status: 0,
            message: String::new()
        }
    ));
    assert_eq!(
        stream_logs(&host),
        [format!("grpc stream {token} message: cancel -> cancel 0")]
    );
}

#[test]
fn streams_to_unknown_clusters_are_refused_as_envoy_does() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("grpc-stream:nowhere"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-grpc-stream"),
        Some("err:4"),
        "a name that is no known cluster: ParseFailure"
    );
    let out = host.send(probe_request("grpc-stream-proto:nowhere"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-grpc-stream"),
        Some("err:10"),
        "a GrpcService naming an unknown cluster fails to start: InternalFailure"
    );
    assert!(host.worker(0).grpc_streams().is_empty());
}

#[test]
fn sending_on_a_call_token_or_an_unknown_stream_is_refused() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("grpc-send-misuse"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-grpc-send"),
        Some("call=2;unknown=1"),
        "BadArgument for an odd (unary) token, NotFound for an unknown stream"
    );
}

#[test]
fn calls_and_streams_share_one_token_counter_by_parity() {
    let host = probe().cluster("watcher").build().unwrap();
    let first = open_stream(&host, "watcher");
    let worker = host.worker(0);
    let _call = worker.start(probe_request("grpc-call:watcher"));
    let call = worker.pending_grpc_calls()[0].token;
    let second = open_stream(&host, "watcher");
    assert_eq!((first, call, second), (2, 3, 4));
}
