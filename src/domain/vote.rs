//! Votes: one per user per film. Voting again replaces the vote, so a repeated like is
//! idempotent; the film's counters follow in the same statement (triggers on `votes`).
//!
//! Each change is a single statement, atomic on its own: no explicit transaction, and a vote
//! for a film that does not exist fails on the foreign key rather than on a prior lookup.
//! From any number of instances at once, the counters stay exact: the primary key admits one
//! vote per user and film (a concurrent second insert becomes the update), and the triggers
//! move the counters by the difference each vote makes, under the film's row lock.

use serde::{Deserialize, Serialize};

use crate::{
    db::{self, Database, Executor, Timestamp},
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

/// A caller's vote on one film.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FilmVote {
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64, format = Int64)]
    pub film_id: i64,
    pub vote: Vote,
}

/// `user_id`'s votes among `film_ids`, in film id order (films without one are left out).
#[tracing::instrument(level = "debug", skip(db))]
pub async fn of_user(
    db: &mut impl Executor,
    user_id: i64,
    film_ids: &[i64],
) -> sqlx::Result<Vec<FilmVote>> {
    // One statement for any number of ids: they travel as one JSON array parameter.
    let ids = serde_json::Value::from(film_ids).to_string();
    let rows: Vec<(i64, i64)> = db::fetch_all!(
        db,
        sqlite: "SELECT film_id, value FROM votes
                 WHERE user_id = $1 AND film_id IN (SELECT value FROM json_each($2))
                 ORDER BY film_id",
        postgres: "SELECT film_id, value::bigint FROM votes
                   WHERE user_id = $1
                     AND film_id IN (SELECT value::bigint FROM json_array_elements_text($2::json))
                   ORDER BY film_id",
        user_id,
        ids
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|(film_id, value)| FilmVote {
            film_id,
            vote: if value > 0 { Vote::Like } else { Vote::Dislike },
        })
        .collect())
}

/// Records `vote`; 404 if there is no such film.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn cast(db: &Database, user_id: i64, film_id: i64, vote: Vote) -> Result<(), ApiError> {
    let result = db::execute!(
        &mut db.write().await?,
        "INSERT INTO votes (user_id, film_id, value) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, film_id) DO UPDATE
         SET value = excluded.value, updated_at = $4
         WHERE votes.value <> excluded.value",
        user_id,
        film_id,
        vote.value(),
        Timestamp::now()
    )
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(ApiError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// Removes the caller's vote, if any.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn withdraw(db: &Database, user_id: i64, film_id: i64) -> Result<(), ApiError> {
    db::execute!(
        &mut db.write().await?,
        "DELETE FROM votes WHERE user_id = $1 AND film_id = $2",
        user_id,
        film_id
    )
    .await?;
    Ok(())
}
