//! The Proxy-Wasm ABI 0.2.1 host functions (import module `env`): argument marshalling
//! between the VM's memory and the host's state, with the result codes Envoy returns.

use std::time::Duration;

use wasmtime::{Caller, Linker, Result};

use crate::callouts::{check_http_headers, grpc_service_cluster, GrpcCall, GrpcStream, HttpCall};
use crate::guest_memory::{copy_out, read, write_u32, write_u64};
use crate::headers::{decode_pairs, lossy, HeaderMap};
use crate::logs::{LogLevel, LogOrigin};
use crate::properties;
use crate::status::Status;
use crate::stream_data::LocalReply;
use crate::vm_state::{Tick, VmState, ROOT_CONTEXT_ID};

type C<'a> = Caller<'a, VmState>;

/// Counts a host call of kind `name` against the current callback.
fn enter(c: &mut C<'_>, name: &'static str) {
    c.data_mut().count_host_call(name);
}

fn code(status: Status) -> Result<i32> {
    Ok(status.code())
}

/// Adds every `env` function of ABI 0.2.1 to the linker.
pub(crate) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    define_general(linker)?;
    define_maps_and_buffers(linker)?;
    define_stream(linker)?;
    define_state(linker)?;
    define_callouts(linker)?;
    Ok(())
}

