//! The simulated network: nodes, links between them, and the loop that
//! carries every core's actions out on a virtual clock.
//!
//! Links behave as QUIC links do for the protocol above them: reliable and
//! in order, one-way latency fixed per pair of nodes (drawn from the
//! [`Latency`] model when the pair first links), a link up one round trip
//! after its dial, dials to nobody failing after [`Settings::dial_timeout`].
//! A frame is lost with probability [`Settings::loss`], standing for what a
//! full send queue drops. A crashed node says nothing: its peers notice
//! after [`Settings::detect`], as a link's idle timeout would. Datastore
//! operations run on the node's in-memory store and answer after
//! [`Settings::store_latency`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::events::{Agenda, Event};
use crate::crypto::Identity;
use crate::node::core::sampling::Pace;
use crate::node::core::{Action, CloseReason, Core, LinkId};
use crate::node::{self, Answer, Config, NodeClient, Requests, Tap};
use crate::store::{Limits, Memory};
use crate::token::{Token, Tokens};
use crate::wire::{encode_frame, Frame, NodeId};

/// Sees every frame sent: (from, to, frame).
pub type Watcher = Box<dyn FnMut(usize, usize, &Frame)>;

/// One-way latency of a link, fixed per pair of nodes.
#[derive(Debug, Clone, Copy)]
pub enum Latency {
    Constant(Duration),
    /// Drawn uniformly from `[min, max]` once per pair.
    Uniform {
        min: Duration,
        max: Duration,
    },
}

/// How the simulated world behaves, and the configuration every node
/// starts from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub latency: Latency,
    /// Chance that a frame is lost on its way.
    pub loss: f64,
    pub dial_timeout: Duration,
    /// How long until the peers of a crashed node notice; `None`: never
    /// (they find out by timeouts alone).
    pub detect: Option<Duration>,
    pub store_latency: Duration,
    /// Every node's configuration (replicas, timers, circuit length…);
    /// addresses, data directory and bootstrap are the simulator's.
    pub node: Config,
    /// Each node's datastore limits.
    pub store: Limits,
    /// How often each node's sampling lookups go out.
    pub sampling: crate::node::core::sampling::Pace,
    /// What goes into [`Net::trace`].
    pub trace: Trace,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            latency: Latency::Constant(Duration::from_millis(10)),
            loss: 0.0,
            dial_timeout: Duration::from_secs(5),
            detect: Some(Duration::from_secs(6)),
            store_latency: Duration::from_micros(300),
            // Ten thousand identities at 16 bits would take hours: the
            // simulator prices Sybils by the keys they grind instead.
            node: Config {
                id_puzzle_bits: 0,
                ..Config::default()
            },
            store: Limits {
                primary_bytes: 64 << 20,
                cache_bytes: 16 << 20,
            },
            sampling: crate::node::core::sampling::Pace::default(),
            trace: Trace::Frames,
        }
    }
}

/// How much of a run [`Net::trace`] hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// Nothing: the trace stays empty (a long experiment that compares its
    /// tables, not its traces, saves a hash per event).
    Off,
    /// Each event's time, node and kind.
    Events,
    /// Each event's, and the first bytes of every frame (an encoding per
    /// frame).
    Frames,
}

struct SimNode {
    core: Core,
    store: Memory,
    addr: SocketAddr,
    alive: bool,
    /// The other end of this node's client, if one was made.
    requests: Option<Requests>,
    answers: HashMap<Token, Answer>,
    /// Replies to requests made with [`Net::submit`].
    replies: HashMap<Token, crate::node::core::Reply>,
    tokens: Tokens,
    tap: Option<Box<dyn Tap>>,
    /// The wake-up scheduled for the core, as a virtual time.
    wake: Option<Duration>,
}

struct LinkEnd {
    node: usize,
    peer_link: LinkId,
    latency: Duration,
    /// When the last frame sent on this end arrives: frames keep order.
    last: Duration,
}

/// Every link end, indexed by its id (ids are handed out in order and never
/// reused): a lookup per frame sent is an index, not a hash.
#[derive(Default)]
struct Links {
    ends: Vec<Option<LinkEnd>>,
}

impl Links {
    fn slot(id: LinkId) -> usize {
        usize::try_from(id.0).unwrap_or(usize::MAX)
    }

    fn get(&self, id: &LinkId) -> Option<&LinkEnd> {
        self.ends.get(Self::slot(*id))?.as_ref()
    }

    fn get_mut(&mut self, id: &LinkId) -> Option<&mut LinkEnd> {
        self.ends.get_mut(Self::slot(*id))?.as_mut()
    }

