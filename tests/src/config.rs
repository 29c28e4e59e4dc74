//! Envoy configs for tests: the files in `envoy-config/`, or built inline, rewritten so that
//! many Envoys can run at once.
//!
//! The files use fixed ports (listener `127.0.0.1:10000`, admin `127.0.0.1:9901`,
//! upstreams from `127.0.0.1:8080`) and Wasm files as `out/<filter>.wasm` relative to the
//! repository root, so that `make run` can use them as they are. Before Envoy starts, the
//! rig rewrites:
//! - the admin address and every listener to `127.0.0.1` port 0, so the kernel picks free
//!   ports and no two Envoys collide; the rig then asks Envoy which ports it got;
//! - every other port (the upstreams') to the port the test mapped it to with
//!   [`EnvoyConfig::upstream`], or, if unmapped, to a reserved port that refuses
//!   connections, so a test never reaches a server it did not start;
//! - every `filename: out/...` to an absolute path under the repository's `out/`.
//!
//! A meshward filter runs on either [`Backend`]: its Wasm build in Envoy's Wasm filter, or
//! its native build (`out/<name>.so`) as an Envoy dynamic module. [`WasmFilter::on`] and
//! [`EnvoyConfig::on`] pick the backend, so one test runs both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::{repo_root, RigError};

/// The listener port the config files use.
pub const LISTENER_PORT: u16 = 10000;
/// The admin port the config files use.
pub const ADMIN_PORT: u16 = 9901;
/// The first upstream's port in the config files; others follow (8081, 8082, ...).
pub const UPSTREAM_PORT: u16 = 8080;
/// The path under which configs built by [`EnvoyConfig::with_filters`] answer with Envoy's
/// own local reply (404), without reaching the upstream.
pub const LOCAL_REPLY_PREFIX: &str = "/local-reply";

/// Which build of the meshward filters Envoy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `out/<name>.wasm` in Envoy's Wasm filter (`envoy.filters.http.wasm`, V8).
    Wasm,
    /// `out/<name>.so` as an Envoy dynamic module (`envoy.filters.http.dynamic_modules`).
    Native,
}

impl Backend {
    /// Both backends, for a test that runs each.
    pub const BOTH: [Backend; 2] = [Backend::Wasm, Backend::Native];
}

/// A meshward filter in a config built inline, on the Wasm backend unless [`on`](Self::on)
/// says otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct WasmFilter {
    /// The plugin name and root id (the dynamic module's `filter_name`).
    pub name: String,
    /// The Wasm module, relative to the repository root (e.g. `out/security-headers.wasm`);
    /// the native module is the same path ending in `.so`.
    pub wasm: String,
    /// The plugin configuration, passed to the filter as JSON text.
    pub config: Value,
    /// Which build Envoy runs.
    pub backend: Backend,
}

impl WasmFilter {
    /// The filter in `filters/<name>`, built to `out/<name>.wasm`.
    pub fn new(name: &str, config: Value) -> Self {
        WasmFilter {
            name: name.to_owned(),
            wasm: format!("out/{name}.wasm"),
            config,
            backend: Backend::Wasm,
        }
    }

    /// The harness fixture in `harness/fixtures/<name>`, built to `out/fixture-<name>.wasm`.
    pub fn fixture(name: &str, config: Value) -> Self {
        WasmFilter {
            name: format!("fixture-{name}"),
            wasm: format!("out/fixture-{name}.wasm"),
            config,
            backend: Backend::Wasm,
        }
    }

    /// The same filter on `backend`.
    pub fn on(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The HTTP filter entry for this filter, as the config files write it:
    /// `envoy.filters.http.wasm`, or `envoy.filters.http.dynamic_modules` on the native
    /// backend.
    fn http_filter(&self) -> Value {
        let wasm = self.wasm_filter();
        match self.backend {
            Backend::Wasm => wasm,
            Backend::Native => native_filter(&wasm).unwrap_or(wasm),
        }
    }

    fn wasm_filter(&self) -> Value {
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": self.name,
                    "root_id": self.name,
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": self.config.to_string(),
                    },
                    "vm_config": {
                        "vm_id": format!("meshward-{}", self.name),
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": self.wasm}},
                    },
                    "failure_policy": "FAIL_CLOSED",
                },
            },
        })
    }
}

/// The labels meshward filters write into their stat names (`<tag>=.=<value>;.;`,
/// docs/configuration.md#metrics): what a user lists in Istio's `extraStatTags`.
pub const STAT_TAGS: [&str; 7] = [
    "rule",
    "region",
    "reason",
    "cluster",
    "route",
    "code_class",
    "to_state",
];