fn define_general(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| {
            enter(&mut c, "proxy_log");
            let Some(level) = LogLevel::from_abi(level) else {
                return code(Status::BadArgument);
            };
            let Some(message) = read(&mut c, ptr, len) else {
                return code(Status::InvalidMemoryAccess);
            };
            c.data().log(level, lossy(&message), LogOrigin::Filter);
            code(Status::Ok)
        },
    )?;
    linker.func_wrap("env", "proxy_get_log_level", |mut c: C<'_>, ret: i32| {
        enter(&mut c, "proxy_get_log_level");
        let level = c.data().shared.log_level as u32;
        code(if write_u32(&mut c, ret, level) {
            Status::Ok
        } else {
            Status::InvalidMemoryAccess
        })
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: i32| {
            enter(&mut c, "proxy_get_current_time_nanoseconds");
            let clock = *c.data().shared.clock();
            code(if clock.unreadable {
                Status::InternalFailure
            } else if write_u64(&mut c, ret, clock.now_ns()) {
                Status::Ok
            } else {
                Status::InvalidMemoryAccess
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, period: i32| {
            enter(&mut c, "proxy_set_tick_period_milliseconds");
            let now = c.data().shared.clock().now_ns();
            let period_ns = u64::from(period as u32) * 1_000_000;
            c.data_mut().tick = (period_ns > 0).then_some(Tick {
                period_ns,
                next_ns: now + period_ns,
            });
            code(Status::Ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: i32| {
            enter(&mut c, "proxy_set_effective_context");
            let id = id as u32;
            if !c.data().has_context(id) {
                return code(Status::BadArgument);
            }
            let state = c.data_mut();
            state.effective = Some(id);
            if id != ROOT_CONTEXT_ID {
                state.acting_for = Some(id);
            }
            code(Status::Ok)
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: C<'_>| {
        enter(&mut c, "proxy_done");
        code(Status::Ok)
    })?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>,
         name_ptr: i32,
         name_len: i32,
         args_ptr: i32,
         args_len: i32,
         ret_ptr: i32,
         ret_size: i32| {
            enter(&mut c, "proxy_call_foreign_function");
            let (Some(name), Some(args)) = (
                read(&mut c, name_ptr, name_len),
                read(&mut c, args_ptr, args_len),
            ) else {
                return code(Status::InvalidMemoryAccess);
            };
            let Some(function) = c.data().shared.foreign_function(&lossy(&name)) else {
                return code(Status::NotFound);
            };
            match function(&args) {
                Ok(result) if ret_ptr != 0 => code(copy_out(&mut c, &result, ret_ptr, ret_size)?),
                Ok(_) => code(Status::Ok),
                Err(status) => code(status),
            }
        },
    )?;
    Ok(())
}

fn define_maps_and_buffers(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, map: i32, key_ptr: i32, key_len: i32, ret_ptr: i32, ret_size: i32| {
            enter(&mut c, "proxy_get_header_map_value");
            let Some(key) = read(&mut c, key_ptr, key_len) else {
                return code(Status::InvalidMemoryAccess);
            };
            let value = match c.data().read_map(map) {
                Ok(headers) => headers.get_bytes(&key).map(<[u8]>::to_vec),
                Err(status) => return code(status),
            };
            match value {
                Some(value) => code(copy_out(&mut c, &value, ret_ptr, ret_size)?),
                None => code(Status::NotFound),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, map: i32, ret_ptr: i32, ret_size: i32| {
            enter(&mut c, "proxy_get_header_map_pairs");
            if !(0..=7).contains(&map) {
                return code(Status::BadArgument);
            }
            // Envoy answers an unavailable map with an empty list, not an error.
            let wire = match c.data().read_map(map) {
                Ok(headers) if !headers.is_empty() => headers.to_wire(),
                _ => Vec::new(),
            };
            code(copy_out(&mut c, &wire, ret_ptr, ret_size)?)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, map: i32, ret: i32| {
            enter(&mut c, "proxy_get_header_map_size");
            let size = match c.data_mut().write_map(map) {
                Ok(headers) => headers
                    .iter_bytes()
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>(),
                Err(status) => return code(status),
            };
            code(if write_u32(&mut c, ret, size as u32) {
                Status::Ok
            } else {
                Status::InvalidMemoryAccess
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, map: i32, ptr: i32, len: i32| {
            enter(&mut c, "proxy_set_header_map_pairs");
            let Some(wire) = read(&mut c, ptr, len) else {
                return code(Status::InvalidMemoryAccess);
            };
            code(match c.data_mut().write_map(map) {
                Ok(headers) => {
                    headers.replace_with(decode_pairs(&wire));
                    Status::Ok
                }
                Err(status) => status,
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, map: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32| {
            enter(&mut c, "proxy_add_header_map_value");
            let (Some(key), Some(value)) = (
                read(&mut c, key_ptr, key_len),
                read(&mut c, value_ptr, value_len),
            ) else {
                return code(Status::InvalidMemoryAccess);
            };
            code(match c.data_mut().write_map(map) {
                Ok(headers) => {
                    headers.add(&key, &value);
                    Status::Ok
                }
                Err(status) => status,
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, map: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32| {
            enter(&mut c, "proxy_replace_header_map_value");
            let (Some(key), Some(value)) = (
                read(&mut c, key_ptr, key_len),
                read(&mut c, value_ptr, value_len),
            ) else {
                return code(Status::InvalidMemoryAccess);
            };
            code(match c.data_mut().write_map(map) {
                Ok(headers) => {
                    headers.set(&key, &value);
                    Status::Ok
                }
                Err(status) => status,
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, map: i32, key_ptr: i32, key_len: i32| {
            enter(&mut c, "proxy_remove_header_map_value");
            let Some(key) = read(&mut c, key_ptr, key_len) else {
                return code(Status::InvalidMemoryAccess);
            };
            code(match c.data_mut().write_map(map) {
                Ok(headers) => {
                    headers.remove(&key);
                    Status::Ok
                }
                Err(status) => status,
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, buffer: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| {
            enter(&mut c, "proxy_get_buffer_bytes");
            let bytes = match c.data().read_buffer(buffer) {
                Ok(bytes) => bytes,
                Err(status) => return code(status),
            };
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            if start.checked_add(max).is_none() {
                return code(Status::BadArgument);
            }
            let end = (start + max).min(bytes.len());
            if end <= start {
                return code(Status::Ok);
            }
            code(copy_out(&mut c, &bytes[start..end], ret_ptr, ret_size)?)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: C<'_>, buffer: i32, len_ptr: i32, flags_ptr: i32| {
            enter(&mut c, "proxy_get_buffer_status");
            let len = match c.data().read_buffer(buffer) {
                Ok(bytes) => bytes.len(),
                Err(status) => return code(status),
            };
            code(
                if write_u32(&mut c, len_ptr, len as u32) && write_u32(&mut c, flags_ptr, 0) {
                    Status::Ok
                } else {
                    Status::InvalidMemoryAccess
                },
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, buffer: i32, start: i32, len: i32, ptr: i32, size: i32| {
            enter(&mut c, "proxy_set_buffer_bytes");
            let Some(data) = read(&mut c, ptr, size) else {
                return code(Status::InvalidMemoryAccess);
            };
            let status = c.data_mut().write_buffer(
                buffer,
                start as u32 as usize,
                len as u32 as usize,
                &data,
            );
            code(status)
        },
    )?;
    Ok(())
}

fn define_stream(linker: &mut Linker<VmState>) -> Result<()> {
    fn continue_stream(c: &mut C<'_>, stream_type: i32) -> Result<i32> {
        let status = match stream_type {
            0 | 1 => {
                // Envoy's `continueStream` forgets the request's maps either way; the
                // response's stay where they are.
                if let Some(stream) = c.data_mut().stream_mut() {
                    if stream_type == 0 {
                        stream.continue_request = true;
                    } else {
                        stream.continue_response = true;
                    }
                    stream.detach_request();
                }
                Status::Ok
            }
            2 => Status::Ok,
            3 => Status::Unimplemented,
            _ => Status::BadArgument,
        };
        code(status)
    }
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C<'_>, stream_type: i32| {
            enter(&mut c, "proxy_continue_stream");
            continue_stream(&mut c, stream_type)
        },
    )?;
    // `proxy_continue_request`, `proxy_continue_response` and `proxy_clear_route_cache`
    // exist only for ABI 0.1.0 in proxy-wasm-cpp-host (`registerCallbacks`): Envoy refuses
    // to load a 0.2.1 module that imports them, so the harness does not define them.
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: C<'_>, stream_type: i32| {
            enter(&mut c, "proxy_close_stream");
            if !(0..=3).contains(&stream_type) {
                return code(Status::BadArgument);
            }
            if stream_type <= 1 {
                if let Some(stream) = c.data_mut().stream_mut() {
                    stream.reset = true;
                }
            }
            code(Status::Ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc_status: i32| {
            enter(&mut c, "proxy_send_local_response");
            let (Some(details), Some(body), Some(headers)) = (
                read(&mut c, details_ptr, details_len),
                read(&mut c, body_ptr, body_len),
                read(&mut c, headers_ptr, headers_len),
            ) else {
                return code(Status::InvalidMemoryAccess);
            };
            let mut extra = HeaderMap::new();
            extra.replace_with(decode_pairs(&headers));
            if let Some(stream) = c.data_mut().stream_mut() {
                if stream.local_reply.is_none() {
                    stream.local_reply = Some(LocalReply {
                        status: status as u32,
                        body,
                        headers: extra,
                        details: lossy(&details),
                        // Envoy keeps only a known code (0-16); the SDKs send -1 for none.
                        grpc_status: u32::try_from(grpc_status).ok().filter(|s| *s <= 16),
                    });
                }
            }
            code(Status::Ok)
        },
    )?;
    Ok(())
}

fn define_state(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, path_ptr: i32, path_len: i32, ret_ptr: i32, ret_size: i32| {
            enter(&mut c, "proxy_get_property");
            let Some(path) = read(&mut c, path_ptr, path_len) else {
                return code(Status::InvalidMemoryAccess);
            };
            let state = c.data();
            let now = state.shared.clock().now_ns() as i64;
            let value = properties::lookup(&state.shared.plugin, state.stream(), &path, now);
            match value {
                Some(value) => code(copy_out(&mut c, &value, ret_ptr, ret_size)?),
                None => code(Status::NotFound),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, path_ptr: i32, path_len: i32, value_ptr: i32, value_len: i32| {
            enter(&mut c, "proxy_set_property");
            let (Some(path), Some(value)) = (
                read(&mut c, path_ptr, path_len),
                read(&mut c, value_ptr, value_len),
            ) else {
                return code(Status::InvalidMemoryAccess);
            };
            code(match c.data_mut().stream_mut() {
                Some(stream) => {
                    stream.set_properties.insert(path, value);
                    Status::Ok
                }
                None => Status::NotFound,
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, key_ptr: i32, key_len: i32, ret_ptr: i32, ret_size: i32, cas_ptr: i32| {
            enter(&mut c, "proxy_get_shared_data");
            let Some(key) = read(&mut c, key_ptr, key_len) else {
                return code(Status::InvalidMemoryAccess);
            };
            let state = c.data();
            let found = state
                .shared
                .registry()
                .lock()
                .get(&state.shared.plugin.vm_id, &key);
            match found {
                Ok((value, cas)) => {
                    let status = copy_out(&mut c, &value, ret_ptr, ret_size)?;
                    if status != Status::Ok {
                        return code(status);
                    }
                    code(if write_u32(&mut c, cas_ptr, cas) {
                        Status::Ok
                    } else {
                        Status::InvalidMemoryAccess
                    })
                }
                Err(status) => code(status),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32, cas: i32| {
            enter(&mut c, "proxy_set_shared_data");
            let (Some(key), Some(value)) = (
                read(&mut c, key_ptr, key_len),
                read(&mut c, value_ptr, value_len),
            ) else {
                return code(Status::InvalidMemoryAccess);
            };
            let state = c.data();
            let result = state.shared.registry().lock().set(
                &state.shared.plugin.vm_id,
                &key,
                &value,
                cas as u32,
            );
            code(result.err().unwrap_or(Status::Ok))
        },
    )?;
    define_queues(linker)?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: i32, name_ptr: i32, name_len: i32, ret: i32| {
            enter(&mut c, "proxy_define_metric");
            let Some(name) = read(&mut c, name_ptr, name_len) else {
                return code(Status::InvalidMemoryAccess);
            };
            let state = c.data_mut();
            let shared = state.shared.clone();
            let defined =
                state
                    .metric_ids
                    .define(&mut shared.metrics(), kind as u32, &lossy(&name));
            match defined {
                Ok(id) => code(if write_u32(&mut c, ret, id) {
                    Status::Ok
                } else {
                    Status::InvalidMemoryAccess
                }),
                Err(status) => code(status),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, offset: i64| {
            enter(&mut c, "proxy_increment_metric");
            let state = c.data();
            let result = state
                .metric_ids
                .increment(&mut state.shared.metrics(), id as u32, offset);
            code(result.err().unwrap_or(Status::Ok))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: C<'_>, id: i32, value: i64| {
            enter(&mut c, "proxy_record_metric");
            let state = c.data();
            let result =
                state
                    .metric_ids
                    .record(&mut state.shared.metrics(), id as u32, value as u64);
            code(result.err().unwrap_or(Status::Ok))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, ret: i32| {
            enter(&mut c, "proxy_get_metric");
            let state = c.data();
            let result = state.metric_ids.get(&mut state.shared.metrics(), id as u32);
            match result {
                Ok(value) => code(if write_u64(&mut c, ret, value) {
                    Status::Ok
                } else {
                    Status::InvalidMemoryAccess
                }),
                Err(status) => code(status),
            }
        },
    )?;
    Ok(())
}

/// Shared queues as proxy-wasm-cpp-host keeps them: keyed by VM id and name, registered
/// for the caller's root context, which is told of each enqueue by `proxy_on_queue_ready`.
fn define_queues(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, name_ptr: i32, name_len: i32, token_ptr: i32| {
            enter(&mut c, "proxy_register_shared_queue");
            let Some(name) = read(&mut c, name_ptr, name_len) else {
                return code(Status::InvalidMemoryAccess);
            };
            let state = c.data();
            let owner = state.queue_owner();
            let token = state.shared.registry().lock().register_queue(
                &state.shared.plugin.vm_id,
                &name,
                owner,
            );
            code(if write_u32(&mut c, token_ptr, token) {
                Status::Ok
            } else {
                Status::InvalidMemoryAccess
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vm_ptr: i32, vm_len: i32, name_ptr: i32, name_len: i32, token_ptr: i32| {
            enter(&mut c, "proxy_resolve_shared_queue");
            let (Some(vm_id), Some(name)) = (
                read(&mut c, vm_ptr, vm_len),
                read(&mut c, name_ptr, name_len),
            ) else {
                return code(Status::InvalidMemoryAccess);
            };
            let state = c.data();
            // An empty VM id means the caller's own, as in proxy-wasm-cpp-host.
            let vm_id = if vm_id.is_empty() {
                state.shared.plugin.vm_id.clone()
            } else {
                lossy(&vm_id)
            };
            let resolved = state.shared.registry().lock().resolve_queue(&vm_id, &name);
            match resolved {
                Ok(token) => code(if write_u32(&mut c, token_ptr, token) {
                    Status::Ok
                } else {
                    Status::InvalidMemoryAccess
                }),
                Err(status) => code(status),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, token: i32, value_ptr: i32, value_len: i32| {
            enter(&mut c, "proxy_enqueue_shared_queue");
            let Some(value) = read(&mut c, value_ptr, value_len) else {
                return code(Status::InvalidMemoryAccess);
            };
            let result = c
                .data()
                .shared
                .registry()
                .lock()
                .enqueue(token as u32, &value);
            code(result.err().unwrap_or(Status::Ok))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, token: i32, ret_ptr: i32, ret_size: i32| {
            enter(&mut c, "proxy_dequeue_shared_queue");
            let taken = c.data().shared.registry().lock().dequeue(token as u32);
            match taken {
                Ok(value) => code(copy_out(&mut c, &value, ret_ptr, ret_size)?),
                Err(status) => code(status),
            }
        },
    )?;
    Ok(())
}

/// The cluster a gRPC call or stream targets, answered as Envoy does: a serialized
/// `GrpcService` naming an unknown cluster fails to start (`InternalFailure`), one naming
/// no Envoy gRPC cluster is `BadArgument`, and bytes that are no `GrpcService` must be a
/// known cluster's name (else `ParseFailure`).
fn grpc_cluster(c: &C<'_>, service: &[u8]) -> Result<String, Status> {
    let known = |cluster: &str| c.data().shared.clusters.contains(cluster);
    match grpc_service_cluster(service) {
        Some(Some(cluster)) if known(&cluster) => Ok(cluster),
        Some(Some(_)) => Err(Status::InternalFailure),
        Some(None) => Err(Status::BadArgument),
        None if known(&lossy(service)) => Ok(lossy(service)),
        None => Err(Status::ParseFailure),
    }
}

/// Whether a gRPC token names a stream: Envoy gives streams even tokens, calls odd ones.
/// Where a gRPC call or stream goes, read from the filter's memory.
struct GrpcTarget {
    cluster: String,
    service: String,
    method: String,
    initial_metadata: HeaderMap,
}

/// The arguments `proxy_grpc_call` and `proxy_grpc_stream` share, each a (pointer, length):
/// the upstream (a cluster name or a serialized `GrpcService`), the service, the method and
/// the initial metadata. `InvalidMemoryAccess` for a bad pointer, else the cluster's status.
fn grpc_target(
    c: &mut C<'_>,
    upstream: (i32, i32),
    service: (i32, i32),
    method: (i32, i32),
    metadata: (i32, i32),
) -> Result<GrpcTarget, Status> {
    let (Some(upstream), Some(service), Some(method), Some(metadata)) = (
        read(c, upstream.0, upstream.1),
        read(c, service.0, service.1),
        read(c, method.0, method.1),
        read(c, metadata.0, metadata.1),
    ) else {
        return Err(Status::InvalidMemoryAccess);
    };
    let cluster = grpc_cluster(c, &upstream)?;
    let mut initial_metadata = HeaderMap::new();
    initial_metadata.replace_with(decode_pairs(&metadata));
    Ok(GrpcTarget {
        cluster,
        service: lossy(&service),
        method: lossy(&method),
        initial_metadata,
    })
}

fn is_stream_token(token: i32) -> bool {
    token % 2 == 0
}

fn timeout_of(ms: i32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

fn define_callouts(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         cluster_ptr: i32,
         cluster_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         body_ptr: i32,
         body_len: i32,
         trailers_ptr: i32,
         trailers_len: i32,
         timeout_ms: i32,
         ret: i32| {
            enter(&mut c, "proxy_http_call");
            let (Some(cluster), Some(headers), Some(body), Some(trailers)) = (
                read(&mut c, cluster_ptr, cluster_len),
                read(&mut c, headers_ptr, headers_len),
                read(&mut c, body_ptr, body_len),
                read(&mut c, trailers_ptr, trailers_len),
            ) else {
                return code(Status::InvalidMemoryAccess);
            };
            if !write_u32(&mut c, ret, 0) {
                return code(Status::InvalidMemoryAccess);
            }
            let cluster = lossy(&cluster);
            if timeout_ms < 0 || !c.data().shared.clusters.contains(&cluster) {
                return code(Status::BadArgument);
            }
            let mut request_headers = HeaderMap::new();
            request_headers.replace_with(decode_pairs(&headers));
            if let Err(status) = check_http_headers(&request_headers) {
                return code(status);
            }
            if !body.is_empty() {
                request_headers.set("content-length", body.len().to_string());
            }
            let mut request_trailers = HeaderMap::new();
            request_trailers.replace_with(decode_pairs(&trailers));
            let now = c.data().shared.clock().now_ns();
            let state = c.data_mut();
            let token = state.callouts.next_http_token();
            let timeout = timeout_of(timeout_ms);
            let call = HttpCall {
                token,
                worker: state.worker,
                context_id: state.context(),
                cluster,
                headers: request_headers,
                body,
                trailers: request_trailers,
                timeout,
                deadline_ns: timeout.map(|t| now + t.as_nanos() as u64),
            };
            state.callouts.http.insert(token, call);
            code(if write_u32(&mut c, ret, token) {
                Status::Ok
            } else {
                Status::InvalidMemoryAccess
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: C<'_>,
         service_ptr: i32,
         service_len: i32,
         name_ptr: i32,
         name_len: i32,
         method_ptr: i32,
         method_len: i32,
         metadata_ptr: i32,
         metadata_len: i32,
         message_ptr: i32,
         message_len: i32,
         timeout_ms: i32,
         ret: i32| {
            enter(&mut c, "proxy_grpc_call");
            let Some(message) = read(&mut c, message_ptr, message_len) else {
                return code(Status::InvalidMemoryAccess);
            };
            let target = match grpc_target(
                &mut c,
                (service_ptr, service_len),
                (name_ptr, name_len),
                (method_ptr, method_len),
                (metadata_ptr, metadata_len),
            ) {
                Ok(target) => target,
                Err(status) => return code(status),
            };
            let now = c.data().shared.clock().now_ns();
            let state = c.data_mut();
            let token = state.callouts.next_grpc_token(false);
            let timeout = timeout_of(timeout_ms);
            let call = GrpcCall {
                token,
                worker: state.worker,
                context_id: state.context(),
                cluster: target.cluster,
                service: target.service,
                method: target.method,
                initial_metadata: target.initial_metadata,
                message,
                timeout,
                deadline_ns: timeout.map(|t| now + t.as_nanos() as u64),
            };
            state.callouts.grpc.insert(token, call);
            code(if write_u32(&mut c, ret, token) {
                Status::Ok
            } else {
                Status::InvalidMemoryAccess
            })
        },
    )?;
    define_grpc_streams(linker)?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: i32, ret_ptr: i32, ret_size: i32| {
            enter(&mut c, "proxy_get_status");
            let (status, message) = c.data().status.clone();
            if !write_u32(&mut c, code_ptr, status) {
                return code(Status::InvalidMemoryAccess);
            }
            code(copy_out(&mut c, &message, ret_ptr, ret_size)?)
        },
    )?;
    Ok(())
}

/// `proxy_grpc_close` and `proxy_grpc_cancel`: a unary call is forgotten either way; a
/// stream is marked by `mark` (half-closed by the filter, or cancelled).
fn end_grpc(
    c: &mut C<'_>,
    name: &'static str,
    token: i32,
    mark: fn(&mut GrpcStream),
) -> Result<i32> {
    enter(c, name);
    let callouts = &mut c.data_mut().callouts;
    if !is_stream_token(token) {
        let removed = callouts.grpc.remove(&(token as u32));
        return code(removed.map_or(Status::NotFound, |_| Status::Ok));
    }
    match callouts.live_stream(token as u32) {
        Some(stream) => {
            mark(stream);
            code(Status::Ok)
        }
        None => code(Status::NotFound),
    }
}

/// `proxy_grpc_stream`, `proxy_grpc_send`, and `proxy_grpc_close`/`proxy_grpc_cancel` for
/// both calls and streams, with the results Envoy's `Context` gives.
fn define_grpc_streams(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut c: C<'_>,
         service_ptr: i32,
         service_len: i32,
         name_ptr: i32,
         name_len: i32,
         method_ptr: i32,
         method_len: i32,
         metadata_ptr: i32,
         metadata_len: i32,
         ret: i32| {
            enter(&mut c, "proxy_grpc_stream");
            let target = match grpc_target(
                &mut c,
                (service_ptr, service_len),
                (name_ptr, name_len),
                (method_ptr, method_len),
                (metadata_ptr, metadata_len),
            ) {
                Ok(target) => target,
                Err(status) => return code(status),
            };
            let state = c.data_mut();
            let token = state.callouts.next_grpc_token(true);
            let stream = GrpcStream {
                token,
                worker: state.worker,
                context_id: state.context(),
                cluster: target.cluster,
                service: target.service,
                method: target.method,
                initial_metadata: target.initial_metadata,
                messages: Vec::new(),
                end_stream: false,
                closed_by_filter: false,
                cancelled: false,
                closed_by_upstream: None,
            };
            state.callouts.grpc_streams.insert(token, stream);
            code(if write_u32(&mut c, ret, token) {
                Status::Ok
            } else {
                Status::InvalidMemoryAccess
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut c: C<'_>, token: i32, ptr: i32, len: i32, end_stream: i32| {
            enter(&mut c, "proxy_grpc_send");
            if !is_stream_token(token) {
                return code(Status::BadArgument);
            }
            let Some(message) = read(&mut c, ptr, len) else {
                return code(Status::InvalidMemoryAccess);
            };
            let Some(stream) = c.data_mut().callouts.live_stream(token as u32) else {
                return code(Status::NotFound);
            };
            stream.messages.push(message);
            stream.end_stream |= end_stream != 0;
            code(Status::Ok)
        },
    )?;
    linker.func_wrap("env", "proxy_grpc_close", |mut c: C<'_>, token: i32| {
        end_grpc(&mut c, "proxy_grpc_close", token, |stream| {
            stream.closed_by_filter = true
        })
    })?;
    linker.func_wrap("env", "proxy_grpc_cancel", |mut c: C<'_>, token: i32| {
        end_grpc(&mut c, "proxy_grpc_cancel", token, |stream| {
            stream.cancelled = true
        })
    })?;
    Ok(())
}
