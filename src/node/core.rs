//! The node core: the whole node as one deterministic state machine.
//!
//! It composes the ring ([`Ring`]), the router ([`Router`]), the circuits
//! ([`Circuits`]), placement and replication ([`placement`]), the pace of
//! relay sampling ([`sampling`]) and address learning (`link::reach`), and
//! owns the tables that join them: which peer each link reaches, what is
//! waiting for a dial, which store operations are in flight and why.
//!
//! Its interface has the shape of quinn-proto's: everything that comes in
//! is a `handle_*` call with the time ([`Core::handle_link_up`],
//! [`Core::handle_frame`], [`Core::handle_store`],
//! [`Core::handle_request`], [`Core::handle_timeout`], …), and everything
//! that goes out is an [`Action`] from [`Core::poll_action`] (a frame for a
//! link, a dial, a close, a store operation, a dial-back probe, a reply to
//! the local user) or the next deadline from [`Core::poll_timeout`].
//! Nothing here reads a clock, touches a socket or a disk, spawns a task or
//! draws from the OS: time comes in with every call, randomness from a
//! generator seeded by the caller. The real node drives it over QUIC
//! (`node::driver`); the simulator drives thousands of them in one process
//! (`sim`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::circuit::{self, CircuitError, Circuits, Isolation};
use crate::crypto::Identity;
use crate::link::addr;
use crate::link::reach::{self, Learner, Responder};
use crate::ring::{self, Ring};
use crate::route::{self, Outcome, Router};
use crate::store;
use crate::token::{Token, Tokens};
use crate::wire::{Frame, KeyKind, NodeDescriptor, NodeId, PeerMessage, RequestId, RoutingKey};

mod dispatch;
mod links;
mod local;
pub mod onion;
pub mod placement;
pub mod sampling;
#[cfg(test)]
mod tests;
mod via;

pub use placement::StoreError;

use placement::{Placement, View};
use sampling::Sampler;

/// How long a graceful leave may spend handing blocks over.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);
/// A node still learning its address after this long says so in its log.
pub const LEARN_PATIENCE: Duration = Duration::from_secs(120);
/// A duplicate link stays open this long after another link to the same
/// peer won, so that what is already on its way arrives.
pub const LINK_GRACE: Duration = Duration::from_secs(2);
/// Two links to one peer that came up further apart than this were not
/// dialled at the same time from both sides: the later one is the peer
/// dialling again after losing the first (it restarted, or its end of
/// the link timed out), and wins whichever side dialled the first.
pub const LINK_RACE: Duration = Duration::from_secs(10);
/// A link no frame came in on for this long, and that carries no
/// circuit, is closed: keeping it open costs keep-alives both ways, and
/// the next message dials again (Tor closes idle channels the same way).
pub const LINK_IDLE: Duration = Duration::from_secs(120);
/// Verified descriptor signatures kept to skip re-verification.
const VERIFIED_CACHE: usize = 4096;
/// How often a node signs its descriptor again, so that the copies others
/// hold stay fresh ([`crate::crypto::DESCRIPTOR_LIFETIME`]).
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(crate::crypto::DESCRIPTOR_REFRESH);
/// Cache writes in flight at once; beyond this, blocks passing by are not
/// cached (caching is optional, and a slow disk must not make the node
/// hold blocks without bound).
const CACHE_WRITES: usize = 64;
/// Keys remembered as cached. Forgetting one only costs a cache hit.
const CACHE_INDEX: usize = 1 << 16;

/// A link, as the driver numbers it. Unique for the life of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// A dial the core asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialId(pub u64);

/// A store operation the core asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(pub u64);

/// Why the core closes a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer broke the protocol.
    Protocol,
    /// Another link to the same peer is kept.
    Duplicate,
    /// Nothing used it for [`LINK_IDLE`] and no circuit runs over it.
    Idle,
}

