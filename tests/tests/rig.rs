//! The rig itself: Envoy starts on free ports, proxies to the recorded upstream, answers
//! locally, and its stats parse. If these fail, every other Envoy test is suspect.

use std::time::Duration;

use meshward_tests::config::LOCAL_REPLY_PREFIX;
use meshward_tests::{http1, Envoy, EnvoyConfig, Reply, Request, RigError, Upstream, WasmFilter};
use serde_json::json;

const UPSTREAM: u16 = 8080;

async fn envoy_in_front_of(upstream: &Upstream) -> Envoy {
    let config = EnvoyConfig::with_filters(&[]).upstream(UPSTREAM, upstream.port());
    Envoy::start(config).await.unwrap()
}

#[tokio::test]
async fn envoy_proxies_to_the_recorded_upstream_and_back() {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(
        Reply::status(201)
            .with_header("x-from-upstream", "yes")
            .with_body("made"),
    );
    let envoy = envoy_in_front_of(&upstream).await;

    let response = envoy
        .send(
            Request::post("/things?color=blue")
                .with_body("a thing")
                .with_header("x-first", "1")
                .with_header("x-second", "2"),
        )
        .await
        .unwrap();

    assert_eq!(response.status, 201);
    assert_eq!(response.header("x-from-upstream"), Some("yes"));
    assert_eq!(response.text(), "made");
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/things?color=blue")
    );
    assert_eq!(request.body, b"a thing");
    let names: Vec<&str> = request.headers.iter().map(|(k, _)| k.as_str()).collect();
    let first = names.iter().position(|n| *n == "x-first").unwrap();
    assert_eq!(
        names.get(first + 1),
        Some(&"x-second"),
        "headers out of order: {names:?}"
    );
}

#[tokio::test]
async fn stats_count_the_requests_envoy_proxied() {
    let upstream = Upstream::start().await.unwrap();
    let envoy = envoy_in_front_of(&upstream).await;
    for _ in 0..3 {
        assert_eq!(envoy.get("/").await.unwrap().status, 200);
    }

    let upstream_rq = "envoy_cluster_upstream_rq";
    let labels = [
        ("envoy_cluster_name", "upstream"),
        ("envoy_response_code", "200"),
    ];
    envoy
        .wait_for_stat(upstream_rq, &labels, 3.0)
        .await
        .unwrap();
    let stats = envoy.stats().await.unwrap();
    assert_eq!(
        stats.get(
            "envoy_cluster_membership_total",
            &[("envoy_cluster_name", "upstream")]
        ),
        Some(1.0)
    );
    assert!(
        stats.samples().len() > 100,
        "only {} samples",
        stats.samples().len()
    );
}

#[tokio::test]
async fn a_local_reply_never_reaches_the_upstream() {
    let upstream = Upstream::start().await.unwrap();
    let envoy = envoy_in_front_of(&upstream).await;

    let response = envoy.get(&format!("{LOCAL_REPLY_PREFIX}/x")).await.unwrap();

    assert_eq!(response.status, 404);
    assert_eq!(response.text(), "no such page\n");
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn an_upstream_that_is_down_or_hangs_up_is_a_503_until_it_is_back() {
    let mut upstream = Upstream::start().await.unwrap();
    let envoy = envoy_in_front_of(&upstream).await;
    assert_eq!(envoy.get("/").await.unwrap().status, 200);

    upstream.stop().await;
    assert_eq!(envoy.get("/").await.unwrap().status, 503);

    upstream.restart().await.unwrap();
    upstream.queue(Reply::drop_connection());
    assert_eq!(envoy.get("/").await.unwrap().status, 503);
    assert_eq!(envoy.get("/").await.unwrap().status, 200);
}

#[tokio::test]
async fn a_delayed_reply_arrives_after_the_delay() {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(Reply::ok().after(Duration::from_millis(300)));
    let envoy = envoy_in_front_of(&upstream).await;

    let started = std::time::Instant::now();
    assert_eq!(envoy.get("/").await.unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn an_unmapped_upstream_port_refuses_instead_of_reaching_a_stranger() {
    // No `.upstream(8080, ...)`: whatever listens on the real 8080 (say `make run`'s echo
    // server) must not be reached.
    let envoy = Envoy::start(EnvoyConfig::with_filters(&[])).await.unwrap();
    assert_eq!(envoy.get("/").await.unwrap().status, 503);
}

#[tokio::test]
async fn dropping_envoy_stops_it() {
    let envoy = Envoy::start(EnvoyConfig::with_filters(&[])).await.unwrap();
    let admin = envoy.admin_addr();
    assert_eq!(envoy.admin_get("/ready").await.unwrap().status, 200);

    drop(envoy);

    assert!(http1::send(admin, &Request::get("/ready")).await.is_err());
}

/// Set in the child process `envoy_dies_with_a_test_process_that_is_killed` starts: the
/// file where the child writes its Envoy's pid before it waits to be killed.
const ORPHAN_PID_FILE: &str = "MESHWARD_RIG_ORPHAN_PID_FILE";

/// Whether a process exists and is not a zombie waiting to be reaped.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn envoy_dies_with_a_test_process_that_is_killed() {
    if let Some(pid_file) = std::env::var_os(ORPHAN_PID_FILE) {
        // The child: start Envoy, say its pid, and wait for the SIGKILL (Drop never runs).
        let envoy = Envoy::start(EnvoyConfig::with_filters(&[])).await.unwrap();
        std::fs::write(pid_file, envoy.pid().to_string()).unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("envoy.pid");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "envoy_dies_with_a_test_process_that_is_killed",
            "--nocapture",
        ])
        .env(ORPHAN_PID_FILE, &pid_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let envoy_pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the child test never started Envoy"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child test exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(running(envoy_pid));

    child.kill().unwrap(); // SIGKILL: no Drop, no cleanup in the child.
    child.wait().unwrap();

    let killed = std::time::Instant::now();
    while running(envoy_pid) {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "Envoy (pid {envoy_pid}) outlived the killed test process"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_config_envoy_refuses_at_startup_fails_with_envoys_log() {
    let filter = WasmFilter::new("security-headers", json!({"no_such_field": true}));

    let error = Envoy::start(EnvoyConfig::with_filters(&[filter]))
        .await
        .err();

    match error {
        Some(RigError::EnvoyExited { log, .. }) => assert!(log.contains("no_such_field"), "{log}"),
        other => panic!("expected Envoy to exit, got {other:?}"),
    }
}
