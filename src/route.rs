//! Routed requests: Freenet-style depth-first search toward a key, over the
//! nodes the ring knows (Clarke et al., "Freenet: A Distributed Anonymous
//! Information Storage and Retrieval System", 2001, section 3; HTL handling
//! after Freenet's "decrement at max" rule).
//!
//! A sans-IO state machine: requests and replies come in with the time, and
//! the node's ring is reached through [`Context`]; messages to send, reads
//! and writes of the node's store, and results to deliver come out of
//! [`Router::poll_action`]. A read or a write is answered later with
//! [`Router::handle_read`] or [`Router::handle_written`], so the router
//! never waits on a disk: a put is acknowledged upstream only once the
//! write is done (durable), and a get is searched for only once the
//! node's own store has said it lacks the block.
//!
//! For each request a node keeps only where it came from, which next hops
//! it has tried, and a deadline. It asks the best untried candidate (the
//! known node closest to the key without passing it), and on route not
//! found, loop, rejection, a timeout, a dead link or a bad block asks the
//! next; when all are spent it answers route not found. The key's successor
//! answers data not found when it lacks the block. Every block is verified
//! before it is cached, stored, forwarded or delivered.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::token::Token;

use crate::wire::{KeyKind, NodeId, PeerMessage, RequestId, RoutingKey};
use answer::Answer;

/// Hops-to-live a request starts with.
pub const MAX_HTL: u8 = 18;

#[derive(Debug, Clone)]
pub struct Config {
    /// Wait for one next hop: `hop_base + htl × hop_per_htl`, so a node
    /// always waits longer than the hop it asked.
    pub hop_base: Duration,
    pub hop_per_htl: Duration,
    /// How long request ids are remembered for loop detection, and at most
    /// how many.
    pub seen_for: Duration,
    pub max_seen: usize,
    /// Requests in progress at once; more are rejected (overload).
    pub max_pending: usize,
    /// Of those, at most this many from one neighbour (its fair share:
    /// one link cannot take the whole budget)...
    pub max_pending_per_peer: usize,
    /// ... and at most this many started here, by this node's exits.
    pub max_pending_local: usize,
    /// How long a neighbour that sent a bad block, or let a request's hop
    /// time run out, is tried last.
    pub penalty_for: Duration,
    /// Chance that this node decrements HTL at the maximum for a given
    /// neighbour (decided once per neighbour).
    pub decrement_at_max: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hop_base: Duration::from_millis(1000),
            hop_per_htl: Duration::from_millis(400),
            seen_for: Duration::from_secs(120),
            max_seen: 1 << 16,
            max_pending: 1024,
            max_pending_per_peer: 128,
            max_pending_local: 512,
            penalty_for: Duration::from_secs(300),
            decrement_at_max: 0.5,
        }
    }
}

/// What a routed request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Get,
    Put(Vec<u8>),
}

/// How a request ended, for the local user. Each failure is distinct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Found(Vec<u8>),
    Stored,
    DataNotFound,
    RouteNotFound,
    Timeout,
    Rejected,
}

/// What the node must do.
#[derive(Debug, Clone)]
pub enum Action {
    Send {
        to: NodeId,
        msg: PeerMessage,
    },
    /// Look for the block in the store and the cache; answer with
    /// [`Router::handle_read`].
    Read {
        id: RequestId,
        kind: KeyKind,
        key: RoutingKey,
    },
    /// Store a block this node owns (a put reached its successor), durably;
    /// answer with [`Router::handle_written`].
    Write {
        id: RequestId,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    },
    /// Cache a verified block passing by; no answer.
    Cache {
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    },
    /// A local request finished.
    Deliver {
        token: Token,
        outcome: Outcome,
    },
    /// A neighbour sent a block that does not match its key.
    Misbehaved(NodeId),
}

/// What the router needs to know of the node, at once.
pub trait Context {
    /// Whether this node is the key's successor.
    fn owns(&self, key: &RoutingKey) -> bool;
    /// Known nodes ranked as next hops toward the key, best first.
    fn candidates(&self, key: &RoutingKey) -> Vec<NodeId>;
    fn verify(&self, kind: KeyKind, key: &RoutingKey, block: &[u8]) -> bool;
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for this node's store to say whether it has the block.
    Reading,
    /// Waiting for this node's store to write the block durably.
    Writing,
    /// Asking other nodes.
    Searching,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local(Token),
    Peer(NodeId),
}

