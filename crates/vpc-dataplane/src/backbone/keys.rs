//! The region gateways' WireGuard key pairs: one per region, generated at
//! first use and kept in the data directory (`backbone/<region>.key`, mode
//! 0600). A private key is never logged and never leaves that file and
//! vpcd's memory.

use base64::Engine as _;
use boringtun::x25519::{PublicKey, StaticSecret};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Where the key files of one data directory live.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

/// A region gateway's key pair. The private half prints as `[redacted]`.
#[derive(Clone)]
pub struct KeyPair {
    pub secret: StaticSecret,
    pub public: PublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &encode(self.public.as_bytes()))
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn encode(b: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A public key in WireGuard's usual base64 form.
pub fn public_text(k: &PublicKey) -> String {
    encode(k.as_bytes())
}

impl KeyStore {
    /// The key files under `data_dir/backbone`.
    pub fn new(data_dir: &Path) -> KeyStore {
        KeyStore {
            dir: data_dir.join("backbone"),
        }
    }

    /// The file holding a region gateway's private key.
    pub fn path(&self, region: &str) -> PathBuf {
        self.dir.join(format!("{region}.key"))
    }

    /// The region's key pair, generated and stored (mode 0600) if it has none.
    pub fn load_or_create(&self, region: &str) -> std::io::Result<KeyPair> {
        match self.load(region)? {
            Some(k) => Ok(k),
            None => self.write_new(region),
        }
    }

    /// The region's key pair as stored, or None when it has none yet.
    pub fn load(&self, region: &str) -> std::io::Result<Option<KeyPair>> {
        let text = match std::fs::read_to_string(self.path(region)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} does not hold a key", self.path(region).display()),
                )
            })?;
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Ok(Some(KeyPair { secret, public }))
    }

    /// Replaces the region's key pair with a new one (the running gateway
    /// picks it up within a second and handshakes again).
    pub fn rotate(&self, region: &str) -> std::io::Result<KeyPair> {
        self.write_new(region)
    }

    /// The regions that have a key.
    pub fn regions(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".key"))
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        out
    }

    /// Writes a fresh key: to a 0600 temporary file, synced, then renamed
    /// over the old one, so a crash leaves either key whole.
    fn write_new(&self, region: &str) -> std::io::Result<KeyPair> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes: [u8; 32] = rand::random();
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        let tmp = self.dir.join(format!(".{region}.key.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{}\n", encode(&secret.to_bytes())).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path(region))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(KeyPair { secret, public })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_key_is_made_once_with_mode_0600_and_rotation_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path());
        assert!(ks.load("us-east-1").unwrap().is_none());
        let a = ks.load_or_create("us-east-1").unwrap();
        let b = ks.load_or_create("us-east-1").unwrap();
        assert_eq!(a.public.as_bytes(), b.public.as_bytes());
        let mode = std::fs::metadata(ks.path("us-east-1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let c = ks.rotate("us-east-1").unwrap();
        assert_ne!(a.public.as_bytes(), c.public.as_bytes());
        let mode = std::fs::metadata(ks.path("us-east-1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ks.regions(), vec!["us-east-1".to_string()]);
        // The private key never shows in a debug print.
        let shown = format!("{c:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&encode(&c.secret.to_bytes())));
    }
}
