//! The Proxy-Wasm host functions `host.rs` calls, implemented over the dynamic module ABI,
//! with the same signatures and status codes as Envoy's Wasm host gives them. Outside a hook
//! (no stream, no configuration) every call that needs Envoy answers `Unimplemented`, as the
//! stand-ins of a plain host build do.
//!
//! Bytes handed back are boxed slices whose length is their capacity, the allocation
//! `host::take_host_bytes` takes back.

#![allow(clippy::too_many_arguments, missing_docs)]

use super::ffi::{self, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, ModuleBuffer};
use super::{with_hook, Deferred, LocalReply};
use crate::pairs;
use crate::process_store as store;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const BAD_ARGUMENT: u32 = 2;
const CAS_MISMATCH: u32 = 8;
const INTERNAL_FAILURE: u32 = 10;
const UNIMPLEMENTED: u32 = 12;

/// Proxy-Wasm's header map numbers that name a stream map, as the ABI numbers them (the
/// same order: request headers, request trailers, response headers, response trailers).
fn stream_map(map: u32) -> Option<u32> {
    (map <= 3).then_some(map)
}
/// Proxy-Wasm's map of an HTTP callout's reply headers.
const CALLOUT_HEADERS: u32 = 6;

/// Proxy-Wasm's buffer numbers.
const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const CALLOUT_BODY: u32 = 4;
const PLUGIN_CONFIGURATION: u32 = 7;

/// Proxy-Wasm's map of the response headers.
const RESPONSE_HEADERS: u32 = 2;

/// Runs `f` on the headers of the local reply being shown to its stream's response hook,
/// when `map_type` is the response headers and such a reply is being shown.
fn reply_headers<R>(map_type: u32, f: impl FnOnce(&mut Vec<(String, Vec<u8>)>) -> R) -> Option<R> {
    if map_type != RESPONSE_HEADERS {
        return None;
    }
    with_hook(|h| h.reply_headers.as_mut().map(f)).flatten()
}

/// The Envoy stream host calls act on: the dispatcher's effective context when it is a live
/// stream of this worker, else the stream whose hook runs (a root's calls during it).
fn target() -> Option<(FilterEnvoyPtr, u32)> {
    let effective = crate::context::effective();
    let (own, own_context) = with_hook(|h| (h.own_filter, h.own_context))?;
    if effective != own_context {
        if let Some(filter) = super::live_filter(effective) {
            return Some((filter, effective));
        }
    }
    (!own.is_null()).then_some((own, own_context))
}

/// Hands `bytes` to the caller as a host allocation `take_host_bytes` can take back.
///
/// # Safety
/// Both out-pointers must be writable.
unsafe fn give(bytes: Vec<u8>, data: *mut *mut u8, size: *mut usize) {
    let length = bytes.len();
    let pointer = if length == 0 {
        std::ptr::null_mut()
    } else {
        Box::into_raw(bytes.into_boxed_slice()).cast::<u8>()
    };
    // SAFETY: the caller's promise.
    unsafe {
        *data = pointer;
        *size = length;
    }
}

/// The bytes at `data`, borrowed for the call.
///
/// # Safety
/// `data` must be null or point at `size` readable bytes.
unsafe fn lent<'a>(data: *const u8, size: usize) -> &'a [u8] {
    if data.is_null() || size == 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(data, size) }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

pub unsafe fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32 {
    // SAFETY: the caller lends the message.
    let message = unsafe { lent(message_data, message_size) };
    super::log(level, &String::from_utf8_lossy(message));
    OK
}

pub unsafe fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32 {
    if with_hook(|h| h.config.is_none()).unwrap_or(true) {
        return UNIMPLEMENTED;
    }
    let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return INTERNAL_FAILURE;
    };
    // SAFETY: the caller passes a writable u64.
    unsafe { *return_time = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX) };
    OK
}

pub unsafe fn proxy_set_tick_period_milliseconds(period: u32) -> u32 {
    let root = crate::context::effective();
    if !super::is_root(root) && with_hook(|h| h.config.is_none()).unwrap_or(true) {
        return BAD_ARGUMENT;
    }
    super::set_tick(root, period);
    OK
}

