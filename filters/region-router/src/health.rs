//! Passive health of one region: its recent upstream outcomes, when it became unhealthy, and
//! how it comes back. Pure: times and outcomes come in as values, and the record encodes to
//! the bytes kept in shared data, so every worker sees and updates the same state.
//!
//! - **Healthy**: each outcome joins the region's last `min_requests` outcomes. When all of
//!   them are younger than `window` and at least `failure_threshold_percent` failed, the
//!   region becomes unhealthy. A region that starts failing outright is therefore marked
//!   after at most `min_requests` failures, however much traffic it served before.
//! - **Unhealthy**: for `cool_down` it takes no traffic (unless every region is down) and
//!   outcomes are not counted.
//! - **Probing**: after the cool-down, `probe_percent` of its keys go to it. Each success
//!   counts; after `probe_successes` it is healthy again. One failure makes it unhealthy
//!   again, for another cool-down.
//!
//! An outcome of a request decided before the region's last change of state (or in the same
//! millisecond) is ignored: a slow failure from before the region was marked does not cut
//! its probing short.

use std::time::Duration;

/// The largest `min_requests`: the outcome ring never holds more.
pub const MAX_MIN_REQUESTS: u8 = 64;

/// When a region counts as failing and how it comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Outcomes older than this do not count.
    pub window: Duration,
    /// How many recent outcomes are judged, and the least that must be young enough.
    pub min_requests: u8,
    /// The share of failures, in percent, that makes the region unhealthy.
    pub failure_threshold_percent: u8,
    /// How long an unhealthy region gets no traffic before probing.
    pub cool_down: Duration,
    /// The share of a probing region's keys sent to it, in percent.
    pub probe_percent: u8,
    /// Successful probes that make the region healthy again.
    pub probe_successes: u16,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            window: Duration::from_secs(10),
            min_requests: 20,
            failure_threshold_percent: 50,
            cool_down: Duration::from_secs(5),
            probe_percent: 10,
            probe_successes: 5,
        }
    }
}

/// A region's state at some moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Takes its share of traffic.
    Healthy,
    /// Cooled down: takes probe traffic.
    Probing,
    /// Takes no traffic until the cool-down ends.
    Unhealthy,
}

impl State {
    /// The value of the region's state gauge.
    pub fn gauge_value(self) -> u64 {
        match self {
            State::Healthy => 0,
            State::Probing => 1,
            State::Unhealthy => 2,
        }
    }
}

/// How a request routed to the region ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The region answered.
    Success,
    /// The region failed (5xx, or Envoy could not get an answer from it).
    Failure,
}

/// A change of state an outcome caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Healthy to unhealthy: traffic moves away.
    Opened,
    /// A probe failed: unhealthy again.
    Reopened,
    /// Enough probes succeeded: healthy again.
    Restored,
}

/// What recording an outcome did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The outcome does not count (cooling down, or the request predates the last change).
    Ignored,
    /// A success that would change nothing any judgment can see, so the record is not
    /// written: see [`RegionHealth::record`].
    Unchanged,
    /// Counted; the state did not change.
    Counted,
    /// Counted, and the state changed.
    Changed(Transition),
}

impl Effect {
    /// Whether the record changed and must be written back.
    pub fn needs_write(self) -> bool {
        !matches!(self, Effect::Ignored | Effect::Unchanged)
    }
}

/// Bit 31 of an outcome entry marks a failure; bits 0..31 hold milliseconds since `base_ms`.
const FAILED: u32 = 1 << 31;
const OFFSET: u32 = FAILED - 1;
/// The record format's version byte.
const VERSION: u8 = 1;
const HEADER_LEN: usize = 21;

/// One region's health record, as kept in shared data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionHealth {
    unhealthy: bool,
    /// When the state last changed, in ms since the Unix epoch (0: never).
    changed_at_ms: u64,
    /// Successful probes since the region started probing.
    probe_successes: u16,
    /// The time entries in `recent` count from.
    base_ms: u64,
    /// The last outcomes, oldest first.
    recent: Vec<u32>,
}

