//! Random secrets and their hashes: access tokens, login codes, pins, addresses.

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A uniformly random decimal string of `digits` digits with a non-zero first digit.
pub fn random_digits(digits: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(digits);
    s.push(char::from(b'1' + rng.gen_range(0..9u8)));
    for _ in 1..digits {
        s.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    s
}

/// Hex SHA-256 of `parts` joined by NUL: how secrets are stored.
pub fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Constant-time string equality.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `bytes` random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill(&mut buf[..]);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_128_bits_or_more() {
        let t = random_token(32);
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token(32));
    }

    #[test]
    fn digits_are_digits() {
        for _ in 0..100 {
            let d = random_digits(8);
            assert_eq!(d.len(), 8);
            assert!(d.bytes().all(|b| b.is_ascii_digit()));
            assert_ne!(d.as_bytes()[0], b'0');
        }
    }
}
