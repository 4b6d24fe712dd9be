//! One end's flow control on a circuit, the same at the client and at the
//! exit: Tor's circuit-level windows and SENDMEs (tor-spec section 7.3),
//! with the window sized the way Tor's congestion control sizes it
//! (proposal 324, "TOR_VEGAS"): the DATA cells it may have unacknowledged
//! grow while the round trip from a cell to the SENDME it draws stays near
//! the least seen, and shrink when it grows (cells queueing somewhere on
//! the path). Also the messages the window holds back, in order, and the
//! DATA cells received since this end last sent a SENDME.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{CIRCUIT_WINDOW, MAX_CIRCUIT_WINDOW, SENDME_EVERY};
use crate::wire::{RelayMessage, StreamId};

/// Cells estimated to queue on the path below which the window grows by
/// a SENDME's worth per round trip, above which (`BETA`) it shrinks; past
/// `GAMMA` slow start ends. Measured at 30 ms a link, a path with nothing
/// but its own pacing on it shows some 30 cells queued at a window of
/// 400: thresholds nearer that stop a window growing long before the
/// path is full.
const ALPHA: f64 = 2.0 * SENDME_EVERY as f64;
const BETA: f64 = 5.0 * SENDME_EVERY as f64;
const GAMMA: f64 = 3.0 * SENDME_EVERY as f64;

/// A SENDME that acknowledges more than was ever sent, or names a stream:
/// the other end is trying to make this one send without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeyondWindow;

#[derive(Debug)]
pub struct Window {
    /// DATA cells that may be unacknowledged at once.
    cwnd: u32,
    /// DATA cells sent and not yet acknowledged.
    inflight: u32,
    /// DATA cells sent since the circuit opened.
    sent: u64,
    /// When each cell that draws a SENDME (every `SENDME_EVERY`-th) went
    /// out, oldest first.
    marks: VecDeque<Instant>,
    /// The least round trip seen: the path with nothing queued.
    min_rtt: Option<Duration>,
    /// The round trip averaged over about one window of SENDMEs (an
    /// exponential moving average, as Tor's Vegas keeps it): one late
    /// SENDME, a burst or a busy moment at some relay, is not taken for a
    /// queue on the path.
    ewma_rtt: Option<Duration>,
    slow_start: bool,
    /// The window filled since the last SENDME: the sender had more to
    /// send than it allowed. Only then does a short round trip say the
    /// path could carry more.
    limited: bool,
    /// Cells acknowledged since the window last changed in steady state.
    acked: u32,
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
            cwnd: CIRCUIT_WINDOW,
            inflight: 0,
            sent: 0,
            marks: VecDeque::new(),
            min_rtt: None,
            ewma_rtt: None,
            slow_start: true,
            limited: false,
            acked: 0,
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

    /// DATA cells that may be unacknowledged at once, now.
    #[cfg(test)]
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// Whether messages wait for a SENDME that has not come.
    pub fn stalled(&self) -> bool {
        self.inflight >= self.cwnd && !self.queued.is_empty()
    }

    /// What may be sent now, in order: each DATA spends one cell of the
    /// window; other messages pass freely but never overtake DATA held
    /// back before them.
    pub fn drain(&mut self, now: Instant) -> Vec<RelayMessage> {
        let mut out = Vec::new();
        while let Some(front) = self.queued.front() {
            if matches!(front, RelayMessage::Data { .. }) {
                if self.inflight >= self.cwnd {
                    break;
                }
                self.inflight += 1;
                self.sent += 1;
                if self.sent % u64::from(SENDME_EVERY) == 0 {
                    self.marks.push_back(now);
                }
            }
            if let Some(msg) = self.queued.pop_front() {
                self.count(&msg, false);
                out.push(msg);
            }
        }
        if self.inflight >= self.cwnd {
            self.limited = true;
        }
        out
    }

