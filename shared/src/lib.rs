//! meshward's common crate: what every filter uses to talk to the proxy without panicking.
//!
//! - [`host`]: every Proxy-Wasm host call, returning `Result`/`Option`; [`snapshot`]: a
//!   header map read once per callback and shared by every filter of the context.
//! - [`filter`] and [`abi`]: the traits a filter implements and the ABI entry points that
//!   drive them; a `cdylib` only calls [`register_filters!`].
//! - [`chain`]: several filters run as one Proxy-Wasm filter, as Envoy would run them apart.
//! - [`config`]: JSON configuration with unknown fields refused and errors that name the field.
//! - [`shared_data`]: compare-and-swap read-modify-write across workers.
//! - [`metrics`], [`time`], [`log`], [`reply`]: metric handles, the clock, logging, JSON replies.
//! - [`http`]: cookies, query strings and `x-forwarded-for`, parsed one way for every filter;
//!   [`matching`]: the one request match (hosts, path, methods, headers) every rule uses.
//! - `native` (the `native` feature, never in a Wasm build): the same host API and
//!   dispatcher behind Envoy's dynamic module ABI, so a filter also builds as a `.so`.
#![warn(missing_docs)]

pub mod abi;
pub mod chain;
pub mod config;
pub mod context;
pub mod filter;
#[cfg(test)]
mod fuzz;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod host;
pub mod http;
pub mod log;
pub mod matching;
pub mod metrics;
#[cfg(feature = "native")]
pub mod native;
pub mod pairs;
#[cfg(any(test, feature = "native", feature = "fuzzing"))]
pub(crate) mod process_store;
pub mod reply;
pub mod shared_data;
pub mod snapshot;
mod sys;
pub mod time;

pub use filter::{Action, GrpcEvent, HttpCallReply, HttpFilter, RootFilter};
pub use host::{Map, Status};