    fn insert(&mut self, id: LinkId, end: LinkEnd) {
        let k = Self::slot(id);
        if self.ends.len() <= k {
            self.ends.resize_with(k + 1, || None);
        }
        self.ends[k] = Some(end);
    }

    fn remove(&mut self, id: &LinkId) -> Option<LinkEnd> {
        self.ends.get_mut(Self::slot(*id))?.take()
    }

    /// Every open end, in id order.
    fn iter(&self) -> impl Iterator<Item = (LinkId, &LinkEnd)> {
        self.ends
            .iter()
            .enumerate()
            .filter_map(|(k, e)| Some((LinkId(k as u64), e.as_ref()?)))
    }
}

pub struct Net {
    settings: Settings,
    epoch: Instant,
    now: Duration,
    rng: StdRng,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    links: Links,
    next_link: u64,
    agenda: Agenda,
    pair_latency: HashMap<(usize, usize), Duration>,
    /// Nodes whose clients may have requests waiting.
    clients: Vec<usize>,
    watcher: Option<Watcher>,
    /// Descriptor signatures checked once for every node.
    verified: std::sync::Arc<crate::node::core::Verified>,
    trace: Sha256,
    events: u64,
    answered: u64,
}

/// A node's address: 10.x.y.z from its index, port 7000.
fn address(i: usize) -> SocketAddr {
    let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
    let [_, a, b, c] = n.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), 7000)
}

impl Net {
    pub fn new(settings: Settings, seed: u64) -> Net {
        Net {
            settings,
            epoch: Instant::now(),
            now: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            links: Links::default(),
            next_link: 0,
            agenda: Agenda::default(),
            pair_latency: HashMap::new(),
            clients: Vec::new(),
            watcher: None,
            verified: Default::default(),
            trace: Sha256::new(),
            events: 0,
            answered: 0,
        }
    }

    /// Virtual time since the network was made.
    pub fn now(&self) -> Duration {
        self.now
    }

    fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    /// Add a node that joins through node `bootstrap` (none: it starts a
    /// ring). Returns its index.
    pub fn add(&mut self, bootstrap: Option<usize>) -> usize {
        let identity = Identity::generate(&mut self.rng);
        self.add_as(identity, bootstrap)
    }

    /// [`Net::add`] with a given identity (and so a given ring id).
    pub fn add_as(&mut self, identity: Identity, bootstrap: Option<usize>) -> usize {
        self.add_with(identity, bootstrap, |_, _| {})
    }

    /// A client-only node (no relay, not on the ring) that starts from
    /// node `bootstrap`, looking for relays at `sampling`'s pace (the
    /// network's when `None`).
    pub fn add_client(&mut self, bootstrap: usize, sampling: Option<Pace>) -> usize {
        let identity = Identity::generate(&mut self.rng);
        self.add_with(identity, Some(bootstrap), |c, pace| {
            c.relay = false;
            if let Some(s) = sampling {
                *pace = s;
            }
        })
    }

    /// [`Net::add_as`] with this node's configuration and sampling pace
    /// changed by `tweak`.
    pub fn add_with(
        &mut self,
        identity: Identity,
        bootstrap: Option<usize>,
        tweak: impl FnOnce(&mut Config, &mut Pace),
    ) -> usize {
        let i = self.nodes.len();
        let addr = address(i);
        let boot = bootstrap.map(|b| node::Bootstrap {
            addr: self.nodes[b].addr,
            id: Some(self.nodes[b].core.id()),
        });
        let mut cfg = Config {
            listen: addr,
            bootstrap: boot.into_iter().collect(),
            ..self.settings.node.clone()
        };
        let mut pace = self.settings.sampling;
        tweak(&mut cfg, &mut pace);
        let store = Memory::new(
            self.settings.store,
            crate::keys::verify_block,
            crate::keys::supersedes,
        );
        let seed: [u8; 32] = self.rng.gen();
        let now = self.instant();
        let unix = 1_800_000_000 + self.now.as_secs();
        let mut core_settings = cfg.core_settings(addr);
        core_settings.sampling = pace;
        core_settings.verified = Some(self.verified.clone());
        let core =
            Core::new(identity, core_settings, [], seed, now, unix).expect("a descriptor signs");
        self.by_addr.insert(addr, i);
        self.nodes.push(SimNode {
            core,
            store,
            addr,
            alive: true,
            requests: None,
            answers: HashMap::new(),
            replies: HashMap::new(),
            tokens: Tokens::default(),
            tap: None,
            wake: None,
        });
        self.carry_out(i);
        i
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn core(&self, i: usize) -> &Core {
        &self.nodes[i].core
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].alive
    }

