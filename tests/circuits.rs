//! Circuits over real nodes on 127.0.0.1: every node's receptions are
//! recorded by the observer hook, and the tests check what each node could
//! have learnt of who asked for what.
//!
//! The requesters are client-only nodes: they take no place on the ring,
//! so whatever reaches another node about them must have come through a
//! circuit, or straight from them over a link.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::net::{config, eventually};
use common::taps::FlipForwardCells;
use rand::RngCore;
use tempfile::TempDir;
use umbra::circuit::{CircuitError, Isolation, CREATE_BURST, CREATE_RATE};
use umbra::client::{self, Target};
use umbra::crypto::{ClientCircuit, ClientHandshake, Identity};
use umbra::node::{self, Bootstrap, Config, NodeHandle, RequestError};
use umbra::observe::{Observation, Observer};
use umbra::wire::{
    decode_frame, encode_frame, Cell, CircId, CreateBody, DestroyReason, Frame, HandshakeType,
    KeyKind, NodeAddr, NodeId, PeerMessage, RelayMessage, RoutingKey, CELL_LEN, MAX_HOPS,
};

/// One network at a time: two cores do not carry two.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What one node received, as the observer saw it.
#[derive(Debug, Clone)]
enum Seen {
    Frame {
        at: NodeId,
        from: NodeId,
        len: usize,
        cell: bool,
        /// For routed requests (get, put): their id.
        routed: Option<u64>,
        /// A routed reply (data, stored, ...).
        reply: bool,
        bytes: Vec<u8>,
    },
    /// A relay message read by an exit or by a circuit's client.
    Relay {
        at: NodeId,
        exit: bool,
        bytes: Vec<u8>,
    },
}

