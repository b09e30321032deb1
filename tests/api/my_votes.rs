//! `GET /api/v1/users/me/votes`: each caller reads their own votes, and only theirs, for the
//! films they name; the film answers themselves stay the same for everyone.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn vote(app: &TestApp, token: &str, film: i64, vote: &str) {
    let response = app
        .put_json(
            &format!("/api/v1/films/{film}/vote"),
            &json!({ "vote": vote }),
            Some(token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "vote");
}

async fn my_votes(app: &TestApp, token: &str, film_ids: &str) -> Value {
    let response = app
        .get(
            &format!("/api/v1/users/me/votes?film_ids={film_ids}"),
            Some(token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "my votes");
    response.json().await.expect("a JSON body")
}

#[tokio::test]
async fn a_caller_reads_their_own_votes_and_nobody_elses() {
    let app = spawn_app().await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let film = |value: &Value| value["id"].as_i64().expect("a film id");
    let first = film(&app.create_film(&alice.token, "Ponyo", "Ghibli").await);
    let second = film(&app.create_film(&alice.token, "Akira", "TMS").await);
    let unvoted = film(&app.create_film(&alice.token, "Paprika", "Madhouse").await);
    vote(&app, &alice.token, first, "like").await;
    vote(&app, &alice.token, second, "dislike").await;
    vote(&app, &bob.token, second, "like").await;

    let ids = format!("{first},{second},{unvoted},999999");
    assert_eq!(
        my_votes(&app, &alice.token, &ids).await,
        json!({ "items": [{ "film_id": first, "vote": "like" },
                          { "film_id": second, "vote": "dislike" }] })
    );
    assert_eq!(
        my_votes(&app, &bob.token, &ids).await,
        json!({ "items": [{ "film_id": second, "vote": "like" }] })
    );

    let withdrawn = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/films/{first}/vote"),
        )
        .bearer(&alice.token)
        .send()
        .await;
    assert_eq!(withdrawn.status(), StatusCode::OK);
    assert_eq!(
        my_votes(&app, &alice.token, &ids).await,
        json!({ "items": [{ "film_id": second, "vote": "dislike" }] })
    );

    let anonymous = app
        .get(&format!("/api/v1/users/me/votes?film_ids={first}"), None)
        .await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn film_ids_that_are_not_1_to_100_plain_ids_are_a_400_naming_them() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let too_many = (1..=101)
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for bad in [
        "",
        "1,,2",
        "+1",
        "-1",
        "1.5",
        "abc",
        "99999999999999999999",
        &too_many,
    ] {
        let response = app
            .get(
                &format!("/api/v1/users/me/votes?film_ids={bad}"),
                Some(&user.token),
            )
            .await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            problem["errors"][0]["field"], "film_ids",
            "{bad:?}: {problem}"
        );
    }
    let missing = app.get("/api/v1/users/me/votes", Some(&user.token)).await;
    assert_problem(missing, StatusCode::BAD_REQUEST).await;
}
