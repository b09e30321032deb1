//! Command-line entry points besides serving: making the first administrator without an HTTP
//! backdoor, re-sealing stored values under a new data key.

use secrecy::ExposeSecret;
use std::{
    io::{BufRead, IsTerminal},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use validator::ValidationError;

use crate::{
    audit::AuditContext,
    auth::{account_tokens, mfa, password::PasswordHasher, signing_keys},
    config::Settings,
    crypto::{self, Keyring},
    db::Database,
    domain::{
        email,
        user::{self, Email, NewPassword, NewUser, Username},
    },
    error::{ApiError, ForField},
    mail,
    routes::auth::RegisterRequest,
    security::tls,
    startup,
};

#[derive(Debug, Parser)]
#[command(
    name = "filmvault",
    version,
    about = "The secure film API",
    after_help = "Configuration comes from environment variables, or from a .env file in the \
                  working directory (or a parent): copy .env.example to .env, which lists every \
                  variable with its development default and what production needs. The README \
                  has a walkthrough, the configuration table and the production checklist."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server (what plain `filmvault` does).
    Serve,
    /// Create an administrator (no HTTP route can).
    ///
    /// The password follows the registration rules: 12 to 128 characters, not one of the most
    /// common passwords. It is taken from ADMIN_PASSWORD when that is set; otherwise it is
    /// asked twice on the terminal (hidden); otherwise, as in a script, it is the first line
    /// of standard input.
    CreateAdmin {
        /// Login name: 3 to 32 letters A-Z, digits or underscores.
        #[arg(long)]
        username: String,
        /// The administrator's email address.
        #[arg(long)]
        email: String,
    },
    /// Make a new access-token signing key current, on every instance at once.
    ///
    /// The old key signs nothing more; it still verifies the tokens it signed until they
    /// have expired (ACCESS_TOKEN_TTL_SECS, plus a minute), and is listed in
    /// /.well-known/jwks.json until then. Nobody is logged out.
    RotateSigningKey,
    /// Re-seal every stored encrypted value (emails, private signing keys) under
    /// DATA_ENCRYPTION_KEY and recompute the blind indexes, online.
    ///
    /// First restart every instance with the new key as DATA_ENCRYPTION_KEY and the old one
    /// in DATA_ENCRYPTION_KEYS_PREVIOUS; then run this (it works in small transactions while
    /// the service serves, and can be run again after an interruption); then drop the old
    /// key from DATA_ENCRYPTION_KEYS_PREVIOUS and restart the instances once more.
    RotateDataKey,
    /// Exit 0 if the server on APP_HOST:APP_PORT answers /health/ready with 200 (for
    /// container health checks, so the image needs no HTTP client).
    Healthcheck,
    /// Write an encrypted copy of the SQLite database while the service runs.
    ///
    /// The copy is consistent (one read transaction) and encrypted with age to the public
    /// keys in BACKUP_RECIPIENTS, or with BACKUP_PASSPHRASE. On PostgreSQL, use pg_dump
    /// through age instead (docs/backup.md).
    Backup {
        /// The backup file (written 0600; an existing one is replaced whole).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Replace the SQLite database with a backup, checked whole first (stop the service).
    ///
    /// The backup is decrypted with BACKUP_IDENTITY_FILE or BACKUP_PASSPHRASE, and refused if
    /// it was changed or cut short, or is not a filmvault database; the database is then
    /// replaced in one rename.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace a database that already holds data.
        #[arg(long)]
        force: bool,
    },
    /// Write a development certificate authority, a localhost certificate and a client
    /// certificate it signed (dev-ca.crt, localhost.crt, localhost.key, client.crt,
    /// client.key) for trying HTTPS and the internal listener's mutual TLS locally. Refuses
    /// to replace existing files unless --force.
    DevCert {
        /// Directory to write the files into (created if missing).
        #[arg(long, default_value = "certs")]
        out_dir: PathBuf,
        /// Replace an existing CA and certificate (the old CA then no longer verifies
        /// anything: remove it from wherever it was trusted).
        #[arg(long)]
        force: bool,
    },
}

/// A bare HTTP/1.1 request to the local listener: the health check runs inside the container,
/// where the service is plain HTTP behind the TLS-terminating proxy.
pub fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    use std::{
        io::{Read, Write},
        net::{IpAddr, SocketAddr, TcpStream},
        time::Duration,
    };
    let host = if settings.host.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        settings.host
    };
    let address = SocketAddr::new(host, settings.port);
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream
        .write_all(b"GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.take(4096).read_to_end(&mut answer)?;
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or_default();
    if status_line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        bail!("not ready: {status_line}")
    }
}