/// The `stats_config` Istio's bootstrap makes of `extraStatTags: STAT_TAGS`: for each tag
/// the unanchored regex `(<tag>=\.=(.*?);\.;)`. The configs [`EnvoyConfig::with_filters`]
/// makes have it, as `envoy-config/meshward.yaml` does.
pub fn istio_stats_config() -> Value {
    let tags: Vec<Value> = STAT_TAGS
        .iter()
        .map(|tag| json!({"tag_name": tag, "regex": format!("({tag}=\\.=(.*?);\\.;)")}))
        .collect();
    json!({"stats_tags": tags})
}

/// An Envoy bootstrap config plus the upstream ports a test mapped.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvoyConfig {
    source: String,
    value: Value,
    upstreams: BTreeMap<u16, u16>,
}

/// A config ready to hand to Envoy.
#[derive(Debug)]
pub(crate) struct Rewritten {
    /// The bootstrap, rewritten.
    pub value: Value,
    /// Each listener's name and the port the config gave it.
    pub listeners: Vec<(String, u16)>,
}

impl EnvoyConfig {
    /// Loads `envoy-config/<file>` (e.g. `"meshward.yaml"`).
    pub fn load(file: &str) -> Result<Self, RigError> {
        Self::from_path(&repo_root().join("envoy-config").join(file))
    }

    /// Loads a YAML (or JSON) config file.
    pub fn from_path(path: &Path) -> Result<Self, RigError> {
        let text = std::fs::read_to_string(path)
            .map_err(RigError::io(format!("reading {}", path.display())))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses a config written inline in a test, in YAML (or JSON).
    pub fn from_yaml(yaml: &str) -> Result<Self, RigError> {
        Self::parse("inline", yaml)
    }

    fn parse(source: &str, text: &str) -> Result<Self, RigError> {
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| RigError::Config {
            source: source.to_owned(),
            message: e.to_string(),
        })?;
        if !value.is_object() {
            return Err(RigError::Config {
                source: source.to_owned(),
                message: "expected a mapping at the top".into(),
            });
        }
        Ok(EnvoyConfig {
            source: source.to_owned(),
            value,
            upstreams: BTreeMap::new(),
        })
    }

    /// The config `make run` uses, with only `filters` in its chain: listener port 10000,
    /// admin 9901, cluster `upstream` at 8080, a local 404 under [`LOCAL_REPLY_PREFIX`],
    /// and `server` headers passed through so filters can remove them.
    pub fn with_filters(filters: &[WasmFilter]) -> Self {
        Self::with_http_filters(filters.iter().map(WasmFilter::http_filter).collect())
    }

    /// The same config with `http_filters` (entries of the HTTP connection manager's
    /// `http_filters`, such as those [`crate::istiod`] builds) before the router.
    pub fn with_http_filters(mut http_filters: Vec<Value>) -> Self {
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            },
        }));
        let value = json!({
            "admin": {"address": socket_address(ADMIN_PORT)},
            "stats_config": istio_stats_config(),
            "static_resources": {
                "listeners": [{
                    "name": "ingress",
                    "address": socket_address(LISTENER_PORT),
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "ingress",
                            "server_header_transformation": "PASS_THROUGH",
                            "route_config": {"virtual_hosts": [{
                                "name": "all",
                                "domains": ["*"],
                                "routes": [
                                    {
                                        "match": {"prefix": LOCAL_REPLY_PREFIX},
                                        "direct_response": {
                                            "status": 404,
                                            "body": {"inline_string": "no such page\n"},
                                        },
                                    },
                                    {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}},
                                ],
                            }]},
                            "http_filters": http_filters,
                        },
                    }]}],
                }],
                "clusters": [{
                    "name": "upstream",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {
                            "address": socket_address(UPSTREAM_PORT),
                        }}]}],
                    },
                }],
            },
        });
        EnvoyConfig {
            source: "inline".into(),
            value,
            upstreams: BTreeMap::new(),
        }
    }

    /// Points the config's upstream port `fixed` (8080, 8081, ...) at `port`, usually an
    /// [`Upstream`](crate::Upstream)'s.
    pub fn upstream(mut self, fixed: u16, port: u16) -> Self {
        self.upstreams.insert(fixed, port);
        self
    }

    /// The same config with every meshward Wasm filter (`envoy.filters.http.wasm` loading an
    /// `out/<name>.wasm`) on `backend`: on the native backend each becomes the dynamic module
    /// `out/<name>.so` with the same filter name and configuration.
    pub fn on(mut self, backend: Backend) -> Self {
        if backend == Backend::Native {
            to_native(&mut self.value);
        }
        self
    }

    /// Where the config came from: its path, or `inline`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The bootstrap as JSON, before rewriting.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The bootstrap as JSON, for a test that needs to change something.
    pub fn value_mut(&mut self) -> &mut Value {
        &mut self.value
    }

    /// The upstream ports the config names that the test has not mapped.
    pub(crate) fn unmapped_upstream_ports(&self) -> BTreeSet<u16> {
        let mut ports = BTreeSet::new();
        let mut value = self.value.clone();
        listen_anywhere_free(&mut value);
        visit_ports(&mut value, &mut |port| {
            ports.insert(port);
            port
        });
        ports.retain(|p| !self.upstreams.contains_key(p));
        ports
    }

    /// The config with listeners and admin on free ports, upstream ports mapped through
    /// the test's mapping and then `dead`, and `out/` paths made absolute.
    pub(crate) fn rewrite(&self, dead: &BTreeMap<u16, u16>) -> Result<Rewritten, RigError> {
        let mut value = self.value.clone();
        let listeners = listen_anywhere_free(&mut value);
        visit_ports(&mut value, &mut |port| {
            self.upstreams
                .get(&port)
                .or_else(|| dead.get(&port))
                .copied()
                .unwrap_or(port)
        });
        absolute_wasm_paths(&mut value, &repo_root())?;
        Ok(Rewritten { value, listeners })
    }
}

