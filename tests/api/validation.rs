//! Strict input: unknown fields refused (mass assignment), every rule reported per field,
//! nothing stored when anything is wrong.

use filmvault::db;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

fn fields_of(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("an errors list")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn server_set_fields_cannot_be_sent() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for field in [
        "id",
        "owner",
        "owner_id",
        "likes",
        "dislikes",
        "created_at",
        "updated_at",
    ] {
        let mut body = json!({ "name": "Mass", "studio": "Assignment" });
        body[field] = json!(1);
        let response = app
            .post_json("/api/v1/films", &body, Some(&user.token))
            .await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(fields_of(&problem), vec![field.to_owned()]);
    }
    let films: Value = app.get("/api/v1/films", None).await.json().await.unwrap();
    assert_eq!(films["total"], 0, "nothing was stored");
}

#[tokio::test]
async fn a_role_cannot_be_chosen_at_registration() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({
                "username": "mallory",
                "email": "mallory@example.com",
                "password": "violet-kettle-umbrella-42",
                "role": "admin",
            }),
            None,
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(fields_of(&problem), vec!["role".to_owned()]);
    assert_eq!(
        app.login("mallory", "violet-kettle-umbrella-42")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn invalid_film_fields_are_all_reported_and_nothing_is_stored() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let cases = [
        (json!({ "name": "", "studio": "Pixar" }), vec!["name"]),
        (json!({ "name": "   ", "studio": "Pixar" }), vec!["name"]),
        (
            json!({ "name": "x".repeat(201), "studio": "Pixar" }),
            vec!["name"],
        ),
        (
            json!({ "name": "Up", "studio": "x".repeat(101) }),
            vec!["studio"],
        ),
        (
            json!({ "name": "Up\u{0000}", "studio": "Pixar" }),
            vec!["name"],
        ),
        (
            json!({ "name": "Up\nDown", "studio": "Pixar" }),
            vec!["name"],
        ),
        (
            json!({ "name": "evil\u{202E}gnp.exe", "studio": "Pixar" }),
            vec!["name"],
        ),
        (
            json!({ "name": "Up", "studio": "Pixar", "year": 1700 }),
            vec!["year"],
        ),
        (
            json!({ "name": "Up", "studio": "Pixar", "year": 3000 }),
            vec!["year"],
        ),
        (
            json!({ "name": "", "studio": "", "year": 0 }),
            vec!["name", "studio", "year"],
        ),
    ];
    for (body, expected) in cases {
        let response = app
            .post_json("/api/v1/films", &body, Some(&user.token))
            .await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(fields_of(&problem), expected, "{body}");
    }
    let films: Value = app.get("/api/v1/films", None).await.json().await.unwrap();
    assert_eq!(films["total"], 0);
}

#[tokio::test]
async fn wrongly_shaped_bodies_are_bad_requests_naming_the_field() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let cases = [
        (json!({ "studio": "Pixar" }), "name"),
        (json!({ "name": 42, "studio": "Pixar" }), "name"),
        (
            json!({ "name": "Up", "studio": "Pixar", "year": "2009" }),
            "year",
        ),
        (
            json!({ "name": "Up", "studio": "Pixar", "year": 2009.5 }),
            "year",
        ),
        (json!(["Up", "Pixar"]), "body"),
    ];
    for (body, field) in cases {
        let response = app
            .post_json("/api/v1/films", &body, Some(&user.token))
            .await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(fields_of(&problem), vec![field.to_owned()], "{body}");
    }
}

#[tokio::test]
async fn a_title_in_any_script_and_with_markup_is_stored_as_text() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for name in [
        "千と千尋の神隠し",
        "Amélie",
        "<img src=x onerror=alert(1)>",
        "WALL·E",
    ] {
        let film = app.create_film(&user.token, name, "Studio").await;
        assert_eq!(film["name"], name);
    }
}

