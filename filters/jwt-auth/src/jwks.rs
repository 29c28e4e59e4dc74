//! JSON Web Key Sets (RFC 7517): parsing untrusted key sets into verification keys, each
//! knowing which algorithms it may be used with.
//!
//! The algorithms a key allows come from the key, never from the token: an RSA key allows
//! RS*/PS*, a P-256 key ES256, an Ed25519 key EdDSA, a secret HS* (and a JWK's own `alg`
//! narrows that to one). This is what defeats a token signed with HS256 using an RSA public
//! key as the HMAC secret.

use crate::base64url;
use crate::der::{self, Curve};
use crate::rsa_verify;
use crate::token::Algorithm;
use serde_json::{Map, Value};
use std::fmt;

/// The smallest RSA modulus accepted, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits: bounds the cost of one verification.
pub const MAX_RSA_BITS: usize = 8192;
/// The smallest RSA public exponent accepted in a key set. The verifier itself handles any
/// odd exponent from 3 (its tests use e = 3); key sets are held to 65537 and above as
/// defence in depth, since small exponents are what Bleichenbacher's 2006 forgery against
/// lax PKCS#1 v1.5 parsers needs.
pub const MIN_RSA_EXPONENT: u64 = 65537;
/// The shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HMAC_BYTES: usize = 32;

/// What a key verifies with.
#[derive(Clone, Debug)]
pub enum KeyMaterial {
    /// An RSA public key and its SubjectPublicKeyInfo for the host's verifier.
    Rsa {
        /// The key.
        key: rsa_verify::PublicKey,
        /// The key as DER SubjectPublicKeyInfo.
        spki: Vec<u8>,
    },
    /// A P-256 public key and its SubjectPublicKeyInfo.
    P256 {
        /// The key.
        key: p256::ecdsa::VerifyingKey,
        /// The key as DER SubjectPublicKeyInfo.
        spki: Vec<u8>,
    },
    /// A P-384 public key and its SubjectPublicKeyInfo.
    P384 {
        /// The key.
        key: p384::ecdsa::VerifyingKey,
        /// The key as DER SubjectPublicKeyInfo.
        spki: Vec<u8>,
    },
    /// An Ed25519 public key.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A shared HMAC secret.
    Hmac(Vec<u8>),
}

/// One verification key.
#[derive(Clone, Debug)]
pub struct Jwk {
    /// The key id, matched against a token's `kid`.
    pub kid: Option<String>,
    /// The one algorithm the JWK names, if it names one.
    pub alg: Option<Algorithm>,
    /// The key itself.
    pub material: KeyMaterial,
}

impl Jwk {
    /// Whether a signature made with `alg` may be checked with this key.
    pub fn allows(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|own| own != alg) {
            return false;
        }
        use Algorithm::*;
        match &self.material {
            KeyMaterial::Rsa { .. } => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyMaterial::P256 { .. } => alg == ES256,
            KeyMaterial::P384 { .. } => alg == ES384,
            KeyMaterial::Ed25519(_) => alg == EdDSA,
            KeyMaterial::Hmac(secret) => match alg {
                HS256 => secret.len() >= 32,
                HS384 => secret.len() >= 48,
                HS512 => secret.len() >= 64,
                _ => false,
            },
        }
    }
}

/// A parsed key set.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    /// The usable keys, in the order the set listed them.
    pub keys: Vec<Jwk>,
}

/// Bounds on an untrusted key set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest document accepted, in bytes.
    pub max_bytes: usize,
    /// The most keys accepted.
    pub max_keys: usize,
}

/// How to treat keys that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// Refuse the whole set, naming the key: for key sets written in the configuration.
    Strict,
    /// Skip them and keep the rest: for key sets fetched from an identity provider, which
    /// may publish encryption keys or key types this filter does not use.
    SkipUnusable,
    /// Like `SkipUnusable`, and also skip HMAC secrets: a shared secret has no business in
    /// a key set fetched over the network.
    Remote,
}

/// Why a key set was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksError {
    /// Larger than the limit.
    TooLarge {
        /// The limit, in bytes.
        max_bytes: usize,
    },
    /// Not a JSON object with a `keys` array.
    NotAKeySet(&'static str),
    /// More keys than the limit.
    TooManyKeys {
        /// The limit.
        max_keys: usize,
    },
    /// One key is unusable (strict parsing only).
    Key {
        /// Its index in `keys`.
        index: usize,
        /// The JWK field at fault, if one is.
        field: Option<&'static str>,
        /// What is wrong.
        message: String,
    },
    /// No key in the set can verify any supported algorithm.
    NoUsableKeys,
}

