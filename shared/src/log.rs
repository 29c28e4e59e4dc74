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

/// A filter's log. Every message it writes starts with the filter's name and `: `
/// (`rate-limit: rule per_ip: ...`): the one prefix convention of meshward's logs, so that
/// a line in Envoy's `wasm` log says which filter wrote it, inside a chain too. Each filter
/// has one, `const LOG: Log = Log::new("<filter>");`.
#[derive(Clone, Copy, Debug)]
pub struct Log(&'static str);

impl Log {
    /// The log of filter `name`.
    pub const fn new(name: &'static str) -> Self {
        Log(name)
    }

    /// The filter's name, which starts each message.
    pub fn name(self) -> &'static str {
        self.0
    }

    /// Logs at error level.
    pub fn error(self, message: std::fmt::Arguments<'_>) {
        self.write(LogLevel::Error, message);
    }

    /// Logs at warn level.
    pub fn warn(self, message: std::fmt::Arguments<'_>) {
        self.write(LogLevel::Warn, message);
    }

    /// Logs at info level.
    pub fn info(self, message: std::fmt::Arguments<'_>) {
        self.write(LogLevel::Info, message);
    }

    /// Logs at debug level.
    pub fn debug(self, message: std::fmt::Arguments<'_>) {
        self.write(LogLevel::Debug, message);
    }

    fn write(self, level: LogLevel, message: std::fmt::Arguments<'_>) {
        host::log(level, &format!("{}: {message}", self.0));
    }
}
