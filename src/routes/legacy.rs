//! The seed's routes (`GET /`, `POST|HEAD /add_film`), kept so its curl lines and table still
//! work, now authenticated for writes. Responses announce their deprecation, their sunset and
//! `/api/v1/films` as the successor.

use actix_web::{HttpRequest, HttpResponse, http::header, middleware::DefaultHeaders, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    audit::AuditContext,
    auth::{Authenticated, MaybeAuthenticated, Write},
    domain::{
        film::Film,
        vote::{Ballot, Vote},
    },
    error::ApiError,
    extract::{Json, Query},
    routes::films::{self, CreateFilmRequest},
    security::rate_limit::Limiters,
    state::AppState,
    web::idempotency::IdempotencyKey,
};

/// When the seed routes were deprecated (RFC 9745 `Deprecation`, 2026-11-01T00:00:00Z).
pub const DEPRECATED_SINCE: &str = "@1793491200";
/// When they stop being served (RFC 8594 `Sunset`, an HTTP-date): six months after the
/// deprecation, time for clients to move to `/api/v1/films`.
pub const SUNSET: &str = "Sat, 01 May 2027 00:00:00 GMT";
/// Where the deprecation is explained (RFC 9745 `rel="deprecation"`, the API document's seed
/// section) and what replaces the routes (RFC 8594's successor link).
pub const DEPRECATION_LINKS: &str = "</api/v1/films>; rel=\"successor-version\", </docs/#/seed>; rel=\"deprecation\"; type=\"text/html\"";

pub fn deprecation_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Deprecation", DEPRECATED_SINCE))
        .add(("Sunset", SUNSET))
        .add((header::LINK, DEPRECATION_LINKS))
}

/// The seed limited both routes (1/second per IP); here each request counts against the
/// caller's write budget (per user, else per client), besides the global per-client limit.
pub fn configure(cfg: &mut web::ServiceConfig, limiters: &Limiters) {
    let limited = |resource: actix_web::Resource| {
        resource
            .wrap(limiters.legacy.clone())
            .wrap(deprecation_headers())
    };
    cfg.service(limited(
        web::resource("/").route(web::get().to(random_film_or_vote)),
    ))
    .service(limited(
        web::resource("/add_film")
            .route(web::post().to(add_film))
            .route(web::head().to(add_film_head)),
    ));
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VoteQuery {
    /// Film id to like (needs authentication).
    #[param(pattern = "^[0-9]{1,19}$")]
    like: Option<String>,
    /// Film id to dislike (needs authentication); not together with `like`.
    #[param(pattern = "^[0-9]{1,19}$")]
    dislike: Option<String>,
}

const MAX_ID_DIGITS: usize = 19;

/// The seed accepted `str.isdigit()`; here an id is 1–19 ASCII digits that fit an i64 (no
/// sign, no spaces, no Unicode digits).
pub(crate) fn parse_film_id(field: &str, raw: &str) -> Result<i64, ApiError> {
    let digits_only =
        !raw.is_empty() && raw.len() <= MAX_ID_DIGITS && raw.bytes().all(|b| b.is_ascii_digit());
    digits_only
        .then(|| raw.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| ApiError::BadRequest {
            detail: "The film id must be a positive whole number.".into(),
            errors: vec![crate::error::FieldError::new(
                field,
                "must be 1 to 19 decimal digits within the 64-bit range",
            )],
        })
}

/// `GET /`: a random film.
///
/// With `?like=ID` or `?dislike=ID` (authenticated), first records the caller's vote on
/// film ID.
#[utoipa::path(get, path = "/", tag = "seed", params(VoteQuery),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "A random film", body = Film,
        headers(("Deprecation" = String, description = "RFC 9745: deprecated since 2026-11-01"),
            ("Sunset" = String, description = "RFC 8594: served until this HTTP-date"),
            ("Link" = String,
                description = "The successor (`rel=\"successor-version\"`) and the deprecation notice (`rel=\"deprecation\"`)")))))]
