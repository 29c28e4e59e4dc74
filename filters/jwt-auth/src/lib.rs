//! meshward jwt-auth: JWT authentication and claim-based authorization for Envoy.
//!
//! This file is the Proxy-Wasm adapter only: it reads the request, hands it to the pure
//! [`verdict`] with the worker's cache and keys, and applies the result. Remote key sets
//! are fetched by whichever context needs them first (the root on its tick, or a request
//! that meets no keys or an unknown `kid`) while holding the proxy-wide lease of
//! [`remote`]. Requests that need keys while a fetch is in flight wait for it: a fetch that
//! lands on this worker resumes them at once, and the root's tick resumes those whose keys
//! another worker fetched.
#![warn(missing_docs)]

pub mod base64url;
pub mod cache;
pub mod claims;
pub mod config;
pub mod deny;
pub mod der;
pub mod failed;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod foreign;
pub mod forward;
#[cfg(test)]
mod fuzz;
pub mod json;
pub mod jwks;
pub mod metrics;
pub mod policy;
pub mod remote;
pub mod rsa_verify;
pub mod sources;
pub mod token;
pub mod verdict;
pub mod verify;

use crate::cache::TokenCache;
use crate::config::Config;
use crate::deny::{Denial, Reason};
use crate::failed::FailedSignatures;
use crate::forward::Edit;
use crate::metrics::Metrics;
use crate::remote::{FetchResult, LeaseOutcome, Remote, RemoteSource, Why};
use crate::sources::Header;
use crate::verdict::{Env, KeyLookup, KeyStore, Request, Tally, Verdict};
use crate::verify::{HostVerifier, NoHost};
use meshward_shared::config::ConfigError;
use meshward_shared::host::{self, Map};
use meshward_shared::shared_data::HostStore;
use meshward_shared::{
    log::Log, reply, time, Action, HttpCallReply, HttpFilter, RootFilter, Status,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Where this filter logs: every message starts with `jwt-auth: `.
const LOG: Log = Log::new("jwt-auth");

/// The module's entry point (`_initialize`), serving `Root` for every root id.
#[cfg(feature = "entry-point")]
mod entry {
    meshward_shared::register_filters! {
        exports: [request_headers, tick, http_call],
        "jwt-auth" => || Box::new(super::Root::default()),
    }
}

/// The root's tick when remote key sets are configured, in milliseconds: how soon a request
/// waiting for keys another worker fetched is resumed.
const TICK_MILLIS: u32 = 250;
/// How often the root looks for key sets due for refresh, in milliseconds.
const REFRESH_CHECK_MILLIS: u64 = 1000;

/// Whether the host offers `verify_signature`, learned on first use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum HostCrypto {
    #[default]
    Unknown,
    Present,
    Absent,
}

/// A request held until a key set lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    context_id: u32,
    source: usize,
    /// When it stops waiting and is refused (ms since the epoch).
    deadline_ms: u64,
}

/// What one worker keeps between requests.
#[derive(Default)]
struct Worker {
    cache: TokenCache,
    failed: FailedSignatures,
    remotes: Vec<Remote>,
    /// When each remote's keys were fetched, as last seen: a change empties the cache.
    seen: Vec<Option<u64>>,
    host_crypto: HostCrypto,
    /// The root's fetches in flight: callout token → source.
    root_fetches: HashMap<u32, usize>,
    waiters: Vec<Waiter>,
    last_refresh_check_ms: u64,
}

impl Worker {
    fn new(config: &Config) -> Self {
        Worker {
            cache: TokenCache::new(config.cache_entries),
            remotes: config.sources.iter().map(|_| Remote::default()).collect(),
            seen: vec![None; config.sources.len()],
            ..Worker::default()
        }
    }

    /// Empties the token cache if any key set changed since last seen.
    fn note_key_changes(&mut self) {
        let now: Vec<Option<u64>> = self.remotes.iter().map(Remote::fetched_at_ms).collect();
        if now != self.seen {
            self.cache.clear();
            self.failed.clear();
            self.seen = now;
        }
    }

