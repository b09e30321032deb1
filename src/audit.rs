//! The audit trail: security-relevant events in the `audit_events` table and in the log.
//!
//! An event that records a change is written in the same transaction as the change
//! (`record`), so there is never a change without its record or a record without its change.
//! Events without a transaction (failed logins, 401/403/429) go through a bounded queue to a
//! background writer (`AuditQueue`): the request never waits on them, and an event the table
//! does not get (the queue full, the write failed) is logged in full with an error and counted
//! in the metrics, never lost silently.
//!
//! Denials (401, 403, 429) are the one kind of event a stranger can cause at will, so they are
//! summarized per client (`denials`): the first of each window in full, the rest counted into
//! one row when the window closes. Nothing is deleted before its retention
//! (`AUDIT_RETENTION_DAYS`, enforced by a trigger); `prune` deletes what is older.

mod action;
mod denials;
mod target;

use std::{
    net::IpAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use sqlx::prelude::FromRow;
use tokio::{
    sync::{Mutex, Notify, mpsc},
    task::JoinHandle,
};

use self::denials::DenialWindows;
pub use self::{action::AuditAction, denials::Admission, target::AuditTarget};
use crate::{
    db::{self, Database, Executor, Timestamp},
    domain::{Page, Paginated},
    security::client_ip::ClientKey,
};

const QUEUE_CAPACITY: usize = 10_000;
const WRITE_BATCH: usize = 256;
/// How often the writer closes expired denial windows: a summary lands at most this late.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);
/// Rows deleted per statement when pruning, so other writes wait milliseconds, not seconds.
const PRUNE_BATCH: i64 = 1_000;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub action: AuditAction,
    pub outcome: Outcome,
    pub actor_id: Option<i64>,
    pub target: Option<AuditTarget>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

impl AuditEvent {
    #[must_use]
    pub fn actor(mut self, user_id: i64) -> Self {
        self.actor_id = Some(user_id);
        self
    }

    #[must_use]
    pub fn target(mut self, target: AuditTarget) -> Self {
        self.target = Some(target);
        self
    }

    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    fn log(&self) {
        let action = self.action.as_str();
        let actor_id = self.actor_id;
        let target = self.target.as_ref().map(tracing::field::display);
        let reason = self.reason.as_deref();
        let request_id = self.request_id.as_deref();
        let client_ip = self.client_ip.as_deref();
        let outcome = self.outcome.as_str();
        if self.outcome == Outcome::Success {
            tracing::info!(target: "audit", action, outcome, actor_id, target, reason, request_id, client_ip, "audit event");
        } else {
            tracing::warn!(target: "audit", action, outcome, actor_id, target, reason, request_id, client_ip, "audit event");
        }
    }
}

/// Who is acting, from where, in which request. The web layer makes one per request
/// (`web::audit`); the command line uses `system`.
#[derive(Clone, Default)]
pub struct AuditContext {
    request_id: Option<String>,
    client_ip: Option<IpAddr>,
    trail: Arc<RequestTrail>,
}

/// What every audit context of one request shares.
#[derive(Debug, Default)]
pub struct RequestTrail {
    /// The caller, once authentication has established them: the actor of every event made
    /// after that, whichever context makes it.
    actor_id: OnceLock<i64>,
    /// Set once an event is made for this request, so the denial middleware does not add a
    /// second, generic one.
    recorded: AtomicBool,
}

impl RequestTrail {
    pub fn authenticated(&self, user_id: i64) {
        // One authentication per request: a second call names the same user.
        let _ = self.actor_id.set(user_id);
    }

    pub fn has_event(&self) -> bool {
        self.recorded.load(Ordering::Relaxed)
    }
}

impl AuditContext {
    /// For actions outside any request (the command line).
    pub fn system() -> Self {
        Self::default()
    }

    pub fn for_request(
        request_id: Option<String>,
        client_ip: Option<IpAddr>,
        trail: Arc<RequestTrail>,
    ) -> Self {
        Self {
            request_id,
            client_ip,
            trail,
        }
    }

    pub fn event(&self, action: AuditAction, outcome: Outcome) -> AuditEvent {
        self.trail.recorded.store(true, Ordering::Relaxed);
        AuditEvent {
            action,
            outcome,
            actor_id: self.trail.actor_id.get().copied(),
            target: None,
            reason: None,
            request_id: self.request_id.clone(),
            client_ip: self.client_ip.map(|ip| ip.to_string()),
        }
    }

    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
}

/// Writes `event` with `db` (the transaction of the change it records) and logs it.
pub async fn record(db: &mut impl Executor, event: &AuditEvent) -> sqlx::Result<()> {
    record_all(db, std::slice::from_ref(event)).await
}

/// Writes `events` with one statement and logs them.
pub async fn record_all(db: &mut impl Executor, events: &[AuditEvent]) -> sqlx::Result<()> {
    let rows: Vec<_> = events
        .iter()
        .map(|event| {
            (
                &event.request_id,
                event.actor_id,
                &event.client_ip,
                event.action.as_str(),
                event.target.as_ref().map(AuditTarget::to_string),
                event.outcome.as_str(),
                &event.reason,
            )
        })
        .collect();
    // The rows travel as one JSON array: one static statement for any number of events.
    let rows = serde_json::to_string(&rows).expect("strings and integers serialize");
    db::execute!(
        db,
        sqlite: "INSERT INTO audit_events
                     (request_id, actor_id, client_ip, action, target, outcome, reason)
                 SELECT given.value ->> 0, given.value ->> 1, given.value ->> 2,
                        given.value ->> 3, given.value ->> 4, given.value ->> 5,
                        given.value ->> 6
                 FROM json_each($1) AS given
                 ORDER BY given.key",
        postgres: "INSERT INTO audit_events
                       (request_id, actor_id, client_ip, action, target, outcome, reason)
                   SELECT given.value ->> 0, (given.value ->> 1)::bigint, given.value ->> 2,
                          given.value ->> 3, given.value ->> 4, given.value ->> 5,
                          given.value ->> 6
                   FROM json_array_elements($1::json) WITH ORDINALITY AS given (value, key)
                   ORDER BY given.key",
        rows
    )
    .await?;
    for event in events {
        event.log();
    }
    Ok(())
}

/// The queue for events that have no transaction of their own.
#[derive(Clone)]
pub struct AuditQueue {
    sender: mpsc::Sender<AuditEvent>,
    denials: Arc<DenialWindows>,
    /// Tells the writer to finish (`finish`), and the writer to wait for.
    stop: Arc<Notify>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl AuditQueue {
    /// Starts the background writer; it stops when told to (`finish`) or when the last queue
    /// handle is dropped, after writing what is queued and the summaries of the denial
    /// windows still open.
    pub fn start(db: Database, denial_window: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let denials = Arc::new(DenialWindows::new(denial_window));
        let stop = Arc::new(Notify::new());
        let writer = tokio::spawn(write_queued(db, receiver, denials.clone(), stop.clone()));
        Self {
            sender,
            denials,
            stop,
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    /// Writes what is queued and the open denial windows' summaries, and returns once they
    /// are stored (or logged). For a server that stops: the process would otherwise end with
    /// them in memory. Afterwards the queue takes nothing: an event submitted then is only
    /// logged, and a denial repeated in its window only counted by the metric.
    pub async fn finish(&self) {
        self.stop.notify_one();
        if let Some(writer) = self.writer.lock().await.take()
            && let Err(error) = writer.await
        {
            tracing::error!(%error, "the audit writer failed while finishing");
        }
    }

    /// A denial from `client`: queued if it is the first of its window, else only counted.
    pub fn submit_denial(&self, client: ClientKey, event: AuditEvent) -> Admission {
        let admission = self.denials.admit(client, &event, Instant::now());
        if admission == Admission::InFull {
            self.submit(event);
        }
        admission
    }

    pub fn submit(&self, event: AuditEvent) {
        if let Err(error) = self.sender.try_send(event) {
            let cause = error.to_string();
            let (mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event)) =
                error;
            log_unstored(std::slice::from_ref(&event), &cause);
        }
    }
}

async fn write_queued(
    db: Database,
    mut receiver: mpsc::Receiver<AuditEvent>,
    denials: Arc<DenialWindows>,
    stop: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut summaries = tokio::time::interval(SUMMARY_INTERVAL);
    summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = receiver.recv_many(&mut batch, WRITE_BATCH) => {
                if received == 0 {
                    break;
                }
            }
            _ = summaries.tick() => batch.extend(denials.close_expired(Instant::now())),
            () = stop.notified() => receiver.close(),
        }
        write_or_log(&db, &batch).await;
        batch.clear();
    }
    write_or_log(&db, &denials.close_all()).await;
}

async fn write_or_log(db: &Database, batch: &[AuditEvent]) {
    if batch.is_empty() {
        return;
    }
    if let Err(error) = write_batch(db, batch).await {
        log_unstored(batch, &error);
    }
}

/// The last resort for events the table did not get: an error line, a counter, and every
/// event in full in the log.
fn log_unstored(events: &[AuditEvent], cause: &dyn std::fmt::Display) {
    metrics::counter!("audit_events_dropped_total").increment(events.len() as u64);
    tracing::error!(
        target: "audit",
        cause = %cause,
        events = events.len(),
        "audit events could not be stored; they are only in the log"
    );
    for event in events {
        event.log();
    }
}

async fn write_batch(db: &Database, batch: &[AuditEvent]) -> sqlx::Result<()> {
    record_all(&mut db.write().await?, batch).await
}

/// Deletes the events older than `retention_days`, oldest first and in batches, and records
/// how many went. The table's trigger refuses to delete anything younger than the retention
/// stored beside it (`audit_retention`), which this sets first.
pub async fn prune(db: &Database, retention_days: u32) -> sqlx::Result<u64> {
    let mut writer = db.write().await?;
    db::execute!(
        &mut writer,
        "INSERT INTO audit_retention (id, days) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET days = excluded.days",
        i64::from(retention_days)
    )
    .await?;
    let cutoff = Timestamp::now().saturating_sub(time::Duration::days(retention_days.into()));
    // Ids grow with time: every event below the first one inside the retention is older, and
    // it is found without reading the rest of the table (occurred_at has no index).
    let boundary: Option<i64> = db::fetch_scalar!(
        &mut db.read().await?,
        "SELECT coalesce(
             (SELECT id FROM audit_events WHERE occurred_at >= $1 ORDER BY id LIMIT 1),
             (SELECT max(id) + 1 FROM audit_events))",
        cutoff
    )
    .await?;
    let Some(boundary) = boundary else {
        return Ok(0);
    };
    let mut deleted = 0;
    loop {
        let batch = db::execute!(
            &mut writer,
            "DELETE FROM audit_events
             WHERE id IN (SELECT id FROM audit_events WHERE id < $1 ORDER BY id LIMIT $2)",
            boundary,
            PRUNE_BATCH
        )
        .await?;
        deleted += batch;
        if batch < PRUNE_BATCH.unsigned_abs() {
            break;
        }
    }
    if deleted > 0 {
        let event = AuditContext::system()
            .event(AuditAction::Prune, Outcome::Success)
            .reason(format!(
                "deleted {deleted} events older than {retention_days} days"
            ));
        record(&mut writer, &event).await?;
    }
    Ok(deleted)
}

