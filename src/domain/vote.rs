//! Votes: one per user per film. Voting again replaces the vote, so a repeated like is
//! idempotent; the film's counters follow in the same transaction (triggers on `votes`).

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::{
    domain::film::{self, Film},
    error::ApiError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Vote {
    Like,
    Dislike,
}

impl Vote {
    fn value(self) -> i64 {
        match self {
            Self::Like => 1,
            Self::Dislike => -1,
        }
    }
}

/// Records `vote` and returns the film with its new counts; 404 if there is no such film.
#[tracing::instrument(skip(writer))]
pub async fn cast(
    writer: &SqlitePool,
    user_id: i64,
    film_id: i64,
    vote: Vote,
) -> Result<Film, ApiError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    if film::get(&mut *tx, film_id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    sqlx::query(
        "INSERT INTO votes (user_id, film_id, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, film_id) DO UPDATE
         SET value = excluded.value, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE value <> excluded.value",
    )
    .bind(user_id)
    .bind(film_id)
    .bind(vote.value())
    .execute(&mut *tx)
    .await?;
    let film = film::get(&mut *tx, film_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(film)
}

/// Removes the caller's vote, if any; 404 if there is no such film.
#[tracing::instrument(skip(writer))]
pub async fn withdraw(writer: &SqlitePool, user_id: i64, film_id: i64) -> Result<Film, ApiError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    if film::get(&mut *tx, film_id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    sqlx::query("DELETE FROM votes WHERE user_id = ?1 AND film_id = ?2")
        .bind(user_id)
        .bind(film_id)
        .execute(&mut *tx)
        .await?;
    let film = film::get(&mut *tx, film_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(film)
}
