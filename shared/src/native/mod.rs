//! The native backend: the same filters as an Envoy dynamic module (`.so`), behind the
//! `native` feature, which the Wasm build never turns on.
//!
//! Filters do not know which backend runs them. They call [`crate::host`], which calls the
//! Proxy-Wasm functions of `crate::sys`; in this build those are implemented here (`sys`)
//! over the dynamic module ABI's callbacks ([`ffi`]), and the ABI's event hooks ([`hooks`])
//! drive the same dispatcher ([`crate::abi`]) the Proxy-Wasm exports drive.
//!
//! Where the two hosts differ:
//! - **Threads.** A Wasm VM is one per worker; a module is one per process. Configuration is
//!   made on the main thread and streams run on workers, so each worker makes its own root
//!   per configuration (the dispatcher is thread-local), configured with the same bytes the
//!   main thread checked: the same "one root per worker" a Wasm filter sees.
//! - **Shared data** is process-wide Rust state with Envoy's version and compare-and-swap
//!   rules (`process_store`).
//! - **Metrics** are defined with Envoy while the main thread checks the configuration and
//!   looked up by name on the workers. Envoy refuses a definition after that (`Frozen`), so a
//!   metric a filter first names on a worker does nothing, unless it is the member of a
//!   family declared at configure time ([`crate::metrics::declare_family`]): that becomes
//!   an update of Envoy's labelled metric with the member's label values.
//! - **Ticks** have no timer in the ABI: a root's tick runs on its worker at the next stream
//!   event once its period has passed, so an idle worker does not tick.
//! - **Replies and resumptions** a filter asks for are made once its hook has returned, as
//!   Envoy does for Wasm; made at once, Envoy would run our response hooks inside the
//!   request hook.
//! - **No gRPC callouts** (the ABI has none) and no foreign functions but
//!   `clear_route_cache`: the calls answer `Unimplemented`. rate-limit refuses a global rule
//!   (`host::NATIVE`); jwt-auth, finding no `verify_signature`, verifies in Rust.
//! - **Panics** are caught in every hook: the request gets a 500 (fail closed), the panic is
//!   logged and counted (`meshward_native_panics`), and Envoy keeps serving.

pub mod ffi;
pub mod hooks;
pub(crate) mod sys;

use crate::abi::{self, RootFactory};
use ffi::{ConfigEnvoyPtr, FilterEnvoyPtr};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// The ABI version this backend speaks, returned from `envoy_dynamic_module_on_program_init`.
pub const ABI_VERSION: &CStr = c"v0.2.0";

/// The counter every configuration defines for panics caught in its hooks.
pub const PANICS_METRIC: &str = "meshward_native_panics";

