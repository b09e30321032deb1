//! The audit trail: one row per security event, with the right actor and outcome; repeated
//! denials summarized, so a flood cannot fill the disk; old events pruned after their retention.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use filmvault::db::{self, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    AuditRow, LOGS, TestApp, assert_problem, spawn_app, spawn_app_on, spawn_app_with,
};

async fn request_id_of(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn registration_and_login_are_audited_once_each_with_their_actor() {
    let app = spawn_app().await;
    let user = app.new_user().await;

    let registered = app.audit_rows("user.register").await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].actor_id, Some(user.id));
    assert_eq!(registered[0].outcome, "success");
    assert_eq!(
        registered[0].target.as_deref(),
        Some(format!("user:{}", user.id).as_str())
    );
    assert_eq!(registered[0].client_ip.as_deref(), Some("127.0.0.1"));

    let logins = app.audit_rows("auth.login").await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].actor_id, Some(user.id));
    assert_eq!(logins[0].outcome, "success");
}

#[tokio::test]
async fn a_failed_login_is_one_row_with_its_reason_and_never_the_password() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let response = app.login(&user.username, "S3cret-wrong-password").await;
    let request_id = request_id_of(&response).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.login("ghost_user", "S3cret-wrong-password").await;

    let rows = app.wait_for_audit("auth.login", 3).await;
    let failures: Vec<_> = rows.iter().filter(|r| r.outcome == "failure").collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].reason.as_deref(), Some("wrong password"));
    assert_eq!(failures[0].actor_id, None);
    assert_eq!(failures[0].request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(
        failures[0].target.as_deref(),
        Some(format!("username:{}", user.username).as_str())
    );
    assert_eq!(failures[1].reason.as_deref(), Some("unknown user"));
    let generic = app.audit_rows("http.unauthenticated").await;
    assert!(
        generic.is_empty(),
        "the failed logins were audited twice: {generic:?}"
    );

    let everything: Vec<String> = db::fetch_scalars!(
        &mut app.db().await,
        "SELECT coalesce(target, '') || coalesce(reason, '') FROM audit_events"
    )
    .await
    .unwrap();
    assert!(everything.iter().all(|text| !text.contains("S3cret")));
}

#[tokio::test]
async fn token_events_are_audited_refresh_reuse_and_logout() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (access, refresh) = app.token_pair(&user.username, &user.password).await;
    let rotated: Value = app.refresh(&refresh).await.json().await.unwrap();
    app.refresh(&refresh).await; // reuse
    let (access2, _) = app.token_pair(&user.username, &user.password).await;
    app.post_json("/api/v1/auth/logout", &json!({}), Some(&access2))
        .await;
    let _ = (access, rotated);

    let refreshed = app.audit_rows("auth.refresh").await;
    assert_eq!(refreshed.len(), 1);
    assert_eq!(
        (refreshed[0].actor_id, refreshed[0].outcome.as_str()),
        (Some(user.id), "success")
    );
    let reuse = app.audit_rows("auth.refresh_reuse").await;
    assert_eq!(reuse.len(), 1);
    assert_eq!(
        (reuse[0].actor_id, reuse[0].outcome.as_str()),
        (Some(user.id), "failure")
    );
    let logout = app.audit_rows("auth.logout").await;
    assert_eq!(logout.len(), 1);
    assert_eq!(logout[0].actor_id, Some(user.id));
}

