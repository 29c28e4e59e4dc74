//! The HTTP stream lifecycle as Envoy drives a Wasm filter: which callbacks run in which
//! order, which header maps and buffers the filter can reach in each phase, pauses and
//! `proxy_continue_stream`, local replies, and the fail policy after a trap.

use std::collections::BTreeMap;

use crate::cost::{Callback, CostReport};
use crate::headers::HeaderMap;
use crate::message::{Request, Response, Upstream, UpstreamKind};
use crate::status::Status;
use crate::vm::{Vm, VmState, ROOT_CONTEXT_ID};

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
    fn callback(self) -> Callback {
        match self {
            Self::RequestHeaders => Callback::RequestHeaders,
            Self::RequestBody => Callback::RequestBody,
            Self::RequestTrailers => Callback::RequestTrailers,
            Self::ResponseHeaders => Callback::ResponseHeaders,
            Self::ResponseBody => Callback::ResponseBody,
            Self::ResponseTrailers => Callback::ResponseTrailers,
        }
    }

    fn is_request(self) -> bool {
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
    fn has_body(&self, phase: Phase) -> bool {
        if phase.is_request() {
            !self.request.body.is_empty()
        } else {
            self.response.as_ref().is_some_and(|r| !r.body.is_empty())
        }
    }

    /// Whether this body comes in two callbacks (data, then an empty last chunk).
    fn split(&self, phase: Phase) -> bool {
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

    fn has_trailers(&self, phase: Phase) -> bool {
        if phase.is_request() {
            !self.request.trailers.is_empty()
        } else {
            self.response
                .as_ref()
                .is_some_and(|r| !r.trailers.is_empty())
        }
    }

    /// The step after a phase that continued.
    fn after(&self, phase: Phase) -> Step {
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

    fn attach(&mut self, phase: Phase, on: bool) {
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
    fn pass_body(&mut self, phase: Phase) {
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

/// Whether a callback's answer lets the stream go on, as Envoy's `convertFilter*Status`
/// reads it: headers continue on 0 and on any value it does not know (2,
/// `ContinueAndEndStream`, included) and stop on 1, 3, 4; bodies stop on 1-3; trailers
/// stop on 1.
fn continues(phase: Phase, action: i32) -> bool {
    match phase {
        Phase::RequestHeaders | Phase::ResponseHeaders => !matches!(action, 1 | 3 | 4),
        Phase::RequestBody | Phase::ResponseBody => !matches!(action, 1..=3),
        Phase::RequestTrailers | Phase::ResponseTrailers => action != 1,
    }
}

/// A header map or buffer a filter names by its ABI number.
fn map_of(stream: &StreamData, map_type: i32) -> Option<&HeaderMap> {
    let response = stream.response.as_ref();
    if stream.access_log {
        return match map_type {
            0 => Some(&stream.request.headers),
            2 => response.map(|r| &r.headers),
            3 => response.map(|r| &r.trailers),
            _ => None,
        };
    }
    let a = &stream.attached;
    match map_type {
        0 if a.request_headers => Some(&stream.request.headers),
        1 if a.request_trailers => Some(&stream.request.trailers),
        2 if a.response_headers => response.map(|r| &r.headers),
        3 if a.response_trailers => response.map(|r| &r.trailers),
        _ => None,
    }
}

impl VmState {
    /// A header map the filter reads, following Envoy's `getConstMap`: unavailable maps are
    /// `BadArgument`, except in `proxy_on_log` where they are `NotFound`.
    pub(crate) fn read_map(&self, map_type: i32) -> Result<&HeaderMap, Status> {
        if !(0..=7).contains(&map_type) {
            return Err(Status::BadArgument);
        }
        let found = match map_type {
            0..=3 => self.stream().and_then(|s| map_of(s, map_type)),
            4 | 5 => match &self.callout_view {
                Some(crate::callouts::CalloutView::GrpcMetadata(initial, map))
                    if *initial == (map_type == 4) =>
                {
                    Some(map)
                }
                _ => None,
            },
            6 | 7 => match &self.callout_view {
                Some(crate::callouts::CalloutView::Http(r)) if map_type == 6 => Some(&r.headers),
                // Envoy's response message has no trailer map unless trailers came.
                Some(crate::callouts::CalloutView::Http(r)) if !r.trailers.is_empty() => {
                    Some(&r.trailers)
                }
                _ => None,
            },
            _ => None,
        };
        match found {
            Some(map) => Ok(map),
            None if self.stream().is_some_and(|s| s.access_log) => Err(Status::NotFound),
            None => Err(Status::BadArgument),
        }
    }

    /// A header map the filter changes, following Envoy's `getMap`: only the stream's own
    /// maps while Envoy points at them, never in `proxy_on_log`.
    pub(crate) fn write_map(&mut self, map_type: i32) -> Result<&mut HeaderMap, Status> {
        let stream = self.stream_mut().ok_or(Status::BadArgument)?;
        if stream.access_log {
            return Err(Status::BadArgument);
        }
        // Envoy's `getMap`: trailers can be added from the last body chunk.
        if stream.end_of_stream {
            if map_type == 1 && stream.attached.request_body && stream.request.trailers.is_empty() {
                stream.attached.request_trailers = true;
                stream.added_trailers = true;
            }
            if map_type == 3
                && stream.attached.response_body
                && stream
                    .response
                    .as_ref()
                    .is_some_and(|r| r.trailers.is_empty())
            {
                stream.attached.response_trailers = true;
                stream.added_trailers = true;
            }
        }
        let a = stream.attached;
        match map_type {
            0 if a.request_headers => Ok(&mut stream.request.headers),
            1 if a.request_trailers => Ok(&mut stream.request.trailers),
            2 if a.response_headers => stream
                .response
                .as_mut()
                .map(|r| &mut r.headers)
                .ok_or(Status::BadArgument),
            3 if a.response_trailers => stream
                .response
                .as_mut()
                .map(|r| &mut r.trailers)
                .ok_or(Status::BadArgument),
            _ => Err(Status::BadArgument),
        }
    }

    /// A buffer the filter reads (`proxy_get_buffer_bytes`), as Envoy's `getBuffer`.
    pub(crate) fn read_buffer(&self, buffer_type: i32) -> Result<Vec<u8>, Status> {
        use crate::callouts::CalloutView;
        use crate::vm::ConfigWindow;
        let body = |request: bool| {
            let stream = self.stream().filter(|s| !s.access_log);
            let bytes = match stream {
                Some(s) if request && s.attached.request_body => Some(s.body_view(true)),
                Some(s) if !request && s.attached.response_body => Some(s.body_view(false)),
                _ => None,
            };
            Ok(bytes.unwrap_or_default())
        };
        match buffer_type {
            0 => body(true),
            1 => body(false),
            2 | 3 | 8 => Ok(Vec::new()),
            4 => match &self.callout_view {
                Some(CalloutView::Http(r)) => Ok(r.body.clone()),
                _ => Err(Status::NotFound),
            },
            5 => match &self.callout_view {
                Some(CalloutView::Grpc(message)) => Ok(message.clone()),
                _ => Ok(Vec::new()),
            },
            6 if self.config_window == ConfigWindow::VmStart && self.current == ROOT_CONTEXT_ID => {
                Ok(self.shared.vm_config.clone())
            }
            7 if self.config_window == ConfigWindow::Configure
                && self.current == ROOT_CONTEXT_ID =>
            {
                Ok(self.shared.plugin_config.clone())
            }
            6 | 7 => Err(Status::NotFound),
            _ => Err(Status::BadArgument),
        }
    }

    /// `proxy_set_buffer_bytes` on a body, with Envoy's rules: at 0 with length 0 it
    /// prepends, at 0 covering the whole body it replaces, at 0 over part of the body it
    /// drains that part and prepends, at or past the end it appends; anywhere else is
    /// `BadArgument`.
    pub(crate) fn write_buffer(
        &mut self,
        buffer_type: i32,
        start: usize,
        length: usize,
        data: &[u8],
    ) -> Status {
        if !(0..=8).contains(&buffer_type) {
            return Status::BadArgument;
        }
        let Some(stream) = self.stream_mut().filter(|s| !s.access_log) else {
            return Status::BadArgument;
        };
        let attached = stream.attached;
        let (whole, passed) = match buffer_type {
            0 if attached.request_body => (&mut stream.request.body, stream.request_passed),
            1 if attached.response_body => match stream.response.as_mut() {
                Some(r) => (&mut r.body, stream.response_passed),
                None => return Status::BadArgument,
            },
            _ => return Status::BadArgument,
        };
        // The filter edits what is still in its buffer, after what it let through.
        let mut body = whole.split_off(passed.min(whole.len()));
        let status = if start == 0 && length == 0 {
            body.splice(0..0, data.iter().copied());
            Status::Ok
        } else if start == 0 && length >= body.len() {
            body = data.to_vec();
            Status::Ok
        } else if start == 0 {
            body.splice(0..length, data.iter().copied());
            Status::Ok
        } else if start >= body.len() {
            body.extend_from_slice(data);
            Status::Ok
        } else {
            Status::BadArgument
        };
        whole.extend_from_slice(&body);
        status
    }
}

impl Vm {
    /// Creates a stream context for a request; nothing runs until it is pumped.
    pub(crate) fn open_stream(&mut self, mut request: Request, upstream: Option<Upstream>) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        let state = self.store.data_mut();
        let shared = state.shared.clone();
        let connection_id = request
            .connection
            .unwrap_or_else(|| shared.next_connection_id());
        let routed = !upstream.as_ref().is_some_and(Upstream::is_no_route);
        if !request.headers.contains("x-forwarded-proto") {
            let scheme = request.headers.get(":scheme").unwrap_or("http").to_string();
            request.headers.add("x-forwarded-proto", &scheme);
        }
        if !request.headers.contains("x-request-id") {
            request
                .headers
                .add("x-request-id", shared.next_request_id());
        }
        let property_overrides = request
            .properties
            .iter()
            .map(|(path, value)| (crate::properties::path_key(path), value.clone()))
            .collect();
        let start_ns = shared.clock().now_ns() as i64;
        let data = StreamData {
            request,
            response: None,
            attached: Attached::default(),
            access_log: false,
            step: Step::Run(Phase::RequestHeaders),
            in_vm: false,
            local_reply: None,
            local_reply_sent: false,
            continue_request: false,
            continue_response: false,
            reset: false,
            upstream,
            upstream_request: None,
            details: None,
            flags: 0,
            set_properties: BTreeMap::new(),
            property_overrides,
            start_ns,
            connection_id,
            costs: CostReport::default(),
            end_of_stream: false,
            added_trailers: false,
            request_body_read: false,
            request_split: shared.http1_bodies,
            response_split: false,
            first_chunk: false,
            tail: false,
            request_passed: 0,
            response_passed: 0,
            routed,
        };
        state.streams.insert(id, data);
        if self.alive {
            self.stream_mut(id).in_vm = true;
            // A trap here kills the VM; the first phase then applies the fail policy.
            let _ = self.invoke(
                Callback::ContextCreate,
                &[id as i32, ROOT_CONTEXT_ID as i32],
            );
        }
        id
    }

    fn stream_mut(&mut self, id: u32) -> &mut StreamData {
        self.store
            .data_mut()
            .streams
            .get_mut(&id)
            .expect("the driver only pumps streams it opened")
    }

    /// The stream's current state.
    pub(crate) fn stream_state(&self, id: u32) -> Option<StreamState> {
        self.store.data().streams.get(&id).map(StreamData::state)
    }

    /// Pumps every open stream, after a callback that may have continued or answered some.
    pub(crate) fn pump_all(&mut self) {
        let ids: Vec<u32> = self.store.data().streams.keys().copied().collect();
        for id in ids {
            self.pump(id);
        }
    }

    /// Runs a stream as far as it can go without the test.
    pub(crate) fn pump(&mut self, id: u32) {
        loop {
            let Some(stream) = self.store.data().streams.get(&id) else {
                return;
            };
            match stream.step {
                Step::Run(phase) => self.run_phase(id, phase),
                Step::Paused(phase) => {
                    if !self.resume(id, phase) {
                        return;
                    }
                }
                Step::AwaitingUpstream => {
                    if !self.resume_awaiting(id) {
                        return;
                    }
                }
                Step::Finish => self.finish(id),
                Step::Complete => return,
            }
        }
    }

    fn run_phase(&mut self, id: u32, phase: Phase) {
        if !self.alive {
            self.dead_vm(id, phase);
            return;
        }
        let stream = self.stream_mut(id);
        stream.continue_request = false;
        stream.continue_response = false;
        stream.attach(phase, true);
        let trailers = stream.has_trailers(phase);
        let arg = match phase {
            Phase::RequestHeaders => stream.request.headers.len(),
            Phase::RequestBody => stream.body_view(true).len(),
            Phase::RequestTrailers => stream.request.trailers.len(),
            Phase::ResponseHeaders => stream.response.as_ref().map_or(0, |r| r.headers.len()),
            Phase::ResponseBody => stream.body_view(false).len(),
            Phase::ResponseTrailers => stream.response.as_ref().map_or(0, |r| r.trailers.len()),
        } as i32;
        let body = matches!(phase, Phase::RequestBody | Phase::ResponseBody);
        stream.first_chunk = body && stream.split(phase) && !stream.tail;
        let end_of_stream = match phase {
            Phase::RequestHeaders | Phase::ResponseHeaders => !stream.has_body(phase) && !trailers,
            _ if stream.first_chunk => false,
            _ => !trailers,
        };
        stream.end_of_stream = end_of_stream;
        let args: Vec<i32> = match phase {
            Phase::RequestTrailers | Phase::ResponseTrailers => vec![id as i32, arg],
            _ => vec![id as i32, arg, i32::from(end_of_stream)],
        };
        match self.invoke(phase.callback(), &args) {
            Ok(action) => self.after_callback(id, phase, continues(phase, action.unwrap_or(0))),
            Err(_) => self.dead_vm(id, phase),
        }
    }

    /// Applies what a callback asked for (reset, local reply, continue) and its result.
    fn after_callback(&mut self, id: u32, phase: Phase, returned_continue: bool) {
        let stream = self.stream_mut(id);
        if stream.reset {
            stream.response = None;
            // Envoy's `closeStream` keeps details already set; a local reply asked for in
            // the same callback runs first and sets its own.
            if let Some(reply) = stream.local_reply.take() {
                stream.details = Some(reply.details.replace([' ', '\t'], "_"));
            } else if stream.details.is_none() {
                stream.details = Some("wasm_close_stream".to_string());
            }
            stream.step = Step::Finish;
            return;
        }
        if let Some(reply) = stream.local_reply.take() {
            self.apply_local_reply(id, phase, reply);
            return;
        }
        let continued = if phase.is_request() {
            stream.continue_request
        } else {
            stream.continue_response
        };
        stream.continue_request = false;
        stream.continue_response = false;
        if stream.first_chunk {
            // The data chunk: Continue lets it through, a stop keeps it buffered; either
            // way the codec's empty last chunk comes next.
            stream.first_chunk = false;
            stream.tail = true;
            if returned_continue || continued {
                stream.pass_body(phase);
            }
            stream.attach(phase, false);
            stream.step = Step::Run(phase);
            return;
        }
        stream.tail = false;
        if returned_continue || continued {
            // Envoy forgets a map when the callback returns Continue; a map of a phase
            // that paused stays readable and writable after `proxy_continue_stream`
            // (which forgets only the request's maps).
            if returned_continue || phase.is_request() {
                stream.attach(phase, false);
            }
            match phase {
                Phase::RequestBody => {
                    stream.request_body_read = true;
                    stream.pass_body(phase);
                }
                Phase::ResponseBody => stream.pass_body(phase),
                _ => {}
            }
            stream.step = stream.after(phase);
        } else {
            stream.step = Step::Paused(phase);
        }
    }

    /// A paused stream moves on if the filter continued it or replied. Returns whether it moved.
    fn resume(&mut self, id: u32, phase: Phase) -> bool {
        let stream = self.stream_mut(id);
        if stream.reset || stream.local_reply.is_some() {
            self.after_callback(id, phase, false);
            return true;
        }
        let continued = if phase.is_request() {
            stream.continue_request
        } else {
            stream.continue_response
        };
        if continued {
            // While the headers were stopped the codec buffered the whole body: it comes
            // in one callback.
            match phase {
                Phase::RequestHeaders => stream.request_split = false,
                Phase::ResponseHeaders => stream.response_split = false,
                _ => {}
            }
            self.after_callback(id, phase, true);
        }
        continued
    }

    /// A stream waiting for the upstream moves on if the test queued an answer, or if the
    /// filter replied from a callout. Returns whether it moved.
    fn resume_awaiting(&mut self, id: u32) -> bool {
        let http1 = self.store.data().shared.http1_bodies;
        let stream = self.stream_mut(id);
        stream.continue_request = false;
        if let Some(reply) = stream.local_reply.take() {
            self.apply_local_reply(id, Phase::RequestTrailers, reply);
            return true;
        }
        let Some(upstream) = stream.upstream.take() else {
            return false;
        };
        let mut request = stream.request.clone();
        // The upstream reads as many bytes as `content-length` says, whatever the filter
        // did to the body (Envoy does not fix the header).
        let declared = request
            .headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(declared) = declared {
            request.body.truncate(declared);
        }
        match upstream.kind {
            UpstreamKind::Reply(make) => {
                let mut response = make(&request);
                // Envoy's router adds this before the response reaches the filters; the
                // harness's upstream answers at once.
                if !response.headers.contains("x-envoy-upstream-service-time") {
                    response.headers.add("x-envoy-upstream-service-time", "0");
                }
                stream.response = Some(response);
                stream.response_split = http1;
                stream.upstream_request = Some(request);
                stream.details = Some("via_upstream".to_string());
            }
            UpstreamKind::Envoy {
                status,
                body,
                headers,
                details,
                flags,
                reached,
            } => {
                stream.response = Some(Response::local_reply_to(
                    &request, status, &body, &headers, None,
                ));
                stream.upstream_request = reached.then_some(request);
                stream.details = Some(details);
                stream.flags |= flags;
            }
        }
        stream.step = Step::Run(Phase::ResponseHeaders);
        true
    }

    /// A local reply from the filter. Before the response started it runs the response path
    /// through this filter, as Envoy's `sendLocalReply` does (with the request headers still
    /// readable if the request was paused); once the filter is handling
    /// response headers it replaces them without calling the filter again (Envoy's direct
    /// local reply); after the response headers went out the stream is reset.
    fn apply_local_reply(&mut self, id: u32, phase: Phase, reply: LocalReply) {
        let stream = self.stream_mut(id);
        // Request maps stay as they were: Envoy runs the reply's response path inside the
        // request callback that stopped, so the paused request headers are still readable.
        let response = Response::local_reply_to(
            &stream.request,
            reply.status,
            &reply.body,
            &reply.headers,
            reply.grpc_status,
        );
        if stream.local_reply_sent && !phase.is_request() {
            stream.attach(phase, false);
            stream.step = stream.after(phase);
            return;
        }
        stream.local_reply_sent = true;
        stream.details = Some(reply.details.replace([' ', '\t'], "_"));
        match phase {
            Phase::RequestHeaders | Phase::RequestBody | Phase::RequestTrailers => {
                stream.response = Some(response);
                stream.step = Step::Run(Phase::ResponseHeaders);
            }
            Phase::ResponseHeaders => {
                stream.attached.response_headers = false;
                stream.response = Some(response);
                stream.step = Step::Finish;
            }
            Phase::ResponseBody | Phase::ResponseTrailers => {
                stream.attached = Attached::default();
                stream.response = None;
                stream.reset = true;
                stream.step = Step::Finish;
            }
        }
    }

    /// The VM has failed: fail open lets the stream through untouched, fail closed answers
    /// 503 (`wasm_fail_stream`) without calling the filter again.
    fn dead_vm(&mut self, id: u32, phase: Phase) {
        let fail_open = self.store.data().shared.fail_open;
        let stream = self.stream_mut(id);
        stream.attached = Attached::default();
        if fail_open {
            stream.step = stream.after(phase);
            return;
        }
        if matches!(phase, Phase::ResponseBody | Phase::ResponseTrailers) {
            // The response headers went out already: Envoy's local reply resets the stream.
            stream.reset = true;
            stream.response = None;
            stream.details = Some("wasm_fail_stream".to_string());
        } else if !stream.local_reply_sent {
            stream.local_reply_sent = true;
            stream.response = Some(Response::local_reply_to(
                &stream.request,
                503,
                b"",
                &HeaderMap::new(),
                Some(14),
            ));
            stream.details = Some("wasm_fail_stream".to_string());
        }
        stream.step = Step::Finish;
    }

    /// `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    fn finish(&mut self, id: u32) {
        let alive = self.alive;
        let stream = self.stream_mut(id);
        stream.attached = Attached::default();
        stream.local_reply = None;
        if stream.in_vm && alive {
            let ctx = id as i32;
            stream.access_log = true;
            let logged = self.invoke(Callback::Log, &[ctx]);
            self.stream_mut(id).access_log = false;
            if logged.is_ok() && self.invoke(Callback::Done, &[ctx]).is_ok() {
                // A trap here is logged and kills the VM; the stream is over either way.
                let _ = self.invoke(Callback::Delete, &[ctx]);
            }
        }
        let stream = self.stream_mut(id);
        stream.in_vm = false;
        stream.step = Step::Complete;
    }

    /// Removes a finished stream and hands back what it leaves.
    pub(crate) fn take_stream(&mut self, id: u32) -> Option<StreamData> {
        self.store.data_mut().streams.remove(&id)
    }

    /// Answers a stream that waits for its upstream.
    pub(crate) fn give_upstream(&mut self, id: u32, upstream: Upstream) {
        if let Some(stream) = self.store.data_mut().streams.get_mut(&id) {
            stream.upstream = Some(upstream);
        }
        self.pump(id);
    }

    /// Ends a stream nobody will continue, as Envoy's stream idle timeout does: a 408
    /// `stream timeout` local reply (or a reset if the response already started).
    pub(crate) fn idle_timeout(&mut self, id: u32) {
        let Some(stream) = self.store.data_mut().streams.get_mut(&id) else {
            return;
        };
        match stream.step {
            Step::Paused(phase) if phase.is_request() => {
                stream.local_reply = Some(LocalReply {
                    status: 408,
                    body: b"stream timeout".to_vec(),
                    headers: HeaderMap::new(),
                    details: "stream_idle_timeout".to_string(),
                    grpc_status: None,
                });
                stream.step = Step::Paused(phase);
            }
            Step::AwaitingUpstream => {
                stream.upstream = Some(Upstream::local_reply(
                    408,
                    "stream timeout",
                    "stream_idle_timeout",
                    0,
                ));
            }
            Step::Paused(_) => {
                stream.reset = true;
            }
            _ => {}
        }
        self.pump(id);
    }
}
