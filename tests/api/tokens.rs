//! Access tokens: anything but a valid, unexpired EdDSA token signed with one of our keys is
//! a 401 (RFC 8725: the algorithm pinned, the key chosen by `kid` from our own set only).
//!
//! The forgeries are signed with the server's real private key, read from the test database
//! and opened with the test data key: so each refusal is for the one thing the case changes.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use filmvault::{crypto::Keyring, db};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{
    TEST_DATA_ENCRYPTION_KEY, TestApp, assert_problem, spawn_app, without_request_id,
};

/// The key the server signs with now: its kid and key pair.
pub struct SigningKey {
    pub kid: String,
    pub pair: Ed25519KeyPair,
}

impl SigningKey {
    pub async fn of(app: &TestApp) -> Self {
        let (kid, sealed): (String, Vec<u8>) = db::fetch_one!(
            &mut app.db().await,
            "SELECT kid, private_key FROM signing_keys WHERE current_signer = 1"
        )
        .await
        .expect("a current signing key");
        let keyring = Keyring::new(&TEST_DATA_ENCRYPTION_KEY.parse().unwrap(), &[]);
        let pkcs8 = keyring
            .open(
                format!("signing_keys.private_key:{kid}").as_bytes(),
                &sealed,
            )
            .expect("the private key opens with the data key");
        Self {
            pair: Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap(),
            kid,
        }
    }

    /// A key of nobody's, with a kid of the server's shape.
    pub fn stranger() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self {
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
            kid: URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
        }
    }

    pub fn header(&self) -> Value {
        json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": self.kid })
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = self.pair.sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
        })
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(message.as_bytes());
    format!(
        "{message}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

pub fn claims_for(user_id: i64) -> Value {
    json!({
        "sub": user_id.to_string(),
        "name": "forged",
        "role": "user",
        "iss": "filmvault",
        "aud": "filmvault-api",
        "iat": now(),
        "nbf": now(),
        "exp": now() + 600,
        "jti": "test",
        "ver": 0,
        "sid": "a-session",
    })
}

async fn me_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.get("/api/v1/users/me", Some(token)).await
}

#[tokio::test]
async fn a_token_forged_exactly_like_ours_works_so_the_refusals_below_mean_something() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let key = SigningKey::of(&app).await;
    let token = key.sign(&key.header(), &claims_for(user.id));
    assert_eq!(me_with(&app, &token).await.status(), StatusCode::OK);
}

/// A token verified once is remembered (the signature check is skipped when it comes again),
/// but only while it is valid: the remembered token still stops at its `exp`.
#[tokio::test]
async fn a_token_verified_once_still_stops_at_its_expiry() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let key = SigningKey::of(&app).await;
    let mut claims = claims_for(user.id);
    claims["exp"] = json!(now() + 2);
    let token = key.sign(&key.header(), &claims);
    assert_eq!(me_with(&app, &token).await.status(), StatusCode::OK);
    assert_eq!(me_with(&app, &token).await.status(), StatusCode::OK);
    while now() <= claims["exp"].as_i64().unwrap() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        me_with(&app, &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// What is remembered is the token byte for byte: the same header and claims under another
/// signature are checked afresh, and refused.
#[tokio::test]
async fn a_verified_token_is_remembered_byte_for_byte_only() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    assert_eq!(me_with(&app, &user.token).await.status(), StatusCode::OK);
    let (signed, signature) = user.token.rsplit_once('.').unwrap();
    let mut forged = signature.as_bytes().to_vec();
    // A character in the middle carries six bits of the signature (the last one has padding).
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = format!("{signed}.{}", String::from_utf8(forged).unwrap());
    assert_eq!(
        me_with(&app, &forged).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_with(&app, &user.token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn requests_without_a_token_are_refused_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/users/me", None).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"filmvault\""
    );
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn every_invalid_token_gets_the_same_401() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let claims = claims_for(user.id);
    let ours = SigningKey::of(&app).await;
    let stranger = SigningKey::stranger();
    let with = |changes: Value| {
        let mut claims = claims.clone();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        ours.sign(&ours.header(), &claims)
    };
    let with_header = |changes: Value| {
        let mut header = ours.header();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                header.as_object_mut().unwrap().remove(key);
            } else {
                header[key] = value.clone();
            }
        }
        header
    };
    let tampered = {
        let parts: Vec<&str> = user.token.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["role"] = json!("admin");
        format!("{}.{}.{}", parts[0], b64(&payload), parts[2])
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&with_header(json!({ "alg": "none" }))),
        b64(&claims)
    );
    // Algorithm confusion: HS256 keyed with our public key, which anyone can fetch (raw, and
    // as the JWKS's base64url `x`).
    let public_key = ours.pair.public_key().as_ref().to_vec();
    let hs256 = with_header(json!({ "alg": "HS256" }));
    let hs256_with_public_key = sign_hs256(&hs256, &claims, &public_key);
    let hs256_with_x = sign_hs256(
        &hs256,
        &claims,
        URL_SAFE_NO_PAD.encode(&public_key).as_bytes(),
    );
    // The attacker's key, offered through every header RFC 8725 says never to follow.
    let their_key = |extra: Value| {
        let mut header = stranger.header();
        for (key, value) in extra.as_object().unwrap() {
            header[key] = value.clone();
        }
        stranger.sign(&header, &claims)
    };
    let cases = [
        ("garbage", "not-a-jwt".to_owned()),
        (
            "another key under our kid",
            stranger.sign(&ours.header(), &claims),
        ),
        ("an unknown kid", stranger.sign(&stranger.header(), &claims)),
        (
            "no kid",
            ours.sign(&with_header(json!({ "kid": null })), &claims),
        ),
        (
            "their key in a jwk header",
            their_key(json!({ "jwk": stranger.public_jwk() })),
        ),
        (
            "their key behind a jku header",
            their_key(json!({ "jku": "http://127.0.0.1:9/jwks.json" })),
        ),
        (
            "their key behind an x5u header",
            their_key(json!({ "x5u": "http://127.0.0.1:9/cert.pem" })),
        ),
        (
            "our kid, their jwk and signature",
            stranger.sign(
                &with_header(json!({ "jwk": stranger.public_jwk() })),
                &claims,
            ),
        ),
        (
            "typed as a plain JWT, not an access token",
            ours.sign(&with_header(json!({ "typ": "JWT" })), &claims),
        ),
        (
            "without a typ",
            ours.sign(&with_header(json!({ "typ": null })), &claims),
        ),
        ("HS256 keyed with our public key", hs256_with_public_key),
        ("HS256 keyed with our JWKS x", hs256_with_x),
        (
            "expired",
            with(json!({ "iat": now() - 1000, "nbf": now() - 1000, "exp": now() - 10 })),
        ),
        ("not yet valid", with(json!({ "nbf": now() + 300 }))),
        ("tampered payload", tampered),
        ("alg none", unsigned),
        ("wrong issuer", with(json!({ "iss": "someone-else" }))),
        ("wrong audience", with(json!({ "aud": "another-api" }))),
        ("no exp", with(json!({ "exp": null }))),
        ("no sub", with(json!({ "sub": null }))),
        ("no session", with(json!({ "sid": null }))),
        ("an older token version", with(json!({ "ver": -1 }))),
        ("non-numeric sub", with(json!({ "sub": "admin" }))),
    ];
    let mut bodies = Vec::new();
    for (name, token) in cases {
        let response = me_with(&app, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        bodies.push(without_request_id(
            assert_problem(response, StatusCode::UNAUTHORIZED).await,
        ));
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the 401 bodies differ"
    );
}

