//! Films: validated names, studios and years, and the queries on the `films` table.
//!
//! Ownership is enforced here, inside the transaction that changes the film: the film is read
//! with its row locked for writing (see `lock`), its owner compared with the caller, the
//! client's precondition (`If-Match`) checked against it, and only then changed. There is no window between the check and the write, on any instance.

use serde::Serialize;
use sqlx::prelude::FromRow;
use validator::ValidationError;

use crate::{
    audit::{self, AuditAction, AuditContext, AuditEvent, AuditTarget, Outcome},
    auth::Principal,
    db::{self, Database, Executor, Timestamp, Transaction},
    domain::{
        Page, Paginated,
        group_commit::{Batch, GroupCommit},
        text,
    },
    error::ApiError,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilmName(String);

impl FilmName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

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
    pub fn as_str(&self) -> &str {
        &self.0
    }

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
    pub fn value(self) -> i64 {
        self.0
    }

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
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub id: i64,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(min_length = 1, max_length = 100)]
    pub studio: String,
    #[schema(minimum = 1888, maximum = 2100)]
    pub year: Option<i64>,
    /// The creator's username; `null` for the curated catalogue.
    #[schema(pattern = "^[A-Za-z0-9_]{3,32}$", max_length = 32)]
    pub owner: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    pub owner_id: Option<i64>,
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub likes: i64,
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub dislikes: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[tracing::instrument(level = "debug", skip(db))]
pub async fn get(db: &mut impl Executor, id: i64) -> sqlx::Result<Option<Film>> {
    db::fetch_optional!(db, "SELECT * FROM film_view WHERE id = $1", id).await
}

/// The film, its row locked until `tx` ends: no other transaction, on any instance, changes
/// or deletes it meanwhile (SQLite's write transaction already excludes every other writer).
async fn lock(tx: &mut Transaction, id: i64) -> sqlx::Result<Option<Film>> {
    db::fetch_optional!(
        tx,
        sqlite: "SELECT * FROM film_view WHERE id = $1",
        // The view's outer join cannot be locked: the same columns, locking the film only.
        postgres: "SELECT f.id, f.name, f.studio, f.year, u.username AS owner, f.owner_id,
                          f.likes, f.dislikes, f.created_at, f.updated_at
                   FROM films f LEFT JOIN users u ON u.id = f.owner_id
                   WHERE f.id = $1 FOR UPDATE OF f",
        id
    )
    .await
}

/// The highest film id, `None` when there is no film: with it, `GET /` picks an id at random.
pub async fn highest_id(db: &mut impl Executor) -> sqlx::Result<Option<i64>> {
    db::fetch_scalar!(db, "SELECT max(id) FROM films").await
}

/// An id from 1 to `highest`, every one equally likely (the remainder's bias is below
/// `highest / 2^64`).
pub fn random_id_up_to(highest: i64) -> Result<i64, ApiError> {
    let random: [u8; 8] = ring::rand::generate(&ring::rand::SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?
        .expose();
    let ids = u64::try_from(highest).unwrap_or(0).max(1);
    let offset = u64::from_le_bytes(random) % ids;
    Ok(i64::try_from(offset).unwrap_or(0) + 1)
}

/// The film with the lowest id from `id` up: a single index seek, which skips the ids left
/// by deleted films.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn first_from(db: &mut impl Executor, id: i64) -> sqlx::Result<Option<Film>> {
    db::fetch_optional!(
        db,
        "SELECT * FROM film_view WHERE id >= $1 ORDER BY id LIMIT 1",
        id
    )
    .await
}

/// A page of films, and whether more follow it.
#[derive(Debug)]
pub struct FilmList {
    pub page: Paginated<Film>,
    pub has_more: bool,
}

/// Ids start at 1: "after 0" is the start of the list.
const START: i64 = 0;

