//! meshward rate-limit: token buckets in Envoy shared data, exact across workers, bounded in
//! memory, answering 429 with `Retry-After` computed from the bucket; and global rules
//! counted by an Envoy Rate Limit Service over gRPC.
//!
//! This file is the Proxy-Wasm adapter only: it reads the request, asks [`limiter`] for a
//! verdict and [`global`] which services to call, makes the calls, and applies what comes
//! back (reply, headers, metrics, logs). The logic lives in the modules it calls, which know
//! nothing of the proxy.

pub mod answer;
pub mod bucket;
pub mod config;
#[cfg(test)]
mod fuzz;
pub mod global;
pub mod keys;
pub mod limiter;
pub mod metrics;
pub mod request;
pub mod rls;
pub mod table;

use crate::answer::Allowance;
use crate::config::{Config, Mode, Rule};
use crate::global::{Answer, Failure, Header};
use crate::limiter::{Outcome, Refusal};
use crate::request::Request;
use meshward_shared::config::ConfigError;
use meshward_shared::host::{self, Map};
use meshward_shared::pairs::Pair;
use meshward_shared::shared_data::{HostStore, UpdateError};
use meshward_shared::{log::Log, reply, time, Action, GrpcEvent, HttpFilter, RootFilter};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Where this filter logs: every message starts with `rate-limit: `.
const LOG: Log = Log::new("rate-limit");

#[cfg(feature = "entry-point")]
meshward_shared::register_filters! {
    exports: [request_headers, response_headers, grpc],
    "rate-limit" => || Box::new(Root::default()),
}

/// The root context: parses the configuration and makes a stream filter per request.
#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
}

impl RootFilter for Root {
    fn name(&self) -> &'static str {
        "rate-limit"
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let mut config = config::parse(bytes)?;
        if host::NATIVE {
            if let Some(i) = config.rules.iter().position(|r| r.global.is_some()) {
                return Err(ConfigError::new(
                    format!("rules[{i}].global"),
                    "a Rate Limit Service is called over gRPC, which the native build cannot \
                     do (Envoy's dynamic module ABI has no gRPC callouts); use the Wasm build \
                     (out/rate-limit.wasm) for global limits",
                ));
            }
        }
        config.define_metrics();
        self.config = Some(Rc::new(config));
        Ok(())
    }

    fn new_http_filter(&mut self, _context_id: u32) -> Option<Box<dyn HttpFilter>> {
        let config = Rc::clone(self.config.as_ref()?);
        Some(Box::new(Stream {
            config,
            allowances: Vec::new(),
            pending: Vec::new(),
            service_headers: Vec::new(),
            decided: false,
        }))
    }
}

/// One request.
struct Stream {
    config: Rc<Config>,
    /// Enforced rules that let the request through, for the response's headers.
    allowances: Vec<(usize, u64, Duration)>,
    /// Calls to rate limit services still waiting for their answer.
    pending: Vec<Pending>,
    /// Headers the services asked for on the response.
    service_headers: Vec<Header>,
    /// The request was refused or resumed: answers still arriving change nothing.
    decided: bool,
}

/// A call to a rule's rate limit service, in flight.
struct Pending {
    token: u32,
    rule: usize,
    /// When it was made, by the proxy's clock.
    sent_at: Option<Duration>,
}

impl HttpFilter for Stream {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let shared = Rc::clone(&self.config);
        let config = &*shared;
        let request = HostRequest::default();
        let clock = || time::now().and_then(|t| u64::try_from(t.as_nanos()).ok());
        let verdict = limiter::check(config, &request, clock, &mut HostStore);

        for result in &verdict.results {
            let Some(rule) = config.rules.get(result.rule) else {
                continue;
            };
            let m = &rule.metrics;
            if result.reclaimed {
                m.rule.reclaimed.inc();
            }
            if result.overflowed {
                m.rule.overflowed.inc();
            }
            match result.outcome {
                Outcome::Allowed {
                    remaining,
                    next_token_in,
                } => {
                    m.rule.allowed.inc();
                    if rule.mode == config::Mode::Enforce && config.response_headers.on_allowed {
                        self.allowances
                            .push((result.rule, remaining, next_token_in));
                    }
                }
                Outcome::Limited { .. } => m.rule.limited.inc(),
                Outcome::ShadowLimited { .. } => {
                    m.rule.shadow_limited.inc();
                    LOG.info(format_args!(
                        "rule {} would limit {} {} (shadow mode, let through)",
                        rule.name,
                        String::from_utf8_lossy(&request.method()),
                        String::from_utf8_lossy(&request.path()),
                    ));
                    if let Some(header) = &rule.shadow_header {
                        // A mark that cannot be added only loses the mark; the count stands.
                        let _ = host::add_header(Map::RequestHeaders, header, rule.name.as_bytes());
                    }
                }
                Outcome::Failed(failure) => {
                    let deny = limiter::fails_closed(config, rule);
                    if matches!(
                        failure,
                        limiter::Failure::Store(UpdateError::Contention { .. })
                    ) {
                        m.rule.contention_fallbacks.inc();
                    }
                    if deny {
                        m.rule.failed_closed.inc();
                    } else {
                        m.rule.failed_open.inc();
                    }
                    let why = if deny {
                        "refused (failure_mode deny)"
                    } else if rule.mode == config::Mode::Shadow {
                        "let through (shadow mode)"
                    } else {
                        "let through (failure_mode allow)"
                    };
                    LOG.warn(format_args!("rule {}: {failure}; request {why}", rule.name));
                }
            }
        }

