//! Read-modify-write of Envoy shared data with compare-and-swap and a bounded retry, so
//! state shared by every worker's VM stays exact under concurrency.
//!
//! Envoy's rules: a read returns the value and a version (`cas`); a write with that version
//! fails if another worker wrote in between. A write to a key that does not exist yet always
//! succeeds, whatever the version, so two workers can both create a key, the second
//! wiping what the first wrote: [`CreateOnce`] makes creation happen once.

use crate::host::{self, HostResult, SharedValue, Status};

/// What the update function decides for the value it was shown.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<T> {
    /// Write these bytes (if nobody wrote in between) and return `T`.
    Write(Vec<u8>, T),
    /// Leave the value as it is and return `T`.
    Keep(T),
}

/// Why an update did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    /// Every attempt lost its compare-and-swap to another worker.
    Contention {
        /// How many attempts were made.
        attempts: u32,
    },
    /// The host failed the read or the write.
    Host(Status),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Contention { attempts } => {
                write!(f, "shared data still contended after {attempts} attempts")
            }
            UpdateError::Host(status) => write!(f, "shared data call failed: {status}"),
        }
    }
}

/// Where an update reads and writes; the host's shared data in a filter, a map in tests.
pub trait Store {
    /// Reads `key` with its version; `Ok(None)` when absent.
    fn get(&mut self, key: &str) -> HostResult<Option<SharedValue>>;
    /// Writes `key` if its version is still `cas` (0: unconditionally).
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> HostResult<()>;
}

/// Envoy's shared data, through the host.
pub struct HostStore;

impl Store for HostStore {
    fn get(&mut self, key: &str) -> HostResult<Option<SharedValue>> {
        host::shared_data(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        host::set_shared_data(key, value, cas)
    }
}

/// Reads `key`, lets `decide` compute the new value from the current one (`None` when the
/// key is absent), and writes it back only if no other worker wrote in between, retrying up
/// to `max_attempts` times.
pub fn update<S: Store, T>(
    store: &mut S,
    key: &str,
    max_attempts: u32,
    mut decide: impl FnMut(Option<&[u8]>) -> Decision<T>,
) -> Result<T, UpdateError> {
    for _ in 0..max_attempts {
        let current = store.get(key).map_err(UpdateError::Host)?;
        let (bytes, cas) = match &current {
            Some(value) => (Some(value.bytes.as_slice()), value.cas),
            None => (None, 0),
        };
        match decide(bytes) {
            Decision::Keep(result) => return Ok(result),
            Decision::Write(new, result) => match store.set(key, &new, cas) {
                Ok(()) => return Ok(result),
                Err(Status::CasMismatch) => continue,
                Err(status) => return Err(UpdateError::Host(status)),
            },
        }
    }
    Err(UpdateError::Contention {
        attempts: max_attempts,
    })
}

/// A store whose writes to absent keys are "create if still absent".
///
/// Envoy creates an absent key on any write, whatever the CAS given, and a write with CAS 0
/// overwrites unconditionally; so two workers that both read "absent" would both create
/// the entry, the second wiping the first's. Envoy gives every write a fresh version from
/// one process-wide counter, so the version of another key's write is one no entry can
/// hold: writing with it succeeds only if our key is still absent. This store writes an
/// anchor key of the caller's, reads its version, and creates with that.
pub struct CreateOnce<'a, S: Store> {
    inner: &'a mut S,
    anchor: &'a str,
}

impl<'a, S: Store> CreateOnce<'a, S> {
    /// Wraps `inner`; `anchor` is a shared-data name the caller uses for nothing else.
    pub fn new(inner: &'a mut S, anchor: &'a str) -> Self {
        CreateOnce { inner, anchor }
    }

    fn fresh_version(&mut self) -> HostResult<u32> {
        self.inner.set(self.anchor, b"", 0)?;
        match self.inner.get(self.anchor)? {
            Some(SharedValue { cas, .. }) if cas != 0 => Ok(cas),
            _ => Err(Status::InternalFailure),
        }
    }
}

