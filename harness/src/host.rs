//! The public face of the harness: build a host for a filter module, send requests through
//! its workers, step through streams, answer callouts, move the clock, and read back
//! metrics, logs and shared data.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::Linker;

use crate::callouts::{
    GrpcCall, GrpcCallReply, GrpcStream, GrpcStreamReply, HttpCall, HttpCallReply,
};
use crate::clock::{Clock, DEFAULT_START};
use crate::cost::{Callback, CostReport};
use crate::error::HarnessError;
use crate::host_shared::{lock, ForeignFunction, HostShared};
use crate::logs::{LogEntry, LogLevel, LogOrigin};
use crate::message::{Request, Response, Upstream};
use crate::metrics::{MetricKind, MetricValue, ENVOY_PREFIX};
use crate::properties::PluginFacts;
use crate::property_value::{path_key, PropertyValue};
use crate::shared_data::SharedData;
use crate::stats_tags::{self, TagRule};
use crate::status::Status;
use crate::stream_data::{StreamData, StreamState};
use crate::vm::Vm;
use crate::vm_state::{ConfigWindow, VmState, ROOT_CONTEXT_ID};
use crate::{abi, engine, envoy_foreign, wasi};

/// A metric as Envoy's admin shows it after stats tag extraction ([`Host::tagged_metrics`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedMetric {
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The name with every tag's part removed, `wasmcustom.` included.
    pub name: String,
    /// The tags, in the order of the rules that found them.
    pub tags: Vec<(String, String)>,
    /// Its value.
    pub value: MetricValue,
}

type HttpResponder = Arc<dyn Fn(&HttpCall) -> HttpCallReply + Send + Sync>;
type GrpcResponder = Arc<dyn Fn(&GrpcCall) -> GrpcCallReply + Send + Sync>;

/// How many callouts one `send` settles before it gives up on the stream.
const MAX_CALLOUTS_PER_SEND: usize = 1000;

/// How many `proxy_on_queue_ready` calls one delivery runs (each may enqueue again).
const MAX_QUEUE_READY_PER_DELIVERY: usize = 10_000;

/// Tells hosts apart in a shared registry, so a queue notifies the VM that registered it.
static NEXT_HOST_ID: AtomicU64 = AtomicU64::new(1);

enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Configures and builds a [`Host`]. Start with [`Host::builder`] or [`Host::from_bytes`].
pub struct HostBuilder {
    source: Source,
    workers: usize,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    fail_open: bool,
    fail_reload: Option<Duration>,
    http1_bodies: bool,
    log_level: LogLevel,
    fuel_limit: u64,
    start: SystemTime,
    seed: u64,
    plugin: PluginFacts,
    clusters: BTreeSet<String>,
    foreign: HashMap<String, ForeignFunction>,
    http_responders: HashMap<String, HttpResponder>,
    grpc_responders: HashMap<String, GrpcResponder>,
    shared_data: SharedData,
    stats_tags: Vec<(String, String)>,
}

