//! The byte layout of a breaker in Envoy shared data, where every worker reads and writes it.
//!
//! A record starts with a version and a fingerprint of the settings it was made under. A
//! record from another version or other settings (the configuration changed) is not
//! decoded: the breaker starts afresh under the new settings. All integers are
//! little-endian.
//!
//! ```text
//! version u8 | fingerprint u64 | state u8 | generation u32 | since_ms u64
//! | probes_started u32 | probes: calls u32, failures u32, slow u32
//! | window kind u8, then
//!     count: size u32 | len u32 | next u32 | calls u32 | failures u32 | slow u32 | ring bytes
//!     time:  width_ms u64 | buckets u32 | per bucket: epoch u64 | calls u32 | failures u32 | slow u32
//! ```

use crate::breaker::{Breaker, Mode, Probes, Settings, State};
use crate::window::{Bucket, CountWindow, Spec, TimeWindow, Totals, Window};
use std::time::Duration;

const VERSION: u8 = 1;
const COUNT: u8 = 0;
const TIME: u8 = 1;
/// Bytes before the window: version, fingerprint, state, generation, since, probes.
const HEADER: usize = 1 + 8 + 1 + 4 + 8 + 4 + 12;

/// A hash of the settings a record was made under (FNV-1a over their fields).
pub fn fingerprint(settings: &Settings) -> u64 {
    let mut hash = Fnv::default();
    hash.write(&[match settings.mode {
        Mode::Auto => 0,
        Mode::MetricsOnly => 1,
        Mode::ForcedOpen => 2,
    }]);
    hash.write(&settings.failure_rate_threshold.to_bits().to_le_bytes());
    hash.write(&settings.slow_call_rate_threshold.to_bits().to_le_bytes());
    hash.write(&nanos(settings.slow_call_duration).to_le_bytes());
    hash.write(&settings.minimum_number_of_calls.to_le_bytes());
    match settings.window {
        Spec::Count { calls } => {
            hash.write(&[COUNT]);
            hash.write(&calls.to_le_bytes());
        }
        Spec::Time { span, buckets } => {
            hash.write(&[TIME]);
            hash.write(&nanos(span).to_le_bytes());
            hash.write(&buckets.to_le_bytes());
        }
    }
    hash.write(&nanos(settings.wait_duration_in_open).to_le_bytes());
    hash.write(&settings.permitted_calls_in_half_open.to_le_bytes());
    hash.write(
        &settings
            .max_wait_in_half_open
            .map_or(u64::MAX, nanos)
            .to_le_bytes(),
    );
    hash.0
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Writes `breaker` as a record made under settings with `fingerprint`.
pub fn encode(breaker: &Breaker, fingerprint: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 64);
    out.push(VERSION);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.push(breaker.state.gauge() as u8);
    out.extend_from_slice(&breaker.generation.to_le_bytes());
    out.extend_from_slice(&millis(breaker.since).to_le_bytes());
    out.extend_from_slice(&breaker.probes.started.to_le_bytes());
    put_totals(&mut out, &breaker.probes.finished);
    match &breaker.window {
        Window::Count(window) => {
            out.push(COUNT);
            for n in [window.size, window.len, window.next] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            put_totals(&mut out, &window.totals);
            out.extend_from_slice(&window.bits);
        }
        Window::Time(window) => {
            out.push(TIME);
            out.extend_from_slice(&window.width_ms.to_le_bytes());
            let count = u32::try_from(window.buckets.len()).unwrap_or(0);
            out.extend_from_slice(&count.to_le_bytes());
            for bucket in &window.buckets {
                out.extend_from_slice(&bucket.epoch.to_le_bytes());
                put_totals(&mut out, &bucket.totals);
            }
        }
    }
    out
}

