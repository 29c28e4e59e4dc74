//! The Proxy-Wasm ABI 0.2.1 entry points and the dispatcher behind them: it keeps the
//! root and stream contexts, routes each callback to the right filter, and never panics.
//!
//! A callback takes its context out of the table, runs it, and puts it back, so a host
//! call that re-enters the module during a callback finds a consistent table.
//!
//! Envoy starts every callout on the root context and delivers its reply there, whichever
//! context made the call. The dispatcher remembers which context made each call and hands
//! the reply to it, after making it the effective context so its host calls (a local
//! reply, resuming the stream) act on that stream.

use crate::filter::{Action, GrpcEvent, HttpCallReply, HttpFilter, RootFilter};
use crate::host::{self, Buffer, LogLevel, Map};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes context ids and callout tokens: small integers the host hands out, so one
/// multiplication spreads them well. SipHash, the default, costs several hundred wasm
/// instructions per lookup on the hot path of every callback.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A table keyed by context id or callout token.
type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Makes a root filter for a plugin.
pub type RootFactory = fn() -> Box<dyn RootFilter>;

#[derive(Default)]
struct Dispatcher {
    /// Filters compiled into this module, by root id.
    factories: Vec<(&'static str, RootFactory)>,
    roots: IdMap<Box<dyn RootFilter>>,
    streams: IdMap<Stream>,
    /// The context whose callback is running.
    current: u32,
    /// The context host calls act on: `current`, or another set with
    /// `host::set_effective_context`.
    effective: u32,
    /// Which context (and chain member) made each HTTP callout still in flight, by token.
    http_callouts: IdMap<Owner>,
    /// Which context (and chain member) made each gRPC callout still in flight, by token.
    grpc_callouts: IdMap<Owner>,
    /// What the running chain member asked of the host that its chain does instead.
    member: Option<Member>,
    /// The chain member a callout event being delivered belongs to.
    delivering_member: Option<usize>,
    /// Streams whose filter resumes itself (a chain): `host::continue_stream` on them is
    /// handed to the filter, after the callback, instead of to the host.
    self_resuming: IdMap<()>,
    /// Resumptions asked for during this callback, handed over when it returns.
    continues: Vec<Resume>,
    /// A chain is resuming the host's stream itself: let `continue_stream` through.
    passthrough: bool,
}

/// Who made a callout: the context and, inside a chain, the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    context: u32,
    member: Option<usize>,
}

/// A chain member at work, and what it asked of the host that the chain does for it.
#[derive(Clone, Copy, Debug)]
struct Member {
    index: usize,
    asked: Asked,
}

/// What a chain member asked of the host during one call (see [`run_member`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    /// It set its tick period (milliseconds; 0 stops it). The chain ticks for it.
    pub tick_millis: Option<u32>,
    /// It sent a local reply.
    pub local_reply: bool,
}

/// A `host::continue_stream` a chain stream will do itself.
#[derive(Clone, Copy, Debug)]
struct Resume {
    context: u32,
    response_side: bool,
    member: Option<usize>,
}

/// The two kinds of callout; Envoy numbers their tokens separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callout {
    /// `proxy_http_call`.
    Http,
    /// `proxy_grpc_call`.
    Grpc,
}

struct Stream {
    filter: Box<dyn HttpFilter>,
}

thread_local! {
    static DISPATCHER: RefCell<Dispatcher> = RefCell::new(Dispatcher::default());
}

fn with<R>(f: impl FnOnce(&mut Dispatcher) -> R) -> Option<R> {
    DISPATCHER.with(|d| d.try_borrow_mut().ok().map(|mut d| f(&mut d)))
}

/// Registers a filter under `root_id` (the `root_id` of Envoy's Wasm config, Istio's
/// `pluginName`). A module with one filter serves every root id with it.
pub fn register(root_id: &'static str, factory: RootFactory) {
    with(|d| d.factories.push((root_id, factory)));
}

fn factory_for(root_id: &str) -> Option<RootFactory> {
    with(|d| match d.factories.as_slice() {
        [(_, only)] => Some(*only),
        many => many
            .iter()
            .find(|(name, _)| *name == root_id)
            .map(|(_, f)| *f),
    })
    .flatten()
}

