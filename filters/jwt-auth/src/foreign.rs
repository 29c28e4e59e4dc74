//! Envoy's `verify_signature` foreign function: its protobuf argument and result, declared
//! with `prost`'s derive (as rate-limit's Rate Limit Service messages are).
//!
//! Envoy (`source/extensions/common/wasm/foreign.cc`) parses `VerifySignatureArguments`,
//! imports the key with BoringSSL's `EVP_parse_public_key` (DER SubjectPublicKeyInfo), and
//! runs `EVP_DigestVerify` with the named hash and the key's default padding:
//!
//! ```proto
//! message VerifySignatureArguments {
//!   string hash_function = 1;  // "sha256", "sha384", "sha512"
//!   bytes public_key = 2;      // DER SubjectPublicKeyInfo
//!   bytes signature = 3;       // RSA: PKCS#1 v1.5; ECDSA: DER ECDSA-Sig-Value
//!   bytes text = 4;            // the signed bytes
//!   string public_key_pem = 5; // alternative to public_key
//! }
//! message VerifySignatureResult { bool result = 1; string error = 2; }
//! ```
//!
//! So the host can check RS256/384/512 and ES256/384 (ECDSA signatures re-encoded as DER),
//! but not RSA-PSS (no padding option), Ed25519 (BoringSSL refuses a digest with it) or
//! HMAC. A host without the function answers `NotFound`; a key it cannot import,
//! `BadArgument`.

use prost::Message;

/// The name Envoy registers the function under.
pub const VERIFY_SIGNATURE: &str = "verify_signature";

/// The arguments of one verification: `VerifySignatureArguments` itself (prost's derive
/// also gives `Debug` and `Default`), so encoding copies nothing.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Arguments {
    /// `sha256`, `sha384` or `sha512`.
    #[prost(string, tag = "1")]
    pub hash_function: String,
    /// The public key as DER SubjectPublicKeyInfo.
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    /// The signature in the form BoringSSL verifies.
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    /// The signed bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub text: Vec<u8>,
}

/// Encodes `VerifySignatureArguments`.
pub fn encode_arguments(args: &Arguments) -> Vec<u8> {
    args.encode_to_vec()
}

/// Decodes `VerifySignatureArguments` (the host side, for test hosts that offer it).
pub fn decode_arguments(bytes: &[u8]) -> Option<Arguments> {
    Arguments::decode(bytes).ok()
}

/// Encodes `VerifySignatureResult` (the host side, for test hosts that offer it).
pub fn encode_result(valid: bool, error: &str) -> Vec<u8> {
    wire::VerifySignatureResult {
        result: valid,
        error: error.to_string(),
    }
    .encode_to_vec()
}

/// Decodes `VerifySignatureResult`: `Some(valid)`, or `None` when the bytes are not one.
pub fn decode_result(bytes: &[u8]) -> Option<bool> {
    wire::VerifySignatureResult::decode(bytes)
        .ok()
        .map(|r| r.result)
}

/// `VerifySignatureResult`, as prost declares it.
mod wire {
    /// `VerifySignatureResult`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VerifySignatureResult {
        #[prost(bool, tag = "1")]
        pub result: bool,
        #[prost(string, tag = "2")]
        pub error: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_with_long_fields() {
        let args = Arguments {
            hash_function: "sha256".into(),
            public_key: vec![0x30; 294],
            signature: vec![7; 256],
            text: b"header.payload".repeat(1000),
        };
        let bytes = encode_arguments(&args);
        assert_eq!(&bytes[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(decode_arguments(&bytes), Some(args));
    }

    #[test]
    fn results_decode_as_envoy_encodes_them() {
        assert_eq!(decode_result(&encode_result(true, "")), Some(true));
        assert_eq!(
            decode_result(&encode_result(false, "Failed to verify digest")),
            Some(false)
        );
        // proto3 omits false and empty fields: an empty message is a failed verification.
        assert_eq!(decode_result(&[]), Some(false));
    }

    #[test]
    fn unknown_fields_are_skipped_and_garbage_refused() {
        let mut bytes = vec![0x18, 0x05, 0x25, 1, 2, 3, 4, 0x29, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend(encode_result(true, ""));
        assert_eq!(decode_result(&bytes), Some(true));
        assert_eq!(decode_result(&[0x12, 0x05, b'a']), None);
        assert_eq!(decode_result(&[0x0b]), None);
        assert_eq!(
            decode_result(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            None
        );
    }
}
