//! meshward region-router: sends each request to one of several regions serving the same
//! service, by the client's stated preference, its latency needs and a sticky weighted
//! split, and moves traffic off a failing region as soon as its outcomes say so.
//!
//! This file is the entry point and the Proxy-Wasm adapter only: it reads the request's
//! inputs and the regions' health, asks [`decide::decide`] where the request goes, sets the
//! routing header and refreshes the route, and feeds each outcome to the health records.

pub mod config;
pub mod decide;
#[cfg(test)]
mod fuzz;
pub mod health;
pub mod health_store;
pub mod metrics;
pub mod outcome;
pub mod request;
pub mod sticky;

use config::{Config, StickyKey};
use decide::{Decision, Inputs};
use health::{Effect, Transition};
use meshward_shared::config::ConfigError;
use meshward_shared::host::{self, Map, Status};
use meshward_shared::shared_data::HostStore;
use meshward_shared::{log::Log, time, Action, HttpFilter, RootFilter};
use metrics::Metrics;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// Where this filter logs: every message starts with `region-router: `.
const LOG: Log = Log::new("region-router");

#[cfg(feature = "entry-point")]
meshward_shared::register_filters! {
    exports: [request_headers, response_headers, log, tick],
    "region-router" => || Box::new(Root::default()),
}

/// How often each VM refreshes the state gauges (a region turns from unhealthy to probing
/// by the clock alone, with no request to notice it).
const GAUGE_REFRESH_MILLIS: u32 = 1000;

/// Envoy's foreign function that makes the router pick the route again after the routing
/// header changed.
const CLEAR_ROUTE_CACHE: &str = "clear_route_cache";

/// The plugin: holds the accepted configuration and makes a stream filter per request.
#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
}

impl Root {
    fn refresh_gauges(&self) {
        if let Some(config) = &self.config {
            let now = time::now().unwrap_or_default();
            let (states, _) = health_store::states(&mut HostStore, config, now);
            self.metrics.set_states(&states);
        }
    }
}

/// The proxy's locality region: `xds.node` in Envoy 1.40 (the node's fields moved there),
/// `node` in older proxies.
fn node_region() -> Option<String> {
    host::property_str(&["xds", "node", "locality", "region"])
        .or_else(|| host::property_str(&["node", "locality", "region"]))
        .filter(|region| !region.is_empty())
}

impl RootFilter for Root {
    fn name(&self) -> &'static str {
        "region-router"
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let config = Config::parse(bytes, node_region().as_deref())?;
        if let Err(error) = health_store::create_missing(&mut HostStore, &config) {
            // Not fatal: the first outcome creates the record instead.
            LOG.warn(format_args!("cannot create health records: {error}"));
        }
        LOG.info(format_args!("configured: {}", config.summary()));
        self.metrics = Rc::new(Metrics::define(&config));
        self.config = Some(Rc::new(config));
        self.refresh_gauges();
        if let Err(status) = host::set_tick_period_millis(GAUGE_REFRESH_MILLIS) {
            LOG.debug(format_args!(
                "no ticks ({status}); gauges update on transitions only"
            ));
        }
        Ok(())
    }

    fn new_http_filter(&mut self, context_id: u32) -> Option<Box<dyn HttpFilter>> {
        Some(Box::new(Stream {
            config: Rc::clone(self.config.as_ref()?),
            metrics: Rc::clone(&self.metrics),
            context_id,
            routed: None,
        }))
    }

    fn on_tick(&mut self) {
        self.refresh_gauges();
    }
}

/// A request the filter routed: where, why and when.
#[derive(Clone, Copy, Debug)]
struct Routed {
    decision: Decision,
    started: Duration,
}

/// One request's filter.
struct Stream {
    config: Rc<Config>,
    metrics: Rc<Metrics>,
    context_id: u32,
    routed: Option<Routed>,
}

impl Stream {
    /// The request's inputs to the decision, read from its headers.
    fn inputs(&self) -> Inputs {
        let config = &self.config;
        let preference = host::header(Map::RequestHeaders, &config.preference_header)
            .map(|value| request::parse_preference(config, &value))
            .unwrap_or_default();
        if preference.iter().any(Option::is_none) {
            self.metrics.filter.preference_ignored.inc();
        }
        let latency_sensitive = host::header(Map::RequestHeaders, &config.latency_header)
            .is_some_and(|value| request::parse_flag(&value));
        let key = self
            .session_key()
            .or_else(|| host::header(Map::RequestHeaders, "x-request-id"))
            // No key at all: the context id spreads requests, without stickiness.
            .unwrap_or_else(|| self.context_id.to_le_bytes().to_vec());
        Inputs {
            preference,
            latency_sensitive,
            key_hash: sticky::hash_key(&key),
        }
    }

    /// The configured session key, if the request carries it.
    fn session_key(&self) -> Option<Vec<u8>> {
        match &self.config.sticky {
            StickyKey::Header(name) => {
                host::header(Map::RequestHeaders, name).filter(|v| !v.is_empty())
            }
            StickyKey::Cookie(name) => {
                let headers = host::headers(Map::RequestHeaders).ok()?;
                let cookies: Vec<&[u8]> = headers
                    .iter()
                    .filter(|(k, _)| k == "cookie")
                    .map(|(_, v)| v.as_slice())
                    .collect();
                request::cookie_value(&cookies, name).map(<[u8]>::to_vec)
            }
            StickyKey::RequestId => None,
        }
    }