/// The filters the module serves, registered once at load.
static FACTORIES: OnceLock<Vec<(&'static str, RootFactory)>> = OnceLock::new();

/// Panics caught in this process, by every configuration.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// `envoy_dynamic_module_on_program_init` for a module serving `factories`; see
/// [`crate::register_filters!`].
pub fn program_init(factories: &[(&'static str, RootFactory)]) -> *const c_char {
    // A second init (the same file loaded again) keeps the first list: it is the same.
    let _ = FACTORIES.set(factories.to_vec());
    ABI_VERSION.as_ptr()
}

/// Panics caught so far in this process.
pub fn panics_caught() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// One Envoy filter configuration: made on the main thread, read by every worker.
pub(crate) struct NativeConfig {
    /// Tells this configuration's roots apart in each worker's table.
    key: u64,
    /// The `filter_name` of Envoy's config: the root id a filter is chosen by.
    pub(crate) name: String,
    /// The `filter_config` bytes, handed to each root's `configure`.
    pub(crate) bytes: Vec<u8>,
    /// Envoy's side of the configuration; valid until `config_destroy`.
    pub(crate) envoy: ConfigEnvoyPtr,
    /// Metric ids by kind and name.
    metrics: Mutex<HashMap<(u32, String), u32>>,
    /// Held to write while a worker defines a metric with Envoy (which appends to the
    /// configuration's list of metrics) and to read while one is updated, so no update
    /// reads that list while it grows.
    pub(crate) envoy_metrics: RwLock<()>,
    /// Labelled families defined with Envoy ([`declare_family`]): Envoy's id, by kind,
    /// family name and label names.
    families: Mutex<HashMap<FamilyKey, usize>>,
    /// The family members named so far: the family's Envoy id and the label values. A
    /// member's metric id is [`LABELLED`], its index here and its kind.
    labelled: RwLock<Vec<(usize, Vec<String>)>>,
    /// The id of [`PANICS_METRIC`], if Envoy defined it.
    panics: Option<usize>,
    /// Set when Envoy destroys the configuration: workers then drop their roots for it.
    dead: AtomicBool,
}

// SAFETY: `envoy` is only handed back to Envoy, whose config-level callbacks (metrics) may
// be called from any thread while the configuration lives; every other field is Sync.
unsafe impl Send for NativeConfig {}
// SAFETY: see `Send`.
unsafe impl Sync for NativeConfig {}

/// A labelled family: its kind, name and label names.
type FamilyKey = (u32, String, Vec<String>);

/// One stream's filter, as the module hands it to Envoy.
pub(crate) struct NativeStream {
    /// The dispatcher's context id for the stream (on its worker).
    context: u32,
    config: Arc<NativeConfig>,
}

/// A local reply a filter asked for, sent once its hook returns.
#[derive(Debug)]
pub(crate) struct LocalReply {
    pub(crate) status: u32,
    pub(crate) details: Vec<u8>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// What a filter asked of Envoy during a hook that is done after it returns.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// A local reply on the stream (Envoy filter, dispatcher context).
    Reply(FilterEnvoyPtr, u32, LocalReply),
    ContinueRequest(FilterEnvoyPtr),
    ContinueResponse(FilterEnvoyPtr),
}

/// An HTTP callout's reply, readable while it is being delivered.
#[derive(Debug, Default)]
pub(crate) struct CalloutReply {
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// What the running hook works on; host calls read it.
pub(crate) struct Hook {
    pub(crate) config: Option<Arc<NativeConfig>>,
    /// The stream whose hook this is (null outside stream hooks): host calls act on it, or
    /// on another live stream of the worker made effective; a root's callouts go out on it.
    pub(crate) own_filter: FilterEnvoyPtr,
    /// The dispatcher context of `own_filter`.
    pub(crate) own_context: u32,
    pub(crate) reply: Option<CalloutReply>,
    pub(crate) deferred: Vec<Deferred>,
    /// The response headers of a local reply the stream's own response hook is shown
    /// before Envoy sends it (see [`decorate_reply`]); host calls on the response headers
    /// read and write these instead of Envoy's.
    pub(crate) reply_headers: Option<Vec<(String, Vec<u8>)>>,
}

impl Default for Hook {
    fn default() -> Self {
        Hook {
            config: None,
            own_filter: std::ptr::null_mut(),
            own_context: 0,
            reply: None,
            deferred: Vec::new(),
            reply_headers: None,
        }
    }
}

/// A root's tick: its period and when it is next due.
struct Tick {
    period: Duration,
    due: Instant,
}

/// A worker's (or the main thread's) part of the backend.
#[derive(Default)]
struct Thread {
    /// The factories are registered with this thread's dispatcher.
    registered: bool,
    last_id: u32,
    last_token: u32,
    /// This thread's root per configuration, by configuration key.
    roots: HashMap<u64, (u32, Arc<NativeConfig>)>,
    ticks: HashMap<u32, Tick>,
    /// Live streams' Envoy filters, by context id, for `set_effective_context`.
    live: HashMap<u32, FilterEnvoyPtr>,
    /// HTTP callouts in flight: (stream context, Envoy's callout id) to our token.
    callouts: HashMap<(u32, u64), u32>,
}

thread_local! {
    static HOOK: RefCell<Hook> = RefCell::new(Hook::default());
    static THREAD: RefCell<Thread> = RefCell::new(Thread::default());
}

/// Runs `f` on the running hook's state; `None` if it is in use (never, as host calls do
/// not nest).
pub(crate) fn with_hook<R>(f: impl FnOnce(&mut Hook) -> R) -> Option<R> {
    HOOK.with(|h| h.try_borrow_mut().ok().map(|mut h| f(&mut h)))
}

fn with_thread<R>(f: impl FnOnce(&mut Thread) -> R) -> Option<R> {
    THREAD.with(|t| t.try_borrow_mut().ok().map(|mut t| f(&mut t)))
}

/// Makes `hook` the running hook's state; returns the one it replaces (a hook Envoy ran
/// inside another, for example our response hook inside a reply we sent).
fn enter(hook: Hook) -> Hook {
    HOOK.with(|h| std::mem::replace(&mut *h.borrow_mut(), hook))
}

/// Puts back the state `enter` replaced; returns this hook's, with what it deferred.
fn leave(previous: Hook) -> Hook {
    HOOK.with(|h| std::mem::replace(&mut *h.borrow_mut(), previous))
}

/// A fresh context id on this thread (never 0).
fn next_id() -> u32 {
    with_thread(|t| {
        t.last_id = t.last_id.wrapping_add(1).max(1);
        t.last_id
    })
    .unwrap_or(1)
}

/// A fresh callout token for Envoy's callout `envoy_id` on stream `context`.
pub(crate) fn note_callout(context: u32, envoy_id: u64) -> u32 {
    with_thread(|t| {
        t.last_token = t.last_token.wrapping_add(1).max(1);
        t.callouts.insert((context, envoy_id), t.last_token);
        t.last_token
    })
    .unwrap_or(0)
}

fn take_callout(context: u32, envoy_id: u64) -> Option<u32> {
    with_thread(|t| t.callouts.remove(&(context, envoy_id))).flatten()
}

/// The live stream `context`'s Envoy filter.
pub(crate) fn live_filter(context: u32) -> Option<FilterEnvoyPtr> {
    with_thread(|t| t.live.get(&context).copied()).flatten()
}

/// True if `context` is one of this thread's roots.
pub(crate) fn is_root(context: u32) -> bool {
    with_thread(|t| t.roots.values().any(|(id, _)| *id == context)).unwrap_or(false)
}

/// Sets (or with 0 stops) root `root`'s tick period.
pub(crate) fn set_tick(root: u32, millis: u32) {
    with_thread(|t| {
        if millis == 0 {
            t.ticks.remove(&root);
        } else {
            let period = Duration::from_millis(u64::from(millis));
            t.ticks.insert(
                root,
                Tick {
                    period,
                    due: Instant::now() + period,
                },
            );
        }
    });
}

/// Runs the ticks of this thread's roots that are due.
fn run_due_ticks() {
    let now = Instant::now();
    let due: Vec<u32> = with_thread(|t| {
        t.ticks
            .iter_mut()
            .filter(|(_, tick)| tick.due <= now)
            .map(|(root, tick)| {
                tick.due = now + tick.period;
                *root
            })
            .collect()
    })
    .unwrap_or_default();
    due.into_iter().for_each(abi::tick);
}

/// Registers the module's filters with this thread's dispatcher, once.
fn register_here() {
    let first = with_thread(|t| !std::mem::replace(&mut t.registered, true)).unwrap_or(false);
    if first {
        for (root_id, factory) in FACTORIES.get().map(Vec::as_slice).unwrap_or_default() {
            abi::register(root_id, *factory);
        }
    }
}

/// Makes and configures a root for `config` on this thread; `None` if no filter answers to
/// its name or it refuses the configuration (the dispatcher logged why).
fn new_root(config: &Arc<NativeConfig>) -> Option<u32> {
    register_here();
    let id = next_id();
    abi::context_create(id, 0);
    if !abi::is_root(id) {
        return None;
    }
    let accepted = abi::vm_start(id, 0) && abi::configure(id, config.bytes.len());
    if !accepted {
        abi::delete(id);
        with_thread(|t| t.ticks.remove(&id));
        return None;
    }
    with_thread(|t| t.roots.insert(config.key, (id, Arc::clone(config))));
    Some(id)
}

/// This thread's root for `config`, made on first use; roots of destroyed configurations
/// are dropped on the way.
fn thread_root(config: &Arc<NativeConfig>) -> Option<u32> {
    let dead: Vec<u32> = with_thread(|t| {
        let dead: Vec<(u64, u32)> = t
            .roots
            .iter()
            .filter(|(_, (_, c))| c.dead.load(Ordering::Acquire))
            .map(|(key, (id, _))| (*key, *id))
            .collect();
        for (key, id) in &dead {
            t.roots.remove(key);
            t.ticks.remove(id);
        }
        dead.into_iter().map(|(_, id)| id).collect()
    })
    .unwrap_or_default();
    dead.into_iter().for_each(abi::delete);
    match with_thread(|t| t.roots.get(&config.key).map(|(id, _)| *id)).flatten() {
        Some(id) => Some(id),
        None => new_root(config),
    }
}

/// The bit of a metric id that marks a member of a labelled family.
pub(crate) const LABELLED: u32 = 1 << 31;

/// Defines with Envoy the labelled family `name` of `kind` (Proxy-Wasm's numbering), with
/// label names `labels`, once per configuration; see [`crate::metrics::declare_family`].
/// Only the main thread's check of the configuration can (Envoy refuses later definitions).
pub(crate) fn declare_family(kind: u32, name: &str, labels: &[&str]) {
    let Some(config) = with_hook(|h| h.config.clone()).flatten() else {
        return;
    };
    let key = (
        kind,
        name.to_owned(),
        labels.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>(),
    );
    let mut families = config.families.lock().unwrap_or_else(|p| p.into_inner());
    if families.contains_key(&key) || labels.len() > crate::metrics::MAX_LABELS {
        return;
    }
    let envoy_id = {
        let _growing = config
            .envoy_metrics
            .write()
            .unwrap_or_else(|p| p.into_inner());
        define_metric_with(config.envoy, kind, name, labels)
    };
    if let Some(envoy_id) = envoy_id {
        families.insert(key, envoy_id);
    }
}

/// The id a metric of `kind` (Proxy-Wasm's numbering) and `name` has in this configuration:
/// defined with Envoy the first time any thread asks (while the main thread checks the
/// configuration; Envoy 1.40 refuses later definitions as `Frozen`, which leaves the
/// metric without an id), looked up after. The kind is kept in the id's low two bits. A
/// tagged name ([`crate::metrics::tagged_name`]) of a declared family is that family's
/// member, whenever it is first named.
pub(crate) fn metric_id(kind: u32, name: &str) -> Option<u32> {
    let config = with_hook(|h| h.config.clone()).flatten()?;
    let mut metrics = config.metrics.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = metrics.get(&(kind, name.to_owned())) {
        return Some(*id);
    }
    if let Some(id) = family_member(&config, kind, name) {
        metrics.insert((kind, name.to_owned()), id);
        // Envoy makes a labelled metric when it is first updated; a Wasm filter's metric
        // shows (at zero) once defined. An update by zero makes it show here too (a
        // histogram has no such update, and shows with its first sample).
        // SAFETY: no pointer is passed.
        let _ = unsafe { sys::proxy_increment_metric(id, 0) };
        return Some(id);
    }
    let envoy_id = {
        let _growing = config
            .envoy_metrics
            .write()
            .unwrap_or_else(|p| p.into_inner());
        define_metric(config.envoy, kind, name)?
    };
    let id = u32::try_from(envoy_id).ok()?.checked_mul(4)? | kind;
    metrics.insert((kind, name.to_owned()), id);
    Some(id)
}

/// The id of the member of a declared family that tagged name `name` names, made now if it
/// is new; `None` if the name has no tags or its family was not declared.
fn family_member(config: &NativeConfig, kind: u32, name: &str) -> Option<u32> {
    let (family, labels, values) = crate::metrics::parse_tagged(name)?;
    let labels: Vec<String> = labels.into_iter().map(str::to_owned).collect();
    let envoy_id = *config
        .families
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(kind, family, labels))?;
    let mut members = config.labelled.write().unwrap_or_else(|p| p.into_inner());
    let index = u32::try_from(members.len())
        .ok()
        .filter(|i| *i < LABELLED >> 2)?;
    members.push((envoy_id, values.into_iter().map(str::to_owned).collect()));
    Some(LABELLED | index << 2 | kind)
}

/// Runs `f` with family member `index`'s Envoy id and its label values as the ABI's
/// buffers; `None` if there is no such member.
pub(crate) fn with_member<R>(
    config: &NativeConfig,
    index: usize,
    f: impl FnOnce(usize, &[ffi::ModuleBuffer]) -> R,
) -> Option<R> {
    let members = config.labelled.read().unwrap_or_else(|p| p.into_inner());
    let (envoy_id, values) = members.get(index)?;
    let mut buffers = [ffi::ModuleBuffer::NULL; crate::metrics::MAX_LABELS];
    for (buffer, value) in buffers.iter_mut().zip(values) {
        *buffer = ffi::ModuleBuffer::of(value.as_bytes());
    }
    Some(f(*envoy_id, buffers.get(..values.len())?))
}

fn define_metric(envoy: ConfigEnvoyPtr, kind: u32, name: &str) -> Option<usize> {
    define_metric_with(envoy, kind, name, &[])
}

/// Defines metric `name` of `kind` with Envoy, with label names `labels`.
fn define_metric_with(
    envoy: ConfigEnvoyPtr,
    kind: u32,
    name: &str,
    labels: &[&str],
) -> Option<usize> {
    let mut id = 0usize;
    let name = ffi::ModuleBuffer::of(name.as_bytes());
    let buffers: Vec<ffi::ModuleBuffer> = labels
        .iter()
        .map(|l| ffi::ModuleBuffer::of(l.as_bytes()))
        .collect();
    let (labels, count) = match buffers.len() {
        0 => (std::ptr::null(), 0),
        n => (buffers.as_ptr(), n),
    };
    // SAFETY: `envoy` is the live configuration (we are in its config_new); `name` and the
    // label names are lent for the call; `id` is writable.
    let result = unsafe {
        match kind {
            0 => ffi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                envoy, name, labels, count, &mut id,
            ),
            1 => ffi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                envoy, name, labels, count, &mut id,
            ),
            2 => ffi::envoy_dynamic_module_callback_http_filter_config_define_histogram(
                envoy, name, labels, count, &mut id,
            ),
            _ => return None,
        }
    };
    (result == ffi::METRICS_SUCCESS).then_some(id)
}

/// Logs `message` at `level` (Proxy-Wasm's numbering, which Envoy's shares), after the
/// filter's name as Envoy's Wasm log names the plugin.
pub(crate) fn log(level: u32, message: &str) {
    let line = match with_hook(|h| h.config.as_ref().map(|c| c.name.clone())).flatten() {
        Some(name) if !message.starts_with(&name) => format!("{name}: {message}"),
        _ => message.to_owned(),
    };
    // SAFETY: the buffer describes `line`, alive for the call.
    unsafe {
        ffi::envoy_dynamic_module_callback_log(level, ffi::ModuleBuffer::of(line.as_bytes()))
    };
}

/// What a panic said, when it said it with a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Counts and logs a panic caught in `hook`, and puts the dispatcher back in order.
fn note_panic(hook: &str, config: Option<&NativeConfig>, payload: &(dyn std::any::Any + Send)) {
    PANICS.fetch_add(1, Ordering::Relaxed);
    abi::recover_from_panic();
    let name = config.map_or("meshward", |c| c.name.as_str());
    log(
        4,
        &format!(
            "{name}: panic in {hook}, caught: {}; the request is answered 500 and Envoy serves on",
            panic_message(payload)
        ),
    );
    if let Some((config, id)) = config.and_then(|c| c.panics.map(|id| (c, id))) {
        let _reading = config
            .envoy_metrics
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let envoy = config.envoy;
        // SAFETY: the configuration is alive while its streams run; no labels.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                envoy,
                id,
                std::ptr::null(),
                0,
                1,
            )
        };
    }
}

