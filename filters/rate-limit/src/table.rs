//! A rule's buckets in Envoy shared data: a fixed number of sets of slots, each set one
//! shared-data entry updated only by compare-and-swap, so memory is bounded and every
//! worker counts a key in the same single bucket.
//!
//! A key is reduced to a 128-bit fingerprint. Its fingerprint picks one set; inside the set
//! a key has at most one slot. A set update reads the entry, decides on that one snapshot
//! (find the key's slot, else use a free slot, else reclaim a slot whose bucket has refilled
//! to capacity) and writes only if no other worker wrote the entry in between. A set with
//! no room sends the key to the rule's overflow bucket, which all such keys share.
//!
//! An entry that does not exist yet is created with a compare-and-swap token no entry can
//! hold (see [`CreateOnce`]), so two workers can never both create it.

use crate::bucket::{Bucket, Limit, Take};
use meshward_shared::host::Status;
use meshward_shared::shared_data::{self, CreateOnce, Decision, Store, UpdateError};
use std::borrow::Cow;
use std::hash::{DefaultHasher, Hasher};

/// Slots in one set: one shared-data entry holds this many buckets.
pub const SET_SLOTS: usize = 8;

/// The format of an entry; a different format lives under different names.
const FORMAT: u8 = 1;
/// Bytes of the entry header: format, slot count, the set's latest stamp.
const HEADER: usize = 1 + 1 + 8;
/// Bytes of one slot: fingerprint, level, stamp.
const SLOT: usize = 16 + 16 + 8;

/// What a request is counted under, reduced to 128 bits so every slot has the same size
/// whatever the key's length. Two keys share a bucket only if both halves collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(u128);

impl Fingerprint {
    /// The fingerprint of `key`. Stable for a given build of the module, which every
    /// worker shares.
    pub fn of(key: &[u8]) -> Fingerprint {
        let half = |domain: u8| {
            let mut h = DefaultHasher::new();
            h.write_u8(domain);
            h.write(key);
            h.finish()
        };
        Fingerprint(u128::from(half(1)) << 64 | u128::from(half(2)))
    }

    /// Which of `sets` sets this key lives in.
    fn set_index(&self, sets: u32) -> u32 {
        // Truncation is the point: the low bits of the hash pick the set.
        let low = self.0 as u64;
        u32::try_from(low % u64::from(sets.max(1))).unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    fingerprint: Fingerprint,
    bucket: Bucket,
}

/// One set as stored: its slots and the latest time any of its buckets was refilled to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Set {
    high_water: u64,
    slots: Vec<Slot>,
}

