//! Hot reload through ECDS in a real Envoy, with `envoy-config/ecds-hot-reload.yaml`: under
//! steady load, a new security-headers config written to the watched file takes effect
//! without a failed request, and one the filter refuses is rejected while the last good
//! one keeps serving. Needs `make build` (out/security-headers.wasm) and Envoy.

use std::time::{Duration, Instant};

use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::ecds::EcdsDir;
use meshward_tests::load::{Load, Sample};
use meshward_tests::{Envoy, EnvoyConfig, Reply, Request, Upstream};
use serde_json::{json, Value};

const RESOURCE: &str = "security-headers.yaml";
/// Envoy's ECDS stats for the filter, as `/stats/prometheus` names them.
const STATS: &str = "envoy_extension_config_discovery_http_filter_security_headers";
/// The `referrer-policy` the repository's resource file sets.
const FIRST: &str = "strict-origin-when-cross-origin";
const SECOND: &str = "same-origin";
/// Responses in a row with the new value that show an update has reached every worker.
const IN_A_ROW: usize = 10;

/// The resource with `plugin_config` as the filter's configuration.
fn with_plugin_config(resource: &Value, version: &str, plugin_config: &Value) -> Value {
    let mut resource = resource.clone();
    resource["version_info"] = json!(version);
    resource["resources"][0]["typed_config"]["config"]["configuration"]["value"] =
        json!(plugin_config.to_string());
    resource
}

fn referrer_policy(value: &str) -> Value {
    json!({"headers": {"referrer_policy": {"value": value}}})
}

async fn stat(envoy: &Envoy, name: &str) -> f64 {
    let stats = envoy.stats().await.unwrap();
    stats.get(&format!("{STATS}_{name}"), &[]).unwrap_or(-1.0)
}

/// Waits until the ECDS stat `name` reaches `value`.
async fn wait_for(envoy: &Envoy, name: &str, value: f64) {
    envoy
        .wait_for_stat(&format!("{STATS}_{name}"), &[], value)
        .await
        .unwrap();
}

/// Waits until `IN_A_ROW` responses in a row (each on a new connection, so spread over the
/// workers) carry `referrer-policy: value`.
async fn wait_until_served(envoy: &Envoy, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut in_a_row = 0;
    while in_a_row < IN_A_ROW {
        let response = envoy.get("/").await.unwrap();
        if response.header("referrer-policy") == Some(value) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
        }
        assert!(
            Instant::now() < deadline,
            "{value:?} was not served {IN_A_ROW} times in a row within 5s; last: {response:?}"
        );
    }
}

fn labels_of<'a>(samples: impl Iterator<Item = &'a Sample>) -> Vec<Option<&'a str>> {
    let mut labels: Vec<Option<&str>> = samples.map(|s| s.label.as_deref()).collect();
    labels.dedup();
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_config_applies_under_load_and_a_refused_one_leaves_the_last_good_one_serving() {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(Reply::ok().with_body("hello"));
    let ecds = EcdsDir::new().unwrap();
    let resource = ecds.copy_from_repo(RESOURCE).unwrap();
    let config = EnvoyConfig::load("ecds-hot-reload.yaml")
        .unwrap()
        .watch_ecds_in(&ecds)
        .upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::builder(config).concurrency(2).start().await.unwrap();
    assert_eq!(
        envoy.get("/").await.unwrap().header("referrer-policy"),
        Some(FIRST)
    );
    wait_for(&envoy, "update_success", 1.0).await;

    let load = Load::start(envoy.addr(), 4, "referrer-policy", |_| Request::get("/"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A good update: the new value on every request once it has reached the workers.
    let updated_at = load.elapsed();
    let second = with_plugin_config(&resource, "2", &referrer_policy(SECOND));
    ecds.write(RESOURCE, &second).unwrap();
    wait_for(&envoy, "update_success", 2.0).await;
    wait_until_served(&envoy, SECOND).await;
    let applied_at = load.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A config the filter refuses: a misspelt field.
    let refused_at = load.elapsed();
    let bad = with_plugin_config(
        &resource,
        "3",
        &json!({"headers": {"referer_policy": {"value": "unsafe-url"}}}),
    );
    ecds.write(RESOURCE, &bad).unwrap();
    wait_for(&envoy, "config_fail", 1.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = load.stop().await;

    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.succeeded()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        samples.len()
    );
    let before: Vec<&Sample> = samples.iter().filter(|s| s.finished < updated_at).collect();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started > applied_at).collect();
    let after_refusal = after.iter().filter(|s| s.started > refused_at).count();
    eprintln!(
        "hot reload under load: {} requests, {} before the update, {} after it reached every \
         worker, {after_refusal} of them after the refused config",
        samples.len(),
        before.len(),
        after.len()
    );
    assert!(
        before.len() > 10 && after_refusal > 10,
        "too little load to tell: {} requests before the update, {after_refusal} after the \
         refused one",
        before.len()
    );
    assert_eq!(labels_of(before.into_iter()), vec![Some(FIRST)]);
    assert_eq!(
        labels_of(after.into_iter()),
        vec![Some(SECOND)],
        "every request after the update, the refused config's included, has the new value"
    );

    // Envoy counts the refused version as rejected, not as a successful update.
    assert_eq!(stat(&envoy, "update_success").await, 2.0);
    assert_eq!(stat(&envoy, "update_rejected").await, 1.0);
    let log = envoy.log();
    assert!(
        log.contains("referer_policy"),
        "the filter's refusal names the field in Envoy's log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_config_after_a_refused_one_is_applied() {
    let upstream = Upstream::start().await.unwrap();
    let ecds = EcdsDir::new().unwrap();
    let resource = ecds.copy_from_repo(RESOURCE).unwrap();
    let config = EnvoyConfig::load("ecds-hot-reload.yaml")
        .unwrap()
        .watch_ecds_in(&ecds)
        .upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::builder(config).concurrency(2).start().await.unwrap();
    wait_for(&envoy, "update_success", 1.0).await;

    let bad = with_plugin_config(&resource, "2", &json!({"headers": "none"}));
    ecds.write(RESOURCE, &bad).unwrap();
    wait_for(&envoy, "config_fail", 1.0).await;
    ecds.write(
        RESOURCE,
        &with_plugin_config(&resource, "3", &referrer_policy(SECOND)),
    )
    .unwrap();
    wait_for(&envoy, "update_success", 2.0).await;
    wait_until_served(&envoy, SECOND).await;
}