/// Work for the datastore. Reads and writes are the store's own: it checks
/// every block against its key both ways, and a `Put` is durable before
/// its result comes back.
#[derive(Debug)]
pub enum StoreOp {
    Get {
        kind: KeyKind,
        key: RoutingKey,
    },
    Put {
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    },
    Cache {
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    },
    Has {
        kind: KeyKind,
        key: RoutingKey,
    },
    Forget {
        kind: KeyKind,
        key: RoutingKey,
    },
    Stats,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The block does not match its key.
    BadBlock,
    /// The primary store is full.
    Full,
    /// The database failed.
    Db(String),
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreFailure::BadBlock => f.write_str("the block does not match its key"),
            StoreFailure::Full => f.write_str("the primary store is at its size limit"),
            StoreFailure::Db(e) => f.write_str(e),
        }
    }
}

/// A failing datastore is said in the log at most this often.
pub const STORE_WARN_EVERY: Duration = Duration::from_secs(60);
/// A full store is searched for blocks this node has no place for at
/// most this often...
pub const EVICT_EVERY: Duration = Duration::from_secs(1);
/// ... and gives up at most this many per search.
pub const EVICT_BATCH: usize = 64;

/// What a store operation came to.
#[derive(Debug)]
pub enum StoreResult {
    Block(Option<(Vec<u8>, store::Found)>),
    Put(Result<store::Put, StoreFailure>),
    Bool(bool),
    Stats(store::Stats),
    /// A cache write, done or not: nobody waits for it.
    Done,
    Failed(StoreFailure),
}

/// What the local user asks of the node.
#[derive(Debug)]
pub enum Request {
    Status,
    /// Store a block on its key's successor, found through the ring.
    Store {
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    },
    /// Whether the primary store holds a block.
    Holds {
        kind: KeyKind,
        key: RoutingKey,
    },
    /// Drop a block from the store and the cache.
    Forget {
        kind: KeyKind,
        key: RoutingKey,
    },
    /// A routed request from this node itself, with no circuit.
    Route {
        kind: KeyKind,
        key: RoutingKey,
        request: route::Request,
        id: Option<RequestId>,
    },
    /// A request through a circuit of `iso`.
    Circuit {
        iso: Isolation,
        kind: KeyKind,
        key: RoutingKey,
        request: route::Request,
    },
    /// Build a fresh circuit for `iso` and say its relays.
    BuildCircuit(Isolation),
    /// Make circuits for `iso` use exactly these relays (diagnostics).
    PinPath(Isolation, Vec<NodeId>),
    /// The relays circuits are drawn from.
    Sample,
    /// Leave the ring gracefully; [`Action::Stop`] follows the reply.
    Leave,
    /// Which node succeeds this ring point (diagnostics, measurements).
    Lookup([u8; 32]),
}

/// The answer to a [`Request`].
#[derive(Debug)]
pub enum Reply {
    Status(Box<super::Status>),
    Stored(Result<NodeId, StoreError>),
    Bool(bool),
    Routed(Outcome),
    Circuit(Result<Outcome, CircuitError>),
    Built(Result<Vec<NodeId>, CircuitError>),
    Sample(Vec<NodeId>),
    /// The answer to a [`Request::Lookup`]: the successor found (if any),
    /// the nodes asked and the queries that timed out on the way.
    Lookup {
        successor: Option<NodeId>,
        steps: u32,
        timeouts: u32,
    },
    Done,
}

/// What the driver must do.
#[derive(Debug)]
pub enum Action {
    /// Queue a frame on a link.
    Send {
        link: LinkId,
        frame: Frame,
    },
    /// Open a link: to `peer` at the first of `addrs` that answers (in
    /// this order), or to whoever is at a bootstrap address. Answer with
    /// [`Core::handle_link_up`] or [`Core::handle_dial_failed`].
    Dial {
        dial: DialId,
        peer: Option<NodeId>,
        addrs: Vec<SocketAddr>,
    },
    Close {
        link: LinkId,
        reason: CloseReason,
    },
    /// Answer with [`Core::handle_store`].
    Store {
        op: OpId,
        what: StoreOp,
    },
    /// Dial `target` back from a fresh socket as a reachability probe for
    /// `peer`, presenting `nonce` (`link::probe`).
    Probe {
        target: SocketAddr,
        peer: NodeId,
        nonce: [u8; 16],
    },
    /// The answer to the local request `token`.
    Reply {
        token: Token,
        reply: Reply,
    },
    /// The node left: close every link and stop.
    Stop,
}

