//! The region chooser: from the request's inputs and each region's health, which region
//! serves the request and why. Pure.
//!
//! In order:
//! 1. **Latency-sensitive**: the nearest usable region.
//! 2. **Preference**: the first usable region of the client's list that clients may ask for.
//! 3. **Split**: the weighted rendezvous winner among the regions with a weight; if it is
//!    not usable, the nearest usable region by configured latency (regions without one
//!    after those with one), ties broken by the key's rendezvous ranking, so a session
//!    fails over to the same region every time. A stated preference with no usable region
//!    left falls to the split, and so to the same fallback.
//!
//! A region is usable when it is healthy, or when it is probing and the request's key is in
//! its probe share. When no region is usable, the request goes where the policy would send it
//! if every region were healthy: a failing region is still better than no answer.

use crate::config::Config;
use crate::health::State;
use crate::sticky;

/// Why a region was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The request was latency-sensitive: the nearest usable region.
    Latency,
    /// The first region the client asked for.
    Preference,
    /// A later region of the client's list: the ones before it are unusable, unknown or not
    /// open to preference.
    PreferenceFallback,
    /// The default weighted split.
    Split,
    /// The split's region was unusable: the nearest usable region (ties by the key's
    /// ranking).
    Failover,
    /// The region is probing after a cool-down and this request is one of its probes.
    Probe,
    /// No region was usable; the policy's choice regardless of health.
    AllUnhealthy,
}

impl Reason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Reason; 7] = [
        Reason::Latency,
        Reason::Preference,
        Reason::PreferenceFallback,
        Reason::Split,
        Reason::Failover,
        Reason::Probe,
        Reason::AllUnhealthy,
    ];

    /// The name used in metrics and in the decision header.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Latency => "latency",
            Reason::Preference => "preference",
            Reason::PreferenceFallback => "preference_fallback",
            Reason::Split => "split",
            Reason::Failover => "failover",
            Reason::Probe => "probe",
            Reason::AllUnhealthy => "all_unhealthy",
        }
    }

    /// The position of this reason in [`Reason::ALL`].
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// What the request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The client's preferred regions in order; `None` for names that are not regions.
    pub preference: Vec<Option<usize>>,
    /// Whether the request said it is latency-sensitive.
    pub latency_sensitive: bool,
    /// The hash of the session key.
    pub key_hash: u64,
}

/// The chosen region and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The region's index in the configuration.
    pub region: usize,
    /// Why.
    pub reason: Reason,
}

/// Chooses the region for a request. `health` holds each region's state, in configured
/// order; a missing entry counts as healthy.
pub fn decide(config: &Config, health: &[State], inputs: &Inputs) -> Decision {
    decide_with(
        config,
        |i| health.get(i).copied().unwrap_or(State::Healthy),
        inputs,
    )
}

/// [`decide`], asking `health` for a region's state only when the decision depends on it:
/// a request whose first choice is healthy asks for that region's alone, so the adapter
/// reads one health record instead of every region's.
pub fn decide_with(config: &Config, health: impl Fn(usize) -> State, inputs: &Inputs) -> Decision {
    let usable = |i: usize| match health(i) {
        State::Healthy => true,
        State::Unhealthy => false,
        State::Probing => config.regions.get(i).is_some_and(|r| {
            sticky::in_probe_share(inputs.key_hash, r.seed, config.health.probe_percent)
        }),
    };
    match choose(config, inputs, usable) {
        Some((region, reason)) => {
            let probing = health(region) == State::Probing;
            Decision {
                region,
                reason: if probing { Reason::Probe } else { reason },
            }
        }
        None => {
            let region = choose(config, inputs, |_| true).map_or(config.local, |(r, _)| r);
            Decision {
                region,
                reason: Reason::AllUnhealthy,
            }
        }
    }
}

