//! What every worker of a host shares, as Envoy shares it between worker threads: the
//! plugin's facts and configuration, the clock, metrics, logs, shared data and foreign
//! functions. `Host` builds it; each VM's state holds it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Clock;
use crate::logs::{LogEntry, LogLevel};
use crate::metrics::MetricStore;
use crate::properties::PluginFacts;
use crate::shared_data::SharedData;
use crate::stats_tags::TagRule;
use crate::status::Status;

/// A foreign function the filter can call with `proxy_call_foreign_function`: bytes in,
/// bytes out, or a status.
pub type ForeignFunction = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

/// Takes a lock even if a panicking test poisoned it: the data stays consistent because
/// every critical section here is a single operation.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// State every worker of a host shares, as Envoy shares it between worker threads.
pub(crate) struct HostShared {
    pub plugin: PluginFacts,
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub fail_open: bool,
    /// Bodies from the client and the upstream come as Envoy's HTTP/1 codec gives them.
    pub http1_bodies: bool,
    /// `FAIL_RELOAD`: a failed VM is started again, at most once per `reload_backoff`.
    pub fail_reload: Option<Duration>,
    pub log_level: LogLevel,
    pub fuel_limit: u64,
    pub clusters: BTreeSet<String>,
    pub seed: u64,
    /// This host's identity in the shared data registry.
    pub host_id: u64,
    /// The virtual clock; read it through [`HostShared::clock`].
    pub clock: Mutex<Clock>,
    pub shared_data: SharedData,
    /// Read through [`HostShared::metrics`].
    pub metrics: Mutex<MetricStore>,
    /// `stats_config.stats_tags`, for reading metrics as Envoy's admin shows them.
    pub stats_tags: Vec<TagRule>,
    /// Read through [`HostShared::logs`].
    pub logs: Mutex<Vec<LogEntry>>,
    pub foreign: Mutex<HashMap<String, ForeignFunction>>,
    /// How many `x-request-id`s were made ([`HostShared::next_request_id`]).
    pub request_ids: AtomicU64,
    /// How many downstream connections were opened ([`HostShared::next_connection_id`]).
    pub connection_ids: AtomicU64,
}

impl HostShared {
    pub(crate) fn clock(&self) -> MutexGuard<'_, Clock> {
        lock(&self.clock)
    }

    /// The registry of shared data and queues (see [`SharedData`]).
    pub(crate) fn registry(&self) -> &SharedData {
        &self.shared_data
    }

    pub(crate) fn metrics(&self) -> MutexGuard<'_, MetricStore> {
        lock(&self.metrics)
    }

    pub(crate) fn logs(&self) -> MutexGuard<'_, Vec<LogEntry>> {
        lock(&self.logs)
    }

    pub(crate) fn foreign_function(&self, name: &str) -> Option<ForeignFunction> {
        lock(&self.foreign).get(name).cloned()
    }

    /// A new downstream connection's id, counting from 0 as Envoy's do.
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// A deterministic `x-request-id`, as a UUID.
    pub(crate) fn next_request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
        format!("00000000-0000-4000-8000-{n:012x}")
    }
}
