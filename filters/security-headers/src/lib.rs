//! meshward security-headers: sends a secure set of response headers on every response,
//! local replies included, and removes headers that leak what runs behind the proxy.
//!
//! This file is the entry point and the Proxy-Wasm adapter only: it reads the request facts
//! and the response headers from the host, asks [`policy::decide`] what to change, and
//! applies the edits.

pub mod config;
pub mod csp;
#[cfg(test)]
mod fuzz;
pub mod headers;
pub mod hsts;
pub mod leaks;
pub mod metrics;
pub mod path_match;
pub mod permissions_policy;
pub mod policy;
pub mod request;

use config::Config;
use meshward_shared::config::ConfigError;
use meshward_shared::host::{self, Map};
use meshward_shared::matching::RequestView;
use meshward_shared::{log::Log, Action, HttpFilter, RootFilter};
use metrics::Metrics;
use policy::Edit;
use request::RequestFacts;
use std::rc::Rc;

/// Where this filter logs: every message starts with `security-headers: `.
const LOG: Log = Log::new("security-headers");

#[cfg(feature = "entry-point")]
meshward_shared::register_filters! {
    exports: [request_headers, response_headers],
    "security-headers" => || Box::new(Root::default()),
}

/// The plugin: holds the accepted configuration and makes a stream filter per request.
#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    metrics: Metrics,
}

impl RootFilter for Root {
    fn name(&self) -> &'static str {
        "security-headers"
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let config = Config::parse(bytes)?;
        LOG.info(format_args!("configured: {}", config.summary()));
        self.metrics = Metrics::define(&[]);
        self.config = Some(Rc::new(config));
        Ok(())
    }

    fn new_http_filter(&mut self, _context_id: u32) -> Option<Box<dyn HttpFilter>> {
        Some(Box::new(Stream {
            config: Rc::clone(self.config.as_ref()?),
            metrics: self.metrics,
            facts: None,
        }))
    }
}

/// One request's filter.
struct Stream {
    config: Rc<Config>,
    metrics: Metrics,
    /// Learnt in `on_request_headers`; `None` for a reply sent before the request got here.
    facts: Option<RequestFacts>,
}

impl Stream {
    /// Reads the request facts from the host: the headers the overrides' matches ask for
    /// (`:path` first) only when there are overrides, `:scheme` (and a trusted `x-forwarded-proto`) only when a header is sent on HTTPS
    /// only, so the default config costs one header read. Each read may fail (no request
    /// headers on an early local reply); a missing fact selects the top-level headers and
    /// "scheme unknown". The properties are read only when the header maps say nothing.
    fn read_facts(&self) -> RequestFacts {
        let config = &self.config;
        let request = host::MapView::new(Map::RequestHeaders);
        let scheme = config.reads_scheme.then(|| {
            host::header_str(Map::RequestHeaders, ":scheme")
                .or_else(|| host::property_str(&["request", "scheme"]))
        });
        let forwarded_proto = if config.reads_scheme && config.trust_x_forwarded_proto {
            host::header_str(Map::RequestHeaders, "x-forwarded-proto")
        } else {
            None
        };
        RequestFacts::learn(
            config,
            config.reads_path.then_some(&request as &dyn RequestView),
            scheme.flatten().as_deref(),
            forwarded_proto.as_deref(),
        )
    }
}

impl HttpFilter for Stream {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        self.facts = Some(self.read_facts());
        Action::Continue
    }

    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        let facts = match self.facts {
            Some(facts) => facts,
            None => self.read_facts(),
        };
        // Unreadable headers still get the overwrite headers; `decide` explains the rest.
        let response = host::snapshot(Map::ResponseHeaders).ok();
        // Lent once: each pass over the snapshot checks every name's UTF-8 again.
        let lent: Option<Vec<(&str, &[u8])>> = response.as_ref().map(|s| s.iter().collect());
        let edits = policy::decide(&self.config, &facts, lent.as_deref());
        let sets = edits
            .iter()
            .filter(|e| matches!(e, Edit::Set { .. }))
            .count() as u64;
        let (mut set, mut removed, mut failed) = (0u64, 0u64, 0u64);
        // The map was read for the decision: in Wasm, writing it back whole in one call
        // costs Envoy less than one call per edit (BENCHMARKS.md, "Cost model"). The native
        // build, and a host that refuses the whole map, get the edits one by one.
        let written = match &lent {
            Some(headers) if !edits.is_empty() && host::WHOLE_MAP_WRITES_PAY => {
                host::set_headers(Map::ResponseHeaders, &edited(headers, &edits)).is_ok()
            }
            _ => false,
        };
        if written {
            set = sets;
            removed = edits.len() as u64 - sets;
        } else {
            for edit in edits {
                let (result, done) = match edit {
                    Edit::Set { name, value } => (
                        host::set_header(Map::ResponseHeaders, name, value.as_bytes()),
                        &mut set,
                    ),
                    Edit::Remove(name) => (
                        host::remove_header(Map::ResponseHeaders, name),
                        &mut removed,
                    ),
                };
                match result {
                    Ok(()) => *done += 1,
                    Err(_) => failed += 1,
                }
            }
        }
        let readable = response.is_some();
        if set > 0 {
            self.metrics.responses_decorated.inc();
        }
        self.metrics.headers_removed.add(removed);
        self.metrics.edit_failures.add(failed);
        if !readable || failed > 0 {
            LOG.debug(format_args!(
                "response headers readable: {readable}, edits refused: {failed}"
            ));
        }
        Action::Continue
    }
}

/// The response headers after `edits`: the headers they leave alone, in order, then each
/// header set. The same map the edits make one by one (`proxy_replace_header_map_value`
/// removes every value of a name and adds the new one at the end).
fn edited<'a>(headers: &[(&'a str, &'a [u8])], edits: &[Edit<'a>]) -> Vec<(&'a str, &'a [u8])> {
    let touched = |name: &str| {
        edits.iter().any(|e| match e {
            Edit::Set { name: n, .. } | Edit::Remove(n) => n.eq_ignore_ascii_case(name),
        })
    };
    let mut out: Vec<(&str, &[u8])> = headers
        .iter()
        .filter(|(k, _)| !touched(k))
        .copied()
        .collect();
    out.extend(edits.iter().filter_map(|e| match e {
        Edit::Set { name, value } => Some((*name, value.as_bytes())),
        Edit::Remove(_) => None,
    }));
    out
}
