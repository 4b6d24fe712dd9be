//! Load: 1,000 fetches at once through one node's SOCKS proxy, as 1,000
//! applications would make them (SOCKS5 CONNECT to a `.umbra` name, then
//! HTTP/1.1), of documents of mixed sizes, in a network of `umbra node`
//! processes on 127.0.0.1. Throughout, the node's `GET /status` is timed
//! and its resident memory sampled.
//!
//! What it reports: fetches that came back whole and right, every failure
//! by its type (the proxy's reply code, the gateway's HTTP status and
//! `X-Umbra-Error`, or what the client saw), the node's peak resident
//! memory, and the worst and 99th-percentile `/status` latency.
//!
//! `cargo bench --bench load` measures (1,000 fetches); under `cargo test`
//! it runs 50 to keep itself working. `UMBRA_LOAD_FETCHES=N` sets the
//! count.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use umbra::gateway::{fetch_status, remote};

const NODES: usize = 8;
/// What one fetch may take before the client gives up on it (and counts
/// it: a fetch the node never answers is a failure too).
const CLIENT_LIMIT: Duration = Duration::from_secs(600);
/// The ceiling this run holds the node to.
const RSS_CEILING_MIB: u64 = 1024;

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let fetches: usize = std::env::var("UMBRA_LOAD_FETCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 1000 } else { 50 });
    let root = tempfile::tempdir().expect("a temporary directory");
    let procs = common::network_with(root.path(), NODES, &["--socks", "127.0.0.1:0"]);
    common::ring_ready(&procs, Duration::from_secs(120));
    let entry = &procs[0];
    let socks = entry.socks.expect("the first node has a proxy");
    let gateway = entry.gateway.clone();
    let pid = entry.child.id();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(fetches, measuring, socks, gateway, pid));
}

/// Why a fetch failed, as the client can tell.
fn kind_of_io(e: &std::io::Error) -> String {
    format!("{:?}", e.kind())
}

