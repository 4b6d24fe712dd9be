//! The circuit state machines wired together in memory: every node linked
//! to every other, cells delivered in order, routed requests answered from
//! a table. The real thing, over QUIC, is tested in `tests/circuits.rs`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::token::Token;
use crate::wire::{NodeDescriptor, MAX_BLOCK_LEN, ONION_LEN, RELAY_BODY_MAX};

struct Net {
    nodes: Vec<Circuits>,
    ids: Vec<NodeId>,
    /// Blocks the "network" behind every exit holds.
    blocks: HashMap<RoutingKey, Vec<u8>>,
    /// Puts the exits started.
    puts: Vec<(RoutingKey, Vec<u8>)>,
    done: HashMap<u64, Result<Outcome, CircuitError>>,
    built: HashMap<u64, Result<Vec<NodeId>, CircuitError>>,
    /// Cells to these nodes are held here instead of delivered.
    hold: HashSet<usize>,
    held: Vec<(usize, NodeId, Cell)>,
    /// Cells to these nodes vanish.
    black_holes: HashSet<usize>,
    /// Relay cells from the first node to the second get a bit flipped on
    /// the way: a relay tampering with what it forwards.
    flip: Option<(usize, usize)>,
    misbehaved: Vec<(NodeId, &'static str)>,
    now: Instant,
}

fn settings() -> Settings {
    Settings {
        hop_timeout: Duration::from_secs(2),
        ..Settings::default()
    }
}

impl Net {
    fn new(n: usize, settings: Settings) -> Net {
        let mut rng = StdRng::seed_from_u64(7);
        let mut nodes = Vec::new();
        let mut peers = Vec::new();
        for i in 0..n {
            let identity = Identity::generate(&mut rng);
            let port = u16::try_from(10_000 + i).unwrap();
            let desc: NodeDescriptor = identity
                .sign_descriptor(
                    vec![NodeAddr(SocketAddr::from(([127, 0, 0, 1], port)))],
                    1,
                    NodeDescriptor::FLAG_RELAY,
                )
                .unwrap();
            peers.push(Peer::new(desc));
            nodes.push(Circuits::new(identity, settings.clone(), [i as u8; 32]));
        }
        let ids: Vec<NodeId> = peers.iter().map(|p| p.id).collect();
        for node in &mut nodes {
            for p in &peers {
                node.add_relay(p.clone(), Instant::now());
            }
        }
        Net {
            nodes,
            ids,
            blocks: HashMap::new(),
            puts: Vec::new(),
            done: HashMap::new(),
            built: HashMap::new(),
            hold: HashSet::new(),
            held: Vec::new(),
            black_holes: HashSet::new(),
            flip: None,
            misbehaved: Vec::new(),
            now: Instant::now(),
        }
    }

    fn index(&self, id: NodeId) -> usize {
        self.ids.iter().position(|i| *i == id).unwrap()
    }

    /// Deliver everything until nothing moves.
    fn run(&mut self) {
        let mut queue: VecDeque<(usize, Action)> = VecDeque::new();
        loop {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Some(a) = node.poll_action() {
                    queue.push_back((i, a));
                }
            }
            let Some((from, action)) = queue.pop_front() else {
                return;
            };
            let now = self.now;
            match action {
                Action::Send { to, mut cell } => {
                    let j = self.index(to);
                    let from_id = self.ids[from];
                    if let (Some(f), Cell::Relay { onion, .. }) = (self.flip, &mut cell) {
                        if f == (from, j) {
                            onion[ONION_LEN / 2] ^= 0x01;
                        }
                    }
                    if self.black_holes.contains(&j) {
                    } else if self.hold.contains(&j) {
                        self.held.push((j, from_id, cell));
                    } else {
                        self.nodes[j].handle_cell(from_id, cell, now);
                    }
                }
                Action::Connect { to, .. } => {
                    let j = self.index(to);
                    let (a, b) = (self.ids[from], self.ids[j]);
                    self.nodes[from].link_up(b, true, now);
                    self.nodes[j].link_up(a, false, now);
                }
                Action::Route {
                    token,
                    key,
                    request,
                    ..
                } => {
                    let outcome = match request {
                        Request::Get => match self.blocks.get(&key) {
                            Some(b) => Outcome::Found(b.clone()),
                            None => Outcome::DataNotFound,
                        },
                        Request::Put(block) => {
                            self.puts.push((key, block));
                            Outcome::Stored
                        }
                    };
                    self.nodes[from].route_done(token, outcome, now);
                }
                Action::Done { token, result } => {
                    assert!(
                        self.done.insert(token.0, result).is_none(),
                        "answered twice"
                    );
                }
                Action::Built { token, result } => {
                    self.built.insert(token.0, result);
                }
                Action::Misbehaved { peer, why } => self.misbehaved.push((peer, why)),
            }
        }
    }

