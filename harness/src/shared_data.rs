//! Shared data (`proxy_get_shared_data`/`proxy_set_shared_data`) and shared queues, as an
//! Envoy process keeps them: one store per VM id (an empty VM id is a key like any other),
//! with Envoy's compare-and-swap rules, and queues keyed by VM id and name.
//!
//! Each [`Host`](crate::Host) gets its own registry unless the test hands several hosts
//! the same one with [`HostBuilder::shared_data`](crate::HostBuilder::shared_data), the way
//! several Wasm filters in one Envoy share it. There is no process-wide state, so tests
//! stay independent when they run in parallel.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::status::Status;

/// The shared data and shared queues of one simulated Envoy process, keyed by VM id.
///
/// Cloning gives another handle on the same registry.
#[derive(Clone, Debug, Default)]
pub struct SharedData {
    inner: Arc<Mutex<Registry>>,
}

impl SharedData {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A value and its CAS in the store of this VM id.
    pub fn get(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().get(vm_id, key.as_bytes()).ok()
    }

    /// Sets a value in the store of this VM id unconditionally, as another filter would.
    pub fn set(&self, vm_id: &str, key: &str, value: impl AsRef<[u8]>) {
        // A CAS of 0 always succeeds.
        let _ = self.lock().set(vm_id, key.as_bytes(), value.as_ref(), 0);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Registry> {
        // A poisoned lock only means a test panicked mid-operation; every operation here
        // leaves the registry consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which VM a queue notifies: a worker of a host, and the root context that registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueOwner {
    pub host: u64,
    pub worker: usize,
    pub context_id: u32,
}

#[derive(Debug)]
struct Queue {
    owner: QueueOwner,
    items: VecDeque<Vec<u8>>,
}

/// One VM id's key-value store: key to value and CAS.
type Store = HashMap<Vec<u8>, (Vec<u8>, u32)>;

/// The state behind a [`SharedData`] handle.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    stores: HashMap<String, Store>,
    last_cas: u32,
    queue_tokens: HashMap<(String, Vec<u8>), u32>,
    queues: HashMap<u32, Queue>,
    last_queue_token: u32,
    /// `proxy_on_queue_ready` calls posted by enqueues and not yet run.
    ready: Vec<(QueueOwner, u32)>,
}

impl Registry {
    /// The value and its CAS, or `NotFound`.
    pub fn get(&self, vm_id: &str, key: &[u8]) -> Result<(Vec<u8>, u32), Status> {
        self.stores
            .get(vm_id)
            .and_then(|store| store.get(key))
            .cloned()
            .ok_or(Status::NotFound)
    }