#[tokio::test]
async fn malformed_or_ambiguous_credentials_are_refused_not_ignored() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "basic auth",
            vec![("authorization", "Basic dXNlcjpwYXNz".into())],
        ),
        ("no scheme", vec![("authorization", user.token.clone())]),
        ("empty bearer", vec![("authorization", "Bearer ".into())]),
        (
            "token and API key",
            vec![
                ("authorization", format!("Bearer {}", user.token)),
                ("x-api-key", "fk_whatever".into()),
            ],
        ),
    ];
    for (name, headers) in cases {
        // An open route: without the header it would be 200, so a 401 proves the header was
        // judged rather than ignored.
        let mut request = app.request(Method::GET, "/");
        for (key, value) in headers {
            request = request.header(key, value);
        }
        let response = request.send().await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
}

/// A token that verifies but names no account (one signed with the server's key for an id
/// that was never issued, or whose account is gone) is nobody's credential: a 401 on every
/// route, never a 500 from a write that references the missing user.
#[tokio::test]
async fn a_valid_token_for_a_user_that_does_not_exist_is_a_401_everywhere() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let film_id = app.create_film(&owner.token, "Nosferatu", "Prana").await["id"]
        .as_i64()
        .unwrap();
    let key = SigningKey::of(&app).await;
    let ghost = key.sign(&key.header(), &claims_for(999_999));
    let film = format!("/api/v1/films/{film_id}");
    let vote = format!("{film}/vote");
    let like = format!("/?like={film_id}");
    let new_film = json!({ "name": "Haunted", "studio": "Nobody" });
    let cases = [
        (
            "create a film",
            Method::POST,
            "/api/v1/films",
            Some(new_film.clone()),
        ),
        (
            "add a film (seed route)",
            Method::POST,
            "/add_film",
            Some(new_film),
        ),
        (
            "vote",
            Method::PUT,
            vote.as_str(),
            Some(json!({ "vote": "like" })),
        ),
        ("vote (seed route)", Method::GET, like.as_str(), None),
        ("withdraw a vote", Method::DELETE, vote.as_str(), None),
        (
            "edit a film",
            Method::PATCH,
            film.as_str(),
            Some(json!({ "name": "Mine" })),
        ),
        ("delete a film", Method::DELETE, film.as_str(), None),
        (
            "create an API key",
            Method::POST,
            "/api/v1/users/me/api-keys",
            Some(json!({ "name": "ghost key", "scopes": ["write"] })),
        ),
        (
            "list API keys",
            Method::GET,
            "/api/v1/users/me/api-keys",
            None,
        ),
        (
            "change the password",
            Method::PUT,
            "/api/v1/users/me/password",
            Some(json!({
                "current_password": "whatever-it-was",
                "new_password": "a-brand-new-passphrase",
            })),
        ),
        ("read the profile", Method::GET, "/api/v1/users/me", None),
        (
            "log out",
            Method::POST,
            "/api/v1/auth/logout",
            Some(json!({})),
        ),
    ];
    for (name, method, path, body) in cases {
        let mut request = app.request(method, path).bearer(&ghost);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let film: Value = app.get(&film, None).await.json().await.unwrap();
    assert_eq!(film["name"], "Nosferatu", "nothing changed");
    assert_eq!(film["likes"], 0);
}
