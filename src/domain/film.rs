//! Films: validated names, studios and years, and the queries on the `films` table.
//!
//! Ownership is enforced here, inside the transaction that changes the film: the row is
//! locked for writing (`BEGIN IMMEDIATE`), its owner compared with the caller, and only then
//! changed. There is no window between the check and the write.

use serde::Serialize;
use sqlx::{SqliteExecutor, SqlitePool, prelude::FromRow};
use validator::ValidationError;

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::Principal,
    domain::{Page, Paginated, text},
    error::ApiError,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilmName(String);

impl FilmName {
    pub fn validate(value: &str) -> Result<(), ValidationError> {
        text::check_display_text(value, 1, 200)
    }

    pub fn parse(value: String) -> Result<Self, ValidationError> {
        Self::validate(&value).map(|()| Self(value))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudioName(String);

impl StudioName {
    pub fn validate(value: &str) -> Result<(), ValidationError> {
        text::check_display_text(value, 1, 100)
    }

    pub fn parse(value: String) -> Result<Self, ValidationError> {
        Self::validate(&value).map(|()| Self(value))
    }
}

/// From the first surviving film (1888) to a few years of announced releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseYear(i64);

impl ReleaseYear {
    pub const FIRST: i64 = 1888;
    pub const LAST: i64 = 2100;

    pub fn validate(value: i64) -> Result<(), ValidationError> {
        Self::parse(value).map(|_| ())
    }

    pub fn parse(value: i64) -> Result<Self, ValidationError> {
        if (Self::FIRST..=Self::LAST).contains(&value) {
            Ok(Self(value))
        } else {
            let mut error = ValidationError::new("range");
            error.add_param("min".into(), &Self::FIRST);
            error.add_param("max".into(), &Self::LAST);
            Err(error)
        }
    }
}

#[derive(Debug)]
pub struct NewFilm {
    pub name: FilmName,
    pub studio: StudioName,
    pub year: Option<ReleaseYear>,
}

/// A partial update: `None` leaves a field alone; `year: Some(None)` clears the year.
#[derive(Debug, Default)]
pub struct FilmChanges {
    pub name: Option<FilmName>,
    pub studio: Option<StudioName>,
    pub year: Option<Option<ReleaseYear>>,
}

/// A film as the API shows it. `owner` is the owner's username (`null` for the curated
/// catalogue); the owner's id is kept for authorization and not serialized.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
#[schema(example = json!({"id": 1, "name": "Frozen", "studio": "Disney", "year": 2013,
    "owner": null, "likes": 3, "dislikes": 0, "created_at": "2026-11-23T20:19:17.250Z",
    "updated_at": "2026-11-23T20:19:17.250Z"}))]
pub struct Film {
    pub id: i64,
    pub name: String,
    pub studio: String,
    pub year: Option<i64>,
    /// The creator's username; `null` for the curated catalogue.
    pub owner: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    pub owner_id: Option<i64>,
    pub likes: i64,
    pub dislikes: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[tracing::instrument(skip(executor))]
pub async fn get(executor: impl SqliteExecutor<'_>, id: i64) -> Result<Option<Film>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM film_view WHERE id = ?1")
        .bind(id)
        .fetch_optional(executor)
        .await
}

/// One film picked uniformly by id position: a single index seek, and gaps left by deleted
/// films are skipped by taking the next id up.
#[tracing::instrument(skip(executor))]
pub async fn random(executor: impl SqliteExecutor<'_>) -> Result<Option<Film>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM film_view
         WHERE id >= (SELECT abs(random()) % max(id) + 1 FROM films) ORDER BY id LIMIT 1",
    )
    .fetch_optional(executor)
    .await
}

