//! The host API filters call: every Proxy-Wasm host call, returning `Result` or `Option`,
//! never panicking on an unexpected status or on bytes that are not UTF-8.
//!
//! The SDK's wrappers panic on any status they did not expect; a panic traps the VM and
//! fails every request through it. Here each call hands back the host's [`Status`] instead
//! and the filter decides.

use crate::snapshot::HeaderSnapshot;
use crate::{pairs, sys};
use std::cell::RefCell;
use std::ptr::{null, null_mut};
use std::rc::Rc;

/// True in the native build (an Envoy dynamic module, meshward-shared's `native` feature),
/// false in the Wasm build. A filter checks it only where the two hosts differ in what they
/// can do: the native build has no gRPC callouts and cannot read the node's locality, and a
/// configuration that needs them is refused there with a message that says so.
pub const NATIVE: bool = cfg!(feature = "native");

/// True where writing a header map back whole ([`set_headers`]) costs less than one call
/// per edit: in Wasm, where every host call pays V8's boundary (BENCHMARKS.md, "Cost
/// model"). The native build can only set one name per ABI call, so a whole-map write
/// there first reads the map back to find what changed: its edits are cheaper one by one.
pub const WHOLE_MAP_WRITES_PAY: bool = !NATIVE;

/// A Proxy-Wasm status code, as the host returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The key, header, property or metric does not exist.
    NotFound,
    /// The host refused an argument, or the map is not available in this phase.
    BadArgument,
    /// The host could not serialize the value.
    SerializationFailure,
    /// The host could not parse what it was given.
    ParseFailure,
    /// The buffer or queue is empty.
    Empty,
    /// Shared data changed since it was read (compare-and-swap lost).
    CasMismatch,
    /// The host failed internally.
    InternalFailure,
    /// The host does not implement this call (also every call outside wasm).
    Unimplemented,
    /// The host answered Ok but the bytes it returned were malformed.
    Malformed,
    /// A status code this crate does not know.
    Other(u32),
}

impl Status {
    fn from_code(code: u32) -> Result<(), Status> {
        match code {
            0 => Ok(()),
            1 => Err(Status::NotFound),
            2 => Err(Status::BadArgument),
            3 => Err(Status::SerializationFailure),
            4 => Err(Status::ParseFailure),
            7 => Err(Status::Empty),
            8 => Err(Status::CasMismatch),
            10 => Err(Status::InternalFailure),
            12 => Err(Status::Unimplemented),
            other => Err(Status::Other(other)),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Other(code) => write!(f, "host status {code}"),
            known => write!(f, "{known:?}"),
        }
    }
}

/// The result of a host call.
pub type HostResult<T> = Result<T, Status>;

/// Which header map a call works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Map {
    /// The downstream request's headers.
    RequestHeaders = 0,
    /// The downstream request's trailers.
    RequestTrailers = 1,
    /// The response's headers (from the upstream or a local reply).
    ResponseHeaders = 2,
    /// The response's trailers.
    ResponseTrailers = 3,
    /// Initial metadata of a gRPC callout's reply.
    GrpcReceiveInitialMetadata = 4,
    /// Trailing metadata of a gRPC callout's reply.
    GrpcReceiveTrailingMetadata = 5,
    /// Headers of an HTTP callout's reply.
    HttpCallResponseHeaders = 6,
    /// Trailers of an HTTP callout's reply.
    HttpCallResponseTrailers = 7,
}

/// Which buffer a call works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Buffer {
    /// The request body seen so far.
    RequestBody = 0,
    /// The response body seen so far.
    ResponseBody = 1,
    /// The body of an HTTP callout's reply.
    HttpCallResponseBody = 4,
    /// The message of a gRPC callout's reply.
    GrpcReceive = 5,
    /// The VM configuration (readable in `on_vm_start`).
    VmConfiguration = 6,
    /// The plugin configuration (readable in `on_configure`).
    PluginConfiguration = 7,
}

