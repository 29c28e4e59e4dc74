//! meshward __NAME__: tags each response with a header saying the filter saw it, except for
//! requests under the paths the configuration skips, and refuses a request that does not
//! carry `required_header` exactly once. Replace this with what yours does.
//!
//! This file is the entry point and the Proxy-Wasm adapter only: it reads the request from
//! the host, asks [`decide`] what to do, and applies the answer.

pub mod config;
pub mod decide;
pub mod metrics;

use config::Config;
use meshward_shared::config::ConfigError;
use meshward_shared::host::{self, Map};
use meshward_shared::{log::Log, reply, Action, HttpFilter, RootFilter};
use metrics::Metrics;
use std::rc::Rc;

/// Where this filter logs: every message starts with `__NAME__: `.
const LOG: Log = Log::new("__NAME__");

#[cfg(feature = "entry-point")]
meshward_shared::register_filters!("__NAME__" => || Box::new(Root::default()));

/// The plugin: holds the accepted configuration and makes a stream filter per request.
#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    metrics: Metrics,
}

impl RootFilter for Root {
    fn name(&self) -> &'static str {
        "__NAME__"
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let config = Config::parse(bytes)?;
        LOG.info(format_args!("configured, tagging with {}", config.header));
        self.metrics = Metrics::define(&[]);
        self.config = Some(Rc::new(config));
        Ok(())
    }

    fn new_http_filter(&mut self, _context_id: u32) -> Option<Box<dyn HttpFilter>> {
        Some(Box::new(Stream {
            config: Rc::clone(self.config.as_ref()?),
            metrics: self.metrics,
            skipped: false,
        }))
    }
}

/// One request's filter.
struct Stream {
    config: Rc<Config>,
    metrics: Metrics,
    /// Whether a `skip` match selected the request, decided while its headers are
    /// readable; `false` for a reply Envoy sent before the request reached this filter.
    skipped: bool,
}

impl HttpFilter for Stream {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        // Skipping is no security decision, so the match's plain reads will do (and a
        // config without `skip` reads nothing). A header a decision rests on is read with
        // header_unique.
        self.skipped = decide::skipped(&self.config, &host::MapView::new(Map::RequestHeaders));
        let Some(name) = &self.config.required_header else {
            return Action::Continue;
        };
        if self.skipped {
            return Action::Continue;
        }
        match decide::admit(name, host::header_unique(Map::RequestHeaders, name)) {
            Ok(()) => Action::Continue,
            Err(refusal) => {
                self.metrics.requests_refused.inc();
                // Sends the reply and returns Action::Pause, so the upstream is not called.
                reply::refuse(400, refusal.code, &refusal.message, &[])
            }
        }
    }

    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        match decide::tag(&self.config, self.skipped) {
            Some((name, value)) => {
                match host::set_header(Map::ResponseHeaders, name, value.as_bytes()) {
                    Ok(()) => self.metrics.responses_tagged.inc(),
                    // The response goes out untagged; the counter says how often.
                    Err(_) => self.metrics.edit_failures.inc(),
                }
            }
            None => self.metrics.responses_skipped.inc(),
        }
        Action::Continue
    }
}