fn millis(t: Duration) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}

impl RegionHealth {
    /// A healthy region with no outcomes yet.
    pub fn new() -> Self {
        RegionHealth::default()
    }

    /// The state at `now` (time since the Unix epoch).
    pub fn state(&self, policy: &HealthPolicy, now: Duration) -> State {
        if !self.unhealthy {
            return State::Healthy;
        }
        let cooled = self.changed_at_ms.saturating_add(millis(policy.cool_down));
        if millis(now) >= cooled {
            State::Probing
        } else {
            State::Unhealthy
        }
    }

    /// Records the outcome of a request decided at `started` that ended at `now`.
    ///
    /// A success in a healthy region whose outcome ring is full of successes, the newest
    /// younger than [`RegionHealth::refresh_interval`], is [`Effect::Unchanged`]: the ring
    /// keeps its entries rather than trade one success for another. Every judgment is the
    /// same: a region is judged only when all `min_requests` outcomes are inside the
    /// window, failures push out successes one by one as before, and refreshing at that
    /// interval keeps a ring of successes spanning at most half the window, so under
    /// steady traffic it is always judged as if each success had been written. Only a
    /// traffic gap at the window's edge can leave successes older than written ones would
    /// be, which delays a judgment (never brings one forward), still within
    /// `min_requests` failures. Shared data is written per success at most once per
    /// interval per region, not once per request.
    pub fn record(
        &mut self,
        policy: &HealthPolicy,
        now: Duration,
        started: Duration,
        outcome: Outcome,
    ) -> Effect {
        self.record_outcome(policy, now, started, outcome, true)
    }

    /// [`RegionHealth::record`], with the write of fresh successes skipped or not (the
    /// tests compare both).
    fn record_outcome(
        &mut self,
        policy: &HealthPolicy,
        now: Duration,
        started: Duration,
        outcome: Outcome,
        skip_fresh_successes: bool,
    ) -> Effect {
        // A request decided in the very millisecond of the change may have been decided
        // before it: ignoring it is the safe side.
        if self.changed_at_ms > 0 && millis(started) <= self.changed_at_ms {
            return Effect::Ignored;
        }
        match self.state(policy, now) {
            State::Unhealthy => Effect::Ignored,
            State::Probing => match outcome {
                Outcome::Failure => {
                    self.become_unhealthy(now);
                    Effect::Changed(Transition::Reopened)
                }
                Outcome::Success => {
                    self.probe_successes = self.probe_successes.saturating_add(1);
                    if self.probe_successes >= policy.probe_successes {
                        self.unhealthy = false;
                        self.changed_at_ms = millis(now);
                        self.probe_successes = 0;
                        self.recent.clear();
                        Effect::Changed(Transition::Restored)
                    } else {
                        Effect::Counted
                    }
                }
            },
            State::Healthy => {
                if skip_fresh_successes
                    && outcome == Outcome::Success
                    && self.only_fresh_successes(policy, now)
                {
                    return Effect::Unchanged;
                }
                self.push(policy, now, outcome);
                if outcome == Outcome::Failure && self.failing(policy, now) {
                    self.become_unhealthy(now);
                    Effect::Changed(Transition::Opened)
                } else {
                    Effect::Counted
                }
            }
        }
    }

    /// The failures and the total among the outcomes younger than the window at `now`.
    pub fn recent_failures(&self, policy: &HealthPolicy, now: Duration) -> (u32, u32) {
        let now_ms = millis(now);
        let oldest = now_ms.saturating_sub(millis(policy.window));
        let mut failures = 0;
        let mut total = 0;
        for &entry in &self.recent {
            let at = self.base_ms.saturating_add(u64::from(entry & OFFSET));
            if at >= oldest {
                total += 1;
                failures += u32::from(entry & FAILED != 0);
            }
        }
        (failures, total)
    }