impl HostBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            workers: 1,
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            fail_open: false,
            fail_reload: None,
            http1_bodies: true,
            log_level: LogLevel::Info,
            fuel_limit: 10_000_000_000,
            start: UNIX_EPOCH + DEFAULT_START,
            seed: 0x6d65_7368_7761_7264,
            plugin: PluginFacts {
                plugin_name: "meshward".to_string(),
                root_id: String::new(),
                vm_id: String::new(),
                cluster_name: "backend".to_string(),
                route_name: "default".to_string(),
                virtual_host_name: "default".to_string(),
                node_id: "meshward-harness".to_string(),
                node_cluster: "meshward".to_string(),
                listener_direction: 0,
                upstream_address: "127.0.0.1:8080".to_string(),
                upstream_local_address: "127.0.0.1:40000".to_string(),
                overrides: Default::default(),
            },
            clusters: BTreeSet::new(),
            foreign: HashMap::new(),
            http_responders: HashMap::new(),
            grpc_responders: HashMap::new(),
            shared_data: SharedData::new(),
            stats_tags: Vec::new(),
        }
    }

    /// How many workers (VMs) to run, like Envoy's `--concurrency`. Default 1.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The plugin configuration, as bytes.
    pub fn config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = config.into();
        self
    }

    /// The plugin configuration, as JSON text (what Envoy passes for a `StringValue`).
    pub fn config_json(self, json: &str) -> Self {
        self.config(json.as_bytes().to_vec())
    }

    /// The VM configuration, readable in `proxy_on_vm_start`.
    pub fn vm_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.vm_config = config.into();
        self
    }

    /// After a trap, answer every request on that worker with a 503 (the default, like
    /// Envoy's `FAIL_CLOSED`).
    pub fn fail_closed(mut self) -> Self {
        self.fail_open = false;
        self
    }

    /// Envoy's `FAIL_RELOAD`: after a trap, the next request on that worker starts a new
    /// VM (`_initialize`, `proxy_on_vm_start`, `proxy_on_configure` again, fresh memory) and
    /// goes through it; a VM that fails again within `backoff` (virtual clock) of its last
    /// reload stays failed, answering 503 as fail closed does, until `backoff` has passed.
    /// Envoy jitters its backoff (about a second in 1.40); the harness waits exactly
    /// `backoff`.
    pub fn fail_reload(mut self, backoff: Duration) -> Self {
        self.fail_open = false;
        self.fail_reload = Some(backoff);
        self
    }

    /// Delivers each request and upstream body in one body callback with
    /// `end_of_stream = true`, as Envoy does for an HTTP/2 body that arrives in one frame
    /// with END_STREAM. By default bodies come as Envoy 1.40's HTTP/1 codec gives them
    /// (what `make test`'s Envoy tests and most clients send): the data with
    /// `end_of_stream = false`, then an empty last chunk with `end_of_stream = true`, which
    /// holds the data only if the filter stopped (buffered) the first one. Local replies
    /// always come in one chunk.
    pub fn single_body_chunk(mut self) -> Self {
        self.http1_bodies = false;
        self
    }

    /// After a trap, let requests on that worker through untouched (`fail_open: true`).
    pub fn fail_open(mut self) -> Self {
        self.fail_open = true;
        self
    }

    /// The level `proxy_get_log_level` reports and below which logs are dropped. Default
    /// `Info`, Envoy's default.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// The fuel one callback may burn before it traps (an endless loop then fails the VM
    /// instead of hanging the test). Default 10 billion.
    pub fn fuel_limit(mut self, fuel: u64) -> Self {
        self.fuel_limit = fuel;
        self
    }

    /// Where virtual time starts. Default 2024-01-01T00:00:00Z.
    pub fn start_time(mut self, start: SystemTime) -> Self {
        self.start = start;
        self
    }

    /// The seed of WASI `random_get` (each worker derives its own stream from it).
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The plugin name (`plugin_name`). Default `meshward`.
    pub fn plugin_name(mut self, name: &str) -> Self {
        self.plugin.plugin_name = name.to_string();
        self
    }

    /// The root id (`plugin_root_id`). Default empty.
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.plugin.root_id = root_id.to_string();
        self
    }

    /// The VM id (`plugin_vm_id`); shared data and queues are kept per VM id. Default empty.
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.plugin.vm_id = vm_id.to_string();
        self
    }

    /// Uses this registry of shared data and queues instead of a fresh one, so several
    /// hosts act as filters of one Envoy: hosts with the same VM id see the same data and
    /// queues, hosts with different VM ids do not.
    pub fn shared_data(mut self, registry: &SharedData) -> Self {
        self.shared_data = registry.clone();
        self
    }

    /// The route's virtual host (`xds.virtual_host_name`). Default `default`.
    pub fn virtual_host_name(mut self, name: &str) -> Self {
        self.plugin.virtual_host_name = name.to_string();
        self
    }

    /// The node's cluster (`xds.node.cluster`). Default `meshward`.
    pub fn node_cluster(mut self, name: &str) -> Self {
        self.plugin.node_cluster = name.to_string();
        self
    }

    /// Adds an entry of Envoy's `stats_config.stats_tags` (`tag_name` and `regex`), in
    /// order: [`Host::tagged_metrics`] and [`Host::tagged_counter`] then show the metrics
    /// as `/stats/prometheus` would, with the tag lifted out of the name. A regex Envoy
    /// would refuse (bad, or without a capture group) fails [`HostBuilder::build`].
    pub fn stats_tag(mut self, tag_name: &str, regex: &str) -> Self {
        self.stats_tags
            .push((tag_name.to_string(), regex.to_string()));
        self
    }

    /// The upstream host the route's cluster picks (`upstream.address`, `upstream.port`),
    /// as `"ip:port"`. Default `127.0.0.1:8080`.
    pub fn upstream_address(mut self, address: &str) -> Self {
        self.plugin.upstream_address = address.to_string();
        self
    }

    /// The route's cluster (`xds.cluster_name`). Default `backend`.
    pub fn cluster_name(mut self, name: &str) -> Self {
        self.plugin.cluster_name = name.to_string();
        self
    }

    /// The route's name (`xds.route_name`). Default `default`.
    pub fn route_name(mut self, name: &str) -> Self {
        self.plugin.route_name = name.to_string();
        self
    }

    /// The node id (`xds.node.id`). Default `meshward-harness`.
    pub fn node_id(mut self, id: &str) -> Self {
        self.plugin.node_id = id.to_string();
        self
    }

    /// Sets a property for every context, overriding what the harness derives. The path
    /// is dot-separated, e.g. `"node.metadata.REGION"`.
    pub fn property(mut self, path: &str, value: impl Into<PropertyValue>) -> Self {
        self.plugin
            .overrides
            .insert(path_key(path), value.into().encode());
        self
    }

    /// Declares an upstream cluster the filter may call out to; calls to any other
    /// cluster are refused as Envoy refuses them.
    pub fn cluster(mut self, name: &str) -> Self {
        self.clusters.insert(name.to_string());
        self
    }

    /// Declares a cluster and answers every HTTP call to it during [`Worker::send`] with
    /// the closure. Calls to clusters without a responder time out there.
    pub fn http_responder(
        mut self,
        cluster: &str,
        respond: impl Fn(&HttpCall) -> HttpCallReply + Send + Sync + 'static,
    ) -> Self {
        self.clusters.insert(cluster.to_string());
        self.http_responders
            .insert(cluster.to_string(), Arc::new(respond));
        self
    }

    /// Declares a cluster and answers every gRPC call to it during [`Worker::send`].
    pub fn grpc_responder(
        mut self,
        cluster: &str,
        respond: impl Fn(&GrpcCall) -> GrpcCallReply + Send + Sync + 'static,
    ) -> Self {
        self.clusters.insert(cluster.to_string());
        self.grpc_responders
            .insert(cluster.to_string(), Arc::new(respond));
        self
    }

    /// Registers a foreign function for `proxy_call_foreign_function`.
    pub fn foreign_function(
        mut self,
        name: &str,
        function: impl Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) -> Self {
        self.foreign.insert(name.to_string(), Arc::new(function));
        self
    }

    /// Offers the foreign functions Envoy 1.40 registers that [`crate::envoy_foreign`]
    /// emulates (`verify_signature`), as Envoy does for every module. Off unless asked for,
    /// so a test can also see how a filter does on a host without them.
    pub fn envoy_foreign_functions(mut self) -> Self {
        for (name, function) in envoy_foreign::functions() {
            self.foreign.insert(name.to_string(), Arc::new(function));
        }
        self
    }

    /// Loads the module (compiled once per process), starts one VM per worker and
    /// configures the plugin on each, as Envoy does when it loads a Wasm filter.
    ///
    /// Fails if the module is missing or not Proxy-Wasm ABI 0.2.1, or if a VM traps or
    /// refuses its VM or plugin configuration; the error carries the logs so far.
    pub fn build(self) -> Result<Host, HarnessError> {
        let (module, module_cached) = match &self.source {
            Source::File(path) => engine::load_file(path)?,
            Source::Bytes(bytes) => engine::load_bytes(bytes)?,
        };
        let unsupported = |e: wasmtime::Error| HarnessError::Unsupported {
            message: format!("cannot link the host functions: {e:#}"),
        };
        let stats_tags = self
            .stats_tags
            .iter()
            .map(|(name, regex)| TagRule::new(name, regex))
            .collect::<Result<Vec<_>, _>>()?;
        let mut linker = Linker::new(engine::engine());
        abi::define(&mut linker).map_err(unsupported)?;
        wasi::define(&mut linker, &module).map_err(unsupported)?;

        let shared = Arc::new(HostShared {
            plugin: self.plugin,
            plugin_config: self.plugin_config,
            vm_config: self.vm_config,
            fail_open: self.fail_open,
            fail_reload: self.fail_reload,
            http1_bodies: self.http1_bodies,
            log_level: self.log_level,
            fuel_limit: self.fuel_limit,
            clusters: self.clusters,
            seed: self.seed,
            host_id: NEXT_HOST_ID.fetch_add(1, Ordering::Relaxed),
            clock: Mutex::new(Clock::starting_at(self.start)),
            shared_data: self.shared_data,
            metrics: Mutex::default(),
            stats_tags,
            logs: Mutex::default(),
            foreign: Mutex::new(self.foreign),
            request_ids: AtomicU64::new(0),
            connection_ids: AtomicU64::new(0),
        });
        let mut workers = Vec::with_capacity(self.workers);
        let mut startup = CostReport::default();
        for index in 0..self.workers {
            let mut vm = Vm::instantiate(shared.clone(), &module, &linker, index)?;
            start(&mut vm, &shared).map_err(|reason| HarnessError::LoadFailed {
                worker: index,
                reason,
                logs: shared.logs().clone(),
            })?;
            startup.calls.append(&mut vm.root_costs);
            workers.push(Mutex::new(vm));
        }
        let reloads = (0..workers.len()).map(|_| Mutex::new(None)).collect();
        let host = Host {
            shared,
            workers,
            module,
            linker,
            reloads,
            http_responders: self.http_responders,
            grpc_responders: self.grpc_responders,
            startup,
            module_cached,
        };
        host.deliver_queue_ready();
        Ok(host)
    }
}

