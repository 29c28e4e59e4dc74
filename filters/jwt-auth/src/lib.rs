//! meshward jwt-auth: JWT authentication and claim-based authorization for Envoy.
//!
//! This file is the Proxy-Wasm adapter only: it reads the request, hands it to the pure
//! [`verdict`] with the worker's cache and keys, and applies the result. Remote key sets
//! are fetched by whichever context needs them first (the root on its tick, or a request
//! that meets no keys or an unknown `kid`) while holding the proxy-wide lease of
//! [`remote`].
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
#![warn(missing_docs)]

pub mod base64url;
pub mod cache;
pub mod claims;
pub mod config;
pub mod deny;
pub mod der;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod foreign;
pub mod forward;
pub mod jwks;
pub mod metrics;
pub mod policy;
pub mod remote;
pub mod sources;
pub mod token;
pub mod verdict;
pub mod verify;

use crate::cache::TokenCache;
use crate::config::Config;
use crate::deny::Denial;
use crate::forward::Edit;
use crate::metrics::Metrics;
use crate::remote::{FetchResult, LeaseOutcome, Remote, RemoteSource, Why};
use crate::verdict::{Env, KeyLookup, KeyStore, Request, Tally, Verdict};
use crate::verify::{HostVerifier, NoHost};
use meshward_shared::host::{self, Map};
use meshward_shared::shared_data::HostStore;
use meshward_shared::{log, reply, time, Action, HttpCallReply, HttpFilter, RootFilter, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The module's entry point (`_initialize`), serving `Root` for every root id.
mod entry {
    meshward_shared::register_filters!("jwt-auth" => || Box::new(super::Root::default()));
}

/// How often the root checks remote key sets for refresh, in milliseconds.
const TICK_MILLIS: u32 = 1000;

/// Whether the host offers `verify_signature`, learned on first use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum HostCrypto {
    #[default]
    Unknown,
    Present,
    Absent,
}

/// What one worker keeps between requests.
#[derive(Default)]
struct Worker {
    cache: TokenCache,
    remotes: Vec<Remote>,
    /// When each remote's keys were fetched, as last seen: a change empties the cache.
    seen: Vec<Option<u64>>,
    host_crypto: HostCrypto,
    /// The root's fetches in flight: callout token → source.
    root_fetches: HashMap<u32, usize>,
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
        let now_ms = now_millis();
        let answer = reply.status().map(|status| (status, reply.body.as_slice()));
        match remote.fetched(&mut HostStore, source, now_ms, answer) {
            FetchResult::Published { skipped } => {
                metrics.jwks_fetch_ok.inc();
                if skipped > 0 {
                    log::info(&format!(
                        "jwt-auth: {}{}: skipped {skipped} keys that cannot verify signatures",
                        source.authority, source.path
                    ));
                }
            }
            FetchResult::Failed(why) => {
                metrics.jwks_fetch_failed.inc();
                log::warn(&format!(
                    "jwt-auth: {}{}: {why}; keeping the last good keys",
                    source.authority, source.path
                ));
            }
        }
        self.note_key_changes();
    }
}

fn now_millis() -> u64 {
    time::now().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

/// Remote keys through this worker's view and Envoy's shared data.
struct RemoteKeys<'a> {
    remotes: &'a mut [Remote],
    sources: &'a [RemoteSource],
    now_ms: u64,
}

impl KeyStore for RemoteKeys<'_> {
    fn lookup(&mut self, source: usize, kid: Option<&str>) -> KeyLookup {
        match (self.remotes.get_mut(source), self.sources.get(source)) {
            (Some(remote), Some(config)) => remote.lookup(&mut HostStore, config, kid, self.now_ms),
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
                log::info(
                    "jwt-auth: the host has no verify_signature; verifying signatures in Wasm",
                );
                None
            }
            // A key the host would not import: check it in Rust instead.
            Err(_) => None,
        }
    }
}

/// The root context: one per plugin configuration per worker.
#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    worker: Rc<RefCell<Worker>>,
    metrics: Option<Rc<Metrics>>,
}

impl RootFilter for Root {
    fn name(&self) -> &'static str {
        "jwt-auth"
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), String> {
        let config = config::parse(bytes).map_err(|e| e.to_string())?;
        if !config.sources.is_empty() {
            if let Err(status) = host::set_tick_period_millis(TICK_MILLIS) {
                log::warn(&format!(
                    "jwt-auth: no tick ({status}); remote keys refresh only on demand"
                ));
            }
        }
        self.worker = Rc::new(RefCell::new(Worker::new(&config)));
        self.metrics = Some(Rc::new(Metrics::define()));
        self.config = Some(Rc::new(config));
        Ok(())
    }

    fn new_http_filter(&mut self, _context_id: u32) -> Option<Box<dyn HttpFilter>> {
        Some(Box::new(Filter {
            config: Rc::clone(self.config.as_ref()?),
            worker: Rc::clone(&self.worker),
            metrics: Rc::clone(self.metrics.as_ref()?),
            waiting: None,
        }))
    }

    fn on_tick(&mut self) {
        let (Some(config), Ok(mut worker)) = (&self.config, self.worker.try_borrow_mut()) else {
            return;
        };
        let now_ms = now_millis();
        for (index, source) in config.sources.iter().enumerate() {
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
                        let failed = HttpCallReply::default();
                        log::warn(&format!(
                            "jwt-auth: cannot call cluster {:?}: {status}",
                            source.cluster
                        ));
                        if let Some(metrics) = &self.metrics {
                            worker.complete_fetch(index, source, &failed, metrics);
                        }
                    }
                }
            }
        }
        worker.note_key_changes();
    }

    fn on_http_call_reply(&mut self, token: u32, reply: HttpCallReply) {
        let (Some(config), Some(metrics), Ok(mut worker)) =
            (&self.config, &self.metrics, self.worker.try_borrow_mut())
        else {
            return;
        };
        let Some(index) = worker.root_fetches.remove(&token) else {
            return;
        };
        if let Some(source) = config.sources.get(index) {
            worker.complete_fetch(index, source, &reply, metrics);
        }
    }
}

