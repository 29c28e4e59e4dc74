//! Test fixtures in one place: fixed keys, their JWKS, and tokens signed at test time for
//! every algorithm. Built for this crate's tests and, with the `fixtures` feature, for the
//! harness and Envoy tests. The private keys are test keys and protect nothing.
// Test support: a broken fixture should fail the test loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::base64url;
use crate::token::Algorithm;
/// The `rsa` crate the fixture keys are made with, for tests that handle them.
pub use rsa;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};
use std::sync::OnceLock;

/// The issuer every fixture token names.
pub const ISSUER: &str = "https://issuer.meshward.test";
/// The audience every fixture token names.
pub const AUDIENCE: &str = "api.meshward.test";
/// The fixed "now" of unit tests, in seconds since the epoch (2023-11-14).
pub const NOW: u64 = 1_700_000_000;

/// The kid of the RSA key.
pub const RSA_KID: &str = "rsa-1";
/// The kid of the P-256 key.
pub const P256_KID: &str = "ec-p256";
/// The kid of the P-384 key.
pub const P384_KID: &str = "ec-p384";
/// The kid of the Ed25519 key.
pub const ED25519_KID: &str = "ed-1";
/// The kid of the HMAC secret.
pub const HMAC_KID: &str = "hs-1";
/// Every kid of [`jwks`], in order.
pub const ALL_KIDS: [&str; 5] = [RSA_KID, P256_KID, P384_KID, ED25519_KID, HMAC_KID];

/// The RSA test key (2048 bits).
pub fn rsa_private_key() -> RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        RsaPrivateKey::from_pkcs8_pem(include_str!("../fixtures/rsa-1.pem")).unwrap()
    })
    .clone()
}

/// A second RSA key that no fixture key set holds: signatures made with it must fail.
pub fn other_rsa_private_key() -> RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        RsaPrivateKey::from_pkcs8_pem(include_str!("../fixtures/rsa-2.pem")).unwrap()
    })
    .clone()
}

/// An 8192-bit RSA key (exponent 65537): the largest a key set may hold, for measuring
/// what one signature check costs in Wasm at that size.
pub fn rsa_8192_private_key() -> RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        RsaPrivateKey::from_pkcs8_pem(include_str!("../fixtures/rsa-8192.pem")).unwrap()
    })
    .clone()
}

/// Every RSA test key: 2048 bits (two), 2049 bits (so that PSS's encoded message is a byte
/// shorter than the modulus), 3072 bits, and 4096 bits with exponent 3.
pub fn rsa_test_keys() -> Vec<RsaPrivateKey> {
    static KEYS: OnceLock<Vec<RsaPrivateKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            include_str!("../fixtures/rsa-2049.pem"),
            include_str!("../fixtures/rsa-3072.pem"),
            include_str!("../fixtures/rsa-4096-e3.pem"),
        ]
        .iter()
        .map(|pem| RsaPrivateKey::from_pkcs8_pem(pem).unwrap())
        .chain([rsa_private_key(), other_rsa_private_key()])
        .collect()
    })
    .clone()
}

/// The P-256 test key.
pub fn p256_signing_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap()
}

/// The P-384 test key.
pub fn p384_signing_key() -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::from_slice(&[0x22; 48]).unwrap()
}

/// The Ed25519 test key.
pub fn ed25519_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x33; 32])
}

/// The HMAC test secret: 64 bytes, long enough for HS512.
pub fn hmac_secret() -> Vec<u8> {
    (0u8..64).collect()
}

/// The public JWK of an RSA key.
pub fn rsa_jwk(key: &RsaPrivateKey, kid: &str) -> Value {
    json!({
        "kty": "RSA", "kid": kid, "use": "sig",
        "n": base64url::encode(&key.n().to_bytes_be()),
        "e": base64url::encode(&key.e().to_bytes_be()),
    })
}

/// The public JWK of a P-256 key.
pub fn p256_jwk(key: &p256::ecdsa::SigningKey, kid: &str) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": base64url::encode(point.x().unwrap()),
        "y": base64url::encode(point.y().unwrap()),
    })
}

/// The public JWK of a P-384 key.
pub fn p384_jwk(key: &p384::ecdsa::SigningKey, kid: &str) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({
        "kty": "EC", "crv": "P-384", "kid": kid,
        "x": base64url::encode(point.x().unwrap()),
        "y": base64url::encode(point.y().unwrap()),
    })
}

/// The public JWK of an Ed25519 key.
pub fn ed25519_jwk(key: &ed25519_dalek::SigningKey, kid: &str) -> Value {
    json!({
        "kty": "OKP", "crv": "Ed25519", "kid": kid,
        "x": base64url::encode(key.verifying_key().as_bytes()),
    })
}