/// Log levels, as Proxy-Wasm numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error.
    Error = 4,
    /// Critical.
    Critical = 5,
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

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null or a pointer returned by [`allocate`] for exactly `size`
/// bytes, not yet reclaimed.
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host wrote `size` bytes into a buffer our allocator handed out with
    // capacity `size` (see `allocate`), and gives up ownership here.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Writes a log line at `level`. A log that fails has nowhere to report itself, so the
/// status is dropped.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the pointer and length describe `message`, alive for the call.
    let _ = unsafe { sys::proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// The host's current wall-clock time in nanoseconds since the Unix epoch.
pub fn current_time_nanos() -> HostResult<u64> {
    let mut nanos = 0u64;
    // SAFETY: `nanos` is a valid place for the host to write a u64.
    Status::from_code(unsafe { sys::proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos)
}

/// Asks the host to call the root's `on_tick` every `millis` milliseconds (0 stops it).
pub fn set_tick_period_millis(millis: u32) -> HostResult<()> {
    // A chain member's period is served by its chain's tick.
    if crate::context::intercept_tick_period(millis) {
        return Ok(());
    }
    // SAFETY: no pointers.
    Status::from_code(unsafe { sys::proxy_set_tick_period_milliseconds(millis) })
}

/// Reads up to `max` bytes of `buffer` from `start`. An absent or empty buffer is `Ok(empty)`.
pub fn buffer(buffer: Buffer, start: usize, max: usize) -> HostResult<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers are valid; on Ok the host gives us an allocation we then own.
    let code =
        unsafe { sys::proxy_get_buffer_bytes(buffer as u32, start, max, &mut data, &mut size) };
    match Status::from_code(code) {
        // SAFETY: on Ok, data/size describe a host allocation made by our allocator.
        Ok(()) => Ok(unsafe { take_host_bytes(data, size) }),
        Err(Status::NotFound | Status::Empty) => Ok(Vec::new()),
        Err(status) => Err(status),
    }
}

/// Replaces `size` bytes of `buffer` at `start` with `bytes`.
pub fn set_buffer(buffer: Buffer, start: usize, size: usize, bytes: &[u8]) -> HostResult<()> {
    // SAFETY: the pointer and length describe `bytes`, alive for the call.
    Status::from_code(unsafe {
        sys::proxy_set_buffer_bytes(buffer as u32, start, size, bytes.as_ptr(), bytes.len())
    })
}

/// All headers of `map`, in order, duplicates kept. A stream's map comes from this
/// callback's [`snapshot`], so it costs no host call when something already read it.
pub fn headers(map: Map) -> HostResult<Vec<pairs::Pair>> {
    if snapshot_slot(map).is_some() {
        return snapshot(map).map(|s| s.to_pairs());
    }
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers are valid; on Ok we own the returned allocation.
    Status::from_code(unsafe {
        sys::proxy_get_header_map_pairs(map as u32, &mut data, &mut size)
    })?;
    // SAFETY: on Ok, data/size describe a host allocation made by our allocator.
    let bytes = unsafe { take_host_bytes(data, size) };
    pairs::decode(&bytes).ok_or(Status::Malformed)
}

/// Replaces all headers of `map` with `headers`.
pub fn set_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(map: Map, headers: &[(K, V)]) -> HostResult<()> {
    let bytes = pairs::encode(headers);
    // SAFETY: the pointer and length describe `bytes`, alive for the call.
    Status::from_code(unsafe {
        sys::proxy_set_header_map_pairs(map as u32, bytes.as_ptr(), bytes.len())
    })?;
    // The host's map now holds these (lowercased by the host): the next read re-reads it.
    forget_snapshot(map);
    Ok(())
}

/// The first value of header `name` in `map`, as raw bytes. `None` when it is absent or the
/// map is not available in this phase. Read from this callback's [`snapshot`] when one was
/// taken (no host call), else with one `proxy_get_header_map_value`.
pub fn header(map: Map, name: &str) -> Option<Vec<u8>> {
    if let Some(snapshot) = taken_snapshot(map) {
        return snapshot.get(name).map(<[u8]>::to_vec);
    }
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: key pointer/length describe `name`; out-pointers are valid.
    let code = unsafe {
        sys::proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    Status::from_code(code).ok()?;
    // SAFETY: on Ok, data/size describe a host allocation made by our allocator.
    Some(unsafe { take_host_bytes(data, size) })
}

/// The first value of header `name` in `map` if it is present and valid UTF-8.
///
/// Not for a security decision: `None` means "absent", "not UTF-8" and "map not readable"
/// alike, and of a repeated header (`x-tenant: acme` then `x-tenant: evil`) only the first
/// value is seen while the upstream gets both. Use [`header_unique`] or [`header_values`].
pub fn header_str(map: Map, name: &str) -> Option<String> {
    String::from_utf8(header(map, name)?).ok()
}

/// Every value of header `name` in `map`, in order, byte for byte: empty when the header is
/// absent, an error when the map cannot be read (for example the request headers in the
/// response phase). One host call, which reads the whole map.
pub fn header_values(map: Map, name: &str) -> HostResult<Vec<Vec<u8>>> {
    Ok(headers(map)?
        .into_iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .collect())
}

/// A header map of the current stream as the shared matcher reads it
/// ([`crate::matching`]): a header's first value by one value call (or from the phase's
/// snapshot, when taken), remembered so that several conditions on it cost one read; every
/// value of a header from the snapshot. A map the host cannot give reads as empty.
#[derive(Debug)]
pub struct MapView {
    map: Map,
    read: RefCell<Vec<(String, Option<Vec<u8>>)>>,
}

impl MapView {
    /// A view of `map`; nothing is read until a condition asks.
    pub fn new(map: Map) -> Self {
        MapView {
            map,
            read: RefCell::new(Vec::new()),
        }
    }
}

impl crate::matching::RequestView for MapView {
    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
        if let Ok(read) = self.read.try_borrow() {
            if let Some((_, value)) = read.iter().find(|(k, _)| k == name) {
                return value.clone().map(std::borrow::Cow::Owned);
            }
        }
        let value = header(self.map, name);
        if let Ok(mut read) = self.read.try_borrow_mut() {
            read.push((name.to_string(), value.clone()));
        }
        value.map(std::borrow::Cow::Owned)
    }

    fn joined(&self, name: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
        let snapshot = snapshot(self.map).ok()?;
        crate::matching::join(snapshot.values(name))
            .map(|value| std::borrow::Cow::Owned(value.into_owned()))
    }
}

/// The one value of header `name` in `map`, for a decision that must see what the upstream
/// sees: `Ok(None)` when it is absent, `Ok(Some(value))` when it appears exactly once as
/// UTF-8, and an error when it repeats, is not UTF-8, or the map cannot be read. Use it for
/// a security decision (an identity, a tenant, a token) and refuse the request on `Err`.
pub fn header_unique(map: Map, name: &str) -> Result<Option<String>, HeaderError> {
    let all = headers(map).map_err(HeaderError::Host)?;
    unique(&values_of(&all, name))
}

/// Why [`header_unique`] could not give one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The header appears this many times (two or more).
    Repeated(usize),
    /// The value is not UTF-8 (HTTP/1 allows obs-text bytes 0x80-0xFF, and Envoy passes them).
    NotUtf8,
    /// The host could not read the map.
    Host(Status),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Repeated(n) => write!(f, "the header appears {n} times"),
            HeaderError::NotUtf8 => f.write_str("the header value is not UTF-8"),
            HeaderError::Host(status) => write!(f, "the headers could not be read: {status}"),
        }
    }
}

