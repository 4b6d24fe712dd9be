//! What an idle network costs: N `umbra node` processes on 127.0.0.1 join
//! one ring, and once every one has joined, the CPU time they spend over a
//! quiet period (user and system, from /proc) is measured: ring
//! maintenance, relay sampling, keep-alives, nothing else.
//!
//! `cargo bench --bench idle` runs 100 nodes for 60 s; under `cargo test`
//! it runs 4 nodes for 2 s to keep itself working.

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

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (n, quiet) = if measuring {
        (100, Duration::from_secs(60))
    } else {
        (4, Duration::from_secs(2))
    };
    let root = tempfile::tempdir().expect("temp dir");
    let procs = common::network(root.path(), n);
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
