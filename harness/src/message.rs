//! The HTTP messages a test sends and reads: the client's request, the upstream's (or
//! Envoy's) response, and what the upstream does with the request.

use std::fmt;

use crate::headers::{HeaderMap, Slots};
use crate::property_value::PropertyValue;

/// A request as Envoy's HTTP connection manager hands it to the filter chain.
///
/// `Request::get("/x")` starts with `:authority: localhost`, `:path`, `:method` and
/// `:scheme: http`, in the order Envoy's HTTP/1 codec produces them. A `host` header
/// sets `:authority`, as the codec does. The harness adds `x-forwarded-proto` and
/// `x-request-id` when the stream starts unless the test gave them, like the connection
/// manager does by default.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: HeaderMap,
    pub(crate) source: String,
    pub(crate) destination: String,
    pub(crate) protocol: String,
    pub(crate) properties: Vec<(String, Vec<u8>)>,
    pub(crate) connection: Option<u64>,
}

impl Request {
    /// A request with this method and path and no body.
    pub fn new(method: &str, path: &str) -> Self {
        let mut headers = HeaderMap::with_slots(Slots::Request);
        for (name, value) in [
            (":authority", "localhost"),
            (":path", path),
            (":method", method),
            (":scheme", "http"),
        ] {
            headers.add(name, value);
        }
        Self {
            headers,
            body: Vec::new(),
            trailers: HeaderMap::new(),
            source: "127.0.0.1:45678".to_string(),
            destination: "127.0.0.1:10000".to_string(),
            protocol: "HTTP/1.1".to_string(),
            properties: Vec::new(),
            connection: None,
        }
    }

    /// A `GET` request for this path.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// A `POST` request for this path.
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// A `PUT` request for this path.
    pub fn put(path: &str) -> Self {
        Self::new("PUT", path)
    }

    /// A `DELETE` request for this path.
    pub fn delete(path: &str) -> Self {
        Self::new("DELETE", path)
    }

    /// Adds a header (a second one with the same name is kept as a duplicate). `host`
    /// replaces `:authority`.
    pub fn header(self, name: &str, value: &str) -> Self {
        self.header_bytes(name, value.as_bytes())
    }

    /// Adds a header whose value is raw bytes, such as obs-text (0x80-0xFF) that is not
    /// UTF-8, which HTTP/1 allows and Envoy passes to filters unchanged.
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        if name.eq_ignore_ascii_case("host") {
            self.headers.set_in_place(":authority", value);
        } else if name.starts_with(':') {
            self.headers.set_in_place(name, value);
        } else {
            self.headers.add(name, value);
        }
        self
    }

    /// Sets the body; the filter sees it in one `on_request_body` call.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The same as [`header`](Self::header), spelt as the Envoy rig's
    /// `meshward_tests::Request::with_header`, so a test reads the same in both.
    pub fn with_header(self, name: &str, value: &str) -> Self {
        self.header(name, value)
    }

    /// The same as [`header_bytes`](Self::header_bytes), spelt as the Envoy rig's.
    pub fn with_raw_header(self, name: &str, value: &[u8]) -> Self {
        self.header_bytes(name, value)
    }

    /// The same as [`body`](Self::body), spelt as the Envoy rig's.
    pub fn with_body(self, body: impl Into<Vec<u8>>) -> Self {
        self.body(body)
    }

    /// Adds a trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.add(name, value);
        self
    }

    /// Sets the downstream peer (`source.address`), as `"ip:port"`.
    pub fn source(mut self, address: &str) -> Self {
        self.source = address.to_string();
        self
    }

    /// Sets the listener address (`destination.address`), as `"ip:port"`.
    pub fn destination(mut self, address: &str) -> Self {
        self.destination = address.to_string();
        self
    }

    /// Sends the request on downstream connection `id` (`connection.id`,
    /// `connection_id`), as a client keeping a connection alive does; without it each
    /// request gets a new connection.
    pub fn connection(mut self, id: u64) -> Self {
        self.connection = Some(id);
        self
    }

    /// Sets `request.protocol` (`HTTP/1.1` unless changed).
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = protocol.to_string();
        self
    }

    /// Sets a property for this stream only, overriding what the harness would derive.
    /// The path is dot-separated, e.g. `"connection.mtls"`.
    pub fn property(mut self, path: &str, value: impl Into<PropertyValue>) -> Self {
        self.properties
            .push((path.to_string(), value.into().encode()));
        self
    }

    /// The headers, in order.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of a header (bytes that are not UTF-8 read as U+FFFD).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The first value of a header, byte for byte.
    pub fn header_value_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.get_bytes(name)
    }

    /// Every value of a header, in order (bytes that are not UTF-8 read as U+FFFD), as the
    /// Envoy rig spells it.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name)
    }

    /// The body bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The same as [`body_text`](Self::body_text), spelt as the Envoy rig's.
    pub fn text(&self) -> String {
        self.body_text()
    }

    /// The trailers, in order.
    pub fn trailers(&self) -> &HeaderMap {
        &self.trailers
    }

    /// The `:method` header.
    pub fn method(&self) -> &str {
        self.headers.get(":method").unwrap_or("")
    }

    /// The `:path` header.
    pub fn path(&self) -> &str {
        self.headers.get(":path").unwrap_or("")
    }
}

