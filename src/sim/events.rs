//! The simulator's agenda: events in virtual-time order, ties broken by
//! the order they were scheduled, so that a run is reproducible.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::node::core::{DialId, LinkId, OpId, StoreResult};
use crate::wire::{Frame, NodeId};

/// Something that happens to one node at one virtual time.
#[derive(Debug)]
pub enum Event {
    /// A frame arrives on one of `node`'s links.
    Deliver {
        link: LinkId,
        frame: Frame,
    },
    /// A link of `node`'s comes up.
    LinkUp {
        link: LinkId,
        peer: NodeId,
        remote: SocketAddr,
        inbound: bool,
        dial: Option<DialId>,
    },
    DialFailed {
        dial: DialId,
        wrong_peer: bool,
    },
    LinkDown {
        link: LinkId,
        /// Closed by the other end for being unused.
        idle: bool,
    },
    Store {
        op: OpId,
        result: StoreResult,
    },
    /// The node's core asked to be woken now; stale unless it matches the
    /// wake-up the node has scheduled.
    Timer,
}

impl Event {
    /// A short tag for the trace.
    pub fn tag(&self) -> u8 {
        match self {
            Event::Deliver { .. } => 1,
            Event::LinkUp { .. } => 2,
            Event::DialFailed { .. } => 3,
            Event::LinkDown { .. } => 4,
            Event::Store { .. } => 5,
            Event::Timer => 6,
        }
    }
}

/// An event taken off the agenda.
pub struct Scheduled {
    pub at: Duration,
    pub node: usize,
    pub event: Event,
}

/// What the heap orders: small, so that sifting moves a few words and not
/// the frame an event carries (which waits in the agenda's slots).
#[derive(PartialEq, Eq)]
struct Key {
    at: Duration,
    seq: u64,
    slot: u32,
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Reversed: the heap pops the earliest first. `seq` is unique, so the
    /// slot never decides.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The agenda.
#[derive(Default)]
pub struct Agenda {
    heap: BinaryHeap<Key>,
    slots: Vec<Option<(usize, Event)>>,
    free: Vec<u32>,
    seq: u64,
}

impl Agenda {
    pub fn push(&mut self, at: Duration, node: usize, event: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(k) => {
                self.slots[k as usize] = Some((node, event));
                k
            }
            None => {
                self.slots.push(Some((node, event)));
                // More than 4 billion events waiting at once is more than
                // any machine holds in memory.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.heap.push(Key {
            at,
            seq: self.seq,
            slot,
        });
    }

    pub fn pop(&mut self) -> Option<Scheduled> {
        let key = self.heap.pop()?;
        let (node, event) = self.slots.get_mut(key.slot as usize)?.take()?;
        self.free.push(key.slot);
        Some(Scheduled {
            at: key.at,
            node,
            event,
        })
    }

    pub fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|k| k.at)
    }
}
