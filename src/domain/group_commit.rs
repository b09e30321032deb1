//! Group commit: writes that arrive at the same moment share one trip to the database.
//!
//! On SQLite every statement is handed to the driver's own thread and back (two context
//! switches) and every transaction ends in a commit; a like or a new film paid those alone.
//! Here a writer task takes every item waiting in its queue, up to [`BATCH`], and writes them
//! with one statement per table in one transaction ([`Batch::write_together`]). Under load the
//! queue fills while a batch is written, so the batches grow with the load; alone, an item
//! waits for nothing but the hand-over to the task.
//!
//! A batch that fails as a whole (a row it depends on deleted under it, a constraint) is
//! written again item by item ([`Batch::write_alone`]): each request gets the answer it
//! would have had alone, and one item's failure never becomes another's. When the database
//! cannot be reached, every item of the batch is refused at once (503), as each would be
//! alone, without making the queue behind them wait for one refusal after another.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::{db::Database, error::ApiError};

/// Items written together at most: bounds a statement's JSON parameter and how long the first
/// item of a batch waits for the last.
const BATCH: usize = 256;
/// Items waiting for the writer; a request beyond them waits for room (back-pressure).
const QUEUE: usize = 4 * BATCH;

/// One kind of write that can be grouped.
pub trait Batch: Send + 'static {
    type Item: Send + Sync + 'static;
    type Output: Send + 'static;

    /// Writes `items` at once: each one's outcome, in order. `Err` when the batch as a whole
    /// failed; then each item is written alone.
    fn write_together(
        db: &Database,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Result<Self::Output, ApiError>>, ApiError>> + Send;

    /// Writes `item` on its own, as if no other request had come.
    fn write_alone(
        db: &Database,
        item: &Self::Item,
    ) -> impl Future<Output = Result<Self::Output, ApiError>> + Send;
}

type Reply<B> = oneshot::Sender<Result<<B as Batch>::Output, ApiError>>;

/// The queue of one kind of write, shared by every worker of an instance.
pub struct GroupCommit<B: Batch> {
    queue: mpsc::Sender<(B::Item, Reply<B>)>,
}

impl<B: Batch> Clone for GroupCommit<B> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<B: Batch> GroupCommit<B> {
    /// Starts the writer; it stops when the last handle is dropped.
    pub fn start(db: Database) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(write_queued::<B>(db, waiting));
        Self { queue }
    }

    /// Writes `item` with whatever else is waiting, and answers once its batch committed.
    pub async fn write(&self, item: B::Item) -> Result<B::Output, ApiError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ApiError::Internal(anyhow::anyhow!("the batch writer has stopped"));
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_queued<B: Batch>(db: Database, mut waiting: mpsc::Receiver<(B::Item, Reply<B>)>) {
    let mut batch = Vec::with_capacity(BATCH);
    while waiting.recv_many(&mut batch, BATCH).await > 0 {
        let (items, replies): (Vec<B::Item>, Vec<Reply<B>>) = batch.drain(..).unzip();
        // A task of its own: a panic while writing fails this batch, not every later one.
        let written = tokio::spawn(write_batch::<B>(db.clone(), items)).await;
        let outcomes = written.unwrap_or_else(|panicked| {
            tracing::error!(error = %panicked, "a batch writer panicked");
            replies
                .iter()
                .map(|_| {
                    Err(ApiError::Internal(anyhow::anyhow!(
                        "the batch writer panicked"
                    )))
                })
                .collect()
        });
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that went away (its connection closed) needs no answer.
            let _ = reply.send(outcome);
        }
    }
}

async fn write_batch<B: Batch>(
    db: Database,
    items: Vec<B::Item>,
) -> Vec<Result<B::Output, ApiError>> {
    let (db, items) = (&db, &items[..]);
    match B::write_together(db, items).await {
        Ok(outcomes) => outcomes,
        // The database is away: each item alone would wait for it again, and the queue
        // behind them with it. Every one is refused at once.
        Err(ApiError::Unavailable { retry_after }) => items
            .iter()
            .map(|_| Err(ApiError::Unavailable { retry_after }))
            .collect(),
        Err(error) => {
            tracing::debug!(%error, items = items.len(), "a batch is written item by item");
            let mut outcomes = Vec::with_capacity(items.len());
            for item in items {
                outcomes.push(B::write_alone(db, item).await);
            }
            outcomes
        }
    }
}
