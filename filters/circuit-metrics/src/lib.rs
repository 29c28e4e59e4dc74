//! meshward circuit-metrics: retry, failure and latency metrics per upstream cluster and
//! route, and a resilience4j-style circuit breaker per cluster (or route) whose state all
//! workers share, watched through its metrics and, once enforcement is on, acted on.
//!
//! This file is the entry point and the Proxy-Wasm adapter only. When a request arrives it
//! asks the request's breaker for permission ([`circuits::acquire`]) and sends the 503 if
//! an enforcing breaker refuses; when the request ends it reads what Envoy reports about it,
//! classifies it ([`outcome::classify`]), counts it ([`metrics`]) and tells the breaker
//! ([`circuits::record`]).

pub mod breaker;
pub mod circuits;
pub mod config;
#[cfg(test)]
mod fuzz;
pub mod labels;
pub mod metrics;
pub mod outcome;
pub mod record;
pub mod window;

use breaker::{Permission, State, Transition};
use circuits::Circuit;
use config::Config;
use labels::{Admission, Policy};
use meshward_shared::config::ConfigError;
use meshward_shared::host::{self, Map};
use meshward_shared::metrics::Counter;
use meshward_shared::shared_data::{self, HostStore};
use meshward_shared::{log::Log, reply, time, Action, HttpFilter, RootFilter};
use outcome::{Facts, Verdict};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use window::Totals;

/// Where this filter logs: every message starts with `circuit-metrics: `.
const LOG: Log = Log::new("circuit-metrics");

#[cfg(feature = "entry-point")]
meshward_shared::register_filters! {
    exports: [request_headers, log],
    "circuit-metrics" => || Box::new(Root::default()),
}

/// The response header that names the circuit a refused request met.
pub const CIRCUIT_HEADER: &str = "x-meshward-circuit-open";
/// Names remembered per worker, per kind, with their label. Beyond this, names not yet
/// seen are looked up in shared data on every request.
const LABEL_CACHE: usize = 4096;

/// The plugin: the configuration, and what this worker remembers between requests.
struct Plugin {
    config: Config,
    worker: RefCell<Worker>,
}

/// The root context: parses the configuration and makes a stream filter per request.
#[derive(Default)]
pub struct Root {
    plugin: Option<Rc<Plugin>>,
}

impl RootFilter for Root {
    fn name(&self) -> &'static str {
        "circuit-metrics"
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let config = config::parse(bytes)?;
        metrics::declare_families();
        LOG.info(format_args!("configured: {}", config.summary()));
        self.plugin = Some(Rc::new(Plugin {
            config,
            worker: RefCell::new(Worker::new()),
        }));
        Ok(())
    }

    fn new_http_filter(&mut self, _context_id: u32) -> Option<Box<dyn HttpFilter>> {
        Some(Box::new(Stream {
            plugin: Rc::clone(self.plugin.as_ref()?),
            started: None,
            ticket: None,
        }))
    }
}

/// What a request got from its breaker when it arrived.
struct Ticket {
    circuit: Circuit,
    /// The generation it was permitted in; `None` if the breaker could not be asked.
    generation: Option<u32>,
    /// It was let through as a HALF_OPEN probe.
    probe: bool,
    /// The breaker refused it (and said so, or would have): its outcome is not counted.
    refused: bool,
}

/// One request.
struct Stream {
    plugin: Rc<Plugin>,
    /// When it arrived, for a duration Envoy does not report.
    started: Option<Duration>,
    ticket: Option<Ticket>,
}

