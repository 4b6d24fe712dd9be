//! Circuits: building them, relaying their cells, and the exit that starts
//! routed requests on the requester's behalf.
//!
//! The design follows Tor's (Dingledine, Mathewson and Syverson, "Tor: The
//! Second-Generation Onion Router", 2004, sections 4.2-4.4): a client builds
//! a circuit one hop at a time (telescoping), running the handshake of
//! `crypto::handshake` with each relay through the hops already built; a
//! relay knows only the link and circuit id before it and after it; the last
//! hop, the exit, reads relay messages and starts the request. Flow control
//! is a window per circuit and direction, opened by SENDME messages, as in
//! Tor's circuit-level windows.
//!
//! A sans-IO state machine, like `ring` and `route`: cells, link events and
//! routed-request outcomes come in with the time; cells to send, links to
//! open and routed requests to start come out of [`Circuits::poll_action`].
//! One value holds both roles a node plays: relay (and exit) for circuits
//! others built, and client for its own.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::crypto::Identity;
use crate::observe::{Observation, Observer};
use crate::ring::Peer;
use crate::route::{Outcome, Request};
use crate::token::Token;
use crate::wire::{
    Cell, CircId, DestroyReason, KeyKind, NodeAddr, NodeId, RoutingKey, MAX_HOPS, ONION_LEN,
};

mod client;
pub mod guards;
mod relay;
mod sample;
#[cfg(test)]
mod tests;
mod window;

pub use sample::Sample;

use client::ClientCirc;
use relay::RelayCirc;

/// Data cells one side may send on a circuit before the other side's
/// SENDME, at first and at least: 128 cells, about 500 KiB. The window
/// grows from here while the path carries more without queueing
/// (`window.rs`), up to [`MAX_CIRCUIT_WINDOW`].
pub const CIRCUIT_WINDOW: u32 = 128;
/// The most a circuit's window grows to: 1,024 cells, 4 MiB, what a path
/// of 190 ms round trip carries at 22 MB/s. Half a link's cell queue, so
/// that one circuit alone never fills a relay's queue.
pub const MAX_CIRCUIT_WINDOW: u32 = 1024;
/// A SENDME acknowledges this many data cells.
pub const SENDME_EVERY: u16 = 32;
/// Request streams open at once on one circuit, at the exit; a stream
/// counts until the client has been sent its END, so answers held back
/// by the window count too, and one circuit holds at most this many
/// blocks for a client that does not read.
pub const MAX_STREAMS: usize = 128;
/// By default, requests in progress at this exit for the circuits of one previous
/// hop: one link (one client, or one relay carrying many) cannot take the
/// exit's whole share of the node's request budget.
pub const EXIT_ROUTES_PER_LINK: usize = 256;
/// By default, answers an exit holds back for all its clients at once, in bytes;
/// beyond it new streams are refused (REJECTED) until readers catch up.
pub const MAX_EXIT_QUEUED: usize = 64 << 20;
/// By default, an exit circuit whose answers have waited this long for a SENDME is
/// torn down: its client stopped reading, or never meant to.
pub const EXIT_STALL: Duration = Duration::from_secs(60);
/// How long a relay this node itself failed to reach (a dial that failed,
/// a link that broke) is left out of new circuits. Only first-hand
/// failures count: a relay's word that another is down is not taken, or a
/// relay could steer clients away from every exit but its accomplices.
pub const DOWN_FOR: Duration = Duration::from_secs(300);
/// Relays remembered as down at most (the sample holds far fewer; links
/// are bounded too).
const MAX_DOWN: usize = 4096;
/// Circuits a relay carries at once, and on one link.
pub const MAX_RELAY_CIRCUITS: usize = 4096;
pub const MAX_CIRCUITS_PER_LINK: usize = 512;
/// CREATEs one link may send: a burst of this many, then
/// [`CREATE_RATE`] a second. Each costs the relay a key agreement, so a
/// peer cannot spend the relay's CPU on handshakes without bound; beyond
/// it a CREATE is answered DESTROY (RESOURCE_LIMIT) without one.
pub const CREATE_BURST: f64 = 64.0;
pub const CREATE_RATE: f64 = 16.0;

/// A token bucket: what a peer may ask of a node, a burst at once and a
/// steady rate after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens at `now`.
    pub(crate) fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Refill at `rate` a second up to `burst`, then spend one token;
    /// false if there is none.
    pub(crate) fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}