#[tokio::test]
async fn api_keys_films_and_admin_actions_are_audited_with_their_actor() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;

    let key = app.create_api_key(&user.token, &["read"]).await;
    app.delete(
        &format!("/api/v1/users/me/api-keys/{}", key["id"]),
        Some(&user.token),
    )
    .await;
    let film = app.create_film(&user.token, "Audited", "Studio").await;
    let film_path = format!("/api/v1/films/{}", film["id"]);
    app.patch_json(&film_path, &json!({ "year": 2000 }), Some(&user.token))
        .await;
    app.delete(&film_path, Some(&admin.token)).await;
    app.patch_json(
        &format!("/api/v1/admin/users/{}", user.id),
        &json!({ "role": "admin", "disabled": true }),
        Some(&admin.token),
    )
    .await;

    for (action, actor) in [
        ("api_key.create", user.id),
        ("api_key.revoke", user.id),
        ("film.create", user.id),
        ("film.update", user.id),
        ("film.delete", admin.id),
        ("admin.role_change", admin.id),
        ("admin.user_disable", admin.id),
    ] {
        let rows = app.audit_rows(action).await;
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        assert_eq!(rows[0].actor_id, Some(actor), "{action}");
        assert_eq!(rows[0].outcome, "success", "{action}");
    }
    assert_eq!(
        app.audit_rows("admin.role_change").await[0]
            .reason
            .as_deref(),
        Some("role=admin")
    );
}

#[tokio::test]
async fn the_first_401_403_and_429_of_a_client_are_recorded_in_full_and_repeats_are_counted() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_GLOBAL", "12/min"),
        ("AUDIT_DENIAL_WINDOW_SECS", "2"),
    ])
    .await;
    let user = app.new_user().await;
    let other = app.new_user().await;

    let unauthenticated = app.get("/api/v1/users/me", None).await;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let first_id = request_id_of(&unauthenticated).await;
    let again = app.get("/api/v1/users/me", None).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    for token in [&user.token, &other.token] {
        let forbidden = app.get("/api/v1/admin/users", Some(token)).await;
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    }
    let mut limited = None;
    for _ in 0..12 {
        let response = app.get("/api/v1/films", None).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the limit was reached");
    let limited_id = request_id_of(&limited).await;

    let rows = wait_for_rows(&app, "http.unauthenticated", 2).await;
    assert_eq!(
        rows.len(),
        2,
        "the first in full, then one summary: {rows:?}"
    );
    assert_eq!(rows[0].target.as_deref(), Some("GET /api/v1/users/me"));
    assert_eq!(rows[0].request_id.as_deref(), Some(first_id.as_str()));
    assert_eq!(rows[1].repeats(), 1, "{rows:?}");
    assert_eq!(rows[1].client_ip.as_deref(), Some("127.0.0.1"));
    assert!(rows[1].reason.as_deref().unwrap().contains(&first_id));

    let rows = app.wait_for_audit("http.forbidden", 2).await;
    assert_eq!(rows.len(), 2, "one per user, both in full: {rows:?}");
    assert_eq!(rows[0].actor_id, Some(user.id));
    assert_eq!(rows[1].actor_id, Some(other.id));
    assert!(rows.iter().all(|row| row.outcome == "denied"));
    let rows = app.wait_for_audit("http.rate_limited", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].request_id.as_deref(), Some(limited_id.as_str()));
}

/// Waits (up to 10 s: a summary is written when its window closes) for `count` rows.
async fn wait_for_rows(app: &TestApp, action: &str, count: usize) -> Vec<AuditRow> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = app.audit_rows(action).await;
        if rows.len() >= count || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The database file and its WAL on SQLite; the database's size on PostgreSQL.
async fn database_bytes(app: &TestApp) -> u64 {
    let Some(path) = app.database.sqlite_path() else {
        let bytes: i64 = db::fetch_scalar!(
            &mut app.db().await,
            "SELECT pg_database_size(current_database())"
        )
        .await
        .unwrap();
        return bytes.try_into().unwrap();
    };
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()]
        .iter()
        .map(|path| std::fs::metadata(path).map_or(0, |m| m.len()))
        .sum()
}

