//! The files of `k8s/monitoring/` as the tests read them: the alerting rules (and a copy
//! with short `for:` for a drill) and the Grafana dashboard's queries.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::{repo_root, RigError};

/// The plain Prometheus rules file, the one source of the alerts.
pub const RULES: &str = "meshward.rules.yaml";
/// The Grafana dashboard.
pub const DASHBOARD: &str = "meshward-dashboard.json";
/// What a drill puts for Grafana's `$__rate_interval`: a few of its 1 s scrapes.
pub const DRILL_RATE_INTERVAL: &str = "1m";

/// `k8s/monitoring/`.
pub fn dir() -> PathBuf {
    repo_root().join("k8s/monitoring")
}

fn read(name: &str) -> Result<Value, RigError> {
    let path = dir().join(name);
    let config = |message: String| RigError::Config {
        source: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| config(e.to_string()))?;
    Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text))
        .map_err(|e| config(e.to_string()))
}

/// The rules file, as JSON.
pub fn rules() -> Result<Value, RigError> {
    read(RULES)
}

/// The dashboard, as JSON.
pub fn dashboard() -> Result<Value, RigError> {
    read(DASHBOARD)
}

/// Writes the rules into `into` with every `for:` set to `for_`, so that a drill sees
/// alerts fire within seconds; returns the file's path.
pub fn rules_with_for(into: &Path, for_: &str) -> Result<PathBuf, RigError> {
    let mut rules = rules()?;
    for group in rules["groups"].as_array_mut().into_iter().flatten() {
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if rule.get("alert").is_some() {
                rule["for"] = Value::from(for_);
            }
        }
    }
    let path = into.join(RULES);
    // JSON is YAML: Prometheus reads it as it is.
    std::fs::write(&path, rules.to_string())
        .map_err(RigError::io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// One query of a dashboard panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The panel's row (the filter) and title.
    pub panel: String,
    /// The title of the panel's row: a filter's name, or `Wasm runtime (Envoy)`.
    pub row: String,
    /// Its PromQL, with Grafana's `$__rate_interval` replaced by [`DRILL_RATE_INTERVAL`].
    pub expr: String,
}

/// Every query of every panel, rows first to last.
pub fn dashboard_queries(dashboard: &Value) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    let mut row = String::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            row = panel["title"].as_str().unwrap_or_default().to_owned();
            continue;
        }
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(PanelQuery {
                panel: format!("{row} / {title}"),
                row: row.clone(),
                expr: target["expr"]
                    .as_str()
                    .unwrap_or_default()
                    .replace("$__rate_interval", DRILL_RATE_INTERVAL),
            });
        }
    }
    queries
}
