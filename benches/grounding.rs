//! The simulator against the real thing: the same measurement on N real
//! `umbra node` processes on 127.0.0.1 and on N node cores in the
//! simulator, with the same configuration and the same schedule.
//!
//! Measured both ways: the nodes asked per ring lookup (every lookup the
//! nodes make in a quiet minute after they all joined: relay sampling,
//! fingers, placement; `lookup_steps / lookups` from their status), and
//! the hops per routed get (fetches of keyword documents nobody inserted,
//! each through a circuit from a random node, whose exit starts the routed
//! get; the routed messages sent, `requests_forwarded`, summed over all
//! nodes, per fetch).
//!
//! `cargo bench --bench grounding` runs N = 24 and 100; under `cargo test`
//! it runs 6 nodes to keep itself working.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use umbra::circuit::Isolation;
use umbra::node::core::{Reply, Request};
use umbra::route;
use umbra::sim::{Net, Settings};
use umbra::wire::KeyKind;

mod common;
use common::{status, Proc};

/// Summed over the nodes: (lookups, lookup steps, routed messages sent).
fn counters(procs: &[Proc]) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    for p in procs {
        let v = status(&p.gateway).expect("a node answers its status");
        sum.0 += v["lookups"].as_u64().unwrap_or(0);
        sum.1 += v["lookup_steps"].as_u64().unwrap_or(0);
        sum.2 += v["requests_forwarded"].as_u64().unwrap_or(0);
    }
    sum
}

/// Fetch a document through a node's gateway; the HTTP status.
fn fetch(gateway: &str, uri: &str) -> u16 {
    let addr = gateway.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).expect("the gateway answers");
    s.set_read_timeout(Some(Duration::from_secs(120))).ok();
    write!(
        s,
        "GET /{uri} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("a request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

struct Measured {
    lookups: u64,
    lookup_mean: f64,
    fetches: usize,
    routed_mean: f64,
}

fn real(n: usize, quiet: Duration, fetches: usize, rng: &mut StdRng) -> Measured {
    let root = tempfile::tempdir().expect("temp dir");
    let procs = common::network(root.path(), n);
    // Every gateway able to answer first: until its node can build a
    // circuit, a fetch is answered 503, not 404.
    let ready_by = std::time::Instant::now() + Duration::from_secs(120);
    for p in &procs {
        loop {
            let code = fetch(&p.gateway, "umbra:ksk:grounding-ready");
            if code == 404 {
                break;
            }
            assert!(
                std::time::Instant::now() < ready_by,
                "a gateway still answers {code} after 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    std::thread::sleep(quiet / 2);
    let a = counters(&procs);
    std::thread::sleep(quiet);
    let b = counters(&procs);
    for _ in 0..fetches {
        let word: u64 = rng.gen();
        let p = &procs[rng.gen_range(0..procs.len())];
        let code = fetch(&p.gateway, &format!("umbra:ksk:grounding-{word:x}"));
        assert_eq!(code, 404, "a document nobody inserted is not found");
    }
    let c = counters(&procs);
    Measured {
        lookups: b.0 - a.0,
        lookup_mean: (b.1 - a.1) as f64 / (b.0 - a.0).max(1) as f64,
        fetches,
        routed_mean: (c.2 - b.2) as f64 / fetches as f64,
    }
}

fn sim_counters(net: &Net) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    for i in 0..net.len() {
        let s = net.core(i).status(None);
        sum.0 += s.lookups;
        sum.1 += s.lookup_steps;
        sum.2 += s.requests_forwarded;
    }
    sum
}

fn simulated(n: usize, quiet: Duration, fetches: usize, seed: u64) -> Measured {
    let mut net = Net::new(Settings::default(), seed);
    let mut rng = StdRng::seed_from_u64(seed);
    net.add(None);
    for _ in 1..n {
        net.run_for(Duration::from_millis(50));
        net.add(Some(0));
    }
    let joined = |net: &Net| {
        (0..net.len())
            .all(|i| net.core(i).ring().is_joined() && !net.core(i).ring().successors().is_empty())
    };
    while !joined(&net) {
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(quiet / 2);
    let a = sim_counters(&net);
    net.run_for(quiet);
    let b = sim_counters(&net);
    for k in 0..fetches {
        let word: u64 = rng.gen();
        let key = umbra::keys::ksk(&format!("grounding-{word:x}"))
            .request_key()
            .routing();
        let from = rng.gen_range(0..net.len());
        let t = net.submit(
            from,
            Request::Circuit {
                iso: Isolation(k as u64 + 1),
                kind: KeyKind::SSK,
                key,
                request: route::Request::Get,
            },
        );
        let end = net.now() + Duration::from_secs(120);
        let reply = loop {
            if let Some(r) = net.take_reply(from, t) {
                break Some(r);
            }
            if net.now() >= end {
                break None;
            }
            net.run_for(Duration::from_millis(10));
        };
        assert!(
            matches!(
                reply,
                Some(Reply::Circuit(Ok(route::Outcome::DataNotFound)))
            ),
            "a document nobody inserted is not found: {reply:?}"
        );
    }
    let c = sim_counters(&net);
    Measured {
        lookups: b.0 - a.0,
        lookup_mean: (b.1 - a.1) as f64 / (b.0 - a.0).max(1) as f64,
        fetches,
        routed_mean: (c.2 - b.2) as f64 / fetches as f64,
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (sizes, quiet, fetches) = if measuring {
        (vec![24, 100], Duration::from_secs(60), 200)
    } else {
        (vec![6], Duration::from_secs(2), 5)
    };
    let mut rng = StdRng::seed_from_u64(1);
    println!("nodes  where      lookups  nodes_per_lookup  fetches  routed_hops_per_get");
    for n in sizes {
        let r = real(n, quiet, fetches, &mut rng);
        let s = simulated(n, quiet, fetches, n as u64);
        for (name, m) in [("processes", r), ("simulator", s)] {
            println!(
                "{n:>5}  {name:<9}  {:>7}  {:>16.3}  {:>7}  {:>19.3}",
                m.lookups, m.lookup_mean, m.fetches, m.routed_mean
            );
            assert!(m.lookups > 0, "{name}: lookups ran");
        }
    }
}