    /// How old the newest of a ring of successes may be before a success is written:
    /// `window / (2 × min_requests)`, so the ring spans at most half the window.
    pub fn refresh_interval(policy: &HealthPolicy) -> Duration {
        let capacity = u32::from(policy.min_requests.clamp(1, MAX_MIN_REQUESTS));
        policy.window / (2 * capacity)
    }

    /// Whether the ring is full, holds only successes, and its newest entry is younger
    /// than [`RegionHealth::refresh_interval`] at `now`.
    fn only_fresh_successes(&self, policy: &HealthPolicy, now: Duration) -> bool {
        let capacity = usize::from(policy.min_requests.clamp(1, MAX_MIN_REQUESTS));
        let Some(&newest) = self.recent.last() else {
            return false;
        };
        let newest_ms = self.base_ms.saturating_add(u64::from(newest & OFFSET));
        self.recent.len() >= capacity
            && self.recent.iter().all(|&entry| entry & FAILED == 0)
            && millis(now).saturating_sub(newest_ms) < millis(Self::refresh_interval(policy))
    }

    fn failing(&self, policy: &HealthPolicy, now: Duration) -> bool {
        let (failures, total) = self.recent_failures(policy, now);
        total >= u32::from(policy.min_requests)
            && failures * 100 >= u32::from(policy.failure_threshold_percent) * total
    }

    fn become_unhealthy(&mut self, now: Duration) {
        self.unhealthy = true;
        self.changed_at_ms = millis(now);
        self.probe_successes = 0;
        self.recent.clear();
    }

    fn push(&mut self, policy: &HealthPolicy, now: Duration, outcome: Outcome) {
        let now_ms = millis(now);
        if self.recent.is_empty() {
            self.base_ms = now_ms;
        }
        // Entries count from base_ms in 31 bits (about 24 days). Anything that old is far
        // outside any window, so a new base with an empty ring loses nothing.
        let mut offset = now_ms.saturating_sub(self.base_ms);
        if offset > u64::from(OFFSET) {
            self.recent.clear();
            self.base_ms = now_ms;
            offset = 0;
        }
        let offset = u32::try_from(offset).unwrap_or(OFFSET);
        let failed = if outcome == Outcome::Failure {
            FAILED
        } else {
            0
        };
        let capacity = usize::from(policy.min_requests.clamp(1, MAX_MIN_REQUESTS));
        while self.recent.len() >= capacity {
            self.recent.remove(0);
        }
        self.recent.push(offset | failed);
    }

