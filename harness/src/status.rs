//! Proxy-Wasm result codes (`WasmResult`) the host returns to the filter.

/// A result code of a host call, with the numbers proxy-wasm-cpp-host uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    /// The call succeeded.
    Ok = 0,
    /// The thing asked for does not exist.
    NotFound = 1,
    /// An argument is wrong, or the thing is not available in this phase.
    BadArgument = 2,
    /// A value could not be serialized.
    SerializationFailure = 3,
    /// A value could not be parsed.
    ParseFailure = 4,
    /// A pointer or length points outside the VM's memory.
    InvalidMemoryAccess = 6,
    /// A queue is empty.
    Empty = 7,
    /// The shared data CAS did not match.
    CasMismatch = 8,
    /// The host failed for its own reasons.
    InternalFailure = 10,
    /// A callout's connection broke.
    BrokenConnection = 11,
    /// The host does not implement this call.
    Unimplemented = 12,
}

impl Status {
    /// The code as the VM sees it.
    pub fn code(self) -> i32 {
        self as i32
    }
}
