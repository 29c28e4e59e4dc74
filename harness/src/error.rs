//! The one error type of the harness, with text that says what to do.

use std::fmt;
use std::path::PathBuf;

use crate::logs::LogEntry;

/// Why a host could not be built.
#[derive(Debug)]
pub enum HarnessError {
    /// The `.wasm` file is not there.
    WasmMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// wasmtime could not compile the module.
    Compile {
        /// The file, or `<bytes>`.
        what: String,
        /// wasmtime's message.
        message: String,
    },
    /// The module is not a Proxy-Wasm ABI 0.2.1 module, or imports something the host lacks.
    Unsupported {
        /// What is wrong.
        message: String,
    },
    /// A worker's VM trapped or refused to start while the plugin was loading.
    LoadFailed {
        /// The worker.
        worker: usize,
        /// What happened (`on_configure returned false`, a trap...).
        reason: String,
        /// The logs written until then.
        logs: Vec<LogEntry>,
    },
}

impl HarnessError {
    /// The logs collected before the failure, if any.
    pub fn logs(&self) -> &[LogEntry] {
        match self {
            Self::LoadFailed { logs, .. } => logs,
            _ => &[],
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WasmMissing { path } => write!(
                f,
                "{} not found: run `make build` first (or set MESHWARD_OUT to the folder that holds the .wasm files)",
                path.display()
            ),
            Self::Io { path, message } => write!(f, "cannot read {}: {message}", path.display()),
            Self::Compile { what, message } => write!(f, "cannot compile {what}: {message}"),
            Self::Unsupported { message } => f.write_str(message),
            Self::LoadFailed {
                worker,
                reason,
                logs,
            } => {
                write!(f, "the plugin failed to load on worker {worker}: {reason}")?;
                for entry in logs {
                    write!(f, "\n  {entry}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for HarnessError {}
