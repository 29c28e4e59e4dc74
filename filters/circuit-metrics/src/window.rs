//! The sliding windows a breaker measures calls in: the last N calls, or the calls of the
//! last N seconds in buckets. Both keep running totals so the failure and slow-call rates
//! cost nothing to read.

use std::time::Duration;

/// The most calls a count-based window may hold. The window lives in shared data and is
/// copied on every request, so it stays small: two bits per call.
pub const MAX_CALLS: u32 = 10_000;
/// The most buckets a time-based window is split into.
pub const MAX_BUCKETS: u32 = 60;
/// The longest time-based window.
pub const MAX_SPAN: Duration = Duration::from_secs(3600);

/// One finished call, as a breaker counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Call {
    /// The upstream failed it.
    pub failed: bool,
    /// It took at least the slow-call duration.
    pub slow: bool,
}

/// Calls, failures and slow calls in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls counted.
    pub calls: u32,
    /// Of which failed.
    pub failures: u32,
    /// Of which slow (failed or not).
    pub slow: u32,
}

impl Totals {
    /// Failed calls as a percentage of calls; 0 with no calls.
    pub fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls as a percentage of calls; 0 with no calls.
    pub fn slow_call_rate(&self) -> f64 {
        percent(self.slow, self.calls)
    }

    /// Adds one call.
    pub fn add(&mut self, call: Call) {
        self.calls = self.calls.saturating_add(1);
        self.failures = self.failures.saturating_add(u32::from(call.failed));
        self.slow = self.slow.saturating_add(u32::from(call.slow));
    }
}

fn percent(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) * 100.0 / f64::from(whole)
    }
}

/// What kind of window, and how large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// The last `calls` calls.
    Count {
        /// How many calls (1 to [`MAX_CALLS`]).
        calls: u32,
    },
    /// The calls of the last `span`, in `buckets` equal buckets.
    Time {
        /// How far back (1 s to [`MAX_SPAN`]).
        span: Duration,
        /// How many buckets: one a second up to [`MAX_BUCKETS`].
        buckets: u32,
    },
}

impl Spec {
    /// A time window over `span`, with one bucket per second up to [`MAX_BUCKETS`].
    pub fn time(span: Duration) -> Spec {
        let seconds = u32::try_from(span.as_secs()).unwrap_or(u32::MAX);
        Spec::Time {
            span,
            buckets: seconds.clamp(1, MAX_BUCKETS),
        }
    }
}

/// A sliding window of calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Window {
    /// See [`CountWindow`].
    Count(CountWindow),
    /// See [`TimeWindow`].
    Time(TimeWindow),
}

impl Window {
    /// An empty window of this kind.
    pub fn new(spec: Spec) -> Window {
        match spec {
            Spec::Count { calls } => Window::Count(CountWindow::new(calls)),
            Spec::Time { span, buckets } => Window::Time(TimeWindow::new(span, buckets)),
        }
    }

    /// Counts a call that finished at `now`.
    pub fn record(&mut self, now: Duration, call: Call) {
        match self {
            Window::Count(window) => window.record(call),
            Window::Time(window) => window.record(now, call),
        }
    }

    /// The calls in the window at `now`.
    pub fn totals(&self, now: Duration) -> Totals {
        match self {
            Window::Count(window) => window.totals(),
            Window::Time(window) => window.totals(now),
        }
    }
}

/// The last `size` calls: a ring of two bits per call (failed, slow) plus running totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountWindow {
    pub(crate) size: u32,
    /// Calls held, up to `size`.
    pub(crate) len: u32,
    /// The slot the next call goes in (the oldest once the ring is full).
    pub(crate) next: u32,
    pub(crate) totals: Totals,
    /// Four calls a byte.
    pub(crate) bits: Vec<u8>,
}

impl CountWindow {
    /// An empty window of `size` calls (at least 1).
    pub fn new(size: u32) -> CountWindow {
        let size = size.max(1);
        CountWindow {
            size,
            len: 0,
            next: 0,
            totals: Totals::default(),
            bits: vec![0; Self::bytes_for(size)],
        }
    }

    /// Bytes the ring of `size` calls takes.
    pub fn bytes_for(size: u32) -> usize {
        usize::try_from(size.div_ceil(4)).unwrap_or(0)
    }

    fn slot(&self, index: u32) -> Call {
        let byte = self.bits.get((index / 4) as usize).copied().unwrap_or(0);
        let two = (byte >> ((index % 4) * 2)) & 0b11;
        Call {
            failed: two & 0b01 != 0,
            slow: two & 0b10 != 0,
        }
    }

    fn set_slot(&mut self, index: u32, call: Call) {
        let shift = (index % 4) * 2;
        if let Some(byte) = self.bits.get_mut((index / 4) as usize) {
            let two = u8::from(call.failed) | (u8::from(call.slow) << 1);
            *byte = (*byte & !(0b11 << shift)) | (two << shift);
        }
    }

    /// Counts a call; once full, the oldest call leaves.
    pub fn record(&mut self, call: Call) {
        if self.len == self.size {
            let oldest = self.slot(self.next);
            self.totals.calls = self.totals.calls.saturating_sub(1);
            self.totals.failures = self
                .totals
                .failures
                .saturating_sub(u32::from(oldest.failed));
            self.totals.slow = self.totals.slow.saturating_sub(u32::from(oldest.slow));
        } else {
            self.len += 1;
        }
        self.set_slot(self.next, call);
        self.totals.add(call);
        self.next = (self.next + 1) % self.size;
    }

