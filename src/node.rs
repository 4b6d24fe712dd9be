//! A running node: the node core (`core`), a sans-IO state machine that
//! composes the ring, the router, the circuits, placement, relay sampling
//! and address learning, driven over QUIC, a timer, the datastore's thread
//! and the local API by a thin tokio task (`driver`). [`start`] runs one;
//! [`NodeHandle`] and [`NodeClient`] are how the rest of the program (the
//! daemon's front doors, the document layer, tests) talks to it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::link;
use crate::store;

mod api;
mod config;
pub mod core;
pub mod datadir;
mod driver;
mod identity;
pub mod worker;

pub use self::core::StoreError;
pub use api::{channel, Answer, NodeClient, NodeHandle, RequestError, Requests};
pub use config::{Bootstrap, Config, Error as ConfigError, Limits};
pub use driver::{start, start_with, Hooks, Tap, GUARDS_FILE, ONION_FILE};
pub use identity::load_identity;

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
    #[error("entry guards file {path}: {message} (remove it to pick new guards)")]
    Guards { path: String, message: String },
    #[error("the node has stopped")]
    Stopped,
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
    /// Hops of routed requests that did not answer in time; each such
    /// neighbour is tried last for five minutes.
    pub hops_timed_out: u64,
    /// Ring lookups of random points and block keys this node finished
    /// (relay sampling, placement, diagnostics), and the nodes they asked
    /// in all: `lookup_steps / lookups` is the mean lookup path.
    pub lookups: u64,
    pub lookup_steps: u64,
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
    /// Circuits this node destroyed for trying to be longer than any
    /// client may build (a loop through the same relays).
    pub circuits_too_long: u64,
    /// CREATEs refused for coming faster than a link may send them.
    pub creates_refused: u64,
    /// Relays in the sample circuits are chosen from.
    pub relay_sample: usize,
    /// Routing tables that walks refused for leaving out nodes or
    /// showing gaps wider than the ring's density allows.
    pub tables_refused: u64,
    /// Successor lists this node's successor showed that were too sparse
    /// to be the ring's (a lying successor's), refused.
    pub successor_lists_refused: u64,
    /// Nearer successors this node's own lookup from outside its
    /// neighbourhood found: each one a split ring joined again.
    pub successors_mended: u64,
    /// Entry guards dropped for too few working circuits (path bias).
    pub guards_dropped: u64,
    /// Replicas pushed for keys this node has no place for, refused.
    pub replicas_refused: u64,
    /// Replicas peers pushed here and this node acknowledged, whether new
    /// to it or already held: replication at work.
    pub replicas_taken: u64,
    /// Blocks the datastore failed to write (a full disk, say): each
    /// refused to whoever sent it.
    pub store_write_failures: u64,
    /// Blocks given up by a full store because this node no longer has a
    /// place for them on the ring.
    pub blocks_evicted: u64,
    /// Exit streams refused for overload: the circuit, its link or all
    /// exits held as many requests or unread answers as they may.
    pub exit_streams_refused: u64,
    /// Exit circuits torn down because their client stopped reading.
    pub exits_stalled: u64,
    /// What this node's UDP socket carried since start: every link's
    /// packets, handshakes, acknowledgements and keep-alives included.
    #[serde(default)]
    pub traffic: link::Traffic,
    /// Frames received from peers since start, by kind (`PING`,
    /// `PREDECESSOR_REPLY`, `CELL`, ...): what each kind of message costs.
    #[serde(default)]
    pub frames_received: std::collections::BTreeMap<String, FrameCount>,
}

/// Frames of one kind, and their bytes with framing (QUIC's own overhead
/// not included).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrameCount {
    pub frames: u64,
    pub bytes: u64,
}
