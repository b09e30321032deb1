//! Crash safety: writes acknowledged with 2xx survive a `kill -9` of the server, and nothing is
//! half-written (each film has its audit row, every vote count matches its votes). On either
//! backend; SQLite's own integrity check runs on the SQLite file. And a stop (SIGTERM) loses
//! no audit event.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
};

use filmvault::db;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{STRONG_PASSWORD, TEST_DATA_ENCRYPTION_KEY, TestDatabase, client};

/// Starts the real binary on `database` in `dir` (where no stray .env is read); returns it
/// with its port, read from its own log.
fn start_server(database: &TestDatabase, dir: &tempfile::TempDir) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_filmvault"))
        .current_dir(dir.path())
        .env_clear()
        .env("APP_PORT", "0")
        .env("DATABASE_URL", database.url())
        .env("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY)
        .env("SEED_DEMO_DATA", "false")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("RATE_LIMIT_GLOBAL", "100000/s")
        .env("RATE_LIMIT_WRITE", "100000/s")
        .env("RATE_LIMIT_AUTH", "100000/s")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        if line.contains("filmvault is listening") {
            let address = line.split("http://127.0.0.1:").nth(1).unwrap();
            break address.split('"').next().unwrap().parse().unwrap();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_and_nothing_is_half_written() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start_server(&database, &dir);
    let base = format!("http://127.0.0.1:{port}");
    let http = client();

    http.post(format!("{base}/api/v1/auth/register"))
        .json(&json!({ "username": "crasher", "email": "c@example.com", "password": STRONG_PASSWORD }))
        .send()
        .await
        .unwrap();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": "crasher", "password": STRONG_PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();

    let acknowledged = Arc::new(Mutex::new(Vec::<(i64, String)>::new()));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (http, base, token, acknowledged) = (
            http.clone(),
            base.clone(),
            token.clone(),
            acknowledged.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("crash film {writer}-{i}");
                let sent = http
                    .post(format!("{base}/api/v1/films"))
                    .bearer_auth(&token)
                    .json(&json!({ "name": name, "studio": "Kill Nine" }))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(film) = response.json::<Value>().await else {
                    break;
                };
                let id = film["id"].as_i64().unwrap();
                acknowledged.lock().unwrap().push((id, name));
                // Vote on it too: a write that touches two tables through a trigger.
                let _ = http
                    .put(format!("{base}/api/v1/films/{id}/vote"))
                    .bearer_auth(&token)
                    .json(&json!({ "vote": "like" }))
                    .send()
                    .await;
            }
        }));
    }
    // Let writes flow, then pull the plug while they are in flight.
    loop {
        tokio::task::yield_now().await;
        if acknowledged.lock().unwrap().len() >= 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200);

    let (mut restarted, port) = start_server(&database, &dir);
    let mut db = database.connection().await;
    if database.sqlite_path().is_some() {
        let integrity: String = db::fetch_scalar!(&mut db, "PRAGMA integrity_check")
            .await
            .unwrap();
        assert_eq!(integrity, "ok");
    }
    for (id, name) in &acknowledged {
        let stored: Option<String> =
            db::fetch_optional_scalar!(&mut db, "SELECT name FROM films WHERE id = $1", id)
                .await
                .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some(name.as_str()),
            "acknowledged film {id} lost"
        );
    }
    let films_without_audit: i64 = db::fetch_scalar!(
        &mut db,
        "SELECT count(*) FROM films f WHERE NOT EXISTS
           (SELECT 1 FROM audit_events a
            WHERE a.action = 'film.create' AND a.target = 'film:' || f.id)"
    )
    .await
    .unwrap();
    assert_eq!(
        films_without_audit, 0,
        "a film was committed without its audit row"
    );
    let mismatched_counts: i64 = db::fetch_scalar!(
        &mut db,
        "SELECT count(*) FROM films f
         WHERE f.likes <> (SELECT count(*) FROM votes v WHERE v.film_id = f.id AND v.value = 1)
            OR f.dislikes <> (SELECT count(*) FROM votes v WHERE v.film_id = f.id AND v.value = -1)"
    )
    .await
    .unwrap();
    assert_eq!(mismatched_counts, 0, "a vote and its counter were split");

    let ready = client()
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "the restarted server serves the same database"
    );
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

/// A stop, as systemd, Kubernetes or Ctrl-C ask for it (SIGTERM), loses no audit event: what
/// is queued, and the summaries of the denial windows still open, are stored before the
/// process exits. (The writer used to end with the runtime: a window's repeated denials were
/// never recorded.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_server_first_stores_its_queued_audit_events_and_open_denial_summaries() {
    const DENIALS: u64 = 25;
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start_server(&database, &dir);
    let http = client();
    for _ in 0..DENIALS {
        let response = http
            .get(format!("http://127.0.0.1:{port}/api/v1/users/me"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    let signalled = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit = server.wait().unwrap();
    assert!(exit.success(), "a stop is a clean exit: {exit}");

    // The denial window (a minute by default) was still open when the stop came.
    let rows = database.audit_rows("http.unauthenticated").await;
    assert_eq!(
        rows.len(),
        2,
        "the first in full, then its summary: {rows:?}"
    );
    assert_eq!(rows[0].repeats(), 0, "{rows:?}");
    assert_eq!(rows[1].repeats(), DENIALS - 1, "{rows:?}");
}