/// The JWK of an HMAC secret.
pub fn hmac_jwk(secret: &[u8], kid: &str) -> Value {
    json!({ "kty": "oct", "kid": kid, "k": base64url::encode(secret) })
}

/// The public key set of every asymmetric fixture key (what an identity provider serves).
pub fn public_jwks() -> Value {
    json!({ "keys": [
        rsa_jwk(&rsa_private_key(), RSA_KID),
        p256_jwk(&p256_signing_key(), P256_KID),
        p384_jwk(&p384_signing_key(), P384_KID),
        ed25519_jwk(&ed25519_signing_key(), ED25519_KID),
    ]})
}

/// Every fixture key, the HMAC secret included (what a configuration may hold inline).
pub fn jwks() -> Value {
    let mut set = public_jwks();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .push(hmac_jwk(&hmac_secret(), HMAC_KID));
    set
}

/// The kid of the fixture key that signs `alg`.
pub fn kid_for(alg: Algorithm) -> &'static str {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => RSA_KID,
        ES256 => P256_KID,
        ES384 => P384_KID,
        EdDSA => ED25519_KID,
        HS256 | HS384 | HS512 => HMAC_KID,
    }
}

/// A key to sign with.
#[derive(Clone)]
pub enum Signer {
    /// An RSA private key (RS*, PS*).
    Rsa(RsaPrivateKey),
    /// A P-256 key (ES256).
    P256(p256::ecdsa::SigningKey),
    /// A P-384 key (ES384).
    P384(p384::ecdsa::SigningKey),
    /// An Ed25519 key (EdDSA).
    Ed25519(ed25519_dalek::SigningKey),
    /// An HMAC secret (HS*), any bytes.
    Hmac(Vec<u8>),
}

/// The fixture key for `alg`.
pub fn signer_for(alg: Algorithm) -> Signer {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Signer::Rsa(rsa_private_key()),
        ES256 => Signer::P256(p256_signing_key()),
        ES384 => Signer::P384(p384_signing_key()),
        EdDSA => Signer::Ed25519(ed25519_signing_key()),
        HS256 | HS384 | HS512 => Signer::Hmac(hmac_secret()),
    }
}

/// Signs `input` with `alg` and `signer`, as JWS defines the signature bytes.
pub fn signature(alg: Algorithm, signer: &Signer, input: &[u8]) -> Vec<u8> {
    use hmac::Hmac;
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer as _};
    use Algorithm::*;
    let mut rng = rsa::rand_core::OsRng;
    match (alg, signer) {
        (RS256, Signer::Rsa(k)) => rsa::pkcs1v15::SigningKey::<Sha256>::new(k.clone())
            .sign(input)
            .to_vec(),
        (RS384, Signer::Rsa(k)) => rsa::pkcs1v15::SigningKey::<Sha384>::new(k.clone())
            .sign(input)
            .to_vec(),
        (RS512, Signer::Rsa(k)) => rsa::pkcs1v15::SigningKey::<Sha512>::new(k.clone())
            .sign(input)
            .to_vec(),
        (PS256, Signer::Rsa(k)) => rsa::pss::SigningKey::<Sha256>::new(k.clone())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        (PS384, Signer::Rsa(k)) => rsa::pss::SigningKey::<Sha384>::new(k.clone())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        (PS512, Signer::Rsa(k)) => rsa::pss::SigningKey::<Sha512>::new(k.clone())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        (ES256, Signer::P256(k)) => {
            let sig: p256::ecdsa::Signature = k.sign(input);
            sig.to_bytes().to_vec()
        }
        (ES384, Signer::P384(k)) => {
            let sig: p384::ecdsa::Signature = k.sign(input);
            sig.to_bytes().to_vec()
        }
        (EdDSA, Signer::Ed25519(k)) => k.sign(input).to_bytes().to_vec(),
        (HS256, Signer::Hmac(s)) => hmac_tag::<Hmac<Sha256>>(s, input),
        (HS384, Signer::Hmac(s)) => hmac_tag::<Hmac<Sha384>>(s, input),
        (HS512, Signer::Hmac(s)) => hmac_tag::<Hmac<Sha512>>(s, input),
        (alg, _) => panic!("fixture signer does not match {alg}"),
    }
}

fn hmac_tag<M: hmac::Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret).unwrap();
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// Standard claims valid at `now`: the fixture issuer and audience, an hour to live.
pub fn claims(now: u64) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "exp": now + 3600,
        "scope": "read write",
        "groups": ["staff", "dev"],
        "org": { "id": "acme", "tier": 2 },
    })
}

/// A token from a header object and claims object, signed with `alg` and `signer`.
pub fn sign(alg: Algorithm, signer: &Signer, header: &Value, claims: &Value) -> String {
    sign_text(alg, signer, &header.to_string(), &claims.to_string())
}

