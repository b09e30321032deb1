//! `/api/v1/films`: the catalogue, open to read, authenticated to write.

use std::{cell::Cell, rc::Rc};

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::{
    audit::AuditContext,
    auth::{Authenticated, Write},
    crypto::Keyring,
    domain::{
        Page,
        cursor::ListCursor,
        film::{
            self, Creation, Film, FilmChanges, FilmList, FilmName, NewFilm, ReleaseYear, StudioName,
        },
        text,
        vote::{self, Ballot, Cast, Vote},
    },
    error::{ApiError, FieldError, ForField},
    extract::{Json, Query},
    read_cache::{FilmChange, PageKey},
    state::AppState,
    web::{
        conditional::{IfMatch, IfMatchHeader, IfNoneMatch, IfNoneMatchHeader, Representation},
        idempotency::{self, IdempotencyKey},
        problem::Problem,
    },
};

pub const MAX_SEARCH_CHARS: u64 = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("")
            .route(super::read().to(list_films))
            .route(web::post().to(create_film)),
    )
    .service(web::resource("/random").route(super::read().to(random_film)))
    .service(
        web::resource("/{id}")
            .route(super::read().to(get_film))
            .route(web::patch().to(update_film))
            .route(web::delete().to(delete_film)),
    )
    .service(
        web::resource("/{id}/vote")
            .route(web::put().to(cast_vote))
            .route(web::delete().to(withdraw_vote)),
    );
}

/// A new film. `id`, `owner`, the counts and the timestamps are set by the server; sending
/// them is an error.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Spirited Away", "studio": "Studio Ghibli", "year": 2001}))]
pub struct CreateFilmRequest {
    /// Surrounding whitespace is trimmed; no control, invisible or bidi-override characters.
    #[serde(deserialize_with = "text::trimmed")]
    #[validate(custom(function = FilmName::validate))]
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(deserialize_with = "text::trimmed")]
    #[validate(custom(function = StudioName::validate))]
    #[schema(min_length = 1, max_length = 100)]
    pub studio: String,
    #[serde(default)]
    #[validate(custom(function = ReleaseYear::validate))]
    #[schema(minimum = 1888, maximum = 2100)]
    pub year: Option<i64>,
}

impl TryFrom<CreateFilmRequest> for NewFilm {
    type Error = ApiError;

    fn try_from(request: CreateFilmRequest) -> Result<Self, ApiError> {
        request.validate()?;
        Ok(Self {
            name: FilmName::parse(request.name).for_field("name")?,
            studio: StudioName::parse(request.studio).for_field("studio")?,
            year: request
                .year
                .map(ReleaseYear::parse)
                .transpose()
                .for_field("year")?,
        })
    }
}

/// Absent fields are left alone; `"year": null` clears the year (a name or studio cannot be
/// null). At least one field.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFilmRequest {
    #[serde(default, deserialize_with = "text::trimmed_if_present")]
    #[validate(custom(function = FilmName::validate))]
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "text::trimmed_if_present")]
    #[validate(custom(function = StudioName::validate))]
    #[schema(value_type = String, min_length = 1, max_length = 100)]
    pub studio: Option<String>,
    #[serde(default, deserialize_with = "present_or_null")]
    #[validate(custom(function = ReleaseYear::validate))]
    #[schema(value_type = Option<i64>, minimum = 1888, maximum = 2100)]
    pub year: Option<Option<i64>>,
}

