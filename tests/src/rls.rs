//! A real Rate Limit Service for tests: `redis-server` on a free loopback port (no
//! persistence, its own temporary directory) and the `meshward-rls` binary from `tests/rls`
//! (limitador counting in that Redis) on another, both killed on drop.
//!
//! The binary is built once by `scripts/build-rls.sh`, which caches it outside the clone;
//! the first test that needs it runs the script (instant when cached). `MESHWARD_RLS`
//! names a binary to use instead.
//!
//! ```no_run
//! use meshward_tests::{EnvoyConfig, Rls};
//! # async fn example() -> Result<(), meshward_tests::RigError> {
//! let rls = Rls::start(meshward_tests::rls::limit("meshward", "per_user", 5, 60, &["x-user"]))
//!     .await?;
//! let config = EnvoyConfig::load("rate-limit-global.yaml")?.upstream(8081, rls.port());
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::log_tail;
use crate::{repo_root, RigError};

/// How long redis-server and the RLS may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// One limit in the RLS's limits file (limitador's format): `max_value` hits per `seconds`
/// for requests to `domain` whose descriptor's `rule` entry is `rule`, counted separately per
/// value of each of the descriptor entries `keys`.
pub fn limit(domain: &str, rule: &str, max_value: u64, seconds: u64, keys: &[&str]) -> String {
    let variables: Vec<String> = keys
        .iter()
        .map(|k| format!("\"descriptors[0]['{k}']\""))
        .collect();
    format!(
        "- namespace: {domain}\n  name: {rule}\n  max_value: {max_value}\n  seconds: {seconds}\n  \
         conditions: [\"descriptors[0].rule == '{rule}'\"]\n  variables: [{}]\n",
        variables.join(", ")
    )
}

/// The RLS binary: `MESHWARD_RLS`, else what `scripts/build-rls.sh` builds or has cached.
pub fn rls_binary() -> Result<PathBuf, RigError> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("MESHWARD_RLS") {
            return Ok(PathBuf::from(path));
        }
        let script = repo_root().join("scripts/build-rls.sh");
        let output = Command::new(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} failed ({}): see its output above",
                script.display(),
                output.status
            ));
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        ))
    });
    found.clone().map_err(|message| RigError::Process {
        name: "meshward-rls".into(),
        message,
        log: String::new(),
    })
}

/// A child process killed and reaped on drop, with its output in a file.
struct Process {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command, log_path: &Path) -> Result<Self, RigError> {
        let log = File::create(log_path)
            .map_err(RigError::io(format!("creating {}", log_path.display())))?;
        let log_too = log
            .try_clone()
            .map_err(RigError::io(format!("opening {}", log_path.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too)
            .spawn()
            .map_err(RigError::io(format!("starting {name}")))?;
        Ok(Process {
            name,
            child,
            log_path: log_path.to_owned(),
        })
    }

    fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn error(&self, message: String) -> RigError {
        RigError::Process {
            name: self.name.into(),
            message,
            log: self.log(),
        }
    }

    /// Waits until `ready` holds for the log, failing if the process exits first.
    async fn wait_for(&mut self, what: &str, ready: impl Fn(&str) -> bool) -> Result<(), RigError> {
        let started = Instant::now();
        loop {
            if ready(&self.log()) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.error(format!("exited ({status}) before {what}")));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(self.error(format!("not {what} after {START_TIMEOUT:?}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn signal(&self, signal: &str) -> Result<(), RigError> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .map_err(RigError::io(format!("sending {signal} to {}", self.name)))?;
        if status.success() {
            Ok(())
        } else {
            Err(self.error(format!("kill {signal} failed ({status})")))
        }
    }

    fn kill(&mut self) {
        // Killing a process that has exited fails harmlessly; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log, last lines ---\n{}",
                self.name,
                log_tail(&self.log())
            );
        }
    }
}

/// A free loopback port, for a server that cannot take port 0 (redis-server).
fn free_port() -> Result<u16, RigError> {
    let doing = "finding a free port";
    let listener =
        TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).map_err(RigError::io(doing))?;
    Ok(listener.local_addr().map_err(RigError::io(doing))?.port())
}

/// A running RLS on its own Redis. Dropping it kills both.
pub struct Rls {
    rls: Process,
    _redis: Process,
    port: u16,
    redis_port: u16,
    _dir: TempDir,
}

impl Rls {
    /// Starts redis-server and the RLS with `limits` (a limits file's YAML; see [`limit`]),
    /// and waits until both accept connections.
    pub async fn start(limits: String) -> Result<Rls, RigError> {
        let binary = rls_binary()?;
        let dir = TempDir::with_prefix("meshward-rls-")
            .map_err(RigError::io("making a directory for the RLS"))?;
        let (redis, redis_port) = start_redis(dir.path()).await?;
        let limits_path = dir.path().join("limits.yaml");
        std::fs::write(&limits_path, limits)
            .map_err(RigError::io(format!("writing {}", limits_path.display())))?;
        let mut rls = Process::spawn(
            "meshward-rls",
            Command::new(&binary)
                .args(["--listen", "127.0.0.1:0"])
                .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
                .arg("--limits")
                .arg(&limits_path),
            &dir.path().join("rls.log"),
        )?;
        rls.wait_for("listening", |log| log.contains("listening on "))
            .await?;
        let log = rls.log();
        let port = log
            .lines()
            .find_map(|l| l.strip_prefix("listening on "))
            .and_then(|addr| addr.trim().parse::<SocketAddr>().ok())
            .map(|addr| addr.port())
            .ok_or_else(|| rls.error("no port in its `listening on` line".into()))?;
        Ok(Rls {
            rls,
            _redis: redis,
            port,
            redis_port,
            _dir: dir,
        })
    }

