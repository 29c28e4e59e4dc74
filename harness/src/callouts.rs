//! HTTP and gRPC callouts: what the filter asked for, the calls a VM has in flight, and the
//! ways a test answers them (delivered to the VM by `root_events`, as Envoy's async
//! clients would).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::headers::HeaderMap;
use crate::message::Response;
use crate::status::Status;

/// The gRPC status Envoy reports for timeouts and refused connections: `UNAVAILABLE`.
pub const GRPC_UNAVAILABLE: u32 = 14;

/// An HTTP call a filter made with `proxy_http_call`, waiting for an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCall {
    /// The token the filter got back.
    pub token: u32,
    /// The worker whose VM made the call.
    pub worker: usize,
    /// The context that made the call (Envoy delivers the answer to the root context).
    pub context_id: u32,
    /// The upstream cluster.
    pub cluster: String,
    /// The request headers (with `content-length` added when there is a body, as Envoy does).
    pub headers: HeaderMap,
    /// The request body.
    pub body: Vec<u8>,
    /// The request trailers.
    pub trailers: HeaderMap,
    /// The timeout the filter gave; `None` for 0, which Envoy treats as no timeout.
    pub timeout: Option<Duration>,
    pub(crate) deadline_ns: Option<u64>,
}

impl HttpCall {
    /// The first value of a request header, e.g. `call.header(":path")`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The first value of a request header, byte for byte.
    pub fn header_value_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.get_bytes(name)
    }
}

/// A unary gRPC call a filter made with `proxy_grpc_call`, waiting for an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcCall {
    /// The token the filter got back.
    pub token: u32,
    /// The worker whose VM made the call.
    pub worker: usize,
    /// The context that made the call.
    pub context_id: u32,
    /// The cluster, given by name or inside a serialized `GrpcService`.
    pub cluster: String,
    /// The gRPC service, e.g. `envoy.service.auth.v3.Authorization`.
    pub service: String,
    /// The method, e.g. `Check`.
    pub method: String,
    /// The initial metadata.
    pub initial_metadata: HeaderMap,
    /// The serialized request message.
    pub message: Vec<u8>,
    /// The timeout; `None` for 0.
    pub timeout: Option<Duration>,
    pub(crate) deadline_ns: Option<u64>,
}

/// A gRPC stream a filter opened with `proxy_grpc_stream`: what it sent, and how it ended.
/// The VM keeps every stream it opened, so a test can read what a cancelled or closed
/// stream sent.
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcStream {
    /// The token the filter got back (even, as Envoy gives streams).
    pub token: u32,
    /// The worker whose VM opened the stream.
    pub worker: usize,
    /// The context that opened it (Envoy delivers what arrives to the root context).
    pub context_id: u32,
    /// The cluster, given by name or inside a serialized `GrpcService`.
    pub cluster: String,
    /// The gRPC service, e.g. `envoy.service.ext_proc.v3.ExternalProcessor`.
    pub service: String,
    /// The method, e.g. `Process`.
    pub method: String,
    /// The initial metadata.
    pub initial_metadata: HeaderMap,
    /// The serialized messages the filter sent with `proxy_grpc_send`, in order.
    pub messages: Vec<Vec<u8>>,
    /// Whether a send carried `end_stream` (the filter half-closed its side).
    pub end_stream: bool,
    /// Whether the filter called `proxy_grpc_close` (a half-close: answers still arrive).
    pub closed_by_filter: bool,
    /// Whether the filter called `proxy_grpc_cancel` (the upstream sees a reset; nothing
    /// more arrives).
    pub cancelled: bool,
    /// The status and message the test closed the stream with, if it did.
    pub closed_by_upstream: Option<(u32, String)>,
}

impl GrpcStream {
    /// The messages the filter sent, as text (lossy), for readable assertions.
    pub fn messages_text(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    /// Whether the upstream can still answer on it: not cancelled, not closed by the test.
    pub fn is_open(&self) -> bool {
        !self.cancelled && self.closed_by_upstream.is_none()
    }

    /// Whether the filter's token still names it, as in Envoy's map of streams: until a
    /// cancel, or until both sides closed.
    fn token_live(&self) -> bool {
        !(self.cancelled || self.closed_by_filter && self.closed_by_upstream.is_some())
    }
}

/// What the test's upstream does on an open gRPC stream; each is delivered to the root
/// context as Envoy's async client delivers it.
#[derive(Clone, Debug, PartialEq)]
pub enum GrpcStreamReply {
    /// Initial metadata: `proxy_on_grpc_receive_initial_metadata`, readable as map type 4.
    InitialMetadata(HeaderMap),
    /// A serialized message: `proxy_on_grpc_receive`, readable as the gRPC receive buffer.
    Message(Vec<u8>),
    /// Trailing metadata: `proxy_on_grpc_receive_trailing_metadata`, readable as map type 5.
    TrailingMetadata(HeaderMap),
    /// The stream ends with this gRPC status (0 is OK): `proxy_on_grpc_close`, with the
    /// message readable through `proxy_get_status`.
    Close {
        /// The gRPC status code.
        status: u32,
        /// The status message.
        message: String,
    },
}

/// How a test (or a responder) settles an HTTP call.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpCallReply {
    /// The upstream answered with this response.
    Respond(Response),
    /// The stream was reset: the filter gets 0 headers, 0 body, 0 trailers, and
    /// `proxy_get_status` says `BrokenConnection`/`"reset"`.
    Reset,
    /// The timeout elapsed: Envoy's async client answers 504 `upstream request timeout`.
    TimeOut,
}

