//! What the host knows about one VM while calling into it (the `T` of its wasmtime store):
//! the state every ABI function operates on. It knows nothing of the calls into the VM
//! (`vm`) or the functions that use it (`abi`, `wasi`, `maps_and_buffers`).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::{Memory, TypedFunc};

use crate::callouts::{CalloutView, Callouts};
use crate::cost::HostCalls;
use crate::host_shared::HostShared;
use crate::logs::{LogEntry, LogLevel, LogOrigin};
use crate::metrics::MetricIds;
use crate::shared_data::QueueOwner;
use crate::stream_data::StreamData;

/// The root context's id in every VM; stream contexts count up from the next one.
pub(crate) const ROOT_CONTEXT_ID: u32 = 1;

/// Which configuration buffer the filter may read right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConfigWindow {
    /// Inside `proxy_on_vm_start`: the VM configuration.
    VmStart,
    /// Inside `proxy_on_configure`: the plugin configuration.
    Configure,
    /// Neither.
    Closed,
}

/// A tick timer of the root context.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tick {
    pub period_ns: u64,
    pub next_ns: u64,
}

/// What the host knows about one VM while calling into it; the `T` of its wasmtime store.
pub(crate) struct VmState {
    pub shared: Arc<HostShared>,
    pub worker: usize,
    pub memory: Option<Memory>,
    pub allocate: Option<TypedFunc<i32, i32>>,
    /// Host calls made during the current callback, by kind.
    pub host_calls: HostCalls,
    /// The context the current callback was made for (0 when the VM is idle).
    pub current: u32,
    /// The context set by `proxy_set_effective_context` during this callback.
    pub effective: Option<u32>,
    /// A stream the current root callback acted for, to charge its cost to.
    pub acting_for: Option<u32>,
    pub config_window: ConfigWindow,
    pub streams: BTreeMap<u32, StreamData>,
    pub tick: Option<Tick>,
    pub callouts: Callouts,
    /// The callout response readable during `proxy_on_http_call_response`/`proxy_on_grpc_receive`.
    pub callout_view: Option<CalloutView>,
    /// What `proxy_get_status` returns.
    pub status: (u32, Vec<u8>),
    pub metric_ids: MetricIds,
    pub rng: u64,
}

impl VmState {
    /// The state of worker `worker`'s VM before it is instantiated.
    pub fn new(shared: Arc<HostShared>, worker: usize) -> Self {
        Self {
            rng: shared.seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(worker as u64 + 1)),
            shared,
            worker,
            memory: None,
            allocate: None,
            host_calls: HostCalls::default(),
            current: 0,
            effective: None,
            acting_for: None,
            config_window: ConfigWindow::Closed,
            streams: BTreeMap::new(),
            tick: None,
            callouts: Callouts::default(),
            callout_view: None,
            status: (0, Vec::new()),
            metric_ids: MetricIds::default(),
        }
    }

    /// The queue owner for the root context of this VM.
    pub fn queue_owner(&self) -> QueueOwner {
        QueueOwner {
            host: self.shared.host_id,
            worker: self.worker,
            context_id: ROOT_CONTEXT_ID,
        }
    }

    /// Counts one host call of kind `name` against the current callback.
    pub fn count_host_call(&mut self, name: &'static str) {
        self.host_calls.count(name);
    }

    /// The context host calls act on: the effective one if set, else the current one.
    pub fn context(&self) -> u32 {
        self.effective.unwrap_or(self.current)
    }

    /// The stream context host calls act on, if it is a live stream.
    pub fn stream(&self) -> Option<&StreamData> {
        self.streams.get(&self.context()).filter(|s| s.in_vm)
    }

    /// The same, mutable.
    pub fn stream_mut(&mut self) -> Option<&mut StreamData> {
        let id = self.context();
        self.streams.get_mut(&id).filter(|s| s.in_vm)
    }

    /// Whether a context id names the root or a live stream of this VM.
    pub fn has_context(&self, id: u32) -> bool {
        id == ROOT_CONTEXT_ID || self.streams.get(&id).is_some_and(|s| s.in_vm)
    }

    /// Records a log line if it is at or above the configured level.
    pub fn log(&self, level: LogLevel, message: String, origin: LogOrigin) {
        if level >= self.shared.log_level || origin == LogOrigin::Host {
            self.shared.logs().push(LogEntry {
                worker: self.worker,
                level,
                message,
                origin,
            });
        }
    }

    /// The next deterministic pseudo-random byte (xorshift64*).
    pub fn random_byte(&mut self) -> u8 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    }
}