/// Log lines at INFO or above that mention `needle` (the capture itself is at TRACE).
fn loud_log_lines_mentioning(needle: &str) -> usize {
    LOGS.contents()
        .lines()
        .filter(|line| line.contains(needle))
        .filter(|line| !line.contains(r#""level":"DEBUG""#) && !line.contains(r#""level":"TRACE""#))
        .count()
}

#[tokio::test]
async fn twenty_seconds_of_bad_tokens_from_one_address_leave_the_database_and_log_bounded() {
    const FLOOD_SECS: u64 = 20;
    const WINDOW_SECS: u64 = 4;
    const CLIENTS: usize = 4;
    let window = WINDOW_SECS.to_string();
    // Shared with the flooding tasks.
    let app = Arc::new(
        spawn_app_with(&[
            ("RATE_LIMIT_GLOBAL", "20/s"),
            ("AUDIT_DENIAL_WINDOW_SECS", &window),
        ])
        .await,
    );
    let size_before = database_bytes(&app).await;

    let started = Instant::now();
    let next_request = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (app, next_request) = (app.clone(), next_request.clone());
            tokio::spawn(async move {
                let (mut unauthenticated, mut limited) = (0u64, 0u64);
                while started.elapsed() < Duration::from_secs(FLOOD_SECS) {
                    let n = next_request.fetch_add(1, Ordering::Relaxed);
                    let response = app
                        .request(Method::GET, "/api/v1/users/me")
                        .bearer("not-a-token")
                        .header("x-request-id", format!("flood-{n}"))
                        .send()
                        .await;
                    match response.status() {
                        StatusCode::UNAUTHORIZED => unauthenticated += 1,
                        StatusCode::TOO_MANY_REQUESTS => limited += 1,
                        other => panic!("unexpected {other}"),
                    }
                }
                (unauthenticated, limited)
            })
        })
        .collect();
    let (mut unauthenticated, mut limited) = (0, 0);
    for flooder in flooders {
        let (u, l) = flooder.await.unwrap();
        unauthenticated += u;
        limited += l;
    }
    assert!(
        unauthenticated >= 100 && limited >= 1000,
        "a flood: {unauthenticated} × 401 and {limited} × 429"
    );

    // Every denial is accounted for, in full or in a summary, once the last windows close.
    let accounted = |rows: &[AuditRow]| rows.iter().map(|row| row.repeats().max(1)).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut rows_401, mut rows_429) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        rows_401 = app.audit_rows("http.unauthenticated").await;
        rows_429 = app.audit_rows("http.rate_limited").await;
        if accounted(&rows_401) == unauthenticated && accounted(&rows_429) == limited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accounted(&rows_401), unauthenticated, "{rows_401:?}");
    assert_eq!(accounted(&rows_429), limited, "{rows_429:?}");
    // Two kinds of denial, each at most two rows (first and summary) per window.
    let rows = rows_401.len() + rows_429.len();
    let windows = usize::try_from(FLOOD_SECS / WINDOW_SECS + 1).unwrap();
    assert!(rows <= 2 * 2 * windows, "{rows} audit rows for the flood");

    let growth = database_bytes(&app).await.saturating_sub(size_before);
    assert!(growth < 1024 * 1024, "the database grew by {growth} bytes");
    // A request line and an audit line for each denial recorded in full, and an audit line
    // for each summary (which names the window's first request), at INFO and above.
    let logged = loud_log_lines_mentioning("flood-");
    let in_full = rows_401
        .iter()
        .chain(&rows_429)
        .filter(|row| row.repeats() == 0)
        .count();
    assert!(
        logged <= 2 * in_full + (rows - in_full),
        "{logged} log lines for {} requests ({rows} audit rows, {in_full} in full)",
        unauthenticated + limited
    );
}

