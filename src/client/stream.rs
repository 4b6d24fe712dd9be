//! Reading a document as a stream: its bytes in order as their blocks
//! arrive, or only a byte range of it, with memory bounded by a window of
//! segments whatever the document's size.
//!
//! A document's data blocks are its plaintext (the erasure code is
//! systematic), so a reader sends each chunk as soon as it and every chunk
//! before it are in; only a segment that loses a block waits for parity
//! and a rebuild. A segment's chunks stay in memory until the segment is
//! sent, since a rebuild needs any `k` of its blocks, sent ones included.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{get_chk, report, Blocks, ClientError, Held, Progress, ProgressTx, WINDOW};
use crate::keys::{DocError, Manifest, BLOCK_PAYLOAD};
use crate::node::RequestError;

/// Segments a reader works on at once: the one it sends from, and the
/// next two whose blocks it already asks for. With one only, a read
/// could not keep much more than a segment's 64 blocks in flight,
/// whatever its window: the segment being sent waits for its last block.
pub const SEGMENTS_AHEAD: usize = 3;
/// Chunks waiting for whoever reads the stream; past this the reader
/// stops asking for blocks until they are taken.
const QUEUED_CHUNKS: usize = 16;
/// Times a block is asked for before its segment does without it. A
/// search that fails while the ring repairs itself (a holder just died,
/// its neighbours have not yet noticed) often succeeds when asked again
/// by a fresh route a moment later; a block that is gone fails twice as
/// fast as it failed once.
const BLOCK_TRIES: u8 = 2;
/// Block requests a read starts with, so that the first chunk, which
/// holds up the answer's first byte, shares the circuit with three others
/// instead of dozens: on loopback that halves the first byte of a large
/// document.
const INITIAL_WINDOW: usize = 4;
/// A read that has no answer this long after it started takes its whole
/// window without waiting for one (on loopback the first answers come
/// within a few milliseconds).
const WIDEN_AFTER: Duration = Duration::from_millis(20);

/// Bytes a reader of a document holds at most: its segments' blocks,
/// the blocks on their way, the chunks queued for whoever reads the
/// stream; or, for a small document, the document and its rebuild.
pub fn window_bytes(m: &Manifest) -> u64 {
    let widest = m.segments.iter().map(|s| s.data + s.parity).max();
    let blocks = widest.unwrap_or(0) * SEGMENTS_AHEAD + QUEUED_CHUNKS + WINDOW;
    (blocks as u64 * BLOCK_PAYLOAD as u64).min(m.total_len.saturating_mul(super::HOLD_PER_BYTE))
}

/// A document's bytes, in order, as they come.
pub struct Reader {
    rx: mpsc::Receiver<Result<Bytes, ClientError>>,
}

impl Reader {
    /// The next piece; `None` at the end. After an error, nothing more.
    pub async fn next(&mut self) -> Option<Result<Bytes, ClientError>> {
        self.rx.recv().await
    }

    /// For a body or stream built on it.
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, ClientError>>> {
        self.rx.poll_recv(cx)
    }

    /// Everything that is left, in memory.
    pub async fn collect(mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while let Some(piece) = self.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// A reader of bytes already at hand.
    pub(super) fn ready(data: Bytes) -> Reader {
        let (tx, rx) = mpsc::channel(1);
        if !data.is_empty() {
            let _ = tx.try_send(Ok(data));
        }
        Reader { rx }
    }

    /// Read `range` of the document `m` describes (its keys filled in),
    /// in a task of its own that ends when the range is sent, on the
    /// first failure, or when the reader is dropped. `held` goes with the
    /// task.
    pub(super) fn spawn<B: Blocks>(
        b: B,
        m: Arc<Manifest>,
        range: Range<u64>,
        progress: Option<ProgressTx>,
        held: Held,
    ) -> Reader {
        let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
        tokio::spawn(async move {
            let _held = held;
            let mut run = Run {
                b,
                m,
                range,
                tx,
                progress,
            };
            if let Err(e) = run.go().await {
                let _ = run.tx.send(Err(e)).await;
            }
        });
        Reader { rx }
    }
}

/// One segment being fetched.
struct Seg {
    index: usize,
    /// The segment's first chunk, counted over the document.
    base: u64,
    /// The data chunks to send, as indices within the segment.
    send: Range<usize>,
    /// The next of `send` to go out.
    next: usize,
    /// Blocks in hand, data first, then parity.
    found: Vec<Option<Bytes>>,
    /// Blocks not yet asked for: the data chunks to send, then parity,
    /// then the segment's other data chunks (for a rebuild).
    untried: VecDeque<usize>,
    in_flight: usize,
    /// Times each block was asked for.
    tries: Vec<u8>,
    /// A block failed: the segment needs any `data` of its blocks.
    degraded: bool,
}

impl Seg {
    fn new(m: &Manifest, index: usize, base: u64, send: Range<usize>) -> Seg {
        let s = &m.segments[index];
        let untried = send
            .clone()
            .chain(s.data..s.data + s.parity)
            .chain((0..s.data).filter(|i| !send.contains(i)))
            .collect();
        Seg {
            index,
            base,
            next: send.start,
            send,
            found: vec![None; s.data + s.parity],
            untried,
            in_flight: 0,
            tries: vec![0; s.data + s.parity],
            degraded: false,
        }
    }

