//! What the immediate-revocation check costs per request, against the alternative of asking
//! the database on every request.
//!
//! In memory: the two lookups every bearer-authenticated request makes (token version, revoked
//! session), with 100 000 users whose version was bumped and 10 000 revoked sessions loaded.
//! In the database: the one indexed query the same check would need, through the reader pool.
//!
//!   cargo run --release --example revocation_cost
use std::{hint::black_box, time::Instant};

use filmvault::{
    auth::revocation::Revocations,
    db::{self, Database},
};

const USERS: i64 = 100_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Database::connect(&format!("sqlite://{}", dir.path().join("r.db").display())).await?;
    let mut writer = db.write().await?;
    db::execute!(
        &mut writer,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
         INSERT INTO users (username, email, password_hash, token_version)
         SELECT 'user' || i, 'user' || i || '@example.com', 'x', 1 FROM n",
        USERS
    )
    .await?;
    db::execute!(
        &mut writer,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
         INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at, revoked_at, revoked_reason)
         SELECT i, 'family-' || i, randomblob(32), 4102444800, unixepoch(), 'logout' FROM n"
    )
    .await?;
    drop(writer);
    let revocations = Revocations::load(&db, 900, None).await?;

    let checks: i64 = 10_000_000;
    let sessions: Vec<String> = (0..1024).map(|i| format!("live-session-{i}")).collect();
    let started = Instant::now();
    let mut permitted = 0u64;
    for i in 0..checks {
        let session = &sessions[(i % 1024) as usize];
        let permits = revocations.permits(black_box(i % USERS + 1), 1, Some(session));
        permitted += u64::from(permits.await?);
    }
    let in_memory = started.elapsed() / u32::try_from(checks)?;
    println!("in memory:   {checks} checks, {permitted} permitted, {in_memory:?} per check");

    let queries: i64 = 100_000;
    let started = Instant::now();
    let mut current = 0i64;
    for i in 0..queries {
        let version: i64 = db::fetch_scalar!(
            &mut db.read().await?,
            "SELECT token_version FROM users WHERE id = $1",
            i % USERS + 1
        )
        .await?;
        current += i64::from(version == 1);
    }
    let per_query = started.elapsed() / u32::try_from(queries)?;
    println!("in database: {queries} queries, {current} current, {per_query:?} per query");
    Ok(())
}
