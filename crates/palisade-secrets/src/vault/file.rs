//! The embedded vault: one age-encrypted file per environment in the data directory.
//!
//! The file is an ordinary age file (a passphrase through scrypt, or an age
//! X25519 identity from a key file), so `age -d` can open it for recovery.
//! Inside is JSON that palisade wrote. Every change is a read-modify-write
//! under an exclusive lock on a side file, written to a temporary file,
//! fsynced and renamed over the old one: a crash leaves the old vault or the
//! new one, never half of either. A wrong passphrase, a truncated or edited
//! file is an error that changes nothing.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use age::secrecy::SecretString;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Entry, Known, Meta, Vault, VaultError, VaultFuture};
use crate::binding::SecretName;
use crate::value::SecretValue;

const FORMAT: &str = "palisade-vault-1";
/// Earlier values kept so the redactor still knows them after a rotation.
const KEPT_VERSIONS: usize = 5;
/// scrypt's cost for a passphrase (2^16: about a tenth of a second here).
/// The file's own header says what it used; reading accepts up to 2^20.
const WORK_FACTOR: u8 = 16;
const MAX_WORK_FACTOR: u8 = 20;

/// What opens the vault file.
#[derive(Clone)]
pub enum Unlock {
    Passphrase(SecretString),
    /// An age X25519 identity (`AGE-SECRET-KEY-1…`), read from a key file.
    Identity(Arc<age::x25519::Identity>),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Passphrase(_) => f.write_str("Unlock::Passphrase(..)"),
            Unlock::Identity(_) => f.write_str("Unlock::Identity(..)"),
        }
    }
}

impl Unlock {
    /// A passphrase nobody knows: for a vault file that does not exist, so
    /// that reading finds nothing and nothing written could be read back.
    pub fn unknown() -> Self {
        let mut bytes = [0u8; 32];
        let _ = getrandom::fill(&mut bytes);
        Unlock::Passphrase(SecretString::from(hex::encode(bytes)))
    }