/// Relay descriptors a node keeps to choose circuits from.
pub const SAMPLE_SIZE: usize = 64;
/// Relays of one public network (see [`SAMPLE_NETWORKS`]) the sample
/// holds at most, as go-ethereum's discovery table keeps at most 2 nodes
/// of a /24 per bucket.
pub const SAMPLE_PER_NETWORK: usize = 2;
/// The networks [`SAMPLE_PER_NETWORK`] counts in: IPv4 /24, IPv6 /48.
pub const SAMPLE_NETWORKS: Networks = Networks { v4: 24, v6: 48 };
/// Isolation keys with a circuit in use at once, per client. A new key
/// beyond this retires the oldest key's circuit (it finishes what it
/// carries, then closes), so a local application that invents credentials
/// cannot make the node hold circuits without bound.
pub const MAX_ISOLATIONS: usize = 64;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Relays in each circuit the node builds, 1 to [`MAX_HOPS`].
    pub hops: usize,
    /// Whether this node relays circuits for others.
    pub relay: bool,
    /// A circuit takes new requests for this long, then is replaced.
    pub lifetime: Duration,
    /// ... or for this many requests, whichever comes first.
    pub requests: u32,
    /// How long a create or an extend may take.
    pub hop_timeout: Duration,
    /// Builds tried for one circuit, each with fresh relays in place of the
    /// ones that failed.
    pub build_attempts: u32,
    /// How long a request on a circuit may take, end to end.
    pub request_timeout: Duration,
    /// Two relays of one circuit may not share a network this wide: the
    /// leading bits of an IPv4 and an IPv6 address (Tor's rule is /16 and
    /// /48; 0 turns the rule off for that family).
    pub networks: Networks,
    /// Whether the first relay of every circuit comes from the entry
    /// guards ([`guards`]); off only where a test needs every relay drawn
    /// afresh.
    pub guards: bool,
    /// Sees the relay messages this node reads (tests, debugging).
    pub observer: Option<Observer>,
    /// As an exit: how long answers may wait for a client's SENDME
    /// before the circuit is torn down ([`EXIT_STALL`])...
    pub exit_stall: Duration,
    /// ... how many bytes of unread answers all exit circuits may hold
    /// ([`MAX_EXIT_QUEUED`])...
    pub exit_unread: usize,
    /// ... and how many requests the circuits of one previous hop may
    /// have in progress ([`EXIT_ROUTES_PER_LINK`]).
    pub exit_routes_per_link: usize,
    /// As a relay: circuits relayed at once ([`MAX_RELAY_CIRCUITS`])...
    pub relay_circuits: usize,
    /// ... and of those, opened by one link ([`MAX_CIRCUITS_PER_LINK`]).
    pub circuits_per_link: usize,
}

/// The width of a network, in leading bits, per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Networks {
    pub v4: u8,
    pub v6: u8,
}

impl Default for Networks {
    fn default() -> Self {
        Networks { v4: 16, v6: 48 }
    }
}

impl Networks {
    /// The networks `peer`'s public addresses are in. Loopback and private
    /// addresses are in none: they mean something only inside one test or
    /// home network, whose operator runs every node in it.
    fn of(&self, peer: &Peer) -> Vec<(bool, u128)> {
        use crate::link::addr::{scope, Scope};
        let mut out = Vec::new();
        for a in &peer.desc.addrs {
            let ip = a.0.ip().to_canonical();
            if scope(ip) != Some(Scope::Global) {
                continue;
            }
            let net = match ip {
                std::net::IpAddr::V4(v4) if self.v4 > 0 => {
                    let bits = u32::from(v4) >> (32 - u32::from(self.v4.min(32)));
                    (false, u128::from(bits))
                }
                std::net::IpAddr::V6(v6) if self.v6 > 0 => {
                    (true, u128::from(v6) >> (128 - u32::from(self.v6.min(128))))
                }
                _ => continue,
            };
            if !out.contains(&net) {
                out.push(net);
            }
        }
        out
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hops: 3,
            relay: true,
            lifetime: Duration::from_secs(600),
            requests: 2048,
            hop_timeout: Duration::from_secs(5),
            build_attempts: 8,
            request_timeout: Duration::from_secs(45),
            networks: Networks::default(),
            guards: true,
            observer: None,
            exit_stall: EXIT_STALL,
            exit_unread: MAX_EXIT_QUEUED,
            exit_routes_per_link: EXIT_ROUTES_PER_LINK,
            relay_circuits: MAX_RELAY_CIRCUITS,
            circuits_per_link: MAX_CIRCUITS_PER_LINK,
        }
    }
}