/// Does what the filters asked during a hook, now that it has returned. True if a local
/// reply was sent. A reply made on the request path is first shown to the stream's own
/// response hook ([`decorate_reply`]).
fn run_deferred(
    deferred: Vec<Deferred>,
    request_path: bool,
    config: Option<&Arc<NativeConfig>>,
) -> bool {
    let mut replied = false;
    for action in deferred {
        match action {
            Deferred::Reply(filter, context, mut reply) => {
                if request_path {
                    if let Some(config) = config {
                        decorate_reply(filter, context, config, &mut reply);
                    }
                }
                send_reply(filter, &reply);
                replied = true;
            }
            // SAFETY: `filter` is a live stream of this worker (taken from a hook or the
            // live table while its filter existed, and the hook has not returned to Envoy).
            Deferred::ContinueRequest(filter) => unsafe {
                ffi::envoy_dynamic_module_callback_http_filter_continue_decoding(filter)
            },
            // SAFETY: as above.
            Deferred::ContinueResponse(filter) => unsafe {
                ffi::envoy_dynamic_module_callback_http_filter_continue_encoding(filter)
            },
        }
    }
    replied
}

/// Runs stream `context`'s response-headers hook on a local reply it made, before Envoy sends
/// it. Envoy shows a Wasm filter its own local reply in its response phase, but not a
/// dynamic module (it encodes the reply only through the filters before it): without this,
/// a chain's security-headers would not decorate its jwt-auth's 401. The hook sees the
/// reply's headers as Envoy would make them (`:status`, `content-type` for a body) and
/// its edits go into the reply.
fn decorate_reply(
    filter: FilterEnvoyPtr,
    context: u32,
    config: &Arc<NativeConfig>,
    reply: &mut LocalReply,
) {
    let mut headers = vec![(":status".to_owned(), reply.status.to_string().into_bytes())];
    headers.extend(reply.headers.iter().cloned());
    if !reply.body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".to_owned(), b"text/plain".to_vec()));
    }
    let previous = enter(Hook {
        config: Some(Arc::clone(config)),
        own_filter: filter,
        own_context: context,
        reply_headers: Some(headers),
        ..Hook::default()
    });
    let end_of_stream = reply.body.is_empty();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        abi::response_headers(context, end_of_stream)
    }));
    let done = leave(previous);
    match (result, done.reply_headers) {
        (Ok(_), Some(headers)) => {
            reply.headers = headers
                .into_iter()
                .filter(|(k, _)| k != ":status" && !k.eq_ignore_ascii_case("content-length"))
                .collect();
        }
        (Err(payload), _) => {
            note_panic(
                "response_headers (of its own local reply)",
                Some(config),
                payload.as_ref(),
            );
            *reply = panic_reply();
        }
        (Ok(_), None) => {}
    }
}

