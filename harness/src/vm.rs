//! One worker's VM: a wasmtime store and instance of the filter (its state is
//! `vm_state::VmState`), and the calls into it with their fuel and host-call counts. What
//! drives those calls is above: `stream` for HTTP streams, `root_events` for the root
//! context.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::{Func, Linker, Module, Store, Trap, Val, ValType};

use crate::cost::{CallCost, Callback, Cost, HostCalls};
use crate::error::HarnessError;
use crate::host_shared::HostShared;
use crate::logs::{LogLevel, LogOrigin};
use crate::vm_state::{VmState, ROOT_CONTEXT_ID};

/// A worker's VM.
pub(crate) struct Vm {
    pub store: Store<VmState>,
    exports: HashMap<Callback, Func>,
    /// False once the VM trapped; Envoy never calls into a failed VM again.
    pub alive: bool,
    pub next_context_id: u32,
    /// Costs of callbacks that served no stream (startup, ticks, callouts of the root).
    pub root_costs: Vec<CallCost>,
}

/// The exports the host may call, besides `_initialize`/`_start`, with their arities.
const CALLBACKS: [(Callback, usize, bool); 19] = [
    (Callback::ContextCreate, 2, false),
    (Callback::VmStart, 2, true),
    (Callback::Configure, 2, true),
    (Callback::RequestHeaders, 3, true),
    (Callback::RequestBody, 3, true),
    (Callback::RequestTrailers, 2, true),
    (Callback::ResponseHeaders, 3, true),
    (Callback::ResponseBody, 3, true),
    (Callback::ResponseTrailers, 2, true),
    (Callback::Log, 1, false),
    (Callback::Done, 1, true),
    (Callback::Delete, 1, false),
    (Callback::Tick, 1, false),
    (Callback::HttpCallResponse, 5, false),
    (Callback::GrpcReceive, 3, false),
    (Callback::GrpcClose, 3, false),
    (Callback::GrpcReceiveInitialMetadata, 3, false),
    (Callback::GrpcReceiveTrailingMetadata, 3, false),
    (Callback::QueueReady, 2, false),
];

impl Vm {
    /// Instantiates the module for one worker and checks it speaks ABI 0.2.1.
    pub fn instantiate(
        shared: Arc<HostShared>,
        module: &Module,
        linker: &Linker<VmState>,
        worker: usize,
    ) -> Result<Self, HarnessError> {
        let state = VmState::new(shared, worker);
        let mut store = Store::new(module.engine(), state);
        let unsupported = |message: String| HarnessError::Unsupported { message };
        store
            .set_fuel(u64::MAX)
            .map_err(|e| unsupported(format!("fuel metering is off: {e}")))?;
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| unsupported(format!("cannot instantiate the module: {e:#}")))?;

        if instance
            .get_func(&mut store, "proxy_abi_version_0_2_1")
            .is_none()
        {
            let hint = if instance
                .get_func(&mut store, "proxy_abi_version_0_1_0")
                .is_some()
            {
                "it exports proxy_abi_version_0_1_0, which this harness (like Envoy's newer SDKs) does not emulate"
            } else {
                "it is not a Proxy-Wasm module"
            };
            return Err(unsupported(format!(
                "the module does not export proxy_abi_version_0_2_1: {hint}"
            )));
        }
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| unsupported("the module exports no memory".to_string()))?;
        // proxy-wasm-cpp-host's `getFunctions`: `malloc` first, then the alias.
        let allocate = ["malloc", "proxy_on_memory_allocate"]
            .iter()
            .find_map(|name| instance.get_typed_func::<i32, i32>(&mut store, name).ok());
        if allocate.is_none() {
            return Err(unsupported(
                "the module exports no proxy_on_memory_allocate(i32) -> i32".to_string(),
            ));
        }
        store.data_mut().memory = Some(memory);
        store.data_mut().allocate = allocate;

        let mut exports = HashMap::new();
        for (callback, arity, returns) in CALLBACKS {
            let Some(func) = instance.get_func(&mut store, callback.export_name()) else {
                continue;
            };
            let ty = func.ty(&store);
            let params_ok =
                ty.params().len() == arity && ty.params().all(|p| matches!(p, ValType::I32));
            let results_ok = if returns {
                ty.results().len() == 1 && ty.results().all(|r| matches!(r, ValType::I32))
            } else {
                ty.results().len() == 0
            };
            if !params_ok || !results_ok {
                return Err(unsupported(format!(
                    "{} has the wrong signature: {ty}",
                    callback.export_name()
                )));
            }
            exports.insert(callback, func);
        }
        let init = ["_initialize", "_start"]
            .iter()
            .find_map(|name| instance.get_func(&mut store, name));
        if let Some(init) = init {
            exports.insert(Callback::Initialize, init);
        }
        Ok(Self {
            store,
            exports,
            alive: true,
            next_context_id: ROOT_CONTEXT_ID + 1,
            root_costs: Vec::new(),
        })
    }

    /// Calls a callback with i32 arguments (the first is the context id, if any).
    ///
    /// Returns `Ok(None)` when the module does not export the callback, `Ok(Some(r))` with
    /// its result (0 for callbacks without one), or `Err` with the trap message once the
    /// VM has trapped, after which the VM is dead.
    pub fn invoke(&mut self, callback: Callback, args: &[i32]) -> Result<Option<i32>, String> {
        if !self.alive {
            return Err("the VM has failed".to_string());
        }
        let Some(func) = self.exports.get(&callback).cloned() else {
            return Ok(None);
        };
        let fuel_limit = self.store.data().shared.fuel_limit;
        {
            let state = self.store.data_mut();
            state.current = args.first().map(|c| *c as u32).unwrap_or(ROOT_CONTEXT_ID);
            state.effective = None;
            state.acting_for = None;
            state.host_calls = HostCalls::default();
        }
        // Fuel is enabled on the engine, so setting it cannot fail.
        let _ = self.store.set_fuel(fuel_limit);
        let params: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
        let mut results = vec![Val::I32(0); func.ty(&self.store).results().len()];
        let outcome = func.call(&mut self.store, &params, &mut results);
        let fuel = fuel_limit.saturating_sub(self.store.get_fuel().unwrap_or(0));

        let state = self.store.data_mut();
        let cost = CallCost {
            callback,
            cost: Cost {
                fuel,
                host_calls: state.host_calls.total(),
            },
            kinds: std::mem::take(&mut state.host_calls),
        };
        let charged = [Some(state.current), state.acting_for]
            .into_iter()
            .flatten()
            .find(|id| state.streams.contains_key(id));
        match charged.and_then(|id| state.streams.get_mut(&id)) {
            Some(stream) => stream.costs.calls.push(cost),
            None => self.root_costs.push(cost),
        }
        let state = self.store.data_mut();
        state.current = 0;
        state.effective = None;
        state.acting_for = None;

        match outcome {
            Ok(()) => Ok(Some(results.first().and_then(|v| v.i32()).unwrap_or(0))),
            Err(error) => {
                self.alive = false;
                let reason = match error.downcast_ref::<Trap>() {
                    Some(trap) => trap.to_string(),
                    None => error.root_cause().to_string(),
                };
                let message = format!("Function: {} failed: {reason}", callback.export_name());
                self.store
                    .data()
                    .log(LogLevel::Critical, message.clone(), LogOrigin::Host);
                Err(message)
            }
        }
    }
}
