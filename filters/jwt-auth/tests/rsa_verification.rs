//! The RSA verifier (`src/rsa_verify.rs`) tested as a crypto library is: Project
//! Wycheproof's known-answer vectors for RSASSA-PKCS1-v1_5 and RSASSA-PSS, valid and
//! invalid; encodings that are almost right, signed with the private key so that only the
//! encoding checks stand between them and acceptance (RFC 8017 §8.2.2 and §9.1.2);
//! Bleichenbacher's 2006 forgery against an e = 3 key; and a differential property test
//! against the `rsa` crate on random keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use meshward_jwt_auth::rsa_verify::{Hash, PublicKey};
use proptest::prelude::*;
use rsa::pkcs8::DecodePrivateKey;
use rsa::rand_core::RngCore;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use wycheproof::{HashFunction, TestResult};

fn key_e3() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(include_str!("../fixtures/rsa-4096-e3.pem")).unwrap()
}

fn key_2048() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(include_str!("../fixtures/rsa-1.pem")).unwrap()
}

fn public(key: &RsaPrivateKey) -> PublicKey {
    PublicKey::new(&key.n().to_bytes_be(), &key.e().to_bytes_be(), 512, 8192).unwrap()
}

fn digest(hash: Hash, message: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha256 => Sha256::digest(message).to_vec(),
        Hash::Sha384 => Sha384::digest(message).to_vec(),
        Hash::Sha512 => Sha512::digest(message).to_vec(),
    }
}

/// The raw RSA private operation `em^d mod n`: a "signature" of any encoded message,
/// well-formed or not.
fn raw_sign(key: &RsaPrivateKey, em: &[u8]) -> Vec<u8> {
    let m = BigUint::from_bytes_be(em);
    assert!(
        &m < key.n(),
        "the encoded message must be below the modulus"
    );
    left_pad(&m.modpow(key.d(), key.n()).to_bytes_be(), key.size())
}

fn left_pad(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0; len.saturating_sub(bytes.len())];
    out.extend_from_slice(bytes);
    out
}

// Known answers: Project Wycheproof.

fn our_hash(hash: HashFunction) -> Option<Hash> {
    match hash {
        HashFunction::Sha2_256 => Some(Hash::Sha256),
        HashFunction::Sha2_384 => Some(Hash::Sha384),
        HashFunction::Sha2_512 => Some(Hash::Sha512),
        _ => None,
    }
}

#[test]
fn wycheproof_pkcs1v15_vectors() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut checked = 0;
    for name in [
        TestName::Rsa2048Sha256,
        TestName::Rsa2048Sha384,
        TestName::Rsa2048Sha512,
        // One set of each larger size: unoptimised, 4096-bit checks take a while.
        TestName::Rsa3072Sha384,
        TestName::Rsa4096Sha512,
    ] {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let hash = our_hash(group.hash).unwrap();
            let key = PublicKey::new(&group.key.n, &group.key.e, 512, 8192).unwrap();
            for test in &group.tests {
                let verdict = key.verify_pkcs1v15(hash, &test.msg, &test.sig);
                match test.result {
                    TestResult::Valid => assert!(verdict, "{name:?} #{}", test.tc_id),
                    TestResult::Invalid => assert!(
                        !verdict,
                        "{name:?} #{} ({}) {:?} was accepted",
                        test.tc_id, test.comment, test.flags
                    ),
                    TestResult::Acceptable => {}
                }
                checked += 1;
            }
        }
    }
    println!("{checked} PKCS#1 v1.5 vectors");
    assert!(checked > 1000, "{checked} vectors");
}

