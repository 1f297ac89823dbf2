//! Signed file URLs: `/v1/files/{id}/content?expires=MS&sig=HEX`, where `sig` is
//! HMAC-SHA256 over `"{id}\n{expires}"` under the URL key. The key lives in `DATA/media-key`
//! (64 hex digits, 0600, made at first start), like the server's other keys; replacing the
//! file ends every URL handed out.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key signed URLs are made with.
pub(super) struct UrlKey([u8; 32]);

impl UrlKey {
    /// Reads `data/media-key`, or makes it (see [`crate::secrets`]).
    pub(super) fn load(data: &Path) -> anyhow::Result<UrlKey> {
        let (text, _) = crate::secrets::load(data, None, "media-key", "a key for signed file URLs", || {
            hex::encode(rand::random::<[u8; 32]>())
        })?;
        let bad = || anyhow::anyhow!("{} must hold 64 hex digits", data.join("media-key").display());
        let key: [u8; 32] = hex::decode(&text).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
        Ok(UrlKey(key))
    }

    fn mac(&self, id: &str, expires_ms: i64) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(format!("{id}\n{expires_ms}").as_bytes());
        m
    }

    /// The `sig` of a URL for `id` valid until `expires_ms`.
    pub(super) fn sign(&self, id: &str, expires_ms: i64) -> String {
        hex::encode(self.mac(id, expires_ms).finalize().into_bytes())
    }

    /// Whether `sig` is right for `id` and `expires_ms` (constant time), and it has not expired.
    pub(super) fn check(&self, id: &str, expires_ms: i64, sig: &str, now_ms: i64) -> bool {
        let Ok(sig) = hex::decode(sig) else { return false };
        now_ms < expires_ms && self.mac(id, expires_ms).verify_slice(&sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let dir = tempfile::tempdir().unwrap();
        let k = UrlKey::load(dir.path()).unwrap();
        let sig = k.sign("abc", 2000);
        assert!(k.check("abc", 2000, &sig, 1000));
        assert!(!k.check("abc", 2000, &sig, 2000), "expired");
        assert!(!k.check("abd", 2000, &sig, 1000), "another file");
        assert!(!k.check("abc", 2001, &sig, 1000), "another expiry");
        assert!(!k.check("abc", 2000, "zz", 1000));
        let again = UrlKey::load(dir.path()).unwrap();
        assert!(again.check("abc", 2000, &sig, 1000), "the key is kept");
    }
}
