//! Several instances of the service on one database, racing on the same rows: the rules that
//! hold on one instance hold across instances. On PostgreSQL (`TEST_DATABASE_URL`) the
//! instances run side by side, and each rule stands on the lock or constraint that
//! docs/storage.md names; on SQLite they share one file, whose write lock serializes them.
//! Every race is started at once from both sides and repeated, so that an unguarded
//! check-then-act would be caught in the act.

use std::time::Duration;

use filmvault::db;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    account_deletion::delete_account,
    helpers::{
        STRONG_PASSWORD, TestApp, TestDatabase, TestUser, spawn_app_on, spawn_app_with,
        unique_username,
    },
};

/// How often each race is run.
const ROUNDS: usize = 8;

/// Two instances of the service on one fresh database.
/// Without `REDIS_URL` (the storage's own guarantees are under test), so without the read
/// cache, which needs the broadcast to hear the other instance's writes.
async fn two_instances() -> [TestApp; 2] {
    let no_cache = [("READ_CACHE", "false")];
    let first = spawn_app_with(&no_cache).await;
    let second = spawn_app_on(&first.database, &no_cache).await;
    [first, second]
}

/// `a` for even `i`, `b` for odd: requests spread over both instances.
fn alternate<'a>(i: usize, a: &'a TestApp, b: &'a TestApp) -> &'a TestApp {
    if i.is_multiple_of(2) { a } else { b }
}

async fn active_admins(app: &TestApp) -> i64 {
    db::fetch_scalar!(
        &mut app.db().await,
        "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled"
    )
    .await
    .unwrap()
}

async fn set_role(app: &TestApp, admin: &TestUser, target: i64, role: &str) -> StatusCode {
    app.patch_json(
        &format!("/api/v1/admin/users/{target}"),
        &json!({ "role": role }),
        Some(&admin.token),
    )
    .await
    .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_demotions_of_the_last_two_admins_on_two_instances_leave_one() {
    let [a, b] = two_instances().await;
    let mut x = a.new_admin().await;
    let mut y = a.new_admin().await;
    for round in 0..ROUNDS {
        assert_eq!(active_admins(&a).await, 2, "round {round} starts with two");
        // Each demotes the other, on its own instance, at the same moment.
        let (x_demotes_y, y_demotes_x) = tokio::join!(
            set_role(&a, &x, y.id, "user"),
            set_role(&b, &y, x.id, "user"),
        );
        assert_eq!(active_admins(&a).await, 1, "round {round}");
        let outcomes = [x_demotes_y, y_demotes_x];
        assert_eq!(
            outcomes.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "round {round}: {outcomes:?}"
        );
        // The survivor promotes the other again, who logs in anew (the demotion ended their
        // sessions).
        let (survivor, demoted) = if x_demotes_y == StatusCode::OK {
            (&x, &mut y)
        } else {
            (&y, &mut x)
        };
        assert_eq!(
            set_role(&a, survivor, demoted.id, "admin").await,
            StatusCode::OK
        );
        demoted.token = a.access_token(&demoted.username, &demoted.password).await;
    }
}

/// The last two active admins delete their accounts at once, on two instances: the rule that
/// keeps one counts them one after the other (`Lock::AccountAdministration`). The password
/// checks before the transactions take long enough to keep two deletions apart by chance; on
/// PostgreSQL the test holds the admins' films, which each deletion updates after its count,
/// so both transactions are in flight together before either can commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_deletions_of_the_last_two_admins_on_two_instances_leave_one() {
    let [a, b] = two_instances().await;
    let mut survivor = a.new_admin().await;
    for round in 0..ROUNDS / 2 {
        let newcomer = a.new_admin().await;
        for admin in [&survivor, &newcomer] {
            a.create_film(&admin.token, "Held", "Studio").await;
        }
        assert_eq!(active_admins(&a).await, 2, "round {round} starts with two");
        let held = hold_films_of(&a, &[survivor.id, newcomer.id]).await;
        let (first, second, ()) = tokio::join!(
            delete_account(&a, &survivor.token, &survivor.password),
            delete_account(&b, &newcomer.token, &newcomer.password),
            release_after(held, Duration::from_millis(1500)),
        );
        let outcomes = [first.status(), second.status()];
        assert_eq!(active_admins(&a).await, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes.contains(&StatusCode::NO_CONTENT) && outcomes.contains(&StatusCode::CONFLICT),
            "round {round}: {outcomes:?}"
        );
        if outcomes[0] == StatusCode::NO_CONTENT {
            survivor = newcomer;
        }
    }
}

