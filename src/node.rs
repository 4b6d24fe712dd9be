//! A running node: the ring, the links and the datastore wired together.
//!
//! One task owns all the node's state and selects over its inputs: events
//! from link tasks, finished dials, accepted links, commands from handles
//! (status, store, leave) and the ring's timer. Everything else talks to it
//! through channels (mini-redis style). The ring decides whom to talk to;
//! this task dials links on demand, verifies every descriptor before the
//! ring sees it, and keeps each block on its key's successor and the next
//! `replicas - 1` nodes as membership changes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::circuit::{self, CircuitError, Circuits, Isolation};
use crate::crypto::{verify_descriptor, Identity};
use crate::link::addr::{self, canonical};
use crate::link::reach::{self, Learner, Responder};
use crate::link::{self, close, Accepted, Endpoint, Link};
use crate::ring::{Dest, Event as RingEvent, Peer, Ring};
use crate::route::{self, Outcome, Request, Router};
use crate::store::{self, Found, Store};
use crate::token::Token;
use crate::wire::{
    Frame, KeyKind, NodeAddr, NodeDescriptor, NodeId, PeerMessage, RequestId, RoutingKey,
};

mod config;

pub use config::{Bootstrap, Config, Error as ConfigError};

/// How long a replica push may wait for its acknowledgement.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful leave may spend handing blocks over.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);
/// Replication waits this long after a membership change, so that a burst
/// of changes causes one pass.
const REPLICATE_DELAY: Duration = Duration::from_millis(300);
/// A node still learning its address after this long says so in its log.
const LEARN_PATIENCE: Duration = Duration::from_secs(120);
/// Verified descriptor signatures kept to skip re-verification.
const VERIFIED_CACHE: usize = 4096;
/// Replica pushes awaiting acknowledgement at once; the rest wait their
/// turn, so replication after a membership change is a stream, not a flood.
const PUSHES_IN_FLIGHT: usize = 16;
/// Lookups for blocks held here but owned elsewhere, at once.
const PLACE_LOOKUPS: usize = 32;
/// Relay sampling: a lookup of a random ring point this often while the
/// sample is small, and a slower refresh once it has enough to choose from.
const SAMPLE_FAST: Duration = Duration::from_millis(200);
const SAMPLE_SLOW: Duration = Duration::from_secs(10);
const SAMPLE_ENOUGH: usize = 24;

/// Where the outcome of a store goes: the id of the node that acknowledged.
type StoreDone = oneshot::Sender<Result<NodeId, StoreError>>;

/// A finished dial: the node wanted, the bootstrap address dialled (if it
/// was one), and the outcome.
type DialResult = (
    Option<NodeId>,
    Option<SocketAddr>,
    Result<Link, link::Error>,
);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("data directory {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("datastore: {0}")]
    Store(#[from] store::Error),
    #[error("link: {0}")]
    Link(#[from] link::Error),
    #[error("cannot sign the node descriptor: {0}")]
    Identity(String),
    #[error("the node has stopped")]
    Stopped,
}

/// Why storing a block through the ring failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the block does not match its key")]
    BadBlock,
    #[error("no route to the key's successor")]
    NoRoute,
    #[error("the key's successor refused the block")]
    Rejected,
    #[error("timed out")]
    Timeout,
    #[error("the node has stopped")]
    Stopped,
}

/// Why a routed request failed, as the user sees it. Each is distinct, and
/// none says where in the network the failure happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("data not found: the key's successor does not hold it")]
    DataNotFound,
    #[error("route not found: every path toward the key failed")]
    RouteNotFound,
    #[error("timed out")]
    Timeout,
    #[error("rejected: the network is overloaded, try again later")]
    Rejected,
    #[error("the block does not match its key")]
    BadBlock,
    #[error("circuit: {0}")]
    Circuit(CircuitError),
    #[error("the node has stopped")]
    Stopped,
}

impl From<CircuitError> for RequestError {
    fn from(e: CircuitError) -> RequestError {
        match e {
            CircuitError::Timeout => RequestError::Timeout,
            e => RequestError::Circuit(e),
        }
    }
}

/// How a node knows the addresses it advertises.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Reachability {
    /// Given: `public_addr`, or a specific listen address.
    Configured,
    /// Learning from peers; not relaying yet.
    Learning,
    /// Learned from peers and tested by a dial-back.
    Learned,
    /// Peers agreed on an address but no dial-back reached this node
    /// there (a NAT or a firewall): it does not relay.
    Unreachable,
    /// Relays nothing and advertises no address.
    ClientOnly,
}

/// What `GET /status` and `umbra status --json` report. Stable for
/// scripts; documented in README.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// Node id, hex.
    pub id: String,
    pub listen: SocketAddr,
    /// The addresses in this node's descriptor: where others dial it.
    pub addresses: Vec<SocketAddr>,
    pub reachability: Reachability,
    pub joined: bool,
    pub predecessor: Option<String>,
    /// Successor list, nearest first, hex ids.
    pub successors: Vec<String>,
    /// Distinct nodes in the finger table.
    pub fingers: usize,
    pub links: usize,
    pub blocks_stored: u64,
    pub bytes_stored: u64,
    pub blocks_cached: u64,
    pub bytes_cached: u64,
    /// Peers disconnected or penalised for breaking the protocol.
    pub misbehaving_peers: u64,
    /// Routed requests (get, put) this node has sent on, its own included.
    pub requests_forwarded: u64,
    /// Loop answers this node has received.
    pub loops_received: u64,
    /// Whether this node relays circuits now (false: client only, or no
    /// address others can reach yet).
    pub relay: bool,
    /// Circuits this node carries for others, as relay or exit.
    pub circuits_relayed: usize,
    /// This node's own circuits, built or being built.
    pub circuits_own: usize,
    /// Own circuits built since start.
    pub circuits_built: u64,
    /// Cells whose onion layer failed to authenticate here.
    pub bad_cells: u64,
    /// Relays in the sample circuits are chosen from.
    pub relay_sample: usize,
}

pub(crate) enum Command {
    Status(oneshot::Sender<Status>),
    Store {
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
        done: StoreDone,
    },
    Holds(KeyKind, RoutingKey, oneshot::Sender<bool>),
    Route {
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
        id: Option<RequestId>,
        done: oneshot::Sender<Outcome>,
    },
    Forget(KeyKind, RoutingKey, oneshot::Sender<bool>),
    Circuit {
        iso: Isolation,
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
        done: oneshot::Sender<Result<Outcome, CircuitError>>,
    },
    BuildCircuit(
        Isolation,
        oneshot::Sender<Result<Vec<NodeId>, CircuitError>>,
    ),
    PinPath(Isolation, Vec<NodeId>),
    Sample(oneshot::Sender<Vec<NodeId>>),
    Leave(oneshot::Sender<()>),
    Crash(oneshot::Sender<()>),
}

/// A handle on a running node.
pub struct NodeHandle {
    pub id: NodeId,
    pub listen: SocketAddr,
    cmd: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// Send the node task a command carrying a reply channel, and wait for the
/// reply; `None` if the node has stopped.
async fn ask<T>(
    cmd: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    cmd.send(make(tx)).await.ok()?;
    rx.await.ok()
}

/// A cheap, cloneable way to make requests through a node: through a
/// circuit (the default), or directly from the node (not anonymous: for
/// measurements and tests of routing).
#[derive(Clone)]
pub struct NodeClient {
    cmd: mpsc::Sender<Command>,
    via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Circuit(Isolation),
    Direct,
}

impl NodeClient {
    /// The same node, with requests on circuits of their own isolation
    /// key: they never share a circuit with requests of another key.
    pub fn isolated(&self, iso: Isolation) -> NodeClient {
        NodeClient {
            cmd: self.cmd.clone(),
            via: Via::Circuit(iso),
        }
    }

