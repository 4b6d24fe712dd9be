//! The Chord ring as a sans-IO state machine (Stoica et al., "Chord: A
//! Scalable Peer-to-peer Lookup Service", SIGCOMM 2001, sections 4.3-4.4 and
//! 5.2 for successor lists).
//!
//! Messages and the current time come in ([`Ring::handle_message`],
//! [`Ring::handle_timeout`], [`Ring::handle_failure`]); messages to send,
//! the next timer and events come out ([`Ring::poll_transmit`],
//! [`Ring::poll_timeout`], [`Ring::poll_event`]). Nothing here touches a
//! socket or reads a clock, so the same code runs in a node over QUIC and in
//! a simulator with thousands of nodes in one process.
//!
//! Lookups are iterative: the node that wants a successor asks one node at
//! a time and keeps the state itself, which lets it route around a node that
//! does not answer. Descriptors handed to the ring must already be verified.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::crypto::node_id;
use crate::token::Token;
use crate::wire::{NodeDescriptor, NodeId, PeerMessage, MAX_SUCCESSORS};

mod holders;
mod id;
mod lookup;
mod messages;
mod stabilize;
mod walk;

pub use id::{add_pow2, distance, in_half_open, in_open};
pub use walk::{gap, position, Found, WALK_MAX_STEPS};

/// [`Ring::recheck`] runs every this many stabilization periods, backed
/// off like finger repair while the ring is quiet (to 4 times
/// [`Config::quiet_max`]).
const RECHECK_EVERY: u32 = 20;

/// Timings and sizes; the defaults suit a LAN or a loopback test network.
#[derive(Debug, Clone)]
pub struct Config {
    /// Length of the successor list (at most [`MAX_SUCCESSORS`]).
    pub successors: usize,
    pub stabilize_every: Duration,
    pub fix_fingers_every: Duration,
    pub check_predecessor_every: Duration,
    /// The longest stabilization and the predecessor check back off to
    /// while nothing changes (each period doubles per quiet round, and
    /// drops back at once when a neighbour changes or stops answering).
    /// Finger repair backs off to 32 times this (a finger looked up again
    /// every 8 minutes, all of them within the hour): fingers make lookups
    /// short, not right, and a dead one is routed around when met.
    pub quiet_max: Duration,
    /// How long a ring query may go unanswered before its target is taken
    /// for dead.
    pub query_timeout: Duration,
    /// Steps an iterative lookup may take before it gives up.
    pub lookup_max_steps: usize,
    /// How long a node taken for dead is kept out of the tables, so that
    /// stale successor lists do not bring it straight back.
    pub dead_for: Duration,
    /// Queries in a row a node may leave unanswered before it is taken for
    /// dead. A link that closes says so at once; a timeout alone may be a
    /// lost or late answer from a node that is alive.
    pub strikes: u32,
    /// Whether this node takes a place on the ring. A node that does not
    /// (a relay still learning its address) keeps successors and fingers
    /// to run lookups but never notifies anyone, so no one routes through
    /// it or stores on it.
    pub member: bool,
    /// A client-only node: it keeps no successors or fingers of its own
    /// (no lookups, no stabilizing, nothing that would show it to ring
    /// nodes again and again). It measures the ring from its bootstrap
    /// node's table and walks from the nodes that tables named; its
    /// lookups are walks.
    pub client: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            successors: 8,
            stabilize_every: Duration::from_millis(500),
            fix_fingers_every: Duration::from_millis(250),
            check_predecessor_every: Duration::from_secs(1),
            quiet_max: Duration::from_secs(15),
            query_timeout: Duration::from_secs(2),
            lookup_max_steps: 64,
            dead_for: Duration::from_secs(20),
            strikes: 3,
            member: true,
            client: false,
        }
    }
}

/// A node known to the ring, with its verified descriptor. Cloning one is
/// cheap: the descriptor is shared (a node's fingers hold the same few
/// peers many times).
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: NodeId,
    pub desc: std::sync::Arc<NodeDescriptor>,
}

