//! The HTTP stream lifecycle as Envoy drives a Wasm filter: which callbacks run in which
//! order, when the maps and buffers of each phase are reachable, pauses and
//! `proxy_continue_stream`, local replies, and the fail policy after a trap.

use std::collections::BTreeMap;

use crate::cost::{Callback, CostReport};
use crate::headers::HeaderMap;
use crate::message::{Request, Response, Upstream, UpstreamKind};
use crate::property_value::path_key;
use crate::stream_data::{Attached, LocalReply, Phase, Step, StreamData, StreamState};
use crate::vm::Vm;
use crate::vm_state::ROOT_CONTEXT_ID;

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
            .map(|(path, value)| (path_key(path), value.clone()))
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
