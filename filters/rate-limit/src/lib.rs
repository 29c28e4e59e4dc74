//! meshward rate-limit: token buckets in Envoy shared data, exact across workers, bounded in
//! memory, answering 429 with `Retry-After` computed from the bucket.
//!
//! This file is the Proxy-Wasm adapter only: it reads the request, asks [`limiter`] for a
//! verdict, and applies it (reply, headers, metrics, logs). The logic lives in the modules
//! it calls, which know nothing of the proxy.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod answer;
pub mod bucket;
pub mod config;
pub mod keys;
pub mod limiter;
pub mod metrics;
pub mod request;
pub mod rules;
pub mod table;

use crate::answer::Allowance;
use crate::config::Config;
use crate::limiter::{Failure, Outcome, Refusal};
use crate::metrics::RuleMetrics;
use crate::request::Request;
use meshward_shared::host::{self, Map};
use meshward_shared::pairs::Pair;
use meshward_shared::shared_data::{HostStore, UpdateError};
use meshward_shared::{log, reply, time, Action, HttpFilter, RootFilter};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[cfg(feature = "entry-point")]
meshward_shared::register_filters!("rate-limit" => || Box::new(Root::default()));

/// The configured plugin, shared read-only by its streams.
struct Plugin {
    config: Config,
    metrics: Vec<RuleMetrics>,
}

/// The root context: parses the configuration and makes a stream filter per request.
#[derive(Default)]
pub struct Root {
    plugin: Option<Rc<Plugin>>,
}

impl RootFilter for Root {
    fn name(&self) -> &'static str {
        "rate-limit"
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), String> {
        let config = config::parse(bytes).map_err(|e| e.to_string())?;
        let metrics = config
            .rules
            .iter()
            .map(|r| RuleMetrics::define(&r.name))
            .collect();
        self.plugin = Some(Rc::new(Plugin { config, metrics }));
        Ok(())
    }

    fn new_http_filter(&mut self, _context_id: u32) -> Option<Box<dyn HttpFilter>> {
        let plugin = Rc::clone(self.plugin.as_ref()?);
        Some(Box::new(Stream {
            plugin,
            allowances: Vec::new(),
        }))
    }
}

/// One request.
struct Stream {
    plugin: Rc<Plugin>,
    /// Enforced rules that let the request through, for the response's headers.
    allowances: Vec<(usize, u64, Duration)>,
}

impl HttpFilter for Stream {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let plugin = Rc::clone(&self.plugin);
        let config = &plugin.config;
        let request = HostRequest::default();
        let clock = || time::now().and_then(|t| u64::try_from(t.as_nanos()).ok());
        let verdict = limiter::check(config, &request, clock, &mut HostStore);

        for result in &verdict.results {
            let (Some(rule), Some(m)) = (
                config.rules.get(result.rule),
                plugin.metrics.get(result.rule),
            ) else {
                continue;
            };
            if result.reclaimed {
                m.reclaimed.inc();
            }
            if result.overflowed {
                m.overflowed.inc();
            }
            match result.outcome {
                Outcome::Allowed {
                    remaining,
                    next_token_in,
                } => {
                    m.allowed.inc();
                    if rule.mode == config::Mode::Enforce && config.response_headers.on_allowed {
                        self.allowances
                            .push((result.rule, remaining, next_token_in));
                    }
                }
                Outcome::Limited { .. } => m.limited.inc(),
                Outcome::ShadowLimited { .. } => {
                    m.shadow_limited.inc();
                    log::info(&format!(
                        "rate-limit: rule {} would limit {} {} (shadow mode, let through)",
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
                    if matches!(failure, Failure::Store(UpdateError::Contention { .. })) {
                        m.contention_fallbacks.inc();
                    }
                    if deny {
                        m.failed_closed.inc();
                    } else {
                        m.failed_open.inc();
                    }
                    let why = if deny {
                        "refused (failure_mode deny)"
                    } else if rule.mode == config::Mode::Shadow {
                        "let through (shadow mode)"
                    } else {
                        "let through (failure_mode allow)"
                    };
                    log::warn(&format!(
                        "rate-limit: rule {}: {failure}; request {why}",
                        rule.name
                    ));
                }
            }
        }

        match verdict.refusal {
            None => Action::Continue,
            Some(refusal) => {
                self.allowances.clear();
                refuse(config, refusal);
                Action::Pause
            }
        }
    }

    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        let config = &self.plugin.config;
        if !config.response_headers.on_allowed || self.allowances.is_empty() {
            return Action::Continue;
        }
        let allowances: Vec<Allowance<'_>> = self
            .allowances
            .iter()
            .filter_map(|&(index, remaining, next_token_in)| {
                Some(Allowance {
                    rule: config.rules.get(index)?,
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
        log::error(&format!("rate-limit: could not send the refusal: {status}"));
    }
}
