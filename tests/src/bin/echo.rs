//! `meshward-echo`: an upstream for `make run` that answers every request with 200 and a
//! JSON description of what it received, so you can see what Envoy's filters forwarded.
//!
//! Like many application servers it announces itself (`server`, `x-powered-by`), so the
//! demo can show security-headers removing those headers.
//!
//! Usage: `meshward-echo [--port PORT]` (or `MESHWARD_ECHO_PORT`); listens on
//! `127.0.0.1:8080` unless told otherwise.

use std::process::ExitCode;

use meshward_tests::http1::{self, Answer, Request};
use serde_json::Value;
use tokio::net::TcpListener;

const DEFAULT_PORT: u16 = 8080;
const USAGE: &str = "usage: meshward-echo [--port PORT]   (or MESHWARD_ECHO_PORT=PORT)";

fn port_from(args: &[String], env: Option<String>) -> Result<u16, String> {
    let text = match args {
        [] => env,
        [flag, port] if flag == "--port" => Some(port.clone()),
        _ => return Err(USAGE.into()),
    };
    match text {
        None => Ok(DEFAULT_PORT),
        Some(text) => text
            .parse()
            .map_err(|_| format!("port: expected a number from 0 to 65535, got {text:?}")),
    }
}

/// The request as JSON, keys in reading order and one header a line:
/// `{"method": ..., "path": ..., "headers": [["name", "value"], ...], "body": ...}`.
fn describe(request: &Request) -> Vec<u8> {
    let text = |s: &str| Value::from(s).to_string();
    let headers: Vec<String> = request
        .headers
        .iter()
        .map(|(name, value)| format!("    [{}, {}]", text(name), text(value)))
        .collect();
    format!(
        "{{\n  \"method\": {},\n  \"path\": {},\n  \"headers\": [\n{}\n  ],\n  \"body\": {}\n}}\n",
        text(&request.method),
        text(&request.path),
        headers.join(",\n"),
        text(&String::from_utf8_lossy(&request.body)),
    )
    .into_bytes()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match port_from(&args, std::env::var("MESHWARD_ECHO_PORT").ok()) {
        Ok(port) => port,
        Err(message) => {
            eprintln!("meshward-echo: {message}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("meshward-echo: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("meshward-echo: listening on 127.0.0.1:{port}");
    http1::serve(listener, |request: Request| async move {
        let headers = [
            ("content-type".to_owned(), "application/json".to_owned()),
            ("server".to_owned(), "meshward-echo".to_owned()),
            ("x-powered-by".to_owned(), "meshward-echo".to_owned()),
        ];
        Answer::Send(http1::encode_response(200, &headers, &describe(&request)))
    })
    .await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_port_from_the_flag_then_the_environment_then_the_default() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            port_from(&args(&["--port", "9000"]), Some("1".into())),
            Ok(9000)
        );
        assert_eq!(port_from(&args(&[]), Some("9001".into())), Ok(9001));
        assert_eq!(port_from(&args(&[]), None), Ok(8080));
        let error = port_from(&args(&["--port", "x"]), None).unwrap_err();
        assert!(error.contains("port: expected a number"), "{error}");
        assert!(port_from(&args(&["--bogus"]), None).is_err());
    }

    #[test]
    fn describes_the_request_with_headers_in_order() {
        let request = Request::post("/p")
            .with_body("hi")
            .with_header("b", "2")
            .with_header("a", "1");
        let body: Value = serde_json::from_slice(&describe(&request)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"method": "POST", "path": "/p", "headers": [["b", "2"], ["a", "1"]], "body": "hi"})
        );
    }
}
