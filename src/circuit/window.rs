//! One end's flow control on a circuit, the same at the client and at the
//! exit (Tor's circuit-level windows, tor-spec section 7.3): the DATA cells
//! it may still send before the other end's SENDME, the messages the window
//! holds back, in order, and the DATA cells received since it last sent a
//! SENDME.

use std::collections::VecDeque;

use super::{CIRCUIT_WINDOW, SENDME_EVERY};
use crate::wire::{RelayMessage, StreamId};

/// A SENDME that acknowledges more than was ever sent, or names a stream:
/// the other end is trying to make this one send without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeyondWindow;

#[derive(Debug)]
pub struct Window {
    /// DATA cells this end may still send.
    package: u32,
    queued: VecDeque<RelayMessage>,
    /// Body bytes of the DATA messages held back.
    queued_bytes: usize,
    /// END messages held back: streams answered but not yet told.
    queued_ends: usize,
    /// DATA cells received since this end's last SENDME.
    received: u16,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            package: CIRCUIT_WINDOW,
            queued: VecDeque::new(),
            queued_bytes: 0,
            queued_ends: 0,
            received: 0,
        }
    }
}

impl Window {
    /// Queue a message to send behind the window.
    pub fn push(&mut self, msg: RelayMessage) {
        self.count(&msg, true);
        self.queued.push_back(msg);
    }

    fn count(&mut self, msg: &RelayMessage, add: bool) {
        let (bytes, ends) = match msg {
            RelayMessage::Data { data, .. } => (data.len(), 0),
            RelayMessage::End { .. } => (0, 1),
            _ => (0, 0),
        };
        if add {
            self.queued_bytes += bytes;
            self.queued_ends += ends;
        } else {
            self.queued_bytes -= bytes;
            self.queued_ends -= ends;
        }
    }

    /// Body bytes of the DATA held back.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Streams whose END is held back behind their data: answered, but
    /// the other end has not read the answer yet.
    pub fn queued_ends(&self) -> usize {
        self.queued_ends
    }

    /// Whether messages wait for a SENDME that has not come.
    pub fn stalled(&self) -> bool {
        self.package == 0 && !self.queued.is_empty()
    }

    /// What may be sent now, in order: each DATA spends one cell of the
    /// window; other messages pass freely but never overtake DATA held
    /// back before them.
    pub fn drain(&mut self) -> Vec<RelayMessage> {
        let mut out = Vec::new();
        while let Some(front) = self.queued.front() {
            if matches!(front, RelayMessage::Data { .. }) {
                if self.package == 0 {
                    break;
                }
                self.package -= 1;
            }
            if let Some(msg) = self.queued.pop_front() {
                self.count(&msg, false);
                out.push(msg);
            }
        }
        out
    }

    /// The other end acknowledged `cells` DATA cells.
    pub fn sendme(&mut self, stream: StreamId, cells: u16) -> Result<(), BeyondWindow> {
        let package = self.package.saturating_add(u32::from(cells));
        if stream != StreamId::CIRCUIT || package > CIRCUIT_WINDOW {
            return Err(BeyondWindow);
        }
        self.package = package;
        Ok(())
    }

    /// A DATA cell arrived; true when this end owes a SENDME for
    /// [`SENDME_EVERY`] of them.
    pub fn received(&mut self) -> bool {
        self.received += 1;
        let due = self.received >= SENDME_EVERY;
        if due {
            self.received -= SENDME_EVERY;
        }
        due
    }

    /// Drop the queued messages of `stream` (it was given up).
    pub fn forget(&mut self, stream: StreamId) {
        let (keep, gone): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queued)
            .into_iter()
            .partition(|m| m.stream() != stream);
        for m in &gone {
            self.count(m, false);
        }
        self.queued = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(stream: u16) -> RelayMessage {
        RelayMessage::Data {
            stream: StreamId(stream),
            data: vec![0; 8],
        }
    }

    #[test]
    fn data_waits_for_the_window_and_nothing_overtakes_it() {
        let mut w = Window::default();
        for _ in 0..CIRCUIT_WINDOW + 2 {
            w.push(data(1));
        }
        w.push(RelayMessage::End {
            stream: StreamId(1),
            status: crate::wire::EndStatus::OK,
        });
        assert_eq!(w.drain().len(), CIRCUIT_WINDOW as usize);
        assert!(w.drain().is_empty(), "the end waits behind held data");
        assert!(w.stalled());
        assert_eq!((w.queued_bytes(), w.queued_ends()), (16, 1));
        w.sendme(StreamId::CIRCUIT, SENDME_EVERY).unwrap();
        assert_eq!(w.drain().len(), 3);
        assert!(!w.stalled());
        assert_eq!((w.queued_bytes(), w.queued_ends()), (0, 0));
    }

    #[test]
    fn a_sendme_beyond_what_was_sent_is_refused() {
        let mut w = Window::default();
        assert_eq!(w.sendme(StreamId::CIRCUIT, 1), Err(BeyondWindow));
        w.push(data(1));
        w.drain();
        assert_eq!(w.sendme(StreamId(3), 1), Err(BeyondWindow));
        assert_eq!(w.sendme(StreamId::CIRCUIT, 1), Ok(()));
    }

    #[test]
    fn a_sendme_is_owed_every_so_many_cells() {
        let mut w = Window::default();
        let owed = (0..SENDME_EVERY * 3).filter(|_| w.received()).count();
        assert_eq!(owed, 3);
    }
}
