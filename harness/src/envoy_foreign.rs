//! The foreign functions Envoy 1.40 registers that filters here call, written in Rust with
//! RustCrypto so a test host offers what Envoy offers: for now `verify_signature`.
//!
//! Envoy's `verify_signature` (`source/extensions/common/wasm/foreign.cc`) takes a
//! serialized `VerifySignatureArguments` and answers a serialized `VerifySignatureResult`:
//!
//! ```proto
//! message VerifySignatureArguments {
//!   string hash_function = 1;  // "sha256", "sha384", "sha512"
//!   bytes public_key = 2;      // DER SubjectPublicKeyInfo
//!   bytes signature = 3;
//!   bytes text = 4;            // the signed bytes
//!   string public_key_pem = 5; // instead of public_key
//! }
//! message VerifySignatureResult { bool result = 1; string error = 2; }
//! ```
//!
//! It imports the key with BoringSSL and verifies with `EVP_DigestVerify` and the named
//! hash, so an RSA key means PKCS#1 v1.5 and an EC key an ECDSA signature in DER. This
//! module answers the same way:
//!
//! - arguments that do not parse, no key, both keys, or a key it cannot import:
//!   `BadArgument`;
//! - a hash it does not know: `Ok` with `result: false`, `error: "<hash> is not supported."`;
//! - an Ed25519 key: `Ok` with `result: false`, `error: "Failed to initialize digest
//!   verify."` (BoringSSL refuses a digest with Ed25519);
//! - a signature that does not verify: `Ok` with `result: false`, `error: "Failed to verify
//!   digest. Error code: 0"`;
//! - one that does: `Ok` with `result: true`.
//!
//! Where it differs: keys are RSA up to 4096 bits, P-256 or P-384 (BoringSSL also takes
//! larger RSA keys and P-224/P-521), and hashes are SHA-256/384/512 (Envoy also takes SHA-1
//! and SHA-224).

use crate::status::Status;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The name Envoy registers `verify_signature` under.
pub const VERIFY_SIGNATURE: &str = "verify_signature";

/// A foreign function as Envoy defines one: serialized arguments in, a result or a status out.
pub type Function = fn(&[u8]) -> Result<Vec<u8>, Status>;

/// Every foreign function this module offers, by the name Envoy gives it.
pub fn functions() -> Vec<(&'static str, Function)> {
    vec![(VERIFY_SIGNATURE, verify_signature)]
}

/// Envoy's `verify_signature`: `arguments` is a serialized `VerifySignatureArguments`;
/// the answer a serialized `VerifySignatureResult` (see the module documentation).
pub fn verify_signature(arguments: &[u8]) -> Result<Vec<u8>, Status> {
    let args = Arguments::decode(arguments).ok_or(Status::BadArgument)?;
    let der = match (args.public_key.is_empty(), args.public_key_pem.is_empty()) {
        (false, true) => args.public_key.clone(),
        (true, false) => pem_to_der(&args.public_key_pem).ok_or(Status::BadArgument)?,
        _ => return Err(Status::BadArgument),
    };
    let key = Key::import(&der).ok_or(Status::BadArgument)?;
    let outcome = match Hash::named(&args.hash_function) {
        None => Err(format!("{} is not supported.", args.hash_function)),
        Some(hash) => key.verify(hash, &args.signature, &args.text),
    };
    Ok(match outcome {
        Ok(()) => encode_result(true, ""),
        Err(error) => encode_result(false, &error),
    })
}

/// The decoded `VerifySignatureArguments`.
#[derive(Default)]
struct Arguments {
    hash_function: String,
    public_key: Vec<u8>,
    signature: Vec<u8>,
    text: Vec<u8>,
    public_key_pem: String,
}

impl Arguments {
    /// Reads the protobuf wire format; unknown fields are skipped, `None` if malformed.
    fn decode(mut bytes: &[u8]) -> Option<Self> {
        let mut args = Arguments::default();
        while !bytes.is_empty() {
            let key = varint(&mut bytes)?;
            match key & 7 {
                0 => {
                    varint(&mut bytes)?;
                }
                1 => bytes = bytes.get(8..)?,
                5 => bytes = bytes.get(4..)?,
                2 => {
                    let len = usize::try_from(varint(&mut bytes)?).ok()?;
                    let value = bytes.get(..len)?;
                    bytes = bytes.get(len..)?;
                    let text = || String::from_utf8(value.to_vec()).ok();
                    match key >> 3 {
                        1 => args.hash_function = text()?,
                        2 => args.public_key = value.to_vec(),
                        3 => args.signature = value.to_vec(),
                        4 => args.text = value.to_vec(),
                        5 => args.public_key_pem = text()?,
                        _ => {}
                    }
                }
                _ => return None,
            }
        }
        Some(args)
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Serializes `VerifySignatureResult` as protobuf does: default values left out.
fn encode_result(valid: bool, error: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if valid {
        out.extend_from_slice(&[0x08, 0x01]);
    }
    if !error.is_empty() {
        out.push(0x12);
        push_varint(&mut out, error.len() as u64);
        out.extend_from_slice(error.as_bytes());
    }
    out
}

/// A `-----BEGIN PUBLIC KEY-----` block as DER, as BoringSSL's `PEM_read_bio_PUBKEY` reads it.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let (label, document) = rsa::pkcs8::Document::from_pem(pem).ok()?;
    (label == "PUBLIC KEY").then(|| document.as_bytes().to_vec())
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// Envoy looks hash names up regardless of case.
    fn named(name: &str) -> Option<Hash> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Some(Hash::Sha256),
            "sha384" => Some(Hash::Sha384),
            "sha512" => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn digest(self, text: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(text).to_vec(),
            Hash::Sha384 => Sha384::digest(text).to_vec(),
            Hash::Sha512 => Sha512::digest(text).to_vec(),
        }
    }
}