    /// Reads a key file: an age identity, or else its first line as a
    /// passphrase. A file others can read is refused.
    pub fn from_key_file(path: &Path) -> Result<Self, VaultError> {
        let meta = fs::metadata(path).map_err(|e| {
            VaultError::Io(format!(
                "cannot read the key file `{}`: {e}",
                path.display()
            ))
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(VaultError::Refused(format!(
                "the key file `{}` can be read by others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| {
            VaultError::Io(format!(
                "cannot read the key file `{}`: {e}",
                path.display()
            ))
        })?);
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'));
        let Some(first) = first.map(str::trim) else {
            return Err(VaultError::Refused(format!(
                "the key file `{}` is empty",
                path.display()
            )));
        };
        if first.starts_with("AGE-SECRET-KEY-") {
            let identity = first.parse::<age::x25519::Identity>().map_err(|_| {
                VaultError::Refused(format!(
                    "the key file `{}` holds an invalid age identity",
                    path.display()
                ))
            })?;
            Ok(Unlock::Identity(Arc::new(identity)))
        } else {
            Ok(Unlock::Passphrase(SecretString::from(first.to_owned())))
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    format: String,
    environment: String,
    secrets: BTreeMap<String, Stored>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    created: u64,
    revoked: bool,
    /// Oldest first; the last is current.
    versions: Vec<Version>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Version {
    version: u64,
    written: u64,
    value: Zeroizing<String>,
}

impl Stored {
    fn meta(&self, name: &SecretName, environment: &str) -> Meta {
        let current = self.versions.last();
        Meta {
            name: name.clone(),
            environment: environment.to_owned(),
            version: current.map_or(0, |v| v.version),
            created: self.created,
            updated: current.map_or(self.created, |v| v.written),
            revoked: self.revoked,
        }
    }
}

/// The vault file of one environment.
#[derive(Debug)]
pub struct FileVault {
    path: PathBuf,
    environment: String,
    unlock: Unlock,
    /// The contents last read, and the file generation they were read at.
    cache: Mutex<Option<(u64, Arc<ContentsBox>)>>,
}

struct ContentsBox(Contents);

impl std::fmt::Debug for ContentsBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentsBox(..)")
    }
}

impl FileVault {
    /// The vault file for `environment` in `data_dir`.
    pub fn path_in(data_dir: &Path, environment: &str) -> PathBuf {
        data_dir.join(format!("secrets.{environment}.age"))
    }

    /// A handle on the vault file; nothing is read until it is used. A
    /// missing file is an empty vault, created by the first write.
    pub fn new(path: PathBuf, environment: &str, unlock: Unlock) -> Self {
        Self {
            path,
            environment: environment.to_owned(),
            unlock,
            cache: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the vault now, so that a wrong passphrase or a damaged file
    /// stops a start instead of a call.
    pub fn check(&self) -> Result<usize, VaultError> {
        self.contents().map(|c| c.0.secrets.len())
    }

    fn generation_of(path: &Path) -> Option<u64> {
        let meta = fs::metadata(path).ok()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            meta.ino(),
            meta.dev(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        )
            .hash(&mut hasher);
        Some(hasher.finish())
    }

    fn contents(&self) -> Result<Arc<ContentsBox>, VaultError> {
        let generation = Self::generation_of(&self.path).unwrap_or(0);
        if let Some((seen, contents)) = &*lock(&self.cache)
            && *seen == generation
        {
            return Ok(Arc::clone(contents));
        }
        let contents = Arc::new(ContentsBox(self.load()?));
        *lock(&self.cache) = Some((generation, Arc::clone(&contents)));
        Ok(contents)
    }

    fn empty(&self) -> Contents {
        Contents {
            format: FORMAT.to_owned(),
            environment: self.environment.clone(),
            secrets: BTreeMap::new(),
        }
    }

    fn load(&self) -> Result<Contents, VaultError> {
        let sealed = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self.empty()),
            Err(e) => {
                return Err(VaultError::Io(format!(
                    "cannot read the vault `{}`: {e}",
                    self.path.display()
                )));
            }
        };
        let plain = self.open(&sealed)?;
        let contents: Contents = serde_json::from_slice(&plain).map_err(|e| {
            VaultError::Corrupt(format!(
                "the vault `{}` decrypts but its contents are not palisade's: {e}",
                self.path.display()
            ))
        })?;
        if contents.format != FORMAT {
            return Err(VaultError::Corrupt(format!(
                "the vault `{}` has format `{}`; this palisade reads `{FORMAT}`",
                self.path.display(),
                contents.format
            )));
        }
        if contents.environment != self.environment {
            return Err(VaultError::Corrupt(format!(
                "the vault `{}` holds the secrets of environment `{}`, not `{}`",
                self.path.display(),
                contents.environment,
                self.environment
            )));
        }
        Ok(contents)
    }

    fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let damaged = |why: String| {
            VaultError::Corrupt(format!(
                "the vault `{}` is damaged (truncated or edited?): {why}",
                self.path.display()
            ))
        };
        let decryptor = age::Decryptor::new_buffered(sealed).map_err(|e| damaged(e.to_string()))?;
        let mut scrypt_identity;
        let identity: &dyn age::Identity = match &self.unlock {
            Unlock::Passphrase(passphrase) => {
                scrypt_identity = age::scrypt::Identity::new(passphrase.clone());
                scrypt_identity.set_max_work_factor(MAX_WORK_FACTOR);
                &scrypt_identity
            }
            Unlock::Identity(identity) => identity.as_ref(),
        };
        #[expect(
            clippy::wildcard_enum_match_arm,
            reason = "age's error enum is foreign: any other error means a damaged file"
        )]
        let mut reader = decryptor
            .decrypt(std::iter::once(identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
                    VaultError::Locked(format!(
                        "the passphrase or key does not open the vault `{}`",
                        self.path.display()
                    ))
                }
                other => damaged(other.to_string()),
            })?;
        let mut plain = Zeroizing::new(Vec::new());
        reader
            .read_to_end(&mut plain)
            .map_err(|e| damaged(e.to_string()))?;
        Ok(plain)
    }

    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        let failed = |e: String| VaultError::Io(format!("cannot encrypt the vault: {e}"));
        let encryptor = match &self.unlock {
            Unlock::Passphrase(passphrase) => {
                let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
                recipient.set_work_factor(WORK_FACTOR);
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            }
            Unlock::Identity(identity) => {
                let recipient = identity.to_public();
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            }
        }
        .map_err(|e| failed(e.to_string()))?;
        let mut sealed = Vec::with_capacity(plain.len() + 256);
        let mut writer = encryptor
            .wrap_output(&mut sealed)
            .map_err(|e| failed(e.to_string()))?;
        writer.write_all(plain).map_err(|e| failed(e.to_string()))?;
        writer.finish().map_err(|e| failed(e.to_string()))?;
        Ok(sealed)
    }

    /// Reads, changes and atomically replaces the file under an exclusive lock.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Contents) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let io = |what: &str, e: std::io::Error| {
            VaultError::Io(format!("{what} `{}`: {e}", self.path.display()))
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
        let lock_path = self.path.with_extension("age.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io("cannot open the lock of", e))?;
        lock_file
            .lock()
            .map_err(|e| io("cannot lock the vault", e))?;
        let mut contents = self.load()?;
        let out = change(&mut contents)?;
        let plain = Zeroizing::new(
            serde_json::to_vec(&contents)
                .map_err(|e| VaultError::Io(format!("cannot serialize the vault: {e}")))?,
        );
        let sealed = self.seal(&plain)?;
        let tmp = self
            .path
            .with_extension(format!("age.tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io("cannot write the vault", e));
        }
        drop(lock_file);
        *lock(&self.cache) = None;
        Ok(out)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs blocking vault work (file I/O, scrypt) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, VaultError> + Send + 'static,
) -> Result<T, VaultError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| VaultError::Io(format!("vault task failed: {e}")))?
}

