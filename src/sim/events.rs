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

pub struct Scheduled {
    pub at: Duration,
    pub seq: u64,
    pub node: usize,
    pub event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed: the heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The agenda.
#[derive(Default)]
pub struct Agenda {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Agenda {
    pub fn push(&mut self, at: Duration, node: usize, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            node,
            event,
        });
    }

    pub fn pop(&mut self) -> Option<Scheduled> {
        self.heap.pop()
    }

    pub fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|s| s.at)
    }
}