/// On PostgreSQL: a transaction holding the row locks of the films of `owners`.
async fn hold_films_of(app: &TestApp, owners: &[i64]) -> Option<db::Connection> {
    let mut connection = app.db().await;
    let db::Connection::Postgres(postgres) = &mut connection else {
        return None;
    };
    sqlx::query("BEGIN").execute(&mut **postgres).await.unwrap();
    sqlx::query("SELECT id FROM films WHERE owner_id = ANY($1) FOR UPDATE")
        .bind(owners)
        .execute(&mut **postgres)
        .await
        .unwrap();
    Some(connection)
}

async fn release_after(held: Option<db::Connection>, delay: Duration) {
    if let Some(db::Connection::Postgres(mut postgres)) = held {
        tokio::time::sleep(delay).await;
        sqlx::query("COMMIT").execute(&mut *postgres).await.unwrap();
    }
}

/// `count` users, registered and logged in, alternately on `a` and `b`.
async fn users_on(a: &TestApp, b: &TestApp, count: usize) -> Vec<TestUser> {
    let mut users = Vec::with_capacity(count);
    for i in 0..count {
        users.push(alternate(i, a, b).new_user().await);
    }
    users
}

async fn vote(app: &TestApp, user: &TestUser, film: i64, vote: Option<&str>) -> StatusCode {
    let path = format!("/api/v1/films/{film}/vote");
    let response = match vote {
        Some(vote) => {
            app.put_json(&path, &json!({ "vote": vote }), Some(&user.token))
                .await
        }
        None => app.delete(&path, Some(&user.token)).await,
    };
    response.status()
}

