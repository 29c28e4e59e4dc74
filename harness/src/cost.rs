//! Deterministic cost figures: Wasm fuel and host calls made, per callback into the VM.
//!
//! **Fuel** is wasmtime 48's default metering, exactly: each Wasm operator executed costs
//! 1, except `nop`, `drop`, `block`, `loop`, `unreachable`, `return`, `else` and `end`,
//! which cost 0 (`if`, `br*`, calls and everything else cost 1); on top of that
//! `memory.copy`, `memory.fill` and `memory.init` cost 1 per byte, and the table and array
//! bulk operators 1 per element (`memory.grow` nothing per page). So it is neither an
//! instruction count (structural operators are free) nor a time (a 1 KiB `memcpy` compiled
//! to `memory.copy` costs 1,025). Work the host does for a call (copying a header map into
//! the VM, hashing a signature) is not fuel: it is counted in host calls.

use std::collections::BTreeMap;
use std::ops::Add;

/// The callbacks the host makes into the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callback {
    /// `_initialize` or `_start`.
    Initialize,
    /// `proxy_on_context_create`.
    ContextCreate,
    /// `proxy_on_vm_start`.
    VmStart,
    /// `proxy_on_configure`.
    Configure,
    /// `proxy_on_request_headers`.
    RequestHeaders,
    /// `proxy_on_request_body`.
    RequestBody,
    /// `proxy_on_request_trailers`.
    RequestTrailers,
    /// `proxy_on_response_headers`.
    ResponseHeaders,
    /// `proxy_on_response_body`.
    ResponseBody,
    /// `proxy_on_response_trailers`.
    ResponseTrailers,
    /// `proxy_on_log`.
    Log,
    /// `proxy_on_done`.
    Done,
    /// `proxy_on_delete`.
    Delete,
    /// `proxy_on_tick`.
    Tick,
    /// `proxy_on_http_call_response`.
    HttpCallResponse,
    /// `proxy_on_grpc_receive`.
    GrpcReceive,
    /// `proxy_on_grpc_close`.
    GrpcClose,
    /// `proxy_on_grpc_receive_initial_metadata`.
    GrpcReceiveInitialMetadata,
    /// `proxy_on_grpc_receive_trailing_metadata`.
    GrpcReceiveTrailingMetadata,
    /// `proxy_on_queue_ready`.
    QueueReady,
}

impl Callback {
    /// Whether the host calls it on the root context: ticks, callout answers, queue
    /// notifications. When such a callback acts for a stream (`proxy_set_effective_context`)
    /// its cost is in that stream's report, where [`CostReport::root`] tells it apart.
    pub fn is_root(self) -> bool {
        matches!(
            self,
            Self::Initialize
                | Self::VmStart
                | Self::Configure
                | Self::Tick
                | Self::HttpCallResponse
                | Self::GrpcReceive
                | Self::GrpcClose
                | Self::GrpcReceiveInitialMetadata
                | Self::GrpcReceiveTrailingMetadata
                | Self::QueueReady
        )
    }

    /// The name of the export this callback calls.
    pub fn export_name(self) -> &'static str {
        match self {
            Self::Initialize => "_initialize",
            Self::ContextCreate => "proxy_on_context_create",
            Self::VmStart => "proxy_on_vm_start",
            Self::Configure => "proxy_on_configure",
            Self::RequestHeaders => "proxy_on_request_headers",
            Self::RequestBody => "proxy_on_request_body",
            Self::RequestTrailers => "proxy_on_request_trailers",
            Self::ResponseHeaders => "proxy_on_response_headers",
            Self::ResponseBody => "proxy_on_response_body",
            Self::ResponseTrailers => "proxy_on_response_trailers",
            Self::Log => "proxy_on_log",
            Self::Done => "proxy_on_done",
            Self::Delete => "proxy_on_delete",
            Self::Tick => "proxy_on_tick",
            Self::HttpCallResponse => "proxy_on_http_call_response",
            Self::GrpcReceive => "proxy_on_grpc_receive",
            Self::GrpcClose => "proxy_on_grpc_close",
            Self::GrpcReceiveInitialMetadata => "proxy_on_grpc_receive_initial_metadata",
            Self::GrpcReceiveTrailingMetadata => "proxy_on_grpc_receive_trailing_metadata",
            Self::QueueReady => "proxy_on_queue_ready",
        }
    }
}

