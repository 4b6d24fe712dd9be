//! The router on an in-memory ring with a virtual clock.

use std::collections::BTreeMap;

use super::*;
use crate::ring::{distance, in_half_open, in_open};
use crate::token::Token;

/// A node's store and view of the ring.
struct Node {
    id: NodeId,
    store: HashMap<RoutingKey, Vec<u8>>,
    cache: HashMap<RoutingKey, Vec<u8>>,
    ring: Vec<NodeId>,
    corrupt: bool,
}

impl Node {
    fn lookup(&self, key: &RoutingKey) -> Option<Vec<u8>> {
        self.store.get(key).or_else(|| self.cache.get(key)).cloned()
    }
}

impl Context for Node {
    fn owns(&self, key: &RoutingKey) -> bool {
        let i = self.ring.iter().position(|n| *n == self.id).unwrap();
        let pred = self.ring[(i + self.ring.len() - 1) % self.ring.len()];
        in_half_open(&key.0, &pred.0, &self.id.0)
    }
    fn candidates(&self, key: &RoutingKey) -> Vec<NodeId> {
        // Everyone preceding the key, closest first: a full routing table.
        let mut c: Vec<NodeId> = self
            .ring
            .iter()
            .copied()
            .filter(|n| *n != self.id && in_open(&n.0, &self.id.0, &key.0))
            .collect();
        c.sort_by_key(|n| distance(&n.0, &key.0));
        // The owner and its two replicas first, as the node ranks them.
        let i = self.ring.iter().position(|n| n.0 >= key.0).unwrap_or(0);
        let holders: Vec<NodeId> = (0..3)
            .map(|k| self.ring[(i + k) % self.ring.len()])
            .filter(|n| *n != self.id)
            .collect();
        c.retain(|n| !holders.contains(n));
        holders.into_iter().chain(c).collect()
    }
    fn verify(&self, _: KeyKind, key: &RoutingKey, block: &[u8]) -> bool {
        crate::keys::chk_routing_key(block) == *key
    }
}

struct Net {
    nodes: BTreeMap<NodeId, (Router, Node)>,
    dead: HashSet<NodeId>,
    now: Instant,
    delivered: Vec<(NodeId, Token, Outcome)>,
    misbehaved: Vec<NodeId>,
}

impl Net {
    fn new(n: u8) -> Net {
        let ids: Vec<NodeId> = (0..n)
            .map(|i| NodeId([i * (256 / n as usize) as u8; 32]))
            .collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let node = Node {
                    id,
                    store: HashMap::new(),
                    cache: HashMap::new(),
                    ring: ids.clone(),
                    corrupt: false,
                };
                (id, (Router::new(Config::default(), [id.0[0]; 32]), node))
            })
            .collect();
        Net {
            nodes,
            dead: HashSet::new(),
            now: Instant::now(),
            delivered: Vec::new(),
            misbehaved: Vec::new(),
        }
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut batch = Vec::new();
            for (id, (router, _)) in &mut self.nodes {
                while let Some(a) = router.poll_action() {
                    batch.push((*id, a));
                }
            }
            if batch.is_empty() {
                return;
            }
            for (from, a) in batch {
                match a {
                    Action::Deliver { token, outcome, .. } => {
                        self.delivered.push((from, token, outcome))
                    }
                    Action::Misbehaved(n) => self.misbehaved.push(n),
                    // The node's own store answers at once.
                    Action::Read { id, key, .. } => {
                        let now = self.now;
                        let (router, node) = self.nodes.get_mut(&from).unwrap();
                        let block = node.lookup(&key);
                        router.handle_read(id, block, now, node);
                    }
                    Action::Write { id, key, block, .. } => {
                        let (router, node) = self.nodes.get_mut(&from).unwrap();
                        node.store.insert(key, block);
                        router.handle_written(id, true);
                    }
                    Action::Cache { key, block, .. } => {
                        self.nodes
                            .get_mut(&from)
                            .unwrap()
                            .1
                            .cache
                            .insert(key, block);
                    }
                    Action::Send { to, mut msg } => {
                        if self.dead.contains(&to) {
                            continue;
                        }
                        let now = self.now;
                        let corrupt = self.nodes[&from].1.corrupt;
                        if let (PeerMessage::Data { block, .. }, true) = (&mut msg, corrupt) {
                            block[0] ^= 1;
                        }
                        let (router, node) = self.nodes.get_mut(&to).unwrap();
                        match msg {
                            PeerMessage::Get { .. } | PeerMessage::Put { .. } => {
                                router.handle_request(from, msg, now, node)
                            }
                            _ => router.handle_reply(from, msg, now, node),
                        }
                    }
                }
            }
        }
        panic!("no quiescence");
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for (router, node) in self.nodes.values_mut() {
            router.handle_timeout(now, node);
        }
        self.pump();
    }

    fn get(&mut self, from: NodeId, key: RoutingKey, token: u64) -> Outcome {
        let token = Token(token);
        let now = self.now;
        let (router, node) = self.nodes.get_mut(&from).unwrap();
        router.start(None, token, KeyKind::CHK, key, Request::Get, now, node);
        self.pump();
        for _ in 0..200 {
            if let Some(i) = self.delivered.iter().position(|d| d.1 == token) {
                return self.delivered.remove(i).2;
            }
            self.advance(Duration::from_millis(500));
        }
        panic!("no answer");
    }

    fn owner(&self, key: &RoutingKey) -> NodeId {
        *self
            .nodes
            .keys()
            .find(|n| n.0 >= key.0)
            .unwrap_or(self.nodes.keys().next().unwrap())
    }

    fn place(&mut self, block: &[u8], copies: usize) -> RoutingKey {
        let key = crate::keys::chk_routing_key(block);
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let i = ids.iter().position(|n| *n == self.owner(&key)).unwrap();
        for k in 0..copies {
            let id = ids[(i + k) % ids.len()];
            self.nodes
                .get_mut(&id)
                .unwrap()
                .1
                .store
                .insert(key, block.to_vec());
        }
        key
    }
}