/// Runs `f` on the root `id`, taking it out of the table for the call. Header snapshots
/// of an earlier callback are forgotten first: the host may have changed the maps since.
fn on_root<R>(id: u32, f: impl FnOnce(&mut dyn RootFilter) -> R) -> Option<R> {
    host::forget_snapshots();
    let mut root = with(|d| {
        d.current = id;
        d.effective = id;
        d.roots.remove(&id)
    })
    .flatten()?;
    let result = f(root.as_mut());
    with(|d| d.roots.insert(id, root));
    hand_over_resumptions();
    Some(result)
}

/// Runs `f` on the stream `id`, taking it out of the table for the call. Header snapshots
/// of an earlier callback are forgotten first: other filters may have changed the maps.
fn on_stream<R>(id: u32, f: impl FnOnce(&mut dyn HttpFilter) -> R) -> Option<R> {
    host::forget_snapshots();
    let mut stream = with(|d| {
        d.current = id;
        d.effective = id;
        d.streams.remove(&id)
    })
    .flatten()?;
    let result = f(stream.filter.as_mut());
    with(|d| d.streams.insert(id, stream));
    hand_over_resumptions();
    Some(result)
}

/// Hands each `continue_stream` a chain stream asked for during the callback to that
/// stream, as Envoy runs a continue after the VM call that asked for it. The stream then
/// runs its remaining members and resumes the host's stream if they all continue.
fn hand_over_resumptions() {
    // First asked, first resumed, as Envoy runs the actions queued during a VM call.
    let next = || with(|d| (!d.continues.is_empty()).then(|| d.continues.remove(0))).flatten();
    while let Some(resume) = next() {
        let effective = with(|d| d.effective).unwrap_or(resume.context);
        // If the host cannot switch to the stream, its members' host calls would act on
        // another context: better to leave it paused, as a lost continue would.
        if effective != resume.context && host::set_effective_context(resume.context).is_err() {
            continue;
        }
        on_stream(resume.context, |s| {
            s.on_continue_requested(resume.response_side, resume.member)
        });
    }
}

/// Called by `host::continue_stream`: true if the effective context is a chain stream,
/// which then resumes itself once the callback returns (the host is not asked).
pub(crate) fn intercept_continue(response_side: bool) -> bool {
    with(|d| {
        let context = d.effective;
        if d.passthrough || !d.self_resuming.contains_key(&context) {
            return false;
        }
        let member = d.member.map(|m| m.index);
        d.continues.push(Resume {
            context,
            response_side,
            member,
        });
        true
    })
    .unwrap_or(false)
}

/// Resumes the host's stream for a chain whose members all continued.
pub fn continue_host_stream(response_side: bool) -> host::HostResult<()> {
    with(|d| d.passthrough = true);
    let result = host::continue_stream(response_side);
    with(|d| d.passthrough = false);
    result
}

/// The context host calls act on now.
#[cfg(feature = "native")]
pub(crate) fn effective() -> u32 {
    with(|d| d.effective).unwrap_or(0)
}

/// Forgets what a callback that panicked left half done (a chain member at work, resumptions
/// asked for), so the next callback starts clean. The context it ran on is gone: it was out
/// of the table when it panicked.
#[cfg(feature = "native")]
pub(crate) fn recover_from_panic() {
    host::forget_snapshots();
    with(|d| {
        d.member = None;
        d.delivering_member = None;
        d.continues.clear();
        d.passthrough = false;
    });
}

/// Called by `host::set_effective_context` once the host switched.
pub(crate) fn note_effective(id: u32) {
    with(|d| d.effective = id);
}

/// Called by `host::set_tick_period_millis`: true if a chain member asked, which the chain
/// then serves from its own tick (the host is not asked).
pub(crate) fn intercept_tick_period(millis: u32) -> bool {
    with(|d| match &mut d.member {
        Some(member) => {
            member.asked.tick_millis = Some(millis);
            true
        }
        None => false,
    })
    .unwrap_or(false)
}

/// Called by `host::send_local_response`, so a chain stops running members after it.
pub(crate) fn note_local_reply() {
    with(|d| {
        if let Some(member) = &mut d.member {
            member.asked.local_reply = true;
        }
    });
}

