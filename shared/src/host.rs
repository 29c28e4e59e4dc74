//! The host API filters call: every Proxy-Wasm host call, returning `Result` or `Option`,
//! never panicking on an unexpected status or on bytes that are not UTF-8.
//!
//! The SDK's wrappers panic on any status they did not expect; a panic traps the VM and
//! fails every request through it. Here each call hands back the host's [`Status`] instead
//! and the filter decides.

use crate::{pairs, sys};
use std::ptr::{null, null_mut};

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

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null or a pointer returned by [`crate::abi::allocate`] for exactly `size`
/// bytes, not yet reclaimed.
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host wrote `size` bytes into a buffer our allocator handed out with
    // capacity `size` (see `abi::allocate`), and gives up ownership here.
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
    if crate::abi::intercept_tick_period(millis) {
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

/// All headers of `map`, in order, duplicates kept.
pub fn headers(map: Map) -> HostResult<Vec<pairs::Pair>> {
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
    })
}

/// The first value of header `name` in `map`, as raw bytes. `None` when it is absent or the
/// map is not available in this phase.
pub fn header(map: Map, name: &str) -> Option<Vec<u8>> {
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
pub fn header_str(map: Map, name: &str) -> Option<String> {
    String::from_utf8(header(map, name)?).ok()
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
    })
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
    })
}

/// Removes every value of header `name`.
pub fn remove_header(map: Map, name: &str) -> HostResult<()> {
    // SAFETY: the pointer and length describe `name`, alive for the call.
    Status::from_code(unsafe {
        sys::proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len())
    })
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
    if crate::abi::intercept_continue(response_side) {
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
    crate::abi::note_local_reply();
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
    crate::abi::note_callout(crate::abi::Callout::Http, token);
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
    crate::abi::note_callout(crate::abi::Callout::Grpc, token);
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
/// one context answers or resumes another request.
pub fn set_effective_context(id: u32) -> HostResult<()> {
    // SAFETY: no pointers.
    Status::from_code(unsafe { sys::proxy_set_effective_context(id) })?;
    crate::abi::note_effective(id);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_paths_are_nul_separated() {
        assert_eq!(
            property_path(&["request", "path"]),
            b"request\0path".to_vec()
        );
        assert_eq!(property_path(&[]), Vec::<u8>::new());
    }

    #[test]
    fn outside_wasm_every_call_answers_unimplemented() {
        assert_eq!(current_time_nanos(), Err(Status::Unimplemented));
        assert_eq!(header(Map::RequestHeaders, "x"), None);
        assert_eq!(shared_data("k"), Err(Status::Unimplemented));
    }
}