#[test]
fn wycheproof_pss_vectors_with_the_salt_jwa_fixes() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let mut checked = 0;
    let mut other_salts = 0;
    for name in [
        TestName::RsaPss2048Sha256Mgf1SaltLen32,
        TestName::RsaPss2048Sha256Mgf1SaltLen0,
        TestName::RsaPss2048Sha384Mgf1SaltLen48,
        TestName::RsaPss3072Sha256Mgf1SaltLen32,
        TestName::RsaPss4096Sha512Mgf1SaltLen64,
        TestName::RsaPssmisc,
    ] {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let Some(hash) = our_hash(group.hash) else {
                continue;
            };
            let key = PublicKey::new(&group.key.n, &group.key.e, 512, 8192).unwrap();
            // JWA's PS256/384/512 use MGF1 with the same hash and a salt as long as it
            // (RFC 7518 §3.5): nothing else may verify, valid elsewhere or not.
            let jwa =
                group.mgf_hash == Some(group.hash) && group.salt_size == digest(hash, b"").len();
            for test in &group.tests {
                let verdict = key.verify_pss(hash, &test.msg, &test.sig);
                if !jwa {
                    // A signature valid with another salt length or MGF hash is not a
                    // PS256/384/512 signature. (An "invalid" vector there may be one:
                    // Wycheproof re-signs some with the JWA salt length.)
                    if test.result == TestResult::Valid {
                        assert!(
                            !verdict,
                            "{name:?} #{}: salt {} accepted",
                            test.tc_id, group.salt_size
                        );
                        other_salts += 1;
                    }
                    continue;
                }
                match test.result {
                    TestResult::Valid => assert!(verdict, "{name:?} #{}", test.tc_id),
                    TestResult::Invalid => assert!(
                        !verdict,
                        "{name:?} #{} ({}) {:?} was accepted",
                        test.tc_id, test.comment, test.flags
                    ),
                    TestResult::Acceptable => {}
                }
                checked += 1;
            }
        }
    }
    println!("{checked} PSS vectors, {other_salts} valid with another salt or MGF");
    assert!(checked > 200, "{checked} vectors");
    assert!(other_salts > 20, "{other_salts} vectors with other salts");
}

// PKCS#1 v1.5 encodings that are almost right, and Bleichenbacher's forgery.

const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// `00 01 FF… 00 || T` of `len` bytes with `T` as given (padding filling the rest).
fn pkcs1_em(len: usize, t: &[u8]) -> Vec<u8> {
    let mut em = vec![0x00, 0x01];
    em.resize(len - t.len() - 1, 0xff);
    em.push(0x00);
    em.extend_from_slice(t);
    em
}

fn digest_info(hash: &[u8]) -> Vec<u8> {
    [SHA256_DIGEST_INFO, hash].concat()
}