/// Runs `f` as chain member `index`: callouts it makes are delivered back to it
/// ([`delivering_member`]), and what it asks of the host that the chain does for it is
/// returned. Calls nest: an outer member's record is kept.
pub fn run_member<R>(index: usize, f: impl FnOnce() -> R) -> (R, Asked) {
    let outer = with(|d| {
        d.member.replace(Member {
            index,
            asked: Asked::default(),
        })
    })
    .flatten();
    let result = f();
    let asked = with(|d| std::mem::replace(&mut d.member, outer))
        .flatten()
        .map(|m| m.asked)
        .unwrap_or_default();
    (result, asked)
}

/// The chain member that made the callout whose event is being delivered, if a chain
/// member made it.
pub fn delivering_member() -> Option<usize> {
    with(|d| d.delivering_member).flatten()
}

/// Remembers that the effective context (and chain member) made callout `token`, so its
/// reply reaches it.
pub(crate) fn note_callout(kind: Callout, token: u32) {
    with(|d| {
        let owner = Owner {
            context: d.effective,
            member: d.member.map(|m| m.index),
        };
        match kind {
            Callout::Http => d.http_callouts.insert(token, owner),
            Callout::Grpc => d.grpc_callouts.insert(token, owner),
        }
    });
}

/// The context that made callout `token`, forgotten once asked for; `delivered_to` (the
/// context the host delivered it to) when the call was not made through `host`. The
/// member that made it is kept for [`delivering_member`].
fn callout_owner(kind: Callout, token: u32, delivered_to: u32) -> u32 {
    with(|d| {
        let map = match kind {
            Callout::Http => &mut d.http_callouts,
            Callout::Grpc => &mut d.grpc_callouts,
        };
        let owner = map.remove(&token);
        d.delivering_member = owner.and_then(|o| o.member);
        owner.map_or(delivered_to, |o| o.context)
    })
    .unwrap_or(delivered_to)
}

/// Delivers a callout event to the root or stream `owner`; a stream that has ended
/// meanwhile is not there any more and the event is dropped.
fn deliver(
    owner: u32,
    root: impl FnOnce(&mut dyn RootFilter),
    stream: impl FnOnce(&mut dyn HttpFilter),
) {
    if is_root(owner) {
        on_root(owner, root);
        return;
    }
    // If the host cannot switch context, the stream's host calls would act on the root:
    // better to drop the event, which the stream sees as a callout that never answered.
    if host::set_effective_context(owner).is_ok() {
        on_stream(owner, stream);
    }
}

fn action_code(action: Option<Action>) -> u32 {
    match action {
        Some(Action::Pause) => 1,
        Some(Action::Continue) | None => 0,
    }
}

/// Creates a root (parent 0) or a stream context.
pub fn context_create(id: u32, parent: u32) {
    if parent == 0 {
        let root_id = host::property_str(&["plugin_root_id"]).unwrap_or_default();
        match factory_for(&root_id) {
            Some(factory) => {
                let root = factory();
                with(|d| d.roots.insert(id, root));
            }
            None => host::log(
                LogLevel::Error,
                &format!(
                    "meshward: no filter in this module is registered for root_id {root_id:?}"
                ),
            ),
        }
        return;
    }
    if let Some(Some(filter)) = on_root(parent, |root| root.new_http_filter(id)) {
        with(|d| {
            if filter.resumes_itself() {
                d.self_resuming.insert(id, ());
            }
            d.streams.insert(id, Stream { filter })
        });
    }
}

/// Starts the VM for root `id`.
pub fn vm_start(id: u32, size: usize) -> bool {
    let config = host::buffer(Buffer::VmConfiguration, 0, size).unwrap_or_default();
    on_root(id, |root| root.on_vm_start(&config)).unwrap_or(false)
}

/// Configures root `id`; logs and refuses a bad configuration.
pub fn configure(id: u32, size: usize) -> bool {
    let config = match host::buffer(Buffer::PluginConfiguration, 0, size) {
        Ok(config) => config,
        Err(status) => {
            host::log(
                LogLevel::Error,
                &format!("meshward: cannot read the plugin configuration: {status}"),
            );
            return false;
        }
    };
    on_root(id, |root| match root.configure(&config) {
        Ok(()) => true,
        Err(message) => {
            host::log(
                LogLevel::Error,
                &format!("{}: configuration refused: {message}", root.name()),
            );
            false
        }
    })
    .unwrap_or(false)
}