        if let Some(refusal) = verdict.refusal {
            self.allowances.clear();
            refuse(config, refusal);
            return Action::Pause;
        }

        for call in global::plan(config, &request, &verdict) {
            let Some(service) = config.rules.get(call.rule).and_then(|r| r.global.as_ref()) else {
                continue;
            };
            let no_metadata: &[(&str, &str)] = &[];
            match host::grpc_call(
                &service.cluster,
                rls::SERVICE,
                rls::METHOD,
                no_metadata,
                &call.message,
                service.timeout_millis,
            ) {
                Ok(token) => self.pending.push(Pending {
                    token,
                    rule: call.rule,
                    sent_at: time::now(),
                }),
                Err(status) => {
                    let failed = Answer::Failed(Failure::UnknownCluster(status));
                    if self.apply_answer(call.rule, failed) {
                        return Action::Pause;
                    }
                }
            }
        }
        if self.pending.is_empty() {
            self.decided = true;
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_grpc_event(&mut self, token: u32, event: GrpcEvent) {
        if self.decided {
            return;
        }
        let Some(at) = self.pending.iter().position(|p| p.token == token) else {
            return;
        };
        let call = self.pending.swap_remove(at);
        let config = Rc::clone(&self.config);
        let Some(rule) = config.rules.get(call.rule) else {
            return;
        };
        let (Some(service), m) = (&rule.global, &rule.metrics) else {
            return;
        };
        let elapsed = call
            .sent_at
            .zip(time::now())
            .and_then(|(sent, now)| now.checked_sub(sent));
        if let Some(elapsed) = elapsed {
            m.global
                .global_latency_ms
                .record(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        }
        let answer = global::answer(&event, elapsed, service.timeout);
        if self.apply_answer(call.rule, answer) || !self.pending.is_empty() {
            return;
        }
        self.decided = true;
        if let Err(status) = host::continue_stream(false) {
            LOG.error(format_args!(
                "could not resume the request after the rate limit service answered: {status}"
            ));
        }
    }

    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        for (name, value) in &self.service_headers {
            // A header that cannot be added leaves the response as the upstream sent it.
            let _ = host::add_header(Map::ResponseHeaders, name, value);
        }
        let config = &self.config;
        if !config.response_headers.on_allowed || self.allowances.is_empty() {
            return Action::Continue;
        }
        let allowances: Vec<Allowance<'_>> = self
            .allowances
            .iter()
            .filter_map(|&(index, remaining, next_token_in)| {
                let rule = config.rules.get(index)?;
                Some(Allowance {
                    name: &rule.name,
                    limit: &rule.local.as_ref()?.limit,
                    remaining,
                    next_token_in,
                })
            })
            .collect();
        for (name, value) in answer::allowed_headers(&allowances, &config.response_headers) {
            // A header that cannot be set leaves the response as the upstream sent it.
            let _ = host::set_header(Map::ResponseHeaders, name, value.as_bytes());
        }
        Action::Continue
    }
}

impl Stream {
    /// Applies what rule `index`'s service answered; true if the request was refused.
    fn apply_answer(&mut self, index: usize, answer: Answer) -> bool {
        let shared = Rc::clone(&self.config);
        let config = &*shared;
        let Some(rule) = config.rules.get(index) else {
            return false;
        };
        let m = &rule.metrics;
        let Some(service) = &rule.global else {
            return false;
        };
        let effect = global::effect(rule, service, &answer);
        let refused = effect.refuses(rule);
        match answer {
            Answer::Ok {
                request_headers,
                response_headers,
            } => {
                m.global.global_ok.inc();
                for (name, value) in &request_headers {
                    // A header that cannot be added leaves the request as the client sent it.
                    let _ = host::add_header(Map::RequestHeaders, name, value);
                }
                self.service_headers.extend(response_headers);
            }
            Answer::OverLimit {
                response_headers,
                retry_after,
            } => {
                m.global.global_over_limit.inc();
                if refused {
                    m.rule.limited.inc();
                    refuse_over_limit(config, rule, &response_headers, retry_after);
                } else {
                    m.rule.shadow_limited.inc();
                    LOG.info(format_args!(
                        "rule {}: the rate limit service would limit {} {} (shadow mode, let through)",
                        rule.name,
                        String::from_utf8_lossy(&host::header(Map::RequestHeaders, ":method").unwrap_or_default()),
                        String::from_utf8_lossy(&host::header(Map::RequestHeaders, ":path").unwrap_or_default()),
                    ));
                    if let Some(header) = &rule.shadow_header {
                        // A mark that cannot be added only loses the mark; the count stands.
                        let _ = host::add_header(Map::RequestHeaders, header, rule.name.as_bytes());
                    }
                }
            }
            Answer::Failed(failure) => {
                failure.counter(m).inc();
                let deny = effect == global::Effect::FailedClosed;
                LOG.warn(format_args!(
                    "rule {}: {failure}; request {} (global.failure_mode {}{})",
                    rule.name,
                    if refused { "refused" } else { "let through" },
                    if deny { "deny" } else { "allow" },
                    if rule.mode == Mode::Shadow {
                        ", shadow mode"
                    } else {
                        ""
                    },
                ));
                if refused {
                    refuse(config, Refusal::Unavailable { rule: index });
                }
            }
        }
        if refused {
            self.decided = true;
            self.pending.clear();
            self.allowances.clear();
            self.service_headers.clear();
        }
        refused
    }
}

/// Refuses a request a rule's service said is over the limit: the configured status, the
/// JSON body, the service's headers, and `Retry-After` when the service said when its
/// window resets.
fn refuse_over_limit(
    config: &Config,
    rule: &Rule,
    service_headers: &[Header],
    retry_after: Option<Duration>,
) {
    let wait = retry_after.map(answer::seconds);
    let mut headers: Vec<(&str, String)> = Vec::with_capacity(service_headers.len() + 1);
    if let Some(wait) = wait {
        headers.push(("retry-after", wait.to_string()));
    }
    for (name, value) in service_headers {
        headers.push((name, String::from_utf8_lossy(value).into_owned()));
    }
    let borrowed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let message = match wait {
        Some(wait) => format!("rate limit {} exceeded; retry in {wait} s", rule.name),
        None => format!("rate limit {} exceeded", rule.name),
    };
    if let Err(status) = reply::send_json_error(config.status, "rate_limited", &message, &borrowed)
    {
        LOG.error(format_args!("could not send the refusal: {status}"));
    }
}

/// The request as the host gives it: each header fetched when a rule first asks for it,
/// once, so a request costs the headers its rules read rather than a copy of all of them.
#[derive(Default)]
struct HostRequest {
    fetched: RefCell<Vec<(String, Option<Vec<u8>>)>>,
    all: RefCell<Option<Vec<Pair>>>,
}

impl Request for HostRequest {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        if let Ok(fetched) = self.fetched.try_borrow() {
            if let Some((_, value)) = fetched.iter().find(|(k, _)| k == name) {
                return value.clone();
            }
        }
        let value = host::header(Map::RequestHeaders, name);
        if let Ok(mut fetched) = self.fetched.try_borrow_mut() {
            fetched.push((name.to_string(), value.clone()));
        }
        value
    }

    fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        // Envoy's read of one header gives only its first value; every value needs the
        // whole map. Headers the host cannot give read as none.
        let values = |all: &[Pair]| -> Vec<Vec<u8>> {
            all.iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        match self.all.try_borrow_mut() {
            Ok(mut all) => values(
                all.get_or_insert_with(|| host::headers(Map::RequestHeaders).unwrap_or_default()),
            ),
            Err(_) => values(&host::headers(Map::RequestHeaders).unwrap_or_default()),
        }
    }

    fn source_address(&self) -> Option<String> {
        host::property_str(&["source", "address"])
    }
}

/// Sends the refusal. If the host will not send it, the request goes on: nothing else can
/// stop it, and the refusal was already counted.
fn refuse(config: &Config, refusal: Refusal) {
    let sent = match refusal {
        Refusal::Limited { rule, retry_after } => {
            let Some(rule) = config.rules.get(rule) else {
                return;
            };
            let headers = answer::refusal_headers(rule, retry_after, &config.response_headers);
            let borrowed: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            reply::send_json_error(
                config.status,
                "rate_limited",
                &format!(
                    "rate limit {} exceeded; retry in {} s",
                    rule.name,
                    answer::seconds(retry_after)
                ),
                &borrowed,
            )
        }
        Refusal::Unavailable { .. } => reply::send_json_error(
            config.status,
            "rate_limit_unavailable",
            "the rate limit could not be checked",
            &[("retry-after", "1")],
        ),
    };
    if let Err(status) = sent {
        LOG.error(format_args!("could not send the refusal: {status}"));
    }
}