/// The policy, given which regions are usable; `None` if none is.
fn choose(
    config: &Config,
    inputs: &Inputs,
    usable: impl Fn(usize) -> bool,
) -> Option<(usize, Reason)> {
    let nearest = || config.by_latency.iter().copied().find(|&i| usable(i));
    if inputs.latency_sensitive {
        return nearest().map(|i| (i, Reason::Latency));
    }
    let allowed = |i: usize| config.regions.get(i).is_some_and(|r| r.allow_preference);
    for (position, entry) in inputs.preference.iter().enumerate() {
        if let Some(i) = *entry {
            if allowed(i) && usable(i) {
                let reason = if position == 0 {
                    Reason::Preference
                } else {
                    Reason::PreferenceFallback
                };
                return Some((i, reason));
            }
        }
    }
    let score = |i: usize| {
        config.regions.get(i).map_or(f64::INFINITY, |r| {
            sticky::score(inputs.key_hash, r.seed, r.weight)
        })
    };
    let split = (0..config.regions.len())
        .filter(|&i| config.regions.get(i).is_some_and(|r| r.weight > 0.0))
        .min_by(|&a, &b| score(a).total_cmp(&score(b)));
    match split {
        Some(natural) if usable(natural) => Some((natural, Reason::Split)),
        _ => nearest_for_key(config, &usable, score).map(|i| (i, Reason::Failover)),
    }
}

