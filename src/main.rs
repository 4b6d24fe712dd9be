//! The `umbra` command line. It parses arguments and calls the library;
//! nothing else lives here.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use umbra::cli::{Cli, Command, NodeArgs, TestnetArgs};
use umbra::client::Progress;
use umbra::gateway::remote::exit;
use umbra::gateway::{self, GatewayError};
use umbra::keys::{SskInsertKey, Uri};
use umbra::node::{self, Config};
use umbra::sim::experiments;
use umbra::testnet::{self, Testnet};
use umbra::wire;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A failure of a command: what to say and how to exit.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Failure {
        Failure::new(e.exit_code(), e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("umbra: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Info => {
            info();
            Ok(())
        }
        Command::Keygen { name } => keygen(&name),
        Command::Sim {
            experiment,
            nodes,
            seed,
            csv,
            plot,
            quick,
            duration,
            users,
            only,
        } => sim(
            &experiment,
            experiments::Options {
                nodes,
                seed,
                small: quick,
                duration,
                users,
                only,
            },
            csv.as_deref(),
            plot.as_deref(),
        ),
        Command::Node(args) => runtime
            .block_on(run_node(args))
            .map_err(|e| Failure::new(exit::FAILURE, format!("{e:#}"))),
        Command::Testnet(args) => runtime
            .block_on(run_testnet(args))
            .map_err(|e| Failure::new(exit::FAILURE, format!("{e:#}"))),
        Command::Status { json, gateway } => runtime.block_on(status(&gateway, json)),
        Command::Put {
            file,
            ssk,
            content_type,
            gateway,
        } => runtime.block_on(put(&file, ssk.as_deref(), content_type, &gateway)),
        Command::Get {
            uri,
            output,
            gateway,
        } => runtime.block_on(get(&uri, output.as_deref(), &gateway)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("umbra: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn info() {
    println!("umbra {}", env!("CARGO_PKG_VERSION"));
    println!("cell size:              {} bytes", wire::CELL_LEN);
    println!("relay payload per cell: {} bytes", wire::RELAY_BODY_MAX);
    println!("maximum circuit length: {} hops", wire::MAX_HOPS);
    println!("block size:             {} bytes", wire::BLOCK_DATA_LEN);
}

fn sim(
    experiment: &str,
    opts: experiments::Options,
    csv: Option<&Path>,
    plot: Option<&Path>,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let table = experiments::run(experiment, &opts).map_err(|e| Failure::new(exit::USAGE, e))?;
    print!("{}", table.text());
    println!(
        "  wall time: {:.1} s; CPU time: {}; peak memory: {} MiB",
        started.elapsed().as_secs_f64(),
        cpu_secs().map_or("unknown".to_string(), |s| format!("{s:.1} s")),
        peak_rss_mib().map_or("unknown".to_string(), |m| m.to_string())
    );
    if let Some(path) = csv {
        std::fs::write(path, table.csv()).map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
    }
    if let Some(path) = plot {
        experiments::plot(&table, path).map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot draw {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

/// User and system CPU time of this process so far (Linux), in seconds,
/// at the usual 100 clock ticks per second.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

fn keygen(name: &str) -> Result<(), Failure> {
    let key = SskInsertKey::generate(&mut rand::rngs::OsRng, name);
    let insert = Uri::SskInsert(key);
    // Both go through the parser, so a name it would refuse is refused
    // here rather than at the first insert.
    insert
        .to_string()
        .parse::<Uri>()
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot use that name: {e}")))?;
    println!("insert URI:  {insert}");
    println!("request URI: {}", insert.request_uri());
    eprintln!("Keep the insert URI secret: whoever has it can publish under it.");
    Ok(())
}

async fn status(gateway: &str, json: bool) -> Result<(), Failure> {
    let s = gateway::fetch_status(gateway).await?;
    if json {
        let text = serde_json::to_string_pretty(&s).map_err(|e| Failure::new(exit::FAILURE, e))?;
        println!("{text}");
        return Ok(());
    }
    let short = |id: &str| id.get(..16).unwrap_or(id).to_string();
    println!("node         {}", s.id);
    println!("listening    {}", s.listen);
    let reach = match s.reachability {
        node::Reachability::Configured => "given",
        node::Reachability::Learning => "learning from peers, not relaying yet",
        node::Reachability::Learned => "learned from peers, tested by a dial-back",
        node::Reachability::Unreachable => {
            "unreachable: peers could not dial this node back, so it does not relay"
        }
        node::Reachability::ClientOnly => "none: client only",
    };
    println!("addresses    {reach}");
    for a in &s.addresses {
        println!("             {a}");
    }
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
    Ok(())
}

/// A progress bar on stderr, shown once a document turns out to span more
/// than one block (and only on a terminal).
struct Bar {
    bar: Option<ProgressBar>,
    what: String,
}

impl Bar {
    fn new(what: impl Into<String>) -> Bar {
        Bar {
            bar: None,
            what: what.into(),
        }
    }

    fn update(&mut self, p: Progress) {
        if p.total <= 1 {
            return;
        }
        let what = &self.what;
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(p.total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} blocks, {elapsed} (eta {eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(what.clone());
            b
        });
        bar.set_length(p.total);
        bar.set_position(p.done);
    }

    fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Every regular file under `dir`, by its path from there (`/`-joined),
/// in order; symbolic links are not followed.
fn site_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, Failure> {
    use umbra::keys::site::{check_path, MAX_SITE_FILES};
    let mut out = Vec::new();
    let mut todo = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, at)) = todo.pop() {
        let cannot = |e: std::io::Error| {
            Failure::new(exit::FAILURE, format!("cannot read {}: {e}", at.display()))
        };
        for entry in std::fs::read_dir(&at).map_err(cannot)? {
            let entry = entry.map_err(cannot)?;
            let kind = entry.file_type().map_err(cannot)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(Failure::new(
                    exit::FAILURE,
                    format!("{}: a file name that is not UTF-8", entry.path().display()),
                ));
            };
            let path = format!("{prefix}{name}");
            if kind.is_dir() {
                todo.push((format!("{path}/"), entry.path()));
            } else if kind.is_file() {
                check_path(&path).map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
                out.push((path, entry.path()));
                if out.len() > MAX_SITE_FILES {
                    return Err(Failure::new(
                        exit::FAILURE,
                        format!("a site holds at most {MAX_SITE_FILES} files"),
                    ));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Insert every file under `dir`, then the list of them as one site
/// (under `ssk`, at its next version, if given); print the site's URI (its
/// index page's folder).
async fn put_site(dir: &Path, ssk: Option<&str>, gateway: &str) -> Result<(), Failure> {
    use umbra::keys::site::{Site, SiteFile, SITE_TYPE};
    let files = site_files(dir)?;
    if files.is_empty() {
        return Err(Failure::new(
            exit::FAILURE,
            format!("{} holds no files", dir.display()),
        ));
    }
    let mut site = Site::default();
    for (path, on_disk) in &files {
        let cannot = |e: std::io::Error| {
            Failure::new(
                exit::FAILURE,
                format!("cannot read {}: {e}", on_disk.display()),
            )
        };
        let f = tokio::fs::File::open(on_disk).await.map_err(cannot)?;
        let len = f.metadata().await.map_err(cannot)?.len();
        let content_type = gateway::content_type_of(path).unwrap_or_default();
        let mut bar = Bar::new(path.as_str());
        let put = gateway::remote::put_named(
            gateway,
            if content_type.is_empty() {
                "application/octet-stream"
            } else {
                &content_type
            },
            f,
            Some(len),
            None,
            None,
            |p| bar.update(p),
        )
        .await;
        bar.finish();
        let uri: Uri = put?.parse().map_err(|e| {
            Failure::new(exit::FAILURE, format!("the gateway answered no URI: {e}"))
        })?;
        site.insert(path, SiteFile { uri, content_type })
            .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
    }
    let list = site.encode();
    let len = list.len() as u64;
    let mut bar = Bar::new("the site's file list");
    let put = gateway::remote::put(
        gateway,
        SITE_TYPE,
        std::io::Cursor::new(list),
        Some(len),
        ssk,
        |p| bar.update(p),
    )
    .await;
    bar.finish();
    println!("{}/", put?);
    Ok(())
}

async fn put(
    file: &Path,
    ssk: Option<&str>,
    content_type: Option<String>,
    gateway: &str,
) -> Result<(), Failure> {
    if let Some(text) = ssk {
        match text.parse::<Uri>() {
            Ok(Uri::SskInsert(_) | Uri::Ksk(_)) => {}
            Ok(_) => {
                return Err(Failure::new(
                    exit::MALFORMED_URI,
                    "--ssk takes an insert URI (umbra:ssk-insert:...) or a keyword (umbra:ksk:...)",
                ))
            }
            Err(e) => {
                return Err(Failure::new(
                    exit::MALFORMED_URI,
                    format!("malformed insert URI: {e}"),
                ))
            }
        }
    }
    // The file's name goes into a content-hash URI, and says its type
    // unless one was given.
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| ssk.is_none() && umbra::keys::check_file_name(n).is_ok() && *n != "-");
    let content_type = content_type
        .or_else(|| name.and_then(gateway::content_type_of))
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut bar = Bar::new("inserting");
    // Streamed: the file goes out as it is read, whatever its size.
    let uri = if file == Path::new("-") {
        let stdin = tokio::io::stdin();
        gateway::remote::put(gateway, &content_type, stdin, None, ssk, |p| bar.update(p)).await
    } else {
        let cannot = |e: std::io::Error| {
            Failure::new(
                exit::FAILURE,
                format!("cannot read {}: {e}", file.display()),
            )
        };
        let f = tokio::fs::File::open(file).await.map_err(cannot)?;
        let meta = f.metadata().await.map_err(cannot)?;
        if meta.is_dir() {
            bar.finish();
            return put_site(file, ssk, gateway).await;
        }
        // A pipe or a device has no length to announce.
        let len = meta.is_file().then_some(meta.len());
        gateway::remote::put_named(gateway, &content_type, f, len, ssk, name, |p| bar.update(p))
            .await
    };
    bar.finish();
    println!("{}", uri?);
    Ok(())
}

async fn get(uri: &str, output: Option<&Path>, gateway: &str) -> Result<(), Failure> {
    match uri.parse::<umbra::keys::Link>().map(|l| l.uri) {
        Ok(Uri::SskInsert(_)) => {
            return Err(Failure::new(
                exit::MALFORMED_URI,
                "this is an insert URI: fetch with its request URI (umbra:ssk:...)",
            ))
        }
        Ok(_) => {}
        Err(e) => {
            return Err(Failure::new(
                exit::MALFORMED_URI,
                format!("malformed URI: {e}"),
            ))
        }
    }
    let mut bar = Bar::new("fetching");
    let fetched = match output {
        Some(path) => {
            // Into a file beside the target, renamed once every byte is
            // in: a failed fetch never leaves a part under the name asked
            // for.
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".part");
            let part = path.with_file_name(name);
            let file = tokio::fs::File::create(&part).await.map_err(|e| {
                Failure::new(
                    exit::FAILURE,
                    format!("cannot write {}: {e}", part.display()),
                )
            })?;
            let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let got = gateway::remote::get(gateway, uri.trim(), |p| bar.update(p), &mut out).await;
            let got = match got {
                Ok(f) => out
                    .into_inner()
                    .sync_all()
                    .await
                    .map(|()| f)
                    .map_err(|e| gateway::GatewayError::Write(e.to_string())),
                Err(e) => Err(e),
            };
            match got {
                Ok(f) => std::fs::rename(&part, path)
                    .map(|()| f)
                    .map_err(|e| gateway::GatewayError::Write(format!("{}: {e}", path.display()))),
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    Err(e)
                }
            }
        }
        None => {
            let mut out = tokio::io::stdout();
            gateway::remote::get(gateway, uri.trim(), |p| bar.update(p), &mut out).await
        }
    };
    bar.finish();
    fetched.map(drop).map_err(Failure::from)
}

fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Wait for Ctrl-C, or SIGTERM where there is one.
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}

/// Anything but loopback makes the proxy or gateway everybody's.
fn warn_if_exposed(what: &str, addr: Option<SocketAddr>) {
    if let Some(a) = addr.filter(|a| !a.ip().is_loopback()) {
        eprintln!(
            "umbra: warning: the {what} listens on {a}, not on loopback: anyone who can reach \
             it can insert and fetch through this node"
        );
    }
}

async fn run_testnet(args: TestnetArgs) -> anyhow::Result<()> {
    init_logging("warn");
    warn_if_exposed("SOCKS proxy", Some(args.socks));
    warn_if_exposed("gateway", Some(args.http));
    eprintln!("starting {} nodes on 127.0.0.1 ...", args.nodes);
    let mut settings = testnet::Settings {
        socks: Some(args.socks),
        http: Some(args.http),
        data_dir: args.data_dir,
        ..testnet::Settings::new(args.nodes)
    };
    if let Some(bytes) = args.store_bytes {
        settings.template.store_bytes = bytes;
    }
    settings
        .template
        .validate()
        .context("the nodes' settings")?;
    let net = Testnet::start(settings)
    .await
    .context("cannot start the test network (is another umbra running? --socks and --http take port 0 for any free port)")?;
    let ready = tokio::select! {
        r = net.wait_ready(Duration::from_secs(60)) => r,
        r = stop_signal() => {
            net.shutdown().await;
            return r;
        }
    };
    let took = match ready {
        Ok(t) => t,
        Err(e) => {
            net.shutdown().await;
            return Err(e.into());
        }
    };
    let entry = net.entry();
    let socks = entry.socks.context("the first node has no SOCKS proxy")?;
    let http = entry.http.context("the first node has no gateway")?;
    println!(
        "umbra test network: {} nodes, ring ready in {:.1} s",
        net.nodes().len(),
        took.as_secs_f64()
    );
    println!("SOCKS5 proxy  {socks}");
    println!("HTTP gateway  http://{http}/");
    if let Ok(s) = entry.status().await {
        println!(
            "first node    {} (another node joins with --bootstrap {} and id_puzzle_bits = {} in its config)",
            s.listen,
            s.listen,
            testnet::Settings::new(args.nodes).template.id_puzzle_bits
        );
    }
    println!();
    println!("Insert a document and fetch it back through the proxy:");
    println!(
        "  uri=$(curl -sS --socks5-hostname {socks} -H 'Content-Type: text/plain' --data-binary 'hello, umbra' http://doc.umbra/)"
    );
    println!("  curl -sS --socks5-hostname {socks} \"http://doc.umbra/$uri\"");
    println!("Or with the command line:");
    println!("  echo hello | umbra put --gateway http://{http} -");
    println!("Ctrl-C stops the network.");
    let _ = std::io::stdout().flush();
    let r = stop_signal().await;
    eprintln!("stopping ...");
    net.shutdown().await;
    eprintln!("stopped");
    r
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    init_logging("info");
    let file = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let cfg = args.apply(file);
    warn_if_exposed("SOCKS proxy", cfg.socks);
    warn_if_exposed("gateway", cfg.http);
    let handle = umbra::daemon::Daemon::start(cfg)
        .await
        .context("cannot start the node")?;
    // For the person at the terminal and for scripts: where to reach it.
    println!("listening {}", handle.listen);
    if let Some(http) = handle.http {
        println!("gateway http://{http}");
    }
    if let Some(socks) = handle.socks {
        println!("socks {socks}");
    }
    let _ = std::io::stdout().flush();
    let r = stop_signal().await;
    handle.leave().await;
    tracing::info!("left the ring");
    r
}