/// A response: from the upstream, generated by Envoy, or as the client received it.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: HeaderMap,
}

impl Response {
    /// A response with this status and nothing else.
    pub fn new(status: u16) -> Self {
        let mut headers = HeaderMap::with_slots(Slots::Response);
        headers.add(":status", status.to_string());
        Self {
            headers,
            body: Vec::new(),
            trailers: HeaderMap::new(),
        }
    }

    /// Adds a header.
    pub fn header(self, name: &str, value: &str) -> Self {
        self.header_bytes(name, value.as_bytes())
    }

    /// Adds a header whose value is raw bytes (not necessarily UTF-8).
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        if name.starts_with(':') {
            self.headers.set_in_place(name, value);
        } else {
            self.headers.add(name, value);
        }
        self
    }

    /// Sets the body. No `content-length` is added: give one if the test needs it.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// `200` with body `ok`, like the Envoy rig's `Reply::ok()`.
    pub fn ok() -> Self {
        Self::new(200).body("ok")
    }

    /// The same as [`header`](Self::header), spelt as the Envoy rig's `Reply::with_header`,
    /// so a test reads the same in both.
    pub fn with_header(self, name: &str, value: &str) -> Self {
        self.header(name, value)
    }

    /// The same as [`header_bytes`](Self::header_bytes), spelt as the Envoy rig's.
    pub fn with_raw_header(self, name: &str, value: &[u8]) -> Self {
        self.header_bytes(name, value)
    }

    /// The same as [`body`](Self::body), spelt as the Envoy rig's `Reply::with_body`.
    pub fn with_body(self, body: impl Into<Vec<u8>>) -> Self {
        self.body(body)
    }

    /// Adds a trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.add(name, value);
        self
    }

    /// The `:status` header as a number (0 if missing or not a number).
    pub fn status(&self) -> u16 {
        self.headers
            .get(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The headers, in order.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of a header (bytes that are not UTF-8 read as U+FFFD).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The first value of a header, byte for byte.
    pub fn header_value_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.get_bytes(name)
    }

    /// Every value of a header, in order (bytes that are not UTF-8 read as U+FFFD), as the
    /// Envoy rig spells it.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name)
    }

    /// The body bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The same as [`body_text`](Self::body_text), spelt as the Envoy rig's.
    pub fn text(&self) -> String {
        self.body_text()
    }

    /// The trailers, in order.
    pub fn trailers(&self) -> &HeaderMap {
        &self.trailers
    }

    /// A response Envoy generates itself (`sendLocalReply`): `:status`, then the extra
    /// headers, then `content-length` and `content-type: text/plain` when there is a body
    /// and no content type was given.
    pub(crate) fn local_reply(status: u32, body: &[u8], extra: &HeaderMap) -> Self {
        let mut headers = HeaderMap::with_slots(Slots::Response);
        headers.add(":status", status.to_string());
        for (name, value) in extra.iter_bytes() {
            headers.add(name, value);
        }
        if body.is_empty() {
            headers.remove("content-length");
            headers.remove("content-type");
        } else {
            headers.set("content-length", body.len().to_string());
            if !headers.contains("content-type") {
                headers.add("content-type", "text/plain");
            }
        }
        Self {
            headers,
            body: body.to_vec(),
            trailers: HeaderMap::new(),
        }
    }
}

impl Response {
    /// A local reply as Envoy's `sendLocalReply` shapes it for this request: to a gRPC
    /// request (`content-type: application/grpc...`) a trailers-only `200` with
    /// `content-type: application/grpc`, `grpc-status` (the one given, else mapped from the
    /// HTTP status) and `grpc-message` (the body), and no body; to a `HEAD` request the
    /// headers of the full reply (`content-length` included) without the body.
    pub(crate) fn local_reply_to(
        request: &Request,
        status: u32,
        body: &[u8],
        extra: &HeaderMap,
        grpc_status: Option<u32>,
    ) -> Self {
        let grpc = request
            .headers
            .get_bytes("content-type")
            .is_some_and(|t| t.starts_with(b"application/grpc"));
        if grpc {
            let mut headers = HeaderMap::with_slots(Slots::Response);
            headers.add(":status", "200");
            for (name, value) in extra.iter_bytes() {
                headers.add(name, value);
            }
            let code = grpc_status.map_or_else(|| grpc_status_of_http(status as u16), i64::from);
            headers.set("content-type", "application/grpc");
            headers.set("grpc-status", code.to_string());
            if !body.is_empty() {
                headers.set("grpc-message", body);
            }
            return Self {
                headers,
                body: Vec::new(),
                trailers: HeaderMap::new(),
            };
        }
        let mut reply = Self::local_reply(status, body, extra);
        if request.headers.get(":method") == Some("HEAD") {
            reply.body.clear();
        }
        reply
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("headers", &self.headers)
            .field("body", &self.body_text())
            .field("trailers", &self.trailers)
            .finish()
    }
}