    fn have(&self) -> usize {
        self.found.iter().filter(|f| f.is_some()).count()
    }

    /// Blocks this segment still needs in hand or on the way.
    fn wanted(&self, data: usize) -> usize {
        if self.degraded {
            data
        } else {
            self.send.len()
        }
    }

    /// The next block to ask for, if it should be asked for now.
    fn ask(&mut self, data: usize) -> Option<usize> {
        if self.have() + self.in_flight >= self.wanted(data) {
            return None;
        }
        let i = self.untried.pop_front()?;
        self.in_flight += 1;
        self.tries[i] = self.tries[i].saturating_add(1);
        Some(i)
    }
}

struct Run<B> {
    b: B,
    m: Arc<Manifest>,
    range: Range<u64>,
    tx: mpsc::Sender<Result<Bytes, ClientError>>,
    progress: Option<ProgressTx>,
}

type Answer = (usize, usize, Result<Bytes, ClientError>);

impl<B: Blocks> Run<B> {
    async fn go(&mut self) -> Result<(), ClientError> {
        let payload = BLOCK_PAYLOAD as u64;
        let range = self.range.start.min(self.m.total_len)..self.range.end.min(self.m.total_len);
        if range.is_empty() {
            return Ok(());
        }
        // Chunks first..=last hold the range; the segments they are in.
        let (first, last) = (range.start / payload, (range.end - 1) / payload);
        let mut bases = Vec::with_capacity(self.m.segments.len());
        let mut chunks = 0u64;
        for s in &self.m.segments {
            bases.push(chunks);
            chunks += s.data as u64;
        }
        if last >= chunks {
            return Err(DocError::BadRoot.into());
        }
        let seg_of = |c: u64| bases.partition_point(|&b| b <= c) - 1;
        let mut next_seg = seg_of(first);
        let last_seg = seg_of(last);
        let total = last - first + 1;
        report(self.progress.as_ref(), |p| *p = Progress { done: 0, total });

        let mut active: VecDeque<Seg> = VecDeque::new();
        let mut set: JoinSet<Answer> = JoinSet::new();
        let mut window = INITIAL_WINDOW.min(WINDOW);
        let widen_at = tokio::time::Instant::now() + WIDEN_AFTER;
        let mut answered = 0;
        loop {
            while active.len() < SEGMENTS_AHEAD && next_seg <= last_seg {
                let (base, data) = (bases[next_seg], self.m.segments[next_seg].data);
                let lo = first.saturating_sub(base).min(data as u64) as usize;
                let hi = (last + 1 - base).min(data as u64) as usize;
                active.push_back(Seg::new(&self.m, next_seg, base, lo..hi));
                next_seg += 1;
            }
            let Some(seg) = active.front_mut() else {
                return Ok(());
            };
            // Send what is ready, in order; a finished segment makes room
            // for the next.
            if !self.send_ready(seg, &range).await? {
                // Whoever read the stream is gone.
                return Ok(());
            }
            // Once the first chunk is out (or the first blocks asked are
            // all answered, however), the whole window at once: the
            // circuit's own window paces what comes back, and on a long
            // path every round trip spent growing this one is a round
            // trip not full. Not before: blocks asked for behind the first
            // would share the circuit with it and delay the first byte.
            if seg.next > seg.send.start || answered >= INITIAL_WINDOW {
                window = WINDOW;
            }
            if seg.next == seg.send.end {
                active.pop_front();
                continue;
            }
            // Ask for blocks, earliest segment first.
            'ask: while set.len() < window {
                for seg in active.iter_mut() {
                    let data = self.m.segments[seg.index].data;
                    if let Some(i) = seg.ask(data) {
                        let key = self.m.segments[seg.index].keys[i];
                        let (b, si) = (self.b.clone(), seg.index);
                        set.spawn(async move { (si, i, get_chk(&b, key).await.map(Bytes::from)) });
                        continue 'ask;
                    }
                }
                break;
            }
            for seg in &active {
                let s = &self.m.segments[seg.index];
                let stuck = seg.in_flight == 0 && seg.untried.is_empty();
                if seg.degraded && stuck && seg.have() < s.data {
                    return Err(DocError::Unrecoverable {
                        segment: seg.index,
                        have: seg.have(),
                        need: s.data,
                        total: s.data + s.parity,
                    }
                    .into());
                }
            }
            // A long path: no answer yet after what a loopback network
            // answers in, so the first block's answer is a round trip
            // away whatever else is asked now; asking the rest now rather
            // than after that round trip costs its first byte little.
            let next = if window < WINDOW {
                match tokio::time::timeout_at(widen_at, set.join_next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        window = WINDOW;
                        continue;
                    }
                }
            } else {
                set.join_next().await
            };
            let Some(answer) = next else {
                // Nothing in flight and nothing to send: a segment that
                // needs nothing more must have been sent.
                return Err(DocError::Erasure("a reader stalled".into()).into());
            };
            let (si, i, result) = answer.map_err(|_| ClientError::from(RequestError::Stopped))?;
            let Some(seg) = active.iter_mut().find(|s| s.index == si) else {
                continue;
            };
            seg.in_flight -= 1;
            answered += 1;
            match result {
                Ok(plain) => {
                    seg.found[i] = Some(plain);
                    report(self.progress.as_ref(), |p| {
                        p.done = (p.done + 1).min(p.total)
                    });
                }
                Err(ClientError::Request(RequestError::Stopped)) => {
                    return Err(RequestError::Stopped.into())
                }
                Err(e) => {
                    tracing::debug!(segment = si, block = i, error = %e, "block not fetched");
                    seg.degraded = true;
                    // Asked again after every block not yet tried.
                    if seg.tries[i] < BLOCK_TRIES {
                        seg.untried.push_back(i);
                    }
                }
            }
            let s = &self.m.segments[si];
            let missing = (seg.next..seg.send.end).any(|j| seg.found[j].is_none());
            if seg.degraded && missing && seg.have() >= s.data {
                self.rebuild(seg)?;
            }
        }
    }

    /// Rebuild a degraded segment's data chunks from any `data` of its
    /// blocks.
    fn rebuild(&self, seg: &mut Seg) -> Result<(), ClientError> {
        let s = &self.m.segments[seg.index];
        let found: Vec<Option<Vec<u8>>> = seg
            .found
            .iter()
            .map(|f| f.as_ref().map(|b| b.to_vec()))
            .collect();
        for (j, chunk) in s.rebuild(seg.index, &found)?.into_iter().enumerate() {
            if seg.found[j].is_none() {
                seg.found[j] = Some(Bytes::from(chunk));
            }
        }
        Ok(())
    }

    /// Send the segment's chunks that are in, in order, cut to the range.
    /// False if nobody reads any more.
    async fn send_ready(&mut self, seg: &mut Seg, range: &Range<u64>) -> Result<bool, ClientError> {
        let payload = BLOCK_PAYLOAD as u64;
        while seg.next < seg.send.end {
            let Some(chunk) = &seg.found[seg.next] else {
                return Ok(true);
            };
            let at = (seg.base + seg.next as u64) * payload;
            let from = range.start.max(at) - at;
            let to = range.end.min(at + payload) - at;
            if to > chunk.len() as u64 {
                return Err(DocError::ShortBlock.into());
            }
            let piece = chunk.slice(from as usize..to as usize);
            seg.next += 1;
            if self.tx.send(Ok(piece)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
