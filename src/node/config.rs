//! Node configuration: the command line's flags, or the same keys in a
//! TOML file (flags win).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::NodeId;

/// A node to join through: `ADDR`, or `ID@ADDR` to also check that the
/// node there is the one meant (its key must hash to ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bootstrap {
    pub addr: SocketAddr,
    pub id: Option<NodeId>,
}

impl std::str::FromStr for Bootstrap {
    type Err = String;

    fn from_str(s: &str) -> Result<Bootstrap, String> {
        let (id, addr) = match s.split_once('@') {
            Some((id, addr)) => (
                Some(
                    NodeId::from_hex(id)
                        .ok_or_else(|| format!("{id:?} is not a 64-digit hex node id"))?,
                ),
                addr,
            ),
            None => (None, s),
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an address like 127.0.0.1:7000"))?;
        Ok(Bootstrap { addr, id })
    }
}

impl TryFrom<String> for Bootstrap {
    type Error = String;
    fn try_from(s: String) -> Result<Bootstrap, String> {
        s.parse()
    }
}

impl From<Bootstrap> for String {
    fn from(b: Bootstrap) -> String {
        match b.id {
            Some(id) => format!("{}@{}", id.to_hex(), b.addr),
            None => b.addr.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Identity and datastore live here.
    pub data_dir: PathBuf,
    /// QUIC address to listen on.
    pub listen: SocketAddr,
    /// Nodes to join through; none starts a new ring.
    pub bootstrap: Vec<Bootstrap>,
    /// Local HTTP gateway: documents, the index page, status.
    pub http: Option<SocketAddr>,
    /// Local SOCKS5 proxy to `.umbra` names.
    pub socks: Option<SocketAddr>,
    /// A SOCKS client must finish its handshake within this time, in
    /// milliseconds.
    pub socks_handshake_ms: u64,
    /// Copies of each block: its successor and the next `replicas - 1`.
    pub replicas: usize,
    /// Length of the successor list.
    pub successors: usize,
    /// Limits of the datastore, in bytes.
    pub store_bytes: u64,
    pub cache_bytes: u64,
    /// Links this node keeps open at once.
    pub max_links: usize,
    /// Ring maintenance period, in milliseconds (stabilize; fix-fingers runs
    /// twice as often, check-predecessor half as often).
    pub stabilize_ms: u64,
    /// A link silent this long is dead, in milliseconds.
    pub link_timeout_ms: u64,
    /// Relay circuits for others and accept inbound links. `false` makes a
    /// client-only node (behind NAT or a firewall): it takes no place on
    /// the ring and relays nothing, yet inserts and fetches through
    /// circuits of other nodes. It needs `bootstrap`.
    pub relay: bool,
    /// Relays in each circuit this node builds (1 to 8).
    pub circuit_hops: usize,
    /// A circuit takes new requests for this many seconds...
    pub circuit_lifetime_secs: u64,
    /// ... or for this many requests, then is replaced.
    pub circuit_requests: u32,
    /// Fault injection for tests: this node flips a bit in every block it
    /// serves. Not settable from a file.
    #[serde(skip)]
    pub fault_corrupt_blocks: bool,
    /// Fault injection for tests: this node flips a bit in every cell it
    /// relays away from the client. Not settable from a file.
    #[serde(skip)]
    pub fault_flip_cells: bool,
    /// Sees everything the node receives (tests). Not settable from a file.
    #[serde(skip)]
    pub observer: Option<crate::observe::Observer>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("umbra-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bootstrap: Vec::new(),
            http: None,
            socks: None,
            socks_handshake_ms: 10_000,
            replicas: 3,
            successors: 8,
            store_bytes: 1 << 30,
            cache_bytes: 256 << 20,
            max_links: 256,
            stabilize_ms: 500,
            link_timeout_ms: 6000,
            relay: true,
            circuit_hops: 3,
            circuit_lifetime_secs: 600,
            circuit_requests: 2048,
            fault_corrupt_blocks: false,
            fault_flip_cells: false,
            observer: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.replicas == 0 {
            return Err(Error::Invalid("replicas must be at least 1".into()));
        }
        if self.successors < self.replicas.saturating_sub(1).max(1) {
            return Err(Error::Invalid(
                "the successor list must hold at least replicas - 1 nodes".into(),
            ));
        }
        if self.successors > crate::wire::MAX_SUCCESSORS {
            return Err(Error::Invalid(format!(
                "successors is at most {}",
                crate::wire::MAX_SUCCESSORS
            )));
        }
        if self.stabilize_ms == 0 || self.link_timeout_ms < 100 {
            return Err(Error::Invalid(
                "stabilize_ms must be positive and link_timeout_ms at least 100".into(),
            ));
        }
        if !(1..=crate::wire::MAX_HOPS).contains(&self.circuit_hops) {
            return Err(Error::Invalid(format!(
                "circuit_hops must be 1 to {}",
                crate::wire::MAX_HOPS
            )));
        }
        if self.circuit_requests == 0 || self.circuit_lifetime_secs == 0 {
            return Err(Error::Invalid(
                "circuit_requests and circuit_lifetime_secs must be positive".into(),
            ));
        }
        if self.socks_handshake_ms == 0 {
            return Err(Error::Invalid("socks_handshake_ms must be positive".into()));
        }
        if !self.relay && self.bootstrap.is_empty() {
            return Err(Error::Invalid(
                "a client-only node (relay = false) needs a bootstrap node".into(),
            ));
        }
        Ok(())
    }

    pub fn socks(&self) -> crate::socks::Settings {
        crate::socks::Settings {
            handshake_timeout: Duration::from_millis(self.socks_handshake_ms),
        }
    }

    pub fn circuits(&self) -> crate::circuit::Settings {
        crate::circuit::Settings {
            hops: self.circuit_hops,
            relay: self.relay,
            lifetime: Duration::from_secs(self.circuit_lifetime_secs),
            requests: self.circuit_requests,
            fault_flip_cells: self.fault_flip_cells,
            observer: self.observer.clone(),
            ..crate::circuit::Settings::default()
        }
    }

    pub fn ring(&self) -> crate::ring::Config {
        let period = Duration::from_millis(self.stabilize_ms);
        crate::ring::Config {
            successors: self.successors,
            stabilize_every: period,
            fix_fingers_every: period / 2,
            check_predecessor_every: period * 2,
            query_timeout: (period * 4).max(Duration::from_millis(500)),
            member: self.relay,
            ..crate::ring::Config::default()
        }
    }

    pub fn link(&self) -> crate::link::Config {
        let timeout = Duration::from_millis(self.link_timeout_ms);
        crate::link::Config {
            idle_timeout: timeout,
            keep_alive: timeout / 4,
            max_links: self.max_links,
            ..crate::link::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_uses_the_flag_names_and_refuses_unknown_keys() {
        let c: Config = toml::from_str(
            "data_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:7000\"\nbootstrap = [\"127.0.0.1:7001\"]\nreplicas = 2\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.bootstrap[0].addr.port(), 7001);
        assert_eq!(c.bootstrap[0].id, None);
        let id = "ab".repeat(32);
        let b: Bootstrap = format!("{id}@127.0.0.1:9").parse().unwrap();
        assert_eq!(b.id.map(|i| i.to_hex()), Some(id));
        assert_eq!(String::from(b).parse::<Bootstrap>(), Ok(b));
        assert!("xyz@127.0.0.1:9".parse::<Bootstrap>().is_err());
        assert!("localhost".parse::<Bootstrap>().is_err());
        assert_eq!(c.replicas, 2);
        assert_eq!(c.successors, 8);
        assert!(toml::from_str::<Config>("lisen = \"127.0.0.1:1\"").is_err());
        let bad = Config {
            replicas: 0,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }
}