impl JwksError {
    /// Where in the key set the problem is, as `keys[2].n`; empty for the set itself.
    pub fn path(&self) -> String {
        match self {
            JwksError::Key {
                index,
                field: Some(field),
                ..
            } => format!("keys[{index}].{field}"),
            JwksError::Key { index, .. } => format!("keys[{index}]"),
            JwksError::TooManyKeys { .. } | JwksError::NoUsableKeys => "keys".into(),
            _ => String::new(),
        }
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> String {
        match self {
            JwksError::TooLarge { max_bytes } => {
                format!("the key set is larger than {max_bytes} bytes")
            }
            JwksError::NotAKeySet(what) => format!("not a JSON Web Key Set: {what}"),
            JwksError::TooManyKeys { max_keys } => format!("more than {max_keys} keys"),
            JwksError::Key { message, .. } => message.clone(),
            JwksError::NoUsableKeys => "no key in the set can verify a supported algorithm".into(),
        }
    }
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if path.is_empty() {
            f.write_str(&self.message())
        } else {
            write!(f, "{path}: {}", self.message())
        }
    }
}

/// A key set parsed from untrusted bytes, with how many keys were skipped.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The usable keys.
    pub set: KeySet,
    /// Keys skipped as unusable (never in strict parsing).
    pub skipped: usize,
}

/// Parses a JWKS document.
pub fn parse(bytes: &[u8], limits: Limits, strictness: Strictness) -> Result<Parsed, JwksError> {
    if bytes.len() > limits.max_bytes {
        return Err(JwksError::TooLarge {
            max_bytes: limits.max_bytes,
        });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|_| JwksError::NotAKeySet("invalid JSON"))?;
    parse_value(&value, limits, strictness)
}

/// Parses a JWKS already read as JSON (for example from the configuration).
pub fn parse_value(
    value: &Value,
    limits: Limits,
    strictness: Strictness,
) -> Result<Parsed, JwksError> {
    let Some(Value::Array(keys)) = value.as_object().and_then(|set| set.get("keys")) else {
        return Err(JwksError::NotAKeySet(
            "expected an object with a \"keys\" array",
        ));
    };
    if keys.len() > limits.max_keys {
        return Err(JwksError::TooManyKeys {
            max_keys: limits.max_keys,
        });
    }
    let mut set = KeySet::default();
    let mut skipped = 0;
    for (index, key) in keys.iter().enumerate() {
        let parsed = match key {
            Value::Object(fields) => parse_key(fields),
            _ => Err(Unusable::bad(None, "expected a JSON object")),
        };
        match parsed {
            Ok(jwk)
                if strictness == Strictness::Remote
                    && matches!(jwk.material, KeyMaterial::Hmac(_)) =>
            {
                skipped += 1;
            }
            Ok(jwk) => set.keys.push(jwk),
            Err(unusable) if strictness == Strictness::Strict => {
                return Err(JwksError::Key {
                    index,
                    field: unusable.field,
                    message: unusable.message,
                });
            }
            Err(_) => skipped += 1,
        }
    }
    if set.keys.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(Parsed { set, skipped })
}

/// Why one key cannot be used.
struct Unusable {
    field: Option<&'static str>,
    message: String,
}

impl Unusable {
    fn bad(field: Option<&'static str>, message: impl Into<String>) -> Self {
        Unusable {
            field,
            message: message.into(),
        }
    }
}

fn string_field<'a>(
    fields: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, Unusable> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Unusable::bad(Some(name), "expected a string")),
    }
}

fn bytes_field(fields: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, Unusable> {
    let text = string_field(fields, name)?
        .ok_or_else(|| Unusable::bad(Some(name), "required for this key type"))?;
    base64url::decode_padded(text.as_bytes())
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| Unusable::bad(Some(name), "expected non-empty base64url"))
}