/// What the core is set up with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address the node's socket is bound to.
    pub listen: SocketAddr,
    /// Whether the node may relay once it has an address others can reach
    /// (false: client only).
    pub relay: bool,
    pub replicas: usize,
    pub ring: ring::Config,
    pub route: route::Config,
    pub circuits: circuit::Settings,
    pub policy: addr::Policy,
    /// Addresses given (public, or a specific listen address).
    pub advertised: Vec<SocketAddr>,
    /// Set when the node must learn its address from its peers.
    pub learn: Option<reach::Settings>,
    pub bootstrap: Vec<(SocketAddr, Option<NodeId>)>,
    pub sampling: sampling::Pace,
    /// Relays' identities must solve an id puzzle of this many bits.
    pub id_puzzle_bits: u8,
    /// Descriptors known good, shared with other cores in this process (a
    /// simulation of many nodes checks each signature once, not once per
    /// node). `None`: the core keeps its own, bounded.
    pub verified: Option<Arc<Verified>>,
}

/// A set of descriptor hashes whose signatures checked out, shared by the
/// cores of one process. A signature check has one answer whoever makes
/// it, so sharing changes what it costs, not what it decides.
#[derive(Debug, Default)]
pub struct Verified(std::sync::Mutex<HashSet<[u8; 32]>>);

impl Verified {
    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(digest))
    }

    pub fn insert(&self, digest: [u8; 32]) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(digest);
        }
    }
}

/// A link to a peer.
#[derive(Debug, Clone, Copy)]
struct LinkInfo {
    id: LinkId,
    /// When it came up.
    since: Instant,
    /// When a frame last came in on it.
    used: Instant,
    /// The peer dialled us.
    inbound: bool,
    remote: SocketAddr,
    /// Replicas it pushed for keys this node has no place for.
    misplaced: u32,
}

/// Replicas a peer may push for keys this node has no place for (each
/// refused) before it is disconnected: views of the ring differ a little
/// while it changes, but not over and over.
pub const MISPLACED_STRIKES: u32 = 8;

/// Why a ring lookup was started.
enum LookupFor {
    Placement(placement::LookupId),
    /// A walk of the relay sampler: `targeted` if it aimed just past a
    /// relay already known (see [`sampling`]).
    Sample {
        targeted: bool,
    },
    /// The local user asked, with this token.
    Asked(Token),
}

/// Who waits for a routed request.
enum RouteWaiter {
    /// The local user, with this token.
    Local(Token),
    /// An exit stream of a circuit this node ends, with the circuits'
    /// token.
    Exit(Token),
}

/// What a dial was for.
enum Dialed {
    Peer(NodeId),
    Addr(SocketAddr, Option<NodeId>),
}

/// Why a store operation was asked for.
enum OpFor {
    RouterRead {
        id: RequestId,
        kind: KeyKind,
        key: RoutingKey,
    },
    RouterWrite {
        id: RequestId,
        key: RoutingKey,
        kind: KeyKind,
    },
    Cache,
    PushRead {
        push: RequestId,
        kind: KeyKind,
        key: RoutingKey,
    },
    Replica {
        from: NodeId,
        id: RequestId,
        kind: KeyKind,
        key: RoutingKey,
    },
    LocalWrite {
        token: Token,
        kind: KeyKind,
        key: RoutingKey,
    },
    Holds(Token),
    Forget {
        token: Token,
        kind: KeyKind,
        key: RoutingKey,
    },
    /// Room made in a full store: a block this node has no place for.
    Evict {
        kind: KeyKind,
        key: RoutingKey,
    },
    Status(Token),
}