fn send_reply(filter: FilterEnvoyPtr, reply: &LocalReply) {
    let mut headers: Vec<ffi::ModuleHttpHeader> = reply
        .headers
        .iter()
        .map(|(k, v)| ffi::ModuleHttpHeader::of(k.as_bytes(), v))
        .collect();
    let details = if reply.details.is_empty() {
        ffi::ModuleBuffer::NULL
    } else {
        ffi::ModuleBuffer::of(&reply.details)
    };
    // SAFETY: `filter` is a live stream of this worker; every buffer is lent for the call.
    unsafe {
        ffi::envoy_dynamic_module_callback_http_send_response(
            filter,
            reply.status,
            headers.as_mut_ptr(),
            headers.len(),
            ffi::ModuleBuffer::of(&reply.body),
            details,
        )
    };
}

/// The reply a panic gets: 500, fail closed.
fn panic_reply() -> LocalReply {
    LocalReply {
        status: 500,
        details: b"meshward_native_panic".to_vec(),
        headers: vec![("content-type".to_owned(), b"text/plain".to_vec())],
        body: b"internal error\n".to_vec(),
    }
}

/// The size of the request (or response) body a body hook sees: what Envoy buffered so far
/// and the chunk just received, as a Wasm filter's `body_size` counts it.
pub(crate) fn sys_body_size(response: bool) -> usize {
    let Some(filter) = with_hook(|h| h.own_filter).filter(|f| !f.is_null()) else {
        return 0;
    };
    let (received, buffered) = if response {
        (ffi::BODY_RECEIVED_RESPONSE, ffi::BODY_BUFFERED_RESPONSE)
    } else {
        (ffi::BODY_RECEIVED_REQUEST, ffi::BODY_BUFFERED_REQUEST)
    };
    // SAFETY: `filter` is the stream whose body hook runs.
    unsafe {
        ffi::envoy_dynamic_module_callback_http_get_body_size(filter, received)
            + ffi::envoy_dynamic_module_callback_http_get_body_size(filter, buffered)
    }
}

