//! Documents over a network of 20 real nodes on 127.0.0.1: routed inserts
//! and fetches of content-hash and signed documents, large documents under
//! erasure coding, and searches that must route around corrupting, looping
//! and dead nodes.

mod common;

use std::time::{Duration, Instant};

use common::net::{config, eventually, Net, REPLICAS};
use rand::RngCore;
use umbra::client::{self, ClientError, Target};
use umbra::keys::{chk_encode, decode_root, encode_document, SskInsertKey, Uri};
use umbra::node::{self, RequestError};
use umbra::ring::in_half_open;
use umbra::wire::{KeyKind, NodeId, RequestId, RoutingKey};

/// One 20-node network at a time: two cores do not carry three.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn twenty() -> Net {
    let net = Net::grow(20).await;
    eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    net
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Loop answers received by all nodes.
async fn total_loops(net: &Net) -> u64 {
    net.statuses()
        .await
        .unwrap()
        .iter()
        .map(|s| s.loops_received)
        .sum()
}

/// Total routed requests sent by all nodes.
async fn forwarded(net: &Net) -> u64 {
    net.statuses()
        .await
        .unwrap()
        .iter()
        .map(|s| s.requests_forwarded)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_inserted_at_one_node_are_fetched_from_every_other() {
    let _one = ONE_AT_A_TIME.lock().await;
    let net = twenty().await;
    let (inserter, _) = &net.nodes[3];
    let small = b"<html><title>hello umbra</title></html>".to_vec();
    let medium = random(200_000);
    let t = Instant::now();
    let small_uri = client::insert(
        &inserter.client().direct(),
        "text/html",
        &small,
        Target::Chk,
    )
    .await
    .unwrap();
    let medium_uri = client::insert(
        &inserter.client().direct(),
        "application/octet-stream",
        &medium,
        Target::Chk,
    )
    .await
    .unwrap();
    eprintln!("insert of 40 B and 200 kB: {:?}", t.elapsed());

    let before = forwarded(&net).await;
    let mut fetches = 0u64;
    for (i, (h, _)) in net.nodes.iter().enumerate() {
        if i == 3 {
            continue;
        }
        let doc = client::fetch(&h.client().direct(), &small_uri)
            .await
            .unwrap();
        assert_eq!(doc.data, small);
        assert_eq!(doc.content_type, "text/html");
        let doc = client::fetch(&h.client().direct(), &medium_uri)
            .await
            .unwrap();
        assert_eq!(doc.data, medium);
        // 1 root block + 7 data blocks for the medium one.
        fetches += 1 + 8;
    }
    let hops = forwarded(&net).await - before;
    eprintln!(
        "mean routed hops per block fetch: {:.2} ({hops} requests for {fetches} blocks)",
        hops as f64 / fetches as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_documents_update_and_retract() {
    let _one = ONE_AT_A_TIME.lock().await;
    let net = twenty().await;
    let publisher = net.nodes[0].0.client().direct();
    let insert = SskInsertKey::generate(&mut rand::rngs::OsRng, "news");
    let uri = client::insert(
        &publisher,
        "text/plain",
        b"version one",
        Target::Signed(&insert, 1),
    )
    .await
    .unwrap();
    assert!(matches!(uri, Uri::Ssk(_)));
    for (h, _) in &net.nodes {
        let doc = client::fetch(&h.client().direct(), &uri).await.unwrap();
        assert_eq!(
            (doc.data.as_slice(), doc.version),
            (&b"version one"[..], Some(1))
        );
    }
    // Version two, larger than a block, from another node.
    let v2 = random(100_000);
    client::insert(
        &net.nodes[7].0.client().direct(),
        "text/plain",
        &v2,
        Target::Signed(&insert, 2),
    )
    .await
    .unwrap();
    for (h, _) in &net.nodes {
        let doc = client::fetch(&h.client().direct(), &uri).await.unwrap();
        assert_eq!((doc.data.as_slice(), doc.version), (v2.as_slice(), Some(2)));
    }
    // An older version does not come back.
    client::insert(
        &publisher,
        "text/plain",
        b"stale",
        Target::Signed(&insert, 1),
    )
    .await
    .unwrap();
    let doc = client::fetch(&net.nodes[5].0.client().direct(), &uri)
        .await
        .unwrap();
    assert_eq!(doc.version, Some(2));
    // A tombstone retracts it everywhere.
    client::retract(&publisher, &insert, 3).await.unwrap();
    for (h, _) in &net.nodes {
        assert_eq!(
            client::fetch(&h.client().direct(), &uri).await.unwrap_err(),
            ClientError::Retracted { version: 3 }
        );
    }
    // Keyword keys: anyone can write one, anyone can read it.
    let word = Uri::Ksk("umbra test keyword".into());
    let Uri::Ksk(w) = &word else { unreachable!() };
    client::insert(
        &net.nodes[9].0.client().direct(),
        "text/plain",
        b"by keyword",
        Target::Signed(&umbra::keys::ksk(w), 1),
    )
    .await
    .unwrap();
    let doc = client::fetch(&net.nodes[15].0.client().direct(), &word)
        .await
        .unwrap();
    assert_eq!(doc.data, b"by keyword");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_route_around_corruption_and_loops_and_miss_fast() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut net = Net::grow(19).await;
    // A twentieth node that corrupts every block it serves.
    let bad_id = join_behind(&mut net, Box::new(common::taps::CorruptBlocks)).await;

    // A block whose successor is the corrupting node.
    let ids = net.sorted_ids();
    let i = ids.iter().position(|n| *n == bad_id).unwrap();
    let pred = ids[(i + ids.len() - 1) % ids.len()];
    let (key, block) = loop {
        let (k, b) = chk_encode(&random(1000)).unwrap();
        if in_half_open(&k.routing.0, &pred.0, &bad_id.0) {
            break (k, b);
        }
    };
    net.nodes[1]
        .0
        .client()
        .direct()
        .put_block(KeyKind::CHK, key.routing, block.clone())
        .await
        .unwrap();
    let one = [key.routing];
    eventually("replicated", Duration::from_secs(10), || {
        net.at_least_placed(&one)
    })
    .await;
    // Every other node fetches it: each search meets the corrupter first
    // when it goes straight to the successor, and must go on to a replica.
    for (h, _) in &net.nodes {
        if h.id == bad_id {
            continue;
        }
        assert_eq!(
            h.client()
                .direct()
                .get_block(KeyKind::CHK, key.routing)
                .await
                .unwrap(),
            block
        );
    }
    let penalised: u64 = net
        .statuses()
        .await
        .unwrap()
        .iter()
        .map(|s| s.misbehaving_peers)
        .sum();
    assert!(penalised > 0, "nobody met the corrupting node");

    // A loop: the key's successor has already seen the request id, answers
    // loop, and the search goes on to a replica. Neither the successor nor
    // the asker (its predecessor) is the corrupter, which every node now
    // tries last.
    let ids = net.sorted_ids();
    let (key2, block2) = loop {
        let (k, b) = chk_encode(&random(800)).unwrap();
        let o = ids
            .iter()
            .position(|n| *n == net.expected_holders(&k.routing)[0])
            .unwrap();
        if ids[o] != bad_id && ids[(o + ids.len() - 1) % ids.len()] != bad_id {
            break (k, b);
        }
    };
    net.nodes[2]
        .0
        .client()
        .direct()
        .put_block(KeyKind::CHK, key2.routing, block2.clone())
        .await
        .unwrap();
    let two = [key2.routing];
    eventually("replicated", Duration::from_secs(10), || {
        net.at_least_placed(&two)
    })
    .await;
    let holders = net.expected_holders(&key2.routing);
    let owner = holders[0];
    let pos = |id: NodeId| net.nodes.iter().position(|(h, _)| h.id == id).unwrap();
    let id = RequestId(0x1007);
    // The owner sees the id first, answering its own request locally.
    net.nodes[pos(owner)]
        .0
        .client()
        .direct()
        .get_block_as(KeyKind::CHK, key2.routing, Some(id))
        .await
        .unwrap();
    // The owner's predecessor has the owner as its first successor, so its
    // search goes to the owner first.
    let ids = net.sorted_ids();
    let o = ids.iter().position(|n| *n == owner).unwrap();
    let asker = &net.nodes[pos(ids[(o + ids.len() - 1) % ids.len()])].0;
    let loops_before = total_loops(&net).await;
    assert_eq!(
        asker
            .client()
            .direct()
            .get_block_as(KeyKind::CHK, key2.routing, Some(id))
            .await
            .unwrap(),
        block2
    );
    assert!(total_loops(&net).await > loops_before, "no loop was met");

    // A key never inserted: data not found, from the key's successor, fast.
    let never = RoutingKey([0x77; 32]);
    let t = Instant::now();
    assert_eq!(
        net.nodes[4]
            .0
            .client()
            .direct()
            .get_block(KeyKind::CHK, never)
            .await,
        Err(RequestError::DataNotFound)
    );
    let took = t.elapsed();
    eprintln!("data not found answered in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// Join a node behind `tap` to the ring; its id, once the ring is correct.
async fn join_behind(net: &mut Net, tap: Box<dyn node::Tap>) -> NodeId {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Some(net.nodes[0].0.listen));
    let hooks = node::Hooks {
        observer: None,
        tap: Some(tap),
    };
    let h = node::start_with(cfg, hooks).await.unwrap();
    let id = h.id;
    net.nodes.push((h, dir));
    eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    id
}

/// Two blocks of the arc a node holds that never answers.
fn blocks_owned_by(pred: NodeId, owner: NodeId) -> Vec<(RoutingKey, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < 2 {
        let (k, b) = chk_encode(&random(1000)).unwrap();
        if in_half_open(&k.routing.0, &pred.0, &owner.0) {
            out.push((k.routing, b));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_answers_is_routed_around_then_passed_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut net = Net::grow(15).await;
    // A sixteenth node that keeps its place and its blocks but swallows
    // every request it is sent.
    let silent_id = join_behind(&mut net, Box::new(common::taps::SwallowAnswers)).await;
    let ids = net.sorted_ids();
    let i = ids.iter().position(|n| *n == silent_id).unwrap();
    let pred_id = ids[(i + ids.len() - 1) % ids.len()];
    let blocks = blocks_owned_by(pred_id, silent_id);
    let keys: Vec<RoutingKey> = blocks.iter().map(|(k, _)| *k).collect();
    // Stored through a node further on, which hands each to its successor
    // (the silent node takes it but never says so) and its replicas.
    let via = net
        .nodes
        .iter()
        .position(|(h, _)| h.id == ids[(i + 4) % ids.len()])
        .unwrap();
    for (k, b) in &blocks {
        let _ = net.nodes[via]
            .0
            .client()
            .direct()
            .put_block(KeyKind::CHK, *k, b.clone())
            .await;
    }
    // The silent node never acknowledges a push, so pushes to it wait out
    // their timeout before a pass tries again: allow several.
    eventually("replicated", Duration::from_secs(120), || async {
        net.at_least_placed(&keys)
            .await
            .map_err(|e| format!("{e}; the silent node is {silent_id:?}"))
    })
    .await;
    // The silent node's predecessor asks its successor first: a request
    // (the routed put just now, or the first fetch) waits out one hop and
    // goes on to a replica; after that, another key of the same arc passes
    // the silent node over at once.
    let pred = &net.nodes[net.nodes.iter().position(|(h, _)| h.id == pred_id).unwrap()].0;
    let timed_out = || async { pred.status().await.unwrap().hops_timed_out };
    let direct = pred.client().direct();
    assert_eq!(
        direct.get_block(KeyKind::CHK, keys[0]).await.unwrap(),
        blocks[0].1
    );
    let waited = timed_out().await;
    assert!(waited >= 1, "nothing waited on the silent node");
    assert_eq!(
        direct.get_block(KeyKind::CHK, keys[1]).await.unwrap(),
        blocks[1].1
    );
    assert_eq!(timed_out().await, waited, "the second fetch passed it over");
    // Everyone else is served as before.
    for (h, _) in &net.nodes {
        if h.id != silent_id {
            assert_eq!(
                h.client()
                    .direct()
                    .get_block(KeyKind::CHK, keys[1])
                    .await
                    .unwrap(),
                blocks[1].1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_of_the_nodes_dying_does_not_stop_fetches() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut net = twenty().await;
    let inserter = net.nodes[0].0.client().direct();
    let mut uris = Vec::new();
    for _ in 0..8 {
        let data = random(50_000);
        uris.push((
            client::insert(&inserter, "application/octet-stream", &data, Target::Chk)
                .await
                .unwrap(),
            data,
        ));
    }
    // Wait for every block to be on its 3 nodes. Encryption is convergent,
    // so the keys can be computed here without fetching anything (a fetch
    // would leave copies in caches and hide what backtracking does).
    let mut keys = Vec::new();
    for (uri, data) in &uris {
        let Uri::Chk(root) = uri else { unreachable!() };
        keys.push(root.routing);
        let doc = encode_document("application/octet-stream", data).unwrap();
        assert_eq!(chk_encode(&doc.root).unwrap().0, *root);
        keys.extend(doc.blocks.iter().map(|(k, _)| k.routing));
    }
    eventually("placed", Duration::from_secs(60), || {
        net.at_least_placed(&keys)
    })
    .await;
    let cached: u64 = net
        .statuses()
        .await
        .unwrap()
        .iter()
        .map(|s| s.blocks_cached)
        .sum();
    assert_eq!(cached, 0);
    // Every third node in ring order dies at once: each run of three
    // holders loses one, never all.
    let victims: Vec<NodeId> = net.sorted_ids().into_iter().step_by(3).collect();
    let mut dead = Vec::new();
    for id in &victims {
        dead.push(net.take(*id));
    }
    for (h, _) in dead {
        h.crash().await;
    }
    // No waiting for the ring to repair.
    let t = Instant::now();
    for (i, (uri, data)) in uris.iter().enumerate() {
        let (h, _) = &net.nodes[i % net.nodes.len()];
        assert_eq!(
            &client::fetch(&h.client().direct(), uri).await.unwrap().data,
            data
        );
    }
    eprintln!(
        "{} documents fetched right after {} of 20 nodes died, in {:?}",
        uris.len(),
        victims.len(),
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_mib_document_survives_the_losses_its_code_allows() {
    let _one = ONE_AT_A_TIME.lock().await;
    let net = twenty().await;
    let data = random(10 * 1024 * 1024);
    let t = Instant::now();
    let uri = client::insert(
        &net.nodes[0].0.client().direct(),
        "application/octet-stream",
        &data,
        Target::Chk,
    )
    .await
    .unwrap();
    eprintln!("insert of 10 MiB: {:?}", t.elapsed());
    let t = Instant::now();
    let doc = client::fetch(&net.nodes[11].0.client().direct(), &uri)
        .await
        .unwrap();
    eprintln!("fetch of 10 MiB: {:?}", t.elapsed());
    assert_eq!(doc.data, data);

    // Let replication finish first: a replica still in flight would bring a
    // deleted block back. The keys follow from the content (convergent).
    let encoded = encode_document("application/octet-stream", &data).unwrap();
    let all: Vec<RoutingKey> = encoded.blocks.iter().map(|(k, _)| k.routing).collect();
    eventually("all blocks on 3 nodes", Duration::from_secs(60), || {
        net.at_least_placed(&all)
    })
    .await;

    // Read the manifest ourselves to know which blocks to delete.
    let Uri::Chk(root_key) = &uri else {
        unreachable!()
    };
    let root_block = net.nodes[5]
        .0
        .client()
        .direct()
        .get_block(KeyKind::CHK, root_key.routing)
        .await
        .unwrap();
    let root = umbra::keys::chk_decode(root_key, &root_block).unwrap();
    let umbra::keys::Root::Manifest(m) = decode_root(&root).unwrap() else {
        panic!("a 10 MiB document has a direct manifest");
    };
    let forget = |key: RoutingKey| {
        let net = &net;
        async move {
            for (h, _) in &net.nodes {
                h.forget_block(KeyKind::CHK, key).await.unwrap();
            }
        }
    };
    // Delete, everywhere, as many blocks of every segment as it has parity
    // blocks: data blocks, so the code has to work.
    for s in &m.segments {
        for k in &s.keys[..s.parity] {
            forget(k.routing).await;
        }
    }
    let doc = client::fetch(&net.nodes[17].0.client().direct(), &uri)
        .await
        .unwrap();
    assert_eq!(doc.data, data, "rebuilt from parity");
    // The root gone from its own position: the fetch finds it at its
    // copies, the first and then the second.
    let forget_kind = |kind: KeyKind, key: RoutingKey| {
        let net = &net;
        async move {
            for (h, _) in &net.nodes {
                h.forget_block(kind, key).await.unwrap();
            }
        }
    };
    forget(root_key.routing).await;
    for copy in 1..=umbra::keys::ROOT_COPIES {
        let doc = client::fetch(&net.nodes[17].0.client().direct(), &uri)
            .await
            .unwrap();
        assert_eq!(doc.data, data, "the root from copy {copy}");
        forget_kind(
            KeyKind::COPY,
            umbra::keys::copy_routing_key(&root_key.routing, copy),
        )
        .await;
    }
    // Every position gone: the first failure is the one reported.
    let err = client::fetch(&net.nodes[17].0.client().direct(), &uri)
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::Request(RequestError::DataNotFound));
    // The root back at its own position, for what follows.
    net.nodes[3]
        .0
        .client()
        .direct()
        .put_block(KeyKind::CHK, root_key.routing, root_block.clone())
        .await
        .unwrap();
    // One more in segment 0 and it cannot be rebuilt, and says so.
    let s0 = &m.segments[0];
    forget(s0.keys[s0.parity].routing).await;
    let err = client::fetch(&net.nodes[17].0.client().direct(), &uri)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ClientError::Document(umbra::keys::DocError::Unrecoverable {
            segment: 0,
            have: s0.data - 1,
            need: s0.data,
            total: s0.data + s0.parity,
        })
    );
    assert_eq!(REPLICAS, 3);
}