/// A token from header and claims JSON text as given (for JSON a `Value` cannot hold,
/// such as a member named twice), signed with `alg` and `signer`.
pub fn sign_text(alg: Algorithm, signer: &Signer, header: &str, claims: &str) -> String {
    let input = format!(
        "{}.{}",
        base64url::encode(header.as_bytes()),
        base64url::encode(claims.as_bytes())
    );
    let sig = signature(alg, signer, input.as_bytes());
    format!("{input}.{}", base64url::encode(&sig))
}

/// The usual header for `alg`: its name, the fixture kid and `typ: JWT`.
pub fn header(alg: Algorithm) -> Value {
    json!({ "alg": alg.name(), "kid": kid_for(alg), "typ": "JWT" })
}

/// A valid token for `alg` with `claims`, signed by the fixture key.
pub fn token_with(alg: Algorithm, claims: &Value) -> String {
    sign(alg, &signer_for(alg), &header(alg), claims)
}

/// A valid token for `alg` at `now` with the standard claims.
pub fn token(alg: Algorithm, now: u64) -> String {
    token_with(alg, &claims(now))
}

/// A Rust stand-in for Envoy's `verify_signature` host function: imports the DER
/// SubjectPublicKeyInfo and verifies as BoringSSL's `EVP_DigestVerify` would (RSA with
/// PKCS#1 v1.5 padding, ECDSA with a DER signature). For this crate's unit tests; the
/// harness offers Envoy's function itself (`meshward_harness::envoy_foreign`).
pub fn host_verify(args: &crate::foreign::Arguments) -> bool {
    use p256::pkcs8::DecodePublicKey;
    use rsa::Pkcs1v15Sign;
    use sha2::Digest;
    let text = &args.text;
    if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(&args.public_key) {
        let result = match args.hash_function.as_str() {
            "sha256" => key.verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(text),
                &args.signature,
            ),
            "sha384" => key.verify(
                Pkcs1v15Sign::new::<Sha384>(),
                &Sha384::digest(text),
                &args.signature,
            ),
            "sha512" => key.verify(
                Pkcs1v15Sign::new::<Sha512>(),
                &Sha512::digest(text),
                &args.signature,
            ),
            _ => return false,
        };
        return result.is_ok();
    }
    if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(&args.public_key) {
        use p256::ecdsa::signature::Verifier;
        let Ok(sig) = p256::ecdsa::Signature::from_der(&args.signature) else {
            return false;
        };
        return args.hash_function == "sha256" && key.verify(text, &sig).is_ok();
    }
    if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(&args.public_key) {
        use p384::ecdsa::signature::Verifier;
        let Ok(sig) = p384::ecdsa::Signature::from_der(&args.signature) else {
            return false;
        };
        return args.hash_function == "sha384" && key.verify(text, &sig).is_ok();
    }
    false
}

/// One token of the verdict corpus and what the filter must make of it.
#[derive(Clone, Debug)]
pub struct Case {
    /// What the token tries.
    pub name: &'static str,
    /// The token.
    pub token: String,
    /// The denial reason (a metric name), or `None` when the token must be accepted.
    pub reason: Option<&'static str>,
}

