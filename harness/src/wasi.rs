//! The WASI calls (`wasi_snapshot_preview1`) a Rust `wasm32-wasip1` filter imports, served
//! the way proxy-wasm-cpp-host does: stdout and stderr go to the log, clocks read the
//! virtual clock, randomness is deterministic, everything else is refused.

use wasmtime::{Caller, Error, ExternType, Linker, Module, Result, Val, ValType};

use crate::guest_memory::{read, write, write_u32, write_u64};
use crate::headers::lossy;
use crate::logs::{LogLevel, LogOrigin};
use crate::vm_state::VmState;

const WASI: &str = "wasi_snapshot_preview1";

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const NOSYS: i32 = 52;
const NOTSUP: i32 = 58;

type C<'a> = Caller<'a, VmState>;

fn enter(c: &mut C<'_>) {
    c.data_mut().count_host_call("wasi");
}

/// Adds the WASI functions to the linker, and a stub answering `ENOSYS` for any other
/// WASI function the module imports.
pub(crate) fn define(linker: &mut Linker<VmState>, module: &Module) -> Result<()> {
    linker.func_wrap(WASI, "fd_write", fd_write)?;
    linker.func_wrap(
        WASI,
        "fd_read",
        |mut c: C<'_>, _: i32, _: i32, _: i32, _: i32| {
            enter(&mut c);
            Ok(NOSYS)
        },
    )?;
    linker.func_wrap(WASI, "fd_close", |mut c: C<'_>, _: i32| {
        enter(&mut c);
        Ok(BADF)
    })?;
    linker.func_wrap(
        WASI,
        "fd_seek",
        |mut c: C<'_>, _: i32, _: i64, _: i32, _: i32| {
            enter(&mut c);
            Ok(BADF)
        },
    )?;
    linker.func_wrap(WASI, "fd_fdstat_get", |mut c: C<'_>, fd: i32, ptr: i32| {
        enter(&mut c);
        if fd != 1 && fd != 2 {
            return Ok(BADF);
        }
        // filetype 0, flags 0, rights_base = FD_WRITE (64), rights_inheriting = 0.
        let mut stat = [0u8; 24];
        stat[8] = 64;
        Ok(if write(&mut c, ptr, &stat) {
            SUCCESS
        } else {
            FAULT
        })
    })?;
    linker.func_wrap(WASI, "fd_prestat_get", |mut c: C<'_>, _: i32, _: i32| {
        enter(&mut c);
        Ok(BADF)
    })?;
    linker.func_wrap(
        WASI,
        "fd_prestat_dir_name",
        |mut c: C<'_>, _: i32, _: i32, _: i32| {
            enter(&mut c);
            Ok(BADF)
        },
    )?;
    for (get, sizes) in [
        ("environ_get", "environ_sizes_get"),
        ("args_get", "args_sizes_get"),
    ] {
        linker.func_wrap(WASI, get, |mut c: C<'_>, _: i32, _: i32| {
            enter(&mut c);
            Ok(SUCCESS)
        })?;
        linker.func_wrap(WASI, sizes, |mut c: C<'_>, count: i32, size: i32| {
            enter(&mut c);
            Ok(
                if write_u32(&mut c, count, 0) && write_u32(&mut c, size, 0) {
                    SUCCESS
                } else {
                    FAULT
                },
            )
        })?;
    }
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: C<'_>, id: i32, _precision: i64, ptr: i32| {
            enter(&mut c);
            let clock = *c.data().shared.clock();
            let now = match id {
                0 => clock.now_ns(),
                1 => clock.monotonic_ns(),
                _ => return Ok(NOTSUP),
            };
            Ok(if write_u64(&mut c, ptr, now) {
                SUCCESS
            } else {
                FAULT
            })
        },
    )?;
    linker.func_wrap(WASI, "clock_res_get", |mut c: C<'_>, id: i32, ptr: i32| {
        enter(&mut c);
        if !(0..=1).contains(&id) {
            return Ok(NOTSUP);
        }
        Ok(if write_u64(&mut c, ptr, 1) {
            SUCCESS
        } else {
            FAULT
        })
    })?;
    linker.func_wrap(WASI, "random_get", |mut c: C<'_>, ptr: i32, len: i32| {
        enter(&mut c);
        if len < 0 {
            return Ok(INVAL);
        }
        let bytes: Vec<u8> = (0..len).map(|_| c.data_mut().random_byte()).collect();
        Ok(if write(&mut c, ptr, &bytes) {
            SUCCESS
        } else {
            FAULT
        })
    })?;
    linker.func_wrap(WASI, "sched_yield", |mut c: C<'_>| {
        enter(&mut c);
        Ok(SUCCESS)
    })?;
    linker.func_wrap(WASI, "proc_exit", |mut c: C<'_>, code: i32| -> Result<()> {
        enter(&mut c);
        Err(Error::msg(format!("wasi proc_exit({code})")))
    })?;
    define_missing_as_nosys(linker, module)
}

/// `fd_write`: stdout is logged at info, stderr at error, one entry per call without the
/// trailing newline; other descriptors are `EBADF`.
fn fd_write(mut c: C<'_>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> Result<i32> {
    enter(&mut c);
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(BADF),
    };
    let mut text = Vec::new();
    for i in 0..iovs_len {
        let Some(iov) = read(&mut c, iovs.wrapping_add(i * 8), 8) else {
            return Ok(FAULT);
        };
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let Some(chunk) = read(&mut c, ptr, len) else {
            return Ok(FAULT);
        };
        text.extend_from_slice(&chunk);
    }
    let written = text.len();
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    if written > 0 {
        c.data().log(level, lossy(&text), LogOrigin::Filter);
    }
    Ok(if write_u32(&mut c, nwritten, written as u32) {
        SUCCESS
    } else {
        FAULT
    })
}

/// The WASI functions `define` serves itself.
const SERVED: [&str; 16] = [
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_seek",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "sched_yield",
    "proc_exit",
];

fn define_missing_as_nosys(linker: &mut Linker<VmState>, module: &Module) -> Result<()> {
    for import in module.imports() {
        if import.module() != WASI || SERVED.contains(&import.name()) {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let results: Vec<ValType> = ty.results().collect();
        linker.func_new(WASI, import.name(), ty, move |mut c, _params, out| {
            enter(&mut c);
            for (slot, kind) in out.iter_mut().zip(&results) {
                *slot = match kind {
                    ValType::I64 => Val::I64(i64::from(NOSYS)),
                    _ => Val::I32(NOSYS),
                };
            }
            Ok(())
        })?;
    }
    Ok(())
}
