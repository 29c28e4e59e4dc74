//! Metrics with Envoy's rules: ids that encode the type, counters that only go up, one
//! stats store across all workers, read by the test by name.

use std::collections::{BTreeMap, HashMap};

use crate::status::Status;

/// The prefix Envoy puts before the names of metrics a Wasm filter defines.
pub const ENVOY_PREFIX: &str = "wasmcustom.";

/// The kind of a metric, numbered as in the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down, or is set.
    Gauge,
    /// Records samples.
    Histogram,
}

impl MetricKind {
    fn from_abi(kind: u32) -> Option<Self> {
        match kind {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }

    fn from_id(id: u32) -> Option<Self> {
        Self::from_abi(id & 0x3)
    }
}

/// The value of one metric as the test reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's current value.
    Gauge(u64),
    /// Every sample a histogram recorded, in order.
    Histogram(Vec<u64>),
}

/// The stats store shared by every worker of a host.
#[derive(Debug, Default)]
pub(crate) struct MetricStore {
    values: BTreeMap<(MetricKind, String), MetricValue>,
}

impl MetricStore {
    fn ensure(&mut self, kind: MetricKind, name: &str) {
        self.values
            .entry((kind, name.to_string()))
            .or_insert_with(|| match kind {
                MetricKind::Counter => MetricValue::Counter(0),
                MetricKind::Gauge => MetricValue::Gauge(0),
                MetricKind::Histogram => MetricValue::Histogram(Vec::new()),
            });
    }

    /// A metric by the name the filter defined, or by Envoy's `wasmcustom.` form.
    pub fn get(&self, kind: MetricKind, name: &str) -> Option<&MetricValue> {
        let name = name.strip_prefix(ENVOY_PREFIX).unwrap_or(name);
        self.values.get(&(kind, name.to_string()))
    }

    /// Every metric, by kind then name.
    pub fn all(&self) -> Vec<(MetricKind, String, MetricValue)> {
        self.values
            .iter()
            .map(|((kind, name), value)| (*kind, name.clone(), value.clone()))
            .collect()
    }

    fn value_mut(&mut self, kind: MetricKind, name: &str) -> Option<&mut MetricValue> {
        self.values.get_mut(&(kind, name.to_string()))
    }
}

/// The ids one VM has handed out. Like Envoy, ids step by 4 and their low two bits are the
/// kind; defining the same name and kind again returns the same id.
#[derive(Debug)]
pub(crate) struct MetricIds {
    by_name: HashMap<(MetricKind, String), u32>,
    by_id: HashMap<u32, (MetricKind, String)>,
    next: [u32; 3],
}

impl Default for MetricIds {
    fn default() -> Self {
        Self {
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            next: [0, 1, 2],
        }
    }
}

impl MetricIds {
    /// `proxy_define_metric`.
    pub fn define(
        &mut self,
        store: &mut MetricStore,
        kind: u32,
        name: &str,
    ) -> Result<u32, Status> {
        // Envoy gives every call a new id, even for a name defined before; the ids share
        // the one stat.
        let kind = MetricKind::from_abi(kind).ok_or(Status::BadArgument)?;
        store.ensure(kind, name);
        let slot = &mut self.next[kind as usize];
        *slot += 4;
        let id = *slot;
        self.by_name.insert((kind, name.to_string()), id);
        self.by_id.insert(id, (kind, name.to_string()));
        Ok(id)
    }

