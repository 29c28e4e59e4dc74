//! The circuit breaker state machine, after resilience4j's: CLOSED, OPEN and HALF_OPEN,
//! plus METRICS_ONLY (measure, never act) and FORCED_OPEN. It takes times and call outcomes
//! as values and returns decisions; where its state lives is the caller's business.
//!
//! - CLOSED: every call is permitted and counted in the window. Once the window holds the
//!   minimum number of calls, a failure rate or slow-call rate at or above its threshold
//!   opens the breaker.
//! - OPEN: no call is permitted until the wait duration has passed; the next call then
//!   turns the breaker HALF_OPEN and is its first probe.
//! - HALF_OPEN: only the permitted number of probes go through. When they have all
//!   finished, their rates decide: at or above a threshold it opens again, else it closes.
//!   If they take longer than the maximum wait, it opens again.
//! - METRICS_ONLY: every call is permitted and counted; it never changes state.
//! - FORCED_OPEN: no call is permitted; it never changes state.
//!
//! Every transition starts a new generation and empties the window. A call carries the
//! generation it was permitted in, and counts only in that generation, so a call permitted
//! while CLOSED that finishes after the breaker opened does not count as a probe.

use crate::window::{Call, Spec, Totals, Window};
use std::time::Duration;

/// How a breaker is run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The state machine: CLOSED, OPEN, HALF_OPEN.
    #[default]
    Auto,
    /// Always METRICS_ONLY.
    MetricsOnly,
    /// Always FORCED_OPEN.
    ForcedOpen,
}

/// A breaker's validated settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// How it is run.
    pub mode: Mode,
    /// Opens at or above this percentage of failed calls (above 0, at most 100).
    pub failure_rate_threshold: f64,
    /// Opens at or above this percentage of slow calls (above 0, at most 100).
    pub slow_call_rate_threshold: f64,
    /// A call taking at least this long is slow.
    pub slow_call_duration: Duration,
    /// Rates are not judged until the window holds this many calls (at least 1).
    pub minimum_number_of_calls: u32,
    /// The window calls are counted in.
    pub window: Spec,
    /// How long it stays OPEN before letting probes through.
    pub wait_duration_in_open: Duration,
    /// How many probes HALF_OPEN lets through (at least 1).
    pub permitted_calls_in_half_open: u32,
    /// How long HALF_OPEN waits for its probes before opening again; `None`: forever.
    pub max_wait_in_half_open: Option<Duration>,
}

impl Default for Settings {
    /// resilience4j's defaults, but HALF_OPEN gives up on lost probes after a minute.
    fn default() -> Self {
        Settings {
            mode: Mode::Auto,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: Duration::from_secs(60),
            minimum_number_of_calls: 100,
            window: Spec::Count { calls: 100 },
            wait_duration_in_open: Duration::from_secs(60),
            permitted_calls_in_half_open: 10,
            max_wait_in_half_open: Some(Duration::from_secs(60)),
        }
    }
}

impl Settings {
    /// The calls the window must hold before rates are judged: a count window smaller than
    /// the minimum is judged when full, as resilience4j does.
    pub fn calls_needed(&self) -> u32 {
        match self.window {
            Spec::Count { calls } => self.minimum_number_of_calls.min(calls),
            Spec::Time { .. } => self.minimum_number_of_calls,
        }
        .max(1)
    }

    /// Whether `totals` are over either threshold.
    fn tripped(&self, totals: &Totals) -> bool {
        totals.failure_rate() >= self.failure_rate_threshold
            || totals.slow_call_rate() >= self.slow_call_rate_threshold
    }

    /// The call a finished request makes: failed or not, slow or not.
    pub fn call(&self, failed: bool, duration: Option<Duration>) -> Call {
        Call {
            failed,
            slow: duration.is_some_and(|d| d >= self.slow_call_duration),
        }
    }
}

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Calls flow and are counted.
    Closed,
    /// Calls are refused until the wait is over.
    Open,
    /// A few probe calls decide whether to close or open again.
    HalfOpen,
    /// Calls flow and are counted; the state never changes.
    MetricsOnly,
    /// Calls are refused; the state never changes.
    ForcedOpen,
}

