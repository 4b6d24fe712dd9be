//! The local API of a running node: a handle to stop it and a cheap,
//! cloneable client to make requests through it. Both talk to the driver
//! task over a channel; the core answers each request once.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::core::{Reply, Request};
use super::{Error, Status, StoreError};
use crate::circuit::{CircuitError, Isolation};
use crate::route::{self, Outcome};
use crate::wire::{KeyKind, NodeId, RequestId, RoutingKey};

/// How long a store through the ring may take, all told.
const STORE_TIMEOUT: Duration = Duration::from_secs(20);

/// What handles send the driver.
pub(super) enum Command {
    Request(Request, oneshot::Sender<Reply>),
    /// Stop at once, as a crash would.
    Crash(oneshot::Sender<()>),
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

/// The node's side of a [`NodeClient`]: the requests its clients make,
/// each with where its answer goes. The driver serves one for a real node;
/// the simulator serves one for each simulated node, so that the document
/// layer runs unchanged over either.
pub struct Requests {
    rx: mpsc::Receiver<Command>,
}

/// Where the answer to one request goes.
pub struct Answer(oneshot::Sender<Reply>);

impl Answer {
    pub fn send(self, reply: Reply) {
        let _ = self.0.send(reply);
    }
}

/// A client and the other end of its channel, for a node run by something
/// other than the driver (the simulator).
pub fn channel() -> (NodeClient, Requests) {
    let (tx, rx) = mpsc::channel(1024);
    (
        NodeClient {
            cmd: tx,
            via: Via::Circuit(Isolation::default()),
        },
        Requests { rx },
    )
}

impl Requests {
    /// The next request already waiting, if any; a crash command is
    /// answered at once and skipped (a simulated node crashes when the
    /// simulation says so).
    pub fn try_next(&mut self) -> Option<(Request, Answer)> {
        loop {
            match self.rx.try_recv() {
                Ok(Command::Request(r, tx)) => return Some((r, Answer(tx))),
                Ok(Command::Crash(done)) => {
                    let _ = done.send(());
                }
                Err(_) => return None,
            }
        }
    }
}

/// Ask the driver; `None` if the node has stopped.
async fn ask(cmd: &mpsc::Sender<Command>, request: Request) -> Option<Reply> {
    let (tx, rx) = oneshot::channel();
    cmd.send(Command::Request(request, tx)).await.ok()?;
    rx.await.ok()
}

/// A handle on a running node.
pub struct NodeHandle {
    pub id: NodeId,
    /// Its public keys: Ed25519 identity, and the X25519 onion key it
    /// started with (a relay makes a new one every week).
    pub identity_key: [u8; 32],
    pub onion_key: [u8; 32],
    /// The address its QUIC socket is bound to.
    pub listen: SocketAddr,
    pub(super) cmd: mpsc::Sender<Command>,
    pub(super) task: JoinHandle<()>,
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

