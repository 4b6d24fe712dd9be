//! Learning a reachable address from peers, without taking one peer's word
//! for it.
//!
//! A node that listens on an unspecified address (`0.0.0.0`, `[::]`) and was
//! given no public address does not know what to advertise. Every peer tells
//! it, on every link, the address it sees the link coming from (OBSERVED).
//! Two checks stand between those claims and the node's descriptor, as in
//! libp2p's identify and AutoNAT protocols:
//!
//! 1. **Agreement.** Observations are votes, one per observer network (one
//!    per /24 for public IPv4 observers and per /48 for public IPv6 ones,
//!    one per address on private and loopback networks, where a LAN or a
//!    test network puts every host in one prefix). A candidate needs
//!    `quorum` votes (at least two) and a strict majority of its family's
//!    votes, so a single liar can neither propose an address nor outvote
//!    the rest.
//! 2. **Dial-back.** An agreed candidate is then tested: a peer that voted
//!    for it is asked (PROBE) to dial the address it sees this node at, on
//!    the candidate's port, from a fresh socket it never used with this
//!    node, and to present a random nonce. A NAT or a firewall keeps state
//!    for the flows this node opened, not for a new one, so only a node
//!    that others can really dial sees the probe arrive. The node believes
//!    what it sees arrive, not what the prober says; a prober that does
//!    nothing only costs a timeout, and the next voter is asked.
//!
//! A candidate that every prober failed is not advertised; the node says so
//! ([`State::Unreachable`]) and tries again after `retry`. Sans-IO, like
//! the ring: observations, link changes, arrivals and time come in;
//! probes to ask for and the advertised set come out of
//! [`Learner::poll_action`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::RngCore;

use super::addr::{canonical, scope, Policy, Scope};
use crate::wire::NodeId;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Observer networks that must agree on an address, at least 2.
    pub quorum: usize,
    /// How long a probe may take to arrive.
    pub probe_timeout: Duration,
    /// Probers asked about one candidate before it is given up.
    pub probers: usize,
    /// How long a candidate that failed every probe is left alone.
    pub retry: Duration,
    /// How long an observation counts.
    pub vote_ttl: Duration,
    /// Observer networks remembered (the oldest vote goes first).
    pub max_votes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            quorum: 2,
            probe_timeout: Duration::from_secs(10),
            probers: 3,
            retry: Duration::from_secs(300),
            vote_ttl: Duration::from_secs(3600),
            max_votes: 64,
        }
    }
}

/// Where learning stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No address agreed on yet.
    Learning,
    /// A candidate is being tested.
    Probing,
    /// At least one address passed the dial-back test.
    Reachable,
    /// Peers agreed on an address, but no probe reached this node there:
    /// it is behind a NAT or a firewall.
    Unreachable,
}

/// What the node must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send PROBE with `nonce` and `port` on the link to `via`.
    Probe {
        via: NodeId,
        nonce: [u8; 16],
        port: u16,
    },
    /// The addresses to advertise changed: these passed the test.
    Advertise(Vec<SocketAddr>),
}

#[derive(Debug, Clone)]
struct Vote {
    observed: SocketAddr,
    by: NodeId,
    at: Instant,
}

#[derive(Debug)]
struct Probing {
    candidate: SocketAddr,
    nonce: [u8; 16],
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Tries {
    asked: HashSet<NodeId>,
    /// Set once every prober failed: leave the candidate alone until then.
    given_up_until: Option<Instant>,
}

pub struct Learner {
    settings: Settings,
    policy: Policy,
    votes: HashMap<IpAddr, Vote>,
    /// Open links: the peer and the address the link comes from.
    linked: HashMap<NodeId, IpAddr>,
    confirmed: Vec<SocketAddr>,
    probing: Option<Probing>,
    tries: HashMap<SocketAddr, Tries>,
    actions: VecDeque<Action>,
}

/// The network an observer votes for: its /24 or /48 on the public
/// internet, its own address elsewhere.
fn voter(ip: IpAddr) -> IpAddr {
    let ip = ip.to_canonical();
    if scope(ip) != Some(Scope::Global) {
        return ip;
    }
    match ip {
        IpAddr::V4(v4) => {
            let mut o = v4.octets();
            o[3] = 0;
            IpAddr::from(o)
        }
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[3..].fill(0);
            IpAddr::from(s)
        }
    }
}

