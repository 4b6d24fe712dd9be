//! Documents from a user's point of view: insert a document and get its
//! URI, fetch a URI and get the document, retract a signed document.
//!
//! Everything here runs over [`Blocks`], the ability to get and put single
//! blocks: a [`NodeClient`], whose requests leave through a circuit's exit
//! and not from the requester. Blocks of a large document move with at
//! most [`WINDOW`] requests in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::keys::{
    self, chk_decode, chk_encode, copy_routing_key, decode_root, encode_document, fill_keys,
    split_key_list, ChkKey, DocError, Manifest, Root, SskContent, SskInsertKey, SskRequestKey, Uri,
    ROOT_COPIES,
};
use crate::node::{NodeClient, RequestError};
use crate::wire::{KeyKind, RoutingKey};

/// Block requests in flight at once for one document.
pub const WINDOW: usize = 16;

/// Getting and putting single blocks, wherever they go.
pub trait Blocks: Clone + Send + Sync + 'static {
    fn get(
        &self,
        kind: KeyKind,
        key: RoutingKey,
    ) -> impl Future<Output = Result<Vec<u8>, RequestError>> + Send;
    fn put(
        &self,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    ) -> impl Future<Output = Result<(), RequestError>> + Send;
}

impl Blocks for NodeClient {
    fn get(
        &self,
        kind: KeyKind,
        key: RoutingKey,
    ) -> impl Future<Output = Result<Vec<u8>, RequestError>> + Send {
        let c = self.clone();
        async move { c.get_block(kind, key).await }
    }

    fn put(
        &self,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    ) -> impl Future<Output = Result<(), RequestError>> + Send {
        let c = self.clone();
        async move { c.put_block(kind, key, block).await }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("the document was retracted by its publisher (version {version})")]
    Retracted { version: u64 },
    #[error("{0}")]
    Document(#[from] DocError),
    #[error("this URI inserts; fetch with its request URI")]
    InsertUri,
    #[error("the document needs {bytes} bytes of memory; this node gives one at most {max}")]
    TooLarge { bytes: u64, max: u64 },
    #[error("busy: the node holds as many documents in memory as it may; try again later")]
    Busy,
}

/// Document bytes that fetches and inserts may hold in memory at once,
/// shared by every clone: the gateway and the proxy serve all their
/// clients from one (`limits.document_bytes`). Counted in KiB.
#[derive(Clone, Debug)]
pub struct Budget {
    permits: Arc<Semaphore>,
    total_kib: u64,
}

/// How long a fetch or insert waits for its share of the [`Budget`]
/// before it is refused.
pub const BUDGET_WAIT: Duration = Duration::from_secs(30);

/// Memory a fetch or an insert holds per byte of its document: the data,
/// and the blocks it is cut into or rebuilt from.
pub const HOLD_PER_BYTE: u64 = 2;

/// A share of a [`Budget`], given back when dropped.
#[derive(Debug, Default)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Add `other` to this share.
    pub fn merge(&mut self, other: Held) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl Budget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Budget {
        let kib = (bytes / 1024).clamp(1, u64::from(u32::MAX));
        Budget {
            permits: Arc::new(Semaphore::new(kib as usize)),
            total_kib: kib,
        }
    }

    /// As good as no bound: the library's own fetches and inserts.
    pub fn unbounded() -> Budget {
        Budget::new(u64::MAX)
    }

    /// Bytes the whole budget holds.
    pub fn total(&self) -> u64 {
        self.total_kib.saturating_mul(1024)
    }

