//! The virtual clock: wall time and monotonic time only move when the test says so.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default start of virtual time: 2024-01-01T00:00:00Z.
pub(crate) const DEFAULT_START: Duration = Duration::from_secs(1_704_067_200);

/// Virtual time, in nanoseconds since the Unix epoch, and where it started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start_ns: u64,
    now_ns: u64,
    /// `proxy_get_current_time_nanoseconds` fails (a test of how a filter does without a
    /// clock); WASI's clocks still answer.
    pub(crate) unreadable: bool,
}

impl Clock {
    /// A clock standing at this wall time.
    pub fn starting_at(start: SystemTime) -> Self {
        let start_ns = start
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            start_ns,
            now_ns: start_ns,
            unreadable: false,
        }
    }

    /// Wall time in nanoseconds since the epoch (`proxy_get_current_time_nanoseconds`,
    /// WASI's realtime clock).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Nanoseconds since the clock started (WASI's monotonic clock).
    pub fn monotonic_ns(&self) -> u64 {
        self.now_ns - self.start_ns
    }

    /// Moves the clock to an absolute time; it never goes back.
    pub fn set_ns(&mut self, ns: u64) {
        self.now_ns = self.now_ns.max(ns);
    }

    /// The wall time as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.now_ns)
    }
}