/// The values of `name` among `pairs`, in order (names compared without regard to case).
/// Pure, so a filter that already holds the map can use it without another host call.
pub fn values_of<'a>(pairs: &'a [pairs::Pair], name: &str) -> Vec<&'a [u8]> {
    pairs
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
        .collect()
}

/// The one UTF-8 value among `values`, `None` when there is none; see [`header_unique`].
pub fn unique<V: AsRef<[u8]>>(values: &[V]) -> Result<Option<String>, HeaderError> {
    match values {
        [] => Ok(None),
        [value] => std::str::from_utf8(value.as_ref())
            .map(|text| Some(text.to_owned()))
            .map_err(|_| HeaderError::NotUtf8),
        more => Err(HeaderError::Repeated(more.len())),
    }
}

/// Sets header `name` to `value`, replacing every existing value.
pub fn set_header(map: Map, name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointers and lengths describe `name` and `value`, alive for the call.
    Status::from_code(unsafe {
        sys::proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })?;
    edit_snapshot(map, Write::Set, name, value);
    Ok(())
}

/// Adds a value for header `name`, keeping existing ones.
pub fn add_header(map: Map, name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointers and lengths describe `name` and `value`, alive for the call.
    Status::from_code(unsafe {
        sys::proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })?;
    edit_snapshot(map, Write::Add, name, value);
    Ok(())
}

