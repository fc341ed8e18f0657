//! Signed checkpoints: each commits to a range of entries (their Merkle root) and to the checkpoint before it.
//!
//! A checkpoint is one line of canonical JSON ([`crate::canonical`]) in the checkpoint
//! file. Its `sig` is an Ed25519 signature over a domain-separated message:
//! [`DOMAIN`] followed by the canonical JSON of every other field. `prev` is
//! the SHA-256 of the previous checkpoint's whole line, so checkpoints form
//! a chain back to checkpoint 0, which covers nothing and names the log.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::entry::Hash;

/// What a signature covers before the checkpoint's fields, so that a
/// checkpoint signature can never be taken for any other signed message.
pub const DOMAIN: &[u8] = b"palisade audit checkpoint v1\n";

/// The fields a checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// The checkpoint's index: 0, 1, 2, … with no gaps.
    pub n: u64,
    /// The log's id, chosen at random when checkpoint 0 is written.
    pub log: String,
    /// The first entry covered (the previous checkpoint's `end`).
    pub first: u64,
    /// One past the last entry covered: the log's length at this checkpoint.
    pub end: u64,
    /// The entry file's length in bytes after entry `end - 1`.
    pub bytes: u64,
    /// The RFC 6962 Merkle root of entries `first..end` (hex).
    pub root: String,
    /// The hash of entry `end - 1` (hex; zeros while the log is empty):
    /// the `prev` the next entry must name.
    pub last: String,
    /// SHA-256 of the previous checkpoint's line (hex; zeros for checkpoint 0).
    pub prev: String,
    /// When it was written (RFC 3339, UTC).
    pub time: String,
    /// The Ed25519 public key that signed it (hex).
    pub key: String,
    /// Bytes of a torn final entry (a write cut short by a crash, never
    /// acknowledged) that were cut off before this checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_bytes: Option<u64>,
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    #[serde(flatten)]
    pub body: Body,
    /// The Ed25519 signature (hex) over [`DOMAIN`] ‖ canonical JSON of the body.
    pub sig: String,
}

/// Why a checkpoint line is not a valid checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("it is not a checkpoint: {0}")]
    Shape(String),
    #[error("it is not in canonical form: it was written by something else or edited")]
    NotCanonical,
    #[error("its key `{0}` is not an Ed25519 public key")]
    Key(String),
    #[error("it is signed by key {found}, not by the expected key {expected}")]
    WrongKey { found: String, expected: String },
    #[error("its signature does not verify: its fields were changed after it was signed")]
    Signature,
}

fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string
    // keys, no floats.
    serde_json::to_value(value)
        .ok()
        .and_then(|v| crate::canonical::to_vec(&v).ok())
        .unwrap_or_default()
}

impl Body {
    fn message(&self) -> Vec<u8> {
        let mut message = DOMAIN.to_vec();
        message.extend_from_slice(&canonical(self));
        message
    }

    pub fn sign(self, key: &SigningKey) -> Checkpoint {
        let sig = key.sign(&self.message());
        Checkpoint {
            body: self,
            sig: hex::encode(sig.to_bytes()),
        }
    }
}

impl Checkpoint {
    /// The checkpoint's line: canonical JSON, no newline.
    pub fn line(&self) -> Vec<u8> {
        canonical(self)
    }

    /// Parses a line and checks its form and signature. With `expected`,
    /// the signer must be that key; without, the key the line names is used
    /// (which proves only that whoever held that key wrote it).
    pub fn parse(line: &[u8], expected: Option<&VerifyingKey>) -> Result<Self, CheckpointError> {
        let checkpoint: Checkpoint =
            serde_json::from_slice(line).map_err(|e| CheckpointError::Shape(e.to_string()))?;
        if checkpoint.line() != line {
            return Err(CheckpointError::NotCanonical);
        }
        let named = parse_key(&checkpoint.body.key)?;
        if let Some(expected) = expected
            && expected != &named
        {
            return Err(CheckpointError::WrongKey {
                found: checkpoint.body.key.clone(),
                expected: hex::encode(expected.as_bytes()),
            });
        }
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&checkpoint.sig, &mut sig).map_err(|_| CheckpointError::Signature)?;
        named
            .verify(&checkpoint.body.message(), &Signature::from_bytes(&sig))
            .map_err(|_| CheckpointError::Signature)?;
        Ok(checkpoint)
    }

    pub fn root(&self) -> Option<Hash> {
        decode_hash(&self.body.root)
    }
}

/// SHA-256 of a checkpoint's line: what the next checkpoint's `prev` holds.
pub fn line_hash(line: &[u8]) -> Hash {
    Sha256::digest(line).into()
}

pub fn decode_hash(text: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok().map(|()| out)
}

/// Reads a hex Ed25519 public key.
pub fn parse_key(text: &str) -> Result<VerifyingKey, CheckpointError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| CheckpointError::Key(text.trim().to_owned()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| CheckpointError::Key(text.trim().to_owned()))
}

