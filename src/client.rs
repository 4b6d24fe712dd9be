//! Documents from a user's point of view: insert a document and get its
//! URI, fetch a URI and get the document, retract a signed document.
//!
//! Everything here runs over [`Blocks`], the ability to get and put single
//! blocks: a [`NodeClient`], whose requests leave through a circuit's exit
//! and not from the requester. Blocks of a large document move with at
//! most [`WINDOW`] requests in flight to read, [`PUT_WINDOW`] to insert.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::keys::{
    self, chk_decode, chk_encode, copy_routing_key, decode_root, fill_keys, split_key_list, ChkKey,
    DocError, Manifest, Root, SskContent, SskInsertKey, SskRequestKey, Uri, ROOT_COPIES,
};
use crate::node::{NodeClient, RequestError};
use crate::wire::{KeyKind, RoutingKey};

mod stream;

pub use stream::{Reader, SEGMENTS_AHEAD};

/// Block requests in flight at once for one document, at most: 4 MiB,
/// what a path of 280 ms round trip (a circuit and a routed path at
/// some 30 ms a link) carries at 15 MB/s. A read starts with a few, so
/// that its first block does not share the circuit with many, and takes
/// the whole window once that block is in (`stream.rs`).
pub const WINDOW: usize = 128;

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
    #[error("{0}")]
    Read(#[from] ReadError),
}

/// Why the bytes of a document being inserted stopped coming. A reader
/// handed to [`insert_from`] says which by wrapping one of these in its
/// `io::Error`; any other error is [`ReadError::Io`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the document could not be read: {0}")]
    Io(String),
    #[error("the document did not arrive within {0} s")]
    Timeout(u64),
    #[error("documents are limited to {0} bytes")]
    TooLong(u64),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> ReadError {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ReadError>())
        {
            Some(r) => r.clone(),
            None => ReadError::Io(e.to_string()),
        }
    }
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

/// Blocks an insert has on their way at once: each is written durably on
/// several nodes before it is acknowledged, and the first failure ends
/// the insert, so an insert does not press the nodes as hard as a read.
pub const PUT_WINDOW: usize = 16;

/// Blocks on their way to the network, [`PUT_WINDOW`] at a time; the
/// first failure ends the insert.
struct Putter<B> {
    b: B,
    set: JoinSet<Result<(), RequestError>>,
    queue: VecDeque<(KeyKind, RoutingKey, Vec<u8>)>,
    progress: Option<ProgressTx>,
}

impl<B: Blocks> Putter<B> {
    fn new(b: &B, progress: Option<&ProgressTx>) -> Putter<B> {
        Putter {
            b: b.clone(),
            set: JoinSet::new(),
            queue: VecDeque::new(),
            progress: progress.cloned(),
        }
    }

    fn add(&mut self, blocks: impl IntoIterator<Item = (KeyKind, RoutingKey, Vec<u8>)>) {
        self.queue.extend(blocks);
    }

    /// Put blocks until at most `backlog` are queued or on their way.
    async fn settle(&mut self, backlog: usize) -> Result<(), RequestError> {
        loop {
            while self.set.len() < PUT_WINDOW {
                let Some((kind, key, block)) = self.queue.pop_front() else {
                    break;
                };
                let b = self.b.clone();
                self.set.spawn(async move { b.put(kind, key, block).await });
            }
            if self.queue.len() + self.set.len() <= backlog {
                return Ok(());
            }
            match self.set.join_next().await {
                Some(Ok(Ok(()))) => report(self.progress.as_ref(), |p| p.done += 1),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(_)) => return Err(RequestError::Stopped),
                None => return Ok(()),
            }
        }
    }
}

/// Blocks an insert of `len` bytes puts, root included (a nested key
/// list's blocks aside): for a progress display.
fn blocks_for(len: u64) -> u64 {
    let chunks = len.div_ceil(keys::BLOCK_PAYLOAD as u64);
    let per = keys::SEGMENT_DATA_BLOCKS as u64;
    let (full, rest) = (chunks / per, chunks % per);
    chunks + full * per.div_ceil(2) + rest.div_ceil(2) + 1
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
    let len = Some(data.len() as u64);
    insert_from(b, content_type, data, len, target, progress).await
}

/// Bytes an insert reads at a time.
const READ_AT_ONCE: usize = 1 << 20;

