//! The regions' health records in shared data: one key per region, read when a decision
//! depends on it and updated with compare-and-swap for every outcome, so all workers share
//! one view.

use crate::config::Config;
use crate::health::{Effect, Outcome, RegionHealth, State};
use meshward_shared::host::Status;
use meshward_shared::shared_data::{update, CreateOnce, Decision, Store, UpdateError};
use std::time::Duration;

/// Compare-and-swap attempts per outcome before giving up (counted in `health_errors`).
pub const MAX_ATTEMPTS: u32 = 8;

/// The shared-data name whose version [`CreateOnce`] borrows, so that a record is created
/// once: a worker that read "absent" never wipes a record another worker created since.
pub const ANCHOR: &str = "meshward.region_router.anchor";

/// Every region's state at `now`, for a decision. The error is the first host failure, if
/// any; its region then counts as healthy, so a broken store leaves routing to the weights
/// and preferences rather than refusing traffic. A record that cannot be read counts as
/// healthy too, as an update would start it afresh.
pub fn states<S: Store>(
    store: &mut S,
    config: &Config,
    now: Duration,
) -> (Vec<State>, Option<Status>) {
    let mut error = None;
    let states = config
        .regions
        .iter()
        .map(|region| match store.get(&region.health_key) {
            Ok(Some(value)) => RegionHealth::state_of_encoded(&value.bytes, &config.health, now),
            Ok(None) => State::Healthy,
            Err(status) => {
                error.get_or_insert(status);
                State::Healthy
            }
        })
        .collect();
    (states, error)
}

/// Region `index`'s state at `now`, for a decision that depends on it. A record that is
/// absent or cannot be read counts as healthy, as in [`states`]; a host failure is
/// returned beside it.
pub fn state<S: Store>(
    store: &mut S,
    config: &Config,
    index: usize,
    now: Duration,
) -> (State, Option<Status>) {
    let Some(region) = config.regions.get(index) else {
        return (State::Healthy, None);
    };
    match store.get(&region.health_key) {
        Ok(Some(value)) => (
            RegionHealth::state_of_encoded(&value.bytes, &config.health, now),
            None,
        ),
        Ok(None) => (State::Healthy, None),
        Err(status) => (State::Healthy, Some(status)),
    }
}

/// Writes an empty record for every region that has none, so that every later update is a
/// real compare-and-swap. Envoy lets any write create a key, whatever its version, so the
/// write goes through [`CreateOnce`]: a worker configuring while others already record
/// outcomes keeps their record.
pub fn create_missing<S: Store>(store: &mut S, config: &Config) -> Result<(), UpdateError> {
    let mut store = CreateOnce::new(store, ANCHOR);
    for region in &config.regions {
        update(
            &mut store,
            &region.health_key,
            MAX_ATTEMPTS,
            |current| match current {
                Some(_) => Decision::Keep(()),
                None => Decision::Write(RegionHealth::new().encode(), ()),
            },
        )?;
    }
    Ok(())
}

