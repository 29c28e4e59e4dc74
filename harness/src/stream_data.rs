//! What the host keeps for one HTTP stream: the request and response as the filter shapes
//! them, the phase the stream is in, which maps and buffers Envoy points at, and what the
//! filter asked for (local reply, reset, continue). The lifecycle that moves it is in
//! `stream`.

use std::collections::BTreeMap;

use crate::cost::{Callback, CostReport};
use crate::headers::HeaderMap;
use crate::message::{Request, Response, Upstream};

/// A phase of the HTTP stream that calls the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `proxy_on_request_headers`
    RequestHeaders,
    /// `proxy_on_request_body`
    RequestBody,
    /// `proxy_on_request_trailers`
    RequestTrailers,
    /// `proxy_on_response_headers`
    ResponseHeaders,
    /// `proxy_on_response_body`
    ResponseBody,
    /// `proxy_on_response_trailers`
    ResponseTrailers,
}

impl Phase {
    pub(crate) fn callback(self) -> Callback {
        match self {
            Self::RequestHeaders => Callback::RequestHeaders,
            Self::RequestBody => Callback::RequestBody,
            Self::RequestTrailers => Callback::RequestTrailers,
            Self::ResponseHeaders => Callback::ResponseHeaders,
            Self::ResponseBody => Callback::ResponseBody,
            Self::ResponseTrailers => Callback::ResponseTrailers,
        }
    }

    pub(crate) fn is_request(self) -> bool {
        matches!(
            self,
            Self::RequestHeaders | Self::RequestBody | Self::RequestTrailers
        )
    }
}

/// Where a stream stands, as the test sees it in step mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// The filter returned Pause in this phase and has not continued the stream.
    Paused(Phase),
    /// The request went through the filter and waits for the upstream's answer.
    AwaitingUpstream,
    /// The stream is over: the response was sent (or the stream reset) and the context deleted.
    Complete,
}

/// The next thing the driver does for a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Run(Phase),
    Paused(Phase),
    AwaitingUpstream,
    Finish,
    Complete,
}

/// A local reply the filter asked for, applied when its callback returns.
#[derive(Clone, Debug)]
pub(crate) struct LocalReply {
    pub status: u32,
    pub body: Vec<u8>,
    pub headers: HeaderMap,
    pub details: String,
    /// The gRPC status the filter gave (`None` for -1 or out of range).
    pub grpc_status: Option<u32>,
}

/// Which of the stream's maps and buffers Envoy currently points at.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Attached {
    pub request_headers: bool,
    pub request_body: bool,
    pub request_trailers: bool,
    pub response_headers: bool,
    pub response_body: bool,
    pub response_trailers: bool,
}

/// Everything the host keeps for one stream context.
pub(crate) struct StreamData {
    /// The request as the filter has shaped it so far.
    pub request: Request,
    /// The response once the response path started.
    pub response: Option<Response>,
    pub attached: Attached,
    /// Inside `proxy_on_log`, where Envoy gives read-only access-log views of the maps.
    pub access_log: bool,
    pub step: Step,
    /// Whether the context exists in the VM (created and not yet deleted).
    pub in_vm: bool,
    pub local_reply: Option<LocalReply>,
    pub local_reply_sent: bool,
    pub continue_request: bool,
    pub continue_response: bool,
    pub reset: bool,
    pub upstream: Option<Upstream>,
    pub upstream_request: Option<Request>,
    pub details: Option<String>,
    pub flags: u64,
    pub set_properties: BTreeMap<Vec<u8>, Vec<u8>>,
    pub property_overrides: BTreeMap<Vec<u8>, Vec<u8>>,
    pub start_ns: i64,
    pub connection_id: u64,
    pub costs: CostReport,
    /// The end-of-stream flag of the body callback running now.
    pub end_of_stream: bool,
    /// The filter added trailers from the last body chunk (Envoy's `addEncodedTrailers`):
    /// they go out, but this filter's trailers callback is not called for them.
    pub added_trailers: bool,
    /// The request body went through the filter (counts in `request.size`).
    pub request_body_read: bool,
    /// Bodies come as Envoy's HTTP/1 codec delivers them: the data with
    /// `end_of_stream = false`, then an empty last chunk (see
    /// [`HostBuilder::single_body_chunk`](crate::HostBuilder::single_body_chunk)).
    pub request_split: bool,
    pub response_split: bool,
    /// The body callback running now is the data chunk, before the empty last one.
    pub first_chunk: bool,
    /// The next body callback is the empty last chunk.
    pub tail: bool,
    /// Bytes of each body the filter let through already (no longer in its buffer).
    pub request_passed: usize,
    pub response_passed: usize,
    /// A route matched (`xds.route_name`, `xds.cluster_name`...): every upstream but
    /// [`Upstream::no_route`].
    pub routed: bool,
}

