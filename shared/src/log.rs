//! Logging through the proxy's log (Envoy's `wasm` log component).

use crate::host::{self, LogLevel};

/// Logs at error level.
pub fn error(message: &str) {
    host::log(LogLevel::Error, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    host::log(LogLevel::Warn, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    host::log(LogLevel::Info, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    host::log(LogLevel::Debug, message);
}
