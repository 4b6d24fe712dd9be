//! A local test network: `umbra testnet` starts N nodes on loopback in one
//! process, the first with the SOCKS proxy and the HTTP gateway, and waits
//! until the ring is correct and the first node can build a circuit.
//! Everything is real (QUIC links, the datastore, circuits); only the
//! addresses are local.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::circuit::Isolation;
use crate::daemon::{self, Daemon};
use crate::node::{Bootstrap, Config, Status};

/// Relays in each circuit of a test network.
pub const HOPS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a test network needs at least {need} nodes (a circuit's relays and its client)")]
    TooFew { need: usize },
    #[error("node {index}: {source}")]
    Node {
        index: usize,
        #[source]
        source: daemon::Error,
    },
    #[error("cannot make a data directory: {0}")]
    DataDir(std::io::Error),
    #[error("the network was not ready within {limit:?}: {reason}")]
    NotReady { limit: Duration, reason: String },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nodes: usize,
    /// The first node's SOCKS proxy and gateway.
    pub socks: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// Where the nodes keep their data (`DIR/node-I`), kept after the
    /// network stops; `None` for a temporary directory removed at the end.
    pub data_dir: Option<PathBuf>,
    /// Every node's configuration but its data directory, bootstrap node,
    /// proxy and gateway.
    pub template: Config,
}

impl Settings {
    /// `nodes` nodes with a ring maintenance period fit for a local
    /// network.
    pub fn new(nodes: usize) -> Settings {
        Settings {
            nodes,
            socks: None,
            http: None,
            data_dir: None,
            template: Config {
                stabilize_ms: 200,
                circuit_hops: HOPS,
                // A network of one machine's processes: a cheap puzzle,
                // still checked.
                id_puzzle_bits: 8,
                ..Config::default()
            },
        }
    }
}

/// A running test network.
pub struct Testnet {
    nodes: Vec<Daemon>,
    successors: usize,
    _temp: Option<tempfile::TempDir>,
}

impl Testnet {
    /// Start the nodes; the first starts the ring, the others join
    /// through it.
    pub async fn start(settings: Settings) -> Result<Testnet, Error> {
        let need = settings.template.circuit_hops + 1;
        if settings.nodes < need {
            return Err(Error::TooFew { need });
        }
        let (temp, root) = match settings.data_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("umbra-testnet-")
                    .tempdir()
                    .map_err(Error::DataDir)?;
                let root = t.path().to_path_buf();
                (Some(t), root)
            }
        };
        let config = |i: usize, bootstrap: Option<SocketAddr>| Config {
            data_dir: root.join(format!("node-{i}")),
            bootstrap: bootstrap
                .map(|addr| Bootstrap { addr, id: None })
                .into_iter()
                .collect(),
            socks: None,
            http: None,
            ..settings.template.clone()
        };
        let first = Daemon::start(Config {
            socks: settings.socks,
            http: settings.http,
            ..config(0, None)
        })
        .await
        .map_err(|source| Error::Node { index: 0, source })?;
        let bootstrap = first.listen;
        let mut nodes = vec![first];
        for i in 1..settings.nodes {
            match Daemon::start(config(i, Some(bootstrap))).await {
                Ok(h) => nodes.push(h),
                Err(source) => {
                    for h in nodes {
                        h.crash().await;
                    }
                    return Err(Error::Node { index: i, source });
                }
            }
        }
        Ok(Testnet {
            nodes,
            successors: settings.template.successors,
            _temp: temp,
        })
    }

    /// The node with the proxy and the gateway.
    pub fn entry(&self) -> &Daemon {
        &self.nodes[0]
    }

    pub fn nodes(&self) -> &[Daemon] {
        &self.nodes
    }

    /// Wait until every node's ring pointers are right and the entry node
    /// has built a circuit; returns how long that took.
    pub async fn wait_ready(&self, limit: Duration) -> Result<Duration, Error> {
        let start = Instant::now();
        let mut reason = String::new();
        while start.elapsed() < limit {
            match self.ready().await {
                Ok(()) => return Ok(start.elapsed()),
                Err(r) => reason = r,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::NotReady { limit, reason })
    }

    async fn ready(&self) -> Result<(), String> {
        let mut statuses = Vec::new();
        for h in &self.nodes {
            statuses.push(h.status().await.map_err(|e| e.to_string())?);
        }
        ring_correct(&statuses, self.successors)?;
        self.entry()
            .build_circuit(Isolation::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Every node leaves the ring; the temporary directory goes.
    pub async fn shutdown(self) {
        let leaving: Vec<_> = self
            .nodes
            .into_iter()
            .map(|h| tokio::spawn(h.leave()))
            .collect();
        for l in leaving {
            let _ = l.await;
        }
    }
}

/// Whether the statuses of every node of a ring show a correct ring: each
/// predecessor is the node before it in id order, each successor list the
/// next `successors` nodes (or all the others, in a smaller ring).
pub fn ring_correct(statuses: &[Status], successors: usize) -> Result<(), String> {
    let mut ids: Vec<&str> = statuses.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    for s in statuses {
        let short = s.id.get(..8).unwrap_or(&s.id);
        let i = ids
            .binary_search(&s.id.as_str())
            .map_err(|_| "unknown node")?;
        let want: Vec<&str> = (1..n.min(successors + 1))
            .map(|k| ids[(i + k) % n])
            .collect();
        if s.successors.iter().map(String::as_str).collect::<Vec<_>>() != want {
            let shorts = |l: &mut dyn Iterator<Item = &str>| -> String {
                l.map(|id| id.get(..8).unwrap_or(id))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(format!(
                "node {short}: successor list not yet right: [{}], want [{}]",
                shorts(&mut s.successors.iter().map(String::as_str)),
                shorts(&mut want.iter().copied())
            ));
        }
        if n > 1 && s.predecessor.as_deref() != Some(ids[(i + n - 1) % n]) {
            return Err(format!("node {short}: predecessor not yet right"));
        }
    }
    Ok(())
}