#[test]
fn almost_right_pkcs1v15_encodings_are_refused() {
    for private in [key_e3(), key_2048()] {
        let key = public(&private);
        let k = key.size();
        let message = b"header.payload";
        let h = digest(Hash::Sha256, message);
        let valid = raw_sign(&private, &pkcs1_em(k, &digest_info(&h)));
        assert!(
            key.verify_pkcs1v15(Hash::Sha256, message, &valid),
            "control: the well-formed encoding verifies"
        );
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        // Garbage after the hash, the padding shortened to make room.
        let mut garbage = digest_info(&h);
        garbage.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        cases.push(("garbage after the hash", pkcs1_em(k, &garbage)));
        // DigestInfo without its NULL parameters (lengths adjusted to stay valid DER).
        let mut no_null = vec![0x30, 0x2f, 0x30, 0x0b];
        no_null.extend_from_slice(&SHA256_DIGEST_INFO[4..15]);
        no_null.extend_from_slice(&[0x04, 0x20]);
        no_null.extend_from_slice(&h);
        cases.push(("DigestInfo without NULL", pkcs1_em(k, &no_null)));
        // Padding shorter than 8 bytes: `00 01 FF×7 00 T`, zeros after it.
        let mut short = vec![0x00, 0x01];
        short.extend_from_slice(&[0xff; 7]);
        short.push(0x00);
        short.extend_from_slice(&digest_info(&h));
        short.resize(k, 0x00);
        cases.push(("padding of 7 bytes", short));
        // A hash of the wrong length under a SHA-256 DigestInfo.
        let mut truncated = SHA256_DIGEST_INFO.to_vec();
        truncated[SHA256_DIGEST_INFO.len() - 1] = 31;
        truncated[1] -= 1;
        truncated.extend_from_slice(&h[..31]);
        cases.push(("a 31-byte hash", pkcs1_em(k, &truncated)));
        let mut long = digest_info(&h);
        long.push(0x00);
        cases.push(("a 33-byte hash", pkcs1_em(k, &long)));
        // Block type 2, a padding byte other than FF, no zero separator.
        let mut bt2 = pkcs1_em(k, &digest_info(&h));
        bt2[1] = 0x02;
        cases.push(("block type 2", bt2));
        let mut not_ff = pkcs1_em(k, &digest_info(&h));
        not_ff[5] = 0xfe;
        cases.push(("a padding byte of FE", not_ff));
        let mut no_separator = pkcs1_em(k, &digest_info(&h));
        let sep = k - SHA256_DIGEST_INFO.len() - h.len() - 1;
        no_separator[sep] = 0xff;
        cases.push(("no zero separator", no_separator));
        // The hash of another message.
        cases.push((
            "another message's hash",
            pkcs1_em(k, &digest_info(&digest(Hash::Sha256, b"other"))),
        ));
        for (what, em) in cases {
            assert_eq!(em.len(), k, "{what}");
            let sig = raw_sign(&private, &em);
            assert!(
                !key.verify_pkcs1v15(Hash::Sha256, message, &sig),
                "{what} (e = {:?}) was accepted",
                private.e()
            );
        }
    }
}

/// Bleichenbacher (2006): with e = 3 and a verifier that stops reading after the hash, a
/// signature is the cube root of `00 01 FF 00 || T || garbage`, made without the key.
#[test]
fn bleichenbachers_e3_forgery_is_refused() {
    let private = key_e3();
    let key = public(&private);
    let k = key.size();
    let message = b"header.payload";
    let t = digest_info(&digest(Hash::Sha256, message));
    let mut prefix = vec![0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0x00];
    prefix.extend_from_slice(&t);
    let garbage_bits = 8 * (k - prefix.len());
    let low = BigUint::from_bytes_be(&prefix) << garbage_bits;
    let high = (BigUint::from_bytes_be(&prefix) + 1u32) << garbage_bits;
    let s = cube_root_ceil(&low);
    let cube = &s * &s * &s;
    assert!(cube < high, "the forgery exists for a 4096-bit e = 3 key");
    let cube_bytes = left_pad(&cube.to_bytes_be(), k);
    assert_eq!(
        &cube_bytes[..prefix.len()],
        &prefix[..],
        "s^3 starts with the prefix"
    );
    let forged = left_pad(&s.to_bytes_be(), k);
    assert!(!key.verify_pkcs1v15(Hash::Sha256, message, &forged));
}

/// The least `s` with `s^3 >= x`, by bisection.
fn cube_root_ceil(x: &BigUint) -> BigUint {
    let one = BigUint::from(1u32);
    let mut lo = BigUint::from(0u32);
    let mut hi = &one << (x.bits() / 3 + 2);
    while lo < hi {
        let mid: BigUint = (&lo + &hi) >> 1usize;
        if &(&mid * &mid * &mid) < x {
            lo = mid + &one;
        } else {
            hi = mid;
        }
    }
    lo
}

// RSASSA-PSS encodings that are almost right.

fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut counter = 0u32;
    while out.len() < len {
        out.extend(digest(hash, &[seed, &counter.to_be_bytes()].concat()));
        counter += 1;
    }
    out.truncate(len);
    out
}

