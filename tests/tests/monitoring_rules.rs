//! The alerts in `k8s/monitoring/`: `promtool check rules` takes them, `promtool test
//! rules` runs a unit test per alert (it fires on the series that should fire it and on no
//! normal one), every alert says what to look at, and the PrometheusRule holds exactly the
//! rules of the plain rules file and passes the prometheus-operator schema. Needs
//! `make setup` (Debian's `prometheus` for promtool, npm ci in k8s/check).
//!
//! `prometheusrule.yaml` is written from `meshward.rules.yaml`: after editing the rules,
//! run this test with `MESHWARD_UPDATE_MONITORING=1` to write it again.

use meshward_tests::istio_schema::check;
use meshward_tests::kustomize::{parse_documents, render};
use meshward_tests::prometheus::promtool;
use meshward_tests::repo_root;
use serde_json::{json, Value};

const RULES: &str = "meshward.rules.yaml";
const UNIT_TESTS: &str = "alerts.test.yaml";
const PROMETHEUS_RULE: &str = "prometheusrule.yaml";

fn monitoring() -> std::path::PathBuf {
    repo_root().join("k8s/monitoring")
}

fn yaml_file(name: &str) -> Value {
    let path = monitoring().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut documents = parse_documents(&path, &text).unwrap();
    assert_eq!(documents.len(), 1, "{name}: one document");
    documents.remove(0)
}

/// Every alerting rule in the rules file.
fn alerts() -> Vec<Value> {
    yaml_file(RULES)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().clone())
        .filter(|rule| rule.get("alert").is_some())
        .collect()
}

#[test]
fn promtool_accepts_the_rules() {
    let output = promtool(&monitoring(), &["check", "rules", RULES]).unwrap();
    let count = alerts().len();
    assert!(
        output.contains(&format!("SUCCESS: {count} rules found")),
        "{output}"
    );
}

#[test]
fn each_alert_passes_its_unit_tests() {
    if let Err(error) = promtool(&monitoring(), &["test", "rules", UNIT_TESTS]) {
        panic!("{error}");
    }
}

#[test]
fn each_alert_has_a_unit_test_that_fires_it() {
    let tests = yaml_file(UNIT_TESTS);
    let fired: Vec<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_array().unwrap().iter())
        .filter(|case| case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|case| case["alertname"].as_str())
        .collect();
    let untested: Vec<String> = alerts()
        .iter()
        .map(|alert| alert["alert"].as_str().unwrap().to_owned())
        .filter(|name| !fired.contains(&name.as_str()))
        .collect();
    assert!(untested.is_empty(), "no test fires {untested:?}");
}

#[test]
fn each_alert_has_a_severity_and_says_what_to_look_at() {
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        assert!(name.starts_with("Meshward"), "{name}");
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
        // What to look at: a metric by name, or Envoy's log.
        assert!(
            ["meshward_", "envoy_", "Envoy's log"]
                .iter()
                .any(|hint| summary.contains(hint)),
            "{name}: the summary names nothing to look at: {summary:?}"
        );
    }
}

/// The PrometheusRule the rules file makes.
fn expected_prometheus_rule() -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "meshward",
            "namespace": "istio-system",
            "labels": {"app.kubernetes.io/name": "meshward"},
        },
        "spec": yaml_file(RULES),
    })
}

#[test]
fn the_prometheus_rule_holds_the_rules_of_the_rules_file() {
    let expected = expected_prometheus_rule();
    if std::env::var_os("MESHWARD_UPDATE_MONITORING").is_some() {
        let text = format!(
            "# Written from meshward.rules.yaml by tests/tests/monitoring_rules.rs\n\
             # (MESHWARD_UPDATE_MONITORING=1): edit that file, not this one. The same alerts\n\
             # for the Prometheus Operator; label it as your Prometheus' ruleSelector needs\n\
             # (kube-prometheus-stack: release=<its release>), with a kustomize overlay.\n{}",
            serde_yaml_ng::to_string(&expected).unwrap()
        );
        std::fs::write(monitoring().join(PROMETHEUS_RULE), text).unwrap();
    }
    // Not assert_eq: the whole rule set printed twice would hide the one line that says
    // what to do.
    assert!(
        yaml_file(PROMETHEUS_RULE) == expected,
        "k8s/monitoring/{PROMETHEUS_RULE} differs from {RULES}: run this test with \
         MESHWARD_UPDATE_MONITORING=1 to write it again"
    );
}

#[test]
fn the_prometheus_rule_passes_the_prometheus_operator_schema() {
    let manifests = render("monitoring").unwrap();
    assert_eq!(
        manifests.len(),
        1,
        "k8s/monitoring renders the PrometheusRule"
    );
    let problems = check(&manifests).unwrap().remove(0);
    assert!(problems.is_empty(), "{problems:?}");

    let mut broken = manifests[0].clone();
    broken["spec"]["groups"][0]["rules"][0]["for"] = json!(60);
    let problems = check(&[broken]).unwrap().remove(0);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("spec.groups[0].rules[0].for")),
        "{problems:?}"
    );
}
