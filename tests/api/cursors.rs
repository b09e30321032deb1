//! Keyset pagination of `/api/v1/films`: `cursor` / `next_cursor` beside `offset`.

use std::collections::{BTreeSet, HashMap};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn page(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/api/v1/films?{query}"), None).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|film| film["id"].as_i64().unwrap())
        .collect()
}

fn next_cursor(page: &Value) -> Option<String> {
    page["next_cursor"].as_str().map(str::to_owned)
}

async fn assert_bad_cursor(app: &TestApp, query: &str) {
    let response = app.get(&format!("/api/v1/films?{query}"), None).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"][0]["field"], "cursor", "{query}");
}

#[tokio::test]
async fn a_walk_sees_every_film_once_while_films_are_added_and_deleted() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let mut before = Vec::new();
    for n in 0..24 {
        let film = app
            .create_film(&user.token, &format!("Film {n}"), "Studio")
            .await;
        before.push(film["id"].as_i64().unwrap());
    }
    // Between pages, one film already seen and one not yet seen are deleted and one is
    // added: offset paging would skip a film after each page.
    let mut seen: Vec<i64> = Vec::new();
    let mut deleted = BTreeSet::new();
    let mut added = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let query = match &cursor {
            Some(cursor) => format!("limit=5&cursor={cursor}"),
            None => "limit=5".to_owned(),
        };
        let current = page(&app, &query).await;
        seen.extend(ids(&current));
        cursor = next_cursor(&current);
        let Some(last_seen) = seen.last().copied() else {
            break;
        };
        let victims = [
            before
                .iter()
                .find(|id| **id < last_seen && !deleted.contains(*id)),
            before
                .iter()
                .find(|id| **id > last_seen + 1 && !deleted.contains(*id)),
        ];
        for id in victims.into_iter().flatten().copied() {
            let path = format!("/api/v1/films/{id}");
            assert_eq!(
                app.delete(&path, Some(&user.token)).await.status(),
                StatusCode::NO_CONTENT
            );
            deleted.insert(id);
        }
        if added.len() < 3 {
            let film = app.create_film(&user.token, "Added", "Studio").await;
            added.insert(film["id"].as_i64().unwrap());
        }
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "the walk ends with next_cursor null");

    let mut counts: HashMap<i64, usize> = HashMap::new();
    for id in &seen {
        *counts.entry(*id).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "no film twice: {seen:?}");
    let survivors = before.iter().filter(|id| !deleted.contains(*id));
    for id in survivors {
        assert!(
            counts.contains_key(id),
            "film {id} existed throughout and was missed"
        );
    }
    for id in &seen {
        assert!(
            before.contains(id) || added.contains(id),
            "{id} came from nowhere"
        );
    }
    assert!(deleted.len() > 4, "the walk really ran beside deletions");
    assert!(
        added.iter().all(|id| counts.contains_key(id)),
        "added behind the walk: seen"
    );
}

#[tokio::test]
async fn cursors_page_a_search_and_end_with_null() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for n in 0..7 {
        let name = if n % 2 == 0 { "Ghibli" } else { "Pixar" };
        app.create_film(&user.token, &format!("{name} {n}"), "Studio")
            .await;
    }
    let first = page(&app, "q=ghibli&limit=2").await;
    assert_eq!(first["total"], 4);
    let cursor = next_cursor(&first).expect("more pages");
    assert_eq!(cursor.len(), 34);
    let second = page(&app, &format!("q=ghibli&limit=2&cursor={cursor}")).await;
    assert_eq!(second["offset"], 0);
    assert_eq!(ids(&second).len(), 2);
    assert!(ids(&second)[0] > *ids(&first).last().unwrap());
    assert_eq!(second["next_cursor"], Value::Null, "exactly the last page");

    assert_bad_cursor(&app, &format!("q=pixar&limit=2&cursor={cursor}")).await;
    assert_bad_cursor(&app, &format!("limit=2&cursor={cursor}")).await;
    let offset_page = page(&app, "limit=2&offset=2").await;
    let next = next_cursor(&offset_page).expect("offset pages carry a cursor too");
    let continued = page(&app, &format!("limit=2&cursor={next}")).await;
    assert_eq!(ids(&continued), ids(&page(&app, "limit=2&offset=4").await));
}

#[tokio::test]
async fn a_tampered_truncated_or_garbage_cursor_is_a_400_naming_it() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for n in 0..3 {
        app.create_film(&user.token, &format!("Film {n}"), "Studio")
            .await;
    }
    let cursor = next_cursor(&page(&app, "limit=1").await).unwrap();
    let mut tampered = cursor.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        &cursor[..cursor.len() - 1],
        &format!("{cursor}A"),
        &format!("{cursor}%3D"),
        "",
        "garbage",
        &"%2B".repeat(34),
        &"A".repeat(34),
        &"A".repeat(300),
    ] {
        assert_bad_cursor(&app, &format!("cursor={bad}")).await;
    }
    let both = app
        .get(&format!("/api/v1/films?cursor={cursor}&offset=0"), None)
        .await;
    let problem = assert_problem(both, StatusCode::BAD_REQUEST).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["cursor", "offset"]);
}
