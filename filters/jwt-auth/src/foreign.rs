//! Envoy's `verify_signature` foreign function: its protobuf argument and result, encoded
//! and decoded by hand (two small messages do not justify a protobuf crate).
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

/// The name Envoy registers the function under.
pub const VERIFY_SIGNATURE: &str = "verify_signature";

/// The arguments of one verification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arguments {
    /// `sha256`, `sha384` or `sha512`.
    pub hash_function: String,
    /// The public key as DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// The signature in the form BoringSSL verifies.
    pub signature: Vec<u8>,
    /// The signed bytes.
    pub text: Vec<u8>,
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn push_bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    if bytes.is_empty() {
        return; // proto3 leaves default values out
    }
    out.push(field << 3 | 2);
    push_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes `VerifySignatureArguments`.
pub fn encode_arguments(args: &Arguments) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        16 + args.hash_function.len()
            + args.public_key.len()
            + args.signature.len()
            + args.text.len(),
    );
    push_bytes_field(&mut out, 1, args.hash_function.as_bytes());
    push_bytes_field(&mut out, 2, &args.public_key);
    push_bytes_field(&mut out, 3, &args.signature);
    push_bytes_field(&mut out, 4, &args.text);
    out
}

/// A field read from the protobuf wire format.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Reads protobuf fields one by one; `None` on malformed input.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn skip(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(taken)
    }

    fn next(&mut self) -> Option<Option<(u64, Field<'a>)>> {
        if self.bytes.is_empty() {
            return Some(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Field::Bytes(self.skip(len)?)
            }
            5 => {
                self.skip(4)?;
                Field::Fixed
            }
            _ => return None,
        };
        Some(Some((key >> 3, field)))
    }
}

/// Decodes `VerifySignatureArguments` (the host side, for test hosts that offer it).
pub fn decode_arguments(bytes: &[u8]) -> Option<Arguments> {
    let mut reader = Reader { bytes };
    let mut args = Arguments::default();
    while let Some((number, field)) = reader.next()? {
        match (number, field) {
            (1, Field::Bytes(b)) => args.hash_function = String::from_utf8(b.to_vec()).ok()?,
            (2, Field::Bytes(b)) => args.public_key = b.to_vec(),
            (3, Field::Bytes(b)) => args.signature = b.to_vec(),
            (4, Field::Bytes(b)) => args.text = b.to_vec(),
            _ => {}
        }
    }
    Some(args)
}

/// Encodes `VerifySignatureResult` (the host side, for test hosts that offer it).
pub fn encode_result(valid: bool, error: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if valid {
        out.extend_from_slice(&[0x08, 0x01]);
    }
    push_bytes_field(&mut out, 2, error.as_bytes());
    out
}

/// Decodes `VerifySignatureResult`: `Some(valid)`, or `None` when the bytes are not one.
pub fn decode_result(bytes: &[u8]) -> Option<bool> {
    let mut reader = Reader { bytes };
    let mut valid = false;
    while let Some((number, field)) = reader.next()? {
        if let (1, Field::Varint(v)) = (number, field) {
            valid = v != 0;
        }
    }
    Some(valid)
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