impl Peer {
    pub fn new(desc: NodeDescriptor) -> Peer {
        Peer {
            id: node_id(&desc.identity),
            desc: std::sync::Arc::new(desc),
        }
    }
}

impl PartialEq for Peer {
    fn eq(&self, other: &Peer) -> bool {
        self.id == other.id
    }
}

/// Where a message goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// A known node: the node dials its descriptor's addresses if no link
    /// to it is open.
    Peer(Peer),
    /// The node at the other end of an open link: answers go back the way
    /// the request came.
    Link(NodeId),
    /// A bootstrap address, and the node id expected there if known;
    /// without one, the link learns the id behind the address.
    Addr(SocketAddr, Option<NodeId>),
}

#[derive(Debug, Clone)]
pub struct Transmit {
    pub to: Dest,
    pub msg: PeerMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no node answered the lookup")]
    NoRoute,
    #[error("the lookup took too many steps")]
    TooManySteps,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// The predecessor or the successor list changed: placement of blocks
    /// may have to follow.
    NeighboursChanged,
    /// This node has found its place on the ring.
    Joined,
    /// A lookup started with [`Ring::lookup`] finished.
    LookupDone {
        token: Token,
        result: Result<Box<Peer>, LookupError>,
        /// Nodes asked (Chord's path length), and how many of them let
        /// their query time out.
        steps: u32,
        timeouts: u32,
    },
    /// A walk started with [`Ring::walk`] finished.
    WalkDone {
        token: Token,
        result: Result<Box<Found>, LookupError>,
        /// Tables asked for, and how many went unanswered.
        steps: u32,
        timeouts: u32,
    },
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Join,
    Finger(usize),
    User(Token),
    /// This node's own successor, looked up from outside its
    /// neighbourhood (see [`Ring::recheck`]).
    Recheck,
}

#[derive(Debug)]
struct Lookup {
    target: [u8; 32],
    purpose: Purpose,
    steps: usize,
    timeouts: u32,
    tried: HashSet<NodeId>,
}

#[derive(Debug)]
enum Pending {
    Lookup(Lookup),
    /// A lookup's answer is being checked: is the node named alive? If
    /// not, `fallback` says where the next candidate comes from.
    Confirm {
        lookup: Lookup,
        candidate: Peer,
        fallback: Fallback,
    },
    /// The node named was not alive: the node that named it is asked for
    /// its successor list, which holds the next candidates.
    Alternatives {
        lookup: Lookup,
        answerer: NodeId,
        skip: NodeId,
    },
    Stabilize,
    PingPredecessor,
    /// A walk waits for a node's table.
    Walk(walk::Walk),
    /// A table to measure the ring's density before walking; `first`: the
    /// bootstrap node's.
    Seed {
        first: bool,
    },
}

/// Where a lookup looks when the successor it found does not answer.
#[derive(Debug)]
enum Fallback {
    /// Ask the node that named it for its successor list.
    Ask(NodeId),
    /// The rest of a successor list, nearest first, after `from` (the node
    /// whose list it is).
    List { from: NodeId, rest: Vec<Peer> },
}

#[derive(Debug)]
struct Query {
    /// `None` for a bootstrap address: any node may answer.
    to: Option<NodeId>,
    deadline: Instant,
    what: Pending,
}

