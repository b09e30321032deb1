//! Where the data key comes from: `DATA_ENCRYPTION_KEY` (required in production), or in
//! development a key file made on first run, beside the SQLite database (`<file>.data-key`)
//! or, for PostgreSQL, in the working directory (`filmvault.data-key`).
//!
//! The file is created 0600 and refused when others can read it. Losing it loses every value
//! sealed under it, so its creation is announced, with its path (never the key).

use std::{
    fs::{File, OpenOptions},
    io::{ErrorKind, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use sqlx::sqlite::SqliteConnectOptions;
use zeroize::Zeroizing;

use super::{DataKey, Keyring};

/// `DATA_ENCRYPTION_KEY`, which seals stored values, and the keys it replaced.
#[derive(Debug, Clone)]
pub struct DataKeySettings {
    /// `None` only in development, where a key file beside the database stands in for it.
    pub current: Option<DataKey>,
    /// `DATA_ENCRYPTION_KEYS_PREVIOUS`: values sealed under them still open.
    pub previous: Vec<DataKey>,
}

const POSTGRES_KEY_FILE: &str = "filmvault.data-key";
const KEY_FILE_SUFFIX: &str = ".data-key";

/// The keyring the settings describe; in development without `DATA_ENCRYPTION_KEY`, the
/// current key is the development key file's (made if missing) beside `database_url`'s file.
pub fn load_keyring(
    keys: &DataKeySettings,
    database_url: &SecretString,
) -> anyhow::Result<Keyring> {
    let current = match &keys.current {
        Some(key) => key.clone(),
        None => development_key(&key_file_path(database_url.expose_secret()))?,
    };
    let keyring = Keyring::new(&current, &keys.previous);
    tracing::info!(
        current_key = %keyring.current_key_id(),
        previous_keys = keys.previous.len(),
        "data keyring ready"
    );
    Ok(keyring)
}

fn key_file_path(database_url: &str) -> PathBuf {
    match sqlite_file(database_url) {
        Some(file) => {
            let mut key_file = file.into_os_string();
            key_file.push(KEY_FILE_SUFFIX);
            PathBuf::from(key_file)
        }
        None => PathBuf::from(POSTGRES_KEY_FILE),
    }
}

fn sqlite_file(database_url: &str) -> Option<PathBuf> {
    let in_memory = database_url.contains(":memory:") || database_url.contains("mode=memory");
    if !database_url.starts_with("sqlite:") || in_memory {
        return None;
    }
    let options = SqliteConnectOptions::from_str(database_url).ok()?;
    Some(options.get_filename().to_path_buf())
}

fn development_key(path: &Path) -> anyhow::Result<DataKey> {
    match File::open(path) {
        Ok(file) => {
            let key = read_key_file(file, path)?;
            tracing::info!(
                path = %path.display(),
                "DATA_ENCRYPTION_KEY is not set: using the development data key file"
            );
            Ok(key)
        }
        Err(error) if error.kind() == ErrorKind::NotFound => create_key_file(path),
        Err(error) => Err(error).with_context(|| cannot_read(path)),
    }
}

/// Written under a temporary name and linked into place, which fails if the file exists: of
/// two processes starting at once, one creates it and the other reads the whole of it.
fn create_key_file(path: &Path) -> anyhow::Result<DataKey> {
    let key = DataKey::generate();
    let temporary = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = write_new_file(&temporary, key.to_base64().as_bytes());
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            tracing::warn!(
                path = %path.display(),
                "DATA_ENCRYPTION_KEY is not set: created a development data key file (0600); \
                 stored emails and keys are encrypted with it, so keep it with the database. \
                 Production requires DATA_ENCRYPTION_KEY."
            );
            Ok(key)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            read_key_file(File::open(path).with_context(|| cannot_read(path))?, path)
        }
        Err(error) => Err(error).with_context(|| {
            format!(
                "DATA_ENCRYPTION_KEY is not set and the development key file {} cannot be \
                 created; set DATA_ENCRYPTION_KEY (`openssl rand -base64 32`)",
                path.display()
            )
        }),
    }
}

fn write_new_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn read_key_file(mut file: File, path: &Path) -> anyhow::Result<DataKey> {
    let mode = file
        .metadata()
        .with_context(|| cannot_read(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "the development data key file {} can be read by other users (mode {:o}); \
             `chmod 600` it",
            path.display(),
            mode & 0o777
        );
    }
    let mut encoded = Zeroizing::new(String::new());
    file.read_to_string(&mut encoded)
        .with_context(|| cannot_read(path))?;
    encoded.parse().map_err(|reason| {
        anyhow::anyhow!("the development data key file {} {reason}", path.display())
    })
}

fn cannot_read(path: &Path) -> String {
    format!(
        "cannot read the development data key file {}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_sits_beside_a_sqlite_database_or_in_the_working_directory() {
        for (url, expected) in [
            (
                "sqlite:///var/lib/filmvault/films.db",
                "/var/lib/filmvault/films.db.data-key",
            ),
            ("sqlite://filmvault.db?mode=rwc", "filmvault.db.data-key"),
            ("sqlite::memory:", POSTGRES_KEY_FILE),
            ("postgres://db.example/filmvault", POSTGRES_KEY_FILE),
        ] {
            assert_eq!(key_file_path(url), Path::new(expected), "{url}");
        }
    }

    #[test]
    fn the_first_run_creates_a_private_key_file_and_later_runs_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filmvault.db.data-key");
        let created = development_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let reused = development_key(&path).unwrap();
        assert_eq!(reused.bytes(), created.bytes());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filmvault.db.data-key");
        development_key(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = development_key(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
