//! Who is calling the host, for the dispatcher: the context host calls act on, the chain
//! member at work and what it asked of the host, the callouts in flight and who made them,
//! and the resumptions chain streams do themselves.
//!
//! `host` writes this record as a filter makes its calls, and `abi` reads it to route
//! events back, so neither needs the other for it: `host` depends on this module alone,
//! and `abi` on both.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes context ids and callout tokens: small integers the host hands out, so one
/// multiplication spreads them well. SipHash, the default, costs several hundred wasm
/// instructions per lookup on the hot path of every callback.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A table keyed by context id or callout token.
pub(crate) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// An empty [`IdMap`], usable in a `const` (a thread-local initialised as a constant is
/// read without the lazy-initialisation check a non-constant one makes on every access:
/// fewer Wasm instructions per callback).
pub(crate) const fn id_map<V>() -> IdMap<V> {
    HashMap::with_hasher(BuildHasherDefault::new())
}

struct Record {
    /// The context host calls act on: the one whose callback runs, or another set with
    /// `host::set_effective_context`.
    effective: u32,
    /// Which context (and chain member) made each HTTP callout still in flight, by token.
    http_callouts: IdMap<Owner>,
    /// Which context (and chain member) made each gRPC callout still in flight, by token.
    grpc_callouts: IdMap<Owner>,
    /// What the running chain member asked of the host that its chain does instead.
    member: Option<Member>,
    /// The chain member a callout event being delivered belongs to.
    delivering_member: Option<usize>,
    /// Streams whose filter resumes itself (a chain): `host::continue_stream` on them is
    /// handed to the filter, after the callback, instead of to the host.
    self_resuming: IdMap<()>,
    /// Resumptions asked for during this callback, handed over when it returns.
    continues: Vec<Resume>,
    /// A chain is resuming the host's stream itself: let `continue_stream` through.
    passthrough: bool,
}

/// Who made a callout: the context and, inside a chain, the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    context: u32,
    member: Option<usize>,
}

/// A chain member at work, and what it asked of the host that the chain does for it.
#[derive(Clone, Copy, Debug)]
struct Member {
    index: usize,
    asked: Asked,
}

/// What a chain member asked of the host during one call (see [`run_member`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    /// It set its tick period (milliseconds; 0 stops it). The chain ticks for it.
    pub tick_millis: Option<u32>,
    /// It sent a local reply.
    pub local_reply: bool,
}

/// A `host::continue_stream` a chain stream will do itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resume {
    pub(crate) context: u32,
    pub(crate) response_side: bool,
    pub(crate) member: Option<usize>,
}

/// The two kinds of callout; Envoy numbers their tokens separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callout {
    /// `proxy_http_call`.
    Http,
    /// `proxy_grpc_call`.
    Grpc,
}

thread_local! {
    static RECORD: RefCell<Record> = const {
        RefCell::new(Record {
            effective: 0,
            http_callouts: id_map(),
            grpc_callouts: id_map(),
            member: None,
            delivering_member: None,
            self_resuming: id_map(),
            continues: Vec::new(),
            passthrough: false,
        })
    };
}

fn with<R>(f: impl FnOnce(&mut Record) -> R) -> Option<R> {
    RECORD.with(|r| r.try_borrow_mut().ok().map(|mut r| f(&mut r)))
}

/// The context host calls act on now.
pub(crate) fn effective() -> u32 {
    with(|r| r.effective).unwrap_or(0)
}

/// Makes `id` the context host calls act on: at the start of its callback, or (from
/// `host::set_effective_context`) once the host switched.
pub(crate) fn set_effective(id: u32) {
    with(|r| r.effective = id);
}

/// Called by `host::continue_stream`: true if the effective context is a chain stream,
/// which then resumes itself once the callback returns (the host is not asked).
pub(crate) fn intercept_continue(response_side: bool) -> bool {
    with(|r| {
        let context = r.effective;
        if r.passthrough || !r.self_resuming.contains_key(&context) {
            return false;
        }
        let member = r.member.map(|m| m.index);
        r.continues.push(Resume {
            context,
            response_side,
            member,
        });
        true
    })
    .unwrap_or(false)
}

