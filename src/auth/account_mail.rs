//! The mails of registration, email verification, password reset and email change, one
//! function per message, each written to the outbox in the caller's transaction
//! (`mail::enqueue`), so a mail goes out if and only if the change that caused it commits.
//! (The notices to an account's own address are `mail::notify`'s.)

use crate::{
    config::Settings,
    crypto::Keyring,
    db::Transaction,
    domain::email::Email,
    mail::{self, Mail, MailKind},
};

use super::account_tokens::{IssuedToken, TokenPurpose};

/// Where the links point: `PUBLIC_BASE_URL`, or this instance's own address in development.
fn base_url(settings: &Settings) -> String {
    settings
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}:{}", settings.host, settings.port))
}

fn minutes(purpose: TokenPurpose) -> u64 {
    purpose.lifetime().as_secs() / 60
}

/// One mail to `to` about the account `user_id`.
struct Letter {
    kind: MailKind,
    user_id: i64,
    to: Email,
    subject: &'static str,
    body: String,
}

async fn send(tx: &mut Transaction, keyring: &Keyring, letter: Letter) -> sqlx::Result<()> {
    let Letter {
        kind,
        user_id,
        to,
        subject,
        body,
    } = letter;
    let subject = subject.to_owned();
    let mail = Mail {
        kind,
        user_id,
        to,
        subject,
        body,
    };
    mail::enqueue(tx, keyring, mail).await.map(drop)
}

/// The link that proves the owner of account `user_id` reads mail at `to`.
pub async fn verify_email(
    tx: &mut Transaction,
    keyring: &Keyring,
    settings: &Settings,
    user_id: i64,
    to: Email,
    token: &IssuedToken,
) -> sqlx::Result<()> {
    let link = mail::link(&base_url(settings), "verify-email", token.as_str());
    let hours = minutes(TokenPurpose::EmailVerification) / 60;
    let body = format!(
        "Please confirm that this is your email address by opening this link:\n\n{link}\n\n\
         The link works once and expires in {hours} hours. If you did not create a filmvault \
         account, ignore this mail.\n"
    );
    let subject = "Confirm your email address";
    let kind = MailKind::VerifyEmail;
    send(
        tx,
        keyring,
        Letter {
            kind,
            user_id,
            to,
            subject,
            body,
        },
    )
    .await
}

/// To the owner (account `holder`) of an address someone just tried to register again: the
/// registration's answer does not say the address is taken, this mail does, to its owner only.
pub async fn registration_attempt(
    tx: &mut Transaction,
    keyring: &Keyring,
    holder: i64,
    to: Email,
) -> sqlx::Result<()> {
    let body = "Someone tried to create a filmvault account with this email address, which \
                already has one. If it was you, log in, or reset your password if you forgot \
                it. If it was not you, you need not do anything: your account is unchanged.\n"
        .to_owned();
    let subject = "Somebody tried to register with your address";
    let kind = MailKind::RegistrationAttempt;
    send(
        tx,
        keyring,
        Letter {
            kind,
            user_id: holder,
            to,
            subject,
            body,
        },
    )
    .await
}

/// The link that sets a new password.
pub async fn password_reset(
    tx: &mut Transaction,
    keyring: &Keyring,
    settings: &Settings,
    user_id: i64,
    to: Email,
    token: &IssuedToken,
) -> sqlx::Result<()> {
    let link = mail::link(&base_url(settings), "reset-password", token.as_str());
    let minutes = minutes(TokenPurpose::PasswordReset);
    let body = format!(
        "Someone asked to reset the password of your filmvault account. To choose a new \
         password, open this link:\n\n{link}\n\nThe link works once, expires in {minutes} \
         minutes, and stops working if your password changes meanwhile. If you did not ask, \
         ignore this mail: your password stays as it is.\n"
    );
    let subject = "Reset your password";
    let kind = MailKind::PasswordReset;
    send(
        tx,
        keyring,
        Letter {
            kind,
            user_id,
            to,
            subject,
            body,
        },
    )
    .await
}

/// The link that makes `to` the address of account `user_id`.
pub async fn confirm_new_email(
    tx: &mut Transaction,
    keyring: &Keyring,
    settings: &Settings,
    user_id: i64,
    to: Email,
    token: &IssuedToken,
) -> sqlx::Result<()> {
    let link = mail::link(&base_url(settings), "confirm-email", token.as_str());
    let hours = minutes(TokenPurpose::EmailChange) / 60;
    let body = format!(
        "Someone asked to make this the email address of their filmvault account. To confirm \
         it, open this link:\n\n{link}\n\nThe link works once, expires in {hours} hours, and \
         stops working if the account's password changes meanwhile. If you did not ask, \
         ignore this mail: nothing changes.\n"
    );
    let subject = "Confirm your new email address";
    let kind = MailKind::ConfirmNewEmail;
    send(
        tx,
        keyring,
        Letter {
            kind,
            user_id,
            to,
            subject,
            body,
        },
    )
    .await
}

/// To the owner (account `holder`) of an address another account asked to move to: the
/// request's answer does not say the address is taken, this mail does, to its owner only.
pub async fn email_change_attempt(
    tx: &mut Transaction,
    keyring: &Keyring,
    holder: i64,
    to: Email,
) -> sqlx::Result<()> {
    let body = "Someone asked to move another filmvault account to this email address, which \
                already has an account. Nothing changed: an address belongs to one account. \
                If it was you, delete or change the other account first. If it was not you, \
                you need not do anything.\n"
        .to_owned();
    let subject = "Somebody tried to move an account to your address";
    let kind = MailKind::EmailChangeAttempt;
    send(
        tx,
        keyring,
        Letter {
            kind,
            user_id: holder,
            to,
            subject,
            body,
        },
    )
    .await
}
