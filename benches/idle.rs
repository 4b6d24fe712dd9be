//! What an idle network costs: N `umbra node` processes on 127.0.0.1 join
//! one ring, and once every one has joined, the CPU time they spend over a
//! quiet period (user and system, from /proc) is measured: ring
//! maintenance, relay sampling, keep-alives, nothing else.
//!
//! `cargo bench --bench idle` runs 100 nodes for 60 s; under `cargo test`
//! it runs 4 nodes for 2 s to keep itself working.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    listen: SocketAddr,
    gateway: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, bootstrap: Option<SocketAddr>) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_umbra"));
    cmd.arg("node")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
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
    Proc {
        child,
        listen,
        gateway,
    }
}

fn joined(gateway: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["status", "--json", "--gateway", gateway])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .is_some_and(|v| {
            v["joined"] == true && v["successors"].as_array().is_some_and(|s| !s.is_empty())
        })
}

/// User plus system CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (n, quiet) = if measuring {
        (100, Duration::from_secs(60))
    } else {
        (4, Duration::from_secs(2))
    };
    let root = tempfile::tempdir().expect("temp dir");
    let mut procs: Vec<Proc> = Vec::new();
    for i in 0..n {
        let dir = root.path().join(format!("node-{i}"));
        let boot = procs.first().map(|p| p.listen);
        procs.push(start(&dir, boot));
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
    // Let the joins' own work (fingers, samples, replication) die down.
    std::thread::sleep(quiet / 2);
    let before: u64 = procs.iter().map(|p| cpu_ticks(p.child.id())).sum();
    let t = Instant::now();
    std::thread::sleep(quiet);
    let after: u64 = procs.iter().map(|p| cpu_ticks(p.child.id())).sum();
    let secs = t.elapsed().as_secs_f64();
    let cpu = (after - before) as f64 / clock_ticks_per_second() as f64;
    println!(
        "{n} idle nodes over {secs:.0} s: {cpu:.2} s of CPU in all, {:.2}% of one core per node",
        100.0 * cpu / secs / n as f64
    );
}
