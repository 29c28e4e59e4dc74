//! A real Envoy for tests: started from the `.venv` install on free loopback ports, ready
//! before a test talks to it, and always stopped: when dropped, and by the kernel when the
//! test process dies without dropping it (`PR_SET_PDEATHSIG`), with its log kept for
//! failure messages.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpSocket;

use crate::config::{EnvoyConfig, LISTENER_PORT};
use crate::error::log_tail;
use crate::http1::{self, Request, Response};
use crate::stats::Stats;
use crate::{repo_root, RigError};

/// How long Envoy may take to become ready (compiling Wasm on a busy machine is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Envoy::wait_for_stat`] waits.
const STAT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness and stats are polled.
const POLL: Duration = Duration::from_millis(50);

/// The Envoy binary `make setup` installs: `<repo>/.venv/bin/envoy`.
pub fn envoy_binary() -> Result<PathBuf, RigError> {
    let path = repo_root().join(".venv/bin/envoy");
    if path.exists() {
        Ok(path)
    } else {
        Err(RigError::EnvoyMissing { path })
    }
}

/// Makes the kernel SIGKILL the child when the thread that started it dies, which includes
/// the test process being killed (Drop never runs then). A child whose parent died before
/// this took effect exits at once.
fn die_with_parent(command: &mut Command) -> &mut Command {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid) and builds errors without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

/// Runs `envoy --mode validate -c <path>` from the repository root, so `out/` paths
/// resolve as they do for `make run`. Validation loads each Wasm module and runs its
/// configure step, so a plugin config the filter refuses fails here too.
pub fn validate_file(path: &Path) -> Result<(), RigError> {
    let binary = envoy_binary()?;
    let output = die_with_parent(&mut Command::new(&binary))
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "info",
            "-c",
        ])
        .arg(path)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(RigError::io(format!("running {}", binary.display())))?;
    if output.status.success() {
        Ok(())
    } else {
        let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
        log.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(RigError::Refused {
            source: path.display().to_string(),
            log,
        })
    }
}

/// Runs `envoy --mode validate` on `config`, rewritten as for a run.
pub fn validate(config: &EnvoyConfig) -> Result<(), RigError> {
    let rewritten = config.rewrite(&BTreeMap::new())?;
    let dir = TempDir::new().map_err(RigError::io("making a directory for the config"))?;
    let path = dir.path().join("envoy.json");
    write_json(&path, &rewritten.value)?;
    validate_file(&path).map_err(|error| match error {
        RigError::Refused { log, .. } => RigError::Refused {
            source: config.source().to_owned(),
            log,
        },
        other => other,
    })
}

fn write_json(path: &Path, value: &Value) -> Result<(), RigError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| RigError::Config {
        source: path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(RigError::io(format!("writing {}", path.display())))
}

/// How to start an Envoy; made by [`Envoy::builder`].
#[derive(Debug)]
pub struct EnvoyBuilder {
    config: EnvoyConfig,
    concurrency: u32,
    log_level: String,
}

impl EnvoyBuilder {
    /// Worker threads (`--concurrency`); 2 unless set.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Envoy's `--log-level` (`info` unless set); filters' own logs at `debug` need `debug`.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Starts Envoy and waits until its admin `/ready` answers 200.
    pub async fn start(self) -> Result<Envoy, RigError> {
        let binary = envoy_binary()?;
        let mut dead_ports = Vec::new();
        let mut dead = BTreeMap::new();
        for fixed in self.config.unmapped_upstream_ports() {
            let (socket, port) = refusing_port()?;
            dead_ports.push(socket);
            dead.insert(fixed, port);
        }
        let rewritten = self.config.rewrite(&dead)?;

        let dir = TempDir::with_prefix("meshward-envoy-")
            .map_err(RigError::io("making a directory for Envoy"))?;
        let config_path = dir.path().join("envoy.json");
        let admin_path = dir.path().join("admin-address.txt");
        let log_path = dir.path().join("envoy.log");
        write_json(&config_path, &rewritten.value)?;
        let log = File::create(&log_path)
            .map_err(RigError::io(format!("creating {}", log_path.display())))?;
        let log_too = log
            .try_clone()
            .map_err(RigError::io(format!("opening {}", log_path.display())))?;

        let child = die_with_parent(&mut Command::new(&binary))
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--log-level", &self.log_level])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--disable-hot-restart", "--local-address-ip-version", "v4"])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too)
            .spawn()
            .map_err(RigError::io(format!("starting {}", binary.display())))?;

        // From here on, Drop stops the process whatever happens.
        let mut envoy = Envoy {
            child,
            dir: Some(dir),
            log_path,
            admin: None,
            listeners: Vec::new(),
            _dead_ports: dead_ports,
        };
        let admin = envoy.wait_until_ready(&admin_path).await?;
        envoy.admin = Some(admin);
        envoy.listeners = envoy.find_listeners(&rewritten.listeners).await?;
        Ok(envoy)
    }
}

/// A bound socket that does not listen: its port refuses connections for as long as it
/// is held, and nothing else can take it.
fn refusing_port() -> Result<(TcpSocket, u16), RigError> {
    let doing = "reserving a port that refuses connections";
    let socket = TcpSocket::new_v4().map_err(RigError::io(doing))?;
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(RigError::io(doing))?;
    let port = socket.local_addr().map_err(RigError::io(doing))?.port();
    Ok((socket, port))
}