/// A CA may already be trusted by a browser or the system: replacing it silently would break
/// every certificate it signed and leave a stale root trusted. Its private key is never
/// kept, so it cannot sign a new certificate either: the choice is keep, or `--force`.
pub fn dev_cert(out_dir: &Path, force: bool) -> anyhow::Result<()> {
    let existing = tls::DEV_CERTIFICATE_FILES
        .iter()
        .map(|name| out_dir.join(name))
        .find(|path| path.exists());
    if let (Some(existing), false) = (existing, force) {
        bail!(
            "{} already exists and is left as it is: keep using it, or run `filmvault \
             dev-cert --force` to make a new CA and certificate (then remove the old \
             CA from every browser or trust store that has it)",
            existing.display()
        );
    }
    tls::write_dev_certificate(out_dir)?;
    let dir = out_dir.display();
    println!(
        "wrote {dir}/dev-ca.crt, {dir}/localhost.crt, {dir}/localhost.key (0600), \
         {dir}/client.crt and {dir}/client.key (0600)\n\
         serve HTTPS with:\n  \
         TLS_CERT_PATH={dir}/localhost.crt TLS_KEY_PATH={dir}/localhost.key cargo run\n\
         then trust {dir}/dev-ca.crt, e.g. curl --cacert {dir}/dev-ca.crt https://localhost:8443/health/live\n\
         for the internal listener behind mutual TLS, add:\n  \
         METRICS_ADDR=127.0.0.1:9090 INTERNAL_CLIENT_CA_PATH={dir}/dev-ca.crt\n\
         and scrape with the client certificate:\n  \
         curl --cacert {dir}/dev-ca.crt --cert {dir}/client.crt --key {dir}/client.key \
         https://localhost:9090/metrics"
    );
    Ok(())
}

pub async fn rotate_signing_key(settings: &Settings) -> anyhow::Result<()> {
    let db = Database::connect(settings.database_url.expose_secret()).await?;
    let keyring = crypto::load_keyring(&settings.data_keys, &settings.database_url)?;
    let rotation = signing_keys::rotate(&db, &keyring, settings.jwt.access_token_ttl).await?;
    db.close().await;
    println!(
        "new access tokens are signed with key {} from now on, on every instance",
        rotation.new_kid
    );
    if let Some(retired) = rotation.retired_kid {
        let until = time::OffsetDateTime::from_unix_timestamp(
            i64::try_from(rotation.retired_verifies_until).unwrap_or(i64::MAX),
        )?
        .format(&time::format_description::well_known::Rfc3339)?;
        println!(
            "key {retired} signs nothing more; it verifies the tokens it signed until {until}, \
             then leaves /.well-known/jwks.json"
        );
    }
    Ok(())
}

/// How many times a terminal user may enter an unacceptable or mistyped password.
const PASSWORD_ATTEMPTS: usize = 3;

pub async fn create_admin(
    settings: &Settings,
    username: String,
    email: String,
) -> anyhow::Result<()> {
    // Everything that does not depend on the password is checked before asking for it.
    Username::validate(&username).map_err(|e| broken_rule("--username", e))?;
    Email::validate(&email).map_err(|e| broken_rule("--email", e))?;
    let db = Database::connect(settings.database_url.expose_secret()).await?;
    let keyring = crypto::load_keyring(&settings.data_keys, &settings.database_url)?;
    startup::seal_legacy_emails(&db, &keyring).await?;
    if user::find_credentials(&mut db.read().await?, &username)
        .await?
        .is_some()
    {
        bail!("--username: {username} is already taken; choose another");
    }
    let password = admin_password()?;
    // The registration route's conversion, so an administrator meets every rule a user does.
    let new_user = NewUser::try_from(RegisterRequest {
        username,
        email,
        password,
    })
    .map_err(|error| anyhow::anyhow!("invalid administrator: {}", reasons(error)))?;
    let hashing = PasswordHasher::new(1, 1)?.reserve()?;
    let created = user::create_admin(&db, &keyring, &hashing, new_user, &AuditContext::system())
        .await
        .map_err(|e| match e {
            ApiError::Conflict(reason) => anyhow::anyhow!("{reason}"),
            other => anyhow::anyhow!("{other:?}"),
        })?;
    db.close().await;
    println!(
        "created administrator {} (id {})",
        created.username, created.id
    );
    Ok(())
}