    /// Hold `bytes`, waiting at most [`BUDGET_WAIT`] for others to let
    /// go of theirs. More than the whole budget is refused at once.
    pub async fn hold(&self, bytes: u64) -> Result<Held, ClientError> {
        let kib = bytes.div_ceil(1024);
        if kib > self.total_kib {
            return Err(ClientError::TooLarge {
                bytes,
                max: self.total(),
            });
        }
        if kib == 0 {
            return Ok(Held(None));
        }
        let n = u32::try_from(kib).expect("a budget is at most u32::MAX KiB");
        let permit = tokio::time::timeout(BUDGET_WAIT, self.permits.clone().acquire_many_owned(n))
            .await
            .map_err(|_| ClientError::Busy)?
            .map_err(|_| ClientError::Busy)?;
        let held = Held(Some(permit));
        Ok(held)
    }
}

/// A fetched document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub content_type: String,
    pub data: Vec<u8>,
    /// For signed documents, the version fetched.
    pub version: Option<u64>,
}

/// How far a document's insert or fetch has come, in blocks: for a
/// progress display. `total` is 0 until it is known (a fetch learns it from
/// the document's root). A fetch counts the data blocks it needs; blocks
/// fetched to replace lost ones can carry `done` to `total` before the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Where an insert or fetch reports its [`Progress`], if anyone watches.
pub type ProgressTx = watch::Sender<Progress>;

fn report(progress: Option<&ProgressTx>, f: impl FnOnce(&mut Progress)) {
    if let Some(p) = progress {
        p.send_modify(f);
    }
}

/// Where an insert goes.
pub enum Target<'a> {
    /// A content-hash key: the URI follows from the content.
    Chk,
    /// A signed subspace (or a keyword key's subspace), at a version.
    Signed(&'a SskInsertKey, u64),
}

/// A CHK block and, if it is one its document cannot do without (a root,
/// `root` true), its copies: what an insert puts for it.
pub fn with_copies(key: ChkKey, block: Vec<u8>, root: bool) -> Vec<(KeyKind, RoutingKey, Vec<u8>)> {
    let mut out = Vec::with_capacity(1 + usize::from(ROOT_COPIES));
    if root {
        for i in 1..=ROOT_COPIES {
            out.push((
                KeyKind::COPY,
                copy_routing_key(&key.routing, i),
                block.clone(),
            ));
        }
    }
    out.push((KeyKind::CHK, key.routing, block));
    out
}

/// Put many blocks, [`WINDOW`] at a time; the first failure ends it.
async fn put_all<B: Blocks>(
    b: &B,
    blocks: Vec<(KeyKind, RoutingKey, Vec<u8>)>,
    progress: Option<&ProgressTx>,
) -> Result<(), RequestError> {
    let mut set = JoinSet::new();
    let mut queue = blocks.into_iter();
    loop {
        while set.len() < WINDOW {
            let Some((kind, key, block)) = queue.next() else {
                break;
            };
            let b = b.clone();
            set.spawn(async move { b.put(kind, key, block).await });
        }
        match set.join_next().await {
            Some(Ok(Ok(()))) => report(progress, |p| p.done += 1),
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(_)) => return Err(RequestError::Stopped),
            None => return Ok(()),
        }
    }
}

/// Insert a document; returns the URI to fetch it with.
pub async fn insert<B: Blocks>(
    b: &B,
    content_type: &str,
    data: &[u8],
    target: Target<'_>,
) -> Result<Uri, ClientError> {
    insert_with_progress(b, content_type, data, target, None).await
}

/// [`insert`], reporting each block stored.
pub async fn insert_with_progress<B: Blocks>(
    b: &B,
    content_type: &str,
    data: &[u8],
    target: Target<'_>,
    progress: Option<&ProgressTx>,
) -> Result<Uri, ClientError> {
    let doc = encode_document(content_type, data)?;
    let lists = doc.lists;
    let blocks: Vec<_> = doc
        .blocks
        .into_iter()
        .flat_map(|(key, block)| with_copies(key, block, lists.contains(&key)))
        .collect();
    let count = u64::try_from(blocks.len()).unwrap_or(u64::MAX);
    report(progress, |p| {
        *p = Progress {
            done: 0,
            total: count.saturating_add(1),
        }
    });
    put_all(b, blocks, progress).await?;
    let uri = match target {
        Target::Chk => {
            // The root last, so that a URI never names a document whose
            // blocks are not all stored; its copies with it.
            let (key, block) = chk_encode(&doc.root).map_err(DocError::from)?;
            put_all(b, with_copies(key, block, true), None).await?;
            Uri::Chk(key)
        }
        Target::Signed(insert, version) => {
            let (routing, block) = insert
                .encode(version, Some(&doc.root))
                .map_err(DocError::from)?;
            b.put(KeyKind::SSK, routing, block).await?;
            Uri::Ssk(insert.request_key())
        }
    };
    report(progress, |p| p.done += 1);
    Ok(uri)
}