/// Reads the reply of an HTTP callout; only valid inside `proxy_on_http_call_response`.
fn http_call_reply(num_headers: usize, body_size: usize) -> HttpCallReply {
    HttpCallReply {
        // A reply whose headers the host cannot give reads as a failed call.
        headers: if num_headers == 0 {
            Vec::new()
        } else {
            host::headers(Map::HttpCallResponseHeaders).unwrap_or_default()
        },
        body: host::buffer(Buffer::HttpCallResponseBody, 0, body_size).unwrap_or_default(),
    }
}

/// Delivers an HTTP callout's reply to the root or stream that made it.
pub fn http_call_response(id: u32, token: u32, num_headers: usize, body_size: usize) {
    let reply = http_call_reply(num_headers, body_size);
    let owner = callout_owner(Callout::Http, token, id);
    let for_stream = reply.clone();
    deliver(
        owner,
        |root| root.on_http_call_reply(token, reply),
        |stream| stream.on_http_call_reply(token, for_stream),
    );
}

/// Delivers a gRPC callout's event to the root or stream that made it. `host` makes only
/// unary calls, and Envoy ends one with a single event: the message on success (no close
/// follows it), or the close on failure. So every event ends the call, and its token is
/// forgotten: keeping it until a close would keep one entry per successful call forever.
pub fn grpc_event(id: u32, token: u32, event: GrpcEvent) {
    let owner = callout_owner(Callout::Grpc, token, id);
    let for_stream = event.clone();
    deliver(
        owner,
        |root| root.on_grpc_event(token, event),
        |stream| stream.on_grpc_event(token, for_stream),
    );
}

/// True if `id` is a root context.
pub(crate) fn is_root(id: u32) -> bool {
    with(|d| d.roots.contains_key(&id)).unwrap_or(false)
}

/// Forgets a context; a root goes with its streams' link to it.
pub fn delete(id: u32) {
    with(|d| {
        d.streams.remove(&id);
        d.roots.remove(&id);
        d.self_resuming.remove(&id);
    });
}

/// Allocates `size` bytes the host fills and the filter later owns (see
/// `host::take_host_bytes`). Returns null when memory is short, never traps.
pub fn allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<u8> = Vec::new();
    if buffer.try_reserve_exact(size).is_err() || buffer.capacity() != size {
        return std::ptr::null_mut();
    }
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr
}

/// `proxy_on_request_headers`: the action code for the host.
pub fn request_headers(id: u32, end_of_stream: bool) -> u32 {
    action_code(on_stream(id, |s| s.on_request_headers(end_of_stream)))
}

/// `proxy_on_request_body`.
pub fn request_body(id: u32, size: usize, end_of_stream: bool) -> u32 {
    action_code(on_stream(id, |s| s.on_request_body(size, end_of_stream)))
}

/// `proxy_on_request_trailers`.
pub fn request_trailers(id: u32) -> u32 {
    action_code(on_stream(id, |s| s.on_request_trailers()))
}

/// `proxy_on_response_headers`.
pub fn response_headers(id: u32, end_of_stream: bool) -> u32 {
    action_code(on_stream(id, |s| s.on_response_headers(end_of_stream)))
}

/// `proxy_on_response_body`.
pub fn response_body(id: u32, size: usize, end_of_stream: bool) -> u32 {
    action_code(on_stream(id, |s| s.on_response_body(size, end_of_stream)))
}

/// `proxy_on_response_trailers`.
pub fn response_trailers(id: u32) -> u32 {
    action_code(on_stream(id, |s| s.on_response_trailers()))
}

/// `proxy_on_log`.
pub fn stream_log(id: u32) {
    on_stream(id, |s| s.on_log());
}

/// `proxy_on_tick`.
pub fn tick(id: u32) {
    on_root(id, |root| root.on_tick());
}

/// `proxy_on_grpc_receive`: a unary call's answer.
pub fn grpc_receive(id: u32, token: u32, size: usize) {
    let message = host::buffer(Buffer::GrpcReceive, 0, size).unwrap_or_default();
    grpc_event(id, token, GrpcEvent::Message(message))
}

/// `proxy_on_grpc_close`: a call that failed.
pub fn grpc_close(id: u32, token: u32, status: u32) {
    let message = host::grpc_status().map(|(_, m)| m).unwrap_or_default();
    grpc_event(id, token, GrpcEvent::Close { status, message })
}