/// A running Envoy. Dropping it kills the process; if the test is failing, the end of
/// Envoy's log is printed and its directory kept.
pub struct Envoy {
    child: Child,
    dir: Option<TempDir>,
    log_path: PathBuf,
    admin: Option<SocketAddr>,
    /// Each listener: its name, the port the config gave it, and where it listens.
    listeners: Vec<(String, u16, SocketAddr)>,
    _dead_ports: Vec<TcpSocket>,
}

impl Envoy {
    /// How to start Envoy with `config`, for options other than the defaults.
    pub fn builder(config: EnvoyConfig) -> EnvoyBuilder {
        EnvoyBuilder {
            config,
            concurrency: 2,
            log_level: "info".into(),
        }
    }

    /// Starts Envoy with `config`, two workers, and waits until it is ready.
    pub async fn start(config: EnvoyConfig) -> Result<Envoy, RigError> {
        Envoy::builder(config).start().await
    }

    async fn wait_until_ready(&mut self, admin_path: &Path) -> Result<SocketAddr, RigError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(RigError::io("checking on Envoy"))?
            {
                return Err(RigError::EnvoyExited {
                    status: status.to_string(),
                    log: self.log(),
                });
            }
            let admin = std::fs::read_to_string(admin_path)
                .ok()
                .and_then(|text| text.trim().parse::<SocketAddr>().ok());
            if let Some(admin) = admin {
                let ready = http1::send(admin, &Request::get("/ready")).await;
                if matches!(ready, Ok(Response { status: 200, .. })) {
                    return Ok(admin);
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(RigError::NotReady {
                    waited: READY_TIMEOUT,
                    log: self.log(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Asks the admin where each listener of `configured` (name, configured port) listens.
    async fn find_listeners(
        &self,
        configured: &[(String, u16)],
    ) -> Result<Vec<(String, u16, SocketAddr)>, RigError> {
        let response = self.admin_get("/listeners?format=json").await?;
        let body: Value = serde_json::from_slice(&response.body).map_err(|e| RigError::Http {
            doing: "reading /listeners?format=json".into(),
            message: e.to_string(),
        })?;
        let statuses = body
            .get("listener_statuses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut found = Vec::new();
        for (name, fixed) in configured {
            let status = statuses
                .iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(name.as_str()));
            let port = status
                .and_then(|s| s.pointer("/local_address/socket_address/port_value"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            let Some(port) = port else {
                return Err(RigError::Http {
                    doing: "reading /listeners?format=json".into(),
                    message: format!("no port for listener {name:?} in {body}"),
                });
            };
            found.push((
                name.clone(),
                *fixed,
                SocketAddr::from(([127, 0, 0, 1], port)),
            ));
        }
        Ok(found)
    }

    /// The main listener: the one the config put on port 10000, else the first.
    pub fn addr(&self) -> SocketAddr {
        self.listener_addr(LISTENER_PORT)
            .or_else(|| self.listeners.first().map(|(_, _, addr)| *addr))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Where the listener the config put on port `fixed` listens.
    pub fn listener_addr(&self, fixed: u16) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(_, port, _)| *port == fixed)
            .map(|(_, _, addr)| *addr)
    }

    /// The admin interface's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Sends `request` to the main listener.
    pub async fn send(&self, request: Request) -> Result<Response, RigError> {
        http1::send(self.addr(), &request).await
    }

    /// Sends `GET path` to the main listener.
    pub async fn get(&self, path: &str) -> Result<Response, RigError> {
        self.send(Request::get(path)).await
    }

    /// Sends `GET path` to the admin interface.
    pub async fn admin_get(&self, path: &str) -> Result<Response, RigError> {
        http1::send(self.admin_addr(), &Request::get(path)).await
    }

    /// Reads and parses `/stats/prometheus`.
    pub async fn stats(&self) -> Result<Stats, RigError> {
        let response = self.admin_get("/stats/prometheus").await?;
        Stats::parse(&response.text())
    }

    /// Waits until the stat `name` with `labels` has `value`. Stats a filter updates after
    /// the response (in its log step) may lag the response a little.
    pub async fn wait_for_stat(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), RigError> {
        let started = Instant::now();
        loop {
            let found = self.stats().await?.get(name, labels);
            if found == Some(value) {
                return Ok(());
            }
            if started.elapsed() > STAT_TIMEOUT {
                let labels: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                return Err(RigError::Stat {
                    expected: format!(
                        "{name}{{{}}} = {value} within {STAT_TIMEOUT:?}",
                        labels.join(",")
                    ),
                    found: found.map_or("no such stat".into(), |v| v.to_string()),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        // Killing an Envoy that has already exited fails harmlessly; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let kept = self.dir.take().map(TempDir::keep);
            eprintln!(
                "--- Envoy log, last lines (whole log in {}) ---\n{}",
                kept.map_or_else(|| "?".into(), |d| d.join("envoy.log").display().to_string()),
                log_tail(&self.log()),
            );
        }
    }
}