/// Starts one VM as Envoy does: `_initialize`, the root context, `proxy_on_vm_start`
/// (with the VM configuration readable), `proxy_on_configure` (with the plugin
/// configuration readable).
fn start(vm: &mut Vm, shared: &HostShared) -> Result<(), String> {
    let root = ROOT_CONTEXT_ID as i32;
    vm.invoke(Callback::Initialize, &[])?;
    vm.invoke(Callback::ContextCreate, &[root, 0])?;
    let vm_config = shared.vm_config.len() as i32;
    if configure(vm, ConfigWindow::VmStart, Callback::VmStart, vm_config)? == Some(0) {
        return Err("proxy_on_vm_start returned false".to_string());
    }
    let plugin_config = shared.plugin_config.len() as i32;
    if configure(
        vm,
        ConfigWindow::Configure,
        Callback::Configure,
        plugin_config,
    )? == Some(0)
    {
        return Err(
            "proxy_on_configure returned false: the plugin configuration was rejected".to_string(),
        );
    }
    Ok(())
}

/// Calls a root callback with a configuration buffer readable only during the call.
fn configure(
    vm: &mut Vm,
    window: ConfigWindow,
    callback: Callback,
    size: i32,
) -> Result<Option<i32>, String> {
    vm.store.data_mut().config_window = window;
    let result = vm.invoke(callback, &[ROOT_CONTEXT_ID as i32, size]);
    vm.store.data_mut().config_window = ConfigWindow::Closed;
    result
}

