//! What the HTTP interface costs on top of the library: fetching and
//! inserting a document through the gateway (as `umbra get` and `umbra put`
//! do, progress lines included) against the same operation made with
//! `umbra::client` on the same node, in the same run. Both go through the
//! node's circuits; the difference is HTTP on loopback and the copies it
//! takes.
//!
//! `cargo bench --bench gateway` measures; under `cargo test` it runs once
//! with a small size to keep itself working. Every fetch is of a document
//! inserted just for it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;

use common::{median, ms, random};
use umbra::client::{self, Target};
use umbra::gateway::remote;
use umbra::testnet::{self, Testnet};

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(measuring));
}

async fn run(measuring: bool) {
    let mut settings = testnet::Settings::new(8);
    settings.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let net = Testnet::start(settings).await.expect("test network");
    net.wait_ready(Duration::from_secs(60))
        .await
        .expect("ready");
    let gateway = format!("http://{}", net.entry().http.expect("gateway"));
    let node = net.entry().client();
    let sizes: &[(usize, usize)] = if measuring {
        &[(50 << 10, 15), (10 << 20, 5)]
    } else {
        &[(50 << 10, 1)]
    };
    for &(len, reps) in sizes {
        let (mut lib_get, mut http_get, mut lib_put, mut http_put) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            // Alternate which goes first, so neither always meets a
            // warmer node.
            for which in [rep % 2, 1 - rep % 2] {
                let data = random(len);
                let start = Instant::now();
                let uri = if which == 0 {
                    let uri = client::insert(&node, "application/octet-stream", &data, Target::Chk)
                        .await
                        .expect("insert")
                        .to_string();
                    lib_put.push(start.elapsed());
                    uri
                } else {
                    let uri = remote::put(
                        &gateway,
                        "application/octet-stream",
                        std::io::Cursor::new(data.clone()),
                        Some(data.len() as u64),
                        None,
                        |_| {},
                    )
                    .await
                    .expect("put");
                    http_put.push(start.elapsed());
                    uri
                };
                let start = Instant::now();
                let got = if which == 0 {
                    let doc = client::fetch(&node, &uri.parse().expect("uri"))
                        .await
                        .expect("fetch");
                    lib_get.push(start.elapsed());
                    doc.data
                } else {
                    let mut got = Vec::new();
                    remote::get(&gateway, &uri, |_| {}, &mut got)
                        .await
                        .expect("get");
                    http_get.push(start.elapsed());
                    got
                };
                assert_eq!(got, data, "the document comes back whole");
            }
        }
        let (lg, hg, lp, hp) = (
            median(lib_get),
            median(http_get),
            median(lib_put),
            median(http_put),
        );
        println!(
            "{:>6} KiB  fetch: library {:8.1} ms, gateway {:8.1} ms ({:.2}x)   \
             insert: library {:8.1} ms, gateway {:8.1} ms ({:.2}x)   [median of {reps}]",
            len >> 10,
            ms(lg),
            ms(hg),
            hg.as_secs_f64() / lg.as_secs_f64(),
            ms(lp),
            ms(hp),
            hp.as_secs_f64() / lp.as_secs_f64(),
        );
    }
    net.shutdown().await;
}
