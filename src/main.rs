//! The `umbra` command line. It parses arguments and calls the library;
//! nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use umbra::node::{self, Config};
use umbra::wire;

#[derive(Parser)]
#[command(name = "umbra", version, about = "An anonymous document store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Node(NodeArgs),
    /// Show a running node's place on the ring and what it stores.
    Status {
        /// Print the status as JSON (stable, for scripts).
        #[arg(long)]
        json: bool,
        /// The node's local HTTP gateway.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        gateway: String,
    },
    /// Print the version and the wire format's constants.
    Info,
}

#[derive(Args)]
struct NodeArgs {
    /// TOML file with the same keys as these flags; flags win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the node keeps its identity and datastore.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// QUIC address to listen on.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A node of the ring to join, as ADDR or ID@ADDR (repeatable). None
    /// starts a new ring.
    #[arg(long)]
    bootstrap: Vec<node::Bootstrap>,
    /// Local HTTP gateway address (status endpoint).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Run as a client only: accept no inbound links, relay nothing, take
    /// no place on the ring; insert and fetch through other nodes'
    /// circuits (for a machine behind NAT or a firewall). Needs
    /// --bootstrap.
    #[arg(long)]
    client_only: bool,
    /// Relays in each circuit this node builds (1 to 8; default 3).
    #[arg(long)]
    hops: Option<usize>,
}

/// Exit codes for scripts.
const EXIT_UNREACHABLE: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("umbra: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Info => {
            println!("umbra {}", env!("CARGO_PKG_VERSION"));
            println!("cell size:              {} bytes", wire::CELL_LEN);
            println!("relay payload per cell: {} bytes", wire::RELAY_BODY_MAX);
            println!("maximum circuit length: {} hops", wire::MAX_HOPS);
            println!("block size:             {} bytes", wire::BLOCK_DATA_LEN);
            ExitCode::SUCCESS
        }
        Command::Node(args) => match runtime.block_on(run_node(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("umbra: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Status { json, gateway } => {
            match runtime.block_on(umbra::gateway::fetch_status(&gateway)) {
                Ok(s) if json => match serde_json::to_string_pretty(&s) {
                    Ok(text) => {
                        println!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("umbra: {e}");
                        ExitCode::FAILURE
                    }
                },
                Ok(s) => {
                    let short = |id: &str| id.get(..16).unwrap_or(id).to_string();
                    println!("node         {}", s.id);
                    println!("listening    {}", s.listen);
                    println!("joined       {}", if s.joined { "yes" } else { "not yet" });
                    println!(
                        "predecessor  {}",
                        s.predecessor.as_deref().map_or("none".into(), short)
                    );
                    println!("successors   {}", s.successors.len());
                    for id in &s.successors {
                        println!("             {}", short(id));
                    }
                    println!("fingers      {} distinct", s.fingers);
                    println!("links        {}", s.links);
                    println!(
                        "stored       {} blocks, {} bytes",
                        s.blocks_stored, s.bytes_stored
                    );
                    println!(
                        "cached       {} blocks, {} bytes",
                        s.blocks_cached, s.bytes_cached
                    );
                    println!("misbehaving  {} peers disconnected", s.misbehaving_peers);
                    println!(
                        "circuits     {} relayed, {} own ({} built), {} relays sampled{}",
                        s.circuits_relayed,
                        s.circuits_own,
                        s.circuits_built,
                        s.relay_sample,
                        if s.relay { "" } else { ", client only" }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("umbra: {e}");
                    ExitCode::from(EXIT_UNREACHABLE)
                }
            }
        }
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if !args.bootstrap.is_empty() {
        cfg.bootstrap = args.bootstrap;
    }
    if let Some(h) = args.http {
        cfg.http = Some(h);
    }
    if args.client_only {
        cfg.relay = false;
    }
    if let Some(h) = args.hops {
        cfg.circuit_hops = h;
    }
    let handle = node::start(cfg).await.context("cannot start the node")?;
    // For the person at the terminal and for scripts: where to reach it.
    println!("listening {}", handle.listen);
    if let Some(http) = handle.http {
        println!("gateway http://{http}");
    }

    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    handle.leave().await;
    tracing::info!("left the ring");
    Ok(())
}