pub struct Ring {
    me: Peer,
    cfg: Config,
    predecessor: Option<Peer>,
    /// Nearest first. Empty: this node is alone and is its own successor.
    successors: Vec<Peer>,
    fingers: Vec<Option<Peer>>,
    /// The fingers with each run of one node kept once, in finger order:
    /// what lookups scan (a few dozen nodes, not 256 entries). Rebuilt
    /// whenever a finger changes.
    finger_runs: Vec<Peer>,
    next_finger: usize,
    /// In a BTreeMap so that expiries are handled in a reproducible order.
    queries: BTreeMap<u64, Query>,
    dead: HashMap<NodeId, Instant>,
    /// Unanswered queries in a row, per node, and when the last was.
    strikes: HashMap<NodeId, (u32, Instant)>,
    bootstrap: Vec<(SocketAddr, Option<NodeId>)>,
    joined: bool,
    next_stabilize: Instant,
    next_fix: Instant,
    next_check: Instant,
    next_recheck: Instant,
    /// Quiet stabilize rounds in a row: maintenance periods are the
    /// configured ones times 2^quiet, up to [`Config::quiet_max`].
    quiet: u32,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: StdRng,
    /// Density estimates from the tables walks accepted, newest last.
    densities: VecDeque<f64>,
    /// Tables asked for to measure the ring, not yet answered.
    seeding: usize,
    /// When the ring was last measured.
    seeded_at: Option<Instant>,
    /// Nodes whose tables walks accepted, newest last.
    checked: VecDeque<Peer>,
    tables_refused: u64,
    /// Successor lists refused in stabilization as implausible.
    successor_lists_refused: u64,
    /// Nearer successors found by [`Ring::recheck`].
    successors_mended: u64,
}

impl Ring {
    /// A ring of one. `seed` seeds the generator of query ids: from the
    /// OS in a node, fixed in a simulation.
    pub fn new(me: NodeDescriptor, cfg: Config, now: Instant, seed: [u8; 32]) -> Ring {
        let cfg = Config {
            successors: cfg.successors.clamp(1, MAX_SUCCESSORS),
            ..cfg
        };
        Ring {
            me: Peer::new(me),
            predecessor: None,
            successors: Vec::new(),
            fingers: vec![None; 256],
            finger_runs: Vec::new(),
            next_finger: 0,
            queries: BTreeMap::new(),
            dead: HashMap::new(),
            strikes: HashMap::new(),
            bootstrap: Vec::new(),
            joined: true,
            next_stabilize: now,
            next_fix: now + cfg.fix_fingers_every,
            next_check: now + cfg.check_predecessor_every,
            next_recheck: now + cfg.stabilize_every * RECHECK_EVERY,
            quiet: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            rng: StdRng::from_seed(seed),
            densities: VecDeque::new(),
            seeding: 0,
            seeded_at: None,
            checked: VecDeque::new(),
            tables_refused: 0,
            successor_lists_refused: 0,
            successors_mended: 0,
            cfg,
        }
    }

    pub fn id(&self) -> NodeId {
        self.me.id
    }

    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// Put the ring in a settled state from outside: the predecessor,
    /// successor list and fingers that stabilization converges to. A
    /// simulation of tens of thousands of nodes starts from here, as
    /// Chord's own simulations of a stable network did; everything after
    /// (lookups, stabilization, failures) runs the ordinary code.
    pub fn settle(
        &mut self,
        predecessor: Option<Peer>,
        successors: Vec<Peer>,
        fingers: Vec<Option<Peer>>,
    ) {
        self.predecessor = predecessor;
        self.successors = successors;
        self.successors.truncate(self.cfg.successors);
        self.fingers = fingers;
        self.fingers.resize(256, None);
        self.reindex_fingers();
        self.bootstrap.clear();
        self.joined = true;
    }

    /// The successor list's length this ring keeps.
    pub fn successor_len(&self) -> usize {
        self.cfg.successors
    }

    /// Replace this node's descriptor (new addresses, refreshed time).
    pub fn set_descriptor(&mut self, desc: NodeDescriptor) {
        self.me.desc = std::sync::Arc::new(desc);
    }

    /// `peer` showed a newer descriptor of itself: every table entry for
    /// it takes the new one.
    pub fn update_descriptor(&mut self, peer: &Peer) {
        let newer = |old: &Peer| old.id == peer.id && old.desc.published < peer.desc.published;
        let mut fingers = false;
        for p in self
            .successors
            .iter_mut()
            .chain(self.predecessor.iter_mut())
            .chain(self.checked.iter_mut())
        {
            if newer(p) {
                *p = peer.clone();
            }
        }
        // The distinct fingers first: a node is rarely one of them, and
        // the table has 256 entries.
        if self.finger_runs.iter().any(newer) {
            for p in self.fingers.iter_mut().flatten() {
                if newer(p) {
                    *p = peer.clone();
                    fingers = true;
                }
            }
        }
        if fingers {
            self.reindex_fingers();
        }
    }