/// The version a new insert under `key` takes: one past the newest the
/// network holds (a retraction included), or 1 if it holds none.
pub async fn next_version<B: Blocks>(b: &B, key: &SskInsertKey) -> Result<u64, ClientError> {
    match get_signed(b, &key.request_key()).await {
        Ok((_, version)) | Err(ClientError::Retracted { version }) => Ok(version.saturating_add(1)),
        Err(ClientError::Request(RequestError::DataNotFound)) => Ok(1),
        Err(e) => Err(e),
    }
}

/// Retract a signed document: a tombstone at a higher version.
pub async fn retract<B: Blocks>(
    b: &B,
    insert: &SskInsertKey,
    version: u64,
) -> Result<(), ClientError> {
    let (routing, block) = insert.encode(version, None).map_err(DocError::from)?;
    b.put(KeyKind::SSK, routing, block).await?;
    Ok(())
}

async fn get_chk<B: Blocks>(b: &B, key: ChkKey) -> Result<Vec<u8>, ClientError> {
    let block = b.get(KeyKind::CHK, key.routing).await?;
    Ok(chk_decode(&key, &block).map_err(DocError::from)?)
}

/// A root (or a key list's root): from its own position, or failing that
/// from its copies, one after the other. The first failure is the one
/// reported if every position fails.
async fn get_root<B: Blocks>(b: &B, key: ChkKey) -> Result<Vec<u8>, ClientError> {
    let first = match get_chk(b, key).await {
        Ok(plain) => return Ok(plain),
        Err(ClientError::Request(RequestError::Stopped)) => {
            return Err(RequestError::Stopped.into())
        }
        Err(e) => e,
    };
    for i in 1..=ROOT_COPIES {
        let Ok(block) = b
            .get(KeyKind::COPY, copy_routing_key(&key.routing, i))
            .await
        else {
            continue;
        };
        // A copy is the CHK block itself: the same check, the same key.
        if let Ok(plain) = chk_decode(&key, &block) {
            return Ok(plain);
        }
    }
    Err(first)
}

async fn get_signed<B: Blocks>(b: &B, key: &SskRequestKey) -> Result<(Vec<u8>, u64), ClientError> {
    let block = b.get(KeyKind::SSK, key.routing()).await?;
    match key.decode(&block).map_err(DocError::from)? {
        SskContent::Data { version, data } => Ok((data, version)),
        SskContent::Retracted { version } => Err(ClientError::Retracted { version }),
    }
}

/// Fetch the document a URI names.
pub async fn fetch<B: Blocks>(b: &B, uri: &Uri) -> Result<Document, ClientError> {
    fetch_with_progress(b, uri, None).await
}

/// [`fetch`], reporting each block found.
pub async fn fetch_with_progress<B: Blocks>(
    b: &B,
    uri: &Uri,
    progress: Option<&ProgressTx>,
) -> Result<Document, ClientError> {
    let (doc, _held) = fetch_within(b, uri, progress, &Budget::unbounded()).await?;
    Ok(doc)
}