/// The nearest usable region: the lowest distance, regions of unknown distance after every
/// known one, ties broken by `score` (the key's rendezvous ranking, lower first), then by
/// configured order.
fn nearest_for_key(
    config: &Config,
    usable: impl Fn(usize) -> bool,
    score: impl Fn(usize) -> f64,
) -> Option<usize> {
    (0..config.regions.len())
        .filter(|&i| usable(i))
        .min_by(|&a, &b| {
            let (da, db) = (config.distance(a), config.distance(b));
            (da.is_none(), da)
                .cmp(&(db.is_none(), db))
                .then_with(|| score(a).total_cmp(&score(b)))
                .then(a.cmp(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sticky::hash_key;
    use serde_json::json;

    const EU: usize = 0;
    const US: usize = 1;
    const AP: usize = 2;
    const H: State = State::Healthy;
    const U: State = State::Unhealthy;
    const P: State = State::Probing;

    /// eu-west-1 is local and 2 ms away, us-east-1 80 ms, ap-south-1 120 ms but clients
    /// may not ask for it.
    fn config() -> Config {
        let value = json!({
            "regions": [
                {"name": "eu-west-1", "cluster": "eu", "latency": "2ms"},
                {"name": "us-east-1", "cluster": "us", "latency": "80ms"},
                {"name": "ap-south-1", "cluster": "ap", "latency": "120ms", "allow_preference": false}
            ],
            "local_region": "eu-west-1",
            "health": {"probe_percent": 50}
        });
        Config::parse(value.to_string().as_bytes(), None).unwrap()
    }

    fn inputs(preference: &[Option<usize>], latency_sensitive: bool, key: &str) -> Inputs {
        Inputs {
            preference: preference.to_vec(),
            latency_sensitive,
            key_hash: hash_key(key.as_bytes()),
        }
    }

    /// A key whose split choice is `region` while every region is healthy, and `then`
    /// once `region` is down.
    fn key_for(config: &Config, region: usize, then: usize) -> String {
        let mut down = [H, H, H];
        down[region] = U;
        (0..)
            .map(|i| format!("session-{i}"))
            .find(|k| {
                decide(config, &[H, H, H], &inputs(&[], false, k)).region == region
                    && decide(config, &down, &inputs(&[], false, k)).region == then
            })
            .unwrap()
    }

    /// A key in `region`'s probe share (or outside it, with `inside` false).
    fn probe_key(config: &Config, region: usize, inside: bool) -> String {
        (0..)
            .map(|i| format!("probe-{i}"))
            .find(|k| {
                sticky::in_probe_share(hash_key(k.as_bytes()), config.regions[region].seed, 50)
                    == inside
            })
            .unwrap()
    }

    fn d(region: usize, reason: Reason) -> Decision {
        Decision { region, reason }
    }

    #[test]
    fn decision_table() {
        let c = config();
        let to_us = key_for(&c, US, EU);
        let to_eu = key_for(&c, EU, US);
        #[rustfmt::skip]
        let table: Vec<(&str, [State; 3], Inputs, Decision)> = vec![
            ("latency-sensitive: the nearest",
             [H, H, H], inputs(&[Some(US)], true, &to_us), d(EU, Reason::Latency)),
            ("latency-sensitive, nearest down: the next nearest",
             [U, H, H], inputs(&[], true, &to_eu), d(US, Reason::Latency)),
            ("preference honoured",
             [H, H, H], inputs(&[Some(US)], false, &to_eu), d(US, Reason::Preference)),
            ("preference down: the next in the list",
             [H, U, H], inputs(&[Some(US), Some(EU)], false, &to_us), d(EU, Reason::PreferenceFallback)),
            ("unknown first choice: the next in the list",
             [H, H, H], inputs(&[None, Some(US)], false, &to_eu), d(US, Reason::PreferenceFallback)),
            ("a region closed to preference is skipped",
             [H, H, H], inputs(&[Some(AP), Some(US)], false, &to_eu), d(US, Reason::PreferenceFallback)),
            ("only closed or down preferences: the split",
             [H, U, H], inputs(&[Some(AP), Some(US)], false, &to_eu), d(EU, Reason::Split)),
            ("no preference: the split",
             [H, H, H], inputs(&[], false, &to_us), d(US, Reason::Split)),
            ("split region down: failover",
             [H, U, H], inputs(&[], false, &to_us), d(EU, Reason::Failover)),
            ("every region down: the policy's choice anyway",
             [U, U, U], inputs(&[Some(US)], false, &to_eu), d(US, Reason::AllUnhealthy)),
            ("every region down, latency-sensitive: the nearest anyway",
             [U, U, U], inputs(&[], true, &to_us), d(EU, Reason::AllUnhealthy)),
        ];
        for (case, health, request, expected) in table {
            assert_eq!(decide(&c, &health, &request), expected, "{case}");
        }
    }

    #[test]
    fn a_failed_regions_keys_fail_over_and_other_keys_stay() {
        let c = config();
        for i in 0..2000 {
            let key = format!("k{i}");
            let before = decide(&c, &[H, H, H], &inputs(&[], false, &key));
            let after = decide(&c, &[H, U, H], &inputs(&[], false, &key));
            if before.region == US {
                assert_eq!(after.reason, Reason::Failover, "{key}");
                assert_ne!(after.region, US);
            } else {
                assert_eq!(after, before, "{key} moved although its region is healthy");
            }
        }
    }

    /// The regions' configuration with these latencies (`None`: not given), eu-west-1
    /// local, with the default 70/15/15 split.
    fn with_latencies(latencies: [Option<&str>; 3]) -> Config {
        let names = ["eu-west-1", "us-east-1", "ap-south-1"];
        let regions: Vec<_> = names
            .iter()
            .zip(latencies)
            .map(|(name, latency)| match latency {
                Some(l) => json!({"name": name, "cluster": name, "latency": l}),
                None => json!({"name": name, "cluster": name}),
            })
            .collect();
        let value = json!({"regions": regions, "local_region": "eu-west-1"});
        Config::parse(value.to_string().as_bytes(), None).unwrap()
    }

    /// Where the sessions of `down`'s split share go once it is down, counted per region.
    fn fallbacks(c: &Config, down: usize) -> [u32; 3] {
        let mut health = [H, H, H];
        health[down] = U;
        let mut counts = [0; 3];
        for i in 0..3000 {
            let key = format!("session-{i}");
            if decide(c, &[H, H, H], &inputs(&[], false, &key)).region != down {
                continue;
            }
            let after = decide(c, &health, &inputs(&[], false, &key));
            assert_eq!(after.reason, Reason::Failover, "{key}");
            // Sticky: the same session always fails over to the same region.
            assert_eq!(decide(c, &health, &inputs(&[], false, &key)), after);
            counts[after.region] += 1;
        }
        counts
    }

    #[test]
    fn a_failed_split_regions_sessions_go_to_the_nearest_healthy_region() {
        let c = config(); // eu 2 ms, us 80 ms, ap 120 ms
        let from_eu = fallbacks(&c, EU);
        assert!(from_eu[US] > 1000, "{from_eu:?}");
        assert_eq!(from_eu[AP], 0, "ap-south-1 is farther than us-east-1");
        let from_us = fallbacks(&c, US);
        assert!(from_us[EU] > 100, "{from_us:?}");
        assert_eq!(from_us[AP], 0);
    }

    #[test]
    fn regions_without_a_latency_come_after_those_with_one() {
        let c = with_latencies([None, None, Some("300ms")]);
        let from_eu = fallbacks(&c, EU);
        assert_eq!(
            from_eu[US], 0,
            "us-east-1's latency is unknown: {from_eu:?}"
        );
        assert!(from_eu[AP] > 1000, "{from_eu:?}");
    }

    #[test]
    fn equally_near_regions_share_the_fallback_by_the_sessions_ranking() {
        for c in [
            with_latencies([None, Some("50ms"), Some("50ms")]),
            with_latencies([None, None, None]),
        ] {
            let from_eu = fallbacks(&c, EU);
            let total = f64::from(from_eu[US] + from_eu[AP]);
            // Equal weights (15/15): about half each.
            let share = f64::from(from_eu[US]) / total;
            assert!((0.4..0.6).contains(&share), "{from_eu:?}");
        }
    }

    #[test]
    fn a_probing_region_takes_only_its_probe_share() {
        let c = config();
        let inside = probe_key(&c, US, true);
        let outside = probe_key(&c, US, false);
        assert_eq!(
            decide(&c, &[H, P, H], &inputs(&[Some(US)], false, &inside)),
            d(US, Reason::Probe)
        );
        let elsewhere = decide(&c, &[H, P, H], &inputs(&[Some(US)], false, &outside));
        assert_ne!(elsewhere.region, US);
        assert!(
            matches!(elsewhere.reason, Reason::Split | Reason::Failover),
            "{elsewhere:?}"
        );
    }

    #[test]
    fn a_missing_health_entry_counts_as_healthy() {
        let c = config();
        assert_eq!(
            decide(&c, &[], &inputs(&[Some(US)], false, "k")),
            d(US, Reason::Preference)
        );
    }

    #[test]
    fn the_same_key_always_gets_the_same_region() {
        let c = config();
        for i in 0..200 {
            let key = format!("user-{i}");
            let first = decide(&c, &[H, H, H], &inputs(&[], false, &key));
            for _ in 0..3 {
                assert_eq!(decide(&c, &[H, H, H], &inputs(&[], false, &key)), first);
            }
        }
    }

    #[test]
    fn the_split_matches_the_weights_over_many_keys() {
        let c = config(); // 70 / 15 / 15
        let n = 60_000;
        let mut counts = [0u32; 3];
        for i in 0..n {
            let request = inputs(&[], false, &format!("{i:x}-request"));
            counts[decide(&c, &[H, H, H], &request).region] += 1;
        }
        for (region, expected) in [(EU, 0.70), (US, 0.15), (AP, 0.15)] {
            let share = f64::from(counts[region]) / f64::from(n);
            let sd = (expected * (1.0 - expected) / f64::from(n)).sqrt();
            assert!(
                (share - expected).abs() < 5.0 * sd,
                "region {region}: {share:.4}, expected {expected}"
            );
        }
    }

    #[test]
    fn reasons_have_stable_names_and_positions() {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "latency",
                "preference",
                "preference_fallback",
                "split",
                "failover",
                "probe",
                "all_unhealthy"
            ]
        );
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}