impl State {
    /// The value of the state gauge.
    pub fn gauge(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::MetricsOnly => 3,
            State::ForcedOpen => 4,
        }
    }

    /// The state from its gauge value.
    pub fn from_gauge(value: u64) -> Option<State> {
        Some(match value {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::MetricsOnly,
            4 => State::ForcedOpen,
            _ => return None,
        })
    }

    /// The name used in labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::MetricsOnly => "metrics_only",
            State::ForcedOpen => "forced_open",
        }
    }

    /// The state a breaker in `mode` starts in.
    pub fn initial(mode: Mode) -> State {
        match mode {
            Mode::Auto => State::Closed,
            Mode::MetricsOnly => State::MetricsOnly,
            Mode::ForcedOpen => State::ForcedOpen,
        }
    }
}

/// Whether a call may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Go ahead; report the outcome with this generation.
    Permitted {
        /// The generation the call was permitted in.
        generation: u32,
    },
    /// Go ahead as a HALF_OPEN probe; report the outcome with this generation.
    Probe {
        /// The generation the probe belongs to.
        generation: u32,
    },
    /// Refused.
    Refused {
        /// When OPEN, how long until probes are let through.
        retry_after: Option<Duration>,
    },
}

/// A change of state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

/// The probes of a HALF_OPEN generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    /// Probes let through.
    pub started: u32,
    /// Probes finished, with their failures and slow calls.
    pub finished: Totals,
}

/// A breaker: its state, when it entered it, and what it has counted since.
#[derive(Clone, Debug, PartialEq)]
pub struct Breaker {
    /// The current state.
    pub state: State,
    /// Bumped on every transition.
    pub generation: u32,
    /// When the state was entered, as time since the Unix epoch.
    pub since: Duration,
    /// HALF_OPEN's probes.
    pub probes: Probes,
    /// CLOSED's (and METRICS_ONLY's) calls.
    pub window: Window,
}

impl Breaker {
    /// A new breaker in the state its mode starts in.
    pub fn new(settings: &Settings, now: Duration) -> Breaker {
        Breaker {
            state: State::initial(settings.mode),
            generation: 0,
            since: now,
            probes: Probes::default(),
            window: Window::new(settings.window),
        }
    }

    fn enter(&mut self, settings: &Settings, to: State, now: Duration) -> Transition {
        let from = self.state;
        self.state = to;
        self.generation = self.generation.wrapping_add(1);
        self.since = now;
        self.probes = Probes::default();
        self.window = Window::new(settings.window);
        Transition { from, to }
    }

    /// Asks to let a call through at `now`. May move OPEN to HALF_OPEN (this call is then
    /// its first probe), or HALF_OPEN back to OPEN when its probes are overdue.
    pub fn acquire(
        &mut self,
        settings: &Settings,
        now: Duration,
    ) -> (Permission, Option<Transition>) {
        let generation = self.generation;
        match self.state {
            State::Closed | State::MetricsOnly => (Permission::Permitted { generation }, None),
            State::ForcedOpen => (Permission::Refused { retry_after: None }, None),
            State::Open => {
                let reopen_at = self.since.saturating_add(settings.wait_duration_in_open);
                if now < reopen_at {
                    let retry_after = Some(reopen_at.saturating_sub(now));
                    return (Permission::Refused { retry_after }, None);
                }
                let transition = self.enter(settings, State::HalfOpen, now);
                self.probes.started = 1;
                let generation = self.generation;
                (Permission::Probe { generation }, Some(transition))
            }
            State::HalfOpen => {
                let overdue = settings
                    .max_wait_in_half_open
                    .is_some_and(|wait| now >= self.since.saturating_add(wait));
                if overdue {
                    let transition = self.enter(settings, State::Open, now);
                    let retry_after = Some(settings.wait_duration_in_open);
                    return (Permission::Refused { retry_after }, Some(transition));
                }
                if self.probes.started < settings.permitted_calls_in_half_open {
                    self.probes.started += 1;
                    (Permission::Probe { generation }, None)
                } else {
                    (Permission::Refused { retry_after: None }, None)
                }
            }
        }
    }

