//! The outbox table (`mail_outbox`): how a mail is written, sealed, and read back.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use time::Duration;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::{
    crypto::Keyring,
    db::{self, Database, Timestamp, Transaction},
    domain::{Page, Paginated, email::Email},
};

use super::{Mail, MailKind};

/// Writes `mail` to the outbox inside `tx`, the transaction of the change that causes it;
/// the worker delivers it once `tx` commits (and never if it rolls back). The recipient and
/// the body are sealed for the row: no address or token is stored in clear. Returns the
/// mail's id.
pub async fn enqueue(tx: &mut Transaction, keyring: &Keyring, mail: Mail) -> sqlx::Result<i64> {
    let now = Timestamp::now();
    // The seals bind the row id, which the insert gives: insert, then seal.
    let id: i64 = db::fetch_scalar!(
        &mut *tx,
        "INSERT INTO mail_outbox (kind, user_id, subject, next_attempt_at, created_at,
                                  updated_at)
         VALUES ($1, $2, $3, $4, $4, $4) RETURNING id",
        mail.kind,
        mail.user_id,
        &mail.subject,
        now
    )
    .await?;
    db::execute!(
        tx,
        "UPDATE mail_outbox SET recipient_sealed = $2, body_sealed = $3 WHERE id = $1",
        id,
        keyring.seal(&recipient_purpose(id), mail.to.as_str().as_bytes()),
        keyring.seal(&body_purpose(id), mail.body.as_bytes())
    )
    .await?;
    Ok(id)
}

fn recipient_purpose(id: i64) -> Vec<u8> {
    format!("mail_outbox.recipient:{id}").into_bytes()
}

fn body_purpose(id: i64) -> Vec<u8> {
    format!("mail_outbox.body:{id}").into_bytes()
}

/// Where a mail is: waiting (or being retried), delivered, or given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum MailState {
    Pending,
    Sent,
    Dead,
}

/// A mail claimed for one delivery attempt, still sealed.
#[derive(sqlx::FromRow)]
pub(super) struct ClaimedMail {
    pub id: i64,
    pub kind: MailKind,
    pub subject: String,
    recipient_sealed: Vec<u8>,
    body_sealed: Vec<u8>,
    /// This attempt included.
    pub attempts: i64,
}

impl ClaimedMail {
    /// The recipient and body, opened.
    pub fn open(&self, keyring: &Keyring) -> anyhow::Result<(Email, Zeroizing<Vec<u8>>)> {
        let recipient = keyring
            .open(&recipient_purpose(self.id), &self.recipient_sealed)
            .with_context(|| format!("cannot open the recipient of mail {}", self.id))?;
        let recipient = String::from_utf8(recipient.to_vec())
            .ok()
            .and_then(|address| Email::parse(address).ok())
            .with_context(|| format!("the recipient of mail {} is not an address", self.id))?;
        let body = keyring
            .open(&body_purpose(self.id), &self.body_sealed)
            .with_context(|| format!("cannot open the body of mail {}", self.id))?;
        Ok((recipient, body))
    }
}

/// Claims the next due mail for one attempt: the row gets a lease until `now + lease` (no
/// other worker, on any instance, claims it meanwhile) and its attempt is counted at once, so
/// a worker that dies mid-send still uses one up. One statement: the claim is atomic on
/// SQLite (one writer at a time), and PostgreSQL's `SKIP LOCKED` lets workers claim side by
/// side without waiting on each other's row.
pub(super) async fn claim_next(
    db: &Database,
    lease: std::time::Duration,
) -> sqlx::Result<Option<ClaimedMail>> {
    let now = Timestamp::now();
    let leased_until = now.saturating_add(Duration::try_from(lease).unwrap_or(Duration::HOUR));
    db::fetch_optional!(
        &mut db.write().await?,
        sqlite: "UPDATE mail_outbox SET leased_until = $2, attempts = attempts + 1, updated_at = $1
                 WHERE id = (SELECT id FROM mail_outbox
                             WHERE state = 'pending' AND next_attempt_at <= $1
                               AND (leased_until IS NULL OR leased_until <= $1)
                             ORDER BY next_attempt_at, id LIMIT 1)
                 RETURNING id, kind, subject, recipient_sealed, body_sealed, attempts",
        postgres: "UPDATE mail_outbox SET leased_until = $2, attempts = attempts + 1, updated_at = $1
                   WHERE id = (SELECT id FROM mail_outbox
                               WHERE state = 'pending' AND next_attempt_at <= $1
                                 AND (leased_until IS NULL OR leased_until <= $1)
                               ORDER BY next_attempt_at, id LIMIT 1
                               FOR UPDATE SKIP LOCKED)
                   RETURNING id, kind, subject, recipient_sealed, body_sealed, attempts",
        now,
        leased_until
    )
    .await
}