    /// Replaces whatever routing header the client sent with the decision's, and makes
    /// the router pick the route again. `false` if the proxy refused.
    fn apply(&self, decision: Decision) -> bool {
        let config = &self.config;
        let name = config.route_header.as_str();
        if host::header(Map::RequestHeaders, name).is_some() {
            self.metrics.filter.route_header_stripped.inc();
            if host::remove_header(Map::RequestHeaders, name).is_err() {
                return false;
            }
        }
        let Some(value) = config.route_value_of(decision.region) else {
            return false;
        };
        if host::set_header(Map::RequestHeaders, name, value.as_bytes()).is_err() {
            return false;
        }
        match host::call_foreign_function(CLEAR_ROUTE_CACHE, &[]) {
            // Proxies without the function (Envoy before 1.33) re-pick the route whenever
            // a Wasm filter changes a request header.
            Ok(_) | Err(Status::NotFound) => true,
            Err(_) => false,
        }
    }
}

impl HttpFilter for Stream {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let started = time::now().unwrap_or_default();
        // The decision reads four request headers or more (preference, latency, session
        // key, the routing header): one pairs call serves them all, as every `host::header`
        // below reads the snapshot once it is taken. If the host cannot give the map, each
        // read asks for itself, so the result can be ignored.
        let _ = host::snapshot(Map::RequestHeaders);
        let inputs = self.inputs();
        // Each region's record is read the first time the decision asks for its state, and
        // only then: a request whose first choice is healthy reads one record.
        let config = &self.config;
        let read: RefCell<Vec<Option<health::State>>> =
            RefCell::new(vec![None; config.regions.len()]);
        let error: Cell<Option<Status>> = Cell::new(None);
        let state_of = |index: usize| {
            if let Some(Some(known)) = read.borrow().get(index) {
                return *known;
            }
            let (state, failed) = health_store::state(&mut HostStore, config, index, started);
            if error.get().is_none() {
                error.set(failed);
            }
            if let Some(slot) = read.borrow_mut().get_mut(index) {
                *slot = Some(state);
            }
            state
        };
        let decision = decide::decide_with(config, state_of, &inputs);
        if let Some(status) = error.get() {
            self.metrics.filter.health_errors.inc();
            LOG.debug(format_args!(
                "health unreadable ({status}); counted healthy"
            ));
        }
        if self.apply(decision) {
            self.metrics.decided(decision.region, decision.reason);
            self.routed = Some(Routed { decision, started });
        } else {
            // Whatever the client sent is gone or was never there; the route table's
            // default route serves the request, and its outcome is nobody's health.
            self.metrics.filter.route_errors.inc();
            // Best effort: a header the proxy refused to set may also refuse removal.
            let _ = host::remove_header(Map::RequestHeaders, &self.config.route_header);
        }
        Action::Continue
    }

    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        if let (Some(name), Some(routed)) = (&self.config.decision_header, self.routed) {
            let region = self
                .config
                .regions
                .get(routed.decision.region)
                .map_or("", |r| r.name.as_str());
            let value = format!("region={region}; reason={}", routed.decision.reason.name());
            if host::set_header(Map::ResponseHeaders, name, value.as_bytes()).is_err() {
                LOG.debug(format_args!("the proxy refused the decision header"));
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(routed) = self.routed else {
            return;
        };
        // A failure flag decides alone; the details and the code are read only when it
        // does not (see `outcome::classify`).
        let flags = host::property_i64(&["response", "flags"]);
        let outcome = if flags.unwrap_or(0) & outcome::flags::FAILURE != 0 {
            Some(health::Outcome::Failure)
        } else {
            let details = host::property_str(&["response", "code_details"]);
            // The status from the response's `:status` (a header read, about half a property
            // read); `response.code` only when Envoy has no response headers to show.
            let status = details
                .as_deref()
                .is_none_or(|d| d == outcome::VIA_UPSTREAM)
                .then(|| match host::header_str(Map::ResponseHeaders, ":status") {
                    Some(status) => status.trim().parse().ok(),
                    None => host::property_i64(&["response", "code"]),
                })
                .flatten();
            outcome::classify(status, flags, details.as_deref())
        };
        let Some(outcome) = outcome else {
            return;
        };
        let index = routed.decision.region;
        let stats = self.metrics.region(index);
        match outcome {
            health::Outcome::Success => stats.successes.inc(),
            health::Outcome::Failure => stats.failures.inc(),
        }
        let now = time::now().unwrap_or_default();
        match health_store::record(
            &mut HostStore,
            &self.config,
            index,
            now,
            routed.started,
            outcome,
        ) {
            Ok(Effect::Changed(transition)) => self.report(index, transition),
            Ok(_) => {}
            Err(error) => {
                self.metrics.filter.health_errors.inc();
                LOG.debug(format_args!("outcome not recorded: {error}"));
            }
        }
    }
}

impl Stream {
    /// Counts, logs and shows a change of a region's state.
    fn report(&self, index: usize, transition: Transition) {
        let stats = self.metrics.region(index);
        let name = self
            .config
            .regions
            .get(index)
            .map_or("?", |r| r.name.as_str());
        let state = match transition {
            Transition::Opened => {
                stats.failovers.inc();
                LOG.warn(format_args!(
                    "region {name} is unhealthy: traffic moves away for {:?}",
                    self.config.health.cool_down
                ));
                health::State::Unhealthy
            }
            Transition::Reopened => {
                stats.failovers.inc();
                LOG.warn(format_args!(
                    "region {name} failed a probe: unhealthy again for {:?}",
                    self.config.health.cool_down
                ));
                health::State::Unhealthy
            }
            Transition::Restored => {
                stats.restored.inc();
                LOG.info(format_args!(
                    "region {name} passed its probes and is healthy"
                ));
                health::State::Healthy
            }
        };
        stats.state.set(state.gauge_value());
    }
}
