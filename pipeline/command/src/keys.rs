//! The command key pair on disk: PKCS#8 PEM files as OpenSSL writes and reads them
//! (`openssl pkey -in command.key -pubout` gives the public file), so operators can make and
//! inspect keys with the tools they already trust.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// File names `pipeline keygen` writes in its output folder.
pub const PRIVATE_FILE: &str = "command.key";
pub const PUBLIC_FILE: &str = "command.pub";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: not an Ed25519 {1} key in PKCS#8 PEM: {2}")]
    Format(PathBuf, &'static str, String),
    #[error("{0} exists; refusing to overwrite a key")]
    Exists(PathBuf),
    #[error("no randomness: {0}")]
    Random(String),
}

/// Makes a new key pair and writes it under `dir`: the private key readable by its owner only.
/// Refuses to overwrite either file. Returns both paths.
pub fn generate(dir: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let private = dir.join(PRIVATE_FILE);
    let public = dir.join(PUBLIC_FILE);
    for p in [&private, &public] {
        if p.exists() {
            return Err(KeyError::Exists(p.clone()));
        }
    }
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Format(private.clone(), "private", e.to_string()))?;
    write_new(&private, pem.as_bytes(), 0o600)?;
    let pub_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Format(public.clone(), "public", e.to_string()))?;
    write_new(&public, pub_pem.as_bytes(), 0o644)?;
    Ok((private, public))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| KeyError::Io(path.to_path_buf(), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| KeyError::Io(path.to_path_buf(), e))
}

/// Reads the private (signing) key.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|e| KeyError::Io(path.to_path_buf(), e))?;
    SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| KeyError::Format(path.to_path_buf(), "private", e.to_string()))
}

/// Reads the public (verifying) key.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|e| KeyError::Io(path.to_path_buf(), e))?;
    VerifyingKey::from_public_key_pem(&text)
        .map_err(|e| KeyError::Format(path.to_path_buf(), "public", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_match_and_are_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = generate(dir.path()).unwrap();
        let sk = load_signing_key(&private).unwrap();
        let vk = load_verifying_key(&public).unwrap();
        assert_eq!(sk.verifying_key(), vk);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(generate(dir.path()), Err(KeyError::Exists(_))));
        // A public key is not a private key, and garbage is neither.
        assert!(load_signing_key(&public).is_err());
        fs::write(
            dir.path().join("junk"),
            "-----BEGIN PUBLIC KEY-----\nAAAA\n",
        )
        .unwrap();
        assert!(load_verifying_key(&dir.path().join("junk")).is_err());
    }
}
