//! The harness against the real Envoy 1.40: the same scenarios, driven by the probe fixture
//! (`harness/fixtures/probe`, its phase commands in `src/trace.rs`), run in the harness and
//! in one Envoy from `.venv`, and compared call by call: the status and bytes each host call
//! returned, then the response the client got, the request the upstream got, and the
//! probe's counters. A scenario whose outcomes differ fails the test, naming the call.
//!
//! One Envoy serves every scenario: a listener per failure policy and per scenario whose
//! trap leaves its VM dead, each with its own VM id (as separate VMs in the harness).
//!
//! What is not compared, and why:
//! - values that are random or time-dependent in Envoy: `request.duration` and
//!   `request.time` values (whether they are found is compared), connection ids (only
//!   which requests share one), `x-envoy-upstream-service-time` values;
//! - headers added after the filters saw the message: `date` (the connection manager),
//!   `x-envoy-expected-rq-timeout-ms` (the router, on the upstream request), the
//!   downstream `content-length`/`connection` framing of a local reply to gRPC;
//! - the upstream request's pseudo-headers: Envoy's HTTP/1 codec sends `:authority` as
//!   `host` and the others in the request line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use meshward_harness::{wasm_path, Host, HostBuilder, LogLevel, MetricValue, StreamState};
use meshward_tests::{Envoy, EnvoyConfig, Reply, Upstream};
use serde_json::{json, Value};

/// Headers in order, lowercase names.
type Headers = Vec<(String, String)>;

/// The tick period the probe asks for (`park` waits for a tick).
const TICK_MS: u64 = 100;
/// The upstream's answer to every request.
fn upstream_reply() -> Reply {
    Reply::new(200)
        .with_header("x-up", "a")
        .with_header("x-up", "b")
        .with_header("cache-control", "no-cache")
        .with_header("cache-control", "max-age=1")
        .with_body("hello from upstream")
}

/// A listener of the Envoy and the harness host that stands for it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Listener {
    /// `FAIL_CLOSED`, shared by the scenarios that leave the VM alive.
    Main,
    /// `FAIL_CLOSED`, one per trap scenario, so each trap finds a live VM.
    Trap(&'static str),
    /// `FAIL_RELOAD`, one per trap scenario.
    Reload(&'static str),
}

impl Listener {
    fn name(self) -> String {
        match self {
            Self::Main => "main".into(),
            Self::Trap(phase) => format!("trap-{phase}"),
            Self::Reload(phase) => format!("reload-{phase}"),
        }
    }

    fn policy(self) -> &'static str {
        match self {
            Self::Reload(_) => "FAIL_RELOAD",
            _ => "FAIL_CLOSED",
        }
    }
}

/// One request of a scenario.
#[derive(Clone, Debug)]
struct Send {
    tag: String,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    probe: String,
}

fn send(tag: &str, probe: &[&str]) -> Send {
    Send {
        tag: tag.to_string(),
        method: "GET",
        path: "/diff/path?q=1",
        headers: Vec::new(),
        body: "",
        probe: probe.join(","),
    }
}

impl Send {
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    fn body(mut self, body: &'static str) -> Self {
        self.body = body;
        self
    }

    /// The request line and headers as the client sends them, in order.
    fn wire_headers(&self) -> Vec<(String, String)> {
        let mut out = vec![("host".to_string(), "diff.test".to_string())];
        let bodiless = matches!(self.method, "GET" | "HEAD" | "DELETE");
        if !self.body.is_empty() || !bodiless {
            out.push(("content-length".into(), self.body.len().to_string()));
        }
        out.push(("x-request-id".into(), format!("rid-{}", self.tag)));
        out.push(("x-probe-tag".into(), self.tag.clone()));
        out.push(("x-probe".into(), self.probe.clone()));
        for (n, v) in &self.headers {
            out.push(((*n).to_string(), (*v).to_string()));
        }
        out
    }
}