impl Learner {
    pub fn new(settings: Settings, policy: Policy) -> Learner {
        let settings = Settings {
            quorum: settings.quorum.max(2),
            probers: settings.probers.max(1),
            max_votes: settings.max_votes.max(settings.quorum.max(2)),
            ..settings
        };
        Learner {
            settings,
            policy,
            votes: HashMap::new(),
            linked: HashMap::new(),
            confirmed: Vec::new(),
            probing: None,
            tries: HashMap::new(),
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        if !self.confirmed.is_empty() {
            State::Reachable
        } else if self.probing.is_some() {
            State::Probing
        } else if self.tries.values().any(|t| t.given_up_until.is_some()) {
            State::Unreachable
        } else {
            State::Learning
        }
    }

    /// The addresses that passed the dial-back test, one per family.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.confirmed
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = self.tries.values().filter_map(|t| t.given_up_until);
        self.probing.iter().map(|p| p.deadline).chain(retry).min()
    }

    /// A link to `peer`, coming from `ip`, is up.
    pub fn handle_link_up(
        &mut self,
        peer: NodeId,
        ip: IpAddr,
        now: Instant,
        rng: &mut dyn RngCore,
    ) {
        self.linked.insert(peer, ip.to_canonical());
        self.consider(now, rng);
    }

    pub fn handle_link_down(&mut self, peer: NodeId) {
        self.linked.remove(&peer);
    }

    /// `peer`, over a link coming from `from`, says it sees this node at
    /// `observed`.
    pub fn handle_observed(
        &mut self,
        peer: NodeId,
        from: IpAddr,
        observed: SocketAddr,
        now: Instant,
        rng: &mut dyn RngCore,
    ) {
        let key = voter(from);
        if !self.votes.contains_key(&key) && self.votes.len() >= self.settings.max_votes {
            if let Some(oldest) = self.votes.iter().min_by_key(|(_, v)| v.at).map(|(k, _)| *k) {
                self.votes.remove(&oldest);
            }
        }
        self.votes.insert(
            key,
            Vote {
                observed: canonical(observed),
                by: peer,
                at: now,
            },
        );
        self.consider(now, rng);
    }

    /// A probe connection arrived carrying `nonce`. Returns whether it was
    /// the one awaited.
    pub fn handle_probe_arrived(
        &mut self,
        nonce: [u8; 16],
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> bool {
        let Some(p) = self.probing.take_if(|p| p.nonce == nonce) else {
            return false;
        };
        self.tries.remove(&p.candidate);
        let before = self.confirmed.clone();
        self.confirmed
            .retain(|a| a.is_ipv4() != p.candidate.is_ipv4());
        self.confirmed.push(p.candidate);
        self.confirmed.sort_by_key(|a| a.is_ipv4());
        if self.confirmed != before {
            self.actions
                .push_back(Action::Advertise(self.confirmed.clone()));
        }
        self.consider(now, rng);
        true
    }

    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn RngCore) {
        if self.probing.as_ref().is_some_and(|p| p.deadline <= now) {
            self.probing = None;
        }
        for t in self.tries.values_mut() {
            if t.given_up_until.is_some_and(|u| u <= now) {
                // Try the candidate afresh: the network may have changed.
                *t = Tries::default();
            }
        }
        let ttl = self.settings.vote_ttl;
        self.votes
            .retain(|_, v| now.saturating_duration_since(v.at) < ttl);
        self.consider(now, rng);
    }

    /// The agreed candidate of each family, if any.
    fn candidates(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for v4 in [false, true] {
            let mut tally: HashMap<SocketAddr, usize> = HashMap::new();
            let mut total = 0;
            for v in self.votes.values().filter(|v| v.observed.is_ipv4() == v4) {
                total += 1;
                *tally.entry(v.observed).or_default() += 1;
            }
            if let Some((&best, &n)) = tally.iter().max_by_key(|(a, n)| (**n, **a)) {
                if n >= self.settings.quorum && 2 * n > total && self.policy.allows(best) {
                    out.push(best);
                }
            }
        }
        out
    }

    /// Start a probe if a candidate awaits one and a prober is available.
    fn consider(&mut self, now: Instant, rng: &mut dyn RngCore) {
        if self.probing.is_some() {
            return;
        }
        for candidate in self.candidates() {
            if self.confirmed.contains(&candidate) {
                continue;
            }
            let tries = self.tries.entry(candidate).or_default();
            if tries.given_up_until.is_some() {
                continue;
            }
            if tries.asked.len() >= self.settings.probers {
                tries.given_up_until = Some(now + self.settings.retry);
                continue;
            }
            // A voter for this candidate that is linked now, over a link
            // from the network it voted from, and not asked yet.
            let mut probers: Vec<NodeId> = self
                .votes
                .iter()
                .filter(|(key, v)| {
                    v.observed == candidate
                        && !tries.asked.contains(&v.by)
                        && self.linked.get(&v.by).is_some_and(|ip| voter(*ip) == **key)
                })
                .map(|(_, v)| v.by)
                .collect();
            probers.sort();
            if probers.is_empty() {
                continue;
            }
            let pick = usize::try_from(rng.next_u32()).unwrap_or(0) % probers.len();
            let via = probers[pick];
            tries.asked.insert(via);
            let mut nonce = [0u8; 16];
            rng.fill_bytes(&mut nonce);
            self.probing = Some(Probing {
                candidate,
                nonce,
                deadline: now + self.settings.probe_timeout,
            });
            self.actions.push_back(Action::Probe {
                via,
                nonce,
                port: candidate.port(),
            });
            return;
        }
    }
}