#[tokio::test]
async fn audit_events_older_than_the_retention_are_pruned_and_younger_ones_stay_append_only() {
    let first = spawn_app_with(&[("AUDIT_RETENTION_DAYS", "1000")]).await;
    let mut db = first.db().await;
    for (age_days, action) in [(400, "test.ancient"), (31, "test.old"), (29, "test.young")] {
        db::execute!(
            &mut db,
            "INSERT INTO audit_events (occurred_at, action, outcome) VALUES ($1, $2, 'success')",
            days_ago(age_days),
            action
        )
        .await
        .unwrap();
    }
    first.new_user().await;
    assert!(
        db::execute!(
            &mut db,
            "DELETE FROM audit_events WHERE action = 'test.ancient'"
        )
        .await
        .is_err(),
        "an event inside the 1000-day retention was deleted"
    );

    // Pruning runs at start (then hourly), with the retention the server is configured with.
    let second = spawn_app_on(&first.database, &[("AUDIT_RETENTION_DAYS", "30")]).await;
    let pruned = wait_for_rows(&second, "audit.prune", 1).await;
    assert_eq!(pruned.len(), 1);
    assert_eq!(
        pruned[0].reason.as_deref(),
        Some("deleted 2 events older than 30 days")
    );
    assert!(second.audit_rows("test.ancient").await.is_empty());
    assert!(second.audit_rows("test.old").await.is_empty());
    assert_eq!(second.audit_rows("test.young").await.len(), 1);
    assert_eq!(second.audit_rows("user.register").await.len(), 1);

    let refusals = [
        db::execute!(
            &mut db,
            "DELETE FROM audit_events WHERE action = 'test.young'"
        )
        .await,
        db::execute!(
            &mut db,
            "DELETE FROM audit_events WHERE action = 'user.register'"
        )
        .await,
        db::execute!(&mut db, "DELETE FROM audit_events").await,
        db::execute!(
            &mut db,
            "UPDATE audit_events SET reason = 'rewritten' WHERE action = 'test.young'"
        )
        .await,
    ];
    for (n, refusal) in refusals.iter().enumerate() {
        assert!(refusal.is_err(), "statement {n} was allowed");
    }
    assert_eq!(second.audit_rows("test.young").await[0].reason, None);

    // Without its retention row the trigger refuses every delete, old events included.
    db::execute!(&mut db, "DELETE FROM audit_retention")
        .await
        .unwrap();
    db::execute!(
        &mut db,
        "INSERT INTO audit_events (occurred_at, action, outcome)
         VALUES ($1, 'test.ancient', 'success')",
        days_ago(400)
    )
    .await
    .unwrap();
    assert!(
        db::execute!(
            &mut db,
            "DELETE FROM audit_events WHERE action = 'test.ancient'"
        )
        .await
        .is_err()
    );
}

fn days_ago(days: i64) -> Timestamp {
    Timestamp::now().saturating_sub(time::Duration::days(days))
}