impl HttpFilter for Stream {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        self.started = time::now();
        let config = &self.plugin.config;
        if config.breakers.is_empty() {
            return Action::Continue;
        }
        let Some(now) = self.started else {
            return Action::Continue;
        };
        // The route name matters only to a breaker per route: else it is not read.
        let cluster = xds("cluster_name");
        let Some(first) = config.breaker_for(&cluster) else {
            return Action::Continue;
        };
        let route = if first.per_route {
            xds("route_name")
        } else {
            String::new()
        };
        let Some((circuit, entry)) = Circuit::find(config, &cluster, &route) else {
            return Action::Continue;
        };
        let acquired = circuits::acquire(&mut HostStore, &circuit.key, entry, now);
        // The worker state is only borrowed here and in `on_log`, never across a callback,
        // so it is always free; if it were not, the request goes on unmeasured.
        let Ok(mut worker) = self.plugin.worker.try_borrow_mut() else {
            return Action::Continue;
        };
        let Ok(acquired) = acquired.inspect_err(|e| worker.store_failed(e)) else {
            self.ticket = Some(Ticket {
                circuit,
                generation: None,
                probe: false,
                refused: false,
            });
            return Action::Continue;
        };
        let shown = worker.breaker(config, &circuit);
        shown.show(acquired.state, acquired.transition, None);
        let (generation, probe, refusal) = match acquired.permission {
            Permission::Permitted { generation } => (Some(generation), false, None),
            Permission::Probe { generation } => (Some(generation), true, None),
            Permission::Refused { retry_after } => (None, false, Some(retry_after)),
        };
        let enforced = refusal.is_some() && entry.enforce;
        if refusal.is_some() {
            let counter = if enforced {
                shown.metrics.stats.not_permitted
            } else {
                shown.metrics.stats.not_permitted_dry_run
            };
            counter.inc();
        }
        drop(worker);
        if let (Some(retry_after), true) = (refusal, enforced) {
            refuse(&circuit, acquired.state, retry_after);
        }
        self.ticket = Some(Ticket {
            circuit,
            generation,
            probe,
            refused: refusal.is_some(),
        });
        if enforced {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_log(&mut self) {
        let plugin = Rc::clone(&self.plugin);
        let config = &plugin.config;
        let now = time::now();
        let facts = self.facts(now);
        let outcome = outcome::classify(&facts, &config.failure_statuses);
        let (cluster, route) = target();
        let Ok(mut worker) = plugin.worker.try_borrow_mut() else {
            return;
        };
        worker.traffic(config, &cluster, &route).count(&outcome);

        let ticket = self.ticket.take();
        if ticket.as_ref().is_some_and(|t| t.refused) {
            return;
        }
        let Some(now) = now else {
            return;
        };
        let stayed = ticket
            .as_ref()
            .is_some_and(|t| t.circuit.serves(&cluster, &route));
        let (circuit, generation, probe) = match ticket {
            Some(ticket) if stayed => (ticket.circuit, ticket.generation, ticket.probe),
            // A filter after this one sent the request elsewhere (it cleared the route
            // cache): the outcome is the new upstream's, of unknown generation, and a probe
            // taken from the first breaker is given back.
            ticket => {
                if let Some(Ticket {
                    circuit,
                    generation: Some(generation),
                    probe: true,
                    ..
                }) = ticket
                {
                    worker.release(config, &circuit, now, generation);
                }
                match Circuit::find(config, &cluster, &route) {
                    Some((circuit, _)) => (circuit, None, false),
                    None => return,
                }
            }
        };
        let Some(entry) = config.breaker_for(&circuit.cluster) else {
            return;
        };
        let failed = match outcome.verdict {
            Verdict::Success => false,
            Verdict::Failure => true,
            Verdict::Ignored => {
                if let (true, Some(generation)) = (probe, generation) {
                    worker.release(config, &circuit, now, generation);
                }
                return;
            }
        };
        let call = entry.settings.call(failed, outcome.duration);
        match circuits::record(&mut HostStore, &circuit.key, entry, now, generation, call) {
            Ok(recorded) => worker.breaker(config, &circuit).show(
                recorded.state,
                recorded.transition,
                Some(recorded.totals),
            ),
            Err(e) => worker.store_failed(&e),
        }
    }
}

impl Stream {
    /// What Envoy reports about the finished request. The attempt count falls back to the
    /// `x-envoy-attempt-count` response header, the duration to this filter's own clock.
    ///
    /// The status comes from the response's `:status` (one header read, about half a
    /// property read), and `response.code` only when Envoy has no response headers to show.
    fn facts(&self, now: Option<Duration>) -> Facts {
        let attempts = host::property_i64(&["upstream", "request_attempt_count"])
            .and_then(|n| u32::try_from(n).ok())
            .or_else(|| {
                host::header_str(Map::ResponseHeaders, "x-envoy-attempt-count")?
                    .trim()
                    .parse()
                    .ok()
            });
        let duration = host::property_i64(&["request", "duration"])
            .and_then(|n| u64::try_from(n).ok())
            .map(Duration::from_nanos)
            .or_else(|| Some(now?.saturating_sub(self.started?)));
        let status = match host::header_str(Map::ResponseHeaders, ":status") {
            Some(status) => status.trim().parse().ok(),
            None => host::property_i64(&["response", "code"]).and_then(|n| u16::try_from(n).ok()),
        };
        Facts {
            status,
            // The flags are a bit field; a negative int64 would be the same bits.
            flags: host::property_i64(&["response", "flags"]).map_or(0, |n| n as u64),
            attempts,
            from_upstream: host::property_str(&["response", "code_details"])
                .map(|details| details == "via_upstream"),
            duration,
        }
    }
}

/// The request's upstream cluster and route name (Envoy's `xds.cluster_name` and
/// `xds.route_name`), empty when Envoy has none. Both are known when the request arrives:
/// the route has been chosen before the first HTTP filter runs.
fn target() -> (String, String) {
    (xds("cluster_name"), xds("route_name"))
}

/// One of Envoy's `xds.*` properties, empty when Envoy has none.
fn xds(name: &str) -> String {
    host::property_str(&["xds", name]).unwrap_or_default()
}

/// Sends the fail-fast 503. If the host will not send it, the request goes on: nothing
/// else can stop it, and the refusal was already counted.
fn refuse(circuit: &Circuit, state: State, retry_after: Option<Duration>) {
    let why = match state {
        State::HalfOpen => "is half open and its probes are taken",
        State::ForcedOpen => "is forced open",
        _ => "is open",
    };
    let message = format!(
        "the circuit {} {why}; the request was not sent",
        circuit.name
    );
    let wait = retry_after.map(|wait| {
        time::whole_seconds_until(Duration::ZERO, wait)
            .max(1)
            .to_string()
    });
    let mut headers = vec![(CIRCUIT_HEADER, circuit.name.as_str())];
    if let Some(wait) = &wait {
        headers.push(("retry-after", wait.as_str()));
    }
    if let Err(status) = reply::send_json_error(503, "circuit_open", &message, &headers) {
        LOG.error(format_args!("could not send the refusal: {status}"));
    }
}

/// What one worker remembers: the label each name got, the metric handles, and the last
/// values it set on each breaker's gauges.
struct Worker {
    cluster_labels: HashMap<String, String>,
    route_labels: HashMap<String, String>,
    traffic: HashMap<(String, String), metrics::Traffic>,
    breakers: HashMap<String, Shown>,
    store_failures: Counter,
}

/// A breaker's metrics, and the state this worker last showed.
///
/// The gauges are the proxy's, set by whichever worker saw the breaker last: a worker
/// cannot know what another one set since. So when a request ends, its worker sets every
/// gauge from the state it has just written; only the state seen when a request arrives is
/// set when it differs from what this worker last showed (a transition's own worker sets
/// it, and the next request to end corrects a stale value).
#[derive(Default)]
struct Shown {
    /// The circuit's name, for the log.
    name: String,
    metrics: metrics::Breaker,
    /// Gauges are set only for breakers whose labels are their own: several breakers
    /// labelled `other` would overwrite each other.
    gauges: bool,
    state: Option<State>,
}

impl Shown {
    /// Shows the breaker's state, a transition, and what it has counted (when a request
    /// ended).
    fn show(&mut self, state: State, transition: Option<Transition>, totals: Option<Totals>) {
        if let Some(transition) = transition {
            self.metrics.transitioned(transition.to);
            LOG.info(format_args!(
                "circuit {} went from {} to {}",
                self.name,
                transition.from.name(),
                transition.to.name()
            ));
        }
        if !self.gauges {
            return;
        }
        let stats = &self.metrics.stats;
        if totals.is_some() || self.state != Some(state) {
            stats.breaker_state.set(state.gauge());
            self.state = Some(state);
        }
        if let Some(totals) = totals {
            // Whole percents: the cast truncates, and the rates are within 0..=100.
            stats.breaker_failure_rate.set(totals.failure_rate() as u64);
            stats
                .breaker_slow_call_rate
                .set(totals.slow_call_rate() as u64);
            stats.breaker_calls.set(u64::from(totals.calls));
        }
    }
}

/// Which kind of name a label is for.
#[derive(Clone, Copy)]
enum Kind {
    Cluster,
    Route,
}

impl Worker {
    fn new() -> Worker {
        Worker {
            cluster_labels: HashMap::new(),
            route_labels: HashMap::new(),
            traffic: HashMap::new(),
            breakers: HashMap::new(),
            store_failures: metrics::store_failures(),
        }
    }

