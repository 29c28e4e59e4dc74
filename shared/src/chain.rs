//! The meshward chain: several filters in one Proxy-Wasm filter, so that a request pays the
//! boundary (context creation, one VM entry per phase) once instead of once per filter.
//!
//! [`ChainRoot`] takes `{"filters": [{"name": "...", "config": {...}}, ...]}`, makes each
//! member's root from the factories the module lists, and configures each with exactly the
//! configuration it would take alone. Each request gets one [`ChainStream`] that runs the
//! members' stream filters the way Envoy runs the same filters as separate HTTP filters in
//! the same order:
//! - the request path runs in order and the response path in reverse;
//! - a member that pauses stops the chain there; when it resumes the stream
//!   (`host::continue_stream`, intercepted by the dispatcher), the members after it run,
//!   and the host's stream resumes only once they all continue;
//! - a local reply from member `i` stops the request path at `i`, and the response passes
//!   back only through the members whose request headers ran (`i` down to 0), as Envoy
//!   skips a Wasm filter's response callbacks until its request headers ran;
//! - every member sees `on_log`, as Envoy logs through every Wasm filter;
//! - HTTP and gRPC callouts go back to the member that made them;
//! - each member's tick period is kept: the host ticks at their greatest common divisor
//!   and each member ticks every `period / gcd` host ticks.
//!
//! Metric names and shared data keys are the members' own, so they are the same as when
//! the filters run separately.

use crate::config::{self, ConfigError};
use crate::filter::{Action, GrpcEvent, HttpCallReply, HttpFilter, RootFilter};
use crate::host;
use crate::log::Log;
use crate::{abi, context};
use serde::Deserialize;

/// Where this filter logs: every message starts with `chain: `.
const LOG: Log = Log::new("chain");

/// A filter a chain can run: its name in the chain's configuration and its root's factory.
pub type Member = (&'static str, fn() -> Box<dyn RootFilter>);

/// The chain's configuration as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    filters: Vec<RawEntry>,
}

/// One entry of `filters`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    /// The member's own configuration; absent is `{}`, as an empty configuration is.
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// A configured member: its root, and its tick period if it asked for one.
struct Configured {
    name: &'static str,
    root: Box<dyn RootFilter>,
    tick_millis: u32,
}

/// The chain's root: configures the members and makes a [`ChainStream`] per request.
pub struct ChainRoot {
    available: &'static [Member],
    vm_config: Vec<u8>,
    members: Vec<Configured>,
    /// The host's tick period (the gcd of the members'), 0 when none ticks.
    tick_millis: u32,
    /// Host ticks so far, to tick each member at its own period.
    ticks: u64,
}

impl ChainRoot {
    /// A chain that can run the filters in `available`, by name.
    pub fn new(available: &'static [Member]) -> Self {
        ChainRoot {
            available,
            vm_config: Vec::new(),
            members: Vec::new(),
            tick_millis: 0,
            ticks: 0,
        }
    }

    /// The names a configuration may use, for error messages.
    fn names(&self) -> String {
        let names: Vec<&str> = self.available.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }

    /// Sets the host's tick to the gcd of the members' periods.
    fn retick(&mut self) {
        let period = self
            .members
            .iter()
            .map(|m| m.tick_millis)
            .fold(0, greatest_common_divisor);
        if period == self.tick_millis {
            return;
        }
        self.tick_millis = period;
        self.ticks = 0;
        if let Err(status) = host::set_tick_period_millis(period) {
            LOG.warn(format_args!(
                "the host refused a tick every {period} ms ({status}); members that tick will not"
            ));
        }
    }

    /// Runs `f` on member `index`'s root, and keeps the tick period it asked for. `None`
    /// if there is no such member.
    fn on_member<R>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut dyn RootFilter) -> R,
    ) -> Option<R> {
        let member = self.members.get_mut(index)?;
        let (result, asked) = context::run_member(index, || f(member.root.as_mut()));
        if let Some(millis) = asked.tick_millis {
            member.tick_millis = millis;
            self.retick();
        }
        Some(result)
    }

    /// Parses the chain's configuration and configures every member.
    fn configure_members(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let raw: RawConfig = config::parse_json(bytes)?;
        if raw.filters.is_empty() {
            return Err(ConfigError::new(
                "filters",
                format!("expected at least one filter, among {}", self.names()),
            ));
        }
        self.members.clear();
        self.tick_millis = 0;
        for (index, entry) in raw.filters.into_iter().enumerate() {
            let Some((name, factory)) = self.available.iter().find(|(n, _)| *n == entry.name)
            else {
                return Err(ConfigError::new(
                    format!("filters[{index}].name"),
                    format!(
                        "unknown filter {:?}; expected one of {}",
                        entry.name,
                        self.names()
                    ),
                ));
            };
            let bytes = match &entry.config {
                Some(value) => value.to_string().into_bytes(),
                None => Vec::new(),
            };
            self.members.push(Configured {
                name,
                root: factory(),
                tick_millis: 0,
            });
            let vm_config = self.vm_config.clone();
            if self.on_member(index, |root| root.on_vm_start(&vm_config)) != Some(true) {
                return Err(ConfigError::new(
                    format!("filters[{index}]"),
                    format!("{name} refused to start"),
                ));
            }
            self.on_member(index, |root| root.configure(&bytes))
                .unwrap_or(Ok(()))
                .map_err(|error| error.within(&format!("filters[{index}].config")))?;
        }
        self.retick();
        Ok(())
    }
}