impl FileVault {
    fn read_now(&self, name: &SecretName) -> Result<Entry, VaultError> {
        let contents = self.contents()?;
        let stored = contents
            .0
            .secrets
            .get(name.as_str())
            .ok_or_else(|| VaultError::NotFound(name.clone()))?;
        if stored.revoked {
            return Err(VaultError::Revoked(name.clone()));
        }
        let current = stored
            .versions
            .last()
            .ok_or_else(|| VaultError::NotFound(name.clone()))?;
        Ok(Entry {
            meta: stored.meta(name, &self.environment),
            value: SecretValue::new(current.value.as_str().to_owned()),
        })
    }

    fn list_now(&self) -> Result<Vec<Meta>, VaultError> {
        let contents = self.contents()?;
        contents
            .0
            .secrets
            .iter()
            .map(|(name, stored)| {
                let name = SecretName::parse(name).map_err(VaultError::Corrupt)?;
                Ok(stored.meta(&name, &self.environment))
            })
            .collect()
    }

    fn write_now(&self, name: &SecretName, value: SecretValue) -> Result<Meta, VaultError> {
        if value.is_empty() {
            return Err(VaultError::Refused(format!(
                "secret `{name}`: the value is empty"
            )));
        }
        let environment = self.environment.clone();
        self.update(|contents| {
            let at = now();
            let stored = contents
                .secrets
                .entry(name.as_str().to_owned())
                .or_insert_with(|| Stored {
                    created: at,
                    revoked: false,
                    versions: Vec::new(),
                });
            let version = stored.versions.last().map_or(1, |v| v.version + 1);
            stored.versions.push(Version {
                version,
                written: at,
                value: Zeroizing::new(value.expose().to_owned()),
            });
            let excess = stored.versions.len().saturating_sub(KEPT_VERSIONS);
            stored.versions.drain(..excess);
            stored.revoked = false;
            Ok(stored.meta(name, &environment))
        })
    }

    /// Writes without the vault trait's thread hop, for other modules' tests.
    #[cfg(test)]
    pub(crate) fn write_for_tests(
        &self,
        name: &SecretName,
        value: SecretValue,
    ) -> Result<Meta, VaultError> {
        self.write_now(name, value)
    }