    /// Counts a call that finished at `now`. `generation` is the one it was permitted in;
    /// `None` when unknown (the call was not asked for, or the state could not be read
    /// then): it counts only in CLOSED or METRICS_ONLY, never as a probe.
    pub fn record(
        &mut self,
        settings: &Settings,
        now: Duration,
        generation: Option<u32>,
        call: Call,
    ) -> Option<Transition> {
        if generation.is_some_and(|g| g != self.generation) {
            return None;
        }
        match self.state {
            State::Open | State::ForcedOpen => None,
            State::MetricsOnly => {
                self.window.record(now, call);
                None
            }
            State::Closed => {
                self.window.record(now, call);
                let totals = self.window.totals(now);
                if totals.calls >= settings.calls_needed() && settings.tripped(&totals) {
                    Some(self.enter(settings, State::Open, now))
                } else {
                    None
                }
            }
            State::HalfOpen => {
                generation?;
                self.probes.finished.add(call);
                if self.probes.finished.calls < settings.permitted_calls_in_half_open {
                    return None;
                }
                let to = if settings.tripped(&self.probes.finished) {
                    State::Open
                } else {
                    State::Closed
                };
                Some(self.enter(settings, to, now))
            }
        }
    }

    /// Gives back the permit of a probe whose outcome says nothing about the upstream (the
    /// client went away first), so that another probe can take its place.
    pub fn release(&mut self, generation: u32) -> bool {
        let outstanding = self.probes.started > self.probes.finished.calls;
        if self.state == State::HalfOpen && self.generation == generation && outstanding {
            self.probes.started -= 1;
            true
        } else {
            false
        }
    }