#[tracing::instrument(skip(executor))]
pub async fn list(
    executor: impl SqliteExecutor<'_> + Copy,
    search: Option<&str>,
    page: Page,
) -> Result<Paginated<Film>, sqlx::Error> {
    let pattern = search.map(text::like_pattern);
    let items = sqlx::query_as(
        "SELECT * FROM film_view WHERE ?1 IS NULL OR name LIKE ?1 ESCAPE '\\'
         ORDER BY id LIMIT ?2 OFFSET ?3",
    )
    .bind(pattern.as_deref())
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(executor)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM films WHERE ?1 IS NULL OR name LIKE ?1 ESCAPE '\\'",
    )
    .bind(pattern.as_deref())
    .fetch_one(executor)
    .await?;
    Ok(page.of(items, total))
}

/// Stores a film and returns it as stored; `RETURNING` gives it back without a second query.
/// `owner` is left empty: the owner's name is the caller's to fill in.
#[tracing::instrument(skip_all, fields(owner_id))]
pub async fn insert(
    executor: impl SqliteExecutor<'_>,
    film: &NewFilm,
    owner_id: Option<i64>,
) -> Result<Film, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO films (name, studio, year, owner_id) VALUES (?1, ?2, ?3, ?4)
         RETURNING id, name, studio, year, NULL AS owner, owner_id, likes, dislikes,
                   created_at, updated_at",
    )
    .bind(&film.name.0)
    .bind(&film.studio.0)
    .bind(film.year.map(|y| y.0))
    .bind(owner_id)
    .fetch_one(executor)
    .await
}

/// Inserts the film and its audit row in one transaction. The owner's name comes from the
/// caller's credentials, so no lookup.
pub async fn create(
    writer: &SqlitePool,
    film: &NewFilm,
    owner: &Principal,
    audit: &AuditContext,
) -> Result<Film, ApiError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut stored = insert(&mut *tx, film, Some(owner.user_id)).await?;
    stored.owner = Some(owner.username.clone());
    let event = audit
        .event(AuditAction::FilmCreate, Outcome::Success)
        .target(AuditTarget::Film(stored.id));
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(stored)
}

/// Who may change a film: its owner, or an admin. Curated films (no owner) are admin-only.
fn may_modify(film: &Film, principal: &Principal) -> bool {
    principal.role.is_admin() || film.owner_id == Some(principal.user_id)
}

#[tracing::instrument(skip(writer, changes, audit), fields(user_id = principal.user_id))]
pub async fn update(
    writer: &SqlitePool,
    id: i64,
    changes: &FilmChanges,
    principal: &Principal,
    audit: &AuditContext,
) -> Result<Film, ApiError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let film = get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
    if !may_modify(&film, principal) {
        return Err(ApiError::Forbidden);
    }
    sqlx::query(
        "UPDATE films
         SET name = coalesce(?2, name),
             studio = coalesce(?3, studio),
             year = CASE WHEN ?4 THEN ?5 ELSE year END,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE id = ?1",
    )
    .bind(id)
    .bind(changes.name.as_ref().map(|n| n.0.as_str()))
    .bind(changes.studio.as_ref().map(|s| s.0.as_str()))
    .bind(changes.year.is_some())
    .bind(changes.year.flatten().map(|y| y.0))
    .execute(&mut *tx)
    .await?;
    let updated = get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
    let event = audit
        .event(AuditAction::FilmUpdate, Outcome::Success)
        .target(AuditTarget::Film(id));
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(updated)
}

#[tracing::instrument(skip(writer, audit), fields(user_id = principal.user_id))]
pub async fn delete(
    writer: &SqlitePool,
    id: i64,
    principal: &Principal,
    audit: &AuditContext,
) -> Result<Film, ApiError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let film = get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
    if !may_modify(&film, principal) {
        return Err(ApiError::Forbidden);
    }
    sqlx::query("DELETE FROM films WHERE id = ?1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let event = audit
        .event(AuditAction::FilmDelete, Outcome::Success)
        .target(AuditTarget::Film(id));
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(film)
}

pub async fn count(executor: impl SqliteExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM films")
        .fetch_one(executor)
        .await
}
