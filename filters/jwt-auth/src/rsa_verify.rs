//! RSA signature verification (RSASSA-PKCS1-v1_5 and RSASSA-PSS, RFC 8017 §8) with the
//! public key only, by Montgomery multiplication on 32-bit limbs.
//!
//! Verification needs one modular exponentiation by a small public exponent. The `rsa`
//! crate spends about 15 million Wasm instructions on it for a 2048-bit key (400 µs
//! natively), rebuilding its arithmetic for every call; with the Montgomery constants
//! computed once per key, this takes a small fraction of that. Everything here is public
//! (key, signature, message), so nothing needs to be constant-time, and all of it is
//! cross-checked against the `rsa` crate's signers in the tests.

use sha2::digest::{Digest, FixedOutputReset};
use sha2::{Sha256, Sha384, Sha512};
use std::cmp::Ordering;
use std::fmt;

/// The hash of an RSA signature scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// Why a key cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The modulus is out of the accepted size range.
    Size(usize),
    /// The modulus is even (no RSA modulus is).
    EvenModulus,
    /// The exponent is not an odd number from 3 to 2^33 - 1.
    Exponent,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Size(bits) => write!(f, "this one has {bits} bits"),
            KeyError::EvenModulus => f.write_str("the modulus is even"),
            KeyError::Exponent => f.write_str("the exponent must be odd, from 3 to 2^33 - 1"),
        }
    }
}

/// An RSA public key with its Montgomery constants.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The modulus, 32-bit limbs, least significant first.
    n: Vec<u32>,
    /// The modulus size in bits.
    bits: usize,
    /// The public exponent.
    e: u64,
    /// `-n^-1 mod 2^32`.
    n0_inv: u32,
    /// `R^2 mod n` with `R = 2^(32 * limbs)`.
    rr: Vec<u32>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} bits, e = {})", self.bits, self.e)
    }
}

/// Big-endian bytes as `limbs` little-endian limbs; `None` if they do not fit.
fn limbs_from_be(bytes: &[u8], limbs: usize) -> Option<Vec<u32>> {
    let mut out = vec![0u32; limbs];
    let mut slots = out.iter_mut();
    for chunk in bytes.rchunks(4) {
        let value = chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b));
        match slots.next() {
            Some(slot) => *slot = value,
            None if value == 0 => {}
            None => return None,
        }
    }
    Some(out)
}

/// Little-endian limbs as big-endian bytes, the last `len` of them.
fn be_from_limbs(limbs: &[u32], len: usize) -> Vec<u8> {
    let bytes: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    let skip = bytes.len().saturating_sub(len);
    bytes.get(skip..).unwrap_or_default().to_vec()
}

