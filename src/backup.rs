//! `filmvault backup` and `filmvault restore` (SQLite): an age-encrypted, consistent copy of
//! the database taken while the service runs, and its return, verified first and all at once.
//!
//! The unencrypted copy a backup takes exists only inside a 0700 directory beside the
//! database (on the disk that already holds the database), removed when the command ends,
//! however it ends. A restore decrypts into a new file beside the target and checks it whole
//! (age's authentication, SQLite's integrity check, this build's migrations) before it takes
//! the target's name in one rename: the database is the old one or the restored one, never a
//! mix. On PostgreSQL both commands refuse: `pg_dump` and `pg_restore` through `age`, as
//! docs/backup.md shows.

mod encryption;
mod files;
mod snapshot;

use secrecy::ExposeSecret;
use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{Context, bail};
use sqlx::sqlite::SqliteConnectOptions;

use self::{
    encryption::{Decryption, Encryption},
    files::{PrivateDir, StagedFile},
};
use crate::config::Settings;

pub async fn backup(settings: &Settings, out: &Path) -> anyhow::Result<()> {
    let database = sqlite_file(settings.database_url.expose_secret(), "backup")?;
    let encryption = Encryption::from_settings(&settings.backup)?;
    if !database.is_file() {
        bail!(
            "DATABASE_URL: there is no database at {} to back up",
            database.display()
        );
    }
    refuse_to_overwrite(out, &database)?;
    let work = PrivateDir::beside(&database)?;
    let plaintext = work.path().join("snapshot.db");
    snapshot::copy(&database, &plaintext).await?;
    // A backup that could not be restored is worse than none: it is trusted.
    snapshot::verify(&plaintext).await?;
    let destination = out.to_owned();
    let described = encryption.describe();
    tokio::task::spawn_blocking(move || {
        let mut output = StagedFile::beside(&destination)?;
        let source = File::open(&plaintext).context("cannot read the copy")?;
        encryption
            .encrypt(source, BufWriter::new(output.file()))
            .with_context(|| format!("cannot write {}", output.path().display()))?;
        output.commit()?;
        drop(work);
        anyhow::Ok(())
    })
    .await??;
    println!("wrote {} ({described})", out.display());
    Ok(())
}

pub async fn restore(settings: &Settings, from: &Path, force: bool) -> anyhow::Result<()> {
    let target = sqlite_file(settings.database_url.expose_secret(), "restore")?;
    let decryption = Decryption::from_settings(&settings.backup)?;
    let replaces = holds_data(&target)?;
    if replaces && !force {
        bail!(
            "{} already holds a database: stop the service and restore with --force to \
             replace it (or point DATABASE_URL at a new file); nothing was changed",
            target.display()
        );
    }
    let input = File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let staged_for = target.clone();
    let staged = tokio::task::spawn_blocking(move || {
        let mut staged = StagedFile::beside(&staged_for)?;
        decryption.decrypt(input, BufWriter::new(staged.file()))?;
        anyhow::Ok(staged)
    })
    .await??;
    let verified = snapshot::verify(staged.path()).await?;
    if replaces {
        snapshot::take_out_of_service(&target).await?;
    }
    // A WAL or journal left beside the target would be replayed onto the restored file.
    for sidecar in ["-wal", "-shm", "-journal"] {
        files::remove_if_present(&with_suffix(&target, sidecar))?;
    }
    staged.commit()?;
    println!(
        "restored {} into {} (integrity checked; {} of this build's {} migrations applied, the \
         service applies any others when it starts)",
        from.display(),
        target.display(),
        verified.migrations_applied,
        verified.migrations_known
    );
    Ok(())
}

/// The SQLite file `DATABASE_URL` names.
fn sqlite_file(database_url: &str, command: &str) -> anyhow::Result<PathBuf> {
    if !database_url.starts_with("sqlite:") {
        bail!(
            "DATABASE_URL is a PostgreSQL database: `filmvault {command}` handles SQLite only; \
             use pg_dump / pg_restore piped through age, as docs/backup.md shows"
        );
    }
    let options = SqliteConnectOptions::from_str(database_url)
        .context("DATABASE_URL is not a valid sqlite:// URL")?;
    let file = options.get_filename();
    if file.as_os_str().is_empty() || file == Path::new(":memory:") {
        bail!("DATABASE_URL names an in-memory database: there is nothing to {command}");
    }
    Ok(file.to_owned())
}

/// A file with something in it, or a WAL with commits not yet folded into it.
fn holds_data(target: &Path) -> anyhow::Result<bool> {
    let size = |path: &Path| match std::fs::metadata(path) {
        Ok(metadata) => Ok(metadata.len()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(size(target)? > 0 || size(&with_suffix(target, "-wal"))? > 0)
}

/// `--out` naming the database (or its WAL) would replace it with ciphertext.
fn refuse_to_overwrite(out: &Path, database: &Path) -> anyhow::Result<()> {
    let resolved = |path: &Path| -> anyhow::Result<PathBuf> {
        let dir = files::parent_dir(path);
        let dir = dir
            .canonicalize()
            .with_context(|| format!("the directory {} does not exist", dir.display()))?;
        Ok(dir.join(path.file_name().context("--out must name a file")?))
    };
    let (out, database) = (resolved(out)?, resolved(database)?);
    if ["", "-wal", "-shm", "-journal"]
        .iter()
        .any(|suffix| out == with_suffix(&database, suffix))
    {
        bail!("--out names the database itself; write the backup elsewhere");
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
