//! Signature verification: choosing the key for a token and checking the signature, on the
//! host (Envoy's BoringSSL, through `verify_signature`) when it can, in Rust otherwise.
//!
//! Keys are chosen by `kid` when the token has one, and otherwise by the algorithms each
//! key allows. A key is only ever used with an algorithm it allows (see `jwks`), whatever
//! the token's header says.

use crate::der;
use crate::foreign::Arguments;
use crate::jwks::{Jwk, KeyMaterial, KeySet};
use crate::rsa_verify::Hash;
use crate::token::{Algorithm, Token};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};
use std::fmt;

/// The host's verifier: Envoy's `verify_signature` foreign function.
pub trait HostVerifier {
    /// Verifies with the host. `Some(valid)` when the host checked the signature, `None`
    /// when it cannot (no such function, or it refused the arguments): the caller then
    /// checks in Rust.
    fn verify(&mut self, args: &Arguments) -> Option<bool>;
}

/// A host with no verifier: every check runs in Rust.
pub struct NoHost;

impl HostVerifier for NoHost {
    fn verify(&mut self, _args: &Arguments) -> Option<bool> {
        None
    }
}

/// Where a signature was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// By the host.
    Host,
    /// In Rust, inside the Wasm module.
    Wasm,
}

/// Why a signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// No key has the token's `kid`.
    UnknownKid,
    /// The token has no `kid` and no key allows its algorithm.
    NoKeyForAlgorithm,
    /// The key with the token's `kid` does not allow the token's algorithm.
    AlgorithmNotAllowed,
    /// The signature does not verify.
    BadSignature,
    /// The token has no `kid` and the provider requires one.
    MissingKid,
    /// The signature would be checked in Wasm with an RSA key larger than allowed there.
    KeyTooLargeForWasm,
}

/// Bounds on the work one token may cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// How many keys a token without `kid` is tried against, at most (0: a `kid` is
    /// required).
    pub max_keys_without_kid: usize,
    /// The largest RSA modulus, in bits, whose signatures are checked in Wasm.
    pub max_wasm_rsa_bits: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_keys_without_kid: 4,
            max_wasm_rsa_bits: 4096,
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyError::UnknownKid => "the token's key id is not among the issuer's keys",
            VerifyError::NoKeyForAlgorithm => "no key of the issuer allows the token's algorithm",
            VerifyError::AlgorithmNotAllowed => "the token's algorithm is not allowed for its key",
            VerifyError::BadSignature => "the token's signature is invalid",
            VerifyError::MissingKid => "the token has no key id (kid)",
            VerifyError::KeyTooLargeForWasm => {
                "the issuer's RSA key is too large to check this signature here"
            }
        })
    }
}

/// Verifies `token`'s signature with a key from `keys`, within `limits`.
pub fn verify(
    token: &Token<'_>,
    keys: &KeySet,
    host: &mut dyn HostVerifier,
    limits: Bounds,
) -> Result<Engine, VerifyError> {
    let alg = token.header.alg;
    let candidates: Vec<&Jwk> = match &token.header.kid {
        Some(kid) => {
            let named: Vec<&Jwk> = keys
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect();
            if named.is_empty() {
                return Err(VerifyError::UnknownKid);
            }
            let usable: Vec<&Jwk> = named.into_iter().filter(|k| k.allows(alg)).collect();
            if usable.is_empty() {
                return Err(VerifyError::AlgorithmNotAllowed);
            }
            usable
        }
        None if limits.max_keys_without_kid == 0 => return Err(VerifyError::MissingKid),
        // Never every key of a large set: a forged token without `kid` would cost one
        // verification per key.
        None => {
            let usable: Vec<&Jwk> = keys
                .keys
                .iter()
                .filter(|k| k.allows(alg))
                .take(limits.max_keys_without_kid)
                .collect();
            if usable.is_empty() {
                return Err(VerifyError::NoKeyForAlgorithm);
            }
            usable
        }
    };
    let mut too_large = false;
    for key in candidates {
        match check(
            alg,
            key,
            token.signing_input,
            &token.signature,
            host,
            limits,
        ) {
            Checked::Valid(engine) => return Ok(engine),
            Checked::Invalid => {}
            Checked::TooLargeForWasm => too_large = true,
        }
    }
    if too_large {
        return Err(VerifyError::KeyTooLargeForWasm);
    }
    Err(VerifyError::BadSignature)
}