/// Delivered: the row keeps its history; the address and body are wiped.
pub(super) async fn mark_sent(db: &Database, id: i64) -> sqlx::Result<()> {
    db::execute!(
        &mut db.write().await?,
        "UPDATE mail_outbox SET state = 'sent', sent_at = $2, updated_at = $2,
                                recipient_sealed = NULL, body_sealed = NULL,
                                leased_until = NULL, last_error = NULL
         WHERE id = $1",
        id,
        Timestamp::now()
    )
    .await?;
    Ok(())
}

/// Not delivered this time: retried at `retry_at`, or dead once it has had `max_attempts`
/// (0: dead now).
pub(super) async fn mark_failed(
    db: &Database,
    id: i64,
    max_attempts: i64,
    retry_at: Timestamp,
    error: &str,
) -> sqlx::Result<MailState> {
    db::fetch_scalar!(
        &mut db.write().await?,
        "UPDATE mail_outbox
         SET state = CASE WHEN attempts >= $2 THEN 'dead' ELSE 'pending' END,
             next_attempt_at = $3, leased_until = NULL, last_error = $4, updated_at = $5
         WHERE id = $1
         RETURNING state",
        id,
        max_attempts,
        retry_at,
        error,
        Timestamp::now()
    )
    .await
}

/// A mail as administrators see it: what it is and how its delivery went, never to whom or
/// what it says.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct MailRecord {
    pub id: i64,
    pub kind: MailKind,
    pub state: MailState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// The mails in `state`, newest first.
pub async fn list(
    db: &Database,
    state: MailState,
    page: Page,
) -> sqlx::Result<Paginated<MailRecord>> {
    let mut connection = db.read().await?;
    let total: i64 = db::fetch_scalar!(
        &mut connection,
        "SELECT count(*) FROM mail_outbox WHERE state = $1",
        state
    )
    .await?;
    let items = db::fetch_all!(
        &mut connection,
        "SELECT id, kind, state, attempts, last_error, created_at, updated_at, next_attempt_at,
                sent_at
         FROM mail_outbox WHERE state = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        state,
        page.limit,
        page.offset
    )
    .await?;
    Ok(page.of(items, total))
}

/// Removes the mails about `user_id` not sent yet (pending or dead): the account is being
/// deleted, and its mails must not reach anyone after it (a mail a worker is handing to the
/// SMTP server at this very moment may still arrive). Returns how many.
pub async fn discard_unsent(tx: &mut Transaction, user_id: i64) -> sqlx::Result<u64> {
    db::execute!(
        tx,
        "DELETE FROM mail_outbox WHERE user_id = $1 AND state <> 'sent'",
        user_id
    )
    .await
}

/// Re-seals, under the keyring's current key, the recipients and bodies of mails not yet
/// sent that are still under a previous key (a data-key rotation). Returns how many.
pub async fn reseal(db: &Database, keyring: &Keyring) -> anyhow::Result<u64> {
    let current = keyring.current_key_id();
    let mut tx = db.begin().await?;
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = db::fetch_all!(
        &mut tx,
        "SELECT id, recipient_sealed, body_sealed FROM mail_outbox
         WHERE recipient_sealed IS NOT NULL AND body_sealed IS NOT NULL"
    )
    .await?;
    let mut resealed = 0;
    for (id, recipient, body) in rows {
        if Keyring::key_id_of(&recipient).ok() == Some(current)
            && Keyring::key_id_of(&body).ok() == Some(current)
        {
            continue;
        }
        let recipient = keyring.open(&recipient_purpose(id), &recipient)?;
        let body = keyring.open(&body_purpose(id), &body)?;
        db::execute!(
            &mut tx,
            "UPDATE mail_outbox SET recipient_sealed = $2, body_sealed = $3 WHERE id = $1",
            id,
            keyring.seal(&recipient_purpose(id), &recipient),
            keyring.seal(&body_purpose(id), &body)
        )
        .await?;
        resealed += 1;
    }
    tx.commit().await?;
    Ok(resealed)
}
