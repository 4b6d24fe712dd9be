//! `anonymity`: how often colluding relays hold both ends of a user's
//! circuits, under four adversaries, over simulated days of real relay
//! sampling and path selection (docs/threat-model.md, "Measured
//! exposure").
//!
//! The relays run the real ring; each user is a client-only node whose
//! real sampler fills its relay sample by checked walks through its guard
//! at the node's own pace, and whose real path selection builds a real
//! circuit (handshakes over the simulated links) every circuit lifetime.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The circuit a selective-DoS adversary is to kill, if any.
type Armed = Arc<Mutex<Option<Vec<NodeId>>>>;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use super::{await_replies, f3, quiet, rng, Figure, Options, Series, Table};
use crate::circuit::Isolation;
use crate::crypto::{node_id, Identity};
use crate::node::core::sampling::Pace;
use crate::node::core::{Reply, Request};
use crate::node::Tap;
use crate::sim::{Net, Settings};
use crate::wire::{
    Cell, DestroyReason, Frame, KeyKind, NodeDescriptor, NodeId, PeerMessage, ShownTable,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adversary {
    /// Follows the protocol; pools what its relays see.
    Passive,
    /// Answers every lookup step it is asked with a colluding relay.
    LyingLookups,
    /// Chooses its relays' ids: each takes the largest arc it can find.
    Sybil,
    /// Destroys every circuit it is on unless it holds the first relay
    /// and the exit.
    SelectiveDos,
}

impl Adversary {
    const ALL: [Adversary; 4] = [
        Adversary::Passive,
        Adversary::LyingLookups,
        Adversary::Sybil,
        Adversary::SelectiveDos,
    ];

    fn name(self) -> &'static str {
        match self {
            Adversary::Passive => "passive",
            Adversary::LyingLookups => "lying-lookups",
            Adversary::Sybil => "sybil",
            Adversary::SelectiveDos => "selective-dos",
        }
    }
}

/// Identities a Sybil tries per relay before keeping the best.
const GRIND: usize = 64;
/// Builds a user tries in one circuit lifetime before going without.
const ATTEMPTS: usize = 10;

/// The first 16 bytes of an id as a number: enough to compare arcs.
fn pos(id: &NodeId) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&id.0[..16]);
    u128::from_be_bytes(b)
}

/// The arc a node at `id` would own among `ids`: from its predecessor.
fn arc(ids: &BTreeSet<u128>, id: u128) -> u128 {
    let pred = ids
        .range(..id)
        .next_back()
        .or_else(|| ids.iter().next_back())
        .copied()
        .unwrap_or(id);
    id.wrapping_sub(pred)
}

/// A colluding relay's lie: every lookup step it answers says "done" and
/// names the colluder at or after the node it would have named, which
/// answers the confirming ping as any live node does; every table it shows
/// has each entry replaced by the colluder at or after it, and its
/// accomplices that follow it as its successor list. (It does not lie to
/// its honest predecessor when that node stabilizes: see "Nodes that lie"
/// in docs/threat-model.md.)
struct Liar {
    me: NodeId,
    /// Its own key, to sign the tables it makes up.
    key: Identity,
    /// Colluders' descriptors, by position on the ring.
    colluders: Arc<Vec<(NodeId, NodeDescriptor)>>,
}

impl Liar {
    /// The colluder at or after `id`.
    fn at_or_after(&self, id: NodeId) -> &NodeDescriptor {
        let k = self.colluders.partition_point(|(c, _)| *c < id) % self.colluders.len();
        &self.colluders[k].1
    }