/// Tells a missing field (`None`, via `default`) from an explicit `null` (`Some(None)`).
fn present_or_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl TryFrom<UpdateFilmRequest> for FilmChanges {
    type Error = ApiError;

    fn try_from(request: UpdateFilmRequest) -> Result<Self, ApiError> {
        request.validate()?;
        if request.name.is_none() && request.studio.is_none() && request.year.is_none() {
            return Err(ApiError::bad_request(
                "Send at least one of `name`, `studio`, `year`.",
            ));
        }
        Ok(Self {
            name: request
                .name
                .map(FilmName::parse)
                .transpose()
                .for_field("name")?,
            studio: request
                .studio
                .map(StudioName::parse)
                .transpose()
                .for_field("studio")?,
            year: request
                .year
                .map(|year| year.map(ReleaseYear::parse).transpose())
                .transpose()
                .for_field("year")?,
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListFilmsQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Items to skip, 0 to 100 000. Not together with `cursor`.
    #[param(minimum = 0, maximum = 100_000)]
    pub offset: Option<i64>,
    /// The `next_cursor` of the previous page, unchanged, sent with the same `q`: the page
    /// after it, however many films were added or deleted meanwhile. Not together with
    /// `offset`.
    #[param(min_length = 34, max_length = 34, pattern = "^[A-Za-z0-9_-]{34}$")]
    pub cursor: Option<String>,
    /// Case-insensitive substring of the name; `%` and `_` match literally.
    #[param(max_length = 100)]
    pub q: Option<String>,
}

impl ListFilmsQuery {
    fn page(&self) -> Result<Page, ApiError> {
        if self.cursor.is_some() && self.offset.is_some() {
            return Err(ApiError::BadRequest {
                detail: "Send either `cursor` or `offset`, not both.".into(),
                errors: ["cursor", "offset"]
                    .map(|field| FieldError::new(field, "not together with the other"))
                    .into(),
            });
        }
        Page::new(self.limit, self.offset)
    }

    fn cursor(&self, keyring: &Keyring, search: Option<&str>) -> Result<Option<i64>, ApiError> {
        self.cursor
            .as_deref()
            .map(|raw| ListCursor::decode(keyring, raw, search).map(|c| c.after_id))
            .transpose()
    }

    fn search(&self) -> Result<Option<&str>, ApiError> {
        match self.q.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(term) => text::check_display_text(term, 1, MAX_SEARCH_CHARS)
                .map(|()| Some(term))
                .for_field("q"),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    pub vote: Vote,
}

/// A page of films in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilmPage {
    #[schema(max_items = 100)]
    pub items: Vec<Film>,
    /// Films matching `q`, on every page.
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64, format = Int64)]
    pub total: i64,
    #[schema(minimum = 1, maximum = 100, format = Int64)]
    pub limit: i64,
    /// As sent; 0 with a cursor.
    #[schema(minimum = 0, maximum = 100_000, format = Int64)]
    pub offset: i64,
    /// Send it back as `cursor` (with the same `q`) for the next page; `null` on the last.
    #[schema(min_length = 34, max_length = 34, pattern = "^[A-Za-z0-9_-]{34}$")]
    pub next_cursor: Option<String>,
}

impl FilmPage {
    /// The page to send: `next_cursor` continues after its last film, if more follow.
    fn of(films: FilmList, keyring: &Keyring, search: Option<&str>) -> Self {
        let next_cursor = films
            .page
            .items
            .last()
            .filter(|_| films.has_more)
            .map(|last| ListCursor { after_id: last.id }.encode(keyring, search));
        Self {
            items: films.page.items,
            total: films.page.total,
            limit: films.page.limit,
            offset: films.page.offset,
            next_cursor,
        }
    }
}

/// List films, optionally searching names.
///
/// Paged by `offset`, or by `cursor` (keyset: a walk sees every film that exists throughout
/// it exactly once). The list has one order, by id; a cursor continues the walk of the same
/// `q` only.
#[utoipa::path(get, path = "/api/v1/films", tag = "films", params(ListFilmsQuery, IfNoneMatchHeader),
    responses(
        (status = 200, description = "A page of films", body = FilmPage, headers(
            ("ETag" = String, description = "Strong entity tag of this page"),
            ("Cache-Control" = String, description = "`private, no-cache`"))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`", headers(
            ("ETag" = String, description = "Strong entity tag of the page"))),
        (status = 400, description = "A bad query: a cursor not issued for this search, \
            `cursor` with `offset`, or a malformed `If-None-Match`", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn list_films(
    state: web::Data<AppState>,
    query: Query<ListFilmsQuery>,
    if_none_match: IfNoneMatch,
) -> Result<HttpResponse, ApiError> {
    let page = query.0.page()?;
    let search = query.0.search()?;
    let after_id = query.0.cursor(&state.keyring, search)?;
    let key = PageKey {
        search: search.map(Into::into),
        limit: page.limit,
        offset: page.offset,
        after_id,
    };
    let representation = match state.reads.page(&key) {
        Ok(kept) => kept,
        Err(ticket) => {
            let films = film::list(&mut state.db.read().await?, search, page, after_id).await?;
            let shown = films.page.items.first().zip(films.page.items.last());
            let shown = shown.map(|(first, last)| first.id..=last.id);
            let representation =
                Representation::json(&FilmPage::of(films, &state.keyring, search))?;
            state
                .reads
                .keep_page(key, ticket, representation.clone(), shown);
            representation
        }
    };
    Ok(representation.read_response(&if_none_match))
}

/// A random film.
#[utoipa::path(get, path = "/api/v1/films/random", tag = "films",
    responses((status = 200, description = "A film", body = Film)))]
pub(crate) async fn random_film(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    random_film_response(&state).await
}

/// 404 only when the catalogue is empty.
pub async fn random_film_response(state: &AppState) -> Result<HttpResponse, ApiError> {
    let pick = film::random_id_up_to(highest_film_id(state).await?)?;
    let representation = match state.reads.film(pick) {
        Ok(kept) => kept,
        Err(ticket) => {
            let mut db = state.db.read().await?;
            // The first film from the pick: ids left by deleted films are skipped. Nothing
            // from there on when the highest id is newer than a deletion this instance has not
            // heard of yet: the draw wraps around to the first film.
            let film = match film::first_from(&mut db, pick).await? {
                Some(film) => film,
                None => film::first_from(&mut db, 1)
                    .await?
                    .ok_or(ApiError::NotFound)?,
            };
            let representation = Representation::json(&film)?;
            if film.id == pick {
                state.reads.keep_film(pick, ticket, representation.clone());
            }
            representation
        }
    };
    Ok(representation.untagged_response())
}

/// The highest film id, from the read cache or read (and kept there).
async fn highest_film_id(state: &AppState) -> Result<i64, ApiError> {
    match state.reads.highest_film_id() {
        Ok(kept) => Ok(kept),
        Err(ticket) => {
            let highest = film::highest_id(&mut state.db.read().await?)
                .await?
                .ok_or(ApiError::NotFound)?;
            state.reads.keep_highest_film_id(ticket, highest);
            Ok(highest)
        }
    }
}

/// One film with its like and dislike counts.
#[utoipa::path(get, path = "/api/v1/films/{id}", tag = "films",
    params(("id" = i64, Path), IfNoneMatchHeader),
    responses(
        (status = 200, description = "The film", body = Film, headers(
            ("ETag" = String, description = "Strong entity tag of the film as sent"),
            ("Cache-Control" = String, description = "`private, no-cache`"))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`", headers(
            ("ETag" = String, description = "Strong entity tag of the film"))),
        (status = 400, description = "A malformed `If-None-Match`", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn get_film(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    if_none_match: IfNoneMatch,
) -> Result<HttpResponse, ApiError> {
    Ok(film_representation(&state, *id)
        .await?
        .read_response(&if_none_match))
}

/// The film as stored now, with its entity tag: from the read cache, or read and kept there.
async fn film_representation(state: &AppState, id: i64) -> Result<Representation, ApiError> {
    match state.reads.film(id) {
        Ok(kept) => Ok(kept),
        Err(ticket) => {
            let film = film::get(&mut state.db.read().await?, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            let representation = Representation::json(&film)?;
            state.reads.keep_film(id, ticket, representation.clone());
            Ok(representation)
        }
    }
}

/// `If-Match` against the film as it is inside the write's transaction.
fn matching(if_match: &IfMatch) -> impl FnOnce(&Film) -> Result<(), ApiError> + '_ {
    move |current| if_match.check(current)
}

/// Add a film, owned by the caller.
///
/// With an `Idempotency-Key`, a retry gets the first answer (marked `Idempotency-Replayed`)
/// and creates nothing; see `web::idempotency`.
#[utoipa::path(post, path = "/api/v1/films", tag = "films", request_body = CreateFilmRequest,
    params(("Idempotency-Key" = Option<String>, Header, max_length = 257,
        pattern = r#"^"?[!#-\[\]-~]{1,255}"?$"#,
        description = "Makes a retry safe: the same key and body within 24 h get the first \
            answer again (1 to 255 visible ASCII characters, no quote or backslash; optionally \
            in double quotes, as the IETF draft writes it)")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, description = "The stored film (or, replayed, the first answer)",
        body = Film, headers(("Location" = String, description = "URL of the new film"),
            ("Idempotency-Replayed" = String,
                description = "`true` when this is the stored answer to an earlier request"))),
        (status = 400, description = "Malformed body or Idempotency-Key"),
        (status = 409, description = "The first request with this Idempotency-Key is in flight"),
        (status = 422, description = "Invalid fields, or an Idempotency-Key used for another request")))]