impl<S: Store> Store for CreateOnce<'_, S> {
    fn get(&mut self, key: &str) -> HostResult<Option<SharedValue>> {
        self.inner.get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        // `update` passes 0 only for a key it read as absent.
        let cas = if cas == 0 { self.fresh_version()? } else { cas };
        self.inner.set(key, value, cas)
    }
}

/// Envoy's shared data in memory, for tests: a write with a stale version fails, version 0
/// writes unconditionally, a key that does not exist yet can always be written, and every
/// write takes a fresh version from one counter (the rules the process-wide store of the
/// native build keeps, with the same code). Two knobs play the other workers and the host.
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Default)]
pub struct MemoryStore {
    entries: crate::process_store::Versioned,
    /// While set, every read and write fails as a host call that failed.
    pub failing: bool,
    /// This many reads are each followed by another worker's write of `other` to the key,
    /// before the reader can write.
    pub interfering: u32,
}

#[cfg(any(test, feature = "fuzzing"))]
impl MemoryStore {
    /// Every key with its value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.values()
    }

    /// How many writes succeeded (less any that `interfering` made).
    pub fn writes(&self) -> u32 {
        self.entries.last_version()
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.values().next().is_none()
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl Store for MemoryStore {
    fn get(&mut self, key: &str) -> HostResult<Option<SharedValue>> {
        if self.failing {
            return Err(Status::InternalFailure);
        }
        let found = self
            .entries
            .get(key)
            .map(|(bytes, cas)| SharedValue { bytes, cas });
        if self.interfering > 0 {
            self.interfering -= 1;
            self.set(key, b"other", 0)?;
        }
        Ok(found)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        if self.failing {
            return Err(Status::InternalFailure);
        }
        self.entries
            .set(key, value, cas)
            .map_err(|crate::process_store::WriteError::CasMismatch| Status::CasMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn increment(bytes: Option<&[u8]>) -> Decision<u8> {
        let n = bytes.and_then(|b| b.first().copied()).unwrap_or(0) + 1;
        Decision::Write(vec![n], n)
    }

    #[test]
    fn creates_then_updates_a_value() {
        let mut store = MemoryStore::default();
        assert_eq!(update(&mut store, "k", 3, increment), Ok(1));
        assert_eq!(update(&mut store, "k", 3, increment), Ok(2));
    }

    #[test]
    fn retries_when_another_worker_wrote_in_between() {
        let mut store = MemoryStore::default();
        update(&mut store, "k", 1, increment).unwrap();
        store.interfering = 2;
        // Two lost races, then the third attempt sees "other" and writes on top of it.
        assert_eq!(update(&mut store, "k", 3, increment), Ok(b'o' + 1));
    }

    #[test]
    fn gives_up_after_the_configured_attempts() {
        let mut store = MemoryStore::default();
        update(&mut store, "k", 1, increment).unwrap();
        store.interfering = 10;
        assert_eq!(
            update(&mut store, "k", 3, increment),
            Err(UpdateError::Contention { attempts: 3 })
        );
    }

    #[test]
    fn create_once_never_overwrites_a_key_another_worker_created_in_between() {
        // Another worker creates "k" between our read (absent) and our write. A plain
        // creating write (CAS 0) wipes its value; CreateOnce loses the race and builds on it.
        let mut plain = MemoryStore {
            interfering: 1,
            ..MemoryStore::default()
        };
        assert_eq!(update(&mut plain, "k", 3, increment), Ok(1));
        let mut store = MemoryStore {
            interfering: 1,
            ..MemoryStore::default()
        };
        let mut once = CreateOnce::new(&mut store, "anchor");
        assert_eq!(update(&mut once, "k", 3, increment), Ok(b'o' + 1));
    }

    #[test]
    fn keep_writes_nothing() {
        let mut store = MemoryStore::default();
        assert_eq!(update(&mut store, "k", 1, |_| Decision::Keep(7)), Ok(7));
        assert!(store.is_empty());
    }
}