pub(crate) async fn random_film_or_vote(
    state: web::Data<AppState>,
    caller: MaybeAuthenticated,
    Query(query): Query<VoteQuery>,
) -> Result<HttpResponse, ApiError> {
    let requested_vote = match (&query.like, &query.dislike) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Send either `like` or `dislike`, not both.",
            ));
        }
        (Some(id), None) => Some((Vote::Like, "like", id)),
        (None, Some(id)) => Some((Vote::Dislike, "dislike", id)),
        (None, None) => None,
    };
    if let Some((vote, field, raw_id)) = requested_vote {
        let voter = caller.require::<Write>()?;
        let film_id = parse_film_id(field, raw_id)?;
        films::cast_and_announce(
            &state,
            Ballot {
                user_id: voter.user_id,
                film_id,
                vote,
            },
        )
        .await?;
    }
    films::random_film_response(&state).await
}

/// `POST /add_film`: the seed's way to add a film; same as `POST /api/v1/films`.
///
/// `Idempotency-Key` works here too, with keys of its own (a key used on the other route is
/// another request).
#[utoipa::path(post, path = "/add_film", tag = "seed", request_body = CreateFilmRequest,
    params(("Idempotency-Key" = Option<String>, Header, max_length = 257,
        pattern = r#"^"?[!#-\[\]-~]{1,255}"?$"#,
        description = "As on `POST /api/v1/films`")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, description = "The stored film", body = Film,
        headers(("Location" = String), ("Idempotency-Replayed" = String),
            ("Deprecation" = String, description = "RFC 9745: deprecated since 2026-11-01"),
            ("Sunset" = String, description = "RFC 8594: served until this HTTP-date"),
            ("Link" = String,
                description = "The successor (`rel=\"successor-version\"`) and the deprecation notice (`rel=\"deprecation\"`)"))),
        (status = 400, description = "Malformed body or Idempotency-Key"),
        (status = 409, description = "The first request with this Idempotency-Key is in flight"),
        (status = 422, description = "Invalid fields, or an Idempotency-Key used for another request")))]
pub(crate) async fn add_film(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: Authenticated<Write>,
    key: IdempotencyKey,
    audit: AuditContext,
    body: Json<CreateFilmRequest>,
) -> Result<HttpResponse, ApiError> {
    films::create_film(state, request, caller, key, audit, body).await
}

/// `HEAD /add_film`: lets a client check the route exists without sending a film.
#[utoipa::path(head, path = "/add_film", tag = "seed",
    responses((status = 200, description = "The route exists",
        headers(("Allow" = String, description = "POST, HEAD")))))]
pub(crate) async fn add_film_head() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ALLOW, "POST, HEAD"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn film_ids_are_plain_decimal_digits_in_range() {
        assert_eq!(parse_film_id("like", "123").unwrap(), 123);
        assert_eq!(
            parse_film_id("like", "9223372036854775807").unwrap(),
            i64::MAX
        );
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "0x1f",
            "١٢٣",
            "9223372036854775808",
            "99999999999999999999",
            "1;DROP TABLE films",
        ] {
            assert!(parse_film_id("like", bad).is_err(), "{bad:?}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// Accepted exactly when the seed's rule holds: 1+ ASCII digits that fit an i64.
            #[test]
            fn film_ids_are_accepted_exactly_when_they_are_in_range_digits(raw in "\\PC{0,25}") {
                let expected = !raw.is_empty()
                    && raw.bytes().all(|b| b.is_ascii_digit())
                    && raw.parse::<i64>().is_ok();
                prop_assert_eq!(parse_film_id("like", &raw).is_ok(), expected);
            }

            #[test]
            fn the_vote_query_parser_never_panics_nor_echoes_values(
                key in "[a-z]{1,12}",
                value in "[A-Za-z]{12,40}",
            ) {
                let query = format!("{key}={value}&like=1");
                if let Err(ApiError::BadRequest { errors, detail }) = crate::extract::parse_query::<VoteQuery>(&query) {
                    for error in &errors {
                        prop_assert!(!error.message.contains(&value));
                        prop_assert!(!error.field.contains(&value));
                    }
                    prop_assert!(!detail.contains(&value));
                }
            }
        }
    }
}
