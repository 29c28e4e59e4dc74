//! What happens when things go wrong: a trap kills that worker's VM and the fail policy
//! applies; a plugin that refuses its configuration, or a module that is not Proxy-Wasm,
//! does not load.

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{wasm_path, HarnessError, Host, LogLevel, Request};

#[test]
fn fail_closed_answers_503_for_the_trapping_request_and_every_later_one() {
    let host = probe().workers(2).fail_closed().build().unwrap();
    let out = host.worker(0).send(probe_request("trap"), ok_upstream());
    assert_eq!(out.response.status(), 503);
    assert_eq!(out.details, "wasm_fail_stream");
    assert!(out.upstream_request.is_none());
    assert!(!host.vm_alive(0));

    let later = host
        .worker(0)
        .send(probe_request("add-request:x-a=1"), ok_upstream());
    assert_eq!(later.response.status(), 503);
    assert!(later.upstream_request.is_none());
    assert!(
        later.cost.calls.is_empty(),
        "a failed VM is never called again"
    );

    assert!(host.vm_alive(1));
    assert_eq!(
        host.worker(1)
            .send(probe_request(""), ok_upstream())
            .response
            .status(),
        200
    );
}

#[test]
fn fail_open_lets_requests_through_untouched_after_a_trap() {
    let host = probe().fail_open().build().unwrap();
    let out = host.send(probe_request("trap"), ok_upstream());
    assert_eq!(out.response.status(), 200);
    let later = host.send(
        probe_request("add-request:x-a=1,response-header:x-b=2"),
        ok_upstream(),
    );
    assert_eq!(later.response.status(), 200);
    assert!(later
        .upstream_request
        .unwrap()
        .header_value("x-a")
        .is_none());
    assert!(later.response.header_value("x-b").is_none());
}

#[test]
fn a_trap_in_the_response_phase_replaces_the_response_when_failing_closed() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("trap-response"), ok_upstream());
    assert!(out.upstream_request.is_some());
    assert_eq!(out.response.status(), 503);
    assert!(!host.vm_alive(0));
}

#[test]
fn a_trap_is_logged_as_envoy_logs_it() {
    let host = probe().build().unwrap();
    host.send(probe_request("trap"), ok_upstream());
    let critical = host.log_messages(LogLevel::Critical);
    assert_eq!(critical.len(), 1);
    assert!(
        critical[0].starts_with("Function: proxy_on_request_headers failed:"),
        "{}",
        critical[0]
    );
}

#[test]
fn a_trap_in_a_tick_kills_the_vm() {
    let host = probe().config("tick_ms=10;tick_trap").build().unwrap();
    host.advance(std::time::Duration::from_millis(50));
    assert!(!host.vm_alive(0));
    assert_eq!(host.counter("probe_ticks"), Some(1));
}

#[test]
fn a_rejected_configuration_fails_the_load_and_keeps_the_logs() {
    let Err(error) = probe().config("reject").build() else {
        panic!("a plugin whose on_configure returns false must not load");
    };
    assert!(matches!(error, HarnessError::LoadFailed { .. }));
    assert!(error
        .to_string()
        .contains("proxy_on_configure returned false"));
    assert!(error
        .logs()
        .iter()
        .any(|e| e.message == "configuration rejected"));
}

#[test]
fn a_refused_vm_configuration_or_a_trap_while_configuring_fails_the_load() {
    let refused = probe().vm_config("refuse").build().err().unwrap();
    assert!(refused
        .to_string()
        .contains("proxy_on_vm_start returned false"));
    let trapped = probe().config("trap").build().err().unwrap();
    assert!(trapped
        .to_string()
        .contains("Function: proxy_on_configure failed"));
}

#[test]
fn a_missing_module_says_to_build_it_first() {
    let error = Host::builder(wasm_path("no-such-filter"))
        .build()
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("run `make build` first"),
        "{error}"
    );
}

#[test]
fn a_module_without_the_abi_version_export_is_refused() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0))"#;
    let error = Host::from_bytes(wat).build().err().unwrap();
    assert!(
        error.to_string().contains("proxy_abi_version_0_2_1"),
        "{error}"
    );
}

#[test]
fn a_module_importing_an_unknown_host_function_is_refused() {
    let wat = r#"(module (import "env" "proxy_teleport" (func (result i32)))
        (memory (export "memory") 1)
        (func (export "proxy_abi_version_0_2_1"))
        (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0))"#;
    let error = Host::from_bytes(wat).build().err().unwrap();
    assert!(error.to_string().contains("proxy_teleport"), "{error}");
}

#[test]
fn an_endless_loop_runs_out_of_fuel_and_fails_the_vm() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "proxy_abi_version_0_2_1"))
        (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0)
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (loop $forever (br $forever)) i32.const 0))"#;
    let host = Host::from_bytes(wat).fuel_limit(100_000).build().unwrap();
    let out = host.send(Request::get("/"), ok_upstream());
    assert_eq!(out.response.status(), 503);
    assert!(!host.vm_alive(0));
}

#[test]
fn a_module_importing_the_abi_0_1_0_stream_calls_is_refused_as_envoy_refuses_it() {
    // proxy-wasm-cpp-host registers these three for ABI 0.1.0 only.
    for import in [
        "proxy_continue_request",
        "proxy_continue_response",
        "proxy_clear_route_cache",
    ] {
        let wat = format!(
            r#"(module (import "env" "{import}" (func (result i32)))
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0))"#
        );
        let error = Host::from_bytes(wat).build().err().unwrap();
        assert!(error.to_string().contains(import), "{error}");
    }
}

#[test]
fn fail_reload_starts_a_new_vm_for_the_next_request_at_most_once_per_backoff() {
    let host = probe()
        .fail_reload(std::time::Duration::from_secs(1))
        .build()
        .unwrap();
    let trapped = host.send(probe_request("trap"), ok_upstream());
    assert_eq!(trapped.response.status(), 503);
    assert!(!host.vm_alive(0));

    // The first reload is at once: a new VM (configured again) serves the request.
    let after = host.send(probe_request("add-request:x-a=1"), ok_upstream());
    assert_eq!(after.response.status(), 200);
    assert_eq!(
        after.upstream_request.unwrap().header_value("x-a"),
        Some("1")
    );
    assert!(host.vm_alive(0));

    // A second failure within the backoff stays failed (closed) until it has passed.
    assert_eq!(
        host.send(probe_request("trap"), ok_upstream())
            .response
            .status(),
        503
    );
    assert_eq!(
        host.send(probe_request(""), ok_upstream())
            .response
            .status(),
        503
    );
    host.advance(std::time::Duration::from_secs(1));
    assert_eq!(
        host.send(probe_request(""), ok_upstream())
            .response
            .status(),
        200
    );
}

#[test]
fn a_trap_after_the_response_headers_went_out_resets_the_stream() {
    let host = probe().fail_closed().build().unwrap();
    let out = host.send(
        probe_request("rsb>trap"),
        meshward_harness::Upstream::reply(meshward_harness::Response::new(200).body("hello")),
    );
    assert!(out.reset, "{out:?}");
    assert_eq!(out.details, "wasm_fail_stream");
}