    fn release(&mut self) {
        self.hold.clear();
        for (j, from, cell) in std::mem::take(&mut self.held) {
            self.nodes[j].handle_cell(from, cell, self.now);
        }
        self.run();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for n in &mut self.nodes {
            if n.poll_timeout().is_some_and(|t| t <= now) {
                n.handle_timeout(now);
            }
        }
        self.run();
    }

    fn build(&mut self, client: usize, iso: Isolation, token: u64) -> Vec<NodeId> {
        let now = self.now;
        self.nodes[client].build(Token(token), iso, now);
        self.run();
        self.built
            .remove(&token)
            .expect("build answered")
            .expect("built")
    }

    fn request(&mut self, client: usize, iso: Isolation, token: u64, key: RoutingKey, r: Request) {
        let now = self.now;
        self.nodes[client].request(Token(token), iso, KeyKind::CHK, key, r, now);
        self.run();
    }

    fn relaying(&self) -> usize {
        self.nodes.iter().map(|n| n.stats().relaying).sum()
    }
}

fn block(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn a_block_comes_back_through_three_relays() {
    let mut net = Net::new(6, settings());
    let key = RoutingKey([1; 32]);
    net.blocks.insert(key, block(MAX_BLOCK_LEN, 1));
    let path = net.build(0, Isolation(0), 1);
    assert_eq!(path.len(), 3);
    assert!(!path.contains(&net.ids[0]), "never the client itself");
    assert_eq!(
        path.iter().collect::<HashSet<_>>().len(),
        3,
        "distinct relays"
    );
    net.request(0, Isolation(0), 2, key, Request::Get);
    assert_eq!(net.done[&2], Ok(Outcome::Found(net.blocks[&key].clone())));
    // Three relays hold one circuit each; the client holds its own.
    assert_eq!(net.relaying(), 3);
    assert_eq!(net.nodes[0].stats().own, 1);
    assert!(net.misbehaved.is_empty());
}

#[test]
fn a_put_reaches_the_exit_whole_and_a_missing_key_is_typed() {
    let mut net = Net::new(5, settings());
    let b = block(20_000, 9);
    net.request(
        0,
        Isolation(0),
        1,
        RoutingKey([2; 32]),
        Request::Put(b.clone()),
    );
    assert_eq!(net.done[&1], Ok(Outcome::Stored));
    assert_eq!(net.puts, vec![(RoutingKey([2; 32]), b)]);
    net.request(0, Isolation(0), 2, RoutingKey([3; 32]), Request::Get);
    assert_eq!(net.done[&2], Ok(Outcome::DataNotFound));
}

#[test]
fn a_flipped_bit_is_caught_at_the_next_relay_and_every_hop_lets_go() {
    let mut net = Net::new(5, settings());
    let path = net.build(0, Isolation(0), 1);
    let first = net.index(path[0]);
    net.flip = Some((first, net.index(path[1])));
    net.request(0, Isolation(0), 2, RoutingKey([4; 32]), Request::Get);
    assert_eq!(net.done[&2], Err(CircuitError::Closed));
    let second = net.index(path[1]);
    assert_eq!(
        net.nodes[second].stats().bad_cells,
        1,
        "caught at the very next relay"
    );
    let exit = net.index(path[2]);
    assert_eq!(net.nodes[exit].stats().bad_cells, 0);
    assert_eq!(net.relaying(), 0, "destroy went both ways");
    assert_eq!(net.nodes[0].stats().own, 0);
}

/// A client on a built circuit asks for `streams` blocks of the largest
/// size (tokens 10 on), and reads nothing yet: cells to it are held.
fn unread_blocks(streams: u8) -> Net {
    let mut net = Net::new(5, settings());
    for i in 0..streams {
        net.blocks
            .insert(RoutingKey([100 + i; 32]), block(MAX_BLOCK_LEN, i));
    }
    net.build(0, Isolation(0), 1);
    net.hold.insert(0);
    for i in 0..streams {
        let key = RoutingKey([100 + i; 32]);
        net.request(0, Isolation(0), 10 + u64::from(i), key, Request::Get);
    }
    net
}

#[test]
fn a_slow_reader_holds_the_exit_to_its_window() {
    let streams = 20u8;
    let mut net = unread_blocks(streams);
    let cells_per_block = MAX_BLOCK_LEN.div_ceil(RELAY_BODY_MAX);
    let wanted = usize::from(streams) * cells_per_block;
    assert!(wanted > CIRCUIT_WINDOW as usize);
    // Held: at most a window of data cells plus one end per stream.
    let held = net.held.len();
    assert!(
        held <= CIRCUIT_WINDOW as usize + usize::from(streams),
        "{held} cells queued for a reader that reads nothing"
    );
    assert!(held >= CIRCUIT_WINDOW as usize);
    net.release();
    for i in 0..streams {
        assert_eq!(
            net.done[&(10 + u64::from(i))],
            Ok(Outcome::Found(
                net.blocks[&RoutingKey([100 + i; 32])].clone()
            ))
        );
    }
}

#[test]
fn an_exit_drops_a_circuit_whose_client_stops_reading() {
    // More than a window of cells.
    let mut net = unread_blocks(20);
    assert_eq!(net.relaying(), 3);
    let queued: usize = net.nodes.iter().map(|n| n.exit_queued).sum();
    assert!(queued > 0, "answers wait behind the closed window");
    // Just short of the limit the exit still waits...
    net.advance(EXIT_STALL - Duration::from_secs(1));
    assert_eq!(net.relaying(), 3);
    // ...then lets go of the circuit and everything it held.
    net.advance(Duration::from_secs(2));
    let stalled: u64 = net.nodes.iter().map(|n| n.stats().exits_stalled).sum();
    assert_eq!(stalled, 1);
    assert_eq!(net.relaying(), 0, "the teardown reached every relay");
    let queued: usize = net.nodes.iter().map(|n| n.exit_queued).sum();
    assert_eq!(queued, 0);
}

#[test]
fn a_dead_relay_is_replaced_during_the_build() {
    // Four relays for three places: most draws include the dead one.
    let mut net = Net::new(5, settings());
    let dead = 3;
    net.black_holes.insert(dead);
    let mut token = 0;
    while net.nodes[0].stats().build_failures == 0 {
        token += 1;
        assert!(token < 20, "the dead relay was never drawn");
        let now = net.now;
        net.nodes[0].build(Token(token), Isolation(0), now);
        net.run();
        for _ in 0..20 {
            if net.built.contains_key(&token) {
                break;
            }
            net.advance(Duration::from_secs(1));
        }
        let path = net.built[&token]
            .clone()
            .expect("built around the dead relay");
        assert!(!path.contains(&net.ids[dead]));
    }
    // The rebuilt circuit is the one in use: a request takes it.
    let built = net.nodes[0].stats().built;
    net.blocks.insert(RoutingKey([3; 32]), block(10, 3));
    net.request(0, Isolation(0), 100, RoutingKey([3; 32]), Request::Get);
    assert!(net.done[&100].is_ok());
    assert_eq!(net.nodes[0].stats().built, built, "no new circuit for it");
    // Whatever partial circuits the failed attempts left behind are gone,
    // and so are the replaced ones: only the circuit in use is relayed.
    net.advance(Duration::from_secs(5));
    assert_eq!(net.relaying(), 3);
}

#[test]
fn a_relay_this_node_could_not_reach_is_left_out_for_a_while() {
    let mut net = Net::new(6, settings());
    let gone = net.ids[4];
    let now = net.now;
    net.nodes[0].note_down(gone, now);
    for token in 1..=12 {
        let path = net.build(0, Isolation(token), token);
        assert!(
            !path.contains(&gone),
            "build {token} chose a relay known down"
        );
    }
    // Once the mark expires it is chosen again.
    net.advance(DOWN_FOR + Duration::from_secs(1));
    let chosen = (100..140).any(|token| net.build(0, Isolation(token), token).contains(&gone));
    assert!(chosen, "never chosen again");
    // A link to it coming up again (a restart) ends the mark at once.
    let now = net.now;
    net.nodes[0].note_down(gone, now);
    assert!((200..212).all(|t| !net.build(0, Isolation(t), t).contains(&gone)));
    net.nodes[0].link_up(gone, true, now);
    let chosen = (300..340).any(|token| net.build(0, Isolation(token), token).contains(&gone));
    assert!(chosen, "a relay linked again is still left out");
}

#[test]
fn spent_circuits_are_replaced_and_torn_down() {
    let mut s = settings();
    s.requests = 2;
    let mut net = Net::new(6, s);
    let key = RoutingKey([5; 32]);
    net.blocks.insert(key, block(100, 5));
    for t in 0..5 {
        net.request(0, Isolation(0), t, key, Request::Get);
        assert!(net.done[&t].is_ok());
    }
    assert_eq!(net.nodes[0].stats().built, 3);
    // The spent ones were destroyed along their whole length.
    assert_eq!(net.relaying(), 3);
    assert_eq!(net.nodes[0].stats().own, 1);
}

#[test]
fn different_isolation_never_shares_a_circuit() {
    let mut net = Net::new(6, settings());
    let key = RoutingKey([6; 32]);
    net.blocks.insert(key, block(100, 6));
    net.request(0, Isolation(1), 1, key, Request::Get);
    net.request(0, Isolation(2), 2, key, Request::Get);
    net.request(0, Isolation(1), 3, key, Request::Get);
    assert_eq!(net.nodes[0].stats().built, 2);
    assert_eq!(net.nodes[0].stats().own, 2);
}

#[test]
fn a_lost_link_fails_the_request_without_naming_a_hop() {
    let mut net = Net::new(5, settings());
    let path = net.build(0, Isolation(0), 1);
    let exit = net.index(path[2]);
    net.black_holes.insert(exit);
    net.request(0, Isolation(0), 2, RoutingKey([7; 32]), Request::Get);
    assert!(!net.done.contains_key(&2));
    // The middle relay loses its link to the exit.
    let middle = net.index(path[1]);
    let now = net.now;
    net.nodes[middle].link_down(path[2], now);
    net.run();
    assert_eq!(net.done[&2], Err(CircuitError::Closed));
    assert_eq!(
        net.relaying(),
        1,
        "only the unreachable exit still holds state"
    );
    // A request on a fresh circuit works.
    net.black_holes.clear();
    net.blocks.insert(RoutingKey([7; 32]), block(10, 7));
    net.nodes[0].pin_path(Isolation(9), vec![path[0], path[1]]);
    net.request(0, Isolation(9), 3, RoutingKey([7; 32]), Request::Get);
    assert!(net.done[&3].is_ok());
}

#[test]
fn too_few_relays_is_a_typed_error() {
    let mut net = Net::new(3, settings());
    net.request(0, Isolation(0), 1, RoutingKey([8; 32]), Request::Get);
    assert_eq!(
        net.done[&1],
        Err(CircuitError::NotEnoughRelays { have: 2, need: 3 })
    );
}

#[test]
fn a_create_in_the_wrong_id_half_is_misbehaviour() {
    let mut net = Net::new(2, settings());
    let (a, b) = (net.ids[0], net.ids[1]);
    let now = net.now;
    net.nodes[0].link_up(b, true, now);
    net.nodes[1].link_up(a, false, now);
    // Node 0 dialled, so its ids have the high bit; one without is node 1's.
    net.nodes[1].handle_cell(
        a,
        Cell::Create {
            circ: CircId(5),
            body: crate::wire::CreateBody {
                handshake: crate::wire::HandshakeType::NTOR_X25519,
                data: vec![0; 96],
            },
        },
        now,
    );
    net.run();
    assert_eq!(net.misbehaved.len(), 1);
    assert_eq!(net.relaying(), 0);
}

#[test]
fn a_pinned_path_that_cannot_be_a_circuit_is_refused() {
    let mut net = Net::new(4, settings());
    net.nodes[0].pin_path(Isolation(1), Vec::new());
    net.request(0, Isolation(1), 1, RoutingKey([9; 32]), Request::Get);
    assert!(matches!(
        net.done[&1],
        Err(CircuitError::NotEnoughRelays { .. })
    ));
    let unknown = NodeId([0xee; 32]);
    net.nodes[0].pin_path(Isolation(2), vec![unknown]);
    net.request(0, Isolation(2), 2, RoutingKey([9; 32]), Request::Get);
    assert!(matches!(
        net.done[&2],
        Err(CircuitError::NotEnoughRelays { .. })
    ));
}

#[test]
fn isolation_keys_beyond_the_bound_retire_the_oldest_circuits() {
    let mut net = Net::new(6, settings());
    let key = RoutingKey([10; 32]);
    net.blocks.insert(key, block(100, 10));
    let keys = u64::try_from(MAX_ISOLATIONS).unwrap() + 10;
    for k in 0..keys {
        net.request(0, Isolation(k), k, key, Request::Get);
        assert!(net.done[&k].is_ok());
        net.advance(Duration::from_millis(1));
    }
    assert_eq!(net.nodes[0].stats().built, keys, "a circuit per key");
    // The oldest were torn down along their whole length.
    assert_eq!(net.nodes[0].stats().own, MAX_ISOLATIONS);
    assert_eq!(net.relaying(), 3 * MAX_ISOLATIONS);
    // The newest key still has its circuit; the first one gets a new one.
    net.request(0, Isolation(keys - 1), 1000, key, Request::Get);
    assert_eq!(net.nodes[0].stats().built, keys);
    net.request(0, Isolation(0), 1001, key, Request::Get);
    assert!(net.done[&1001].is_ok());
    assert_eq!(net.nodes[0].stats().built, keys + 1);
}

/// A relay descriptor with these addresses (data only: nothing is dialled).
fn relay_at(rng: &mut StdRng, addrs: &[&str]) -> Peer {
    let identity = Identity::generate(rng);
    let addrs = addrs.iter().map(|a| NodeAddr(a.parse().unwrap())).collect();
    Peer::new(
        identity
            .sign_descriptor(addrs, 1, NodeDescriptor::FLAG_RELAY)
            .unwrap(),
    )
}

#[test]
fn relays_of_one_circuit_come_from_distinct_networks() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut sample = Sample::default();
    // Four relays in one public /16, one elsewhere, one on IPv6 only and
    // one with both an address in that /16 and an IPv6 one.
    for host in 1..=4u8 {
        sample.insert(
            relay_at(&mut rng, &[&format!("1.2.{host}.9:7000")]),
            Instant::now(),
        );
    }
    sample.insert(relay_at(&mut rng, &["5.6.7.8:7000"]), Instant::now());
    sample.insert(relay_at(&mut rng, &["[2a00:1:2::1]:7000"]), Instant::now());
    sample.insert(
        relay_at(&mut rng, &["1.2.200.1:7000", "[2a00:9::1]:7000"]),
        Instant::now(),
    );
    let nets = Networks::default();
    let none = HashSet::new();
    let in_shared = |p: &Peer| {
        p.desc
            .addrs
            .iter()
            .any(|a| a.0.to_string().starts_with("1.2."))
    };
    for _ in 0..200 {
        let path = sample.choose(&mut rng, 3, &none, &nets, None).unwrap();
        assert_eq!(
            path.iter().filter(|p| in_shared(p)).count(),
            1,
            "one hop per /16"
        );
    }
    // Three networks: no fourth hop.
    assert_eq!(
        sample.choose(&mut rng, 4, &none, &nets, None).unwrap_err(),
        CircuitError::NotEnoughRelays { have: 3, need: 4 }
    );
    // A /48 is as much one network as a /16.
    sample.insert(
        relay_at(&mut rng, &["[2a00:1:2:ffff::7]:7000"]),
        Instant::now(),
    );
    assert!(sample.choose(&mut rng, 4, &none, &nets, None).is_err());
    // With the rule off, any relays will do.
    let off = Networks { v4: 0, v6: 0 };
    assert_eq!(
        sample.choose(&mut rng, 4, &none, &off, None).unwrap().len(),
        4
    );

    // Loopback and private addresses never count: a test network on one
    // host, or a home network, builds circuits.
    for addrs in [["127.0.0.1:7001"], ["10.0.0.1:7001"]] {
        let mut local = Sample::default();
        for port in 1..=4u16 {
            let a = addrs[0].replace("7001", &(7000 + port).to_string());
            local.insert(relay_at(&mut rng, &[&a]), Instant::now());
        }
        assert_eq!(
            local.choose(&mut rng, 4, &none, &nets, None).unwrap().len(),
            4
        );
    }
}