    /// Records a fetch's reply for source `index`.
    fn complete_fetch(
        &mut self,
        index: usize,
        source: &RemoteSource,
        reply: &HttpCallReply,
        metrics: &Metrics,
    ) {
        let Some(remote) = self.remotes.get_mut(index) else {
            return;
        };
        let answer = reply.status().map(|status| (status, reply.body.as_slice()));
        match remote.fetched(&mut HostStore, source, now_millis(), answer) {
            FetchResult::Published { skipped } => {
                metrics.counters.jwks_fetch_ok.inc();
                if skipped > 0 {
                    LOG.info(format_args!(
                        "{}{}: skipped {skipped} keys that cannot verify signatures",
                        source.authority, source.path
                    ));
                }
            }
            FetchResult::Failed(why) => {
                metrics.counters.jwks_fetch_failed.inc();
                LOG.warn(format_args!(
                    "{}{}: {why}; keeping the last good keys",
                    source.authority, source.path
                ));
            }
        }
        self.note_key_changes();
    }
}

fn now_millis() -> u64 {
    millis(time::now())
}

/// A reading of the clock in whole milliseconds since the epoch; 0 when it failed.
fn millis(now: Option<std::time::Duration>) -> u64 {
    now.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Starts a JWKS fetch; the caller holds the lease.
fn start_fetch(source: &RemoteSource) -> Result<u32, Status> {
    let timeout = u32::try_from(source.timeout.as_millis()).unwrap_or(u32::MAX);
    host::http_call(
        &source.cluster,
        &[
            (":method", "GET"),
            (":path", source.path.as_str()),
            (":authority", source.authority.as_str()),
            ("accept", "application/json"),
        ],
        b"",
        timeout,
    )
}

/// Makes `context_id` the context later host calls act on, so a fetch landing on one
/// context can answer or resume another request.
fn set_effective_context(context_id: u32) -> bool {
    host::set_effective_context(context_id).is_ok()
}

/// Remote keys through this worker's view and Envoy's shared data.
struct RemoteKeys<'a> {
    remotes: &'a mut [Remote],
    sources: &'a [RemoteSource],
    now_ms: u64,
    may_fetch: bool,
}

impl KeyStore for RemoteKeys<'_> {
    fn lookup(&mut self, source: usize, kid: Option<&str>) -> KeyLookup {
        match (self.remotes.get_mut(source), self.sources.get(source)) {
            (Some(remote), Some(config)) => {
                remote.lookup(&mut HostStore, config, kid, self.now_ms, self.may_fetch)
            }
            _ => KeyLookup::Unavailable,
        }
    }
}

/// Envoy's `verify_signature`, when the host has it.
struct EnvoyCrypto<'a>(&'a mut HostCrypto);

impl HostVerifier for EnvoyCrypto<'_> {
    fn verify(&mut self, args: &foreign::Arguments) -> Option<bool> {
        if *self.0 == HostCrypto::Absent {
            return None;
        }
        match host::call_foreign_function(
            foreign::VERIFY_SIGNATURE,
            &foreign::encode_arguments(args),
        ) {
            Ok(bytes) => {
                *self.0 = HostCrypto::Present;
                foreign::decode_result(&bytes)
            }
            Err(Status::NotFound | Status::Unimplemented) => {
                *self.0 = HostCrypto::Absent;
                LOG.info(format_args!(
                    "the host has no verify_signature; verifying signatures in Wasm"
                ));
                None
            }
            // A key the host would not import: check it in Rust instead.
            Err(_) => None,
        }
    }
}

/// What handling a request led to.
enum Handled {
    /// Let it through (edits applied).
    Continue,
    /// A local reply was sent.
    Answered,
    /// It waits in the worker's list for keys another context is fetching.
    Parked,
    /// It fetches keys itself: the callout token and the source.
    Fetching(u32, usize),
}

