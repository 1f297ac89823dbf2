//! Pins at rest: the server's pin key and what the `pins` table stores in place of a pin.
//!
//! A pin is never stored as text. Each row holds
//! - `pin_hash`: HMAC-SHA256 over the group id and the pin (hex), what a join or a revoke looks
//!   the pin up by. The group id is part of it, so equal pins in two groups differ;
//! - `pin_enc`: the pin sealed with AES-256-GCM (random 96-bit nonce, the group id as associated
//!   data; hex of nonce ‖ ciphertext ‖ tag), what owners are shown (`GET …/pins`, Mesibo's
//!   `pin`/`spin`). A sealed pin copied to another group's row does not open.
//!
//! Both subkeys are derived from one 32-byte key: the `pin_key` setting (64 hex digits), else the
//! file `DATA/pin-key`, else a new random key written there (mode 0600) at first start. A dump
//! of the database without the key reveals no pin. The database records a check value of the
//! key (`meta.pin_key_check`, an HMAC of a constant: it reveals nothing of the key), so a server
//! started with another key refuses to start instead of failing every join
//! ([`crate::groups::Groups::prepare_pins`]).

use std::path::PathBuf;

use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, hmac};

use crate::config::Config;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "pin-key";

const NONCE_LEN: usize = 12;

/// The pin key's two subkeys and its check value.
pub struct PinKey {
    lookup: hmac::Key,
    seal: aead::LessSafeKey,
    check: String,
}

impl std::fmt::Debug for PinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinKey(..)")
    }
}

