//! Local replies with a small JSON body, the way every meshward filter answers a client.
//!
//! A filter that answers the client itself must also stop the request: after
//! `send_local_response` the callback returns [`Action::Pause`], or Envoy would go on to
//! the next filter and the upstream. [`refuse`] does both.

use crate::host::{self, HostResult};
use crate::{log, Action};

/// The JSON body of an error reply: `{"error":"<code>","message":"<message>"}`.
pub fn json_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({ "error": code, "message": message })
        .to_string()
        .into_bytes()
}

/// Sends `status` with a JSON error body and `headers` (for example `WWW-Authenticate` or
/// `Retry-After`). `code` is a short machine-readable reason, also used as the response
/// code details Envoy logs.
pub fn send_json_error(
    status: u32,
    code: &str,
    message: &str,
    headers: &[(&str, &str)],
) -> HostResult<()> {
    let mut all: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 1);
    all.push(("content-type", "application/json"));
    all.extend_from_slice(headers);
    host::send_local_response(
        status,
        &format!("meshward_{code}"),
        &all,
        &json_body(code, message),
    )
}

/// Answers the client with [`send_json_error`] and returns [`Action::Pause`], what a stream
/// callback returns after a local reply: `return reply::refuse(403, "tenant_not_allowed",
/// "...", &[]);`. If the host refuses to send the reply, that is logged at error level and
/// the request stays paused until one of Envoy's timeouts ends it: it is never let through.
pub fn refuse(status: u32, code: &str, message: &str, headers: &[(&str, &str)]) -> Action {
    if let Err(error) = send_json_error(status, code, message, headers) {
        log::error(&format!(
            "could not send the {status} {code} reply: {error}"
        ));
    }
    Action::Pause
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_json_and_escapes_what_it_is_given() {
        let body = json_body("too_many_requests", "quota \"api\" exhausted");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "too_many_requests");
        assert_eq!(v["message"], "quota \"api\" exhausted");
    }

    #[test]
    fn refuse_pauses_even_when_the_reply_cannot_be_sent() {
        // Outside a proxy every host call fails: the request must still not go on.
        assert_eq!(refuse(403, "denied", "no", &[]), Action::Pause);
    }
}
