//! Steady load through Envoy from a few concurrent clients, with every request's outcome and
//! timing recorded: for drills in which an upstream stops and comes back mid-load.
//!
//! ```no_run
//! use meshward_tests::load::Load;
//! use meshward_tests::Request;
//! # async fn example(envoy: &meshward_tests::Envoy) {
//! let load = Load::start(envoy.addr(), 8, "x-served-by", |n| {
//!     Request::get("/").with_header("x-session-id", &format!("user-{n}"))
//! });
//! tokio::time::sleep(std::time::Duration::from_secs(1)).await;
//! let samples = load.stop().await;
//! assert!(samples.iter().all(|s| s.status == 200));
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::http1::{self, Request};

/// One request of the load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The request's number, from 0, in the order requests were made.
    pub number: u64,
    /// When it was sent, from the start of the load.
    pub started: Duration,
    /// When its response (or error) arrived, from the start of the load.
    pub finished: Duration,
    /// The response status, or 0 when no response came (connection error, timeout).
    pub status: u16,
    /// The value of the response header the load was told to record.
    pub label: Option<String>,
}

impl Sample {
    /// Whether the request got a 2xx response.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Load running in the background; [`Load::stop`] ends it and hands back the samples.
pub struct Load {
    start: Instant,
    running: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `clients` tasks, each sending one request after another to `addr` (a new
    /// connection each), request number `n` made by `request(n)`. Each response's
    /// `label_header` is recorded. Must be called within a Tokio runtime.
    pub fn start(
        addr: SocketAddr,
        clients: usize,
        label_header: &str,
        request: impl Fn(u64) -> Request + Send + Sync + 'static,
    ) -> Load {
        let start = Instant::now();
        let running = Arc::new(AtomicBool::new(true));
        let next = Arc::new(AtomicU64::new(0));
        let request = Arc::new(request);
        let clients = (0..clients)
            .map(|_| {
                let running = Arc::clone(&running);
                let next = Arc::clone(&next);
                let request = Arc::clone(&request);
                let label_header = label_header.to_owned();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while running.load(Ordering::Relaxed) {
                        let number = next.fetch_add(1, Ordering::Relaxed);
                        let sent = request(number);
                        let started = start.elapsed();
                        let response = http1::send(addr, &sent).await;
                        let finished = start.elapsed();
                        let (status, label) = match &response {
                            Ok(r) => (r.status, r.header(&label_header).map(str::to_owned)),
                            Err(_) => (0, None),
                        };
                        samples.push(Sample {
                            number,
                            started,
                            finished,
                            status,
                            label,
                        });
                    }
                    samples
                })
            })
            .collect();
        Load {
            start,
            running,
            clients,
        }
    }

    /// Time since the load started, on the clock the samples use.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stops sending, waits for the requests in flight, and returns every sample in the
    /// order the requests were sent.
    pub async fn stop(self) -> Vec<Sample> {
        self.running.store(false, Ordering::Relaxed);
        let mut samples = Vec::new();
        for client in self.clients {
            // A client task only ends by returning its samples; a panic in one (there is
            // no unwrap in it) would lose only that client's samples.
            if let Ok(mut mine) = client.await {
                samples.append(&mut mine);
            }
        }
        samples.sort_by_key(|s| (s.started, s.number));
        samples
    }
}

/// What a failover drill measured: an upstream stopped at `stopped_at` and started again at
/// `restarted_at`, both on the load's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Failover {
    /// Requests in the whole run.
    pub requests: usize,
    /// Requests that failed between the stop and the restart.
    pub failed: usize,
    /// Requests that failed before the stop or after the restart (should be none).
    pub failed_outside: usize,
    /// Requests in flight at the moment of the stop.
    pub in_flight_at_stop: usize,
    /// From the stop until the last failed request finished: how long traffic took to move.
    pub time_to_failover: Duration,
    /// From the restart until the first request `back` accepts, if any did.
    pub time_to_recover: Option<Duration>,
}

impl Failover {
    /// Measures a drill from its samples. `back` says which responses show that traffic
    /// returned to the restarted upstream.
    pub fn measure(
        samples: &[Sample],
        stopped_at: Duration,
        restarted_at: Duration,
        back: impl Fn(&Sample) -> bool,
    ) -> Failover {
        let during = |s: &Sample| s.finished >= stopped_at && s.started < restarted_at;
        let failed: Vec<&Sample> = samples
            .iter()
            .filter(|s| !s.succeeded() && during(s))
            .collect();
        let time_to_failover = failed
            .iter()
            .map(|s| s.finished.saturating_sub(stopped_at))
            .max()
            .unwrap_or_default();
        Failover {
            requests: samples.len(),
            failed: failed.len(),
            failed_outside: samples
                .iter()
                .filter(|s| !s.succeeded() && !during(s))
                .count(),
            in_flight_at_stop: samples
                .iter()
                .filter(|s| s.started < stopped_at && s.finished > stopped_at)
                .count(),
            time_to_failover,
            time_to_recover: samples
                .iter()
                .filter(|s| s.started >= restarted_at && back(s))
                .map(|s| s.finished.saturating_sub(restarted_at))
                .min(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(started_ms: u64, finished_ms: u64, status: u16, label: &str) -> Sample {
        Sample {
            number: started_ms,
            started: Duration::from_millis(started_ms),
            finished: Duration::from_millis(finished_ms),
            status,
            label: Some(label.to_owned()),
        }
    }

    #[test]
    fn a_drill_counts_failures_while_stopped_and_times_the_failover_and_the_return() {
        let ms = Duration::from_millis;
        let samples = [
            sample(0, 5, 200, "a"),
            sample(90, 120, 503, "a"), // in flight at the stop (100 ms)
            sample(110, 115, 503, "a"),
            sample(130, 180, 503, "a"), // the last failure: 80 ms after the stop
            sample(190, 195, 200, "b"),
            sample(1010, 1020, 200, "b"),
            sample(1200, 1230, 200, "a"), // back: 230 ms after the restart (1000 ms)
        ];
        let drill = Failover::measure(&samples, ms(100), ms(1000), |s| {
            s.label.as_deref() == Some("a")
        });
        assert_eq!(drill.requests, 7);
        assert_eq!(drill.failed, 3);
        assert_eq!(drill.failed_outside, 0);
        assert_eq!(drill.in_flight_at_stop, 1);
        assert_eq!(drill.time_to_failover, ms(80));
        assert_eq!(drill.time_to_recover, Some(ms(230)));
    }
}
