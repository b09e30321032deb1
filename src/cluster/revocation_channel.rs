//! The revocation broadcast: Redis pub/sub on `{prefix}:revocations`.
//!
//! A message only names what changed (a user's token version, a session); each instance then
//! reads the new state from the database, the source of truth. So a message cannot carry a
//! wrong version, and a forged one costs a query but revokes nothing.
//!
//! Staleness is bounded. The subscription is confirmed by a PING on its own connection every
//! quarter of `REVOCATION_MAX_STALENESS_MS`: Redis answers in order, so when the answer comes,
//! every message published before the PING has arrived. An instance trusts its in-memory
//! revocations only while the last confirmation is younger than the bound; past it (channel
//! down, Redis gone, or never yet connected) every token is checked against the database.
//! After each (re)subscription, and every `RESYNC_INTERVAL`, the instance re-reads all
//! revocations from the database, which also covers a peer that could not publish.
//!
//! Cache notices published at the same moment travel in one message, one per line: a burst
//! of writes (the film creations a group commit answers at once) costs Redis one `PUBLISH`,
//! not one each. A line that cannot be read is skipped; the others are applied. Revocations
//! are always sent alone, in the format every earlier version reads, so an instance not yet
//! upgraded never misses one.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{
    RedisStore, Unavailable,
    store::{CONNECT_TIMEOUT, bounded, bounded_by},
};

/// A periodic full re-read from the database: the bound for a change whose instance could
/// not publish it while its peers still heard the channel.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);
const RECONNECT_DELAY: Duration = Duration::from_millis(250);
/// Notices sent in one message at most (a session id is at most 128 bytes: 20 KiB at most).
const NOTICES_PER_MESSAGE: usize = 128;

/// What changed; the new state is in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A user's token version went up (password change, role change, disabling).
    TokenVersion { user_id: i64 },
    /// A session was revoked (logout, refresh-token reuse).
    Session { family_id: String },
    /// Films changed: every instance forgets its cached reads of them (`read_cache`). Not a
    /// revocation, but the same broadcast, bound and resync make it exact on every instance.
    Films(FilmChange),
}

impl Notice {
    fn encode(&self) -> String {
        match self {
            Self::TokenVersion { user_id } => format!("user:{user_id}"),
            Self::Session { family_id } => format!("session:{family_id}"),
            Self::Films(change) => format!("cache:{}", change.encode()),
        }
    }

    fn decode(message: &str) -> Option<Self> {
        match message.split_once(':')? {
            ("user", id) => Some(Self::TokenVersion {
                user_id: id.parse().ok()?,
            }),
            ("session", family) if !family.is_empty() && family.len() <= 128 => {
                Some(Self::Session {
                    family_id: family.to_owned(),
                })
            }
            ("cache", change) => FilmChange::decode(change).map(Self::Films),
            _ => None,
        }
    }
}