fn parse_key(fields: &Map<String, Value>) -> Result<Jwk, Unusable> {
    if let Some(usage) = string_field(fields, "use")? {
        if usage != "sig" {
            return Err(Unusable::bad(
                Some("use"),
                format!("a {usage:?} key does not verify signatures"),
            ));
        }
    }
    if let Some(ops) = fields.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err(Unusable::bad(
                Some("key_ops"),
                "does not include \"verify\"",
            ));
        }
    }
    let kid = string_field(fields, "kid")?.map(str::to_owned);
    let alg = match string_field(fields, "alg")? {
        None => None,
        Some(name) => Some(Algorithm::from_name(name).ok_or_else(|| {
            Unusable::bad(
                Some("alg"),
                format!("{name:?} is not a supported signature algorithm"),
            )
        })?),
    };
    let kty = string_field(fields, "kty")?.ok_or_else(|| Unusable::bad(Some("kty"), "required"))?;
    let material = match kty {
        "RSA" => rsa_key(fields)?,
        "EC" => ec_key(fields)?,
        "OKP" => okp_key(fields)?,
        "oct" => hmac_key(fields)?,
        other => {
            return Err(Unusable::bad(
                Some("kty"),
                format!("expected \"RSA\", \"EC\", \"OKP\" or \"oct\", got {other:?}"),
            ))
        }
    };
    let jwk = Jwk { kid, alg, material };
    if let Some(alg) = alg {
        if !jwk.allows(alg) {
            return Err(Unusable::bad(
                Some("alg"),
                format!("{alg} cannot be used with a {kty} key of this kind"),
            ));
        }
    }
    Ok(jwk)
}

fn rsa_key(fields: &Map<String, Value>) -> Result<KeyMaterial, Unusable> {
    let n = bytes_field(fields, "n")?;
    let e = bytes_field(fields, "e")?;
    let key =
        rsa_verify::PublicKey::new(&n, &e, MIN_RSA_BITS, MAX_RSA_BITS).map_err(
            |err| match err {
                rsa_verify::KeyError::Size(bits) => Unusable::bad(
                    Some("n"),
                    format!(
                    "RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, this one has {bits}"
                ),
                ),
                rsa_verify::KeyError::EvenModulus => {
                    Unusable::bad(Some("n"), "not an RSA modulus: it is even")
                }
                rsa_verify::KeyError::Exponent => Unusable::bad(Some("e"), err.to_string()),
            },
        )?;
    if key.e() < MIN_RSA_EXPONENT {
        return Err(Unusable::bad(
            Some("e"),
            format!(
                "RSA exponents below {MIN_RSA_EXPONENT} are not accepted, this one is {}",
                key.e()
            ),
        ));
    }
    let spki = der::rsa_spki(&key.modulus(), &key.exponent());
    Ok(KeyMaterial::Rsa { key, spki })
}

fn ec_key(fields: &Map<String, Value>) -> Result<KeyMaterial, Unusable> {
    let crv = string_field(fields, "crv")?.ok_or_else(|| Unusable::bad(Some("crv"), "required"))?;
    let x = bytes_field(fields, "x")?;
    let y = bytes_field(fields, "y")?;
    let not_on_curve = || Unusable::bad(Some("x"), format!("not a point on {crv}"));
    match crv {
        "P-256" => {
            check_len(&x, &y, 32, crv)?;
            let point = p256::EncodedPoint::from_affine_coordinates(
                p256::FieldBytes::from_slice(&x),
                p256::FieldBytes::from_slice(&y),
                false,
            );
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map_err(|_| not_on_curve())?;
            Ok(KeyMaterial::P256 {
                key,
                spki: der::ec_spki(Curve::P256, &x, &y),
            })
        }
        "P-384" => {
            check_len(&x, &y, 48, crv)?;
            let point = p384::EncodedPoint::from_affine_coordinates(
                p384::FieldBytes::from_slice(&x),
                p384::FieldBytes::from_slice(&y),
                false,
            );
            let key = p384::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map_err(|_| not_on_curve())?;
            Ok(KeyMaterial::P384 {
                key,
                spki: der::ec_spki(Curve::P384, &x, &y),
            })
        }
        other => Err(Unusable::bad(
            Some("crv"),
            format!("expected \"P-256\" or \"P-384\", got {other:?}"),
        )),
    }
}

/// RFC 7518 §6.2.1.2: coordinates are the full field size, leading zeros included.
fn check_len(x: &[u8], y: &[u8], len: usize, crv: &str) -> Result<(), Unusable> {
    for (field, value) in [("x", x), ("y", y)] {
        if value.len() != len {
            return Err(Unusable::bad(
                Some(field),
                format!("a {crv} coordinate is {len} bytes, got {}", value.len()),
            ));
        }
    }
    Ok(())
}