/// A stream's body as a Wasm filter reads it: what Envoy buffered, then the chunk just
/// received (seen only in a body hook).
fn body(filter: FilterEnvoyPtr, response: bool) -> Vec<u8> {
    let (buffered, received) = if response {
        (ffi::BODY_BUFFERED_RESPONSE, ffi::BODY_RECEIVED_RESPONSE)
    } else {
        (ffi::BODY_BUFFERED_REQUEST, ffi::BODY_RECEIVED_REQUEST)
    };
    let mut all = chunks(filter, buffered);
    all.extend(chunks(filter, received));
    all
}

/// The bytes of one of a stream's bodies.
fn chunks(filter: FilterEnvoyPtr, body_type: u32) -> Vec<u8> {
    // SAFETY: `filter` is a live stream of this worker.
    let count =
        unsafe { ffi::envoy_dynamic_module_callback_http_get_body_chunks_size(filter, body_type) };
    let mut chunks = vec![EnvoyBuffer::EMPTY; count];
    // SAFETY: `chunks` has room for `count` buffers, as Envoy requires.
    let ok = unsafe {
        ffi::envoy_dynamic_module_callback_http_get_body_chunks(
            filter,
            body_type,
            chunks.as_mut_ptr(),
        )
    };
    if !ok {
        return Vec::new();
    }
    // SAFETY: Envoy filled each buffer with bytes valid until the hook returns.
    chunks
        .into_iter()
        .flat_map(|c| unsafe { c.to_vec() })
        .collect()
}

pub unsafe fn proxy_get_buffer_bytes(
    buffer_type: u32,
    start: usize,
    max_size: usize,
    return_buffer_data: *mut *mut u8,
    return_buffer_size: *mut usize,
) -> u32 {
    let whole = match buffer_type {
        PLUGIN_CONFIGURATION => with_hook(|h| h.config.as_ref().map(|c| c.bytes.clone())).flatten(),
        CALLOUT_BODY => with_hook(|h| h.reply.as_ref().map(|r| r.body.clone())).flatten(),
        REQUEST_BODY => target().map(|(f, _)| body(f, false)),
        RESPONSE_BODY => target().map(|(f, _)| body(f, true)),
        _ => None,
    };
    let Some(whole) = whole else {
        return NOT_FOUND;
    };
    let end = start.saturating_add(max_size).min(whole.len());
    let part = whole.get(start..end).unwrap_or_default().to_vec();
    // SAFETY: the caller passes writable out-pointers.
    unsafe { give(part, return_buffer_data, return_buffer_size) };
    OK
}

pub unsafe fn proxy_set_buffer_bytes(_: u32, _: usize, _: usize, _: *const u8, _: usize) -> u32 {
    UNIMPLEMENTED
}

/// The stream's headers of `header_type`, lent by Envoy: valid until the map is changed
/// or the hook returns, so a caller reads them before it edits the map.
fn stream_headers<'a>(
    filter: FilterEnvoyPtr,
    header_type: u32,
) -> Option<Vec<(&'a [u8], &'a [u8])>> {
    // SAFETY: `filter` is a live stream of this worker.
    let count =
        unsafe { ffi::envoy_dynamic_module_callback_http_get_headers_size(filter, header_type) };
    let mut headers = vec![EnvoyHttpHeader::EMPTY; count];
    if count == 0 {
        return Some(Vec::new());
    }
    // SAFETY: `headers` has room for `count` headers, as Envoy requires.
    let ok = unsafe {
        ffi::envoy_dynamic_module_callback_http_get_headers(
            filter,
            header_type,
            headers.as_mut_ptr(),
        )
    };
    // SAFETY: Envoy filled each header with bytes valid until the hook returns or the map
    // changes (the caller's part).
    ok.then(|| headers.into_iter().map(|h| unsafe { h.lent() }).collect())
}