/// A Proxy-Wasm host running one filter module on one or more workers.
///
/// ```no_run
/// use meshward_harness::{wasm_path, Host, Request, Response, Upstream};
///
/// let host = Host::builder(wasm_path("security-headers"))
///     .workers(2)
///     .config_json(r#"{"hsts": {"max_age": "365d"}}"#)
///     .build()
///     .unwrap();
/// let out = host.worker(0).send(
///     Request::get("/").header("host", "example.com"),
///     Upstream::reply(Response::new(200).header("server", "nginx").body("hi")),
/// );
/// assert_eq!(out.response.status(), 200);
/// assert!(out.upstream_request.is_some());
/// ```
pub struct Host {
    shared: Arc<HostShared>,
    workers: Vec<Mutex<Vm>>,
    /// What `FAIL_RELOAD` needs to start a worker's VM again.
    module: wasmtime::Module,
    linker: Linker<VmState>,
    /// Per worker, when its VM was last reloaded (virtual clock, ns).
    reloads: Vec<Mutex<Option<u64>>>,
    http_responders: HashMap<String, HttpResponder>,
    grpc_responders: HashMap<String, GrpcResponder>,
    startup: CostReport,
    module_cached: bool,
}

impl Host {
    /// A builder for a host running the module at this path (see [`crate::wasm_path`]).
    pub fn builder(path: impl AsRef<Path>) -> HostBuilder {
        HostBuilder::new(Source::File(path.as_ref().to_path_buf()))
    }