/// Insert a document read from `from` as it arrives: each segment is
/// encoded and its blocks sent while the next is read, so memory stays
/// at a few segments whatever the size. `len`, if known, gives the
/// progress display its total from the start. Returns the URI to fetch
/// it with.
pub async fn insert_from<B: Blocks, R: AsyncRead + Unpin>(
    b: &B,
    content_type: &str,
    mut from: R,
    len: Option<u64>,
    target: Target<'_>,
    progress: Option<&ProgressTx>,
) -> Result<Uri, ClientError> {
    let mut encoder = keys::Encoder::new(content_type)?;
    report(progress, |p| {
        *p = Progress {
            done: 0,
            total: len.map_or(0, blocks_for),
        }
    });
    let mut put = Putter::new(b, progress);
    let mut buf = Vec::with_capacity(READ_AT_ONCE);
    loop {
        buf.clear();
        while buf.len() < READ_AT_ONCE {
            let n = (&mut from)
                .take((READ_AT_ONCE - buf.len()) as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| ClientError::Read(e.into()))?;
            if n == 0 {
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
        let blocks = encoder.push(&buf)?;
        put.add(
            blocks
                .into_iter()
                .map(|(key, block)| (KeyKind::CHK, key.routing, block)),
        );
        // A segment's blocks may wait while the next is read and encoded.
        put.settle(keys::SEGMENT_DATA_BLOCKS * 3 / 2).await?;
    }
    let doc = encoder.finish()?;
    let lists = doc.lists;
    let rest: Vec<_> = doc
        .blocks
        .into_iter()
        .flat_map(|(key, block)| with_copies(key, block, lists.contains(&key)))
        .collect();
    report(progress, |p| {
        p.total = (p.done + (put.queue.len() + put.set.len() + rest.len()) as u64).saturating_add(1)
    });
    put.add(rest);
    put.settle(0).await?;
    let uri = match target {
        Target::Chk => {
            // The root last, so that a URI never names a document whose
            // blocks are not all stored; its copies with it.
            let (key, block) = chk_encode(&doc.root).map_err(DocError::from)?;
            let mut roots = Putter::new(b, None);
            roots.add(with_copies(key, block, true));
            roots.settle(0).await?;
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

/// Fetch the document a URI names, whole, into memory.
pub async fn fetch<B: Blocks>(b: &B, uri: &Uri) -> Result<Document, ClientError> {
    fetch_with_progress(b, uri, None).await
}

/// [`fetch`], reporting each block found.
pub async fn fetch_with_progress<B: Blocks>(
    b: &B,
    uri: &Uri,
    progress: Option<&ProgressTx>,
) -> Result<Document, ClientError> {
    let doc = open(b, uri, &Budget::unbounded()).await?;
    let (content_type, version) = (doc.content_type.clone(), doc.version);
    let data = doc.read_all(progress.cloned()).collect().await?;
    Ok(Document {
        content_type,
        data,
        version,
    })
}

/// A document whose root is read: what it is and how long, ready to be
/// read in whole or in part. Holds the share of the [`Budget`] its
/// reading needs, given back when the reading ends or this is dropped.
pub struct Opened<B> {
    pub content_type: String,
    /// For signed documents, the version found.
    pub version: Option<u64>,
    /// The document's length in bytes.
    pub len: u64,
    body: Body<B>,
}

enum Body<B> {
    Inline(Bytes),
    Blocks {
        b: B,
        manifest: Arc<Manifest>,
        held: Held,
    },
}

impl<B: Blocks> Body<B> {
    fn read(self, range: Range<u64>, progress: Option<ProgressTx>) -> Reader {
        match self {
            Body::Inline(data) => {
                let len = data.len() as u64;
                let (start, end) = (range.start.min(len), range.end.min(len));
                report(progress.as_ref(), |p| *p = Progress { done: 1, total: 1 });
                Reader::ready(data.slice(start as usize..end.max(start) as usize))
            }
            Body::Blocks { b, manifest, held } => Reader::spawn(b, manifest, range, progress, held),
        }
    }
}

impl<B: Blocks> Opened<B> {
    /// The bytes of `range` (cut to the document), in order, as their
    /// blocks arrive; `progress` counts the blocks.
    pub fn read(self, range: Range<u64>, progress: Option<ProgressTx>) -> Reader {
        self.body.read(range, progress)
    }

    /// The whole document, in order, as its blocks arrive.
    pub fn read_all(self, progress: Option<ProgressTx>) -> Reader {
        let len = self.len;
        self.read(0..len, progress)
    }
}

/// Read the root of the document `uri` names (and its key list, if that
/// is a document of its own), holding in `budget` what reading it takes:
/// a window of segments, not the document.
pub async fn open<B: Blocks>(b: &B, uri: &Uri, budget: &Budget) -> Result<Opened<B>, ClientError> {
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
    let (content_type, len, body) = open_root(b, &root, budget, 0).await?;
    Ok(Opened {
        content_type,
        version,
        len,
        body,
    })
}

/// What a root describes: inline data, or a manifest with every key.
async fn open_root<B: Blocks>(
    b: &B,
    root: &[u8],
    budget: &Budget,
    depth: usize,
) -> Result<(String, u64, Body<B>), ClientError> {
    let manifest = match decode_root(root)? {
        Root::Inline { content_type, data } => {
            let len = data.len() as u64;
            return Ok((content_type, len, Body::Inline(data.into())));
        }
        Root::Manifest(m) => m,
        Root::Nested {
            manifest,
            list,
            list_len,
        } => {
            if depth >= keys::MAX_NESTING {
                return Err(DocError::TooDeep.into());
            }
            // The key list is a document of its own, read whole: 64 bytes
            // a block, some 3 MiB for a 1 GiB document.
            let held = budget.hold(list_len.saturating_mul(HOLD_PER_BYTE)).await?;
            let list_root = get_root(b, list).await?;
            let (_, _, list) = Box::pin(open_root(b, &list_root, budget, depth + 1)).await?;
            let bytes = list.read(0..list_len, None).collect().await?;
            let keys = split_key_list(&bytes)?;
            drop((bytes, held));
            fill_keys(manifest, keys)?
        }
    };
    let held = budget.hold(stream::window_bytes(&manifest)).await?;
    Ok((
        manifest.content_type.clone(),
        manifest.total_len,
        Body::Blocks {
            b: b.clone(),
            manifest: Arc::new(manifest),
            held,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    type Stored = HashMap<(KeyKind, RoutingKey), Vec<u8>>;

    /// Blocks in memory, counting the gets, some of them lost.
    #[derive(Clone, Default)]
    struct Counted {
        blocks: Arc<Mutex<Stored>>,
        gets: Arc<std::sync::atomic::AtomicUsize>,
        lost: Arc<Mutex<std::collections::HashSet<RoutingKey>>>,
        /// Blocks whose next get fails, as a search does while the ring
        /// repairs itself.
        flaky: Arc<Mutex<std::collections::HashSet<RoutingKey>>>,
        /// How long each get takes: a path's round trip.
        delay: Arc<Mutex<Duration>>,
    }

    impl Counted {
        fn gets(&self) -> usize {
            self.gets.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Blocks for Counted {
        async fn get(&self, kind: KeyKind, key: RoutingKey) -> Result<Vec<u8>, RequestError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let delay = *self.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if self.lost.lock().unwrap().contains(&key) {
                return Err(RequestError::DataNotFound);
            }
            if self.flaky.lock().unwrap().remove(&key) {
                return Err(RequestError::RouteNotFound);
            }
            self.blocks
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
            self.blocks.lock().unwrap().insert((kind, key), block);
            Ok(())
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 4099) as u8).collect()
    }

    async fn stored(len: usize) -> (Counted, Uri, Vec<u8>) {
        let b = Counted::default();
        let data = pattern(len);
        let uri = insert(&b, "application/octet-stream", &data, Target::Chk)
            .await
            .unwrap();
        (b, uri, data)
    }

    async fn manifest(b: &Counted, uri: &Uri) -> Manifest {
        let Uri::Chk(key) = uri else { unreachable!() };
        let root = get_root(b, *key).await.unwrap();
        match open_root(b, &root, &Budget::unbounded(), 0)
            .await
            .unwrap()
            .2
        {
            Body::Blocks { manifest, .. } => (*manifest).clone(),
            Body::Inline(_) => panic!("expected a manifest"),
        }
    }

    #[tokio::test]
    async fn any_range_reads_back_exactly_its_bytes_and_only_its_blocks() {
        // Five segments.
        let (b, uri, data) = stored(9 << 20).await;
        let len = data.len() as u64;
        let payload = keys::BLOCK_PAYLOAD as u64;
        let seg = payload * keys::SEGMENT_DATA_BLOCKS as u64;
        for range in [
            0..len,
            0..1,
            len - 1..len,
            payload - 1..payload + 1,
            seg - 10..2 * seg + 10,
            3 * seg + 5..3 * seg + 105,
            len - 3 * payload..len,
            500..500,
        ] {
            let doc = open(&b, &uri, &Budget::unbounded()).await.unwrap();
            assert_eq!(doc.len, len);
            let before = b.gets();
            let got = doc.read(range.clone(), None).collect().await.unwrap();
            let want = &data[range.start as usize..range.end as usize];
            assert!(got == want, "{range:?}: {} bytes", got.len());
            // One block per chunk the range touches, no more.
            let chunks = if range.is_empty() {
                0
            } else {
                (range.end - 1) / payload - range.start / payload + 1
            };
            assert_eq!((b.gets() - before) as u64, chunks, "{range:?}");
        }
        // A range past the end reads nothing.
        let doc = open(&b, &uri, &Budget::unbounded()).await.unwrap();
        assert!(doc
            .read(len..len + 10, None)
            .collect()
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_streamed_read_rebuilds_what_the_code_allows_and_names_the_segment_it_cannot() {
        let (b, uri, data) = stored(5 << 20).await;
        let m = manifest(&b, &uri).await;
        // Segment 0 loses as many data blocks as it has parity; segment 1
        // loses one block more than it can.
        for k in &m.segments[0].keys[..m.segments[0].parity] {
            b.lost.lock().unwrap().insert(k.routing);
        }
        let doc = open(&b, &uri, &Budget::unbounded()).await.unwrap();
        assert!(doc.read_all(None).collect().await.unwrap() == data);
        let s1 = &m.segments[1];
        for k in &s1.keys[..s1.parity + 1] {
            b.lost.lock().unwrap().insert(k.routing);
        }
        let doc = open(&b, &uri, &Budget::unbounded()).await.unwrap();
        let mut reader = doc.read_all(None);
        let mut sent = 0;
        let err = loop {
            match reader.next().await.expect("an end or an error") {
                Ok(piece) => sent += piece.len(),
                Err(e) => break e,
            }
        };
        assert_eq!(
            err,
            ClientError::Document(DocError::Unrecoverable {
                segment: 1,
                have: s1.data - 1,
                need: s1.data,
                total: s1.data + s1.parity
            })
        );
        // Segment 0 went out whole before segment 1 failed.
        let seg0 = m.segments[0].data * keys::BLOCK_PAYLOAD;
        assert_eq!(sent, seg0);
        assert!(reader.next().await.is_none(), "nothing after an error");
    }

    #[tokio::test]
    async fn a_block_whose_search_failed_once_is_asked_again() {
        let (b, uri, data) = stored(5 << 20).await;
        let m = manifest(&b, &uri).await;
        // More of segment 0's blocks fail once than its parity could
        // stand in for, and one is lost for good.
        let s0 = &m.segments[0];
        for k in &s0.keys {
            b.flaky.lock().unwrap().insert(k.routing);
        }
        b.lost.lock().unwrap().insert(s0.keys[0].routing);
        let doc = open(&b, &uri, &Budget::unbounded()).await.unwrap();
        let before = b.gets();
        assert!(doc.read_all(None).collect().await.unwrap() == data);
        // Segment 0: no block more than twice; the others once each.
        let blocks: usize = m.segments.iter().skip(1).map(|s| s.data).sum();
        let gets = b.gets() - before;
        assert!(gets <= 2 * (s0.data + s0.parity) + blocks, "{gets} gets");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_nobody_reads_stops_asking_for_blocks() {
        let (b, uri, _) = stored(12 << 20).await;
        let doc = open(&b, &uri, &Budget::unbounded()).await.unwrap();
        let before = b.gets();
        let mut reader = doc.read_all(None);
        reader.next().await.unwrap().unwrap();
        // The paused clock moves only once every task waits: the reader
        // has done all it will do while its pieces are not taken.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let asked = b.gets() - before;
        assert!(
            asked <= SEGMENTS_AHEAD * keys::SEGMENT_DATA_BLOCKS,
            "{asked} blocks asked for while nobody read"
        );
        // And the rest comes when it is read.
        let mut rest = 0;
        while let Some(piece) = reader.next().await {
            rest += piece.unwrap().len();
        }
        assert!(rest > 10 << 20);
    }

    /// On a long path (every answer 200 ms away) a read asks for 4 blocks,
    /// and for its whole window once 20 ms pass with no answer, not a
    /// round trip later.
    #[tokio::test(start_paused = true)]
    async fn a_read_on_a_long_path_asks_for_its_whole_window_before_the_first_answer() {
        let (b, uri, data) = stored(6 << 20).await;
        *b.delay.lock().unwrap() = Duration::from_millis(200);
        let doc = open(&b, &uri, &Budget::unbounded()).await.unwrap();
        let before = b.gets();
        let mut reader = doc.read_all(None);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(b.gets() - before, 4, "a read starts with a few");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(b.gets() - before, WINDOW, "and widens with no answer yet");
        let mut got = Vec::new();
        while let Some(piece) = reader.next().await {
            got.extend_from_slice(&piece.unwrap());
        }
        assert!(got == data);
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
        let mem = Counted::default();
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