/// The type of Envoy's Wasm HTTP filter config.
const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// The dynamic module entry equivalent to `wasm`, an HTTP filter entry of Envoy's Wasm filter
/// running a meshward module (`out/<name>.wasm`): the same entry name (a custom one such as
/// `meshward.region_router` is kept, so per-route configs still find it), `disabled` flag,
/// filter name and configuration, with the module `out/<name>.so`. `None` for any other
/// entry.
fn native_filter(wasm: &Value) -> Option<Value> {
    let typed = wasm.get("typed_config")?;
    if typed.get("@type")?.as_str()? != WASM_FILTER_TYPE {
        return None;
    }
    let plugin = typed.get("config")?;
    let module = plugin
        .pointer("/vm_config/code/local/filename")?
        .as_str()?
        .strip_prefix("out/")?
        .strip_suffix(".wasm")?;
    let name = plugin
        .get("root_id")
        .or_else(|| plugin.get("name"))?
        .as_str()?;
    let config = plugin
        .pointer("/configuration/value")
        .and_then(Value::as_str)
        .unwrap_or("{}");
    let entry = match wasm.get("name").and_then(Value::as_str) {
        Some("envoy.filters.http.wasm") | None => "envoy.filters.http.dynamic_modules",
        Some(custom) => custom,
    };
    let mut native = json!({
        "name": entry,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"module": {"local": {"filename": format!("out/{module}.so")}}},
            "filter_name": name,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config,
            },
        },
    });
    if let (Some(disabled), Some(object)) = (wasm.get("disabled"), native.as_object_mut()) {
        object.insert("disabled".into(), disabled.clone());
    }
    Some(native)
}

/// Replaces every meshward Wasm filter entry in `value` with its native equivalent, and
/// points stats tag regexes written for Wasm's `wasmcustom.` namespace at the dynamic
/// modules' `dynamicmodulescustom.`.
fn to_native(value: &mut Value) {
    if let Some(native) = native_filter(value) {
        *value = native;
        return;
    }
    match value {
        Value::Object(object) => {
            if let Some(Value::String(regex)) = object.get_mut("regex") {
                *regex = regex.replace("wasmcustom\\.", "dynamicmodulescustom\\.");
            }
            object.values_mut().for_each(to_native);
        }
        Value::Array(items) => items.iter_mut().for_each(to_native),
        _ => {}
    }
}

fn socket_address(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// Moves the admin address and every listener to `127.0.0.1` port 0; returns each
/// listener's name and former port.
fn listen_anywhere_free(value: &mut Value) -> Vec<(String, u16)> {
    if let Some(admin) = value.pointer_mut("/admin/address/socket_address") {
        free_port(admin);
    }
    let mut found = Vec::new();
    let listeners = value
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut);
    for listener in listeners.into_iter().flatten() {
        let name = listener
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(address) = listener.pointer_mut("/address/socket_address") {
            let port = free_port(address);
            found.push((name, port));
        }
    }
    found
}

/// Sets a `socket_address` to `127.0.0.1` port 0; returns the port it had.
fn free_port(socket_address: &mut Value) -> u16 {
    let old = socket_address
        .get("port_value")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
    if let Some(object) = socket_address.as_object_mut() {
        object.insert("address".into(), json!("127.0.0.1"));
        object.insert("port_value".into(), json!(0));
    }
    old
}

/// Calls `map` on every non-zero `port_value` and stores what it returns.
fn visit_ports(value: &mut Value, map: &mut dyn FnMut(u16) -> u16) {
    match value {
        Value::Object(object) => {
            if let Some(port) = object.get_mut("port_value") {
                if let Some(old @ 1..) = port.as_u64().and_then(|p| u16::try_from(p).ok()) {
                    *port = json!(map(old));
                }
            }
            object.values_mut().for_each(|v| visit_ports(v, map));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| visit_ports(v, map)),
        _ => {}
    }
}