/// The exports every module has. Only built for wasm: a host build has no proxy to call
/// them. The per-phase callbacks are exported by [`register_filters!`], only those the
/// module's filters use: the host enters the VM for every callback a module exports.
/// `proxy_on_done` is never exported: its answer would always be "done", which is what the
/// host assumes without it.
#[cfg(target_arch = "wasm32")]
mod exports {
    use super::*;

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        allocate(size)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(id: u32, parent: u32) {
        context_create(id, parent)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_vm_start(id: u32, size: usize) -> bool {
        vm_start(id, size)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> bool {
        configure(id, size)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_delete(id: u32) {
        delete(id)
    }
}

/// Registers the filters a `cdylib` serves, defines the module's `_initialize`, and exports
/// the callbacks they use.
///
/// ```ignore
/// meshward_shared::register_filters! {
///     exports: [request_headers, response_headers],
///     "security-headers" => || Box::new(Root::default()),
/// }
/// ```
///
/// `exports` names the callbacks the filters implement, among `request_headers`,
/// `request_body`, `request_trailers`, `response_headers`, `response_body`,
/// `response_trailers`, `log`, `tick`, `http_call` (callout replies) and `grpc` (gRPC
/// callout events). Envoy enters the VM for every callback a module exports, so a module
/// exports only what its filters use; a callback left out is never called, whatever the
/// filter implements. Without `exports:` every callback is exported.
#[macro_export]
macro_rules! register_filters {
    (exports: [$($export:ident),* $(,)?], $($root_id:literal => $factory:expr),+ $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn _initialize() {
            extern "C" {
                fn __wasm_call_ctors();
            }
            // SAFETY: the linker's constructor list, run once before anything else.
            unsafe { __wasm_call_ctors() };
            $($crate::abi::register($root_id, $factory);)+
        }
        $crate::native_entry!($($root_id => $factory),+);
        $($crate::export_callback!($export);)*
    };
    ($($root_id:literal => $factory:expr),+ $(,)?) => {
        $crate::register_filters!(
            exports: [
                request_headers, request_body, request_trailers, response_headers,
                response_body, response_trailers, log, tick, http_call, grpc
            ],
            $($root_id => $factory),+
        );
    };
}

/// The native module's `envoy_dynamic_module_on_program_init`, made by
/// [`register_filters!`] when meshward-shared's `native` feature is on; not for direct use.
#[cfg(feature = "native")]
#[doc(hidden)]
#[macro_export]
macro_rules! native_entry {
    ($($root_id:literal => $factory:expr),+) => {
        /// Envoy loaded the module: the filters it serves, and the ABI version it speaks.
        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const ::std::ffi::c_char {
            $crate::native::program_init(&[$(($root_id, {
                let factory: $crate::abi::RootFactory = $factory;
                factory
            })),+])
        }
    };
}

/// Without the `native` feature, [`register_filters!`] makes no native entry point.
#[cfg(not(feature = "native"))]
#[doc(hidden)]
#[macro_export]
macro_rules! native_entry {
    ($($anything:tt)*) => {};
}

/// One callback export of [`register_filters!`]; not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! export_callback {
    (request_headers) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_request_headers(
            id: u32,
            _headers: usize,
            end_of_stream: bool,
        ) -> u32 {
            $crate::abi::request_headers(id, end_of_stream)
        }
    };
    (request_body) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_request_body(id: u32, size: usize, end_of_stream: bool) -> u32 {
            $crate::abi::request_body(id, size, end_of_stream)
        }
    };
    (request_trailers) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_request_trailers(id: u32, _trailers: usize) -> u32 {
            $crate::abi::request_trailers(id)
        }
    };
    (response_headers) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_response_headers(
            id: u32,
            _headers: usize,
            end_of_stream: bool,
        ) -> u32 {
            $crate::abi::response_headers(id, end_of_stream)
        }
    };
    (response_body) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_response_body(id: u32, size: usize, end_of_stream: bool) -> u32 {
            $crate::abi::response_body(id, size, end_of_stream)
        }
    };
    (response_trailers) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_response_trailers(id: u32, _trailers: usize) -> u32 {
            $crate::abi::response_trailers(id)
        }
    };
    (log) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_log(id: u32) {
            $crate::abi::stream_log(id)
        }
    };
    (tick) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_tick(id: u32) {
            $crate::abi::tick(id)
        }
    };
    (http_call) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_http_call_response(
            id: u32,
            token: u32,
            headers: usize,
            body_size: usize,
            _trailers: usize,
        ) {
            $crate::abi::http_call_response(id, token, headers, body_size)
        }
    };
    // The metadata callbacks are not exported: a unary call's metadata says nothing the
    // message or the close does not, and the host skips callbacks a module lacks.
    (grpc) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_grpc_receive(id: u32, token: u32, size: usize) {
            $crate::abi::grpc_receive(id, token, size)
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn proxy_on_grpc_close(id: u32, token: u32, status: u32) {
            $crate::abi::grpc_close(id, token, status)
        }
    };
    ($other:ident) => {
        compile_error!(concat!(
            "register_filters!: unknown export `",
            stringify!($other),
            "`; expected one of ",
            "request_headers, request_body, request_trailers, response_headers, response_body, ",
            "response_trailers, log, tick, http_call, grpc"
        ));
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting;
    impl RootFilter for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn configure(&mut self, config: &[u8]) -> Result<(), String> {
            if config == b"bad" {
                Err("field: bad".into())
            } else {
                Ok(())
            }
        }
        fn new_http_filter(&mut self, _id: u32) -> Option<Box<dyn HttpFilter>> {
            Some(Box::new(Pausing))
        }
    }
    struct Pausing;
    impl HttpFilter for Pausing {
        fn on_request_headers(&mut self, _eos: bool) -> Action {
            Action::Pause
        }
    }

    #[test]
    fn routes_streams_to_the_filter_their_root_made_and_forgets_them_on_delete() {
        register("counting", || Box::new(Counting));
        context_create(1, 0);
        context_create(2, 1);
        assert_eq!(action_code(on_stream(2, |s| s.on_request_headers(true))), 1);
        delete(2);
        assert_eq!(action_code(on_stream(2, |s| s.on_request_headers(true))), 0);
        // A callback for a context that never existed is a no-op, not a trap.
        assert_eq!(
            action_code(on_stream(99, |s| s.on_response_headers(true))),
            0
        );
    }

    #[test]
    fn a_callout_reply_goes_to_the_context_that_made_the_call() {
        register("counting", || Box::new(Counting));
        context_create(10, 0);
        context_create(11, 10);
        on_stream(11, |_| note_callout(Callout::Http, 7));
        on_root(10, |_| note_callout(Callout::Http, 8));
        // Envoy delivers both to the root context (10).
        assert_eq!(callout_owner(Callout::Http, 7, 10), 11);
        assert_eq!(callout_owner(Callout::Http, 8, 10), 10);
        // Delivered once: the token is forgotten, and unknown tokens stay with the host's choice.
        assert_eq!(callout_owner(Callout::Http, 7, 10), 10);
        // gRPC tokens are numbered apart from HTTP ones.
        on_stream(11, |_| note_callout(Callout::Grpc, 7));
        assert_eq!(callout_owner(Callout::Http, 7, 10), 10);
        assert_eq!(callout_owner(Callout::Grpc, 7, 10), 11);
        assert_eq!(callout_owner(Callout::Grpc, 7, 10), 10);
    }

    #[test]
    fn a_unary_grpc_reply_message_ends_the_call() {
        register("counting", || Box::new(Counting));
        context_create(20, 0);
        context_create(21, 20);
        on_stream(21, |_| note_callout(Callout::Grpc, 9));
        // Envoy sends no close after a unary call's message: the token must go with it.
        grpc_event(20, 9, GrpcEvent::Message(b"answer".to_vec()));
        let remembered = with(|d| d.grpc_callouts.contains_key(&9)).unwrap();
        assert!(!remembered, "the token of an answered call is forgotten");
    }

    #[test]
    fn allocates_exactly_what_the_host_asks_for() {
        let ptr = allocate(16);
        assert!(!ptr.is_null());
        // SAFETY: `allocate` returned a 16-byte buffer we now own.
        drop(unsafe { Vec::from_raw_parts(ptr, 16, 16) });
        assert!(allocate(usize::MAX).is_null());
    }
}