    /// Take a place on the ring, or give it up. A node that learns its
    /// address joins as a non-member and becomes one once others can reach
    /// it: the next stabilize notifies its successor.
    pub fn set_member(&mut self, member: bool, now: Instant) {
        if member && !self.cfg.member {
            self.next_stabilize = now;
        }
        self.cfg.member = member;
    }

    pub fn is_member(&self) -> bool {
        self.cfg.member
    }

    /// A client-only node's ring ([`Config::client`]).
    pub fn is_client(&self) -> bool {
        self.cfg.client
    }

    pub fn predecessor(&self) -> Option<&Peer> {
        self.predecessor.as_ref()
    }

    /// The successor list, nearest first; empty when alone.
    pub fn successors(&self) -> &[Peer] {
        &self.successors
    }

    /// The successor: the next node, or this node when alone.
    pub fn successor(&self) -> &Peer {
        self.successors.first().unwrap_or(&self.me)
    }

    pub fn distinct_fingers(&self) -> usize {
        self.fingers
            .iter()
            .flatten()
            .map(|p| p.id)
            .collect::<HashSet<_>>()
            .len()
    }

    fn reindex_fingers(&mut self) {
        self.finger_runs.clear();
        let mut last = None;
        for f in self.fingers.iter().flatten() {
            if last != Some(f.id) {
                last = Some(f.id);
                self.finger_runs.push(f.clone());
            }
        }
    }

    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Every node this one knows: successors, predecessor, fingers.
    pub fn known(&self) -> Vec<Peer> {
        // Fingers come in runs of one node; keep one of each run, then one
        // of each node, in id order.
        let mut out: Vec<Peer> = self
            .successors
            .iter()
            .chain(self.predecessor.iter())
            .cloned()
            .collect();
        out.extend(self.finger_runs.iter().cloned());
        if self.cfg.client {
            // A client has no table of its own: it knows the nodes its
            // measured and checked tables named.
            out.extend(self.checked.iter().cloned());
        }
        out.sort_unstable_by_key(|p| p.id);
        out.dedup_by_key(|p| p.id);
        out
    }

    /// Join the ring that `bootstrap` belongs to: addresses, each with the
    /// node id expected there if known.
    pub fn join(&mut self, bootstrap: Vec<(SocketAddr, Option<NodeId>)>, now: Instant) {
        if bootstrap.is_empty() {
            return;
        }
        self.bootstrap = bootstrap;
        self.joined = false;
        if self.cfg.client {
            self.seed_from_bootstrap(now);
        } else {
            self.try_join(now);
        }
    }

    fn try_join(&mut self, now: Instant) {
        if self.bootstrap.is_empty() {
            return;
        }
        let pick = usize::try_from(self.rng.next_u32()).unwrap_or(0) % self.bootstrap.len();
        let (addr, expect) = self.bootstrap[pick];
        let lookup = Lookup {
            target: self.me.id.0,
            purpose: Purpose::Join,
            steps: 0,
            timeouts: 0,
            tried: HashSet::new(),
        };
        self.send_lookup(Dest::Addr(addr, expect), expect, lookup, now);
    }

    /// Find the successor of `target`; the answer comes as
    /// [`Event::LookupDone`] with `token`.
    pub fn lookup(&mut self, target: [u8; 32], token: Token, now: Instant) {
        self.start_lookup(target, Purpose::User(token), now);
    }

