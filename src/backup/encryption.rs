//! age (age-encryption.org/v1): a backup is encrypted to X25519 public keys or to a
//! passphrase (scrypt), in 64 KiB chunks that are each authenticated, the last one marked as
//! last. Decryption therefore refuses a changed byte, a cut file or a foreign one with an
//! error, never with plaintext.

use std::io::{self, BufReader, Read, Write};

use age::secrecy::SecretString;
use anyhow::{Context, bail};

use crate::config::BackupSettings;

/// What backups are encrypted to, from `BACKUP_RECIPIENTS` or `BACKUP_PASSPHRASE`.
pub(super) enum Encryption {
    Recipients(Vec<age::x25519::Recipient>),
    Passphrase(SecretString),
}

impl Encryption {
    pub(super) fn from_settings(settings: &BackupSettings) -> anyhow::Result<Self> {
        match (settings.recipients.as_slice(), &settings.passphrase) {
            ([], None) => bail!(
                "nothing to encrypt the backup to: set BACKUP_RECIPIENTS (age public keys, \
                 age1…) or BACKUP_PASSPHRASE (docs/backup.md); no backup was written"
            ),
            ([], Some(passphrase)) => Ok(Self::Passphrase(passphrase.clone())),
            (recipients, _) => Ok(Self::Recipients(recipients.to_vec())),
        }
    }

    /// Copies `plaintext` to `output`, encrypted.
    pub(super) fn encrypt(&self, mut plaintext: impl Read, output: impl Write) -> io::Result<()> {
        let encryptor = match self {
            Self::Recipients(recipients) => {
                age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                    .map_err(io::Error::other)?
            }
            Self::Passphrase(passphrase) => {
                age::Encryptor::with_user_passphrase(passphrase.clone())
            }
        };
        let mut writer = encryptor.wrap_output(output)?;
        io::copy(&mut plaintext, &mut writer)?;
        writer.finish()?.flush()
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Recipients(recipients) if recipients.len() == 1 => {
                "encrypted to 1 age recipient".to_owned()
            }
            Self::Recipients(recipients) => {
                format!("encrypted to {} age recipients", recipients.len())
            }
            Self::Passphrase(_) => "encrypted with BACKUP_PASSPHRASE".to_owned(),
        }
    }
}

/// What restore may decrypt with: the identities in `BACKUP_IDENTITY_FILE` and the
/// passphrase, whichever are set.
pub(super) struct Decryption {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl Decryption {
    pub(super) fn from_settings(settings: &BackupSettings) -> anyhow::Result<Self> {
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        if let Some(path) = &settings.identity_file {
            // age's errors name the file and a line number, never the line.
            let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
                .with_context(|| format!("BACKUP_IDENTITY_FILE: cannot read {}", path.display()))?;
            let found = file
                .into_identities()
                .context("BACKUP_IDENTITY_FILE: cannot use its identities")?;
            if found.is_empty() {
                bail!(
                    "BACKUP_IDENTITY_FILE: {} holds no age identity (AGE-SECRET-KEY-1…)",
                    path.display()
                );
            }
            identities.extend(found);
        }
        if let Some(passphrase) = &settings.passphrase {
            identities.push(Box::new(age::scrypt::Identity::new(passphrase.clone())));
        }
        if identities.is_empty() {
            bail!(
                "nothing to decrypt the backup with: set BACKUP_IDENTITY_FILE (the age identity \
                 whose public key was in BACKUP_RECIPIENTS) or BACKUP_PASSPHRASE \
                 (docs/backup.md); nothing was restored"
            );
        }
        Ok(Self { identities })
    }

    /// Decrypts `input` into `output`. An error means the file is refused, and `output` holds
    /// an unauthenticated part that the caller must throw away.
    pub(super) fn decrypt(&self, input: impl Read, mut output: impl Write) -> anyhow::Result<()> {
        let decryptor = age::Decryptor::new_buffered(BufReader::new(input)).map_err(refusal)?;
        let mut plaintext = decryptor
            .decrypt(
                self.identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
            .map_err(refusal)?;
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let read = match plaintext.read(&mut chunk) {
                Ok(0) => return output.flush().context("cannot write the restored database"),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(damaged(&error)),
            };
            output
                .write_all(&chunk[..read])
                .context("cannot write the restored database")?;
        }
    }
}

fn refusal(error: age::DecryptError) -> anyhow::Error {
    use age::DecryptError::*;
    match error {
        NoMatchingKeys => anyhow::anyhow!(
            "refused: no identity in BACKUP_IDENTITY_FILE opens this backup (it was \
             encrypted to other keys, or with a passphrase)"
        ),
        DecryptionFailed | KeyDecryptionFailed => anyhow::anyhow!(
            "refused: the passphrase does not open this backup (BACKUP_PASSPHRASE is wrong, or \
             the file was changed)"
        ),
        InvalidMac => {
            anyhow::anyhow!("refused: the backup's header was changed (its MAC does not match)")
        }
        ExcessiveWork { required, .. } => anyhow::anyhow!(
            "refused: the backup asks for scrypt work 2^{required}, far more than this machine \
             takes a second for (a damaged or hostile file)"
        ),
        Io(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            anyhow::anyhow!("refused: the backup is truncated (it ends inside its header)")
        }
        // InvalidHeader, UnknownFormat, other I/O, and what later versions of age add.
        _ => anyhow::anyhow!(
            "refused: this is not an age-encrypted backup, or its header is damaged"
        ),
    }
}

fn damaged(error: &io::Error) -> anyhow::Error {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        anyhow::anyhow!("refused: the backup is truncated (it ends before its last chunk)")
    } else {
        anyhow::anyhow!(
            "refused: the backup was changed, damaged or cut short (a chunk fails age's \
             authentication)"
        )
    }
}
