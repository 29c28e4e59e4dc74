//! The breakers as every worker sees them: which one a request belongs to, and asking it
//! for permission or telling it an outcome through a compare-and-swap on its shared-data
//! record, so that all workers count into, and act on, the same state.

use crate::breaker::{Breaker, Permission, State, Transition};
use crate::config::{BreakerConfig, Config};
use crate::record;
use crate::window::{Call, Totals};
use meshward_shared::shared_data::{update, Decision, Store, UpdateError};
use std::time::Duration;

/// Compare-and-swap attempts per update before giving up: enough for every worker of a
/// large proxy to win once.
pub const CAS_ATTEMPTS: u32 = 64;

/// The breaker a request belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Circuit {
    /// Its shared-data key.
    pub key: String,
    /// Its name in the refusal header.
    pub name: String,
    /// The cluster it guards.
    pub cluster: String,
    /// The route, for a breaker per route.
    pub route: Option<String>,
}

impl Circuit {
    /// The breaker for a request to `cluster` on `route`, if one is configured.
    pub fn find<'c>(
        config: &'c Config,
        cluster: &str,
        route: &str,
    ) -> Option<(Circuit, &'c BreakerConfig)> {
        if cluster.is_empty() {
            return None;
        }
        let entry = config.breaker_for(cluster)?;
        let route = entry.per_route.then(|| route.to_string());
        let (key, default_name) = match &route {
            Some(route) => (
                format!("meshward_circuit/breaker\n{cluster}\n{route}"),
                format!("{cluster}/{route}"),
            ),
            None => (
                format!("meshward_circuit/breaker\n{cluster}"),
                cluster.to_string(),
            ),
        };
        let circuit = Circuit {
            key,
            name: entry.name.clone().unwrap_or(default_name),
            cluster: cluster.to_string(),
            route,
        };
        Some((circuit, entry))
    }
}

impl Circuit {
    /// Whether a request to `cluster` on `route` belongs to this breaker.
    pub fn serves(&self, cluster: &str, route: &str) -> bool {
        self.cluster == cluster && self.route.as_deref().is_none_or(|r| r == route)
    }
}

/// What asking for permission did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// Whether the call may go ahead.
    pub permission: Permission,
    /// The state change it caused, if any.
    pub transition: Option<Transition>,
    /// The state after asking.
    pub state: State,
}

/// What telling an outcome did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The state change it caused, if any.
    pub transition: Option<Transition>,
    /// The state after it.
    pub state: State,
    /// What the breaker has counted since.
    pub totals: Totals,
}

/// Asks the breaker at `key` to let a call through at `now`.
pub fn acquire<S: Store>(
    store: &mut S,
    key: &str,
    entry: &BreakerConfig,
    now: Duration,
) -> Result<Acquired, UpdateError> {
    let settings = &entry.settings;
    update(store, key, CAS_ATTEMPTS, |current| {
        // The common case, a CLOSED breaker, only needs the record's first bytes.
        if let Some((state @ (State::Closed | State::MetricsOnly), generation)) =
            current.and_then(|bytes| record::peek(bytes, entry.fingerprint))
        {
            return Decision::Keep(Acquired {
                permission: Permission::Permitted { generation },
                transition: None,
                state,
            });
        }
        let mut breaker = load(current, entry, now);
        let (permission, transition) = breaker.acquire(settings, now);
        let acquired = Acquired {
            permission,
            transition,
            state: breaker.state,
        };
        store_if_changed(current, &breaker, entry, acquired)
    })
}

/// Tells the breaker at `key` that a call permitted in `generation` (`None`: unknown)
/// finished at `now` as `call`.
pub fn record<S: Store>(
    store: &mut S,
    key: &str,
    entry: &BreakerConfig,
    now: Duration,
    generation: Option<u32>,
    call: Call,
) -> Result<Recorded, UpdateError> {
    update(store, key, CAS_ATTEMPTS, |current| {
        let mut breaker = load(current, entry, now);
        let transition = breaker.record(&entry.settings, now, generation, call);
        let recorded = Recorded {
            transition,
            state: breaker.state,
            totals: breaker.totals(now),
        };
        store_if_changed(current, &breaker, entry, recorded)
    })
}

/// Gives back the permit of a probe of `generation` whose outcome was ignored.
pub fn release<S: Store>(
    store: &mut S,
    key: &str,
    entry: &BreakerConfig,
    now: Duration,
    generation: u32,
) -> Result<bool, UpdateError> {
    update(store, key, CAS_ATTEMPTS, |current| {
        let mut breaker = load(current, entry, now);
        if breaker.release(generation) {
            Decision::Write(record::encode(&breaker, entry.fingerprint), true)
        } else {
            Decision::Keep(false)
        }
    })
}