fn okp_key(fields: &Map<String, Value>) -> Result<KeyMaterial, Unusable> {
    match string_field(fields, "crv")? {
        Some("Ed25519") => {}
        Some(other) => {
            return Err(Unusable::bad(
                Some("crv"),
                format!("expected \"Ed25519\", got {other:?}"),
            ))
        }
        None => return Err(Unusable::bad(Some("crv"), "required")),
    }
    let x = bytes_field(fields, "x")?;
    let bytes: [u8; 32] = x
        .as_slice()
        .try_into()
        .map_err(|_| Unusable::bad(Some("x"), "an Ed25519 key is 32 bytes"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| Unusable::bad(Some("x"), "not a valid Ed25519 public key"))?;
    if key.is_weak() {
        return Err(Unusable::bad(
            Some("x"),
            "a small-order Ed25519 key verifies forged signatures",
        ));
    }
    Ok(KeyMaterial::Ed25519(key))
}

fn hmac_key(fields: &Map<String, Value>) -> Result<KeyMaterial, Unusable> {
    let k = bytes_field(fields, "k")?;
    if k.len() < MIN_HMAC_BYTES {
        return Err(Unusable::bad(
            Some("k"),
            format!(
                "an HMAC secret needs at least {MIN_HMAC_BYTES} bytes, got {}",
                k.len()
            ),
        ));
    }
    Ok(KeyMaterial::Hmac(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        max_bytes: 64 * 1024,
        max_keys: 16,
    };

    fn strict(value: Value) -> Result<Parsed, JwksError> {
        parse_value(&value, LIMITS, Strictness::Strict)
    }

    #[test]
    fn parses_every_supported_key_type() {
        let parsed = parse(
            fixtures::jwks().to_string().as_bytes(),
            LIMITS,
            Strictness::Strict,
        )
        .unwrap();
        let kids: Vec<_> = parsed
            .set
            .keys
            .iter()
            .map(|k| k.kid.clone().unwrap())
            .collect();
        assert_eq!(kids, fixtures::ALL_KIDS);
        assert_eq!(parsed.skipped, 0);
    }

    #[test]
    fn each_key_allows_only_its_own_family_of_algorithms() {
        let set = strict(fixtures::jwks()).unwrap().set;
        let allowed = |kid: &str| -> Vec<Algorithm> {
            let key = set
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .unwrap();
            Algorithm::ALL
                .into_iter()
                .filter(|a| key.allows(*a))
                .collect()
        };
        use Algorithm::*;
        assert_eq!(
            allowed(fixtures::RSA_KID),
            [RS256, RS384, RS512, PS256, PS384, PS512]
        );
        assert_eq!(allowed(fixtures::P256_KID), [ES256]);
        assert_eq!(allowed(fixtures::P384_KID), [ES384]);
        assert_eq!(allowed(fixtures::ED25519_KID), [EdDSA]);
        assert_eq!(allowed(fixtures::HMAC_KID), [HS256, HS384, HS512]);
    }

    #[test]
    fn a_jwk_alg_narrows_the_key_to_that_algorithm() {
        let mut rsa = fixtures::rsa_jwk(&fixtures::rsa_private_key(), "r");
        rsa["alg"] = json!("PS256");
        let set = strict(json!({ "keys": [rsa] })).unwrap().set;
        assert!(set.keys[0].allows(Algorithm::PS256));
        assert!(!set.keys[0].allows(Algorithm::RS256));
    }

    #[test]
    fn refuses_a_jwk_alg_its_key_type_cannot_use() {
        let mut rsa = fixtures::rsa_jwk(&fixtures::rsa_private_key(), "r");
        rsa["alg"] = json!("HS256");
        let err = strict(json!({ "keys": [rsa] })).unwrap_err();
        assert_eq!(err.path(), "keys[0].alg");
    }

    #[test]
    fn strict_parsing_names_the_key_and_field() {
        let mut ec = fixtures::p256_jwk(&fixtures::p256_signing_key(), "e");
        ec["x"] = json!("AAAA");
        let good = fixtures::rsa_jwk(&fixtures::rsa_private_key(), "r");
        let err = strict(json!({ "keys": [good, ec] })).unwrap_err();
        assert_eq!(err.path(), "keys[1].x");
        assert!(
            err.to_string()
                .starts_with("keys[1].x: a P-256 coordinate is 32 bytes"),
            "{err}"
        );
    }

    #[test]
    fn remote_parsing_skips_encryption_keys_unknown_types_and_secrets() {
        let mut enc = fixtures::rsa_jwk(&fixtures::rsa_private_key(), "enc");
        enc["use"] = json!("enc");
        let set = json!({ "keys": [
            enc,
            { "kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA" },
            { "kty": "oct", "k": base64url::encode(&[7; 32]) },
            { "kty": "weird" },
            fixtures::p256_jwk(&fixtures::p256_signing_key(), "ok"),
        ]});
        let parsed = parse_value(&set, LIMITS, Strictness::Remote).unwrap();
        assert_eq!(parsed.set.keys.len(), 1);
        assert_eq!(parsed.skipped, 4);
    }

    #[test]
    fn a_set_with_no_usable_key_is_refused() {
        let set = json!({ "keys": [{ "kty": "weird" }] });
        assert_eq!(
            parse_value(&set, LIMITS, Strictness::Remote).unwrap_err(),
            JwksError::NoUsableKeys
        );
        assert_eq!(
            strict(json!({ "keys": [] })).unwrap_err(),
            JwksError::NoUsableKeys
        );
    }

    #[test]
    fn refuses_short_and_oversized_rsa_keys() {
        let small = json!({ "kty": "RSA", "n": base64url::encode(&[0xff; 128]), "e": "AQAB" });
        assert!(strict(json!({ "keys": [small] }))
            .unwrap_err()
            .to_string()
            .contains("1024"));
        let huge = json!({ "kty": "RSA", "n": base64url::encode(&[0xff; 1025]), "e": "AQAB" });
        assert!(strict(json!({ "keys": [huge] })).is_err());
    }

    #[test]
    fn refuses_rsa_exponents_below_65537() {
        let e3 = fixtures::rsa_test_keys()
            .into_iter()
            .find(|k| rsa::traits::PublicKeyParts::e(k) == &rsa::BigUint::from(3u32))
            .unwrap();
        let err = strict(json!({ "keys": [fixtures::rsa_jwk(&e3, "e3")] })).unwrap_err();
        assert_eq!(
            err.to_string(),
            "keys[0].e: RSA exponents below 65537 are not accepted, this one is 3"
        );
        let mut jwk = fixtures::rsa_jwk(&fixtures::rsa_private_key(), "k");
        jwk["e"] = json!(crate::base64url::encode(&[0x01, 0x00, 0x01]));
        assert!(strict(json!({ "keys": [jwk.clone()] })).is_ok());
        jwk["e"] = json!(crate::base64url::encode(&[0x01, 0x00, 0x00, 0x01]));
        assert!(strict(json!({ "keys": [jwk] })).is_ok());
    }

    #[test]
    fn refuses_points_off_the_curve_and_small_order_ed25519_keys() {
        let off_curve = json!({ "kty": "EC", "crv": "P-256",
            "x": base64url::encode(&[1; 32]), "y": base64url::encode(&[2; 32]) });
        assert!(strict(json!({ "keys": [off_curve] })).is_err());
        // The identity point: verifies any signature with a zero scalar.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = json!({ "kty": "OKP", "crv": "Ed25519", "x": base64url::encode(&identity) });
        assert!(strict(json!({ "keys": [weak] }))
            .unwrap_err()
            .to_string()
            .contains("small-order"));
    }

    #[test]
    fn refuses_short_hmac_secrets() {
        let short = json!({ "kty": "oct", "k": base64url::encode(b"too short") });
        assert_eq!(
            strict(json!({ "keys": [short] })).unwrap_err().path(),
            "keys[0].k"
        );
    }

    #[test]
    fn refuses_oversized_documents_and_too_many_keys() {
        let limits = Limits {
            max_bytes: 10,
            max_keys: 1,
        };
        assert_eq!(
            parse(b"{\"keys\":[  ]}", limits, Strictness::Remote).unwrap_err(),
            JwksError::TooLarge { max_bytes: 10 }
        );
        let two = json!({ "keys": [{}, {}] });
        assert_eq!(
            parse_value(&two, limits, Strictness::Remote).unwrap_err(),
            JwksError::TooManyKeys { max_keys: 1 }
        );
    }

    #[test]
    fn refuses_documents_that_are_not_key_sets() {
        for bad in [
            &b"nope"[..],
            b"[]",
            b"{}",
            b"{\"keys\":{}}",
            b"{\"keys\":1e999}",
        ] {
            assert!(parse(bad, LIMITS, Strictness::Remote).is_err());
        }
    }

    #[test]
    fn tolerates_padded_base64_from_publishers() {
        let mut rsa = fixtures::rsa_jwk(&fixtures::rsa_private_key(), "r");
        // A 2048-bit modulus is 256 bytes: 342 characters and two of padding.
        let n = rsa["n"].as_str().unwrap().to_string();
        rsa["n"] = json!(format!("{n}=="));
        assert!(strict(json!({ "keys": [rsa] })).is_ok());
    }
}