/// Characters that show nothing (or nothing of their own) and that the old hand-made list
/// missed. They are found by their Unicode general category (Cc, Cf, Co, Cn, Zl, Zp) or
/// because Unicode marks them default-ignorable (the Hangul fillers).
const HIDDEN_CHARACTERS: [(&str, &str); 12] = [
    ("\u{061C}", "Arabic letter mark"),
    ("\u{00AD}", "soft hyphen"),
    ("\u{E0041}", "tag latin capital letter A"),
    ("\u{E007F}", "cancel tag"),
    ("\u{206A}", "inhibit symmetric swapping"),
    ("\u{206F}", "nominal digit shapes"),
    ("\u{180E}", "Mongolian vowel separator"),
    ("\u{FFF9}", "interlinear annotation anchor"),
    ("\u{2028}", "line separator"),
    ("\u{E000}", "private use"),
    ("\u{0378}", "unassigned"),
    ("\u{3164}", "Hangul filler"),
];

#[tokio::test]
async fn invisible_and_format_characters_are_refused_in_every_text_field() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for (hidden, what) in HIDDEN_CHARACTERS {
        let hide = |text: &str| format!("{}{hidden}{}", &text[..1], &text[1..]);
        for (body, field) in [
            (json!({ "name": hide("Up"), "studio": "Pixar" }), "name"),
            (json!({ "name": "Up", "studio": hide("Pixar") }), "studio"),
        ] {
            let response = app
                .post_json("/api/v1/films", &body, Some(&user.token))
                .await;
            let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(fields_of(&problem), vec![field.to_owned()], "{what}");
        }
        let query: String = form_urlencoded::byte_serialize(hide("Up").as_bytes()).collect();
        let search = app.get(&format!("/api/v1/films?q={query}"), None).await;
        let problem = assert_problem(search, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(fields_of(&problem), vec!["q".to_owned()], "{what}");

        let key = app
            .post_json(
                "/api/v1/users/me/api-keys",
                &json!({ "name": hide("deploy"), "scopes": ["read"] }),
                Some(&user.token),
            )
            .await;
        let problem = assert_problem(key, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(fields_of(&problem), vec!["name".to_owned()], "{what}");
    }
    let films: Value = app.get("/api/v1/films", None).await.json().await.unwrap();
    assert_eq!(films["total"], 0, "nothing was stored");
}

#[tokio::test]
async fn text_in_any_script_with_combining_marks_and_emoji_is_still_accepted() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for name in [
        "Ame\u{0301}lie",
        "नमस्ते",
        "ฉลาดเกมส์โกง",
        "الرسالة",
        "האביר",
        "❤\u{FE0F} Love Actually",
        "千と千尋の\u{3000}神隠し",
    ] {
        let film = app.create_film(&user.token, name, "Studio").await;
        assert_eq!(film["name"], name);
    }
}

/// serde names the expected type after the submitted value; a value that itself says
/// "expected …" must not be mistaken for serde's words and repeated.
#[tokio::test]
async fn a_wrongly_typed_value_is_never_repeated_even_when_it_mimics_serde() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let secret = "hunter2-correct-horse";
    for value in [
        format!("x, expected {secret}"),
        format!("expected {secret} at line 1"),
    ] {
        let response = app
            .post_json(
                "/api/v1/films",
                &json!({ "name": "Up", "studio": "Pixar", "year": value }),
                Some(&user.token),
            )
            .await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(fields_of(&problem), vec!["year".to_owned()]);
        assert!(!problem.to_string().contains(secret), "{problem}");
    }
}

async fn register_with_email(app: &crate::helpers::TestApp, email: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/register",
        &json!({
            "username": crate::helpers::unique_username("mail"),
            "email": email,
            "password": crate::helpers::STRONG_PASSWORD,
        }),
        None,
    )
    .await
}

