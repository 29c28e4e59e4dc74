//! The interface a meshward filter implements: a root per plugin configuration and an
//! HTTP filter per request. The `abi` module turns Proxy-Wasm callbacks into these calls.

use crate::config::ConfigError;
use crate::pairs::Pair;

/// What a stream callback tells the host to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter.
    Continue,
    /// Hold the stream until `host::continue_stream` or a local response.
    Pause,
}

/// The reply to an HTTP callout. A failed or timed-out call arrives with no headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpCallReply {
    /// The reply's headers, `:status` among them; empty when the call failed.
    pub headers: Vec<Pair>,
    /// The reply's body.
    pub body: Vec<u8>,
}

impl HttpCallReply {
    /// The HTTP status, or `None` when the call failed before a reply arrived.
    pub fn status(&self) -> Option<u16> {
        let (_, value) = self.headers.iter().find(|(k, _)| k == ":status")?;
        std::str::from_utf8(value).ok()?.parse().ok()
    }
}

/// An event on a gRPC callout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrpcEvent {
    /// A response message.
    Message(Vec<u8>),
    /// The call ended with this gRPC status (0 is OK) and message.
    Close {
        /// The gRPC status code.
        status: u32,
        /// The status message.
        message: String,
    },
}

/// Per-request logic. Every method has a default that lets the request through untouched.
pub trait HttpFilter {
    /// The request's headers have arrived (readable through `host`).
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// A chunk of request body has arrived; `body_size` bytes are buffered so far.
    fn on_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// The request's trailers have arrived.
    fn on_request_trailers(&mut self) -> Action {
        Action::Continue
    }
    /// The response's headers have arrived, from the upstream or a local reply.
    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// A chunk of response body has arrived.
    fn on_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// The response's trailers have arrived.
    fn on_response_trailers(&mut self) -> Action {
        Action::Continue
    }
    /// An HTTP callout this stream started has answered or failed.
    fn on_http_call_reply(&mut self, _token: u32, _reply: HttpCallReply) {}
    /// A gRPC callout this stream started has an event.
    fn on_grpc_event(&mut self, _token: u32, _event: GrpcEvent) {}
    /// The stream is over; access-log time.
    fn on_log(&mut self) {}
    /// True for a filter that runs other filters ([`crate::chain`]): `host::continue_stream`
    /// on its stream is then handed to [`HttpFilter::on_continue_requested`] instead of the
    /// host.
    fn resumes_itself(&self) -> bool {
        false
    }
    /// A member of this chain (by index, when known) asked to resume the stream: run the
    /// members after the one that paused, then resume the host's stream.
    fn on_continue_requested(&mut self, _response_side: bool, _member: Option<usize>) {}
}

/// Per-plugin logic: parses the configuration once and makes a filter per request.
pub trait RootFilter {
    /// The filter's name, used in log lines.
    fn name(&self) -> &'static str;
    /// The VM starts; `vm_config` is the VM's configuration. `false` refuses to start.
    fn on_vm_start(&mut self, _vm_config: &[u8]) -> bool {
        true
    }
    /// Parses and validates the plugin configuration. An `Err` refuses it: the error is
    /// logged and the host refuses the plugin; it names the field (a chain puts its own
    /// place in front: `filters[2].config.rules[0]...`).
    fn configure(&mut self, config: &[u8]) -> Result<(), ConfigError>;
    /// Makes the filter for a new request. `None` lets the request pass untouched (for
    /// example when no configuration was accepted).
    fn new_http_filter(&mut self, context_id: u32) -> Option<Box<dyn HttpFilter>>;
    /// The tick period set with `host::set_tick_period_millis` has elapsed.
    fn on_tick(&mut self) {}
    /// An HTTP callout the root started has answered or failed.
    fn on_http_call_reply(&mut self, _token: u32, _reply: HttpCallReply) {}
    /// A gRPC callout the root started has an event.
    fn on_grpc_event(&mut self, _token: u32, _event: GrpcEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_callout_has_no_status() {
        assert_eq!(HttpCallReply::default().status(), None);
        let ok = HttpCallReply {
            headers: vec![(":status".into(), b"204".to_vec())],
            body: vec![],
        };
        assert_eq!(ok.status(), Some(204));
    }
}