impl PinKey {
    /// Derives the subkeys from the 32-byte key.
    pub fn from_bytes(key: &[u8; 32]) -> PinKey {
        let root = hmac::Key::new(hmac::HMAC_SHA256, key);
        let derive = |label: &[u8]| hmac::sign(&root, label);
        let lookup = hmac::Key::new(hmac::HMAC_SHA256, derive(b"chorus pin lookup v1").as_ref());
        let seal_key = derive(b"chorus pin seal v1");
        let seal = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, seal_key.as_ref()).expect("an HMAC-SHA256 tag is 32 bytes"),
        );
        let check = hex::encode(derive(b"chorus pin key check v1").as_ref());
        PinKey { lookup, seal, check }
    }

    /// Parses 64 hex digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Option<PinKey> {
        let bytes = hex::decode(text.trim()).ok()?;
        let key: [u8; 32] = bytes.try_into().ok()?;
        Some(PinKey::from_bytes(&key))
    }

    /// A value that tells this key from another and reveals nothing of it.
    pub fn check(&self) -> &str {
        &self.check
    }

    /// What a pin of group `gid` is looked up by: HMAC-SHA256 over the gid and the pin, hex.
    pub fn hash(&self, gid: i64, pin: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.lookup);
        ctx.update(&gid.to_be_bytes());
        ctx.update(pin.as_bytes());
        hex::encode(ctx.sign().as_ref())
    }

    /// The pin sealed for display: hex of nonce ‖ ciphertext ‖ tag, bound to `gid`.
    pub fn seal(&self, gid: i64, pin: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the system's random source works");
        let mut buf = pin.as_bytes().to_vec();
        self.seal
            .seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aad(gid), &mut buf)
            .expect("a pin is far below AES-GCM's length limit");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        hex::encode(out)
    }

    /// Opens what [`PinKey::seal`] made for `gid`; `None` if it was sealed with another key, for
    /// another group, or changed.
    pub fn open(&self, gid: i64, sealed: &str) -> Option<String> {
        let bytes = hex::decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self.seal.open_in_place(nonce, aad(gid), &mut buf).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

fn aad(gid: i64) -> aead::Aad<[u8; 18]> {
    let mut a = [0u8; 18];
    a[..10].copy_from_slice(b"chorus pin");
    a[10..].copy_from_slice(&gid.to_be_bytes());
    aead::Aad::from(a)
}

/// Where the key comes from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `pin_key` setting.
    Setting,
    /// The key file.
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Setting => f.write_str("the pin_key setting"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The pin key: the `pin_key` setting, else `DATA/pin-key`, else a new random key written to
/// `DATA/pin-key` (0600). A setting or a file that is not 64 hex digits is an error (a file is
/// never overwritten). Never printed or logged: only where it is.
pub fn load(cfg: &Config) -> anyhow::Result<(PinKey, KeySource)> {
    let what = "a pin key (back it up: sealed pins open only with it)";
    let (text, source) = crate::secrets::load(&cfg.data, cfg.pin_key.as_deref(), KEY_FILE, what, || {
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).expect("the system's random source");
        hex::encode(key)
    })?;
    let key = PinKey::from_hex(&text);
    match source {
        crate::secrets::Source::Setting => {
            let key = key.ok_or_else(|| anyhow::anyhow!("pin_key must be 64 hex digits (32 bytes)"))?;
            Ok((key, KeySource::Setting))
        }
        crate::secrets::Source::File(path) => {
            let key = key.ok_or_else(|| {
                anyhow::anyhow!("{} must hold 64 hex digits (32 bytes); it is not overwritten", path.display())
            })?;
            Ok((key, KeySource::File(path)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_pins_open_only_with_their_key_and_group() {
        let k = PinKey::from_bytes(&[7; 32]);
        let sealed = k.seal(1234567, "86195492");
        assert!(!sealed.contains("86195492"));
        assert_eq!(k.open(1234567, &sealed).as_deref(), Some("86195492"));
        assert_eq!(k.open(1234568, &sealed), None, "another group's row");
        assert_eq!(PinKey::from_bytes(&[8; 32]).open(1234567, &sealed), None, "another key");
        assert_ne!(k.seal(1234567, "86195492"), sealed, "a fresh nonce each time");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(k.open(1234567, std::str::from_utf8(&tampered).unwrap()), None);
        assert_eq!(k.open(1234567, "zz"), None);
        assert_eq!(k.open(1234567, ""), None);
    }

    #[test]
    fn hashes_depend_on_key_group_and_pin() {
        let k = PinKey::from_bytes(&[7; 32]);
        let h = k.hash(1234567, "86195492");
        assert_eq!(h.len(), 64);
        assert_eq!(h, k.hash(1234567, "86195492"));
        assert_ne!(h, k.hash(1234568, "86195492"));
        assert_ne!(h, k.hash(1234567, "86195493"));
        assert_ne!(h, PinKey::from_bytes(&[8; 32]).hash(1234567, "86195492"));
        assert_ne!(k.check(), PinKey::from_bytes(&[8; 32]).check());
    }

    #[test]
    fn keys_parse_from_64_hex_digits_only() {
        assert!(PinKey::from_hex(&format!(" {}\n", "ab".repeat(32))).is_some());
        assert!(PinKey::from_hex(&"ab".repeat(31)).is_none());
        assert!(PinKey::from_hex(&"zz".repeat(32)).is_none());
        assert!(PinKey::from_hex("").is_none());
    }

    #[test]
    fn the_key_file_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config { data: dir.path().join("data"), ..Config::default() };
        let (k1, src) = load(&cfg).unwrap();
        let path = cfg.data.join(KEY_FILE);
        assert_eq!(src, KeySource::File(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (k2, _) = load(&cfg).unwrap();
        assert_eq!(k1.check(), k2.check(), "the same key at the next start");
        std::fs::write(&path, "not a key").unwrap();
        assert!(load(&cfg).is_err(), "a damaged key file is an error, not replaced");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
        let set = Config { pin_key: Some("11".repeat(32)), ..cfg.clone() };
        let (k3, src) = load(&set).unwrap();
        assert_eq!(src, KeySource::Setting);
        assert_eq!(k3.check(), PinKey::from_bytes(&[0x11; 32]).check());
        assert!(load(&Config { pin_key: Some("11".into()), ..cfg }).is_err());
    }
}
