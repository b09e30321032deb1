use std::time::{Duration, Instant};

use filmvault::db;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn liveness_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/health/live", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readiness_answers_ready_once_migrations_are_applied() {
    let app = spawn_app().await;
    let response = app.get("/health/ready", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

/// A busy pool is load, not an outage: with every pooled connection (and more requests)
/// waiting on a lock the test holds, readiness still answers 200, as it probes on a
/// connection of its own. Queued behind the requests, it would time out into a 503, and a
/// load balancer would take a busy instance out and pile its load on the others. (PostgreSQL
/// is the case that can regress; SQLite's probe always opened a connection of its own.)
#[tokio::test]
async fn readiness_stays_ready_while_every_pooled_connection_waits_on_a_lock() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let film = app.create_film(&user.token, "Contended", "Studio").await;
    let (id, path) = (
        film["id"].as_i64().unwrap(),
        format!("/api/v1/films/{}", film["id"]),
    );
    // The app's PostgreSQL pool: four connections per core, at least eight.
    let pool_size = std::thread::available_parallelism()
        .map_or(8, |n| n.get() * 4)
        .max(8);

    let mut holder = app.db().await;
    db::execute!(&mut holder, sqlite: "BEGIN IMMEDIATE", postgres: "BEGIN")
        .await
        .unwrap();
    db::execute!(
        &mut holder,
        "UPDATE films SET year = 1900 WHERE id = $1",
        id
    )
    .await
    .unwrap();
    let bodies: Vec<Value> = (0..pool_size + 16)
        .map(|i| json!({ "year": 1950 + i }))
        .collect();
    let edits = join_all(
        bodies
            .iter()
            .map(|body| app.patch_json(&path, body, Some(&user.token))),
    );
    let probe_then_release = async {
        if app.database.is_postgres() {
            wait_for_lock_waiters(&app, pool_size).await;
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let readiness = app.get("/health/ready", None).await.status();
        db::execute!(&mut holder, "ROLLBACK").await.unwrap();
        readiness
    };
    let (edits, readiness) = tokio::join!(edits, probe_then_release);

    assert_eq!(readiness, StatusCode::OK, "ready while the pool is busy");
    for edit in edits {
        assert_eq!(
            edit.status(),
            StatusCode::OK,
            "each edit waited, then went through"
        );
    }
}

/// Until `count` sessions wait on a lock: every connection of the app's pool is taken.
async fn wait_for_lock_waiters(app: &TestApp, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = db::fetch_scalar!(
            &mut app.db().await,
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        .await
        .unwrap();
        if usize::try_from(waiting).unwrap() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} of {count} connections wait on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
