//! meshward chain: the five meshward filters, run in the order a configuration lists them
//! inside one Envoy Wasm filter (`out/chain.wasm`), so a request pays the Proxy-Wasm
//! boundary once. The composition is `meshward_shared::chain`; this crate only lists the
//! filters it can run, by the names a configuration uses.
//!
//! ```json
//! {"filters": [{"name": "security-headers", "config": {}},
//!              {"name": "rate-limit", "config": {"rules": [...]}}]}
//! ```

use meshward_shared::chain::Member;

#[cfg(test)]
mod fuzz;

/// The filters a chain can run: each one's name and its root.
pub const MEMBERS: &[Member] = &[
    ("security-headers", || {
        Box::new(meshward_security_headers::Root::default())
    }),
    ("jwt-auth", || Box::new(meshward_jwt_auth::Root::default())),
    ("rate-limit", || {
        Box::new(meshward_rate_limit::Root::default())
    }),
    ("circuit-metrics", || {
        Box::new(meshward_circuit_metrics::Root::default())
    }),
    ("region-router", || {
        Box::new(meshward_region_router::Root::default())
    }),
];

// The union of what the members export alone (their `register_filters!`): Envoy enters the
// VM for every exported callback, so none of them is exported here. A member that needs
// another callback (a body, trailers) adds it to this list.
#[cfg(feature = "entry-point")]
meshward_shared::register_filters! {
    exports: [request_headers, response_headers, log, tick, http_call, grpc],
    "chain" => || Box::new(meshward_shared::chain::ChainRoot::new(MEMBERS)),
}

#[cfg(test)]
mod tests {
    use super::MEMBERS;
    use meshward_shared::RootFilter;

    #[test]
    fn each_member_answers_to_the_name_a_chain_configuration_uses() {
        for (name, make) in MEMBERS {
            let root: Box<dyn RootFilter> = make();
            assert_eq!(root.name(), *name);
        }
    }
}