    /// The bytes kept in shared data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 4 * self.recent.len());
        out.push(VERSION);
        out.push(u8::from(self.unhealthy));
        out.extend_from_slice(&self.changed_at_ms.to_le_bytes());
        out.extend_from_slice(&self.probe_successes.to_le_bytes());
        out.extend_from_slice(&self.base_ms.to_le_bytes());
        let count = self.recent.len().min(usize::from(MAX_MIN_REQUESTS));
        out.push(u8::try_from(count).unwrap_or(MAX_MIN_REQUESTS));
        for entry in self.recent.iter().take(count) {
            out.extend_from_slice(&entry.to_le_bytes());
        }
        out
    }

    /// The state at `now` of an encoded record, reading only its fixed header (what every
    /// decision needs, without the outcome list); healthy for anything unreadable, as
    /// [`RegionHealth::decode`] would start afresh.
    pub fn state_of_encoded(bytes: &[u8], policy: &HealthPolicy, now: Duration) -> State {
        let header = match bytes {
            [VERSION, flags @ (0 | 1), rest @ ..] => rest
                .first_chunk::<8>()
                .map(|changed| (*flags == 1, u64::from_le_bytes(*changed))),
            _ => None,
        };
        match header {
            Some((true, changed_at_ms)) => RegionHealth {
                unhealthy: true,
                changed_at_ms,
                ..RegionHealth::default()
            }
            .state(policy, now),
            _ => State::Healthy,
        }
    }

    /// Reads a record written by [`RegionHealth::encode`]; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let (&flags, rest) = rest.split_first()?;
        let (changed, rest) = rest.split_first_chunk::<8>()?;
        let (probes, rest) = rest.split_first_chunk::<2>()?;
        let (base, rest) = rest.split_first_chunk::<8>()?;
        let (&count, rest) = rest.split_first()?;
        if flags > 1 || count > MAX_MIN_REQUESTS || rest.len() != 4 * usize::from(count) {
            return None;
        }
        let recent = rest
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(u32::from_le_bytes))
            .collect();
        Some(RegionHealth {
            unhealthy: flags == 1,
            changed_at_ms: u64::from_le_bytes(*changed),
            probe_successes: u16::from_le_bytes(*probes),
            base_ms: u64::from_le_bytes(*base),
            recent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_700_000_000);

    fn at(ms: u64) -> Duration {
        T0 + Duration::from_millis(ms)
    }

    fn policy() -> HealthPolicy {
        HealthPolicy {
            window: Duration::from_secs(10),
            min_requests: 10,
            failure_threshold_percent: 50,
            cool_down: Duration::from_secs(5),
            probe_percent: 10,
            probe_successes: 3,
        }
    }

    /// Records `n` outcomes, one a millisecond from `from_ms`; returns the last effect.
    fn feed(h: &mut RegionHealth, from_ms: u64, n: u64, outcome: Outcome) -> Effect {
        let p = policy();
        let mut last = Effect::Ignored;
        for i in 0..n {
            let t = at(from_ms + i);
            last = h.record(&p, t, t, outcome);
        }
        last
    }

    #[test]
    fn a_region_that_fails_outright_opens_within_min_requests_failures() {
        let p = policy();
        let mut h = RegionHealth::new();
        // A long healthy history does not delay the opening.
        feed(&mut h, 0, 1000, Outcome::Success);
        for i in 0..5u64 {
            let t = at(2000 + i);
            let effect = h.record(&p, t, t, Outcome::Failure);
            if i < 4 {
                assert_eq!(effect, Effect::Counted, "failure {i}");
            } else {
                // 5 of the last 10 failed: 50 %.
                assert_eq!(effect, Effect::Changed(Transition::Opened));
            }
        }
        assert_eq!(h.state(&p, at(2005)), State::Unhealthy);
    }

    #[test]
    fn skipping_fresh_successes_changes_no_judgment_under_steady_traffic() {
        // Outcomes every 1–20 ms with bursts of failures, recorded with the skip and as if
        // every success were written: the same transitions at the same requests, and the
        // same state after each.
        for seed in 1..=20u64 {
            let p = HealthPolicy {
                min_requests: [5, 10, 20][(seed % 3) as usize],
                window: Duration::from_millis([500, 2_000, 10_000][(seed % 3) as usize]),
                ..policy()
            };
            let mut skipping = RegionHealth::new();
            let mut exact = RegionHealth::new();
            let mut state = seed;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let (mut t, mut skipped) = (0u64, 0u32);
            for i in 0..20_000u32 {
                t += 1 + next() % 20;
                let burst = (i / 400) % 5 == 4;
                let outcome = if next() % 100 < if burst { 70 } else { 3 } {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                let now = at(t);
                let started = at(t.saturating_sub(5));
                let a = skipping.record(&p, now, started, outcome);
                let b = exact.record_outcome(&p, now, started, outcome, false);
                if a == Effect::Unchanged {
                    skipped += 1;
                    assert_eq!(b, Effect::Counted, "seed {seed}, request {i}");
                } else {
                    assert_eq!(a, b, "seed {seed}, request {i}");
                }
                assert_eq!(
                    skipping.state(&p, now),
                    exact.state(&p, now),
                    "seed {seed}, request {i}"
                );
            }
            assert!(skipped > 1_000, "seed {seed}: only {skipped} writes saved");
        }
    }

    #[test]
    fn a_success_is_written_when_the_ring_is_not_all_fresh_successes() {
        let p = policy();
        let interval = RegionHealth::refresh_interval(&p);
        assert_eq!(interval, Duration::from_millis(500));
        let mut h = RegionHealth::new();
        // Filling the ring writes every success.
        assert_eq!(feed(&mut h, 0, 10, Outcome::Success), Effect::Counted);
        assert_eq!(feed(&mut h, 10, 1, Outcome::Success), Effect::Unchanged);
        // After the interval, one is written again.
        let late = at(9 + 500);
        assert_eq!(h.record(&p, late, late, Outcome::Success), Effect::Counted);
        // A failure in the ring makes every outcome count until it is pushed out.
        feed(&mut h, 600, 1, Outcome::Failure);
        assert_eq!(feed(&mut h, 601, 9, Outcome::Success), Effect::Counted);
        // The success that pushes the failure out is written; the next is not.
        assert_eq!(feed(&mut h, 610, 1, Outcome::Success), Effect::Counted);
        assert_eq!(feed(&mut h, 611, 1, Outcome::Success), Effect::Unchanged);
    }

    #[test]
    fn scattered_failures_below_the_threshold_keep_it_healthy() {
        let p = policy();
        let mut h = RegionHealth::new();
        for i in 0..1000u64 {
            let t = at(i);
            let outcome = if i % 3 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert_ne!(
                h.record(&p, t, t, outcome),
                Effect::Changed(Transition::Opened),
                "at {i}"
            );
        }
        assert_eq!(h.state(&p, at(1000)), State::Healthy);
    }

    #[test]
    fn fewer_than_min_requests_recent_outcomes_never_open_it() {
        let p = policy();
        let mut h = RegionHealth::new();
        // 9 failures, then the window passes before the 10th.
        feed(&mut h, 0, 9, Outcome::Failure);
        let late = at(20_000);
        assert_eq!(h.record(&p, late, late, Outcome::Failure), Effect::Counted);
        assert_eq!(h.recent_failures(&p, late), (1, 1));
        assert_eq!(h.state(&p, late), State::Healthy);
    }

    #[test]
    fn cools_down_then_probes_then_restores_after_enough_successes() {
        let p = policy();
        let mut h = RegionHealth::new();
        assert_eq!(
            feed(&mut h, 0, 10, Outcome::Failure),
            Effect::Changed(Transition::Opened)
        );
        let opened = 9;
        // Cooling down: outcomes do not count.
        let t = at(opened + 4_999);
        assert_eq!(h.state(&p, t), State::Unhealthy);
        assert_eq!(h.record(&p, t, t, Outcome::Success), Effect::Ignored);
        // Probing from the end of the cool-down.
        let t = at(opened + 5_000);
        assert_eq!(h.state(&p, t), State::Probing);
        assert_eq!(h.record(&p, t, t, Outcome::Success), Effect::Counted);
        assert_eq!(h.record(&p, t, t, Outcome::Success), Effect::Counted);
        assert_eq!(
            h.record(&p, t, t, Outcome::Success),
            Effect::Changed(Transition::Restored)
        );
        assert_eq!(h.state(&p, t), State::Healthy);
        assert_eq!(h.recent_failures(&p, t), (0, 0));
    }

    #[test]
    fn a_failed_probe_starts_another_cool_down() {
        let p = policy();
        let mut h = RegionHealth::new();
        feed(&mut h, 0, 10, Outcome::Failure);
        let t = at(6_000);
        assert_eq!(h.record(&p, t, t, Outcome::Success), Effect::Counted);
        assert_eq!(
            h.record(&p, t, t, Outcome::Failure),
            Effect::Changed(Transition::Reopened)
        );
        assert_eq!(h.state(&p, at(10_999)), State::Unhealthy);
        assert_eq!(h.state(&p, at(11_000)), State::Probing);
        // The earlier probe success does not count any more.
        let t = at(11_000);
        assert_eq!(h.record(&p, t, t, Outcome::Success), Effect::Counted);
        assert_eq!(h.record(&p, t, t, Outcome::Success), Effect::Counted);
        assert_eq!(
            h.record(&p, t, t, Outcome::Success),
            Effect::Changed(Transition::Restored)
        );
    }

    #[test]
    fn outcomes_of_requests_decided_before_the_last_change_are_ignored() {
        let p = policy();
        let mut h = RegionHealth::new();
        feed(&mut h, 0, 10, Outcome::Failure); // opened at 9 ms
                                               // A slow failure of a request sent at 5 ms arrives while probing.
        assert_eq!(
            h.record(&p, at(6_000), at(5), Outcome::Failure),
            Effect::Ignored
        );
        assert_eq!(h.state(&p, at(6_000)), State::Probing);
    }

    #[test]
    fn the_record_round_trips_through_its_bytes() {
        let p = policy();
        let mut h = RegionHealth::new();
        feed(&mut h, 0, 7, Outcome::Success);
        feed(&mut h, 100, 2, Outcome::Failure);
        let bytes = h.encode();
        assert_eq!(bytes.len(), 21 + 4 * 9);
        assert_eq!(RegionHealth::decode(&bytes), Some(h.clone()));
        assert_eq!(RegionHealth::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(RegionHealth::decode(b""), None);
        assert_eq!(RegionHealth::decode(&[2; 21]), None);
        // A decoded record keeps working.
        let mut back = RegionHealth::decode(&bytes).unwrap();
        assert_eq!(back.recent_failures(&p, at(200)), (2, 9));
        assert_eq!(
            back.record(&p, at(201), at(201), Outcome::Success),
            Effect::Counted
        );
    }

    #[test]
    fn the_state_can_be_read_from_the_header_of_the_bytes_alone() {
        let p = policy();
        let mut h = RegionHealth::new();
        let read = |h: &RegionHealth, ms| RegionHealth::state_of_encoded(&h.encode(), &p, at(ms));
        assert_eq!(read(&h, 0), State::Healthy);
        feed(&mut h, 0, 10, Outcome::Failure);
        for ms in [100, 5_008, 5_009, 60_000] {
            assert_eq!(read(&h, ms), h.state(&p, at(ms)), "at {ms} ms");
        }
        assert_eq!(
            RegionHealth::state_of_encoded(b"", &p, at(0)),
            State::Healthy
        );
        assert_eq!(
            RegionHealth::state_of_encoded(&[1, 1, 0], &p, at(0)),
            State::Healthy
        );
        assert_eq!(
            RegionHealth::state_of_encoded(&[9, 1, 0, 0, 0, 0, 0, 0, 0, 0], &p, at(0)),
            State::Healthy
        );
    }

    #[test]
    fn a_smaller_min_requests_after_a_reload_keeps_the_newest_outcomes() {
        let mut wide = policy();
        wide.min_requests = 64;
        let mut h = RegionHealth::new();
        for i in 0..64u64 {
            let t = at(i);
            h.record(&wide, t, t, Outcome::Success);
        }
        let narrow = policy(); // 10
        let t = at(100);
        h.record(&narrow, t, t, Outcome::Failure);
        assert_eq!(h.recent_failures(&narrow, t), (1, 10));
    }

    #[test]
    fn a_ring_older_than_its_offsets_can_count_starts_afresh() {
        let p = policy();
        let mut h = RegionHealth::new();
        feed(&mut h, 0, 5, Outcome::Failure);
        let much_later = at(u64::from(OFFSET) + 10);
        assert_eq!(
            h.record(&p, much_later, much_later, Outcome::Success),
            Effect::Counted
        );
        assert_eq!(h.recent_failures(&p, much_later), (0, 1));
    }

    #[test]
    fn gauge_values_order_the_states_by_severity() {
        assert_eq!(State::Healthy.gauge_value(), 0);
        assert_eq!(State::Probing.gauge_value(), 1);
        assert_eq!(State::Unhealthy.gauge_value(), 2);
    }
}
