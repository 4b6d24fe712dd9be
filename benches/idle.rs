//! What an idle network costs: N `umbra node` processes on 127.0.0.1 join
//! one ring, and once every one has joined, the CPU time they spend over a
//! quiet period (user and system, from /proc) is measured: ring
//! maintenance, relay sampling, keep-alives, nothing else.
//!
//! `cargo bench --bench idle` runs 100 nodes, lets them settle for 120 s
//! and measures 60 s (`UMBRA_IDLE_NODES`, `UMBRA_IDLE_SETTLE` and
//! `UMBRA_IDLE_SECS` change these); under `cargo test` it runs 4 nodes for
//! 2 s to keep itself working. Besides CPU it reports what the nodes'
//! sockets sent, per node per day, and what each kind of frame cost.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

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

fn statuses(procs: &[common::Proc]) -> Vec<umbra::node::Status> {
    procs
        .iter()
        .map(|p| {
            common::status(&p.gateway)
                .and_then(|v| serde_json::from_value(v).ok())
                .expect("a node's status")
        })
        .collect()
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (n, quiet) = if measuring {
        (
            env_or("UMBRA_IDLE_NODES", 100) as usize,
            Duration::from_secs(env_or("UMBRA_IDLE_SECS", 60)),
        )
    } else {
        (4, Duration::from_secs(2))
    };
    let root = tempfile::tempdir().expect("temp dir");
    let procs = common::network(root.path(), n);
    // Let the joins' own work (fingers, samples, replication) die down,
    // and maintenance back off as far as it goes.
    let settle = if measuring {
        Duration::from_secs(env_or("UMBRA_IDLE_SETTLE", 120))
    } else {
        quiet / 2
    };
    std::thread::sleep(settle);
    let first = statuses(&procs);
    let before: u64 = procs.iter().map(|p| cpu_ticks(p.child.id())).sum();
    let t = Instant::now();
    std::thread::sleep(quiet);
    let after: u64 = procs.iter().map(|p| cpu_ticks(p.child.id())).sum();
    let secs = t.elapsed().as_secs_f64();
    let last = statuses(&procs);
    let cpu = (after - before) as f64 / clock_ticks_per_second() as f64;
    println!(
        "{n} idle nodes over {secs:.0} s: {cpu:.2} s of CPU in all, {:.2}% of one core per node",
        100.0 * cpu / secs / n as f64
    );
    // Per node per day, from what every node's socket sent.
    let day = |total: u64| total as f64 / n as f64 / secs * 86_400.0;
    let sent: u64 = first
        .iter()
        .zip(&last)
        .map(|(a, b)| b.traffic.wire_bytes_sent() - a.traffic.wire_bytes_sent())
        .sum();
    let datagrams: u64 = first
        .iter()
        .zip(&last)
        .map(|(a, b)| b.traffic.datagrams_sent - a.traffic.datagrams_sent)
        .sum();
    println!(
        "sent per node: {:.1} MB a day in {:.0} datagrams a day (UDP payload and IPv4/UDP headers)",
        day(sent) / 1e6,
        day(datagrams)
    );
    let lookups: u64 = first
        .iter()
        .zip(&last)
        .map(|(a, b)| b.lookups - a.lookups)
        .sum();
    let steps: u64 = first
        .iter()
        .zip(&last)
        .map(|(a, b)| b.lookup_steps - a.lookup_steps)
        .sum();
    let links: usize = last.iter().map(|s| s.links).sum();
    println!(
        "per node: {:.1} lookups and walks an hour, {:.1} nodes asked each; {:.1} links open at the end",
        day(lookups) / 24.0,
        steps as f64 / lookups.max(1) as f64,
        links as f64 / n as f64
    );
    // What each kind of frame costs, as its receivers counted it.
    let mut kinds: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for (a, b) in first.iter().zip(&last) {
        for (kind, c) in &b.frames_received {
            let was = a.frames_received.get(kind).copied().unwrap_or_default();
            let e = kinds.entry(kind.clone()).or_default();
            e.0 += c.frames - was.frames;
            e.1 += c.bytes - was.bytes;
        }
    }
    let mut kinds: Vec<(String, (u64, u64))> = kinds.into_iter().collect();
    kinds.sort_by_key(|(_, (_, bytes))| std::cmp::Reverse(*bytes));
    let framed: u64 = kinds.iter().map(|(_, (_, b))| b).sum();
    println!("| frame | per node per hour | MB per node per day |");
    println!("| --- | --- | --- |");
    for (kind, (frames, bytes)) in &kinds {
        println!(
            "| {kind} | {:.0} | {:.2} |",
            day(*frames) / 24.0,
            day(*bytes) / 1e6
        );
    }
    println!(
        "| QUIC (packet headers, acknowledgements, keep-alives, handshakes) | | {:.2} |",
        day(sent.saturating_sub(framed)) / 1e6
    );
}