pub struct Core {
    settings: Settings,
    /// Signs this node's descriptor when its addresses change.
    signer: Identity,
    /// The clock at construction, and the Unix time then: descriptors are
    /// dated from these, never from a clock read here.
    born: Instant,
    unix_born: u64,
    tokens: Tokens,
    next_id: u64,
    /// Secrets and choices others must not predict (sampling targets,
    /// probe nonces): seeded by the caller, from the OS in a real node.
    rng: StdRng,
    ring: Ring,
    router: Router,
    circuits: Circuits,
    placement: Placement,
    sampler: Sampler,
    /// The sample's size at the last timer, to notice it shrink.
    sample_seen: usize,
    learner: Option<Learner>,
    learn_warning: Option<Instant>,
    responder: Responder,
    advertised: Vec<SocketAddr>,
    /// The link in use for each peer.
    links: HashMap<NodeId, LinkInfo>,
    /// Every open link (a duplicate still draining included) and its peer.
    link_peers: HashMap<LinkId, NodeId>,
    /// Duplicate links to close, and when.
    retiring: VecDeque<(Instant, LinkId)>,
    /// Links this node closed for being unused, until they are down.
    idling: HashSet<LinkId>,
    /// When unused links are next looked for.
    next_link_sweep: Instant,
    /// Messages waiting for a link being dialled.
    dialing: HashMap<NodeId, Vec<PeerMessage>>,
    dialing_addr: HashMap<SocketAddr, Vec<PeerMessage>>,
    dials: HashMap<DialId, Dialed>,
    /// Hashes of descriptors whose signature checked out.
    verified: HashSet<[u8; 32]>,
    /// The keys of the primary store.
    held: BTreeSet<(KeyKind, RoutingKey)>,
    ops: HashMap<OpId, OpFor>,
    cache_writes: usize,
    /// Content-hash keys this node has put in its cache, newest last, at
    /// most [`CACHE_INDEX`]: a superset of what the cache may hold (the
    /// cache evicts on its own), so that a get for a key in neither this
    /// nor `held` is answered "not here" without asking the datastore.
    cached: HashSet<RoutingKey>,
    cached_order: VecDeque<RoutingKey>,
    lookups: HashMap<Token, LookupFor>,
    routed: HashMap<Token, RouteWaiter>,
    forwarded: u64,
    loops: u64,
    /// Ring lookups finished (sampling, placement, asked), and the nodes
    /// they asked in all.
    lookups_done: u64,
    lookup_steps: u64,
    misbehaving: u64,
    /// Replicas refused for keys this node has no place for.
    replicas_refused: u64,
    replicas_taken: u64,
    /// Writes the datastore failed (a full disk, say), and when that was
    /// last said in the log.
    store_write_failures: u64,
    store_warned: Option<(Instant, u64)>,
    /// Blocks removed from a full store because this node no longer has
    /// a place for them, and when the store was last searched for such.
    blocks_evicted: u64,
    evict_searched: Option<Instant>,
    /// Table requests through the guard, and fetches for others.
    via: via::Via,
    /// When this node signs its descriptor again.
    next_republish: Instant,
    /// When the current onion key was made (Unix time), the one before
    /// it, and whether they changed since last saved.
    onion_made: u64,
    previous_onion: Option<x25519_dalek::StaticSecret>,
    onion_changed: bool,
    /// The local user waiting for a leave to finish.
    leaving: Option<Token>,
    stopped: bool,
    actions: VecDeque<Action>,
}

/// A generator's seed drawn from `rng`.
fn seed(rng: &mut StdRng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rand::RngCore::fill_bytes(rng, &mut s);
    s
}