    fn store_failed(&self, error: &shared_data::UpdateError) {
        self.store_failures.inc();
        LOG.warn(format_args!("{error}"));
    }

    /// Gives back a probe permit of `circuit`'s breaker.
    fn release(&self, config: &Config, circuit: &Circuit, now: Duration, generation: u32) {
        let Some(entry) = config.breaker_for(&circuit.cluster) else {
            return;
        };
        if let Err(e) = circuits::release(&mut HostStore, &circuit.key, entry, now, generation) {
            self.store_failed(&e);
        }
    }

    /// The label of `name`: its own, or `other` once the cap is reached.
    fn label(&mut self, kind: Kind, policy: &Policy, name: &str) -> String {
        let cache = match kind {
            Kind::Cluster => &self.cluster_labels,
            Kind::Route => &self.route_labels,
        };
        if let Some(label) = cache.get(name) {
            return label.clone();
        }
        let (label, known) = match policy.admission(name) {
            Admission::Own(label) => (label, true),
            Admission::Other => (labels::OTHER.to_string(), true),
            Admission::AskRegistry => {
                let key = match kind {
                    Kind::Cluster => "meshward_circuit/labels/clusters",
                    Kind::Route => "meshward_circuit/labels/routes",
                };
                let admitted =
                    shared_data::update(&mut HostStore, key, circuits::CAS_ATTEMPTS, |list| {
                        labels::admit(list, name, policy.max)
                    });
                match admitted {
                    Ok(true) => (labels::sanitize(name), true),
                    Ok(false) => (labels::OTHER.to_string(), true),
                    Err(e) => {
                        self.store_failed(&e);
                        (labels::OTHER.to_string(), false)
                    }
                }
            }
        };
        let cache = match kind {
            Kind::Cluster => &mut self.cluster_labels,
            Kind::Route => &mut self.route_labels,
        };
        if known && cache.len() < LABEL_CACHE {
            cache.insert(name.to_string(), label.clone());
        }
        label
    }

