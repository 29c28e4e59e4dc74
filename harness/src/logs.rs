//! What the filter logged (`proxy_log`, stdout and stderr) and what the host noted, such
//! as a VM trap.

use std::fmt;

/// A log level, numbered as in the ABI (and as Envoy's spdlog levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `trace`
    Trace = 0,
    /// `debug`
    Debug = 1,
    /// `info`; also what the filter writes to stdout.
    Info = 2,
    /// `warn`
    Warn = 3,
    /// `error`; also what the filter writes to stderr.
    Error = 4,
    /// `critical`; Envoy logs VM failures at this level.
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_abi(level: i32) -> Option<Self> {
        Some(match level {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return None,
        })
    }
}

/// Who wrote a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogOrigin {
    /// The filter, through `proxy_log` or WASI stdout/stderr.
    Filter,
    /// The harness, standing in for Envoy's own messages (a trap, a failed start).
    Host,
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The worker whose VM wrote it.
    pub worker: usize,
    /// Its level.
    pub level: LogLevel,
    /// The message, without a trailing newline.
    pub message: String,
    /// Who wrote it.
    pub origin: LogOrigin,
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[worker {}][{:?}] {}",
            self.worker, self.level, self.message
        )
    }
}
