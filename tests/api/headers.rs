//! Security headers on every response: success, 404, 500, over HTTPS and HTTP.

use filmvault::db;
use reqwest::{StatusCode, header::HeaderMap, tls::Version};

use crate::helpers::{spawn_app, spawn_tls_app};

fn assert_security_headers(headers: &HeaderMap, https: bool, context: &str) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{context}: no {name}"))
            .to_owned()
    };
    assert_eq!(
        get("content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'",
        "{context}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{context}");
    assert_eq!(get("x-frame-options"), "DENY", "{context}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{context}");
    assert!(get("permissions-policy").contains("camera=()"), "{context}");
    assert!(
        headers.get("server").is_none(),
        "{context}: a Server banner"
    );
    if https {
        let hsts = get("strict-transport-security");
        let max_age: u64 = hsts
            .split(';')
            .find_map(|part| part.trim().strip_prefix("max-age="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(max_age >= 31_536_000, "{context}: HSTS max-age {max_age}");
        assert!(hsts.contains("includeSubDomains"), "{context}");
    } else {
        assert!(
            headers.get("strict-transport-security").is_none(),
            "{context}: HSTS over HTTP"
        );
    }
}

#[tokio::test]
async fn every_https_response_carries_the_security_headers_errors_included() {
    let app = spawn_tls_app(&[]).await;
    let client = app.tls_client(Version::TLS_1_2, Version::TLS_1_3);

    let ok = client
        .get(app.https_url("/api/v1/films"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_security_headers(ok.headers(), true, "200");

    let missing = client
        .get(app.https_url("/no/such/thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_security_headers(missing.headers(), true, "404");

    let unauthenticated = client
        .get(app.https_url("/api/v1/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_security_headers(unauthenticated.headers(), true, "401");

    db::execute!(&mut app.db().await, "DROP VIEW film_view")
        .await
        .unwrap();
    // A page not read before: one read already is answered from the read cache.
    let broken = client
        .get(app.https_url("/api/v1/films?offset=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_security_headers(broken.headers(), true, "500");
}

#[tokio::test]
async fn plain_http_gets_the_headers_but_no_hsts() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/films", None).await;
    assert_security_headers(response.headers(), false, "http 200");
    let response = app.get("/nothing-here", None).await;
    assert_security_headers(response.headers(), false, "http 404");
}

#[tokio::test]
async fn responses_are_not_stored_by_caches() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let me = app.get("/api/v1/users/me", Some(&user.token)).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.headers()["cache-control"], "no-store");
    let login = app.login(&user.username, &user.password).await;
    assert_eq!(login.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_trusted_tls_proxy_gets_hsts_on_plain_http() {
    let app = crate::helpers::spawn_app_with(&[
        ("TLS_TERMINATED_BY_PROXY", "true"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let response = app.get("/api/v1/films", None).await;
    assert_security_headers(response.headers(), true, "behind a TLS proxy");
}

/// HSTS on `localhost` would make a browser refuse plain HTTP to every local project for
/// the max-age: it is never sent to a loopback name.
#[tokio::test]
async fn hsts_is_never_sent_to_localhost() {
    let app = spawn_tls_app(&[]).await;
    let https_port: u16 = app
        .https_url("")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ca = reqwest::Certificate::from_pem(app.ca_pem.as_ref().unwrap().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve("localhost", ([127, 0, 0, 1], https_port).into())
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{https_port}/api/v1/films"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers(response.headers(), false, "https://localhost");

    let with_host = |host: &str| {
        client
            .get(app.https_url("/api/v1/films"))
            .header("host", format!("{host}:{https_port}"))
            .send()
    };
    for host in ["LocalHost", "films.localhost", "localhost."] {
        let response = with_host(host).await.unwrap();
        assert_security_headers(response.headers(), false, host);
    }
    let public = with_host("films.example.com").await.unwrap();
    assert_security_headers(public.headers(), true, "a public name");
}