    /// The (cluster, route) stats of a request to `cluster` on `route`.
    fn traffic(&mut self, config: &Config, cluster: &str, route: &str) -> metrics::Traffic {
        let cluster = self.label(Kind::Cluster, &config.clusters, cluster);
        let route = self.label(Kind::Route, &config.routes, route);
        *self
            .traffic
            .entry((cluster, route))
            .or_insert_with_key(|(c, r)| metrics::Traffic::define(c, r))
    }

    /// The metrics of `circuit`'s breaker.
    fn breaker(&mut self, config: &Config, circuit: &Circuit) -> &mut Shown {
        let fresh = (!self.breakers.contains_key(&circuit.key))
            .then(|| self.define_breaker(config, circuit));
        self.breakers
            .entry(circuit.key.clone())
            .or_insert_with(|| fresh.unwrap_or_default())
    }

    fn define_breaker(&mut self, config: &Config, circuit: &Circuit) -> Shown {
        let cluster = self.label(Kind::Cluster, &config.clusters, &circuit.cluster);
        let route = circuit
            .route
            .as_ref()
            .map(|route| self.label(Kind::Route, &config.routes, route));
        let mut tags = vec![("cluster", cluster.as_str())];
        if let Some(route) = &route {
            tags.push(("route", route.as_str()));
        }
        Shown {
            name: circuit.name.clone(),
            metrics: metrics::Breaker::define(&tags),
            gauges: cluster != labels::OTHER && route.as_deref() != Some(labels::OTHER),
            state: None,
        }
    }
}