#[test]
fn a_block_is_found_through_several_hops_and_cached_on_the_way_back() {
    let mut net = Net::new(16);
    let key = net.place(b"hello", 1);
    let from = *net
        .nodes
        .keys()
        .find(|n| net.owner(&key) != **n && n.0[0] > 0)
        .unwrap();
    assert_eq!(net.get(from, key, 1), Outcome::Found(b"hello".to_vec()));
    // The origin never caches its own requests.
    assert!(net.nodes[&from].1.cache.is_empty());
}

#[test]
fn the_successor_answers_data_not_found_at_once() {
    let mut net = Net::new(16);
    let key = crate::keys::chk_routing_key(b"never inserted");
    let from = *net.nodes.keys().next().unwrap();
    let start = net.now;
    assert_eq!(net.get(from, key, 1), Outcome::DataNotFound);
    assert_eq!(net.now, start, "no timeout was needed");
}

#[test]
fn a_repeated_request_id_gets_loop() {
    let mut net = Net::new(4);
    let ids: Vec<NodeId> = net.nodes.keys().copied().collect();
    let key = net.place(b"x", 1);
    let id = RequestId(77);
    let get = PeerMessage::Get {
        id,
        htl: 5,
        kind: KeyKind::CHK,
        key,
    };
    let now = net.now;
    let (router, node) = net.nodes.get_mut(&ids[1]).unwrap();
    router.handle_request(ids[0], get.clone(), now, node);
    router.handle_request(ids[2], get, now, node);
    let loops: Vec<_> = std::iter::from_fn(|| router.poll_action())
        .filter(|a| matches!(a, Action::Send { to, msg: PeerMessage::Loop { id: i } } if *to == ids[2] && *i == id))
        .collect();
    assert_eq!(loops.len(), 1);
}

#[test]
fn a_dead_hop_and_a_corrupting_hop_are_routed_around() {
    let mut net = Net::new(16);
    let key = net.place(b"replicated", 3);
    let owner = net.owner(&key);
    // The owner is dead and the first replica corrupts what it sends: the
    // search must time out on one, reject the other, and find the third.
    net.dead.insert(owner);
    let ids: Vec<NodeId> = net.nodes.keys().copied().collect();
    let i = ids.iter().position(|n| *n == owner).unwrap();
    net.nodes.get_mut(&ids[(i + 1) % 16]).unwrap().1.corrupt = true;
    let from = ids[(i + 8) % 16];
    assert_eq!(
        net.get(from, key, 9),
        Outcome::Found(b"replicated".to_vec())
    );
    assert_eq!(net.misbehaved, vec![ids[(i + 1) % 16]]);
}