/// Why following the channel stopped (it is then resubscribed).
#[derive(Debug, thiserror::Error)]
pub enum ChannelLost {
    #[error(transparent)]
    Redis(#[from] Unavailable),
    #[error("the database could not be read: {0}")]
    Database(#[from] sqlx::Error),
}

pub struct RevocationChannel {
    store: RedisStore,
    channel: String,
    /// Notices waiting for the publisher task, each with the sender of its acknowledgement.
    outbox: mpsc::Sender<(Notice, oneshot::Sender<()>)>,
    max_staleness: Duration,
    started: Instant,
    /// Milliseconds after `started` up to which every published message has been applied;
    /// 0 until the first subscription is confirmed.
    confirmed_until: AtomicU64,
}

impl RevocationChannel {
    /// Starts the publisher task, which stops when the channel is dropped.
    pub fn new(store: RedisStore, max_staleness: Duration) -> Self {
        let channel = store.key("revocations");
        let (outbox, waiting) = mpsc::channel(4 * NOTICES_PER_MESSAGE);
        tokio::spawn(publish_queued(store.clone(), channel.clone(), waiting));
        Self {
            channel,
            outbox,
            store,
            max_staleness,
            started: Instant::now(),
            confirmed_until: AtomicU64::new(0),
        }
    }

    /// Tells the other instances, with whatever else is being published at this moment;
    /// they read the change from the database. Returns once the message is sent. A failure
    /// is logged: the database already holds the change, and peers that miss the message
    /// find it at their next resync.
    pub async fn publish(&self, notice: &Notice) {
        let (sent, acknowledged) = oneshot::channel();
        if self.outbox.send((notice.clone(), sent)).await.is_err() {
            tracing::warn!(
                ?notice,
                "a revocation could not be broadcast: the publisher stopped"
            );
            return;
        }
        let _ = acknowledged.await;
    }

    /// Whether in-memory revocations may be trusted: the channel delivered everything up to
    /// less than `max_staleness` ago.
    pub fn is_fresh(&self) -> bool {
        let confirmed = self.confirmed_until.load(Ordering::Acquire);
        confirmed > 0 && self.millis_since_start(Instant::now()) <= confirmed + self.max_millis()
    }

    fn max_millis(&self) -> u64 {
        u64::try_from(self.max_staleness.as_millis()).unwrap_or(u64::MAX)
    }

    fn millis_since_start(&self, at: Instant) -> u64 {
        // +1: 0 means "never confirmed".
        u64::try_from(at.duration_since(self.started).as_millis()).unwrap_or(u64::MAX) + 1
    }

    fn confirm(&self, at: Instant) {
        self.confirmed_until
            .fetch_max(self.millis_since_start(at), Ordering::AcqRel);
    }

    /// Follows the channel for as long as the process runs, resubscribing after any loss:
    /// `resync` re-reads everything from the database, `apply` reads one notice's change.
    pub async fn follow<R, RF, A, AF>(&self, resync: R, apply: A)
    where
        R: Fn() -> RF,
        RF: Future<Output = sqlx::Result<()>>,
        A: Fn(Notice) -> AF,
        AF: Future<Output = sqlx::Result<()>>,
    {
        loop {
            let Err(error) = self.subscribed(&resync, &apply).await;
            tracing::warn!(%error, "revocation channel lost; resubscribing");
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }

    async fn subscribed<R, RF, A, AF>(
        &self,
        resync: &R,
        apply: &A,
    ) -> Result<std::convert::Infallible, ChannelLost>
    where
        R: Fn() -> RF,
        RF: Future<Output = sqlx::Result<()>>,
        A: Fn(Notice) -> AF,
        AF: Future<Output = sqlx::Result<()>>,
    {
        let pubsub = bounded_by(CONNECT_TIMEOUT, self.store.client().get_async_pubsub()).await?;
        let (mut sink, mut stream) = pubsub.split();
        bounded(sink.subscribe(&self.channel)).await?;
        // Every change published from here on arrives; the rest is read now.
        let subscribed_at = Instant::now();
        resync().await?;
        self.confirm(subscribed_at);
        tracing::info!("revocation channel subscribed and resynchronized");

        let mut heartbeat = tokio::time::interval(self.max_staleness / 4);
        let mut resync_timer = tokio::time::interval(RESYNC_INTERVAL);
        resync_timer.reset();
        loop {
            tokio::select! {
                message = stream.next() => {
                    let message = message.ok_or_else(Unavailable::closed)?;
                    self.receive(&message, apply).await?;
                }
                _ = heartbeat.tick() => {
                    let sent = Instant::now();
                    bounded(sink.ping::<redis::Value>()).await?;
                    // The answer follows every message published before the PING.
                    while let Some(Some(message)) = stream.next().now_or_never() {
                        self.receive(&message, apply).await?;
                    }
                    self.confirm(sent);
                }
                _ = resync_timer.tick() => resync().await?,
            }
        }
    }

    async fn receive<A, AF>(&self, message: &redis::Msg, apply: &A) -> sqlx::Result<()>
    where
        A: Fn(Notice) -> AF,
        AF: Future<Output = sqlx::Result<()>>,
    {
        let payload: String = message.get_payload().unwrap_or_default();
        // No more lines than a publisher sends, and only cache notices travel together: a
        // forged message costs a bounded number of queries.
        let together = payload.contains('\n');
        for line in payload.lines().take(NOTICES_PER_MESSAGE) {
            match Notice::decode(line) {
                Some(notice @ Notice::Films(_)) => apply(notice).await?,
                Some(notice) if !together => apply(notice).await?,
                Some(_) | None => {
                    tracing::warn!("an unreadable notice on the revocation channel was ignored");
                }
            }
        }
        Ok(())
    }
}

/// Sends every notice waiting as one message, then acknowledges each.
async fn publish_queued(
    store: RedisStore,
    channel: String,
    mut waiting: mpsc::Receiver<(Notice, oneshot::Sender<()>)>,
) {
    let mut batch = Vec::with_capacity(NOTICES_PER_MESSAGE);
    while waiting.recv_many(&mut batch, NOTICES_PER_MESSAGE).await > 0 {
        // Revocations alone, as every version reads them; cache notices together.
        let (films, revocations): (Vec<&Notice>, Vec<&Notice>) = batch
            .iter()
            .map(|(notice, _)| notice)
            .partition(|notice| matches!(notice, Notice::Films(_)));
        let together = films
            .iter()
            .map(|notice| notice.encode())
            .collect::<Vec<_>>();
        let messages = revocations
            .iter()
            .map(|notice| notice.encode())
            .chain((!together.is_empty()).then(|| together.join("\n")));
        // At once: each is bounded by the call timeout, and none waits for another.
        let (store, channel) = (&store, &channel);
        futures_util::future::join_all(messages.map(|message| async move {
            if let Err(error) = store.publish(channel, &message).await {
                tracing::warn!(%error, notices = %message, "a broadcast could not be sent");
            }
        }))
        .await;
        for (_, sent) in batch.drain(..) {
            let _ = sent.send(());
        }
    }
}

/// What a write changed, as narrowly as the read cache (`read_cache`) needs to know; sent
/// to every instance as a `Notice::Films`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilmChange {
    /// A film's counts moved (a vote cast or withdrawn): the film, and the pages that show it.
    Votes(i64),
    /// A film was created, changed or deleted: the film, and every page (totals, order,
    /// search matches may all move).
    Film(i64),
    /// Many films at once (an account deleted: its votes withdrawn, its films without an
    /// author): everything.
    Everything,
}

impl FilmChange {
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Votes(id) => format!("votes:{id}"),
            Self::Film(id) => format!("film:{id}"),
            Self::Everything => "films".to_owned(),
        }
    }