fn greatest_common_divisor(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        greatest_common_divisor(b, a % b)
    }
}

impl RootFilter for ChainRoot {
    fn name(&self) -> &'static str {
        "chain"
    }

    fn on_vm_start(&mut self, vm_config: &[u8]) -> bool {
        self.vm_config = vm_config.to_vec();
        true
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        self.configure_members(bytes)
            .inspect_err(|_| self.members.clear())?;
        let names: Vec<&str> = self.members.iter().map(|m| m.name).collect();
        LOG.info(format_args!("configured: {}", names.join(" -> ")));
        Ok(())
    }

    fn new_http_filter(&mut self, context_id: u32) -> Option<Box<dyn HttpFilter>> {
        if self.members.is_empty() {
            return None;
        }
        let mut filters = Vec::with_capacity(self.members.len());
        for index in 0..self.members.len() {
            filters.push(
                self.on_member(index, |root| root.new_http_filter(context_id))
                    .flatten(),
            );
        }
        Some(Box::new(ChainStream {
            filters,
            entered: 0,
            request: Side::default(),
            response: Side::default(),
        }))
    }

    fn on_tick(&mut self) {
        if self.tick_millis == 0 {
            return;
        }
        self.ticks = self.ticks.wrapping_add(1);
        let host_period = u64::from(self.tick_millis);
        for index in 0..self.members.len() {
            let period = self.members.get(index).map_or(0, |m| m.tick_millis);
            if period == 0 {
                continue;
            }
            let every = (u64::from(period) / host_period).max(1);
            if self.ticks.is_multiple_of(every) {
                self.on_member(index, |root| root.on_tick());
            }
        }
    }

    fn on_http_call_reply(&mut self, token: u32, reply: HttpCallReply) {
        if let Some(index) = context::delivering_member() {
            self.on_member(index, |root| root.on_http_call_reply(token, reply));
        }
    }

    fn on_grpc_event(&mut self, token: u32, event: GrpcEvent) {
        if let Some(index) = context::delivering_member() {
            self.on_member(index, |root| root.on_grpc_event(token, event));
        }
    }
}

/// A phase of one side of the stream, with what the host passed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Headers { end_of_stream: bool },
    Body { size: usize, end_of_stream: bool },
    Trailers,
}

/// Where one side of the stream stands.
#[derive(Clone, Copy, Debug, Default)]
struct Side {
    /// The phase a member paused and that member's index.
    paused: Option<(Phase, usize)>,
}

/// One request through the chain: each member's stream filter (`None` for a member that
/// lets requests through untouched) and where the request and response stand.
pub struct ChainStream {
    filters: Vec<Option<Box<dyn HttpFilter>>>,
    /// How many members' request headers have run: the response passes back through
    /// these only.
    entered: usize,
    request: Side,
    response: Side,
}

/// What running a run of members came to.
enum Run {
    /// Every member continued.
    Continued,
    /// A member paused (or sent a local reply).
    Stopped,
}

impl ChainStream {
    /// Runs member `index` on `phase` of one side, returning its action and whether it
    /// sent a local reply.
    fn call(&mut self, index: usize, response_side: bool, phase: Phase) -> (Action, bool) {
        let Some(Some(filter)) = self.filters.get_mut(index) else {
            return (Action::Continue, false);
        };
        let (action, asked) = context::run_member(index, || match (response_side, phase) {
            (false, Phase::Headers { end_of_stream }) => filter.on_request_headers(end_of_stream),
            (
                false,
                Phase::Body {
                    size,
                    end_of_stream,
                },
            ) => filter.on_request_body(size, end_of_stream),
            (false, Phase::Trailers) => filter.on_request_trailers(),
            (true, Phase::Headers { end_of_stream }) => filter.on_response_headers(end_of_stream),
            (
                true,
                Phase::Body {
                    size,
                    end_of_stream,
                },
            ) => filter.on_response_body(size, end_of_stream),
            (true, Phase::Trailers) => filter.on_response_trailers(),
        });
        (action, asked.local_reply)
    }

