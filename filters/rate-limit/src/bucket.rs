//! The token bucket: exact integer arithmetic on a level and a time stamp, no floats.
//!
//! A token is split into `period_nanos` parts and the bucket gains `refill` parts every
//! nanosecond, so "`refill` tokens per `period`" is exact whatever the numbers: there is no
//! rounding to lose or mint a fraction of a token, and 1 request per hour works as well as
//! 10,000 per second.
//!
//! The stamp is the latest time the bucket was refilled to. A clock that stands still adds
//! nothing; a clock behind the stamp (it stepped back, or another worker read it later)
//! adds nothing until it passes the stamp again, and never moves the stamp back. So over
//! any history the bucket admits at most `capacity` plus the refill over the span between
//! the earliest and the latest time it was shown.

use std::time::Duration;

/// The most tokens a capacity or refill may name: keeps every product far inside `u128`.
pub const MAX_TOKENS: u64 = 1_000_000_000;
/// The shortest refill period.
pub const MIN_PERIOD: Duration = Duration::from_millis(1);
/// The longest refill period (a year).
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// A validated limit: at most `capacity` tokens, `refill` tokens added every `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    capacity: u64,
    refill: u64,
    period_nanos: u64,
}

impl Limit {
    /// The limit, or `None` unless `1 <= capacity, refill <= MAX_TOKENS` and
    /// `MIN_PERIOD <= period <= MAX_PERIOD`.
    pub fn new(capacity: u64, refill: u64, period: Duration) -> Option<Limit> {
        let tokens = 1..=MAX_TOKENS;
        if !tokens.contains(&capacity)
            || !tokens.contains(&refill)
            || period < MIN_PERIOD
            || period > MAX_PERIOD
        {
            return None;
        }
        Some(Limit {
            capacity,
            refill,
            period_nanos: u64::try_from(period.as_nanos()).ok()?,
        })
    }

    /// The most tokens the bucket holds (the burst).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Tokens added every period.
    pub fn refill(&self) -> u64 {
        self.refill
    }

    /// The refill period.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_nanos)
    }

    fn parts_per_token(&self) -> u128 {
        u128::from(self.period_nanos)
    }

    fn parts_per_nano(&self) -> u128 {
        u128::from(self.refill)
    }

    fn full(&self) -> u128 {
        u128::from(self.capacity) * self.parts_per_token()
    }
}

/// One bucket's state: its level in parts of a token and the time it was refilled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    level: u128,
    stamp: u64,
}

/// What taking a token from a bucket decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// A token was taken; `bucket` is the state to store.
    Allowed {
        /// The bucket after the take.
        bucket: Bucket,
        /// Whole tokens left.
        remaining: u64,
        /// Time until the bucket holds one more whole token.
        next_token_in: Duration,
    },
    /// The bucket holds less than one token; nothing changes.
    Limited {
        /// Time until a token is available.
        retry_after: Duration,
    },
}

impl Bucket {
    /// A full bucket refilled to `now`.
    pub fn full(limit: &Limit, now: u64) -> Bucket {
        Bucket {
            level: limit.full(),
            stamp: now,
        }
    }

    /// A bucket from stored parts. A level above capacity (a stored value from another
    /// limit, or corrupted) is clamped so it can never hold more than `limit` allows.
    pub fn from_parts(limit: &Limit, level: u128, stamp: u64) -> Bucket {
        Bucket {
            level: level.min(limit.full()),
            stamp,
        }
    }

    /// The level, in parts of a token (`period` in nanoseconds parts make one token).
    pub fn level(&self) -> u128 {
        self.level
    }

    /// The time, in nanoseconds, the bucket was refilled to.
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// The bucket as it is at `now`. A `now` at or before the stamp adds nothing.
    pub fn refilled(self, limit: &Limit, now: u64) -> Bucket {
        if now <= self.stamp {
            return self;
        }
        let elapsed = u128::from(now - self.stamp);
        let added = elapsed.saturating_mul(limit.parts_per_nano());
        Bucket {
            level: self.level.saturating_add(added).min(limit.full()),
            stamp: now,
        }
    }

    /// Whether the bucket has refilled to capacity at `now`: such a bucket is the same as
    /// a fresh one, so its state can be dropped without changing any decision.
    pub fn is_full(&self, limit: &Limit, now: u64) -> bool {
        self.refilled(limit, now).level >= limit.full()
    }

    /// Takes one token at `now` if the bucket has one.
    ///
    /// A limited take needs no write: refilling is exact, so refilling later from the old
    /// stamp gives the same level as storing the refilled state now.
    pub fn take(self, limit: &Limit, now: u64) -> Take {
        let current = self.refilled(limit, now);
        let token = limit.parts_per_token();
        match current.level.checked_sub(token) {
            Some(level) => {
                let bucket = Bucket {
                    level,
                    stamp: current.stamp,
                };
                let whole = div(level, token);
                let remaining = u64::try_from(whole).unwrap_or(u64::MAX);
                let next_whole = (whole + 1) * token;
                Take::Allowed {
                    bucket,
                    remaining,
                    next_token_in: bucket.time_until(limit, now, next_whole),
                }
            }
            None => Take::Limited {
                retry_after: current.time_until(limit, now, token),
            },
        }
    }