/// How a stream hook ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The dispatcher's action code (0 continue, 1 pause).
    Action(u32),
    /// A local reply was sent (by the filter, or for a panic).
    Replied,
}

/// Runs a stream hook: `f` gets the stream's context id, under a panic guard, with the hook
/// state set; what the filter deferred is done after. `answer` says whether a panic should
/// answer the request (not once the stream is complete); `request_path`, whether the hook
/// is on the request path (a local reply made there is shown to the stream's response hook).
///
/// # Safety
/// `module` must be null or a pointer `filter_new` returned and `filter_destroy` has not
/// freed; `filter` must be the Envoy filter Envoy passed with it.
pub(crate) unsafe fn stream_hook(
    filter: FilterEnvoyPtr,
    module: *const std::ffi::c_void,
    hook: &'static str,
    answer: bool,
    request_path: bool,
    f: impl FnOnce(u32) -> u32,
) -> Outcome {
    // SAFETY: the caller's promise.
    let Some(stream) = (unsafe { (module as *const NativeStream).as_ref() }) else {
        return Outcome::Action(0);
    };
    let config = Arc::clone(&stream.config);
    let previous = enter(Hook {
        config: Some(Arc::clone(&config)),
        own_filter: filter,
        own_context: stream.context,
        ..Hook::default()
    });
    let context = stream.context;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_due_ticks();
        f(context)
    }));
    let done = leave(previous);
    match result {
        Ok(code) => {
            if run_deferred(done.deferred, request_path, Some(&config)) {
                Outcome::Replied
            } else {
                Outcome::Action(code)
            }
        }
        Err(payload) => {
            note_panic(hook, Some(&config), payload.as_ref());
            if answer {
                send_reply(filter, &panic_reply());
                Outcome::Replied
            } else {
                Outcome::Action(0)
            }
        }
    }
}