/// A page of films in id order, optionally those whose name contains `search` in any letter
/// case (SQLite's LIKE ignores the case of ASCII letters; PostgreSQL's ILIKE of every letter).
/// `after_id` (keyset paging) starts the page after that film, seeking on the primary key:
/// films added or deleted meanwhile never shift what a walk sees, unlike `page.offset`.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn list(
    db: &mut impl Executor,
    search: Option<&str>,
    page: Page,
    after_id: Option<i64>,
) -> sqlx::Result<FilmList> {
    let pattern = search.map(text::like_pattern);
    // One row past the page tells whether another page follows.
    let mut items: Vec<Film> = db::fetch_all!(
        db,
        sqlite: "SELECT * FROM film_view
                 WHERE ($1 IS NULL OR name LIKE $1 ESCAPE '\\') AND id > $4
                 ORDER BY id LIMIT $2 OFFSET $3",
        postgres: "SELECT * FROM film_view
                   WHERE ($1 IS NULL OR name ILIKE $1 ESCAPE '\\') AND id > $4
                   ORDER BY id LIMIT $2 OFFSET $3",
        pattern.as_deref(),
        page.limit + 1,
        page.offset,
        after_id.unwrap_or(START)
    )
    .await?;
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let has_more = items.len() > limit;
    items.truncate(limit);
    let total = db::fetch_scalar!(
        db,
        sqlite: "SELECT count(*) FROM films WHERE $1 IS NULL OR name LIKE $1 ESCAPE '\\'",
        postgres: "SELECT count(*) FROM films WHERE $1 IS NULL OR name ILIKE $1 ESCAPE '\\'",
        pattern.as_deref()
    )
    .await?;
    Ok(FilmList {
        page: page.of(items, total),
        has_more,
    })
}

/// Inserts `films` (each with its owner, `None` for the curated catalogue) with one
/// statement, and returns them in the same order.
#[tracing::instrument(level = "debug", skip_all, fields(films = films.len()))]
pub async fn insert_all(
    db: &mut impl Executor,
    films: &[(&NewFilm, Option<i64>)],
) -> sqlx::Result<Vec<Film>> {
    // The rows travel as one JSON array: one static statement for any number of films.
    let rows: Vec<_> = films
        .iter()
        .map(|(film, owner_id)| {
            (
                film.name.as_str(),
                film.studio.as_str(),
                film.year.map(ReleaseYear::value),
                owner_id,
            )
        })
        .collect();
    let rows = serde_json::to_string(&rows).expect("strings and integers serialize");
    let inserted: Vec<Film> = db::fetch_all!(
        db,
        sqlite: "INSERT INTO films (name, studio, year, owner_id)
                 SELECT given.value ->> 0, given.value ->> 1, given.value ->> 2, given.value ->> 3
                 FROM json_each($1) AS given
                 ORDER BY given.key
                 RETURNING id, name, studio, year, NULL AS owner, owner_id, likes, dislikes,
                           created_at, updated_at",
        postgres: "INSERT INTO films (name, studio, year, owner_id)
                   SELECT given.value ->> 0, given.value ->> 1, (given.value ->> 2)::bigint,
                          (given.value ->> 3)::bigint
                   FROM json_array_elements($1::json) WITH ORDINALITY AS given (value, key)
                   ORDER BY given.key
                   RETURNING id, name, studio, year, NULL AS owner, owner_id, likes, dislikes,
                             created_at, updated_at",
        rows
    )
    .await?;
    Ok(in_given_order(films, inserted))
}

/// The inserted films in the order of `given`: RETURNING promises no order, so each is
/// matched by its fields (lowest id first among equal ones; equal films are interchangeable).
fn in_given_order(given: &[(&NewFilm, Option<i64>)], mut inserted: Vec<Film>) -> Vec<Film> {
    inserted.sort_unstable_by_key(|film| film.id);
    let mut slots: Vec<Option<Film>> = inserted.into_iter().map(Some).collect();
    given
        .iter()
        .filter_map(|(film, owner_id)| {
            let slot = slots.iter_mut().find(|slot| {
                slot.as_ref().is_some_and(|stored| {
                    stored.name == film.name.as_str()
                        && stored.studio == film.studio.as_str()
                        && stored.year == film.year.map(ReleaseYear::value)
                        && stored.owner_id == *owner_id
                })
            })?;
            slot.take()
        })
        .collect()
}

/// A film to create: what the caller sent, who they are, and the request's audit event.
pub struct Creation {
    pub film: NewFilm,
    pub owner_id: i64,
    pub owner: String,
    pub event: AuditEvent,
}

impl Creation {
    pub fn new(film: NewFilm, owner: &Principal, audit: &AuditContext) -> Self {
        Self {
            film,
            owner_id: owner.user_id,
            owner: owner.username.clone(),
            event: audit.event(AuditAction::FilmCreate, Outcome::Success),
        }
    }
}

/// Inserts the films and their audit rows in the caller's transaction (which may also record
/// the answer, `web::idempotency`), one statement for each table. The owner's name comes from
/// the caller's credentials, so no lookup.
pub async fn create_all(
    tx: &mut Transaction,
    creations: &[Creation],
) -> Result<Vec<Film>, ApiError> {
    let films: Vec<_> = creations
        .iter()
        .map(|creation| (&creation.film, Some(creation.owner_id)))
        .collect();
    let mut stored = insert_all(tx, &films).await?;
    if stored.len() != creations.len() {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "{} films inserted for {} creations",
            stored.len(),
            creations.len()
        )));
    }
    let events: Vec<AuditEvent> = stored
        .iter_mut()
        .zip(creations)
        .map(|(film, creation)| {
            film.owner = Some(creation.owner.clone());
            creation.event.clone().target(AuditTarget::Film(film.id))
        })
        .collect();
    audit::record_all(tx, &events).await?;
    Ok(stored)
}

