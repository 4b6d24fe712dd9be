//! The node core at scale, in the simulator: real cores with in-memory
//! stores on a virtual clock (`umbra::sim`). The same code runs over QUIC
//! in the other tests; here it runs a thousand nodes in one process, and
//! the same seed gives the same run.

mod common;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use umbra::client::{self, Target};
use umbra::keys::{chk_encode, Uri};
use umbra::node::Config;
use umbra::ring::in_half_open;
use umbra::sim::{Latency, Net, Settings};
use umbra::store::Datastore;
use umbra::wire::{KeyKind, NodeId};

/// Peak resident memory of this process, from /proc.
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

/// Every live node's predecessor and successor list against the sorted ids
/// of the live nodes.
fn ring_correct(net: &Net) -> Result<(), String> {
    let alive: Vec<usize> = (0..net.len()).filter(|&i| net.is_alive(i)).collect();
    let mut ids: Vec<NodeId> = alive.iter().map(|&i| net.core(i).id()).collect();
    ids.sort();
    let n = ids.len();
    let mut wrong = 0;
    for &i in &alive {
        let ring = net.core(i).ring();
        let me = ring.id();
        let k = ids.binary_search(&me).map_err(|_| "unknown id")?;
        let want: Vec<NodeId> = (1..n.min(ring_successors() + 1))
            .map(|d| ids[(k + d) % n])
            .collect();
        let have: Vec<NodeId> = ring.successors().iter().map(|p| p.id).collect();
        let pred = ring.predecessor().map(|p| p.id);
        if have != want || (n > 1 && pred != Some(ids[(k + n - 1) % n])) {
            wrong += 1;
        }
    }
    if wrong == 0 {
        Ok(())
    } else {
        Err(format!("{wrong} of {n} nodes not yet right"))
    }
}

fn ring_successors() -> usize {
    Config::default().successors
}

/// A network of `n` nodes joining one by one through the first.
fn grow(settings: Settings, seed: u64, n: usize, gap: Duration) -> Net {
    let mut net = Net::new(settings, seed);
    net.add(None);
    for _ in 1..n {
        net.add(Some(0));
        net.run_for(gap);
    }
    net
}

fn converge(net: &mut Net, limit: Duration) {
    let ok = net.run_while_not(limit, Duration::from_secs(1), |net| {
        ring_correct(net).is_ok()
    });
    assert!(
        ok,
        "ring not correct after {limit:?}: {:?}",
        ring_correct(net)
    );
}

#[test]
fn a_thousand_nodes_join_one_by_one_and_form_a_correct_ring() {
    let wall = Instant::now();
    let n = 1000;
    let mut net = grow(Settings::default(), 1, n, Duration::from_millis(50));
    let joined = net.now();
    converge(&mut net, Duration::from_secs(600));
    for i in 0..n {
        assert!(net.core(i).ring().is_joined(), "node {i} never joined");
    }
    eprintln!(
        "1000 nodes: joined over {:.0} s and correct by {:.0} s of virtual time; {} events in \
         {:.1} s of wall time; peak memory {} MiB",
        joined.as_secs_f64(),
        net.now().as_secs_f64(),
        net.events(),
        wall.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(0),
    );
}

#[test]
fn a_ring_forms_over_links_that_lose_messages() {
    let settings = Settings {
        loss: 0.005,
        ..Settings::default()
    };
    let mut net = grow(settings, 5, 64, Duration::from_millis(100));
    converge(&mut net, Duration::from_secs(300));
    // The loss is real: the same network without it has another history.
    let clean = grow(Settings::default(), 5, 64, Duration::from_millis(100));
    assert_ne!(net.trace(), clean.trace());
}

/// A network ready for circuits: ring correct and every node's relay
/// sample large enough to draw three relays from.
fn ready(seed: u64, n: usize) -> Net {
    let settings = Settings {
        latency: Latency::Uniform {
            min: Duration::from_millis(5),
            max: Duration::from_millis(40),
        },
        ..Settings::default()
    };
    let mut net = grow(settings, seed, n, Duration::from_millis(200));
    converge(&mut net, Duration::from_secs(120));
    let ok = net.run_while_not(Duration::from_secs(120), Duration::from_secs(1), |net| {
        (0..net.len()).all(|i| net.core(i).status(None).relay_sample >= 5)
    });
    assert!(ok, "relay samples never filled");
    net
}

fn document(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    rng.fill_bytes(&mut d);
    d
}

