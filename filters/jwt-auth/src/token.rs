//! Parsing a compact JWS (`header.payload.signature`) into its header, claims and the bytes
//! that were signed. Nothing here trusts the token: it only refuses what cannot be a JWT.

use crate::base64url;
use crate::json::{self, JsonError};
use serde_json::{Map, Value};
use std::fmt;

/// The signature algorithms this filter verifies (RFC 7518 §3, RFC 8037 for EdDSA), named
/// in configuration as in a token's `alg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in the order the README lists them.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The algorithm named `name` (case-sensitive, as JWA spells it). `none` is not one.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The name JWA gives it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The longest `kid` accepted, in bytes.
pub const MAX_KID_BYTES: usize = 256;

/// Why a string is not a token this filter can verify. The text is safe to send to the
/// client: it never quotes the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than the configured maximum.
    TooLarge,
    /// Not three base64url segments of a JSON header and a JSON claims object.
    Malformed(&'static str),
    /// The header says `alg: none`: the token is unsigned.
    Unsigned,
    /// The header names an algorithm this filter does not verify.
    UnsupportedAlgorithm,
    /// The signature segment is empty.
    MissingSignature,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLarge => f.write_str("the token is too large"),
            TokenError::Malformed(what) => write!(f, "the token is malformed: {what}"),
            TokenError::Unsigned => f.write_str("unsigned tokens (alg none) are not accepted"),
            TokenError::UnsupportedAlgorithm => {
                f.write_str("the token's algorithm is not supported")
            }
            TokenError::MissingSignature => f.write_str("the token has no signature"),
        }
    }
}

/// The JOSE header fields this filter acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The signature algorithm the token claims.
    pub alg: Algorithm,
    /// The key id, if any.
    pub kid: Option<String>,
}

/// A parsed token. The claims are untrusted until `verify` has checked the signature.
#[derive(Clone, Debug)]
pub struct Token<'a> {
    /// The header.
    pub header: Header,
    /// The claims object.
    pub claims: Map<String, Value>,
    /// `header.payload` as it appeared: the bytes that were signed.
    pub signing_input: &'a [u8],
    /// The payload segment, still base64url-encoded (forwarded as is when asked).
    pub payload_segment: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Parses `raw` as a compact JWS of at most `max_bytes` bytes.
pub fn parse(raw: &str, max_bytes: usize) -> Result<Token<'_>, TokenError> {
    if raw.len() > max_bytes {
        return Err(TokenError::TooLarge);
    }
    let mut parts = raw.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three dot-separated segments",
        ));
    };
    if header_b64.is_empty() || payload_b64.is_empty() {
        return Err(TokenError::Malformed("empty segment"));
    }
    let header_json = base64url::decode(header_b64.as_bytes())
        .ok_or(TokenError::Malformed("the header is not base64url"))?;
    let header = parse_header(&header_json)?;
    if signature_b64.is_empty() {
        return Err(TokenError::MissingSignature);
    }
    let signature = base64url::decode(signature_b64.as_bytes())
        .ok_or(TokenError::Malformed("the signature is not base64url"))?;
    let payload_json = base64url::decode(payload_b64.as_bytes())
        .ok_or(TokenError::Malformed("the payload is not base64url"))?;
    let claims = match json::parse(&payload_json) {
        Ok(Value::Object(claims)) => claims,
        Ok(_) => return Err(TokenError::Malformed("the payload is not a JSON object")),
        Err(JsonError::DuplicateMember) => {
            return Err(TokenError::Malformed("the payload names a member twice"))
        }
        Err(JsonError::Invalid) => return Err(TokenError::Malformed("the payload is not JSON")),
    };
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    Ok(Token {
        header,
        claims,
        signing_input: raw.as_bytes().get(..signed_len).unwrap_or_default(),
        payload_segment: payload_b64,
        signature,
    })
}

