//! An instant as both backends store it and as the API shows it.
//!
//! SQLite has no time type: its columns hold ISO 8601 UTC text with milliseconds
//! (`2026-11-23T20:19:17.250Z`, what `strftime('%Y-%m-%dT%H:%M:%fZ')` writes), which sorts and
//! compares as text; databases created before PostgreSQL support keep exactly this form.
//! PostgreSQL stores `timestamptz`. JSON always carries the SQLite form, whichever backend
//! answered.

use std::fmt;

use serde::{Serialize, Serializer};
use sqlx::{
    Decode, Encode, Postgres, Sqlite, Type,
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef},
    sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef},
};
use time::{
    Duration, OffsetDateTime, UtcOffset, format_description::BorrowedFormatItem,
    format_description::well_known::Rfc3339, macros::format_description,
};

/// The stored and displayed form: UTC, milliseconds, `Z`.
const FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        Self::from(OffsetDateTime::now_utc())
    }

    /// Parses an RFC 3339 timestamp (any offset).
    pub fn parse_rfc3339(value: &str) -> Option<Self> {
        OffsetDateTime::parse(value, &Rfc3339).ok().map(Self::from)
    }

    #[must_use]
    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(duration))
    }

    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration))
    }

    /// The stored form, `2026-11-23T20:19:17.250Z`.
    fn text(self) -> Result<String, time::error::Format> {
        self.0.format(FORMAT)
    }
}

/// In UTC, cut to the millisecond: the precision SQLite stores, so a value reads back equal
/// from either backend.
impl From<OffsetDateTime> for Timestamp {
    fn from(instant: OffsetDateTime) -> Self {
        let utc = instant.to_offset(UtcOffset::UTC);
        Self(
            utc.replace_millisecond(utc.millisecond())
                .expect("a millisecond of a valid time is valid"),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text().map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("UTC, to the millisecond"))
            .pattern(Some(
                "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
            ))
            .max_length(Some(24))
            .examples(["2026-11-23T20:19:17.250Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <str as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Timestamp {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        let text = self.text()?;
        <String as Encode<Sqlite>>::encode(text, buf)
    }
}

impl Decode<'_, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'_>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Self::from(OffsetDateTime::parse(text, &Rfc3339)?))
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl Decode<'_, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        <OffsetDateTime as Decode<Postgres>>::decode(value).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_stored_form_is_utc_to_the_millisecond() {
        let instant = Timestamp::from(datetime!(2026-11-23 22:19:17.250_999 +02:00));
        assert_eq!(instant.to_string(), "2026-11-23T20:19:17.250Z");
        assert_eq!(
            serde_json::to_value(instant).unwrap(),
            "2026-11-23T20:19:17.250Z"
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-23T20:19:17.250Z"),
            Some(instant)
        );
    }
}