/// Runs `f` under a panic guard outside a stream (configuration, stream creation and
/// destruction): a panic is counted and logged, and `fallback` returned.
fn guarded<R>(
    hook: &'static str,
    config: Option<&NativeConfig>,
    fallback: R,
    f: impl FnOnce() -> R,
) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => {
            note_panic(hook, config, payload.as_ref());
            fallback
        }
    }
}

/// A fresh configuration key.
fn next_config_key() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    LAST.fetch_add(1, Ordering::Relaxed) + 1
}

/// `envoy_dynamic_module_on_http_filter_config_new`: checks the configuration by configuring
/// a root with it on the main thread (defining its metrics), then keeps it for the workers.
/// Null refuses it.
pub(crate) fn config_new(
    envoy: ConfigEnvoyPtr,
    name: Vec<u8>,
    bytes: Vec<u8>,
) -> *const std::ffi::c_void {
    let name = String::from_utf8_lossy(&name).into_owned();
    let config = Arc::new(NativeConfig {
        key: next_config_key(),
        panics: define_metric(envoy, 0, PANICS_METRIC),
        name,
        bytes,
        envoy,
        metrics: Mutex::new(HashMap::new()),
        envoy_metrics: RwLock::new(()),
        families: Mutex::new(HashMap::new()),
        labelled: RwLock::new(Vec::new()),
        dead: AtomicBool::new(false),
    });
    let previous = enter(Hook {
        config: Some(Arc::clone(&config)),
        ..Hook::default()
    });
    let checked = guarded("config_new", Some(&config), None, || {
        new_root(&config).inspect(|id| {
            // The check's root is done: workers make their own.
            with_thread(|t| {
                t.roots.remove(&config.key);
                t.ticks.remove(id);
            });
            abi::delete(*id);
        })
    });
    leave(previous);
    match checked {
        Some(_) => Arc::into_raw(config).cast(),
        None => std::ptr::null(),
    }
}

