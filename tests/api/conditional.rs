//! Conditional requests: strong `ETag`s on films and list pages, `If-None-Match` → 304, and
//! `If-Match` → 412 on PATCH and DELETE, with nothing changed.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, assert_problem, spawn_app};

fn etag(response: &Response) -> String {
    let tag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        tag.len() > 2 && tag.starts_with('"') && tag.ends_with('"'),
        "a strong tag: {tag}"
    );
    tag
}

async fn get_if_none_match(app: &TestApp, path: &str, condition: &str) -> Response {
    app.request(Method::GET, path)
        .header("if-none-match", condition)
        .send()
        .await
}

async fn patch_if_match(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    condition: &str,
    body: &Value,
) -> Response {
    app.request(Method::PATCH, path)
        .bearer(&user.token)
        .header("if-match", condition)
        .json(body)
        .send()
        .await
}

/// A film of a new user, its path and its current tag.
async fn owned_film(app: &TestApp) -> (TestUser, String, String) {
    let user = app.new_user().await;
    let film = app.create_film(&user.token, "Paprika", "Madhouse").await;
    let path = format!("/api/v1/films/{}", film["id"]);
    let tag = etag(&app.get(&path, None).await);
    (user, path, tag)
}

#[tokio::test]
async fn a_film_revalidates_to_a_bodiless_304_that_keeps_every_protective_header() {
    let app = spawn_app().await;
    let (_, path, tag) = owned_film(&app).await;
    let first = app.get(&path, None).await;
    assert_eq!(etag(&first), tag, "the same film has the same tag");
    assert_eq!(first.headers()["cache-control"], "private, no-cache");

    for condition in [
        tag.clone(),
        format!("\"other\", {tag}"),
        format!("W/{tag}"),
        "*".to_owned(),
    ] {
        let response = get_if_none_match(&app, &path, &condition).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{condition}");
        assert_eq!(etag(&response), tag);
        let headers = response.headers().clone();
        for name in [
            "x-request-id",
            "x-content-type-options",
            "content-security-policy",
            "x-frame-options",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
        ] {
            assert!(headers.contains_key(name), "{name} on the 304");
        }
        assert_eq!(headers["cache-control"], "private, no-cache");
        assert!(response.bytes().await.unwrap().is_empty(), "no body");
    }

    let stale = get_if_none_match(&app, &path, "\"not-the-tag\"").await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(etag(&stale), tag);
    assert_eq!(stale.json::<Value>().await.unwrap()["name"], "Paprika");
}

#[tokio::test]
async fn a_vote_changes_the_tag_of_the_film_and_of_the_page_that_lists_it() {
    let app = spawn_app().await;
    let (user, path, tag) = owned_film(&app).await;
    let list_tag = etag(&app.get("/api/v1/films", None).await);
    assert_eq!(
        get_if_none_match(&app, "/api/v1/films", &list_tag)
            .await
            .status(),
        StatusCode::NOT_MODIFIED
    );

    let voted = app
        .put_json(
            &format!("{path}/vote"),
            &json!({"vote": "like"}),
            Some(&user.token),
        )
        .await;
    assert_eq!(voted.status(), StatusCode::OK);
    let voted_tag = etag(&voted);
    assert_ne!(voted_tag, tag, "the counts are part of the representation");

    let response = get_if_none_match(&app, &path, &tag).await;
    assert_eq!(response.status(), StatusCode::OK, "the old tag is stale");
    assert_eq!(
        etag(&response),
        voted_tag,
        "the vote's answer carries the new tag"
    );
    assert_eq!(response.json::<Value>().await.unwrap()["likes"], 1);

    let page = get_if_none_match(&app, "/api/v1/films", &list_tag).await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the page lists the new count"
    );
    assert_ne!(etag(&page), list_tag);
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_changes_nothing_and_a_current_one_writes() {
    let app = spawn_app().await;
    let (user, path, tag) = owned_film(&app).await;
    let before: Value = app.get(&path, None).await.json().await.unwrap();

    for condition in ["\"stale\"".to_owned(), format!("W/{tag}")] {
        let refused =
            patch_if_match(&app, &user, &path, &condition, &json!({"name": "Lost"})).await;
        let problem = assert_problem(refused, StatusCode::PRECONDITION_FAILED).await;
        assert_eq!(
            problem["type"], "/problems/precondition-failed",
            "{condition}"
        );
        let deleted = app
            .request(Method::DELETE, &path)
            .bearer(&user.token)
            .header("if-match", &condition)
            .send()
            .await;
        assert_problem(deleted, StatusCode::PRECONDITION_FAILED).await;
    }
    let after: Value = app.get(&path, None).await.json().await.unwrap();
    assert_eq!(
        after, before,
        "neither the PATCH nor the DELETE changed anything"
    );
    assert!(app.audit_rows("film.update").await.is_empty());

    let changed = patch_if_match(
        &app,
        &user,
        &path,
        &format!("\"x\", {tag}"),
        &json!({"year": 2006}),
    )
    .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let new_tag = etag(&changed);
    assert_ne!(new_tag, tag);
    assert_eq!(
        etag(&app.get(&path, None).await),
        new_tag,
        "the PATCH answered with the tag a read gives"
    );

    let old = patch_if_match(&app, &user, &path, &tag, &json!({"year": 2007})).await;
    assert_problem(old, StatusCode::PRECONDITION_FAILED).await;
    let deleted = app
        .request(Method::DELETE, &path)
        .bearer(&user.token)
        .header("if-match", &new_tag)
        .send()
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, None).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn of_editors_who_read_the_same_version_exactly_one_wins() {
    let app = spawn_app().await;
    let (user, path, tag) = owned_film(&app).await;
    let bodies: Vec<Value> = (0..6)
        .map(|n| json!({"name": format!("Edit {n}")}))
        .collect();
    let edits = bodies
        .iter()
        .map(|body| patch_if_match(&app, &user, &path, &tag, body));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(edits)
        .await
        .iter()
        .map(Response::status)
        .collect();
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((won, refused), (1, 5), "{statuses:?}");
    assert_eq!(app.audit_rows("film.update").await.len(), 1);
}

#[tokio::test]
async fn if_match_star_writes_an_existing_film_and_a_malformed_condition_is_400() {
    let app = spawn_app().await;
    let (user, path, _) = owned_film(&app).await;
    let star = patch_if_match(&app, &user, &path, "*", &json!({"studio": "Madhouse Inc."})).await;
    assert_eq!(star.status(), StatusCode::OK);

    for malformed in ["unquoted", "\"open", "W/ \"x\"", "*, \"x\""] {
        let response = patch_if_match(&app, &user, &path, malformed, &json!({"year": 1})).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["errors"][0]["field"], "if-match", "{malformed}");
        let response = get_if_none_match(&app, &path, malformed).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            problem["errors"][0]["field"], "if-none-match",
            "{malformed}"
        );
    }
    let film: Value = app.get(&path, None).await.json().await.unwrap();
    assert_eq!(film["studio"], "Madhouse Inc.");
}

#[tokio::test]
async fn without_conditions_reads_and_writes_behave_as_before() {
    let app = spawn_app().await;
    let (user, path, _) = owned_film(&app).await;
    let changed = app
        .patch_json(&path, &json!({"name": "Paprika (2006)"}), Some(&user.token))
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(
        app.delete(&path, Some(&user.token)).await.status(),
        StatusCode::NO_CONTENT
    );
}
