//! The seed's routes and curl lines (seed 003), as its table describes them, with the
//! authentication the design adds for writes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app_with};

async fn catalogue() -> crate::helpers::TestApp {
    spawn_app_with(&[("SEED_DEMO_DATA", "true")]).await
}

/// RFC 9745 `Deprecation` (an `@`-date) and `rel="deprecation"` (the notice, the API
/// document's seed section), RFC 8594 `Sunset` (an HTTP-date after it) and the successor.
fn assert_deprecated(response: &reqwest::Response) {
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    let deprecated_since: i64 = header("deprecation")
        .strip_prefix('@')
        .unwrap()
        .parse()
        .unwrap();
    let sunset = httpdate::parse_http_date(&header("sunset")).expect("an HTTP-date");
    let sunset_secs = sunset
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(i64::try_from(sunset_secs).unwrap() > deprecated_since);
    let link = header("link");
    assert!(
        link.contains("</api/v1/films>; rel=\"successor-version\""),
        "{link}"
    );
    assert!(
        link.contains("</docs/#/seed>; rel=\"deprecation\""),
        "{link}"
    );
}

#[tokio::test]
async fn the_seed_routes_are_deprecated_with_a_sunset_and_a_notice() {
    let app = catalogue().await;
    let user = app.new_user().await;
    let added = app
        .post_json(
            "/add_film",
            &json!({ "name": "N", "studio": "S" }),
            Some(&user.token),
        )
        .await;
    assert_eq!(added.status(), StatusCode::CREATED);
    assert_deprecated(&added);
    let head = app.request(Method::HEAD, "/add_film").send().await;
    assert_deprecated(&head);
    let notice = app.get("/docs/", None).await;
    assert_eq!(
        notice.status(),
        StatusCode::OK,
        "the notice's page is served"
    );
}

/// `curl -X GET http://127.0.0.1:3000/`
#[tokio::test]
async fn get_root_returns_a_random_film_as_json_with_200() {
    let app = catalogue().await;
    let response = app.get("/", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_deprecated(&response);
    let film: Value = response.json().await.unwrap();
    assert!(film["name"].is_string() && film["studio"].is_string());
}

/// `http://127.0.0.1:3000/?like=123` records a like if the film exists, 200.
#[tokio::test]
async fn like_and_dislike_record_the_callers_vote_and_return_a_random_film() {
    let app = catalogue().await;
    let user = app.new_user().await;
    let response = app.get("/?like=1", Some(&user.token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let random: Value = response.json().await.unwrap();
    assert!(random["id"].is_i64());
    let frozen: Value = app.get("/api/v1/films/1", None).await.json().await.unwrap();
    assert_eq!(frozen["name"], "Frozen");
    assert_eq!(
        (frozen["likes"].as_i64(), frozen["dislikes"].as_i64()),
        (Some(1), Some(0))
    );

    assert_eq!(
        app.get("/?like=1", Some(&user.token)).await.status(),
        StatusCode::OK
    );
    let again: Value = app.get("/api/v1/films/1", None).await.json().await.unwrap();
    assert_eq!(again["likes"], 1, "liking twice is one like");

    assert_eq!(
        app.get("/?dislike=1", Some(&user.token)).await.status(),
        StatusCode::OK
    );
    let changed: Value = app.get("/api/v1/films/1", None).await.json().await.unwrap();
    assert_eq!(
        (changed["likes"].as_i64(), changed["dislikes"].as_i64()),
        (Some(0), Some(1))
    );
}

#[tokio::test]
async fn voting_through_the_seed_route_needs_authentication() {
    let app = catalogue().await;
    assert_problem(app.get("/?like=1", None).await, StatusCode::UNAUTHORIZED).await;
    let frozen: Value = app.get("/api/v1/films/1", None).await.json().await.unwrap();
    assert_eq!(frozen["likes"], 0);
}

#[tokio::test]
async fn a_malformed_or_unknown_film_id_is_refused() {
    let app = catalogue().await;
    let user = app.new_user().await;
    for query in [
        "like=abc",
        "like=-1",
        "like=1.5",
        "like=",
        "like=%201",
        "like=99999999999999999999",
        "like=1%27%20OR%201%3D1",
        "like=1&dislike=2",
        "like=1&like=2",
        "favourite=1",
    ] {
        let response = app.get(&format!("/?{query}"), Some(&user.token)).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    // The seed's own example ids do not exist in the demo catalogue.
    assert_problem(
        app.get("/?like=123", Some(&user.token)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.get("/?dislike=456", Some(&user.token)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// `POST http://127.0.0.1:3000/add_film` adds a film if the JSON is valid: 201.
#[tokio::test]
async fn add_film_stores_a_valid_film_with_201() {
    let app = catalogue().await;
    let user = app.new_user().await;
    let response = app
        .post_json(
            "/add_film",
            &json!({ "name": "Frozen II", "studio": "Disney" }),
            Some(&user.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["deprecation"], "@1793491200");
    let film: Value = response.json().await.unwrap();
    assert_eq!(film["name"], "Frozen II");
    assert_eq!(film["owner"], user.username.as_str());

    let invalid = app
        .post_json(
            "/add_film",
            &json!({ "name": "", "studio": "Disney" }),
            Some(&user.token),
        )
        .await;
    assert_problem(invalid, StatusCode::UNPROCESSABLE_ENTITY).await;
    let anonymous = app
        .post_json(
            "/add_film",
            &json!({ "name": "Frozen III", "studio": "Disney" }),
            None,
        )
        .await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}

/// `HEAD /add_film`: headers only.
#[tokio::test]
async fn head_add_film_answers_200_with_headers_and_no_body() {
    let app = catalogue().await;
    let response = app.request(Method::HEAD, "/add_film").send().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["allow"], "POST, HEAD");
    assert!(response.bytes().await.unwrap().is_empty());
}
