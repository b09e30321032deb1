//! HTTPS with rustls: TLS 1.2 and 1.3 only, the configured certificate, plain-HTTP pages
//! redirected (the API's refusal is `plain_http`).

use reqwest::{StatusCode, tls::Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::spawn_tls_app;

#[tokio::test]
async fn tls_1_2_and_1_3_are_accepted_with_the_configured_certificate() {
    let app = spawn_tls_app(&[]).await;
    for version in [Version::TLS_1_2, Version::TLS_1_3] {
        let client = app.tls_client(version, version);
        let response = client
            .get(app.https_url("/health/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{version:?}");
    }
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let app = spawn_tls_app(&[]).await;
    let stranger = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    assert!(
        stranger
            .get(app.https_url("/health/live"))
            .send()
            .await
            .is_err()
    );
}

/// A TLS 1.1 ClientHello (legacy version 0x0302, no supported_versions extension), offering
/// the TLS 1.1 suites ECDHE-RSA-AES128-SHA and RSA-AES128-SHA.
fn tls_1_1_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend([0x5a; 32]);
    hello.push(0);
    hello.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    hello.extend([0x01, 0x00]);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend(u16::try_from(hello.len()).unwrap().to_be_bytes());
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x02];
    record.extend(u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend(handshake);
    record
}

#[tokio::test]
async fn tls_1_1_is_refused_with_a_fatal_alert_and_no_server_hello() {
    let app = spawn_tls_app(&[]).await;
    let address = app.https_socket_address();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(&tls_1_1_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers instead of hanging")
    .unwrap();
    assert!(answer.len() >= 7, "{answer:?}");
    assert_eq!(
        answer[0], 0x15,
        "an alert record, not a handshake (ServerHello)"
    );
    assert_eq!(answer[5], 2, "fatal");
    assert!(
        [40, 70].contains(&answer[6]),
        "handshake_failure or protocol_version, got {}",
        answer[6]
    );
}

#[tokio::test]
async fn plain_http_pages_are_redirected_to_the_same_path_on_https() {
    let app = spawn_tls_app(&[]).await;
    let https_port = app
        .https_address
        .as_ref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    for (method, path) in [
        (reqwest::Method::GET, "/static/index.html?v=5&q=up"),
        (reqwest::Method::HEAD, "/static/app.css"),
        (reqwest::Method::GET, "/docs/swagger-ui.css"),
    ] {
        let response = app.request(method, path).send().await;
        assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY, "{path}");
        assert_eq!(
            response.headers()["location"],
            format!("https://localhost:{https_port}{path}").as_str()
        );
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "HSTS over HTTP"
        );
    }
}

/// The `Host` header is the client's to choose: a redirect built from it sends the browser
/// wherever the request said (cache poisoning, open redirect). It goes to the configured
/// public URL instead, or to localhost in development.
#[tokio::test]
async fn the_redirect_goes_to_the_configured_public_url_whatever_the_host_header() {
    let redirect_of = |app: &crate::helpers::TestApp, host: &'static str| {
        let request = app
            .request(reqwest::Method::GET, "/static/index.html?limit=5")
            .header("host", host);
        async move {
            let response = request.send().await;
            assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
            response.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    let public = spawn_tls_app(&[("PUBLIC_BASE_URL", "https://films.example.com")]).await;
    for host in [
        "evil.example",
        "evil.example:8080",
        "evil.example/phish",
        "[::1]",
    ] {
        assert_eq!(
            redirect_of(&public, host).await,
            "https://films.example.com/static/index.html?limit=5",
            "Host: {host}"
        );
    }

    let development = spawn_tls_app(&[]).await;
    let https_port = development
        .https_url("")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        redirect_of(&development, "evil.example").await,
        format!("https://localhost:{https_port}/static/index.html?limit=5")
    );
}

#[test]
fn the_dev_cert_subcommand_writes_a_ca_a_server_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_filmvault"))
        .args(["dev-cert", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for file in [
        "dev-ca.crt",
        "localhost.crt",
        "localhost.key",
        "client.crt",
        "client.key",
    ] {
        assert!(dir.path().join(file).exists(), "{file}");
        assert!(stdout.contains(file), "{file} not in: {stdout}");
    }
    use std::os::unix::fs::PermissionsExt;
    for key in ["localhost.key", "client.key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
}

fn dev_cert(dir: &std::path::Path, force: bool) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_filmvault"));
    command.args(["dev-cert", "--out-dir"]).arg(dir);
    if force {
        command.arg("--force");
    }
    command.output().unwrap()
}

/// A browser or system trust store may hold the existing CA: replacing it silently breaks
/// every certificate it signed and leaves a stale trusted root behind.
#[test]
fn dev_cert_refuses_to_replace_an_existing_ca_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dev_cert(dir.path(), false).status.success());
    let ca_path = dir.path().join("dev-ca.crt");
    let first_ca = std::fs::read_to_string(&ca_path).unwrap();
    let first_cert = std::fs::read_to_string(dir.path().join("localhost.crt")).unwrap();

    let again = dev_cert(dir.path(), false);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("dev-ca.crt") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&ca_path).unwrap(), first_ca);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("localhost.crt")).unwrap(),
        first_cert
    );

    let forced = dev_cert(dir.path(), true);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_ne!(std::fs::read_to_string(&ca_path).unwrap(), first_ca);
}