/// Requests sent one after the other on one connection, to one listener.
struct Scenario {
    listener: Listener,
    sends: Vec<Send>,
    /// The probe counters whose values are compared.
    counters: Vec<&'static str>,
}

fn scenario(listener: Listener, sends: Vec<Send>) -> Scenario {
    Scenario {
        listener,
        sends,
        counters: Vec::new(),
    }
}

/// Each property read in every phase of one request.
fn property_reads(props: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for phase in ["rqh", "rsh", "rsb", "log"] {
        for p in props {
            out.push(format!("{phase}>prop:{p}"));
        }
    }
    out
}

fn scenarios() -> Vec<Scenario> {
    let props = [
        "request.path",
        "request.url_path",
        "request.query",
        "request.method",
        "request.host",
        "request.headers.x-dup",
        "request.headers.user-agent",
        "request.useragent",
        "request.id",
        "request.protocol",
        "request.size",
        "request.duration",
        "response.code",
        "response.headers.x-up",
        "response.headers.cache-control",
        "response.size",
        "response.grpc_status",
        "response.code_details",
        "response.flags",
        "xds.cluster_name",
        "xds.route_name",
        "xds.virtual_host_name",
        "xds.node.id",
        "xds.listener_direction",
        "node.id",
        "cluster_name",
        "route_name",
        "listener_direction",
        "upstream.address",
        "upstream.port",
        "plugin_name",
        "plugin_root_id",
        "plugin_vm_id",
        "connection.mtls",
    ];
    let matrix = property_reads(&props);
    let matrix: Vec<&str> = matrix.iter().map(String::as_str).collect();
    let mut list = vec![
        // The property matrix, with a repeated header.
        scenario(
            Listener::Main,
            vec![send("props", &matrix)
                .header("x-dup", "1")
                .header("x-dup", "2")
                .header("user-agent", "ua1")],
        ),
        // Two requests on one keep-alive connection: the same connection id.
        scenario(
            Listener::Main,
            vec![
                send(
                    "conn1",
                    &["rqh>prop:connection_id", "rqh>prop:connection.id"],
                ),
                send(
                    "conn2",
                    &["rqh>prop:connection_id", "log>prop:connection.id"],
                ),
            ],
        ),
        // set_property: built-in names win; a value is found by its one segment only.
        scenario(
            Listener::Main,
            vec![send(
                "setprop",
                &[
                    "rqh>setprop:diff_state=one",
                    "rqh>prop:diff_state",
                    "rqh>setprop:diff.two=v",
                    "rqh>prop:diff.two",
                    "rqh>prop:diff",
                    "rqh>setprop:request.path=/shadow",
                    "rqh>prop:request.path",
                    "rqh>setprop:plugin_name=other",
                    "rqh>prop:plugin_name",
                    "rqh>setprop:diff_state=two",
                    "rsh>prop:diff_state",
                    "log>prop:diff_state",
                ],
            )],
        ),
        // Header maps: duplicates from the client, reads, adds, and the response side.
        scenario(
            Listener::Main,
            vec![send(
                "headers",
                &[
                    "rqh>get:0:authorization",
                    "rqh>get:0:user-agent",
                    "rqh>get:0:x-custom",
                    "rqh>get:0:cookie",
                    "rqh>pairs:0",
                    "rqh>add:0:user-agent=added",
                    "rqh>add:0:x-custom=c2",
                    "rqh>add:0:via=v1",
                    "rqh>add:0:via=v2",
                    "rqh>get:0:user-agent",
                    "rqh>pairs:0",
                    "rqh>set:0:x-custom=c3",
                    "rqh>del:0:cookie",
                    "rqh>get:2:x-up",
                    "rqh>get:1:x-any",
                    "rsh>get:0:user-agent",
                    "rsh>pairs:0",
                    "rsh>get:2:x-up",
                    "rsh>get:2:cache-control",
                    "rsh>add:2:x-up=c",
                    "rsh>add:2:vary=accept",
                    "rsh>add:2:vary=origin",
                    "rsh>add:2:set-cookie=a=1",
                    "rsh>add:2:set-cookie=b=2",
                    "rsh>pairs:2",
                    "rsb>get:2:x-up",
                    "rsb>add:2:x-late=1",
                    "log>get:0:user-agent",
                    "log>get:2:x-up",
                    "log>add:2:x-log=1",
                    "log>get:1:x-any",
                ],
            )
            .header("authorization", "Bearer a")
            .header("authorization", "Bearer b")
            .header("user-agent", "ua1")
            .header("user-agent", "ua2")
            .header("x-custom", "c1")
            .header("x-custom", "c1b")
            .header("cookie", "a=1")
            .header("cookie", "b=2")],
        ),
        // Pause the response headers; a tick continues them and still uses the map.
        scenario(
            Listener::Main,
            vec![send(
                "park",
                &[
                    "rsh>park",
                    "tick>get:2:x-up",
                    "tick>add:2:x-tick=1",
                    "tick>get:0:x-probe-tag",
                    "rsb>args",
                ],
            )],
        ),
        // Body and trailer edits at the end of the stream.
        scenario(
            Listener::Main,
            vec![send(
                "bodies",
                &[
                    "rqb>args",
                    "rqb>buf:0",
                    "rqb>setbuf:0:0:3=AB",
                    "rqb>setbuf:0:2:1=Z",
                    "rqb>buf:0",
                    "rsb>args",
                    "rsb>setbuf:1:0:5=XY",
                    "rsb>setbuf:1:3:1=Q",
                    "rsb>setbuf:1:100:0=!",
                    "rsb>get:3:x-t",
                    "rsb>add:3:x-t=1",
                    "rsb>get:3:x-t",
                    "rsb>buf:1",
                    "rst>args",
                    "log>prop:response.size",
                ],
            )
            .method("POST")
            .body("request body here")],
        ),
        // Local replies to a plain, a HEAD and a gRPC request.
        scenario(
            Listener::Main,
            vec![send(
                "reply-plain",
                &[
                    "rqh>reply:403",
                    "rsh>pairs:2",
                    "rsb>buf:1",
                    "log>prop:response.code",
                    "log>prop:response.code_details",
                ],
            )],
        ),
        scenario(
            Listener::Main,
            vec![send("reply-head", &["rqh>reply:403", "rsh>pairs:2", "rsb>args"]).method("HEAD")],
        ),
        scenario(
            Listener::Main,
            vec![send(
                "reply-grpc",
                &[
                    "rqh>reply:403",
                    "rsh>pairs:2",
                    "rsb>args",
                    "log>prop:response.grpc_status",
                ],
            )
            .method("POST")
            .header("content-type", "application/grpc")],
        ),
        scenario(
            Listener::Main,
            vec![
                send("reply-grpc-status", &["rqh>reply:503:9", "rsh>pairs:2"])
                    .method("POST")
                    .header("content-type", "application/grpc"),
            ],
        ),
        // A headers callback answering 2 (`ContinueAndEndStream`) lets the stream go on.
        scenario(
            Listener::Main,
            vec![send(
                "return-2",
                &["rqh>ret:2", "rsh>ret:2", "log>prop:response.code"],
            )],
        ),
        // Closing the stream; after a local reply the details stay the reply's.
        scenario(Listener::Main, vec![send("close-rsh", &["rsh>close"])]),
        scenario(
            Listener::Main,
            vec![send(
                "reply-close",
                &[
                    "rqh>reply:401",
                    "rqh>close",
                    "log>prop:response.code_details",
                ],
            )],
        ),
        // Traps under FAIL_CLOSED, one VM each; the next request finds the VM dead.
        scenario(
            Listener::Trap("rqh"),
            vec![
                send("trap-rqh", &["rqh>trap"]),
                send("after-rqh", &["rqh>args"]),
            ],
        ),
        scenario(
            Listener::Trap("rsh"),
            vec![
                send("trap-rsh", &["rsh>trap"]),
                send("after-rsh", &["rqh>args"]),
            ],
        ),
        scenario(
            Listener::Trap("rqb"),
            vec![
                send("trap-rqb", &["rqb>trap"]).method("POST").body("data"),
                send("after-rqb", &["rqh>args"]),
            ],
        ),
        scenario(Listener::Trap("rsb"), vec![send("trap-rsb", &["rsb>trap"])]),
        scenario(
            Listener::Trap("log"),
            vec![
                send("trap-log", &["log>trap"]),
                send("after-log", &["rqh>args"]),
            ],
        ),
        // FAIL_RELOAD: the next request gets a new VM, whatever phase trapped.
        scenario(
            Listener::Reload("rqh"),
            vec![
                send("reload-trap-rqh", &["rqh>count:diff_reload", "rqh>trap"]),
                send("reload-after-rqh", &["rqh>count:diff_reload", "rqh>args"]),
            ],
        ),
        scenario(
            Listener::Reload("rsh"),
            vec![
                send("reload-trap-rsh", &["rsh>trap"]),
                send("reload-after-rsh", &["rqh>args"]),
            ],
        ),
        scenario(
            Listener::Reload("rsb"),
            vec![
                send("reload-trap-rsb", &["rsb>trap"]),
                send("reload-after-rsb", &["rqh>args"]),
            ],
        ),
        scenario(
            Listener::Reload("log"),
            vec![
                send("reload-trap-log", &["log>trap"]),
                send("reload-after-log", &["rqh>args"]),
            ],
        ),
    ];
    list.push(Scenario {
        listener: Listener::Main,
        sends: vec![send(
            "metrics",
            &[
                "rqh>metric2:diff_twice",
                "rsh>count:diff_once",
                "rsh>count:diff_tag.region.eu-west-1.reason.latency.hits",
                "rsh>count:diff_tag.region.us-east-1.errors",
            ],
        )],
        counters: vec![
            "diff_twice",
            "diff_once",
            "diff_tag.region.eu-west-1.reason.latency.hits",
            "diff_tag.region.us-east-1.errors",
        ],
    });
    list
}