#[tokio::test]
async fn an_email_that_only_looks_like_a_registered_one_is_the_same_address() {
    let app = spawn_app().await;
    let admin = register_with_email(&app, "boss@example.com").await;
    assert_eq!(admin.status(), StatusCode::ACCEPTED);
    for look_alike in [
        "ｂｏｓｓ@example.com",
        "boss@ｅｘａｍｐｌｅ.ｃｏｍ",
        "boss＠example.com",
        "boss@EXAMPLE.com",
        "BOSS@example.com",
    ] {
        app.assert_email_taken(look_alike).await;
    }
    let users: i64 = db::fetch_scalar!(&mut app.db().await, "SELECT count(*) FROM users")
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn an_email_with_invisible_characters_is_refused() {
    let app = spawn_app().await;
    for email in [
        "boss@exa\u{200B}mple.com",
        "boss@example.com\u{00AD}",
        "boss@exam\u{00AD}ple.com",
        "boss@example\u{2060}.com",
        "boss@exam\u{E0041}ple.com",
        "bo\u{FEFF}ss@example.com",
    ] {
        let response = register_with_email(&app, email).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(fields_of(&problem), vec!["email".to_owned()], "{email:?}");
    }
}

/// The stored form is ASCII: the domain in its IDNA form, lower-cased. A Cyrillic letter
/// in a domain then shows as `xn--…` and can no longer pass for the Latin one.
#[tokio::test]
async fn an_email_is_stored_and_shown_in_its_normalized_form() {
    let app = spawn_app().await;
    for (submitted, stored) in [
        ("Carol@ＥＸＡＭＰＬＥ.org", "Carol@example.org"),
        ("dave@exаmple.com", "dave@xn--exmple-4nf.com"),
        ("erin@bücher.example", "erin@xn--bcher-kva.example"),
    ] {
        let username = crate::helpers::unique_username("mail");
        let response = app
            .post_json(
                "/api/v1/auth/register",
                &json!({ "username": username, "email": submitted,
                    "password": crate::helpers::STRONG_PASSWORD }),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{submitted}");
        let token = app
            .access_token(&username, crate::helpers::STRONG_PASSWORD)
            .await;
        let profile: Value = app
            .get("/api/v1/users/me", Some(&token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(profile["email"], stored, "{submitted}");
    }
}

/// Rows stored before emails were sealed (the migration moved their addresses to
/// `legacy_email`) are sealed at the next start, in their normal form, and their addresses
/// cleared out of the database files; an old look-alike of another account's address is
/// sealed without reserving it and left for an administrator (the start is not blocked).
#[tokio::test]
async fn emails_stored_in_clear_before_sealing_are_sealed_in_normal_form_at_start() {
    let first = spawn_app().await;
    let mut db = first.db().await;
    let legacy = [
        ("old_fullwidth", "frank@ｅｘａｍｐｌｅ.com"),
        ("old_upper", "Grace@EXAMPLE.com"),
        ("old_original", "boss@example.com"),
        ("old_lookalike", "boss@exa\u{200B}mple.com"),
    ];
    for (username, email) in legacy {
        db::execute!(
            &mut db,
            "INSERT INTO users (username, legacy_email, password_hash) VALUES ($1, $2, 'x')",
            username,
            email
        )
        .await
        .unwrap();
    }
    drop(db);

    let second = crate::helpers::spawn_app_on(&first.database, &[]).await;
    let in_clear: i64 = db::fetch_scalar!(
        &mut second.db().await,
        "SELECT count(*) FROM users WHERE legacy_email IS NOT NULL"
    )
    .await
    .unwrap();
    assert_eq!(in_clear, 0);
    let admin = second.new_admin().await;
    let listing: Value = second
        .get("/api/v1/admin/users?limit=100", Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    let email_of = |username: &str| {
        listing["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["username"] == username)
            .map(|user| user["email"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(email_of("old_fullwidth"), "frank@example.com");
    assert_eq!(email_of("old_upper"), "Grace@example.com");
    assert_eq!(email_of("old_original"), "boss@example.com");
    assert_eq!(email_of("old_lookalike"), "boss@example.com");

    let ids: Vec<i64> = db::fetch_scalars!(
        &mut second.db().await,
        "SELECT id FROM users WHERE username IN ('old_original', 'old_lookalike') ORDER BY id"
    )
    .await
    .unwrap();
    let logs = crate::helpers::LOGS.contents();
    let warning = logs
        .lines()
        .find(|line| {
            line.contains("looks like another account's address")
                && line.contains(&format!("\"user_id\":{}", ids[1]))
        })
        .expect("the look-alike is reported");
    assert!(
        warning.contains(&format!("\"same_address_as\":{}", ids[0])),
        "{warning}"
    );
    assert!(
        !warning.contains("boss@"),
        "the log names ids, not addresses"
    );
    if let Some(path) = second.database.sqlite_path() {
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let bytes = std::fs::read(&file).unwrap_or_default();
            for (_, email) in legacy {
                let local = email.split('@').next().unwrap();
                assert!(
                    !bytes.windows(local.len()).any(|w| w == local.as_bytes()),
                    "{local} is still in {file}"
                );
            }
        }
    }
    second.assert_email_taken("FRANK@example.com").await;
}