#[test]
fn htl_at_the_maximum_is_decided_once_per_neighbour() {
    let mut r = Router::new(Config::default(), [3; 32]);
    for n in 0..32u8 {
        let to = NodeId([n; 32]);
        let first = r.next_htl(MAX_HTL, to);
        for _ in 0..10 {
            assert_eq!(r.next_htl(MAX_HTL, to), first);
        }
        assert_eq!(r.next_htl(10, to), 9);
        assert_eq!(r.next_htl(0, to), 0);
    }
    let kept = (0..32u8)
        .filter(|n| r.next_htl(MAX_HTL, NodeId([*n; 32])) == MAX_HTL)
        .count();
    assert!(kept > 0 && kept < 32, "both choices occur: {kept}");
}

#[test]
fn seen_ids_are_bounded() {
    let mut r = Router::new(
        Config {
            max_seen: 100,
            ..Config::default()
        },
        [1; 32],
    );
    let now = Instant::now();
    for i in 0..1000 {
        r.remember(RequestId(i), now);
    }
    assert_eq!(r.seen.len(), 100);
    assert!(r.seen.contains_key(&RequestId(999)));
    r.forget_old(now + Duration::from_secs(121));
    assert!(r.seen.is_empty());
}

#[test]
fn a_put_is_acknowledged_only_once_its_owner_has_written_it() {
    let mut net = Net::new(4);
    let ids: Vec<NodeId> = net.nodes.keys().copied().collect();
    let block = b"durable first".to_vec();
    let key = crate::keys::chk_routing_key(&block);
    let owner = net.owner(&key);
    let from = *ids.iter().find(|n| **n != owner).unwrap();
    let put = PeerMessage::Put {
        id: RequestId(5),
        htl: 3,
        kind: KeyKind::CHK,
        key,
        block: block.clone(),
    };
    let now = net.now;
    let (router, node) = net.nodes.get_mut(&owner).unwrap();
    router.handle_request(from, put, now, node);
    let actions: Vec<Action> = std::iter::from_fn(|| router.poll_action()).collect();
    assert!(
        matches!(&actions[..], [Action::Write { id: RequestId(5), block: b, .. }] if *b == block),
        "{actions:?}"
    );
    // The write fails: the put is refused, not acknowledged.
    router.handle_written(RequestId(5), false);
    let reply: Vec<Action> = std::iter::from_fn(|| router.poll_action()).collect();
    assert!(
        matches!(&reply[..], [Action::Send { to, msg: PeerMessage::Rejected { .. } }] if *to == from),
        "{reply:?}"
    );
    // A late second answer to the same write changes nothing.
    router.handle_written(RequestId(5), true);
    assert!(router.poll_action().is_none());
}

#[test]
fn one_neighbour_cannot_take_the_whole_request_budget() {
    let mut net = Net::new(4);
    let ids: Vec<NodeId> = net.nodes.keys().copied().collect();
    let key = net.place(b"x", 1);
    let now = net.now;
    let (router, node) = net.nodes.get_mut(&ids[1]).unwrap();
    router.cfg.max_pending = 10;
    router.cfg.max_pending_per_peer = 4;
    router.cfg.max_pending_local = 3;
    let get = |id| PeerMessage::Get {
        id: RequestId(id),
        htl: 5,
        kind: KeyKind::CHK,
        key,
    };
    // Reads are never answered here, so every request accepted stays.
    let rejected = |router: &mut Router| {
        std::iter::from_fn(|| router.poll_action())
            .filter(|a| {
                matches!(
                    a,
                    Action::Send {
                        msg: PeerMessage::Rejected { .. },
                        ..
                    } | Action::Deliver {
                        outcome: Outcome::Rejected,
                        ..
                    }
                )
            })
            .count()
    };
    for id in 0..20 {
        router.handle_request(ids[0], get(id), now, node);
    }
    assert_eq!(router.pending(), 4, "the flooding neighbour's share");
    assert_eq!(rejected(router), 16);
    for id in 100..104 {
        router.handle_request(ids[2], get(id), now, node);
    }
    assert_eq!(router.pending(), 8, "another neighbour is still served");
    assert_eq!(rejected(router), 0);
    // Requests this node's exits start have a share of their own, and
    // the whole budget bounds everything.
    for t in 0..5 {
        router.start(None, Token(t), KeyKind::CHK, key, Request::Get, now, node);
    }
    assert_eq!(router.pending(), 10);
    assert_eq!(
        rejected(router),
        3,
        "two started, then the budget was spent"
    );
}
