//! Time from the proxy's clock. Pure cores take the time as a value; adapters read it here.

use crate::host;
use std::time::Duration;

/// Time since the Unix epoch by the proxy's wall clock; `None` if the host cannot tell.
pub fn now() -> Option<Duration> {
    host::current_time_nanos().ok().map(Duration::from_nanos)
}

/// Seconds until `later` from `now`, rounded up, as HTTP's `Retry-After` counts them.
pub fn whole_seconds_until(now: Duration, later: Duration) -> u64 {
    let wait = later.saturating_sub(now);
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_waits_up_to_whole_seconds() {
        let s = Duration::from_secs;
        assert_eq!(whole_seconds_until(s(10), s(10)), 0);
        assert_eq!(whole_seconds_until(s(10), s(9)), 0);
        assert_eq!(
            whole_seconds_until(s(10), s(10) + Duration::from_millis(1)),
            1
        );
        assert_eq!(whole_seconds_until(s(10), s(12)), 2);
    }
}