    fn lookup<'a>(
        &self,
        store: &'a mut MetricStore,
        id: u32,
    ) -> Result<(MetricKind, &'a mut MetricValue), Status> {
        let (kind, name) = self.by_id.get(&id).ok_or(Status::NotFound)?;
        let value = store.value_mut(*kind, name).ok_or(Status::NotFound)?;
        Ok((*kind, value))
    }

    /// `proxy_increment_metric`: counters take only positive offsets, gauges both,
    /// histograms none.
    pub fn increment(&self, store: &mut MetricStore, id: u32, offset: i64) -> Result<(), Status> {
        match MetricKind::from_id(id) {
            Some(MetricKind::Counter) | Some(MetricKind::Gauge) => {}
            _ => return Err(Status::BadArgument),
        }
        match self.lookup(store, id)? {
            (_, MetricValue::Counter(total)) if offset > 0 => *total += offset as u64,
            (_, MetricValue::Counter(_)) => return Err(Status::BadArgument),
            (_, MetricValue::Gauge(value)) => {
                *value = if offset >= 0 {
                    value.wrapping_add(offset as u64)
                } else {
                    value.wrapping_sub(offset.unsigned_abs())
                }
            }
            _ => return Err(Status::BadArgument),
        }
        Ok(())
    }

    /// `proxy_record_metric`: adds to a counter, sets a gauge, samples a histogram.
    pub fn record(&self, store: &mut MetricStore, id: u32, value: u64) -> Result<(), Status> {
        match self.lookup(store, id)? {
            (_, MetricValue::Counter(total)) => *total += value,
            (_, MetricValue::Gauge(current)) => *current = value,
            (_, MetricValue::Histogram(samples)) => samples.push(value),
        }
        Ok(())
    }

    /// `proxy_get_metric`: histograms cannot be read back.
    pub fn get(&self, store: &mut MetricStore, id: u32) -> Result<u64, Status> {
        match MetricKind::from_id(id) {
            Some(MetricKind::Counter) | Some(MetricKind::Gauge) => {}
            _ => return Err(Status::BadArgument),
        }
        match self.lookup(store, id)? {
            (_, MetricValue::Counter(v)) | (_, MetricValue::Gauge(v)) => Ok(*v),
            _ => Err(Status::BadArgument),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_encode_the_kind_and_are_new_for_each_definition_of_one_stat() {
        let (mut ids, mut store) = (MetricIds::default(), MetricStore::default());
        let counter = ids.define(&mut store, 0, "c").unwrap();
        let gauge = ids.define(&mut store, 1, "g").unwrap();
        let histogram = ids.define(&mut store, 2, "h").unwrap();
        assert_eq!((counter & 3, gauge & 3, histogram & 3), (0, 1, 2));
        let again = ids.define(&mut store, 0, "c").unwrap();
        assert_ne!(again, counter);
        ids.increment(&mut store, counter, 1).unwrap();
        ids.increment(&mut store, again, 2).unwrap();
        assert_eq!(
            store.value_mut(MetricKind::Counter, "c"),
            Some(&mut MetricValue::Counter(3))
        );
        assert_eq!(ids.define(&mut store, 3, "x"), Err(Status::BadArgument));
    }

    #[test]
    fn counters_refuse_to_go_down_and_gauges_do_not() {
        let (mut ids, mut store) = (MetricIds::default(), MetricStore::default());
        let counter = ids.define(&mut store, 0, "c").unwrap();
        let gauge = ids.define(&mut store, 1, "g").unwrap();
        assert_eq!(
            ids.increment(&mut store, counter, 0),
            Err(Status::BadArgument)
        );
        assert_eq!(
            ids.increment(&mut store, counter, -1),
            Err(Status::BadArgument)
        );
        ids.increment(&mut store, gauge, 5).unwrap();
        ids.increment(&mut store, gauge, -2).unwrap();
        assert_eq!(ids.get(&mut store, gauge), Ok(3));
    }

    #[test]
    fn histograms_record_but_cannot_be_read_by_the_filter() {
        let (mut ids, mut store) = (MetricIds::default(), MetricStore::default());
        let histogram = ids.define(&mut store, 2, "h").unwrap();
        ids.record(&mut store, histogram, 7).unwrap();
        assert_eq!(ids.get(&mut store, histogram), Err(Status::BadArgument));
        assert_eq!(
            store.get(MetricKind::Histogram, "wasmcustom.h"),
            Some(&MetricValue::Histogram(vec![7]))
        );
    }

    #[test]
    fn unknown_ids_are_not_found() {
        let (ids, mut store) = (MetricIds::default(), MetricStore::default());
        assert_eq!(ids.record(&mut store, 4, 1), Err(Status::NotFound));
        assert_eq!(ids.get(&mut store, 8), Err(Status::NotFound));
    }
}
