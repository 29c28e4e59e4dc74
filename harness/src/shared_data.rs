//! Shared data (`proxy_get_shared_data`/`proxy_set_shared_data`) with Envoy's
//! compare-and-swap rules, one store per VM id shared by every worker of a host.

use std::collections::HashMap;

use crate::status::Status;

/// The key-value store every worker's VM reads and writes.
#[derive(Debug, Default)]
pub(crate) struct SharedData {
    entries: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl SharedData {
    /// The value and its CAS, or `NotFound`.
    pub fn get(&self, key: &[u8]) -> Result<(Vec<u8>, u32), Status> {
        self.entries.get(key).cloned().ok_or(Status::NotFound)
    }

    /// Sets a value. A CAS of 0 always wins; otherwise an existing key must still carry
    /// that CAS (`CasMismatch` if not). A missing key is set whatever the CAS. Every
    /// successful set takes a fresh nonzero CAS.
    pub fn set(&mut self, key: &[u8], value: &[u8], cas: u32) -> Result<(), Status> {
        if let Some((_, current)) = self.entries.get(key) {
            if cas != 0 && cas != *current {
                return Err(Status::CasMismatch);
            }
        }
        let next = self.next_cas();
        self.entries.insert(key.to_vec(), (value.to_vec(), next));
        Ok(())
    }

    fn next_cas(&mut self) -> u32 {
        self.last_cas = self.last_cas.wrapping_add(1);
        if self.last_cas == 0 {
            self.last_cas = 1;
        }
        self.last_cas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_is_not_found() {
        assert_eq!(SharedData::default().get(b"k"), Err(Status::NotFound));
    }

    #[test]
    fn a_stale_cas_is_refused_and_a_zero_cas_always_wins() {
        let mut data = SharedData::default();
        data.set(b"k", b"1", 77).unwrap();
        let (_, cas) = data.get(b"k").unwrap();
        assert_ne!(cas, 0);
        data.set(b"k", b"2", cas).unwrap();
        assert_eq!(data.set(b"k", b"3", cas), Err(Status::CasMismatch));
        data.set(b"k", b"4", 0).unwrap();
        assert_eq!(data.get(b"k").unwrap().0, b"4".to_vec());
    }
}
