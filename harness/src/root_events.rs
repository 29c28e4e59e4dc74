//! What Envoy delivers to a VM's root context outside the callbacks of a stream: answers
//! and timeouts of callouts, what arrives on gRPC streams, ticks and queue notifications.
//! After each, the streams the root context may have resumed or answered move on.

use crate::callouts::{
    timeout_response, CalloutView, GrpcCallReply, GrpcStreamReply, HttpCallReply, GRPC_UNAVAILABLE,
};
use crate::cost::Callback;
use crate::status::Status;
use crate::vm::Vm;
use crate::vm_state::ROOT_CONTEXT_ID;

impl Vm {
    /// Settles an HTTP call: calls `proxy_on_http_call_response` on the root context.
    /// Returns false if no such call is pending.
    pub(crate) fn settle_http_call(&mut self, token: u32, reply: HttpCallReply) -> bool {
        if self.store.data_mut().callouts.http.remove(&token).is_none() {
            return false;
        }
        if !self.alive {
            return true;
        }
        let (response, status) = match reply {
            HttpCallReply::Respond(response) => (Some(response), (0, Vec::new())),
            HttpCallReply::TimeOut => (Some(timeout_response()), (0, Vec::new())),
            HttpCallReply::Reset => (None, (Status::BrokenConnection as u32, b"reset".to_vec())),
        };
        let sizes = response
            .as_ref()
            .map(|r| (r.headers.len(), r.body.len(), r.trailers.len()))
            .unwrap_or((0, 0, 0));
        let state = self.store.data_mut();
        state.status = status;
        state.callout_view = response.map(CalloutView::Http);
        let args = [
            ROOT_CONTEXT_ID as i32,
            token as i32,
            sizes.0 as i32,
            sizes.1 as i32,
            sizes.2 as i32,
        ];
        // A trap is logged and kills the VM inside `invoke`; streams see that when pumped.
        let _ = self.invoke(Callback::HttpCallResponse, &args);
        let state = self.store.data_mut();
        state.callout_view = None;
        state.status = (0, Vec::new());
        self.pump_all();
        true
    }

    /// Settles a gRPC call: `proxy_on_grpc_receive` on success, `proxy_on_grpc_close` on
    /// failure, on the root context, as Envoy does for unary calls. Returns false if no such
    /// call is pending.
    pub(crate) fn settle_grpc_call(&mut self, token: u32, reply: GrpcCallReply) -> bool {
        if self.store.data_mut().callouts.grpc.remove(&token).is_none() {
            return false;
        }
        if !self.alive {
            return true;
        }
        let root = ROOT_CONTEXT_ID as i32;
        match reply {
            GrpcCallReply::Respond(message) => {
                let len = message.len() as i32;
                self.store.data_mut().callout_view = Some(CalloutView::Grpc(message));
                // A trap is logged and kills the VM inside `invoke`.
                let _ = self.invoke(Callback::GrpcReceive, &[root, token as i32, len]);
                self.store.data_mut().callout_view = None;
            }
            GrpcCallReply::Fail { status, message } => self.close_grpc(token, status, message),
            GrpcCallReply::TimeOut => self.close_grpc(
                token,
                GRPC_UNAVAILABLE,
                "upstream request timeout".to_string(),
            ),
        }
        self.pump_all();
        true
    }

