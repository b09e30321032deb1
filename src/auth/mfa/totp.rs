//! TOTP (RFC 6238): HMAC-SHA1, 6 digits, 30-second steps, one step of clock skew either way
//! (what every authenticator app speaks). The secret, 160 random bits (RFC 4226's
//! recommendation), is sealed with the data keyring, bound to its row, like emails; it is
//! shown once, at enrolment. A step once accepted, and every older one, is never accepted
//! again for the account (RFC 6238 §5.2): the row keeps the newest step used.

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use qrcode::{QrCode, render::svg};
use totp_rs::{Builder, Totp};
use zeroize::Zeroizing;

use crate::{
    auth::{random_bytes, unix_now, unix_now_i64},
    crypto::Keyring,
    db::{self, Database, Transaction},
};

/// The issuer authenticator apps show beside the account name.
const ISSUER: &str = "filmvault";
const SECRET_BYTES: usize = 20;
/// Rows re-sealed per transaction by a data-key rotation.
const BATCH: i64 = 100;

/// What the owner needs to set up their authenticator: shown once.
pub struct Enrolment {
    /// Base32, for typing in by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as a QR code: an SVG `data:` URI, for an `<img>`.
    pub qr_code: String,
}

fn authenticator(secret: &[u8], account_name: &str) -> anyhow::Result<Totp> {
    Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(account_name)
        .with_issuer(Some(ISSUER))
        .build()
        .context("cannot build the TOTP parameters")
}

fn sealed_purpose(user_id: i64) -> Vec<u8> {
    format!("totp_credentials.secret:{user_id}").into_bytes()
}

/// A new secret for `username`, and how to show it.
pub fn new_secret(username: &str) -> anyhow::Result<(Zeroizing<[u8; SECRET_BYTES]>, Enrolment)> {
    let secret = Zeroizing::new(random_bytes::<SECRET_BYTES>());
    let totp = authenticator(secret.as_ref(), username)?;
    let otpauth_uri = totp.to_url().context("cannot write the otpauth URI")?;
    let svg = QrCode::new(otpauth_uri.as_bytes())
        .context("cannot encode the otpauth URI as a QR code")?
        .render::<svg::Color>()
        .min_dimensions(200, 200)
        .build();
    let enrolment = Enrolment {
        secret: totp.secret().to_base32(),
        qr_code: format!("data:image/svg+xml;base64,{}", STANDARD.encode(svg)),
        otpauth_uri,
    };
    Ok((secret, enrolment))
}

/// Stores `secret` as the account's pending enrolment, replacing a pending one; `false` if
/// the account already has TOTP on (it must be disabled first).
pub async fn store_pending(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
    secret: &[u8],
) -> sqlx::Result<bool> {
    let now = unix_now_i64();
    let stored = db::execute!(
        tx,
        "INSERT INTO totp_credentials (user_id, secret_sealed, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE
            SET secret_sealed = excluded.secret_sealed, created_at = excluded.created_at,
                last_used_step = NULL
            WHERE totp_credentials.confirmed_at IS NULL",
        user_id,
        keyring.seal(&sealed_purpose(user_id), secret),
        now
    )
    .await?;
    Ok(stored == 1)
}

/// Whether the account's TOTP is pending (`Some(false)`), on (`Some(true)`) or absent.
pub async fn state(tx: &mut Transaction, user_id: i64) -> sqlx::Result<Option<bool>> {
    db::fetch_optional_scalar!(
        tx,
        "SELECT confirmed_at IS NOT NULL FROM totp_credentials WHERE user_id = $1",
        user_id
    )
    .await
}

/// Accepts `code` for the account if it is the code of a step within the skew that is newer
/// than every step accepted before, and records that step. `confirmed`: whether the code is
/// checked against the confirmed secret (login, disable) or the pending one (confirmation,
/// which switches it on). `tx` has the account locked.
pub async fn accept(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
    code: &str,
    confirmed: bool,
) -> anyhow::Result<bool> {
    let sealed: Option<Vec<u8>> = db::fetch_optional_scalar!(
        &mut *tx,
        "SELECT secret_sealed FROM totp_credentials
         WHERE user_id = $1 AND (confirmed_at IS NOT NULL) = $2",
        user_id,
        confirmed
    )
    .await?;
    let Some(sealed) = sealed else {
        return Ok(false);
    };
    let secret = keyring
        .open(&sealed_purpose(user_id), &sealed)
        .with_context(|| format!("cannot open the TOTP secret of user {user_id}"))?;
    // The account name only labels the otpauth URI; checking a code does not use it.
    let totp = authenticator(&secret, "")?;
    let Some(step) = totp.check(code, unix_now()) else {
        return Ok(false);
    };
    let step = i64::try_from(step).context("a time step past 2⁶³")?;
    let now = unix_now_i64();
    let accepted = db::execute!(
        tx,
        "UPDATE totp_credentials
         SET last_used_step = $2, confirmed_at = coalesce(confirmed_at, $3)
         WHERE user_id = $1 AND (last_used_step IS NULL OR last_used_step < $2)",
        user_id,
        step,
        now
    )
    .await?;
    Ok(accepted == 1)
}

/// Removes the account's TOTP secret, on or pending.
pub async fn remove(tx: &mut Transaction, user_id: i64) -> sqlx::Result<()> {
    db::execute!(
        tx,
        "DELETE FROM totp_credentials WHERE user_id = $1",
        user_id
    )
    .await?;
    Ok(())
}

/// Re-seals under the keyring's current key every TOTP secret still under a previous key, in
/// batches of short transactions, while the service serves (see `email::reseal_emails`).
/// Returns how many rows changed.
pub async fn reseal_secrets(db: &Database, keyring: &Keyring) -> anyhow::Result<u64> {
    let current = keyring.current_key_id();
    let mut resealed = 0;
    let mut after_id = 0;
    loop {
        let mut tx = db.begin().await?;
        let batch: Vec<(i64, Vec<u8>)> = db::fetch_all!(
            &mut tx,
            "SELECT user_id, secret_sealed FROM totp_credentials
             WHERE user_id > $1 ORDER BY user_id LIMIT $2",
            after_id,
            BATCH
        )
        .await?;
        let Some(&(last_id, _)) = batch.last() else {
            return Ok(resealed);
        };
        for (user_id, sealed) in batch {
            if Keyring::key_id_of(&sealed).ok() == Some(current) {
                continue;
            }
            let purpose = sealed_purpose(user_id);
            let secret = keyring
                .open(&purpose, &sealed)
                .with_context(|| format!("cannot open the TOTP secret of user {user_id}"))?;
            db::execute!(
                &mut tx,
                "UPDATE totp_credentials SET secret_sealed = $2 WHERE user_id = $1",
                user_id,
                keyring.seal(&purpose, &secret)
            )
            .await?;
            resealed += 1;
        }
        tx.commit().await?;
        after_id = last_id;
    }
}
