//! HTTPS: the rustls server configuration, the redirect of plain HTTP to HTTPS, and the
//! development certificate.
//!
//! rustls is built with the `ring` provider only and `ServerConfig::builder_with_provider`, so
//! no second provider can make the builder ambiguous. Its defaults are the policy: TLS 1.3 and
//! 1.2 only, AEAD suites with ECDHE key exchange (forward secrecy), no renegotiation, no
//! compression.

use std::{fs, path::Path, sync::Arc};

use actix_web::{
    Error, HttpResponse,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
};
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

pub fn server_config(cert_path: &Path, key_path: &Path) -> anyhow::Result<ServerConfig> {
    let certificates = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("TLS_CERT_PATH: cannot read {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "TLS_CERT_PATH: {} is not PEM certificates",
                cert_path.display()
            )
        })?;
    if certificates.is_empty() {
        anyhow::bail!(
            "TLS_CERT_PATH: {} holds no certificate",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| {
        format!(
            "TLS_KEY_PATH: cannot read a private key from {}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("the TLS protocol versions are not supported by the provider")?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .context("TLS_KEY_PATH does not match the certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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

/// On the plain-HTTP listener, every request gets a 301 to the same path under `base`.
pub async fn redirect_to_https(
    base: Arc<str>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if req.app_config().secure() {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let response = HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, format!("{base}{path}")))
        .finish();
    Ok(req.into_response(response).map_into_right_body())
}

/// A local certificate authority and a `localhost` certificate it signed, in PEM.
pub struct DevCertificate {
    pub ca_pem: String,
    /// The server certificate followed by the CA certificate (the chain to serve).
    pub chain_pem: String,
    pub key_pem: String,
}

/// Like mkcert: trust `ca_pem` once in a browser or client, and the server certificate is
/// valid for localhost, 127.0.0.1 and ::1.
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

    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Under 366 days, like any certificate a browser accepts today.
    params.not_before = yesterday;
    params.not_after = yesterday + time::Duration::days(365);
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, &ca)?;

    Ok(DevCertificate {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", certificate.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    })
}

/// What `write_dev_certificate` writes: the CA, the chain to serve, its private key.
pub const DEV_CERTIFICATE_FILES: [&str; 3] = ["dev-ca.crt", "localhost.crt", "localhost.key"];

/// Writes `dev-ca.crt`, `localhost.crt` and `localhost.key` (mode 0600) into `dir`.
pub fn write_dev_certificate(dir: &Path) -> anyhow::Result<()> {
    let generated = generate_dev_certificate()?;
    let [ca, chain, key] = DEV_CERTIFICATE_FILES.map(|name| dir.join(name));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::write(ca, &generated.ca_pem)?;
    fs::write(chain, &generated.chain_pem)?;
    write_private(&key, generated.key_pem.as_bytes())?;
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
    fn a_development_certificate_loads_into_the_server_configuration() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_certificate(dir.path()).unwrap();
        server_config(
            &dir.path().join("localhost.crt"),
            &dir.path().join("localhost.key"),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("localhost.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
