//! The read cache (`src/read_cache.rs`): film reads are served from memory, and every write
//! is seen by the next read on the instance that made it, and on the others once the
//! broadcast arrives. Each test reads first (so the answer is kept), writes, then reads again.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    account_deletion::delete_account,
    cluster::spawn_cluster,
    helpers::{TestApp, spawn_app},
    test_redis::test_redis_url,
};

async fn read(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app.get(path, None).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reads `path` twice: the second answer comes from the cache and must be the same.
async fn read_kept(app: &TestApp, path: &str) -> Value {
    let (status, first) = read(app, path).await;
    assert_eq!(status, StatusCode::OK, "{path}");
    assert_eq!(
        read(app, path).await,
        (StatusCode::OK, first.clone()),
        "{path}"
    );
    first
}

fn film_path(film: &Value) -> String {
    format!("/api/v1/films/{}", film["id"])
}

/// The page of the list that shows `film` (films are listed by id), and `film` on it.
async fn page_showing(app: &TestApp, film: &Value) -> (Value, Value) {
    let page = read_kept(app, "/api/v1/films?limit=100").await;
    let shown = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["id"] == film["id"])
        .cloned()
        .expect("the film is on the first page");
    (page, shown)
}

#[tokio::test]
async fn a_change_to_a_film_is_read_at_once_on_the_same_instance() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let film = app.create_film(&owner.token, "Kept", "Cache Studio").await;
    read_kept(&app, &film_path(&film)).await;
    let before = read_kept(&app, "/api/v1/films?limit=100").await;

    let response = app
        .patch_json(
            &film_path(&film),
            &json!({ "name": "Changed" }),
            Some(&owner.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read(&app, &film_path(&film)).await.1["name"], "Changed");
    assert_eq!(page_showing(&app, &film).await.1["name"], "Changed");

    let added = app.create_film(&owner.token, "Added", "Cache Studio").await;
    let (_, after) = page_showing(&app, &added).await;
    assert_eq!(after["name"], "Added");
    let total = read(&app, "/api/v1/films?limit=100").await.1["total"].clone();
    assert_eq!(total, before["total"].as_i64().unwrap() + 1);

    let response = app.delete(&film_path(&film), Some(&owner.token)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(read(&app, &film_path(&film)).await.0, StatusCode::NOT_FOUND);
    let page = read(&app, "/api/v1/films?limit=100").await.1;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|item| item["id"] != film["id"]),
        "the deleted film is still listed"
    );
}

#[tokio::test]
async fn a_vote_changes_the_counts_a_cached_read_shows() {
    let app = spawn_app().await;
    let voter = app.new_user().await;
    let film = app.create_film(&voter.token, "Voted", "Cache Studio").await;
    assert_eq!(read_kept(&app, &film_path(&film)).await["likes"], 0);
    assert_eq!(page_showing(&app, &film).await.1["likes"], 0);

    let vote_path = format!("{}/vote", film_path(&film));
    let response = app
        .put_json(&vote_path, &json!({ "vote": "like" }), Some(&voter.token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read(&app, &film_path(&film)).await.1["likes"], 1);
    assert_eq!(page_showing(&app, &film).await.1["likes"], 1);

    // The seed's route votes too.
    let response = app
        .get(&format!("/?dislike={}", film["id"]), Some(&voter.token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let counts = read(&app, &film_path(&film)).await.1;
    assert_eq!(
        (&counts["likes"], &counts["dislikes"]),
        (&json!(0), &json!(1))
    );
    assert_eq!(page_showing(&app, &film).await.1["dislikes"], 1);

    let response = app.delete(&vote_path, Some(&voter.token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read(&app, &film_path(&film)).await.1["dislikes"], 0);
    assert_eq!(page_showing(&app, &film).await.1["dislikes"], 0);
}

#[tokio::test]
async fn a_deleted_account_leaves_its_films_without_author_and_its_votes_uncounted() {
    let app = spawn_app().await;
    let leaving = app.new_user().await;
    let film = app
        .create_film(&leaving.token, "Orphan", "Cache Studio")
        .await;
    let vote_path = format!("{}/vote", film_path(&film));
    let response = app
        .put_json(&vote_path, &json!({ "vote": "like" }), Some(&leaving.token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let kept = read_kept(&app, &film_path(&film)).await;
    assert_eq!(
        (&kept["owner"], &kept["likes"]),
        (&json!(leaving.username), &json!(1))
    );
    page_showing(&app, &film).await;

    let response = delete_account(&app, &leaving.token, &leaving.password).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let now = read(&app, &film_path(&film)).await.1;
    assert_eq!((&now["owner"], &now["likes"]), (&Value::Null, &json!(0)));
    let (_, listed) = page_showing(&app, &film).await;
    assert_eq!(
        (&listed["owner"], &listed["likes"]),
        (&Value::Null, &json!(0))
    );
}

/// Polls `path` on `app` until `seen` holds; the broadcast takes milliseconds.
async fn seen_within(app: &TestApp, path: &str, seen: impl Fn(&(StatusCode, Value)) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let answer = read(app, path).await;
        if seen(&answer) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the other instance still answers {answer:?} for {path}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn instances_sharing_a_database_and_redis_see_each_others_writes() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let (first, second) = spawn_cluster(&redis_url, &[]).await;
    let owner = first.new_user().await;
    let film = first
        .create_film(&owner.token, "Shared", "Cache Studio")
        .await;
    let path = film_path(&film);
    let list = "/api/v1/films?limit=100";
    // Both instances keep what they read.
    for app in [&first, &second] {
        read_kept(app, &path).await;
        read_kept(app, list).await;
    }

    let response = first
        .put_json(
            &format!("{path}/vote"),
            &json!({ "vote": "like" }),
            Some(&owner.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    seen_within(&second, &path, |(_, film)| film["likes"] == 1).await;
    seen_within(&second, list, |(_, page)| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == film["id"] && f["likes"] == 1)
    })
    .await;

    // And the other way round.
    let response = second
        .patch_json(&path, &json!({ "studio": "Moved" }), Some(&owner.token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    seen_within(&first, &path, |(_, film)| film["studio"] == "Moved").await;

    let added = second
        .create_film(&owner.token, "Second's", "Cache Studio")
        .await;
    seen_within(&first, list, |(_, page)| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == added["id"])
    })
    .await;

    let response = first.delete(&path, Some(&owner.token)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    seen_within(&second, &path, |(status, _)| {
        *status == StatusCode::NOT_FOUND
    })
    .await;
}
