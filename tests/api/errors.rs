//! Every error is problem+json with a request id, and none says anything about internals.

use filmvault::db;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for body in [
        "{",
        "{\"name\": \"Up\",}",
        "not json",
        "",
        "{\"name\":\"Up\",\"studio\":\"P\"} trailing",
    ] {
        let response = app
            .request(Method::POST, "/api/v1/films")
            .bearer(&user.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        Some("application/json; charset=latin1"),
        None,
    ] {
        let mut request = app
            .request(Method::POST, "/api/v1/films")
            .bearer(&user.token)
            .body(r#"{"name":"Up","studio":"Pixar"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await;
        assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
}

#[tokio::test]
async fn a_body_over_16_kib_is_a_413_declared_or_streamed() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let big = json!({ "name": "x".repeat(17 * 1024), "studio": "Pixar" }).to_string();
    let declared = app
        .request(Method::POST, "/api/v1/films")
        .bearer(&user.token)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await;
    assert_problem(declared, StatusCode::PAYLOAD_TOO_LARGE).await;

    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(1024)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let streamed = app
        .request(Method::POST, "/api/v1/films")
        .bearer(&user.token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    assert_problem(streamed, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn an_unknown_route_is_a_404_and_a_wrong_method_a_405() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/api/v2/films",
        "/api/v1/films/1/nothing",
        "/../etc/passwd",
    ] {
        assert_problem(app.get(path, None).await, StatusCode::NOT_FOUND).await;
    }
    let wrong_method = app.delete("/api/v1/films", None).await;
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    let wrong_method = app.request(Method::PUT, "/health/live").send().await;
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn an_internal_error_is_a_generic_500_that_reveals_nothing() {
    let app = spawn_app().await;
    db::execute!(&mut app.db().await, "DROP VIEW film_view")
        .await
        .unwrap();
    let response = app.get("/api/v1/films", None).await;
    let body = assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
    let text = body.to_string().to_lowercase();
    for leak in [
        "sqlite",
        "film_view",
        "no such",
        "sqlx",
        "select",
        "table",
        ".rs",
    ] {
        assert!(!text.contains(leak), "the 500 body mentions {leak}: {text}");
    }
}

#[tokio::test]
async fn a_safe_request_id_from_the_client_is_kept_and_an_unsafe_one_replaced() {
    let app = spawn_app().await;
    let kept = app
        .request(Method::GET, "/nope")
        .header("x-request-id", "trace-abc_123.4")
        .send()
        .await;
    assert_eq!(kept.headers()["x-request-id"], "trace-abc_123.4");
    let body = assert_problem(kept, StatusCode::NOT_FOUND).await;
    assert_eq!(body["request_id"], "trace-abc_123.4");

    for unsafe_id in ["<script>", "a b", &"x".repeat(65), "id;drop", "\"quoted\""] {
        let response = app
            .request(Method::GET, "/health/live")
            .header("x-request-id", unsafe_id)
            .send()
            .await;
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(id, unsafe_id);
        assert_eq!(id.len(), 36, "a generated UUID replaces {unsafe_id:?}");
    }
}