/// Records the outcome of a request decided at `started` and sent to region `index`.
pub fn record<S: Store>(
    store: &mut S,
    config: &Config,
    index: usize,
    now: Duration,
    started: Duration,
    outcome: Outcome,
) -> Result<Effect, UpdateError> {
    let Some(region) = config.regions.get(index) else {
        return Ok(Effect::Ignored);
    };
    // A record that is absent (its creation at configure failed) is created once, too.
    let mut store = CreateOnce::new(store, ANCHOR);
    update(&mut store, &region.health_key, MAX_ATTEMPTS, |current| {
        let mut health = current.and_then(RegionHealth::decode).unwrap_or_default();
        let effect = health.record(&config.health, now, started, outcome);
        if effect.needs_write() {
            Decision::Write(health.encode(), effect)
        } else {
            Decision::Keep(effect)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Transition;
    use meshward_shared::host::{HostResult, SharedValue};
    use meshward_shared::shared_data::MemoryStore;
    use serde_json::json;

    fn config() -> Config {
        let value = json!({
            "regions": [
                {"name": "eu-west-1", "cluster": "eu"},
                {"name": "us-east-1", "cluster": "us"}
            ],
            "local_region": "eu-west-1",
            "health": {"min_requests": 4}
        });
        Config::parse(value.to_string().as_bytes(), None).unwrap()
    }

    const NOW: Duration = Duration::from_secs(1_700_000_000);

    #[test]
    fn outcomes_recorded_by_one_worker_are_seen_by_every_decision() {
        let c = config();
        let mut store = MemoryStore::default();
        create_missing(&mut store, &c).unwrap();
        for i in 0..3 {
            assert_eq!(
                record(&mut store, &c, 1, NOW, NOW, Outcome::Failure).unwrap(),
                Effect::Counted,
                "failure {i}"
            );
        }
        assert_eq!(
            record(&mut store, &c, 1, NOW, NOW, Outcome::Failure).unwrap(),
            Effect::Changed(Transition::Opened)
        );
        let (states, error) = states(&mut store, &c, NOW);
        assert_eq!(states, vec![State::Healthy, State::Unhealthy]);
        assert_eq!(error, None);
    }

    #[test]
    fn creating_keeps_existing_records() {
        let c = config();
        let mut store = MemoryStore::default();
        create_missing(&mut store, &c).unwrap();
        for _ in 0..4 {
            record(&mut store, &c, 0, NOW, NOW, Outcome::Failure).unwrap();
        }
        create_missing(&mut store, &c).unwrap();
        assert_eq!(states(&mut store, &c, NOW).0[0], State::Unhealthy);
    }

    /// A store through which another worker acts between our read and our write: on the
    /// first read of `key` that finds it absent, `other` runs against the inner store.
    struct Racing<'a> {
        inner: &'a mut MemoryStore,
        key: String,
        other: Option<OtherWorker<'a>>,
    }

    type OtherWorker<'a> = Box<dyn FnOnce(&mut MemoryStore) + 'a>;

    impl Store for Racing<'_> {
        fn get(&mut self, key: &str) -> HostResult<Option<SharedValue>> {
            let found = self.inner.get(key)?;
            if key == self.key && found.is_none() {
                if let Some(other) = self.other.take() {
                    other(self.inner);
                }
            }
            Ok(found)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn a_worker_creating_records_late_keeps_the_outcomes_another_worker_recorded() {
        // Worker A reads us-east-1's record as absent; before it writes, worker B creates
        // the record and records enough failures to open it. A's creation must not wipe it.
        let c = config();
        let mut store = MemoryStore::default();
        let key = c.regions[1].health_key.clone();
        let mut a = Racing {
            inner: &mut store,
            key,
            other: Some(Box::new(|b: &mut MemoryStore| {
                let c = config();
                create_missing(b, &c).unwrap();
                for _ in 0..4 {
                    record(b, &c, 1, NOW, NOW, Outcome::Failure).unwrap();
                }
            })),
        };
        create_missing(&mut a, &c).unwrap();
        assert!(a.other.is_none(), "worker B never ran");
        drop(a);
        assert_eq!(
            states(&mut store, &c, NOW).0,
            vec![State::Healthy, State::Unhealthy]
        );
    }

    #[test]
    fn an_outcome_for_an_absent_record_never_wipes_one_created_meanwhile() {
        let c = config();
        let mut store = MemoryStore::default();
        let key = c.regions[0].health_key.clone();
        let mut a = Racing {
            inner: &mut store,
            key,
            other: Some(Box::new(|b: &mut MemoryStore| {
                let c = config();
                for _ in 0..3 {
                    record(b, &c, 0, NOW, NOW, Outcome::Failure).unwrap();
                }
            })),
        };
        // A's failure is the fourth: it opens the region only if B's three were kept.
        assert_eq!(
            record(&mut a, &c, 0, NOW, NOW, Outcome::Failure).unwrap(),
            Effect::Changed(Transition::Opened)
        );
    }

    #[test]
    fn an_unreadable_store_counts_every_region_healthy_and_says_so() {
        let c = config();
        let mut store = MemoryStore::default();
        store.failing = true;
        let (states, error) = states(&mut store, &c, NOW);
        assert_eq!(states, vec![State::Healthy, State::Healthy]);
        assert_eq!(error, Some(Status::InternalFailure));
        assert!(record(&mut store, &c, 0, NOW, NOW, Outcome::Failure).is_err());
    }

    #[test]
    fn a_garbled_record_starts_afresh() {
        let c = config();
        let mut store = MemoryStore::default();
        store.set(&c.regions[1].health_key, b"garbage", 0).unwrap();
        assert_eq!(states(&mut store, &c, NOW).0[1], State::Healthy);
        assert_eq!(
            record(&mut store, &c, 1, NOW, NOW, Outcome::Success).unwrap(),
            Effect::Counted
        );
    }

    #[test]
    fn keys_name_the_region_and_its_cluster() {
        let c = config();
        assert_eq!(
            c.regions[1].health_key,
            "meshward.region_router.v1.us-east-1.us"
        );
    }
}