/// Deciding for a request and acting on it, for the request's own callbacks and for a
/// context that resumes it (with it as the effective context).
#[derive(Clone)]
struct Gate {
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
    metrics: Rc<Metrics>,
}

impl Gate {
    /// Handles the request of `context_id` (the current or effective context). With
    /// `may_fetch`, it may take the lease and fetch; a resumed request may not (its reply
    /// would reach the resuming context). `deadline_ms` bounds a request that already
    /// waited.
    fn handle(&self, context_id: u32, may_fetch: bool, deadline_ms: Option<u64>) -> Handled {
        let snapshot = host::snapshot(Map::RequestHeaders).ok();
        // Lent once, not copied: the token alone is hundreds of bytes.
        let headers: Vec<Header<'_>> = snapshot
            .as_deref()
            .map_or_else(Vec::new, |s| s.iter().collect());
        let request = Request::new(&headers);
        // A fetch that cannot start is recorded as failed and the decision made again:
        // the second time the lease is backing off and the keys read as unavailable.
        for _ in 0..2 {
            let Some(verdict) = self.decide(&request, may_fetch) else {
                return self.deny(&Denial::new(
                    Reason::Malformed,
                    "the request cannot be checked now",
                ));
            };
            match verdict {
                Verdict::Allow(edits) => return self.allow(&edits),
                Verdict::Deny(denial) => return self.deny(&denial),
                Verdict::Wait { source, until_ms } => {
                    let deadline_ms = deadline_ms.unwrap_or(until_ms);
                    if now_millis() >= deadline_ms {
                        break;
                    }
                    return self.park(Waiter {
                        context_id,
                        source,
                        deadline_ms,
                    });
                }
                Verdict::Fetch(index) => {
                    let Some(source) = self.config.sources.get(index) else {
                        break;
                    };
                    match start_fetch(source) {
                        Ok(token) => return Handled::Fetching(token, index),
                        Err(status) => {
                            LOG.warn(format_args!(
                                "cannot call cluster {:?}: {status}",
                                source.cluster
                            ));
                            if let Ok(mut worker) = self.worker.try_borrow_mut() {
                                worker.complete_fetch(
                                    index,
                                    source,
                                    &HttpCallReply::default(),
                                    &self.metrics,
                                );
                            }
                        }
                    }
                }
            }
        }
        self.deny(&Denial::new(
            Reason::UnknownKid,
            "the issuer's signing keys are not available",
        ))
    }

    fn decide(&self, request: &Request<'_>, may_fetch: bool) -> Option<Verdict> {
        let mut worker = self.worker.try_borrow_mut().ok()?;
        let worker = &mut *worker;
        let mut tally = Tally::default();
        // One reading of the clock for the keys' deadlines and the tokens' times.
        let now = time::now();
        let mut keys = RemoteKeys {
            remotes: &mut worker.remotes,
            sources: &self.config.sources,
            now_ms: millis(now),
            may_fetch,
        };
        let mut envoy = EnvoyCrypto(&mut worker.host_crypto);
        let host: &mut dyn HostVerifier = if self.config.host_crypto {
            &mut envoy
        } else {
            &mut NoHost
        };
        let mut env = Env {
            config: &self.config,
            cache: &mut worker.cache,
            failed: &mut worker.failed,
            keys: &mut keys,
            host,
            now: now.map(|d| d.as_secs()),
            tally: &mut tally,
        };
        let verdict = verdict::decide(&mut env, request);
        self.metrics.record(&tally);
        worker.note_key_changes();
        Some(verdict)
    }