/// Removes every value of header `name`.
pub fn remove_header(map: Map, name: &str) -> HostResult<()> {
    // SAFETY: the pointer and length describe `name`, alive for the call.
    Status::from_code(unsafe {
        sys::proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len())
    })?;
    edit_snapshot(map, Write::Remove, name, &[]);
    Ok(())
}

/// Encodes a property path (`["request", "path"]`) the way Envoy expects: NUL-separated.
fn property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for part in path {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    out.pop();
    out
}

/// Reads a property in Envoy's encoding (strings raw, integers 8-byte little-endian).
/// `None` when the property is absent.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let key = property_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: key pointer/length describe `key`; out-pointers are valid.
    let code = unsafe { sys::proxy_get_property(key.as_ptr(), key.len(), &mut data, &mut size) };
    Status::from_code(code).ok()?;
    // SAFETY: on Ok, data/size describe a host allocation made by our allocator.
    Some(unsafe { take_host_bytes(data, size) })
}

/// A string property, if present and valid UTF-8.
pub fn property_str(path: &[&str]) -> Option<String> {
    String::from_utf8(property(path)?).ok()
}

/// An integer property (Envoy encodes int64 as 8 little-endian bytes).
pub fn property_i64(path: &[&str]) -> Option<i64> {
    let raw: [u8; 8] = property(path)?.as_slice().try_into().ok()?;
    Some(i64::from_le_bytes(raw))
}

/// A boolean property (Envoy encodes it as one byte).
pub fn property_bool(path: &[&str]) -> Option<bool> {
    match property(path)?.as_slice() {
        [b] => Some(*b != 0),
        _ => None,
    }
}