    pub(crate) fn decode(message: &str) -> Option<Self> {
        match message.split_once(':') {
            None if message == "films" => Some(Self::Everything),
            Some(("votes", id)) => Some(Self::Votes(id.parse().ok()?)),
            Some(("film", id)) => Some(Self::Film(id.parse().ok()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::cluster::store::test_store;

    #[test]
    fn notices_round_trip_and_anything_else_is_refused() {
        for notice in [
            Notice::TokenVersion { user_id: 42 },
            Notice::Session {
                family_id: "f-1".into(),
            },
            Notice::Films(FilmChange::Votes(3)),
            Notice::Films(FilmChange::Film(4)),
            Notice::Films(FilmChange::Everything),
        ] {
            assert_eq!(Notice::decode(&notice.encode()), Some(notice));
        }
        for garbage in [
            "",
            "user:",
            "user:x",
            "session:",
            "version:1",
            "nonsense",
            "cache:",
            "cache:film:x",
            "cache:votes:",
            "cache:everything",
        ] {
            assert_eq!(Notice::decode(garbage), None, "{garbage}");
        }
    }

    #[tokio::test]
    async fn a_follower_is_fresh_once_subscribed_and_hears_what_a_peer_publishes() {
        let Some(store) = test_store() else { return };
        let follower = Arc::new(RevocationChannel::new(
            store.clone(),
            Duration::from_millis(400),
        ));
        let publisher = RevocationChannel::new(store, Duration::from_millis(400));
        assert!(!follower.is_fresh(), "fresh before it ever subscribed");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let resyncs = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (follower, heard, resyncs) = (follower.clone(), heard.clone(), resyncs.clone());
            async move {
                follower
                    .follow(
                        || {
                            resyncs.fetch_add(1, Ordering::Relaxed);
                            async { Ok(()) }
                        },
                        |notice| {
                            heard.lock().unwrap().push(notice);
                            async { Ok(()) }
                        },
                    )
                    .await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !follower.is_fresh() {
            assert!(Instant::now() < deadline, "never subscribed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            resyncs.load(Ordering::Relaxed),
            1,
            "resynchronized once subscribed"
        );

        let notice = Notice::TokenVersion { user_id: 7 };
        publisher.publish(&notice).await;
        while !heard.lock().unwrap().contains(&notice) {
            assert!(Instant::now() < deadline, "the notice never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Notices published at once arrive, whether they travelled together or not.
        let burst: Vec<Notice> = (100..140)
            .map(|id| Notice::Films(FilmChange::Film(id)))
            .collect();
        futures_util::future::join_all(burst.iter().map(|notice| publisher.publish(notice))).await;
        while !burst
            .iter()
            .all(|notice| heard.lock().unwrap().contains(notice))
        {
            assert!(
                Instant::now() < deadline,
                "a notice of the burst never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Heartbeats keep it fresh well past the staleness bound.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(follower.is_fresh());
        task.abort();
    }
}