impl StreamData {
    pub(crate) fn has_body(&self, phase: Phase) -> bool {
        if phase.is_request() {
            !self.request.body.is_empty()
        } else {
            self.response.as_ref().is_some_and(|r| !r.body.is_empty())
        }
    }

    /// Whether this body comes in two callbacks (data, then an empty last chunk).
    pub(crate) fn split(&self, phase: Phase) -> bool {
        let split = if phase.is_request() {
            self.request_split
        } else {
            self.response_split
        };
        split && !self.has_trailers(phase)
    }

    /// The part of a body still in the filter's buffer.
    pub(crate) fn body_view(&self, request: bool) -> Vec<u8> {
        let (body, passed) = if request {
            (Some(&self.request.body), self.request_passed)
        } else {
            (
                self.response.as_ref().map(|r| &r.body),
                self.response_passed,
            )
        };
        body.and_then(|b| b.get(passed..))
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    pub(crate) fn has_trailers(&self, phase: Phase) -> bool {
        if phase.is_request() {
            !self.request.trailers.is_empty()
        } else {
            self.response
                .as_ref()
                .is_some_and(|r| !r.trailers.is_empty())
        }
    }

    /// The step after a phase that continued.
    pub(crate) fn after(&self, phase: Phase) -> Step {
        match phase {
            Phase::RequestHeaders if self.has_body(phase) => Step::Run(Phase::RequestBody),
            Phase::RequestHeaders | Phase::RequestBody
                if self.has_trailers(phase) && !self.added_trailers =>
            {
                Step::Run(Phase::RequestTrailers)
            }
            Phase::RequestHeaders | Phase::RequestBody | Phase::RequestTrailers => {
                Step::AwaitingUpstream
            }
            Phase::ResponseHeaders if self.has_body(phase) => Step::Run(Phase::ResponseBody),
            Phase::ResponseHeaders | Phase::ResponseBody
                if self.has_trailers(phase) && !self.added_trailers =>
            {
                Step::Run(Phase::ResponseTrailers)
            }
            Phase::ResponseHeaders | Phase::ResponseBody | Phase::ResponseTrailers => Step::Finish,
        }
    }

    pub(crate) fn attach(&mut self, phase: Phase, on: bool) {
        let a = &mut self.attached;
        match phase {
            Phase::RequestHeaders => a.request_headers = on,
            Phase::RequestBody => a.request_body = on,
            Phase::RequestTrailers => a.request_trailers = on,
            Phase::ResponseHeaders => a.response_headers = on,
            Phase::ResponseBody => a.response_body = on,
            Phase::ResponseTrailers => a.response_trailers = on,
        }
    }

    /// The filter let the body in its buffer through.
    pub(crate) fn pass_body(&mut self, phase: Phase) {
        if phase.is_request() {
            self.request_passed = self.request.body.len();
        } else {
            self.response_passed = self.response.as_ref().map_or(0, |r| r.body.len());
        }
    }

    /// Envoy's `continueStream(Request)` forgets the request maps.
    pub fn detach_request(&mut self) {
        self.attached.request_headers = false;
        self.attached.request_body = false;
        self.attached.request_trailers = false;
    }

    /// Where the stream stands.
    pub fn state(&self) -> StreamState {
        match self.step {
            Step::Paused(phase) | Step::Run(phase) => StreamState::Paused(phase),
            Step::AwaitingUpstream => StreamState::AwaitingUpstream,
            Step::Finish | Step::Complete => StreamState::Complete,
        }
    }
}