    /// What the breaker has counted at `now`: the window's calls, or HALF_OPEN's finished
    /// probes.
    pub fn totals(&self, now: Duration) -> Totals {
        match self.state {
            State::HalfOpen => self.probes.finished,
            _ => self.window.totals(now),
        }
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

    /// Opens at 50 % failures over the last 4 calls, probes 2 calls after 10 s.
    fn count_settings() -> Settings {
        Settings {
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: Duration::from_millis(500),
            minimum_number_of_calls: 4,
            window: Spec::Count { calls: 4 },
            wait_duration_in_open: secs(10),
            permitted_calls_in_half_open: 2,
            max_wait_in_half_open: Some(secs(30)),
            ..Settings::default()
        }
    }

    fn time_settings() -> Settings {
        Settings {
            window: Spec::time(secs(10)),
            ..count_settings()
        }
    }

    /// Permits a call at `now` and records it.
    fn call(
        breaker: &mut Breaker,
        settings: &Settings,
        now: Duration,
        c: Call,
    ) -> Option<Transition> {
        let (permission, _) = breaker.acquire(settings, now);
        let generation = match permission {
            Permission::Permitted { generation } | Permission::Probe { generation } => generation,
            Permission::Refused { .. } => panic!("refused at {now:?} in {:?}", breaker.state),
        };
        breaker.record(settings, now, Some(generation), c)
    }

    fn opened(settings: &Settings) -> Breaker {
        let mut breaker = Breaker::new(settings, secs(0));
        for _ in 0..4 {
            call(&mut breaker, settings, secs(1), FAILED);
        }
        assert_eq!(breaker.state, State::Open);
        breaker
    }

    #[test]
    fn a_count_window_opens_once_the_minimum_calls_fail_at_the_threshold() {
        let settings = count_settings();
        let mut breaker = Breaker::new(&settings, secs(0));
        assert_eq!(call(&mut breaker, &settings, secs(1), FAILED), None);
        assert_eq!(call(&mut breaker, &settings, secs(1), FAILED), None);
        assert_eq!(call(&mut breaker, &settings, secs(1), OK), None);
        // 2 failures in 4 calls is 50 %: at the threshold, it opens.
        assert_eq!(
            call(&mut breaker, &settings, secs(1), OK),
            Some(Transition {
                from: State::Closed,
                to: State::Open
            })
        );
        assert_eq!(breaker.totals(secs(1)), Totals::default());
    }

    #[test]
    fn a_count_window_stays_closed_below_the_threshold() {
        let settings = count_settings();
        let mut breaker = Breaker::new(&settings, secs(0));
        for c in [FAILED, OK, OK, OK, FAILED, OK, OK, OK] {
            assert_eq!(call(&mut breaker, &settings, secs(1), c), None);
        }
        assert_eq!(breaker.state, State::Closed);
        assert_eq!(breaker.totals(secs(1)).failure_rate(), 25.0);
    }

    #[test]
    fn a_time_window_judges_only_the_calls_of_its_span() {
        let settings = time_settings();
        let mut breaker = Breaker::new(&settings, secs(0));
        // Two old failures, then two successes 15 s later: the failures have left.
        call(&mut breaker, &settings, secs(0), FAILED);
        call(&mut breaker, &settings, secs(0), FAILED);
        call(&mut breaker, &settings, secs(15), OK);
        assert_eq!(call(&mut breaker, &settings, secs(15), OK), None);
        assert_eq!(breaker.state, State::Closed);
        // Two failures within the span make 2 of 4: it opens.
        call(&mut breaker, &settings, secs(16), FAILED);
        assert_eq!(
            call(&mut breaker, &settings, secs(17), FAILED).map(|t| t.to),
            Some(State::Open)
        );
    }

    #[test]
    fn a_time_window_waits_for_the_minimum_number_of_calls() {
        let settings = Settings {
            minimum_number_of_calls: 5,
            ..time_settings()
        };
        let mut breaker = Breaker::new(&settings, secs(0));
        for _ in 0..4 {
            assert_eq!(call(&mut breaker, &settings, secs(1), FAILED), None);
        }
        assert_eq!(
            call(&mut breaker, &settings, secs(1), FAILED).map(|t| t.to),
            Some(State::Open)
        );
    }

    #[test]
    fn slow_calls_open_it_at_their_own_threshold() {
        let settings = Settings {
            slow_call_rate_threshold: 75.0,
            ..count_settings()
        };
        let mut breaker = Breaker::new(&settings, secs(0));
        for c in [SLOW, SLOW, OK] {
            assert_eq!(call(&mut breaker, &settings, secs(1), c), None);
        }
        assert_eq!(
            call(&mut breaker, &settings, secs(1), SLOW).map(|t| t.to),
            Some(State::Open)
        );
    }

    #[test]
    fn a_call_is_slow_from_the_slow_call_duration() {
        let settings = count_settings();
        let ms = Duration::from_millis;
        assert!(!settings.call(false, Some(ms(499))).slow);
        assert!(settings.call(false, Some(ms(500))).slow);
        assert!(!settings.call(true, None).slow);
        assert!(settings.call(true, None).failed);
    }

    #[test]
    fn open_refuses_until_the_wait_is_over_then_lets_a_probe_through() {
        let settings = count_settings();
        let mut breaker = opened(&settings);
        assert_eq!(
            breaker.acquire(&settings, secs(5)),
            (
                Permission::Refused {
                    retry_after: Some(secs(6))
                },
                None
            )
        );
        let (permission, transition) = breaker.acquire(&settings, secs(11));
        assert!(matches!(permission, Permission::Probe { .. }));
        assert_eq!(
            transition,
            Some(Transition {
                from: State::Open,
                to: State::HalfOpen
            })
        );
    }

    #[test]
    fn half_open_lets_only_the_permitted_probes_through() {
        let settings = count_settings();
        let mut breaker = opened(&settings);
        let (first, _) = breaker.acquire(&settings, secs(11));
        let (second, _) = breaker.acquire(&settings, secs(11));
        let (third, _) = breaker.acquire(&settings, secs(11));
        assert!(matches!(first, Permission::Probe { .. }));
        assert!(matches!(second, Permission::Probe { .. }));
        assert_eq!(third, Permission::Refused { retry_after: None });
    }

    #[test]
    fn half_open_closes_when_the_probes_succeed() {
        let settings = count_settings();
        let mut breaker = opened(&settings);
        assert_eq!(call(&mut breaker, &settings, secs(11), OK), None);
        assert_eq!(
            call(&mut breaker, &settings, secs(12), OK),
            Some(Transition {
                from: State::HalfOpen,
                to: State::Closed
            })
        );
        assert_eq!(breaker.totals(secs(12)), Totals::default());
    }

    #[test]
    fn half_open_opens_again_when_the_probes_fail() {
        let settings = count_settings();
        let mut breaker = opened(&settings);
        call(&mut breaker, &settings, secs(11), OK);
        assert_eq!(
            call(&mut breaker, &settings, secs(12), FAILED).map(|t| t.to),
            Some(State::Open)
        );
        // A new wait starts from the moment it opened again.
        assert_eq!(
            breaker.acquire(&settings, secs(13)).0,
            Permission::Refused {
                retry_after: Some(secs(9))
            }
        );
    }

    #[test]
    fn half_open_opens_again_when_its_probes_are_overdue() {
        let settings = count_settings();
        let mut breaker = opened(&settings);
        breaker.acquire(&settings, secs(11));
        breaker.acquire(&settings, secs(11));
        let (permission, transition) = breaker.acquire(&settings, secs(41));
        assert!(matches!(permission, Permission::Refused { .. }));
        assert_eq!(transition.map(|t| t.to), Some(State::Open));
    }

    #[test]
    fn a_released_probe_lets_another_one_through() {
        let settings = count_settings();
        let mut breaker = opened(&settings);
        let (Permission::Probe { generation }, _) = breaker.acquire(&settings, secs(11)) else {
            panic!("a probe goes through")
        };
        breaker.acquire(&settings, secs(11));
        assert!(matches!(
            breaker.acquire(&settings, secs(11)).0,
            Permission::Refused { .. }
        ));
        assert!(breaker.release(generation));
        assert!(matches!(
            breaker.acquire(&settings, secs(11)).0,
            Permission::Probe { .. }
        ));
        assert!(!breaker.release(generation + 1));
    }

    #[test]
    fn a_call_from_an_earlier_generation_is_not_a_probe() {
        let settings = count_settings();
        let mut breaker = Breaker::new(&settings, secs(0));
        let (Permission::Permitted { generation: early }, _) = breaker.acquire(&settings, secs(0))
        else {
            panic!("closed permits")
        };
        for _ in 0..4 {
            call(&mut breaker, &settings, secs(1), FAILED);
        }
        breaker.acquire(&settings, secs(11)); // HALF_OPEN, one probe out
        assert_eq!(breaker.record(&settings, secs(12), Some(early), OK), None);
        assert_eq!(breaker.record(&settings, secs(12), None, OK), None);
        assert_eq!(breaker.totals(secs(12)), Totals::default());
    }

    #[test]
    fn a_call_of_unknown_generation_counts_while_closed() {
        let settings = count_settings();
        let mut breaker = Breaker::new(&settings, secs(0));
        breaker.record(&settings, secs(1), None, FAILED);
        assert_eq!(breaker.totals(secs(1)).failures, 1);
    }

    #[test]
    fn metrics_only_counts_but_never_opens_or_refuses() {
        let settings = Settings {
            mode: Mode::MetricsOnly,
            ..count_settings()
        };
        let mut breaker = Breaker::new(&settings, secs(0));
        assert_eq!(breaker.state, State::MetricsOnly);
        for _ in 0..20 {
            assert_eq!(call(&mut breaker, &settings, secs(1), FAILED), None);
        }
        assert_eq!(breaker.state, State::MetricsOnly);
        assert_eq!(breaker.totals(secs(1)).failure_rate(), 100.0);
    }

    #[test]
    fn forced_open_refuses_everything_and_never_changes() {
        let settings = Settings {
            mode: Mode::ForcedOpen,
            ..count_settings()
        };
        let mut breaker = Breaker::new(&settings, secs(0));
        for t in [0, 100, 10_000] {
            assert_eq!(
                breaker.acquire(&settings, secs(t)),
                (Permission::Refused { retry_after: None }, None)
            );
        }
        assert_eq!(breaker.record(&settings, secs(1), None, OK), None);
        assert_eq!(breaker.state, State::ForcedOpen);
    }

    #[test]
    fn a_count_window_smaller_than_the_minimum_is_judged_when_full() {
        let settings = Settings {
            minimum_number_of_calls: 100,
            ..count_settings()
        };
        assert_eq!(settings.calls_needed(), 4);
        let time = Settings {
            minimum_number_of_calls: 100,
            ..time_settings()
        };
        assert_eq!(time.calls_needed(), 100);
    }

    #[test]
    fn states_round_trip_through_their_gauge_values() {
        for state in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::MetricsOnly,
            State::ForcedOpen,
        ] {
            assert_eq!(State::from_gauge(state.gauge()), Some(state));
        }
        assert_eq!(State::from_gauge(9), None);
    }
}