    /// The other end acknowledged `cells` DATA cells: the SENDME drawn by
    /// the oldest mark. Its round trip sizes the window.
    pub fn sendme(
        &mut self,
        stream: StreamId,
        cells: u16,
        now: Instant,
    ) -> Result<(), BeyondWindow> {
        let cells = u32::from(cells);
        if stream != StreamId::CIRCUIT || cells != u32::from(SENDME_EVERY) || cells > self.inflight
        {
            return Err(BeyondWindow);
        }
        let Some(mark) = self.marks.pop_front() else {
            return Err(BeyondWindow);
        };
        let full = std::mem::take(&mut self.limited);
        self.inflight -= cells;
        let rtt = now
            .saturating_duration_since(mark)
            .max(Duration::from_micros(1));
        let min = self.min_rtt.map_or(rtt, |m| m.min(rtt));
        self.min_rtt = Some(min);
        // N = the SENDMEs a window draws per round trip (at least 2).
        let n = f64::from((self.cwnd / u32::from(SENDME_EVERY)).max(2));
        let ewma = match self.ewma_rtt {
            None => rtt,
            Some(e) => {
                let k = 2.0 / (n + 1.0);
                Duration::from_secs_f64(k * rtt.as_secs_f64() + (1.0 - k) * e.as_secs_f64())
            }
        };
        self.ewma_rtt = Some(ewma);
        let queue = f64::from(self.cwnd) * (1.0 - min.as_secs_f64() / ewma.as_secs_f64());
        if self.slow_start {
            if queue > GAMMA {
                self.slow_start = false;
            } else if full {
                self.cwnd += cells;
            }
        } else {
            self.acked += cells;
            if self.acked >= self.cwnd {
                self.acked = 0;
                if queue > BETA {
                    self.cwnd = self.cwnd.saturating_sub(cells);
                } else if queue < ALPHA && full {
                    self.cwnd += cells;
                }
            }
        }
        self.cwnd = self.cwnd.clamp(CIRCUIT_WINDOW, MAX_CIRCUIT_WINDOW);
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
        let now = Instant::now();
        let mut w = Window::default();
        for _ in 0..CIRCUIT_WINDOW + 2 {
            w.push(data(1));
        }
        w.push(RelayMessage::End {
            stream: StreamId(1),
            status: crate::wire::EndStatus::OK,
        });
        assert_eq!(w.drain(now).len(), CIRCUIT_WINDOW as usize);
        assert!(w.drain(now).is_empty(), "the end waits behind held data");
        assert!(w.stalled());
        assert_eq!((w.queued_bytes(), w.queued_ends()), (16, 1));
        w.sendme(StreamId::CIRCUIT, SENDME_EVERY, now).unwrap();
        assert_eq!(w.drain(now).len(), 3);
        assert!(!w.stalled());
        assert_eq!((w.queued_bytes(), w.queued_ends()), (0, 0));
    }

    #[test]
    fn a_sendme_beyond_what_was_sent_is_refused() {
        let now = Instant::now();
        let mut w = Window::default();
        assert_eq!(
            w.sendme(StreamId::CIRCUIT, SENDME_EVERY, now),
            Err(BeyondWindow)
        );
        for _ in 0..SENDME_EVERY {
            w.push(data(1));
        }
        w.drain(now);
        assert_eq!(w.sendme(StreamId(3), SENDME_EVERY, now), Err(BeyondWindow));
        assert_eq!(w.sendme(StreamId::CIRCUIT, 1, now), Err(BeyondWindow));
        assert_eq!(w.sendme(StreamId::CIRCUIT, SENDME_EVERY, now), Ok(()));
        assert_eq!(
            w.sendme(StreamId::CIRCUIT, SENDME_EVERY, now),
            Err(BeyondWindow),
            "each SENDME answers cells sent"
        );
    }

    #[test]
    fn a_sendme_is_owed_every_so_many_cells() {
        let mut w = Window::default();
        let owed = (0..SENDME_EVERY * 3).filter(|_| w.received()).count();
        assert_eq!(owed, 3);
    }

    /// A sender that always has data, on a path whose round trip is
    /// `base` plus the time its queue takes to drain at `rate` cells a
    /// second: what the window settles at after `rounds` round trips.
    fn settle(base: Duration, rate: f64, rounds: usize) -> (Window, Vec<u32>) {
        let mut w = Window::default();
        let mut now = Instant::now();
        let mut seen = Vec::new();
        let bdp = (rate * base.as_secs_f64()) as u32;
        let refill = |w: &mut Window, now: Instant| {
            while w.queued.len() < 2 * MAX_CIRCUIT_WINDOW as usize {
                w.push(data(1));
            }
            w.drain(now);
        };
        refill(&mut w, now);
        for _ in 0..rounds {
            // What is in flight at the start of a round, beyond what the
            // path holds, queues: every SENDME of the round comes that
            // much later, and each lets the sender send again.
            let queued = w.inflight.saturating_sub(bdp);
            now += base + Duration::from_secs_f64(f64::from(queued) / rate);
            for _ in 0..w.marks.len() {
                w.sendme(StreamId::CIRCUIT, SENDME_EVERY, now).unwrap();
                refill(&mut w, now);
            }
            seen.push(w.cwnd());
        }
        (w, seen)
    }

    #[test]
    fn the_window_grows_to_fill_a_long_path_and_no_further() {
        // 180 ms and 2,000 cells a second (8 MB/s): 360 cells in flight
        // fill it.
        let (w, seen) = settle(Duration::from_millis(180), 2000.0, 60);
        assert!(seen[1] >= CIRCUIT_WINDOW * 2, "slow start: {seen:?}");
        assert!(
            (360..=360 + 4 * u32::from(SENDME_EVERY)).contains(&w.cwnd()),
            "settles at the path's size: {seen:?}"
        );
    }

    #[test]
    fn a_path_already_full_keeps_the_window_near_its_floor() {
        // 2 ms and 20,000 cells a second: 40 cells fill it, and the floor
        // of 128 already queues, so the least round trip seen includes a
        // queue: the window grows until the queue it adds shows.
        let (w, seen) = settle(Duration::from_millis(2), 20_000.0, 60);
        assert!(
            w.cwnd() <= CIRCUIT_WINDOW + BETA as u32 + u32::from(SENDME_EVERY),
            "{seen:?}"
        );
    }

    #[test]
    fn the_window_never_passes_its_ceiling() {
        let (w, _) = settle(Duration::from_millis(500), 100_000.0, 60);
        assert_eq!(w.cwnd(), MAX_CIRCUIT_WINDOW);
    }
}
