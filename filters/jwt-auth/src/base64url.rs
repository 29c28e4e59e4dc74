//! Base64url without padding (RFC 4648 §5), the encoding of every JWT segment and JWK field.
//!
//! Decoding is strict: no padding, no whitespace, and the unused low bits of the last
//! character must be zero, so a token has exactly one spelling and a tampered one cannot
//! pass as an alternative encoding of the same bytes.

/// The value of one base64url character, or `None` for any other byte.
fn value(byte: u8) -> Option<u32> {
    match byte {
        b'A'..=b'Z' => Some(u32::from(byte - b'A')),
        b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Decodes unpadded base64url. `None` for any other alphabet, a length that cannot occur
/// (a remainder of one character) or non-zero unused bits.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut chunks = input.chunks_exact(4);
    for chunk in &mut chunks {
        let mut n = 0u32;
        for &byte in chunk {
            n = (n << 6) | value(byte)?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    let mut n = 0u32;
    for &byte in rest {
        n = (n << 6) | value(byte)?;
    }
    match rest.len() {
        0 => {}
        2 => {
            if n & 0xf != 0 {
                return None;
            }
            out.push((n >> 4) as u8);
        }
        3 => {
            if n & 0x3 != 0 {
                return None;
            }
            out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
        }
        _ => return None,
    }
    Some(out)
}

/// Decodes base64url that may carry `=` padding, as some JWKS publishers write it.
pub fn decode_padded(input: &[u8]) -> Option<Vec<u8>> {
    let unpadded = match input.iter().position(|&b| b == b'=') {
        Some(at) => {
            let (data, padding) = input.split_at(at);
            let whole = input.len().is_multiple_of(4);
            if !whole || padding.len() > 2 || padding.iter().any(|&b| b != b'=') {
                return None;
            }
            data
        }
        None => input,
    };
    decode(unpadded)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn char_for(sextet: u32) -> char {
    ALPHABET
        .get((sextet & 0x3f) as usize)
        .map_or('A', |&b| char::from(b))
}

/// Encodes `bytes` as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i as u32));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char_for(n >> (18 - 6 * i as u32)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..=255).collect();
        for len in 0..data.len() {
            let encoded = encode(&data[..len]);
            assert!(!encoded.contains('='));
            assert_eq!(decode(encoded.as_bytes()).as_deref(), Some(&data[..len]));
        }
    }

    #[test]
    fn matches_the_rfc_4648_vectors_in_the_url_alphabet() {
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode(b"-_8").unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn refuses_padding_other_alphabets_and_impossible_lengths() {
        assert_eq!(decode(b"Zm8="), None);
        assert_eq!(decode(b"+/8"), None);
        assert_eq!(decode(b"Zm9v Zg"), None);
        assert_eq!(decode(b"Z"), None);
        assert_eq!(decode(b"Zm9vY"), None);
    }

    #[test]
    fn refuses_a_second_spelling_of_the_same_bytes() {
        // "Zm8" and "Zm9" differ only in the unused low bits of the last character.
        assert!(decode(b"Zm8").is_some());
        assert_eq!(decode(b"Zm9"), None);
        assert_eq!(decode(b"Zh"), None);
    }

    #[test]
    fn accepts_padding_only_where_asked() {
        assert_eq!(decode_padded(b"Zm8=").unwrap(), b"fo");
        assert_eq!(decode_padded(b"Zg==").unwrap(), b"f");
        assert_eq!(decode_padded(b"Zg=x"), None);
        assert_eq!(decode_padded(b"Zg==="), None);
    }
}