/// What to spoil in an EMSA-PSS encoding.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Spoil {
    Nothing,
    SaltLength(isize),
    Trailer,
    TopBits,
    NonZeroPadding,
    NoSeparator,
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with a fixed salt, `spoil`ed.
fn pss_em(hash: Hash, message: &[u8], em_bits: usize, spoil: Spoil) -> Vec<u8> {
    let h_len = digest(hash, b"").len();
    let s_len = match spoil {
        Spoil::SaltLength(delta) => h_len.checked_add_signed(delta).unwrap(),
        _ => h_len,
    };
    let em_len = em_bits.div_ceil(8);
    let salt: Vec<u8> = (0..s_len).map(|i| i as u8 ^ 0x5a).collect();
    let m_hash = digest(hash, message);
    let h = digest(hash, &[&[0u8; 8][..], &m_hash, &salt].concat());
    let mut db = vec![0u8; em_len - s_len - h_len - 2];
    if spoil == Spoil::NonZeroPadding {
        let middle = db.len() / 2;
        db[middle] = 0x01;
    }
    db.push(if spoil == Spoil::NoSeparator {
        0x00
    } else {
        0x01
    });
    db.extend_from_slice(&salt);
    let mask = mgf1(hash, &h, db.len());
    let mut masked: Vec<u8> = db.iter().zip(mask).map(|(d, m)| d ^ m).collect();
    let unused = 8 * em_len - em_bits;
    masked[0] &= 0xff >> unused;
    if spoil == Spoil::TopBits && unused > 0 {
        masked[0] |= 0x80 >> (unused - 1);
    }
    let mut em = masked;
    em.extend_from_slice(&h);
    em.push(if spoil == Spoil::Trailer { 0xbd } else { 0xbc });
    em
}

#[test]
fn almost_right_pss_encodings_are_refused() {
    let keys = [
        key_2048(),
        RsaPrivateKey::from_pkcs8_pem(include_str!("../fixtures/rsa-2049.pem")).unwrap(),
    ];
    for private in keys {
        let key = public(&private);
        let em_bits = key.bits() - 1;
        for hash in [Hash::Sha256, Hash::Sha512] {
            let message = b"header.payload";
            // The encoding, left-padded to the signature size; with a modulus one bit over
            // a whole byte, "top bits set" sets the byte above the encoding.
            let encode = |spoil| {
                let mut em = left_pad(&pss_em(hash, message, em_bits, spoil), key.size());
                if spoil == Spoil::TopBits && em_bits.is_multiple_of(8) {
                    em[0] |= 0x01;
                }
                em
            };
            assert!(
                key.verify_pss(hash, message, &raw_sign(&private, &encode(Spoil::Nothing))),
                "control: {hash:?}, {} bits",
                key.bits()
            );
            for spoil in [
                Spoil::SaltLength(-1),
                Spoil::SaltLength(1),
                Spoil::SaltLength(-32),
                Spoil::Trailer,
                Spoil::TopBits,
                Spoil::NonZeroPadding,
                Spoil::NoSeparator,
            ] {
                let em = encode(spoil);
                // A set top bit may put the encoding at or above the modulus: then it
                // cannot even be signed, and the verifier refuses it as out of range.
                if BigUint::from_bytes_be(&em) >= *private.n() {
                    assert!(!key.verify_pss(hash, message, &em), "{spoil:?}");
                    continue;
                }
                assert!(
                    !key.verify_pss(hash, message, &raw_sign(&private, &em)),
                    "{spoil:?} with {hash:?} and {} bits was accepted",
                    key.bits()
                );
            }
        }
    }
}

// Differential: the same verdicts as the `rsa` crate.

/// A deterministic generator for the `rsa` crate (rand_core 0.6), seeded by proptest.
struct SplitMix(u64);

impl rsa::rand_core::RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for SplitMix {}

fn rsa_crate_verifies(
    key: &rsa::RsaPublicKey,
    hash: Hash,
    pss: bool,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    let hashed = digest(hash, msg);
    let result = match (hash, pss) {
        (Hash::Sha256, false) => key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &hashed, sig),
        (Hash::Sha384, false) => key.verify(rsa::Pkcs1v15Sign::new::<Sha384>(), &hashed, sig),
        (Hash::Sha512, false) => key.verify(rsa::Pkcs1v15Sign::new::<Sha512>(), &hashed, sig),
        (Hash::Sha256, true) => key.verify(rsa::Pss::new::<Sha256>(), &hashed, sig),
        (Hash::Sha384, true) => key.verify(rsa::Pss::new::<Sha384>(), &hashed, sig),
        (Hash::Sha512, true) => key.verify(rsa::Pss::new::<Sha512>(), &hashed, sig),
    };
    result.is_ok()
}

