//! Properties (`proxy_get_property`) in Envoy's encodings, derived from the stream and the
//! plugin the way Envoy's `Context::getProperty` does, plus values the test sets (their
//! encoding is in `property_value`).

use std::collections::BTreeMap;

use crate::headers::HeaderMap;
use crate::message::grpc_status_of_http;
use crate::stream_data::StreamData;

/// Plugin-wide facts Envoy exposes as properties, and the properties the test set.
#[derive(Clone, Debug, Default)]
pub(crate) struct PluginFacts {
    pub plugin_name: String,
    pub root_id: String,
    pub vm_id: String,
    /// The route's cluster: `xds.cluster_name`.
    pub cluster_name: String,
    /// The route's name: `xds.route_name`.
    pub route_name: String,
    /// The virtual host's name: `xds.virtual_host_name`.
    pub virtual_host_name: String,
    pub node_id: String,
    pub node_cluster: String,
    pub listener_direction: i64,
    /// The upstream host the cluster picks: `upstream.address`.
    pub upstream_address: String,
    /// Envoy's end of the upstream connection: `upstream.local_address`.
    pub upstream_local_address: String,
    pub overrides: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The top-level names Envoy 1.40 resolves itself (`StreamActivation::FindValue`, then the
/// Wasm context's own tokens) before it looks at what a filter set with
/// `proxy_set_property`: a filter cannot shadow them.
const BUILT_IN: [&[u8]; 14] = [
    b"request",
    b"response",
    b"connection",
    b"upstream",
    b"source",
    b"destination",
    b"metadata",
    b"filter_state",
    b"upstream_filter_state",
    b"xds",
    b"plugin_name",
    b"plugin_root_id",
    b"plugin_vm_id",
    b"connection_id",
];

/// Finds a property for a context as Envoy's `Context::getProperty` does: values the test
/// injected first (whole path), then what Envoy derives from the stream and the plugin;
/// for a first segment Envoy does not know, what the filter set with `proxy_set_property`
/// under that one segment (Envoy stores `wasm.<whole path>` but looks up
/// `wasm.<first segment>`, so a value set on a dotted path is never found again, and a
/// value is bytes: nothing below it).
pub(crate) fn lookup(
    plugin: &PluginFacts,
    stream: Option<&StreamData>,
    path: &[u8],
    now_ns: i64,
) -> Option<Vec<u8>> {
    if let Some(value) = stream.and_then(|s| s.property_overrides.get(path)) {
        return Some(value.clone());
    }
    if let Some(value) = plugin.overrides.get(path) {
        return Some(value.clone());
    }
    let first = path.split(|b| *b == 0).next().unwrap_or_default();
    if !BUILT_IN.contains(&first) {
        if first.len() != path.len() {
            return None;
        }
        return stream.and_then(|s| s.set_properties.get(first).cloned());
    }
    derive(plugin, stream, path, now_ns)
}

fn text(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

fn int(n: i64) -> Option<Vec<u8>> {
    Some(n.to_le_bytes().to_vec())
}

/// `envoy.config.core.v3.Node` with its id and cluster, serialized.
fn node_message(plugin: &PluginFacts) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, value) in [(0x0a, &plugin.node_id), (0x12, &plugin.node_cluster)] {
        if !value.is_empty() && value.len() < 128 {
            out.push(tag);
            out.push(value.len() as u8);
            out.extend_from_slice(value.as_bytes());
        }
    }
    out
}

fn derive(
    plugin: &PluginFacts,
    stream: Option<&StreamData>,
    path: &[u8],
    now_ns: i64,
) -> Option<Vec<u8>> {
    match path {
        b"plugin_name" => return text(&plugin.plugin_name),
        b"plugin_root_id" => return text(&plugin.root_id),
        b"plugin_vm_id" => return text(&plugin.vm_id),
        b"xds\0node" => return Some(node_message(plugin)),
        b"xds\0node\0id" => return text(&plugin.node_id),
        b"xds\0node\0cluster" => return text(&plugin.node_cluster),
        _ => {}
    }
    let stream = stream?;
    let request = &stream.request;
    // Envoy points at the request headers while the request is stopped in a callback, and
    // at its access-log copy in `proxy_on_log`; otherwise header-based values are gone.
    let request_headers =
        (stream.attached.request_headers || stream.access_log).then_some(&request.headers);
    let response = stream.response.as_ref();
    let response_headers = response
        .filter(|_| stream.attached.response_headers || stream.access_log)
        .map(|r| &r.headers);
    let response_trailers = response
        .filter(|_| stream.attached.response_trailers || stream.access_log)
        .map(|r| &r.trailers);
    let header = |name: &str| {
        request_headers
            .and_then(|h| h.get_bytes(name))
            .map(<[u8]>::to_vec)
    };
    if let Some(name) = path.strip_prefix(b"request\0headers\0") {
        return request_headers?.get_joined(name);
    }
    if let Some(name) = path.strip_prefix(b"response\0headers\0") {
        return response_headers?.get_joined(name);
    }
    if let Some(name) = path.strip_prefix(b"response\0trailers\0") {
        return response_trailers?.get_joined(name);
    }
    let path_value = || request_headers.and_then(|h| h.get(":path"));
    let upstream = stream.upstream_request.is_some();
    match path {
        b"request\0path" => header(":path"),
        b"request\0url_path" => text(path_value()?.split('?').next().unwrap_or("")),
        b"request\0query" => {
            let query = path_value()?.split_once('?').map_or("", |(_, q)| q);
            text(query.split('#').next().unwrap_or(""))
        }
        b"request\0host" => header(":authority"),
        b"request\0method" => header(":method"),
        b"request\0scheme" => header(":scheme"),
        b"request\0referer" => header("referer"),
        b"request\0useragent" => header("user-agent"),
        b"request\0id" => header("x-request-id"),
        b"request\0headers" => Some(request_headers?.to_wire_joined()),
        b"request\0protocol" => text(&request.protocol),
        b"request\0time" => int(stream.start_ns),
        b"request\0size" => {
            let declared = request_headers
                .and_then(|h| h.get("content-length"))
                .and_then(|v| v.parse::<i64>().ok());
            int(declared.unwrap_or(if stream.request_body_read {
                request.body.len() as i64
            } else {
                0
            }))
        }
        // Envoy marks the request complete only when the stream ends.
        b"request\0duration" if stream.access_log => int(now_ns.saturating_sub(stream.start_ns)),
        b"response\0code" => int(i64::from(response?.status())),
        b"response\0code_details" => stream.details.as_deref().and_then(text),
        b"response\0flags" => int(stream.flags as i64),
        b"response\0grpc_status" => {
            let from = |map: Option<&HeaderMap>| {
                map.and_then(|m| m.get("grpc-status"))
                    .and_then(|v| v.parse::<i64>().ok())
            };
            let status = from(response_trailers)
                .or_else(|| from(response_headers))
                .or_else(|| response.map(|r| grpc_status_of_http(r.status())))?;
            int(status)
        }
        b"response\0headers" => Some(response_headers?.to_wire_joined()),
        b"response\0trailers" => Some(response_trailers?.to_wire_joined()),
        // Bytes sent downstream so far: the body counts once it went through the filter.
        b"response\0size" => int(if stream.access_log {
            response.map_or(0, |r| r.body.len() as i64)
        } else {
            stream.response_passed as i64
        }),
        b"source\0address" => text(&request.source),
        b"source\0port" => port(&request.source).and_then(int),
        b"destination\0address" => text(&request.destination),
        b"destination\0port" => port(&request.destination).and_then(int),
        b"connection\0mtls" => Some(vec![0]),
        b"connection\0requested_server_name" => text(""),
        b"connection\0id" | b"connection_id" => int(stream.connection_id as i64),
        b"metadata" => Some(Vec::new()),
        b"upstream\0address" if upstream => text(&plugin.upstream_address),
        b"upstream\0port" if upstream => port(&plugin.upstream_address).and_then(int),
        b"upstream\0local_address" if upstream => text(&plugin.upstream_local_address),
        b"upstream\0transport_failure_reason" if upstream => text(""),
        b"upstream\0request_attempt_count" if upstream => int(1),
        b"xds\0cluster_name" if stream.routed => text(&plugin.cluster_name),
        b"xds\0route_name" if stream.routed => text(&plugin.route_name),
        b"xds\0virtual_host_name" if stream.routed => text(&plugin.virtual_host_name),
        b"xds\0cluster_metadata" | b"xds\0route_metadata" if stream.routed => Some(Vec::new()),
        b"xds\0listener_direction" => int(plugin.listener_direction),
        b"xds\0listener_metadata" | b"xds\0filter_chain_name" => Some(Vec::new()),
        _ => None,
    }
}

fn port(address: &str) -> Option<i64> {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}
