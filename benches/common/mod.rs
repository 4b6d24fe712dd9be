//! What the benchmarks share: start real `umbra node` processes on
//! 127.0.0.1, read their status, wait for a joined ring; random bytes and
//! medians.

// Each benchmark uses its own part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `len` random bytes.
pub fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut v);
    v
}

/// The middle of `v` (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub struct Proc {
    pub child: Child,
    pub listen: SocketAddr,
    pub gateway: String,
    /// The SOCKS proxy, when the node was started with one.
    pub socks: Option<SocketAddr>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, bootstrap: Option<SocketAddr>) -> Proc {
    start_with(dir, bootstrap, &[])
}

/// [`start`] with more arguments; `--socks 127.0.0.1:0` among them gives
/// the node a proxy.
pub fn start_with(dir: &Path, bootstrap: Option<SocketAddr>, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_umbra"));
    cmd.arg("node")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(b) = bootstrap {
        cmd.arg("--bootstrap").arg(b.to_string());
    }
    let mut child = cmd.spawn().expect("umbra node starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut read = || {
        let mut line = String::new();
        lines.read_line(&mut line).expect("a line");
        line.trim().to_string()
    };
    let listen = read()
        .strip_prefix("listening ")
        .expect("listening line")
        .parse()
        .expect("an address");
    let gateway = read()
        .strip_prefix("gateway ")
        .expect("gateway line")
        .to_string();
    let socks = extra.contains(&"--socks").then(|| {
        read()
            .strip_prefix("socks ")
            .expect("socks line")
            .parse()
            .expect("an address")
    });
    Proc {
        child,
        listen,
        gateway,
        socks,
    }
}

/// `umbra status --json` of the node behind `gateway`.
pub fn status(gateway: &str) -> Option<serde_json::Value> {
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["status", "--json", "--gateway", gateway])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
}

fn joined(gateway: &str) -> bool {
    status(gateway).is_some_and(|v| {
        v["joined"] == true && v["successors"].as_array().is_some_and(|s| !s.is_empty())
    })
}

/// `n` nodes under `root`, each bootstrapping from the first, returned
/// once every one has joined the ring (panics after 300 s).
pub fn network(root: &Path, n: usize) -> Vec<Proc> {
    network_with(root, n, &[])
}

/// [`network`] whose first node is started with `first` as more arguments.
pub fn network_with(root: &Path, n: usize, first: &[&str]) -> Vec<Proc> {
    let mut procs: Vec<Proc> = Vec::new();
    for i in 0..n {
        let dir = root.join(format!("node-{i}"));
        let boot = procs.first().map(|p| p.listen);
        procs.push(start_with(&dir, boot, if i == 0 { first } else { &[] }));
    }
    let started = Instant::now();
    for p in &procs {
        while !joined(&p.gateway) {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "a node never joined"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    procs
}

/// Wait until the ring of `procs` is correct (every predecessor and
/// successor list right) and every node's relay sample can build a
/// circuit; panics after `limit`.
pub fn ring_ready(procs: &[Proc], limit: Duration) {
    let started = Instant::now();
    loop {
        let statuses: Option<Vec<umbra::node::Status>> = procs
            .iter()
            .map(|p| status(&p.gateway).and_then(|v| serde_json::from_value(v).ok()))
            .collect();
        let why = match statuses {
            None => "a status did not come".to_string(),
            Some(s) => {
                match umbra::testnet::ring_correct(&s, umbra::node::Config::default().successors) {
                    Ok(()) if s.iter().all(|s| s.relay_sample >= 3) => return,
                    Ok(()) => "relay samples still filling".to_string(),
                    Err(e) => e,
                }
            }
        };
        assert!(
            started.elapsed() < limit,
            "the network never got ready: {why}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
