//! The service against a real redis-server: started as the Envoy tests start it, asked with
//! a tonic client.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshward_rls::grpc::rate_limit_service_client::RateLimitServiceClient;
use meshward_rls::proto::{Code, Entry, RateLimitDescriptor, RateLimitRequest};
use tempfile::TempDir;
use tonic::transport::Channel;

const LIMITS: &str = "\
- namespace: meshward
  name: per_user
  max_value: 3
  seconds: 60
  conditions: [\"descriptors[0].rule == 'per_user'\"]
  variables: [\"descriptors[0]['x-user']\"]
";

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Running {
    _redis: Killed,
    _rls: Killed,
    _dir: TempDir,
    client: RateLimitServiceClient<Channel>,
}

async fn start() -> Running {
    let dir = TempDir::new().unwrap();
    let redis_port = free_port();
    let redis = Killed(
        Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(redis_port);
    let limits = dir.path().join("limits.yaml");
    std::fs::write(&limits, LIMITS).unwrap();
    let rls_port = free_port();
    let rls = Killed(
        Command::new(env!("CARGO_BIN_EXE_meshward-rls"))
            .args(["--listen", &format!("127.0.0.1:{rls_port}")])
            .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
            .arg("--limits")
            .arg(&limits)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(rls_port);
    let client = RateLimitServiceClient::connect(format!("http://127.0.0.1:{rls_port}"))
        .await
        .unwrap();
    Running {
        _redis: redis,
        _rls: rls,
        _dir: dir,
        client,
    }
}

fn request(rule: &str, user: &str, hits_addend: u32) -> RateLimitRequest {
    let entry = |key: &str, value: &str| Entry {
        key: key.into(),
        value: value.into(),
    };
    RateLimitRequest {
        domain: "meshward".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![entry("rule", rule), entry("x-user", user)],
        }],
        hits_addend,
    }
}

#[tokio::test]
async fn the_limit_passes_then_over_limit_with_the_time_until_reset() {
    let mut running = start().await;
    for i in 0..3 {
        let reply = running
            .client
            .should_rate_limit(request("per_user", "alice", 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.overall_code, Code::Ok as i32, "hit {i}");
        assert_eq!(reply.statuses[0].limit_remaining, 2 - i);
    }
    let reply = running
        .client
        .should_rate_limit(request("per_user", "alice", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.overall_code, Code::OverLimit as i32);
    let status = &reply.statuses[0];
    assert_eq!(status.code, Code::OverLimit as i32);
    let limit = status.current_limit.as_ref().unwrap();
    assert_eq!(
        (limit.requests_per_unit, limit.name.as_str()),
        (3, "per_user")
    );
    let reset = status.duration_until_reset.as_ref().unwrap();
    assert!(reset.seconds > 0 && reset.seconds <= 60, "{reset:?}");
    let keys: Vec<&str> = reply
        .response_headers_to_add
        .iter()
        .map(|h| h.key.as_str())
        .collect();
    assert!(keys.contains(&"X-RateLimit-Remaining"), "{keys:?}");
}

#[tokio::test]
async fn another_key_and_another_rule_have_their_own_counts() {
    let mut running = start().await;
    let reply = running
        .client
        .should_rate_limit(request("per_user", "alice", 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.overall_code, Code::Ok as i32);
    let over = running
        .client
        .should_rate_limit(request("per_user", "alice", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(over.overall_code, Code::OverLimit as i32);
    let bob = running
        .client
        .should_rate_limit(request("per_user", "bob", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob.overall_code, Code::Ok as i32);
    let other_rule = running
        .client
        .should_rate_limit(request("per_path", "alice", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other_rule.overall_code, Code::Ok as i32);
    assert!(other_rule.statuses[0].current_limit.is_none());
}

#[tokio::test]
async fn hits_addend_counts_that_many_hits() {
    let mut running = start().await;
    let over = running
        .client
        .should_rate_limit(request("per_user", "carol", 4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(over.overall_code, Code::OverLimit as i32);
    let two = running
        .client
        .should_rate_limit(request("per_user", "carol", 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.overall_code, Code::Ok as i32);
    assert_eq!(two.statuses[0].limit_remaining, 1);
}

#[tokio::test]
async fn concurrent_checks_admit_exactly_the_limit() {
    let running = start().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut client = running.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .should_rate_limit(request("per_user", "dave", 1))
                .await
                .unwrap()
                .into_inner()
                .overall_code
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == Code::Ok as i32 {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
}

#[tokio::test]
async fn an_empty_domain_is_refused() {
    let mut running = start().await;
    let mut bad = request("per_user", "erin", 1);
    bad.domain.clear();
    let status = running.client.should_rate_limit(bad).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("domain"), "{}", status.message());
}
