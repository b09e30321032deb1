//! The clients each account has signed in from, so that a sign-in from one never seen
//! before mails its owner a notice (issue 16, item 6): a stolen password used elsewhere
//! does not go unnoticed.
//!
//! A client is the pair (IP address, user agent) a login came from (`SessionClient`). Only a
//! keyed blind index of the pair is kept (`known_sign_ins`), never the pair itself: the table
//! tells nobody where anyone was. The first sign-in of an account mails nothing (there is
//! nothing to compare it with, and its owner just registered); after that, each new pair
//! mails once, and a known pair never again. A pair is looked up under every key of the
//! keyring, so a data-key rotation does not make every known client new (a key removed from
//! the keyring does, once: one extra notice per client, docs/security.md).

use crate::{
    auth::{sessions::SessionClient, unix_now_i64},
    crypto::Keyring,
    db::{self, Transaction},
    error::{ApiError, Step},
    mail::{self, Notice},
};

const INDEX_PURPOSE: &[u8] = b"known_sign_ins.client";

/// What the index is computed on: the two parts, told apart by a separator that neither
/// holds (a user agent has no control characters, see `SessionClient`).
fn fingerprint(client: &SessionClient) -> Vec<u8> {
    let ip = client.ip().unwrap_or_default();
    let agent = client.user_agent().unwrap_or_default();
    [ip.as_bytes(), b"\n", agent.as_bytes()].concat()
}

/// Records that `user_id` signed in from `client`, in `tx`, the transaction that starts the
/// session (which has the account locked), and mails the notice if the client is new and the
/// account had signed in before.
pub async fn record(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
    client: &SessionClient,
) -> Result<(), ApiError> {
    let fingerprint = fingerprint(client);
    let now = unix_now_i64();
    for index in keyring.blind_indexes(INDEX_PURPOSE, &fingerprint) {
        let known = db::execute!(
            &mut *tx,
            "UPDATE known_sign_ins SET last_seen_at = $3
             WHERE user_id = $1 AND client_index = $2",
            user_id,
            &index[..],
            now
        )
        .await
        .step("record a known sign-in client")?;
        if known > 0 {
            return Ok(());
        }
    }
    let signed_in_before: i64 = db::fetch_scalar!(
        &mut *tx,
        "SELECT count(*) FROM known_sign_ins WHERE user_id = $1",
        user_id
    )
    .await
    .step("count the known sign-in clients")?;
    let inserted = db::execute!(
        &mut *tx,
        "INSERT INTO known_sign_ins (user_id, client_index, first_seen_at, last_seen_at)
         VALUES ($1, $2, $3, $3)
         ON CONFLICT (user_id, client_index) DO NOTHING",
        user_id,
        &keyring.blind_index(INDEX_PURPOSE, &fingerprint)[..],
        now
    )
    .await
    .step("record a new sign-in client")?;
    if inserted > 0 && signed_in_before > 0 {
        let notice = Notice::NewSignIn {
            ip: client.ip(),
            user_agent: client.user_agent(),
        };
        mail::notify(tx, keyring, user_id, notice)
            .await
            .step("write the new sign-in notice")?;
    }
    Ok(())
}