impl Core {
    /// A node that holds the blocks `held` (its primary store's keys),
    /// joining through `settings.bootstrap`. `seed` seeds every generator
    /// inside (the driver draws it from the OS; a simulation fixes it);
    /// `unix_now` is the Unix time at `now`, to date descriptors.
    pub fn new(
        identity: Identity,
        settings: Settings,
        held: impl IntoIterator<Item = (KeyKind, RoutingKey)>,
        seed32: [u8; 32],
        now: Instant,
        unix_now: u64,
    ) -> Result<Core, crate::crypto::Error> {
        let mut rng = StdRng::from_seed(seed32);
        let relaying = settings.relay && !settings.advertised.is_empty();
        let settings_relay = settings.relay;
        let desc = sign(&identity, &settings.advertised, unix_now)?;
        let ring_cfg = ring::Config {
            member: relaying,
            client: !settings.relay,
            ..settings.ring.clone()
        };
        let mut ring = Ring::new(desc, ring_cfg, now, seed(&mut rng));
        ring.join(settings.bootstrap.clone(), now);
        let circuit_settings = circuit::Settings {
            relay: relaying,
            ..settings.circuits.clone()
        };
        let signer = Identity::from_secret_bytes(&identity.secret_bytes());
        let mut circuits = Circuits::new(identity, circuit_settings, seed(&mut rng));
        circuits.set_clock(now, unix_now);
        let learner = match (&settings.learn, settings.relay && !relaying) {
            (Some(l), true) => Some(Learner::new(l.clone(), settings.policy)),
            _ => None,
        };
        Ok(Core {
            router: Router::new(settings.route.clone(), seed(&mut rng)),
            placement: Placement::new(settings.replicas),
            sampler: Sampler::new(now, settings.sampling),
            sample_seen: 0,
            learn_warning: learner.as_ref().map(|_| now + LEARN_PATIENCE),
            learner,
            responder: Responder::default(),
            advertised: settings.advertised.clone(),
            signer,
            born: now,
            unix_born: unix_now,
            tokens: Tokens::default(),
            next_id: 0,
            rng: StdRng::from_seed(seed(&mut rng)),
            ring,
            circuits,
            links: HashMap::new(),
            link_peers: HashMap::new(),
            retiring: VecDeque::new(),
            idling: HashSet::new(),
            next_link_sweep: now + LINK_IDLE / 4,
            dialing: HashMap::new(),
            dialing_addr: HashMap::new(),
            dials: HashMap::new(),
            verified: HashSet::new(),
            held: held.into_iter().collect(),
            ops: HashMap::new(),
            cache_writes: 0,
            cached: HashSet::new(),
            cached_order: VecDeque::new(),
            lookups: HashMap::new(),
            routed: HashMap::new(),
            forwarded: 0,
            loops: 0,
            lookups_done: 0,
            lookup_steps: 0,
            misbehaving: 0,
            replicas_refused: 0,
            replicas_taken: 0,
            store_write_failures: 0,
            store_warned: None,
            blocks_evicted: 0,
            evict_searched: None,
            via: via::Via::default(),
            next_republish: now + REPUBLISH_EVERY,
            onion_made: unix_now,
            previous_onion: None,
            // A relay saves its keys from the first run on.
            onion_changed: settings_relay,
            leaving: None,
            stopped: false,
            actions: VecDeque::new(),
            settings,
        })
    }

    pub fn id(&self) -> NodeId {
        self.ring.id()
    }

    /// The node's current descriptor.
    pub fn descriptor(&self) -> &NodeDescriptor {
        &self.ring.me().desc
    }

    /// Start from a persisted entry guard list.
    pub fn set_guards(&mut self, g: crate::circuit::guards::Guards) {
        self.circuits.set_guards(g);
    }