impl Set {
    /// Decodes an entry. An entry that is not in this format (written by something else
    /// under our name) is `None`.
    fn decode(bytes: &[u8], limit: &Limit) -> Option<Set> {
        let (header, body) = bytes.split_at_checked(HEADER)?;
        let [format, count, stamp @ ..] = header else {
            return None;
        };
        if *format != FORMAT || usize::from(*count) > SET_SLOTS {
            return None;
        }
        if body.len() != usize::from(*count) * SLOT {
            return None;
        }
        let high_water = u64::from_le_bytes(stamp.try_into().ok()?);
        let slots = body
            .chunks_exact(SLOT)
            .map(|raw| {
                let (fp, rest) = raw.split_at_checked(16)?;
                let (level, stamp) = rest.split_at_checked(16)?;
                Some(Slot {
                    fingerprint: Fingerprint(u128::from_le_bytes(fp.try_into().ok()?)),
                    bucket: Bucket::from_parts(
                        limit,
                        u128::from_le_bytes(level.try_into().ok()?),
                        u64::from_le_bytes(stamp.try_into().ok()?),
                    ),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Set { high_water, slots })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.slots.len() * SLOT);
        out.push(FORMAT);
        out.push(u8::try_from(self.slots.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.high_water.to_le_bytes());
        for slot in &self.slots {
            out.extend_from_slice(&slot.fingerprint.0.to_le_bytes());
            out.extend_from_slice(&slot.bucket.level().to_le_bytes());
            out.extend_from_slice(&slot.bucket.stamp().to_le_bytes());
        }
        out
    }
}

/// Where a key's bucket was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The key already had a slot.
    Existing,
    /// The key took a free slot.
    New,
    /// The key took the slot of another key whose bucket had refilled to capacity.
    Reclaimed,
}

/// What one set update decided for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// The key has a bucket in the set; `take` says whether a token was taken.
    Counted {
        /// The bucket's answer.
        take: Take,
        /// How the key came to its slot.
        placement: Placement,
    },
    /// Every slot holds another key's bucket that has not refilled yet.
    NoRoom,
}

/// Decides one request against a set entry (`None`: the entry does not exist yet).
/// `slots` is how many buckets the set may hold. Pure: the caller does the CAS.
pub fn decide(
    entry: Option<&[u8]>,
    fingerprint: Fingerprint,
    slots: usize,
    limit: &Limit,
    now: u64,
) -> Decision<SetOutcome> {
    // An entry in another format cannot be read: it is replaced by an empty set.
    let mut set = entry
        .and_then(|bytes| Set::decode(bytes, limit))
        .unwrap_or_default();
    let fresh = || Bucket::full(limit, now.max(set.high_water));

    let (index, bucket, placement) =
        match set.slots.iter().position(|s| s.fingerprint == fingerprint) {
            Some(i) => match set.slots.get(i) {
                Some(slot) => (Some(i), slot.bucket, Placement::Existing),
                None => (None, fresh(), Placement::New),
            },
            None if set.slots.len() < slots => (None, fresh(), Placement::New),
            None => match set.slots.iter().position(|s| s.bucket.is_full(limit, now)) {
                Some(i) => (Some(i), fresh(), Placement::Reclaimed),
                None => return Decision::Keep(SetOutcome::NoRoom),
            },
        };

    let take = bucket.take(limit, now);
    let outcome = SetOutcome::Counted { take, placement };
    let Take::Allowed { bucket, .. } = take else {
        // Nothing taken: the stored state already gives the same answer next time.
        return Decision::Keep(outcome);
    };
    let slot = Slot {
        fingerprint,
        bucket,
    };
    match index.and_then(|i| set.slots.get_mut(i)) {
        Some(existing) => *existing = slot,
        None => set.slots.push(slot),
    }
    set.high_water = set.high_water.max(bucket.stamp());
    Decision::Write(set.encode(), outcome)
}

/// The shared-data names of one rule's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    prefix: String,
    /// The name of set 0, the only set of a rule without a key, made once.
    first: String,
    sets: u32,
    slots: usize,
}

impl Table {
    /// The table of rule `rule` holding `buckets` buckets. The names spell out the limit
    /// and the size, so a changed rule starts on fresh entries instead of misreading old
    /// ones: `meshward_rate_limit.v1.<rule>.c<capacity>.r<refill>.p<period ns>.b<buckets>`,
    /// then `.<set>` or `.overflow`.
    pub fn new(rule: &str, limit: &Limit, buckets: u32) -> Table {
        let slots = usize::try_from(buckets)
            .unwrap_or(SET_SLOTS)
            .clamp(1, SET_SLOTS);
        let per_set = u32::try_from(slots).unwrap_or(1);
        let sets = buckets.div_ceil(per_set).max(1);
        let prefix = format!(
            "meshward_rate_limit.v{FORMAT}.{rule}.c{}.r{}.p{}.b{buckets}",
            limit.capacity(),
            limit.refill(),
            limit.period().as_nanos(),
        );
        Table {
            first: format!("{prefix}.0"),
            prefix,
            sets,
            slots,
        }
    }