/// What some work cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Wasm fuel consumed: one per operator executed, structural operators free, bulk
    /// memory operators one per byte (see the module's documentation).
    pub fuel: u64,
    /// Calls the VM made into the host.
    pub host_calls: u64,
}

impl Add for Cost {
    type Output = Cost;

    fn add(self, other: Cost) -> Cost {
        Cost {
            fuel: self.fuel + other.fuel,
            host_calls: self.host_calls + other.host_calls,
        }
    }
}

/// Host calls counted by kind: the import's name (`proxy_get_header_map_value`, ...; every
/// WASI call counts as `wasi`) and how many times it was called.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCalls(pub BTreeMap<&'static str, u64>);

impl HostCalls {
    /// Counts one call of `name`.
    pub fn count(&mut self, name: &'static str) {
        *self.0.entry(name).or_insert(0) += 1;
    }

    /// How many calls of `name` (0 when none).
    pub fn of(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Adds every count of `other`.
    pub fn add(&mut self, other: &HostCalls) {
        for (name, n) in &other.0 {
            *self.0.entry(name).or_insert(0) += n;
        }
    }

    /// Every call, all kinds together.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl std::fmt::Display for HostCalls {
    /// `kind×n` pairs without the `proxy_` prefix, comma-separated: `get_header_map_value×2,
    /// increment_metric×1`; `none` when there were none.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (name, n)) in self.0.iter().enumerate() {
            let short = name.strip_prefix("proxy_").unwrap_or(name);
            write!(f, "{}{short}×{n}", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

/// The cost of one callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallCost {
    /// Which callback ran.
    pub callback: Callback,
    /// What it cost.
    pub cost: Cost,
    /// Its host calls by kind (they add up to `cost.host_calls`).
    pub kinds: HostCalls,
}

/// The costs of the callbacks that served one stream (or one startup), in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CostReport {
    /// Each callback in the order it ran.
    pub calls: Vec<CallCost>,
}

impl CostReport {
    /// Everything added up.
    pub fn total(&self) -> Cost {
        self.calls
            .iter()
            .fold(Cost::default(), |sum, c| sum + c.cost)
    }

    /// The cost of every call of one callback, added up.
    pub fn of(&self, callback: Callback) -> Cost {
        self.calls
            .iter()
            .filter(|c| c.callback == callback)
            .fold(Cost::default(), |sum, c| sum + c.cost)
    }

    /// What the stream's own callbacks cost (context creation, the request and response
    /// callbacks, `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`).
    pub fn stream(&self) -> Cost {
        self.calls
            .iter()
            .filter(|c| !c.callback.is_root())
            .fold(Cost::default(), |sum, c| sum + c.cost)
    }

    /// What root-context callbacks cost while acting for the stream (a callout answer or
    /// tick that continued it), counted apart from [`stream`](Self::stream).
    pub fn root(&self) -> Cost {
        self.calls
            .iter()
            .filter(|c| c.callback.is_root())
            .fold(Cost::default(), |sum, c| sum + c.cost)
    }

    /// The total fuel.
    pub fn fuel(&self) -> u64 {
        self.total().fuel
    }

    /// The total host calls.
    pub fn host_calls(&self) -> u64 {
        self.total().host_calls
    }

    /// Every callback's host calls by kind, added up.
    pub fn host_calls_by_kind(&self) -> HostCalls {
        let mut all = HostCalls::default();
        for call in &self.calls {
            all.add(&call.kinds);
        }
        all
    }

    /// How many times the host entered the VM (one per exported callback it called).
    pub fn vm_entries(&self) -> usize {
        self.calls.len()
    }
}