fn put_totals(out: &mut Vec<u8>, totals: &Totals) {
    for n in [totals.calls, totals.failures, totals.slow] {
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// Reads a record made under `settings` (whose fingerprint is `fingerprint`). `None` if it
/// was made under other settings or is not a record this version wrote.
pub fn decode(bytes: &[u8], settings: &Settings, fingerprint: u64) -> Option<Breaker> {
    let mut r = Reader(bytes);
    let (state, generation) = header(&mut r, fingerprint)?;
    let since = Duration::from_millis(r.u64()?);
    let probes = Probes {
        started: r.u32()?,
        finished: r.totals()?,
    };
    let window = match (r.u8()?, settings.window) {
        (COUNT, Spec::Count { calls }) => {
            let (size, len, next) = (r.u32()?, r.u32()?, r.u32()?);
            let totals = r.totals()?;
            let bits = r.take(CountWindow::bytes_for(size))?.to_vec();
            let sane = size == calls && len <= size && next < size;
            if !sane {
                return None;
            }
            Window::Count(CountWindow {
                size,
                len,
                next,
                totals,
                bits,
            })
        }
        (TIME, Spec::Time { buckets, .. }) => {
            let width_ms = r.u64()?;
            let count = r.u32()?;
            if count != buckets || width_ms == 0 {
                return None;
            }
            let buckets = (0..count)
                .map(|_| {
                    Some(Bucket {
                        epoch: r.u64()?,
                        totals: r.totals()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Window::Time(TimeWindow { width_ms, buckets })
        }
        _ => return None,
    };
    if !r.0.is_empty() {
        return None;
    }
    Some(Breaker {
        state,
        generation,
        since,
        probes,
        window,
    })
}

/// Reads only the state and generation of a record made under settings with `fingerprint`:
/// what a request needs to know when the breaker is CLOSED.
pub fn peek(bytes: &[u8], fingerprint: u64) -> Option<(State, u32)> {
    header(&mut Reader(bytes), fingerprint)
}

fn header(r: &mut Reader<'_>, fingerprint: u64) -> Option<(State, u32)> {
    if r.u8()? != VERSION || r.u64()? != fingerprint {
        return None;
    }
    let state = State::from_gauge(u64::from(r.u8()?))?;
    Some((state, r.u32()?))
}

/// Reads little-endian integers off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(u8::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    fn totals(&mut self) -> Option<Totals> {
        Some(Totals {
            calls: self.u32()?,
            failures: self.u32()?,
            slow: self.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Call;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn busy(settings: &Settings) -> Breaker {
        let mut breaker = Breaker::new(settings, secs(1_700_000_000));
        for i in 0..7 {
            let call = Call {
                failed: i % 3 == 0,
                slow: i % 2 == 0,
            };
            breaker.record(settings, secs(1_700_000_000 + i), None, call);
        }
        breaker
    }

    #[test]
    fn a_count_window_breaker_survives_the_round_trip() {
        let settings = Settings {
            failure_rate_threshold: 90.0,
            window: Spec::Count { calls: 10 },
            ..Settings::default()
        };
        let breaker = busy(&settings);
        let print = fingerprint(&settings);
        let bytes = encode(&breaker, print);
        assert_eq!(decode(&bytes, &settings, print), Some(breaker.clone()));
        assert_eq!(peek(&bytes, print), Some((State::Closed, 0)));
    }

    #[test]
    fn a_time_window_breaker_survives_the_round_trip() {
        let settings = Settings {
            failure_rate_threshold: 90.0,
            window: Spec::time(secs(30)),
            ..Settings::default()
        };
        let breaker = busy(&settings);
        let print = fingerprint(&settings);
        let bytes = encode(&breaker, print);
        assert_eq!(decode(&bytes, &settings, print), Some(breaker));
        assert_eq!(bytes.len(), HEADER + 1 + 8 + 4 + 30 * 20);
    }

    #[test]
    fn a_record_made_under_other_settings_is_not_read() {
        let before = Settings::default();
        let after = Settings {
            wait_duration_in_open: secs(5),
            ..Settings::default()
        };
        assert_ne!(fingerprint(&before), fingerprint(&after));
        let bytes = encode(&Breaker::new(&before, secs(0)), fingerprint(&before));
        assert_eq!(decode(&bytes, &after, fingerprint(&after)), None);
        assert_eq!(peek(&bytes, fingerprint(&after)), None);
    }

    #[test]
    fn damaged_records_are_not_read() {
        let settings = Settings::default();
        let print = fingerprint(&settings);
        let bytes = encode(&busy(&settings), print);
        for len in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..len], &settings, print),
                None,
                "cut at {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer, &settings, print), None);
        let mut bad_state = bytes;
        bad_state[9] = 7;
        assert_eq!(decode(&bad_state, &settings, print), None);
    }
}