/// An audit event as the admin endpoint shows it.
#[derive(Debug, Serialize, FromRow, utoipa::ToSchema)]
pub struct StoredEvent {
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub id: i64,
    pub occurred_at: Timestamp,
    #[schema(max_length = 64)]
    pub request_id: Option<String>,
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub actor_id: Option<i64>,
    /// An IPv4 or IPv6 address (an IPv6 client may be shown by its network).
    #[schema(max_length = 49)]
    pub client_ip: Option<String>,
    pub action: AuditAction,
    #[schema(max_length = 2048)]
    pub target: Option<String>,
    pub outcome: Outcome,
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

/// Filters of the admin endpoint.
#[derive(Debug, Default)]
pub struct EventFilter {
    pub actor_id: Option<i64>,
    pub action: Option<AuditAction>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

pub async fn list(
    db: &mut impl Executor,
    filter: &EventFilter,
    page: Page,
) -> sqlx::Result<Paginated<StoredEvent>> {
    let items = db::fetch_all!(
        db,
        "SELECT id, occurred_at, request_id, actor_id, client_ip, action, target, outcome, reason
         FROM audit_events
         WHERE ($1 IS NULL OR actor_id = $1)
           AND ($2 IS NULL OR action = $2)
           AND ($3 IS NULL OR occurred_at >= $3)
           AND ($4 IS NULL OR occurred_at < $4)
         ORDER BY id DESC LIMIT $5 OFFSET $6",
        filter.actor_id,
        filter.action,
        filter.since,
        filter.until,
        page.limit,
        page.offset
    )
    .await?;
    let total = db::fetch_scalar!(
        db,
        "SELECT count(*) FROM audit_events
         WHERE ($1 IS NULL OR actor_id = $1)
           AND ($2 IS NULL OR action = $2)
           AND ($3 IS NULL OR occurred_at >= $3)
           AND ($4 IS NULL OR occurred_at < $4)",
        filter.actor_id,
        filter.action,
        filter.since,
        filter.until
    )
    .await?;
    Ok(page.of(items, total))
}