/// [`fetch_with_progress`], holding the document's memory in `budget`
/// from the moment its root says how large it is; the share comes back
/// with the document and is given back when dropped.
pub async fn fetch_within<B: Blocks>(
    b: &B,
    uri: &Uri,
    progress: Option<&ProgressTx>,
    budget: &Budget,
) -> Result<(Document, Held), ClientError> {
    let (root, version) = match uri {
        Uri::Chk(key) => (get_root(b, *key).await?, None),
        Uri::Ssk(key) => {
            let (root, v) = get_signed(b, key).await?;
            (root, Some(v))
        }
        Uri::Ksk(word) => {
            let (root, v) = get_signed(b, &keys::ksk(word).request_key()).await?;
            (root, Some(v))
        }
        Uri::SskInsert(_) => return Err(ClientError::InsertUri),
    };
    let (content_type, data, held) = fetch_root(b, &root, progress, budget, 0).await?;
    Ok((
        Document {
            content_type,
            data,
            version,
        },
        held,
    ))
}

/// Everything under a root: inline data, or a manifest's segments.
async fn fetch_root<B: Blocks>(
    b: &B,
    root: &[u8],
    progress: Option<&ProgressTx>,
    budget: &Budget,
    depth: usize,
) -> Result<(String, Vec<u8>, Held), ClientError> {
    let (manifest, held) = match decode_root(root)? {
        Root::Inline { content_type, data } => {
            report(progress, |p| *p = Progress { done: 1, total: 1 });
            return Ok((content_type, data, Held::default()));
        }
        Root::Manifest(m) => {
            let held = budget
                .hold(m.total_len.saturating_mul(HOLD_PER_BYTE))
                .await?;
            (m, held)
        }
        Root::Nested { manifest, list, .. } => {
            if depth >= keys::MAX_NESTING {
                return Err(DocError::TooDeep.into());
            }
            // The document and its key list, which is a document of its
            // own (and holds its own share while it is fetched).
            let held = budget
                .hold(manifest.total_len.saturating_mul(HOLD_PER_BYTE))
                .await?;
            let list_root = get_root(b, list).await?;
            let (_, list_bytes, list_held) =
                Box::pin(fetch_root(b, &list_root, None, budget, depth + 1)).await?;
            let keys = split_key_list(&list_bytes)?;
            drop((list_bytes, list_held));
            (fill_keys(manifest, keys)?, held)
        }
    };
    let total: usize = manifest.segments.iter().map(|s| s.data).sum();
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    report(progress, |p| *p = Progress { done: 0, total });
    let data = fetch_segments(b, &manifest, progress).await?;
    Ok((manifest.content_type, data, held))
}

