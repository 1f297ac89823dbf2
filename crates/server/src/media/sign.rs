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
    /// Reads `data/media-key`, or makes it.
    pub(super) fn load(data: &Path) -> anyhow::Result<UrlKey> {
        let path = data.join("media-key");
        if let Ok(text) = std::fs::read_to_string(&path) {
            crate::private_file(&path);
            let bytes =
                hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("{} must hold 64 hex digits", path.display()))?;
            let key: [u8; 32] =
                bytes.try_into().map_err(|_| anyhow::anyhow!("{} must hold 64 hex digits", path.display()))?;
            return Ok(UrlKey(key));
        }
        crate::private_dir(data)?;
        let key: [u8; 32] = rand::random();
        crate::write_private(&path, &hex::encode(key))?;
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
