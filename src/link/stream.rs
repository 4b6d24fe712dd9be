//! A link's one stream: the writer that drains the send queues (control
//! first, then cells and bulk fairly) and the reader that turns bytes into
//! frames, holding at most one frame and one read.

use std::time::Duration;

use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use super::{close, Error, Event};
use crate::wire::{self, decode_frame, encode_frame, Frame, NodeId, MAX_FRAME_LEN};

pub(super) async fn write_loop(
    mut send: SendStream,
    mut control: mpsc::Receiver<Frame>,
    mut cells: mpsc::Receiver<Frame>,
    mut bulk: mpsc::Receiver<Frame>,
    conn: quinn::Connection,
) {
    loop {
        // Control first; then cells and bulk frames, taken fairly, so that
        // neither circuits nor replication can starve the other.
        let frame = tokio::select! {
            biased;
            Some(f) = control.recv() => f,
            f = async {
                tokio::select! {
                    Some(f) = cells.recv() => Some(f),
                    Some(f) = bulk.recv() => Some(f),
                    else => None,
                }
            } => match f {
                Some(f) => f,
                None => break,
            },
            else => break,
        };
        let bytes = match encode_frame(&frame) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("link: dropping a frame that does not encode: {e}");
                continue;
            }
        };
        if send.write_all(&bytes).await.is_err() {
            break;
        }
    }
    // The node dropped the handle (or the stream failed): end the stream,
    // wait (briefly) until the peer has read it to the end, then close.
    // Closing at once would discard frames still in flight.
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    }
    conn.close(close::NORMAL, b"");
}

pub(super) async fn read_loop(
    mut recv: RecvStream,
    conn: quinn::Connection,
    serial: u64,
    peer: NodeId,
    events: mpsc::Sender<Event>,
) {
    let mut reader = FrameReader::default();
    let misbehaved = loop {
        match reader.next_sized(&mut recv).await {
            Ok(Some((frame, len))) => {
                if events
                    .send(Event::Frame {
                        serial,
                        peer,
                        frame,
                        len,
                    })
                    .await
                    .is_err()
                {
                    break None;
                }
            }
            Ok(None) => break None,
            Err(Error::Protocol(e)) => {
                conn.close(close::PROTOCOL, b"malformed frame");
                break Some(Error::Protocol(e));
            }
            Err(_) => break None,
        }
    };
    let idle = matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == close::IDLE
    );
    if misbehaved.is_none() {
        conn.close(close::NORMAL, b"");
    }
    let _ = events
        .send(Event::Closed {
            serial,
            peer,
            misbehaved,
            idle,
        })
        .await;
}

/// Reassembles frames from a stream, holding at most one frame's bytes
/// plus one read.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

const READ_CHUNK: usize = 16 * 1024;

impl FrameReader {
    /// The next frame; `Ok(None)` when the stream ended cleanly between
    /// frames.
    pub async fn next(&mut self, recv: &mut RecvStream) -> Result<Option<Frame>, Error> {
        Ok(self.next_sized(recv).await?.map(|(f, _)| f))
    }

    /// [`FrameReader::next`], with the frame's length on the wire.
    pub async fn next_sized(
        &mut self,
        recv: &mut RecvStream,
    ) -> Result<Option<(Frame, usize)>, Error> {
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some((frame, used)));
            }
            debug_assert!(self.buf.len() <= MAX_FRAME_LEN);
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK, 0);
            match recv.read(&mut self.buf[start..]).await {
                Ok(Some(n)) => self.buf.truncate(start + n),
                Ok(None) => {
                    self.buf.truncate(start);
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(Error::Protocol(wire::Error::Truncated {
                            what: "frame at end of stream",
                            needed: 1,
                        }))
                    };
                }
                Err(_) => return Err(Error::Closed),
            }
        }
    }
}
