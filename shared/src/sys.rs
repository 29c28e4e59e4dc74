//! The raw Proxy-Wasm ABI 0.2.1 imports, and stand-ins for builds that are not wasm.
//!
//! Only `host.rs` calls these. On a host build (unit tests, clippy) there is no
//! proxy to call, so every function answers `Unimplemented`; that keeps the
//! filter crates linkable and testable on the host without pretending to work.
//! With the `native` feature they are Envoy's dynamic module callbacks (`native::sys`).

#![allow(clippy::too_many_arguments, missing_docs)]

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
extern "C" {
    pub fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    pub fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    pub fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
    pub fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    pub fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_remove_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
    ) -> u32;
    pub fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    pub fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    pub fn proxy_continue_stream(stream_type: u32) -> u32;
    pub fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    pub fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout: u32,
        return_token: *mut u32,
    ) -> u32;
    pub fn proxy_grpc_call(
        upstream_data: *const u8,
        upstream_size: usize,
        service_name_data: *const u8,
        service_name_size: usize,
        method_name_data: *const u8,
        method_name_size: usize,
        initial_metadata_data: *const u8,
        initial_metadata_size: usize,
        message_data: *const u8,
        message_size: usize,
        timeout: u32,
        return_token: *mut u32,
    ) -> u32;
    pub fn proxy_grpc_cancel(token: u32) -> u32;
    pub fn proxy_set_effective_context(context_id: u32) -> u32;
    pub fn proxy_get_status(
        return_code: *mut u32,
        return_message_data: *mut *mut u8,
        return_message_size: *mut usize,
    ) -> u32;
    pub fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    pub fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    pub fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    pub fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    pub fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
}

#[cfg(all(not(target_arch = "wasm32"), not(feature = "native")))]
pub use host_stand_ins::*;

#[cfg(all(not(target_arch = "wasm32"), feature = "native"))]
pub use crate::native::sys::*;

/// Outside wasm there is no proxy: every call answers `Unimplemented` (12).
#[cfg(all(not(target_arch = "wasm32"), not(feature = "native")))]
mod host_stand_ins {
    const UNIMPLEMENTED: u32 = 12;

    macro_rules! stand_in {
        ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
            $(
                /// Stand-in outside wasm: answers `Unimplemented`.
                ///
                /// # Safety
                /// Safe to call with any arguments; it reads and writes nothing.
                pub unsafe fn $name($(_: $ty),*) -> u32 {
                    UNIMPLEMENTED
                }
            )*
        };
    }

    stand_in! {
        proxy_log(a: u32, b: *const u8, c: usize);
        proxy_get_current_time_nanoseconds(a: *mut u64);
        proxy_set_tick_period_milliseconds(a: u32);
        proxy_get_buffer_bytes(a: u32, b: usize, c: usize, d: *mut *mut u8, e: *mut usize);
        proxy_set_buffer_bytes(a: u32, b: usize, c: usize, d: *const u8, e: usize);
        proxy_get_header_map_pairs(a: u32, b: *mut *mut u8, c: *mut usize);
        proxy_set_header_map_pairs(a: u32, b: *const u8, c: usize);
        proxy_get_header_map_value(a: u32, b: *const u8, c: usize, d: *mut *mut u8, e: *mut usize);
        proxy_replace_header_map_value(a: u32, b: *const u8, c: usize, d: *const u8, e: usize);
        proxy_remove_header_map_value(a: u32, b: *const u8, c: usize);
        proxy_add_header_map_value(a: u32, b: *const u8, c: usize, d: *const u8, e: usize);
        proxy_get_property(a: *const u8, b: usize, c: *mut *mut u8, d: *mut usize);
        proxy_set_property(a: *const u8, b: usize, c: *const u8, d: usize);
        proxy_get_shared_data(a: *const u8, b: usize, c: *mut *mut u8, d: *mut usize, e: *mut u32);
        proxy_set_shared_data(a: *const u8, b: usize, c: *const u8, d: usize, e: u32);
        proxy_continue_stream(a: u32);
        proxy_send_local_response(a: u32, b: *const u8, c: usize, d: *const u8, e: usize, f: *const u8, g: usize, h: i32);
        proxy_http_call(a: *const u8, b: usize, c: *const u8, d: usize, e: *const u8, f: usize, g: *const u8, h: usize, i: u32, j: *mut u32);
        proxy_grpc_call(a: *const u8, b: usize, c: *const u8, d: usize, e: *const u8, f: usize, g: *const u8, h: usize, i: *const u8, j: usize, k: u32, l: *mut u32);
        proxy_grpc_cancel(a: u32);
        proxy_set_effective_context(a: u32);
        proxy_get_status(a: *mut u32, b: *mut *mut u8, c: *mut usize);
        proxy_call_foreign_function(a: *const u8, b: usize, c: *const u8, d: usize, e: *mut *mut u8, f: *mut usize);
        proxy_define_metric(a: u32, b: *const u8, c: usize, d: *mut u32);
        proxy_increment_metric(a: u32, b: i64);
        proxy_record_metric(a: u32, b: u64);
        proxy_get_metric(a: u32, b: *mut u64);
    }
}