/// What checking one signature with one key found.
enum Checked {
    Valid(Engine),
    Invalid,
    /// Only Wasm could check it, and the RSA key is over `max_wasm_rsa_bits`.
    TooLargeForWasm,
}

/// Checks one signature with one key.
fn check(
    alg: Algorithm,
    key: &Jwk,
    input: &[u8],
    signature: &[u8],
    host: &mut dyn HostVerifier,
    limits: Bounds,
) -> Checked {
    match check_inner(alg, key, input, signature, host, limits) {
        Some(Ok(engine)) => Checked::Valid(engine),
        Some(Err(TooLarge)) => Checked::TooLargeForWasm,
        None => Checked::Invalid,
    }
}

/// An RSA key over the Wasm limit met a signature only Wasm could check.
struct TooLarge;

/// `Some(Ok(engine))` when the signature verifies, `None` when it does not.
fn check_inner(
    alg: Algorithm,
    key: &Jwk,
    input: &[u8],
    signature: &[u8],
    host: &mut dyn HostVerifier,
    limits: Bounds,
) -> Option<Result<Engine, TooLarge>> {
    use Algorithm::*;
    let on_host = |host: &mut dyn HostVerifier, spki: &[u8], sig: Vec<u8>| {
        host.verify(&Arguments {
            hash_function: hash_name(alg).into(),
            public_key: spki.to_vec(),
            signature: sig,
            text: input.to_vec(),
        })
    };
    let verdict = |valid: bool, engine: Engine| valid.then_some(Ok(engine));
    // RSA in Wasm costs about the cube of the modulus size: a large key is checked only
    // where BoringSSL does it (RS* through `verify_signature`).
    let wasm_may_check =
        |key: &crate::rsa_verify::PublicKey| key.bits() <= limits.max_wasm_rsa_bits;
    match (&key.material, alg) {
        (KeyMaterial::Rsa { key, spki }, RS256 | RS384 | RS512) => {
            if signature.len() != key.size() {
                return None;
            }
            if let Some(valid) = on_host(host, spki, signature.to_vec()) {
                return verdict(valid, Engine::Host);
            }
            if !wasm_may_check(key) {
                return Some(Err(TooLarge));
            }
            verdict(
                key.verify_pkcs1v15(rsa_hash(alg), input, signature),
                Engine::Wasm,
            )
        }
        // Envoy's `verify_signature` has no padding option (BoringSSL's default for an RSA
        // key is PKCS#1 v1.5), so PSS always runs here.
        (KeyMaterial::Rsa { key, .. }, PS256 | PS384 | PS512) => {
            if signature.len() != key.size() {
                return None;
            }
            if !wasm_may_check(key) {
                return Some(Err(TooLarge));
            }
            verdict(
                key.verify_pss(rsa_hash(alg), input, signature),
                Engine::Wasm,
            )
        }
        (KeyMaterial::P256 { key, spki }, ES256) => {
            use p256::ecdsa::signature::Verifier;
            let sig = p256::ecdsa::Signature::from_slice(signature).ok()?;
            if let Some(valid) = on_host(host, spki, der::ecdsa_signature(signature)?) {
                return verdict(valid, Engine::Host);
            }
            verdict(key.verify(input, &sig).is_ok(), Engine::Wasm)
        }
        (KeyMaterial::P384 { key, spki }, ES384) => {
            use p384::ecdsa::signature::Verifier;
            let sig = p384::ecdsa::Signature::from_slice(signature).ok()?;
            if let Some(valid) = on_host(host, spki, der::ecdsa_signature(signature)?) {
                return verdict(valid, Engine::Host);
            }
            verdict(key.verify(input, &sig).is_ok(), Engine::Wasm)
        }
        (KeyMaterial::Ed25519(key), EdDSA) => {
            let sig = ed25519_dalek::Signature::from_slice(signature).ok()?;
            verdict(key.verify_strict(input, &sig).is_ok(), Engine::Wasm)
        }
        (KeyMaterial::Hmac(secret), HS256) => verdict(
            hmac_ok::<Hmac<Sha256>>(secret, input, signature),
            Engine::Wasm,
        ),
        (KeyMaterial::Hmac(secret), HS384) => verdict(
            hmac_ok::<Hmac<Sha384>>(secret, input, signature),
            Engine::Wasm,
        ),
        (KeyMaterial::Hmac(secret), HS512) => verdict(
            hmac_ok::<Hmac<Sha512>>(secret, input, signature),
            Engine::Wasm,
        ),
        // `Jwk::allows` was checked by the caller; any other pairing never verifies.
        _ => None,
    }
}

