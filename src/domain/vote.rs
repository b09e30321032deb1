//! Votes: one per user per film. Voting again replaces the vote, so a repeated like is
//! idempotent; the film's counters follow in the same statement (triggers on `votes`).
//!
//! Each change is a single statement, atomic on its own: no explicit transaction, and a vote
//! for a film that does not exist is left out by the statement's join (or fails on the
//! foreign key) rather than by a prior lookup. From any number of instances at once, the
//! counters stay exact: the primary key admits one vote per user and film (a concurrent
//! second insert becomes the update), and the triggers move the counters by the difference
//! each vote makes, under the film's row lock.
//!
//! Votes cast at the same moment are written together ([`Ballots`], a group commit): one
//! statement records a whole queue of them.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{
    db::{self, Database, Executor, Timestamp},
    domain::group_commit::{Batch, GroupCommit},
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

/// What a recorded vote did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cast {
    /// The vote is new or replaced the other one: the film's counters moved.
    Changed,
    /// The caller had already cast this vote; nothing was written.
    Unchanged,
}

/// Votes waiting to be written together.
pub type Ballots = GroupCommit<Votes>;

/// A vote to record: `user_id` casts `vote` on `film_id`.
pub struct Ballot {
    pub user_id: i64,
    pub film_id: i64,
    pub vote: Vote,
}

/// Votes as a [`Batch`]: one statement records every ballot whose film exists.
pub struct Votes;

impl Batch for Votes {
    type Item = Ballot;
    type Output = Cast;

    async fn write_together(
        db: &Database,
        ballots: &[Ballot],
    ) -> Result<Vec<Result<Cast, ApiError>>, ApiError> {
        let tally = Tally::of(ballots);
        // Until the statement commits, a failure sends every ballot to `write_alone`.
        let changed = tally.write(db).await?;
        // After it, each ballot must be answered from what it did: cast again, a ballot that
        // changed the counters would find its vote in place and say nothing changed.
        let in_place = if changed.len() == tally.ballots.len() {
            Ok(HashSet::new())
        } else {
            tally.in_place(db).await.map_err(ApiError::from)
        };
        let mut outcomes = Vec::with_capacity(ballots.len());
        for ballot in ballots {
            let key = (ballot.user_id, ballot.film_id);
            outcomes.push(if changed.contains(&key) {
                Ok(Cast::Changed)
            } else {
                settle(db, ballot, &in_place).await
            });
        }
        Ok(outcomes)
    }

    async fn write_alone(db: &Database, ballot: &Ballot) -> Result<Cast, ApiError> {
        cast(db, ballot.user_id, ballot.film_id, ballot.vote).await
    }
}

/// A ballot the batch's statement did not change: its vote was in place, or its film did
/// not exist, or the caller withdrew the vote in between. The last two are rare and told
/// apart by casting it alone (404, or the vote now recorded).
async fn settle(
    db: &Database,
    ballot: &Ballot,
    in_place: &Result<HashSet<(i64, i64)>, ApiError>,
) -> Result<Cast, ApiError> {
    match in_place {
        Ok(votes) if votes.contains(&(ballot.user_id, ballot.film_id)) => Ok(Cast::Unchanged),
        Ok(_) => cast(db, ballot.user_id, ballot.film_id, ballot.vote).await,
        Err(ApiError::Unavailable { retry_after }) => Err(ApiError::Unavailable {
            retry_after: *retry_after,
        }),
        Err(error) => Err(ApiError::Internal(anyhow::anyhow!(
            "the votes in place could not be read after the batch: {error:?}"
        ))),
    }
}

/// A batch's ballots as one statement writes them: one per user and film (the last one
/// cast; PostgreSQL refuses to change a row twice in a statement), in film order, so that
/// statements from several instances lock films in the same order and cannot deadlock.
struct Tally {
    ballots: Vec<(i64, i64, i64)>,
}

impl Tally {
    fn of(batch: &[Ballot]) -> Self {
        let last: HashMap<(i64, i64), i64> = batch
            .iter()
            .map(|b| ((b.film_id, b.user_id), b.vote.value()))
            .collect();
        let mut ballots: Vec<(i64, i64, i64)> = last
            .into_iter()
            .map(|((film_id, user_id), value)| (user_id, film_id, value))
            .collect();
        ballots.sort_unstable_by_key(|&(user_id, film_id, _)| (film_id, user_id));
        Self { ballots }
    }

    /// Writes the ballots whose film exists (the join leaves the others out); returns the
    /// `(user_id, film_id)` of the votes it changed.
    async fn write(&self, db: &Database) -> sqlx::Result<HashSet<(i64, i64)>> {
        let ballots = serde_json::to_string(&self.ballots).expect("integers serialize");
        let changed: Vec<(i64, i64)> = db::fetch_all!(
            &mut db.write().await?,
            // `WHERE true`: SQLite's grammar needs it between a join and `ON CONFLICT`.
            sqlite: "INSERT INTO votes (user_id, film_id, value)
                     SELECT json_extract(ballot.value, '$[0]'), films.id,
                            json_extract(ballot.value, '$[2]')
                     FROM json_each($1) AS ballot
                     JOIN films ON films.id = json_extract(ballot.value, '$[1]')
                     WHERE true
                     ORDER BY ballot.key
                     ON CONFLICT (user_id, film_id) DO UPDATE
                     SET value = excluded.value, updated_at = $2
                     WHERE votes.value <> excluded.value
                     RETURNING user_id, film_id",
            postgres: "INSERT INTO votes (user_id, film_id, value)
                       SELECT (ballot.value->>0)::bigint, films.id, (ballot.value->>2)::smallint
                       FROM json_array_elements($1::json) WITH ORDINALITY AS ballot (value, key)
                       JOIN films ON films.id = (ballot.value->>1)::bigint
                       ORDER BY ballot.key
                       ON CONFLICT (user_id, film_id) DO UPDATE
                       SET value = excluded.value, updated_at = $2
                       WHERE votes.value <> excluded.value
                       RETURNING user_id, film_id",
            ballots,
            Timestamp::now()
        )
        .await?;
        Ok(changed.into_iter().collect())
    }

    async fn in_place(&self, db: &Database) -> sqlx::Result<HashSet<(i64, i64)>> {
        let ballots = serde_json::to_string(&self.ballots).expect("integers serialize");
        let rows: Vec<(i64, i64)> = db::fetch_all!(
            &mut db.read().await?,
            sqlite: "SELECT votes.user_id, votes.film_id
                     FROM json_each($1) AS ballot
                     JOIN votes ON votes.user_id = json_extract(ballot.value, '$[0]')
                               AND votes.film_id = json_extract(ballot.value, '$[1]')",
            postgres: "SELECT votes.user_id, votes.film_id
                       FROM json_array_elements($1::json) AS ballot (value)
                       JOIN votes ON votes.user_id = (ballot.value->>0)::bigint
                                 AND votes.film_id = (ballot.value->>1)::bigint",
            ballots
        )
        .await?;
        Ok(rows.into_iter().collect())
    }
}

/// Records `vote` on its own; 404 if there is no such film.
#[tracing::instrument(level = "debug", skip(db))]
async fn cast(db: &Database, user_id: i64, film_id: i64, vote: Vote) -> Result<Cast, ApiError> {
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
        Ok(0) => Ok(Cast::Unchanged),
        Ok(_) => Ok(Cast::Changed),
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