/// Which requests may share a circuit. Requests with different isolation
/// never share one, so that the exit cannot link them (as Tor isolates
/// streams by SOCKS credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Isolation(pub u64);

impl Isolation {
    /// A key of its own for `label` under this one (a site under a SOCKS
    /// session's credentials, say).
    pub fn within(self, label: &[u8]) -> Isolation {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"umbra isolation within\0");
        h.update(self.0.to_be_bytes());
        h.update(label);
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        Isolation(u64::from_be_bytes(first))
    }
}

/// Why a request through a circuit failed. None of these names a hop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CircuitError {
    #[error("not enough relays known to build a circuit: have {have}, need {need}")]
    NotEnoughRelays { have: usize, need: usize },
    #[error("no entry guard usable now, and no new one may be picked before tomorrow")]
    NoGuard,
    #[error("could not build a circuit after {attempts} attempts")]
    BuildFailed { attempts: u32 },
    #[error("the circuit closed before the answer came back")]
    Closed,
    #[error("the request timed out on its circuit")]
    Timeout,
    #[error("the exit refused the request as malformed")]
    BadRequest,
}

/// What the node must do.
#[derive(Debug)]
pub enum Action {
    /// Send a cell on the link to `to`.
    Send { to: NodeId, cell: Cell },
    /// Open a link to `to`; answer with [`Circuits::link_up`] or
    /// [`Circuits::link_failed`].
    Connect { to: NodeId, addrs: Vec<NodeAddr> },
    /// As an exit: start a routed request and report its outcome with
    /// [`Circuits::route_done`].
    Route {
        token: Token,
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
    },
    /// A request made with [`Circuits::request`] ended.
    Done {
        token: Token,
        result: Result<Outcome, CircuitError>,
    },
    /// A circuit asked for with [`Circuits::build`] is ready (its relays,
    /// first hop first) or could not be built.
    Built {
        token: Token,
        result: Result<Vec<NodeId>, CircuitError>,
    },
    /// The peer broke the circuit protocol.
    Misbehaved { peer: NodeId, why: &'static str },
}

/// Counters for the status report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Circuits this node relays (or exits) for others.
    pub relaying: usize,
    /// Circuits of this node's own, built or being built.
    pub own: usize,
    /// Own circuits completed since start.
    pub built: u64,
    /// Build attempts that failed (and were retried or given up).
    pub build_failures: u64,
    /// Cells whose layer did not authenticate here.
    pub bad_cells: u64,
    /// CREATEs refused for coming faster than [`CREATE_RATE`] on a link.
    pub creates_refused: u64,
    /// Circuits destroyed here for asking to extend more than
    /// [`MAX_EXTENDS`](crate::wire::MAX_EXTENDS) times.
    pub long_circuits: u64,
    /// Relay descriptors in the sample.
    pub sample: usize,
    /// Exit streams refused because the circuit had [`MAX_STREAMS`]
    /// unanswered or unread, its link [`EXIT_ROUTES_PER_LINK`] in
    /// progress, or the exits held [`MAX_EXIT_QUEUED`].
    pub exit_refused: u64,
    /// Exit circuits torn down after their answers waited
    /// [`EXIT_STALL`] for a SENDME.
    pub exits_stalled: u64,
    /// Guards dropped for a success rate under the path-bias cutoff.
    pub guards_dropped: u64,
}

/// A circuit as this node numbers it, relayed or its own: a local handle,
/// never on the wire (that is [`CircId`], one per link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u64);

/// A circuit on one link: the peer and the id on that link.
type LinkCirc = (NodeId, CircId);