pub async fn create_film(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: Authenticated<Write>,
    key: IdempotencyKey,
    audit: AuditContext,
    Json(body): Json<CreateFilmRequest>,
) -> Result<HttpResponse, ApiError> {
    let new_film = NewFilm::try_from(body)?;
    let Some(key) = key.into_inner() else {
        // Without a key, nothing to replay: the film joins the creations written together.
        let creation = Creation::new(new_film, &caller, &audit);
        let state = state.into_inner();
        let film = to_the_end(async move {
            let film = state.creations.write(creation).await?;
            state.reads.changed(FilmChange::Film(film.id)).await;
            Ok(film)
        })
        .await?;
        return Ok(created(&film));
    };
    let fingerprint = new_film_fingerprint(request.path(), &new_film);
    let user_id = caller.user_id;
    let fingerprint: Vec<&[u8]> = fingerprint.iter().map(Vec::as_slice).collect();
    // Set only when this request created the film (a replay created nothing new to forget).
    let created_id = Rc::new(Cell::new(None));
    let created_here = Rc::clone(&created_id);
    let response = idempotency::at_most_once(&state.db, user_id, key, &fingerprint, move |tx| {
        Box::pin(async move {
            let creation = Creation::new(new_film, &caller, &audit);
            let film = film::create(tx, &creation).await?;
            created_here.set(Some(film.id));
            Ok(created(&film))
        })
    })
    .await?;
    if let Some(id) = created_id.get() {
        state.reads.changed(FilmChange::Film(id)).await;
    }
    Ok(response)
}

