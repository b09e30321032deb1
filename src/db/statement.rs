//! Running one SQL statement on whichever backend an executor holds.
//!
//! Each macro takes an executor (`&mut` a [`Connection`](super::Connection) or a
//! [`Transaction`](super::Transaction)), the statement, and its arguments in `$1, $2, …`
//! order, and returns a future of `sqlx::Result`. The statement must be a string literal:
//! there is no way to pass a built string, so no SQL is ever concatenated. Written once, it
//! runs on both backends through their native drivers (SQLite reads `$N` as the N-th argument,
//! as PostgreSQL does); where the dialects differ, both are given:
//!
//! ```ignore
//! db::fetch_optional!(executor,
//!     sqlite: "SELECT … FROM films WHERE id = $1",
//!     postgres: "SELECT … FROM films WHERE id = $1 FOR UPDATE",
//!     id)
//! ```
//!
//! Rows decode with `sqlx::FromRow`; arguments and columns use types both drivers know
//! (`i64`, `bool`, `&str`, `Vec<u8>`, [`Timestamp`](super::Timestamp), `sqlx::Type` enums).

/// The common body: the same statement, typed and bound for each driver, on the one the
/// executor holds. Arguments are evaluated once, in the arm that runs. `$then` (optional)
/// turns each driver's own result into a common one.
#[doc(hidden)]
#[macro_export]
macro_rules! __db_statement {
    ($kind:ident, $run:ident $(=> $then:ident)?, $executor:expr,
     sqlite: $sqlite:literal, postgres: $postgres:literal $(, $arg:expr)* $(,)?) => {
        async {
            match $crate::db::Executor::connection($executor) {
                $crate::db::Conn::Sqlite(connection) => {
                    ::sqlx::$kind($sqlite)$(.bind($arg))*.$run(connection).await
                        $(.map(|done| done.$then()))?
                }
                $crate::db::Conn::Postgres(connection) => {
                    ::sqlx::$kind($postgres)$(.bind($arg))*.$run(connection).await
                        $(.map(|done| done.$then()))?
                }
            }
        }
    };
    ($kind:ident, $run:ident $(=> $then:ident)?, $executor:expr,
     $sql:literal $(, $arg:expr)* $(,)?) => {
        $crate::__db_statement!(
            $kind, $run $(=> $then)?, $executor, sqlite: $sql, postgres: $sql $(, $arg)*
        )
    };
}

/// Runs a statement; the future gives the number of rows it changed.
#[macro_export]
macro_rules! db_execute {
    ($executor:expr, $($statement:tt)+) => {
        $crate::__db_statement!(query, execute => rows_affected, $executor, $($statement)+)
    };
}

/// The one row a statement returns (`sqlx::Error::RowNotFound` if none).
#[macro_export]
macro_rules! db_fetch_one {
    ($executor:expr, $($statement:tt)+) => {
        $crate::__db_statement!(query_as, fetch_one, $executor, $($statement)+)
    };
}

/// The first row a statement returns, if any.
#[macro_export]
macro_rules! db_fetch_optional {
    ($executor:expr, $($statement:tt)+) => {
        $crate::__db_statement!(query_as, fetch_optional, $executor, $($statement)+)
    };
}

/// Every row a statement returns.
#[macro_export]
macro_rules! db_fetch_all {
    ($executor:expr, $($statement:tt)+) => {
        $crate::__db_statement!(query_as, fetch_all, $executor, $($statement)+)
    };
}

/// The single column of the one row a statement returns (`count(*)`, `RETURNING id`).
#[macro_export]
macro_rules! db_fetch_scalar {
    ($executor:expr, $($statement:tt)+) => {
        $crate::__db_statement!(query_scalar, fetch_one, $executor, $($statement)+)
    };
}

/// The single column of the first row a statement returns, if any.
#[macro_export]
macro_rules! db_fetch_optional_scalar {
    ($executor:expr, $($statement:tt)+) => {
        $crate::__db_statement!(query_scalar, fetch_optional, $executor, $($statement)+)
    };
}

/// The single column of every row a statement returns.
#[macro_export]
macro_rules! db_fetch_scalars {
    ($executor:expr, $($statement:tt)+) => {
        $crate::__db_statement!(query_scalar, fetch_all, $executor, $($statement)+)
    };
}

pub use crate::{
    db_execute as execute, db_fetch_all as fetch_all, db_fetch_one as fetch_one,
    db_fetch_optional as fetch_optional, db_fetch_optional_scalar as fetch_optional_scalar,
    db_fetch_scalar as fetch_scalar, db_fetch_scalars as fetch_scalars,
};