#[derive(Debug)]
struct Pending {
    origin: Origin,
    stage: Stage,
    kind: KeyKind,
    key: RoutingKey,
    request: Request,
    /// HTL as this node received it (the origin: as if received at max).
    htl: u8,
    tried: HashSet<NodeId>,
    current: Option<NodeId>,
    /// When the current hop's answer is overdue.
    hop_deadline: Instant,
    /// When this node stops trying altogether.
    expires: Instant,
}

pub struct Router {
    cfg: Config,
    seen: HashMap<RequestId, Instant>,
    seen_order: VecDeque<(Instant, RequestId)>,
    /// Ordered, so that timeouts are handled in a reproducible order.
    pending: BTreeMap<RequestId, Pending>,
    /// Requests in `pending` by origin: per neighbour, and started here.
    held_by: HashMap<NodeId, usize>,
    held_local: usize,
    decrement_at_max: HashMap<NodeId, bool>,
    penalised: HashMap<NodeId, Instant>,
    /// Hops that did not answer within their time.
    hops_timed_out: u64,
    actions: VecDeque<Action>,
    rng: StdRng,
}

impl Router {
    pub fn new(cfg: Config, seed: [u8; 32]) -> Router {
        Router {
            cfg,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            pending: BTreeMap::new(),
            held_by: HashMap::new(),
            held_local: 0,
            decrement_at_max: HashMap::new(),
            penalised: HashMap::new(),
            hops_timed_out: 0,
            actions: VecDeque::new(),
            rng: StdRng::from_seed(seed),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.hop_deadline.min(p.expires))
            .min()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Hops of routed requests that did not answer within their time.
    pub fn hops_timed_out(&self) -> u64 {
        self.hops_timed_out
    }

    fn hop_timeout(&self, htl: u8) -> Duration {
        self.cfg.hop_base + self.cfg.hop_per_htl * u32::from(htl)
    }

    /// Start a request from this node, with a fresh random id unless one is
    /// given (tests and diagnostics). The answer comes as
    /// [`Action::Deliver`] with `token`; at once, and `Rejected`, when
    /// this node has too many requests in progress, or too many of its
    /// own. Returns the request id.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        id: Option<RequestId>,
        token: Token,
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
        now: Instant,
        ctx: &mut impl Context,
    ) -> RequestId {
        let id = id.unwrap_or_else(|| {
            let mut id = RequestId(self.rng.gen());
            while self.seen.contains_key(&id) {
                id = RequestId(self.rng.gen());
            }
            id
        });
        if self.pending.len() >= self.cfg.max_pending
            || self.held_local >= self.cfg.max_pending_local
        {
            self.actions.push_back(Action::Deliver {
                token,
                outcome: Outcome::Rejected,
            });
            return id;
        }
        self.begin(
            id,
            Origin::Local(token),
            MAX_HTL,
            kind,
            key,
            request,
            now,
            ctx,
        );
        id
    }

    /// A routed request from a neighbour.
    pub fn handle_request(
        &mut self,
        from: NodeId,
        msg: PeerMessage,
        now: Instant,
        ctx: &mut impl Context,
    ) {
        let (id, htl, kind, key, request) = match msg {
            PeerMessage::Get { id, htl, kind, key } => (id, htl, kind, key, Request::Get),
            PeerMessage::Put {
                id,
                htl,
                kind,
                key,
                block,
            } => (id, htl, kind, key, Request::Put(block)),
            _ => return,
        };
        if self.seen.contains_key(&id) {
            self.send(from, PeerMessage::Loop { id });
            return;
        }
        let theirs = self.held_by.get(&from).copied().unwrap_or(0);
        if self.pending.len() >= self.cfg.max_pending || theirs >= self.cfg.max_pending_per_peer {
            self.send(from, PeerMessage::Rejected { id });
            return;
        }
        self.begin(
            id,
            Origin::Peer(from),
            htl.min(MAX_HTL),
            kind,
            key,
            request,
            now,
            ctx,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        id: RequestId,
        origin: Origin,
        htl: u8,
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
        now: Instant,
        ctx: &mut impl Context,
    ) {
        self.remember(id, now);
        let budget = match origin {
            // The origin gives the whole search the time its first hop
            // would get, and some slack for backtracking.
            Origin::Local(_) => self.hop_timeout(MAX_HTL) * 3,
            Origin::Peer(_) => self.hop_timeout(htl),
        };
        let mut tried = HashSet::new();
        if let Origin::Peer(p) = origin {
            tried.insert(p);
        }
        let mut pending = Pending {
            origin,
            stage: Stage::Searching,
            kind,
            key,
            request: Request::Get,
            htl,
            tried,
            current: None,
            hop_deadline: now,
            expires: now + budget,
        };
        match request {
            Request::Get => {
                // The node's own store first; the search waits for it.
                pending.stage = Stage::Reading;
                pending.hop_deadline = pending.expires;
                self.hold(id, pending);
                self.actions.push_back(Action::Read { id, kind, key });
            }
            Request::Put(block) => {
                if !ctx.verify(kind, &key, &block) {
                    if let Origin::Peer(p) = origin {
                        self.actions.push_back(Action::Misbehaved(p));
                    }
                    self.answer(origin, id, Answer::Rejected);
                    return;
                }
                if ctx.owns(&key) {
                    pending.stage = Stage::Writing;
                    pending.hop_deadline = pending.expires;
                    self.hold(id, pending);
                    self.actions.push_back(Action::Write {
                        id,
                        kind,
                        key,
                        block,
                    });
                    return;
                }
                if htl == 0 {
                    self.answer(origin, id, Answer::RouteNotFound);
                    return;
                }
                pending.request = Request::Put(block);
                self.hold(id, pending);
                self.try_next(id, now, ctx);
            }
        }
    }

    /// The store's answer to [`Action::Read`]: the block, or `None` when
    /// this node has no copy it may serve.
    pub fn handle_read(
        &mut self,
        id: RequestId,
        block: Option<Vec<u8>>,
        now: Instant,
        ctx: &mut impl Context,
    ) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        if p.stage != Stage::Reading {
            return;
        }
        // The store checks every block against its key as it reads it.
        if let Some(block) = block {
            self.finish(id, Answer::Data(block));
            return;
        }
        if ctx.owns(&p.key) || p.htl == 0 {
            self.finish(id, Answer::DataNotFound);
            return;
        }
        p.stage = Stage::Searching;
        p.hop_deadline = now;
        self.try_next(id, now, ctx);
    }