    /// The entry guard list's persisted form, if it changed since last
    /// taken.
    pub fn take_guards_changed(&mut self) -> Option<Vec<u8>> {
        self.circuits.take_guards_changed()
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The circuits: this node's own and the ones it relays (diagnostics
    /// and measurements).
    pub fn circuits(&self) -> &Circuits {
        &self.circuits
    }

    /// Install a settled ring state (see [`Ring::settle`]): where a
    /// simulation of a large, stable network starts.
    pub fn settle(
        &mut self,
        predecessor: Option<ring::Peer>,
        successors: Vec<ring::Peer>,
        fingers: Vec<Option<ring::Peer>>,
    ) {
        self.ring.settle(predecessor, successors, fingers);
    }

    /// Whether the node has stopped (after a leave).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Core::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Instant {
        let mut d = self.ring.poll_timeout().min(self.sampler.poll_timeout());
        let more = [
            self.router.poll_timeout(),
            self.circuits.poll_timeout(),
            self.placement.poll_timeout(),
            self.learner.as_ref().and_then(Learner::poll_timeout),
            self.learn_warning,
            self.retiring.front().map(|(t, _)| *t),
            Some(self.next_link_sweep),
            Some(self.next_republish),
            self.circuits.next_stale(),
            self.settings.relay.then(|| self.next_rotation()),
        ];
        for t in more.into_iter().flatten() {
            d = d.min(t);
        }
        d
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        if self.ring.poll_timeout() <= now {
            self.ring.handle_timeout(now);
        }
        if self.router.poll_timeout().is_some_and(|t| t <= now) {
            let mut ctx = dispatch::RouteCtx::new(&self.ring, self.settings.replicas);
            self.router.handle_timeout(now, &mut ctx);
        }
        if self.circuits.poll_timeout().is_some_and(|t| t <= now) {
            self.circuits.handle_timeout(now);
        }
        if self.placement.poll_timeout().is_some_and(|t| t <= now) {
            let view = View {
                ring: &self.ring,
                held: &self.held,
            };
            self.placement.handle_timeout(now, &view);
        }
        self.addresses_timeout(now);
        self.retire_links(now);
        self.close_unused_links(now);
        self.rotate_onion(now);
        if now >= self.next_republish {
            self.republish(now);
        }
        if self.circuits.next_stale().is_some_and(|t| t <= now) {
            self.circuits.expire_stale(now);
        }
        let mut known = self.circuits.sample().ids();
        if known.len() < self.sample_seen {
            // A relay left the sample (its link failed): look again.
            self.sampler.handle_lost();
        }
        self.sample_seen = known.len();
        let small = known.len() < sampling::ENOUGH;
        if self.ring.is_member() {
            // A member steps from itself too: its own successor is a relay
            // no other step may reach.
            known.push(self.id());
        }
        let joined = self.ring.is_joined();
        if let Some(look) = self
            .sampler
            .handle_timeout(now, &known, small, joined, &mut self.rng)
        {
            let token = self.tokens.issue();
            self.lookups.insert(
                token,
                LookupFor::Sample {
                    targeted: look.targeted,
                },
            );
            let from = self.circuits.sample().peers();
            self.ring.walk(look.target, token, from, now);
        }
        self.flush(now);
    }

    fn fresh(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn op(&mut self, why: OpFor, what: StoreOp) {
        let op = OpId(self.fresh());
        self.ops.insert(op, why);
        self.actions.push_back(Action::Store { op, what });
    }

    /// The Unix time at `now`, from the time at construction.
    fn unix_at(&self, now: Instant) -> u64 {
        self.unix_born
            .saturating_add(now.saturating_duration_since(self.born).as_secs())
    }
}

/// This node's descriptor advertising `addrs`: a relay's when there are
/// any, a client's (no address, no relay flag) when there are none.
fn sign(
    identity: &Identity,
    addrs: &[SocketAddr],
    unix_now: u64,
) -> Result<NodeDescriptor, crate::crypto::Error> {
    let flags = if addrs.is_empty() {
        0
    } else {
        NodeDescriptor::FLAG_RELAY
    };
    let addrs = addrs.iter().map(|a| crate::wire::NodeAddr(*a)).collect();
    identity.sign_descriptor(addrs, unix_now, flags)
}