pub unsafe fn proxy_get_header_map_pairs(
    map_type: u32,
    return_map_data: *mut *mut u8,
    return_map_size: *mut usize,
) -> u32 {
    // Encoded where they are, without copying each header first.
    let shown = reply_headers(map_type, |headers| pairs::encode(headers));
    let encoded: Option<Vec<u8>> = match (stream_map(map_type), map_type) {
        _ if shown.is_some() => shown,
        (Some(header_type), _) => match target() {
            Some((filter, _)) => stream_headers(filter, header_type).map(|h| pairs::encode(&h)),
            None => return UNIMPLEMENTED,
        },
        (None, CALLOUT_HEADERS) => {
            with_hook(|h| h.reply.as_ref().map(|r| pairs::encode(&r.headers))).flatten()
        }
        _ => None,
    };
    let Some(encoded) = encoded else {
        return NOT_FOUND;
    };
    // SAFETY: the caller passes writable out-pointers.
    unsafe { give(encoded, return_map_data, return_map_size) };
    OK
}

pub unsafe fn proxy_set_header_map_pairs(
    map_type: u32,
    map_data: *const u8,
    map_size: usize,
) -> u32 {
    let (Some(header_type), Some((filter, _))) = (stream_map(map_type), target()) else {
        return BAD_ARGUMENT;
    };
    // SAFETY: the caller lends the encoded map.
    let Some(wanted) = pairs::decode(unsafe { lent(map_data, map_size) }) else {
        return BAD_ARGUMENT;
    };
    // The ABI sets one name at a time. First what changes is worked out on the headers
    // Envoy lends (no edit yet, so they stay valid): the names that go, and the names
    // whose values change. Then each is set (every value, in order) or removed.
    let wanted: Vec<(&[u8], &[u8])> = wanted
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_slice()))
        .collect();
    let (removed, changed) = {
        let Some(current) = stream_headers(filter, header_type) else {
            return BAD_ARGUMENT;
        };
        let (removed, changed) = pairs::edits(&current, &wanted);
        // Owned: the removals below change the map the borrowed names point into.
        let removed: Vec<Vec<u8>> = removed.into_iter().map(<[u8]>::to_vec).collect();
        (removed, changed)
    };
    let mut ok = true;
    for name in &removed {
        ok &= set_value(filter, header_type, name, None);
    }
    for at in changed {
        let Some(&(name, _)) = wanted.get(at) else {
            continue;
        };
        let mut values = pairs::values_of(&wanted, name);
        if let Some(first) = values.next() {
            ok &= set_value(filter, header_type, name, Some(first));
        }
        for value in values {
            // SAFETY: `filter` is live; the buffers are lent for the call.
            ok &= unsafe {
                ffi::envoy_dynamic_module_callback_http_add_header(
                    filter,
                    header_type,
                    ModuleBuffer::of(name),
                    ModuleBuffer::of(value),
                )
            };
        }
    }
    if ok {
        OK
    } else {
        BAD_ARGUMENT
    }
}

/// Sets every value of `name` to `value`, or removes the header with `None`.
fn set_value(filter: FilterEnvoyPtr, header_type: u32, name: &[u8], value: Option<&[u8]>) -> bool {
    let value = value.map_or(ModuleBuffer::NULL, ModuleBuffer::of);
    // SAFETY: `filter` is live; the buffers are lent for the call.
    unsafe {
        ffi::envoy_dynamic_module_callback_http_set_header(
            filter,
            header_type,
            ModuleBuffer::of(name),
            value,
        )
    }
}