    /// The store's answer to [`Action::Write`]: whether the block is held
    /// now (stored, or already there).
    pub fn handle_written(&mut self, id: RequestId, stored: bool) {
        if self
            .pending
            .get(&id)
            .is_some_and(|p| p.stage == Stage::Writing)
        {
            let a = if stored {
                Answer::Stored
            } else {
                Answer::Rejected
            };
            self.finish(id, a);
        }
    }

    /// Ask the best untried candidate, or give up with route not found.
    fn try_next(&mut self, id: RequestId, now: Instant, ctx: &mut impl Context) {
        let Some(p) = self.pending.get(&id) else {
            return;
        };
        if now >= p.expires {
            self.finish(id, Answer::RouteNotFound);
            return;
        }
        let mut candidates: Vec<NodeId> = ctx
            .candidates(&p.key)
            .into_iter()
            .filter(|n| !p.tried.contains(n))
            .collect();
        // Penalised neighbours last, keeping the ranking otherwise.
        self.penalised.retain(|_, until| *until > now);
        candidates.sort_by_key(|n| self.penalised.contains_key(n));
        let Some(next) = candidates.first().copied() else {
            self.finish(id, Answer::RouteNotFound);
            return;
        };
        let htl = self.next_htl(p.htl, next);
        let wait = self.hop_timeout(htl);
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        p.tried.insert(next);
        p.current = Some(next);
        p.hop_deadline = (now + wait).min(p.expires);
        let msg = match &p.request {
            Request::Get => PeerMessage::Get {
                id,
                htl,
                kind: p.kind,
                key: p.key,
            },
            Request::Put(block) => PeerMessage::Put {
                id,
                htl,
                kind: p.kind,
                key: p.key,
                block: block.clone(),
            },
        };
        self.send(next, msg);
    }

    /// HTL for the next hop. At the maximum it stays there for some
    /// neighbours (decided once each), so whoever receives a request at
    /// maximum HTL cannot tell whether the sender started it.
    fn next_htl(&mut self, htl: u8, to: NodeId) -> u8 {
        if htl >= MAX_HTL {
            let p = self.cfg.decrement_at_max;
            let dec = *self
                .decrement_at_max
                .entry(to)
                .or_insert_with(|| self.rng.gen_bool(p.clamp(0.0, 1.0)));
            if dec {
                MAX_HTL - 1
            } else {
                MAX_HTL
            }
        } else {
            htl.saturating_sub(1)
        }
    }

