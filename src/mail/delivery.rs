//! The delivery worker: claims due mails from the outbox and hands each to the transport,
//! SMTP (`SMTP_URL`) or, in development without it, `.eml` files in `MAIL_OUTBOX_DIR`.
//!
//! Every instance runs one; the claim's lease (see `outbox::claim`) keeps two from sending
//! the same mail. Delivery is at least once: an instance that dies after the server took a
//! mail but before it recorded so sends it again once the lease ends (docs/security.md).

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use actix_web::web;
use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp,
};
use secrecy::ExposeSecret;

use super::{
    MailKind,
    outbox::{self, ClaimedMail, MailState},
};
use crate::{config::MailSettings, crypto::Keyring, db::Database, state::AppState};

/// Beyond the SMTP timeout with room to spare: a claim outlives the attempt it was made for.
const LEASE: Duration = Duration::from_secs(120);
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest wait between two attempts, however many there were.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

pub struct Postman {
    transport: Transport,
    from: Mailbox,
    max_attempts: u32,
    retry_base: Duration,
    poll_interval: Duration,
}

impl Postman {
    pub fn new(settings: &MailSettings) -> anyhow::Result<Self> {
        let transport = match &settings.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|_| anyhow::anyhow!("SMTP_URL is not a URL lettre can use"))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            ),
            None => {
                tracing::info!(
                    dir = %settings.outbox_dir.display(),
                    "no SMTP_URL: mails are written as .eml files to this directory"
                );
                Transport::Files(settings.outbox_dir.clone())
            }
        };
        Ok(Self {
            transport,
            from: settings
                .from
                .parse()
                .context("MAIL_FROM is not an address")?,
            max_attempts: settings.max_attempts,
            retry_base: settings.retry_base,
            poll_interval: settings.poll_interval,
        })
    }

    /// Delivers due mails, from the database and with the keyring of `state`, for as long as
    /// the process runs.
    pub fn spawn(self, state: web::Data<AppState>) {
        tokio::spawn(async move {
            loop {
                match outbox::claim_next(&state.db, LEASE).await {
                    Ok(Some(mail)) => self.attempt(&state.db, &state.keyring, mail).await,
                    Ok(None) => tokio::time::sleep(self.poll_interval).await,
                    Err(error) => {
                        tracing::warn!(%error, "the mail outbox cannot be read");
                        tokio::time::sleep(self.poll_interval).await;
                    }
                }
            }
        });
    }

    async fn attempt(&self, db: &Database, keyring: &Keyring, mail: ClaimedMail) {
        let outcome = match self.deliver(keyring, &mail).await {
            Ok(()) => outbox::mark_sent(db, mail.id).await.map(|()| None),
            Err(failure) => {
                let attempts_left = if failure.permanent {
                    0
                } else {
                    i64::from(self.max_attempts)
                };
                let retry_at = crate::db::Timestamp::now().saturating_add(
                    time::Duration::try_from(self.backoff(mail.attempts))
                        .unwrap_or(time::Duration::HOUR),
                );
                outbox::mark_failed(db, mail.id, attempts_left, retry_at, &failure.reason)
                    .await
                    .map(|state| Some((state, failure)))
            }
        };
        let (id, kind, attempts) = (mail.id, mail.kind, mail.attempts);
        match outcome {
            Ok(None) => tracing::info!(mail_id = id, %kind, attempts, "mail delivered"),
            Ok(Some((MailState::Dead, failure))) => tracing::error!(
                mail_id = id, %kind, attempts, error = %failure.reason,
                "mail dead-lettered: no more attempts (GET /api/v1/admin/mails?state=dead)"
            ),
            Ok(Some((_, failure))) => tracing::warn!(
                mail_id = id, %kind, attempts, error = %failure.reason,
                "mail not delivered; it will be retried"
            ),
            // The lease runs out and the mail is claimed again.
            Err(error) => tracing::error!(mail_id = id, %error, "a delivery could not be recorded"),
        }
    }

    /// `retry_base` doubled for each attempt made before this one, up to `MAX_BACKOFF`.
    fn backoff(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        self.retry_base
            .saturating_mul(2_u32.pow(doublings))
            .min(MAX_BACKOFF)
    }

    async fn deliver(&self, keyring: &Keyring, mail: &ClaimedMail) -> Result<(), Failure> {
        let message = self.message(keyring, mail).map_err(Failure::permanent)?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(Failure::smtp),
            Transport::Files(dir) => write_eml(dir, mail.id, mail.kind, &message.formatted())
                .map_err(|error| {
                    Failure::transient(format!("cannot write the .eml file: {error}"))
                }),
        }
    }

    fn message(&self, keyring: &Keyring, mail: &ClaimedMail) -> anyhow::Result<Message> {
        let (recipient, body) = mail.open(keyring)?;
        let to: Mailbox = recipient
            .as_str()
            .parse()
            .context("the recipient is not an address lettre accepts")?;
        let body = String::from_utf8(body.to_vec()).context("the body is not UTF-8")?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("the mail cannot be built")
    }
}

/// Why an attempt failed, in words that carry no address and no body.
struct Failure {
    reason: String,
    /// Retrying cannot help (the server refused for good, the mail cannot be built).
    permanent: bool,
}

impl Failure {
    fn permanent(error: anyhow::Error) -> Self {
        Self {
            reason: format!("{error:#}"),
            permanent: true,
        }
    }

    fn transient(reason: String) -> Self {
        Self {
            reason,
            permanent: false,
        }
    }

    /// The server's code only, never its text: a refusal often quotes the address.
    fn smtp(error: smtp::Error) -> Self {
        let reason = match error.status() {
            Some(code) => format!("the SMTP server answered {code}"),
            None if error.is_timeout() => "the SMTP server did not answer in time".to_owned(),
            None => format!("cannot talk to the SMTP server: {error}"),
        };
        Self {
            reason,
            permanent: error.is_permanent(),
        }
    }
}

/// Writes the mail as `<id>-<kind>.eml`, mode 0600, whole or not at all: written under a
/// temporary name, then renamed. The directory is made with the first mail, 0700.
fn write_eml(dir: &Path, id: i64, kind: MailKind, formatted: &[u8]) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = dir.join(format!("{id:08}-{kind}.eml"));
    let partial = dir.join(format!(".{id:08}-{kind}.eml.partial"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(formatted)?;
    file.sync_all()?;
    fs::rename(&partial, &path)
}