/// How a test (or a responder) settles a gRPC call.
#[derive(Clone, Debug, PartialEq)]
pub enum GrpcCallReply {
    /// The call succeeded with this serialized response message.
    Respond(Vec<u8>),
    /// The call failed with this gRPC status and message.
    Fail {
        /// The gRPC status code.
        status: u32,
        /// The status message.
        message: String,
    },
    /// The timeout elapsed: closed with 14 `UNAVAILABLE`.
    TimeOut,
}

/// What the filter can read during a callout callback.
#[derive(Clone, Debug)]
pub(crate) enum CalloutView {
    Http(Response),
    Grpc(Vec<u8>),
    /// Initial (`true`) or trailing metadata of a gRPC stream.
    GrpcMetadata(bool, HeaderMap),
}

/// The calls a VM has in flight.
#[derive(Debug, Default)]
pub(crate) struct Callouts {
    pub http: BTreeMap<u32, HttpCall>,
    pub grpc: BTreeMap<u32, GrpcCall>,
    pub grpc_streams: BTreeMap<u32, GrpcStream>,
    last_http_token: u32,
    last_grpc_token: u32,
}

impl Callouts {
    /// The next HTTP call token (1, 2, 3...).
    pub fn next_http_token(&mut self) -> u32 {
        self.last_http_token += 1;
        self.last_http_token
    }

    /// The next gRPC token from one counter, as Envoy does: unary calls get odd tokens,
    /// streams even ones, skipping a number of the wrong parity.
    pub fn next_grpc_token(&mut self, stream: bool) -> u32 {
        self.last_grpc_token += 1;
        if self.last_grpc_token.is_multiple_of(2) != stream {
            self.last_grpc_token += 1;
        }
        self.last_grpc_token
    }

    /// The stream a filter's token names, if Envoy would still know it.
    pub fn live_stream(&mut self, token: u32) -> Option<&mut GrpcStream> {
        self.grpc_streams
            .get_mut(&token)
            .filter(|stream| stream.token_live())
    }
}

/// The response Envoy's async HTTP client produces when a call times out.
pub(crate) fn timeout_response() -> Response {
    Response::local_reply(504, b"upstream request timeout", &HeaderMap::new())
}

/// Checks an HTTP call's headers as Envoy does: `:method`, `:path` and `:authority` must
/// all be there.
pub(crate) fn check_http_headers(headers: &HeaderMap) -> Result<(), Status> {
    let required = [":method", ":path", ":authority"];
    if required.iter().all(|name| headers.contains(name)) {
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

/// Reads the `envoy_grpc.cluster_name` out of a serialized
/// `envoy.config.core.v3.GrpcService`. `None` if the bytes are not such a message, in which
/// case Envoy takes them as a cluster name; `Some(None)` if they parse but name no Envoy
/// gRPC cluster.
pub(crate) fn grpc_service_cluster(bytes: &[u8]) -> Option<Option<String>> {
    let fields = proto_fields(bytes)?;
    let Some(envoy_grpc) = fields.iter().find(|(number, _)| *number == 1) else {
        return Some(None);
    };
    let inner = proto_fields(envoy_grpc.1)?;
    let cluster = inner.iter().find(|(number, _)| *number == 1)?;
    Some(Some(String::from_utf8_lossy(cluster.1).into_owned()))
}

/// Splits a protobuf message into its length-delimited fields; `None` if it is malformed.
fn proto_fields(mut bytes: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        match key & 7 {
            0 => {
                varint(&mut bytes)?;
            }
            1 => bytes = bytes.get(8..)?,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                fields.push((number, bytes.get(..len)?));
                bytes = bytes.get(len..)?;
            }
            5 => bytes = bytes.get(4..)?,
            _ => return None,
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cluster_of_a_serialized_grpc_service() {
        // GrpcService { envoy_grpc { cluster_name: "authz" } }
        let bytes = [0x0a, 0x07, 0x0a, 0x05, b'a', b'u', b't', b'h', b'z'];
        assert_eq!(
            grpc_service_cluster(&bytes),
            Some(Some("authz".to_string()))
        );
    }

    #[test]
    fn a_plain_cluster_name_is_not_a_grpc_service() {
        assert_eq!(grpc_service_cluster(b"ext_authz"), None);
        assert_eq!(grpc_service_cluster(b"grpc-backend"), None);
    }

    #[test]
    fn http_calls_need_method_path_and_authority() {
        let complete =
            HeaderMap::from_pairs([(":method", "GET"), (":path", "/"), (":authority", "a")]);
        assert_eq!(check_http_headers(&complete), Ok(()));
        let partial = HeaderMap::from_pairs([(":method", "GET"), (":path", "/")]);
        assert_eq!(check_http_headers(&partial), Err(Status::BadArgument));
    }
}
