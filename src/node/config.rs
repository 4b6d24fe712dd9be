//! Node configuration: the command line's flags, or the same keys in a
//! TOML file (flags win).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::link::addr::{self, Scope};
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

/// The longest a link stays quiet before a keep-alive, whatever the link
/// timeout: half the 30 s after which Linux conntrack and many home routers
/// drop an idle UDP mapping (see `link::Config::keep_alive`).
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Identity and datastore live here.
    pub data_dir: PathBuf,
    /// QUIC address to listen on.
    pub listen: SocketAddr,
    /// Addresses to advertise, as other hosts reach this node (IPv4 and
    /// IPv6, at most four). Without any, a node advertises its listen
    /// address, or, listening on an unspecified one, learns what to
    /// advertise from its peers (`link::reach`).
    pub public_addr: Vec<SocketAddr>,
    /// The narrowest address scope this node advertises, dials and relays
    /// to: `global` (the public internet only), `private` (also private
    /// networks) or `loopback` (also this host). Without it, the narrowest
    /// scope of the listen, public and bootstrap addresses, else `global`.
    pub addr_scope: Option<Scope>,
    /// Observer networks that must agree on an address before a node that
    /// learns its address tests it (at least 2).
    pub observed_quorum: usize,
    /// Nodes to join through; none starts a new ring.
    pub bootstrap: Vec<Bootstrap>,
    /// Local HTTP gateway: documents, the index page, status. Read by the
    /// daemon, which serves it; the node itself has no front door.
    pub http: Option<SocketAddr>,
    /// Local SOCKS5 proxy to `.umbra` names (the daemon's too).
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
    /// No two relays of a circuit share an IPv4 network of this many
    /// leading bits (16), or an IPv6 one of `path_network_v6` (48). Only
    /// public addresses count; 0 turns the rule off.
    pub path_network_v4: u8,
    pub path_network_v6: u8,
    /// The id puzzle every relay's identity must solve (leading zero bits
    /// of a hash of its key, S/Kademlia's static puzzle; see
    /// `crypto::puzzle_bits`). The whole network must agree: a relay
    /// refuses relays' descriptors that fall short. 16 costs about a
    /// second of one core once per relay identity; a local test network
    /// uses less.
    pub id_puzzle_bits: u8,
    /// What peers and clients may make this node hold or do at once.
    pub limits: Limits,
    /// Latency and bandwidth emulated on every datagram the node sends:
    /// for benchmarks, set from code only, never from a file or a flag.
    #[serde(skip)]
    pub emulate: Option<crate::link::Emulation>,
}

/// Bounds on what others may make a node hold or do (`[limits]` in the
/// configuration file). Beyond each, the node refuses (a typed REJECTED)
/// rather than queue or allocate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Routed requests in progress at once, wherever they started.
    pub requests: usize,
    /// Of those, from one neighbour: its fair share.
    pub requests_per_peer: usize,
    /// Of those, started by this node's exits for clients' circuits...
    pub requests_from_exits: usize,
    /// ... and by the circuits of one previous hop.
    pub exit_requests_per_link: usize,
    /// Bytes of answers the exits may hold for clients that have not read
    /// them yet (their circuit windows closed).
    pub exit_unread_bytes: usize,
    /// Seconds an exit circuit's answers may wait for its client to read
    /// before the circuit is torn down.
    pub exit_stall_secs: u64,
    /// Circuits this node relays at once...
    pub relay_circuits: usize,
    /// ... and of those, opened by one link.
    pub circuits_per_link: usize,
    /// SOCKS sessions served at once; more wait in the kernel's accept
    /// queue.
    pub socks_clients: usize,
    /// Gateway connections served at once; more wait likewise.
    pub gateway_clients: usize,
    /// Bytes of documents the gateway and the proxy hold in memory at
    /// once for their fetches and inserts (twice a document's size while
    /// it is cut into blocks or rebuilt from them); a request that cannot
    /// get its share within 30 s is refused.
    pub document_bytes: u64,
    /// Seconds a request body may go without sending a byte.
    pub body_secs: u64,
    /// The largest document one insert through the gateway or the proxy
    /// may be: it is streamed, so this bounds the work, not the memory.
    pub insert_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let route = crate::route::Config::default();
        let circuits = crate::circuit::Settings::default();
        Limits {
            requests: route.max_pending,
            requests_per_peer: route.max_pending_per_peer,
            requests_from_exits: route.max_pending_local,
            exit_requests_per_link: circuits.exit_routes_per_link,
            exit_unread_bytes: circuits.exit_unread,
            exit_stall_secs: circuits.exit_stall.as_secs(),
            relay_circuits: circuits.relay_circuits,
            circuits_per_link: circuits.circuits_per_link,
            socks_clients: crate::socks::MAX_SESSIONS,
            gateway_clients: crate::gateway::MAX_CONNECTIONS,
            document_bytes: DEFAULT_DOCUMENT_BYTES,
            body_secs: crate::gateway::BODY_TIMEOUT.as_secs(),
            insert_bytes: crate::gateway::MAX_INSERT,
        }
    }
}

