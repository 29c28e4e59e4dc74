//! Fixtures shared by the harness's tests: hosts running the probe filter, and requests
//! carrying probe commands.

#![allow(dead_code)]

use meshward_harness::{wasm_path, Host, HostBuilder, Request, Response, Upstream};

/// A builder for a host running the probe fixture (see its `commands.rs`).
pub fn probe() -> HostBuilder {
    Host::builder(wasm_path("fixture-probe"))
}

/// A GET request carrying probe commands in `x-probe`.
pub fn probe_request(commands: &str) -> Request {
    Request::get("/probe?q=1")
        .header("host", "app.example")
        .header("x-probe", commands)
}

/// An upstream answering 200 with a small body.
pub fn ok_upstream() -> Upstream {
    Upstream::reply(Response::new(200).header("server", "nginx").body("hello"))
}

/// Hex of bytes, as the probe reports property values.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
