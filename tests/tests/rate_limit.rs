//! The rate-limit filter in the harness: what clients see (429s, `Retry-After`, the
//! RateLimit headers), which requests share a bucket, that workers racing on one bucket
//! never exceed it, that memory stays bounded under endless keys, shadow mode, failure
//! mode, and the configurations it refuses. Needs `make build` (out/rate-limit.wasm).

use meshward_harness::{
    wasm_path, HarnessError, Host, LogLevel, Outcome, Request, Response, Upstream,
};
use serde_json::{json, Value};
use std::time::Duration;

// Fixtures.

/// A host running the filter with this configuration on `workers` workers.
fn host_with(config: &Value, workers: usize) -> Host {
    Host::builder(wasm_path("rate-limit"))
        .config_json(&config.to_string())
        .workers(workers)
        .build()
        .unwrap_or_else(|e| panic!("the filter refused {config}: {e}"))
}

fn host(config: &Value) -> Host {
    host_with(config, 1)
}

/// A configuration with one rule.
fn one_rule(rule: Value) -> Value {
    json!({ "rules": [rule] })
}

fn ok() -> Upstream {
    Upstream::reply(Response::new(200).body("ok"))
}

/// Sends `request` `n` times through worker 0 and returns the statuses.
fn statuses(host: &Host, request: &Request, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| host.send(request.clone(), ok()).response.status())
        .collect()
}

fn allowed(host: &Host, request: &Request, n: usize) -> usize {
    statuses(host, request, n)
        .iter()
        .filter(|&&s| s == 200)
        .count()
}

fn counter(host: &Host, rule: &str, stat: &str) -> u64 {
    host.counter(&format!("meshward_rate_limit.rule=.={rule};.;{stat}"))
        .unwrap_or_else(|| panic!("no counter for {rule}.{stat}"))
}

fn header<'a>(out: &'a Outcome, name: &str) -> Option<&'a str> {
    out.response.header_value(name)
}