pub unsafe fn proxy_get_header_map_value(
    map_type: u32,
    key_data: *const u8,
    key_size: usize,
    return_value_data: *mut *mut u8,
    return_value_size: *mut usize,
) -> u32 {
    // SAFETY: the caller lends the key.
    let key = unsafe { lent(key_data, key_size) };
    let shown = reply_headers(map_type, |headers| {
        headers
            .iter()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    });
    let value = match (stream_map(map_type), map_type) {
        _ if shown.is_some() => shown.flatten(),
        (Some(header_type), _) => {
            let Some((filter, _)) = target() else {
                return UNIMPLEMENTED;
            };
            let (mut result, mut count) = (EnvoyBuffer::EMPTY, 0usize);
            // SAFETY: `filter` is live; the key is lent; the out-pointers are writable.
            let ok = unsafe {
                ffi::envoy_dynamic_module_callback_http_get_header(
                    filter,
                    header_type,
                    ModuleBuffer::of(key),
                    &mut result,
                    0,
                    &mut count,
                )
            };
            // SAFETY: Envoy's buffer is valid until the hook returns.
            (ok && count > 0).then(|| unsafe { result.to_vec() })
        }
        (None, CALLOUT_HEADERS) => with_hook(|h| {
            h.reply.as_ref().and_then(|r| {
                r.headers
                    .iter()
                    .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(key))
                    .map(|(_, v)| v.clone())
            })
        })
        .flatten(),
        _ => None,
    };
    match value {
        Some(value) => {
            // SAFETY: the caller passes writable out-pointers.
            unsafe { give(value, return_value_data, return_value_size) };
            OK
        }
        None => NOT_FOUND,
    }
}

/// Sets, adds or removes one header of a stream map.
unsafe fn edit(
    map_type: u32,
    key: (*const u8, usize),
    value: Option<(*const u8, usize)>,
    add: bool,
) -> u32 {
    // SAFETY: the caller lends the key and value.
    let (key, value) = unsafe { (lent(key.0, key.1), value.map(|(d, s)| lent(d, s))) };
    let edited_reply = reply_headers(map_type, |headers| {
        let name = String::from_utf8_lossy(key).to_ascii_lowercase();
        if !add {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
        }
        if let Some(value) = value {
            headers.push((name, value.to_vec()));
        }
    });
    if edited_reply.is_some() {
        return OK;
    }
    let (Some(header_type), Some((filter, _))) = (stream_map(map_type), target()) else {
        return BAD_ARGUMENT;
    };
    let ok = if add {
        // SAFETY: `filter` is live; the buffers are lent for the call.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_add_header(
                filter,
                header_type,
                ModuleBuffer::of(key),
                ModuleBuffer::of(value.unwrap_or_default()),
            )
        }
    } else {
        set_value(filter, header_type, key, value)
    };
    if ok {
        OK
    } else {
        BAD_ARGUMENT
    }
}

pub unsafe fn proxy_replace_header_map_value(
    map_type: u32,
    key_data: *const u8,
    key_size: usize,
    value_data: *const u8,
    value_size: usize,
) -> u32 {
    // A value must not read as "remove": lend an empty slice, never null.
    let value = if value_data.is_null() {
        b"".as_ptr()
    } else {
        value_data
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        edit(
            map_type,
            (key_data, key_size),
            Some((value, value_size)),
            false,
        )
    }
}

pub unsafe fn proxy_remove_header_map_value(
    map_type: u32,
    key_data: *const u8,
    key_size: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    unsafe { edit(map_type, (key_data, key_size), None, false) }
}

pub unsafe fn proxy_add_header_map_value(
    map_type: u32,
    key_data: *const u8,
    key_size: usize,
    value_data: *const u8,
    value_size: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        edit(
            map_type,
            (key_data, key_size),
            Some((value_data, value_size)),
            true,
        )
    }
}

/// A property as Envoy's Wasm host encodes it: strings raw, integers 8 bytes little-endian.
enum Property {
    Text(u32),
    Integer(u32),
}

/// The properties the filters read that the ABI has attributes for.
fn property_attribute(path: &[&str]) -> Option<Property> {
    use ffi::attribute::*;
    Some(match path {
        ["request", "path"] => Property::Text(REQUEST_PATH),
        ["request", "url_path"] => Property::Text(REQUEST_URL_PATH),
        ["request", "host"] => Property::Text(REQUEST_HOST),
        ["request", "scheme"] => Property::Text(REQUEST_SCHEME),
        ["request", "method"] => Property::Text(REQUEST_METHOD),
        ["request", "id"] => Property::Text(REQUEST_ID),
        ["request", "protocol"] => Property::Text(REQUEST_PROTOCOL),
        ["response", "code"] => Property::Integer(RESPONSE_CODE),
        ["response", "code_details"] => Property::Text(RESPONSE_CODE_DETAILS),
        ["response", "flags"] => Property::Integer(RESPONSE_FLAGS),
        ["source", "address"] => Property::Text(SOURCE_ADDRESS),
        ["source", "port"] => Property::Integer(SOURCE_PORT),
        ["destination", "address"] => Property::Text(DESTINATION_ADDRESS),
        ["destination", "port"] => Property::Integer(DESTINATION_PORT),
        ["request", "duration"] => Property::Integer(REQUEST_DURATION),
        ["upstream", "request_attempt_count"] => Property::Integer(UPSTREAM_REQUEST_ATTEMPT_COUNT),
        ["xds", "cluster_name"] => Property::Text(XDS_CLUSTER_NAME),
        ["xds", "route_name"] => Property::Text(XDS_ROUTE_NAME),
        _ => return None,
    })
}