fn parse_header(json: &[u8]) -> Result<Header, TokenError> {
    let fields = match json::parse(json) {
        Ok(Value::Object(fields)) => fields,
        Err(JsonError::DuplicateMember) => {
            return Err(TokenError::Malformed("the header names a member twice"))
        }
        _ => return Err(TokenError::Malformed("the header is not a JSON object")),
    };
    // RFC 7515 §4.1.11: a recipient must refuse extensions it does not understand, and this
    // filter understands none (`b64: false` among them).
    if fields.contains_key("crit") {
        return Err(TokenError::Malformed(
            "critical header extensions are not supported",
        ));
    }
    let alg = match fields.get("alg") {
        Some(Value::String(name)) if name.eq_ignore_ascii_case("none") => {
            return Err(TokenError::Unsigned)
        }
        Some(Value::String(name)) => {
            Algorithm::from_name(name).ok_or(TokenError::UnsupportedAlgorithm)?
        }
        Some(_) => return Err(TokenError::Malformed("the alg header is not a string")),
        None => return Err(TokenError::Malformed("the header has no alg")),
    };
    let kid = match fields.get("kid") {
        // Kids are remembered when unknown (see `remote`): keep what one can cost small.
        Some(Value::String(kid)) if kid.len() > MAX_KID_BYTES => {
            return Err(TokenError::Malformed("the kid header is too long"))
        }
        Some(Value::String(kid)) => Some(kid.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(TokenError::Malformed("the kid header is not a string")),
    };
    Ok(Header { alg, kid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base64url::encode;

    fn token(header: &str, payload: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            encode(header.as_bytes()),
            encode(payload.as_bytes()),
            encode(signature)
        )
    }

    #[test]
    fn parses_the_header_claims_and_signing_input() {
        let raw = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"ann"}"#,
            b"sig",
        );
        let parsed = parse(&raw, 8192).unwrap();
        assert_eq!(parsed.header.alg, Algorithm::RS256);
        assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.claims["sub"], "ann");
        assert_eq!(parsed.signature, b"sig");
        let dot = raw.rfind('.').unwrap();
        assert_eq!(parsed.signing_input, &raw.as_bytes()[..dot]);
    }

    #[test]
    fn refuses_alg_none_in_any_case() {
        for none in ["none", "None", "NONE"] {
            let raw = token(&format!(r#"{{"alg":"{none}"}}"#), "{}", b"x");
            assert_eq!(parse(&raw, 8192).unwrap_err(), TokenError::Unsigned);
        }
    }

    #[test]
    fn refuses_unknown_algorithms_and_headers_without_alg() {
        let raw = token(r#"{"alg":"RS1"}"#, "{}", b"x");
        assert_eq!(
            parse(&raw, 8192).unwrap_err(),
            TokenError::UnsupportedAlgorithm
        );
        let raw = token(r#"{"alg":"rs256"}"#, "{}", b"x");
        assert_eq!(
            parse(&raw, 8192).unwrap_err(),
            TokenError::UnsupportedAlgorithm
        );
        let raw = token(r#"{"kid":"k"}"#, "{}", b"x");
        assert!(matches!(parse(&raw, 8192), Err(TokenError::Malformed(_))));
        let raw = token(r#"{"alg":256}"#, "{}", b"x");
        assert!(matches!(parse(&raw, 8192), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn refuses_an_overlong_kid() {
        let kid = "k".repeat(MAX_KID_BYTES);
        let raw = token(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), "{}", b"x");
        assert!(parse(&raw, 8192).is_ok());
        let raw = token(&format!(r#"{{"alg":"HS256","kid":"{kid}k"}}"#), "{}", b"x");
        assert!(matches!(parse(&raw, 8192), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn refuses_a_stripped_signature() {
        let raw = token(r#"{"alg":"HS256"}"#, "{}", b"");
        assert_eq!(parse(&raw, 8192).unwrap_err(), TokenError::MissingSignature);
    }

    #[test]
    fn refuses_critical_extensions() {
        let raw = token(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, "{}", b"x");
        assert!(matches!(parse(&raw, 8192), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn refuses_malformed_segments_without_panicking() {
        let good_header = encode(br#"{"alg":"HS256"}"#);
        let good_payload = encode(b"{}");
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{good_header}.{good_payload}.sig.extra"),
            format!("{good_header}..c2ln"),
            format!(".{good_payload}.c2ln"),
            format!("{good_header}.{good_payload}.!!!"),
            format!("{good_header}.e30=.c2ln"),
            format!("{}.{good_payload}.c2ln", encode(b"not json")),
            format!("{}.{good_payload}.c2ln", encode(b"[1]")),
            format!("{good_header}.{}.c2ln", encode(b"[1,2]")),
            format!("{good_header}.{}.c2ln", encode(b"\"str\"")),
            format!("{good_header}.{}.c2ln", encode(b"{\"exp\":1e999}")),
            format!("{good_header}.{}.c2ln", encode(&[0xff, 0xfe])),
            format!(
                "{good_header}.{}.c2ln",
                encode("[".repeat(10_000).as_bytes())
            ),
        ];
        for raw in &cases {
            assert!(parse(raw, 1 << 20).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn refuses_a_member_named_twice_in_the_header_or_the_payload() {
        let raw = token(r#"{"alg":"HS256","alg":"none"}"#, "{}", b"x");
        assert_eq!(
            parse(&raw, 8192).unwrap_err(),
            TokenError::Malformed("the header names a member twice")
        );
        let raw = token(r#"{"alg":"HS256"}"#, r#"{"sub":"ann","sub":"admin"}"#, b"x");
        assert_eq!(
            parse(&raw, 8192).unwrap_err(),
            TokenError::Malformed("the payload names a member twice")
        );
        let raw = token(
            r#"{"alg":"HS256"}"#,
            r#"{"realm":{"roles":["a"],"roles":["admin"]}}"#,
            b"x",
        );
        assert!(matches!(parse(&raw, 8192), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn refuses_tokens_over_the_size_limit_before_decoding() {
        let raw = token(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"pad":"{}"}}"#, "x".repeat(100)),
            b"s",
        );
        assert!(parse(&raw, raw.len()).is_ok());
        assert_eq!(
            parse(&raw, raw.len() - 1).unwrap_err(),
            TokenError::TooLarge
        );
    }

    #[test]
    fn error_texts_never_quote_the_token() {
        let raw = token(r#"{"alg":"XX"}"#, "{}", b"secret-signature");
        let text = parse(&raw, 8192).unwrap_err().to_string();
        assert!(!text.contains(&raw[..10]));
    }
}