    /// Delivers what the test's upstream does on a gRPC stream to the root context. False
    /// if the VM opened no such stream, or it was cancelled or already closed.
    pub(crate) fn reply_on_grpc_stream(&mut self, token: u32, reply: GrpcStreamReply) -> bool {
        let Some(stream) = self.store.data_mut().callouts.grpc_streams.get_mut(&token) else {
            return false;
        };
        if !stream.is_open() {
            return false;
        }
        if let GrpcStreamReply::Close { status, message } = &reply {
            stream.closed_by_upstream = Some((*status, message.clone()));
        }
        if !self.alive {
            return true;
        }
        let root = ROOT_CONTEXT_ID as i32;
        let (callback, size, view) = match reply {
            GrpcStreamReply::InitialMetadata(map) => (
                Callback::GrpcReceiveInitialMetadata,
                map.len(),
                CalloutView::GrpcMetadata(true, map),
            ),
            GrpcStreamReply::TrailingMetadata(map) => (
                Callback::GrpcReceiveTrailingMetadata,
                map.len(),
                CalloutView::GrpcMetadata(false, map),
            ),
            GrpcStreamReply::Message(message) => (
                Callback::GrpcReceive,
                message.len(),
                CalloutView::Grpc(message),
            ),
            GrpcStreamReply::Close { status, message } => {
                self.close_grpc(token, status, message);
                self.pump_all();
                return true;
            }
        };
        self.store.data_mut().callout_view = Some(view);
        // A trap is logged and kills the VM inside `invoke`.
        let _ = self.invoke(callback, &[root, token as i32, size as i32]);
        self.store.data_mut().callout_view = None;
        self.pump_all();
        true
    }

    fn close_grpc(&mut self, token: u32, status: u32, message: String) {
        self.store.data_mut().status = (status, message.into_bytes());
        let args = [ROOT_CONTEXT_ID as i32, token as i32, status as i32];
        // A trap is logged and kills the VM inside `invoke`.
        let _ = self.invoke(Callback::GrpcClose, &args);
        self.store.data_mut().status = (0, Vec::new());
    }

    /// The earliest callout deadline, if any call has a timeout.
    pub(crate) fn next_callout_deadline(&self) -> Option<u64> {
        let callouts = &self.store.data().callouts;
        let http = callouts.http.values().filter_map(|c| c.deadline_ns);
        let grpc = callouts.grpc.values().filter_map(|c| c.deadline_ns);
        http.chain(grpc).min()
    }

    /// Times out every call whose deadline is at or before `now_ns`, oldest first.
    pub(crate) fn expire_callouts(&mut self, now_ns: u64) {
        let callouts = &self.store.data().callouts;
        let mut due: Vec<(u64, bool, u32)> = callouts
            .http
            .values()
            .filter_map(|c| {
                c.deadline_ns
                    .filter(|d| *d <= now_ns)
                    .map(|d| (d, true, c.token))
            })
            .chain(callouts.grpc.values().filter_map(|c| {
                c.deadline_ns
                    .filter(|d| *d <= now_ns)
                    .map(|d| (d, false, c.token))
            }))
            .collect();
        due.sort();
        for (_, http, token) in due {
            if http {
                self.settle_http_call(token, HttpCallReply::TimeOut);
            } else {
                self.settle_grpc_call(token, GrpcCallReply::TimeOut);
            }
        }
    }

    /// When this VM's root context next ticks, if it set a tick period.
    pub(crate) fn next_tick_ns(&self) -> Option<u64> {
        self.store.data().tick.map(|t| t.next_ns)
    }

    /// Fires `proxy_on_tick` on the root context and schedules the next tick one period
    /// later, as Envoy's tick timer does.
    pub(crate) fn fire_tick(&mut self) {
        if let Some(tick) = self.store.data_mut().tick.as_mut() {
            tick.next_ns += tick.period_ns;
        }
        let root = ROOT_CONTEXT_ID as i32;
        // A trap is logged and kills the VM inside `invoke`.
        let _ = self.invoke(Callback::Tick, &[root]);
        self.pump_all();
    }

    /// Runs `proxy_on_queue_ready` for a queue this VM's root context registered, then
    /// whatever the streams can do next (the root may have resumed one).
    pub(crate) fn queue_ready(&mut self, context_id: u32, token: u32) {
        if !self.alive {
            return;
        }
        // A trap is logged and kills the VM inside `invoke`.
        let _ = self.invoke(Callback::QueueReady, &[context_id as i32, token as i32]);
        self.pump_all();
    }
}
