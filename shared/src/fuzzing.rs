//! What the fuzz tests of every crate share (feature `fuzzing`, for tests only, never in a
//! Wasm module): how many cases a property runs, a time bound per case, byte soups made of
//! the tokens a parser cares about, and random JSON shaped like a known-good configuration.
//!
//! Each fuzz test binary counts its allocations ([`count_allocations!`]), so [`within`]
//! bounds the heap a case may take as well as its CPU time.
//!
//! `make test` runs each property for the few cases its test names; `make fuzz` sets
//! [`CASES_VAR`] and runs them much longer. A property that costs more per case (a whole
//! Wasm VM, a configuration) divides that count by its weight.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError};
use serde_json::{Map, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// The most one call under [`within`] may grow the heap by: a parser that allocates what
/// a length field claims, or copies its input per byte, goes far beyond it.
pub const MEMORY_BOUND: i64 = 64 << 20;

thread_local! {
    /// Bytes this thread allocated and has not freed (freed on another thread, it goes
    /// below zero), and the most it reached since [`within`] last reset it.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    // `try_with`: an allocation made while the thread's locals are torn down is not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

/// The system allocator, counting each thread's live bytes and their peak for [`within`].
/// A test binary installs it with [`count_allocations!`].
pub struct CountingAllocator;

// SAFETY: every call is passed to the system allocator unchanged; the counting touches
// only this thread's `Cell`s, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `alloc`; `ptr` came from this allocator, so from the system's.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        moved
    }
}

/// Installs [`CountingAllocator`] as the test binary's global allocator, so [`within`]
/// bounds each case's heap. Every fuzz test module calls it once.
#[macro_export]
macro_rules! count_allocations {
    () => {
        #[global_allocator]
        static COUNTING_ALLOCATOR: $crate::fuzzing::CountingAllocator =
            $crate::fuzzing::CountingAllocator;
    };
}

/// The environment variable that sets how many cases the cheapest properties run
/// (`make fuzz` sets it); unset, each property runs the count its test gives.
pub const CASES_VAR: &str = "MESHWARD_FUZZ_CASES";

/// The proptest configuration of a property that runs `cases` cases in `make test`, or
/// `MESHWARD_FUZZ_CASES / weight` (never fewer than `cases`) when that is set. Failures are
/// not persisted: each one found becomes a named regression test instead.
pub fn config(cases: u32, weight: u32) -> Config {
    let scaled = std::env::var(CASES_VAR)
        .ok()
        .and_then(|n| n.trim().parse::<u32>().ok())
        .map_or(cases, |n| (n / weight.max(1)).max(cases));
    Config {
        cases: scaled,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The CPU time this thread has used (user and system, from `/proc/thread-self/stat`, in
/// clock ticks of 10 ms), or `None` where the kernel does not say.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system).saturating_mul(10)))
}

/// Runs `f` and fails the case when it took longer than `limit`, or grew the heap by more
/// than [`MEMORY_BOUND`] at any point: a parser that loops, goes quadratic or allocates
/// without bound on hostile input stalls or exhausts a worker. The time is the thread's
/// CPU time where Linux reports it (so a busy machine does not fail a case), wall time
/// elsewhere. Limits are generous (debug builds); they catch blow-ups, not slow constants.
/// The heap is counted in binaries that install [`count_allocations!`] (all of ours).
pub fn within<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let (cpu, wall) = (thread_cpu_time(), Instant::now());
    let out = f();
    let grown = PEAK.with(Cell::get).saturating_sub(base);
    if grown > MEMORY_BOUND {
        return Err(TestCaseError::fail(format!(
            "{what} grew the heap by {grown} bytes, over its bound of {MEMORY_BOUND}"
        )));
    }
    let took = match (cpu, thread_cpu_time()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => wall.elapsed(),
    };
    if took > limit {
        return Err(TestCaseError::fail(format!(
            "{what} took {took:?} of CPU, over its bound of {limit:?}"
        )));
    }
    Ok(out)
}

/// Bytes made of `tokens` (the separators, escapes and keywords a parser looks for) mixed
/// with arbitrary bytes, at most `max_parts` pieces: far likelier than random bytes to reach
/// a parser's corner cases.
pub fn soup(tokens: &'static [&'static str], max_parts: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => proptest::sample::select(tokens).prop_map(|t| t.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..=max_parts).prop_map(|pieces| pieces.concat())
}