/// The corpus: one valid token per algorithm and every attack and malformation the
/// filter must refuse, for a provider with issuer [`ISSUER`], audience [`AUDIENCE`] and the
/// keys of [`jwks`], checked at `now`.
pub fn corpus(now: u64) -> Vec<Case> {
    use rsa::pkcs8::EncodePublicKey;
    let mut cases = Vec::new();
    let case = |name, token, reason| Case {
        name,
        token,
        reason,
    };
    for alg in Algorithm::ALL {
        let name: &'static str = Box::leak(format!("valid {alg}").into_boxed_str());
        cases.push(case(name, token(alg, now), None));
    }
    let rs = Algorithm::RS256;
    let valid = token(rs, now);
    let (input, _) = valid.rsplit_once('.').unwrap();
    let with_claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(now);
        edit(&mut c);
        token_with(rs, &c)
    };
    let unsigned = |alg: &str, sig: &str| {
        let header = base64url::encode(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes());
        let payload = base64url::encode(claims(now).to_string().as_bytes());
        format!("{header}.{payload}.{sig}")
    };
    let public_pem = rsa_private_key()
        .to_public_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let confused = |kid: Value| {
        let header = json!({ "alg": "HS256", "kid": kid });
        sign(
            Algorithm::HS256,
            &Signer::Hmac(public_pem.clone().into_bytes()),
            &header,
            &claims(now),
        )
    };
    let tampered = {
        let mut c = claims(now);
        c["sub"] = json!("admin");
        let parts: Vec<&str> = valid.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            base64url::encode(c.to_string().as_bytes()),
            parts[2]
        )
    };
    let segment = |value: &[u8]| base64url::encode(value);
    let header_rs = segment(header(rs).to_string().as_bytes());

    cases.extend([
        case(
            "alg none, no signature",
            unsigned("none", ""),
            Some("bad_signature"),
        ),
        case(
            "alg none with a signature",
            unsigned("none", "c2ln"),
            Some("bad_signature"),
        ),
        case("alg None", unsigned("None", ""), Some("bad_signature")),
        case(
            "HS256 signed with the RSA public key, kid of the RSA key",
            confused(json!(RSA_KID)),
            Some("bad_signature"),
        ),
        case(
            "HS256 signed with the RSA public key, no kid",
            confused(Value::Null),
            Some("bad_signature"),
        ),
        case(
            "ES256 naming the RSA key's kid",
            sign(
                Algorithm::ES256,
                &signer_for(Algorithm::ES256),
                &json!({ "alg": "ES256", "kid": RSA_KID }),
                &claims(now),
            ),
            Some("bad_signature"),
        ),
        case("tampered payload", tampered, Some("bad_signature")),
        case(
            "stripped signature",
            format!("{input}."),
            Some("bad_signature"),
        ),
        case(
            "signed by another RSA key",
            sign(
                rs,
                &Signer::Rsa(other_rsa_private_key()),
                &header(rs),
                &claims(now),
            ),
            Some("bad_signature"),
        ),
        case(
            "unknown kid",
            sign(
                rs,
                &signer_for(rs),
                &json!({ "alg": "RS256", "kid": "gone" }),
                &claims(now),
            ),
            Some("unknown_kid"),
        ),
        case(
            "expired",
            with_claims(&|c| c["exp"] = json!(now - 120)),
            Some("expired"),
        ),
        case(
            "expired within the clock skew",
            with_claims(&|c| c["exp"] = json!(now - 30)),
            None,
        ),
        case(
            "not yet valid",
            with_claims(&|c| c["nbf"] = json!(now + 300)),
            Some("not_yet_valid"),
        ),
        case(
            "nbf within the clock skew",
            with_claims(&|c| c["nbf"] = json!(now + 30)),
            None,
        ),
        case(
            "issued in the future",
            with_claims(&|c| c["iat"] = json!(now + 300)),
            Some("not_yet_valid"),
        ),
        case(
            "no exp",
            with_claims(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Some("malformed"),
        ),
        case(
            "exp as a string",
            with_claims(&|c| c["exp"] = json!((now + 60).to_string())),
            Some("malformed"),
        ),
        case(
            "wrong issuer",
            with_claims(&|c| c["iss"] = json!("https://evil.test")),
            Some("wrong_issuer"),
        ),
        case(
            "no issuer",
            with_claims(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            Some("wrong_issuer"),
        ),
        case(
            "wrong audience",
            with_claims(&|c| c["aud"] = json!("other")),
            Some("wrong_audience"),
        ),
        case(
            "audience among several",
            with_claims(&|c| c["aud"] = json!(["other", AUDIENCE])),
            None,
        ),
        case("two segments", input.to_string(), Some("malformed")),
        case("four segments", format!("{valid}.x"), Some("malformed")),
        case(
            "header not base64url",
            format!("{}.{}", "!!", valid.split_once('.').unwrap().1),
            Some("malformed"),
        ),
        case(
            "payload not JSON",
            format!("{header_rs}.{}.c2ln", segment(b"nope")),
            Some("malformed"),
        ),
        case(
            "payload an array",
            format!("{header_rs}.{}.c2ln", segment(b"[1]")),
            Some("malformed"),
        ),
        case(
            "exp out of range",
            format!("{header_rs}.{}.c2ln", segment(b"{\"exp\":1e999}")),
            Some("malformed"),
        ),
        case(
            "exp beyond 2^64",
            with_claims(&|c| c["exp"] = json!(1e30)),
            Some("malformed"),
        ),
        case(
            "negative nbf",
            with_claims(&|c| c["nbf"] = json!(-1)),
            Some("malformed"),
        ),
        case(
            "fractional exp",
            with_claims(&|c| c["exp"] = json!(now as f64 + 3600.5)),
            None,
        ),
        case(
            "a claim named twice",
            {
                let claims = claims(now).to_string();
                let doubled = format!("{},\"sub\":\"admin\"}}", claims.trim_end_matches('}'));
                sign_text(rs, &signer_for(rs), &header(rs).to_string(), &doubled)
            },
            Some("malformed"),
        ),
        case(
            "a header member named twice",
            sign_text(
                rs,
                &signer_for(rs),
                &format!("{{\"alg\":\"RS256\",\"kid\":\"{RSA_KID}\",\"kid\":\"{RSA_KID}\"}}"),
                &claims(now).to_string(),
            ),
            Some("malformed"),
        ),
        case(
            "oversized",
            with_claims(&|c| c["pad"] = json!("x".repeat(9000))),
            Some("malformed"),
        ),
    ]);
    cases
}