/// Makes every `filename: out/...` absolute under `root` and checks the file exists.
pub(crate) fn absolute_wasm_paths(value: &mut Value, root: &Path) -> Result<(), RigError> {
    match value {
        Value::Object(object) => absolute_in_object(object, root),
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| absolute_wasm_paths(v, root)),
        _ => Ok(()),
    }
}

fn absolute_in_object(object: &mut Map<String, Value>, root: &Path) -> Result<(), RigError> {
    if let Some(Value::String(filename)) = object.get_mut("filename") {
        if filename.starts_with("out/") {
            let path: PathBuf = root.join(filename.as_str());
            let module = filename.ends_with(".wasm") || filename.ends_with(".so");
            if module && !path.exists() {
                return Err(RigError::WasmMissing { path });
            }
            *filename = path.display().to_string();
        }
    }
    object
        .values_mut()
        .try_for_each(|v| absolute_wasm_paths(v, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_UPSTREAMS: &str = r#"
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
  clusters:
  - name: a
    load_assignment: {endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]}
  - name: b
    load_assignment: {endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8081}}}}]}]}
"#;

    fn port_at(value: &Value, pointer: &str) -> Option<u64> {
        value.pointer(pointer).and_then(Value::as_u64)
    }

    #[test]
    fn moves_listeners_and_admin_to_free_loopback_ports_and_maps_upstreams() {
        let config = EnvoyConfig::from_yaml(TWO_UPSTREAMS)
            .unwrap()
            .upstream(8080, 41000);
        assert_eq!(config.unmapped_upstream_ports(), BTreeSet::from([8081]));

        let rewritten = config.rewrite(&BTreeMap::from([(8081, 42000)])).unwrap();
        let v = &rewritten.value;
        assert_eq!(rewritten.listeners, vec![("ingress".to_owned(), 10000)]);
        assert_eq!(
            port_at(v, "/admin/address/socket_address/port_value"),
            Some(0)
        );
        let listener = "/static_resources/listeners/0/address/socket_address";
        assert_eq!(port_at(v, &format!("{listener}/port_value")), Some(0));
        assert_eq!(
            v.pointer(&format!("{listener}/address")),
            Some(&json!("127.0.0.1"))
        );
        let endpoint = |c: usize| {
            format!("/static_resources/clusters/{c}/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/port_value")
        };
        assert_eq!(port_at(v, &endpoint(0)), Some(41000));
        assert_eq!(port_at(v, &endpoint(1)), Some(42000));
    }

    #[test]
    fn makes_out_paths_absolute_and_names_a_missing_module() {
        let mut value = json!({"code": {"local": {"filename": "out/nothing-here.wasm"}}});
        let root = Path::new("/nonexistent-root");
        let error = absolute_wasm_paths(&mut value, root)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/nonexistent-root/out/nothing-here.wasm"),
            "{error}"
        );
        assert!(error.contains("make build"), "{error}");

        let mut value = json!({"filename": "out/table.json", "other": "out/x.wasm"});
        absolute_wasm_paths(&mut value, root).unwrap();
        assert_eq!(value["filename"], json!("/nonexistent-root/out/table.json"));
        assert_eq!(value["other"], json!("out/x.wasm"));
    }

    #[test]
    fn the_native_backend_loads_the_same_filter_and_configuration_from_the_so() {
        let wasm = WasmFilter::new("security-headers", json!({"a": 1}));
        let native = EnvoyConfig::with_filters(&[wasm.clone().on(Backend::Native)]);
        let converted = EnvoyConfig::with_filters(&[wasm]).on(Backend::Native);
        assert_eq!(native.value(), converted.value());
        let filter = native
            .value()
            .pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0")
            .unwrap();
        assert_eq!(filter["name"], json!("envoy.filters.http.dynamic_modules"));
        let typed = &filter["typed_config"];
        assert_eq!(
            typed["dynamic_module_config"]["module"]["local"]["filename"],
            json!("out/security-headers.so")
        );
        assert_eq!(typed["filter_name"], json!("security-headers"));
        assert_eq!(typed["filter_config"]["value"], json!(r#"{"a":1}"#));
    }

    #[test]
    fn an_inline_config_puts_filters_before_the_router() {
        let config = EnvoyConfig::with_filters(&[WasmFilter::fixture("noop", json!({"a": 1}))]);
        let filters = config
            .value()
            .pointer(
                "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
            )
            .and_then(Value::as_array)
            .unwrap();
        let wasm = &filters[0]["typed_config"]["config"];
        assert_eq!(
            wasm["vm_config"]["code"]["local"]["filename"],
            json!("out/fixture-noop.wasm")
        );
        assert_eq!(wasm["configuration"]["value"], json!(r#"{"a":1}"#));
        assert_eq!(filters[1]["name"], json!("envoy.filters.http.router"));
    }
}