    /// The calls held.
    pub fn totals(&self) -> Totals {
        self.totals
    }
}

/// One bucket of a time window: the calls that finished in one slice of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Which slice: time since the epoch divided by the bucket width.
    pub epoch: u64,
    /// Its calls.
    pub totals: Totals,
}

/// The calls of the last `span`, in a ring of buckets each `span / buckets` wide. A bucket
/// is reused once its slice has left the window, so the window slides one bucket at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// Bucket width in milliseconds (at least 1).
    pub(crate) width_ms: u64,
    pub(crate) buckets: Vec<Bucket>,
}

impl TimeWindow {
    /// An empty window over `span` in `buckets` buckets (at least 1).
    pub fn new(span: Duration, buckets: u32) -> TimeWindow {
        let buckets = buckets.max(1);
        let span_ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
        TimeWindow {
            width_ms: (span_ms / u64::from(buckets)).max(1),
            buckets: vec![Bucket::default(); buckets as usize],
        }
    }

    fn epoch(&self, now: Duration) -> u64 {
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        now_ms / self.width_ms
    }

    /// Counts a call that finished at `now`.
    pub fn record(&mut self, now: Duration, call: Call) {
        let epoch = self.epoch(now);
        let count = self.buckets.len() as u64;
        if count == 0 {
            return;
        }
        let slot = (epoch % count) as usize;
        if let Some(bucket) = self.buckets.get_mut(slot) {
            if bucket.epoch != epoch {
                *bucket = Bucket {
                    epoch,
                    totals: Totals::default(),
                };
            }
            bucket.totals.add(call);
        }
    }

    /// The calls of the buckets still in the window at `now`.
    pub fn totals(&self, now: Duration) -> Totals {
        let current = self.epoch(now);
        let count = self.buckets.len() as u64;
        let mut sum = Totals::default();
        for bucket in &self.buckets {
            let in_window = bucket.epoch <= current && current - bucket.epoch < count;
            if in_window {
                sum.calls = sum.calls.saturating_add(bucket.totals.calls);
                sum.failures = sum.failures.saturating_add(bucket.totals.failures);
                sum.slow = sum.slow.saturating_add(bucket.totals.slow);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Call = Call {
        failed: false,
        slow: false,
    };
    const FAILED: Call = Call {
        failed: true,
        slow: false,
    };
    const SLOW: Call = Call {
        failed: false,
        slow: true,
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_count_window_holds_the_last_n_calls() {
        let mut window = CountWindow::new(4);
        for call in [FAILED, FAILED, OK, SLOW] {
            window.record(call);
        }
        assert_eq!(
            window.totals(),
            Totals {
                calls: 4,
                failures: 2,
                slow: 1
            }
        );
        // Two more successes push the two failures out.
        window.record(OK);
        window.record(OK);
        assert_eq!(
            window.totals(),
            Totals {
                calls: 4,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(window.totals().failure_rate(), 0.0);
        assert_eq!(window.totals().slow_call_rate(), 25.0);
    }

    #[test]
    fn a_count_window_of_odd_size_keeps_every_slot_apart() {
        let mut window = CountWindow::new(5);
        for i in 0..23 {
            window.record(Call {
                failed: i % 3 == 0,
                slow: i % 2 == 0,
            });
        }
        // The last five calls are 18..=22: failed 18, 21; slow 18, 20, 22.
        assert_eq!(
            window.totals(),
            Totals {
                calls: 5,
                failures: 2,
                slow: 3
            }
        );
        assert_eq!(CountWindow::bytes_for(5), 2);
    }

    #[test]
    fn a_time_window_forgets_calls_older_than_its_span() {
        let mut window = TimeWindow::new(secs(10), 10);
        window.record(secs(100), FAILED);
        window.record(secs(105), OK);
        assert_eq!(window.totals(secs(105)).calls, 2);
        assert_eq!(window.totals(secs(109)).failures, 1);
        // At 110 s the bucket of second 100 has left the window.
        assert_eq!(
            window.totals(secs(110)),
            Totals {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        assert_eq!(window.totals(secs(200)), Totals::default());
    }

    #[test]
    fn a_time_window_reuses_a_bucket_once_its_slice_has_passed() {
        let mut window = TimeWindow::new(secs(3), 3);
        window.record(secs(0), FAILED);
        window.record(secs(3), OK); // the same slot as second 0
        assert_eq!(
            window.totals(secs(3)),
            Totals {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn long_time_windows_use_at_most_sixty_buckets() {
        assert_eq!(
            Spec::time(secs(600)),
            Spec::Time {
                span: secs(600),
                buckets: 60
            }
        );
        assert_eq!(
            Spec::time(secs(5)),
            Spec::Time {
                span: secs(5),
                buckets: 5
            }
        );
        let window = TimeWindow::new(secs(600), 60);
        assert_eq!(window.width_ms, 10_000);
    }

    #[test]
    fn rates_are_percentages_and_zero_without_calls() {
        let totals = Totals {
            calls: 8,
            failures: 2,
            slow: 8,
        };
        assert_eq!(totals.failure_rate(), 25.0);
        assert_eq!(totals.slow_call_rate(), 100.0);
        assert_eq!(Totals::default().failure_rate(), 0.0);
    }
}