/// Records `ballot` and, if it changed the counts, forgets the film's cached reads here and
/// on every instance.
pub(crate) async fn cast_and_announce(
    state: &web::Data<AppState>,
    ballot: Ballot,
) -> Result<(), ApiError> {
    let state = state.clone().into_inner();
    to_the_end(async move {
        let film_id = ballot.film_id;
        if state.ballots.write(ballot).await? == Cast::Changed {
            state.reads.changed(FilmChange::Votes(film_id)).await;
        }
        Ok(())
    })
    .await
}

/// Runs `write` to its end even if the request is dropped on the way (the client went
/// away): a queued write may commit after that, and what it changed must still be forgotten
/// by the read caches.
async fn to_the_end<T: 'static>(
    write: impl Future<Output = Result<T, ApiError>> + 'static,
) -> Result<T, ApiError> {
    actix_web::rt::spawn(write)
        .await
        .unwrap_or_else(|_| Err(ApiError::Internal(anyhow::anyhow!("a write task panicked"))))
}

fn created(film: &Film) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/films/{}", film.id)))
        .json(film)
}

/// What makes two creations the same request: the route and the parsed fields.
fn new_film_fingerprint(path: &str, film: &NewFilm) -> [Vec<u8>; 4] {
    [
        path.as_bytes().to_vec(),
        film.name.as_str().as_bytes().to_vec(),
        film.studio.as_str().as_bytes().to_vec(),
        film.year
            .map_or_else(Vec::new, |year| year.value().to_be_bytes().to_vec()),
    ]
}