pub unsafe fn proxy_get_property(
    path_data: *const u8,
    path_size: usize,
    return_value_data: *mut *mut u8,
    return_value_size: *mut usize,
) -> u32 {
    // SAFETY: the caller lends the path.
    let path = text(unsafe { lent(path_data, path_size) });
    let parts: Vec<&str> = path.split('\0').collect();
    let value = match parts.as_slice() {
        ["plugin_root_id"] | ["plugin_name"] => {
            with_hook(|h| h.config.as_ref().map(|c| c.name.clone().into_bytes())).flatten()
        }
        other => match (property_attribute(other), target()) {
            (Some(Property::Text(id)), Some((filter, _))) => {
                let mut result = EnvoyBuffer::EMPTY;
                // SAFETY: `filter` is live; `result` is writable.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                        filter,
                        id,
                        &mut result,
                    )
                };
                // SAFETY: Envoy's buffer is valid until the hook returns.
                ok.then(|| unsafe { result.to_vec() })
            }
            (Some(Property::Integer(id)), Some((filter, _))) => {
                let mut result = 0u64;
                // SAFETY: `filter` is live; `result` is writable.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                        filter,
                        id,
                        &mut result,
                    )
                };
                ok.then(|| result.to_le_bytes().to_vec())
            }
            _ => None,
        },
    };
    match value {
        Some(value) => {
            // SAFETY: the caller passes writable out-pointers.
            unsafe { give(value, return_value_data, return_value_size) };
            OK
        }
        None => NOT_FOUND,
    }
}

pub unsafe fn proxy_set_property(_: *const u8, _: usize, _: *const u8, _: usize) -> u32 {
    UNIMPLEMENTED
}

pub unsafe fn proxy_get_shared_data(
    key_data: *const u8,
    key_size: usize,
    return_value_data: *mut *mut u8,
    return_value_size: *mut usize,
    return_cas: *mut u32,
) -> u32 {
    if with_hook(|h| h.config.is_none()).unwrap_or(true) {
        return UNIMPLEMENTED;
    }
    // SAFETY: the caller lends the key.
    let key = text(unsafe { lent(key_data, key_size) });
    match store::get(key) {
        Some((bytes, version)) => {
            // SAFETY: the caller passes writable out-pointers.
            unsafe {
                give(bytes, return_value_data, return_value_size);
                *return_cas = version;
            }
            OK
        }
        None => NOT_FOUND,
    }
}

pub unsafe fn proxy_set_shared_data(
    key_data: *const u8,
    key_size: usize,
    value_data: *const u8,
    value_size: usize,
    cas: u32,
) -> u32 {
    if with_hook(|h| h.config.is_none()).unwrap_or(true) {
        return UNIMPLEMENTED;
    }
    // SAFETY: the caller lends the key and value.
    let (key, value) = unsafe { (text(lent(key_data, key_size)), lent(value_data, value_size)) };
    match store::set(key, value, cas) {
        Ok(()) => OK,
        Err(store::WriteError::CasMismatch) => CAS_MISMATCH,
    }
}

pub unsafe fn proxy_continue_stream(stream_type: u32) -> u32 {
    let Some((filter, _)) = target() else {
        return BAD_ARGUMENT;
    };
    let action = match stream_type {
        0 => Deferred::ContinueRequest(filter),
        1 => Deferred::ContinueResponse(filter),
        _ => return BAD_ARGUMENT,
    };
    with_hook(|h| h.deferred.push(action));
    OK
}