pub struct Circuits {
    settings: Settings,
    identity: Identity,
    /// The onion key before the last rotation, still answered.
    previous_onion: Option<x25519_dalek::StaticSecret>,
    me: NodeId,
    rng: StdRng,
    /// Open links, and whether this node dialled each (which half of the
    /// circuit id space is ours on it).
    links: HashMap<NodeId, bool>,
    /// What each link may still spend on CREATEs: tokens, as of when.
    creates: HashMap<NodeId, Bucket>,
    sample: Sample,
    guards: guards::Guards,
    /// Unix time at `clock.0`, to date guards.
    clock: (Instant, u64),
    /// Relayed circuits, by a local number, and the two indexes into them.
    relayed: BTreeMap<Slot, RelayCirc>,
    by_prev: HashMap<LinkCirc, Slot>,
    by_next: HashMap<LinkCirc, Slot>,
    next_local: Slot,
    /// Exit streams waiting for a routed request: token to (circuit, stream).
    routes: HashMap<Token, (Slot, crate::wire::StreamId)>,
    /// Bytes the exits hold back for their clients, all circuits.
    exit_queued: usize,
    /// Relays this node failed to reach itself, left out of new circuits
    /// until the time given ([`DOWN_FOR`]).
    down: HashMap<NodeId, Instant>,
    tokens: crate::token::Tokens,
    /// The node's own circuits, by a local number, and by their first
    /// hop's link and id once they have one.
    own: BTreeMap<Slot, ClientCirc>,
    own_links: HashMap<LinkCirc, Slot>,
    /// The circuit that takes new requests, per isolation key.
    current: HashMap<Isolation, Slot>,
    /// Paths pinned by hand for an isolation key (diagnostics and tests).
    pinned: HashMap<Isolation, Vec<NodeId>>,
    actions: VecDeque<Action>,
    stats: Stats,
}

