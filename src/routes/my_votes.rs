//! `GET /api/v1/users/me/votes`: the caller's own votes on the films they are looking at.
//!
//! Film answers carry counts, not who voted (they are shared by everyone and cached), so a
//! client that shows "your vote" asks for it here, for the ids of the page it shows.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::{Authenticated, Read},
    domain::vote::{self, FilmVote},
    error::{ApiError, FieldError},
    extract::Query,
    routes::legacy,
    state::AppState,
};

/// As many ids as a page of films holds.
pub const MAX_FILM_IDS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MyVotesQuery {
    /// Comma-separated film ids, at most 100 (e.g. those of the page shown).
    #[param(max_length = 1999, pattern = "^[0-9]{1,19}(,[0-9]{1,19}){0,99}$")]
    pub film_ids: String,
}

impl MyVotesQuery {
    fn film_ids(&self) -> Result<Vec<i64>, ApiError> {
        let ids = self
            .film_ids
            .split(',')
            .map(|raw| legacy::parse_film_id("film_ids", raw))
            .collect::<Result<Vec<_>, _>>()?;
        if ids.len() > MAX_FILM_IDS {
            return Err(ApiError::BadRequest {
                detail: format!("At most {MAX_FILM_IDS} film ids at once."),
                errors: vec![FieldError::new("film_ids", "at most 100 ids")],
            });
        }
        Ok(ids)
    }
}

#[derive(Serialize, ToSchema)]
pub struct MyVotes {
    /// The films among those asked for that the caller voted on (the others have no vote).
    #[schema(max_items = 100)]
    pub items: Vec<FilmVote>,
}

/// The caller's votes on the given films.
#[utoipa::path(get, path = "/api/v1/users/me/votes", tag = "films", params(MyVotesQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The caller's votes among those films", body = MyVotes)))]
pub(crate) async fn my_votes(
    state: web::Data<AppState>,
    caller: Authenticated<Read>,
    query: Query<MyVotesQuery>,
) -> Result<HttpResponse, ApiError> {
    let film_ids = query.0.film_ids()?;
    let items = vote::of_user(&mut state.db.read().await?, caller.user_id, &film_ids).await?;
    Ok(HttpResponse::Ok().json(MyVotes { items }))
}
