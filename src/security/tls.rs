//! HTTPS: the rustls server configurations (public, and the internal listener's mutual TLS),
//! where plain HTTP redirects to (`plain_http`), and the development certificates.
//!
//! rustls is built with the `ring` provider only and `ServerConfig::builder_with_provider`, so
//! no second provider can make the builder ambiguous. Its defaults are the policy: TLS 1.3 and
//! 1.2 only, AEAD suites with ECDHE key exchange (forward secrecy), no renegotiation, no
//! compression.

use std::{fs, path::Path, sync::Arc};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::{
    ConfigBuilder, RootCertStore, ServerConfig, WantsVerifier,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use super::tls_reload::ReloadingCertificate;

/// The public listener's configuration: no client certificate, the server certificate from
/// `certificate` (reloaded when its files change).
pub fn server_config(certificate: Arc<ReloadingCertificate>) -> anyhow::Result<ServerConfig> {
    let mut config = builder()?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The internal listener's configuration: the same server certificate, and a client
/// certificate issued by a CA in `client_ca_path` is required (mutual TLS). rustls checks
/// the client's chain up to that CA, its validity period and its client-authentication
/// usage; a client without one is refused during the handshake, before any HTTP.
pub fn internal_server_config(
    certificate: Arc<ReloadingCertificate>,
    client_ca_path: &Path,
) -> anyhow::Result<ServerConfig> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(client_ca_path).with_context(|| {
        format!(
            "INTERNAL_CLIENT_CA_PATH: cannot read {}",
            client_ca_path.display()
        )
    })? {
        let ca = ca.with_context(|| {
            format!(
                "INTERNAL_CLIENT_CA_PATH: {} is not PEM certificates",
                client_ca_path.display()
            )
        })?;
        roots.add(ca).with_context(|| {
            format!(
                "INTERNAL_CLIENT_CA_PATH: {} holds a certificate that is not a usable CA",
                client_ca_path.display()
            )
        })?;
    }
    if roots.is_empty() {
        anyhow::bail!(
            "INTERNAL_CLIENT_CA_PATH: {} holds no certificate",
            client_ca_path.display()
        );
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .context("INTERNAL_CLIENT_CA_PATH: the client certificate verifier cannot be built")?;
    let mut config = builder()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The one crypto provider, ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder() -> anyhow::Result<ConfigBuilder<ServerConfig, WantsVerifier>> {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("the TLS protocol versions are not supported by the provider")
}

/// Where plain HTTP redirects: the configured public URL, else (development) this machine's
/// HTTPS port. Never the request's `Host` header, which the client chooses: a redirect built
/// from it sends a browser wherever the request (or a poisoned cache) said.
pub fn redirect_base(public_base_url: Option<&str>, https_port: u16) -> String {
    match (public_base_url, https_port) {
        (Some(url), _) => url.to_owned(),
        (None, 443) => "https://localhost".to_owned(),
        (None, port) => format!("https://localhost:{port}"),
    }
}

/// A local certificate authority, and a `localhost` server certificate and a client
/// certificate it signed, in PEM.
pub struct DevCertificate {
    pub ca_pem: String,
    /// The server certificate followed by the CA certificate (the chain to serve).
    pub chain_pem: String,
    pub key_pem: String,
    /// For clients of the internal listener when `INTERNAL_CLIENT_CA_PATH` is the dev CA.
    pub client_pem: String,
    pub client_key_pem: String,
}

/// Like mkcert: trust `ca_pem` once in a browser or client, and the server certificate is
/// valid for localhost, 127.0.0.1 and ::1. The same CA issues the client certificate; its
/// private key is not kept, so nothing else can ever be signed by it.
pub fn generate_dev_certificate() -> anyhow::Result<DevCertificate> {
    let now = time::OffsetDateTime::now_utc();
    let yesterday = now - time::Duration::days(1);

    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "filmvault development CA");
    ca_params.not_before = yesterday;
    ca_params.not_after = now + time::Duration::days(2 * 365);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut server = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (server_certificate, server_key) = leaf(server, yesterday, &ca)?;

    let mut client = CertificateParams::default();
    client
        .distinguished_name
        .push(DnType::CommonName, "filmvault internal client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (client_certificate, client_key) = leaf(client, yesterday, &ca)?;

    Ok(DevCertificate {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", server_certificate.pem(), ca.pem()),
        key_pem: server_key.serialize_pem(),
        client_pem: client_certificate.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

/// Signs `params` with a new key, valid for under 366 days from `not_before` (like any
/// certificate a browser accepts today).
fn leaf(
    mut params: CertificateParams,
    not_before: time::OffsetDateTime,
    ca: &CertifiedIssuer<'_, KeyPair>,
) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before;
    params.not_after = not_before + time::Duration::days(365);
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, ca)?;
    Ok((certificate, key))
}

/// What `write_dev_certificate` writes: the CA, the server chain and its key, the client
/// certificate and its key.
pub const DEV_CERTIFICATE_FILES: [&str; 5] = [
    "dev-ca.crt",
    "localhost.crt",
    "localhost.key",
    "client.crt",
    "client.key",
];

/// Writes `DEV_CERTIFICATE_FILES` into `dir`, the keys with mode 0600.
pub fn write_dev_certificate(dir: &Path) -> anyhow::Result<()> {
    let generated = generate_dev_certificate()?;
    let [ca, chain, key, client, client_key] = DEV_CERTIFICATE_FILES.map(|name| dir.join(name));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::write(ca, &generated.ca_pem)?;
    fs::write(chain, &generated.chain_pem)?;
    write_private(&key, generated.key_pem.as_bytes())?;
    fs::write(client, &generated.client_pem)?;
    write_private(&client_key, generated.client_key_pem.as_bytes())?;
    Ok(())
}

/// Creates (or truncates) a file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_public_url_the_redirect_goes_to_localhost() {
        assert_eq!(redirect_base(None, 8443), "https://localhost:8443");
        assert_eq!(redirect_base(None, 443), "https://localhost");
        assert_eq!(
            redirect_base(Some("https://films.example.com"), 8443),
            "https://films.example.com"
        );
    }

    #[test]
    fn a_client_ca_that_does_not_load_is_an_error_naming_its_variable() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_certificate(dir.path()).unwrap();
        let certificate = Arc::new(
            ReloadingCertificate::load(
                &dir.path().join("localhost.crt"),
                &dir.path().join("localhost.key"),
                provider(),
            )
            .unwrap(),
        );
        fs::write(dir.path().join("empty.crt"), "").unwrap();
        for client_ca in ["missing.crt", "empty.crt", "localhost.key"] {
            let error = internal_server_config(certificate.clone(), &dir.path().join(client_ca))
                .unwrap_err();
            assert!(
                format!("{error:#}").starts_with("INTERNAL_CLIENT_CA_PATH: "),
                "{client_ca}: {error:#}"
            );
        }
    }

    #[test]
    fn a_development_certificate_loads_into_the_server_configuration() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_certificate(dir.path()).unwrap();
        let certificate = ReloadingCertificate::load(
            &dir.path().join("localhost.crt"),
            &dir.path().join("localhost.key"),
            provider(),
        )
        .unwrap();
        internal_server_config(Arc::new(certificate), &dir.path().join("dev-ca.crt")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in ["localhost.key", "client.key"] {
                let mode = fs::metadata(dir.path().join(key))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }
    }
}
