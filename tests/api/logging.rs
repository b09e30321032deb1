//! What reaches the logs: one structured line per request, internal causes under the request
//! id, and never a password, token or key (the capture runs at TRACE, in production's JSON).

use filmvault::db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{LOGS, spawn_app};

/// The JSON log lines that mention `request_id`.
fn lines_of(request_id: &str) -> Vec<Value> {
    LOGS.contents()
        .lines()
        .filter(|line| line.contains(request_id))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[tokio::test]
async fn each_request_logs_one_line_with_route_pattern_status_latency_ip_and_user() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let film = app.create_film(&user.token, "Logged", "Studio").await;
    let response = app
        .patch_json(
            &format!("/api/v1/films/{}", film["id"]),
            &json!({ "year": 1999 }),
            Some(&user.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let completed: Vec<Value> = lines_of(&request_id)
        .into_iter()
        .filter(|line| line["fields"]["message"] == "request completed")
        .collect();
    assert_eq!(completed.len(), 1, "exactly one request line");
    let (span, fields) = (&completed[0]["span"], &completed[0]["fields"]);
    assert_eq!(span["method"], "PATCH");
    assert_eq!(
        span["route"], "/api/v1/films/{id}",
        "the pattern, not the raw path"
    );
    assert_eq!(span["client_ip"], "127.0.0.1");
    assert_eq!(span["request_id"], request_id.as_str());
    assert_eq!(fields["status"], 200);
    assert!(fields["latency_ms"].as_f64().is_some());
    assert_eq!(fields["user_id"], user.id);
}

#[tokio::test]
async fn a_password_and_the_tokens_it_buys_never_reach_the_logs() {
    let app = spawn_app().await;
    let password = "S3cret-correct-horse-battery";
    app.post_json(
        "/api/v1/auth/register",
        &json!({ "username": "logcheck", "email": "logcheck@example.com", "password": password }),
        None,
    )
    .await;
    app.login("logcheck", "S3cret-wrong-guess-here").await;
    let (access, refresh) = app.token_pair("logcheck", password).await;
    app.get("/api/v1/users/me", Some(&access)).await;
    app.request(Method::GET, "/api/v1/users/me?token=S3cret-in-a-query")
        .header("cookie", "session=S3cret-cookie")
        .header("authorization", "Basic UzNjcmV0LWJhc2lj")
        .send()
        .await;
    app.refresh(&refresh).await;

    let logs = LOGS.contents();
    assert!(
        logs.contains("logcheck") || logs.contains("request completed"),
        "logs were captured"
    );
    for secret in [
        "S3cret",
        access.as_str(),
        access.split('.').nth(2).unwrap(),
        refresh.as_str(),
        "UzNjcmV0LWJhc2lj",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {}",
            &secret[..6.min(secret.len())]
        );
    }
}

#[tokio::test]
async fn a_500_logs_its_cause_under_the_request_id_and_answers_only_the_generic_body() {
    let app = spawn_app().await;
    db::execute!(&mut app.db().await, "DROP VIEW film_view")
        .await
        .unwrap();
    let response = app.get("/api/v1/films", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.text().await.unwrap();
    assert!(!body.contains("film_view"));

    let lines = lines_of(&request_id);
    let cause = lines
        .iter()
        .find(|line| line["level"] == "ERROR" && line.to_string().contains("film_view"))
        .expect("the error chain is logged with the request id");
    assert!(cause.to_string().contains("database query failed"));
}