    /// A builder for a host running a module given as bytes: binary Wasm, or WAT text.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> HostBuilder {
        HostBuilder::new(Source::Bytes(bytes.into()))
    }

    /// A handle on one worker. Panics if the index is out of range, which is a test bug.
    pub fn worker(&self, index: usize) -> Worker<'_> {
        assert!(
            index < self.workers.len(),
            "worker {index} does not exist: the host has {} worker(s)",
            self.workers.len()
        );
        Worker { host: self, index }
    }

    /// How many workers the host runs.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Sends a request through worker 0; see [`Worker::send`].
    pub fn send(&self, request: Request, upstream: Upstream) -> Outcome {
        self.worker(0).send(request, upstream)
    }

    /// Whether a worker's VM is still alive (it dies when it traps).
    pub fn vm_alive(&self, worker: usize) -> bool {
        self.worker(worker).vm_alive()
    }

    /// Makes `proxy_get_current_time_nanoseconds` fail (`InternalFailure`) from now on,
    /// or answer again: how a filter does when the host cannot tell the time. Envoy's own
    /// clock does not fail; a host embedding Proxy-Wasm elsewhere may.
    pub fn set_clock_unreadable(&self, unreadable: bool) {
        self.shared.clock().unreadable = unreadable;
    }

    /// The virtual time.
    pub fn now(&self) -> SystemTime {
        self.shared.clock().now()
    }

    /// Moves virtual time forward. Ticks and callout timeouts that fall due on the way
    /// fire in time order (each at its own time), on every worker.
    pub fn advance(&self, by: Duration) {
        let target = self.shared.clock().now_ns() + by.as_nanos() as u64;
        loop {
            let mut next: Option<(u64, usize, bool)> = None;
            for (index, worker) in self.workers.iter().enumerate() {
                let vm = lock(worker);
                if !vm.alive {
                    continue;
                }
                let events = [
                    (vm.next_tick_ns(), true),
                    (vm.next_callout_deadline(), false),
                ];
                for (at, is_tick) in events {
                    let Some(at) = at.filter(|at| *at <= target) else {
                        continue;
                    };
                    if next.is_none_or(|(best, _, _)| at < best) {
                        next = Some((at, index, is_tick));
                    }
                }
            }
            let Some((at, index, is_tick)) = next else {
                break;
            };
            self.shared.clock().set_ns(at);
            {
                let mut vm = lock(&self.workers[index]);
                if is_tick {
                    vm.fire_tick();
                } else {
                    vm.expire_callouts(at);
                }
            }
            self.deliver_queue_ready();
        }
        self.shared.clock().set_ns(target);
    }

    /// A counter's value, by the name the filter defined or its `wasmcustom.` form.
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.shared.metrics().get(MetricKind::Counter, name) {
            Some(MetricValue::Counter(value)) => Some(*value),
            _ => None,
        }
    }

    /// A gauge's value, by name.
    pub fn gauge(&self, name: &str) -> Option<u64> {
        match self.shared.metrics().get(MetricKind::Gauge, name) {
            Some(MetricValue::Gauge(value)) => Some(*value),
            _ => None,
        }
    }

    /// A histogram's samples, by name.
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        match self.shared.metrics().get(MetricKind::Histogram, name) {
            Some(MetricValue::Histogram(samples)) => Some(samples.clone()),
            _ => None,
        }
    }

    /// Every metric the filter defined, by kind then name.
    pub fn metrics(&self) -> Vec<(MetricKind, String, MetricValue)> {
        self.shared.metrics().all()
    }

    /// Every metric as Envoy's admin shows it after the builder's
    /// [`HostBuilder::stats_tag`] rules: the name with the tags lifted out (with its
    /// `wasmcustom.` prefix, which `/stats/prometheus` drops) and the tags, in rule order.
    pub fn tagged_metrics(&self) -> Vec<TaggedMetric> {
        self.shared
            .metrics()
            .all()
            .into_iter()
            .map(|(kind, name, value)| {
                let (name, tags) =
                    stats_tags::extract(&self.shared.stats_tags, &format!("{ENVOY_PREFIX}{name}"));
                TaggedMetric {
                    kind,
                    name,
                    tags,
                    value,
                }
            })
            .collect()
    }

    /// A counter by its tag-extracted name (with or without `wasmcustom.`) and its tags
    /// (all of them, in any order).
    pub fn tagged_counter(&self, name: &str, tags: &[(&str, &str)]) -> Option<u64> {
        let full = if name.starts_with(ENVOY_PREFIX) {
            name.to_string()
        } else {
            format!("{ENVOY_PREFIX}{name}")
        };
        let mut want: Vec<(&str, &str)> = tags.to_vec();
        want.sort_unstable();
        self.tagged_metrics().into_iter().find_map(|m| {
            let mut have: Vec<(&str, &str)> = m
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            have.sort_unstable();
            match m.value {
                MetricValue::Counter(n) if m.name == full && have == want => Some(n),
                _ => None,
            }
        })
    }

    /// Every log line so far, from all workers, in order.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.shared.logs().clone()
    }

    /// The messages logged at exactly this level.
    pub fn log_messages(&self, level: LogLevel) -> Vec<String> {
        self.shared
            .logs()
            .iter()
            .filter(|e| e.level == level)
            .map(|e| e.message.clone())
            .collect()
    }

    /// Forgets the logs so far.
    pub fn clear_logs(&self) {
        self.shared.logs().clear();
    }

    /// A shared data value and its CAS, in the store of this host's VM id.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.shared_data.get(&self.shared.plugin.vm_id, key)
    }

    /// Sets a shared data value of this host's VM id unconditionally, as another filter would.
    pub fn set_shared_data(&self, key: &str, value: impl AsRef<[u8]>) {
        self.shared
            .shared_data
            .set(&self.shared.plugin.vm_id, key, value);
    }

    /// The registry of shared data and queues this host uses, to hand to another host
    /// with [`HostBuilder::shared_data`].
    pub fn shared_data_registry(&self) -> &SharedData {
        &self.shared.shared_data
    }

    /// Runs `proxy_on_queue_ready` on this host's workers for every enqueue to a queue one
    /// of them registered, oldest first, as Envoy posts it to the registering worker.
    /// The harness does this after each `send`, step and clock move; call it when another
    /// host sharing the registry enqueued.
    pub fn deliver_queue_ready(&self) {
        let mut delivered = 0;
        while delivered < MAX_QUEUE_READY_PER_DELIVERY {
            let ready = self
                .shared
                .shared_data
                .lock()
                .take_ready(self.shared.host_id);
            if ready.is_empty() {
                return;
            }
            for (owner, token) in ready {
                delivered += 1;
                if let Some(worker) = self.workers.get(owner.worker) {
                    lock(worker).queue_ready(owner.context_id, token);
                }
            }
        }
    }

    /// Whether this host's module came from the process-wide cache of compiled modules
    /// (false if building this host compiled it).
    pub fn module_was_cached(&self) -> bool {
        self.module_cached
    }

    /// Registers (or replaces) a foreign function for `proxy_call_foreign_function`.
    pub fn foreign_function(
        &self,
        name: &str,
        function: impl Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) {
        lock(&self.shared.foreign).insert(name.to_string(), Arc::new(function));
    }

    /// What starting the VMs cost (`_initialize`, `proxy_on_vm_start`, `proxy_on_configure`...).
    pub fn startup_cost(&self) -> &CostReport {
        &self.startup
    }
}