/// Sets a property (filter state) to `value`.
pub fn set_property(path: &[&str], value: &[u8]) -> HostResult<()> {
    let key = property_path(path);
    // SAFETY: pointers and lengths describe `key` and `value`, alive for the call.
    Status::from_code(unsafe {
        sys::proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

/// A value read from shared data, with the compare-and-swap token to write it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedValue {
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// The version the host gave; pass it to [`set_shared_data`] to write only if unchanged.
    pub cas: u32,
}

/// Reads `key` from the shared data all workers of this VM id see. `Ok(None)` if absent.
pub fn shared_data(key: &str) -> HostResult<Option<SharedValue>> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: key pointer/length describe `key`; out-pointers are valid.
    let code = unsafe {
        sys::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    };
    match Status::from_code(code) {
        // SAFETY: on Ok, data/size describe a host allocation made by our allocator.
        Ok(()) => Ok(Some(SharedValue {
            bytes: unsafe { take_host_bytes(data, size) },
            cas,
        })),
        Err(Status::NotFound) => Ok(None),
        Err(status) => Err(status),
    }
}

/// Writes `key`. With `cas` from a read, the write fails with [`Status::CasMismatch`] if
/// another worker wrote in between; `cas == 0` writes unconditionally.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<()> {
    // SAFETY: pointers and lengths describe `key` and `value`, alive for the call.
    Status::from_code(unsafe {
        sys::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Resumes a stream the filter paused (request or response side).
pub fn continue_stream(response_side: bool) -> HostResult<()> {
    // A chain resumes its stream itself, from the member after the one that paused.
    if crate::context::intercept_continue(response_side) {
        return Ok(());
    }
    // SAFETY: no pointers.
    Status::from_code(unsafe { sys::proxy_continue_stream(u32::from(response_side)) })
}

/// Answers the client directly. The host sends it once the current callback returns and
/// the upstream is not called. `details` shows in Envoy's `%RESPONSE_CODE_DETAILS%`.
pub fn send_local_response<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    status: u32,
    details: &str,
    headers: &[(K, V)],
    body: &[u8],
) -> HostResult<()> {
    crate::context::note_local_reply();
    let headers = pairs::encode(headers);
    // SAFETY: every pointer/length pair describes a live local buffer.
    Status::from_code(unsafe {
        sys::proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Starts an HTTP call to Envoy cluster `cluster`. `headers` must hold `:method`, `:path`
/// and `:authority`. Returns the token the reply will carry; the reply goes to the root or
/// stream filter that made the call.
pub fn http_call<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    cluster: &str,
    headers: &[(K, V)],
    body: &[u8],
    timeout_millis: u32,
) -> HostResult<u32> {
    let headers = pairs::encode(headers);
    let trailers = pairs::encode::<&str, &str>(&[]);
    let mut token = 0u32;
    // SAFETY: every pointer/length pair describes a live local buffer; `token` is writable.
    Status::from_code(unsafe {
        sys::proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_millis,
            &mut token,
        )
    })?;
    crate::context::note_callout(crate::context::Callout::Http, token);
    Ok(token)
}

/// Starts a unary gRPC call to `cluster`. Returns the token the reply will carry; the
/// events go to the root or stream filter that made the call.
pub fn grpc_call<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    cluster: &str,
    service: &str,
    method: &str,
    initial_metadata: &[(K, V)],
    message: &[u8],
    timeout_millis: u32,
) -> HostResult<u32> {
    let metadata = pairs::encode(initial_metadata);
    let mut token = 0u32;
    // SAFETY: every pointer/length pair describes a live local buffer; `token` is writable.
    Status::from_code(unsafe {
        sys::proxy_grpc_call(
            cluster.as_ptr(),
            cluster.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            message.as_ptr(),
            message.len(),
            timeout_millis,
            &mut token,
        )
    })?;
    crate::context::note_callout(crate::context::Callout::Grpc, token);
    Ok(token)
}

/// Cancels a gRPC call.
pub fn grpc_cancel(token: u32) -> HostResult<()> {
    // SAFETY: no pointers.
    Status::from_code(unsafe { sys::proxy_grpc_cancel(token) })
}

/// The status code and message of the gRPC call being closed.
pub fn grpc_status() -> HostResult<(u32, String)> {
    let (mut code, mut data, mut size) = (0u32, null_mut(), 0usize);
    // SAFETY: out-pointers are valid.
    Status::from_code(unsafe { sys::proxy_get_status(&mut code, &mut data, &mut size) })?;
    // SAFETY: on Ok, data/size describe a host allocation made by our allocator.
    let message = unsafe { take_host_bytes(data, size) };
    Ok((code, String::from_utf8_lossy(&message).into_owned()))
}

/// Makes later host calls in this callback act on context `id`: how a reply that lands on
/// one context answers or resumes another request. The header snapshots taken so far were
/// another context's maps, so they are forgotten.
pub fn set_effective_context(id: u32) -> HostResult<()> {
    forget_snapshots();
    // SAFETY: no pointers.
    Status::from_code(unsafe { sys::proxy_set_effective_context(id) })?;
    crate::context::set_effective(id);
    Ok(())
}

/// Calls a host foreign function (for example Envoy's `verify_signature`).
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> HostResult<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: pointers/lengths describe live buffers; out-pointers are valid.
    Status::from_code(unsafe {
        sys::proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    })?;
    // SAFETY: on Ok, data/size describe a host allocation made by our allocator.
    Ok(unsafe { take_host_bytes(data, size) })
}

/// Metric kinds, as Proxy-Wasm numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MetricKind {
    /// Only goes up.
    Counter = 0,
    /// Goes up and down, or is set.
    Gauge = 1,
    /// Records samples.
    Histogram = 2,
}

