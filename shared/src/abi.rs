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

use crate::context::{self, Callout, IdMap};
use crate::filter::{Action, GrpcEvent, HttpCallReply, HttpFilter, RootFilter};
use crate::host::{self, Buffer, LogLevel, Map};
use std::cell::RefCell;

/// Makes a root filter for a plugin.
pub type RootFactory = fn() -> Box<dyn RootFilter>;

struct Dispatcher {
    /// Filters compiled into this module, by root id.
    factories: Vec<(&'static str, RootFactory)>,
    roots: IdMap<Box<dyn RootFilter>>,
    streams: IdMap<Stream>,
    /// The context whose callback is running.
    current: u32,
}

struct Stream {
    filter: Box<dyn HttpFilter>,
}

thread_local! {
    static DISPATCHER: RefCell<Dispatcher> = const {
        RefCell::new(Dispatcher {
            factories: Vec::new(),
            roots: context::id_map(),
            streams: context::id_map(),
            current: 0,
        })
    };
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
    context::set_effective(id);
    let mut root = with(|d| {
        d.current = id;
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
    context::set_effective(id);
    let mut stream = with(|d| {
        d.current = id;
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
    while let Some(resume) = context::next_resumption() {
        let effective = context::effective();
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

/// Resumes the host's stream for a chain whose members all continued.
pub fn continue_host_stream(response_side: bool) -> host::HostResult<()> {
    context::set_passthrough(true);
    let result = host::continue_stream(response_side);
    context::set_passthrough(false);
    result
}

/// Forgets what a callback that panicked left half done (a chain member at work, resumptions
/// asked for), so the next callback starts clean. The context it ran on is gone: it was out
/// of the table when it panicked.
#[cfg(feature = "native")]
pub(crate) fn recover_from_panic() {
    host::forget_snapshots();
    context::recover_from_panic();
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
        if filter.resumes_itself() {
            context::mark_self_resuming(id);
        }
        with(|d| d.streams.insert(id, Stream { filter }));
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
    let owner = context::callout_owner(Callout::Http, token, id);
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
    let owner = context::callout_owner(Callout::Grpc, token, id);
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
    });
    context::forget(id);
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
        host::allocate(size)
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
    use crate::config::ConfigError;
    use crate::context::{callout_owner, note_callout};

    struct Counting;
    impl RootFilter for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn configure(&mut self, config: &[u8]) -> Result<(), ConfigError> {
            if config == b"bad" {
                Err(ConfigError::new("field", "bad"))
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
        // Forgotten: asked again, its owner is where the host delivers it.
        assert_eq!(
            callout_owner(Callout::Grpc, 9, 20),
            20,
            "the token of an answered call is forgotten"
        );
    }
}
