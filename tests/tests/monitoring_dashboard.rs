//! The Grafana dashboard (`k8s/monitoring/meshward-dashboard.json`). Grafana itself cannot
//! be installed here (it is in neither Debian's archive nor a package registry this
//! machine reaches), so its structure is checked against the dashboard types of
//! `@grafana/schema`, Grafana's own schema package on npm, by TypeScript
//! (`k8s/check/dashboard.mjs`), and by the checks below of what those types cannot say.
//! Every panel's PromQL is run against a real Prometheus in tests/tests/monitoring_drill.rs;
//! `promtool` checks here that each parses. Needs `make setup`.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use meshward_tests::monitoring::{dashboard, dashboard_queries, dir, DASHBOARD};
use meshward_tests::prometheus::promtool;
use meshward_tests::repo_root;
use serde_json::{json, Value};

/// Runs `node k8s/check/dashboard.mjs` on `dashboard`: TypeScript's problems.
fn schema_problems(dashboard: &Value) -> Vec<String> {
    let check = repo_root().join("k8s/check");
    let mut child = Command::new("node")
        .arg(check.join("dashboard.mjs"))
        .current_dir(&check)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs k8s/check/dashboard.mjs: run `make setup`");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string_pretty(dashboard).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_dashboard_passes_grafanas_dashboard_schema() {
    let problems = schema_problems(&dashboard().unwrap());
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));
}

#[test]
fn the_schema_check_refuses_a_broken_dashboard() {
    let valid = dashboard().unwrap();
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut dashboard = valid.clone();
        change(&mut dashboard);
        dashboard
    };
    let cases = [
        (
            "a row's collapsed as a string",
            broken(&|d| d["panels"][0]["collapsed"] = json!("no")),
            "not assignable to type 'boolean'",
        ),
        (
            "a grid position with a field Grafana lacks",
            broken(&|d| d["panels"][1]["gridPos"]["height"] = json!(8)),
            "'\"height\"' does not exist in type 'GridPos'",
        ),
        (
            "no schemaVersion",
            broken(&|d| {
                d.as_object_mut().unwrap().remove("schemaVersion");
            }),
            "schemaVersion",
        ),
    ];
    for (what, dashboard, expected) in cases {
        let problems = schema_problems(&dashboard);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: expected {expected:?}, got {problems:?}"
        );
    }
}

#[test]
fn it_has_a_row_per_filter_and_every_panel_is_described_and_queries_prometheus() {
    let dashboard = dashboard().unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    let mut filters: Vec<String> = std::fs::read_dir(repo_root().join("filters"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            // A module that bundles other filters (the chain) reports their metrics under
            // their names: their rows cover it.
            std::fs::read_to_string(repo_root().join("filters").join(name).join("Cargo.toml"))
                .is_ok_and(|toml| !toml.contains("path = \"../"))
        })
        .collect();
    filters.sort();
    for filter in &filters {
        assert!(
            rows.contains(&filter.as_str()),
            "{DASHBOARD} has no row for {filter} (rows: {rows:?}): add one with its metrics"
        );
    }

    let mut ids = BTreeSet::new();
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id used twice"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: wider than Grafana's 24 columns");
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["description"].as_str().is_some_and(|d| d.len() > 20),
            "{title}: says nothing of what it answers"
        );
        assert_eq!(panel["datasource"], datasource, "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds repeat");
    }
    assert_eq!(
        dashboard["templating"]["list"][0]["name"], "datasource",
        "the Prometheus data source is chosen on import"
    );
}

#[test]
fn every_panel_query_parses_as_promql() {
    let queries = dashboard_queries(&dashboard().unwrap());
    assert!(queries.len() > 20, "{}", queries.len());
    // promtool checks rules' expressions: each query as a recording rule.
    let rules = json!({"groups": [{
        "name": "dashboard",
        "rules": queries.iter().enumerate().map(|(i, q)| json!({
            "record": format!("dashboard:query_{i}"),
            "expr": q.expr,
        })).collect::<Vec<_>>(),
    }]});
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("dashboard.rules.yaml");
    std::fs::write(&path, rules.to_string()).unwrap();
    let checked = promtool(&dir(), &["check", "rules", path.to_str().unwrap()]);
    if let Err(error) = checked {
        panic!("{error}");
    }
}

#[test]
fn the_readme_describes_every_panel_and_each_filter_readme_links_alerts_and_dashboard() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for panel in dashboard().unwrap()["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let line = format!(
            "- **{}**: {}",
            panel["title"].as_str().unwrap(),
            panel["description"].as_str().unwrap()
        );
        assert!(readme.contains(&line), "README.md lacks the line\n{line}");
    }
    let filters = std::fs::read_dir(repo_root().join("filters")).unwrap();
    for entry in filters.map(|entry| entry.unwrap()) {
        if !entry.path().join("Cargo.toml").exists() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path().join("README.md")).unwrap();
        for link in [
            "k8s/monitoring/meshward.rules.yaml",
            "k8s/monitoring/meshward-dashboard.json",
        ] {
            assert!(
                text.contains(link),
                "{}/README.md does not link {link}",
                entry.path().display()
            );
        }
    }
}
