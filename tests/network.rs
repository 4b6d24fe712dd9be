//! Real nodes over real QUIC on 127.0.0.1, several in one test process,
//! each with its own endpoint and data directory: the ring forms, blocks
//! land where they belong and stay there through joins, leaves and crashes,
//! and misbehaving peers are cut off.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::{config, eventually, Net, REPLICAS};
use umbra::crypto::Identity;
use umbra::link::{self, Endpoint};
use umbra::node::{self, Bootstrap, NodeHandle};
use umbra::wire::{KeyKind, NodeId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_nodes_joining_one_by_one_form_a_correct_ring() {
    let start = Instant::now();
    let net = Net::grow(16).await;
    let joined = start.elapsed();
    let took = eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    eprintln!(
        "16 nodes: all joined after {joined:?}, ring correct {took:?} later ({:?} from the first start)",
        start.elapsed()
    );
    for s in net.statuses().await.unwrap() {
        assert!(s.fingers >= 1);
        assert_eq!(s.misbehaving_peers, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_land_on_their_successor_and_its_replicas() {
    let net = Net::grow(8).await;
    eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    let keys = net.store_blocks(24).await;
    eventually("blocks placed", Duration::from_secs(20), || {
        net.placed(&keys)
    })
    .await;
    let stored: u64 = net
        .statuses()
        .await
        .unwrap()
        .iter()
        .map(|s| s.blocks_stored)
        .sum();
    assert_eq!(stored, 24 * REPLICAS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_nodes_take_over_the_blocks_they_now_own() {
    let mut net = Net::grow(6).await;
    eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    let keys = net.store_blocks(40).await;
    eventually("blocks placed", Duration::from_secs(20), || {
        net.placed(&keys)
    })
    .await;
    let first = net.nodes[0].0.listen;
    let a = net.add(Some(first)).await;
    let b = net.add(Some(first)).await;
    let newcomers = [net.nodes[a].0.id, net.nodes[b].0.id];
    eventually(
        "ring correct with newcomers",
        Duration::from_secs(30),
        || net.ring_correct(),
    )
    .await;
    // Each block is on its new successor and replicas, newcomers included.
    eventually(
        "blocks follow the new ring",
        Duration::from_secs(30),
        || net.at_least_placed(&keys),
    )
    .await;
    let mut taken_over = 0;
    for key in &keys {
        taken_over += net
            .expected_holders(key)
            .iter()
            .filter(|h| newcomers.contains(h))
            .count();
    }
    assert!(
        taken_over > 0,
        "the newcomers own no block: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_gracefully_hands_its_blocks_over() {
    let mut net = Net::grow(6).await;
    eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    let keys = net.store_blocks(20).await;
    eventually("blocks placed", Duration::from_secs(20), || {
        net.placed(&keys)
    })
    .await;
    // The node holding the most blocks leaves.
    let mut most = (0, net.nodes[0].0.id);
    for s in net.statuses().await.unwrap() {
        if s.blocks_stored > most.0 {
            most = (s.blocks_stored, NodeId::from_hex(&s.id).unwrap());
        }
    }
    let (leaver, _dir) = net.take(most.1);
    leaver.leave().await;
    eventually("ring mended", Duration::from_secs(10), || {
        net.ring_correct()
    })
    .await;
    eventually(
        "every block back to 3 copies",
        Duration::from_secs(20),
        || net.at_least_placed(&keys),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_of_the_nodes_crashing_at_once_is_repaired() {
    let mut net = Net::grow(16).await;
    eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    let keys = net.store_blocks(32).await;
    eventually("blocks placed", Duration::from_secs(30), || {
        net.placed(&keys)
    })
    .await;
    // Every fourth node in ring order: never two neighbours, so each block
    // keeps at least two of its three copies.
    let victims: Vec<NodeId> = net.sorted_ids().into_iter().skip(1).step_by(4).collect();
    assert_eq!(victims.len(), 4);
    let mut dead = Vec::new();
    for id in victims {
        dead.push(net.take(id));
    }
    // The survivors still point at the victims: the check can tell.
    assert!(net.ring_correct().await.is_err());
    for (h, _) in dead.drain(..) {
        h.crash().await;
    }
    let took = eventually("ring repaired", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    let copies = eventually(
        "every block back to 3 copies",
        Duration::from_secs(30),
        || net.at_least_placed(&keys),
    )
    .await;
    eprintln!("4 of 16 crashed: ring repaired in {took:?}, copies restored {copies:?} later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_on_its_data_dir_keeps_its_id_and_blocks() {
    let mut net = Net::grow(3).await;
    eventually("ring correct", Duration::from_secs(20), || {
        net.ring_correct()
    })
    .await;
    let keys = net.store_blocks(12).await;
    eventually("blocks placed", Duration::from_secs(20), || {
        net.placed(&keys)
    })
    .await;
    let id = net.nodes[1].0.id;
    let (h, dir) = net.take(id);
    let held = h.status().await.unwrap().blocks_stored;
    assert_eq!(
        held, 12,
        "in a ring of 3 with 3 copies, every node holds all"
    );
    h.crash().await;

    let bootstrap = net.nodes[0].0.listen;
    let again = node::start(config(dir.path(), Some(bootstrap)))
        .await
        .expect("restarts");
    assert_eq!(again.id, id);
    for key in &keys {
        assert!(again.holds(KeyKind::CHK, *key).await.unwrap());
    }
    net.nodes.push((again, dir));
    eventually("ring correct again", Duration::from_secs(20), || {
        net.ring_correct()
    })
    .await;
}

/// A peer that dials `addr` with a key of its own and then writes `bytes`
/// raw on the link's stream. Returns how the node closed the link.
async fn raw_peer(addr: SocketAddr, bytes: &[u8]) -> Option<quinn::ConnectionError> {
    raw_peer_as(&Identity::generate(&mut rand::rngs::OsRng), addr, bytes).await
}

async fn raw_peer_as(
    identity: &Identity,
    addr: SocketAddr,
    bytes: &[u8],
) -> Option<quinn::ConnectionError> {
    let ep = Endpoint::bind(
        identity,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        false,
        link::Config::default(),
    )
    .expect("binds");
    let link = ep.dial(addr, None).await.expect("dials");
    let (conn, mut send, _recv) = link.into_parts();
    send.write_all(bytes).await.ok()?;
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .ok();
    ep.close().await;
    reason
}

/// A HELLO frame with `who`'s descriptor, made now: the first thing a
/// raw peer says.
fn current_hello(who: &Identity) -> Vec<u8> {
    use umbra::wire::{encode_frame, Frame, PeerMessage};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let node = who.sign_descriptor(Vec::new(), now, 0).unwrap();
    encode_frame(&Frame::Message(PeerMessage::Hello { node })).unwrap()
}

async fn misbehaving(h: &NodeHandle) -> u64 {
    h.status().await.unwrap().misbehaving_peers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_disconnected_and_counted() {
    let mut net = Net::grow(2).await;
    eventually("ring correct", Duration::from_secs(20), || {
        net.ring_correct()
    })
    .await;
    let target = net.nodes[0].0.listen;
    let protocol = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
        error_code: link::close::PROTOCOL,
        reason: b"malformed frame".to_vec().into(),
    });

    // Garbage: an unknown frame kind.
    let closed = raw_peer(target, b"\x07 this is not a frame").await;
    assert_eq!(closed, Some(protocol.clone()));
    assert_eq!(misbehaving(&net.nodes[0].0).await, 1);

    // An oversized frame: a message length far over the bound. The node
    // must refuse it on the length alone, without waiting for the bytes.
    let closed = raw_peer(target, &[0x02, 0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(closed, Some(protocol));
    assert_eq!(misbehaving(&net.nodes[0].0).await, 2);

    // A certificate for the wrong id: a node told to join through the first
    // node under another id refuses the link and counts it.
    let wrong = NodeId([0x5a; 32]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), None);
    cfg.bootstrap = vec![Bootstrap {
        addr: target,
        id: Some(wrong),
    }];
    let confused = node::start(cfg).await.unwrap();
    eventually("wrong id counted", Duration::from_secs(10), || async {
        let s = confused.status().await.map_err(|e| e.to_string())?;
        if s.misbehaving_peers >= 1 && !s.joined {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    confused.crash().await;

    // And the node keeps serving everyone else: a newcomer joins.
    net.add(Some(target)).await;
    eventually(
        "ring correct with a newcomer",
        Duration::from_secs(20),
        || net.ring_correct(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_descriptor_is_refused() {
    use umbra::wire::{encode_frame, Frame, PeerMessage};
    let net = Net::grow(1).await;
    let target = net.nodes[0].0.listen;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hello = |who: &Identity, published: u64| {
        let node = who.sign_descriptor(Vec::new(), published, 0).unwrap();
        encode_frame(&Frame::Message(PeerMessage::Hello { node })).unwrap()
    };
    // A descriptor made a day and a minute ago, and one dated an hour
    // ahead: both refused, the peer disconnected as misbehaving.
    let day = umbra::crypto::DESCRIPTOR_LIFETIME;
    for published in [now - day - 60, now + 3600] {
        let who = Identity::generate(&mut rand::rngs::OsRng);
        let before = misbehaving(&net.nodes[0].0).await;
        let closed = raw_peer_as(&who, target, &hello(&who, published)).await;
        assert!(closed.is_some(), "the link is closed");
        assert_eq!(misbehaving(&net.nodes[0].0).await, before + 1);
    }
    // One made an hour ago is current: the link stays up.
    let who = Identity::generate(&mut rand::rngs::OsRng);
    let before = misbehaving(&net.nodes[0].0).await;
    let closed = raw_peer_as(&who, target, &hello(&who, now - 3600)).await;
    assert!(
        closed.is_none(),
        "a current descriptor is welcome: {closed:?}"
    );
    assert_eq!(misbehaving(&net.nodes[0].0).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relays_onion_keys_survive_a_restart() {
    use umbra::node::core::onion::OnionKeys;
    let net = Net::grow(1).await;
    let first = net.nodes[0].0.listen;
    let dir = tempfile::tempdir().unwrap();
    let h = node::start(config(dir.path(), Some(first))).await.unwrap();
    let file = dir.path().join(node::ONION_FILE);
    eventually("the onion keys saved", Duration::from_secs(10), || async {
        match std::fs::read(&file) {
            Ok(b) => OnionKeys::decode(&b).map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let saved = OnionKeys::decode(&std::fs::read(&file).unwrap()).unwrap();
    let public = |s: &x25519_dalek::StaticSecret| x25519_dalek::PublicKey::from(s).to_bytes();
    assert_eq!(public(&saved.current), h.onion_key);
    h.crash().await;
    // As if it had rotated before it stopped: the next run answers to the
    // saved keys, not to the key in its identity file.
    let rotated = OnionKeys {
        made: saved.made,
        current: x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng),
        previous: Some(saved.current),
    };
    std::fs::write(&file, &rotated.encode()[..]).unwrap();
    let h = node::start(config(dir.path(), Some(first))).await.unwrap();
    assert_eq!(h.onion_key, public(&rotated.current));
    h.crash().await;
    // A damaged file is a clear error at start.
    std::fs::write(&file, b"\x01short").unwrap();
    let e = node::start(config(dir.path(), Some(first)))
        .await
        .err()
        .expect("a damaged onion key file is refused");
    assert!(e.to_string().contains("onion"), "{e}");
}

/// A descriptor's addresses are tried in turn, Happy Eyeballs style: a
/// first address where nothing answers does not stop the dial, an address
/// held by another node fails the id check, and the link that comes up is
/// the one at the right node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_tries_every_address_and_takes_the_one_that_answers() {
    let bind = |accept| {
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        let ep = Endpoint::bind(
            &identity,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            accept,
            link::Config::default(),
        )
        .expect("binds");
        (identity.id(), Arc::new(ep))
    };
    let (target_id, target) = bind(true);
    let (_, stranger) = bind(true);
    let (_, dialer) = bind(false);
    // A UDP port that nobody answers on: bound, never read.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("binds");
    let silent = silent.local_addr().expect("address");
    // Both listening nodes accept, and hold their links until the end.
    let serve = |ep: Arc<Endpoint>| {
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(incoming) = ep.incoming().await {
                if let Ok(link::Accepted::Link(l)) = ep.complete(incoming).await {
                    held.push(l);
                }
            }
        })
    };
    let serving = [serve(target.clone()), serve(stranger.clone())];
    let stranger_addr = stranger.local_addr().expect("address");
    let target_addr = target.local_addr().expect("address");
    let link = dialer
        .dial_any(&[silent, stranger_addr, target_addr], Some(target_id))
        .await
        .expect("the third address answers as the node");
    assert_eq!(link.peer, target_id);
    assert_eq!(link.remote, target_addr);
    let none = dialer
        .dial_any(&[silent, stranger_addr], Some(target_id))
        .await;
    assert!(none.is_err(), "no address holds the node");
    for task in serving {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_only_node_shows_a_new_identity_each_run() {
    let net = Net::grow(3).await;
    let bootstrap = net.nodes[0].0.listen;
    let dir = tempfile::tempdir().unwrap();
    let client_config = || node::Config {
        relay: false,
        ..config(dir.path(), Some(bootstrap))
    };
    let mut seen = Vec::new();
    for _ in 0..2 {
        let h = node::start(client_config()).await.expect("starts");
        // It has dialled the network under this identity: the id the
        // relays see on its link.
        eventually("linked", Duration::from_secs(20), || async {
            match h.status().await {
                Ok(s) if s.links > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        seen.push(h.id);
        h.crash().await;
    }
    assert_ne!(seen[0], seen[1], "two runs, one identity");
    assert!(
        !dir.path().join("identity.key").exists(),
        "a client-only node keeps no identity on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_guards_survive_a_restart() {
    use umbra::circuit::guards::Guards;
    use umbra::circuit::Isolation;
    let net = Net::grow(8).await;
    let bootstrap = net.nodes[0].0.listen;
    let dir = tempfile::tempdir().unwrap();
    let client_config = || node::Config {
        relay: false,
        ..config(dir.path(), Some(bootstrap))
    };
    // Circuits of one run, each for its own isolation key: their first
    // hops.
    async fn first_hops(h: &NodeHandle, from: u64) -> Vec<NodeId> {
        eventually("a relay sample", Duration::from_secs(30), || async {
            match h.relay_sample().await {
                Ok(s) if s.len() >= 4 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let mut out = Vec::new();
        for k in 0..6 {
            let path = h
                .build_circuit(Isolation(from + k))
                .await
                .expect("a circuit builds");
            out.push(path[0]);
        }
        out
    }
    let h = node::start(client_config()).await.expect("starts");
    let before = first_hops(&h, 1).await;
    assert!(
        before.iter().all(|f| *f == before[0]),
        "every circuit enters through the one guard: {before:?}"
    );
    h.crash().await;
    let file = dir.path().join(node::GUARDS_FILE);
    let saved = Guards::decode(&std::fs::read(&file).expect("the guard list is saved"))
        .expect("and reads back");
    assert_eq!(
        saved.list()[0].peer.id,
        before[0],
        "the guard in use is saved"
    );

    let h = node::start(client_config()).await.expect("restarts");
    let after = first_hops(&h, 100).await;
    assert!(
        after.iter().all(|f| *f == before[0]),
        "the next run enters through the same guard: {after:?} vs {:?}",
        before[0]
    );
    h.crash().await;

    // A damaged list is a clear error at start, not a silent new guard.
    std::fs::write(&file, b"\x01\x09garbage").unwrap();
    let e = node::start(client_config())
        .await
        .err()
        .expect("a damaged guard list is refused");
    assert!(e.to_string().contains("guards"), "{e}");
}

/// Records every node a node sends anything to.
struct Recipients(Arc<std::sync::Mutex<std::collections::HashSet<NodeId>>>);

impl node::Tap for Recipients {
    fn sending(&mut self, to: NodeId, frame: umbra::wire::Frame) -> Option<umbra::wire::Frame> {
        if let Ok(mut seen) = self.0.lock() {
            seen.insert(to);
        }
        Some(frame)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_walks_reach_the_ring_only_through_its_guard() {
    use umbra::circuit::Isolation;
    let net = Net::grow(10).await;
    let (boot, bootstrap) = (net.nodes[0].0.id, net.nodes[0].0.listen);
    let relays: Vec<NodeId> = net.nodes.iter().map(|(h, _)| h.id).collect();
    let dir = tempfile::tempdir().unwrap();
    let run = || async {
        let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let hooks = node::Hooks {
            tap: Some(Box::new(Recipients(seen.clone()))),
            ..node::Hooks::default()
        };
        let cfg = node::Config {
            relay: false,
            ..config(dir.path(), Some(bootstrap))
        };
        let h = node::start_with(cfg, hooks).await.expect("client starts");
        // Its walks find nearly every relay...
        eventually("a full sample", Duration::from_secs(60), || async {
            let s = h.relay_sample().await.map_err(|e| e.to_string())?;
            let found = relays.iter().filter(|id| s.contains(id)).count();
            if found >= relays.len() - 1 {
                Ok(())
            } else {
                Err(format!("{found} of {} relays", relays.len()))
            }
        })
        .await;
        let path = h
            .build_circuit(Isolation(7))
            .await
            .expect("a circuit builds");
        h.crash().await;
        let seen = seen.lock().unwrap().clone();
        (seen, path[0])
    };
    // ...yet the client itself spoke to its bootstrap node and to the
    // guard its circuits enter through, and to no other relay.
    let (seen, guard) = run().await;
    let allowed = [boot, guard];
    assert!(
        seen.iter().all(|id| allowed.contains(id)),
        "the client sent to {} nodes, not only its bootstrap node and guard",
        seen.len()
    );
    // The next run starts with that guard: its walks go through it.
    let (seen, again) = run().await;
    assert_eq!(again, guard, "the guard is kept");
    assert!(
        seen.iter().all(|id| allowed.contains(id)),
        "the client sent to {} nodes, not only its bootstrap node and guard",
        seen.len()
    );
}

/// A relay that lies to everyone who looks it up, as the `anonymity`
/// experiment's liars do: every lookup step it answers says "done" and
/// names an accomplice; every table it shows has its accomplices in place
/// of its neighbours and fingers. Accomplices learn each other from the
/// descriptor each sends first on every link.
struct LyingTap {
    crew: Arc<std::sync::Mutex<Vec<umbra::wire::NodeDescriptor>>>,
    /// Its own key, to sign the tables it makes up.
    key: Identity,
}

impl LyingTap {
    fn accomplice_after(&self, id: NodeId) -> Option<umbra::wire::NodeDescriptor> {
        let crew = self.crew.lock().ok()?;
        let mut sorted: Vec<&umbra::wire::NodeDescriptor> = crew.iter().collect();
        sorted.sort_by_key(|d| umbra::crypto::node_id(&d.identity));
        sorted
            .iter()
            .find(|d| umbra::crypto::node_id(&d.identity) >= id)
            .or(sorted.first())
            .map(|d| (*d).clone())
    }
}

impl node::Tap for LyingTap {
    fn sending(&mut self, _to: NodeId, frame: umbra::wire::Frame) -> Option<umbra::wire::Frame> {
        use umbra::wire::{Frame, PeerMessage};
        let replace = |this: &LyingTap, list: Vec<umbra::wire::NodeDescriptor>| {
            let mut out: Vec<umbra::wire::NodeDescriptor> = Vec::new();
            for d in list {
                if let Some(a) = this.accomplice_after(umbra::crypto::node_id(&d.identity)) {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            out
        };
        Some(match frame {
            Frame::Message(PeerMessage::Hello { node }) => {
                if let Ok(mut crew) = self.crew.lock() {
                    if !crew.contains(&node) {
                        crew.push(node.clone());
                    }
                }
                Frame::Message(PeerMessage::Hello { node })
            }
            Frame::Message(PeerMessage::FindSuccessorReply { query, node, .. }) => {
                let node = self
                    .accomplice_after(umbra::crypto::node_id(&node.identity))
                    .unwrap_or(node);
                Frame::Message(PeerMessage::FindSuccessorReply {
                    query,
                    done: true,
                    node,
                })
            }
            Frame::Message(PeerMessage::Table { query, table }) => {
                let table = *table;
                let mut table = Box::new(umbra::wire::ShownTable {
                    successors: replace(self, table.successors),
                    fingers: replace(self, table.fingers),
                    ..table
                });
                self.key.sign_table(query, &mut table).ok()?;
                Frame::Message(PeerMessage::Table { query, table })
            }
            other => other,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_that_lie_about_the_ring_do_not_fill_a_clients_sample() {
    let mut net = Net::grow(10).await;
    let first = net.nodes[0].0.listen;
    let crew = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut liars = Vec::new();
    for _ in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let key = Identity::generate_solving(&mut rand::rngs::OsRng, 8);
        std::fs::write(dir.path().join("identity.key"), &key.secret_bytes()[..]).unwrap();
        let hooks = node::Hooks {
            tap: Some(Box::new(LyingTap {
                crew: crew.clone(),
                key,
            })),
            ..node::Hooks::default()
        };
        let h = node::start_with(config(dir.path(), Some(first)), hooks)
            .await
            .expect("liar starts");
        liars.push(h.id);
        net.nodes.push((h, dir));
    }
    eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    eventually("liars know each other", Duration::from_secs(20), || async {
        let n = crew.lock().map(|c| c.len()).unwrap_or(0);
        if n == liars.len() {
            Ok(())
        } else {
            Err(format!("{n} known"))
        }
    })
    .await;
    let honest: Vec<NodeId> = net
        .nodes
        .iter()
        .map(|(h, _)| h.id)
        .filter(|id| !liars.contains(id))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let victim = node::start(node::Config {
        relay: false,
        ..config(dir.path(), Some(first))
    })
    .await
    .expect("client starts");

    eventually("the victim joined", Duration::from_secs(20), || async {
        match victim.status().await {
            Ok(s) if s.joined => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // The sample comes from checked walks: in this small network it ends
    // up holding the relays as they are, honest ones included, and the
    // liars at no more than their share.
    eventually(
        "the honest relays sampled",
        Duration::from_secs(60),
        || async {
            let s = victim.relay_sample().await.map_err(|e| e.to_string())?;
            let found = honest.iter().filter(|id| s.contains(id)).count();
            if found >= honest.len() - 1 {
                Ok(())
            } else {
                Err(format!("{found} of {} honest relays", honest.len()))
            }
        },
    )
    .await;
    let sample = victim.relay_sample().await.unwrap();
    let lying = sample.iter().filter(|id| liars.contains(id)).count();
    let share = lying as f64 / sample.len() as f64;
    let fair = liars.len() as f64 / (liars.len() + honest.len()) as f64;
    assert!(
        share <= fair + 0.05,
        "liars hold {lying} of {} sampled relays (their share of relays: {fair:.2})",
        sample.len()
    );
    let refused = victim.status().await.unwrap().tables_refused;
    assert!(refused > 0, "the liars' tables were shown, and refused");
    victim.crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_identity_cost_nothing_is_refused() {
    let net = Net::grow(2).await;
    let target = net.nodes[0].0.listen;
    // A relay that skipped the network's id puzzle (its own configuration
    // asks for none): its descriptor is refused wherever it shows it.
    let dir = tempfile::tempdir().unwrap();
    let cheap = loop {
        let who = Identity::generate(&mut rand::rngs::OsRng);
        if umbra::crypto::puzzle_bits(&who.identity_key()) < 8 {
            break who;
        }
    };
    std::fs::write(dir.path().join("identity.key"), &cheap.secret_bytes()[..]).unwrap();
    let cfg = node::Config {
        id_puzzle_bits: 0,
        ..config(dir.path(), Some(target))
    };
    let h = node::start(cfg.clone())
        .await
        .expect("starts with no puzzle asked");
    eventually(
        "refused as misbehaving",
        Duration::from_secs(10),
        || async {
            let n = misbehaving(&net.nodes[0].0).await;
            if n >= 1 {
                Ok(())
            } else {
                Err(format!("{n} misbehaving"))
            }
        },
    )
    .await;
    let s = h.status().await.unwrap();
    assert!(!s.joined, "it did not join the ring");
    h.crash().await;
    // The same identity under the network's puzzle does not even start.
    let e = node::start(node::Config {
        id_puzzle_bits: 8,
        ..cfg
    })
    .await
    .err()
    .expect("refused at start");
    assert!(e.to_string().contains("id puzzle"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_foreign_data_dir_is_refused_and_left_as_it_was() {
    let refused = |dir: &std::path::Path| {
        let cfg = config(dir, None);
        async move {
            match node::start(cfg).await {
                Ok(h) => {
                    h.crash().await;
                    panic!("the node started")
                }
                Err(e) => e.to_string(),
            }
        }
    };
    // Another program's directory.
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("notes.txt"), b"mine").unwrap();
    let e = refused(foreign.path()).await;
    assert!(e.contains("not an umbra data directory"), "{e}");
    let names: Vec<_> = std::fs::read_dir(foreign.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing was added");

    // A node's directory whose store and identity were damaged.
    let dir = tempfile::tempdir().unwrap();
    let h = node::start(config(dir.path(), None)).await.unwrap();
    h.crash().await;
    for (file, junk) in [
        ("store.redb", &b"not a database at all"[..]),
        ("identity.key", &b"short"[..]),
    ] {
        let path = dir.path().join(file);
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, junk).unwrap();
        let e = refused(dir.path()).await;
        assert!(
            e.contains("datastore") || e.contains("identity.key"),
            "{file}: {e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), junk, "{file} left as it was");
        std::fs::write(&path, good).unwrap();
    }
    // Mended, it starts again.
    let h = node::start(config(dir.path(), None)).await.unwrap();
    h.crash().await;
}

/// A peer that pushes replicas for keys across the ring from the node (a
/// store filler) is refused each time, then disconnected; the node holds
/// none of them and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_pushed_for_keys_held_elsewhere_are_refused_then_the_peer_is_cut_off() {
    use rand::RngCore;
    use umbra::keys::chk_routing_key;
    use umbra::wire::{encode_frame, Frame, PeerMessage, RequestId};
    // Enough nodes that a node's place on the ring is a small part of it
    // even as a rough successor list measures the ring: at 24, keys just
    // past a node are some 23 mean gaps behind it, and the 99.9th
    // percentile the node allows for 8 gaps is near 20.
    let net = Net::grow(48).await;
    eventually("ring correct", Duration::from_secs(60), || {
        net.ring_correct()
    })
    .await;
    let (target, _) = &net.nodes[0];
    let t = target.id.0;
    // Keys just past the node, which its successors hold and it never
    // does: the farthest a key can be from its place.
    let mut misplaced = Vec::new();
    let mut rng = rand::thread_rng();
    while misplaced.len() < 9 {
        let mut block = vec![0u8; umbra::wire::BLOCK_DATA_LEN];
        rng.fill_bytes(&mut block);
        let key = chk_routing_key(&block);
        if (1..=8).contains(&key.0[0].wrapping_sub(t[0])) {
            misplaced.push((key, block));
        }
    }
    // A pusher just past the node too, as far behind it as a node can
    // be: one close behind it might be the successor of those keys, with
    // a view of the ring that differs, and is refused but never cut off.
    let who = loop {
        let who = Identity::generate(&mut rand::rngs::OsRng);
        if (1..=8).contains(&who.id().0[0].wrapping_sub(t[0])) {
            break who;
        }
    };
    // A HELLO, then a STORE_REPLICA for each misplaced block.
    let pushes = |who: &Identity| {
        let mut bytes = current_hello(who);
        for (i, (key, block)) in misplaced.iter().enumerate() {
            bytes.extend(
                encode_frame(&Frame::Message(PeerMessage::StoreReplica {
                    id: RequestId(i as u64),
                    kind: KeyKind::CHK,
                    key: *key,
                    block: block.clone(),
                }))
                .unwrap(),
            );
        }
        bytes
    };
    let before = target.status().await.unwrap();
    let closed = raw_peer_as(&who, target.listen, &pushes(&who)).await;
    let after = target.status().await.unwrap();
    assert!(
        closed.is_some(),
        "the pusher is disconnected ({} refused, {} misbehaving)",
        after.replicas_refused - before.replicas_refused,
        after.misbehaving_peers - before.misbehaving_peers
    );
    assert_eq!(after.misbehaving_peers, before.misbehaving_peers + 1);
    assert!(
        after.replicas_refused >= before.replicas_refused + 8,
        "{} refused",
        after.replicas_refused - before.replicas_refused
    );
    for (key, _) in &misplaced {
        assert!(!target.holds(KeyKind::CHK, *key).await.unwrap());
    }
    // The same pushes from just behind the node, where the successor of
    // keys the node holds copies of sits: refused, never cut off (an
    // honest neighbour whose view differs would tear the ring).
    let near = loop {
        let who = Identity::generate(&mut rand::rngs::OsRng);
        if (1..=2).contains(&t[0].wrapping_sub(who.id().0[0])) {
            break who;
        }
    };
    let before = after;
    raw_peer_as(&near, target.listen, &pushes(&near)).await;
    let after = target.status().await.unwrap();
    assert_eq!(
        after.replicas_refused - before.replicas_refused,
        misplaced.len() as u64
    );
    assert_eq!(after.misbehaving_peers, before.misbehaving_peers);
    for (key, _) in &misplaced {
        assert!(!target.holds(KeyKind::CHK, *key).await.unwrap());
    }
    // Everyone else is served as before.
    let keys = net.store_blocks(5).await;
    eventually("honest blocks placed", Duration::from_secs(30), || {
        net.at_least_placed(&keys)
    })
    .await;
}

/// A neighbour that floods routed requests gets its share of the node's
/// request budget and REJECTED beyond it, at once; the node keeps
/// serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbour_flooding_requests_gets_its_share_and_rejections_beyond_it() {
    use rand::RngCore;
    use umbra::wire::{encode_frame, Frame, PeerMessage, RequestId, RoutingKey};
    const FLOOD: u64 = 2000;
    let net = Net::grow(8).await;
    eventually("ring correct", Duration::from_secs(30), || {
        net.ring_correct()
    })
    .await;
    let target = &net.nodes[0].0;
    let share = umbra::route::Config::default().max_pending_per_peer;

    let who = Identity::generate(&mut rand::rngs::OsRng);
    let mut bytes = current_hello(&who);
    let mut rng = rand::thread_rng();
    for i in 0..FLOOD {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        bytes.extend(
            encode_frame(&Frame::Message(PeerMessage::Get {
                id: RequestId(i),
                htl: 10,
                kind: KeyKind::CHK,
                key: RoutingKey(key),
            }))
            .unwrap(),
        );
    }
    let ep = Endpoint::bind(
        &who,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        false,
        link::Config::default(),
    )
    .expect("binds");
    let link = ep.dial(target.listen, None).await.expect("dials");
    let (conn, mut send, mut recv) = link.into_parts();
    send.write_all(&bytes).await.expect("the flood is sent");

    // Every request is answered, and quickly: most of them refused.
    let mut reader = link::FrameReader::default();
    let (mut rejected, mut answered) = (0u64, 0u64);
    while rejected + answered < FLOOD {
        let frame = tokio::time::timeout(Duration::from_secs(30), reader.next(&mut recv))
            .await
            .expect("answers keep coming")
            .expect("the link stays up")
            .expect("the link stays open");
        match frame {
            Frame::Message(PeerMessage::Rejected { .. }) => rejected += 1,
            Frame::Message(
                PeerMessage::DataNotFound { .. }
                | PeerMessage::RouteNotFound { .. }
                | PeerMessage::Data { .. },
            ) => answered += 1,
            _ => {}
        }
    }
    eprintln!("flood of {FLOOD}: {answered} answered, {rejected} rejected");
    assert!(
        answered >= share as u64,
        "the neighbour got less than its share: {answered} answered"
    );
    assert!(
        rejected >= FLOOD / 2,
        "a flood of {FLOOD} was served rather than refused: {rejected} rejected"
    );
    conn.close(0u32.into(), b"done");
    ep.close().await;

    // Everyone else is served as before.
    let keys = net.store_blocks(5).await;
    eventually("honest blocks placed", Duration::from_secs(30), || {
        net.at_least_placed(&keys)
    })
    .await;
}

/// A full store gives up blocks the ring has moved away from its node
/// (replicas a node keeps after others join), so that the blocks it does
/// have a place for find room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_gives_up_blocks_the_ring_moved_away_for_its_own() {
    use rand::RngCore;
    use umbra::keys::chk_routing_key;
    use umbra::ring::in_half_open;
    // Node 0's store holds some 40 blocks of 1 KiB.
    let mut net = Net { nodes: Vec::new() };
    net.add_with(None, |c| c.store_bytes = 40 * 1100).await;
    let first = net.nodes[0].0.listen;
    for _ in 0..2 {
        net.add(Some(first)).await;
    }
    eventually("ring of three", Duration::from_secs(20), || {
        net.ring_correct()
    })
    .await;
    // Three nodes, three copies: node 0 holds every block.
    let old = net.store_blocks(30).await;
    eventually("old blocks placed", Duration::from_secs(30), || {
        net.at_least_placed(&old)
    })
    .await;
    // The ring grows; node 0 keeps the old blocks, most of them now
    // another's to hold.
    for _ in 0..37 {
        let i = net.add(Some(first)).await;
        let h = &net.nodes[i].0;
        eventually("joined", Duration::from_secs(10), || async {
            match h.status().await {
                Ok(s) if s.joined => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    eventually("ring of forty", Duration::from_secs(60), || {
        net.ring_correct()
    })
    .await;
    eventually("old blocks placed anew", Duration::from_secs(60), || {
        net.at_least_placed(&old)
    })
    .await;

    // Blocks node 0 owns now, more than its store has room for beside
    // the old ones.
    let (zero, _) = &net.nodes[0];
    let s = zero.status().await.unwrap();
    let pred = NodeId::from_hex(s.predecessor.as_deref().expect("a predecessor")).unwrap();
    let mut rng = rand::thread_rng();
    let mut mine = Vec::new();
    while mine.len() < 20 {
        let mut block = vec![0u8; 1024];
        rng.fill_bytes(&mut block);
        let key = chk_routing_key(&block);
        if in_half_open(&key.0, &pred.0, &zero.id.0) {
            mine.push((key, block));
        }
    }
    for (i, (key, block)) in mine.iter().enumerate() {
        let via = &net.nodes[1 + i % (net.nodes.len() - 1)].0;
        // A write that finds the store full is refused; the room is made
        // for the next try.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match via.store_block(KeyKind::CHK, *key, block.clone()).await {
                Ok(holder) => {
                    assert_eq!(holder, zero.id, "its successor stored it");
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                }
                Err(e) => {
                    let s = zero.status().await.unwrap();
                    panic!(
                        "block {i} never stored: {e:?}; node 0 holds {} blocks ({} bytes), evicted {}, successors {}",
                        s.blocks_stored,
                        s.bytes_stored,
                        s.blocks_evicted,
                        s.successors.len()
                    )
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let s = zero.status().await.unwrap();
    assert!(s.blocks_evicted > 0, "nothing evicted: {s:?}");
    for (key, _) in &mine {
        assert!(zero.holds(KeyKind::CHK, *key).await.unwrap());
    }
    // What it gave up is still where the ring puts it.
    net.at_least_placed(&old)
        .await
        .expect("old blocks still placed");
}