    /// The same node, sending requests from itself with no circuit. Every
    /// node on the way can see that this node asked: use it only to
    /// measure, or to test routing.
    pub fn direct(&self) -> NodeClient {
        NodeClient {
            cmd: self.cmd.clone(),
            via: Via::Direct,
        }
    }

    async fn through_circuit(
        &self,
        iso: Isolation,
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
    ) -> Result<Outcome, RequestError> {
        // A circuit that breaks under a request is replaced: try once more
        // on a fresh one.
        let mut tries = 0;
        loop {
            tries += 1;
            let r = ask(&self.cmd, |done| Command::Circuit {
                iso,
                kind,
                key,
                request: request.clone(),
                done,
            })
            .await
            .ok_or(RequestError::Stopped)?;
            match r {
                Err(CircuitError::Closed) if tries < 2 => continue,
                r => return r.map_err(RequestError::from),
            }
        }
    }

    async fn route(
        &self,
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
        id: Option<RequestId>,
    ) -> Result<Outcome, RequestError> {
        ask(&self.cmd, |done| Command::Route {
            kind,
            key,
            request,
            id,
            done,
        })
        .await
        .ok_or(RequestError::Stopped)
    }

    /// Fetch a block by routing a get toward its key. The block is verified
    /// against the key before it is returned.
    pub async fn get_block(&self, kind: KeyKind, key: RoutingKey) -> Result<Vec<u8>, RequestError> {
        match self.via {
            Via::Direct => self.get_block_as(kind, key, None).await,
            Via::Circuit(iso) => {
                let outcome = self.through_circuit(iso, kind, key, Request::Get).await?;
                found(kind, &key, outcome)
            }
        }
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, Error> {
        ask(&self.cmd, Command::Status).await.ok_or(Error::Stopped)
    }

    /// A direct get (no circuit) with a chosen request id (diagnostics and
    /// tests of loop detection).
    pub async fn get_block_as(
        &self,
        kind: KeyKind,
        key: RoutingKey,
        id: Option<RequestId>,
    ) -> Result<Vec<u8>, RequestError> {
        found(kind, &key, self.route(kind, key, Request::Get, id).await?)
    }

    /// Insert a block by routing a put to its key's successor, which stores
    /// and replicates it.
    pub async fn put_block(
        &self,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    ) -> Result<(), RequestError> {
        if !crate::keys::verify_block(kind, &key, &block) {
            return Err(RequestError::BadBlock);
        }
        let outcome = match self.via {
            Via::Direct => self.route(kind, key, Request::Put(block), None).await?,
            Via::Circuit(iso) => {
                self.through_circuit(iso, kind, key, Request::Put(block))
                    .await?
            }
        };
        match outcome {
            Outcome::Stored => Ok(()),
            other => Err(failure(other)),
        }
    }
}

/// A get's outcome, with the block checked against its key: an exit (or
/// any node) that returns something else is caught here.
fn found(kind: KeyKind, key: &RoutingKey, outcome: Outcome) -> Result<Vec<u8>, RequestError> {
    match outcome {
        Outcome::Found(block) if crate::keys::verify_block(kind, key, &block) => Ok(block),
        Outcome::Found(_) => Err(RequestError::BadBlock),
        other => Err(failure(other)),
    }
}

fn failure(o: Outcome) -> RequestError {
    match o {
        Outcome::DataNotFound => RequestError::DataNotFound,
        Outcome::Timeout => RequestError::Timeout,
        Outcome::Rejected => RequestError::Rejected,
        Outcome::RouteNotFound | Outcome::Found(_) | Outcome::Stored => RequestError::RouteNotFound,
    }
}

impl NodeHandle {
    /// Requests through circuits, all sharing the default isolation key.
    pub fn client(&self) -> NodeClient {
        NodeClient {
            cmd: self.cmd.clone(),
            via: Via::Circuit(Isolation::default()),
        }
    }

    /// Build a fresh circuit for `iso` (replacing the one in use) and
    /// return its relays, first hop first. For diagnostics, measurements
    /// and tests: the path is this node's secret.
    pub async fn build_circuit(&self, iso: Isolation) -> Result<Vec<NodeId>, RequestError> {
        ask(&self.cmd, |tx| Command::BuildCircuit(iso, tx))
            .await
            .ok_or(RequestError::Stopped)?
            .map_err(RequestError::from)
    }