/// Change a film: its owner or an admin.
///
/// With `If-Match`, only if the film is still the one the client read.
#[utoipa::path(patch, path = "/api/v1/films/{id}", tag = "films",
    params(("id" = i64, Path), IfMatchHeader),
    request_body = UpdateFilmRequest, security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The changed film", body = Film, headers(
            ("ETag" = String, description = "Strong entity tag of the changed film"))),
        (status = 400, description = "A malformed `If-Match`", body = Problem,
            content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names none of the film's current tags; \
            nothing changed", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn update_film(
    state: web::Data<AppState>,
    caller: Authenticated<Write>,
    audit: AuditContext,
    id: web::Path<i64>,
    if_match: IfMatch,
    Json(request): Json<UpdateFilmRequest>,
) -> Result<HttpResponse, ApiError> {
    let changes = FilmChanges::try_from(request)?;
    let film = film::update(
        &state.db,
        *id,
        &changes,
        &caller,
        &audit,
        matching(&if_match),
    )
    .await?;
    state.reads.changed(FilmChange::Film(film.id)).await;
    Ok(Representation::json(&film)?.write_response(StatusCode::OK))
}

/// Delete a film and its votes: its owner or an admin.
///
/// With `If-Match`, only if the film is still the one the client read.
#[utoipa::path(delete, path = "/api/v1/films/{id}", tag = "films",
    params(("id" = i64, Path), IfMatchHeader),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A malformed `If-Match`", body = Problem,
            content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names none of the film's current tags; \
            nothing was deleted", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn delete_film(
    state: web::Data<AppState>,
    caller: Authenticated<Write>,
    audit: AuditContext,
    id: web::Path<i64>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    film::delete(&state.db, *id, &caller, &audit, matching(&if_match)).await?;
    state.reads.changed(FilmChange::Film(*id)).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Like or dislike a film: one vote per user, so repeating it changes nothing.
#[utoipa::path(put, path = "/api/v1/films/{id}/vote", tag = "films", params(("id" = i64, Path)),
    request_body = VoteRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The film with its new counts", body = Film,
        headers(("ETag" = String, description = "Strong entity tag of the film now")))))]
pub(crate) async fn cast_vote(
    state: web::Data<AppState>,
    caller: Authenticated<Write>,
    id: web::Path<i64>,
    Json(request): Json<VoteRequest>,
) -> Result<HttpResponse, ApiError> {
    let ballot = Ballot {
        user_id: caller.user_id,
        film_id: *id,
        vote: request.vote,
    };
    cast_and_announce(&state, ballot).await?;
    // The committed vote is visible to the reader pool at once (WAL).
    Ok(film_representation(&state, *id)
        .await?
        .write_response(StatusCode::OK))
}

/// Withdraw the caller's vote, if any.
#[utoipa::path(delete, path = "/api/v1/films/{id}/vote", tag = "films",
    params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The film with its new counts", body = Film,
        headers(("ETag" = String, description = "Strong entity tag of the film now")))))]
pub(crate) async fn withdraw_vote(
    state: web::Data<AppState>,
    caller: Authenticated<Write>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    vote::withdraw(&state.db, caller.user_id, *id).await?;
    state.reads.changed(FilmChange::Votes(*id)).await;
    Ok(film_representation(&state, *id)
        .await?
        .write_response(StatusCode::OK))
}
