//! A real Prometheus (Debian's `prometheus`, installed by `make setup`) on a free loopback
//! port with its storage in a temporary directory, scraping Envoys' `/stats/prometheus`
//! every second and evaluating rule files every second; and `promtool`.
//!
//! ```no_run
//! # async fn example(envoy: &meshward_tests::Envoy) -> Result<(), meshward_tests::RigError> {
//! use meshward_tests::prometheus::Prometheus;
//! let rules = meshward_tests::repo_root().join("k8s/monitoring/meshward.rules.yaml");
//! let prometheus = Prometheus::start(&[envoy.admin_addr()], &[rules]).await?;
//! let series = prometheus.query("meshward_region_router_state").await?;
//! # Ok(())
//! # }
//! ```

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http1::{self, Request};
use crate::RigError;

/// How long [`Prometheus::start`] waits for `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `promtool` with `args` in `dir`; its output, or its refusal.
pub fn promtool(dir: &Path, args: &[&str]) -> Result<String, RigError> {
    let command = format!("promtool {}", args.join(" "));
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RigError::Tool {
            command: command.clone(),
            message: format!("{e}: Debian's `prometheus` package has promtool; run `make setup`"),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(RigError::Tool {
            command,
            message: text,
        })
    }
}

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping each of `targets` (Envoy admin addresses) every second
    /// as job `envoy`, evaluating `rule_files` every second, and waits until it is ready.
    pub async fn start(targets: &[SocketAddr], rule_files: &[PathBuf]) -> Result<Self, RigError> {
        let dir = tempfile::tempdir().map_err(RigError::io("making Prometheus' directory"))?;
        let targets: Vec<String> = targets.iter().map(SocketAddr::to_string).collect();
        let rule_files: Vec<String> = rule_files.iter().map(|p| p.display().to_string()).collect();
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_files,
            "scrape_configs": [{
                "job_name": "envoy",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": targets}],
            }],
        });
        let config_path = dir.path().join("prometheus.yml");
        // JSON is YAML: Prometheus reads it as it is.
        std::fs::write(&config_path, config.to_string())
            .map_err(RigError::io("writing prometheus.yml"))?;
        let addr = free_loopback_addr()?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .map_err(RigError::io("creating Prometheus' log"))?;
        let log_err = log
            .try_clone()
            .map_err(RigError::io("creating Prometheus' log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| RigError::Tool {
                command: "prometheus".into(),
                message: format!("{e}: Debian's `prometheus` package has it; run `make setup`"),
            })?;
        let mut prometheus = Prometheus { child, addr, dir };
        prometheus.wait_until_ready().await?;
        Ok(prometheus)
    }

    async fn wait_until_ready(&mut self) -> Result<(), RigError> {
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RigError::Tool {
                    command: "prometheus".into(),
                    message: format!("exited with {status}:\n{}", self.log()),
                });
            }
            if let Ok(response) = http1::send(self.addr, &Request::get("/-/ready")).await {
                if response.status == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(RigError::Tool {
            command: "prometheus".into(),
            message: format!("not ready after {READY_TIMEOUT:?}:\n{}", self.log()),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn api(&self, path: &str) -> Result<Value, RigError> {
        let response = http1::send(self.addr, &Request::get(path)).await?;
        let refused = |message: String| RigError::Tool {
            command: format!("GET {path} from Prometheus"),
            message,
        };
        let body: Value = serde_json::from_slice(&response.body)
            .map_err(|e| refused(format!("{e}: {}", response.text())))?;
        if response.status != 200 || body["status"] != "success" {
            return Err(refused(format!("{} {body}", response.status)));
        }
        Ok(body["data"].clone())
    }

    /// The series an instant query returns now (`data.result` of `/api/v1/query`).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, RigError> {
        let data = self
            .api(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Every alert, pending or firing (`data.alerts` of `/api/v1/alerts`).
    pub async fn alerts(&self) -> Result<Vec<Value>, RigError> {
        let data = self.api("/api/v1/alerts").await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// The names of the alerts firing now.
    pub async fn firing(&self) -> Result<Vec<String>, RigError> {
        let mut names: Vec<String> = self
            .alerts()
            .await?
            .iter()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Whether its last scrape of every target succeeded.
    pub async fn targets_up(&self) -> Result<bool, RigError> {
        let data = self.api("/api/v1/targets").await?;
        let targets = data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(!targets.is_empty() && targets.iter().all(|t| t["health"] == "up"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Killing a process that already exited fails harmlessly; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address with a port the kernel picked free a moment ago.
fn free_loopback_addr() -> Result<SocketAddr, RigError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(RigError::io("finding a free port"))?;
    listener
        .local_addr()
        .map_err(RigError::io("finding a free port"))
}

/// `text` as a URL query value: every byte but unreserved ones percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_everything_but_unreserved_bytes() {
        assert_eq!(
            percent_encode(r#"sum by (a) (rate(x{y="z"}[5m]))"#),
            "sum%20by%20%28a%29%20%28rate%28x%7By%3D%22z%22%7D%5B5m%5D%29%29"
        );
    }
}
