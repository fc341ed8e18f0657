//! The root keys that sign task tokens: Ed25519, one file each in `DATA_DIR/keys/`, owner-only.
//!
//! One key is current (it signs new tokens); retired keys keep only their
//! public half and verify the tokens they signed until the longest of those
//! can have expired (`valid_until`), after which they are dropped. A key
//! file or directory that group or others can read or write is refused: a
//! leaked root key mints any token.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use biscuit_auth::{KeyPair, PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};

use super::TokenError;

/// A root key's id, carried by every token it signs (biscuit's `root_key_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One key file, as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    id: u32,
    /// `ed25519/HEX`.
    public_key: String,
    /// `ed25519-private/HEX`; absent once the key is retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<String>,
    /// Seconds since the Unix epoch.
    created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<u64>,
    /// After this (seconds since the epoch) no token it signed can be valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<u64>,
}

/// A retired key: verification only.
struct Retired {
    public: PublicKey,
    valid_until: u64,
}

/// The keys of one data directory.
pub(super) struct RootKeys {
    dir: PathBuf,
    current_id: KeyId,
    current: KeyPair,
    created_at: u64,
    retired: BTreeMap<KeyId, Retired>,
}

impl std::fmt::Debug for RootKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootKeys")
            .field("dir", &self.dir)
            .field("current", &self.current_id)
            .field("retired", &self.retired.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

pub(super) fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TokenError + 'a {
    move |source| TokenError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn file_name(id: u32) -> String {
    format!("task-root-{id:08}.json")
}

impl RootKeys {
    /// Reads the keys in `data_dir/keys`, creating the directory and a first
    /// key if there is none, and dropping retired keys past their use.
    pub(super) fn open(data_dir: &Path, now: SystemTime) -> Result<Self, TokenError> {
        let dir = data_dir.join("keys");
        create_private_dir(&dir)?;
        check_mode(&dir, 0o700)?;
        let mut current: Option<(u32, KeyPair, u64)> = None;
        let mut retired = BTreeMap::new();
        let mut highest = 0;
        let mut entries: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io("read", &dir))? {
            let path = entry.map_err(io("read", &dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("task-root-") && name.ends_with(".json") {
                entries.push(path);
            }
        }
        entries.sort();
        for path in entries {
            check_mode(&path, 0o600)?;
            let file = read_key_file(&path)?;
            highest = highest.max(file.id);
            let public = PublicKey::from_str(&file.public_key).map_err(|e| damaged(&path, e))?;
            match (&file.private_key, file.retired_at) {
                (Some(private), None) => {
                    let private = PrivateKey::from_str(private).map_err(|e| damaged(&path, e))?;
                    let pair = KeyPair::from(&private);
                    if pair.public() != public {
                        return Err(TokenError::KeyFile {
                            path,
                            message: "its public key does not match its private key".into(),
                        });
                    }
                    // Two current keys (an interrupted rotation): the newer signs.
                    if let Some((old_id, old, _)) = current.take() {
                        if old_id > file.id {
                            current = Some((old_id, old, 0));
                            retired.insert(
                                KeyId(file.id),
                                Retired {
                                    public,
                                    valid_until: u64::MAX,
                                },
                            );
                            continue;
                        }
                        retired.insert(
                            KeyId(old_id),
                            Retired {
                                public: old.public(),
                                valid_until: u64::MAX,
                            },
                        );
                    }
                    current = Some((file.id, pair, file.created_at));
                }
                (None | Some(_), Some(_)) | (None, None) => {
                    let valid_until = file.valid_until.unwrap_or(u64::MAX);
                    if valid_until < secs(now) {
                        fs::remove_file(&path).map_err(io("remove", &path))?;
                        continue;
                    }
                    retired.insert(
                        KeyId(file.id),
                        Retired {
                            public,
                            valid_until,
                        },
                    );
                }
            }
        }
        let (current_id, current, created_at) = match current {
            Some(c) => c,
            None => {
                let id = highest.checked_add(1).ok_or_else(|| TokenError::KeyFile {
                    path: dir.clone(),
                    message: "no key id left".into(),
                })?;
                let pair = KeyPair::new();
                write_new(&dir, &new_file(id, &pair, now))?;
                (id, pair, secs(now))
            }
        };
        Ok(Self {
            dir,
            current_id: KeyId(current_id),
            current,
            created_at,
            retired,
        })
    }

    pub(super) fn current(&self) -> (KeyId, &KeyPair) {
        (self.current_id, &self.current)
    }

    /// The public key with this id, current or retired.
    pub(super) fn public(&self, id: u32) -> Option<PublicKey> {
        if id == self.current_id.0 {
            return Some(self.current.public());
        }
        self.retired.get(&KeyId(id)).map(|r| r.public)
    }

    /// A new current key; the old one keeps its public half until every
    /// token it may have signed (at most `max_ttl` long) has expired.
    pub(super) fn rotate(
        &mut self,
        now: SystemTime,
        max_ttl: Duration,
    ) -> Result<KeyId, TokenError> {
        let id = self
            .current_id
            .0
            .checked_add(1)
            .ok_or_else(|| TokenError::KeyFile {
                path: self.dir.clone(),
                message: "no key id left".into(),
            })?;
        self.prune(now)?;
        let pair = KeyPair::new();
        write_new(&self.dir, &new_file(id, &pair, now))?;
        let valid_until = secs(now)
            .saturating_add(max_ttl.as_secs())
            .saturating_add(1);
        let old = KeyFile {
            id: self.current_id.0,
            public_key: self.current.public().to_string(),
            private_key: None,
            created_at: self.created_at,
            retired_at: Some(secs(now)),
            valid_until: Some(valid_until),
        };
        write_replace(&self.dir, &old)?;
        self.retired.insert(
            self.current_id,
            Retired {
                public: self.current.public(),
                valid_until,
            },
        );
        self.current_id = KeyId(id);
        self.current = pair;
        self.created_at = secs(now);
        Ok(self.current_id)
    }

    /// Drops retired keys no unexpired token can need.
    fn prune(&mut self, now: SystemTime) -> Result<(), TokenError> {
        let past: Vec<KeyId> = self
            .retired
            .iter()
            .filter(|(_, r)| r.valid_until < secs(now))
            .map(|(id, _)| *id)
            .collect();
        for id in past {
            let path = self.dir.join(file_name(id.0));
            fs::remove_file(&path).map_err(io("remove", &path))?;
            self.retired.remove(&id);
        }
        Ok(())
    }

    /// Ids of the keys that verify: the current one first.
    pub(super) fn ids(&self) -> Vec<KeyId> {
        std::iter::once(self.current_id)
            .chain(self.retired.keys().rev().copied())
            .collect()
    }
}

fn new_file(id: u32, pair: &KeyPair, now: SystemTime) -> KeyFile {
    KeyFile {
        id,
        public_key: pair.public().to_string(),
        private_key: Some(pair.private().to_prefixed_string()),
        created_at: secs(now),
        retired_at: None,
        valid_until: None,
    }
}

fn damaged(path: &Path, e: impl std::fmt::Display) -> TokenError {
    TokenError::KeyFile {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn read_key_file(path: &Path) -> Result<KeyFile, TokenError> {
    let text = fs::read_to_string(path).map_err(io("read", path))?;
    serde_json::from_str(&text).map_err(|e| damaged(path, e))
}

fn create_private_dir(dir: &Path) -> Result<(), TokenError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io("create", dir))
}

/// Refuses a key file or directory that is not a plain file (or directory)
/// or that group or others may read or write.
fn check_mode(path: &Path, wanted: u32) -> Result<(), TokenError> {
    let meta = fs::symlink_metadata(path).map_err(io("inspect", path))?;
    if meta.file_type().is_symlink() {
        return Err(TokenError::KeyFile {
            path: path.to_owned(),
            message: "it is a symbolic link; keep the key itself in the data directory".into(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::KeyPermissions {
                path: path.to_owned(),
                mode,
                wanted,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = wanted;
    Ok(())
}

fn write_temp(dir: &Path, file: &KeyFile) -> Result<PathBuf, TokenError> {
    let tmp = dir.join(format!(".{}.tmp", file_name(file.id)));
    let _ = fs::remove_file(&tmp);
    let text = serde_json::to_string_pretty(file).map_err(|e| damaged(&tmp, e))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(&tmp).map_err(io("create", &tmp))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(io("write", &tmp))?;
    Ok(tmp)
}

/// Writes a key that must not exist yet: two processes starting at once
/// cannot both create key N (the link fails for the second).
fn write_new(dir: &Path, file: &KeyFile) -> Result<(), TokenError> {
    let tmp = write_temp(dir, file)?;
    let path = dir.join(file_name(file.id));
    let linked = fs::hard_link(&tmp, &path).map_err(io("create", &path));
    let _ = fs::remove_file(&tmp);
    linked
}

fn write_replace(dir: &Path, file: &KeyFile) -> Result<(), TokenError> {
    let tmp = write_temp(dir, file)?;
    let path = dir.join(file_name(file.id));
    fs::rename(&tmp, &path).map_err(io("replace", &path))
}