/// What one request came to, in a form both hosts can give.
#[derive(Debug, Default, PartialEq)]
struct Observed {
    /// Each traced call: `phase command -> result`, in order.
    calls: Vec<String>,
    /// `status`, or `reset`.
    status: String,
    /// Response headers (lowercase, in order), without those added after the filters.
    response_headers: Vec<(String, String)>,
    response_body: String,
    /// The upstream's request: headers (pseudo-headers dropped, `host` for `:authority`)
    /// and body; `None` if it never arrived.
    upstream: Option<(Vec<(String, String)>, String)>,
}

/// Headers a host adds after the filters, or whose value is random.
fn comparable_response_header(name: &str) -> bool {
    !matches!(
        name,
        "date"
            | "connection"
            | "content-length"
            | "transfer-encoding"
            | "x-envoy-upstream-service-time"
    )
}

/// Masks values that legitimately differ, keeping found/not found.
fn normalize_call(line: &str, connections: &mut Vec<String>) -> String {
    let Some((call, result)) = line.split_once(" -> ") else {
        return line.to_string();
    };
    let masked_prop = ["prop:request.duration", "prop:request.time"];
    if masked_prop.iter().any(|p| call.ends_with(p)) && result.starts_with("ok:") {
        return format!("{call} -> ok:*");
    }
    if (call.ends_with("prop:connection_id") || call.ends_with("prop:connection.id"))
        && result.starts_with("ok:")
    {
        let index = match connections.iter().position(|c| c == result) {
            Some(i) => i,
            None => {
                connections.push(result.to_string());
                connections.len() - 1
            }
        };
        return format!("{call} -> connection#{index}");
    }
    if call.contains(" pairs:") {
        let masked: Vec<String> = result
            .trim_start_matches("ok:")
            .split(';')
            .map(|pair| match pair.split_once('=') {
                Some((n, _)) if n == "x-envoy-upstream-service-time" => format!("{n}=*"),
                _ => pair.to_string(),
            })
            .collect();
        return format!("{call} -> ok:{}", masked.join(";"));
    }
    line.to_string()
}