/// The per-request filter.
struct Filter {
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
    metrics: Rc<Metrics>,
    /// The JWKS fetch this request waits for: callout token and source.
    waiting: Option<(u32, usize)>,
}

/// What the request-path decision led to.
enum Outcome {
    Continue,
    Answered,
    Waiting,
}

impl Filter {
    /// Decides and acts; may start a fetch and wait for it.
    fn run(&mut self) -> Outcome {
        let headers = host::headers(Map::RequestHeaders).unwrap_or_default();
        let request = Request::new(&headers);
        let now = time::now().map_or(0, |d| d.as_secs());
        // A fetch that cannot start is recorded as failed and the decision made again:
        // the second time the lease is backing off and the keys read as unavailable.
        for _ in 0..2 {
            let verdict = match self.decide(&request, now) {
                Some(verdict) => verdict,
                None => {
                    return self.deny(&Denial::new(
                        deny::Reason::Malformed,
                        "the request cannot be checked now",
                    ))
                }
            };
            match verdict {
                Verdict::Allow(edits) => return self.allow(&edits),
                Verdict::Deny(denial) => return self.deny(&denial),
                Verdict::Fetch(index) => {
                    let Some(source) = self.config.sources.get(index) else {
                        break;
                    };
                    match start_fetch(source) {
                        Ok(token) => {
                            self.waiting = Some((token, index));
                            return Outcome::Waiting;
                        }
                        Err(status) => {
                            log::warn(&format!(
                                "jwt-auth: cannot call cluster {:?}: {status}",
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
            deny::Reason::UnknownKid,
            "the issuer's signing keys are not available",
        ))
    }

    fn decide(&self, request: &Request<'_>, now: u64) -> Option<Verdict> {
        let mut worker = self.worker.try_borrow_mut().ok()?;
        let worker = &mut *worker;
        let mut tally = Tally::default();
        let mut keys = RemoteKeys {
            remotes: &mut worker.remotes,
            sources: &self.config.sources,
            now_ms: now_millis(),
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
            keys: &mut keys,
            host,
            now,
            tally: &mut tally,
        };
        let verdict = verdict::decide(&mut env, request);
        self.metrics.record(&tally);
        worker.note_key_changes();
        Some(verdict)
    }

    fn allow(&self, edits: &[Edit]) -> Outcome {
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
                    host::set_header(Map::RequestHeaders, "cookie", value.as_bytes())
                }
                Edit::SetCookie(None) => host::remove_header(Map::RequestHeaders, "cookie"),
            };
            // A header that cannot be removed or set could let a forged claim or the token
            // through: refuse rather than forward a request we could not sanitise.
            if let Err(status) = applied {
                log::error(&format!(
                    "jwt-auth: cannot edit the request headers: {status}"
                ));
                // Nothing more can be done if even the local reply fails.
                let _ = reply::send_json_error(
                    500,
                    "jwt_internal_error",
                    "the request could not be prepared",
                    &[],
                );
                return Outcome::Answered;
            }
        }
        self.metrics.allowed();
        Outcome::Continue
    }

    fn deny(&self, denial: &Denial) -> Outcome {
        self.metrics.denied(denial.reason);
        let challenge = denial.challenge(&self.config.realm);
        if let Err(status) = reply::send_json_error(
            denial.status(),
            &denial.body_code(),
            &denial.description,
            &[("www-authenticate", challenge.as_str())],
        ) {
            log::error(&format!(
                "jwt-auth: cannot send the {} reply: {status}",
                denial.status()
            ));
        }
        Outcome::Answered
    }
}

impl HttpFilter for Filter {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        match self.run() {
            Outcome::Continue => Action::Continue,
            Outcome::Answered | Outcome::Waiting => Action::Pause,
        }
    }

    fn on_http_call_reply(&mut self, token: u32, reply: HttpCallReply) {
        let Some((expected, index)) = self.waiting else {
            return;
        };
        if token != expected {
            return;
        }
        self.waiting = None;
        if let (Some(source), Ok(mut worker)) =
            (self.config.sources.get(index), self.worker.try_borrow_mut())
        {
            worker.complete_fetch(index, source, &reply, &self.metrics);
        }
        match self.run() {
            Outcome::Continue => {
                if let Err(status) = host::continue_stream(false) {
                    log::error(&format!("jwt-auth: cannot resume the request: {status}"));
                }
            }
            // Waiting again: another source (or, once, an unknown kid in freshly fetched
            // keys) needs a fetch. Each source's lease and refetch limit bound the rounds.
            Outcome::Answered | Outcome::Waiting => {}
        }
    }
}