/// Defines (or finds) a metric and returns its id.
pub fn define_metric(kind: MetricKind, name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: the pointer and length describe `name`; `id` is writable.
    Status::from_code(unsafe {
        sys::proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id)
    })?;
    Ok(id)
}

/// Adds `offset` to a counter or gauge.
pub fn increment_metric(id: u32, offset: i64) -> HostResult<()> {
    // SAFETY: no pointers.
    Status::from_code(unsafe { sys::proxy_increment_metric(id, offset) })
}

/// Sets a gauge or records a histogram sample.
pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    // SAFETY: no pointers.
    Status::from_code(unsafe { sys::proxy_record_metric(id, value) })
}

/// Reads a counter or gauge.
pub fn metric(id: u32) -> HostResult<u64> {
    let mut value = 0u64;
    // SAFETY: `value` is writable.
    Status::from_code(unsafe { sys::proxy_get_metric(id, &mut value) })?;
    Ok(value)
}

/// A write to a header map, kept to apply to its snapshot when someone next reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Set,
    Add,
    Remove,
}

/// The snapshot of one stream map in the running callback, and the writes made since it
/// was taken. Writes are only logged (a copy of their bytes): most filters write last and
/// never read again, and applying each write to the snapshot costs more Wasm work than
/// logging it. The next read applies them.
struct Slot {
    taken: Option<Rc<HeaderSnapshot>>,
    /// Each write: what it was, and where its name and value end in `log`.
    pending: Vec<(Write, usize, usize)>,
    /// The names and values of the pending writes, one after the other.
    log: Vec<u8>,
}

impl Slot {
    /// No snapshot and no writes.
    const EMPTY: Slot = Slot {
        taken: None,
        pending: Vec::new(),
        log: Vec::new(),
    };

    /// The snapshot with every pending write applied.
    fn current(&mut self) -> Option<Rc<HeaderSnapshot>> {
        let taken = self.taken.as_mut()?;
        if !self.pending.is_empty() {
            let snapshot = Rc::make_mut(taken);
            let mut at = 0;
            for &(write, name_end, value_end) in &self.pending {
                let name = self.log.get(at..name_end).unwrap_or_default();
                // Names came in as `&str`, so they are UTF-8.
                let name = std::str::from_utf8(name).unwrap_or_default();
                let value = self.log.get(name_end..value_end).unwrap_or_default();
                match write {
                    Write::Set => snapshot.set(name, value),
                    Write::Add => snapshot.add(name, value),
                    Write::Remove => snapshot.remove(name),
                }
                at = value_end;
            }
            self.pending.clear();
            self.log.clear();
        }
        Some(Rc::clone(taken))
    }
}

/// The header maps of the running stream callback, each read at most once: one slot per
/// stream map (request and response headers and trailers).
type Snapshots = [Slot; 4];

thread_local! {
    static SNAPSHOTS: RefCell<Snapshots> = const { RefCell::new([Slot::EMPTY; 4]) };
}