pub unsafe fn proxy_send_local_response(
    status_code: u32,
    status_code_details_data: *const u8,
    status_code_details_size: usize,
    body_data: *const u8,
    body_size: usize,
    headers_data: *const u8,
    headers_size: usize,
    _grpc_status: i32,
) -> u32 {
    let Some((filter, context)) = target() else {
        return BAD_ARGUMENT;
    };
    // SAFETY: the caller lends every buffer.
    let (details, body, headers) = unsafe {
        (
            lent(status_code_details_data, status_code_details_size),
            lent(body_data, body_size),
            lent(headers_data, headers_size),
        )
    };
    let Some(headers) = pairs::decode(headers) else {
        return BAD_ARGUMENT;
    };
    let reply = LocalReply {
        status: status_code,
        details: details.to_vec(),
        headers,
        body: body.to_vec(),
    };
    // Like Envoy's Wasm host, one reply per stream: a second one replaces the first.
    with_hook(|h| {
        h.deferred
            .retain(|d| !matches!(d, Deferred::Reply(f, _, _) if *f == filter));
        h.deferred.push(Deferred::Reply(filter, context, reply));
    });
    OK
}

pub unsafe fn proxy_http_call(
    upstream_data: *const u8,
    upstream_size: usize,
    headers_data: *const u8,
    headers_size: usize,
    body_data: *const u8,
    body_size: usize,
    _trailers_data: *const u8,
    _trailers_size: usize,
    timeout: u32,
    return_token: *mut u32,
) -> u32 {
    let Some((filter, context)) = target() else {
        return UNIMPLEMENTED;
    };
    // SAFETY: the caller lends every buffer.
    let (cluster, headers, body) = unsafe {
        (
            lent(upstream_data, upstream_size),
            lent(headers_data, headers_size),
            lent(body_data, body_size),
        )
    };
    let Some(headers) = pairs::decode(headers) else {
        return BAD_ARGUMENT;
    };
    let mut headers: Vec<ffi::ModuleHttpHeader> = headers
        .iter()
        .map(|(k, v)| ffi::ModuleHttpHeader::of(k.as_bytes(), v))
        .collect();
    let mut envoy_id = 0u64;
    // SAFETY: `filter` is live; every buffer is lent for the call; `envoy_id` is writable.
    let result = unsafe {
        ffi::envoy_dynamic_module_callback_http_filter_http_callout(
            filter,
            &mut envoy_id,
            ModuleBuffer::of(cluster),
            headers.as_mut_ptr(),
            headers.len(),
            ModuleBuffer::of(body),
            u64::from(timeout),
        )
    };
    match result {
        ffi::CALLOUT_INIT_SUCCESS => {
            let token = super::note_callout(context, envoy_id);
            // SAFETY: the caller passes a writable token.
            unsafe { *return_token = token };
            OK
        }
        // Missing :method/:path/host, or no such cluster: the caller's mistake.
        1 | 2 => BAD_ARGUMENT,
        _ => INTERNAL_FAILURE,
    }
}

/// gRPC callouts have no counterpart in the dynamic module ABI.
pub unsafe fn proxy_grpc_call(
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    _: u32,
    _: *mut u32,
) -> u32 {
    UNIMPLEMENTED
}

pub unsafe fn proxy_grpc_cancel(_: u32) -> u32 {
    UNIMPLEMENTED
}

/// Switches to a root or a live stream of this worker; the dispatcher keeps which.
pub unsafe fn proxy_set_effective_context(context_id: u32) -> u32 {
    let own = with_hook(|h| h.own_context).unwrap_or(0);
    if context_id == own || super::is_root(context_id) || super::live_filter(context_id).is_some() {
        OK
    } else {
        BAD_ARGUMENT
    }
}

pub unsafe fn proxy_get_status(_: *mut u32, _: *mut *mut u8, _: *mut usize) -> u32 {
    UNIMPLEMENTED
}

