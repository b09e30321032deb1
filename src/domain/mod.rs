//! Domain types and their queries. A value of a domain type has passed its rules: the fields
//! are private and the only way in is `parse`.

pub mod cursor;
pub mod email;
pub mod film;
pub mod group_commit;
pub mod seed;
pub mod text;
pub mod user;
pub mod username;
pub mod vote;

use crate::error::ApiError;

/// Page size and position of a list request, within bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub const DEFAULT_LIMIT: i64 = 20;
    pub const MAX_LIMIT: i64 = 100;
    /// Deep offsets make SQLite walk every skipped row; past this, narrow the search instead.
    pub const MAX_OFFSET: i64 = 100_000;

    /// A limit over the cap is refused rather than silently cut, so a client knows the cap.
    pub fn new(limit: Option<i64>, offset: Option<i64>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_field(
                "limit",
                format!("must be between 1 and {}", Self::MAX_LIMIT),
            ));
        }
        let offset = offset.unwrap_or(0);
        if !(0..=Self::MAX_OFFSET).contains(&offset) {
            return Err(ApiError::invalid_field(
                "offset",
                format!("must be between 0 and {}", Self::MAX_OFFSET),
            ));
        }
        Ok(Self { limit, offset })
    }

    /// This page's `items`, out of `total` matching items.
    pub fn of<T>(self, items: Vec<T>, total: i64) -> Paginated<T> {
        Paginated {
            items,
            total,
            limit: self.limit,
            offset: self.offset,
        }
    }
}

/// One page of a list, with the total count of matching items.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Paginated<T> {
    #[schema(max_items = 100)]
    pub items: Vec<T>,
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub total: i64,
    #[schema(minimum = 1, maximum = 100)]
    pub limit: i64,
    #[schema(minimum = 0, maximum = 100_000)]
    pub offset: i64,
}
