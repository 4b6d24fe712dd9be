//! Circuit costs on a local network of real nodes over QUIC on 127.0.0.1:
//! how long a three-hop circuit takes to build, and how long fetching a
//! document takes through a circuit against the same fetch made directly
//! by the same node, in the same run.
//!
//! `cargo bench --bench circuits` measures; under `cargo test` it runs once
//! with small sizes to keep itself working. Every fetch is of a document
//! inserted just for it, so no cache on the way has seen it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;

use common::{median, random};
use tempfile::TempDir;
use umbra::circuit::Isolation;
use umbra::client::{self, Target};
use umbra::node::{self, Bootstrap, Config, NodeClient, NodeHandle};

const RELAYS: usize = 10;

fn config(dir: &TempDir, bootstrap: Option<SocketAddr>) -> Config {
    Config {
        data_dir: dir.path().to_path_buf(),
        bootstrap: bootstrap
            .map(|addr| Bootstrap { addr, id: None })
            .into_iter()
            .collect(),
        stabilize_ms: 200,
        ..Config::default()
    }
}

async fn wait_for(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !ok().await {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Insert a fresh document from `inserter`, then time fetching it with
/// `fetcher`.
async fn timed_fetch(inserter: &NodeClient, fetcher: &NodeClient, len: usize) -> Duration {
    let data = random(len);
    let uri = client::insert(inserter, "application/octet-stream", &data, Target::Chk)
        .await
        .expect("insert");
    let start = Instant::now();
    let doc = client::fetch(fetcher, &uri).await.expect("fetch");
    let took = start.elapsed();
    assert_eq!(doc.data, data);
    took
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(measuring));
}

async fn run(measuring: bool) {
    let mut dirs = Vec::new();
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for _ in 0..RELAYS {
        let dir = tempfile::tempdir().expect("temp dir");
        let boot = nodes.first().map(|n| n.listen);
        nodes.push(node::start(config(&dir, boot)).await.expect("node"));
        dirs.push(dir);
    }
    for n in &nodes {
        wait_for("joined and sampled", async || {
            let s = n.status().await.expect("status");
            s.joined && s.relay_sample >= 6
        })
        .await;
    }
    // Measure on a settled ring: every node's successor is the next id.
    let mut ids: Vec<String> = nodes.iter().map(|n| n.id.to_hex()).collect();
    ids.sort();
    for n in &nodes {
        wait_for("ring settled", async || {
            let s = n.status().await.expect("status");
            let i = ids.iter().position(|x| *x == s.id).expect("known");
            s.successors.first() == Some(&ids[(i + 1) % ids.len()])
                && s.predecessor.as_ref() == Some(&ids[(i + ids.len() - 1) % ids.len()])
        })
        .await;
    }
    // The requester is a relay node like the others, so that its direct
    // fetches have a place on the ring to start from.
    let me = &nodes[1];
    let inserter = nodes[0].client().direct();

    let builds = if measuring { 50 } else { 3 };
    let mut build_times = Vec::new();
    for _ in 0..builds {
        let start = Instant::now();
        me.build_circuit(Isolation(99)).await.expect("circuit");
        build_times.push(start.elapsed());
    }

    let sizes: &[(usize, usize)] = if measuring {
        &[(50 * 1024, 9), (10 * 1024 * 1024, 3)]
    } else {
        &[(50 * 1024, 1)]
    };
    println!("circuit build (3 hops), {builds} builds:");
    println!("  median {:?}", median(build_times.clone()));
    build_times.sort();
    println!(
        "  p10 {:?}  p90 {:?}",
        build_times[builds / 10],
        build_times[builds * 9 / 10]
    );
    println!("| document | direct (median) | circuit (median) | circuit / direct |");
    println!("| --- | --- | --- | --- |");
    for &(len, reps) in sizes {
        let mut direct = Vec::new();
        let mut circuit = Vec::new();
        for rep in 0..reps {
            // Alternate which goes first, so that neither always meets the
            // warmer machine.
            let via = me.client().isolated(Isolation(rep as u64));
            if rep % 2 == 0 {
                direct.push(timed_fetch(&inserter, &me.client().direct(), len).await);
                circuit.push(timed_fetch(&inserter, &via, len).await);
            } else {
                circuit.push(timed_fetch(&inserter, &via, len).await);
                direct.push(timed_fetch(&inserter, &me.client().direct(), len).await);
            }
        }
        let (d, c) = (median(direct), median(circuit));
        println!(
            "| {} KiB | {:.1} ms | {:.1} ms | {:.2} |",
            len / 1024,
            d.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3,
            c.as_secs_f64() / d.as_secs_f64()
        );
    }
    for n in nodes {
        n.crash().await;
    }
}