/// Extracts the probe's traces for `tag` from log lines.
fn traces<'a>(lines: impl Iterator<Item = &'a str>, tag: &str) -> Vec<String> {
    let prefix = format!("PROBE|{tag}|");
    lines
        .filter_map(|line| line.find(&prefix).map(|at| &line[at + prefix.len()..]))
        .filter(|rest| !rest.starts_with("end|"))
        .map(|rest| {
            let mut parts = rest.splitn(3, '|');
            let phase = parts.next().unwrap_or_default();
            let command = parts.next().unwrap_or_default();
            let result = parts.next().unwrap_or_default();
            format!("{phase} {command} -> {result}")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Envoy

/// `stats_config.stats_tags` of the Envoy under test, given to the harness too: the probe's
/// `diff_tag.*` counters come out of `/stats/prometheus` with these tags lifted out, and
/// the harness's `tagged_metrics` must show the same.
const STATS_TAGS: [(&str, &str); 2] = [
    (
        "diff_region",
        r"^wasmcustom\.diff_tag\.region\.(([a-z0-9_-]+)\.)",
    ),
    (
        "diff_reason",
        r"^wasmcustom\.diff_tag\.region\.[a-z0-9_-]+\.(reason\.([a-z_]+)\.)hits$",
    ),
];

/// A metric as `/stats/prometheus` shows it: name, labels sorted, value.
type PromLine = (String, Vec<(String, String)>, String);

/// The `diff_tag` lines of Envoy's `/stats/prometheus`.
fn prometheus_lines(text: &str) -> BTreeSet<PromLine> {
    text.lines()
        .filter(|l| l.starts_with("diff_tag"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let mut labels: Vec<(String, String)> = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            labels.sort();
            Some((name.to_string(), labels, value.to_string()))
        })
        .collect()
}

/// The same lines from the harness's tagged view of its metrics.
fn harness_prometheus_lines(host: &Host) -> BTreeSet<PromLine> {
    host.tagged_metrics()
        .into_iter()
        .filter_map(|m| {
            let name = m.name.strip_prefix("wasmcustom.")?;
            if !name.starts_with("diff_tag") {
                return None;
            }
            let name: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let MetricValue::Counter(value) = m.value else {
                return None;
            };
            let mut labels = m.tags;
            labels.sort();
            Some((name, labels, value.to_string()))
        })
        .collect()
}

fn envoy_config(listeners: &[Listener]) -> EnvoyConfig {
    let listener = |l: Listener| {
        let name = l.name();
        json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000 + listener_index(listeners, l)}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name,
                    "server_header_transformation": "PASS_THROUGH",
                    "preserve_external_request_id": true,
                    "route_config": {"name": "diff", "virtual_hosts": [{
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"name": "up", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                    }]},
                    "http_filters": [
                        {
                            "name": "envoy.filters.http.wasm",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                "config": {
                                    "name": format!("probe-{name}"),
                                    "root_id": format!("probe-{name}"),
                                    "configuration": {
                                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                                        "value": format!("tick_ms={TICK_MS}"),
                                    },
                                    "vm_config": {
                                        "vm_id": format!("diff-{name}"),
                                        "runtime": "envoy.wasm.runtime.v8",
                                        "code": {"local": {"filename": "out/fixture-probe.wasm"}},
                                    },
                                    "failure_policy": l.policy(),
                                },
                            },
                        },
                        {
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                        },
                    ],
                },
            }]}],
        })
    };
    let value = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
        "stats_config": {"stats_tags": STATS_TAGS.iter().map(|(tag, regex)| json!({"tag_name": tag, "regex": regex})).collect::<Vec<Value>>()},
        "static_resources": {
            "listeners": listeners.iter().map(|l| listener(*l)).collect::<Vec<Value>>(),
            "clusters": [{
                "name": "upstream",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "upstream",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}],
                },
            }],
        },
    });
    EnvoyConfig::from_yaml(&value.to_string()).expect("the config is valid JSON")
}