/// Lets `host::continue_stream` through to the host while `on` (a chain resuming the
/// host's stream itself).
pub(crate) fn set_passthrough(on: bool) {
    with(|r| r.passthrough = on);
}

/// The first resumption asked for during the callback, taken off the list.
pub(crate) fn next_resumption() -> Option<Resume> {
    // First asked, first resumed, as Envoy runs the actions queued during a VM call.
    with(|r| (!r.continues.is_empty()).then(|| r.continues.remove(0))).flatten()
}

/// Stream `id`'s filter resumes itself (a chain).
pub(crate) fn mark_self_resuming(id: u32) {
    with(|r| r.self_resuming.insert(id, ()));
}

/// Forgets context `id`.
pub(crate) fn forget(id: u32) {
    with(|r| r.self_resuming.remove(&id));
}

/// Forgets what a callback that panicked left half done (a chain member at work,
/// resumptions asked for), so the next callback starts clean.
#[cfg(feature = "native")]
pub(crate) fn recover_from_panic() {
    with(|r| {
        r.member = None;
        r.delivering_member = None;
        r.continues.clear();
        r.passthrough = false;
    });
}

/// Called by `host::set_tick_period_millis`: true if a chain member asked, which the chain
/// then serves from its own tick (the host is not asked).
pub(crate) fn intercept_tick_period(millis: u32) -> bool {
    with(|r| match &mut r.member {
        Some(member) => {
            member.asked.tick_millis = Some(millis);
            true
        }
        None => false,
    })
    .unwrap_or(false)
}

/// Called by `host::send_local_response`, so a chain stops running members after it.
pub(crate) fn note_local_reply() {
    with(|r| {
        if let Some(member) = &mut r.member {
            member.asked.local_reply = true;
        }
    });
}

/// Runs `f` as chain member `index`: callouts it makes are delivered back to it
/// ([`delivering_member`]), and what it asks of the host that the chain does for it is
/// returned. Calls nest: an outer member's record is kept.
pub fn run_member<R>(index: usize, f: impl FnOnce() -> R) -> (R, Asked) {
    let outer = with(|r| {
        r.member.replace(Member {
            index,
            asked: Asked::default(),
        })
    })
    .flatten();
    let result = f();
    let asked = with(|r| std::mem::replace(&mut r.member, outer))
        .flatten()
        .map(|m| m.asked)
        .unwrap_or_default();
    (result, asked)
}

/// The chain member that made the callout whose event is being delivered, if a chain
/// member made it.
pub fn delivering_member() -> Option<usize> {
    with(|r| r.delivering_member).flatten()
}

/// Remembers that the effective context (and chain member) made callout `token`, so its
/// reply reaches it.
pub(crate) fn note_callout(kind: Callout, token: u32) {
    with(|r| {
        let owner = Owner {
            context: r.effective,
            member: r.member.map(|m| m.index),
        };
        match kind {
            Callout::Http => r.http_callouts.insert(token, owner),
            Callout::Grpc => r.grpc_callouts.insert(token, owner),
        }
    });
}

/// The context that made callout `token`, forgotten once asked for; `delivered_to` (the
/// context the host delivered it to) when the call was not made through `host`. The
/// member that made it is kept for [`delivering_member`].
pub(crate) fn callout_owner(kind: Callout, token: u32, delivered_to: u32) -> u32 {
    with(|r| {
        let map = match kind {
            Callout::Http => &mut r.http_callouts,
            Callout::Grpc => &mut r.grpc_callouts,
        };
        let owner = map.remove(&token);
        r.delivering_member = owner.and_then(|o| o.member);
        owner.map_or(delivered_to, |o| o.context)
    })
    .unwrap_or(delivered_to)
}
