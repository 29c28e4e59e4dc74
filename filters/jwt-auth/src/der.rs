//! The DER forms Envoy's `verify_signature` takes: a public key as SubjectPublicKeyInfo
//! (RFC 5280 §4.1, what BoringSSL's `EVP_parse_public_key` reads) and an ECDSA signature as
//! `ECDSA-Sig-Value` (RFC 3279 §2.2.3) instead of JWS's fixed-size `r || s`.

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;

/// `rsaEncryption` (1.2.840.113549.1.1.1) followed by the NULL parameters.
const RSA_ALGORITHM: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// `id-ecPublicKey` (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` (1.2.840.10045.3.1.7).
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `secp384r1` (1.3.132.0.34).
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// The elliptic curves a JWK can name that Envoy's verifier accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let significant: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(&significant);
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_length(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from big-endian magnitude bytes: minimal, with a leading zero
/// when the high bit is set.
fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match magnitude.iter().position(|&b| b != 0) {
        Some(first) => magnitude.get(first..).unwrap_or_default(),
        None => &[],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(INTEGER, &content)
}

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(key);
    let mut body = tlv(SEQUENCE, algorithm);
    body.extend(tlv(BIT_STRING, &bits));
    tlv(SEQUENCE, &body)
}

/// The SubjectPublicKeyInfo of the RSA key with modulus `n` and exponent `e` (big-endian).
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut key = unsigned_integer(n);
    key.extend(unsigned_integer(e));
    spki(RSA_ALGORITHM, &tlv(SEQUENCE, &key))
}

/// The SubjectPublicKeyInfo of the EC point (`x`, `y`) on `curve`, uncompressed.
pub fn ec_spki(curve: Curve, x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut algorithm = EC_PUBLIC_KEY.to_vec();
    algorithm.extend_from_slice(match curve {
        Curve::P256 => P256,
        Curve::P384 => P384,
    });
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    spki(&algorithm, &point)
}

/// Re-encodes a JWS ECDSA signature (`r || s`, each half the length) as DER.
/// `None` when the length is odd or zero.
pub fn ecdsa_signature(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = unsigned_integer(r);
    body.extend(unsigned_integer(s));
    Some(tlv(SEQUENCE, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn rsa_keys_encode_exactly_as_the_pkcs8_crate_does() {
        use rsa::pkcs8::EncodePublicKey;
        use rsa::traits::PublicKeyParts;
        let key = fixtures::rsa_private_key().to_public_key();
        let ours = rsa_spki(&key.n().to_bytes_be(), &key.e().to_bytes_be());
        assert_eq!(ours, key.to_public_key_der().unwrap().as_bytes());
    }

    #[test]
    fn ec_keys_encode_exactly_as_the_pkcs8_crate_does() {
        use p256::pkcs8::EncodePublicKey;
        let key = fixtures::p256_signing_key();
        let point = key.verifying_key().to_encoded_point(false);
        let ours = ec_spki(Curve::P256, point.x().unwrap(), point.y().unwrap());
        let public = p256::PublicKey::from(key.verifying_key());
        assert_eq!(ours, public.to_public_key_der().unwrap().as_bytes());

        let key = fixtures::p384_signing_key();
        let point = key.verifying_key().to_encoded_point(false);
        let ours = ec_spki(Curve::P384, point.x().unwrap(), point.y().unwrap());
        let public = p384::PublicKey::from(key.verifying_key());
        assert_eq!(ours, public.to_public_key_der().unwrap().as_bytes());
    }

    #[test]
    fn ecdsa_signatures_encode_exactly_as_the_ecdsa_crate_does() {
        use p256::ecdsa::signature::Signer;
        let key = fixtures::p256_signing_key();
        for message in [&b"a"[..], b"b", b"c", b"d", b"e", b"f", b"g", b"h"] {
            let signature: p256::ecdsa::Signature = key.sign(message);
            let ours = ecdsa_signature(&signature.to_bytes()).unwrap();
            assert_eq!(ours, signature.to_der().as_bytes());
        }
    }

    #[test]
    fn integers_are_minimal_and_never_negative() {
        assert_eq!(unsigned_integer(&[0, 0, 1]), vec![0x02, 0x01, 0x01]);
        assert_eq!(unsigned_integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), vec![0x02, 0x01, 0x00]);
        assert_eq!(unsigned_integer(&[]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn odd_or_empty_signatures_are_refused() {
        assert_eq!(ecdsa_signature(&[]), None);
        assert_eq!(ecdsa_signature(&[1, 2, 3]), None);
    }
}
