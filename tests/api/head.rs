//! HEAD (RFC 9110 §9.3.2): every read answers it as its GET, headers and status alike, without
//! the body; conditions apply as for the GET. The seed's `GET /`, which votes with `?like=`,
//! has no HEAD: a HEAD never changes anything.

use reqwest::{Method, StatusCode};

use crate::helpers::{TestApp, spawn_app};

async fn get_and_head(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (reqwest::Response, reqwest::Response) {
    let request = |method| {
        let request = app.request(method, path);
        match token {
            Some(token) => request.bearer(token),
            None => request,
        }
    };
    (
        request(Method::GET).send().await,
        request(Method::HEAD).send().await,
    )
}

#[tokio::test]
async fn a_head_answers_what_the_get_answers_without_the_body() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let film = app.create_film(&user.token, "Vertigo", "Paramount").await;
    let film_path = format!("/api/v1/films/{}", film["id"]);
    let reads = [
        (film_path.as_str(), Some(user.token.as_str())),
        ("/api/v1/films?limit=5", None),
        ("/api/v1/users/me", Some(user.token.as_str())),
        ("/api/v1/users/me", None),
        ("/health/ready", None),
        ("/.well-known/jwks.json", None),
    ];
    for (path, token) in reads {
        let (get, head) = get_and_head(&app, path, token).await;
        assert_eq!(head.status(), get.status(), "{path}");
        for name in [
            "content-type",
            "etag",
            "cache-control",
            "www-authenticate",
            "content-security-policy",
            "x-content-type-options",
        ] {
            assert_eq!(
                head.headers().get(name),
                get.headers().get(name),
                "{path}: {name}"
            );
        }
        let body = get.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path}: the GET has a body");
        assert_eq!(
            head.headers()["content-length"],
            body.len().to_string(),
            "{path}: HEAD tells the GET's length"
        );
        assert!(head.bytes().await.unwrap().is_empty(), "{path}: no body");
    }
}

#[tokio::test]
async fn a_head_with_the_current_etag_is_a_304() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let film = app.create_film(&user.token, "Vertigo", "Paramount").await;
    let path = format!("/api/v1/films/{}", film["id"]);
    let etag = app.get(&path, None).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let head = app
        .request(Method::HEAD, &path)
        .header("If-None-Match", &etag)
        .send()
        .await;
    assert_eq!(head.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(head.headers()["etag"], etag.as_str());
}

#[tokio::test]
async fn a_head_of_the_voting_route_is_refused_and_votes_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let film = app.create_film(&user.token, "Vertigo", "Paramount").await;
    let id = film["id"].as_i64().unwrap();
    let likes = || async {
        app.get(&format!("/api/v1/films/{id}"), None)
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap()["likes"]
            .as_i64()
            .unwrap()
    };
    let head = app
        .request(Method::HEAD, &format!("/?like={id}"))
        .bearer(&user.token)
        .send()
        .await;
    assert_eq!(head.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(likes().await, 0);
    // The same request as a GET does vote: the refusal above is what kept the count at 0.
    let get = app.get(&format!("/?like={id}"), Some(&user.token)).await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(likes().await, 1);
}
