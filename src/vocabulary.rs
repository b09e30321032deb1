//! Closed sets of words (audit actions, revoke reasons, API-key scopes): each is an enum
//! whose variants are spelled once, in `vocabulary!`, and that one spelling is what the database
//! (sqlx), JSON (serde), the OpenAPI document (utoipa) and the log see. A misspelled word is a
//! compile error, not a new value nobody queries for.

/// Declares a vocabulary enum: `Variant = "spelling",` per word.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $spelling:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[sqlx(type_name = "TEXT")]
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $spelling)]
                #[sqlx(rename = $spelling)]
                $variant,
            )+
        }

        impl $name {
            /// Every word, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $spelling,)+
                }
            }
        }

        // By hand: utoipa's derive does not see a `serde(rename)` that a macro wrote.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::ALL.iter().map(|word| word.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use vocabulary;

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use serde::{Serialize, de::DeserializeOwned};
    use sqlx::{Decode, Encode, Sqlite, SqlitePool, Type};

    use crate::{
        audit::AuditAction,
        auth::{api_key::Scope, refresh_families::RevokeReason},
        mail::MailKind,
    };

    /// Every word has its own spelling, and JSON, the database and `as_str` agree on it.
    async fn assert_round_trips<T>(db: &SqlitePool, words: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + Debug + Eq + Serialize + DeserializeOwned + Send + Unpin,
        T: Type<Sqlite> + for<'q> Encode<'q, Sqlite> + for<'r> Decode<'r, Sqlite>,
    {
        assert!(!words.is_empty());
        for &word in words {
            let spelling = as_str(word);
            let json = serde_json::to_value(word).unwrap();
            assert_eq!(json, spelling, "{word:?} in JSON");
            assert_eq!(serde_json::from_value::<T>(json).unwrap(), word);

            let (stored, read_back): (String, T) = sqlx::query_as("SELECT ?1, ?1")
                .bind(word)
                .fetch_one(db)
                .await
                .unwrap();
            assert_eq!(stored, spelling, "{word:?} in the database");
            assert_eq!(read_back, word);

            let same_spelling = words.iter().filter(|&&w| as_str(w) == spelling).count();
            assert_eq!(same_spelling, 1, "{spelling} names one word");
        }
    }

    #[tokio::test]
    async fn every_word_of_every_vocabulary_round_trips_through_json_and_the_database() {
        let db = SqlitePool::connect("sqlite::memory:").await.unwrap();
        assert_round_trips(&db, AuditAction::ALL, AuditAction::as_str).await;
        assert_round_trips(&db, RevokeReason::ALL, RevokeReason::as_str).await;
        assert_round_trips(&db, Scope::ALL, Scope::as_str).await;
        assert_round_trips(&db, MailKind::ALL, MailKind::as_str).await;
    }

    #[test]
    fn an_unknown_word_is_refused() {
        assert!(serde_json::from_str::<AuditAction>(r#""auth.logn""#).is_err());
        assert!(serde_json::from_str::<Scope>(r#""admin""#).is_err());
    }
}