#[tokio::test(flavor = "current_thread")]
async fn documents_of_one_and_a_hundred_blocks_cross_three_hop_circuits() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut net = ready(2, 24);
    let n = net.len();
    for (len, blocks, label) in [
        (2_000, 1..=1, "one block"),
        (66 * 32 * 1024, 100..=104, "a hundred blocks"),
    ] {
        let data = document(&mut rng, len);
        let encoded =
            umbra::keys::encode_document("application/octet-stream", &data).expect("encodes");
        // The data and parity blocks, and the root.
        let count = encoded.blocks.len() + 1;
        assert!(blocks.contains(&count), "{label}: {count} blocks");
        let a = rng.gen_range(0..n);
        let b = (a + 1 + rng.gen_range(0..n - 1)) % n;
        let inserter = net.client(a);
        let fetcher = net.client(b);
        let uri = net
            .run_future(
                client::insert(&inserter, "application/octet-stream", &data, Target::Chk),
                Duration::from_secs(600),
            )
            .await
            .unwrap_or_else(|| panic!("{label}: the insert did not finish"))
            .unwrap_or_else(|e| panic!("{label}: insert failed: {e}"));
        let doc = net
            .run_future(client::fetch(&fetcher, &uri), Duration::from_secs(600))
            .await
            .unwrap_or_else(|| panic!("{label}: the fetch did not finish"))
            .unwrap_or_else(|e| panic!("{label}: fetch failed: {e}"));
        assert!(doc.data == data, "{label}: other bytes came back");
        let built = net.core(a).status(None).circuits_built;
        assert!(built >= 1, "{label}: the insert used no circuit");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_quarter_of_the_nodes_crash_and_every_document_is_still_fetched() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut net = ready(3, 40);
    let n = net.len();
    let client_node = 0;
    let c = net.client(client_node);
    let mut docs = Vec::new();
    for _ in 0..6 {
        let data = document(&mut rng, 40_000);
        let uri = net
            .run_future(
                client::insert(&c, "application/octet-stream", &data, Target::Chk),
                Duration::from_secs(300),
            )
            .await
            .expect("insert finishes")
            .expect("insert succeeds");
        docs.push((uri, data));
    }
    // Replication settles, then a quarter of the nodes crash at once.
    net.run_for(Duration::from_secs(20));
    let mut victims: Vec<usize> = (1..n).collect();
    for i in (1..victims.len()).rev() {
        victims.swap(i, rng.gen_range(0..=i));
    }
    victims.truncate(n / 4);
    for &v in &victims {
        net.crash(v);
    }
    converge(&mut net, Duration::from_secs(300));
    let f = net.client(client_node);
    for (uri, data) in &docs {
        let doc = net
            .run_future(client::fetch(&f, uri), Duration::from_secs(300))
            .await
            .expect("fetch finishes")
            .expect("every document survives");
        assert!(doc.data == *data);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_that_corrupts_every_block_it_serves_is_routed_around() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut net = ready(4, 20);
    let bad = 5;
    net.set_tap(bad, Box::new(common::taps::CorruptBlocks));
    let bad_id = net.core(bad).id();
    let pred = net
        .core(bad)
        .ring()
        .predecessor()
        .expect("a predecessor")
        .id;
    // A block whose successor is the corrupting node.
    let (key, block) = loop {
        let (k, b) = chk_encode(&document(&mut rng, 1000)).expect("encodes");
        if in_half_open(&k.routing.0, &pred.0, &bad_id.0) {
            break (k, b);
        }
    };
    let putter = net.client(1).direct();
    net.run_future(
        putter.put_block(KeyKind::CHK, key.routing, block.clone()),
        Duration::from_secs(60),
    )
    .await
    .expect("put finishes")
    .expect("put succeeds");
    net.run_for(Duration::from_secs(10));
    let before = net.core(bad).status(None).misbehaving_peers;
    // Fetched from a node that is none of the block's holders, directly
    // and through a circuit: the corrupted copy is refused and the search
    // goes on to a replica.
    let other = (0..net.len())
        .find(|&i| {
            i != bad && i != 1 && !net.store(i).has(KeyKind::CHK, &key.routing).unwrap_or(true)
        })
        .expect("a node with no copy");
    let getter = net.client(other);
    let got = net
        .run_future(
            getter.direct().get_block(KeyKind::CHK, key.routing),
            Duration::from_secs(60),
        )
        .await
        .expect("get finishes")
        .expect("a good copy is found");
    assert_eq!(got, block);
    let noticed: u64 = (0..net.len())
        .filter(|&i| i != bad)
        .map(|i| net.core(i).status(None).misbehaving_peers)
        .sum();
    assert!(
        noticed >= 1,
        "nobody met the corrupted copy: the test tested nothing"
    );
    let doc = net
        .run_future(
            getter.get_block(KeyKind::CHK, key.routing),
            Duration::from_secs(60),
        )
        .await
        .expect("get finishes");
    assert_eq!(doc.expect("a good copy through a circuit"), block);
    assert_eq!(
        net.core(bad).status(None).misbehaving_peers,
        before,
        "the liar counts nothing"
    );
    let _ = Uri::Chk(key);
}

/// The same seed, the same run: the hash of every event agrees; another
/// seed goes another way.
#[tokio::test(flavor = "current_thread")]
async fn the_same_seed_gives_the_same_run() {
    async fn run(seed: u64) -> [u8; 32] {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = grow(Settings::default(), seed, 16, Duration::from_millis(100));
        net.run_for(Duration::from_secs(20));
        let c = net.client(3);
        let data = document(&mut rng, 30_000);
        let uri = net
            .run_future(
                client::insert(&c, "text/plain", &data, Target::Chk),
                Duration::from_secs(120),
            )
            .await
            .expect("finishes")
            .expect("inserts");
        let f = net.client(9);
        let doc = net
            .run_future(client::fetch(&f, &uri), Duration::from_secs(120))
            .await
            .expect("finishes")
            .expect("fetches");
        assert!(doc.data == data);
        net.crash(5);
        net.run_for(Duration::from_secs(30));
        net.trace()
    }
    let a = run(11).await;
    let b = run(11).await;
    assert_eq!(a, b, "two runs from one seed went different ways");
    assert_ne!(run(12).await, a, "another seed went the same way");
}