    /// Time from `now` until the level reaches `target` parts, counting the wait for a
    /// clock that is behind the stamp.
    fn time_until(&self, limit: &Limit, now: u64, target: u128) -> Duration {
        let missing = target.saturating_sub(self.level);
        if missing == 0 {
            return Duration::ZERO;
        }
        let rate = limit.parts_per_nano();
        let refill_nanos = div(missing + rate - 1, rate);
        let behind = u128::from(self.stamp.saturating_sub(now));
        let total = u64::try_from(refill_nanos.saturating_add(behind)).unwrap_or(u64::MAX);
        Duration::from_nanos(total)
    }
}

/// `a / b` for a non-zero `b`, in 64 bits when both fit: 128-bit division is a slow
/// library call in wasm, and the numbers of most limits fit in 64 bits.
fn div(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from(a.checked_div(b).unwrap_or(0)),
        _ => a.checked_div(b).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const MINUTE: u64 = 60 * SECOND;

    fn limit(capacity: u64, refill: u64, period: Duration) -> Limit {
        Limit::new(capacity, refill, period).unwrap()
    }

    /// Takes tokens at `now` until the bucket says no; returns how many were taken.
    fn drain(bucket: &mut Bucket, limit: &Limit, now: u64) -> u64 {
        let mut taken = 0;
        while let Take::Allowed { bucket: after, .. } = bucket.take(limit, now) {
            *bucket = after;
            taken += 1;
        }
        taken
    }

    fn allowed(take: Take) -> Bucket {
        match take {
            Take::Allowed { bucket, .. } => bucket,
            Take::Limited { .. } => panic!("expected a token, got {take:?}"),
        }
    }

    fn retry_after(take: Take) -> Duration {
        match take {
            Take::Limited { retry_after } => retry_after,
            Take::Allowed { .. } => panic!("expected a limit, got {take:?}"),
        }
    }

    #[test]
    fn a_new_bucket_allows_a_burst_of_its_capacity_then_limits() {
        let l = limit(5, 1, Duration::from_secs(1));
        let mut b = Bucket::full(&l, 0);
        assert_eq!(drain(&mut b, &l, 0), 5);
        assert!(matches!(b.take(&l, 0), Take::Limited { .. }));
    }

    #[test]
    fn refills_at_the_configured_rate() {
        let l = limit(10, 2, Duration::from_secs(1));
        let mut b = Bucket::full(&l, 0);
        drain(&mut b, &l, 0);
        // Two tokens a second: after 2.5 s, five tokens.
        assert_eq!(drain(&mut b, &l, 2 * SECOND + SECOND / 2), 5);
        // The half second of refill left over is kept, not rounded away.
        assert_eq!(drain(&mut b, &l, 3 * SECOND), 1);
    }

    #[test]
    fn never_holds_more_than_its_capacity_after_a_long_idle() {
        let l = limit(3, 1, Duration::from_secs(1));
        let mut b = Bucket::full(&l, 0);
        drain(&mut b, &l, 0);
        // Ten years idle refills to capacity and no further.
        assert_eq!(drain(&mut b, &l, 10 * 366 * 24 * 3600 * SECOND), 3);
        assert_eq!(drain(&mut b, &l, u64::MAX), 3);
    }

    #[test]
    fn slow_rates_keep_sub_token_progress() {
        // One request a minute: 59 s of waiting give nothing, the 60th second gives one.
        let l = limit(1, 1, Duration::from_secs(60));
        let mut b = Bucket::full(&l, 0);
        assert_eq!(drain(&mut b, &l, 0), 1);
        for s in 1..60 {
            assert_eq!(drain(&mut b, &l, s * SECOND), 0, "at {s}s");
        }
        assert_eq!(drain(&mut b, &l, MINUTE), 1);
    }

    #[test]
    fn odd_rates_are_exact_over_long_runs() {
        // 7 tokens every 3 s, asked every 1 ms for an hour: exactly 7 * 1200 tokens after
        // the first burst, because no part of a token is ever rounded away. (A capacity of
        // 2 is never reached between asks, so no refill is lost to the cap either.)
        let l = limit(2, 7, Duration::from_secs(3));
        let mut b = Bucket::full(&l, 0);
        let mut taken = 0;
        let millis = 3_600_000u64;
        for ms in 0..=millis {
            taken += drain(&mut b, &l, ms * 1_000_000);
        }
        assert_eq!(taken, 2 + 7 * 1200);
    }

    #[test]
    fn a_clock_that_stands_still_mints_nothing() {
        let l = limit(2, 1, Duration::from_millis(1));
        let mut b = Bucket::full(&l, 5 * SECOND);
        assert_eq!(drain(&mut b, &l, 5 * SECOND), 2);
        for _ in 0..1000 {
            assert_eq!(drain(&mut b, &l, 5 * SECOND), 0);
        }
    }

    #[test]
    fn a_clock_that_steps_back_mints_nothing_and_takes_nothing_away() {
        let l = limit(10, 1, Duration::from_secs(1));
        let mut b = Bucket::full(&l, 100 * SECOND);
        b = allowed(b.take(&l, 100 * SECOND));
        b = allowed(b.take(&l, 100 * SECOND));
        // The clock steps back 50 s: the 8 tokens left are still there...
        let mut back = b;
        assert_eq!(drain(&mut back, &l, 50 * SECOND), 8);
        // ...and the refill resumes only once the clock passes where it had been.
        assert_eq!(drain(&mut back, &l, 99 * SECOND), 0);
        assert_eq!(drain(&mut back, &l, 100 * SECOND), 0);
        assert_eq!(drain(&mut back, &l, 101 * SECOND), 1);
    }

    #[test]
    fn an_oscillating_clock_mints_nothing() {
        let l = limit(1, 1, Duration::from_secs(1));
        let mut b = Bucket::full(&l, 10 * SECOND);
        let mut taken = drain(&mut b, &l, 10 * SECOND);
        for _ in 0..100 {
            taken += drain(&mut b, &l, 9 * SECOND);
            taken += drain(&mut b, &l, 10 * SECOND);
        }
        assert_eq!(taken, 1);
    }

    #[test]
    fn retry_after_is_the_time_until_the_next_token() {
        let l = limit(2, 1, Duration::from_secs(10));
        let mut b = Bucket::full(&l, 0);
        drain(&mut b, &l, 0);
        assert_eq!(retry_after(b.take(&l, 0)), Duration::from_secs(10));
        assert_eq!(retry_after(b.take(&l, 4 * SECOND)), Duration::from_secs(6));
        // Behind the stamp, the wait includes catching up with it.
        let b = Bucket::from_parts(&l, 0, 20 * SECOND);
        assert_eq!(
            retry_after(b.take(&l, 15 * SECOND)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn an_allowed_take_reports_what_is_left_and_when_the_next_token_comes() {
        let l = limit(3, 1, Duration::from_secs(2));
        let b = Bucket::full(&l, 0);
        match b.take(&l, 0) {
            Take::Allowed {
                remaining,
                next_token_in,
                ..
            } => {
                assert_eq!(remaining, 2);
                assert_eq!(next_token_in, Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        // Half a token of progress halves the wait.
        let b = Bucket::from_parts(&l, l.parts_per_token() * 3 / 2, 0);
        match b.take(&l, 0) {
            Take::Allowed {
                remaining,
                next_token_in,
                ..
            } => {
                assert_eq!(remaining, 0);
                assert_eq!(next_token_in, Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bucket_is_full_once_it_has_refilled_to_capacity() {
        let l = limit(2, 1, Duration::from_secs(1));
        let b = allowed(Bucket::full(&l, 0).take(&l, 0));
        assert!(!b.is_full(&l, 0));
        assert!(!b.is_full(&l, SECOND - 1));
        assert!(b.is_full(&l, SECOND));
    }

    #[test]
    fn stored_levels_above_capacity_are_clamped() {
        let l = limit(2, 1, Duration::from_secs(1));
        let mut b = Bucket::from_parts(&l, u128::MAX, 0);
        assert_eq!(drain(&mut b, &l, 0), 2);
    }

    #[test]
    fn limits_outside_the_supported_range_are_refused() {
        let s = Duration::from_secs(1);
        assert!(Limit::new(0, 1, s).is_none());
        assert!(Limit::new(1, 0, s).is_none());
        assert!(Limit::new(MAX_TOKENS + 1, 1, s).is_none());
        assert!(Limit::new(1, 1, Duration::from_micros(999)).is_none());
        assert!(Limit::new(1, 1, MAX_PERIOD + s).is_none());
        assert!(Limit::new(MAX_TOKENS, MAX_TOKENS, MAX_PERIOD).is_some());
    }

    #[test]
    fn division_is_the_same_in_64_and_128_bits() {
        for (a, b) in [
            (0u128, 1u128),
            (7, 2),
            (u128::from(u64::MAX), 3),
            (u128::MAX, 7),
            (5, u128::MAX),
        ] {
            assert_eq!(div(a, b), a / b, "{a} / {b}");
        }
        assert_eq!(div(1, 0), 0);
    }

    #[test]
    fn the_largest_limits_do_not_overflow() {
        let l = limit(MAX_TOKENS, MAX_TOKENS, MAX_PERIOD);
        let b = Bucket::full(&l, 0);
        let b = allowed(b.take(&l, u64::MAX));
        assert!(matches!(b.take(&l, u64::MAX), Take::Allowed { .. }));
        let empty = Bucket::from_parts(&l, 0, u64::MAX);
        assert!(matches!(empty.take(&l, 0), Take::Limited { .. }));
    }
}