    /// Put a tap on what node `i` sends: a Byzantine node is the honest
    /// core behind one.
    pub fn set_tap(&mut self, i: usize, tap: Box<dyn Tap>) {
        self.nodes[i].tap = Some(tap);
    }

    /// A client of node `i`, as the document layer uses one.
    pub fn client(&mut self, i: usize) -> NodeClient {
        let (client, requests) = node::channel();
        self.nodes[i].requests = Some(requests);
        if !self.clients.contains(&i) {
            self.clients.push(i);
        }
        client
    }

    /// Node `i` stops at once and says nothing.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].answers.clear();
        let mut ends: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, e)| e.node == i)
            .map(|(l, _)| l)
            .collect();
        ends.sort();
        for l in ends {
            if let Some(end) = self.links.remove(&l) {
                let peer = self.links.get(&end.peer_link).map(|e| e.node);
                if let (Some(peer), Some(detect)) = (peer, self.settings.detect) {
                    self.agenda.push(
                        self.now + detect,
                        peer,
                        Event::LinkDown {
                            link: end.peer_link,
                            idle: false,
                        },
                    );
                }
            }
        }
    }

    /// A hash of every event so far: two runs agree on it exactly when
    /// they went the same way.
    pub fn trace(&self) -> [u8; 32] {
        self.trace.clone().finalize().into()
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Run until virtual time `until`.
    pub fn run_until(&mut self, until: Duration) {
        while self.agenda.peek_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Run until `done` holds (checked every `every` of virtual time) or
    /// `limit` has passed; whether it held.
    pub fn run_while_not(
        &mut self,
        limit: Duration,
        every: Duration,
        mut done: impl FnMut(&Net) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.run_for(every);
        }
        done(self)
    }

    /// Drive `fut` (which makes requests through clients of this network)
    /// and the simulation together until it finishes, or until `limit` of
    /// virtual time has passed. Runs inside a single-threaded tokio
    /// runtime, whose scheduling is as deterministic as the simulation.
    pub async fn run_future<F: Future>(&mut self, fut: F, limit: Duration) -> Option<F::Output> {
        let end = self.now + limit;
        tokio::pin!(fut);
        loop {
            // Let the future and the tasks it spawned run until they wait
            // on the network.
            for _ in 0..16 {
                tokio::select! {
                    biased;
                    out = &mut fut => return Some(out),
                    _ = std::future::ready(()) => {}
                }
                tokio::task::yield_now().await;
            }
            self.take_requests();
            let answered = self.answered;
            while self.answered == answered {
                match self.agenda.peek_time() {
                    Some(t) if t <= end => self.step(),
                    _ => return None,
                }
            }
        }
    }

    /// Make a request of node `i`'s core at once; its reply waits in
    /// [`Net::take_reply`].
    pub fn submit(&mut self, i: usize, request: crate::node::core::Request) -> Token {
        let token = self.nodes[i].tokens.issue();
        let now = self.instant();
        self.nodes[i].core.handle_request(token, request, now);
        self.carry_out(i);
        token
    }

    pub fn take_reply(&mut self, i: usize, token: Token) -> Option<crate::node::core::Reply> {
        self.nodes[i].replies.remove(&token)
    }

    /// Replies answered so far, to any request.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Watch every frame sent: (from, to, frame), before loss and taps
    /// downstream of the sender's own.
    pub fn watch(&mut self, f: Watcher) {
        self.watcher = Some(f);
    }

    /// Hand `frame` to node `i` as if its peer `from` had sent it on their
    /// link (an adversary's message reaching its target): false if they
    /// share no link.
    pub fn inject(&mut self, i: usize, from: usize, frame: Frame) -> bool {
        let mut ends: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, e)| e.node == from)
            .filter(|(_, e)| self.links.get(&e.peer_link).is_some_and(|p| p.node == i))
            .map(|(_, e)| e.peer_link)
            .collect();
        ends.sort();
        let Some(&link) = ends.first() else {
            return false;
        };
        let now = self.instant();
        self.nodes[i].core.handle_frame(link, frame, now);
        self.carry_out(i);
        true
    }

    pub(super) fn settle_node(
        &mut self,
        i: usize,
        predecessor: Option<crate::ring::Peer>,
        successors: Vec<crate::ring::Peer>,
        fingers: Vec<Option<crate::ring::Peer>>,
    ) {
        self.nodes[i].core.settle(predecessor, successors, fingers);
        self.carry_out(i);
    }

    /// Node `i`'s datastore.
    pub fn store(&self, i: usize) -> &Memory {
        &self.nodes[i].store
    }

    /// Hand every waiting client request to its node's core.
    fn take_requests(&mut self) {
        for k in 0..self.clients.len() {
            let i = self.clients[k];
            loop {
                let n = &mut self.nodes[i];
                let Some(req) = n.requests.as_mut().and_then(Requests::try_next) else {
                    break;
                };
                let (request, answer) = req;
                if !n.alive {
                    continue;
                }
                let token = n.tokens.issue();
                n.answers.insert(token, answer);
                let now = self.epoch + self.now;
                self.nodes[i].core.handle_request(token, request, now);
                self.carry_out(i);
            }
        }
    }

    /// Process the next event.
    pub fn step(&mut self) {
        let Some(s) = self.agenda.pop() else {
            return;
        };
        self.now = self.now.max(s.at);
        let i = s.node;
        if !self.nodes[i].alive {
            return;
        }
        if matches!(s.event, Event::Timer) && self.nodes[i].wake != Some(s.at) {
            return;
        }
        self.events += 1;
        if self.settings.trace != Trace::Off {
            self.trace.update(s.at.as_nanos().to_be_bytes());
            self.trace
                .update(u64::try_from(i).unwrap_or(u64::MAX).to_be_bytes());
            self.trace.update([s.event.tag()]);
        }
        let now = self.instant();
        match s.event {
            Event::Deliver { link, frame } => {
                if self.settings.trace == Trace::Frames {
                    if let Ok(bytes) = encode_frame(&frame) {
                        self.trace.update(&bytes[..bytes.len().min(48)]);
                    }
                }
                self.nodes[i].core.handle_frame(link, frame, now);
            }
            Event::LinkUp {
                link,
                peer,
                remote,
                inbound,
                dial,
            } => {
                if self.settings.trace != Trace::Off {
                    self.trace.update(peer.0);
                }
                self.nodes[i]
                    .core
                    .handle_link_up(link, peer, remote, inbound, dial, now);
            }
            Event::DialFailed { dial, wrong_peer } => {
                self.nodes[i].core.handle_dial_failed(dial, wrong_peer, now)
            }
            Event::LinkDown { link, idle } => {
                self.links.remove(&link);
                self.nodes[i].core.handle_link_down(link, false, idle, now);
            }
            Event::Store { op, result } => self.nodes[i].core.handle_store(op, result, now),
            Event::Timer => {
                self.nodes[i].wake = None;
                self.nodes[i].core.handle_timeout(now);
                self.carry_out(i);
                // A core whose deadline did not move past the timer it just
                // had would be woken at the same instant forever: a bug,
                // but one that must not hang the simulation.
                if self.nodes[i].wake == Some(s.at) {
                    let at = s.at + Duration::from_millis(1);
                    self.nodes[i].wake = Some(at);
                    self.agenda.push(at, i, Event::Timer);
                }
                return;
            }
        }
        self.carry_out(i);
    }

    fn latency(&mut self, a: usize, b: usize) -> Duration {
        let key = (a.min(b), a.max(b));
        if let Some(&d) = self.pair_latency.get(&key) {
            return d;
        }
        let d = match self.settings.latency {
            Latency::Constant(d) => d,
            Latency::Uniform { min, max } => {
                let span = max.saturating_sub(min).as_nanos();
                let pick = self.rng.gen_range(0..=span);
                min + Duration::from_nanos(u64::try_from(pick).unwrap_or(u64::MAX))
            }
        };
        self.pair_latency.insert(key, d);
        d
    }

    fn new_link(&mut self) -> LinkId {
        self.next_link += 1;
        LinkId(self.next_link)
    }

    /// Carry out node `i`'s actions and schedule its next wake-up.
    fn carry_out(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].core.poll_action() {
            self.act(i, action);
        }
        if !self.nodes[i].alive {
            return;
        }
        let at = self.nodes[i]
            .core
            .poll_timeout()
            .saturating_duration_since(self.epoch)
            .max(self.now);
        if self.nodes[i].wake != Some(at) {
            self.nodes[i].wake = Some(at);
            self.agenda.push(at, i, Event::Timer);
        }
    }

    fn act(&mut self, i: usize, action: Action) {
        match action {
            Action::Send { link, frame } => self.send(i, link, frame),
            Action::Dial { dial, peer, addrs } => {
                let target = addrs.iter().find_map(|a| self.by_addr.get(a).copied());
                match target {
                    Some(j) if self.nodes[j].alive => {
                        let lat = self.latency(i, j);
                        let id_j = self.nodes[j].core.id();
                        if peer.is_some_and(|p| p != id_j) {
                            let at = self.now + lat * 2;
                            self.agenda.push(
                                at,
                                i,
                                Event::DialFailed {
                                    dial,
                                    wrong_peer: true,
                                },
                            );
                            return;
                        }
                        let (la, lb) = (self.new_link(), self.new_link());
                        self.links.insert(
                            la,
                            LinkEnd {
                                node: i,
                                peer_link: lb,
                                latency: lat,
                                last: Duration::ZERO,
                            },
                        );
                        self.links.insert(
                            lb,
                            LinkEnd {
                                node: j,
                                peer_link: la,
                                latency: lat,
                                last: Duration::ZERO,
                            },
                        );
                        let at = self.now + lat * 2;
                        let id_i = self.nodes[i].core.id();
                        let (addr_i, addr_j) = (self.nodes[i].addr, self.nodes[j].addr);
                        self.agenda.push(
                            at,
                            j,
                            Event::LinkUp {
                                link: lb,
                                peer: id_i,
                                remote: addr_i,
                                inbound: true,
                                dial: None,
                            },
                        );
                        self.agenda.push(
                            at,
                            i,
                            Event::LinkUp {
                                link: la,
                                peer: id_j,
                                remote: addr_j,
                                inbound: false,
                                dial: Some(dial),
                            },
                        );
                    }
                    _ => {
                        let at = self.now + self.settings.dial_timeout;
                        self.agenda.push(
                            at,
                            i,
                            Event::DialFailed {
                                dial,
                                wrong_peer: false,
                            },
                        );
                    }
                }
            }
            Action::Close { link, reason } => {
                let idle = matches!(reason, CloseReason::Idle);
                if let Some(end) = self.links.remove(&link) {
                    self.agenda
                        .push(self.now, i, Event::LinkDown { link, idle });
                    if let Some(peer) = self.links.get(&end.peer_link) {
                        let at = (self.now + end.latency).max(end.last);
                        let node = peer.node;
                        self.agenda.push(
                            at,
                            node,
                            Event::LinkDown {
                                link: end.peer_link,
                                idle,
                            },
                        );
                    }
                }
            }
            Action::Store { op, what } => {
                let result = node::worker::run(&self.nodes[i].store, what);
                let at = self.now + self.settings.store_latency;
                self.agenda.push(at, i, Event::Store { op, result });
            }
            // Simulated nodes are told their addresses: nobody probes.
            Action::Probe { .. } => {}
            Action::Reply { token, reply } => {
                self.answered += 1;
                match self.nodes[i].answers.remove(&token) {
                    Some(answer) => answer.send(reply),
                    None => {
                        self.nodes[i].replies.insert(token, reply);
                    }
                }
            }
            Action::Stop => {
                // A graceful leave: the links close, and peers hear it
                // after the frames already on their way.
                let mut ends: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, e)| e.node == i)
                    .map(|(l, _)| l)
                    .collect();
                ends.sort();
                for link in ends {
                    self.act(
                        i,
                        Action::Close {
                            link,
                            reason: crate::node::core::CloseReason::Duplicate,
                        },
                    );
                }
                self.nodes[i].alive = false;
            }
        }
    }

    fn send(&mut self, i: usize, link: LinkId, frame: Frame) {
        let Some(end) = self.links.get(&link) else {
            return;
        };
        let (peer_link, latency, last) = (end.peer_link, end.latency, end.last);
        let Some(to) = self.links.get(&peer_link).map(|e| e.node) else {
            return;
        };
        let to_id = self.nodes[to].core.id();
        let frame = match &mut self.nodes[i].tap {
            Some(tap) => match tap.sending(to_id, frame) {
                Some(f) => f,
                None => return,
            },
            None => frame,
        };
        if let Some(w) = &mut self.watcher {
            w(i, to, &frame);
        }
        if self.settings.loss > 0.0 && self.rng.gen_bool(self.settings.loss.clamp(0.0, 1.0)) {
            return;
        }
        let at = (self.now + latency).max(last);
        if let Some(end) = self.links.get_mut(&link) {
            end.last = at;
        }
        self.agenda.push(
            at,
            to,
            Event::Deliver {
                link: peer_link,
                frame,
            },
        );
    }

    /// The index of the node with this id.
    pub fn index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.core.id() == id)
    }
}