/// Fetch each segment's data blocks, and parity blocks only for those that
/// fail; rebuild; cut to the document's length.
async fn fetch_segments<B: Blocks>(
    b: &B,
    m: &Manifest,
    progress: Option<&ProgressTx>,
) -> Result<Vec<u8>, ClientError> {
    let mut found: Vec<Vec<Option<Vec<u8>>>> = m
        .segments
        .iter()
        .map(|s| vec![None; s.data + s.parity])
        .collect();
    // First round: every data block. Then, per segment, as many parity
    // blocks as data blocks were missing, until none are left to try.
    let mut wanted: Vec<(usize, usize)> = m
        .segments
        .iter()
        .enumerate()
        .flat_map(|(si, s)| (0..s.data).map(move |i| (si, i)))
        .collect();
    let mut next_parity: Vec<usize> = m.segments.iter().map(|s| s.data).collect();
    while !wanted.is_empty() {
        let mut set = JoinSet::new();
        let mut queue = wanted.drain(..);
        loop {
            while set.len() < WINDOW {
                let Some((si, i)) = queue.next() else {
                    break;
                };
                let key = m.segments[si].keys[i];
                let b = b.clone();
                set.spawn(async move { (si, i, get_chk(&b, key).await) });
            }
            match set.join_next().await {
                Some(Ok((si, i, Ok(plain)))) => {
                    found[si][i] = Some(plain);
                    report(progress, |p| p.done = (p.done + 1).min(p.total));
                }
                Some(Ok((_, _, Err(_)))) => {}
                Some(Err(_)) => return Err(RequestError::Stopped.into()),
                None => break,
            }
        }
        drop(queue);
        for (si, s) in m.segments.iter().enumerate() {
            let have = found[si].iter().filter(|f| f.is_some()).count();
            let short = s.data.saturating_sub(have);
            let end = (next_parity[si] + short).min(s.data + s.parity);
            wanted.extend((next_parity[si]..end).map(|i| (si, i)));
            next_parity[si] = end;
        }
    }
    let mut out = Vec::new();
    for (si, s) in m.segments.iter().enumerate() {
        for chunk in s.rebuild(si, &found[si])? {
            out.extend_from_slice(&chunk);
        }
    }
    out.truncate(usize::try_from(m.total_len).unwrap_or(usize::MAX));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    type Stored = HashMap<(KeyKind, RoutingKey), Vec<u8>>;

    /// Blocks in memory.
    #[derive(Clone, Default)]
    struct Mem(Arc<Mutex<Stored>>);

    impl Blocks for Mem {
        async fn get(&self, kind: KeyKind, key: RoutingKey) -> Result<Vec<u8>, RequestError> {
            self.0
                .lock()
                .unwrap()
                .get(&(kind, key))
                .cloned()
                .ok_or(RequestError::DataNotFound)
        }

        async fn put(
            &self,
            kind: KeyKind,
            key: RoutingKey,
            block: Vec<u8>,
        ) -> Result<(), RequestError> {
            self.0.lock().unwrap().insert((kind, key), block);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_chain_of_key_lists_deeper_than_any_document_needs_is_refused() {
        // A nested root: 2 data chunks and 1 parity, their keys in a list
        // whose root is at `list`.
        let nested = |list: &ChkKey| {
            let mut r = vec![3u8, 0];
            r.extend_from_slice(&(2 * keys::BLOCK_PAYLOAD as u64).to_be_bytes());
            r.extend_from_slice(&1u32.to_be_bytes());
            r.extend_from_slice(&2u16.to_be_bytes());
            r.extend_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&list.routing.0);
            r.extend_from_slice(&list.decrypt);
            r.extend_from_slice(&(3 * 64u64).to_be_bytes());
            r
        };
        let mem = Mem::default();
        // The deepest list is an ordinary inline document; every level
        // above points to the one below.
        let (mut key, block) = chk_encode(&[1u8, 0, 9, 9]).unwrap();
        mem.put(KeyKind::CHK, key.routing, block).await.unwrap();
        for _ in 0..=keys::MAX_NESTING {
            let (k, block) = chk_encode(&nested(&key)).unwrap();
            mem.put(KeyKind::CHK, k.routing, block).await.unwrap();
            key = k;
        }
        assert_eq!(
            fetch(&mem, &Uri::Chk(key)).await.unwrap_err(),
            ClientError::Document(DocError::TooDeep)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_lends_what_it_has_waits_a_while_for_more_then_refuses() {
        let budget = Budget::new(1 << 20);
        assert_eq!(
            budget.hold(2 << 20).await.unwrap_err(),
            ClientError::TooLarge {
                bytes: 2 << 20,
                max: 1 << 20
            },
            "more than all of it: refused at once"
        );
        let first = budget.hold(600 << 10).await.unwrap();
        // The rest is not enough: the second waits, then is refused.
        let started = tokio::time::Instant::now();
        assert_eq!(budget.hold(600 << 10).await.unwrap_err(), ClientError::Busy);
        assert_eq!(started.elapsed(), BUDGET_WAIT);
        // Given back when dropped, and a waiter gets it.
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.hold(600 << 10).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        let mut second = waiter.await.unwrap().unwrap();
        second.merge(budget.hold(400 << 10).await.unwrap());
        assert_eq!(budget.permits.available_permits(), 24);
        drop(second);
        assert_eq!(budget.permits.available_permits(), 1024);
    }
}