fn listener_index(listeners: &[Listener], l: Listener) -> u16 {
    listeners.iter().position(|x| *x == l).unwrap_or(0) as u16
}

/// One response read off a connection, or `None` if the connection was reset or closed.
fn read_response(stream: &mut TcpStream, head_only: bool) -> Option<(u16, Headers, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let length = if head_only { 0 } else { length };
    let mut body = buf[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((status, headers, body))
}

/// Sends a scenario's requests on one connection; returns what each got.
fn run_in_envoy(addr: SocketAddr, sends: &[Send]) -> Vec<(String, Headers, String)> {
    let mut out = Vec::new();
    let mut stream = TcpStream::connect(addr).expect("Envoy accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout can be set");
    for send in sends {
        let mut wire = format!("{} {} HTTP/1.1\r\n", send.method, send.path);
        for (n, v) in send.wire_headers() {
            wire.push_str(&format!("{n}: {v}\r\n"));
        }
        wire.push_str("\r\n");
        wire.push_str(send.body);
        if stream.write_all(wire.as_bytes()).is_err() {
            out.push(("reset".to_string(), Vec::new(), String::new()));
            continue;
        }
        match read_response(&mut stream, send.method == "HEAD") {
            Some((status, headers, body)) => {
                let closed = headers
                    .iter()
                    .any(|(n, v)| n == "connection" && v == "close");
                out.push((
                    status.to_string(),
                    headers,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                if closed {
                    stream = TcpStream::connect(addr).expect("Envoy accepts connections");
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .expect("a read timeout can be set");
                }
            }
            None => {
                out.push(("reset".to_string(), Vec::new(), String::new()));
                stream = TcpStream::connect(addr).expect("Envoy accepts connections");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("a read timeout can be set");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The harness

fn harness_host(listener: Listener, upstream: SocketAddr) -> Host {
    let name = listener.name();
    let builder: HostBuilder = Host::builder(wasm_path("fixture-probe"))
        .config(format!("tick_ms={TICK_MS}"))
        .plugin_name(&format!("probe-{name}"))
        .root_id(&format!("probe-{name}"))
        .vm_id(&format!("diff-{name}"))
        .cluster_name("upstream")
        .route_name("up")
        .virtual_host_name("all")
        .node_id("")
        .node_cluster("")
        .upstream_address(&upstream.to_string());
    let builder = STATS_TAGS
        .iter()
        .fold(builder, |b, (tag, regex)| b.stats_tag(tag, regex));
    let builder = match listener {
        Listener::Reload(_) => builder.fail_reload(Duration::from_secs(1)),
        _ => builder.fail_closed(),
    };
    builder.build().expect("the probe loads")
}

fn harness_request(send: &Send, connection: u64) -> meshward_harness::Request {
    let mut request = meshward_harness::Request::new(send.method, send.path).connection(connection);
    for (n, v) in send.wire_headers() {
        request = request.header(&n, &v);
    }
    request.body(send.body)
}

fn harness_reply() -> meshward_harness::Response {
    let reply = upstream_reply();
    let mut response = meshward_harness::Response::new(reply.status)
        .header("content-length", &reply.body.len().to_string());
    for (n, v) in &reply.headers {
        response = response.header(n, v);
    }
    response.body(reply.body.clone())
}

/// Runs one request in the harness, step by step so that ticks can continue it.
fn run_in_harness(host: &Host, send: &Send, connection: u64) -> Observed {
    let worker = host.worker(0);
    let stream = worker.start(harness_request(send, connection));
    if stream.state() == StreamState::AwaitingUpstream {
        stream.respond(meshward_harness::Upstream::reply(harness_reply()));
    }
    for _ in 0..5 {
        if stream.state() == StreamState::Complete {
            break;
        }
        host.advance(Duration::from_millis(TICK_MS));
    }
    let outcome = stream.finish();
    let status = if outcome.reset {
        "reset".to_string()
    } else {
        outcome.response.status().to_string()
    };
    let response_headers = if outcome.reset {
        Vec::new()
    } else {
        outcome
            .response
            .headers()
            .iter()
            .filter(|(n, _)| !n.starts_with(':') || *n == ":status")
            .filter(|(n, _)| *n != ":status")
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let response_body = if outcome.reset || send.method == "HEAD" {
        String::new()
    } else {
        outcome.response.body_text()
    };
    let upstream = outcome.upstream_request.as_ref().map(|r| {
        let mut headers = Vec::new();
        for (n, v) in r.headers().iter() {
            match n {
                ":authority" => headers.insert(0, ("host".to_string(), v.to_string())),
                _ if n.starts_with(':') => {}
                _ => headers.push((n.to_string(), v.to_string())),
            }
        }
        (headers, r.body_text())
    });
    Observed {
        calls: Vec::new(),
        status,
        response_headers,
        response_body,
        upstream,
    }
}

// ---------------------------------------------------------------------------------------

fn compare(tag: &str, harness: &Observed, envoy: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    let longest = harness.calls.len().max(envoy.calls.len());
    for i in 0..longest {
        let h = harness.calls.get(i).map_or("(no call)", String::as_str);
        let e = envoy.calls.get(i).map_or("(no call)", String::as_str);
        if h != e {
            problems.push(format!(
                "{tag}: call #{i} differs\n    harness: {h}\n    envoy:   {e}"
            ));
            break;
        }
    }
    if harness.status != envoy.status {
        problems.push(format!(
            "{tag}: status: harness {}, envoy {}",
            harness.status, envoy.status
        ));
    }
    if harness.response_headers != envoy.response_headers {
        problems.push(format!(
            "{tag}: response headers\n    harness: {:?}\n    envoy:   {:?}",
            harness.response_headers, envoy.response_headers
        ));
    }
    if harness.response_body != envoy.response_body {
        problems.push(format!(
            "{tag}: response body: harness {:?}, envoy {:?}",
            harness.response_body, envoy.response_body
        ));
    }
    if harness.upstream != envoy.upstream {
        problems.push(format!(
            "{tag}: upstream request\n    harness: {:?}\n    envoy:   {:?}",
            harness.upstream, envoy.upstream
        ));
    }
    problems
}

fn envoy_counters(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("wasmcustom."))
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(n, v)| Some((n.to_string(), v.trim().parse().ok()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_answers_every_probe_call_as_envoy_does() {
    let scenarios = scenarios();
    let mut listeners: Vec<Listener> = scenarios.iter().map(|s| s.listener).collect();
    listeners.sort();
    listeners.dedup();

    let upstream = Upstream::start().await.expect("the upstream starts");
    upstream.reply_with(upstream_reply());
    let config = envoy_config(&listeners).upstream(8080, upstream.port());
    let envoy = Envoy::builder(config)
        .concurrency(1)
        .start()
        .await
        .expect("Envoy starts");

    // Envoy: every scenario, on its listener's connection.
    let mut from_envoy: BTreeMap<String, Observed> = BTreeMap::new();
    for scenario in &scenarios {
        let addr = envoy
            .listener_addr(10000 + listener_index(&listeners, scenario.listener))
            .expect("each listener listens");
        let sends = scenario.sends.clone();
        let answers = tokio::task::spawn_blocking(move || run_in_envoy(addr, &sends))
            .await
            .expect("the client runs");
        for (send, (status, headers, body)) in scenario.sends.iter().zip(answers) {
            from_envoy.insert(
                send.tag.clone(),
                Observed {
                    calls: Vec::new(),
                    status,
                    response_headers: headers
                        .into_iter()
                        .filter(|(n, _)| comparable_response_header(n))
                        .collect(),
                    response_body: body,
                    upstream: None,
                },
            );
        }
    }
    // Traces of on_log and the VM's end arrive after the response: wait for every tag's.
    let tags: Vec<String> = scenarios
        .iter()
        .flat_map(|s| s.sends.iter().map(|x| x.tag.clone()))
        .collect();
    let mut log = envoy.log();
    for _ in 0..100 {
        let missing = tags
            .iter()
            .filter(|t| {
                !t.starts_with("trap-")
                    && !t.starts_with("after-")
                    && !t.starts_with("reload-trap")
                    && !t.starts_with("close")
                    && !t.starts_with("reply-close")
            })
            .any(|t| !log.contains(&format!("PROBE|{t}|end|")));
        if !missing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = envoy.log();
    }
    let received = upstream.received();
    let mut connections = Vec::new();
    for (tag, observed) in &mut from_envoy {
        observed.calls = traces(log.lines(), tag)
            .iter()
            .map(|c| normalize_call(c, &mut connections))
            .collect();
        observed.upstream = received
            .iter()
            .find(|r| {
                r.headers
                    .iter()
                    .any(|(n, v)| n == "x-probe-tag" && v == tag)
            })
            .map(|r| {
                let headers = r
                    .headers
                    .iter()
                    .filter(|(n, _)| n != "x-envoy-expected-rq-timeout-ms")
                    .cloned()
                    .collect();
                (headers, String::from_utf8_lossy(&r.body).into_owned())
            });
    }
    let stats = envoy
        .admin_get("/stats?filter=wasmcustom")
        .await
        .expect("the admin answers")
        .text();
    let envoy_metrics = envoy_counters(&stats);
    let envoy_tagged = prometheus_lines(
        &envoy
            .admin_get("/stats/prometheus")
            .await
            .expect("the admin answers")
            .text(),
    );

    // The harness: one host per listener, each scenario's requests on one connection.
    let hosts: BTreeMap<Listener, Host> = listeners
        .iter()
        .map(|l| (*l, harness_host(*l, upstream.addr())))
        .collect();
    let mut from_harness: BTreeMap<String, Observed> = BTreeMap::new();
    let mut connections = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        let host = &hosts[&scenario.listener];
        for send in &scenario.sends {
            let mut observed = run_in_harness(host, send, index as u64 + 1000);
            let lines: Vec<String> = host
                .logs()
                .into_iter()
                .filter(|e| e.level >= LogLevel::Info)
                .map(|e| e.message)
                .collect();
            observed.calls = traces(lines.iter().map(String::as_str), &send.tag)
                .iter()
                .map(|c| normalize_call(c, &mut connections))
                .collect();
            observed
                .response_headers
                .retain(|(n, _)| comparable_response_header(n));
            from_harness.insert(send.tag.clone(), observed);
        }
    }

    let mut problems = Vec::new();
    for (tag, envoy_side) in &from_envoy {
        let harness_side = &from_harness[tag];
        problems.extend(compare(tag, harness_side, envoy_side));
    }
    for scenario in &scenarios {
        let host = &hosts[&scenario.listener];
        for counter in &scenario.counters {
            let h = host.counter(counter);
            let e = envoy_metrics.get(*counter).copied();
            if h != e {
                problems.push(format!("counter {counter}: harness {h:?}, envoy {e:?}"));
            }
        }
    }
    // Stats tags: the probe's diff_tag counters as /stats/prometheus shows them.
    let harness_tagged = harness_prometheus_lines(&hosts[&Listener::Main]);
    if envoy_tagged.len() != 2 || harness_tagged != envoy_tagged {
        problems.push(format!(
            "stats tags: harness {harness_tagged:?}, envoy {envoy_tagged:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} differences between the harness and Envoy:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
