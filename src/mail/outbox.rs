//! The outbox table (`mail_outbox`): how a mail is written, sealed, and read back.

use crate::{
    crypto::Keyring,
    db::{self, Timestamp, Transaction},
};

use super::Mail;

/// Writes `mail` to the outbox inside `tx`, the transaction of the change that causes it;
/// the worker delivers it once `tx` commits (and never if it rolls back). The recipient and
/// the body are sealed for the row: no address or token is stored in clear. Returns the
/// mail's id.
pub async fn enqueue(tx: &mut Transaction, keyring: &Keyring, mail: Mail) -> sqlx::Result<i64> {
    let now = Timestamp::now();
    // The seals bind the row id, which the insert gives: insert, then seal.
    let id: i64 = db::fetch_scalar!(
        &mut *tx,
        "INSERT INTO mail_outbox (kind, subject, next_attempt_at, created_at, updated_at)
         VALUES ($1, $2, $3, $3, $3) RETURNING id",
        mail.kind,
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