/// What an upstream answers, by the Envoy rig's name: `Reply::new(200).with_header(..)`
/// reads the same in a harness test and in an Envoy test.
pub type Reply = Response;

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
pub(crate) fn grpc_status_of_http(status: u16) -> i64 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// Envoy's response flags (`response.flags`), as the bits of its `ResponseFlag` enum.
pub mod response_flags {
    /// `UH`: no healthy upstream host.
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    /// `UT`: the upstream request timed out.
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    /// `UC`: the upstream connection was terminated.
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    /// `NR`: no route matched.
    pub const NO_ROUTE_FOUND: u64 = 0x100;
}

type ReplyFn = Box<dyn FnOnce(&Request) -> Response + Send>;

/// What happens to the request once the filter lets it through.
pub struct Upstream {
    pub(crate) kind: UpstreamKind,
}

pub(crate) enum UpstreamKind {
    /// The upstream gets the request and answers.
    Reply(ReplyFn),
    /// Envoy answers itself; `reached` says whether the upstream got the request first.
    Envoy {
        status: u32,
        body: Vec<u8>,
        /// Headers of the reply besides those Envoy adds itself.
        headers: HeaderMap,
        details: String,
        flags: u64,
        reached: bool,
    },
}

impl Upstream {
    /// The upstream answers with this response.
    pub fn reply(response: Response) -> Self {
        Self::reply_with(move |_| response)
    }

    /// The upstream answers with whatever the closure makes of the request it got.
    pub fn reply_with(make: impl FnOnce(&Request) -> Response + Send + 'static) -> Self {
        Self {
            kind: UpstreamKind::Reply(Box::new(make)),
        }
    }

    /// The router finds no route: a 404 local reply, the upstream never called.
    pub fn no_route() -> Self {
        Self::envoy(
            404,
            "",
            "route_not_found",
            response_flags::NO_ROUTE_FOUND,
            false,
        )
    }

    /// The cluster has no healthy host: Envoy's 503 `no healthy upstream`.
    pub fn no_healthy_upstream() -> Self {
        Self::envoy(
            503,
            "no healthy upstream",
            "no_healthy_upstream",
            response_flags::NO_HEALTHY_UPSTREAM,
            false,
        )
    }

    /// The upstream got the request but did not answer in time: Envoy's 504.
    pub fn timeout() -> Self {
        Self::envoy(
            504,
            "upstream request timeout",
            "upstream_response_timeout",
            response_flags::UPSTREAM_REQUEST_TIMEOUT,
            true,
        )
    }

    /// The upstream got the request and reset the connection before answering: Envoy's 503.
    pub fn reset() -> Self {
        Self::envoy(
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            "upstream_reset_before_response_started{connection_termination}",
            response_flags::UPSTREAM_CONNECTION_TERMINATION,
            true,
        )
    }

    /// Any other reply Envoy generates itself, with its response code details and flags.
    pub fn local_reply(status: u32, body: &str, details: &str, flags: u64) -> Self {
        Self::envoy(status, body, details, flags, false)
    }

    /// A local reply a filter after this one sent (`response`, as that filter's stream
    /// ended with it, and its `details`), passing back through this filter: how a test
    /// puts several hosts one after the other, as Envoy runs separate filters.
    pub fn filter_reply(response: &Response, details: &str) -> Self {
        let mut headers = response.headers.clone();
        headers.remove(":status");
        Self {
            kind: UpstreamKind::Envoy {
                status: u32::from(response.status()),
                body: response.body.clone(),
                headers,
                details: details.to_string(),
                flags: 0,
                reached: false,
            },
        }
    }

    /// Whether this is [`Upstream::no_route`]: no route, so no `xds.route_name`.
    pub(crate) fn is_no_route(&self) -> bool {
        matches!(&self.kind, UpstreamKind::Envoy { flags, .. } if flags & response_flags::NO_ROUTE_FOUND != 0)
    }

    fn envoy(status: u32, body: &str, details: &str, flags: u64, reached: bool) -> Self {
        Self {
            kind: UpstreamKind::Envoy {
                status,
                body: body.as_bytes().to_vec(),
                headers: HeaderMap::new(),
                details: details.to_string(),
                flags,
                reached,
            },
        }
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            UpstreamKind::Reply(_) => f.write_str("Upstream::reply(..)"),
            UpstreamKind::Envoy {
                status, details, ..
            } => write!(f, "Upstream::local_reply({status}, {details})"),
        }
    }
}