/// The answering side: how often this node dials back for others. A probe
/// costs a fresh socket and a QUIC handshake, so each peer gets one per
/// `per_peer`, and the node at most `burst` per `window`.
pub struct Responder {
    per_peer: Duration,
    window: Duration,
    burst: usize,
    last: HashMap<NodeId, Instant>,
    recent: VecDeque<Instant>,
}

impl Default for Responder {
    fn default() -> Self {
        Responder {
            per_peer: Duration::from_secs(20),
            window: Duration::from_secs(10),
            burst: 8,
            last: HashMap::new(),
            recent: VecDeque::new(),
        }
    }
}

/// Peers remembered by the responder; beyond this the oldest are dropped.
const RESPONDER_PEERS: usize = 4096;

impl Responder {
    /// Whether to answer a probe request from `peer` now; counts it if so.
    pub fn allow(&mut self, peer: NodeId, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.burst {
            return false;
        }
        if self
            .last
            .get(&peer)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.per_peer)
        {
            return false;
        }
        if self.last.len() >= RESPONDER_PEERS {
            let per_peer = self.per_peer;
            self.last
                .retain(|_, t| now.saturating_duration_since(*t) < per_peer);
        }
        if self.last.len() >= RESPONDER_PEERS {
            return false;
        }
        self.last.insert(peer, now);
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn learner() -> Learner {
        Learner::new(Settings::default(), Policy::new(Scope::Private))
    }

    fn probe(l: &mut Learner) -> Option<(NodeId, [u8; 16], u16)> {
        while let Some(a) = l.poll_action() {
            if let Action::Probe { via, nonce, port } = a {
                return Some((via, nonce, port));
            }
        }
        None
    }