/// Constant-time HMAC comparison.
fn hmac_ok<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8], tag: &[u8]) -> bool {
    match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(input);
            mac.verify_slice(tag).is_ok()
        }
        Err(_) => false,
    }
}

/// The hash of an RSA algorithm.
fn rsa_hash(alg: Algorithm) -> Hash {
    match alg {
        Algorithm::RS384 | Algorithm::PS384 => Hash::Sha384,
        Algorithm::RS512 | Algorithm::PS512 => Hash::Sha512,
        _ => Hash::Sha256,
    }
}

/// The hash name `verify_signature` expects for `alg`.
fn hash_name(alg: Algorithm) -> &'static str {
    use Algorithm::*;
    match alg {
        RS256 | PS256 | ES256 | HS256 | EdDSA => "sha256",
        RS384 | PS384 | ES384 | HS384 => "sha384",
        RS512 | PS512 | HS512 => "sha512",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, Signer};
    use crate::foreign;
    use crate::jwks::{self, Limits, Strictness};
    use crate::token;
    use serde_json::json;

    fn keyset(value: serde_json::Value) -> KeySet {
        let limits = Limits {
            max_bytes: 1 << 20,
            max_keys: 64,
        };
        jwks::parse_value(&value, limits, Strictness::Strict)
            .unwrap()
            .set
    }

    fn check_token(raw: &str, keys: &KeySet) -> Result<Engine, VerifyError> {
        let token = token::parse(raw, 1 << 16).unwrap();
        verify(&token, keys, &mut NoHost, Bounds::default())
    }

    /// A host verifier written in Rust, as a test stand-in for Envoy's BoringSSL: it
    /// decodes the foreign-function arguments and checks them with RustCrypto.
    struct RustHost {
        calls: usize,
    }

    impl HostVerifier for RustHost {
        fn verify(&mut self, args: &Arguments) -> Option<bool> {
            self.calls += 1;
            let bytes = foreign::encode_arguments(args);
            let args = foreign::decode_arguments(&bytes)?;
            Some(fixtures::host_verify(&args))
        }
    }

    #[test]
    fn accepts_every_algorithm_signed_by_its_key() {
        let keys = keyset(fixtures::jwks());
        for alg in Algorithm::ALL {
            let raw = fixtures::token(alg, fixtures::NOW);
            assert_eq!(check_token(&raw, &keys), Ok(Engine::Wasm), "{alg}");
        }
    }

    #[test]
    fn accepts_tokens_without_kid_by_trying_the_keys_that_allow_the_algorithm() {
        let keys = keyset(fixtures::jwks());
        for alg in Algorithm::ALL {
            let header = json!({ "alg": alg.name() });
            let raw = fixtures::sign(
                alg,
                &fixtures::signer_for(alg),
                &header,
                &fixtures::claims(1),
            );
            assert_eq!(check_token(&raw, &keys), Ok(Engine::Wasm), "{alg}");
        }
    }

    #[test]
    fn rejects_a_token_signed_with_hs256_using_the_rsa_public_key_as_secret() {
        use rsa::pkcs8::EncodePublicKey;
        let public = fixtures::rsa_private_key().to_public_key();
        let keys =
            keyset(json!({ "keys": [fixtures::rsa_jwk(&fixtures::rsa_private_key(), "k")] }));
        // The classic confusion: the attacker HMACs with bytes the verifier might treat as a
        // secret: the PEM text, the DER, or the JWK's modulus.
        let secrets = [
            public
                .to_public_key_pem(Default::default())
                .unwrap()
                .into_bytes(),
            public.to_public_key_der().unwrap().as_bytes().to_vec(),
        ];
        for secret in secrets {
            for kid in [json!("k"), serde_json::Value::Null] {
                let header = json!({ "alg": "HS256", "kid": kid });
                let raw = fixtures::sign(
                    Algorithm::HS256,
                    &Signer::Hmac(secret.clone()),
                    &header,
                    &fixtures::claims(1),
                );
                let err = check_token(&raw, &keys).unwrap_err();
                assert!(
                    matches!(
                        err,
                        VerifyError::AlgorithmNotAllowed | VerifyError::NoKeyForAlgorithm
                    ),
                    "{err:?}"
                );
            }
        }
    }

    #[test]
    fn rejects_a_kid_that_points_at_a_key_of_another_type() {
        let keys = keyset(fixtures::jwks());
        // Signed correctly with the EC key, but the header names the RSA key's kid.
        let header = json!({ "alg": "ES256", "kid": fixtures::RSA_KID });
        let raw = fixtures::sign(
            Algorithm::ES256,
            &fixtures::signer_for(Algorithm::ES256),
            &header,
            &fixtures::claims(1),
        );
        assert_eq!(
            check_token(&raw, &keys),
            Err(VerifyError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn rejects_an_unknown_kid() {
        let keys = keyset(fixtures::jwks());
        let header = json!({ "alg": "RS256", "kid": "rotated-away" });
        let raw = fixtures::sign(
            Algorithm::RS256,
            &fixtures::signer_for(Algorithm::RS256),
            &header,
            &fixtures::claims(1),
        );
        assert_eq!(check_token(&raw, &keys), Err(VerifyError::UnknownKid));
    }

    #[test]
    fn rejects_a_signature_from_another_key() {
        let keys = keyset(fixtures::jwks());
        let other = Signer::Rsa(fixtures::other_rsa_private_key());
        for alg in [Algorithm::RS256, Algorithm::PS256] {
            let raw = fixtures::sign(alg, &other, &fixtures::header(alg), &fixtures::claims(1));
            assert_eq!(
                check_token(&raw, &keys),
                Err(VerifyError::BadSignature),
                "{alg}"
            );
        }
    }

    #[test]
    fn rejects_a_tampered_payload_for_every_algorithm() {
        let keys = keyset(fixtures::jwks());
        for alg in Algorithm::ALL {
            let raw = fixtures::token(alg, fixtures::NOW);
            let parts: Vec<&str> = raw.split('.').collect();
            let mut claims = fixtures::claims(fixtures::NOW);
            claims["sub"] = json!("admin");
            let forged = crate::base64url::encode(claims.to_string().as_bytes());
            let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
            assert_eq!(
                check_token(&tampered, &keys),
                Err(VerifyError::BadSignature),
                "{alg}"
            );
        }
    }

    #[test]
    fn a_token_without_kid_is_tried_against_at_most_the_configured_number_of_keys() {
        let decoys: Vec<serde_json::Value> = (0..5)
            .map(|i| fixtures::rsa_jwk(&fixtures::other_rsa_private_key(), &format!("d{i}")))
            .collect();
        let mut all = decoys.clone();
        all.push(fixtures::rsa_jwk(&fixtures::rsa_private_key(), "real"));
        let keys = keyset(json!({ "keys": all }));
        let header = json!({ "alg": "RS256" });
        let raw = fixtures::sign(
            Algorithm::RS256,
            &fixtures::signer_for(Algorithm::RS256),
            &header,
            &fixtures::claims(1),
        );
        let token = token::parse(&raw, 1 << 16).unwrap();
        let limited = |n: usize| Bounds {
            max_keys_without_kid: n,
            ..Bounds::default()
        };
        let mut host = RustHost { calls: 0 };
        assert_eq!(
            verify(&token, &keys, &mut host, Bounds::default()),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(host.calls, 4, "four keys tried, not six");
        let mut host = RustHost { calls: 0 };
        assert_eq!(
            verify(&token, &keys, &mut host, limited(6)),
            Ok(Engine::Host)
        );
        assert_eq!(host.calls, 6);
        assert_eq!(
            verify(&token, &keys, &mut NoHost, limited(0)),
            Err(VerifyError::MissingKid)
        );
        // A token with a kid still finds its key wherever it is in the set.
        let raw = fixtures::sign(
            Algorithm::RS256,
            &fixtures::signer_for(Algorithm::RS256),
            &json!({ "alg": "RS256", "kid": "real" }),
            &fixtures::claims(1),
        );
        let token = token::parse(&raw, 1 << 16).unwrap();
        assert_eq!(
            verify(&token, &keys, &mut NoHost, limited(0)),
            Ok(Engine::Wasm)
        );
    }

    #[test]
    fn an_rsa_key_over_the_wasm_limit_is_used_only_by_the_host() {
        let big = fixtures::rsa_test_keys()
            .into_iter()
            .find(|k| rsa::traits::PublicKeyParts::size(k) == 384)
            .unwrap();
        let keys = keyset(json!({ "keys": [fixtures::rsa_jwk(&big, "big")] }));
        let capped = Bounds {
            max_wasm_rsa_bits: 2048,
            ..Bounds::default()
        };
        for alg in [Algorithm::RS256, Algorithm::PS512] {
            let header = json!({ "alg": alg.name(), "kid": "big" });
            let raw = fixtures::sign(
                alg,
                &Signer::Rsa(big.clone()),
                &header,
                &fixtures::claims(1),
            );
            let token = token::parse(&raw, 1 << 16).unwrap();
            assert_eq!(
                verify(&token, &keys, &mut NoHost, capped),
                Err(VerifyError::KeyTooLargeForWasm),
                "{alg}"
            );
            assert_eq!(
                verify(&token, &keys, &mut NoHost, Bounds::default()),
                Ok(Engine::Wasm),
                "{alg}"
            );
            let mut host = RustHost { calls: 0 };
            let on_host = verify(&token, &keys, &mut host, capped);
            if alg == Algorithm::RS256 {
                assert_eq!(on_host, Ok(Engine::Host));
            } else {
                // The host cannot check PSS: still refused, without any Wasm work.
                assert_eq!(on_host, Err(VerifyError::KeyTooLargeForWasm));
                assert_eq!(host.calls, 0);
            }
        }
    }

    #[test]
    fn rejects_truncated_and_bit_flipped_signatures() {
        let keys = keyset(fixtures::jwks());
        for alg in Algorithm::ALL {
            let raw = fixtures::token(alg, fixtures::NOW);
            let (input, sig) = raw.rsplit_once('.').unwrap();
            let mut bytes = crate::base64url::decode(sig.as_bytes()).unwrap();
            let short = crate::base64url::encode(&bytes[..bytes.len() - 1]);
            assert_eq!(
                check_token(&format!("{input}.{short}"), &keys),
                Err(VerifyError::BadSignature),
                "{alg}"
            );
            bytes[3] ^= 1;
            let flipped = crate::base64url::encode(&bytes);
            assert_eq!(
                check_token(&format!("{input}.{flipped}"), &keys),
                Err(VerifyError::BadSignature),
                "{alg}"
            );
        }
    }

    #[test]
    fn the_host_checks_rs_and_es_signatures_and_rust_the_rest() {
        let keys = keyset(fixtures::jwks());
        for alg in Algorithm::ALL {
            let mut host = RustHost { calls: 0 };
            let raw = fixtures::token(alg, fixtures::NOW);
            let token = token::parse(&raw, 1 << 16).unwrap();
            let expected = match alg {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::ES256
                | Algorithm::ES384 => Engine::Host,
                _ => Engine::Wasm,
            };
            assert_eq!(
                verify(&token, &keys, &mut host, Bounds::default()),
                Ok(expected),
                "{alg}"
            );
            assert_eq!(host.calls, usize::from(expected == Engine::Host), "{alg}");
        }
    }

    #[test]
    fn the_host_verdict_is_final_when_it_gives_one() {
        struct Refuses;
        impl HostVerifier for Refuses {
            fn verify(&mut self, _args: &Arguments) -> Option<bool> {
                Some(false)
            }
        }
        let keys = keyset(fixtures::jwks());
        let raw = fixtures::token(Algorithm::RS256, fixtures::NOW);
        let token = token::parse(&raw, 1 << 16).unwrap();
        assert_eq!(
            verify(&token, &keys, &mut Refuses, Bounds::default()),
            Err(VerifyError::BadSignature)
        );
    }
}