#[test]
fn the_sample_takes_two_relays_of_one_network_at_most() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut sample = Sample::default();
    let a = relay_at(&mut rng, &["1.2.3.4:7000"]);
    let b = relay_at(&mut rng, &["1.2.3.5:7000"]);
    assert!(sample.insert(a.clone(), Instant::now()));
    assert!(sample.insert(b, Instant::now()));
    // A third id in the same /24 is refused, however it came.
    for _ in 0..10 {
        assert!(!sample.insert(relay_at(&mut rng, &["1.2.3.99:7000"]), Instant::now()));
    }
    // One with an address there and another elsewhere is refused too.
    assert!(!sample.insert(
        relay_at(&mut rng, &["1.2.3.7:7000", "9.9.9.9:7000"]),
        Instant::now()
    ));
    assert_eq!(sample.len(), 2);
    // A known relay is refreshed; the next /24 is another network.
    assert!(sample.insert(a, Instant::now()));
    assert!(sample.insert(relay_at(&mut rng, &["1.2.4.1:7000"]), Instant::now()));
    // IPv6: a /48.
    assert!(sample.insert(
        relay_at(&mut rng, &["[2a00:1:2:3::1]:7000"]),
        Instant::now()
    ));
    assert!(sample.insert(
        relay_at(&mut rng, &["[2a00:1:2:4::1]:7000"]),
        Instant::now()
    ));
    assert!(!sample.insert(
        relay_at(&mut rng, &["[2a00:1:2:5::1]:7000"]),
        Instant::now()
    ));
    // Loopback and private addresses are in no network: a test network
    // on one host fills the sample.
    let mut local = Sample::default();
    for port in 1..=SAMPLE_SIZE as u16 {
        assert!(local.insert(
            relay_at(&mut rng, &[&format!("127.0.0.1:{port}")]),
            Instant::now()
        ));
    }
    assert_eq!(local.len(), SAMPLE_SIZE);
}

#[test]
fn derived_isolation_keys_are_distinct() {
    let base = Isolation::default();
    let other = Isolation(7);
    let keys = [
        base,
        other,
        base.within(b"socks\0a.umbra"),
        base.within(b"socks\0b.umbra"),
        other.within(b"socks\0a.umbra"),
        base.within(b"gateway\x00127.0.0.1:8080"),
    ];
    let distinct: HashSet<Isolation> = keys.iter().copied().collect();
    assert_eq!(distinct.len(), keys.len());
    // The same label under the same key is the same key.
    assert_eq!(base.within(b"x"), base.within(b"x"));
}