/// Re-seals every sealed value still under a previous data key; prints what it did (counts
/// and key ids, never a value).
pub async fn rotate_data_key(settings: &Settings) -> anyhow::Result<()> {
    let db = Database::connect(settings.database_url.expose_secret()).await?;
    let keyring = crypto::load_keyring(&settings.data_keys, &settings.database_url)?;
    startup::seal_legacy_emails(&db, &keyring).await?;
    let resealed = reseal_stored_values(&db, &keyring).await?;
    db.close().await;
    let current = keyring.current_key_id();
    for (what, count) in resealed {
        println!("re-sealed {count} {what} under data key {current}");
    }
    println!(
        "every sealed value is under data key {current} now: remove the previous keys from \
         DATA_ENCRYPTION_KEYS_PREVIOUS and restart the instances"
    );
    Ok(())
}

/// Every kind of sealed value, re-sealed under the keyring's current key: each kind that is
/// stored sealed (emails, private signing keys, queued mails, TOTP secrets, the addresses
/// mailed links are bound to) has its step.
async fn reseal_stored_values(
    db: &Database,
    keyring: &Keyring,
) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let emails = email::reseal_emails(db, keyring)
        .await
        .context("cannot re-seal the emails")?;
    let signing_keys = signing_keys::reseal_private_keys(db, keyring)
        .await
        .context("cannot re-seal the private signing keys")?;
    let mails = mail::reseal(db, keyring)
        .await
        .context("cannot re-seal the mails waiting in the outbox")?;
    let totp_secrets = mfa::totp::reseal_secrets(db, keyring)
        .await
        .context("cannot re-seal the TOTP secrets")?;
    let link_addresses = account_tokens::reseal_addresses(db, keyring)
        .await
        .context("cannot re-seal the addresses of the mailed links")?;
    Ok(vec![
        ("emails", emails),
        ("private signing keys", signing_keys),
        ("mails waiting in the outbox", mails),
        ("TOTP secrets", totp_secrets),
        ("addresses of mailed links", link_addresses),
    ])
}

/// The password from the first source there is: ADMIN_PASSWORD, the terminal, standard input.
fn admin_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("ADMIN_PASSWORD") {
        return acceptable(password, "ADMIN_PASSWORD");
    }
    if std::io::stdin().is_terminal() {
        return ask_for_password();
    }
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    if read == 0 {
        bail!(
            "no password: standard input is empty; run create-admin on a terminal, pipe the \
             password in as one line, or set ADMIN_PASSWORD"
        );
    }
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    acceptable(password, "the password on standard input")
}

/// Asks on the terminal, twice, until the two entries agree and follow the rules.
fn ask_for_password() -> anyhow::Result<String> {
    eprintln!("The administrator's password: {}.", password_rules());
    for _ in 0..PASSWORD_ATTEMPTS {
        let password = rpassword::prompt_password("Password: ")
            .context("cannot read the password from the terminal")?;
        if let Err(error) = NewPassword::validate(&password) {
            eprintln!("{}.", broken_rule("That password", error));
            continue;
        }
        let repeated = rpassword::prompt_password("Repeat it: ")
            .context("cannot read the password from the terminal")?;
        if repeated == password {
            return Ok(password);
        }
        eprintln!("The two entries differ; try again.");
    }
    bail!("no acceptable password after {PASSWORD_ATTEMPTS} attempts; nothing was created")
}

/// `password` if it follows the rules; otherwise an error naming where it came from.
fn acceptable(password: String, source: &str) -> anyhow::Result<String> {
    match NewPassword::validate(&password) {
        Ok(()) => Ok(password),
        Err(error) => bail!(
            "{} (the rules: {})",
            broken_rule(source, error),
            password_rules()
        ),
    }
}

fn password_rules() -> String {
    format!(
        "{} to {} characters, not a common password, not containing the username or the \
         email, not easy to guess; a few unrelated words make a good one",
        NewPassword::MIN_CHARS,
        NewPassword::MAX_CHARS
    )
}

/// A rule the value broke, in the words the API answers with.
fn broken_rule(what: &str, error: ValidationError) -> anyhow::Error {
    match Err::<(), _>(error).for_field(what) {
        Ok(()) => anyhow::anyhow!("{what} is invalid"),
        Err(error) => anyhow::anyhow!("{}", reasons(error)),
    }
}

fn reasons(error: ApiError) -> String {
    match error {
        ApiError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{} {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}