    fn revoke_now(&self, name: &SecretName) -> Result<Meta, VaultError> {
        let environment = self.environment.clone();
        self.update(|contents| {
            let stored = contents
                .secrets
                .get_mut(name.as_str())
                .ok_or_else(|| VaultError::NotFound(name.clone()))?;
            stored.revoked = true;
            Ok(stored.meta(name, &environment))
        })
    }

    fn known_now(&self) -> Result<Known, VaultError> {
        let contents = self.contents()?;
        let mut known = Known::default();
        for (name, stored) in &contents.0.secrets {
            let name = SecretName::parse(name).map_err(VaultError::Corrupt)?;
            for version in &stored.versions {
                known.values.push((
                    name.clone(),
                    SecretValue::new(version.value.as_str().to_owned()),
                ));
            }
        }
        Ok(known)
    }
}

/// The vault behind an `Arc`, so its blocking work can move to another thread.
#[derive(Debug, Clone)]
pub struct SharedFileVault(pub Arc<FileVault>);

impl Vault for SharedFileVault {
    fn describe(&self) -> String {
        format!("the vault file `{}`", self.0.path.display())
    }

    fn environment(&self) -> &str {
        &self.0.environment
    }

    fn read<'a>(&'a self, name: &'a SecretName) -> VaultFuture<'a, Entry> {
        let vault = Arc::clone(&self.0);
        let name = name.clone();
        Box::pin(blocking(move || vault.read_now(&name)))
    }

    fn list(&self) -> VaultFuture<'_, Vec<Meta>> {
        let vault = Arc::clone(&self.0);
        Box::pin(blocking(move || vault.list_now()))
    }

    fn write<'a>(&'a self, name: &'a SecretName, value: SecretValue) -> VaultFuture<'a, Meta> {
        let vault = Arc::clone(&self.0);
        let name = name.clone();
        Box::pin(blocking(move || vault.write_now(&name, value)))
    }

    fn revoke<'a>(&'a self, name: &'a SecretName) -> VaultFuture<'a, Meta> {
        let vault = Arc::clone(&self.0);
        let name = name.clone();
        Box::pin(blocking(move || vault.revoke_now(&name)))
    }

    fn known(&self) -> VaultFuture<'_, Known> {
        let vault = Arc::clone(&self.0);
        Box::pin(blocking(move || vault.known_now()))
    }

    fn generation(&self) -> Option<u64> {
        Some(FileVault::generation_of(&self.0.path).unwrap_or(0))
    }
}