fn sign_with_rsa_crate(
    key: &RsaPrivateKey,
    rng: &mut SplitMix,
    hash: Hash,
    pss: bool,
    msg: &[u8],
) -> Option<Vec<u8>> {
    let hashed = digest(hash, msg);
    let result = match (hash, pss) {
        (Hash::Sha256, false) => key.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &hashed),
        (Hash::Sha384, false) => key.sign(rsa::Pkcs1v15Sign::new::<Sha384>(), &hashed),
        (Hash::Sha512, false) => key.sign(rsa::Pkcs1v15Sign::new::<Sha512>(), &hashed),
        (Hash::Sha256, true) => key.sign_with_rng(rng, rsa::Pss::new::<Sha256>(), &hashed),
        (Hash::Sha384, true) => key.sign_with_rng(rng, rsa::Pss::new::<Sha384>(), &hashed),
        (Hash::Sha512, true) => key.sign_with_rng(rng, rsa::Pss::new::<Sha512>(), &hashed),
    };
    result.ok()
}

proptest! {
    // Each case makes a fresh RSA key: 12 cases in `make test` keep the test to seconds;
    // `make fuzz` runs MESHWARD_FUZZ_CASES / 500 (20 at its default).
    #![proptest_config(meshward_shared::fuzzing::config(12, 500))]

    #[test]
    fn gives_the_rsa_crates_verdict_on_random_keys_messages_and_mutations(
        seed in any::<u64>(),
        // Odd sizes around 1024 bits, and the size JWKS keys have (2049: a modulus one
        // bit into a new byte).
        bits in prop_oneof![
            3 => 1024usize..1088,
            1 => Just(2048usize),
            1 => Just(2049usize),
        ],
        hash in prop_oneof![Just(Hash::Sha256), Just(Hash::Sha384), Just(Hash::Sha512)],
        pss in any::<bool>(),
        message in proptest::collection::vec(any::<u8>(), 0..200),
        mutation in 0usize..5,
        at in any::<usize>(),
        bit in 0u8..8,
    ) {
        let mut rng = SplitMix(seed);
        let private = RsaPrivateKey::new(&mut rng, bits).unwrap();
        let ours = PublicKey::new(&private.n().to_bytes_be(), &private.e().to_bytes_be(), 512, 8192).unwrap();
        let theirs = private.to_public_key();
        let sig = sign_with_rsa_crate(&private, &mut rng, hash, pss, &message)
            .unwrap_or_else(|| vec![0x42; ours.size()]);
        let (msg, sig) = match mutation {
            0 => (message.clone(), sig),
            1 => {
                let mut s = sig;
                let i = at % s.len();
                s[i] ^= 1 << bit;
                (message.clone(), s)
            }
            2 => {
                let mut m = message.clone();
                m.push(bit);
                (m, sig)
            }
            3 => (message.clone(), sig[..sig.len() - 1].to_vec()),
            _ => {
                let mut s = vec![0u8; sig.len()];
                SplitMix(seed ^ at as u64).fill_bytes(&mut s);
                (message.clone(), s)
            }
        };
        let our_verdict = if pss {
            ours.verify_pss(hash, &msg, &sig)
        } else {
            ours.verify_pkcs1v15(hash, &msg, &sig)
        };
        prop_assert_eq!(our_verdict, rsa_crate_verifies(&theirs, hash, pss, &msg, &sig));
        if mutation == 0 && sig.iter().any(|&b| b != 0x42) {
            prop_assert!(our_verdict, "a signature the rsa crate made verifies");
        }
    }
}
