//! The rig's one error type. Its text says what went wrong and what to do, and carries
//! Envoy's log when Envoy is involved, so a failing test explains itself.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Lines of Envoy's log quoted in an error.
const LOG_TAIL_LINES: usize = 60;

/// Something the rig could not do.
pub enum RigError {
    /// The Envoy binary is not installed.
    EnvoyMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A module (Wasm or native) the config names has not been built.
    WasmMissing {
        /// The module's absolute path.
        path: PathBuf,
    },
    /// A config could not be read or does not have the expected shape.
    Config {
        /// The config's file name, or `inline`.
        source: String,
        /// What is wrong with it.
        message: String,
    },
    /// `envoy --mode validate` refused a config.
    Refused {
        /// The config's file name, or `inline`.
        source: String,
        /// Envoy's log.
        log: String,
    },
    /// Envoy exited while the rig expected it to run.
    EnvoyExited {
        /// Its exit status.
        status: String,
        /// Envoy's log.
        log: String,
    },
    /// Envoy did not become ready in time.
    NotReady {
        /// How long the rig waited.
        waited: Duration,
        /// Envoy's log.
        log: String,
    },
    /// A socket or file operation failed.
    Io {
        /// What the rig was doing.
        doing: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A peer sent something that is not valid HTTP/1.1.
    Http {
        /// What the rig was doing.
        doing: String,
        /// What was wrong.
        message: String,
    },
    /// Something took longer than the rig allows.
    Timeout {
        /// What the rig was doing.
        doing: String,
        /// How long it waited.
        waited: Duration,
    },
    /// A stat was not there, or not the expected value, in time.
    Stat {
        /// What was expected.
        expected: String,
        /// What was found last.
        found: String,
    },
    /// A tool the tests run (`kubectl`, `node`) is missing or failed.
    Tool {
        /// The command, as a user would type it.
        command: String,
        /// What went wrong, with the tool's output, and what to do.
        message: String,
    },
    /// A helper process (redis-server, the RLS) failed to build, start or answer.
    Process {
        /// The program.
        name: String,
        /// What went wrong.
        message: String,
        /// Its output.
        log: String,
    },
    /// A line of `/stats/prometheus` could not be parsed.
    Stats {
        /// The line.
        line: String,
        /// What was wrong.
        message: String,
    },
}

impl RigError {
    pub(crate) fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> RigError {
        let doing = doing.into();
        move |error| RigError::Io { doing, error }
    }
}

/// The last lines of a log, enough to see why Envoy failed.
pub(crate) fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines.get(start..).unwrap_or_default().join("\n")
}

impl fmt::Display for RigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RigError::EnvoyMissing { path } => write!(
                f,
                "Envoy not found at {}: run `make setup` (or `make test`) first",
                path.display()
            ),
            RigError::WasmMissing { path } => write!(
                f,
                "module {} not found: run `make build` (or `make test`) first",
                path.display()
            ),
            RigError::Config { source, message } => write!(f, "config {source}: {message}"),
            RigError::Refused { source, log } => write!(
                f,
                "Envoy refused config {source}; last lines of its log:\n{}",
                log_tail(log)
            ),
            RigError::EnvoyExited { status, log } => write!(
                f,
                "Envoy exited ({status}); last lines of its log:\n{}",
                log_tail(log)
            ),
            RigError::NotReady { waited, log } => write!(
                f,
                "Envoy was not ready after {waited:?}; last lines of its log:\n{}",
                log_tail(log)
            ),
            RigError::Io { doing, error } => write!(f, "{doing}: {error}"),
            RigError::Http { doing, message } => write!(f, "{doing}: {message}"),
            RigError::Timeout { doing, waited } => write!(f, "{doing}: no answer in {waited:?}"),
            RigError::Stat { expected, found } => {
                write!(f, "expected stat {expected}, found {found}")
            }
            RigError::Tool { command, message } => write!(f, "{command}: {message}"),
            RigError::Process { name, message, log } => write!(
                f,
                "{name}: {message} (`make setup` installs redis-server; \
                 scripts/build-rls.sh builds the RLS); last lines of its output:\n{}",
                log_tail(log)
            ),
            RigError::Stats { line, message } => {
                write!(f, "cannot parse stats line {line:?}: {message}")
            }
        }
    }
}

/// The same text as `Display`, so `unwrap()` and `?` in a test print something readable.
impl fmt::Debug for RigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for RigError {}