/// `envoy_dynamic_module_on_http_filter_config_destroy`.
///
/// # Safety
/// `config` must be a pointer `config_new` returned, not destroyed before.
pub(crate) unsafe fn config_destroy(config: *const std::ffi::c_void) {
    if config.is_null() {
        return;
    }
    // SAFETY: the caller's promise: this is the reference `config_new` gave away.
    let config = unsafe { Arc::from_raw(config.cast::<NativeConfig>()) };
    config.dead.store(true, Ordering::Release);
}

/// `envoy_dynamic_module_on_http_filter_new`: this worker's root for the configuration
/// (made on first use) makes the stream's filter. Null (a refused configuration on this
/// worker, or a panic) makes Envoy close the stream.
///
/// # Safety
/// `config` must be a live pointer from `config_new`.
pub(crate) unsafe fn filter_new(
    config: *const std::ffi::c_void,
    filter: FilterEnvoyPtr,
) -> *const std::ffi::c_void {
    if config.is_null() {
        return std::ptr::null();
    }
    let config = config.cast::<NativeConfig>();
    // SAFETY: `config` came from `Arc::into_raw` and is alive (Envoy keeps the
    // configuration while it makes filters with it): take one more reference for the stream.
    let config = unsafe {
        Arc::increment_strong_count(config);
        Arc::from_raw(config)
    };
    let previous = enter(Hook {
        config: Some(Arc::clone(&config)),
        own_filter: filter,
        ..Hook::default()
    });
    let made = guarded("filter_new", Some(&config), None, || {
        let root = thread_root(&config)?;
        run_due_ticks();
        let id = next_id();
        with_hook(|h| h.own_context = id);
        with_thread(|t| t.live.insert(id, filter));
        abi::context_create(id, root);
        Some(id)
    });
    let done = leave(previous);
    run_deferred(done.deferred, true, Some(&config));
    match made {
        Some(context) => Box::into_raw(Box::new(NativeStream { context, config }))
            .cast_const()
            .cast(),
        None => std::ptr::null(),
    }
}