/// The DER SubjectPublicKeyInfo prefix of every Ed25519 key (OID 1.3.101.112).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A public key BoringSSL's `EVP_parse_public_key` would import.
enum Key {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519,
}

impl Key {
    fn import(der: &[u8]) -> Option<Key> {
        if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(der) {
            return Some(Key::Rsa(key));
        }
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Some(Key::P256(key));
        }
        if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Some(Key::P384(key));
        }
        (der.len() == ED25519_SPKI_PREFIX.len() + 32 && der.starts_with(&ED25519_SPKI_PREFIX))
            .then_some(Key::Ed25519)
    }

    /// `EVP_DigestVerify` with `hash`: the key's default padding, ECDSA signatures in DER.
    fn verify(&self, hash: Hash, signature: &[u8], text: &[u8]) -> Result<(), String> {
        let digest = hash.digest(text);
        let valid = match self {
            Key::Rsa(key) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                key.verify(scheme, &digest, signature).is_ok()
            }
            Key::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok()),
            Key::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok()),
            Key::Ed25519 => return Err("Failed to initialize digest verify.".to_string()),
        };
        if valid {
            Ok(())
        } else {
            Err("Failed to verify digest. Error code: 0".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push(number << 3 | 2);
        push_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn arguments(hash: &str, key: &[u8], pem: &str, signature: &[u8], text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        field(&mut out, 1, hash.as_bytes());
        if !key.is_empty() {
            field(&mut out, 2, key);
        }
        field(&mut out, 3, signature);
        field(&mut out, 4, text);
        if !pem.is_empty() {
            field(&mut out, 5, pem.as_bytes());
        }
        out
    }

    fn p256_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap()
    }

    #[test]
    fn a_good_ecdsa_signature_verifies_from_a_der_or_a_pem_key() {
        let key = p256_key();
        let text = b"header.payload";
        let signature: p256::ecdsa::Signature = key.sign(text);
        let der = key.verifying_key().to_public_key_der().unwrap();
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let sig = signature.to_der();
        let by_der = arguments("sha256", der.as_bytes(), "", sig.as_bytes(), text);
        assert_eq!(verify_signature(&by_der), Ok(vec![0x08, 0x01]));
        let by_pem = arguments("SHA256", &[], &pem, sig.as_bytes(), text);
        assert_eq!(verify_signature(&by_pem), Ok(vec![0x08, 0x01]));
    }

    #[test]
    fn a_bad_signature_or_hash_is_a_false_result_with_envoys_error() {
        let key = p256_key();
        let der = key.verifying_key().to_public_key_der().unwrap();
        let signature: p256::ecdsa::Signature = key.sign(b"other text");
        let sig = signature.to_der();
        let wrong = arguments("sha256", der.as_bytes(), "", sig.as_bytes(), b"text");
        assert_eq!(
            verify_signature(&wrong),
            Ok(encode_result(
                false,
                "Failed to verify digest. Error code: 0"
            ))
        );
        let md5 = arguments("md5", der.as_bytes(), "", sig.as_bytes(), b"text");
        assert_eq!(
            verify_signature(&md5),
            Ok(encode_result(false, "md5 is not supported."))
        );
        let mut ed25519 = ED25519_SPKI_PREFIX.to_vec();
        ed25519.extend([9; 32]);
        let eddsa = arguments("sha256", &ed25519, "", &[1; 64], b"text");
        assert_eq!(
            verify_signature(&eddsa),
            Ok(encode_result(false, "Failed to initialize digest verify."))
        );
    }

    #[test]
    fn no_key_two_keys_a_bad_key_or_garbage_is_a_bad_argument() {
        let der = p256_key().verifying_key().to_public_key_der().unwrap();
        let pem = p256_key()
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        for args in [
            arguments("sha256", &[], "", b"sig", b"text"),
            arguments("sha256", der.as_bytes(), &pem, b"sig", b"text"),
            arguments("sha256", b"not a key", "", b"sig", b"text"),
            arguments("sha256", &[], "-----BEGIN NOTHING-----", b"sig", b"text"),
            vec![0x0a, 0x05, b's'],
            vec![0x0b],
        ] {
            assert_eq!(verify_signature(&args), Err(Status::BadArgument));
        }
    }
}
