//! Certificates: mutual TLS on the internal listener (`INTERNAL_CLIENT_CA_PATH`), and TLS
//! certificates replaced on disk reaching new connections without a restart.
//!
//! These tests speak TLS with tokio-rustls rather than reqwest: they need the certificate
//! the server presented, the alert it refused a client with, and one connection held open
//! across a rotation.

use std::{io, path::Path, sync::Arc, time::Duration};

use filmvault::security::tls::{DevCertificate, generate_dev_certificate, write_dev_certificate};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::{
    AlertDescription, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::helpers::{TestApp, spawn_app_with};

/// No exchange here takes long; past this the test fails instead of hanging.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// A client certificate chain and its key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    fn from_pem(chain: &str, key: &str) -> Self {
        Self {
            chain: CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap(),
            key: PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        }
    }
}

/// A CA whose key the test keeps, to issue any client certificate (the dev CA's is not kept).
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(60);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(60);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A client certificate valid from `days_ago` days ago for `days` days.
    fn client(&self, days_ago: i64, days: i64) -> Identity {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "metrics scraper");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(days_ago);
        params.not_after = params.not_before + time::Duration::days(days);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Identity::from_pem(&certificate.pem(), &key.serialize_pem())
    }
}

/// A TLS connection to `127.0.0.1:port` as `localhost`, trusting only `server_cas`.
async fn connect(
    port: u16,
    server_cas: &[&str],
    identity: Option<Identity>,
) -> io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    for ca in server_cas {
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain, identity.key)
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// `GET path` on a new connection, closed after the answer: the whole answer, or the error
/// that ended the exchange.
async fn get_once(
    port: u16,
    server_cas: &[&str],
    identity: Option<Identity>,
    path: &str,
) -> io::Result<String> {
    tokio::time::timeout(GIVE_UP_AFTER, async {
        let mut stream = connect(port, server_cas, identity).await?;
        last_request(&mut stream, path).await
    })
    .await
    .expect("the server answers or refuses instead of hanging")
}

/// `GET path` with `Connection: close`: the whole answer.
async fn last_request(stream: &mut TlsStream<TcpStream>, path: &str) -> io::Result<String> {
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// The alert the server ended the exchange with.
fn alert_of(result: io::Result<String>) -> AlertDescription {
    let error = match result {
        Ok(answer) => panic!("the server answered: {answer:.80}"),
        Err(error) => error,
    };
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => *alert,
        _ => panic!("not a TLS alert from the server: {error:?}"),
    }
}