/// What a request produced, as a client, the upstream and a benchmark see it.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The response the client got (no headers and status 0 if the stream was reset).
    pub response: Response,
    /// The request as the upstream got it, or `None` if it never reached the upstream.
    pub upstream_request: Option<Request>,
    /// Envoy's response code details (`via_upstream`, the filter's local reply details,
    /// `wasm_fail_stream`...).
    pub details: String,
    /// Whether the stream was reset instead of answered.
    pub reset: bool,
    /// What each callback of this stream cost.
    pub cost: CostReport,
}

impl Outcome {
    fn from_stream(stream: StreamData) -> Self {
        let reset = stream.reset || stream.response.is_none();
        Self {
            response: stream.response.unwrap_or_else(|| Response {
                headers: Default::default(),
                body: Vec::new(),
                trailers: Default::default(),
            }),
            upstream_request: stream.upstream_request,
            details: stream.details.unwrap_or_default(),
            reset,
            cost: stream.costs,
        }
    }
}

/// One worker: its own VM, like one Envoy worker thread.
#[derive(Clone, Copy)]
pub struct Worker<'h> {
    host: &'h Host,
    index: usize,
}

impl<'h> Worker<'h> {
    fn vm(&self) -> MutexGuard<'h, Vm> {
        lock(&self.host.workers[self.index])
    }

    /// The worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Runs a whole stream: the request through the filter, the upstream's answer (if the
    /// request gets through), the response through the filter, then `proxy_on_log`,
    /// `proxy_on_done` and `proxy_on_delete`.
    ///
    /// While the filter waits on callouts, each is settled by the cluster's responder, or
    /// else timed out (without moving the clock). A stream the filter paused with nothing
    /// pending ends as Envoy's stream idle timeout would: a 408 `stream timeout`.
    pub fn send(&self, request: Request, upstream: Upstream) -> Outcome {
        self.reload_if_failed();
        let mut vm = self.vm();
        let id = vm.open_stream(request, Some(upstream));
        vm.pump(id);
        let mut settled = 0;
        while vm.stream_state(id) != Some(StreamState::Complete) {
            let http = vm.store.data().callouts.http.values().next().cloned();
            let grpc = vm.store.data().callouts.grpc.values().next().cloned();
            if settled >= MAX_CALLOUTS_PER_SEND || (http.is_none() && grpc.is_none()) {
                vm.idle_timeout(id);
                continue;
            }
            settled += 1;
            if let Some(call) = http {
                let reply = match self.host.http_responders.get(&call.cluster) {
                    Some(respond) => respond(&call),
                    None => HttpCallReply::TimeOut,
                };
                vm.settle_http_call(call.token, reply);
            } else if let Some(call) = grpc {
                let reply = match self.host.grpc_responders.get(&call.cluster) {
                    Some(respond) => respond(&call),
                    None => GrpcCallReply::TimeOut,
                };
                vm.settle_grpc_call(call.token, reply);
            }
        }
        let stream = vm.take_stream(id);
        drop(vm);
        self.host.deliver_queue_ready();
        Outcome::from_stream(stream.expect("a completed stream stays until taken"))
    }

    /// Starts a stream and runs the request through the filter as far as it goes, for
    /// tests that need to act between phases (answer callouts, move the clock...).
    pub fn start(&self, request: Request) -> Stream<'h> {
        self.reload_if_failed();
        let mut vm = self.vm();
        let id = vm.open_stream(request, None);
        vm.pump(id);
        drop(vm);
        self.host.deliver_queue_ready();
        Stream { worker: *self, id }
    }

    /// Under [`HostBuilder::fail_reload`], starts a failed VM again if the backoff allows.
    fn reload_if_failed(&self) {
        let Some(backoff) = self.host.shared.fail_reload else {
            return;
        };
        if self.vm().alive {
            return;
        }
        let now = self.host.shared.clock().now_ns();
        let mut last = lock(&self.host.reloads[self.index]);
        if last.is_some_and(|at| now.saturating_sub(at) < backoff.as_nanos() as u64) {
            return;
        }
        let shared = self.host.shared.clone();
        let fresh = Vm::instantiate(
            shared.clone(),
            &self.host.module,
            &self.host.linker,
            self.index,
        )
        .map_err(|e| e.to_string())
        .and_then(|mut vm| start(&mut vm, &shared).map(|()| vm));
        *last = Some(now);
        match fresh {
            Ok(vm) => *self.vm() = vm,
            Err(reason) => shared.logs().push(LogEntry {
                worker: self.index,
                level: LogLevel::Critical,
                message: format!("reloading the VM failed: {reason}"),
                origin: LogOrigin::Host,
            }),
        }
    }

    /// Whether this worker's VM is alive.
    pub fn vm_alive(&self) -> bool {
        self.vm().alive
    }

    /// The HTTP calls this worker's VM made that are still waiting, oldest first.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.vm()
            .store
            .data()
            .callouts
            .http
            .values()
            .cloned()
            .collect()
    }

    /// The gRPC calls this worker's VM made that are still waiting, oldest first.
    pub fn pending_grpc_calls(&self) -> Vec<GrpcCall> {
        self.vm()
            .store
            .data()
            .callouts
            .grpc
            .values()
            .cloned()
            .collect()
    }

    /// Answers an HTTP call with a response. False if no such call is pending.
    pub fn respond_http_call(&self, token: u32, response: Response) -> bool {
        self.settle_http_call(token, HttpCallReply::Respond(response))
    }

    /// Settles an HTTP call any way (respond, reset, time out). False if no such call is pending.
    pub fn settle_http_call(&self, token: u32, reply: HttpCallReply) -> bool {
        let settled = self.vm().settle_http_call(token, reply);
        self.host.deliver_queue_ready();
        settled
    }

    /// Answers a gRPC call with a serialized response message. False if no such call is pending.
    pub fn respond_grpc_call(&self, token: u32, message: impl Into<Vec<u8>>) -> bool {
        self.settle_grpc_call(token, GrpcCallReply::Respond(message.into()))
    }

    /// Settles a gRPC call any way (respond, fail, time out). False if no such call is pending.
    pub fn settle_grpc_call(&self, token: u32, reply: GrpcCallReply) -> bool {
        let settled = self.vm().settle_grpc_call(token, reply);
        self.host.deliver_queue_ready();
        settled
    }

    /// Every gRPC stream this worker's VM opened, oldest first: what each sent and how it
    /// ended (cancelled or closed streams stay listed).
    pub fn grpc_streams(&self) -> Vec<GrpcStream> {
        self.vm()
            .store
            .data()
            .callouts
            .grpc_streams
            .values()
            .cloned()
            .collect()
    }

    /// One gRPC stream by token, as `grpc_streams` lists it.
    pub fn grpc_stream(&self, token: u32) -> Option<GrpcStream> {
        self.vm()
            .store
            .data()
            .callouts
            .grpc_streams
            .get(&token)
            .cloned()
    }

    /// The upstream acts on an open gRPC stream: sends initial metadata, a message or
    /// trailing metadata, or closes it with a status. False if no such stream is open (it
    /// was cancelled, or already closed by the upstream).
    pub fn reply_on_grpc_stream(&self, token: u32, reply: GrpcStreamReply) -> bool {
        let delivered = self.vm().reply_on_grpc_stream(token, reply);
        self.host.deliver_queue_ready();
        delivered
    }

    /// The tick period the root context set, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        self.vm()
            .store
            .data()
            .tick
            .map(|t| Duration::from_nanos(t.period_ns))
    }

    /// What the callbacks that served no stream cost since the host started (ticks,
    /// callout responses not acting for a stream).
    pub fn background_cost(&self) -> CostReport {
        CostReport {
            calls: self.vm().root_costs.clone(),
        }
    }
}