    fn park(&self, waiter: Waiter) -> Handled {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            return self.deny(&Denial::new(
                Reason::UnknownKid,
                "the issuer's signing keys are not available",
            ));
        };
        worker.waiters.retain(|w| w.context_id != waiter.context_id);
        worker.waiters.push(waiter);
        Handled::Parked
    }

    fn allow(&self, edits: &[Edit]) -> Handled {
        for edit in edits {
            let applied = match edit {
                Edit::Remove(name) => host::remove_header(Map::RequestHeaders, name),
                Edit::Set(name, value) => {
                    host::set_header(Map::RequestHeaders, name, value.as_bytes())
                }
                Edit::SetPath(path) => {
                    host::set_header(Map::RequestHeaders, ":path", path.as_bytes())
                }
                Edit::SetCookie(Some(value)) => {
                    host::set_header(Map::RequestHeaders, "cookie", value)
                }
                Edit::SetCookie(None) => host::remove_header(Map::RequestHeaders, "cookie"),
            };
            // A header that cannot be removed or set could let a forged claim or the token
            // through: refuse rather than forward a request we could not sanitise.
            if let Err(status) = applied {
                LOG.error(format_args!("cannot edit the request headers: {status}"));
                // Nothing more can be done if even the local reply fails.
                let _ = reply::send_json_error(
                    500,
                    "jwt_internal_error",
                    "the request could not be prepared",
                    &[],
                );
                return Handled::Answered;
            }
        }
        self.metrics.allowed();
        Handled::Continue
    }

    fn deny(&self, denial: &Denial) -> Handled {
        self.metrics.denied(denial.reason);
        let challenge = denial.challenge(&self.config.realm);
        if let Err(status) = reply::send_json_error(
            denial.status(),
            &denial.body_code(),
            &denial.description,
            &[("www-authenticate", challenge.as_str())],
        ) {
            LOG.error(format_args!(
                "cannot send the {} reply: {status}",
                denial.status()
            ));
        }
        Handled::Answered
    }

    /// Decides again for the requests waiting on `source` (all when `None`), each as the
    /// effective context: resumes, refuses, or leaves them waiting until their deadline.
    fn wake(&self, source: Option<usize>) {
        let waiters: Vec<Waiter> = match self.worker.try_borrow_mut() {
            Ok(mut worker) => {
                let (woken, kept) = worker
                    .waiters
                    .drain(..)
                    .partition(|w| source.is_none_or(|s| s == w.source));
                worker.waiters = kept;
                woken
            }
            Err(_) => return,
        };
        for waiter in waiters {
            // A request that ended meanwhile is gone, and so is its wait.
            if !set_effective_context(waiter.context_id) {
                continue;
            }
            match self.handle(waiter.context_id, false, Some(waiter.deadline_ms)) {
                Handled::Continue => {
                    if let Err(status) = host::continue_stream(false) {
                        LOG.error(format_args!("cannot resume a waiting request: {status}"));
                    }
                }
                Handled::Answered | Handled::Parked | Handled::Fetching(..) => {}
            }
        }
    }
}

/// The root context: one per plugin configuration per worker.
#[derive(Default)]
pub struct Root {
    gate: Option<Gate>,
}