    #[test]
    fn one_observer_is_not_enough_and_two_agreeing_start_a_probe() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut l = learner();
        let t = Instant::now();
        let me = sa("10.0.0.5:7000");
        l.handle_link_up(id(1), ip("10.0.0.1"), t, &mut rng);
        l.handle_observed(id(1), ip("10.0.0.1"), me, t, &mut rng);
        assert_eq!(probe(&mut l), None, "one peer's word");
        assert_eq!(l.state(), State::Learning);
        // The same observer under another id is still one vote.
        l.handle_link_up(id(9), ip("10.0.0.1"), t, &mut rng);
        l.handle_observed(id(9), ip("10.0.0.1"), me, t, &mut rng);
        assert_eq!(probe(&mut l), None, "one host with two ids");
        l.handle_link_up(id(2), ip("10.0.0.2"), t, &mut rng);
        l.handle_observed(id(2), ip("10.0.0.2"), me, t, &mut rng);
        let (via, nonce, port) = probe(&mut l).expect("a probe");
        assert!(via == id(2) || via == id(9), "{via:?}");
        assert_eq!(port, 7000);
        assert_eq!(l.state(), State::Probing);
        assert!(!l.handle_probe_arrived([0; 16], t, &mut rng), "wrong nonce");
        assert!(l.handle_probe_arrived(nonce, t, &mut rng));
        assert_eq!(l.state(), State::Reachable);
        assert_eq!(l.addresses(), &[me]);
        assert_eq!(l.poll_action(), Some(Action::Advertise(vec![me])));
    }

    #[test]
    fn a_liar_cannot_outvote_or_propose_alone() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut l = learner();
        let t = Instant::now();
        let truth = sa("10.0.0.5:7000");
        let lie = sa("10.0.0.66:7000");
        for (n, from) in [(1, "10.0.0.1"), (2, "10.0.0.2")] {
            l.handle_link_up(id(n), ip(from), t, &mut rng);
            l.handle_observed(id(n), ip(from), truth, t, &mut rng);
        }
        l.handle_link_up(id(3), ip("10.0.0.3"), t, &mut rng);
        l.handle_observed(id(3), ip("10.0.0.3"), lie, t, &mut rng);
        let (via, ..) = probe(&mut l).expect("the truth is probed");
        assert_ne!(via, id(3));
        // Votes from public networks count per /24.
        let mut l = Learner::new(Settings::default(), Policy::new(Scope::Global));
        let me = sa("8.8.4.4:7000");
        for (n, from) in [(1, "9.9.9.1"), (2, "9.9.9.2"), (3, "9.9.9.3")] {
            l.handle_link_up(id(n), ip(from), t, &mut rng);
            l.handle_observed(id(n), ip(from), me, t, &mut rng);
        }
        assert_eq!(probe(&mut l), None, "three hosts of one /24");
        l.handle_link_up(id(4), ip("1.1.1.1"), t, &mut rng);
        l.handle_observed(id(4), ip("1.1.1.1"), me, t, &mut rng);
        assert!(probe(&mut l).is_some());
    }

    #[test]
    fn a_tie_is_no_majority_and_narrow_addresses_are_never_candidates() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut l = learner();
        let t = Instant::now();
        let votes = [
            (1, "10.0.0.1", "10.0.0.5:7000"),
            (2, "10.0.0.2", "10.0.0.5:7000"),
            (3, "10.0.0.3", "10.0.0.6:7000"),
            (4, "10.0.0.4", "10.0.0.6:7000"),
        ];
        // Votes first, links after: the tally is judged with all four in.
        for (n, from, seen) in votes {
            l.handle_observed(id(n), ip(from), sa(seen), t, &mut rng);
        }
        for (n, from, _) in votes {
            l.handle_link_up(id(n), ip(from), t, &mut rng);
        }
        assert_eq!(probe(&mut l), None, "two against two");
        l.handle_observed(id(5), ip("10.0.0.7"), sa("10.0.0.6:7000"), t, &mut rng);
        let (via, ..) = probe(&mut l).expect("three against two");
        assert!(via == id(3) || via == id(4), "{via:?}");
        let mut l = Learner::new(Settings::default(), Policy::new(Scope::Global));
        for (n, from) in [(1, "1.1.1.1"), (2, "9.9.9.9")] {
            l.handle_link_up(id(n), ip(from), t, &mut rng);
            l.handle_observed(id(n), ip(from), sa("10.0.0.5:7000"), t, &mut rng);
        }
        assert_eq!(probe(&mut l), None, "a private address on a public network");
    }

    #[test]
    fn probes_that_never_arrive_make_the_node_unreachable_then_retry() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut l = learner();
        let mut t = Instant::now();
        let me = sa("10.0.0.5:7000");
        for n in 1..=4u8 {
            let from = ip(&format!("10.0.0.{n}"));
            l.handle_link_up(id(n), from, t, &mut rng);
            l.handle_observed(id(n), from, me, t, &mut rng);
        }
        let mut asked = HashSet::new();
        for _ in 0..3 {
            let (via, ..) = probe(&mut l).expect("a probe");
            assert!(asked.insert(via), "each prober is asked once");
            t = l.poll_timeout().expect("a deadline");
            l.handle_timeout(t, &mut rng);
        }
        assert_eq!(probe(&mut l), None);
        assert_eq!(l.state(), State::Unreachable);
        assert!(l.addresses().is_empty());
        let retry = l.poll_timeout().expect("a retry");
        assert!(retry >= t + Duration::from_secs(299));
        l.handle_timeout(retry, &mut rng);
        assert!(probe(&mut l).is_some(), "tried again later");
    }

    #[test]
    fn a_prober_must_still_be_linked_from_where_it_voted() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut l = learner();
        let t = Instant::now();
        let me = sa("10.0.0.5:7000");
        for n in 1..=2u8 {
            let from = ip(&format!("10.0.0.{n}"));
            l.handle_link_up(id(n), from, t, &mut rng);
            l.handle_link_down(id(n));
            l.handle_observed(id(n), from, me, t, &mut rng);
        }
        assert_eq!(probe(&mut l), None, "no voter is linked");
        // Linked again, but from another address than it voted from.
        l.handle_link_up(id(2), ip("10.0.0.9"), t, &mut rng);
        assert_eq!(probe(&mut l), None);
        l.handle_link_up(id(1), ip("10.0.0.1"), t, &mut rng);
        assert_eq!(probe(&mut l).map(|p| p.0), Some(id(1)));
    }

    #[test]
    fn the_responder_limits_each_peer_and_the_whole_node() {
        let mut r = Responder::default();
        let t = Instant::now();
        assert!(r.allow(id(1), t));
        assert!(!r.allow(id(1), t + Duration::from_secs(5)));
        assert!(r.allow(id(1), t + Duration::from_secs(21)));
        let mut r = Responder::default();
        let granted = (0..20u8).filter(|&n| r.allow(id(n), t)).count();
        assert_eq!(granted, 8);
        assert!(r.allow(id(100), t + Duration::from_secs(11)));
    }
}