/// Reads the passphrase from `PALISADE_VAULT_PASSPHRASE`, if set.
pub fn passphrase_from_env() -> Option<Unlock> {
    std::env::var("PALISADE_VAULT_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| Unlock::Passphrase(SecretString::from(p)))
}

/// Whether two unlocks are the same passphrase (for a prompt's confirmation).
pub fn same_passphrase(a: &SecretString, b: &SecretString) -> bool {
    a.expose_secret() == b.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "palisade-vault-{tag}-{}-{}",
                std::process::id(),
                now()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn pass(p: &str) -> Unlock {
        Unlock::Passphrase(SecretString::from(p.to_owned()))
    }

    fn name(n: &str) -> SecretName {
        SecretName::parse(n).unwrap()
    }

    #[test]
    fn values_round_trip_and_rotation_adds_a_version() {
        let dir = Dir::new("round");
        let path = FileVault::path_in(&dir.0, "dev");
        let vault = FileVault::new(path.clone(), "dev", pass("correct horse"));
        assert_eq!(vault.check().unwrap(), 0);
        let meta = vault
            .write_now(
                &name("tickets"),
                SecretValue::new("tk-first-value-1".into()),
            )
            .unwrap();
        assert_eq!(meta.version, 1);
        let meta = vault
            .write_now(
                &name("tickets"),
                SecretValue::new("tk-second-value-2".into()),
            )
            .unwrap();
        assert_eq!(meta.version, 2);
        let entry = vault.read_now(&name("tickets")).unwrap();
        assert_eq!(entry.value.expose(), "tk-second-value-2");
        // Both values stay known to the redactor.
        assert_eq!(vault.known_now().unwrap().values.len(), 2);
        // The file is age, not plaintext, and private.
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert!(!String::from_utf8_lossy(&bytes).contains("tk-second"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Another handle (another process) sees the change.
        let other = FileVault::new(path, "dev", pass("correct horse"));
        assert_eq!(other.list_now().unwrap()[0].version, 2);
    }

    #[test]
    fn revocation_stops_reads_and_a_new_value_restores() {
        let dir = Dir::new("revoke");
        let vault = FileVault::new(FileVault::path_in(&dir.0, "dev"), "dev", pass("p"));
        vault
            .write_now(&name("gh"), SecretValue::new("ghp_value_000000".into()))
            .unwrap();
        assert!(vault.revoke_now(&name("gh")).unwrap().revoked);
        assert!(matches!(
            vault.read_now(&name("gh")),
            Err(VaultError::Revoked(_))
        ));
        assert!(matches!(
            vault.revoke_now(&name("nope")),
            Err(VaultError::NotFound(_))
        ));
        vault
            .write_now(&name("gh"), SecretValue::new("ghp_value_111111".into()))
            .unwrap();
        assert!(vault.read_now(&name("gh")).is_ok());
    }

    #[test]
    fn a_wrong_passphrase_or_a_damaged_file_changes_nothing() {
        let dir = Dir::new("bad");
        let path = FileVault::path_in(&dir.0, "prod");
        let vault = FileVault::new(path.clone(), "prod", pass("right"));
        vault
            .write_now(&name("k"), SecretValue::new("value-kept-safe".into()))
            .unwrap();
        let before = fs::read(&path).unwrap();

        let wrong = FileVault::new(path.clone(), "prod", pass("wrong"));
        assert!(matches!(wrong.check(), Err(VaultError::Locked(_))));
        let err = wrong
            .write_now(&name("k"), SecretValue::new("overwrite".into()))
            .unwrap_err();
        assert!(matches!(err, VaultError::Locked(_)), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);

        // Truncated, then one byte of the payload flipped.
        fs::write(&path, &before[..before.len() - 10]).unwrap();
        let err = vault.check().unwrap_err();
        assert!(
            matches!(err, VaultError::Corrupt(_) | VaultError::Locked(_)),
            "{err}"
        );
        let mut edited = before.clone();
        let last = edited.len() - 5;
        edited[last] ^= 1;
        fs::write(&path, &edited).unwrap();
        let err = vault.check().unwrap_err();
        assert!(!err.to_string().contains("value-kept-safe"), "{err}");
        fs::write(&path, b"not an age file").unwrap();
        assert!(matches!(vault.check(), Err(VaultError::Corrupt(_))));
    }

    #[test]
    fn a_vault_of_another_environment_is_refused() {
        let dir = Dir::new("env");
        let path = dir.0.join("v.age");
        FileVault::new(path.clone(), "dev", pass("p"))
            .write_now(&name("k"), SecretValue::new("dev-value-1234".into()))
            .unwrap();
        let prod = FileVault::new(path, "prod", pass("p"));
        let err = prod.check().unwrap_err();
        assert!(err.to_string().contains("environment `dev`"), "{err}");
    }

    #[test]
    fn a_key_file_holds_an_identity_or_a_passphrase_and_must_be_private() {
        let dir = Dir::new("key");
        let key = dir.0.join("key");
        let identity = age::x25519::Identity::generate();
        fs::write(
            &key,
            format!("# palisade\n{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Unlock::from_key_file(&key),
            Err(VaultError::Refused(_))
        ));
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let unlock = Unlock::from_key_file(&key).unwrap();
        assert!(matches!(unlock, Unlock::Identity(_)));
        let vault = FileVault::new(dir.0.join("v.age"), "dev", unlock);
        vault
            .write_now(&name("k"), SecretValue::new("by-identity-1234".into()))
            .unwrap();
        assert_eq!(
            vault.read_now(&name("k")).unwrap().value.expose(),
            "by-identity-1234"
        );
        fs::write(&key, "just a passphrase\n").unwrap();
        assert!(matches!(
            Unlock::from_key_file(&key).unwrap(),
            Unlock::Passphrase(_)
        ));
    }
}
