//! Command-line entry points besides serving: making the first administrator without an HTTP
//! backdoor.

use std::{
    io::{BufRead, IsTerminal},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::{
    audit::AuditContext,
    auth::{Role, password::PasswordHasher},
    config::Settings,
    db::Database,
    domain::user::{self, NewUser},
    error::ApiError,
    routes::auth::RegisterRequest,
    security::tls,
    startup,
};

#[derive(Debug, Parser)]
#[command(name = "filmvault", version, about = "The secure film API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server (what plain `filmvault` does).
    Serve,
    /// Create an administrator. The password comes from ADMIN_PASSWORD, or from standard input
    /// (a hidden prompt on a terminal). It follows the same rules as registration.
    CreateAdmin {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
    },
    /// Exit 0 if the server on APP_HOST:APP_PORT answers /health/ready with 200 (for
    /// container health checks, so the image needs no HTTP client).
    Healthcheck,
    /// Write a development certificate authority and a localhost certificate it signed
    /// (dev-ca.crt, localhost.crt, localhost.key) for trying HTTPS locally. Refuses to
    /// replace existing files unless --force.
    DevCert {
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
        "wrote {dir}/dev-ca.crt, {dir}/localhost.crt and {dir}/localhost.key (0600)\n\
         serve HTTPS with:\n  \
         TLS_CERT_PATH={dir}/localhost.crt TLS_KEY_PATH={dir}/localhost.key cargo run\n\
         then trust {dir}/dev-ca.crt, e.g. curl --cacert {dir}/dev-ca.crt https://localhost:8443/health/live"
    );
    Ok(())
}

pub async fn create_admin(
    settings: &Settings,
    username: String,
    email: String,
) -> anyhow::Result<()> {
    let password = admin_password()?;
    let new_user = match NewUser::try_from(RegisterRequest {
        username,
        email,
        password,
    }) {
        Ok(new_user) => new_user,
        Err(ApiError::Validation(errors)) => {
            let reasons: Vec<String> = errors
                .iter()
                .map(|e| format!("{} {}", e.field, e.message))
                .collect();
            bail!("invalid administrator: {}", reasons.join("; "));
        }
        Err(other) => return Err(anyhow::anyhow!("{other}")),
    };
    let db = Database::connect(&settings.database_url).await?;
    startup::normalize_stored_emails(&db).await?;
    let hashing = PasswordHasher::new(1, 1)?.reserve()?;
    let created = user::create(
        &db.writer,
        &hashing,
        new_user,
        Role::Admin,
        &AuditContext::system(),
    )
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

fn admin_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("ADMIN_PASSWORD") {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Administrator password: ")
            .context("cannot read the password from the terminal");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