    /// Buckets the table can hold: whole sets, so `buckets` rounded up to a multiple of
    /// [`SET_SLOTS`].
    pub fn capacity(&self) -> u64 {
        u64::from(self.sets) * self.slots as u64
    }

    /// The entry `fingerprint` lives in.
    pub fn entry_for(&self, fingerprint: Fingerprint) -> Cow<'_, str> {
        match fingerprint.set_index(self.sets) {
            0 => Cow::Borrowed(&self.first),
            set => {
                // On every request: digits by hand are far cheaper in wasm than `format!`.
                let mut name = String::with_capacity(self.prefix.len() + 11);
                name.push_str(&self.prefix);
                name.push('.');
                let digits = set.checked_ilog10().unwrap_or(0) + 1;
                for place in (0..digits).rev() {
                    let digit = set / 10u32.pow(place) % 10;
                    name.push(char::from_digit(digit, 10).unwrap_or('0'));
                }
                Cow::Owned(name)
            }
        }
    }

    /// The rule's overflow bucket.
    pub fn overflow_entry(&self) -> String {
        format!("{}.overflow", self.prefix)
    }

    /// Slots in each set.
    pub fn slots(&self) -> usize {
        self.slots
    }
}

/// The fingerprint of the one bucket of a rule without a key, and of the overflow bucket.
pub const SOLE: Fingerprint = Fingerprint(0);

/// What counting a request in a table found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    /// The bucket's answer.
    pub take: Take,
    /// How the key came to its slot.
    pub placement: Placement,
    /// The set had no room and the overflow bucket answered.
    pub overflowed: bool,
}

/// Counts a request for `fingerprint` in `table`: its own bucket, or the overflow bucket
/// when its set has no room.
pub fn count<S: Store>(
    store: &mut S,
    table: &Table,
    fingerprint: Fingerprint,
    limit: &Limit,
    now: u64,
    attempts: u32,
) -> Result<Counted, UpdateError> {
    let mut store = CreateOnce::new(store, ANCHOR);
    let entry = table.entry_for(fingerprint);
    let outcome = shared_data::update(&mut store, &entry, attempts, |bytes| {
        decide(bytes, fingerprint, table.slots(), limit, now)
    })?;
    if let SetOutcome::Counted { take, placement } = outcome {
        return Ok(Counted {
            take,
            placement,
            overflowed: false,
        });
    }
    let overflow = table.overflow_entry();
    match shared_data::update(&mut store, &overflow, attempts, |bytes| {
        decide(bytes, SOLE, 1, limit, now)
    })? {
        SetOutcome::Counted { take, placement } => Ok(Counted {
            take,
            placement,
            overflowed: true,
        }),
        // The overflow set has one slot, always this fingerprint's: it always has room.
        SetOutcome::NoRoom => Err(UpdateError::Host(Status::InternalFailure)),
    }
}

