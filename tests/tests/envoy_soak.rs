//! A hostile soak of the `make run` stack (`envoy-config/meshward.yaml`, every filter, the
//! `meshward-echo` upstream) in a real Envoy 1.40 at `--concurrency 2`: for a fixed time, a
//! client answered normally throughout, hostile clients sending a bounded mix of bad
//! requests (header values that are not UTF-8, oversized headers, many duplicate headers,
//! odd methods, malformed and forged tokens, huge cookies and query strings, bytes that are
//! not UTF-8 in the path, hostile region preferences), and bursts over the rate limit.
//!
//! It requires: no Wasm VM created after start-up (a crashed VM would be replaced) and
//! none lost, only the statuses each kind of request may get, every normal request
//! answered normally, and Envoy's memory settling. It prints what it saw, memory growth
//! included. `make test` runs it for 20 s; `make soak` sets `MESHWARD_SOAK_SECS` (300).
//! All traffic goes to 127.0.0.1 (from loopback source addresses 127.0.0.2-5, so the rate
//! limit, which is per client address, tells the clients apart). Needs `make build`.

use meshward_jwt_auth::base64url;
use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::{repo_root, Envoy, EnvoyConfig};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// The environment variable that sets the soak's length in seconds (`make soak`).
const SOAK_VAR: &str = "MESHWARD_SOAK_SECS";
const DEFAULT_SECS: u64 = 20;
/// The pause between two hostile requests of one client: bounds the hostile rate to
/// about 100 requests a second per client.
const HOSTILE_PACE: Duration = Duration::from_millis(10);
/// Bursts over the rate limit (100 requests, then 50 a second, per client address).
const BURST: usize = 160;
const BURST_EVERY: Duration = Duration::from_secs(5);
/// How much Envoy's allocated memory may grow over the soak once it has settled.
const MAX_GROWTH_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

const NORMAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HOSTILE: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4)];
const BURSTER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

// The upstream.

/// `meshward-echo`, as `make run` starts it; killed when dropped.
struct Echo(Child);

impl Drop for Echo {
    fn drop(&mut self) {
        // Already gone is fine: the test only needs it stopped.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_echo() -> (Echo, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_meshward-echo"))
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let echo = Echo(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (echo, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("meshward-echo did not listen on {port}");
}

// The wire.

/// One request on its own connection from `from`: the status Envoy answered, or `None`
/// when it closed the connection without an answer.
async fn exchange(from: Ipv4Addr, to: SocketAddr, request: &[u8]) -> Option<u16> {
    let attempt = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::from((from, 0))).ok()?;
        let mut stream = socket.connect(to).await.ok()?;
        // Envoy may answer (431) and close before it has read all of an oversized request.
        let _ = stream.write_all(request).await;
        // Read until the response is complete (Envoy holds a connection it answered
        // locally open for its delayed-close timeout, 1 s, waiting for the client to close).
        let mut response = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
            }
            if is_complete(&response) {
                break;
            }
        }
        let head = response.get(..12)?;
        let text = std::str::from_utf8(head).ok()?;
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
}

/// Whether `response` holds a whole response framed by `content-length`.
fn is_complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok());
    length.is_some_and(|n| response.len() >= end + 4 + n)
}

fn request(method: &str, target: &[u8], headers: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: soak.test\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

// The mix.

/// A small deterministic generator: the same seed gives the same mix.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize, from: &[u8]) -> Vec<u8> {
        (0..len).map(|_| from[self.below(from.len())]).collect()
    }
}

const OBS_TEXT: &[u8] = b"\x80\x81\x9f\xa0\xc3\x28\xe9\xfe\xff;,= .%\"";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The demo token `make run` prints (ES256, signed by the inline key, valid until 2100).
fn demo_token() -> String {
    let config = std::fs::read_to_string(repo_root().join("envoy-config/meshward.yaml")).unwrap();
    config
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("#")
                .map(str::trim)?
                .strip_prefix("TOKEN=")
        })
        .unwrap()
        .to_string()
}

