//! Local replies with a small JSON body, the way every meshward filter answers a client.

use crate::host::{self, HostResult};

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
}