    /// Sets a value. A CAS of 0 always wins; otherwise an existing key must still carry
    /// that CAS (`CasMismatch` if not). A missing key is set whatever the CAS. Every
    /// successful set takes a fresh nonzero CAS (one counter for every VM id, as in Envoy).
    pub fn set(&mut self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Result<(), Status> {
        if let Some((_, current)) = self.stores.get(vm_id).and_then(|s| s.get(key)) {
            if cas != 0 && cas != *current {
                return Err(Status::CasMismatch);
            }
        }
        let next = self.next_cas();
        self.stores
            .entry(vm_id.to_string())
            .or_default()
            .insert(key.to_vec(), (value.to_vec(), next));
        Ok(())
    }

    fn next_cas(&mut self) -> u32 {
        self.last_cas = self.last_cas.wrapping_add(1);
        if self.last_cas == 0 {
            self.last_cas = 1;
        }
        self.last_cas
    }

    /// Registers the queue `name` of this VM id, or takes over an existing one (keeping
    /// its items), and returns its token. The last registration is the one notified.
    pub fn register_queue(&mut self, vm_id: &str, name: &[u8], owner: QueueOwner) -> u32 {
        let key = (vm_id.to_string(), name.to_vec());
        let token = match self.queue_tokens.get(&key) {
            Some(token) => *token,
            None => {
                let token = self.next_queue_token();
                self.queue_tokens.insert(key, token);
                token
            }
        };
        let queue = self.queues.entry(token).or_insert_with(|| Queue {
            owner,
            items: VecDeque::new(),
        });
        queue.owner = owner;
        token
    }

    fn next_queue_token(&mut self) -> u32 {
        loop {
            self.last_queue_token = self.last_queue_token.wrapping_add(1);
            let token = self.last_queue_token;
            if token != 0 && !self.queues.contains_key(&token) {
                return token;
            }
        }
    }

    /// The token of a registered queue, or `NotFound`.
    pub fn resolve_queue(&self, vm_id: &str, name: &[u8]) -> Result<u32, Status> {
        self.queue_tokens
            .get(&(vm_id.to_string(), name.to_vec()))
            .copied()
            .ok_or(Status::NotFound)
    }

    /// Appends to a queue and posts `proxy_on_queue_ready` to its owner.
    pub fn enqueue(&mut self, token: u32, value: &[u8]) -> Result<(), Status> {
        let queue = self.queues.get_mut(&token).ok_or(Status::NotFound)?;
        queue.items.push_back(value.to_vec());
        let owner = queue.owner;
        self.ready.push((owner, token));
        Ok(())
    }

    /// Takes the oldest item: `NotFound` for an unknown token, `Empty` for an empty queue.
    pub fn dequeue(&mut self, token: u32) -> Result<Vec<u8>, Status> {
        let queue = self.queues.get_mut(&token).ok_or(Status::NotFound)?;
        queue.items.pop_front().ok_or(Status::Empty)
    }

    /// Takes the posted notifications for one host's workers, oldest first.
    pub fn take_ready(&mut self, host: u64) -> Vec<(QueueOwner, u32)> {
        let (mine, others) = std::mem::take(&mut self.ready)
            .into_iter()
            .partition(|(owner, _)| owner.host == host);
        self.ready = others;
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(worker: usize) -> QueueOwner {
        QueueOwner {
            host: 1,
            worker,
            context_id: 1,
        }
    }

    #[test]
    fn a_missing_key_is_not_found() {
        assert_eq!(Registry::default().get("vm", b"k"), Err(Status::NotFound));
    }

    #[test]
    fn a_stale_cas_is_refused_and_a_zero_cas_always_wins() {
        let mut data = Registry::default();
        data.set("", b"k", b"1", 77).unwrap();
        let (_, cas) = data.get("", b"k").unwrap();
        assert_ne!(cas, 0);
        data.set("", b"k", b"2", cas).unwrap();
        assert_eq!(data.set("", b"k", b"3", cas), Err(Status::CasMismatch));
        data.set("", b"k", b"4", 0).unwrap();
        assert_eq!(data.get("", b"k").unwrap().0, b"4".to_vec());
    }

    #[test]
    fn each_vm_id_has_its_own_store() {
        let mut data = Registry::default();
        data.set("a", b"k", b"1", 0).unwrap();
        assert_eq!(data.get("b", b"k"), Err(Status::NotFound));
        assert_eq!(data.get("", b"k"), Err(Status::NotFound));
    }

    #[test]
    fn registering_a_queue_again_keeps_its_token_and_items_and_moves_the_owner() {
        let mut data = Registry::default();
        let token = data.register_queue("vm", b"q", owner(0));
        data.enqueue(token, b"one").unwrap();
        assert_eq!(data.register_queue("vm", b"q", owner(1)), token);
        data.enqueue(token, b"two").unwrap();
        assert_eq!(
            data.take_ready(1),
            vec![(owner(0), token), (owner(1), token)]
        );
        assert_eq!(data.dequeue(token).unwrap(), b"one".to_vec());
        assert_eq!(data.dequeue(token).unwrap(), b"two".to_vec());
        assert_eq!(data.dequeue(token), Err(Status::Empty));
        assert_eq!(data.dequeue(token + 1), Err(Status::NotFound));
        assert_eq!(data.enqueue(token + 1, b"x"), Err(Status::NotFound));
        assert_eq!(data.resolve_queue("other", b"q"), Err(Status::NotFound));
    }
}
