//! The event hooks Envoy resolves in a dynamic module, each a thin guarded call into the
//! dispatcher ([`crate::abi`]). Envoy refuses a module that lacks any of them, so the ones
//! meshward has no use for (streamed callouts, scheduling, watermarks) are here too and do
//! nothing. `envoy_dynamic_module_on_program_init` is made by
//! [`crate::register_filters!`], which knows the module's filters.

use super::ffi::{ConfigEnvoyPtr, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr};
use super::{stream_hook, CalloutReply, Outcome};
use crate::abi;
use std::ffi::c_void;

/// The pointer Envoy hands back for the module's configuration or filter.
type ModulePtr = *const c_void;

/// Headers-phase statuses: `Continue`, `StopAllIterationAndWatermark` (how Envoy's Wasm
/// filter pauses a stream, body included, until it is resumed).
fn headers_status(outcome: Outcome) -> u32 {
    match outcome {
        Outcome::Action(0) => 0,
        Outcome::Action(_) | Outcome::Replied => 4,
    }
}

/// Body statuses: `Continue`, `StopIterationAndBuffer` when paused, `StopIterationNoBuffer`
/// once replied.
fn body_status(outcome: Outcome) -> u32 {
    match outcome {
        Outcome::Action(0) => 0,
        Outcome::Action(_) => 1,
        Outcome::Replied => 3,
    }
}

/// Trailer statuses: `Continue`, `StopIteration`.
fn trailers_status(outcome: Outcome) -> u32 {
    u32::from(outcome != Outcome::Action(0))
}

/// # Safety
/// Called by Envoy with the buffers it owns for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModulePtr {
    // SAFETY: Envoy's buffers are valid for the call.
    let (name, config) = unsafe { (name.to_vec(), config.to_vec()) };
    super::config_new(envoy, name, config)
}

/// # Safety
/// Called by Envoy with a pointer `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ModulePtr) {
    // SAFETY: forwarded from Envoy.
    unsafe { super::config_destroy(config) }
}

/// # Safety
/// Called by Envoy with a live configuration.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ModulePtr,
    filter: FilterEnvoyPtr,
) -> ModulePtr {
    // SAFETY: forwarded from Envoy.
    unsafe { super::filter_new(config, filter) }
}

/// # Safety
/// Called by Envoy with a pointer `filter_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: ModulePtr) {
    // SAFETY: forwarded from Envoy.
    unsafe { super::filter_destroy(module) }
}

/// # Safety
/// Called by Envoy with the stream's two pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: FilterEnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    headers_status(unsafe {
        stream_hook(filter, module, "request_headers", true, true, |id| {
            abi::request_headers(id, end_of_stream)
        })
    })
}

/// # Safety
/// Called by Envoy with the stream's two pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter: FilterEnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    body_status(unsafe {
        stream_hook(filter, module, "request_body", true, true, |id| {
            let size = super::sys_body_size(false);
            abi::request_body(id, size, end_of_stream)
        })
    })
}

/// # Safety
/// Called by Envoy with the stream's two pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter: FilterEnvoyPtr,
    module: ModulePtr,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    trailers_status(unsafe {
        stream_hook(
            filter,
            module,
            "request_trailers",
            true,
            true,
            abi::request_trailers,
        )
    })
}

/// # Safety
/// Called by Envoy with the stream's two pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter: FilterEnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    headers_status(unsafe {
        stream_hook(filter, module, "response_headers", true, false, |id| {
            abi::response_headers(id, end_of_stream)
        })
    })
}

/// # Safety
/// Called by Envoy with the stream's two pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter: FilterEnvoyPtr,
    module: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    body_status(unsafe {
        stream_hook(filter, module, "response_body", true, false, |id| {
            let size = super::sys_body_size(true);
            abi::response_body(id, size, end_of_stream)
        })
    })
}

/// # Safety
/// Called by Envoy with the stream's two pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    filter: FilterEnvoyPtr,
    module: ModulePtr,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    trailers_status(unsafe {
        stream_hook(
            filter,
            module,
            "response_trailers",
            true,
            false,
            abi::response_trailers,
        )
    })
}

/// # Safety
/// Called by Envoy with the stream's two pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter: FilterEnvoyPtr,
    module: ModulePtr,
) {
    // SAFETY: forwarded from Envoy.
    unsafe {
        stream_hook(filter, module, "stream_complete", false, false, |id| {
            abi::stream_log(id);
            0
        })
    };
}

/// # Safety
/// Called by Envoy with the stream's two pointers and the reply's headers and body, valid
/// for the call (null when the callout failed).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter: FilterEnvoyPtr,
    module: ModulePtr,
    callout_id: u64,
    result: u32,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    // A failed call (reset, reply too large) reads as one with no headers, as in Wasm.
    let reply = if result == 0 {
        // SAFETY: Envoy's arrays hold the sizes it gives, valid for the call.
        unsafe { read_reply(headers, headers_size, body_chunks, body_chunks_size) }
    } else {
        CalloutReply::default()
    };
    // SAFETY: forwarded from Envoy.
    unsafe {
        stream_hook(filter, module, "http_callout_done", true, true, |id| {
            super::callout_done(id, callout_id, reply)
        })
    };
}

/// Copies a callout's reply out of Envoy's arrays.
///
/// # Safety
/// Each pointer must be null or hold its count of valid entries.
unsafe fn read_reply(
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) -> CalloutReply {
    let headers: &[EnvoyHttpHeader] = if headers.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(headers, headers_size) }
    };
    let chunks: &[EnvoyBuffer] = if body_chunks.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) }
    };
    CalloutReply {
        headers: headers
            .iter()
            .map(|h| {
                // SAFETY: Envoy's header bytes are valid for the call.
                let (k, v) = unsafe { h.to_pair() };
                (String::from_utf8_lossy(&k).into_owned(), v)
            })
            .collect(),
        // SAFETY: Envoy's chunks are valid for the call.
        body: chunks.iter().flat_map(|c| unsafe { c.to_vec() }).collect(),
    }
}

/// Streamed callouts: meshward makes none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter: FilterEnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// Streamed callouts: meshward makes none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter: FilterEnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// Streamed callouts: meshward makes none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter: FilterEnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

/// Streamed callouts: meshward makes none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter: FilterEnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
) {
}

/// Streamed callouts: meshward makes none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter: FilterEnvoyPtr,
    _module: ModulePtr,
    _stream: u64,
    _reason: u32,
) {
}

/// Scheduled events: meshward schedules none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter: FilterEnvoyPtr,
    _module: ModulePtr,
    _event: u64,
) {
}

/// Watermarks of a terminal filter: meshward's filters are not terminal.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter: FilterEnvoyPtr,
    _module: ModulePtr,
) {
}

/// Watermarks of a terminal filter: meshward's filters are not terminal.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter: FilterEnvoyPtr,
    _module: ModulePtr,
) {
}