/// Only `clear_route_cache` has a counterpart in the ABI.
pub unsafe fn proxy_call_foreign_function(
    function_name_data: *const u8,
    function_name_size: usize,
    _arguments_data: *const u8,
    _arguments_size: usize,
    results_data: *mut *mut u8,
    results_size: *mut usize,
) -> u32 {
    // SAFETY: the caller lends the name.
    let name = unsafe { lent(function_name_data, function_name_size) };
    if name != b"clear_route_cache" {
        return UNIMPLEMENTED;
    }
    let Some((filter, _)) = target() else {
        return UNIMPLEMENTED;
    };
    // SAFETY: `filter` is live; the out-pointers are writable.
    unsafe {
        ffi::envoy_dynamic_module_callback_http_clear_route_cache(filter);
        give(Vec::new(), results_data, results_size);
    }
    OK
}

pub unsafe fn proxy_define_metric(
    metric_type: u32,
    name_data: *const u8,
    name_size: usize,
    return_id: *mut u32,
) -> u32 {
    // SAFETY: the caller lends the name.
    let name = text(unsafe { lent(name_data, name_size) });
    match super::metric_id(metric_type, name) {
        Some(id) => {
            // SAFETY: the caller passes a writable id.
            unsafe { *return_id = id };
            OK
        }
        None => NOT_FOUND,
    }
}

/// The label values of a metric update: a pointer and a count, as the ABI takes them.
type Labels = (*const ffi::ModuleBuffer, usize);

/// Calls the config-level metric callback `call` for metric `id` (kind in its low bits; a
/// labelled family's member if [`super::LABELLED`] is set) with its label values.
fn update_metric(
    id: u32,
    value: u64,
    call: impl FnOnce(u32, ffi::ConfigEnvoyPtr, usize, Labels, u64) -> u32,
) -> u32 {
    let Some(config) = with_hook(|h| h.config.clone()).flatten() else {
        return UNIMPLEMENTED;
    };
    // Envoy's list of the configuration's metrics may grow on another worker meanwhile.
    let _reading = config
        .envoy_metrics
        .read()
        .unwrap_or_else(|p| p.into_inner());
    let (kind, index) = (id & 3, ((id & !super::LABELLED) >> 2) as usize);
    let result = if id & super::LABELLED == 0 {
        call(kind, config.envoy, index, (std::ptr::null(), 0), value)
    } else {
        super::with_member(&config, index, |envoy_id, values| {
            call(
                kind,
                config.envoy,
                envoy_id,
                (values.as_ptr(), values.len()),
                value,
            )
        })
        .unwrap_or(u32::MAX)
    };
    if result == ffi::METRICS_SUCCESS {
        OK
    } else {
        NOT_FOUND
    }
}

pub unsafe fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32 {
    update_metric(
        metric_id,
        offset.unsigned_abs(),
        |kind, config, id, (labels, count), value| {
            // SAFETY: the configuration is alive while its hooks run; the label values
            // are lent for the call.
            unsafe {
                match (kind, offset < 0) {
                    (0, false) => {
                        ffi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                            config, id, labels, count, value,
                        )
                    }
                    (1, false) => {
                        ffi::envoy_dynamic_module_callback_http_filter_config_increment_gauge(
                            config, id, labels, count, value,
                        )
                    }
                    (1, true) => {
                        ffi::envoy_dynamic_module_callback_http_filter_config_decrement_gauge(
                            config, id, labels, count, value,
                        )
                    }
                    _ => u32::MAX,
                }
            }
        },
    )
}

pub unsafe fn proxy_record_metric(metric_id: u32, value: u64) -> u32 {
    update_metric(
        metric_id,
        value,
        |kind, config, id, (labels, count), value| {
            // SAFETY: the configuration is alive while its hooks run; the label values are
            // lent for the call.
            unsafe {
                match kind {
                    1 => ffi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                        config, id, labels, count, value,
                    ),
                    2 => {
                        ffi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                            config, id, labels, count, value,
                        )
                    }
                    _ => u32::MAX,
                }
            }
        },
    )
}

pub unsafe fn proxy_get_metric(_: u32, _: *mut u64) -> u32 {
    UNIMPLEMENTED
}