    /// `list` with each entry replaced by the colluder at or after it,
    /// each colluder once.
    fn replace(&self, list: Vec<NodeDescriptor>) -> Vec<NodeDescriptor> {
        let mut out: Vec<NodeDescriptor> = Vec::new();
        for d in list {
            let c = self.at_or_after(node_id(&d.identity));
            if node_id(&c.identity) != self.me && !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }

    /// The `k` colluders that follow this one.
    fn successors(&self, k: usize) -> Vec<NodeDescriptor> {
        let n = self.colluders.len();
        let at = self.colluders.partition_point(|(c, _)| *c <= self.me);
        (0..k.min(n.saturating_sub(1)))
            .map(|j| self.colluders[(at + j) % n].1.clone())
            .collect()
    }

    /// The colluder before this one.
    fn predecessor(&self) -> NodeDescriptor {
        let n = self.colluders.len();
        let at = self.colluders.partition_point(|(c, _)| *c < self.me);
        self.colluders[(at + n - 1) % n].1.clone()
    }
}

impl Tap for Liar {
    fn sending(&mut self, _to: NodeId, frame: Frame) -> Option<Frame> {
        match frame {
            Frame::Message(PeerMessage::FindSuccessorReply { query, node, .. }) => {
                let node = self.at_or_after(node_id(&node.identity)).clone();
                Some(Frame::Message(PeerMessage::FindSuccessorReply {
                    query,
                    done: true,
                    node,
                }))
            }
            Frame::Message(PeerMessage::Table { query, table }) => {
                let mut table = Box::new(ShownTable {
                    predecessor: Some(self.predecessor()),
                    successors: self.successors(table.successors.len()),
                    fingers: self.replace(table.fingers),
                    signature: [0; 64],
                });
                self.key.sign_table(query, &mut table).ok()?;
                Some(Frame::Message(PeerMessage::Table { query, table }))
            }
            other => Some(other),
        }
    }
}

/// A selective-DoS colluder. While `armed` names a circuit (its client
/// and relays, the experiment's oracle for "this circuit is ours at one
/// end only", standing in for the timing analysis a real adversary would
/// use), a colluder on it turns the reply it passes back toward the client
/// into a DESTROY: the circuit dies under the request it carries and the
/// client learns it at once, as from a relay that gave up.
struct Spoiler {
    me: NodeId,
    armed: Arc<Mutex<Option<Vec<NodeId>>>>,
}

impl Tap for Spoiler {
    fn sending(&mut self, to: NodeId, frame: Frame) -> Option<Frame> {
        let Frame::Cell(Cell::Relay { circ, .. }) = &frame else {
            return Some(frame);
        };
        let circ = *circ;
        let Ok(armed) = self.armed.lock() else {
            return Some(frame);
        };
        // The circuit as [client, first, ..., exit]: backward is toward
        // the hop before this one.
        let back = armed.as_ref().is_some_and(|chain| {
            chain
                .iter()
                .position(|id| *id == self.me)
                .is_some_and(|k| k > 0 && chain[k - 1] == to)
        });
        if back {
            Some(Frame::Cell(Cell::Destroy {
                circ,
                reason: DestroyReason::NONE,
            }))
        } else {
            Some(frame)
        }
    }
}

/// The network for one row: `n` relays, `bad` of them colluding, and the
/// switch of a selective-DoS adversary.
fn network(adv: Adversary, n: usize, f: f64, seed: u64) -> (Net, HashSet<NodeId>, Armed) {
    let mut net = Net::new(quiet(Settings::default()), seed);
    let mut rng = rng(seed, 6);
    let bad_count = (f * n as f64).round() as usize;
    let mut bad = HashSet::new();
    // Colluders' keys, for liars to sign what they make up.
    let mut keys: HashMap<NodeId, Identity> = HashMap::new();
    let copy = |who: &Identity| Identity::from_secret_bytes(&who.secret_bytes());
    if adv == Adversary::Sybil {
        let mut ids: BTreeSet<u128> = BTreeSet::new();
        for _ in 0..n - bad_count {
            let i = net.add(None);
            ids.insert(pos(&net.core(i).id()));
        }
        for _ in 0..bad_count {
            let mut best: Option<(u128, Identity)> = None;
            for _ in 0..GRIND {
                let who = Identity::generate(&mut rng);
                let a = arc(&ids, pos(&who.id()));
                if best.as_ref().is_none_or(|(b, _)| a > *b) {
                    best = Some((a, who));
                }
            }
            if let Some((_, who)) = best {
                ids.insert(pos(&who.id()));
                keys.insert(who.id(), copy(&who));
                let i = net.add_as(who, None);
                bad.insert(net.core(i).id());
            }
        }
    } else {
        for k in 0..n {
            if k < bad_count {
                let who = Identity::generate(&mut rng);
                keys.insert(who.id(), copy(&who));
                let i = net.add_as(who, None);
                bad.insert(net.core(i).id());
            } else {
                net.add(None);
            }
        }
    }
    net.settle_ring();
    let colluding: Vec<usize> = (0..net.len())
        .filter(|&i| bad.contains(&net.core(i).id()))
        .collect();
    let armed: Armed = Arc::new(Mutex::new(None));
    let mut roster: Vec<(NodeId, NodeDescriptor)> = colluding
        .iter()
        .map(|&i| (net.core(i).id(), net.core(i).descriptor().clone()))
        .collect();
    roster.sort_by_key(|a| a.0);
    let roster = Arc::new(roster);
    for &i in &colluding {
        let me = net.core(i).id();
        let tap: Box<dyn Tap> = match adv {
            Adversary::SelectiveDos => Box::new(Spoiler {
                me,
                armed: armed.clone(),
            }),
            Adversary::LyingLookups => {
                let Some(key) = keys.remove(&me) else {
                    continue;
                };
                Box::new(Liar {
                    me,
                    key,
                    colluders: roster.clone(),
                })
            }
            Adversary::Passive | Adversary::Sybil => continue,
        };
        net.set_tap(i, tap);
    }
    (net, bad, armed)
}

#[derive(Default)]
struct Row {
    circuits: usize,
    compromised: usize,
    destroyed: usize,
    sample_share: f64,
    users: usize,
    users_compromised: usize,
    /// Days to each user's first compromise (none: never).
    first: Vec<Option<f64>>,
}

fn one(adv: Adversary, n: usize, f: f64, users: usize, days: f64, seed: u64) -> Row {
    let (mut net, bad, armed) = network(adv, n, f, seed);
    let mut rng: StdRng = rng(seed, 7);
    let honest: Vec<usize> = (0..net.len())
        .filter(|&i| !bad.contains(&net.core(i).id()))
        .collect();
    // Users start from an honest relay and sample at the node's own pace.
    let clients: Vec<usize> = (0..users)
        .map(|_| {
            let boot = honest[rng.gen_range(0..honest.len())];
            net.add_client(boot, Some(Pace::default()))
        })
        .collect();
    // The document users fetch through their circuits against selective
    // DoS: stored once, so each request is a short routed get.
    let block: [u8; 16] = rng.gen();
    let doc = crate::keys::chk_routing_key(&block);
    if adv == Adversary::SelectiveDos {
        let t = net.submit(
            honest[0],
            Request::Store {
                kind: KeyKind::CHK,
                key: doc,
                block: block.to_vec(),
            },
        );
        await_replies(&mut net, &[(honest[0], t)], Duration::from_secs(120));
    }
    // Let the samples fill.
    net.run_for(Duration::from_secs(600));
    let lifetime = Duration::from_secs(Settings::default().node.circuit_lifetime_secs);
    let slots = (days * 86_400.0 / lifetime.as_secs_f64()).round() as u64;
    let start = net.now();
    let mut row = Row {
        users,
        first: vec![None; users],
        ..Row::default()
    };
    let mut share_sum = 0.0;
    let mut share_n = 0usize;
    // The ring is settled, its maintenance quiet: its tables would keep
    // the descriptors of the start, which go stale in a day. Relays sign
    // theirs again every few hours; just after, the tables are settled
    // again with them, as stabilization and finger lookups would have
    // refreshed them.
    let refresh = crate::node::core::REPUBLISH_EVERY;
    let mut next_settle = start + refresh + Duration::from_secs(60);
    for slot in 0..slots {
        if net.now() >= next_settle {
            net.settle_ring();
            next_settle += refresh;
        }
        for (u, &c) in clients.iter().enumerate() {
            let sample = net.core(c).circuits().sample().ids();
            if !sample.is_empty() {
                share_sum += sample.iter().filter(|id| bad.contains(id)).count() as f64
                    / sample.len() as f64;
                share_n += 1;
            }
            let iso = Isolation(slot * users as u64 + u as u64 + 1);
            for _ in 0..ATTEMPTS {
                let t = net.submit(c, Request::BuildCircuit(iso));
                let got = await_replies(&mut net, &[(c, t)], Duration::from_secs(120));
                let Some(Reply::Built(Ok(path))) = got.get(&(c, t)) else {
                    continue;
                };
                let first = path.first().is_some_and(|id| bad.contains(id));
                let exit = path.last().is_some_and(|id| bad.contains(id));
                let touched = path.iter().any(|id| bad.contains(id));
                // Against selective DoS the user sends a request on it,
                // which the adversary kills if the circuit is its own at
                // one end only: the client's path-bias accounting sees
                // what a user would. (Other adversaries leave circuits be;
                // their rows skip the request to save time.)
                if adv == Adversary::SelectiveDos {
                    let spoil = touched && !(first && exit);
                    if spoil {
                        let mut chain = vec![net.core(c).id()];
                        chain.extend(path.iter().copied());
                        *armed.lock().expect("no panic holds it") = Some(chain);
                    }
                    let t = net.submit(
                        c,
                        Request::Circuit {
                            iso,
                            kind: KeyKind::CHK,
                            key: doc,
                            request: crate::route::Request::Get,
                        },
                    );
                    let got = await_replies(&mut net, &[(c, t)], Duration::from_secs(120));
                    *armed.lock().expect("no panic holds it") = None;
                    if !matches!(got.get(&(c, t)), Some(Reply::Circuit(Ok(_)))) {
                        // Destroyed before it carried anything: the
                        // user's next request builds another.
                        row.destroyed += 1;
                        continue;
                    }
                }
                row.circuits += 1;
                if first && exit {
                    row.compromised += 1;
                    if row.first[u].is_none() {
                        let at = net.now().saturating_sub(start);
                        row.first[u] = Some(at.as_secs_f64() / 86_400.0);
                    }
                }
                break;
            }
        }
        let next = start + lifetime * (slot as u32 + 1);
        if net.now() < next {
            net.run_until(next);
        }
    }
    row.sample_share = if share_n == 0 {
        0.0
    } else {
        share_sum / share_n as f64
    };
    row.users_compromised = row.first.iter().filter(|d| d.is_some()).count();
    row
}

/// The median of the days to first compromise, users never compromised
/// counting as later than any; `None` when half or more never were.
fn median_days(first: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = first.iter().map(|d| d.unwrap_or(f64::INFINITY)).collect();
    v.sort_by(f64::total_cmp);
    let m = v.get(v.len().saturating_sub(1) / 2).copied()?;
    m.is_finite().then_some(m)
}

/// A row of the table, as text.
fn cells(adv: Adversary, f: f64, r: &Row, days: f64) -> Vec<String> {
    let frac = r.compromised as f64 / r.circuits.max(1) as f64;
    vec![
        adv.name().to_string(),
        f3(f),
        r.circuits.to_string(),
        format!("{frac:.4}"),
        f3(r.sample_share),
        f3(r.users_compromised as f64 / r.users.max(1) as f64),
        median_days(&r.first).map_or_else(|| format!(">{days}"), f3),
        format!("{:.4}", f * f),
        r.destroyed.to_string(),
    ]
}

/// The rows `spec` selects (see [`Options::only`]) among `configs`.
fn select(configs: Vec<(Adversary, f64)>, spec: &str) -> Result<Vec<(Adversary, f64)>, String> {
    let mut keep = vec![false; configs.len()];
    for part in spec.split(',').map(str::trim) {
        let (name, f) = part.split_once('@').unwrap_or((part, ""));
        let adv = match name {
            "" => None,
            n => Some(
                Adversary::ALL
                    .into_iter()
                    .find(|a| a.name() == n)
                    .ok_or_else(|| format!("--only: no adversary {n:?}"))?,
            ),
        };
        let f = match f {
            "" => None,
            s => Some(
                s.parse::<f64>()
                    .map_err(|_| format!("--only: {s:?} is not a fraction"))?,
            ),
        };
        let mut any = false;
        for (k, &(a, g)) in configs.iter().enumerate() {
            if adv.is_none_or(|x| x == a) && f.is_none_or(|x| (x - g).abs() < 1e-9) {
                keep[k] = true;
                any = true;
            }
        }
        if !any {
            return Err(format!("--only: {part:?} selects no row"));
        }
    }
    Ok(configs
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect())
}

pub fn run(opts: &Options) -> Result<Table, String> {
    let n = opts.nodes.unwrap_or(if opts.small { 150 } else { 10_000 });
    let (users, days) = if opts.small { (4, 0.25) } else { (10, 30.0) };
    let users = opts.users.unwrap_or(users);
    let days = opts.duration.map_or(days, |s| s as f64 / 86_400.0);
    let fractions: Vec<f64> = if opts.small {
        vec![0.0, 0.2]
    } else {
        vec![0.05, 0.1, 0.2, 0.3]
    };
    let configs: Vec<(Adversary, f64)> = Adversary::ALL
        .iter()
        .flat_map(|&a| fractions.iter().map(move |&f| (a, f)))
        .collect();
    let configs = match &opts.only {
        Some(spec) => select(configs, spec)?,
        None => configs,
    };
    let results: Vec<Row> = super::parallel(&configs, |&(adv, f)| {
        let seed = opts.seed ^ ((adv as u64) << 20) ^ ((f * 1000.0) as u64);
        let row = one(adv, n, f, users, days, seed);
        // A month of many users takes hours: each row is reported as it
        // ends, so an interrupted run keeps what it finished.
        if !opts.small {
            eprintln!("row done: {}", cells(adv, f, &row, days).join(","));
        }
        row
    });
    let mut rows = Vec::new();
    let mut series: Vec<Series> = Adversary::ALL
        .iter()
        .map(|a| Series {
            name: a.name().into(),
            points: Vec::new(),
        })
        .collect();
    for (&(adv, f), r) in configs.iter().zip(&results) {
        let frac = r.compromised as f64 / r.circuits.max(1) as f64;
        rows.push(cells(adv, f, r, days));
        series[adv as usize].points.push((f, frac));
    }
    Ok(Table {
        title: "anonymity: circuits whose first relay and exit both collude".into(),
        params: vec![
            (
                "relays".into(),
                format!("{n}, settled ring, no churn; ring maintenance quiet, the ring settled again after each descriptor refresh (every {} h); onion keys rotate every {} days", crate::node::core::REPUBLISH_EVERY.as_secs() / 3600, crate::crypto::ONION_KEY_LIFETIME / 86_400),
            ),
            (
                "users".into(),
                format!("{users} client-only nodes, each started from an honest relay, sampling relays into its 64-relay sample at the node's own pace by checked walks through its guard (its bootstrap relay before it has one) (one every 200 ms while the sample is small, every 10 s after, every 5 min once full)"),
            ),
            (
                "circuits".into(),
                format!("each user builds a fresh 3-hop circuit through its entry guard, chosen and built by the real client, every circuit lifetime ({} s), for {days} days of virtual time; a circuit is compromised when the first relay and the exit collude (end-to-end timing)", Settings::default().node.circuit_lifetime_secs),
            ),
            (
                "adversaries".into(),
                format!("passive: a random f of the relays; lying-lookups: the same, and each lookup step they answer names a colluder as the successor, each routing table they show has colluders in place of its entries; sybil: f of the relays with ids each chosen as the best of {GRIND} generated keys (the largest arc); selective-dos: a random f that destroys every circuit it is on without both ends under the first request the user sends on it, the user building again (up to {ATTEMPTS} times per lifetime)"),
            ),
            ("seed".into(), opts.seed.to_string()),
        ],
        columns: vec![
            "adversary",
            "f",
            "circuits",
            "first_and_exit_fraction",
            "sample_adversarial_fraction",
            "users_compromised_30d",
            "median_days_to_first_compromise",
            "bound_f2",
            "destroyed",
        ],
        rows,
        reference: vec![
            "Tor without guards (Øverlier and Syverson 2006; Wright et al. 2004): a fresh random path per circuit is compromised with probability about f^2, so every user is compromised within days; Tor's guards bound the first relay to a few long-lived choices".into(),
            "selective DoS (Borisov et al., CCS 2007): destroying every circuit not wholly compromised raises the compromised share of used circuits well above f^2".into(),
        ],
        figure: Some(Figure {
            x: "fraction of relays colluding".into(),
            y: "circuits with first relay and exit colluding".into(),
            log2_x: false,
            series,
        }),
    })
}