/// The shared-data name whose version [`CreateOnce`] borrows to create entries once.
pub const ANCHOR: &str = "meshward_rate_limit.anchor";

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::shared_data::MemoryStore;
    use std::time::Duration;

    const SECOND: u64 = 1_000_000_000;

    fn limit(capacity: u64) -> Limit {
        Limit::new(capacity, 1, Duration::from_secs(1)).unwrap()
    }

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of(&[n])
    }

    /// Applies a decision to a local copy of the entry, as a CAS that wins would.
    fn apply(entry: &mut Option<Vec<u8>>, d: Decision<SetOutcome>) -> SetOutcome {
        match d {
            Decision::Write(bytes, outcome) => {
                *entry = Some(bytes);
                outcome
            }
            Decision::Keep(outcome) => outcome,
        }
    }

    fn step(entry: &mut Option<Vec<u8>>, key: u8, slots: usize, l: &Limit, now: u64) -> SetOutcome {
        let d = decide(entry.as_deref(), fp(key), slots, l, now);
        apply(entry, d)
    }

    fn is_allowed(outcome: SetOutcome) -> bool {
        matches!(
            outcome,
            SetOutcome::Counted {
                take: Take::Allowed { .. },
                ..
            }
        )
    }

    #[test]
    fn each_key_gets_its_own_bucket_in_a_set() {
        let l = limit(2);
        let mut entry = None;
        for key in [1, 2, 3] {
            for _ in 0..2 {
                let o = step(&mut entry, key, 8, &l, 0);
                assert!(is_allowed(o), "key {key}");
            }
            let o = step(&mut entry, key, 8, &l, 0);
            assert!(!is_allowed(o), "key {key} third request");
        }
    }

    #[test]
    fn a_full_set_reclaims_a_bucket_that_refilled_and_otherwise_has_no_room() {
        let l = limit(1);
        let mut entry = None;
        step(&mut entry, 1, 2, &l, 0);
        step(&mut entry, 2, 2, &l, SECOND / 2);
        // Both buckets are empty: a third key finds no room.
        let o = step(&mut entry, 3, 2, &l, SECOND / 2);
        assert_eq!(o, SetOutcome::NoRoom);
        // Key 1 refills at 1 s: its slot goes to key 3.
        let o = step(&mut entry, 3, 2, &l, SECOND);
        assert!(matches!(
            o,
            SetOutcome::Counted {
                placement: Placement::Reclaimed,
                ..
            }
        ));
        // Key 2 kept its slot and its empty bucket.
        let o = step(&mut entry, 2, 2, &l, SECOND);
        assert!(matches!(
            o,
            SetOutcome::Counted {
                take: Take::Limited { .. },
                placement: Placement::Existing
            }
        ));
    }

    #[test]
    fn a_limited_request_writes_nothing() {
        let l = limit(1);
        let mut entry = None;
        step(&mut entry, 1, 8, &l, 0);
        assert!(matches!(
            decide(entry.as_deref(), fp(1), 8, &l, 0),
            Decision::Keep(_)
        ));
    }

    #[test]
    fn a_reclaimed_slot_restarts_no_earlier_than_the_set_has_seen() {
        // A worker whose clock reads earlier than the set's latest stamp gets a fresh
        // bucket stamped at that latest time, so it cannot refill from before it.
        let l = limit(1);
        let mut entry = None;
        step(&mut entry, 1, 1, &l, 10 * SECOND);
        step(&mut entry, 2, 1, &l, 11 * SECOND);
        let set = Set::decode(entry.as_deref().unwrap(), &l).unwrap();
        assert_eq!(set.high_water, 11 * SECOND);
        assert_eq!(set.slots[0].bucket.stamp(), 11 * SECOND);
    }

    #[test]
    fn entries_in_another_format_are_replaced() {
        let l = limit(1);
        let o = decide(Some(b"garbage"), fp(1), 8, &l, 0);
        assert!(matches!(o, Decision::Write(_, _)));
        let mut bad = Set::default().encode();
        bad[0] = 99;
        assert!(Set::decode(&bad, &l).is_none());
        // A count that disagrees with the length.
        let mut short = Set {
            high_water: 0,
            slots: vec![Slot {
                fingerprint: fp(1),
                bucket: Bucket::full(&l, 0),
            }],
        }
        .encode();
        short.pop();
        assert!(Set::decode(&short, &l).is_none());
    }

    #[test]
    fn sets_round_trip() {
        let l = limit(5);
        let set = Set {
            high_water: 42,
            slots: (0..8)
                .map(|n| Slot {
                    fingerprint: fp(n),
                    bucket: Bucket::from_parts(&l, u128::from(n) * 7, u64::from(n)),
                })
                .collect(),
        };
        assert_eq!(Set::decode(&set.encode(), &l), Some(set));
    }

    #[test]
    fn tables_round_up_to_whole_sets_and_name_their_limit() {
        let l = limit(5);
        assert_eq!(Table::new("api", &l, 10).capacity(), 16);
        assert_eq!(Table::new("api", &l, 3).capacity(), 3);
        assert_eq!(Table::new("api", &l, 1).capacity(), 1);
        let a = Table::new("api", &l, 16);
        let b = Table::new("api", &limit(6), 16);
        assert_ne!(a.overflow_entry(), b.overflow_entry());
        assert_eq!(
            a.overflow_entry(),
            "meshward_rate_limit.v1.api.c5.r1.p1000000000.b16.overflow"
        );
        for n in 0..50 {
            let set = a.entry_for(fp(n));
            let (prefix, index) = set.rsplit_once('.').unwrap();
            assert_eq!(prefix, "meshward_rate_limit.v1.api.c5.r1.p1000000000.b16");
            assert!(index.parse::<u32>().unwrap() < 2, "{set}");
        }
    }

    #[test]
    fn set_names_spell_the_set_number_in_decimal() {
        let table = Table::new("t", &limit(1), 80_000);
        let mut seen = std::collections::HashSet::new();
        for n in 0..20_000u32 {
            let f = Fingerprint::of(&n.to_le_bytes());
            let expected = format!("{}.{}", table.prefix, f.set_index(table.sets));
            assert_eq!(table.entry_for(f), expected);
            seen.insert(f.set_index(table.sets));
        }
        // The keys spread over the sets, up to five digits of them.
        assert!(seen.len() > 8_000, "{} sets used", seen.len());
        assert!(seen.iter().any(|&s| s >= 1000));
    }

    #[test]
    fn creation_never_overwrites_an_entry_another_worker_created() {
        // Worker A reads "absent"; worker B creates the entry and takes its tokens; A's
        // create must then fail its CAS, re-read, and see B's bucket.
        let l = limit(1);
        let mut store = MemoryStore::default();
        let key = "k";
        let a_view = store.get(key).unwrap();
        assert!(a_view.is_none());
        let mut b = CreateOnce::new(&mut store, ANCHOR);
        let d = decide(None, fp(1), 8, &l, 0);
        let Decision::Write(bytes, _) = d else {
            panic!()
        };
        b.set(key, &bytes, 0).unwrap();
        let mut a = CreateOnce::new(&mut store, ANCHOR);
        let Decision::Write(bytes, _) = decide(None, fp(1), 8, &l, 0) else {
            panic!()
        };
        assert_eq!(a.set(key, &bytes, 0), Err(Status::CasMismatch));
    }

    #[test]
    fn counts_overflowing_keys_in_the_shared_overflow_bucket() {
        let l = limit(1);
        let table = Table::new("t", &l, 1);
        let mut store = MemoryStore::default();
        let first = count(&mut store, &table, fp(1), &l, 0, 4).unwrap();
        assert!(!first.overflowed);
        let second = count(&mut store, &table, fp(2), &l, 0, 4).unwrap();
        assert!(second.overflowed);
        assert!(matches!(second.take, Take::Allowed { .. }));
        // The overflow bucket is now empty for every other key too.
        let third = count(&mut store, &table, fp(3), &l, 0, 4).unwrap();
        assert!(third.overflowed);
        assert!(matches!(third.take, Take::Limited { .. }));
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_keys() {
        let l = limit(1);
        let table = Table::new("t", &l, 64);
        let mut store = MemoryStore::default();
        for n in 0..100_000u32 {
            let fpn = Fingerprint::of(&n.to_le_bytes());
            count(&mut store, &table, fpn, &l, u64::from(n), 4).unwrap();
        }
        // 8 sets, the overflow bucket and the anchor.
        let entries = store.values().count();
        assert!(entries <= 8 + 2, "{entries} entries");
        let bytes: usize = store.values().map(|(_, v)| v.len()).sum();
        assert!(bytes <= 8 * (HEADER + 8 * SLOT) + HEADER + SLOT);
    }
}