/// `envoy_dynamic_module_on_http_filter_destroy`.
///
/// # Safety
/// `module` must be null or a pointer `filter_new` returned, not destroyed before.
pub(crate) unsafe fn filter_destroy(module: *const std::ffi::c_void) {
    if module.is_null() {
        return;
    }
    // SAFETY: the caller's promise: this is the box `filter_new` gave away.
    let stream = unsafe { Box::from_raw(module.cast_mut().cast::<NativeStream>()) };
    let config = Arc::clone(&stream.config);
    guarded("filter_destroy", Some(&config), (), || {
        with_thread(|t| {
            t.live.remove(&stream.context);
            t.callouts
                .retain(|(context, _), _| *context != stream.context);
        });
        abi::delete(stream.context);
    });
}

/// `envoy_dynamic_module_on_http_filter_http_callout_done`: hands the reply (empty headers
/// for a failed call) to the dispatcher, which delivers it to the root or stream that made
/// the call.
pub(crate) fn callout_done(context: u32, envoy_id: u64, reply: CalloutReply) -> u32 {
    let Some(token) = take_callout(context, envoy_id) else {
        return 0;
    };
    let (headers, body) = (reply.headers.len(), reply.body.len());
    with_hook(|h| h.reply = Some(reply));
    abi::http_call_response(context, token, headers, body);
    with_hook(|h| h.reply = None);
    0
}
