//! CORS: the allow-list decides; credentials mode is never on.

use reqwest::{Method, StatusCode, header::HeaderMap};

use crate::helpers::{TestApp, spawn_app_with};

const ALLOWED: &str = "https://films.example";
const EVIL: &str = "https://evil.example";

async fn cors_app(extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![(
        "CORS_ALLOWED_ORIGINS",
        "https://films.example, http://localhost:3000",
    )];
    vars.extend_from_slice(extra);
    spawn_app_with(&vars).await
}

async fn preflight(app: &TestApp, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    app.request(Method::OPTIONS, "/api/v1/films")
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
}

fn allow_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-allow"))
        .collect()
}

#[tokio::test]
async fn an_allowed_origin_gets_a_narrow_preflight_answer() {
    let app = cors_app(&[]).await;
    let response = preflight(&app, ALLOWED, "POST", "authorization, content-type").await;
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let methods = headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    for method in ["TRACE", "CONNECT"] {
        assert!(!methods.contains(method), "{methods}");
    }
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"));
    assert!(headers.get("access-control-allow-credentials").is_none());
    let max_age: u64 = headers["access-control-max-age"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age <= 600, "{max_age}");
}

#[tokio::test]
async fn an_evil_origin_gets_no_access_control_headers() {
    let app = cors_app(&[]).await;
    let response = preflight(&app, EVIL, "POST", "authorization, content-type").await;
    assert!(
        allow_headers(response.headers()).is_empty(),
        "{:?}",
        allow_headers(response.headers())
    );

    let simple = app
        .request(Method::GET, "/api/v1/films")
        .header("origin", EVIL)
        .send()
        .await;
    assert!(
        allow_headers(simple.headers()).is_empty(),
        "{:?}",
        allow_headers(simple.headers())
    );

    // Suffix and scheme tricks are different origins.
    for origin in [
        "https://films.example.evil.example",
        "http://films.example",
        "https://films.example:8443",
        "null",
    ] {
        let response = preflight(&app, origin, "GET", "authorization").await;
        assert!(allow_headers(response.headers()).is_empty(), "{origin}");
    }
}

#[tokio::test]
async fn an_allowed_origin_may_read_simple_responses() {
    let app = cors_app(&[]).await;
    let response = app
        .request(Method::GET, "/api/v1/films")
        .header("origin", ALLOWED)
        .send()
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], ALLOWED);
    assert!(
        response
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("x-ratelimit-remaining") && exposed.contains("x-request-id"));
    for name in [
        "ratelimit-policy",
        "ratelimit",
        "sunset",
        "idempotency-replayed",
    ] {
        assert!(
            exposed.split(',').any(|exposed| exposed.trim() == name),
            "{name} not in {exposed}"
        );
    }
}

#[tokio::test]
async fn a_browser_may_send_an_idempotency_key() {
    let app = cors_app(&[]).await;
    let response = preflight(&app, ALLOWED, "POST", "authorization, idempotency-key").await;
    assert!(response.status().is_success());
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
}

#[tokio::test]
async fn methods_and_headers_outside_the_list_are_not_allowed() {
    let app = cors_app(&[]).await;
    let response = preflight(&app, ALLOWED, "TRACE", "authorization").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let response = preflight(&app, ALLOWED, "POST", "x-evil-header").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn a_rate_limited_response_still_carries_cors_headers() {
    let app = cors_app(&[("RATE_LIMIT_GLOBAL", "2/min")]).await;
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            app.request(Method::GET, "/api/v1/films")
                .header("origin", ALLOWED)
                .send()
                .await,
        );
    }
    let limited = last.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["access-control-allow-origin"], ALLOWED);
    let preflight_after = preflight(&app, ALLOWED, "GET", "authorization").await;
    assert!(
        preflight_after.status().is_success(),
        "preflights are not counted"
    );
}