/// Like [`soup`], as text (arbitrary bytes replaced where they are not UTF-8).
pub fn text_soup(
    tokens: &'static [&'static str],
    max_parts: usize,
) -> impl Strategy<Value = String> {
    soup(tokens, max_parts).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// One edit of a JSON document.
#[derive(Clone, Debug)]
enum Edit {
    /// Replace the node with this value.
    Replace(Value),
    /// Remove the node from its parent.
    Remove,
    /// Add this member (to an object) or element (to an array).
    Insert(String, Value),
    /// Put a copy of another node of the document here.
    Graft(Index),
}

/// A JSON leaf or small container of the kinds configurations hold, with the edge cases
/// (huge and negative numbers, fractions, empty and odd strings) that validation must catch.
fn leaf(keys: Vec<String>) -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        Just(0.0),
        Just(-1.0),
        Just(0.5),
        Just(1e30),
        Just(-1e30),
        Just(18_446_744_073_709_551_615.0),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ];
    let text = prop_oneof![
        "[a-z0-9_.:/*-]{0,12}",
        "[0-9]{0,4}[.]?[0-9]{0,2}(ns|us|ms|s|m|h|d|)",
        "\\PC{0,8}",
        Just(String::new()),
        proptest::sample::select(keys),
    ];
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        number.prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text.prop_map(Value::String),
    ];
    scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,8}", inner), 0..3)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn keys_of(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                out.push(key.clone());
                keys_of(member, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| keys_of(item, out)),
        _ => {}
    }
}

/// Every node's JSON pointer, the root first.
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_string());
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(member, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(doc: &mut Value, target: &Index, edit: &Edit) {
    let mut all = Vec::new();
    pointers(doc, "", &mut all);
    let Some(pointer) = all.get(target.index(all.len())).cloned() else {
        return;
    };
    match edit {
        Edit::Replace(value) => {
            if let Some(node) = doc.pointer_mut(&pointer) {
                *node = value.clone();
            }
        }
        Edit::Insert(key, value) => match doc.pointer_mut(&pointer) {
            Some(Value::Object(members)) => {
                members.insert(key.clone(), value.clone());
            }
            Some(Value::Array(items)) => items.push(value.clone()),
            _ => {}
        },
        Edit::Graft(source) => {
            let from = all
                .get(source.index(all.len()))
                .cloned()
                .unwrap_or_default();
            let copy = doc.pointer(&from).cloned();
            if let (Some(copy), Some(node)) = (copy, doc.pointer_mut(&pointer)) {
                *node = copy;
            }
        }
        Edit::Remove => {
            let Some((parent, last)) = pointer.rsplit_once('/') else {
                return;
            };
            match doc.pointer_mut(parent) {
                Some(Value::Object(members)) => {
                    members.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < items.len() {
                            items.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Random JSON shaped like `seed`: up to `max_edits` edits, each replacing a node with a
/// random value or another node of the document, removing one, or adding a member named
/// like one of the seed's fields. The seed should be a configuration that parses, with
/// every optional field present, so the edits reach every field's validation.
pub fn json_like(seed: Value, max_edits: usize) -> impl Strategy<Value = Value> {
    let mut keys = Vec::new();
    keys_of(&seed, &mut keys);
    keys.push("unknown".to_string());
    let edit = prop_oneof![
        3 => leaf(keys.clone()).prop_map(Edit::Replace),
        2 => Just(Edit::Remove),
        1 => (proptest::sample::select(keys.clone()), leaf(keys.clone()))
            .prop_map(|(k, v)| Edit::Insert(k, v)),
        1 => any::<Index>().prop_map(Edit::Graft),
    ];
    proptest::collection::vec((any::<Index>(), edit), 0..=max_edits).prop_map(move |edits| {
        let mut doc = seed.clone();
        for (target, edit) in &edits {
            apply(&mut doc, target, edit);
        }
        doc
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use serde_json::json;

    #[test]
    fn json_like_documents_keep_most_of_the_seeds_shape() {
        let seed = json!({"rules": [{"name": "a", "per": "1s"}], "mode": "on"});
        let strategy = json_like(seed.clone(), 2);
        let mut runner = TestRunner::deterministic();
        let mut unchanged = 0;
        let mut differing = 0;
        for _ in 0..200 {
            let doc = strategy.new_tree(&mut runner).unwrap().current();
            if doc == seed {
                unchanged += 1;
            } else {
                differing += 1;
            }
        }
        assert!(unchanged > 0, "no document was the seed itself");
        assert!(
            differing > 100,
            "only {differing} of 200 documents were edited"
        );
    }

    #[test]
    fn the_case_count_is_scaled_by_the_environment_variable_only_upwards() {
        // The variable is read at call time; unset in `cargo test` unless `make fuzz` runs.
        if std::env::var(CASES_VAR).is_err() {
            assert_eq!(config(16, 10).cases, 16);
        }
    }
}