    /// A reply to a request this node forwarded.
    pub fn handle_reply(
        &mut self,
        from: NodeId,
        msg: PeerMessage,
        now: Instant,
        ctx: &mut impl Context,
    ) {
        let id = match &msg {
            PeerMessage::Data { id, .. }
            | PeerMessage::DataNotFound { id }
            | PeerMessage::RouteNotFound { id }
            | PeerMessage::Loop { id }
            | PeerMessage::Stored { id }
            | PeerMessage::Rejected { id } => *id,
            _ => return,
        };
        let Some(p) = self.pending.get(&id) else {
            return;
        };
        if p.stage != Stage::Searching || p.current != Some(from) {
            // A late answer from a hop we gave up on.
            return;
        }
        match msg {
            PeerMessage::Data { block, .. } => {
                if !ctx.verify(p.kind, &p.key, &block) {
                    self.penalised.insert(from, now + self.cfg.penalty_for);
                    self.actions.push_back(Action::Misbehaved(from));
                    self.try_next(id, now, ctx);
                    return;
                }
                // Cache on the way back, except at the first hops after the
                // origin (maximum HTL): caching there would let a neighbour
                // read the origin's own requests off its cache.
                if p.htl < MAX_HTL && matches!(p.origin, Origin::Peer(_)) {
                    self.actions.push_back(Action::Cache {
                        kind: p.kind,
                        key: p.key,
                        block: block.clone(),
                    });
                }
                self.finish(id, Answer::Data(block));
            }
            PeerMessage::DataNotFound { .. } => self.finish(id, Answer::DataNotFound),
            PeerMessage::Stored { .. } => self.finish(id, Answer::Stored),
            // This branch failed: backtrack.
            _ => self.try_next(id, now, ctx),
        }
    }

    /// The link to `peer` is gone: every request waiting on it moves on.
    pub fn handle_link_down(&mut self, peer: NodeId, now: Instant, ctx: &mut impl Context) {
        let waiting: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.stage == Stage::Searching && p.current == Some(peer))
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.try_next(id, now, ctx);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut impl Context) {
        let due: Vec<(RequestId, bool)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.hop_deadline <= now || p.expires <= now)
            .map(|(&id, p)| (id, p.expires <= now))
            .collect();
        for (id, expired) in due {
            if expired {
                let local = self
                    .pending
                    .get(&id)
                    .is_some_and(|p| matches!(p.origin, Origin::Local(_)));
                let a = if local {
                    Answer::Timeout
                } else {
                    Answer::RouteNotFound
                };
                self.finish(id, a);
            } else {
                // The hop let its time run out: slow, gone or swallowing
                // requests. It is tried last for a while, so that the next
                // requests do not wait on it too; an honest node that was
                // only slow is asked again when the penalty ends.
                if let Some(cur) = self.pending.get(&id).and_then(|p| p.current) {
                    self.hops_timed_out += 1;
                    self.penalised.insert(cur, now + self.cfg.penalty_for);
                }
                self.try_next(id, now, ctx);
            }
        }
        self.forget_old(now);
    }

    fn remember(&mut self, id: RequestId, now: Instant) {
        self.forget_old(now);
        while self.seen.len() >= self.cfg.max_seen {
            match self.seen_order.pop_front() {
                Some((_, old)) => {
                    self.seen.remove(&old);
                }
                None => break,
            }
        }
        self.seen.insert(id, now);
        self.seen_order.push_back((now, id));
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.seen_order.front() {
            if now.duration_since(t) < self.cfg.seen_for {
                break;
            }
            self.seen_order.pop_front();
            if self.seen.get(&id) == Some(&t) {
                self.seen.remove(&id);
            }
        }
    }

    fn hold(&mut self, id: RequestId, pending: Pending) {
        match pending.origin {
            Origin::Local(_) => self.held_local += 1,
            Origin::Peer(p) => *self.held_by.entry(p).or_default() += 1,
        }
        self.pending.insert(id, pending);
    }

    fn finish(&mut self, id: RequestId, answer: Answer) {
        if let Some(p) = self.pending.remove(&id) {
            match p.origin {
                Origin::Local(_) => self.held_local -= 1,
                Origin::Peer(peer) => {
                    if let Some(n) = self.held_by.get_mut(&peer) {
                        *n -= 1;
                        if *n == 0 {
                            self.held_by.remove(&peer);
                        }
                    }
                }
            }
            self.answer(p.origin, id, answer);
        }
    }

    fn answer(&mut self, origin: Origin, id: RequestId, answer: Answer) {
        match origin {
            Origin::Local(token) => self.actions.push_back(Action::Deliver {
                token,
                outcome: answer.outcome(),
            }),
            Origin::Peer(to) => self.send(to, answer.message(id)),
        }
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        self.actions.push_back(Action::Send { to, msg });
    }
}

mod answer;
#[cfg(test)]
mod tests;