/// The slot of a stream's map; callout replies are not snapshotted.
fn snapshot_slot(map: Map) -> Option<usize> {
    match map {
        Map::RequestHeaders => Some(0),
        Map::RequestTrailers => Some(1),
        Map::ResponseHeaders => Some(2),
        Map::ResponseTrailers => Some(3),
        _ => None,
    }
}

/// Runs `f` on the slot of `map`, if it is a stream map (and the slots are not in use).
fn with_slot<R>(map: Map, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
    let index = snapshot_slot(map)?;
    SNAPSHOTS.with(|s| {
        let mut slots = s.try_borrow_mut().ok()?;
        slots.get_mut(index).map(f)
    })
}

/// The snapshot of `map` if this callback already took one, with the writes since applied.
fn taken_snapshot(map: Map) -> Option<Rc<HeaderSnapshot>> {
    with_slot(map, Slot::current).flatten()
}

/// Every header of `map` as the host holds it now, read with one
/// `proxy_get_header_map_pairs` the first time anything in this module asks during the
/// current callback, and kept until the host enters the VM again (the dispatcher forgets
/// the snapshots on every entry: another filter may change the map in between). The
/// writes of this module ([`set_header`], [`add_header`], [`remove_header`],
/// [`set_headers`]) keep it current, so several filters sharing a context share one read
/// and each sees the edits of the ones before it. [`header`] and [`headers`] read from it
/// once it is taken; a filter that needs one header, when no snapshot was taken, is better
/// served by [`header`] (one `proxy_get_header_map_value`, about half a pairs call).
///
/// A map Envoy does not have in this phase reads as empty, as Envoy answers. Callout
/// replies' maps are read each time (they are read once anyway).
pub fn snapshot(map: Map) -> HostResult<Rc<HeaderSnapshot>> {
    if let Some(taken) = taken_snapshot(map) {
        return Ok(taken);
    }
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers are valid; on Ok we own the returned allocation.
    Status::from_code(unsafe {
        sys::proxy_get_header_map_pairs(map as u32, &mut data, &mut size)
    })?;
    // SAFETY: on Ok, data/size describe a host allocation made by our allocator.
    let bytes = unsafe { take_host_bytes(data, size) };
    let read = Rc::new(HeaderSnapshot::decode(bytes).ok_or(Status::Malformed)?);
    with_slot(map, |slot| {
        slot.forget();
        slot.taken = Some(Rc::clone(&read));
    });
    Ok(read)
}

/// Logs a write the host accepted, for the snapshot of `map` if one was taken. A reader
/// still holding the snapshot keeps its view (the log is applied to a copy).
fn edit_snapshot(map: Map, write: Write, name: &str, value: &[u8]) {
    with_slot(map, |slot| {
        if slot.taken.is_some() {
            slot.log.extend_from_slice(name.as_bytes());
            let name_end = slot.log.len();
            slot.log.extend_from_slice(value);
            slot.pending.push((write, name_end, slot.log.len()));
        }
    });
}

impl Slot {
    /// Forgets the snapshot and its log, keeping the log's memory for the next callback.
    fn forget(&mut self) {
        self.taken = None;
        self.pending.clear();
        self.log.clear();
    }
}

/// Forgets the snapshot of `map`: the next read asks the host.
fn forget_snapshot(map: Map) {
    with_slot(map, Slot::forget);
}