    /// Make circuits for `iso` use exactly these relays (tests). They
    /// must be in the relay sample.
    pub async fn pin_path(&self, iso: Isolation, path: Vec<NodeId>) -> Result<(), Error> {
        self.cmd
            .send(Command::PinPath(iso, path))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// The relays this node currently chooses circuits from.
    pub async fn relay_sample(&self) -> Result<Vec<NodeId>, Error> {
        ask(&self.cmd, Command::Sample).await.ok_or(Error::Stopped)
    }

    /// Drop a block from this node's store and cache.
    pub async fn forget_block(&self, kind: KeyKind, key: RoutingKey) -> Result<bool, Error> {
        ask(&self.cmd, |tx| Command::Forget(kind, key, tx))
            .await
            .ok_or(Error::Stopped)
    }

    pub async fn status(&self) -> Result<Status, Error> {
        self.client().status().await
    }

    /// Store a block on its key's successor (which replicates it), found
    /// through the ring. Returns, once the successor has it on disk, the id
    /// of that successor.
    pub async fn store_block(
        &self,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    ) -> Result<NodeId, StoreError> {
        let reply = ask(&self.cmd, |done| Command::Store {
            kind,
            key,
            block,
            done,
        });
        match tokio::time::timeout(PUSH_TIMEOUT * 2, reply).await {
            Ok(Some(r)) => r,
            Ok(None) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Whether this node's primary store holds the block.
    pub async fn holds(&self, kind: KeyKind, key: RoutingKey) -> Result<bool, Error> {
        ask(&self.cmd, |tx| Command::Holds(kind, key, tx))
            .await
            .ok_or(Error::Stopped)
    }

    /// Leave the ring gracefully: hand blocks to the successor, tell the
    /// neighbours, close the links.
    pub async fn leave(self) {
        ask(&self.cmd, Command::Leave).await;
        let _ = self.task.await;
    }

    /// Stop at once, as a crash would: no hand-over, no goodbye to the
    /// ring. (Links still close, so peers notice at once rather than after
    /// the idle timeout; a test that needs silence kills a process.)
    pub async fn crash(self) {
        ask(&self.cmd, Command::Crash).await;
        let _ = self.task.await;
    }

    /// Wait until the node stops by itself (it never does unless told).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// A seed for a state machine's generator, from the OS.
fn seed32() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This node's descriptor advertising `addrs`: a relay's when there are
/// any, a client's (no address, no relay flag) when there are none.
fn sign_descriptor(identity: &Identity, addrs: &[SocketAddr]) -> Result<NodeDescriptor, Error> {
    let flags = if addrs.is_empty() {
        0
    } else {
        NodeDescriptor::FLAG_RELAY
    };
    let addrs = addrs.iter().map(|a| NodeAddr(*a)).collect();
    identity
        .sign_descriptor(addrs, unix_now(), flags)
        .map_err(|e| Error::Identity(e.to_string()))
}

/// Load the node's identity from `data_dir`, or create one.
pub fn load_identity(data_dir: &Path) -> Result<Identity, Error> {
    let err = |message: String| Error::DataDir {
        path: data_dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
    let path = data_dir.join("identity.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            let secret: &[u8; 64] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| err("identity.key is not 64 bytes".into()))?;
            Ok(Identity::from_secret_bytes(secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity::generate(&mut rand::rngs::OsRng);
            write_secret(&path, &identity.secret_bytes()[..]).map_err(|e| err(e.to_string()))?;
            Ok(identity)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Write a secret file readable by its owner only, atomically.
fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Start a node. It runs until [`NodeHandle::leave`] or
/// [`NodeHandle::crash`].
pub async fn start(cfg: Config) -> Result<NodeHandle, Error> {
    cfg.validate()?;
    let identity = load_identity(&cfg.data_dir)?;
    let store = Store::open(
        &cfg.data_dir.join("store.redb"),
        store::Limits {
            primary_bytes: cfg.store_bytes,
            cache_bytes: cfg.cache_bytes,
        },
        crate::keys::verify_block,
        crate::keys::supersedes,
    )?;
    let endpoint = Arc::new(Endpoint::bind(
        &identity,
        cfg.listen,
        cfg.relay,
        cfg.link(),
    )?);
    let listen = endpoint.local_addr()?;
    let policy = addr::Policy::new(cfg.scope());
    // What to advertise: the addresses given, else a specific listen
    // address, else what peers will tell us (until then, nothing: a node
    // nobody can dial must not pose as a relay).
    let (advertised, learner) = if !cfg.relay {
        (Vec::new(), None)
    } else if !cfg.public_addr.is_empty() {
        (cfg.public_addr.clone(), None)
    } else if !listen.ip().is_unspecified() {
        (vec![listen], None)
    } else {
        let settings = reach::Settings {
            quorum: cfg.observed_quorum,
            ..reach::Settings::default()
        };
        (Vec::new(), Some(Learner::new(settings, policy)))
    };
    let relaying = !advertised.is_empty();
    let desc = sign_descriptor(&identity, &advertised)?;
    let now = Instant::now();
    let ring_cfg = crate::ring::Config {
        member: relaying,
        ..cfg.ring()
    };
    let mut ring = Ring::new(desc, ring_cfg, now, seed32());
    ring.join(cfg.bootstrap.iter().map(|b| (b.addr, b.id)).collect(), now);
    let id = ring.id();
    let circuit_settings = crate::circuit::Settings {
        relay: relaying,
        ..cfg.circuits()
    };
    // The circuits own the identity for their handshakes; the node keeps a
    // copy to sign new descriptors with.
    let signer = Identity::from_secret_bytes(&identity.secret_bytes());
    let circuits = Circuits::new(identity, circuit_settings, seed32());
    if learner.is_some() {
        tracing::info!(
            "listening on an unspecified address with no public address: learning one from peers; \
             not relaying until others can reach this node"
        );
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (link_tx, link_rx) = mpsc::channel(1024);
    let (accept_tx, accept_rx) = mpsc::channel(16);
    let (dial_tx, dial_rx) = mpsc::channel(64);
    let link_count = Arc::new(AtomicUsize::new(0));
    let misbehaving = Arc::new(AtomicUsize::new(0));
    tokio::spawn(accept_loop(
        endpoint.clone(),
        accept_tx,
        link_count.clone(),
        misbehaving.clone(),
        shutdown_rx,
    ));

    tracing::info!("node started");
    tracing::debug!(?id, %listen, ?advertised, "node identity and addresses");
    let node = Node {
        cfg,
        identity: signer,
        ring,
        store,
        endpoint,
        policy,
        advertised,
        learn_warning: learner.as_ref().map(|_| now + LEARN_PATIENCE),
        learner,
        responder: Responder::default(),
        links: HashMap::new(),
        dialing: HashMap::new(),
        dialing_addr: HashMap::new(),
        verified: HashSet::new(),
        misbehaving,
        link_count,
        link_tx,
        dial_tx,
        replicate_at: None,
        confirmed: HashSet::new(),
        placed: HashSet::new(),
        pushes: HashMap::new(),
        push_queue: VecDeque::new(),
        lookups: HashMap::new(),
        leaving: None,
        shutdown: shutdown_tx,
        router: Router::new(route::Config::default(), seed32()),
        routed: HashMap::new(),
        forwarded: 0,
        loops: 0,
        circuits,
        circuit_requests: HashMap::new(),
        builds: HashMap::new(),
        next_sample: now,
    };
    let task = tokio::spawn(node.run(cmd_rx, link_rx, accept_rx, dial_rx));
    Ok(NodeHandle {
        id,
        listen,
        cmd: cmd_tx,
        task,
    })
}

async fn accept_loop(
    endpoint: Arc<Endpoint>,
    accepted: mpsc::Sender<Accepted>,
    link_count: Arc<AtomicUsize>,
    misbehaving: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.incoming() => match i {
                Some(i) => i,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        if link_count.load(Ordering::Relaxed) >= endpoint.config().max_links {
            incoming.refuse();
            continue;
        }
        let endpoint = endpoint.clone();
        let accepted = accepted.clone();
        let misbehaving = misbehaving.clone();
        tokio::spawn(async move {
            match endpoint.complete(incoming).await {
                Ok(a) => {
                    let _ = accepted.send(a).await;
                }
                Err(link::Error::NoIdentity) => {
                    misbehaving.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!("inbound link failed: {e}"),
            }
        });
    }
}

/// What a replica push is for.
struct Push {
    key: RoutingKey,
    to: NodeId,
    deadline: Instant,
    done: Option<StoreDone>,
}

/// Why a ring lookup was started.
enum LookupFor {
    /// Move a block we hold to the node that should have it.
    Place(KeyKind, RoutingKey),
    /// A block a local user asked to store.
    Store(KeyKind, RoutingKey, Vec<u8>, StoreDone),
    /// A random ring point, to sample a relay.
    Sample,
}

/// Who waits for a routed request.
enum RouteWaiter {
    Local(oneshot::Sender<Outcome>),
    /// An exit stream of a circuit this node ends.
    Exit,
}

struct Leaving {
    done: oneshot::Sender<()>,
    deadline: Instant,
    /// Hand-over pushes still unacknowledged.
    handing_over: Vec<u64>,
}

struct Node {
    cfg: Config,
    identity: Identity,
    ring: Ring,
    store: Store,
    endpoint: Arc<Endpoint>,
    /// Which addresses this node advertises and dials.
    policy: addr::Policy,
    /// The addresses in this node's descriptor.
    advertised: Vec<SocketAddr>,
    /// Learns what to advertise, when nothing was given.
    learner: Option<Learner>,
    /// When to warn that no address has been learned yet.
    learn_warning: Option<Instant>,
    /// Limits the dial-backs this node makes for others.
    responder: Responder,
    links: HashMap<NodeId, link::Handle>,
    /// Messages waiting for a link being dialled.
    dialing: HashMap<NodeId, Vec<PeerMessage>>,
    dialing_addr: HashMap<SocketAddr, Vec<PeerMessage>>,
    verified: HashSet<[u8; 64]>,
    misbehaving: Arc<AtomicUsize>,
    link_count: Arc<AtomicUsize>,
    link_tx: mpsc::Sender<link::Event>,
    dial_tx: mpsc::Sender<DialResult>,
    replicate_at: Option<Instant>,
    /// Nodes that acknowledged a block over their current link. Forgotten
    /// when the link closes: a node that comes back may have lost its disk.
    confirmed: HashSet<(RoutingKey, NodeId)>,
    /// Blocks held here but owned elsewhere whose owner was found and has
    /// them: no lookup for them until the membership changes.
    placed: HashSet<RoutingKey>,
    pushes: HashMap<u64, Push>,
    /// Replica pushes waiting for a free slot.
    push_queue: VecDeque<(KeyKind, RoutingKey, Peer)>,
    lookups: HashMap<Token, LookupFor>,
    leaving: Option<Leaving>,
    shutdown: watch::Sender<bool>,
    router: Router,
    /// Routed requests waiting for their outcome, by token.
    routed: HashMap<Token, RouteWaiter>,
    forwarded: u64,
    loops: u64,
    circuits: Circuits,
    circuit_requests: HashMap<Token, oneshot::Sender<Result<Outcome, CircuitError>>>,
    builds: HashMap<Token, oneshot::Sender<Result<Vec<NodeId>, CircuitError>>>,
    next_sample: Instant,
}

/// The router's view of this node: its store and its ring.
struct RouteCtx<'a> {
    store: &'a Store,
    ring: &'a Ring,
    replicas: usize,
    /// Keys this node stored as their successor: replicate them.
    stored: Vec<RoutingKey>,
}

impl RouteCtx<'_> {
    fn lookup(&mut self, kind: KeyKind, key: &RoutingKey) -> Option<Vec<u8>> {
        // A signed block can be updated, and only its successor is sure to
        // hold the newest version it acknowledged (replicas lag by a
        // replication pass, caches indefinitely): only the successor
        // answers for it.
        if kind == KeyKind::SSK && !self.ring.owns(&key.0) {
            return None;
        }
        match self.store.get(kind, key) {
            Ok(Some((_, Found::Cache))) if kind == KeyKind::SSK => None,
            Ok(Some((block, _))) => Some(block),
            _ => None,
        }
    }

    fn store(&mut self, kind: KeyKind, key: &RoutingKey, block: &[u8]) -> bool {
        match self.store.put(kind, key, block) {
            Ok(store::Put::Stored | store::Put::Replaced) => {
                self.stored.push(*key);
                true
            }
            Ok(store::Put::AlreadyHad) => true,
            Err(e) => {
                tracing::warn!("cannot store an inserted block: {e}");
                false
            }
        }
    }

    fn cache(&mut self, kind: KeyKind, key: &RoutingKey, block: &[u8]) {
        if kind == KeyKind::CHK {
            let _ = self.store.cache(kind, key, block);
        }
    }
}

impl route::Context for RouteCtx<'_> {
    fn owns(&self, key: &RoutingKey) -> bool {
        self.ring.owns(&key.0)
    }

    fn candidates(&self, key: &RoutingKey) -> Vec<NodeId> {
        self.ring
            .next_hops(&key.0, self.replicas)
            .into_iter()
            .map(|p| p.id)
            .collect()
    }

    fn verify(&self, kind: KeyKind, key: &RoutingKey, block: &[u8]) -> bool {
        crate::keys::verify_block(kind, key, block)
    }
}

impl Node {
    /// Run `f` on the router with this node as its context, then act on
    /// what it stored.
    fn with_router<T>(&mut self, f: impl FnOnce(&mut Router, &mut RouteCtx<'_>) -> T) -> T {
        let mut ctx = RouteCtx {
            store: &self.store,
            ring: &self.ring,
            replicas: self.cfg.replicas,
            stored: Vec::new(),
        };
        let out = f(&mut self.router, &mut ctx);
        let stored = ctx.stored;
        for key in stored {
            // A new block or a newer version: its replicas must get it.
            self.confirmed.retain(|(k, _)| *k != key);
            self.placed.remove(&key);
            self.replicate_soon();
        }
        out
    }

    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut link_rx: mpsc::Receiver<link::Event>,
        mut accept_rx: mpsc::Receiver<Accepted>,
        mut dial_rx: mpsc::Receiver<DialResult>,
    ) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                Some(ev) = link_rx.recv() => self.on_link_event(ev),
                Some(accepted) = accept_rx.recv() => match accepted {
                    Accepted::Link(link) => self.link_up(link),
                    Accepted::Probe { nonce } => self.probe_arrived(nonce),
                },
                Some((want, addr, res)) = dial_rx.recv() => self.on_dial(want, addr, res),
                cmd = cmds.recv() => match cmd {
                    Some(Command::Status(tx)) => { let _ = tx.send(self.status()); }
                    Some(Command::Store { kind, key, block, done }) => self.store_through_ring(kind, key, block, done),
                    Some(Command::Holds(kind, key, tx)) => {
                        let _ = tx.send(self.store.has(kind, &key).unwrap_or(false));
                    }
                    Some(Command::Route { kind, key, request, id, done }) => {
                        let token = Token(rand::rngs::OsRng.next_u64());
                        self.routed.insert(token, RouteWaiter::Local(done));
                        let now = Instant::now();
                        self.with_router(|r, ctx| {
                            r.start(id, token, kind, key, request, now, ctx);
                        });
                    }
                    Some(Command::Forget(kind, key, tx)) => {
                        let _ = tx.send(self.store.forget(kind, &key).is_ok());
                    }
                    Some(Command::Circuit { iso, kind, key, request, done }) => {
                        let token = Token(rand::rngs::OsRng.next_u64());
                        self.circuit_requests.insert(token, done);
                        self.circuits.request(token, iso, kind, key, request, Instant::now());
                    }
                    Some(Command::BuildCircuit(iso, done)) => {
                        let token = Token(rand::rngs::OsRng.next_u64());
                        self.builds.insert(token, done);
                        self.circuits.build(token, iso, Instant::now());
                    }
                    Some(Command::PinPath(iso, path)) => self.circuits.pin_path(iso, path),
                    Some(Command::Sample(tx)) => {
                        let _ = tx.send(self.circuits.sample().ids());
                    }
                    Some(Command::Leave(done)) => self.start_leave(done),
                    Some(Command::Crash(done)) => {
                        self.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop().await;
                        return;
                    }
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.on_timer(),
            }
            self.flush();
            self.pump_pushes();
            if self.leaving.as_ref().is_some_and(|l| {
                Instant::now() >= l.deadline
                    || l.handing_over
                        .iter()
                        .all(|id| !self.pushes.contains_key(id))
            }) {
                self.finish_leave().await;
                return;
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut d = self.ring.poll_timeout();
        if let Some(r) = self.router.poll_timeout() {
            d = d.min(r);
        }
        if let Some(r) = self.replicate_at {
            d = d.min(r);
        }
        if let Some(p) = self.pushes.values().map(|p| p.deadline).min() {
            d = d.min(p);
        }
        if let Some(l) = &self.leaving {
            d = d.min(l.deadline);
        }
        if let Some(c) = self.circuits.poll_timeout() {
            d = d.min(c);
        }
        if let Some(l) = self.learner.as_ref().and_then(Learner::poll_timeout) {
            d = d.min(l);
        }
        if let Some(w) = self.learn_warning {
            d = d.min(w);
        }
        d.min(self.next_sample)
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.ring.poll_timeout() <= now {
            self.ring.handle_timeout(now);
        }
        self.fail_pushes(|p| p.deadline <= now, StoreError::Timeout);
        if self.router.poll_timeout().is_some_and(|t| t <= now) {
            self.with_router(|r, ctx| r.handle_timeout(now, ctx));
        }
        if self.replicate_at.is_some_and(|t| t <= now) && self.leaving.is_none() {
            self.replicate_at = None;
            self.replicate();
        }
        if self.circuits.poll_timeout().is_some_and(|t| t <= now) {
            self.circuits.handle_timeout(now);
        }
        if let Some(l) = &mut self.learner {
            if l.poll_timeout().is_some_and(|t| t <= now) {
                l.handle_timeout(now, &mut rand::rngs::OsRng);
            }
        }
        if self.learn_warning.is_some_and(|t| t <= now) {
            self.learn_warning = None;
            if self.reachability() == Reachability::Learning {
                tracing::warn!(
                    "no reachable address learned after {} s: peers have not agreed where they \
                     see this node ({} from different networks must); it does not relay \
                     meanwhile (give --public-addr if you know its address)",
                    LEARN_PATIENCE.as_secs(),
                    self.cfg.observed_quorum
                );
            }
        }
        if self.next_sample <= now {
            let small = self.circuits.sample().len() < SAMPLE_ENOUGH;
            self.next_sample = now + if small { SAMPLE_FAST } else { SAMPLE_SLOW };
            let sampling = self
                .lookups
                .values()
                .filter(|l| matches!(l, LookupFor::Sample))
                .count();
            if self.ring.is_joined() && sampling < 4 {
                // A random point, not a finger: which relays a node knows
                // should not be predictable from its id. While the sample
                // is small, every other lookup instead steps from a random
                // known relay to its successor: a node with a short arc is
                // rarely the successor of a random point, and a small ring
                // would otherwise wait long to learn it.
                let mut target = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut target);
                let ids = self.circuits.sample().ids();
                if small && !ids.is_empty() && target[0] & 1 == 0 {
                    let from = ids[usize::from(target[1]) % ids.len()];
                    target = crate::ring::add_pow2(&from.0, 0);
                }
                let token = Token(rand::rngs::OsRng.next_u64());
                self.lookups.insert(token, LookupFor::Sample);
                self.ring.lookup(target, token, now);
            }
        }
    }

    // ---- links ----

    fn link_up(&mut self, link: Link) {
        let peer = link.peer;
        if peer == self.ring.id() {
            // We dialled ourselves (a bootstrap address of our own).
            return;
        }
        if let Some(old) = self.links.get(&peer) {
            // Two links to one peer, dialled at the same time from both
            // sides: both ends keep the one dialled by the smaller id.
            let dialer = |inbound: bool| if inbound { peer } else { self.ring.id() };
            if !old.is_closed() && dialer(old.inbound) <= dialer(link.inbound) {
                // Dropping `link` closes it.
                self.flush_queued(peer, Some(link.remote), link.inbound);
                return;
            }
            old.close(close::DUPLICATE, b"duplicate link");
            // Circuit ids belong to the link they were made on.
            self.circuits.link_down(peer, Instant::now());
        }
        let remote = link.remote;
        let inbound = link.inbound;
        let handle = link.spawn(self.endpoint.config(), self.link_tx.clone());
        let _ = handle.send(Frame::Message(PeerMessage::Hello {
            node: self.ring.me().desc.clone(),
        }));
        // Where the link comes from, as this end sees it: how the peer
        // learns what to advertise.
        let _ = handle.send(Frame::Message(PeerMessage::Observed {
            addr: NodeAddr(canonical(remote)),
        }));
        if let Some(l) = &mut self.learner {
            l.handle_link_up(peer, remote.ip(), Instant::now(), &mut rand::rngs::OsRng);
        }
        self.links.insert(peer, handle);
        self.link_count.store(self.links.len(), Ordering::Relaxed);
        self.circuits.link_up(peer, !inbound, Instant::now());
        self.flush_queued(peer, Some(remote), inbound);
    }

    fn flush_queued(&mut self, peer: NodeId, remote: Option<SocketAddr>, inbound: bool) {
        let mut queued = self.dialing.remove(&peer).unwrap_or_default();
        if let (Some(addr), false) = (remote, inbound) {
            queued.extend(self.dialing_addr.remove(&addr).unwrap_or_default());
        }
        for msg in queued {
            self.send_on_link(peer, msg);
        }
    }

    fn on_dial(
        &mut self,
        want: Option<NodeId>,
        addr: Option<SocketAddr>,
        res: Result<Link, link::Error>,
    ) {
        match res {
            Ok(link) => self.link_up(link),
            Err(e) => {
                tracing::debug!("dial failed: {e}");
                if matches!(e, link::Error::WrongPeer | link::Error::NoIdentity) {
                    self.misbehaving.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(addr) = addr {
                    self.dialing_addr.remove(&addr);
                }
                if let Some(id) = want {
                    self.dial_failed(id);
                }
            }
        }
    }

    fn dial_failed(&mut self, id: NodeId) {
        self.dialing.remove(&id);
        self.ring.handle_failure(id, Instant::now());
        self.pushes_failed(id);
        self.circuits.link_failed(id, Instant::now());
    }

    /// Dial a bootstrap address, given by the user.
    fn dial(&mut self, addr: SocketAddr, want: Option<NodeId>) {
        let endpoint = self.endpoint.clone();
        let tx = self.dial_tx.clone();
        tokio::spawn(async move {
            let res = endpoint.dial(addr, want).await;
            let _ = tx.send((want, Some(addr), res)).await;
        });
    }

    /// Dial a node at the addresses of its descriptor that this node's
    /// policy allows, in Happy Eyeballs order. None usable is a failed
    /// dial (reported before this returns, so callers queue first).
    fn dial_peer(&mut self, id: NodeId, addrs: &[NodeAddr]) {
        let local = self
            .endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let order = self.policy.dial_order(addrs, local);
        if order.is_empty() {
            tracing::debug!("no address of a peer is allowed or reachable from here");
            self.dial_failed(id);
            return;
        }
        let endpoint = self.endpoint.clone();
        let tx = self.dial_tx.clone();
        tokio::spawn(async move {
            let res = endpoint.dial_any(&order, Some(id)).await;
            let _ = tx.send((Some(id), None, res)).await;
        });
    }

    fn on_link_event(&mut self, ev: link::Event) {
        match ev {
            // Any link authenticated as `peer` speaks for it, including the
            // loser of a duplicate-link race that is still draining.
            link::Event::Frame {
                peer, frame, len, ..
            } => {
                if let Some(obs) = &self.cfg.observer {
                    obs.observe(&crate::observe::Observation::Frame {
                        at: self.ring.id(),
                        from: peer,
                        len,
                        frame: &frame,
                    });
                }
                self.on_frame(peer, frame)
            }
            link::Event::Closed {
                serial,
                peer,
                misbehaved,
            } => {
                if let Some(e) = misbehaved {
                    tracing::debug!("peer broke the protocol: {e}");
                    self.misbehaving.fetch_add(1, Ordering::Relaxed);
                }
                if self.links.get(&peer).is_some_and(|h| h.serial == serial) {
                    self.links.remove(&peer);
                    if let Some(l) = &mut self.learner {
                        l.handle_link_down(peer);
                    }
                    self.link_count.store(self.links.len(), Ordering::Relaxed);
                    self.ring.handle_failure(peer, Instant::now());
                    self.pushes_failed(peer);
                    self.confirmed.retain(|(_, n)| *n != peer);
                    let now = Instant::now();
                    self.with_router(|r, ctx| r.handle_link_down(peer, now, ctx));
                    self.circuits.link_down(peer, now);
                }
            }
        }
    }

    /// A peer broke the protocol: drop its link and count it.
    fn misbehaved(&mut self, peer: NodeId, why: &str) {
        tracing::debug!("disconnecting a peer: {why}");
        self.misbehaving.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = self.links.remove(&peer) {
            h.close(close::PROTOCOL, why.as_bytes());
            self.link_count.store(self.links.len(), Ordering::Relaxed);
        }
        self.ring.handle_failure(peer, Instant::now());
    }

    /// Check every descriptor a message carries; the ring only ever sees
    /// verified ones.
    fn descriptors_valid(&mut self, msg: &PeerMessage) -> bool {
        let descs: Vec<&NodeDescriptor> = match msg {
            PeerMessage::FindSuccessorReply { node, .. }
            | PeerMessage::Notify { node }
            | PeerMessage::Hello { node } => vec![node],
            PeerMessage::PredecessorReply {
                predecessor,
                successors,
                ..
            }
            | PeerMessage::Leaving {
                predecessor,
                successors,
            } => predecessor.iter().chain(successors.iter()).collect(),
            _ => return true,
        };
        for d in descs {
            if self.verified.contains(&d.signature) {
                continue;
            }
            // A relay must say where to reach it; a client says nothing.
            let relay = d.flags & NodeDescriptor::FLAG_RELAY != 0;
            if verify_descriptor(d).is_err() || (relay && d.addrs.is_empty()) {
                return false;
            }
            if self.verified.len() >= VERIFIED_CACHE {
                self.verified.clear();
            }
            self.verified.insert(d.signature);
        }
        true
    }

    fn on_frame(&mut self, peer: NodeId, frame: Frame) {
        let msg = match frame {
            Frame::Message(m) => m,
            Frame::Cell(cell) => {
                self.circuits.handle_cell(peer, cell, Instant::now());
                return;
            }
        };
        if !self.descriptors_valid(&msg) {
            self.misbehaved(peer, "invalid descriptor");
            return;
        }
        let now = Instant::now();
        match msg {
            PeerMessage::Hello { node } => {
                if crate::crypto::node_id(&node.identity) != peer {
                    self.misbehaved(peer, "hello for another node");
                }
            }
            PeerMessage::Observed { addr } => {
                let from = self.links.get(&peer).map(|h| h.remote.ip());
                if let (Some(l), Some(from)) = (&mut self.learner, from) {
                    l.handle_observed(peer, from, addr.0, now, &mut rand::rngs::OsRng);
                }
            }
            PeerMessage::Probe { nonce, port } => self.probe_for(peer, nonce, port, now),
            PeerMessage::StoreReplica {
                id,
                kind,
                key,
                block,
            } => {
                let reply = match self.store.put(kind, &key, &block) {
                    Ok(_) => {
                        if self.ring.owns(&key.0) {
                            self.replicate_soon();
                        }
                        PeerMessage::Stored { id }
                    }
                    Err(store::Error::BadBlock) => {
                        self.misbehaved(peer, "block does not match its key");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("cannot store a replica: {e}");
                        PeerMessage::Rejected { id }
                    }
                };
                self.send_on_link(peer, reply);
            }
            PeerMessage::Stored { id } if !self.pushes.contains_key(&id.0) => {
                self.with_router(|r, ctx| {
                    r.handle_reply(peer, PeerMessage::Stored { id }, now, ctx)
                });
            }
            PeerMessage::Rejected { id } if !self.pushes.contains_key(&id.0) => {
                self.with_router(|r, ctx| {
                    r.handle_reply(peer, PeerMessage::Rejected { id }, now, ctx)
                });
            }
            PeerMessage::Stored { id } => {
                if self.pushes.get(&id.0).is_some_and(|p| p.to == peer) {
                    if let Some(p) = self.pushes.remove(&id.0) {
                        self.confirmed.insert((p.key, peer));
                        if let Some(done) = p.done {
                            let _ = done.send(Ok(peer));
                        }
                    }
                }
            }
            PeerMessage::Rejected { id } => {
                if self.pushes.get(&id.0).is_some_and(|p| p.to == peer) {
                    if let Some(Push {
                        done: Some(done), ..
                    }) = self.pushes.remove(&id.0)
                    {
                        let _ = done.send(Err(StoreError::Rejected));
                    }
                }
            }
            PeerMessage::Unrecognized { .. } => {}
            msg @ (PeerMessage::Get { .. } | PeerMessage::Put { .. }) => {
                self.with_router(|r, ctx| r.handle_request(peer, msg, now, ctx));
            }
            msg @ (PeerMessage::Data { .. }
            | PeerMessage::DataNotFound { .. }
            | PeerMessage::RouteNotFound { .. }
            | PeerMessage::Loop { .. }) => {
                if matches!(msg, PeerMessage::Loop { .. }) {
                    self.loops += 1;
                }
                self.with_router(|r, ctx| r.handle_reply(peer, msg, now, ctx));
            }
            ring_msg => self.ring.handle_message(peer, ring_msg, now),
        }
    }

    fn send_on_link(&mut self, peer: NodeId, msg: PeerMessage) {
        if let Some(h) = self.links.get(&peer) {
            let kind = msg.kind();
            if h.send(Frame::Message(msg)).is_err() {
                tracing::debug!(?kind, "send queue full or link closed; message dropped");
            }
        }
    }

    /// Carry out what the ring, the router and the circuits want done, until
    /// none of them has anything left (each can give the others work).
    fn flush(&mut self) {
        loop {
            let mut busy = self.flush_learner();
            busy |= self.flush_ring_and_router();
            while let Some(action) = self.circuits.poll_action() {
                busy = true;
                self.circuit_action(action);
            }
            if !busy {
                return;
            }
        }
    }

    fn circuit_action(&mut self, action: circuit::Action) {
        match action {
            circuit::Action::Send { to, cell } => {
                if let Some(h) = self.links.get(&to) {
                    if h.send(Frame::Cell(cell)).is_err() {
                        tracing::debug!("cell queue full or link closed; cell dropped");
                    }
                }
            }
            circuit::Action::Connect { to, addrs } => {
                if let Some(h) = self.links.get(&to) {
                    let we_dialed = !h.inbound;
                    self.circuits.link_up(to, we_dialed, Instant::now());
                } else if let std::collections::hash_map::Entry::Vacant(e) = self.dialing.entry(to)
                {
                    // An extend names the addresses; only those this
                    // node's policy allows are dialled.
                    e.insert(Vec::new());
                    self.dial_peer(to, &addrs);
                }
            }
            circuit::Action::Route {
                token,
                kind,
                key,
                request,
            } => {
                self.routed.insert(token, RouteWaiter::Exit);
                let now = Instant::now();
                self.with_router(|r, ctx| {
                    r.start(None, token, kind, key, request, now, ctx);
                });
            }
            circuit::Action::Done { token, result } => {
                if let Some(done) = self.circuit_requests.remove(&token) {
                    let _ = done.send(result);
                }
            }
            circuit::Action::Built { token, result } => {
                if let Some(done) = self.builds.remove(&token) {
                    let _ = done.send(result);
                }
            }
            circuit::Action::Misbehaved { peer, why } => self.misbehaved(peer, why),
        }
    }

    /// One pass over the ring's and the router's output; whether there
    /// was any.
    fn flush_ring_and_router(&mut self) -> bool {
        let mut busy = false;
        while let Some(t) = self.ring.poll_transmit() {
            busy = true;
            match t.to {
                Dest::Link(id) => self.send_on_link(id, t.msg),
                Dest::Peer(p) => {
                    if self.links.contains_key(&p.id) {
                        self.send_on_link(p.id, t.msg);
                    } else if let Some(q) = self.dialing.get_mut(&p.id) {
                        q.push(t.msg);
                    } else {
                        self.dialing.insert(p.id, vec![t.msg]);
                        self.dial_peer(p.id, &p.desc.addrs);
                    }
                }
                Dest::Addr(addr, expect) => {
                    if let Some(q) = self.dialing_addr.get_mut(&addr) {
                        q.push(t.msg);
                    } else {
                        self.dialing_addr.insert(addr, vec![t.msg]);
                        self.dial(addr, expect);
                    }
                }
            }
        }
        while let Some(action) = self.router.poll_action() {
            busy = true;
            match action {
                route::Action::Send { to, mut msg } => {
                    if matches!(msg, PeerMessage::Get { .. } | PeerMessage::Put { .. }) {
                        self.forwarded += 1;
                    }
                    if let (PeerMessage::Data { block, .. }, true) =
                        (&mut msg, self.cfg.fault_corrupt_blocks)
                    {
                        if let Some(b) = block.first_mut() {
                            *b ^= 1;
                        }
                    }
                    if self.links.contains_key(&to) {
                        self.send_on_link(to, msg);
                    } else if let Some(p) = self.ring.known().into_iter().find(|p| p.id == to) {
                        self.send_to_peer(&p, msg);
                    }
                }
                route::Action::Deliver { token, outcome } => match self.routed.remove(&token) {
                    Some(RouteWaiter::Local(done)) => {
                        let _ = done.send(outcome);
                    }
                    Some(RouteWaiter::Exit) => self.circuits.route_done(token, outcome),
                    None => {}
                },
                route::Action::Misbehaved(_) => {
                    self.misbehaving.fetch_add(1, Ordering::Relaxed);
                }
                route::Action::Read { id, kind, key } => {
                    let now = Instant::now();
                    self.with_router(|r, ctx| {
                        let block = ctx.lookup(kind, &key);
                        r.handle_read(id, block, now, ctx);
                    });
                }
                route::Action::Write {
                    id,
                    kind,
                    key,
                    block,
                } => {
                    self.with_router(|r, ctx| {
                        let ok = ctx.store(kind, &key, &block);
                        r.handle_written(id, ok);
                    });
                }
                route::Action::Cache { kind, key, block } => {
                    self.with_router(|_, ctx| ctx.cache(kind, &key, &block));
                }
            }
        }
        while let Some(ev) = self.ring.poll_event() {
            busy = true;
            match ev {
                RingEvent::NeighboursChanged => {
                    // Owners may have moved: look every held block up again.
                    self.placed.clear();
                    self.replicate_soon();
                }
                RingEvent::Joined => tracing::info!("joined the ring"),
                RingEvent::LookupDone { token, result } => {
                    if let Some(why) = self.lookups.remove(&token) {
                        self.lookup_done(why, result.map(|b| *b).ok());
                    }
                }
            }
        }
        busy
    }

    // ---- placement ----

    fn replicate_soon(&mut self) {
        let at = Instant::now() + REPLICATE_DELAY;
        if self.replicate_at.is_none_or(|t| t > at) {
            self.replicate_at = Some(at);
        }
    }

    /// Make every block we hold reach the nodes that should hold it: as the
    /// key's successor, push to the next `replicas - 1` nodes; otherwise
    /// find the key's successor and push it there.
    fn replicate(&mut self) {
        let keys = match self.store.primary_keys() {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("replication: {e}");
                return;
            }
        };
        let now = Instant::now();
        let mut place_budget = PLACE_LOOKUPS.saturating_sub(
            self.lookups
                .values()
                .filter(|l| matches!(l, LookupFor::Place(..)))
                .count(),
        );
        let placing: HashSet<RoutingKey> = self
            .lookups
            .values()
            .filter_map(|l| match l {
                LookupFor::Place(_, k) => Some(*k),
                LookupFor::Store(..) | LookupFor::Sample => None,
            })
            .collect();
        for (kind, key) in keys {
            if self.ring.owns(&key.0) {
                let replicas: Vec<Peer> = self
                    .ring
                    .successors()
                    .iter()
                    .take(self.cfg.replicas.saturating_sub(1))
                    .cloned()
                    .collect();
                for peer in replicas {
                    self.push(kind, key, &peer);
                }
            } else if !placing.contains(&key) && !self.placed.contains(&key) {
                if place_budget == 0 {
                    // The rest wait for the next pass, so that lookups
                    // never crowd the ring's own messages out of the links.
                    self.replicate_soon();
                    continue;
                }
                place_budget -= 1;
                let token = Token(rand::rngs::OsRng.next_u64());
                self.lookups.insert(token, LookupFor::Place(kind, key));
                self.ring.lookup(key.0, token, now);
            }
        }
    }

    /// Queue a stored block for `peer`, unless it already acknowledged it
    /// or a push to it is in flight or queued.
    fn push(&mut self, kind: KeyKind, key: RoutingKey, peer: &Peer) {
        if self.confirmed.contains(&(key, peer.id))
            || self
                .pushes
                .values()
                .any(|p| p.key == key && p.to == peer.id)
            || self
                .push_queue
                .iter()
                .any(|(_, k, p)| *k == key && p.id == peer.id)
        {
            return;
        }
        self.push_queue.push_back((kind, key, peer.clone()));
    }

    /// The link to `peer` is gone: its pushes will not be acknowledged, so
    /// fail them now rather than at their deadline.
    fn pushes_failed(&mut self, peer: NodeId) {
        self.fail_pushes(|p| p.to == peer, StoreError::NoRoute);
    }

    /// Give up on the pushes `which` selects: a store waiting on one gets
    /// `err`; a replica goes back into the next replication pass.
    fn fail_pushes(&mut self, which: impl Fn(&Push) -> bool, err: StoreError) {
        let failed: Vec<u64> = self
            .pushes
            .iter()
            .filter(|(_, p)| which(p))
            .map(|(&id, _)| id)
            .collect();
        for id in failed {
            if let Some(p) = self.pushes.remove(&id) {
                match p.done {
                    Some(done) => {
                        let _ = done.send(Err(err.clone()));
                    }
                    None => {
                        self.placed.remove(&p.key);
                        self.replicate_soon();
                    }
                }
            }
        }
    }

    /// Start queued pushes while there is room in flight.
    fn pump_pushes(&mut self) {
        let now = Instant::now();
        while self.pushes.len() < PUSHES_IN_FLIGHT {
            let Some((kind, key, peer)) = self.push_queue.pop_front() else {
                return;
            };
            if let Ok(Some((block, _))) = self.store.get(kind, &key) {
                self.push_block(kind, key, block, &peer, None, now);
            }
        }
    }

    /// Returns the push's id.
    fn push_block(
        &mut self,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
        peer: &Peer,
        done: Option<StoreDone>,
        now: Instant,
    ) -> u64 {
        let id = rand::rngs::OsRng.next_u64();
        self.pushes.insert(
            id,
            Push {
                key,
                to: peer.id,
                deadline: now + PUSH_TIMEOUT,
                done,
            },
        );
        let msg = PeerMessage::StoreReplica {
            id: RequestId(id),
            kind,
            key,
            block,
        };
        // The peer may have no link yet.
        self.send_to_peer(peer, msg);
        id
    }

    fn send_to_peer(&mut self, peer: &Peer, msg: PeerMessage) {
        if self.links.contains_key(&peer.id) {
            self.send_on_link(peer.id, msg);
        } else if let Some(q) = self.dialing.get_mut(&peer.id) {
            q.push(msg);
        } else {
            self.dialing.insert(peer.id, vec![msg]);
            self.dial_peer(peer.id, &peer.desc.addrs);
        }
    }

    fn lookup_done(&mut self, why: LookupFor, found: Option<Peer>) {
        let now = Instant::now();
        match why {
            LookupFor::Place(kind, key) => {
                if let Some(peer) = found.filter(|p| p.id != self.ring.id()) {
                    // If the push fails, the next pass looks again.
                    self.placed.insert(key);
                    self.push(kind, key, &peer);
                }
            }
            LookupFor::Sample => {
                let local = self.endpoint.local_addr().ok();
                if let Some(peer) =
                    found.filter(|p| local.is_some_and(|l| self.policy.reachable(&p.desc.addrs, l)))
                {
                    self.circuits.add_relay(peer);
                }
            }
            LookupFor::Store(kind, key, block, done) => match found {
                None => {
                    let _ = done.send(Err(StoreError::NoRoute));
                }
                Some(p) if p.id == self.ring.id() => {
                    let me = p.id;
                    let r = self
                        .store
                        .put(kind, &key, &block)
                        .map(|_| me)
                        .map_err(|e| match e {
                            store::Error::BadBlock => StoreError::BadBlock,
                            _ => StoreError::Rejected,
                        });
                    if r.is_ok() {
                        self.replicate_soon();
                    }
                    let _ = done.send(r);
                }
                Some(p) => {
                    self.push_block(kind, key, block, &p, Some(done), now);
                }
            },
        }
    }

    fn store_through_ring(
        &mut self,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
        done: StoreDone,
    ) {
        if !crate::keys::verify_block(kind, &key, &block) {
            let _ = done.send(Err(StoreError::BadBlock));
            return;
        }
        let token = Token(rand::rngs::OsRng.next_u64());
        self.lookups
            .insert(token, LookupFor::Store(kind, key, block, done));
        self.ring.lookup(key.0, token, Instant::now());
    }

    // ---- leaving ----

    fn start_leave(&mut self, done: oneshot::Sender<()>) {
        tracing::info!("leaving the ring");
        let now = Instant::now();
        let mut handing_over = Vec::new();
        if let Some(succ) = self.ring.successors().first().cloned() {
            // Hand every block to the successor, which takes over our range;
            // wait for its acknowledgements (or the deadline) before going.
            match self.store.primary_keys() {
                Ok(keys) => {
                    for (kind, key) in keys {
                        if let Ok(Some((block, _))) = self.store.get(kind, &key) {
                            handing_over.push(self.push_block(kind, key, block, &succ, None, now));
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot list blocks to hand over: {e}"),
            }
        }
        self.leaving = Some(Leaving {
            done,
            deadline: now + LEAVE_TIMEOUT,
            handing_over,
        });
    }

    async fn finish_leave(&mut self) {
        self.ring.leave();
        self.flush();
        if let Some(l) = self.leaving.take() {
            self.stop().await;
            let _ = l.done.send(());
        }
    }

    async fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        // Dropping the handles lets each writer send what is queued, finish
        // its stream and close its link; wait for that, briefly, before
        // closing the endpoint (which would cut off unsent frames).
        let links: Vec<link::Handle> = self.links.drain().map(|(_, h)| h).collect();
        let closing: Vec<_> = links.iter().map(link::Handle::closed).collect();
        drop(links);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for c in closing {
                c.await;
            }
        })
        .await;
        self.endpoint.close().await;
    }

    // ---- addresses ----

    fn reachability(&self) -> Reachability {
        match &self.learner {
            _ if !self.cfg.relay => Reachability::ClientOnly,
            None => Reachability::Configured,
            Some(l) => match l.state() {
                reach::State::Reachable => Reachability::Learned,
                reach::State::Unreachable => Reachability::Unreachable,
                reach::State::Learning | reach::State::Probing => Reachability::Learning,
            },
        }
    }

    /// Carry out what the address learner wants; whether it wanted
    /// anything.
    fn flush_learner(&mut self) -> bool {
        let mut busy = false;
        let was = self.reachability();
        while let Some(action) = self.learner.as_mut().and_then(Learner::poll_action) {
            busy = true;
            match action {
                reach::Action::Probe { via, nonce, port } => {
                    tracing::debug!(port, "asking a peer to dial this node back");
                    self.send_on_link(via, PeerMessage::Probe { nonce, port });
                }
                reach::Action::Advertise(addrs) => self.advertise(addrs),
            }
        }
        let now = self.reachability();
        if now != was && now == Reachability::Unreachable {
            tracing::warn!(
                "peers agree on this node's address, but none could dial it there (a NAT or a \
                 firewall?): it will not relay, and tries again in a few minutes; give \
                 --public-addr if it can be reached"
            );
        }
        busy
    }

    /// Advertise `addrs` from now on: a new descriptor, and a place on the
    /// ring as a relay.
    fn advertise(&mut self, addrs: Vec<SocketAddr>) {
        let desc = match sign_descriptor(&self.identity, &addrs) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot sign a new descriptor: {e}");
                return;
            }
        };
        let first = self.advertised.is_empty();
        self.advertised = addrs;
        tracing::debug!(addrs = ?self.advertised, "advertising learned addresses");
        if first {
            tracing::info!("learned a reachable address from peers; relaying from now on");
        }
        self.ring.set_descriptor(desc.clone());
        self.ring.set_member(true, Instant::now());
        self.circuits.set_relay(true);
        for h in self.links.values() {
            let _ = h.send(Frame::Message(PeerMessage::Hello { node: desc.clone() }));
        }
    }

    /// A peer asks to be dialled back on `port` at the address its link
    /// comes from. Never any other address: a probe cannot be aimed at a
    /// third party.
    fn probe_for(&mut self, peer: NodeId, nonce: [u8; 16], port: u16, now: Instant) {
        let Some(from) = self.links.get(&peer).map(|h| canonical(h.remote).ip()) else {
            return;
        };
        let target = SocketAddr::new(from, port);
        if !self.cfg.relay || !self.policy.allows(target) || !self.responder.allow(peer, now) {
            tracing::debug!("not dialling a peer back");
            return;
        }
        let cfg = self.endpoint.config().clone();
        tokio::spawn(async move {
            if let Err(e) = link::probe(target, peer, nonce, &cfg).await {
                tracing::debug!("dial-back probe failed: {e}");
            }
        });
    }

    fn probe_arrived(&mut self, nonce: [u8; 16]) {
        if let Some(l) = &mut self.learner {
            if !l.handle_probe_arrived(nonce, Instant::now(), &mut rand::rngs::OsRng) {
                tracing::debug!("a probe arrived that this node did not ask for");
            }
        }
    }

    fn status(&self) -> Status {
        let hex = NodeId::to_hex;
        let stats = self.store.stats().unwrap_or_default();
        let circuits = self.circuits.stats();
        Status {
            id: hex(&self.ring.id()),
            listen: self
                .endpoint
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            addresses: self.advertised.clone(),
            reachability: self.reachability(),
            joined: self.ring.is_joined(),
            predecessor: self.ring.predecessor().map(|p| hex(&p.id)),
            successors: self.ring.successors().iter().map(|p| hex(&p.id)).collect(),
            fingers: self.ring.distinct_fingers(),
            links: self.links.len(),
            blocks_stored: stats.blocks_stored,
            bytes_stored: stats.bytes_stored,
            blocks_cached: stats.blocks_cached,
            bytes_cached: stats.bytes_cached,
            misbehaving_peers: u64::try_from(
                self.misbehaving.load(Ordering::Relaxed) + self.endpoint.rejected_certificates(),
            )
            .unwrap_or(u64::MAX),
            requests_forwarded: self.forwarded,
            loops_received: self.loops,
            relay: self.circuits.settings().relay,
            circuits_relayed: circuits.relaying,
            circuits_own: circuits.own,
            circuits_built: circuits.built,
            bad_cells: circuits.bad_cells,
            relay_sample: circuits.sample,
        }
    }
}