fn compare(a: &[u32], b: &[u32]) -> Ordering {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        match x.cmp(y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

/// `a -= b` (same length, `a >= b`).
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
}

/// Adds `carry` into `limbs` from the start.
fn propagate(limbs: &mut [u32], mut carry: u64) {
    for limb in limbs {
        if carry == 0 {
            return;
        }
        let s = u64::from(*limb) + carry;
        *limb = s as u32;
        carry = s >> 32;
    }
}

impl PublicKey {
    /// A key from its big-endian modulus and exponent (as a JWK's `n` and `e`), with a
    /// modulus of `min_bits` to `max_bits` bits.
    pub fn new(n: &[u8], e: &[u8], min_bits: usize, max_bits: usize) -> Result<Self, KeyError> {
        let first = n.iter().position(|&b| b != 0).unwrap_or(n.len());
        let n = n.get(first..).unwrap_or_default();
        let bits = n
            .first()
            .map_or(0, |&top| n.len() * 8 - top.leading_zeros() as usize);
        if !(min_bits..=max_bits).contains(&bits) {
            return Err(KeyError::Size(bits));
        }
        if n.last().is_none_or(|&low| low & 1 == 0) {
            return Err(KeyError::EvenModulus);
        }
        let e_first = e.iter().position(|&b| b != 0).unwrap_or(e.len());
        let e = e.get(e_first..).unwrap_or_default();
        if e.len() > 8 {
            return Err(KeyError::Exponent);
        }
        let e = e.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        if e < 3 || e & 1 == 0 || e > (1 << 33) - 1 {
            return Err(KeyError::Exponent);
        }
        let limbs = bits.div_ceil(32);
        let n = limbs_from_be(n, limbs).ok_or(KeyError::Size(bits))?;
        let n0 = n.first().copied().unwrap_or(1);
        // Newton's iteration doubles the correct low bits each step: 1 → 32 in five.
        let mut inv = 1u32;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let mut key = PublicKey {
            rr: Vec::new(),
            n,
            bits,
            e,
            n0_inv: inv.wrapping_neg(),
        };
        key.rr = key.r_squared();
        Ok(key)
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The public exponent.
    pub fn e(&self) -> u64 {
        self.e
    }

    /// The modulus size in bytes: the length of every signature.
    pub fn size(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// The modulus as big-endian bytes (for the host verifier's DER).
    pub fn modulus(&self) -> Vec<u8> {
        be_from_limbs(&self.n, self.size())
    }

    /// The exponent as big-endian bytes, without leading zeros.
    pub fn exponent(&self) -> Vec<u8> {
        let bytes = self.e.to_be_bytes();
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        bytes.get(first..).unwrap_or_default().to_vec()
    }

    /// `R^2 mod n`, by doubling 1 modulo n, 2 * 32 * limbs times.
    fn r_squared(&self) -> Vec<u32> {
        let k = self.n.len();
        let mut x = vec![0u32; k + 1];
        if let Some(low) = x.first_mut() {
            *low = 1;
        }
        let mut n_wide = self.n.clone();
        n_wide.push(0);
        for _ in 0..64 * k {
            let mut carry = 0u32;
            for limb in x.iter_mut() {
                let next = *limb >> 31;
                *limb = *limb << 1 | carry;
                carry = next;
            }
            if compare(&x, &n_wide) != Ordering::Less {
                sub_in_place(&mut x, &n_wide);
            }
        }
        x.truncate(k);
        x
    }

    /// Montgomery product `a * b / R mod n` (CIOS), for `a`, `b` < n of `limbs` limbs.
    fn mont_mul(&self, a: &[u32], b: &[u32]) -> Vec<u32> {
        let k = self.n.len();
        let mut t = vec![0u32; k + 2];
        for &ai in a {
            let mut carry = 0u64;
            for (tj, &bj) in t.iter_mut().zip(b) {
                let s = u64::from(*tj) + u64::from(ai) * u64::from(bj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            propagate(t.get_mut(k..).unwrap_or_default(), carry);
            let m = u64::from(t.first().copied().unwrap_or(0).wrapping_mul(self.n0_inv));
            let mut carry = 0u64;
            for (tj, &nj) in t.iter_mut().zip(&self.n) {
                let s = u64::from(*tj) + m * u64::from(nj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            propagate(t.get_mut(k..).unwrap_or_default(), carry);
            // The lowest limb is now zero: dividing by 2^32 is moving every limb down one.
            t.rotate_left(1);
        }
        t.truncate(k + 1);
        let mut n_wide = self.n.clone();
        n_wide.push(0);
        if compare(&t, &n_wide) != Ordering::Less {
            sub_in_place(&mut t, &n_wide);
        }
        t.truncate(k);
        t
    }

    /// `s^e mod n` as big-endian bytes of the modulus size; `None` when `s` is not a
    /// signature for this key (wrong length, or not below the modulus).
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.size() {
            return None;
        }
        let s = limbs_from_be(signature, self.n.len())?;
        if compare(&s, &self.n) != Ordering::Less {
            return None;
        }
        let s_mont = self.mont_mul(&s, &self.rr);
        let mut acc = s_mont.clone();
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            acc = self.mont_mul(&acc, &acc);
            if self.e >> bit & 1 == 1 {
                acc = self.mont_mul(&acc, &s_mont);
            }
        }
        let mut one = vec![0u32; self.n.len()];
        if let Some(low) = one.first_mut() {
            *low = 1;
        }
        Some(be_from_limbs(&self.mont_mul(&acc, &one), self.size()))
    }

    /// Verifies an RSASSA-PKCS1-v1_5 signature of `message` (RS256/384/512).
    pub fn verify_pkcs1v15(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        let (prefix, digest): (&[u8], Vec<u8>) = match hash {
            Hash::Sha256 => (SHA256_PREFIX, Sha256::digest(message).to_vec()),
            Hash::Sha384 => (SHA384_PREFIX, Sha384::digest(message).to_vec()),
            Hash::Sha512 => (SHA512_PREFIX, Sha512::digest(message).to_vec()),
        };
        let t_len = prefix.len() + digest.len();
        let Some(ps_len) = em.len().checked_sub(t_len + 3).filter(|&n| n >= 8) else {
            return false;
        };
        let mut expected = Vec::with_capacity(em.len());
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps_len, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&digest);
        em == expected
    }

    /// Verifies an RSASSA-PSS signature of `message` with MGF1 of the same hash and a salt
    /// as long as the hash (PS256/384/512, RFC 7518 §3.5).
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        match hash {
            Hash::Sha256 => self.pss::<Sha256>(message, signature),
            Hash::Sha384 => self.pss::<Sha384>(message, signature),
            Hash::Sha512 => self.pss::<Sha512>(message, signature),
        }
    }

    /// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with `sLen = hLen`.
    fn pss<D: Digest + FixedOutputReset>(&self, message: &[u8], signature: &[u8]) -> bool {
        let Some(em_full) = self.public_op(signature) else {
            return false;
        };
        let em_bits = self.bits.saturating_sub(1);
        let em_len = em_bits.div_ceil(8);
        // When the modulus is one bit over a whole byte, EM is one byte shorter than the
        // signature, and the byte above it must be zero.
        let Some((high, em)) = em_full.split_at_checked(em_full.len().saturating_sub(em_len))
        else {
            return false;
        };
        if high.iter().any(|&b| b != 0) {
            return false;
        }
        let h_len = <D as Digest>::output_size();
        let s_len = h_len;
        if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
            return false;
        }
        let db_len = em_len - h_len - 1;
        let Some((masked_db, rest)) = em.split_at_checked(db_len) else {
            return false;
        };
        let h = rest.get(..h_len).unwrap_or_default();
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
        if masked_db.first().is_some_and(|&b| b & !top_mask != 0) {
            return false;
        }
        let mut db: Vec<u8> = masked_db
            .iter()
            .zip(mgf1::<D>(h, db_len))
            .map(|(m, k)| m ^ k)
            .collect();
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        let Some((ps, tail)) = db.split_at_checked(db_len - s_len - 1) else {
            return false;
        };
        if ps.iter().any(|&b| b != 0) || tail.first() != Some(&0x01) {
            return false;
        }
        let salt = tail.get(1..).unwrap_or_default();
        let mut hasher = <D as Digest>::new();
        Digest::update(&mut hasher, [0u8; 8]);
        Digest::update(&mut hasher, <D as Digest>::digest(message));
        Digest::update(&mut hasher, salt);
        Digest::finalize(hasher).as_slice() == h
    }
}

/// MGF1 (RFC 8017 §B.2.1): `len` bytes of mask from `seed`.
fn mgf1<D: Digest + FixedOutputReset>(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + <D as Digest>::output_size());
    let mut counter = 0u32;
    let mut hasher = <D as Digest>::new();
    while out.len() < len {
        Digest::update(&mut hasher, seed);
        Digest::update(&mut hasher, counter.to_be_bytes());
        out.extend_from_slice(&Digest::finalize_reset(&mut hasher));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// DigestInfo prefixes (RFC 8017 §9.2, note 1).
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use rsa::traits::PublicKeyParts;
    use rsa::RsaPrivateKey;

    fn public(key: &RsaPrivateKey) -> PublicKey {
        PublicKey::new(&key.n().to_bytes_be(), &key.e().to_bytes_be(), 2048, 8192).unwrap()
    }

    fn schemes() -> Vec<(&'static str, Hash, bool)> {
        vec![
            ("RS256", Hash::Sha256, false),
            ("RS384", Hash::Sha384, false),
            ("RS512", Hash::Sha512, false),
            ("PS256", Hash::Sha256, true),
            ("PS384", Hash::Sha384, true),
            ("PS512", Hash::Sha512, true),
        ]
    }

    fn sign(key: &RsaPrivateKey, name: &str, message: &[u8]) -> Vec<u8> {
        let alg = crate::token::Algorithm::from_name(name).unwrap();
        fixtures::signature(alg, &fixtures::Signer::Rsa(key.clone()), message)
    }

    fn verify(key: &PublicKey, hash: Hash, pss: bool, message: &[u8], sig: &[u8]) -> bool {
        if pss {
            key.verify_pss(hash, message, sig)
        } else {
            key.verify_pkcs1v15(hash, message, sig)
        }
    }

    #[test]
    fn verifies_what_the_rsa_crate_signs_for_every_size_exponent_and_scheme() {
        for private in fixtures::rsa_test_keys() {
            let key = public(&private);
            for (name, hash, pss) in schemes() {
                for message in [&b""[..], b"a", b"header.payload", &[0xff; 1000]] {
                    let sig = sign(&private, name, message);
                    assert!(verify(&key, hash, pss, message, &sig), "{name} {key:?}");
                }
            }
        }
    }

    #[test]
    fn refuses_changed_messages_signatures_and_schemes() {
        for private in fixtures::rsa_test_keys() {
            let key = public(&private);
            for (name, hash, pss) in schemes() {
                let sig = sign(&private, name, b"message");
                assert!(!verify(&key, hash, pss, b"messagf", &sig), "{name}");
                for at in [0, sig.len() / 2, sig.len() - 1] {
                    let mut bad = sig.clone();
                    bad[at] ^= 0x01;
                    assert!(
                        !verify(&key, hash, pss, b"message", &bad),
                        "{name} byte {at}"
                    );
                }
                assert!(
                    !verify(&key, hash, !pss, b"message", &sig),
                    "{name} other padding"
                );
                let other = if hash == Hash::Sha256 {
                    Hash::Sha512
                } else {
                    Hash::Sha256
                };
                assert!(
                    !verify(&key, other, pss, b"message", &sig),
                    "{name} other hash"
                );
                assert!(
                    !verify(&key, hash, pss, b"message", &sig[1..]),
                    "{name} short"
                );
                let mut long = vec![0];
                long.extend_from_slice(&sig);
                assert!(!verify(&key, hash, pss, b"message", &long), "{name} long");
            }
        }
    }

    #[test]
    fn refuses_a_signature_not_below_the_modulus() {
        let private = fixtures::rsa_private_key();
        let key = public(&private);
        let n = key.modulus();
        assert!(!key.verify_pkcs1v15(Hash::Sha256, b"m", &n));
        assert!(!key.verify_pkcs1v15(Hash::Sha256, b"m", &vec![0xff; n.len()]));
        assert!(!key.verify_pss(Hash::Sha256, b"m", &vec![0; n.len()]));
    }

    #[test]
    fn refuses_keys_out_of_range() {
        let odd = |len: usize| {
            let mut n = vec![0xff; len];
            n[len - 1] = 0xfb;
            n
        };
        assert_eq!(
            PublicKey::new(&odd(128), &[1, 0, 1], 2048, 8192),
            Err(KeyError::Size(1024))
        );
        let mut even = odd(256);
        even[255] = 0xfe;
        assert_eq!(
            PublicKey::new(&even, &[1, 0, 1], 2048, 8192),
            Err(KeyError::EvenModulus)
        );
        for e in [&[1][..], &[2], &[1, 0, 0], &[2, 0, 0, 0, 0], &[1; 9]] {
            assert_eq!(
                PublicKey::new(&odd(256), e, 2048, 8192),
                Err(KeyError::Exponent),
                "{e:?}"
            );
        }
        let mut padded = vec![0, 0];
        padded.extend(odd(256));
        assert!(PublicKey::new(&padded, &[0, 1, 0, 1], 2048, 8192).is_ok());
    }

    #[test]
    fn round_trips_the_modulus_and_exponent() {
        let private = fixtures::rsa_private_key();
        let key = public(&private);
        assert_eq!(key.modulus(), private.n().to_bytes_be());
        assert_eq!(key.exponent(), private.e().to_bytes_be());
        assert_eq!(key.size(), 256);
    }
}
