//! The secrets the server keeps: the admin token, the pin key, the webhook and TURN secrets and
//! the key of signed file URLs. Each comes from its setting when one is given, else from its file
//! in the data directory, else it is generated into that file at the first start.
//!
//! Files are private (0600, in a 0700 directory), created with `create_new` and synced, so two
//! starts never write different secrets. A file that holds something unusable is an error, never
//! replaced: replacing it would silently end every pin, URL, token or credential made with it.
//! Where a secret is may be printed; the secret itself never is.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Its setting.
    Setting,
    /// Its file in the data directory (made at this start when it was missing).
    File(PathBuf),
}

/// The text of a secret (trimmed): `setting` when it is not blank, else the file `data/<file>`,
/// else `generate()` written there, with `what` ("an admin token") printed beside the file's place.
pub fn load(
    data: &Path,
    setting: Option<&str>,
    file: &str,
    what: &str,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<(String, Source)> {
    crate::private_dir(data)?;
    let path = data.join(file);
    if path.exists() {
        crate::private_file(&path);
    }
    if let Some(s) = setting.map(str::trim).filter(|s| !s.is_empty()) {
        return Ok((s.to_string(), Source::Setting));
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((text.trim().to_string(), Source::File(path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = generate();
            create(&path, &secret)?;
            println!("Generated {what}; it is stored in {} (readable by this user only)", path.display());
            Ok((secret, Source::File(path)))
        }
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Writes a new private file, refusing to replace one made meanwhile.
fn create(path: &Path, content: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    f.write_all(format!("{content}\n").as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_then_file_then_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (s, src) = load(&data, Some(" set "), "k", "a key", || unreachable!()).unwrap();
        assert_eq!((s.as_str(), src), ("set", Source::Setting));
        assert!(!data.join("k").exists(), "a setting writes no file");
        let (made, src) = load(&data, Some("  "), "k", "a key", || "new".into()).unwrap();
        assert_eq!((made.as_str(), src), ("new", Source::File(data.join("k"))));
        let (again, _) = load(&data, None, "k", "a key", || unreachable!("kept, not made again")).unwrap();
        assert_eq!(again, "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(data.join("k")).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        }
    }
}