/// The breaker in `current`, or a new one if there is none or it was made under other
/// settings.
fn load(current: Option<&[u8]>, entry: &BreakerConfig, now: Duration) -> Breaker {
    current
        .and_then(|bytes| record::decode(bytes, &entry.settings, entry.fingerprint))
        .unwrap_or_else(|| Breaker::new(&entry.settings, now))
}

fn store_if_changed<T>(
    current: Option<&[u8]>,
    breaker: &Breaker,
    entry: &BreakerConfig,
    result: T,
) -> Decision<T> {
    let bytes = record::encode(breaker, entry.fingerprint);
    if current == Some(bytes.as_slice()) {
        Decision::Keep(result)
    } else {
        Decision::Write(bytes, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use meshward_shared::shared_data::MemoryStore;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    const FAILED: Call = Call {
        failed: true,
        slow: false,
    };

    fn config() -> Config {
        config::parse(
            br#"{"breakers": [
              {"cluster": "api", "minimum_number_of_calls": 2, "sliding_window": {"count": 2},
               "wait_duration_in_open": "10s", "permitted_calls_in_half_open": 1},
              {"cluster": "*", "per_route": true, "name": "the rest"}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_request_finds_its_clusters_breaker_or_the_wildcards_per_route() {
        let config = config();
        let (api, _) = Circuit::find(&config, "api", "r1").unwrap();
        assert_eq!((api.name.as_str(), api.route.as_deref()), ("api", None));
        let (other, entry) = Circuit::find(&config, "web", "home").unwrap();
        assert_eq!(other.route.as_deref(), Some("home"));
        assert_eq!(other.name, "the rest");
        assert!(entry.per_route);
        assert_ne!(
            other.key,
            Circuit::find(&config, "web", "login").unwrap().0.key
        );
        assert!(Circuit::find(&config, "", "r").is_none());
        assert!(api.serves("api", "any route"));
        assert!(other.serves("web", "home") && !other.serves("web", "login"));
        assert!(!api.serves("web", "r1"));
    }

    #[test]
    fn a_closed_breaker_is_read_but_not_written() {
        let config = config();
        let (circuit, entry) = Circuit::find(&config, "api", "r").unwrap();
        let mut store = MemoryStore::default();
        let first = acquire(&mut store, &circuit.key, entry, secs(0)).unwrap();
        assert_eq!(first.permission, Permission::Permitted { generation: 0 });
        let writes = store.writes();
        acquire(&mut store, &circuit.key, entry, secs(1)).unwrap();
        assert_eq!(store.writes(), writes, "a CLOSED acquire writes nothing");
    }

    #[test]
    fn outcomes_told_through_the_store_open_the_breaker_for_everyone() {
        let config = config();
        let (circuit, entry) = Circuit::find(&config, "api", "r").unwrap();
        let mut store = MemoryStore::default();
        record(&mut store, &circuit.key, entry, secs(1), Some(0), FAILED).unwrap();
        let opened = record(&mut store, &circuit.key, entry, secs(1), Some(0), FAILED).unwrap();
        assert_eq!(opened.transition.map(|t| t.to), Some(State::Open));
        let refused = acquire(&mut store, &circuit.key, entry, secs(2)).unwrap();
        assert_eq!(
            refused.permission,
            Permission::Refused {
                retry_after: Some(secs(9))
            }
        );
        let probe = acquire(&mut store, &circuit.key, entry, secs(11)).unwrap();
        assert_eq!(probe.state, State::HalfOpen);
        assert!(matches!(probe.permission, Permission::Probe { .. }));
    }

    #[test]
    fn a_record_from_other_settings_starts_afresh() {
        let mut store = MemoryStore::default();
        let before = config();
        let (circuit, entry) = Circuit::find(&before, "api", "r").unwrap();
        record(&mut store, &circuit.key, entry, secs(1), Some(0), FAILED).unwrap();
        record(&mut store, &circuit.key, entry, secs(1), Some(0), FAILED).unwrap();
        let after = config::parse(br#"{"breakers": [{"cluster": "api", "mode": "metrics_only"}]}"#)
            .unwrap();
        let (_, entry) = Circuit::find(&after, "api", "r").unwrap();
        let acquired = acquire(&mut store, &circuit.key, entry, secs(2)).unwrap();
        assert_eq!(acquired.state, State::MetricsOnly);
        assert!(matches!(acquired.permission, Permission::Permitted { .. }));
    }
}