/// Inserts one film and its audit row in the caller's transaction: `create_all` for one.
pub async fn create(tx: &mut Transaction, creation: &Creation) -> Result<Film, ApiError> {
    create_all(tx, std::slice::from_ref(creation))
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no film inserted")))
}

/// Films created at the same moment, written together.
pub type Creations = GroupCommit<NewFilms>;

/// Film creations as a [`Batch`]: one transaction for a queue of them.
pub struct NewFilms;

impl Batch for NewFilms {
    type Item = Creation;
    type Output = Film;

    async fn write_together(
        db: &Database,
        creations: &[Creation],
    ) -> Result<Vec<Result<Film, ApiError>>, ApiError> {
        let mut tx = db.begin().await?;
        let films = create_all(&mut tx, creations).await?;
        tx.commit().await?;
        Ok(films.into_iter().map(Ok).collect())
    }

    async fn write_alone(db: &Database, creation: &Creation) -> Result<Film, ApiError> {
        let mut tx = db.begin().await?;
        let film = create(&mut tx, creation).await?;
        tx.commit().await?;
        Ok(film)
    }
}

/// Who may change a film: its owner, or an admin. Curated films (no owner) are admin-only.
fn may_modify(film: &Film, principal: &Principal) -> bool {
    principal.role.is_admin() || film.owner_id == Some(principal.user_id)
}

/// The film, locked, if it exists, the caller may change it, and `precondition` holds for it
/// as it is now. Checked inside `tx`: nothing can change the film between the check and the
/// caller's write (the precondition is the client's `If-Match`, compared here so that two
/// editors who read the same version cannot both write).
async fn lock_for_change(
    tx: &mut Transaction,
    id: i64,
    principal: &Principal,
    precondition: impl FnOnce(&Film) -> Result<(), ApiError>,
) -> Result<Film, ApiError> {
    let film = lock(tx, id).await?.ok_or(ApiError::NotFound)?;
    if !may_modify(&film, principal) {
        return Err(ApiError::Forbidden);
    }
    precondition(&film)?;
    Ok(film)
}

#[tracing::instrument(level = "debug", skip(db, changes, audit, precondition), fields(user_id = principal.user_id))]
pub async fn update(
    db: &Database,
    id: i64,
    changes: &FilmChanges,
    principal: &Principal,
    audit: &AuditContext,
    precondition: impl FnOnce(&Film) -> Result<(), ApiError>,
) -> Result<Film, ApiError> {
    let mut tx = db.begin().await?;
    lock_for_change(&mut tx, id, principal, precondition).await?;
    db::execute!(
        &mut tx,
        "UPDATE films
         SET name = coalesce($2, name),
             studio = coalesce($3, studio),
             year = CASE WHEN $4 THEN $5 ELSE year END,
             updated_at = $6
         WHERE id = $1",
        id,
        changes.name.as_ref().map(|n| n.0.as_str()),
        changes.studio.as_ref().map(|s| s.0.as_str()),
        changes.year.is_some(),
        changes.year.flatten().map(|y| y.0),
        Timestamp::now()
    )
    .await?;
    let updated = get(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    let event = audit
        .event(AuditAction::FilmUpdate, Outcome::Success)
        .target(AuditTarget::Film(id));
    audit::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(updated)
}

#[tracing::instrument(level = "debug", skip(db, audit, precondition), fields(user_id = principal.user_id))]
pub async fn delete(
    db: &Database,
    id: i64,
    principal: &Principal,
    audit: &AuditContext,
    precondition: impl FnOnce(&Film) -> Result<(), ApiError>,
) -> Result<Film, ApiError> {
    let mut tx = db.begin().await?;
    let film = lock_for_change(&mut tx, id, principal, precondition).await?;
    db::execute!(&mut tx, "DELETE FROM films WHERE id = $1", id).await?;
    let event = audit
        .event(AuditAction::FilmDelete, Outcome::Success)
        .target(AuditTarget::Film(id));
    audit::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(film)
}

pub async fn count(db: &mut impl Executor) -> sqlx::Result<i64> {
    db::fetch_scalar!(db, "SELECT count(*) FROM films").await
}