    /// The RLS's gRPC port: map the config's RLS cluster port to it.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Redis port the RLS counts in.
    pub fn redis_port(&self) -> u16 {
        self.redis_port
    }

    /// Kills the RLS: its port then refuses connections (Redis keeps running).
    pub fn stop(&mut self) {
        self.rls.kill();
    }

    /// Freezes the RLS (SIGSTOP): connections stay open but nothing is answered.
    pub fn freeze(&self) -> Result<(), RigError> {
        self.rls.signal("-STOP")
    }

    /// Lets a frozen RLS run again (SIGCONT).
    pub fn thaw(&self) -> Result<(), RigError> {
        self.rls.signal("-CONT")
    }

    /// The RLS's tally so far: `(calls, ok, over_limit, errors)`, read from the line it
    /// prints on SIGUSR1.
    pub async fn tally(&mut self) -> Result<Tally, RigError> {
        let before = self.rls.log().matches("calls=").count();
        self.rls.signal("-USR1")?;
        self.rls
            .wait_for("reporting its tally", |log| {
                log.matches("calls=").count() > before
            })
            .await?;
        let log = self.rls.log();
        let line = log
            .lines()
            .rfind(|l| l.starts_with("calls="))
            .unwrap_or_default();
        Tally::parse(line).ok_or_else(|| self.rls.error(format!("cannot read tally {line:?}")))
    }

    /// The RLS's output so far.
    pub fn log(&self) -> String {
        self.rls.log()
    }
}

/// What the RLS has answered: `calls = ok + over_limit + errors`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub calls: u64,
    pub ok: u64,
    pub over_limit: u64,
    pub errors: u64,
}

impl Tally {
    fn parse(line: &str) -> Option<Tally> {
        let mut tally = Tally::default();
        for field in line.split_whitespace() {
            let (name, value) = field.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match name {
                "calls" => tally.calls = value,
                "ok" => tally.ok = value,
                "over_limit" => tally.over_limit = value,
                "errors" => tally.errors = value,
                _ => {}
            }
        }
        Some(tally)
    }
}

/// Starts redis-server on a free port with no persistence; retries if the port was taken
/// between finding it and binding it.
async fn start_redis(dir: &Path) -> Result<(Process, u16), RigError> {
    let mut last = None;
    for attempt in 0..3 {
        let port = free_port()?;
        let mut redis = Process::spawn(
            "redis-server",
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir)
                .args(["--daemonize", "no"]),
            &dir.join(format!("redis-{attempt}.log")),
        )?;
        match redis
            .wait_for("ready", |log| log.contains("Ready to accept connections"))
            .await
        {
            Ok(()) => return Ok((redis, port)),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| RigError::Process {
        name: "redis-server".into(),
        message: "did not start".into(),
        log: String::new(),
    }))
}
