//! Authorization: ownership of films and the admin role.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn only_the_owner_may_change_or_delete_a_film() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let other = app.new_user().await;
    let film = app.create_film(&owner.token, "Paprika", "Madhouse").await;
    let path = format!("/api/v1/films/{}", film["id"]);

    let patch = app
        .patch_json(&path, &json!({ "name": "Stolen" }), Some(&other.token))
        .await;
    assert_problem(patch, StatusCode::FORBIDDEN).await;
    let delete = app.delete(&path, Some(&other.token)).await;
    assert_problem(delete, StatusCode::FORBIDDEN).await;

    let unchanged: serde_json::Value = app.get(&path, None).await.json().await.unwrap();
    assert_eq!(unchanged["name"], "Paprika");

    let patch = app
        .patch_json(
            &path,
            &json!({ "name": "Paprika (2006)" }),
            Some(&owner.token),
        )
        .await;
    assert_eq!(patch.status(), StatusCode::OK);
    let delete = app.delete(&path, Some(&owner.token)).await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, None).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_admin_may_change_and_delete_any_film() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let admin = app.new_admin().await;
    let film = app.create_film(&owner.token, "Akira", "TMS").await;
    let path = format!("/api/v1/films/{}", film["id"]);

    let patch = app
        .patch_json(
            &path,
            &json!({ "studio": "Tokyo Movie Shinsha" }),
            Some(&admin.token),
        )
        .await;
    assert_eq!(patch.status(), StatusCode::OK);
    let delete = app.delete(&path, Some(&admin.token)).await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn curated_films_without_an_owner_are_admin_only() {
    let app = spawn_app_with_catalogue().await;
    let user = app.new_user().await;
    let patch = app
        .patch_json(
            "/api/v1/films/1",
            &json!({ "name": "Defrosted" }),
            Some(&user.token),
        )
        .await;
    assert_problem(patch, StatusCode::FORBIDDEN).await;
}

async fn spawn_app_with_catalogue() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(&[("SEED_DEMO_DATA", "true")]).await
}

#[tokio::test]
async fn a_user_calling_an_admin_route_is_forbidden_and_an_admin_is_not() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let admin = app.new_admin().await;

    let as_user = app.get("/api/v1/admin/users", Some(&user.token)).await;
    assert_problem(as_user, StatusCode::FORBIDDEN).await;
    let anonymous = app.get("/api/v1/admin/users", None).await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;

    let as_admin = app
        .get("/api/v1/admin/users?limit=10", Some(&admin.token))
        .await;
    assert_eq!(as_admin.status(), StatusCode::OK);
    let page: serde_json::Value = as_admin.json().await.unwrap();
    assert_eq!(page["total"], 2);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.get("password_hash").is_none())
    );
}

#[tokio::test]
async fn writes_need_a_token() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let film = app.create_film(&owner.token, "Ran", "Herald Ace").await;
    let id = film["id"].as_i64().unwrap();
    let cases = [
        app.request(Method::POST, "/api/v1/films")
            .json(&json!({ "name": "X", "studio": "Y" })),
        app.request(Method::PATCH, &format!("/api/v1/films/{id}"))
            .json(&json!({ "name": "X" })),
        app.request(Method::DELETE, &format!("/api/v1/films/{id}")),
        app.request(Method::PUT, &format!("/api/v1/films/{id}/vote"))
            .json(&json!({ "vote": "like" })),
        app.request(Method::DELETE, &format!("/api/v1/films/{id}/vote")),
        app.request(Method::POST, "/add_film")
            .json(&json!({ "name": "X", "studio": "Y" })),
    ];
    for request in cases {
        let response = request.send().await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}
