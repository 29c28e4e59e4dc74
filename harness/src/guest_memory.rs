//! The VM's linear memory as host functions see it: bounds-checked reads and writes, and
//! bytes handed to the VM through its allocator, as proxy-wasm-cpp-host does. `abi` and
//! `wasi` both use it.

use wasmtime::{Caller, Result};

use crate::status::Status;
use crate::vm_state::VmState;

type C<'a> = Caller<'a, VmState>;

fn range(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    Some(start..end)
}

/// Bytes from the VM's memory, or `None` if the range is out of bounds.
pub(crate) fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let memory = c.data().memory?;
    memory.data(&*c).get(range(ptr, len)?).map(<[u8]>::to_vec)
}

/// Writes bytes into the VM's memory; false if out of bounds.
pub(crate) fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> bool {
    let Some(memory) = c.data().memory else {
        return false;
    };
    let Some(span) = range(ptr, bytes.len() as i32) else {
        return false;
    };
    match memory.data_mut(&mut *c).get_mut(span) {
        Some(target) => {
            target.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// Writes a little-endian u32.
pub(crate) fn write_u32(c: &mut C<'_>, ptr: i32, value: u32) -> bool {
    write(c, ptr, &value.to_le_bytes())
}

/// Writes a little-endian u64.
pub(crate) fn write_u64(c: &mut C<'_>, ptr: i32, value: u64) -> bool {
    write(c, ptr, &value.to_le_bytes())
}

/// Hands bytes to the VM: allocates them with the module's allocator and writes the
/// pointer and size, as proxy-wasm-cpp-host's `copyToPointerSize` (empty data gives a null
/// pointer and size 0). A trap in the allocator propagates.
pub(crate) fn copy_out(c: &mut C<'_>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<Status> {
    let mut address = 0;
    if !bytes.is_empty() {
        let Some(allocate) = c.data().allocate.clone() else {
            return Ok(Status::InvalidMemoryAccess);
        };
        address = allocate.call(&mut *c, bytes.len() as i32)?;
        if address == 0 || !write(c, address, bytes) {
            return Ok(Status::InvalidMemoryAccess);
        }
    }
    if !write_u32(c, ptr_ptr, address as u32) || !write_u32(c, size_ptr, bytes.len() as u32) {
        return Ok(Status::InvalidMemoryAccess);
    }
    Ok(Status::Ok)
}