impl RootFilter for Root {
    fn name(&self) -> &'static str {
        "jwt-auth"
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let config = config::parse(bytes)?;
        if !config.sources.is_empty() {
            if let Err(status) = host::set_tick_period_millis(TICK_MILLIS) {
                LOG.warn(format_args!(
                    "no tick ({status}); remote keys refresh only on demand"
                ));
            }
        }
        self.gate = Some(Gate {
            worker: Rc::new(RefCell::new(Worker::new(&config))),
            metrics: Rc::new(Metrics::define()),
            config: Rc::new(config),
        });
        Ok(())
    }

    fn new_http_filter(&mut self, context_id: u32) -> Option<Box<dyn HttpFilter>> {
        Some(Box::new(Filter {
            gate: self.gate.clone()?,
            context_id,
            waiting: None,
        }))
    }

    fn on_tick(&mut self) {
        let Some(gate) = &self.gate else {
            return;
        };
        gate.wake(None);
        let Ok(mut worker) = gate.worker.try_borrow_mut() else {
            return;
        };
        let now_ms = now_millis();
        if now_ms
            < worker
                .last_refresh_check_ms
                .saturating_add(REFRESH_CHECK_MILLIS)
        {
            return;
        }
        worker.last_refresh_check_ms = now_ms;
        for (index, source) in gate.config.sources.iter().enumerate() {
            let busy = worker.root_fetches.values().any(|&s| s == index);
            let Some(remote) = worker.remotes.get_mut(index) else {
                continue;
            };
            remote.sync(&mut HostStore, source);
            if busy || !remote.refresh_due(source, now_ms) {
                continue;
            }
            if let Ok(LeaseOutcome::Acquired) =
                remote::acquire(&mut HostStore, source, now_ms, Why::Refresh)
            {
                match start_fetch(source) {
                    Ok(token) => {
                        worker.root_fetches.insert(token, index);
                    }
                    Err(status) => {
                        LOG.warn(format_args!(
                            "cannot call cluster {:?}: {status}",
                            source.cluster
                        ));
                        worker.complete_fetch(
                            index,
                            source,
                            &HttpCallReply::default(),
                            &gate.metrics,
                        );
                    }
                }
            }
        }
        worker.note_key_changes();
    }

    fn on_http_call_reply(&mut self, token: u32, reply: HttpCallReply) {
        let Some(gate) = &self.gate else {
            return;
        };
        let index = {
            let Ok(mut worker) = gate.worker.try_borrow_mut() else {
                return;
            };
            let Some(index) = worker.root_fetches.remove(&token) else {
                return;
            };
            if let Some(source) = gate.config.sources.get(index) {
                worker.complete_fetch(index, source, &reply, &gate.metrics);
            }
            index
        };
        gate.wake(Some(index));
    }
}

/// The per-request filter.
struct Filter {
    gate: Gate,
    context_id: u32,
    /// The JWKS fetch this request made and waits for: callout token and source.
    waiting: Option<(u32, usize)>,
}

impl Filter {
    fn act(&mut self, handled: Handled, resume: bool) -> Action {
        match handled {
            Handled::Continue => {
                if resume {
                    if let Err(status) = host::continue_stream(false) {
                        LOG.error(format_args!("cannot resume the request: {status}"));
                    }
                }
                Action::Continue
            }
            Handled::Answered | Handled::Parked => Action::Pause,
            Handled::Fetching(token, source) => {
                self.waiting = Some((token, source));
                Action::Pause
            }
        }
    }
}

impl HttpFilter for Filter {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let handled = self.gate.handle(self.context_id, true, None);
        self.act(handled, false)
    }

    fn on_http_call_reply(&mut self, token: u32, reply: HttpCallReply) {
        let Some((expected, index)) = self.waiting else {
            return;
        };
        if token != expected {
            return;
        }
        self.waiting = None;
        if let (Some(source), Ok(mut worker)) = (
            self.gate.config.sources.get(index),
            self.gate.worker.try_borrow_mut(),
        ) {
            worker.complete_fetch(index, source, &reply, &self.gate.metrics);
        }
        // Waiting again is possible: another source (or, once, an unknown kid in freshly
        // fetched keys) needs a fetch. Each source's lease and refetch limit bound it.
        let handled = self.gate.handle(self.context_id, true, None);
        self.act(handled, true);
        // Then the other requests of this worker that waited for these keys.
        let others_wait = self
            .gate
            .worker
            .try_borrow()
            .is_ok_and(|w| w.waiters.iter().any(|x| x.source == index));
        if others_wait {
            self.gate.wake(Some(index));
            set_effective_context(self.context_id);
        }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        if let Ok(mut worker) = self.gate.worker.try_borrow_mut() {
            worker.waiters.retain(|w| w.context_id != self.context_id);
        }
    }
}
