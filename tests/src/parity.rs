//! Differential runs of the two builds of a filter ([`Backend`](crate::Backend)): the same
//! requests through the same config on each, compared as a client, the upstream and an
//! operator see them. What differs by nature between two Envoy processes (the date, the
//! request id Envoy draws, the upstream's timing header) is left out, and headers are
//! compared as a sorted list: their order is not something a client can rely on.

use crate::http1::{Request, Response};
use crate::stats::Stats;
use crate::Backend;

/// Headers that differ between any two Envoy runs, whatever the filters do.
pub const VOLATILE: &[&str] = &["date", "x-request-id", "x-envoy-upstream-service-time"];

/// A response as a client sees it: status, headers (sorted, names lowercased, volatile ones
/// left out) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The status code.
    pub status: u16,
    /// The headers, sorted.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

/// What a client sees of `response`.
pub fn seen(response: &Response) -> Seen {
    Seen {
        status: response.status,
        headers: comparable(&response.headers),
        body: response.text(),
    }
}

/// A request as the upstream received it: method, path and headers (sorted, volatile ones
/// left out, and `host`, which names each run's own upstream port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The headers, sorted.
    pub headers: Vec<(String, String)>,
}

/// What the upstream saw of `request`.
pub fn forwarded(request: &Request) -> Forwarded {
    let mut headers = comparable(&request.headers);
    headers.retain(|(k, _)| k != "host");
    Forwarded {
        method: request.method.clone(),
        path: request.path.clone(),
        headers,
    }
}

fn comparable(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
        .collect();
    out.sort();
    out
}

/// Where `/stats/prometheus` prints a native module's metric: Envoy keeps dynamic modules'
/// metrics in the `dynamicmodulescustom` namespace and, unlike Wasm's `wasmcustom`, prints it
/// (`dynamicmodulescustom.<name>` in `/stats`).
pub const NATIVE_METRIC_PREFIX: &str = "envoy_dynamicmodulescustom_";

/// The Prometheus name of the filter metric `name` on `backend`.
pub fn metric_name(backend: Backend, name: &str) -> String {
    match backend {
        Backend::Wasm => name.to_owned(),
        Backend::Native => format!("{NATIVE_METRIC_PREFIX}{name}"),
    }
}

/// Every sample whose name (the native namespace left out) starts with `prefix` (a filter's
/// metrics, `meshward_...`), as `name{labels} value` lines, sorted: the two builds must
/// report the same.
pub fn metrics(stats: &Stats, prefix: &str) -> Vec<String> {
    let mut lines: Vec<String> = stats
        .samples()
        .iter()
        .map(|s| {
            (
                s.name.strip_prefix(NATIVE_METRIC_PREFIX).unwrap_or(&s.name),
                s,
            )
        })
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, s)| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("{name}{{{}}} {}", labels.join(","), s.value)
        })
        .collect();
    lines.sort();
    lines
}