    /// Leave gracefully: tell the neighbours how to close the gap. The
    /// caller hands blocks over before, and drops links after.
    pub fn leave(&mut self) {
        if !self.cfg.member {
            // No one counts on us: nothing to hand over.
            return;
        }
        let msg = PeerMessage::Leaving {
            predecessor: self.predecessor.as_ref().map(|p| (*p.desc).clone()),
            successors: self.successors.iter().map(|p| (*p.desc).clone()).collect(),
        };
        let mut told = HashSet::new();
        for p in self.predecessor.iter().chain(self.successors.first()) {
            if told.insert(p.id) {
                self.outbox.push_back(Transmit {
                    to: Dest::Peer(p.clone()),
                    msg: msg.clone(),
                });
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Ring::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Instant {
        let upkeep: &[Instant] = if !self.cfg.client {
            &[
                self.next_stabilize,
                self.next_fix,
                self.next_check,
                self.next_recheck,
            ]
        } else if !self.joined && self.seeding == 0 {
            // A client's only timer of its own: measuring the ring again.
            &[self.next_stabilize]
        } else {
            &[]
        };
        let queries = self.queries.values().map(|q| q.deadline);
        queries
            .chain(upkeep.iter().copied())
            .min()
            .unwrap_or(self.next_check)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .queries
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for qid in expired {
            if let Some(q) = self.queries.remove(&qid) {
                self.query_failed(q, now);
            }
        }
        self.dead.retain(|_, until| *until > now);
        let forget = self.cfg.dead_for;
        self.strikes
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < forget);
        if self.cfg.client {
            // Nothing else to wake for: the time [`Ring::poll_timeout`]
            // gives when no query is out.
            self.next_check = now + Duration::from_secs(3600);
            // A client's only upkeep: measuring the ring until it has.
            if !self.joined && self.seeding == 0 && now >= self.next_stabilize {
                self.next_stabilize = now + self.cfg.stabilize_every;
                self.seed_from_bootstrap(now);
            }
            return;
        }
        if now >= self.next_stabilize {
            self.next_stabilize = now + self.period(self.cfg.stabilize_every, 1);
            self.stabilize(now);
        }
        if now >= self.next_fix {
            self.next_fix = now + self.period(self.cfg.fix_fingers_every, 32);
            if self.joined && !self.successors.is_empty() {
                let i = self.next_finger;
                self.start_lookup(add_pow2(&self.me.id.0, i), Purpose::Finger(i), now);
            }
        }
        if now >= self.next_recheck {
            self.next_recheck = now + self.period(self.cfg.stabilize_every * RECHECK_EVERY, 4);
            self.recheck(now);
        }
        if now >= self.next_check {
            self.next_check = now + self.period(self.cfg.check_predecessor_every, 1);
            if let Some(p) = self.predecessor.clone() {
                let msg_id = self.insert_query(Some(p.id), Pending::PingPredecessor, now);
                self.send(Dest::Peer(p), PeerMessage::Ping { nonce: msg_id });
            }
        }
    }

    /// A link to `id` failed, or `id` stopped answering: route around it.
    pub fn handle_failure(&mut self, id: NodeId, now: Instant) {
        if id == self.me.id {
            return;
        }
        self.unsettle(now);
        self.strikes.remove(&id);
        self.dead.insert(id, now + self.cfg.dead_for);
        let mut changed = false;
        if self.predecessor.as_ref().is_some_and(|p| p.id == id) {
            self.predecessor = None;
            changed = true;
        }
        let before = self.successors.len();
        self.successors.retain(|p| p.id != id);
        if self.successors.len() != before {
            changed = true;
            // Ask the new first successor at once rather than at the next
            // tick: the gap is what lookups fall into.
            self.next_stabilize = now;
        }
        if self.finger_runs.iter().any(|p| p.id == id) {
            for f in &mut self.fingers {
                if f.as_ref().is_some_and(|p| p.id == id) {
                    *f = None;
                }
            }
            self.reindex_fingers();
        }
        if before > 0 && self.successors.is_empty() {
            // The whole successor list failed. This node is not alone for
            // that (an empty list would make it answer for every key): the
            // nearest node it still knows is its successor until
            // stabilization finds better (Chord, section 5.2).
            let me = self.me.id;
            let nearest = self
                .known()
                .into_iter()
                .filter(|p| !self.dead.contains_key(&p.id))
                .min_by_key(|p| distance(&me.0, &p.id.0));
            if let Some(p) = nearest {
                self.successors.push(p);
            }
        }
        if changed {
            self.events.push_back(Event::NeighboursChanged);
        }
    }
}

#[cfg(test)]
mod tests;