/// A forged or malformed token made from the demo token.
fn bad_token(mix: &mut Mix, valid: &str) -> Vec<u8> {
    let parts: Vec<&str> = valid.split('.').collect();
    match mix.below(8) {
        0 => {
            let mut t = valid.as_bytes().to_vec();
            let i = mix.below(t.len());
            t[i] = BASE64[mix.below(BASE64.len())];
            if t == valid.as_bytes() {
                t.push(b'A');
            }
            t
        }
        1 => {
            let header = base64url::encode(br#"{"alg":"none","typ":"JWT"}"#);
            format!("{header}.{}.", parts[1]).into_bytes()
        }
        2 => {
            let header = base64url::encode(br#"{"alg":"HS256","kid":"ec-p256"}"#);
            format!("{header}.{}.{}", parts[1], parts[2]).into_bytes()
        }
        3 => {
            let claims = base64url::encode(br#"{"iss":"https://issuer.meshward.test","sub":"admin","scope":"admin","exp":4102444800}"#);
            format!("{}.{claims}.{}", parts[0], parts[2]).into_bytes()
        }
        4 => {
            let len = 1 + mix.below(200);
            mix.bytes(len, BASE64)
        }
        5 => format!("{valid}.{valid}").into_bytes(),
        6 => {
            let len = 6000 + mix.below(3000);
            mix.bytes(len, b"ABCxyz09-_.")
        }
        _ => {
            let mut t = valid.as_bytes().to_vec();
            t.extend(mix.bytes(4, OBS_TEXT));
            t
        }
    }
}

/// The kinds of hostile request, each with the statuses it may get. Every kind but the
/// token ones may also meet the rate limit (429); the oversized ones may be cut off.
const KINDS: &[(&str, &[u16], bool)] = &[
    ("non-utf8-headers", &[200, 429], false),
    ("oversized-header", &[431], true),
    ("duplicate-headers", &[200, 429], false),
    ("too-many-headers", &[431], true),
    ("odd-method", &[200, 400, 404, 405, 429, 501], false),
    ("forged-token", &[401], false),
    ("huge-cookie", &[200, 429], false),
    ("huge-query", &[200, 429], false),
    ("huge-query-jwt", &[401], false),
    ("non-utf8-path", &[200, 400, 404, 429], false),
    ("region-preference", &[200, 429], false),
];

fn hostile(mix: &mut Mix, kind: usize, token: &str) -> Vec<u8> {
    let obs = |mix: &mut Mix, n: usize| mix.bytes(n, OBS_TEXT);
    match KINDS[kind].0 {
        "non-utf8-headers" => {
            let mut auth = b"Bearer ".to_vec();
            auth.extend(obs(mix, 20));
            request(
                "GET",
                b"/",
                &[
                    ("authorization", auth),
                    ("cookie", obs(mix, 30)),
                    ("x-forwarded-for", obs(mix, 16)),
                    ("x-region-preference", obs(mix, 12)),
                    ("x-session-id", obs(mix, 12)),
                    ("x-jwt-sub", obs(mix, 8)),
                    ("user-agent", obs(mix, 24)),
                ],
            )
        }
        "oversized-header" => request(
            "GET",
            b"/",
            &[("x-big", vec![b'a'; 70 * 1024 + mix.below(8192)])],
        ),
        "duplicate-headers" => {
            let mut headers: Vec<(&str, Vec<u8>)> = (0..80)
                .map(|i| ("x-dup", format!("{i}").into_bytes()))
                .collect();
            headers.extend((0..6).map(|i| ("cookie", format!("c{i}=v{i}; jwt=x").into_bytes())));
            headers.extend(
                (0..4).map(|i| ("x-forwarded-for", format!("10.0.0.{i}, ::1").into_bytes())),
            );
            request("GET", b"/", &headers)
        }
        "too-many-headers" => {
            let headers: Vec<(&str, Vec<u8>)> = (0..150)
                .map(|i| ("x-dup", format!("{i}").into_bytes()))
                .collect();
            request("GET", b"/", &headers)
        }
        "odd-method" => {
            let methods = [
                "PURGE", "FOO", "M-SEARCH", "PROPFIND", "TRACE", "OPTIONS", "DELETE", "PATCH",
                "LINK", "get",
            ];
            request(
                methods[mix.below(methods.len())],
                b"/odd",
                &[("origin", b"https://a.test".to_vec())],
            )
        }
        "forged-token" => {
            let token = bad_token(mix, token);
            match mix.below(3) {
                0 => request(
                    "GET",
                    b"/jwt/items",
                    &[("authorization", [b"Bearer ".as_slice(), &token].concat())],
                ),
                1 => {
                    let auth = [b"Bearer ".as_slice(), token.as_slice()].concat();
                    request(
                        "GET",
                        b"/jwt/admin",
                        &[("authorization", auth.clone()), ("authorization", auth)],
                    )
                }
                _ => request(
                    "GET",
                    b"/jwt/items",
                    &[("authorization", [b"bEaReR   ".as_slice(), &token].concat())],
                ),
            }
        }
        "huge-cookie" => {
            let cookie = format!(
                "a=1; jwt={}; b={}",
                "x".repeat(20_000),
                "y".repeat(20_000 + mix.below(4000))
            );
            request("GET", b"/", &[("cookie", cookie.into_bytes())])
        }
        "huge-query" | "huge-query-jwt" => {
            let base: &[u8] = if KINDS[kind].0 == "huge-query" {
                b"/?"
            } else {
                b"/jwt/items?"
            };
            let mut target = base.to_vec();
            for i in 0..(2000 + mix.below(500)) {
                target.extend_from_slice(format!("k{i}=%{:02X}%zz&", mix.below(256)).as_bytes());
            }
            target.extend_from_slice(b"jwt=a.b.c&jwt=d.e.f");
            request("GET", &target, &[])
        }
        "non-utf8-path" => {
            let mut target = b"/p/".to_vec();
            target.extend(obs(mix, 8).into_iter().filter(|b| !b" \"".contains(b)));
            request("GET", &target, &[])
        }
        _ => {
            let pick = |mix: &mut Mix| {
                ["eu-west-1", "US-EAST-1", "mars-1", "", " ,,", "ap-south-1"][mix.below(6)]
                    .to_string()
            };
            let preference = (0..40).map(|_| pick(mix)).collect::<Vec<_>>().join(",");
            request(
                "GET",
                b"/regions/x",
                &[
                    ("x-region-preference", preference.into_bytes()),
                    ("x-latency-sensitive", obs(mix, 3)),
                    ("x-session-id", obs(mix, 40)),
                    ("x-meshward-cluster", b"region-us-east-1".to_vec()),
                ],
            )
        }
    }
}

// Envoy's statistics.

/// Envoy's `/stats` text as name -> value (counters and gauges only).
async fn stats(envoy: &Envoy) -> BTreeMap<String, f64> {
    let text = envoy.admin_get("/stats").await.unwrap().text();
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The Wasm VM statistics: `wasm.envoy.wasm.runtime.v8.created` and `.active`.
fn vms(stats: &BTreeMap<String, f64>) -> (f64, f64) {
    let get = |name: &str| {
        stats
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("Envoy reports no {name}"))
    };
    (
        get("wasm.envoy.wasm.runtime.v8.created"),
        get("wasm.envoy.wasm.runtime.v8.active"),
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
}

// The clients.

#[derive(Default)]
struct Seen {
    /// kind -> status (0: closed without an answer) -> count.
    statuses: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    /// kind -> the longest exchange.
    slowest: BTreeMap<&'static str, Duration>,
    /// What should not have happened.
    wrong: Vec<String>,
}

impl Seen {
    fn record(
        &mut self,
        kind: &'static str,
        status: Option<u16>,
        took: Duration,
        allowed: &[u16],
        may_close: bool,
    ) {
        let slowest = self.slowest.entry(kind).or_default();
        *slowest = (*slowest).max(took);
        *self
            .statuses
            .entry(kind)
            .or_default()
            .entry(status.unwrap_or(0))
            .or_default() += 1;
        let fine = match status {
            Some(s) => allowed.contains(&s),
            None => may_close,
        };
        if !fine && self.wrong.len() < 20 {
            self.wrong.push(format!("{kind}: {status:?}"));
        }
    }
}

async fn normal_client(to: SocketAddr, token: String, until: Instant, seen: Arc<Mutex<Seen>>) {
    let bearer = format!("Bearer {token}").into_bytes();
    let requests: [(&'static str, Vec<u8>); 3] = [
        ("normal /", request("GET", b"/", &[])),
        (
            "normal /jwt/items",
            request("GET", b"/jwt/items", &[("authorization", bearer)]),
        ),
        (
            "normal /regions/",
            request(
                "GET",
                b"/regions/a",
                &[("x-region-preference", b"us-east-1".to_vec())],
            ),
        ),
    ];
    while Instant::now() < until {
        for (kind, bytes) in &requests {
            let sent = Instant::now();
            let status = exchange(NORMAL, to, bytes).await;
            seen.lock()
                .unwrap()
                .record(kind, status, sent.elapsed(), &[200], false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn hostile_client(
    from: Ipv4Addr,
    to: SocketAddr,
    seed: u64,
    token: String,
    until: Instant,
    seen: Arc<Mutex<Seen>>,
) {
    let mut mix = Mix(seed);
    while Instant::now() < until {
        let kind = mix.below(KINDS.len());
        let bytes = hostile(&mut mix, kind, &token);
        let sent = Instant::now();
        let status = exchange(from, to, &bytes).await;
        let (name, allowed, may_close) = KINDS[kind];
        seen.lock()
            .unwrap()
            .record(name, status, sent.elapsed(), allowed, may_close);
        tokio::time::sleep(HOSTILE_PACE).await;
    }
}

async fn burster(to: SocketAddr, until: Instant, seen: Arc<Mutex<Seen>>) {
    let bytes = Arc::new(request("GET", b"/burst", &[]));
    while Instant::now() < until {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let bytes = Arc::clone(&bytes);
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..BURST / 8 {
                    let sent = Instant::now();
                    out.push((exchange(BURSTER, to, &bytes).await, sent.elapsed()));
                }
                out
            }));
        }
        for task in tasks {
            for (status, took) in task.await.unwrap() {
                seen.lock()
                    .unwrap()
                    .record("burst", status, took, &[200, 429], false);
            }
        }
        tokio::time::sleep(BURST_EVERY).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_survives_a_hostile_soak() {
    let secs = std::env::var(SOAK_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let (_echo, echo_port) = start_echo().await;
    let config = EnvoyConfig::load("meshward.yaml")
        .unwrap()
        .upstream(UPSTREAM_PORT, echo_port);
    let envoy = Envoy::builder(config).concurrency(2).start().await.unwrap();
    let to = envoy.addr();
    let token = demo_token();

    // Warm up: every filter on both workers has run, and memory has its working set.
    let seen = Arc::new(Mutex::new(Seen::default()));
    normal_client(
        to,
        token.clone(),
        Instant::now() + Duration::from_secs(2),
        Arc::clone(&seen),
    )
    .await;
    assert!(
        seen.lock().unwrap().wrong.is_empty(),
        "warm-up: {:?}",
        seen.lock().unwrap().wrong
    );
    let before = stats(&envoy).await;
    let (created_before, active_before) = vms(&before);
    let allocated_before = before
        .get("server.memory_allocated")
        .copied()
        .unwrap_or(0.0);
    let rss_before = rss_kib(envoy.pid());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut clients = vec![
        tokio::spawn(normal_client(to, token.clone(), until, Arc::clone(&seen))),
        tokio::spawn(burster(to, until, Arc::clone(&seen))),
    ];
    for (i, from) in HOSTILE.into_iter().enumerate() {
        clients.push(tokio::spawn(hostile_client(
            from,
            to,
            0x9e37_79b9_7f4a_7c15 + i as u64,
            token.clone(),
            until,
            Arc::clone(&seen),
        )));
    }
    for client in clients {
        client.await.unwrap();
    }
    let took = started.elapsed();
    let during = stats(&envoy).await;
    let rss_end = rss_kib(envoy.pid());

    // Let Envoy settle, then a few normal requests more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    normal_client(
        to,
        token,
        Instant::now() + Duration::from_secs(1),
        Arc::clone(&seen),
    )
    .await;
    let after = stats(&envoy).await;
    let (created_after, active_after) = vms(&after);
    let allocated_end = during
        .get("server.memory_allocated")
        .copied()
        .unwrap_or(0.0);
    let allocated_after = after.get("server.memory_allocated").copied().unwrap_or(0.0);
    let rss_after = rss_kib(envoy.pid());

    let seen = seen.lock().unwrap();
    let total: u64 = seen.statuses.values().flat_map(|s| s.values()).sum();
    println!("soak: {secs} s ({took:?}), {total} requests, --concurrency 2");
    for (kind, statuses) in &seen.statuses {
        let slowest = seen.slowest.get(kind).copied().unwrap_or_default();
        println!("  {kind:<22} {statuses:?}, slowest {slowest:.2?}");
    }
    println!("  wasm VMs created {created_before} -> {created_after}, active {active_before} -> {active_after}");
    println!(
        "  server.memory_allocated {} -> {} at the end -> {} settled (growth {}); RSS {} -> {} -> {} KiB",
        mib(allocated_before),
        mib(allocated_end),
        mib(allocated_after),
        mib(allocated_after - allocated_before),
        rss_before,
        rss_end,
        rss_after
    );

    assert!(
        seen.wrong.is_empty(),
        "unexpected answers: {:?}",
        seen.wrong
    );
    assert_eq!(
        created_after, created_before,
        "a Wasm VM was created during the soak (a crash and reload)"
    );
    assert_eq!(
        active_after, active_before,
        "Wasm VMs were lost during the soak"
    );
    let bursts = &seen.statuses["burst"];
    assert!(
        bursts.get(&429).copied().unwrap_or(0) > 0,
        "no burst met the rate limit: {bursts:?}"
    );
    assert!(
        bursts.get(&200).copied().unwrap_or(0) > 0,
        "every burst request was refused: {bursts:?}"
    );
    for kind in KINDS.iter().map(|k| k.0) {
        assert!(
            seen.statuses.contains_key(kind),
            "the mix never sent {kind}"
        );
    }
    assert!(
        allocated_after - allocated_before < MAX_GROWTH_BYTES,
        "Envoy's allocated memory grew by {} over the soak",
        mib(allocated_after - allocated_before)
    );
}
