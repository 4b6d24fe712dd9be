//! The datastore's own thread: it carries out the core's store operations
//! so that no fsync, and no read (which updates the cache's recency, a
//! write), ever stalls the node's links and circuits.
//!
//! It takes every operation waiting and runs the durable writes among them
//! in one transaction, with one fsync (group commit): under load, many
//! acknowledgements share one flush, and each is still durable before its
//! result goes back. Operations on one key keep their order: reads and
//! other work queued before a batch of writes run before it, and those
//! queued after run after it.

use tokio::sync::{mpsc, oneshot};

use super::core::{OpId, StoreFailure, StoreOp, StoreResult};
use crate::store::{self, Datastore, Store};

/// Operations taken from the queue at once, at most.
const BATCH: usize = 256;

fn failure(e: &store::Error) -> StoreFailure {
    match e {
        store::Error::BadBlock => StoreFailure::BadBlock,
        store::Error::Full { .. } => StoreFailure::Full,
        store::Error::Db(m) => StoreFailure::Db(m.clone()),
    }
}

/// Run one operation that is not a durable write.
pub fn run(store: &impl Datastore, what: StoreOp) -> StoreResult {
    match what {
        StoreOp::Get { kind, key } => match store.get(kind, &key) {
            Ok(found) => StoreResult::Block(found),
            Err(e) => StoreResult::Failed(failure(&e)),
        },
        StoreOp::Put { kind, key, block } => StoreResult::Put(
            store
                .put_many(&[(kind, key, &block)])
                .pop()
                .unwrap_or(Err(store::Error::Db("no outcome".into())))
                .map_err(|e| failure(&e)),
        ),
        StoreOp::Cache { kind, key, block } => {
            let _ = store.cache_many(&[(kind, key, &block)]);
            StoreResult::Done
        }
        StoreOp::Has { kind, key } => StoreResult::Bool(store.has(kind, &key).unwrap_or(false)),
        StoreOp::Forget { kind, key } => StoreResult::Bool(store.forget(kind, &key).is_ok()),
        StoreOp::Stats => match store.stats() {
            Ok(s) => StoreResult::Stats(s),
            Err(e) => StoreResult::Failed(failure(&e)),
        },
    }
}

/// The driver's side of the datastore's thread.
pub struct Worker {
    /// Where operations go; dropping it lets the thread finish.
    pub ops: mpsc::UnboundedSender<(OpId, StoreOp)>,
    /// Resolves once the thread has finished and closed the store.
    pub finished: oneshot::Receiver<()>,
}

/// Start the thread. It ends when the sending side is dropped, after
/// finishing what was queued; then it closes the store and says so.
pub fn spawn(store: Store) -> (Worker, mpsc::UnboundedReceiver<(OpId, StoreResult)>) {
    let (op_tx, mut op_rx) = mpsc::unbounded_channel::<(OpId, StoreOp)>();
    let (res_tx, res_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("umbra-store".into())
        .spawn(move || {
            serve(&store, &mut op_rx, &res_tx);
            drop(store);
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the datastore thread: {e}");
    }
    (
        Worker {
            ops: op_tx,
            finished: done_rx,
        },
        res_rx,
    )
}

fn serve(
    store: &Store,
    op_rx: &mut mpsc::UnboundedReceiver<(OpId, StoreOp)>,
    res_tx: &mpsc::UnboundedSender<(OpId, StoreResult)>,
) {
    while let Some(first) = op_rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match op_rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        for (op, result) in run_batch(store, batch) {
            // A driver that stopped listening still gets every
            // queued write done: nothing acknowledged is lost.
            let _ = res_tx.send((op, result));
        }
    }
}

/// Run a batch in order, each run of consecutive durable writes as one
/// group commit, and every cache write of the batch last, in one
/// transaction: a cache write changes nothing anyone reads for sure, so a
/// read need not wait behind it.
fn run_batch(store: &Store, batch: Vec<(OpId, StoreOp)>) -> Vec<(OpId, StoreResult)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut writes: Vec<(OpId, StoreOp)> = Vec::new();
    let mut caches: Vec<(OpId, StoreOp)> = Vec::new();
    for (op, what) in batch {
        match what {
            StoreOp::Put { .. } => writes.push((op, what)),
            StoreOp::Cache { .. } => caches.push((op, what)),
            _ => {
                commit(store, &mut writes, &mut out);
                out.push((op, run(store, what)));
            }
        }
    }
    commit(store, &mut writes, &mut out);
    let blocks: Vec<_> = caches
        .iter()
        .filter_map(|(_, c)| match c {
            StoreOp::Cache { kind, key, block } => Some((*kind, *key, block.as_slice())),
            _ => None,
        })
        .collect();
    if !blocks.is_empty() {
        let _ = store.cache_many(&blocks);
    }
    out.extend(caches.into_iter().map(|(op, _)| (op, StoreResult::Done)));
    out
}

fn commit(store: &Store, writes: &mut Vec<(OpId, StoreOp)>, out: &mut Vec<(OpId, StoreResult)>) {
    if writes.is_empty() {
        return;
    }
    let blocks: Vec<_> = writes
        .iter()
        .filter_map(|(_, w)| match w {
            StoreOp::Put { kind, key, block } => Some((*kind, *key, block.as_slice())),
            _ => None,
        })
        .collect();
    let results = store.put_many(&blocks);
    for ((op, _), r) in writes.drain(..).zip(results) {
        out.push((op, StoreResult::Put(r.map_err(|e| failure(&e)))));
    }
}