/// Forgets every snapshot; the dispatcher calls it whenever the host enters the VM.
pub fn forget_snapshots() {
    SNAPSHOTS.with(|s| {
        if let Ok(mut slots) = s.try_borrow_mut() {
            slots.iter_mut().for_each(Slot::forget);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_exactly_what_the_host_asks_for() {
        let ptr = allocate(16);
        assert!(!ptr.is_null());
        // SAFETY: `allocate` returned a 16-byte buffer we now own.
        drop(unsafe { Vec::from_raw_parts(ptr, 16, 16) });
        assert!(allocate(usize::MAX).is_null());
    }

    #[test]
    fn property_paths_are_nul_separated() {
        assert_eq!(
            property_path(&["request", "path"]),
            b"request\0path".to_vec()
        );
        assert_eq!(property_path(&[]), Vec::<u8>::new());
    }

    fn pairs(list: &[(&str, &[u8])]) -> Vec<pairs::Pair> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    }

    #[test]
    fn values_of_keeps_every_value_in_order() {
        let map = pairs(&[
            ("x-tenant", b"acme"),
            ("x-other", b"1"),
            ("X-Tenant", b"evil"),
        ]);
        assert_eq!(
            values_of(&map, "x-tenant"),
            vec![b"acme".as_slice(), b"evil".as_slice()]
        );
        assert!(values_of(&pairs(&[("a", b"1")]), "x-tenant").is_empty());
    }

    #[test]
    fn unique_tells_absent_repeated_and_not_utf8_apart() {
        let none: [&[u8]; 0] = [];
        assert_eq!(unique(&none), Ok(None));
        assert_eq!(unique(&[b"acme"]), Ok(Some("acme".to_owned())));
        assert_eq!(unique(&[b""]), Ok(Some(String::new())));
        assert_eq!(
            unique(&[b"acme".as_slice(), b"evil".as_slice()]),
            Err(HeaderError::Repeated(2))
        );
        assert_eq!(unique(&[[0xff, b'a']]), Err(HeaderError::NotUtf8));
        assert_eq!(
            HeaderError::Repeated(3).to_string(),
            "the header appears 3 times"
        );
    }

    /// Puts a snapshot of `headers` in `map`'s slot, as a pairs call would.
    fn take(map: Map, headers: &[(&str, &str)]) {
        let snapshot = HeaderSnapshot::decode(pairs::encode(headers)).unwrap();
        with_slot(map, |slot| {
            slot.forget();
            slot.taken = Some(Rc::new(snapshot));
        });
    }

    #[test]
    fn once_a_snapshot_is_taken_reads_come_from_it_with_the_writes_since() {
        forget_snapshots();
        take(Map::RequestHeaders, &[(":path", "/a"), ("x-key", "1")]);
        // Outside wasm a host call answers nothing: these values come from the snapshot.
        assert_eq!(header(Map::RequestHeaders, ":path"), Some(b"/a".to_vec()));
        assert_eq!(header(Map::ResponseHeaders, ":status"), None);
        edit_snapshot(Map::RequestHeaders, Write::Set, "x-key", b"2");
        edit_snapshot(Map::RequestHeaders, Write::Add, "x-key", b"3");
        edit_snapshot(Map::RequestHeaders, Write::Remove, ":path", b"");
        let held = taken_snapshot(Map::RequestHeaders).unwrap();
        assert_eq!(held.get(":path"), None);
        let values: Vec<&[u8]> = held.values("x-key").collect();
        assert_eq!(values, [&b"2"[..], &b"3"[..]]);
        // A reader holding a snapshot keeps its view; the next read sees later writes.
        edit_snapshot(Map::RequestHeaders, Write::Remove, "x-key", b"");
        assert_eq!(held.get("x-key"), Some(&b"2"[..]));
        assert_eq!(header(Map::RequestHeaders, "x-key"), None);
        // The dispatcher forgets it when the host enters the VM again.
        forget_snapshots();
        assert!(taken_snapshot(Map::RequestHeaders).is_none());
    }

    #[test]
    fn outside_wasm_every_call_answers_unimplemented() {
        assert_eq!(current_time_nanos(), Err(Status::Unimplemented));
        assert_eq!(header(Map::RequestHeaders, "x"), None);
        assert_eq!(
            header_unique(Map::RequestHeaders, "x"),
            Err(HeaderError::Host(Status::Unimplemented))
        );
        assert_eq!(
            header_values(Map::RequestHeaders, "x"),
            Err(Status::Unimplemented)
        );
        assert_eq!(shared_data("k"), Err(Status::Unimplemented));
    }
}
