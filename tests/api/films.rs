//! The `/api/v1/films` resource: every route's happy path, pagination, search and votes.

use filmvault::db;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn creating_a_film_answers_201_with_its_location_and_the_stored_film() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let response = app
        .post_json(
            "/api/v1/films",
            &json!({ "name": "  Spirited Away ", "studio": "Studio Ghibli", "year": 2001 }),
            Some(&user.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let film: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/films/{}", film["id"]));
    assert_eq!(
        film["name"], "Spirited Away",
        "surrounding whitespace is trimmed"
    );
    assert_eq!(film["year"], 2001);
    assert_eq!(film["owner"], user.username.as_str());
    assert_eq!(film["likes"], 0);
    assert!(film["created_at"].is_string() && film["updated_at"].is_string());

    let fetched: Value = app.get(&location, None).await.json().await.unwrap();
    assert_eq!(fetched, film);
}

#[tokio::test]
async fn a_film_can_be_read_by_anyone_and_a_missing_one_is_404() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let film = app
        .create_film(&user.token, "Persepolis", "2.4.7. Films")
        .await;
    let response = app
        .get(&format!("/api/v1/films/{}", film["id"]), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for path in [
        "/api/v1/films/999999",
        "/api/v1/films/abc",
        "/api/v1/films/-1",
        "/api/v1/films/99999999999999999999",
    ] {
        assert_problem(app.get(path, None).await, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn the_random_film_comes_from_the_catalogue() {
    let app = spawn_app_with(&[("SEED_DEMO_DATA", "true")]).await;
    let response = app.get("/api/v1/films/random", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let film: Value = response.json().await.unwrap();
    let id = film["id"].as_i64().unwrap();
    assert!((1..=20).contains(&id));

    let empty = spawn_app().await;
    assert_problem(
        empty.get("/api/v1/films/random", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// The draw comes from memory once the highest id is known (`read_cache`): a film added
/// since must be in it at once, and a deleted one out of it, its id skipped.
#[tokio::test]
async fn the_random_film_draws_from_films_just_added_and_never_from_films_deleted() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let drawn = || async {
        let response = app.get("/api/v1/films/random", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let first = app.create_film(&user.token, "First", "Studio").await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        drawn().await,
        first,
        "the only film, now kept with the highest id"
    );

    let second = app.create_film(&user.token, "Second", "Studio").await["id"]
        .as_i64()
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    // Each draw is one of two films: 64 draws missing one would be a 1-in-10^19 chance.
    for _ in 0..64 {
        seen.insert(drawn().await);
    }
    assert_eq!(
        seen,
        [first, second].into(),
        "the film just added is drawn too"
    );

    let deleted = app
        .delete(&format!("/api/v1/films/{first}"), Some(&user.token))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for _ in 0..32 {
        assert_eq!(
            drawn().await,
            second,
            "a draw of the deleted id moves on to the next film"
        );
    }
    let deleted = app
        .delete(&format!("/api/v1/films/{second}"), Some(&user.token))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get("/api/v1/films/random", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// An instance may hold a highest id above the last film for a moment: another instance
/// deleted that film and its announcement is still on the way. A draw past the last film
/// wraps around to the first, never a 404 while films exist. (The test writes straight to
/// the database, which no instance hears of.)
#[tokio::test]
async fn a_draw_past_a_film_deleted_unannounced_wraps_around_instead_of_a_404() {
    const FAR: i64 = 1_000_000;
    let app = spawn_app().await;
    let user = app.new_user().await;
    let first = app.create_film(&user.token, "First", "Studio").await["id"]
        .as_i64()
        .unwrap();
    db::execute!(
        &mut app.db().await,
        sqlite: "INSERT INTO films (id, name, studio) VALUES ($1, 'Far', 'Studio')",
        postgres: "INSERT INTO films (id, name, studio) OVERRIDING SYSTEM VALUE
                   VALUES ($1, 'Far', 'Studio')",
        FAR
    )
    .await
    .unwrap();
    let random = app.get("/api/v1/films/random", None).await;
    assert_eq!(
        random.status(),
        StatusCode::OK,
        "the highest id, {FAR}, is kept now"
    );
    db::execute!(&mut app.db().await, "DELETE FROM films WHERE id = $1", FAR)
        .await
        .unwrap();
    // Nearly every draw now lands past the first film, where nothing is left.
    for _ in 0..16 {
        let response = app.get("/api/v1/films/random", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let film: Value = response.json().await.unwrap();
        assert_eq!(film["id"], first);
    }
}

#[tokio::test]
async fn the_list_pages_through_the_catalogue_and_caps_the_page_size() {
    let app = spawn_app_with(&[("SEED_DEMO_DATA", "true")]).await;
    let first: Value = app
        .get("/api/v1/films?limit=5", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["total"], 20);
    assert_eq!(first["limit"], 5);
    assert_eq!(first["items"].as_array().unwrap().len(), 5);
    let second: Value = app
        .get("/api/v1/films?limit=5&offset=5", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"][0]["id"], 6);

    let default: Value = app.get("/api/v1/films", None).await.json().await.unwrap();
    assert_eq!(default["items"].as_array().unwrap().len(), 20);
    assert_eq!(default["limit"], 20);

    for query in [
        "limit=101",
        "limit=0",
        "limit=-5",
        "offset=-1",
        "offset=100001",
    ] {
        let response = app.get(&format!("/api/v1/films?{query}"), None).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    for query in [
        "limit=abc",
        "limit=1&limit=2",
        "sort=name",
        "limit=99999999999999999999",
    ] {
        let response = app.get(&format!("/api/v1/films?{query}"), None).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn search_matches_names_and_treats_wildcards_literally() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for name in ["The 100% Film", "The Hundred Film", "frozen planet"] {
        app.create_film(&user.token, name, "Test Studio").await;
    }
    let found: Value = app
        .get("/api/v1/films?q=100%25", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["name"], "The 100% Film");

    let case_insensitive: Value = app
        .get("/api/v1/films?q=FROZEN", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(case_insensitive["total"], 1);

    let underscore: Value = app
        .get("/api/v1/films?q=_", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(underscore["total"], 0, "_ is not a wildcard");

    let too_long = app
        .get(&format!("/api/v1/films?q={}", "a".repeat(101)), None)
        .await;
    assert_problem(too_long, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn patch_changes_only_the_fields_sent_and_null_clears_the_year() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let created = app
        .post_json(
            "/api/v1/films",
            &json!({ "name": "Perfect Blue", "studio": "Madhouse", "year": 1997 }),
            Some(&user.token),
        )
        .await;
    let film: Value = created.json().await.unwrap();
    let path = format!("/api/v1/films/{}", film["id"]);

    let renamed: Value = app
        .patch_json(
            &path,
            &json!({ "name": "Perfect Blue (1997)" }),
            Some(&user.token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Perfect Blue (1997)");
    assert_eq!(renamed["studio"], "Madhouse");
    assert_eq!(renamed["year"], 1997);

    let cleared: Value = app
        .patch_json(&path, &json!({ "year": null }), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["year"], Value::Null);
    assert_eq!(cleared["name"], "Perfect Blue (1997)");

    let empty = app.patch_json(&path, &json!({}), Some(&user.token)).await;
    assert_problem(empty, StatusCode::BAD_REQUEST).await;

    // A name can be changed, never removed: null is refused, not read as "leave it".
    let nameless = app
        .patch_json(&path, &json!({ "name": null }), Some(&user.token))
        .await;
    let problem = assert_problem(nameless, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"][0]["field"], "name");
    let unchanged: Value = app.get(&path, None).await.json().await.unwrap();
    assert_eq!(unchanged["name"], "Perfect Blue (1997)");
}

#[tokio::test]
async fn votes_are_one_per_user_and_film_and_can_be_changed_or_withdrawn() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let fan = app.new_user().await;
    let film = app
        .create_film(&owner.token, "Howl's Moving Castle", "Studio Ghibli")
        .await;
    let vote_path = format!("/api/v1/films/{}/vote", film["id"]);
    let vote = async |token: &str, value: &str| {
        let response = app
            .put_json(&vote_path, &json!({ "vote": value }), Some(token))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let film: Value = response.json().await.unwrap();
        (
            film["likes"].as_i64().unwrap(),
            film["dislikes"].as_i64().unwrap(),
        )
    };

    assert_eq!(vote(&fan.token, "like").await, (1, 0));
    assert_eq!(
        vote(&fan.token, "like").await,
        (1, 0),
        "repeating is idempotent"
    );
    assert_eq!(vote(&owner.token, "like").await, (2, 0));
    assert_eq!(
        vote(&fan.token, "dislike").await,
        (1, 1),
        "a vote can change"
    );

    let withdrawn = app.delete(&vote_path, Some(&fan.token)).await;
    assert_eq!(withdrawn.status(), StatusCode::OK);
    let film: Value = withdrawn.json().await.unwrap();
    assert_eq!(
        (film["likes"].as_i64(), film["dislikes"].as_i64()),
        (Some(1), Some(0))
    );

    let bad_vote = app
        .put_json(&vote_path, &json!({ "vote": "love" }), Some(&fan.token))
        .await;
    assert_problem(bad_vote, StatusCode::BAD_REQUEST).await;

    let missing = app
        .put_json(
            "/api/v1/films/424242/vote",
            &json!({ "vote": "like" }),
            Some(&fan.token),
        )
        .await;
    assert_problem(missing, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn deleting_a_film_deletes_it_and_its_votes() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let film = app
        .create_film(&user.token, "Mind Game", "Studio 4°C")
        .await;
    let id = film["id"].as_i64().unwrap();
    app.put_json(
        &format!("/api/v1/films/{id}/vote"),
        &json!({ "vote": "like" }),
        Some(&user.token),
    )
    .await;
    let response = app
        .delete(&format!("/api/v1/films/{id}"), Some(&user.token))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let votes: i64 = db::fetch_scalar!(
        &mut app.db().await,
        "SELECT count(*) FROM votes WHERE film_id = $1",
        id
    )
    .await
    .unwrap();
    assert_eq!(votes, 0);
}

#[tokio::test]
async fn sql_injection_strings_are_stored_and_returned_literally_and_the_tables_survive() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let payloads = [
        "Robert'); DROP TABLE films;--",
        "' OR '1'='1",
        "1; DELETE FROM users WHERE 1=1; --",
        "\" UNION SELECT password_hash FROM users --",
    ];
    for payload in payloads {
        let film = app.create_film(&user.token, payload, payload).await;
        assert_eq!(film["name"], payload);
        assert_eq!(film["studio"], payload);
        let fetched: Value = app
            .get(&format!("/api/v1/films/{}", film["id"]), None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(fetched["name"], payload);
    }
    let search: Value = app
        .get("/api/v1/films?q=%27%20OR%20%271%27%3D%271", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        search["total"], 1,
        "the injection string is searched for, not executed"
    );

    let list: Value = app
        .get("/api/v1/films?limit=100", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], payloads.len());
    assert_eq!(
        app.login(&user.username, &user.password).await.status(),
        StatusCode::OK
    );
    let users: i64 = db::fetch_scalar!(&mut app.db().await, "SELECT count(*) FROM users")
        .await
        .unwrap();
    assert_eq!(users, 1);
}

/// Films created at the same moment are written together (one statement per table): each
/// request must still get its own film back, under its own id, owned by its caller, with one
/// audit row that names that id and that request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn films_created_at_once_each_get_their_own_film_and_audit_row() {
    const EACH: usize = 20;
    let app = spawn_app().await;
    let users = [
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
    ];
    let app = &app;
    let creations = (0..EACH * users.len()).map(|n| {
        let user = &users[n % users.len()];
        let year = 1950 + i64::try_from(n).unwrap();
        let body = json!({ "name": format!("Together {n}"), "studio": "Batch", "year": year });
        async move {
            let response = app
                .request(reqwest::Method::POST, "/api/v1/films")
                .bearer(&user.token)
                .header("x-request-id", format!("together-{n}"))
                .json(&body)
                .send()
                .await;
            assert_eq!(response.status(), StatusCode::CREATED, "creation {n}");
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            let film: Value = response.json().await.unwrap();
            (n, user, location, film)
        }
    });
    let created = futures_util::future::join_all(creations).await;

    let audited = app.audit_rows("film.create").await;
    assert_eq!(audited.len(), created.len(), "one audit row per film");
    for (n, user, location, film) in &created {
        let id = film["id"].as_i64().unwrap();
        assert_eq!(film["name"], format!("Together {n}"), "creation {n}");
        assert_eq!(film["year"], 1950 + i64::try_from(*n).unwrap());
        assert_eq!(film["owner"], user.username.as_str());
        assert_eq!(*location, format!("/api/v1/films/{id}"));
        let stored: Value = app.get(location, None).await.json().await.unwrap();
        assert_eq!(
            stored["name"], film["name"],
            "the stored film is the one answered"
        );
        assert_eq!(stored["owner"], user.username.as_str());
        let request_id = format!("together-{n}");
        let row = audited
            .iter()
            .find(|row| row.request_id.as_deref() == Some(request_id.as_str()))
            .unwrap_or_else(|| panic!("no audit row for {request_id}"));
        assert_eq!(row.target.as_deref(), Some(format!("film:{id}").as_str()));
        assert_eq!(row.actor_id, Some(user.id));
    }
}
