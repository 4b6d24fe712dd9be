//! The command line's grammar: what `umbra` accepts as arguments, parsed
//! by clap into typed commands. The binary acts on them; it lives apart
//! so that the parse, and the checks that follow it, can be exercised
//! without running anything.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::node::{self, Config};

pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
pub const DEFAULT_SOCKS: &str = "127.0.0.1:1080";

#[derive(Parser)]
#[command(name = "umbra", version, about = "An anonymous document store")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a node.
    Node(NodeArgs),
    /// Run a local test network of N nodes on this machine.
    Testnet(TestnetArgs),
    /// Insert a document; prints its URI on stdout.
    Put {
        /// The file to insert, or - for standard input.
        file: PathBuf,
        /// Publish under a signed key (umbra:ssk-insert:... or
        /// umbra:ksk:...), at the version after the newest one.
        #[arg(long, value_name = "INSERT_URI")]
        ssk: Option<String>,
        /// The document's content type (default: from the file name's
        /// extension, else application/octet-stream).
        #[arg(long)]
        content_type: Option<String>,
        /// The node's HTTP gateway.
        #[arg(long, default_value = DEFAULT_GATEWAY)]
        gateway: String,
    },
    /// Fetch a document by URI.
    Get {
        uri: String,
        /// Write the document here (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The node's HTTP gateway.
        #[arg(long, default_value = DEFAULT_GATEWAY)]
        gateway: String,
    },
    /// Make a new signed subspace: prints its insert URI (secret) and its
    /// request URI (to share).
    Keygen {
        /// The document name within the subspace.
        #[arg(long, default_value = "index")]
        name: String,
    },
    /// Show a running node's place on the ring and what it stores.
    Status {
        /// Print the status as JSON (stable, for scripts).
        #[arg(long)]
        json: bool,
        /// The node's HTTP gateway.
        #[arg(long, default_value = DEFAULT_GATEWAY)]
        gateway: String,
    },
    /// Print the version and the wire format's constants.
    Info,
    /// Run an experiment in the simulator: many node cores in this process
    /// on a virtual clock (paths, failures, churn, load, survival,
    /// anonymity).
    Sim {
        experiment: String,
        /// The network size (each experiment says what it does with it).
        #[arg(long)]
        nodes: Option<usize>,
        /// The same seed gives the same output.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write the table as CSV here.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// Also draw the experiment's figure here (SVG).
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// A quick run at small sizes (what the tests run).
        #[arg(long)]
        quick: bool,
        /// Virtual seconds to run (churn: default an hour; anonymity: 30 days).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Users to simulate (anonymity: default 10).
        #[arg(long, value_name = "N")]
        users: Option<usize>,
        /// Only these rows (anonymity): ADVERSARY, @F or ADVERSARY@F,
        /// comma-separated.
        #[arg(long, value_name = "ROWS")]
        only: Option<String>,
    },
}

#[derive(Args)]
pub struct NodeArgs {
    /// TOML file with the same keys as these flags; flags win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the node keeps its identity and datastore.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// QUIC (UDP) address to listen on; 0.0.0.0:PORT or [::]:PORT for
    /// every interface.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// An address other hosts reach this node at (repeatable, IPv4 and
    /// IPv6). Without it, a node listening on an unspecified address learns
    /// its address from its peers.
    #[arg(long, value_name = "ADDR")]
    pub public_addr: Vec<SocketAddr>,
    /// The narrowest addresses this node advertises, dials and relays to:
    /// global, private or loopback (default: the narrowest of the listen,
    /// public and bootstrap addresses).
    #[arg(long, value_name = "SCOPE")]
    pub addr_scope: Option<crate::link::addr::Scope>,
    /// A node of the ring to join, as ADDR or ID@ADDR (repeatable). None
    /// starts a new ring.
    #[arg(long)]
    pub bootstrap: Vec<node::Bootstrap>,
    /// Serve the HTTP gateway (documents, index page, status) here.
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_HTTP, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Serve the SOCKS5 proxy to .umbra names here.
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_SOCKS, value_name = "ADDR")]
    pub socks: Option<SocketAddr>,
    /// Run as a client only: accept no inbound links, relay nothing, take
    /// no place on the ring; insert and fetch through other nodes'
    /// circuits (for a machine behind NAT or a firewall). Needs
    /// --bootstrap.
    #[arg(long)]
    pub client_only: bool,
    /// Relays in each circuit this node builds (1 to 8; default 3).
    #[arg(long)]
    pub hops: Option<usize>,
}

#[derive(Args)]
pub struct TestnetArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 8)]
    pub nodes: usize,
    /// The SOCKS5 proxy of the first node (port 0: any free port).
    #[arg(long, default_value = DEFAULT_SOCKS)]
    pub socks: SocketAddr,
    /// The HTTP gateway of the first node (port 0: any free port).
    #[arg(long, default_value = DEFAULT_HTTP)]
    pub http: SocketAddr,
    /// Keep the nodes' data here (DIR/node-I) instead of a temporary
    /// directory removed at the end.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Each node's store size, in bytes (the nodes hold every document
    /// five times between them).
    #[arg(long)]
    pub store_bytes: Option<u64>,
}

impl Cli {
    /// Parse arguments (the first is the program's name) to a command, or
    /// clap's error saying what is wrong (or the help asked for).
    pub fn parse_from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args)
    }
}

impl NodeArgs {
    /// The node's configuration: `cfg` (the file's, or the defaults) with
    /// every flag given put over it. Not yet validated.
    pub fn apply(self, mut cfg: Config) -> Config {
        if let Some(d) = self.data_dir {
            cfg.data_dir = d;
        }
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if !self.public_addr.is_empty() {
            cfg.public_addr = self.public_addr;
        }
        if let Some(scope) = self.addr_scope {
            cfg.addr_scope = Some(scope);
        }
        if !self.bootstrap.is_empty() {
            cfg.bootstrap = self.bootstrap;
        }
        if let Some(h) = self.http {
            cfg.http = Some(h);
        }
        if let Some(s) = self.socks {
            cfg.socks = Some(s);
        }
        if self.client_only {
            cfg.relay = false;
        }
        if let Some(h) = self.hops {
            cfg.circuit_hops = h;
        }
        cfg
    }
}
