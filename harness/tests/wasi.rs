//! The WASI side: stdout and stderr become logs, randomness is deterministic, and the log
//! level filters what is kept.

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{LogLevel, LogOrigin};

#[test]
fn stdout_logs_at_info_and_stderr_at_error() {
    let host = probe().build().unwrap();
    host.send(probe_request("stdout:to out,stderr:to err"), ok_upstream());
    let logs = host.logs();
    let find = |message: &str| logs.iter().find(|e| e.message == message).cloned().unwrap();
    assert_eq!(find("to out").level, LogLevel::Info);
    assert_eq!(find("to err").level, LogLevel::Error);
    assert_eq!(find("to err").origin, LogOrigin::Filter);
}

#[test]
fn randomness_is_deterministic_for_a_seed() {
    let random = |seed: u64| {
        let host = probe().random_seed(seed).build().unwrap();
        let out = host.send(probe_request("random"), ok_upstream());
        out.upstream_request
            .unwrap()
            .header_value("x-random")
            .unwrap()
            .to_string()
    };
    assert_eq!(random(7), random(7));
    assert_ne!(random(7), random(8));
}

#[test]
fn logs_below_the_level_are_dropped() {
    let host = probe().build().unwrap();
    host.send(probe_request("log:1:quiet,log:3:loud"), ok_upstream());
    assert!(host.log_messages(LogLevel::Debug).is_empty());
    assert_eq!(host.log_messages(LogLevel::Warn), vec!["loud".to_string()]);

    let verbose = probe().log_level(LogLevel::Debug).build().unwrap();
    verbose.send(probe_request("log:1:quiet"), ok_upstream());
    assert!(verbose
        .log_messages(LogLevel::Debug)
        .contains(&"quiet".to_string()));
}