/// Why the signing key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not an audit signing key (64 hex digits): {why}")]
    Damaged { path: PathBuf, why: String },
    #[error(
        "`{path}` is readable by others (mode {mode:o}): the audit signing key must be 0600 (chmod 600 it)"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("cannot make a key: the system's random source failed: {0}")]
    Random(String),
}

/// The gateway's checkpoint signing key, `keys/audit.ed25519` in the data
/// directory (the seed, hex, mode 0600), made on first use. Its public half
/// is written beside it as `audit.ed25519.pub` for verifiers.
pub fn load_or_create_key(keys: &Path) -> Result<SigningKey, KeyError> {
    let path = keys.join("audit.ed25519");
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io {
            action,
            path,
            source,
        }
    };
    let key = match fs::read_to_string(&path) {
        Ok(text) => {
            check_private(&path)?;
            let text = Zeroizing::new(text);
            let mut seed = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(text.trim(), seed.as_mut()).map_err(|e| KeyError::Damaged {
                path: path.clone(),
                why: e.to_string(),
            })?;
            SigningKey::from_bytes(&seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_dir_private(keys).map_err(io("create", keys))?;
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
            let key = SigningKey::from_bytes(&seed);
            let text = Zeroizing::new(format!("{}\n", hex::encode(seed.as_ref())));
            let tmp = keys.join(".audit.ed25519.tmp");
            let _ = fs::remove_file(&tmp);
            write_private(&tmp, text.as_bytes()).map_err(io("write", &tmp))?;
            // A hard link fails if another process made the key first: then
            // that key is the one, and this one is dropped.
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => key,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return load_or_create_key(keys);
                }
                Err(e) => return Err(io("create", &path)(e)),
            }
        }
        Err(e) => return Err(io("read", &path)(e)),
    };
    let public = keys.join("audit.ed25519.pub");
    let text = format!("{}\n", hex::encode(key.verifying_key().as_bytes()));
    if fs::read_to_string(&public).ok().as_deref() != Some(text.as_str()) {
        fs::write(&public, text).map_err(io("write", &public))?;
    }
    Ok(key)
}

/// Reads a verifier's public key file (hex, as `audit.ed25519.pub` holds it).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    parse_key(&text).map_err(|e| KeyError::Damaged {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn check_private(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|source| KeyError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Mode {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(key: &SigningKey) -> Body {
        Body {
            n: 3,
            log: "abc".into(),
            first: 10,
            end: 12,
            bytes: 999,
            root: hex::encode([7u8; 32]),
            last: hex::encode([6u8; 32]),
            prev: hex::encode([0u8; 32]),
            time: "2026-12-06T00:00:00Z".into(),
            key: hex::encode(key.verifying_key().as_bytes()),
            torn_bytes: None,
        }
    }

    #[test]
    fn a_signed_checkpoint_parses_back_and_any_edit_breaks_it() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let line = body(&key).sign(&key).line();
        let parsed = Checkpoint::parse(&line, Some(&key.verifying_key())).unwrap();
        assert_eq!(parsed.body, body(&key));
        let text = String::from_utf8(line).unwrap();
        let edited = text.replace("\"end\":12", "\"end\":13");
        assert_eq!(
            Checkpoint::parse(edited.as_bytes(), None),
            Err(CheckpointError::Signature)
        );
        let spaced = text.replace("\"end\":12", "\"end\": 12");
        assert_eq!(
            Checkpoint::parse(spaced.as_bytes(), None),
            Err(CheckpointError::NotCanonical)
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(matches!(
            Checkpoint::parse(text.as_bytes(), Some(&other.verifying_key())),
            Err(CheckpointError::WrongKey { .. })
        ));
        // Re-signed by another key that names itself: valid on its own, and
        // refused against the expected key.
        let mut forged = body(&key);
        forged.key = hex::encode(other.verifying_key().as_bytes());
        let forged = forged.sign(&other).line();
        assert!(Checkpoint::parse(&forged, None).is_ok());
        assert!(Checkpoint::parse(&forged, Some(&key.verifying_key())).is_err());
    }

    #[test]
    fn the_key_is_made_once_private_and_refused_when_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir();
        let keys = dir.join("keys");
        let first = load_or_create_key(&keys).unwrap();
        let again = load_or_create_key(&keys).unwrap();
        assert_eq!(first.to_bytes(), again.to_bytes());
        let file = keys.join("audit.ed25519");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let public = read_public_key(&keys.join("audit.ed25519.pub")).unwrap();
        assert_eq!(public, first.verifying_key());
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&keys).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&file, "not hex\n").unwrap();
        let err = load_or_create_key(&keys).unwrap_err();
        assert!(
            err.to_string().contains("not an audit signing key"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "palisade-audit-key-{}-{:x}",
            std::process::id(),
            rand_u64()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rand_u64() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        u64::from_le_bytes(b)
    }
}