/// A stream in step mode. It lives in its worker until [`Stream::finish`] takes its outcome.
pub struct Stream<'h> {
    worker: Worker<'h>,
    id: u32,
}

impl<'h> Stream<'h> {
    /// The stream's context id in the VM.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Where the stream stands.
    pub fn state(&self) -> StreamState {
        self.worker
            .vm()
            .stream_state(self.id)
            .unwrap_or(StreamState::Complete)
    }

    /// The request as the filter has shaped it so far.
    pub fn request(&self) -> Option<Request> {
        let vm = self.worker.vm();
        vm.store
            .data()
            .streams
            .get(&self.id)
            .map(|s| s.request.clone())
    }

    /// The request as the upstream got it, once it got it.
    pub fn upstream_request(&self) -> Option<Request> {
        let vm = self.worker.vm();
        vm.store
            .data()
            .streams
            .get(&self.id)
            .and_then(|s| s.upstream_request.clone())
    }

    /// The response so far, once the response path started.
    pub fn response(&self) -> Option<Response> {
        let vm = self.worker.vm();
        vm.store
            .data()
            .streams
            .get(&self.id)
            .and_then(|s| s.response.clone())
    }

    /// Gives the upstream's answer to a stream that is [`StreamState::AwaitingUpstream`]
    /// (kept until then otherwise), and runs the response path as far as it goes.
    pub fn respond(&self, upstream: Upstream) -> StreamState {
        self.worker.vm().give_upstream(self.id, upstream);
        self.worker.host.deliver_queue_ready();
        self.state()
    }

    /// Ends the stream and returns its outcome. A stream not yet complete is ended as
    /// Envoy's stream idle timeout would end it (a 408, or a reset once the response
    /// started).
    pub fn finish(self) -> Outcome {
        let mut vm = self.worker.vm();
        if vm.stream_state(self.id) != Some(StreamState::Complete) {
            vm.idle_timeout(self.id);
        }
        let stream = vm.take_stream(self.id);
        drop(vm);
        self.worker.host.deliver_queue_ready();
        Outcome::from_stream(stream.expect("a stream stays in its worker until finished"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Host>();
    }
}