#[derive(Clone, Default)]
struct Log {
    on: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Log {
    fn observer(&self) -> Observer {
        let log = self.clone();
        Observer::new(move |o| {
            if !log.on.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let seen = match o {
                Observation::Frame {
                    at,
                    from,
                    len,
                    frame,
                } => {
                    let (routed, reply) = match frame {
                        Frame::Message(
                            PeerMessage::Get { id, .. } | PeerMessage::Put { id, .. },
                        ) => (Some(id.0), false),
                        Frame::Message(
                            PeerMessage::Data { .. }
                            | PeerMessage::Stored { .. }
                            | PeerMessage::DataNotFound { .. }
                            | PeerMessage::RouteNotFound { .. },
                        ) => (None, true),
                        _ => (None, false),
                    };
                    Seen::Frame {
                        at: *at,
                        from: *from,
                        len: *len,
                        cell: matches!(frame, Frame::Cell(_)),
                        routed,
                        reply,
                        bytes: encode_frame(frame).expect("a received frame encodes"),
                    }
                }
                Observation::Exit { at, msg } => Seen::Relay {
                    at: *at,
                    exit: true,
                    bytes: msg.encode().expect("encodes"),
                },
                Observation::Client { at, msg } => Seen::Relay {
                    at: *at,
                    exit: false,
                    bytes: msg.encode().expect("encodes"),
                },
            };
            log.seen.lock().expect("log lock").push(seen);
        })
    }

    fn start(&self) {
        self.seen.lock().expect("log lock").clear();
        self.on.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn stop(&self) -> Vec<Seen> {
        self.on.store(false, std::sync::atomic::Ordering::Relaxed);
        std::mem::take(&mut *self.seen.lock().expect("log lock"))
    }
}

struct Testnet {
    relays: Vec<(NodeHandle, TempDir)>,
    clients: Vec<(NodeHandle, TempDir)>,
    log: Log,
}

impl Testnet {
    /// `relays` relay nodes in a ring, with `faulty` among them flipping
    /// bits in the cells they relay, and `clients` client-only nodes.
    async fn start(relays: usize, faulty: &[usize], clients: usize) -> Testnet {
        Testnet::start_with(relays, faulty, clients, |_| {}).await
    }

    /// As [`Testnet::start`], each relay's configuration changed by `edit`.
    async fn start_with(
        relays: usize,
        faulty: &[usize],
        clients: usize,
        edit: fn(&mut Config),
    ) -> Testnet {
        let log = Log::default();
        let mut net = Testnet {
            relays: Vec::new(),
            clients: Vec::new(),
            log,
        };
        let mut first = None;
        for i in 0..relays {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut cfg = config(dir.path(), first);
            edit(&mut cfg);
            let tap: Option<Box<dyn node::Tap>> = if faulty.contains(&i) {
                Some(Box::new(FlipForwardCells::default()))
            } else {
                None
            };
            let hooks = node::Hooks {
                observer: Some(net.log.observer()),
                tap,
            };
            let h = node::start_with(cfg, hooks).await.expect("relay starts");
            first.get_or_insert(h.listen);
            net.relays.push((h, dir));
        }
        ring_complete(&net.relays.iter().map(|(h, _)| h).collect::<Vec<_>>()).await;
        for i in 0..clients {
            let dir = tempfile::tempdir().expect("temp dir");
            let boot = net.relays[i % relays].0.listen;
            let cfg = Config {
                relay: false,
                bootstrap: vec![Bootstrap {
                    addr: boot,
                    id: None,
                }],
                ..config(dir.path(), None)
            };
            let hooks = node::Hooks {
                observer: Some(net.log.observer()),
                tap: None,
            };
            let h = node::start_with(cfg, hooks).await.expect("client starts");
            net.clients.push((h, dir));
        }
        // Every node's sample must offer a choice beyond a circuit's three.
        let want = (relays - 2).min(5);
        for (h, _) in net.relays.iter().chain(&net.clients) {
            eventually("relay sample", Duration::from_secs(30), || async {
                let s = h.status().await.map_err(|e| e.to_string())?;
                if s.relay_sample >= want {
                    Ok(())
                } else {
                    Err(format!("{} relays", s.relay_sample))
                }
            })
            .await;
        }
        net
    }

    fn relay(&self, id: NodeId) -> &NodeHandle {
        &self
            .relays
            .iter()
            .find(|(h, _)| h.id == id)
            .expect("a relay")
            .0
    }

    async fn stop(self) {
        for (h, _) in self.clients.into_iter().chain(self.relays) {
            h.crash().await;
        }
    }
}

/// The byte strings that would identify a node: id, identity key, onion
/// key, and its address as the wire writes it.
fn identifiers(h: &NodeHandle) -> Vec<(String, Vec<u8>)> {
    let SocketAddr::V4(v4) = h.listen else {
        panic!("tests listen on IPv4")
    };
    let mut addr = vec![4u8];
    addr.extend_from_slice(&v4.ip().octets());
    addr.extend_from_slice(&v4.port().to_be_bytes());
    vec![
        ("id".into(), h.id.0.to_vec()),
        ("identity key".into(), h.identity_key.to_vec()),
        ("onion key".into(), h.onion_key.to_vec()),
        ("address".into(), addr),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Nodes that started routed requests: they sent one they had not been
/// sent first.
fn origins(seen: &[Seen]) -> HashSet<NodeId> {
    let mut senders: HashMap<u64, HashSet<NodeId>> = HashMap::new();
    let mut receivers: HashMap<u64, HashSet<NodeId>> = HashMap::new();
    for s in seen {
        if let Seen::Frame {
            at,
            from,
            routed: Some(id),
            ..
        } = s
        {
            senders.entry(*id).or_default().insert(*from);
            receivers.entry(*id).or_default().insert(*at);
        }
    }
    let mut out = HashSet::new();
    for (id, from) in senders {
        let got = receivers.remove(&id).unwrap_or_default();
        out.extend(from.difference(&got).copied());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_relay_ever_sees_who_inserts_or_fetches() {
    let _one = ONE_AT_A_TIME.lock().await;
    let net = Testnet::start(8, &[], 2).await;
    let (inserter, _) = &net.clients[0];
    let (fetcher, _) = &net.clients[1];
    let requesters = [
        (inserter.id, identifiers(inserter)),
        (fetcher.id, identifiers(fetcher)),
    ];

    net.log.start();
    let iso = Isolation(1);
    let insert_path = inserter.build_circuit(iso).await.expect("circuit");
    let fetch_path = fetcher.build_circuit(iso).await.expect("circuit");
    assert_eq!(insert_path.len(), 3);
    assert!(!insert_path.contains(&inserter.id));
    let small = random(3_000);
    // Large: many blocks under a manifest, more cells than one window.
    let large = random(600_000);
    let c = inserter.client().isolated(iso);
    let small_uri = client::insert(&c, "text/plain", &small, Target::Chk)
        .await
        .expect("small insert");
    let large_uri = client::insert(&c, "application/octet-stream", &large, Target::Chk)
        .await
        .expect("large insert");
    let f = fetcher.client().isolated(iso);
    assert_eq!(
        client::fetch(&f, &small_uri).await.expect("small").data,
        small
    );
    assert_eq!(
        client::fetch(&f, &large_uri).await.expect("large").data,
        large
    );
    let seen = net.log.stop();

    let firsts: HashMap<NodeId, NodeId> =
        HashMap::from([(inserter.id, insert_path[0]), (fetcher.id, fetch_path[0])]);
    let exits = HashSet::from([insert_path[2], fetch_path[2]]);
    let mut cells = 0;
    let mut cell_sizes = HashSet::new();
    for s in &seen {
        match s {
            Seen::Frame {
                at,
                from,
                len,
                cell,
                routed,
                reply,
                bytes,
            } => {
                if *cell {
                    cells += 1;
                    cell_sizes.insert(*len);
                }
                if let Some(first) = firsts.get(from) {
                    // A requester's frames: its cells go to its first relay
                    // only, and it never routes a request itself.
                    if *cell {
                        assert_eq!(at, first, "a requester's cell reached another node");
                    }
                    assert!(routed.is_none(), "a requester sent a routed request");
                    continue;
                }
                for (requester, ids) in &requesters {
                    // (A requester may hear its own address: OBSERVED tells
                    // each end of a link where the other sees it.)
                    for (what, needle) in ids.iter().filter(|_| at != requester) {
                        assert!(
                            !contains(bytes, needle),
                            "a node received a requester's {what} from another node"
                        );
                    }
                    if at == requester {
                        // A requester hears only ring upkeep and cells:
                        // no routed traffic that a holder could have sent.
                        assert!(routed.is_none() && !reply, "a requester got routed traffic");
                    }
                }
            }
            Seen::Relay { at, exit, bytes } => {
                if *exit {
                    // Every relay reads the extend that makes the next hop
                    // while it is the last; only exits read requests.
                    let msg = RelayMessage::decode(bytes).expect("decodes");
                    if !matches!(msg, RelayMessage::Extend { .. }) {
                        assert!(
                            exits.contains(at),
                            "a relay that is not an exit read a request"
                        );
                    }
                    for (_, ids) in &requesters {
                        for (what, needle) in ids {
                            assert!(
                                !contains(bytes, needle),
                                "an exit read a requester's {what}"
                            );
                        }
                    }
                } else {
                    assert!(firsts.contains_key(at));
                    // What a requester reads names no node (nor the holder).
                    for (h, _) in &net.relays {
                        for (what, needle) in identifiers(h) {
                            assert!(
                                !contains(bytes, &needle),
                                "a requester read a relay's {what}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(
        cells > 1000,
        "only {cells} cells: the documents did not go by circuit"
    );
    assert_eq!(
        cell_sizes,
        HashSet::from([CELL_LEN + 1]),
        "every cell on every link is one size on the wire"
    );
    let started = origins(&seen);
    assert!(!started.is_empty());
    assert!(
        started.is_subset(&exits),
        "routed requests began at {started:?}, not only at the exits {exits:?}"
    );
    for s in net.clients.iter().map(|(h, _)| h) {
        let st = s.status().await.unwrap();
        assert!(!st.relay);
        assert_eq!(st.circuits_relayed, 0);
        assert_eq!(
            st.requests_forwarded, 0,
            "the requester routed nothing itself"
        );
    }
    // No relay counts a client-only node as a ring neighbour.
    for (h, _) in &net.relays {
        let st = h.status().await.unwrap();
        for c in &net.clients {
            let hex = c.0.id.to_hex();
            assert!(st.predecessor.as_ref() != Some(&hex) && !st.successors.contains(&hex));
        }
    }
    net.stop().await;
}

/// An error as the user sees it names no node.
fn assert_anonymous(err: &RequestError, net: &Testnet) {
    let text = format!("{err} {err:?}");
    for (h, _) in net.relays.iter().chain(&net.clients) {
        let hex = h.id.to_hex();
        assert!(!text.contains(&hex[..8]), "{text} names a node");
        assert!(
            !text.contains(&h.listen.port().to_string()),
            "{text} names an address"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_is_caught_by_the_next_relay_and_the_circuit_torn_down() {
    let _one = ONE_AT_A_TIME.lock().await;
    let net = Testnet::start(6, &[0], 1).await;
    let (requester, _) = &net.clients[0];
    let faulty = net.relays[0].0.id;
    eventually("faulty relay sampled", Duration::from_secs(30), || async {
        if requester.relay_sample().await.unwrap().contains(&faulty) {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    let sample = requester.relay_sample().await.unwrap();
    let others: Vec<NodeId> = sample.into_iter().filter(|id| *id != faulty).collect();
    let path = vec![faulty, others[0], others[1]];
    let iso = Isolation(7);
    requester.pin_path(iso, path.clone()).await.unwrap();
    let key = RoutingKey([0x42; 32]);
    let err = requester
        .client()
        .isolated(iso)
        .get_block(KeyKind::CHK, key)
        .await
        .unwrap_err();
    // The first cell the faulty relay passes on is the extend to the
    // second hop: the circuit dies there, before any request leaves.
    assert_eq!(
        err,
        RequestError::Circuit(CircuitError::BuildFailed { attempts: 1 })
    );
    assert_anonymous(&err, &net);
    let next = net.relay(path[1]).status().await.unwrap();
    assert!(
        next.bad_cells >= 1,
        "the relay after the faulty one caught it"
    );
    assert_eq!(net.relay(path[2]).status().await.unwrap().bad_cells, 0);
    // Torn down at every hop, and at the requester.
    eventually("circuits freed", Duration::from_secs(10), || async {
        for (h, _) in net.relays.iter().chain(&net.clients) {
            let s = h.status().await.map_err(|e| e.to_string())?;
            if s.circuits_relayed != 0 || s.circuits_own != 0 {
                return Err(format!(
                    "{} relayed, {} own",
                    s.circuits_relayed, s.circuits_own
                ));
            }
        }
        Ok(())
    })
    .await;
    // An honest path still works.
    let honest = Isolation(8);
    requester
        .pin_path(honest, vec![others[0], others[1], others[2]])
        .await
        .unwrap();
    let block = umbra::keys::chk_encode(b"still here").expect("encodes").1;
    let key = umbra::keys::chk_routing_key(&block);
    let c = requester.client().isolated(honest);
    c.put_block(KeyKind::CHK, key, block.clone()).await.unwrap();
    assert_eq!(c.get_block(KeyKind::CHK, key).await.unwrap(), block);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_midway_are_typed_and_name_no_hop() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut net = Testnet::start(6, &[], 1).await;
    let requester = &net.clients[0].0;
    let c = requester.client();

    // Nobody has it: the key's successor says so, through the exit.
    let err = c
        .get_block(KeyKind::CHK, RoutingKey([0x17; 32]))
        .await
        .unwrap_err();
    assert_eq!(err, RequestError::DataNotFound);
    assert_anonymous(&err, &net);

    // A block that does not match its key is refused before it leaves.
    let err = c
        .put_block(KeyKind::CHK, RoutingKey([1; 32]), vec![1, 2, 3])
        .await
        .unwrap_err();
    assert_eq!(err, RequestError::BadBlock);

    // The exit of a pinned path is gone: the build fails, and says only
    // that.
    let sample = requester.relay_sample().await.unwrap();
    let iso = Isolation(3);
    let dead = sample[2];
    requester
        .pin_path(iso, vec![sample[0], sample[1], dead])
        .await
        .unwrap();
    let i = net.relays.iter().position(|(h, _)| h.id == dead).unwrap();
    let (gone, _dir) = net.relays.remove(i);
    gone.crash().await;
    let err = requester
        .client()
        .isolated(iso)
        .get_block(KeyKind::CHK, RoutingKey([0x18; 32]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RequestError::Circuit(CircuitError::BuildFailed { .. })),
        "{err:?}"
    );
    assert_anonymous(&err, &net);
    // Without a pin, the requester builds around the dead relay.
    let block = umbra::keys::chk_encode(b"around").expect("encodes").1;
    let key = umbra::keys::chk_routing_key(&block);
    c.put_block(KeyKind::CHK, key, block.clone()).await.unwrap();
    assert_eq!(c.get_block(KeyKind::CHK, key).await.unwrap(), block);
    net.stop().await;
}

/// Wait until each of `nodes` has the right predecessor and successor.
async fn ring_complete(nodes: &[&NodeHandle]) {
    let ids: Vec<String> = {
        let mut v: Vec<NodeId> = nodes.iter().map(|h| h.id).collect();
        v.sort();
        v.iter().map(NodeId::to_hex).collect()
    };
    for h in nodes {
        eventually("ring complete", Duration::from_secs(30), || async {
            let s = h.status().await.map_err(|e| e.to_string())?;
            let i = ids.iter().position(|x| *x == s.id).ok_or("unknown")?;
            let n = ids.len();
            if s.predecessor.as_ref() == Some(&ids[(i + n - 1) % n])
                && s.successors.first() == Some(&ids[(i + 1) % n])
            {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_requests_take_different_circuits_and_spent_ones_are_replaced() {
    let _one = ONE_AT_A_TIME.lock().await;
    let net = Testnet::start(6, &[], 0).await;
    // A relay node is a client too; give it a small request budget by
    // starting one more node with one.
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        circuit_requests: 3,
        ..config(dir.path(), Some(net.relays[0].0.listen))
    };
    let h = node::start(cfg).await.unwrap();
    eventually("sampled", Duration::from_secs(30), || async {
        let s = h.status().await.map_err(|e| e.to_string())?;
        if s.joined && s.relay_sample >= 4 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    // The ring takes the new node in before anything is stored: what is
    // tested here is isolation, not routing while a node joins.
    let mut all: Vec<&NodeHandle> = net.relays.iter().map(|(r, _)| r).collect();
    all.push(&h);
    ring_complete(&all).await;
    let block = umbra::keys::chk_encode(b"isolation").expect("encodes").1;
    let key = umbra::keys::chk_routing_key(&block);
    let a = h.client().isolated(Isolation(1));
    let b = h.client().isolated(Isolation(2));
    a.put_block(KeyKind::CHK, key, block.clone()).await.unwrap();
    b.get_block(KeyKind::CHK, key).await.unwrap();
    let s = h.status().await.unwrap();
    assert_eq!(s.circuits_built, 2, "one circuit per isolation key");
    for _ in 0..3 {
        a.get_block(KeyKind::CHK, key).await.unwrap();
    }
    let s = h.status().await.unwrap();
    assert_eq!(s.circuits_built, 3, "isolation 1 spent its budget of 3");
    // The spent circuit was torn down at every hop: two circuits remain.
    eventually("spent circuit freed", Duration::from_secs(10), || async {
        let mut relayed = 0;
        for (r, _) in &net.relays {
            relayed += r
                .status()
                .await
                .map_err(|e| e.to_string())?
                .circuits_relayed;
        }
        if relayed == 6 {
            Ok(())
        } else {
            Err(format!("{relayed} relayed"))
        }
    })
    .await;
    h.crash().await;
    net.stop().await;
}

/// A client written by hand over a real link, to send what the node's own
/// client never would.
struct RawClient {
    ep: umbra::link::Endpoint,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Vec<u8>,
}

impl RawClient {
    async fn dial(addr: SocketAddr, id: NodeId) -> RawClient {
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        let ep = umbra::link::Endpoint::bind(
            &identity,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            false,
            umbra::link::Config::default(),
        )
        .expect("binds");
        let link = ep.dial(addr, Some(id)).await.expect("dials the relay");
        let (_conn, send, recv) = link.into_parts();
        RawClient {
            ep,
            send,
            recv,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, cell: Cell) {
        let bytes = encode_frame(&Frame::Cell(cell)).expect("encodes");
        self.send.write_all(&bytes).await.expect("sends");
    }

    /// The next cell the relay sends (its messages skipped), within 10 s.
    async fn next_cell(&mut self) -> Cell {
        let read = async {
            loop {
                if let Some((frame, n)) = decode_frame(&self.buf).expect("the relay's frames parse")
                {
                    self.buf.drain(..n);
                    if let Frame::Cell(c) = frame {
                        return c;
                    }
                    continue;
                }
                let mut chunk = vec![0u8; 16 << 10];
                let n = self
                    .recv
                    .read(&mut chunk)
                    .await
                    .expect("reads")
                    .expect("the relay keeps the link open");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the relay answers within 10 s")
    }
}

/// Create a one-hop circuit `circ` at the relay `first` over `raw`.
async fn create(raw: &mut RawClient, first: &Identity, circ: CircId) -> ClientCircuit {
    let (hs, msg) = ClientHandshake::start(&mut rand::rngs::OsRng, first.id(), first.onion_key());
    raw.send(Cell::Create {
        circ,
        body: CreateBody {
            handshake: HandshakeType::NTOR_X25519,
            data: msg.to_vec(),
        },
    })
    .await;
    let Cell::Created { body, .. } = raw.next_cell().await else {
        panic!("the first relay did not answer the create");
    };
    let mut c = ClientCircuit::new();
    c.add_hop(&hs.finish(&body.data).expect("keys"))
        .expect("room");
    c
}

/// Wait until `h` has every relay of `path` in its sample.
async fn sampled(h: &NodeHandle, path: &[NodeId]) {
    eventually("relays sampled", Duration::from_secs(30), || async {
        let sample = h.relay_sample().await.map_err(|e| e.to_string())?;
        if path.iter().all(|id| sample.contains(id)) {
            Ok(())
        } else {
            Err(format!("{} of {} sampled", sample.len(), path.len()))
        }
    })
    .await;
}

/// An EXTEND to `next` at `addr`, wrapped in every layer of `layers`;
/// with the handshake state that finishes it.
fn extend_onion(
    layers: &mut ClientCircuit,
    next: &Identity,
    addr: SocketAddr,
) -> (ClientHandshake, Box<[u8; umbra::wire::ONION_LEN]>) {
    let (hs, msg) = ClientHandshake::start(&mut rand::rngs::OsRng, next.id(), next.onion_key());
    let extend = RelayMessage::Extend {
        next: next.id(),
        addrs: vec![NodeAddr(addr)],
        handshake: HandshakeType::NTOR_X25519,
        data: msg.to_vec(),
    };
    let onion = layers
        .wrap_forward(&mut rand::rngs::OsRng, &extend.encode_payload().unwrap())
        .unwrap();
    (hs, onion)
}

/// The relays still serve everyone else: `c` builds a circuit through
/// `path` with its own client.
async fn an_honest_circuit_builds(c: &NodeHandle, path: Vec<NodeId>, iso: Isolation) {
    sampled(c, &path).await;
    c.pin_path(iso, path).await.unwrap();
    c.build_circuit(iso)
        .await
        .expect("an honest circuit builds through the relays");
}

/// The relay identity a node keeps in its data directory.
fn identity_of(dir: &TempDir) -> Identity {
    let bytes = std::fs::read(dir.path().join("identity.key")).expect("identity file");
    Identity::from_secret_bytes(bytes.as_slice().try_into().expect("64 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_loops_a_circuit_through_three_relays_is_stopped() {
    let _one = ONE_AT_A_TIME.lock().await;
    let net = Testnet::start(3, &[], 0).await;
    let relays: Vec<(Identity, SocketAddr)> = net
        .relays
        .iter()
        .map(|(h, dir)| (identity_of(dir), h.listen))
        .collect();
    let (first, first_addr) = (&relays[0].0, relays[0].1);
    let mut raw = RawClient::dial(first_addr, first.id()).await;

    // 20 hops through the same three relays: A B C A B C ...
    let circ = CircId(CircId::DIALER_BIT | 1);
    let mut layers = create(&mut raw, first, circ).await;
    let mut hops = 1;
    let mut stopped = None;
    for k in 1..20 {
        let (next, addr) = &relays[k % 3];
        let (hs, onion) = extend_onion(&mut layers, next, *addr);
        raw.send(Cell::RelayEarly { circ, onion }).await;
        match raw.next_cell().await {
            Cell::Relay { mut onion, .. } => {
                let payload = layers.unwrap_backward(&mut onion).expect("layers check");
                let Ok(RelayMessage::Extended { data }) = RelayMessage::decode(&payload[..]) else {
                    panic!("hop {k}: not extended");
                };
                layers
                    .add_hop(&hs.finish(&data).expect("keys"))
                    .expect("room");
                hops += 1;
            }
            Cell::Destroy { reason, .. } => {
                stopped = Some(reason);
                break;
            }
            other => panic!("hop {k}: {other:?}"),
        }
    }
    assert_eq!(
        (hops, stopped),
        (MAX_HOPS, Some(DestroyReason::PROTOCOL)),
        "the loop is stopped after the longest circuit a client may build"
    );
    let too_long = net.relays[0].0.status().await.unwrap().circuits_too_long;
    assert_eq!(too_long, 1, "the first relay stopped it and counted it");

    // An extend outside RELAY_EARLY, which the relays could not count, is
    // refused by the hop that would carry it out.
    let circ = CircId(CircId::DIALER_BIT | 2);
    let mut layers = create(&mut raw, first, circ).await;
    let (next, addr) = &relays[1];
    let (_, onion) = extend_onion(&mut layers, next, *addr);
    raw.send(Cell::Relay { circ, onion }).await;
    assert!(
        matches!(
            raw.next_cell().await,
            Cell::Destroy {
                reason: DestroyReason::PROTOCOL,
                ..
            }
        ),
        "an extend in a plain relay cell is refused"
    );
    raw.ep.close().await;

    // The relays serve everyone else: a circuit of the node's own client
    // builds through them.
    let path = vec![net.relays[1].0.id, net.relays[2].0.id];
    an_honest_circuit_builds(&net.relays[0].0, path, Isolation(7)).await;
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_floods_creates_is_held_to_its_rate() {
    let _one = ONE_AT_A_TIME.lock().await;
    let net = Testnet::start(3, &[], 0).await;
    let relay = identity_of(&net.relays[0].1);
    let mut raw = RawClient::dial(net.relays[0].0.listen, relay.id()).await;
    let started = std::time::Instant::now();
    let n = 200u32;
    for i in 1..=n {
        let (_, msg) =
            ClientHandshake::start(&mut rand::rngs::OsRng, relay.id(), relay.onion_key());
        raw.send(Cell::Create {
            circ: CircId(CircId::DIALER_BIT | i),
            body: CreateBody {
                handshake: HandshakeType::NTOR_X25519,
                data: msg.to_vec(),
            },
        })
        .await;
    }
    let (mut created, mut refused) = (0u64, 0u64);
    for _ in 0..n {
        match raw.next_cell().await {
            Cell::Created { .. } => created += 1,
            Cell::Destroy {
                reason: DestroyReason::RESOURCE_LIMIT,
                ..
            } => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let most = CREATE_BURST + CREATE_RATE * elapsed + 1.0;
    assert!(
        created >= CREATE_BURST as u64 && (created as f64) <= most,
        "{created} created in {elapsed:.2} s; a burst of {CREATE_BURST} and {CREATE_RATE}/s allow {most:.0}"
    );
    assert_eq!(created + refused, u64::from(n));
    let s = net.relays[0].0.status().await.unwrap();
    assert_eq!(s.creates_refused, refused, "every refusal counted");
    raw.ep.close().await;
    // Everyone else is served: the relay's neighbours build through it.
    let path = vec![net.relays[0].0.id, net.relays[2].0.id];
    an_honest_circuit_builds(&net.relays[1].0, path, Isolation(9)).await;
    net.stop().await;
}

/// Send an EXTEND to `to` at `addr` on a fresh one-hop circuit at `relay`
/// (a node at `listen`), and return what the relay answers.
async fn extend_to(
    listen: SocketAddr,
    relay: &Identity,
    to: &Identity,
    addr: SocketAddr,
) -> (RawClient, Cell) {
    let mut raw = RawClient::dial(listen, relay.id()).await;
    let circ = CircId(CircId::DIALER_BIT | 1);
    let mut layers = create(&mut raw, relay, circ).await;
    let (_, onion) = extend_onion(&mut layers, to, addr);
    raw.send(Cell::RelayEarly { circ, onion }).await;
    let answer = raw.next_cell().await;
    (raw, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend_to_a_loopback_address_is_refused_outside_a_test_network() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Where the extend would land: a socket nothing else knows of.
    let trap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let nobody = Identity::generate(&mut rand::rngs::OsRng);

    // A relay of a private network (it advertises a private address and
    // works in the private scope), reached here on loopback. It never
    // sends anything to the address it advertises: nobody else knows it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        public_addr: vec![SocketAddr::from(([10, 99, 0, 1], 7000))],
        addr_scope: Some(umbra::link::addr::Scope::Private),
        ..config(dir.path(), None)
    };
    let private = node::start(cfg).await.expect("relay starts");
    let (raw, answer) = extend_to(private.listen, &identity_of(&dir), &nobody, trap_addr).await;
    assert!(
        matches!(
            answer,
            Cell::Destroy {
                reason: DestroyReason::CONNECT_FAILED,
                ..
            }
        ),
        "{answer:?}"
    );
    let mut buf = [0u8; 2048];
    assert!(
        trap.try_recv_from(&mut buf).is_err(),
        "the relay dialled a loopback address"
    );
    raw.ep.close().await;
    private.crash().await;

    // Control: a relay of a loopback test network dials the same extend,
    // and the trap sees its first packet.
    let dir = tempfile::tempdir().unwrap();
    let local = node::start(config(dir.path(), None))
        .await
        .expect("relay starts");
    let (raw, _) = tokio::join!(
        async {
            let (raw, _answer) =
                extend_to(local.listen, &identity_of(&dir), &nobody, trap_addr).await;
            raw
        },
        async {
            tokio::time::timeout(Duration::from_secs(10), trap.recv_from(&mut buf))
                .await
                .expect("the test-network relay dials the extend's address")
                .unwrap();
        }
    );
    raw.ep.close().await;
    local.crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_lets_go_of_a_client_that_does_not_read() {
    use umbra::wire::{KeyKind, StreamId, BLOCK_DATA_LEN};
    let _one = ONE_AT_A_TIME.lock().await;
    let net = Testnet::start_with(3, &[], 0, |c| c.limits.exit_stall_secs = 2).await;
    // More blocks in the ring than a circuit may have streams open, far
    // more than a circuit window's worth.
    let wanted = umbra::circuit::MAX_STREAMS + 36;
    let mut keys = Vec::new();
    for i in 0..u8::try_from(wanted).unwrap() {
        let block = vec![i; BLOCK_DATA_LEN];
        let key = umbra::keys::chk_routing_key(&block);
        net.relays[1]
            .0
            .store_block(KeyKind::CHK, key, block)
            .await
            .expect("stored");
        keys.push(key);
    }
    // A client asks for all of them on one circuit and never sends a
    // SENDME (it reads the cells off the link, but acknowledges none).
    let exit = identity_of(&net.relays[0].1);
    let mut raw = RawClient::dial(net.relays[0].0.listen, exit.id()).await;
    let circ = CircId(CircId::DIALER_BIT | 1);
    let mut layers = create(&mut raw, &exit, circ).await;
    for (i, key) in keys.iter().enumerate() {
        let get = RelayMessage::Get {
            stream: StreamId(u16::try_from(i + 1).unwrap()),
            kind: KeyKind::CHK,
            key: *key,
        };
        let onion = layers
            .wrap_forward(&mut rand::rngs::OsRng, &get.encode_payload().unwrap())
            .unwrap();
        raw.send(Cell::Relay { circ, onion }).await;
    }
    // Its window closes; two seconds later the exit tears the circuit
    // down instead of holding the rest for it.
    let mut cells = 0;
    loop {
        match raw.next_cell().await {
            Cell::Destroy { .. } => break,
            Cell::Relay { .. } => cells += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(cells >= 128, "a window of cells came first: {cells}");
    let s = net.relays[0].0.status().await.unwrap();
    assert_eq!(s.exits_stalled, 1);
    // A stream counts until its END is sent, so beyond MAX_STREAMS
    // unanswered or unread the rest were refused: only the streams whose
    // every cell fit in the window (at most 128 / cells per block, as no
    // SENDME ever let it grow) made room.
    let per_block = BLOCK_DATA_LEN.div_ceil(umbra::wire::RELAY_BODY_MAX) as u64;
    let least = (wanted - umbra::circuit::MAX_STREAMS) as u64 - 128 / per_block;
    assert!(
        s.exit_streams_refused >= least,
        "{} refused, at least {least} expected",
        s.exit_streams_refused
    );
    raw.ep.close().await;
    eventually(
        "the exit holds nothing",
        Duration::from_secs(10),
        || async {
            let s = net.relays[0].0.status().await.map_err(|e| e.to_string())?;
            (s.circuits_relayed == 0)
                .then_some(())
                .ok_or(format!("{} circuits", s.circuits_relayed))
        },
    )
    .await;
    let path = vec![net.relays[0].0.id, net.relays[2].0.id];
    an_honest_circuit_builds(&net.relays[1].0, path, Isolation(9)).await;
    net.stop().await;
}