/// One fetch through the proxy: SOCKS5 CONNECT to `doc.umbra:80`, then
/// `GET /URI`. The body, or the failure's type.
async fn fetch(socks: SocketAddr, uri: &str) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(socks)
        .await
        .map_err(|e| format!("connect: {}", kind_of_io(&e)))?;
    let name = b"doc.umbra";
    let mut req = vec![5, 1, 0, 5, 1, 0, 3, name.len() as u8];
    req.extend_from_slice(name);
    req.extend_from_slice(&80u16.to_be_bytes());
    s.write_all(&req)
        .await
        .map_err(|e| format!("socks write: {}", kind_of_io(&e)))?;
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply)
        .await
        .map_err(|e| format!("socks reply: {}", kind_of_io(&e)))?;
    if reply[3] != 0 {
        return Err(format!("socks reply code {:#04x}", reply[3]));
    }
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("/{uri}"))
        .header("host", "doc.umbra")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("http: {e}"))?;
    let status = resp.status();
    let code = resp
        .headers()
        .get("x-umbra-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("http body: {e}"))?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!("http {} {code}", status.as_u16()));
    }
    Ok(body.to_vec())
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(fetches: usize, measuring: bool, socks: SocketAddr, gateway: String, pid: u32) {
    // The documents: 150 of 1 to 30 KiB, 40 of 100 to 500 KiB, 10 of 2 MiB
    // (a tenth of that under `cargo test`).
    let mut rng = rand::thread_rng();
    let scale = if measuring { 1 } else { 10 };
    let mut sizes: Vec<usize> = (0..150 / scale)
        .map(|_| rng.gen_range(1 << 10..30 << 10))
        .collect();
    sizes.extend((0..40 / scale).map(|_| rng.gen_range(100 << 10..500 << 10)));
    sizes.extend((0..10 / scale).map(|_| 2 << 20));
    let docs: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&n| {
            let mut d = vec![0u8; n];
            rng.fill_bytes(&mut d);
            d
        })
        .collect();
    let started = Instant::now();
    let mut uris = Vec::new();
    for d in &docs {
        let uri = remote::put(
            &gateway,
            "application/octet-stream",
            std::io::Cursor::new(d.clone()),
            Some(d.len() as u64),
            None,
            |_| {},
        )
        .await
        .expect("insert");
        uris.push(uri);
    }
    let inserted = started.elapsed();
    let total_bytes: usize = docs.iter().map(Vec::len).sum();
    println!(
        "load: {} documents ({:.1} MiB) inserted in {:.1} s; {fetches} fetches at once through the proxy",
        docs.len(),
        total_bytes as f64 / (1 << 20) as f64,
        inserted.as_secs_f64()
    );
    let idle_rss = rss_kib(pid, "VmRSS:");
    // The baseline: /status on the same node with nothing else to do.
    let mut idle_status = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        fetch_status(&gateway).await.expect("status at rest");
        idle_status.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The watcher: /status every 50 ms, and the node's memory.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            let mut peak = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(30), fetch_status(&gateway)).await {
                    Ok(Ok(_)) => latencies.push(t.elapsed()),
                    _ => failures += 1,
                }
                peak = peak.max(rss_kib(pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (latencies, failures, peak)
        })
    };

    // Every fetch at once, each of a document picked at random.
    let docs = Arc::new(docs);
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(fetches);
    let mut picks: Vec<usize> = (0..fetches).map(|i| i % uris.len()).collect();
    picks.shuffle(&mut rng);
    for i in picks {
        let uri = uris[i].clone();
        let docs = docs.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = match tokio::time::timeout(CLIENT_LIMIT, fetch(socks, &uri)).await {
                Ok(Ok(body)) if body == docs[i] => Ok(()),
                Ok(Ok(_)) => Err("wrong bytes".to_string()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("no answer in {CLIENT_LIMIT:?}")),
            };
            (r, t.elapsed())
        }));
    }
    let mut ok = 0usize;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut times = Vec::new();
    for task in tasks {
        let (r, took) = task.await.expect("a fetch task");
        times.push(took);
        match r {
            Ok(()) => ok += 1,
            Err(e) => *failures.entry(e).or_default() += 1,
        }
    }
    let all = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, status_failures, peak_sampled) = watcher.await.expect("the watcher");
    let hwm = rss_kib(pid, "VmHWM:");
    println!(
        "load: {ok} of {fetches} fetched whole and right in {:.1} s (median {:.2} s, 99th percentile {:.2} s, slowest {:.2} s)",
        all.as_secs_f64(),
        pct(&mut times, 0.5).as_secs_f64(),
        pct(&mut times, 0.99).as_secs_f64(),
        pct(&mut times, 1.0).as_secs_f64(),
    );
    for (e, n) in &failures {
        println!("load: failed: {n} × {e}");
    }
    println!(
        "load: node memory: {:.0} MiB before the fetches, peak {:.0} MiB (sampled {:.0} MiB), ceiling {RSS_CEILING_MIB} MiB",
        idle_rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        peak_sampled as f64 / 1024.0,
    );
    println!(
        "load: GET /status at rest, {} times: median {:.1} ms, worst {:.1} ms",
        idle_status.len(),
        pct(&mut idle_status, 0.5).as_secs_f64() * 1e3,
        pct(&mut idle_status, 1.0).as_secs_f64() * 1e3,
    );
    println!(
        "load: GET /status under the load, {} times: median {:.1} ms, 99th percentile {:.1} ms, worst {:.1} ms; {status_failures} unanswered in 30 s",
        latencies.len(),
        pct(&mut latencies, 0.5).as_secs_f64() * 1e3,
        pct(&mut latencies, 0.99).as_secs_f64() * 1e3,
        pct(&mut latencies, 1.0).as_secs_f64() * 1e3,
    );
    // Every failure has a type: the client gave up on none.
    assert!(
        !failures.keys().any(|e| e.starts_with("no answer")),
        "fetches the node never answered: {failures:?}"
    );
    assert!(
        !failures.contains_key("wrong bytes"),
        "a fetch returned the wrong document"
    );
    assert!(
        hwm / 1024 <= RSS_CEILING_MIB,
        "the node's peak memory {} MiB is over the ceiling",
        hwm / 1024
    );
}