impl Circuits {
    pub fn new(identity: Identity, settings: Settings, seed: [u8; 32]) -> Circuits {
        let settings = Settings {
            hops: settings.hops.clamp(1, MAX_HOPS),
            ..settings
        };
        Circuits {
            me: identity.id(),
            identity,
            previous_onion: None,
            settings,
            rng: StdRng::from_seed(seed),
            links: HashMap::new(),
            creates: HashMap::new(),
            sample: Sample::default(),
            guards: guards::Guards::default(),
            clock: (Instant::now(), 0),
            relayed: BTreeMap::new(),
            by_prev: HashMap::new(),
            by_next: HashMap::new(),
            next_local: Slot(0),
            routes: HashMap::new(),
            exit_queued: 0,
            down: HashMap::new(),
            tokens: crate::token::Tokens::default(),
            own: BTreeMap::new(),
            own_links: HashMap::new(),
            current: HashMap::new(),
            pinned: HashMap::new(),
            actions: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn new_slot(&mut self) -> Slot {
        let s = self.next_local;
        self.next_local = Slot(s.0.wrapping_add(1));
        s
    }

    /// Start or stop relaying for others (a node that learns its address
    /// starts once others can reach it). Circuits already relayed go on.
    pub fn set_relay(&mut self, relay: bool) {
        self.settings.relay = relay;
    }

    pub fn sample(&self) -> &Sample {
        &self.sample
    }

    /// Put a relay in the sample (or refresh it); false if it was not
    /// taken (this node itself, not a relay, a stale descriptor, or its
    /// network is full).
    pub fn add_relay(&mut self, peer: Peer, now: Instant) -> bool {
        let fresh = crate::crypto::descriptor_fresh(&peer.desc, self.unix_at(now));
        if fresh
            && peer.id != self.me
            && peer.desc.flags & crate::wire::NodeDescriptor::FLAG_RELAY != 0
        {
            self.sample.insert(peer, now)
        } else {
            false
        }
    }

    /// Answer handshakes with `current` from now on, and with `previous`
    /// (the key before, if any) too: a rotation, or the keys a relay
    /// saved.
    pub fn set_onion_keys(
        &mut self,
        current: x25519_dalek::StaticSecret,
        previous: Option<x25519_dalek::StaticSecret>,
    ) {
        self.identity.replace_onion(current);
        self.previous_onion = previous;
    }

    /// `peer` showed a newer descriptor (a new onion key, new addresses):
    /// the sample and the guards take it.
    pub fn update_descriptor(&mut self, peer: &Peer) {
        self.sample.update(peer);
        self.guards.update(peer);
    }

    /// Drop sampled relays whose descriptors went stale; how many.
    pub fn expire_stale(&mut self, now: Instant) -> usize {
        let unix = self.unix_at(now);
        self.sample.expire(unix)
    }

    /// When a descriptor in the sample next goes stale (none: nothing to
    /// expire); [`Circuits::expire_stale`] then has work to do.
    pub fn next_stale(&self) -> Option<Instant> {
        let at = self.sample.first_stale()?;
        let (now, unix) = self.clock;
        Some(now + Duration::from_secs(at.saturating_sub(unix)))
    }

    /// The Unix time at `now`, from which guards are dated.
    pub fn set_clock(&mut self, now: Instant, unix: u64) {
        self.clock = (now, unix);
    }

    fn unix_at(&self, now: Instant) -> u64 {
        self.clock.1 + now.saturating_duration_since(self.clock.0).as_secs()
    }

    /// The entry guards, as persisted (see [`guards::Guards::encode`]).
    pub fn guards(&self) -> &guards::Guards {
        &self.guards
    }

    /// The entry guard in use now, if there is one (none is picked here).
    pub fn guard_in_use(&self, now: Instant) -> Option<&crate::ring::Peer> {
        if !self.settings.guards {
            return None;
        }
        self.guards.in_use(now, self.unix_at(now))
    }

    /// Start from a persisted guard list.
    pub fn set_guards(&mut self, g: guards::Guards) {
        self.guards = g;
    }

    /// The guard list changed since last taken: its persisted form.
    pub fn take_guards_changed(&mut self) -> Option<Vec<u8>> {
        if !self.guards.dirty() {
            return None;
        }
        self.guards.saved();
        Some(self.guards.encode())
    }

    pub fn stats(&self) -> Stats {
        Stats {
            relaying: self.relayed.len(),
            own: self.own.len(),
            sample: self.sample.len(),
            guards_dropped: self.guards.dropped,
            ..self.stats
        }
    }

    /// Bytes the exits hold back for clients that have not read them.
    pub fn exit_queued(&self) -> usize {
        self.exit_queued
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Circuits::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stall = self.settings.exit_stall;
        let relay = self.relayed.values().filter_map(|c| c.deadline(stall));
        let own = self.own.values().filter_map(|c| c.deadline(&self.settings));
        relay.chain(own).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.relay_timeouts(now);
        self.client_timeouts(now);
    }

    // ---- links ----

    /// A link to `peer` is up; `we_dialed` says which half of the circuit
    /// ids is ours on it.
    pub fn link_up(&mut self, peer: NodeId, we_dialed: bool, now: Instant) {
        self.links.insert(peer, we_dialed);
        // Reachable again (restarted, or back from a partition): a
        // candidate for new circuits at once.
        self.down.remove(&peer);
        self.creates
            .entry(peer)
            .or_insert(Bucket::full(CREATE_BURST, now));
        self.relay_link_up(peer, now);
        self.client_link_up(peer, now);
    }

    /// A link this module asked for could not be opened.
    pub fn link_failed(&mut self, peer: NodeId, now: Instant) {
        if self.links.contains_key(&peer) {
            return;
        }
        self.note_down(peer, now);
        self.relay_link_failed(peer);
        self.client_link_failed(peer, now);
    }

    /// This node could not reach `peer` (its own dial failed, or its link
    /// broke): no new circuit goes through it for [`DOWN_FOR`].
    pub fn note_down(&mut self, peer: NodeId, now: Instant) {
        self.down.retain(|_, until| *until > now);
        if self.down.len() < MAX_DOWN || self.down.contains_key(&peer) {
            self.down.insert(peer, now + DOWN_FOR);
        }
    }

    /// Relays left out of new circuits at `now`.
    fn down_at(&self, now: Instant) -> impl Iterator<Item = NodeId> + '_ {
        self.down
            .iter()
            .filter(move |(_, until)| **until > now)
            .map(|(id, _)| *id)
    }

    /// The link to `peer` closed: every circuit through it is gone.
    pub fn link_down(&mut self, peer: NodeId, now: Instant) {
        self.links.remove(&peer);
        self.creates.remove(&peer);
        self.relay_link_down(peer);
        self.client_link_down(peer, now);
    }

    /// A fresh circuit id on the link to `peer`, from our half.
    fn alloc_circ(&mut self, peer: NodeId) -> Option<CircId> {
        let we_dialed = *self.links.get(&peer)?;
        loop {
            let raw: u32 = self.rng.gen();
            let id = if we_dialed {
                raw | CircId::DIALER_BIT
            } else {
                raw & !CircId::DIALER_BIT
            };
            let c = CircId(id);
            if c != CircId::NONE
                && !self.by_next.contains_key(&(peer, c))
                && !self.own_links.contains_key(&(peer, c))
            {
                return Some(c);
            }
        }
    }

    /// Whether `circ` is from the half of the id space `peer` allocates.
    fn theirs(&self, peer: NodeId, circ: CircId) -> bool {
        match self.links.get(&peer) {
            Some(&we_dialed) => (circ.0 & CircId::DIALER_BIT != 0) != we_dialed,
            None => false,
        }
    }

    /// Spend one of `peer`'s CREATE tokens; false if it has none left.
    fn create_allowed(&mut self, peer: NodeId, now: Instant) -> bool {
        self.creates
            .get_mut(&peer)
            .is_some_and(|b| b.take(now, CREATE_RATE, CREATE_BURST))
    }

    /// Whether any circuit, relayed or our own, runs over the link to
    /// `peer`.
    pub fn carries(&self, peer: NodeId) -> bool {
        self.circuits_on(peer) > 0 || self.own_links.keys().any(|(p, _)| *p == peer)
    }

    fn circuits_on(&self, peer: NodeId) -> usize {
        self.by_prev.keys().filter(|(p, _)| *p == peer).count()
            + self.by_next.keys().filter(|(p, _)| *p == peer).count()
    }

    fn observe(&self, o: Observation<'_>) {
        if let Some(obs) = &self.settings.observer {
            obs.observe(&o);
        }
    }

    fn send(&mut self, to: NodeId, cell: Cell) {
        self.actions.push_back(Action::Send { to, cell });
    }

    fn destroy(&mut self, to: NodeId, circ: CircId, reason: DestroyReason) {
        self.send(to, Cell::Destroy { circ, reason });
    }

    // ---- cells ----

    /// A relay cell (`early`: a RELAY_EARLY one) from `peer`.
    fn relay_cell(
        &mut self,
        peer: NodeId,
        circ: CircId,
        onion: Box<[u8; ONION_LEN]>,
        early: bool,
        now: Instant,
    ) {
        if let Some(&local) = self.by_prev.get(&(peer, circ)) {
            self.relay_forward(local, onion, early, now);
        } else if let Some(&local) = self.by_next.get(&(peer, circ)) {
            if early {
                // Only the client sends them, toward the exit.
                self.relay_teardown(local, None, DestroyReason::PROTOCOL);
            } else {
                self.relay_backward(local, onion);
            }
        } else if let Some(&local) = self.own_links.get(&(peer, circ)) {
            if early {
                self.close_broken(local);
            } else {
                self.client_cell(local, onion, now);
            }
        }
        // Otherwise the circuit is gone and a destroy crossed this cell on
        // the way: drop it.
    }

    /// A cell from `peer`, whose link authenticated it.
    pub fn handle_cell(&mut self, peer: NodeId, cell: Cell, now: Instant) {
        let circ = cell.circ();
        match cell {
            Cell::Padding { .. } | Cell::Unrecognized { .. } => {}
            Cell::Create { circ, body } => self.relay_create(peer, circ, body, now),
            Cell::Created { circ, body } => {
                if let Some(&local) = self.by_next.get(&(peer, circ)) {
                    self.relay_created(local, body);
                } else if let Some(&local) = self.own_links.get(&(peer, circ)) {
                    self.client_created(local, body, now);
                }
            }
            Cell::Relay { circ, onion } => self.relay_cell(peer, circ, onion, false, now),
            Cell::RelayEarly { circ, onion } => self.relay_cell(peer, circ, onion, true, now),
            Cell::Destroy { reason, .. } => {
                if let Some(&local) = self.by_prev.get(&(peer, circ)) {
                    self.relay_teardown(local, Some(relay::Side::Prev), reason);
                } else if let Some(&local) = self.by_next.get(&(peer, circ)) {
                    self.relay_teardown(local, Some(relay::Side::Next), reason);
                } else if let Some(&local) = self.own_links.get(&(peer, circ)) {
                    self.client_failed(local, now);
                }
            }
        }
    }
}