/// Why the filter refused this configuration: its error log lines.
fn refusal(config: &str) -> String {
    match Host::builder(wasm_path("rate-limit"))
        .config_json(config)
        .build()
    {
        Ok(_) => panic!("the filter accepted {config}"),
        Err(error @ HarnessError::LoadFailed { .. }) => error
            .logs()
            .iter()
            .filter(|entry| entry.level == LogLevel::Error)
            .map(|entry| entry.message.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(other) => panic!("expected the filter to refuse {config}, got {other}"),
    }
}

/// The shared-data entries of a rule's table (see `Table::new`): every set and the
/// overflow bucket, for those that exist.
fn table_entries(host: &Host, rule: &str, limit: (u64, u64, u64), buckets: u32) -> Vec<Vec<u8>> {
    let (capacity, refill, period_ns) = limit;
    let prefix =
        format!("meshward_rate_limit.v1.{rule}.c{capacity}.r{refill}.p{period_ns}.b{buckets}");
    let sets = buckets.div_ceil(8);
    (0..sets)
        .map(|i| format!("{prefix}.{i}"))
        .chain([format!("{prefix}.overflow")])
        .filter_map(|key| host.shared_data(&key).map(|(value, _)| value))
        .collect()
}

// What a client sees.

#[test]
fn lets_the_burst_through_then_answers_429_with_retry_after_from_the_bucket() {
    let host = host(&one_rule(
        json!({"name": "api", "limit": {"capacity": 3, "per": "1m"}}),
    ));
    let request = Request::get("/");
    assert_eq!(statuses(&host, &request, 3), [200, 200, 200]);

    let out = host.send(request.clone(), ok());
    assert_eq!(out.response.status(), 429);
    assert!(
        out.upstream_request.is_none(),
        "a refused request never reaches the upstream"
    );
    assert_eq!(out.details, "meshward_rate_limited");
    assert_eq!(header(&out, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(out.response.body_bytes()).unwrap();
    assert_eq!(body["error"], "rate_limited");
    // 3 tokens a minute: the next one is 20 s away.
    assert_eq!(header(&out, "retry-after"), Some("20"));
    assert_eq!(header(&out, "ratelimit-policy"), Some("\"api\";q=3;w=60"));
    assert_eq!(header(&out, "ratelimit"), Some("\"api\";r=0;t=20"));
    assert_eq!(
        header(&out, "x-ratelimit-limit"),
        None,
        "the X- form is off by default"
    );

    // 15 s later the wait is 5 s; at 20 s a token is there.
    host.advance(Duration::from_secs(15));
    let out = host.send(request.clone(), ok());
    assert_eq!(header(&out, "retry-after"), Some("5"));
    host.advance(Duration::from_secs(5));
    assert_eq!(statuses(&host, &request, 2), [200, 429]);
    assert_eq!(counter(&host, "api", "allowed"), 4);
    assert_eq!(counter(&host, "api", "limited"), 3);
}

#[test]
fn a_slow_rate_keeps_its_progress_and_rounds_the_wait_up() {
    let host = host(&one_rule(
        json!({"name": "slow", "limit": {"capacity": 1, "per": "1m"}}),
    ));
    let request = Request::get("/");
    assert_eq!(statuses(&host, &request, 1), [200]);
    host.advance(Duration::from_millis(59_500));
    let out = host.send(request.clone(), ok());
    assert_eq!(out.response.status(), 429);
    assert_eq!(
        header(&out, "retry-after"),
        Some("1"),
        "half a second rounds up"
    );
    host.advance(Duration::from_millis(500));
    assert_eq!(statuses(&host, &request, 2), [200, 429]);
}

#[test]
fn the_x_ratelimit_form_and_allowed_responses_carry_what_is_left() {
    let config = json!({
        "rules": [{"name": "api", "limit": {"capacity": 5, "refill": 1, "per": "2s"}}],
        "response_headers": {"ietf": true, "x_ratelimit": true, "on_allowed": true}
    });
    let host = host(&config);
    let out = host.send(Request::get("/"), ok());
    assert_eq!(out.response.status(), 200);
    assert_eq!(
        header(&out, "ratelimit-policy"),
        Some("\"api\";q=1;w=2;meshward-burst=5")
    );
    assert_eq!(header(&out, "ratelimit"), Some("\"api\";r=4;t=2"));
    assert_eq!(header(&out, "x-ratelimit-limit"), Some("5"));
    assert_eq!(header(&out, "x-ratelimit-remaining"), Some("4"));
    assert_eq!(header(&out, "x-ratelimit-reset"), Some("2"));
    assert_eq!(
        out.response.body_text(),
        "ok",
        "the upstream's answer is untouched"
    );
}

#[test]
fn the_refusal_status_is_configurable() {
    let config = json!({
        "rules": [{"name": "api", "limit": {"capacity": 1, "per": "1h"}}],
        "status": 503
    });
    let host = host(&config);
    assert_eq!(statuses(&host, &Request::get("/"), 2), [200, 503]);
}

// Which requests share a bucket.

#[test]
fn a_rule_applies_only_to_its_host_path_and_method() {
    let host = host(&one_rule(json!({
        "name": "login",
        "match": {"hosts": ["*.example.com"], "path": {"regex": "/login(/.*)?"}, "methods": ["POST"]},
        "limit": {"capacity": 1, "per": "1h"}
    })));
    let login = Request::post("/login").header("host", "www.example.com");
    assert_eq!(statuses(&host, &login, 2), [200, 429]);
    assert_eq!(
        statuses(
            &host,
            &Request::post("/login/sso").header("host", "a.example.com"),
            1
        ),
        [429]
    );
    // Another method, path or host is not counted.
    for other in [
        Request::get("/login").header("host", "www.example.com"),
        Request::post("/logout").header("host", "www.example.com"),
        Request::post("/login").header("host", "example.org"),
    ] {
        assert_eq!(statuses(&host, &other, 3), [200, 200, 200], "{other:?}");
    }
}

#[test]
fn each_client_address_has_its_own_bucket() {
    let host = host(&one_rule(json!({
        "name": "per_ip", "key": ["client_address"], "limit": {"capacity": 2, "per": "1h"}
    })));
    let from = |source: &str| Request::get("/").source(source);
    assert_eq!(allowed(&host, &from("10.0.0.1:1000"), 5), 2);
    // Another port is the same client; another address is another client.
    assert_eq!(allowed(&host, &from("10.0.0.1:2000"), 1), 0);
    assert_eq!(allowed(&host, &from("10.0.0.2:1000"), 5), 2);
    assert_eq!(allowed(&host, &from("[2001:db8::1]:1000"), 5), 2);
}

#[test]
fn x_forwarded_for_is_trusted_only_for_the_configured_hops() {
    let host = host(&one_rule(json!({
        "name": "per_client",
        "key": [{"x_forwarded_for": {"trusted_hops": 1}}],
        "limit": {"capacity": 1, "per": "1h"}
    })));
    let via_proxy = |xff: &str| {
        Request::get("/")
            .header("x-forwarded-for", xff)
            .source("192.0.2.1:1")
    };
    assert_eq!(allowed(&host, &via_proxy("203.0.113.7"), 1), 1);
    // Whatever the client writes at the left, the proxy's entry at the right decides.
    assert_eq!(allowed(&host, &via_proxy("1.1.1.1, 203.0.113.7"), 1), 0);
    assert_eq!(allowed(&host, &via_proxy("2.2.2.2, 203.0.113.7"), 1), 0);
    assert_eq!(allowed(&host, &via_proxy("203.0.113.8"), 1), 1);
    // Garbage where the address should be: the connection's peer is counted.
    assert_eq!(allowed(&host, &via_proxy("not-an-address"), 1), 1);
    assert_eq!(
        allowed(&host, &Request::get("/").source("192.0.2.1:2"), 1),
        0
    );
}

#[test]
fn keys_from_a_header_a_query_parameter_or_a_cookie() {
    let host = host(&json!({"rules": [
        {"name": "by_header", "match": {"path": {"prefix": "/h"}}, "key": [{"header": "x-user"}],
         "limit": {"capacity": 1, "per": "1h"}},
        {"name": "by_query", "match": {"path": {"prefix": "/q"}}, "key": [{"query": "api_key"}],
         "limit": {"capacity": 1, "per": "1h"}},
        {"name": "by_cookie", "match": {"path": {"prefix": "/c"}}, "key": [{"cookie": "session"}],
         "limit": {"capacity": 1, "per": "1h"}}
    ]}));
    let user = |u: &str| Request::get("/h").header("x-user", u);
    assert_eq!(allowed(&host, &user("alice"), 2), 1);
    assert_eq!(allowed(&host, &user("bob"), 2), 1);
    assert_eq!(allowed(&host, &Request::get("/q?api_key=k1"), 2), 1);
    // A percent-encoded spelling of the same key is the same bucket.
    assert_eq!(allowed(&host, &Request::get("/q?x=1&api%5Fkey=%6b1"), 1), 0);
    assert_eq!(allowed(&host, &Request::get("/q?api_key=k2"), 1), 1);
    let cookie = |c: &str| Request::get("/c").header("cookie", c);
    assert_eq!(allowed(&host, &cookie("theme=dark; session=s1"), 2), 1);
    assert_eq!(allowed(&host, &cookie("session=s2"), 2), 1);
}

#[test]
fn leaving_the_key_out_shares_one_bucket_unless_the_rule_skips_it() {
    let share = host(&one_rule(json!({
        "name": "per_key", "key": [{"header": "x-api-key"}], "limit": {"capacity": 1, "per": "1h"}
    })));
    assert_eq!(allowed(&share, &Request::get("/"), 3), 1);
    let skip = host(&one_rule(json!({
        "name": "per_key", "key": [{"header": "x-api-key"}], "missing_key": "skip",
        "limit": {"capacity": 1, "per": "1h"}
    })));
    assert_eq!(allowed(&skip, &Request::get("/"), 3), 3);
}

#[test]
fn the_first_enforced_rule_out_of_tokens_answers() {
    let host = host(&json!({"rules": [
        {"name": "per_user", "key": [{"header": "x-user"}], "limit": {"capacity": 2, "per": "1h"}},
        {"name": "global", "limit": {"capacity": 3, "per": "1h"}}
    ]}));
    let user = |u: &str| Request::get("/").header("x-user", u);
    assert_eq!(statuses(&host, &user("a"), 3), [200, 200, 429]);
    let out = host.send(user("b"), ok());
    assert_eq!(out.response.status(), 200);
    let out = host.send(user("b"), ok());
    assert_eq!(out.response.status(), 429);
    assert_eq!(header(&out, "ratelimit"), Some("\"global\";r=0;t=1200"));
    // The request refused by per_user did not take a global token.
    assert_eq!(counter(&host, "global", "allowed"), 3);
}

// Exact across workers.

#[test]
fn workers_taking_turns_share_one_bucket() {
    let host = host_with(
        &one_rule(json!({"name": "api", "limit": {"capacity": 10, "per": "1h"}})),
        4,
    );
    let mut admitted = 0;
    for i in 0..40 {
        let out = host.worker(i % 4).send(Request::get("/"), ok());
        admitted += usize::from(out.response.status() == 200);
    }
    assert_eq!(admitted, 10);
}

#[test]
fn workers_racing_in_parallel_never_exceed_capacity_plus_refill() {
    // Four workers on four threads hammer one bucket, 24 requests at a time, then the clock
    // moves 100 ms: 1,200 requests over 5 s of virtual time, far above the limit. The
    // compare-and-swap makes a worker retry whenever another wrote in between.
    let config = json!({
        "rules": [{"name": "api", "limit": {"capacity": 20, "refill": 10, "per": "1s"}}]
    });
    let host = host_with(&config, 4);
    let mut admitted = 0;
    for _ in 0..50 {
        admitted += std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let host = &host;
                    scope.spawn(move || {
                        (0..6)
                            .filter(|_| {
                                host.worker(w)
                                    .send(Request::get("/"), ok())
                                    .response
                                    .status()
                                    == 200
                            })
                            .count()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .sum::<usize>()
        });
        host.advance(Duration::from_millis(100));
    }
    // The requests span 4.9 s: a burst of 20 and 49 tokens of refill, every one used.
    assert_eq!(admitted, 20 + 49);
    assert_eq!(counter(&host, "api", "allowed"), 69);
    assert_eq!(counter(&host, "api", "limited"), 1200 - 69);
    assert_eq!(counter(&host, "api", "failed_open"), 0);
    assert_eq!(counter(&host, "api", "contention_fallbacks"), 0);
}

// Bounded memory.

#[test]
fn endless_new_keys_leave_memory_bounded_and_overflow_is_counted() {
    let config = one_rule(json!({
        "name": "per_ip", "key": ["client_address"], "buckets": 16,
        "limit": {"capacity": 1, "per": "1s"}
    }));
    let host = host(&config);
    let fuel = |n: u32| {
        let out = host.send(
            Request::get("/").source(&format!("10.{}.{}.{}:1", n >> 16, (n >> 8) & 255, n & 255)),
            ok(),
        );
        out.cost.fuel()
    };
    for n in 0..1_000 {
        fuel(n);
    }
    let first: u64 = (1_000..1_100).map(fuel).sum();
    for n in 1_100..20_000 {
        fuel(n);
    }
    let last: u64 = (20_000..20_100).map(fuel).sum();
    // The table never grows past its sets and the overflow bucket, whatever the keys.
    let entries = table_entries(&host, "per_ip", (1, 1, 1_000_000_000), 16);
    assert!(entries.len() <= 3, "{} entries", entries.len());
    let bytes: usize = entries.iter().map(Vec::len).sum();
    assert!(bytes <= 2 * (10 + 8 * 40) + 10 + 40, "{bytes} bytes");
    // Nothing is kept per key in the VM: once the table is full, the 20,000th key costs
    // what the 1,000th did.
    assert!(
        last <= first + first / 20,
        "fuel grew from {first} to {last}"
    );
    // Only 16 keys could have a bucket at once; the others shared the overflow bucket.
    assert!(counter(&host, "per_ip", "overflowed") >= 20_100 - 16 - 1);

    // Once the buckets refill, new keys reclaim their slots.
    host.advance(Duration::from_secs(1));
    for n in 30_000..30_016 {
        fuel(n);
    }
    assert!(counter(&host, "per_ip", "reclaimed") > 0);
}

#[test]
fn fuel_per_request_stays_flat_from_one_key_to_ten_thousand() {
    // The configuration of the rate-limit bench rows (envoy-config/bench/rate-limit.yaml).
    let host = host(&one_rule(json!({
        "name": "bench", "key": [{"header": "x-client"}], "buckets": 32768,
        "limit": {"capacity": 1000000, "refill": 1, "per": "1h"}
    })));
    let fuel = |client: Option<String>| {
        let request = match client {
            Some(c) => Request::get("/").header("x-client", &c),
            None => Request::get("/"),
        };
        let out = host.send(request, ok());
        assert_eq!(out.response.status(), 200);
        (out.cost.fuel(), out.cost.host_calls())
    };
    for _ in 0..100 {
        fuel(None);
    }
    let one_key: Vec<_> = (0..1000).map(|_| fuel(None)).collect();
    let keys: Vec<_> = (0..20_000u32)
        .map(|i| fuel(Some(format!("client-{}", i % 10_000))))
        .skip(10_000)
        .collect();
    let mean = |runs: &[(u64, u64)]| {
        let n = runs.len() as u64;
        (
            runs.iter().map(|r| r.0).sum::<u64>() / n,
            runs.iter().map(|r| r.1).sum::<u64>() / n,
        )
    };
    let (one, one_calls) = mean(&one_key);
    let (many, many_calls) = mean(&keys);
    println!("rate-limit fuel/request: one key {one} ({one_calls} host calls), 10,000 keys {many} ({many_calls} host calls)");
    assert!(
        many < one + one / 2,
        "10,000 keys cost {many} against {one} for one"
    );
    assert_eq!(one_calls, many_calls);
}

// Shadow mode.

#[test]
fn shadow_mode_lets_requests_through_marked_counted_and_logged() {
    let host = host(&json!({"rules": [{
        "name": "trial", "mode": "shadow", "shadow_header": "x-rate-limit-shadow",
        "limit": {"capacity": 1, "per": "1h"}
    }]}));
    let first = host.send(Request::get("/a?secret=1"), ok());
    assert_eq!(first.response.status(), 200);
    assert_eq!(
        first
            .upstream_request
            .unwrap()
            .header_value("x-rate-limit-shadow"),
        None
    );

    let over = host.send(Request::get("/a?secret=1"), ok());
    assert_eq!(over.response.status(), 200, "shadow mode never refuses");
    let upstream = over.upstream_request.clone().unwrap();
    assert_eq!(upstream.header_value("x-rate-limit-shadow"), Some("trial"));
    assert_eq!(
        header(&over, "ratelimit"),
        None,
        "shadow rules are not shown to clients"
    );
    assert_eq!(counter(&host, "trial", "shadow_limited"), 1);
    assert_eq!(counter(&host, "trial", "limited"), 0);
    let logs = host.log_messages(LogLevel::Info).join("\n");
    assert!(logs.contains("rule trial would limit GET /a"), "{logs}");
    assert!(!logs.contains("secret"), "the query is not logged: {logs}");
}

// Failure mode.

/// Runs `threads` workers sending to one bucket in parallel until some request found the
/// bucket contended past `cas_attempts: 1`, or gives up after `rounds`.
fn race_until_contended(host: &Host, rule: &str, stat: &str) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        outcomes.extend(std::thread::scope(|scope| {
            let handles: Vec<_> = (0..host.worker_count())
                .map(|w| {
                    scope.spawn(move || {
                        (0..200)
                            .map(|_| host.worker(w).send(Request::get("/"), ok()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        }));
        if counter(host, rule, stat) > 0 {
            break;
        }
    }
    outcomes
}

#[test]
fn contention_past_the_attempts_is_counted_and_let_through_by_default() {
    let config = json!({
        "rules": [{"name": "hot", "limit": {"capacity": 1000000, "per": "1s"}}],
        "cas_attempts": 1
    });
    let host = host_with(&config, 4);
    let outcomes = race_until_contended(&host, "hot", "failed_open");
    let failed = counter(&host, "hot", "failed_open");
    assert!(
        failed > 0,
        "no contention in {} parallel requests",
        outcomes.len()
    );
    assert!(outcomes.iter().all(|o| o.response.status() == 200));
    assert_eq!(
        counter(&host, "hot", "allowed") + failed,
        outcomes.len() as u64
    );
    // Every fallback here was contention, and the contention counter says so apart from
    // the policy outcome.
    assert_eq!(counter(&host, "hot", "contention_fallbacks"), failed);
    assert_eq!(counter(&host, "hot", "failed_closed"), 0);
    let warnings = host.log_messages(LogLevel::Warn).join("\n");
    assert!(
        warnings.contains("rule hot: shared data still contended after 1 attempts"),
        "{warnings}"
    );
}

#[test]
fn contention_past_the_attempts_refuses_when_failure_mode_is_deny() {
    let config = json!({
        "rules": [{"name": "hot", "limit": {"capacity": 1000000, "per": "1s"}}],
        "cas_attempts": 1,
        "failure_mode": "deny"
    });
    let host = host_with(&config, 4);
    let outcomes = race_until_contended(&host, "hot", "failed_closed");
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|o| o.response.status() == 429)
        .collect();
    assert!(
        !refused.is_empty(),
        "no contention in {} parallel requests",
        outcomes.len()
    );
    assert_eq!(refused.len() as u64, counter(&host, "hot", "failed_closed"));
    assert_eq!(
        counter(&host, "hot", "contention_fallbacks"),
        refused.len() as u64
    );
    assert_eq!(counter(&host, "hot", "failed_open"), 0);
    let body: Value = serde_json::from_slice(refused[0].response.body_bytes()).unwrap();
    assert_eq!(body["error"], "rate_limit_unavailable");
    assert_eq!(refused[0].response.header_value("retry-after"), Some("1"));
}

#[test]
fn a_shadow_rule_under_contention_lets_requests_through_even_when_failure_mode_is_deny() {
    let config = json!({
        "rules": [{"name": "trial", "mode": "shadow", "limit": {"capacity": 1000000, "per": "1s"}}],
        "cas_attempts": 1,
        "failure_mode": "deny"
    });
    let host = host_with(&config, 4);
    let outcomes = race_until_contended(&host, "trial", "failed_open");
    let failed = counter(&host, "trial", "failed_open");
    assert!(
        failed > 0,
        "no contention in {} parallel requests",
        outcomes.len()
    );
    assert!(
        outcomes.iter().all(|o| o.response.status() == 200),
        "a shadow rule refused a request"
    );
    assert_eq!(counter(&host, "trial", "failed_closed"), 0);
    assert_eq!(counter(&host, "trial", "contention_fallbacks"), failed);
    let warnings = host.log_messages(LogLevel::Warn).join("\n");
    assert!(
        warnings.contains("rule trial: shared data still contended after 1 attempts; request let through (shadow mode)"),
        "{warnings}"
    );
}

// Refused configurations.

#[test]
fn refuses_configurations_that_cannot_work_naming_the_field() {
    let cases = [
        (
            r#"{"rules":[{"name":"a","limit":{"capacity":0,"per":"1s"}}]}"#,
            "rules[0].limit.capacity: expected 1 to",
        ),
        (
            r#"{"rules":[{"name":"a","key":[{"ip":{}}],"limit":{"capacity":1,"per":"1s"}}]}"#,
            "rules[0].key[0]: unknown variant `ip`",
        ),
        (
            r#"{"rules":[{"name":"a","match":{"path":{"regex":"(unclosed"}},"limit":{"capacity":1,"per":"1s"}}]}"#,
            "rules[0].match.path.regex: not a valid regex",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"1s"},"burst":5}]}"#,
            "unknown field `burst`",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"capacity":1,"per":"soon"}}]}"#,
            "rules[0].limit.per: expected a duration",
        ),
        (r#"{"rules":[]}"#, "rules: expected at least one item"),
        ("", "missing field `rules`"),
    ];
    for (config, expected) in cases {
        let logs = refusal(config);
        assert!(
            logs.contains("rate-limit: configuration refused"),
            "{config}: {logs}"
        );
        assert!(
            logs.contains(expected),
            "{config}: expected {expected:?} in\n{logs}"
        );
    }
}

#[test]
fn the_shipped_envoy_example_configuration_is_accepted() {
    let yaml =
        std::fs::read_to_string(meshward_tests::repo_root().join("envoy-config/rate-limit.yaml"))
            .unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let filter = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0];
    let value = filter["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    let config: Value = serde_json::from_str(value).unwrap();
    host(&config);
}