    /// Runs the request path's `phase` from member `from` on.
    fn run_request(&mut self, phase: Phase, from: usize) -> Run {
        let headers = matches!(phase, Phase::Headers { .. });
        // Body and trailers reach only the members whose headers ran.
        let end = if headers {
            self.filters.len()
        } else {
            self.entered
        };
        for index in from..end {
            if headers {
                self.entered = self.entered.max(index + 1);
            }
            if let Some(stopped) = self.step(index, false, phase) {
                return stopped;
            }
        }
        self.request.paused = None;
        Run::Continued
    }

    /// Runs the response path's `phase` from member `from` down to the first.
    fn run_response(&mut self, phase: Phase, from: usize) -> Run {
        for index in (0..from).rev() {
            if let Some(stopped) = self.step(index, true, phase) {
                return stopped;
            }
        }
        self.response.paused = None;
        Run::Continued
    }

    /// Runs member `index` on one side; `Some(Run::Stopped)` when it paused the side
    /// (remembered, to resume after it) or sent a local reply (nothing left to resume).
    fn step(&mut self, index: usize, response_side: bool, phase: Phase) -> Option<Run> {
        let (action, local_reply) = self.call(index, response_side, phase);
        let paused = if local_reply {
            None
        } else if action == Action::Pause {
            Some((phase, index))
        } else {
            return None;
        };
        let side = if response_side {
            &mut self.response
        } else {
            &mut self.request
        };
        side.paused = paused;
        Some(Run::Stopped)
    }

    /// Runs a side's `phase` from the start, as the host's callback for it.
    fn start(&mut self, response_side: bool, phase: Phase) -> Action {
        let run = if response_side {
            self.run_response(phase, self.entered)
        } else {
            self.run_request(phase, 0)
        };
        match run {
            Run::Continued => Action::Continue,
            Run::Stopped => Action::Pause,
        }
    }

    /// Delivers a callout event to the member that made the call.
    fn deliver_to_member(&mut self, f: impl FnOnce(&mut dyn HttpFilter)) {
        let Some(index) = context::delivering_member() else {
            return;
        };
        if let Some(Some(filter)) = self.filters.get_mut(index) {
            // Whatever the member asks for (a local reply, a continue) reaches the host or
            // this chain on its own.
            let _ = context::run_member(index, || f(filter.as_mut()));
        }
    }
}