    /// The same node, with requests on circuits of a key derived from this
    /// client's and `label`: two labels never share a circuit, with each
    /// other or with this client. A direct client stays direct.
    pub fn within(&self, label: &[u8]) -> NodeClient {
        let via = match self.via {
            Via::Circuit(iso) => Via::Circuit(iso.within(label)),
            Via::Direct => Via::Direct,
        };
        NodeClient {
            cmd: self.cmd.clone(),
            via,
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
        request: route::Request,
    ) -> Result<Outcome, RequestError> {
        // A circuit that breaks under a request is replaced: try once more
        // on a fresh one.
        let mut tries = 0;
        loop {
            tries += 1;
            let r = ask(
                &self.cmd,
                Request::Circuit {
                    iso,
                    kind,
                    key,
                    request: request.clone(),
                },
            )
            .await;
            match r {
                Some(Reply::Circuit(Err(CircuitError::Closed))) if tries < 2 => continue,
                Some(Reply::Circuit(r)) => return r.map_err(RequestError::from),
                _ => return Err(RequestError::Stopped),
            }
        }
    }

    async fn route(
        &self,
        kind: KeyKind,
        key: RoutingKey,
        request: route::Request,
        id: Option<RequestId>,
    ) -> Result<Outcome, RequestError> {
        match ask(
            &self.cmd,
            Request::Route {
                kind,
                key,
                request,
                id,
            },
        )
        .await
        {
            Some(Reply::Routed(o)) => Ok(o),
            _ => Err(RequestError::Stopped),
        }
    }

    /// Fetch a block by routing a get toward its key. The block is verified
    /// against the key before it is returned.
    pub async fn get_block(&self, kind: KeyKind, key: RoutingKey) -> Result<Vec<u8>, RequestError> {
        match self.via {
            Via::Direct => self.get_block_as(kind, key, None).await,
            Via::Circuit(iso) => {
                let outcome = self
                    .through_circuit(iso, kind, key, route::Request::Get)
                    .await?;
                found(kind, &key, outcome)
            }
        }
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, Error> {
        match ask(&self.cmd, Request::Status).await {
            Some(Reply::Status(s)) => Ok(*s),
            _ => Err(Error::Stopped),
        }
    }

    /// A direct get (no circuit) with a chosen request id (diagnostics and
    /// tests of loop detection).
    pub async fn get_block_as(
        &self,
        kind: KeyKind,
        key: RoutingKey,
        id: Option<RequestId>,
    ) -> Result<Vec<u8>, RequestError> {
        found(
            kind,
            &key,
            self.route(kind, key, route::Request::Get, id).await?,
        )
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
            Via::Direct => {
                self.route(kind, key, route::Request::Put(block), None)
                    .await?
            }
            Via::Circuit(iso) => {
                self.through_circuit(iso, kind, key, route::Request::Put(block))
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
        match ask(&self.cmd, Request::BuildCircuit(iso)).await {
            Some(Reply::Built(r)) => r.map_err(RequestError::from),
            _ => Err(RequestError::Stopped),
        }
    }

    /// Make circuits for `iso` use exactly these relays, first hop first
    /// (diagnostics and measurements, as Tor's controller can). They must
    /// be in the relay sample.
    pub async fn pin_path(&self, iso: Isolation, path: Vec<NodeId>) -> Result<(), Error> {
        match ask(&self.cmd, Request::PinPath(iso, path)).await {
            Some(_) => Ok(()),
            None => Err(Error::Stopped),
        }
    }

    /// The relays this node currently chooses circuits from.
    pub async fn relay_sample(&self) -> Result<Vec<NodeId>, Error> {
        match ask(&self.cmd, Request::Sample).await {
            Some(Reply::Sample(ids)) => Ok(ids),
            _ => Err(Error::Stopped),
        }
    }

    /// Drop a block from this node's store and cache.
    pub async fn forget_block(&self, kind: KeyKind, key: RoutingKey) -> Result<bool, Error> {
        match ask(&self.cmd, Request::Forget { kind, key }).await {
            Some(Reply::Bool(b)) => Ok(b),
            _ => Err(Error::Stopped),
        }
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
        let reply = ask(&self.cmd, Request::Store { kind, key, block });
        match tokio::time::timeout(STORE_TIMEOUT, reply).await {
            Ok(Some(Reply::Stored(r))) => r,
            Ok(_) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Whether this node's primary store holds the block.
    pub async fn holds(&self, kind: KeyKind, key: RoutingKey) -> Result<bool, Error> {
        match ask(&self.cmd, Request::Holds { kind, key }).await {
            Some(Reply::Bool(b)) => Ok(b),
            _ => Err(Error::Stopped),
        }
    }

    /// Leave the ring gracefully: hand blocks to the successor, tell the
    /// neighbours, close the links.
    pub async fn leave(self) {
        ask(&self.cmd, Request::Leave).await;
        let _ = self.task.await;
    }

    /// Stop at once, as a crash would: no hand-over, no goodbye to the
    /// ring. (Links still close, so peers notice at once rather than after
    /// the idle timeout; a test that needs silence kills a process.)
    pub async fn crash(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Crash(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }

    /// Wait until the node stops by itself (it never does unless told).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}