/// The largest value any request limit may take: far above what one
/// machine serves, and small enough that no sum of them overflows.
pub const MAX_REQUESTS_LIMIT: usize = 1 << 20;
/// The most unread answers the exits may be allowed to hold.
pub const MAX_EXIT_UNREAD: usize = 16 << 30;
/// The most SOCKS sessions or gateway connections served at once.
pub const MAX_LOCAL_CLIENTS: usize = 1 << 16;
/// Document bytes held for local clients by default: room for the
/// largest insert the gateway takes, twice over.
pub const DEFAULT_DOCUMENT_BYTES: u64 = 1 << 30;
/// The document budget's bounds: one block's worth of document, and 1 TiB.
pub const DOCUMENT_BYTES_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(1 << 40);

impl Limits {
    fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Invalid(format!("limits: {what}")));
        if !(1..=MAX_REQUESTS_LIMIT).contains(&self.requests) {
            return bad(&format!("requests must be 1 to {MAX_REQUESTS_LIMIT}"));
        }
        for (name, v) in [
            ("requests_per_peer", self.requests_per_peer),
            ("requests_from_exits", self.requests_from_exits),
            ("exit_requests_per_link", self.exit_requests_per_link),
        ] {
            // A share above the whole budget is the budget.
            if !(1..=MAX_REQUESTS_LIMIT).contains(&v) {
                return bad(&format!("{name} must be 1 to {MAX_REQUESTS_LIMIT}"));
            }
        }
        if !(crate::wire::MAX_BLOCK_LEN..=MAX_EXIT_UNREAD).contains(&self.exit_unread_bytes) {
            return bad(&format!(
                "exit_unread_bytes must be {} (one block) to {MAX_EXIT_UNREAD}",
                crate::wire::MAX_BLOCK_LEN
            ));
        }
        if !(1..=3600).contains(&self.exit_stall_secs) {
            return bad("exit_stall_secs must be 1 to 3600");
        }
        for (name, v) in [
            ("relay_circuits", self.relay_circuits),
            ("circuits_per_link", self.circuits_per_link),
        ] {
            if !(1..=MAX_REQUESTS_LIMIT).contains(&v) {
                return bad(&format!("{name} must be 1 to {MAX_REQUESTS_LIMIT}"));
            }
        }
        for (name, v) in [
            ("socks_clients", self.socks_clients),
            ("gateway_clients", self.gateway_clients),
        ] {
            if !(1..=MAX_LOCAL_CLIENTS).contains(&v) {
                return bad(&format!("{name} must be 1 to {MAX_LOCAL_CLIENTS}"));
            }
        }
        if !(1..=86_400).contains(&self.body_secs) {
            return bad("body_secs must be 1 to 86400");
        }
        if !(1 << 20..=1 << 50).contains(&self.insert_bytes) {
            return bad("insert_bytes must be 1 MiB to 1 PiB");
        }
        if !DOCUMENT_BYTES_RANGE.contains(&self.document_bytes) {
            return bad(&format!(
                "document_bytes must be {} to {}",
                DOCUMENT_BYTES_RANGE.start(),
                DOCUMENT_BYTES_RANGE.end()
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("umbra-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_addr: Vec::new(),
            addr_scope: None,
            observed_quorum: 2,
            bootstrap: Vec::new(),
            http: None,
            socks: None,
            socks_handshake_ms: 10_000,
            replicas: 5,
            successors: 8,
            store_bytes: 1 << 30,
            cache_bytes: 256 << 20,
            max_links: 256,
            stabilize_ms: 500,
            link_timeout_ms: 30_000,
            relay: true,
            circuit_hops: 3,
            circuit_lifetime_secs: 600,
            circuit_requests: 2048,
            path_network_v4: 16,
            path_network_v6: 48,
            id_puzzle_bits: 16,
            limits: Limits::default(),
            emulate: None,
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
        Config::parse(&text).map_err(|message| Error::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// The configuration a TOML text gives (not yet validated).
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.id_puzzle_bits > crate::crypto::MAX_PUZZLE_BITS {
            return Err(Error::Invalid(format!(
                "id_puzzle_bits must be at most {}",
                crate::crypto::MAX_PUZZLE_BITS
            )));
        }
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
        if self.path_network_v4 > 32 || self.path_network_v6 > 128 {
            return Err(Error::Invalid(
                "path_network_v4 must be 0 to 32 and path_network_v6 0 to 128".into(),
            ));
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
        self.limits.validate()?;
        self.validate_addresses()
    }

    fn validate_addresses(&self) -> Result<(), Error> {
        let policy = addr::Policy::new(self.scope());
        if self.public_addr.len() > crate::wire::MAX_ADDRS {
            return Err(Error::Invalid(format!(
                "public_addr takes at most {} addresses",
                crate::wire::MAX_ADDRS
            )));
        }
        for a in &self.public_addr {
            if let Some(why) = policy.refusal(*a) {
                return Err(Error::Invalid(format!("public_addr {a}: {why}")));
            }
        }
        for b in &self.bootstrap {
            if let Some(why) = policy.refusal(b.addr) {
                return Err(Error::Invalid(format!("bootstrap {}: {why}", b.addr)));
            }
        }
        if self.observed_quorum < 2 {
            return Err(Error::Invalid(
                "observed_quorum must be at least 2: one peer's word is not enough".into(),
            ));
        }
        if !self.relay || !self.public_addr.is_empty() {
            return Ok(());
        }
        if self.listen.ip().is_unspecified() {
            if self.bootstrap.is_empty() {
                return Err(Error::Invalid(format!(
                    "listening on {} with no public_addr, this node would learn its address \
                     from peers, but the first node of a new ring has none: give it \
                     --public-addr",
                    self.listen
                )));
            }
            return Ok(());
        }
        // The listen address is what gets advertised; its port may be 0
        // (the OS picks one).
        let probe = SocketAddr::new(self.listen.ip(), self.listen.port().max(1));
        match policy.refusal(probe) {
            Some(why) => Err(Error::Invalid(format!(
                "listen {}: {why}; give --public-addr with an address others can reach",
                self.listen
            ))),
            None => Ok(()),
        }
    }

    /// The narrowest address scope this node works in: `addr_scope`, else
    /// the narrowest of the addresses it was given, else global.
    pub fn scope(&self) -> Scope {
        if let Some(s) = self.addr_scope {
            return s;
        }
        let listen = Some(self.listen.ip()).filter(|ip| !ip.is_unspecified());
        let given = listen
            .into_iter()
            .chain(self.public_addr.iter().map(SocketAddr::ip))
            .chain(self.bootstrap.iter().map(|b| b.addr.ip()));
        addr::narrowest(given).unwrap_or(Scope::Global)
    }

    pub fn circuits(&self) -> crate::circuit::Settings {
        crate::circuit::Settings {
            hops: self.circuit_hops,
            relay: self.relay,
            lifetime: Duration::from_secs(self.circuit_lifetime_secs),
            requests: self.circuit_requests,
            networks: crate::circuit::Networks {
                v4: self.path_network_v4,
                v6: self.path_network_v6,
            },
            exit_stall: Duration::from_secs(self.limits.exit_stall_secs),
            exit_unread: self.limits.exit_unread_bytes,
            exit_routes_per_link: self.limits.exit_requests_per_link,
            relay_circuits: self.limits.relay_circuits,
            circuits_per_link: self.limits.circuits_per_link,
            ..crate::circuit::Settings::default()
        }
    }

    /// The core's settings, for a node whose socket is bound to `listen`.
    pub fn core_settings(&self, listen: SocketAddr) -> super::core::Settings {
        // What to advertise: the addresses given, else a specific listen
        // address, else what peers will tell (until then, nothing: a node
        // nobody can dial must not pose as a relay).
        let (advertised, learn) = if !self.relay {
            (Vec::new(), None)
        } else if !self.public_addr.is_empty() {
            (self.public_addr.clone(), None)
        } else if !listen.ip().is_unspecified() {
            (vec![listen], None)
        } else {
            let learn = crate::link::reach::Settings {
                quorum: self.observed_quorum,
                ..crate::link::reach::Settings::default()
            };
            (Vec::new(), Some(learn))
        };
        super::core::Settings {
            listen,
            relay: self.relay,
            replicas: self.replicas,
            ring: self.ring(),
            route: crate::route::Config {
                max_pending: self.limits.requests,
                max_pending_per_peer: self.limits.requests_per_peer,
                max_pending_local: self.limits.requests_from_exits,
                ..crate::route::Config::default()
            },
            circuits: self.circuits(),
            policy: addr::Policy::new(self.scope()),
            advertised,
            learn,
            bootstrap: self.bootstrap.iter().map(|b| (b.addr, b.id)).collect(),
            sampling: super::core::sampling::Pace::default(),
            verified: None,
            id_puzzle_bits: self.id_puzzle_bits,
        }
    }

    pub fn ring(&self) -> crate::ring::Config {
        let period = Duration::from_millis(self.stabilize_ms);
        crate::ring::Config {
            successors: self.successors,
            stabilize_every: period,
            fix_fingers_every: period / 2,
            check_predecessor_every: period * 2,
            // Answers come in a round trip or two, however slow the
            // maintenance: a slow stabilize period does not make a dead
            // node take minutes to notice.
            query_timeout: (period * 4).clamp(Duration::from_millis(500), Duration::from_secs(5)),
            member: self.relay,
            ..crate::ring::Config::default()
        }
    }

    pub fn link(&self) -> crate::link::Config {
        let timeout = Duration::from_millis(self.link_timeout_ms);
        crate::link::Config {
            idle_timeout: timeout,
            keep_alive: (timeout / 4).min(MAX_KEEP_ALIVE),
            max_links: self.max_links,
            emulate: self.emulate,
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

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn addresses_are_checked_against_the_scope_they_imply() {
        let c: Config = toml::from_str(
            "listen = \"0.0.0.0:7000\"\npublic_addr = [\"10.0.0.1:7000\", \"[fd00::1]:7000\"]\n",
        )
        .unwrap();
        assert_eq!(c.public_addr.len(), 2);
        assert_eq!(c.scope(), Scope::Private);
        c.validate().unwrap();
        // The default listens on loopback: a test network on one host.
        assert_eq!(Config::default().scope(), Scope::Loopback);
        Config::default().validate().unwrap();
        let first_learner = Config {
            listen: sa("0.0.0.0:7000"),
            ..Config::default()
        };
        assert_eq!(first_learner.scope(), Scope::Global);
        let e = first_learner.validate().unwrap_err().to_string();
        assert!(e.contains("--public-addr"), "{e}");
        let learner = Config {
            listen: sa("0.0.0.0:7000"),
            bootstrap: vec!["10.0.0.1:7000".parse().unwrap()],
            ..Config::default()
        };
        learner.validate().unwrap();
        for bad in [
            "0.0.0.0:7000",
            "10.0.0.1:0",
            "169.254.0.1:7000",
            "224.0.0.1:7000",
        ] {
            let c = Config {
                listen: sa("0.0.0.0:7000"),
                public_addr: vec![sa(bad)],
                ..Config::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
        let narrower = Config {
            listen: sa("0.0.0.0:7000"),
            public_addr: vec![sa("127.0.0.1:7000")],
            addr_scope: Some(Scope::Global),
            ..Config::default()
        };
        let e = narrower.validate().unwrap_err().to_string();
        assert!(e.contains("narrower"), "{e}");
        let bootstrap_outside = Config {
            addr_scope: Some(Scope::Private),
            bootstrap: vec!["127.0.0.1:7000".parse().unwrap()],
            listen: sa("10.0.0.2:7000"),
            ..Config::default()
        };
        assert!(bootstrap_outside.validate().is_err());
        let one_word = Config {
            observed_quorum: 1,
            ..Config::default()
        };
        assert!(one_word.validate().is_err());
        let t: Config = toml::from_str("addr_scope = \"private\"").unwrap();
        assert_eq!(t.addr_scope, Some(Scope::Private));
        assert!(toml::from_str::<Config>("addr_scope = \"lan\"").is_err());
    }

    #[test]
    fn keep_alives_stay_under_nat_mapping_lifetimes() {
        let slow = Config {
            link_timeout_ms: 600_000,
            ..Config::default()
        };
        assert_eq!(slow.link().keep_alive, MAX_KEEP_ALIVE);
        assert_eq!(
            Config::default().link().keep_alive,
            Duration::from_millis(7500)
        );
    }

    #[test]
    fn limits_come_from_the_file_and_impossible_ones_are_refused() {
        let c =
            Config::parse("[limits]\nrequests = 64\nrequests_per_peer = 8\nexit_stall_secs = 5\n")
                .unwrap();
        c.validate().expect("valid limits");
        assert_eq!(c.limits.requests, 64);
        assert_eq!(
            c.limits.requests_from_exits,
            Limits::default().requests_from_exits
        );
        assert_eq!(c.circuits().exit_stall, Duration::from_secs(5));
        assert_eq!(c.core_settings(c.listen).route.max_pending_per_peer, 8);
        for bad in [
            "requests = 0",
            "requests = 18446744073709551615",
            "requests_per_peer = 0",
            "exit_requests_per_link = 9999999999",
            "exit_unread_bytes = 10",
            "exit_stall_secs = 0",
            "exit_stall_secs = 99999999999",
            "socks_clients = 0",
            "relay_circuits = 0",
            "circuits_per_link = 99999999999",
            "gateway_clients = 100000000",
            "document_bytes = 1000",
            "body_secs = 0",
            "insert_bytes = 5",
            "document_bytes = 18446744073709551615",
        ] {
            let c = Config::parse(&format!("[limits]\n{bad}\n")).unwrap();
            let e = c.validate().expect_err(bad).to_string();
            assert!(e.contains("limits"), "{bad}: {e}");
        }
        assert!(
            Config::parse("[limits]\nrequest = 1\n").is_err(),
            "a misspelt limit"
        );
    }
}
