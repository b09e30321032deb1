//! Certificates rotate without a restart: the TLS certificate and key files are read again
//! every `TLS_RELOAD_INTERVAL_SECS` and on SIGHUP, and a new, valid pair replaces the one in
//! service.
//!
//! rustls asks the resolver for a certificate at each handshake, so a swap reaches every new
//! connection at once, while an open one keeps the session it negotiated and finishes
//! undisturbed. A pair that does not load (unreadable, not PEM, a key that does not match the
//! certificate, a half-copied file) is refused with an error in the log, and the pair in
//! service stays; it is tried again as soon as either file changes.
//!
//! A change is noticed by the files' contents (a SHA-256 of both), not their modification
//! times: a copy that keeps the old time (`cp -p`, an untarred archive) or a second change
//! within the file system's time resolution would otherwise go unnoticed.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use anyhow::Context;
use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};

/// The certificate in service, and where its next version comes from.
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    in_service: RwLock<Arc<CertifiedKey>>,
    /// The digest of the files last tried, loaded or refused: each version is tried once.
    last_tried: Mutex<[u8; 32]>,
}

/// What a check of the files found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Replaced,
    /// The new pair did not load; the one in service stays.
    Refused,
}

impl ReloadingCertificate {
    /// Loads the pair; at start-up a pair that does not load is an error, not a log line.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<Self> {
        let files = read_pair(cert_path, key_path)?;
        let certified = certified_key(&files, cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            in_service: RwLock::new(Arc::new(certified)),
            last_tried: Mutex::new(files.digest()),
        })
    }

    /// Reads the files and, if they changed since the last check, puts the new pair in
    /// service, or logs why it cannot.
    pub fn reload_if_changed(&self) -> Reload {
        let files = match read_pair(&self.cert_path, &self.key_path) {
            Ok(files) => files,
            Err(error) => {
                // A missing file mid-rotation is refused each time, without a change to wait
                // for: it is logged each time too, which an operator would want to see.
                tracing::error!(
                    error = format!("{error:#}"),
                    "the TLS certificate files cannot be read; the certificate in service stays"
                );
                return Reload::Refused;
            }
        };
        let digest = files.digest();
        {
            let mut last_tried = self
                .last_tried
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *last_tried == digest {
                return Reload::Unchanged;
            }
            *last_tried = digest;
        }
        match certified_key(&files, &self.cert_path, &self.key_path, &self.provider) {
            Ok(certified) => {
                *self
                    .in_service
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
                tracing::info!(
                    cert_path = %self.cert_path.display(),
                    "a new TLS certificate is in service for new connections"
                );
                Reload::Replaced
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "the new TLS certificate and key were refused; the certificate in service stays"
                );
                Reload::Refused
            }
        }
    }

    /// Checks the files every `interval`, and at once on SIGHUP. The signal handler is
    /// installed before this returns, so a SIGHUP sent afterwards never takes the process's
    /// default action (termination).
    pub fn spawn_reload(self: Arc<Self>, interval: Duration) {
        let mut hangups = hangup_signals();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    Some(()) = next_hangup(&mut hangups) => {}
                }
                self.reload_if_changed();
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.in_service
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Both files as read in one check.
struct Pair {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Pair {
    fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        // Lengths first, so no split of the same bytes between the files digests alike.
        hasher.update((self.cert_pem.len() as u64).to_be_bytes());
        hasher.update(&self.cert_pem);
        hasher.update(&self.key_pem);
        hasher.finalize().into()
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> anyhow::Result<Pair> {
    Ok(Pair {
        cert_pem: fs::read(cert_path)
            .with_context(|| format!("TLS_CERT_PATH: cannot read {}", cert_path.display()))?,
        key_pem: fs::read(key_path)
            .with_context(|| format!("TLS_KEY_PATH: cannot read {}", key_path.display()))?,
    })
}

/// The chain and its key, checked to belong together (rustls compares the public keys).
fn certified_key(
    files: &Pair,
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(&files.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "TLS_CERT_PATH: {} is not PEM certificates",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "TLS_CERT_PATH: {} holds no certificate",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key_pem).with_context(|| {
        format!(
            "TLS_KEY_PATH: {} holds no PEM private key",
            key_path.display()
        )
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "TLS_KEY_PATH: {} is not the key of the certificate in {}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    // `from_der` accepts a key whose public half it cannot derive; a pair must be proven.
    certified.keys_match().with_context(|| {
        format!(
            "TLS_KEY_PATH: {} is not the key of the certificate in {}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok(certified)
}

type Hangups = Option<tokio::signal::unix::Signal>;

fn hangup_signals() -> Hangups {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signals) => Some(signals),
        Err(error) => {
            tracing::warn!(error = %error, "SIGHUP cannot be handled; TLS certificates reload on the interval only");
            None
        }
    }
}

async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}