fn leaf_of(chain_pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

fn served_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// An app serving HTTPS with a `dev-cert` certificate in a directory the test may rewrite,
/// with the internal listener behind mutual TLS with `client_ca_pem`.
async fn spawn_mtls_app(client_ca_pem: Option<&str>, extra: &[(&str, &str)]) -> (TestApp, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write_dev_certificate(dir.path()).unwrap();
    let client_ca = match client_ca_pem {
        Some(pem) => {
            std::fs::write(dir.path().join("client-ca.crt"), pem).unwrap();
            dir.path().join("client-ca.crt")
        }
        None => dir.path().join("dev-ca.crt"),
    };
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (cert, key, client_ca) = (
        path("localhost.crt"),
        path("localhost.key"),
        client_ca.display().to_string(),
    );
    let mut vars = vec![
        ("TLS_CERT_PATH", cert.as_str()),
        ("TLS_KEY_PATH", key.as_str()),
        ("HTTPS_PORT", "0"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("INTERNAL_CLIENT_CA_PATH", client_ca.as_str()),
    ];
    vars.extend_from_slice(extra);
    let mut app = spawn_app_with(&vars).await;
    app.ca_pem = Some(std::fs::read_to_string(dir.path().join("dev-ca.crt")).unwrap());
    (app, dir)
}

impl TestApp {
    fn internal_port(&self) -> u16 {
        self.metrics_port.expect("an internal listener")
    }

    fn https_port(&self) -> u16 {
        self.https_socket_address()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn assert_metrics(answer: &str) {
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    assert!(answer.contains("rate_limiter_keys"), "{answer:.200}");
}

#[tokio::test]
async fn a_client_certificate_from_the_internal_ca_gets_the_metrics() {
    let client_ca = TestCa::new("internal clients");
    let (app, _dir) = spawn_mtls_app(Some(&client_ca.issuer.pem()), &[]).await;
    let server_ca = app.ca_pem.as_deref().unwrap();
    let answer = get_once(
        app.internal_port(),
        &[server_ca],
        Some(client_ca.client(1, 30)),
        "/metrics",
    )
    .await
    .unwrap();
    assert_metrics(&answer);
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_by_the_internal_listener() {
    let client_ca = TestCa::new("internal clients");
    let (app, _dir) = spawn_mtls_app(Some(&client_ca.issuer.pem()), &[]).await;
    let server_ca = app.ca_pem.as_deref().unwrap();
    let refused = get_once(app.internal_port(), &[server_ca], None, "/metrics").await;
    assert_eq!(alert_of(refused), AlertDescription::CertificateRequired);
}

/// The `dev-cert` client certificate is a valid one, but from another CA than the listener's;
/// an impostor CA under the very name of the listener's fails on its signature.
#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_by_the_internal_listener() {
    let client_ca = TestCa::new("internal clients");
    let (app, dir) = spawn_mtls_app(Some(&client_ca.issuer.pem()), &[]).await;
    let server_ca = app.ca_pem.as_deref().unwrap();
    let read = |name| std::fs::read_to_string(dir.path().join(name)).unwrap();
    for (stranger, alert) in [
        (
            Identity::from_pem(&read("client.crt"), &read("client.key")),
            AlertDescription::UnknownCA,
        ),
        (
            TestCa::new("other clients").client(1, 30),
            AlertDescription::UnknownCA,
        ),
        (
            TestCa::new("internal clients").client(1, 30),
            AlertDescription::DecryptError,
        ),
    ] {
        let refused = get_once(
            app.internal_port(),
            &[server_ca],
            Some(stranger),
            "/metrics",
        )
        .await;
        assert_eq!(alert_of(refused), alert);
    }
}

#[tokio::test]
async fn an_expired_client_certificate_from_the_internal_ca_is_refused() {
    let client_ca = TestCa::new("internal clients");
    let (app, _dir) = spawn_mtls_app(Some(&client_ca.issuer.pem()), &[]).await;
    let server_ca = app.ca_pem.as_deref().unwrap();
    let expired = client_ca.client(30, 29);
    let refused = get_once(app.internal_port(), &[server_ca], Some(expired), "/metrics").await;
    assert_eq!(alert_of(refused), AlertDescription::CertificateExpired);
}

/// What `filmvault dev-cert` writes is enough: its CA as `INTERNAL_CLIENT_CA_PATH`, its
/// client certificate to scrape.
#[tokio::test]
async fn the_dev_cert_client_certificate_gets_the_metrics_from_a_dev_ca_listener() {
    let (app, dir) = spawn_mtls_app(None, &[]).await;
    let server_ca = app.ca_pem.as_deref().unwrap();
    let read = |name| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let identity = Identity::from_pem(&read("client.crt"), &read("client.key"));
    let answer = get_once(
        app.internal_port(),
        &[server_ca],
        Some(identity),
        "/metrics",
    )
    .await
    .unwrap();
    assert_metrics(&answer);
}

/// Reads one answer to a keep-alive request: the head, then `Content-Length` bytes of body.
async fn read_one_answer(stream: &mut BufReader<&mut TlsStream<TcpStream>>) -> String {
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(stream.read_line(&mut head).await.unwrap() > 0, "{head}");
    }
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    head
}

/// Replaces the certificate and key files in `dir` with `new`'s.
fn install(dir: &Path, new: &DevCertificate) {
    std::fs::write(dir.join("localhost.crt"), &new.chain_pem).unwrap();
    std::fs::write(dir.join("localhost.key"), &new.key_pem).unwrap();
}

/// Connects until the server presents `expected`, or fails after `GIVE_UP_AFTER`.
async fn wait_for_leaf(
    port: u16,
    server_cas: &[&str],
    identity: impl Fn() -> Option<Identity>,
    expected: &CertificateDer<'_>,
) {
    let deadline = tokio::time::Instant::now() + GIVE_UP_AFTER;
    loop {
        let stream = connect(port, server_cas, identity()).await.unwrap();
        if served_leaf(&stream) == *expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} still serves the old certificate after {GIVE_UP_AFTER:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_while_open_ones_finish() {
    let (app, dir) = spawn_mtls_app(None, &[("TLS_RELOAD_INTERVAL_SECS", "1")]).await;
    let old_ca = app.ca_pem.clone().unwrap();
    let old_leaf = leaf_of(&std::fs::read_to_string(dir.path().join("localhost.crt")).unwrap());
    let new = generate_dev_certificate().unwrap();
    let cas = [old_ca.as_str(), new.ca_pem.as_str()];
    let read = |name| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let client = || Some(Identity::from_pem(&read("client.crt"), &read("client.key")));

    let mut open = connect(app.https_port(), &cas, None).await.unwrap();
    assert_eq!(served_leaf(&open), old_leaf);
    open.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = read_one_answer(&mut BufReader::new(&mut open)).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    install(dir.path(), &new);
    let new_leaf = leaf_of(&new.chain_pem);
    wait_for_leaf(app.https_port(), &cas, || None, &new_leaf).await;
    wait_for_leaf(app.internal_port(), &cas, client, &new_leaf).await;

    let last = tokio::time::timeout(GIVE_UP_AFTER, last_request(&mut open, "/health/live"))
        .await
        .unwrap()
        .unwrap();
    assert!(last.starts_with("HTTP/1.1 200"), "{last:.200}");
    assert_eq!(served_leaf(&open), old_leaf);
}

/// A key that does not match the certificate (a rotation half done) is refused; the reload
/// keeps watching, and takes the pair once it is whole.
#[tokio::test]
async fn a_broken_replacement_is_refused_and_the_certificate_in_service_stays() {
    let (app, dir) = spawn_mtls_app(None, &[("TLS_RELOAD_INTERVAL_SECS", "1")]).await;
    let old_ca = app.ca_pem.clone().unwrap();
    let old_leaf = leaf_of(&std::fs::read_to_string(dir.path().join("localhost.crt")).unwrap());
    let new = generate_dev_certificate().unwrap();
    let cas = [old_ca.as_str(), new.ca_pem.as_str()];

    std::fs::write(dir.path().join("localhost.crt"), &new.chain_pem).unwrap();
    // Three reload intervals: time for the broken pair to be tried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stream = connect(app.https_port(), &cas, None).await.unwrap();
    assert_eq!(served_leaf(&stream), old_leaf);
    let answer = tokio::time::timeout(GIVE_UP_AFTER, async {
        let mut stream = stream;
        last_request(&mut stream, "/health/live").await
    })
    .await
    .unwrap()
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");

    std::fs::write(dir.path().join("localhost.key"), &new.key_pem).unwrap();
    wait_for_leaf(app.https_port(), &cas, || None, &leaf_of(&new.chain_pem)).await;
}

/// SIGHUP reloads at once, whatever the interval. The signal goes to this test process,
/// where every app of the suite checks its files: a harmless extra check for the others.
#[tokio::test]
async fn sighup_reloads_the_certificate_before_the_interval() {
    let (app, dir) = spawn_mtls_app(None, &[("TLS_RELOAD_INTERVAL_SECS", "86400")]).await;
    let old_ca = app.ca_pem.clone().unwrap();
    let new = generate_dev_certificate().unwrap();
    let cas = [old_ca.as_str(), new.ca_pem.as_str()];

    install(dir.path(), &new);
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
    wait_for_leaf(app.https_port(), &cas, || None, &leaf_of(&new.chain_pem)).await;
}