#[tokio::test]
async fn spent_refresh_sessions_are_pruned_after_their_retention_and_live_ones_are_kept() {
    let retention = [("REFRESH_TOKEN_RETENTION_DAYS", "7")];
    let first = &spawn_app_with(&retention).await;
    let user = first.new_user().await;
    let newest_family = || async move {
        let family: String = db::fetch_scalar!(
            &mut first.db().await,
            "SELECT family_id FROM refresh_tokens ORDER BY id DESC LIMIT 1"
        )
        .await
        .unwrap();
        family
    };
    let days_ago = |days: i64| {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
            - days * 86_400
    };
    let backdate = |family: String, column: &'static str, at: i64| async move {
        let mut db = first.db().await;
        match column {
            "expires_at" => db::execute!(
                &mut db,
                "UPDATE refresh_tokens SET expires_at = $2 WHERE family_id = $1",
                family,
                at
            )
            .await
            .unwrap(),
            _ => db::execute!(
                &mut db,
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1
                   AND revoked_at IS NOT NULL",
                family,
                at
            )
            .await
            .unwrap(),
        };
    };

    // Expired ten days ago: pruned.
    first.token_pair(&user.username, &user.password).await;
    let expired_long_ago = newest_family().await;
    backdate(expired_long_ago.clone(), "expires_at", days_ago(10)).await;
    // Expired three days ago: kept for now.
    first.token_pair(&user.username, &user.password).await;
    let expired_recently = newest_family().await;
    backdate(expired_recently.clone(), "expires_at", days_ago(3)).await;
    // Logged out ten days ago: every token revoked, so pruned though not yet expired.
    let (access, _) = first.token_pair(&user.username, &user.password).await;
    let logged_out = newest_family().await;
    first
        .post_json("/api/v1/auth/logout", &json!({}), Some(&access))
        .await;
    backdate(logged_out.clone(), "revoked_at", days_ago(10)).await;
    // Rotated ten days ago, but its family lives on: the rotated token is kept, or a thief
    // replaying it would no longer be caught.
    let (_, rotated) = first.token_pair(&user.username, &user.password).await;
    let live = newest_family().await;
    let current: Value = first.refresh(&rotated).await.json().await.unwrap();
    backdate(live.clone(), "revoked_at", days_ago(10)).await;

    let second = &spawn_app_on(&first.database, &retention).await;
    let tokens_of = |family: String| async move {
        let count: i64 = db::fetch_scalar!(
            &mut second.db().await,
            "SELECT count(*) FROM refresh_tokens WHERE family_id = $1",
            family
        )
        .await
        .unwrap();
        count
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokens_of(logged_out.clone()).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tokens_of(expired_long_ago).await, 0);
    assert_eq!(tokens_of(logged_out).await, 0);
    assert_eq!(tokens_of(expired_recently).await, 1);
    assert_eq!(tokens_of(live).await, 2);

    // The rotated token still betrays a replay, which ends the session it was stolen from.
    assert_eq!(
        second.refresh(&rotated).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let current = current["refresh_token"].as_str().unwrap();
    assert_eq!(
        second.refresh(current).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_audit_trail_cannot_be_rewritten() {
    let app = spawn_app().await;
    app.new_user().await;
    let mut db = app.db().await;
    assert!(
        db::execute!(&mut db, "UPDATE audit_events SET outcome = 'failure'")
            .await
            .is_err()
    );
    assert!(
        db::execute!(&mut db, "DELETE FROM audit_events")
            .await
            .is_err()
    );
    if app.database.is_postgres() {
        // TRUNCATE fires no row trigger; a statement trigger refuses it.
        assert!(
            db::execute!(&mut db, "TRUNCATE audit_events")
                .await
                .is_err()
        );
    }
}

async fn events(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/admin/audit-events{query}"), Some(token))
        .await
}

#[tokio::test]
async fn admins_can_filter_and_page_through_the_audit_trail() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    for i in 0..3 {
        app.create_film(&user.token, &format!("F{i}"), "S").await;
    }

    let page: Value = events(
        &app,
        &admin.token,
        &format!("?actor={}&action=film.create&limit=2", user.id),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] == "film.create" && e["actor_id"] == user.id)
    );
    let rest: Value = events(
        &app,
        &admin.token,
        &format!("?actor={}&action=film.create&limit=2&offset=2", user.id),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);

    let future: Value = events(&app, &admin.token, "?since=2999-01-01")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(future["total"], 0);
    let past: Value = events(&app, &admin.token, "?until=2000-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(past["total"], 0);
    let all: Value = events(&app, &admin.token, "?since=2000-01-01&limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert!(all["total"].as_i64().unwrap() >= 6);

    for bad in [
        "?since=yesterday",
        "?action=DROP%20TABLE",
        "?limit=500",
        "?actor=abc",
        "?who=me",
    ] {
        let response = events(&app, &admin.token, bad).await;
        assert!(
            response.status().is_client_error(),
            "{bad}: {}",
            response.status()
        );
    }
    assert_problem(events(&app, &user.token, "").await, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_misspelled_audit_action_is_refused_naming_the_field_and_the_document_lists_the_actions()
{
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    app.login(&user.username, &user.password).await;

    let known: Value = events(&app, &admin.token, "?action=auth.login")
        .await
        .json()
        .await
        .unwrap();
    assert!(known["total"].as_i64().unwrap() >= 1);
    for misspelled in ["?action=auth.logn", "?action=AUTH.LOGIN", "?action="] {
        let problem = assert_problem(
            events(&app, &admin.token, misspelled).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "action", "{misspelled}");
        assert!(problem.get("items").is_none());
    }

    let document: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let parameters = document["paths"]["/api/v1/admin/audit-events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let action = parameters.iter().find(|p| p["name"] == "action").unwrap();
    let allowed = action["schema"]["enum"]
        .as_array()
        .expect("the allowed actions are listed");
    for expected in [
        "auth.login",
        "film.create",
        "http.rate_limited",
        "audit.prune",
    ] {
        assert!(allowed.iter().any(|a| a == expected), "{expected}");
    }
}