async fn counters(app: &TestApp, film: i64) -> (i64, i64) {
    let film: Value = app
        .get(&format!("/api/v1/films/{film}"), None)
        .await
        .json()
        .await
        .unwrap();
    (
        film["likes"].as_i64().unwrap(),
        film["dislikes"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_votes_from_many_users_on_two_instances_give_exact_counts() {
    const VOTERS: usize = 24;
    let [a, b] = two_instances().await;
    let users = users_on(&a, &b, VOTERS).await;
    let film = a
        .create_film(&users[0].token, "Contested", "Two Doors")
        .await["id"]
        .as_i64()
        .unwrap();
    let instance = |i: usize| alternate(i, &a, &b);

    // Everyone likes it at once, and a second time, from the other instance.
    let likes = users.iter().enumerate().flat_map(|(i, user)| {
        [
            vote(instance(i), user, film, Some("like")),
            vote(instance(i + 1), user, film, Some("like")),
        ]
    });
    let statuses = join_all(likes).await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    assert_eq!(counters(&a, film).await, (24, 0));

    // Then a third change their mind, a third withdraw, a third like again: all at once.
    let changes = users.iter().enumerate().map(|(i, user)| {
        let choice = match i % 3 {
            0 => Some("dislike"),
            1 => None,
            _ => Some("like"),
        };
        vote(instance(i), user, film, choice)
    });
    let statuses = join_all(changes).await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    assert_eq!(counters(&a, film).await, (8, 8));
    assert_eq!(counters(&b, film).await, (8, 8));
    let stored: (i64, i64) = db::fetch_one!(
        &mut a.db().await,
        "SELECT count(*) FILTER (WHERE value = 1), count(*) FILTER (WHERE value = -1)
         FROM votes WHERE film_id = $1",
        film
    )
    .await
    .unwrap();
    assert_eq!(stored, (8, 8), "the counters match the votes");
}

/// Votes arriving together are written together (one statement for a queue of them); a vote
/// that cannot be recorded must still fail alone: a vote for a film that never existed, or
/// for one deleted while the votes are in flight, is a 404 or (deleted after it counted) a
/// 200, and the votes beside it in the same statement count exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vote_that_cannot_count_fails_alone_among_votes_cast_at_once() {
    const VOTERS: usize = 12;
    let [a, b] = two_instances().await;
    let users = users_on(&a, &b, VOTERS).await;
    let film = |name: &'static str| {
        let token = users[0].token.clone();
        let app = &a;
        async move {
            app.create_film(&token, name, "Crowded House").await["id"]
                .as_i64()
                .unwrap()
        }
    };
    let (kept, doomed, later) = (
        film("Kept").await,
        film("Doomed").await,
        film("Later").await,
    );
    a.delete(&format!("/api/v1/films/{later}"), Some(&users[0].token))
        .await
        .error_for_status()
        .unwrap();
    let missing = later + 1_000_000;
    let instance = |i: usize| alternate(i, &a, &b);

    for round in 0..ROUNDS {
        let doomed = if round == 0 {
            doomed
        } else {
            film("Doomed again").await
        };
        let votes = users.iter().enumerate().flat_map(|(i, user)| {
            let like = if round % 2 == 0 { "like" } else { "dislike" };
            [
                vote(instance(i), user, kept, Some(like)),
                vote(instance(i + 1), user, later, Some("like")),
                vote(instance(i), user, missing, Some("dislike")),
                vote(instance(i + 1), user, doomed, Some("like")),
            ]
        });
        let deletion = async {
            a.delete(&format!("/api/v1/films/{doomed}"), Some(&users[0].token))
                .await
                .status()
        };
        let (statuses, deleted) = futures_util::join!(join_all(votes), deletion);
        assert_eq!(deleted, StatusCode::NO_CONTENT, "round {round}");
        for (i, chunk) in statuses.chunks(4).enumerate() {
            let [on_kept, on_later, on_missing, on_doomed] = chunk else {
                unreachable!("four votes per user")
            };
            let context = format!("round {round}, user {i}: {chunk:?}");
            assert_eq!(*on_kept, StatusCode::OK, "{context}");
            assert_eq!(*on_later, StatusCode::NOT_FOUND, "{context}");
            assert_eq!(*on_missing, StatusCode::NOT_FOUND, "{context}");
            assert!(
                [StatusCode::OK, StatusCode::NOT_FOUND].contains(on_doomed),
                "{context}"
            );
        }
        let expected = if round % 2 == 0 { (12, 0) } else { (0, 12) };
        assert_eq!(counters(&a, kept).await, expected, "round {round}");
        assert_eq!(counters(&b, kept).await, expected, "round {round}");
    }
    let stray: i64 = db::fetch_scalar!(
        &mut a.db().await,
        "SELECT count(*) FROM votes WHERE film_id <> $1",
        kept
    )
    .await
    .unwrap();
    assert_eq!(stray, 0, "no vote is kept for a film that is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refresh_token_presented_on_two_instances_at_once_has_one_winner_and_ends_the_session()
{
    let [a, b] = two_instances().await;
    let user = a.new_user().await;
    for round in 0..ROUNDS {
        let (_, refresh) = a.token_pair(&user.username, &user.password).await;
        let (on_a, on_b) = tokio::join!(a.refresh(&refresh), b.refresh(&refresh));
        let statuses = [on_a.status(), on_b.status()];
        let winners: Vec<Value> = join_all(
            [on_a, on_b]
                .into_iter()
                .filter(|r| r.status() == StatusCode::OK)
                .map(|r| async { r.json::<Value>().await.unwrap() }),
        )
        .await;
        assert_eq!(winners.len(), 1, "round {round}: {statuses:?}");
        assert!(
            statuses.contains(&StatusCode::UNAUTHORIZED),
            "round {round}: {statuses:?}"
        );
        // The loser presented a token already rotated: reuse, so the winner's session is over.
        let successor = winners[0]["refresh_token"].as_str().unwrap();
        assert_eq!(
            a.refresh(successor).await.status(),
            StatusCode::UNAUTHORIZED,
            "round {round}: the session outlived the reuse"
        );
    }
    let reuses = a.wait_for_audit("auth.refresh_reuse", ROUNDS).await;
    assert_eq!(reuses.len(), ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_one_instance_ends_a_refresh_racing_it_on_another() {
    let [a, b] = two_instances().await;
    let user = a.new_user().await;
    for round in 0..ROUNDS {
        let (access, refresh) = a.token_pair(&user.username, &user.password).await;
        let nothing = json!({});
        let (logout, refreshed) = tokio::join!(
            a.post_json("/api/v1/auth/logout", &nothing, Some(&access)),
            b.refresh(&refresh),
        );
        assert_eq!(logout.status(), StatusCode::NO_CONTENT, "round {round}");
        // Either the refresh came first and the logout ended its successor too, or it came
        // second and found the session over.
        if refreshed.status() == StatusCode::OK {
            let body: Value = refreshed.json().await.unwrap();
            let successor = body["refresh_token"].as_str().unwrap();
            assert_eq!(
                b.refresh(successor).await.status(),
                StatusCode::UNAUTHORIZED,
                "round {round}: a token refreshed during the logout outlived it"
            );
        } else {
            assert_eq!(
                refreshed.status(),
                StatusCode::UNAUTHORIZED,
                "round {round}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_created_at_once_on_two_instances_never_exceed_the_limit() {
    const LIMIT: usize = 20;
    const ROOM: usize = 3;
    let [a, b] = two_instances().await;
    let user = a.new_user().await;
    for _ in 0..LIMIT - ROOM {
        a.create_api_key(&user.token, &["read"]).await;
    }
    let key = json!({ "name": "racing key", "scopes": ["read"] });
    let attempts = (0..4 * ROOM).map(|i| {
        let app = alternate(i, &a, &b);
        app.post_json("/api/v1/users/me/api-keys", &key, Some(&user.token))
    });
    let statuses: Vec<StatusCode> = join_all(attempts)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, ROOM, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::CREATED, StatusCode::CONFLICT].contains(s)),
        "{statuses:?}"
    );
    let listed: Value = b
        .get("/api/v1/users/me/api-keys", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_film_deleted_at_once_on_two_instances_is_deleted_once() {
    let [a, b] = two_instances().await;
    let owner = a.new_user().await;
    for round in 0..ROUNDS {
        let film = a
            .create_film(&owner.token, "Short-lived", "Somewhere")
            .await["id"]
            .as_i64()
            .unwrap();
        let path = format!("/api/v1/films/{film}");
        let deletes = (0..4).map(|i| {
            let app = alternate(i, &a, &b);
            app.delete(&path, Some(&owner.token))
        });
        let statuses: Vec<StatusCode> = join_all(deletes)
            .await
            .iter()
            .map(reqwest::Response::status)
            .collect();
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == StatusCode::NO_CONTENT)
                .count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND].contains(s)),
            "round {round}: {statuses:?}"
        );
        let target = format!("film:{film}");
        let audited = a
            .audit_rows("film.delete")
            .await
            .into_iter()
            .filter(|row| row.target.as_deref() == Some(target.as_str()))
            .count();
        assert_eq!(audited, 1, "round {round}: one deletion, one audit event");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_username_registered_at_once_on_two_instances_in_any_case_is_one_account() {
    let [a, b] = two_instances().await;
    for round in 0..ROUNDS {
        let name = unique_username("Racer");
        let spellings = [
            name.clone(),
            name.to_lowercase(),
            name.to_uppercase(),
            name.clone(),
        ];
        let registrations = spellings.iter().enumerate().map(|(i, spelling)| {
            let app = alternate(i, &a, &b);
            async move {
                app.post_json(
                    "/api/v1/auth/register",
                    &json!({
                        "username": spelling,
                        "email": format!("{spelling}-{i}@example.com"),
                        "password": STRONG_PASSWORD,
                    }),
                    None,
                )
                .await
                .status()
            }
        });
        let statuses = join_all(registrations).await;
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == StatusCode::ACCEPTED)
                .count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| [StatusCode::ACCEPTED, StatusCode::CONFLICT].contains(s)),
            "round {round}: {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_an_empty_database_migrate_and_seed_it_once() {
    for round in 0..ROUNDS {
        let database = TestDatabase::create().await;
        let seed = [("SEED_DEMO_DATA", "true")];
        let (a, _b) = tokio::join!(
            spawn_app_on(&database, &seed),
            spawn_app_on(&database, &seed),
        );
        let page: Value = a
            .get("/api/v1/films?limit=1", None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(page["total"], 20, "round {round}");
    }
}