impl HttpFilter for ChainStream {
    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        self.start(false, Phase::Headers { end_of_stream })
    }

    fn on_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.start(
            false,
            Phase::Body {
                size,
                end_of_stream,
            },
        )
    }

    fn on_request_trailers(&mut self) -> Action {
        self.start(false, Phase::Trailers)
    }

    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        self.start(true, Phase::Headers { end_of_stream })
    }

    fn on_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.start(
            true,
            Phase::Body {
                size,
                end_of_stream,
            },
        )
    }

    fn on_response_trailers(&mut self) -> Action {
        self.start(true, Phase::Trailers)
    }

    fn on_http_call_reply(&mut self, token: u32, reply: HttpCallReply) {
        self.deliver_to_member(|filter| filter.on_http_call_reply(token, reply));
    }

    fn on_grpc_event(&mut self, token: u32, event: GrpcEvent) {
        self.deliver_to_member(|filter| filter.on_grpc_event(token, event));
    }

    fn on_log(&mut self) {
        for index in 0..self.filters.len() {
            if let Some(Some(filter)) = self.filters.get_mut(index) {
                let _ = context::run_member(index, || filter.on_log());
            }
        }
    }

    fn resumes_itself(&self) -> bool {
        true
    }

    fn on_continue_requested(&mut self, response_side: bool, member: Option<usize>) {
        let side = if response_side {
            self.response
        } else {
            self.request
        };
        let Some((phase, paused)) = side.paused else {
            // Not paused (any more): as for a filter Envoy is not holding, nothing to do.
            return;
        };
        if member.is_some_and(|m| m != paused) {
            return;
        }
        let run = if response_side {
            self.run_response(phase, paused)
        } else {
            self.run_request(phase, paused + 1)
        };
        if let Run::Continued = run {
            if let Err(status) = abi::continue_host_stream(response_side) {
                LOG.error(format_args!("cannot resume the stream: {status}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    type Journal = Rc<RefCell<Vec<String>>>;

    /// A member that writes each callback it gets to the journal, and pauses or answers
    /// where told.
    struct Scripted {
        name: &'static str,
        journal: Journal,
        pause_request: bool,
        answer_request: bool,
    }

    impl HttpFilter for Scripted {
        fn on_request_headers(&mut self, _eos: bool) -> Action {
            self.journal
                .borrow_mut()
                .push(format!("{} request", self.name));
            if self.answer_request {
                let no_headers: &[(&str, &str)] = &[];
                // Outside wasm the host answers Unimplemented; the chain notes the reply.
                let _ = host::send_local_response(403, "no", no_headers, b"");
            }
            if self.pause_request || self.answer_request {
                Action::Pause
            } else {
                Action::Continue
            }
        }
        fn on_response_headers(&mut self, _eos: bool) -> Action {
            self.journal
                .borrow_mut()
                .push(format!("{} response", self.name));
            Action::Continue
        }
        fn on_log(&mut self) {
            self.journal.borrow_mut().push(format!("{} log", self.name));
        }
    }

    fn chain(journal: &Journal, pause: Option<usize>, answer: Option<usize>) -> ChainStream {
        let names = ["a", "b", "c"];
        ChainStream {
            filters: names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    Some(Box::new(Scripted {
                        name,
                        journal: Rc::clone(journal),
                        pause_request: pause == Some(i),
                        answer_request: answer == Some(i),
                    }) as Box<dyn HttpFilter>)
                })
                .collect(),
            entered: 0,
            request: Side::default(),
            response: Side::default(),
        }
    }

    fn taken(journal: &Journal) -> Vec<String> {
        journal.borrow_mut().drain(..).collect()
    }

    #[test]
    fn requests_run_in_order_and_responses_in_reverse() {
        let journal = Journal::default();
        let mut stream = chain(&journal, None, None);
        assert_eq!(stream.on_request_headers(true), Action::Continue);
        assert_eq!(stream.on_response_headers(true), Action::Continue);
        stream.on_log();
        assert_eq!(
            taken(&journal),
            [
                "a request",
                "b request",
                "c request",
                "c response",
                "b response",
                "a response",
                "a log",
                "b log",
                "c log"
            ]
        );
    }

    #[test]
    fn a_paused_member_resumed_continues_the_chain_from_the_next_member() {
        let journal = Journal::default();
        let mut stream = chain(&journal, Some(1), None);
        assert_eq!(stream.on_request_headers(false), Action::Pause);
        assert_eq!(taken(&journal), ["a request", "b request"]);
        // Another member asking changes nothing; the paused one resumes the rest.
        stream.on_continue_requested(false, Some(0));
        assert!(taken(&journal).is_empty());
        stream.on_continue_requested(false, Some(1));
        assert_eq!(taken(&journal), ["c request"]);
        // Once resumed, a second continue is not a second run.
        stream.on_continue_requested(false, Some(1));
        assert!(taken(&journal).is_empty());
    }

    #[test]
    fn a_local_reply_passes_back_only_through_the_members_that_saw_the_request() {
        let journal = Journal::default();
        let mut stream = chain(&journal, None, Some(1));
        assert_eq!(stream.on_request_headers(true), Action::Pause);
        assert_eq!(stream.on_response_headers(true), Action::Continue);
        stream.on_log();
        assert_eq!(
            taken(&journal),
            [
                "a request",
                "b request",
                "b response",
                "a response",
                "a log",
                "b log",
                "c log"
            ]
        );
    }

    #[test]
    fn member_errors_name_the_path_from_the_chain() {
        let within_member = |index: usize, path: &str, message: &str| {
            ConfigError::new(path, message)
                .within(&format!("filters[{index}].config"))
                .to_string()
        };
        assert_eq!(
            within_member(2, "rules[0].limit.per", "expected a duration"),
            "filters[2].config.rules[0].limit.per: expected a duration"
        );
        assert_eq!(
            within_member(0, "", "expected at least one rule"),
            "filters[0].config: expected at least one rule"
        );
        assert_eq!(within_member(1, "[0]", "bad"), "filters[1].config[0]: bad");
    }

    #[test]
    fn ticks_at_the_gcd_of_the_periods() {
        assert_eq!(
            [250, 1000].into_iter().fold(0, greatest_common_divisor),
            250
        );
        assert_eq!(
            [300, 1000].into_iter().fold(0, greatest_common_divisor),
            100
        );
        assert_eq!([0, 0].into_iter().fold(0, greatest_common_divisor), 0);
    }
}
