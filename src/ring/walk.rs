//! Checked walks: a lookup whose answer no single node can choose
//! (`docs/protocol.md`, "The ring", checked walk).
//!
//! An iterative lookup asks each node "who follows the target?" and
//! believes the answer; a node that lies names whom it likes. A walk
//! instead asks each node for its whole routing table (predecessor,
//! successor list, fingers), without saying what it looks for, and steps
//! itself to the closest node before the target among every table it has
//! accepted. A table is accepted only if it leaves out no node the walk
//! knows of and its entries sit where a table of the ring's density would
//! have them (NISAN's bounds check, Panchenko et al. 2009): a node that
//! puts its accomplices in place of its true fingers and successors shows
//! gaps as wide as the accomplices are sparse, and is refused. The walk
//! ends when the closest node before the target that it knows is one
//! whose table it accepted; the answer is the first entry of that table's
//! successor list at or after the target. A liar whose table passes can
//! only show real nodes where they really are.

use super::*;
use crate::wire::ShownTable;
use rand::seq::SliceRandom;

/// Tables one walk may ask for before it gives up.
pub const WALK_MAX_STEPS: usize = 32;
/// Nodes named in tables that passed, kept to start later walks from: a
/// client whose own tables came from lying lookups still has places to
/// start that a checked table showed. (A client-only node, which keeps no
/// table of its own, also keeps those its measuring tables named.)
const CHECKED_KEPT: usize = 64;
/// Density estimates kept: from tables asked for to measure the ring
/// (never from the tables a walk follows, whose owners a liar can steer
/// it toward). A client's first come from its bootstrap node's table
/// and the tables of the nodes that table names; later ones from nodes
/// of the relay sample drawn at random, every [`RESEED_EVERY`].
const DENSITIES_KEPT: usize = 64;
/// See [`Ring::density`].
const DENSITY_QUANTILE: f64 = 0.65;
/// Tables asked for in one measuring round.
const SEED_TABLES: usize = 17;
/// How often a client measures the ring again.
const RESEED_EVERY: Duration = Duration::from_secs(3600);

/// What a walk found: the target's successor, the node before it whose
/// table said so, and the ring's density (nodes per whole ring) as
/// measured ([`Ring::density`]).
#[derive(Debug, Clone)]
pub struct Found {
    pub successor: Peer,
    pub predecessor: Peer,
    pub density: f64,
}

#[derive(Debug)]
pub(super) struct Walk {
    target: [u8; 32],
    token: Token,
    known: Vec<Peer>,
    /// Tables asked for (answered or not).
    asked: HashSet<NodeId>,
    /// Nodes whose tables passed the check (and this node), with the
    /// successor lists those tables showed.
    passed: HashMap<NodeId, Vec<Peer>>,
    /// Nodes whose tables failed the check, or that did not answer.
    refused: HashSet<NodeId>,
    steps: usize,
    timeouts: u32,
}

/// An id's position as a fraction of the ring, to 64 bits.
pub fn position(id: &NodeId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b)
}

/// Clockwise gap from `a` to `b` as a fraction of the ring.
pub fn gap(a: u64, b: u64) -> f64 {
    b.wrapping_sub(a) as f64 / 18_446_744_073_709_551_616.0
}

/// Whether `m` exponential gaps of mean 1 summing to `sum` are too wide
/// to be honest: past the sum's 99.9th percentile, approximately (a
/// normal bound with a margin; exact enough for m from 1 to 64).
pub(super) fn too_wide(sum: f64, m: usize) -> bool {
    let m = m as f64;
    sum > m + 3.1 * m.sqrt() + 3.0
}

/// An estimate of the ring's density from a successor list: `k`
/// successors spanning `span` of the ring; (k - 1) / span is unbiased.
pub(super) fn estimate(span: f64, k: usize) -> Option<f64> {
    (k >= 2 && span > 0.0).then(|| (k - 1) as f64 / span)
}

/// The distance from `start` to the nearest of `entries` at or after it
/// (infinite if there are none).
fn nearest_after(start: u64, entries: &[u64]) -> f64 {
    entries
        .iter()
        .map(|&e| gap(start, e))
        .fold(f64::INFINITY, f64::min)
}

/// A table's entries as positions: its successor list, and the rest.
fn positions(table: &[Peer], successors: usize) -> (Vec<u64>, Vec<u64>) {
    let (succ, others) = table.split_at(successors.min(table.len()));
    let pos = |ps: &[Peer]| ps.iter().map(|p| position(&p.id)).collect();
    (pos(succ), pos(others))
}

/// An estimate of the ring's density from a whole table: the successor
/// list's span, and the gap from each finger start beyond it to the
/// nearest entry after the start, are all sums of independent gaps of
/// mean 1 / n in an honest table (a gap is memoryless from any point).
/// Twice the terms of the successor list alone, so half the variance.
fn table_estimate(owner: u64, successors: &[u64], others: &[u64]) -> Option<f64> {
    let span = successors.last().map_or(0.0, |&l| gap(owner, l));
    let mut sum = span;
    let mut count = successors.len();
    let all: Vec<u64> = successors.iter().chain(others).copied().collect();
    for i in 0..64 {
        let start = owner.wrapping_add(1u64 << i);
        if gap(owner, start) <= span {
            continue;
        }
        let nearest = nearest_after(start, &all);
        if nearest.is_finite() && nearest > 0.0 {
            sum += nearest;
            count += 1;
        }
    }
    estimate(sum, count)
}

/// Check the table `owner` showed against the density `n`. The successor
/// list must be in ring order after the owner. Its span, and the distance
/// from each finger start (owner + 2^i, for starts two mean gaps and more
/// away) to the table's nearest entry after it, are each a sum of gaps of
/// mean 1 / n in an honest table; all of them together must not be too
/// wide. One test over every entry: a liar cannot pass by lying in only
/// the part that is checked loosely.
pub(super) fn table_plausible(owner: u64, successors: &[u64], others: &[u64], n: f64) -> bool {
    let mut last = 0.0;
    for &s in successors {
        let g = gap(owner, s);
        if g <= last {
            return false;
        }
        last = g;
    }
    let all: Vec<u64> = successors.iter().chain(others).copied().collect();
    if all.is_empty() {
        return false;
    }
    let mut sum = last * n;
    let mut m = successors.len();
    for i in (0..64).rev() {
        let step = (1u64 << i) as f64 / 18_446_744_073_709_551_616.0;
        if step * n < 2.0 {
            break;
        }
        let start = owner.wrapping_add(1u64 << i);
        let nearest = nearest_after(start, &all);
        sum += nearest * n;
        m += 1;
    }
    m == 0 || !too_wide(sum, m)
}

/// Whether the table `owner` showed leaves out a node the walk knows of
/// (`elsewhere`, real nodes named by other tables or known before): one
/// between the owner and its last successor, or between a finger start
/// and the entry the table has nearest after it. A liar that shows its
/// accomplices in place of its neighbours must leave out the honest nodes
/// between them, and is caught as soon as the walk has seen one.
fn omits(owner: u64, successors: &[u64], others: &[u64], elsewhere: &[u64]) -> bool {
    if let Some(&last) = successors.last() {
        let reach = gap(owner, last);
        if elsewhere.iter().any(|&y| {
            let g = gap(owner, y);
            g > 0.0 && g < reach
        }) {
            return true;
        }
    }
    let all: Vec<u64> = successors.iter().chain(others).copied().collect();
    for i in 0..64 {
        let start = owner.wrapping_add(1u64 << i);
        let nearest = nearest_after(start, &all);
        if elsewhere.iter().any(|&y| gap(start, y) < nearest) {
            return true;
        }
    }
    false
}

impl Ring {
    /// Walk to the successor of `target` checking every table on the way;
    /// the answer comes as [`Event::WalkDone`] with `token`. `extra` are
    /// nodes to start from besides this node's own tables (a client's
    /// relay sample).
    pub fn walk(&mut self, target: [u8; 32], token: Token, extra: Vec<Peer>, now: Instant) {
        let mut known = self.known();
        known.extend(extra);
        known.extend(self.checked.iter().cloned());
        let mut passed = HashMap::new();
        if self.cfg.member && self.joined {
            known.push(self.me.clone());
            passed.insert(self.me.id, self.successors.clone());
        }
        known.sort_unstable_by_key(|p| p.id);
        known.dedup_by_key(|p| p.id);
        let mut walk = Walk {
            target,
            token,
            known,
            asked: HashSet::new(),
            passed,
            refused: HashSet::new(),
            steps: 0,
            timeouts: 0,
        };
        let member = self.cfg.member && self.joined;
        if !member && self.densities.len() < SEED_TABLES {
            // No measure of the ring yet: take one from the bootstrap
            // node's table and the tables of the nodes it names, and walk
            // once that is done.
            if self.seeding == 0 {
                self.seed_from_bootstrap(now);
            }
            if self.seeding > 0 || self.densities.is_empty() {
                walk.steps = 0;
                return self.walk_finished(walk, Err(LookupError::NoRoute));
            }
        }
        if !member
            && self.seeding == 0
            && self
                .seeded_at
                .is_some_and(|t| now.saturating_duration_since(t) >= RESEED_EVERY)
        {
            // Measure again, from nodes drawn at random among those
            // the walk may start from.
            self.seeded_at = Some(now);
            let mut pool: Vec<Peer> = walk.known.clone();
            pool.retain(|p| p.id != self.me.id);
            pool.shuffle(&mut self.rng);
            pool.truncate(SEED_TABLES);
            for p in pool {
                self.seeding += 1;
                let query = self.insert_query(Some(p.id), Pending::Seed { first: false }, now);
                self.send(Dest::Peer(p), PeerMessage::GetTable { query });
            }
        }
        self.walk_next(walk, now);
    }

    /// Measure the ring from the bootstrap node's table and the tables of
    /// the nodes it names ([`Ring::seed_table`]).
    pub(super) fn seed_from_bootstrap(&mut self, now: Instant) {
        if let Some(&(addr, expect)) = self.bootstrap.first() {
            self.seeding = 1;
            self.seeded_at = Some(now);
            let query = self.insert_query(expect, Pending::Seed { first: true }, now);
            self.send(Dest::Addr(addr, expect), PeerMessage::GetTable { query });
        }
    }

    /// Keep `p` to start later walks from.
    fn remember_checked(&mut self, p: &Peer) {
        if p.id == self.me.id || self.checked.iter().any(|c| c.id == p.id) {
            return;
        }
        if self.checked.len() == CHECKED_KEPT {
            self.checked.pop_front();
        }
        self.checked.push_back(p.clone());
    }

    fn note_density(&mut self, e: f64) {
        if self.densities.len() == DENSITIES_KEPT {
            self.densities.pop_front();
        }
        self.densities.push_back(e);
    }

    /// A table asked for to measure the ring came back (`table`: `None`
    /// if it did not). The bootstrap node's (`first`) names the nodes
    /// whose tables are asked for next.
    pub(super) fn seed_table(
        &mut self,
        first: bool,
        from: NodeId,
        table: Option<(Vec<Peer>, usize)>,
        now: Instant,
    ) {
        self.seeding = self.seeding.saturating_sub(1);
        let Some((table, k)) = table else {
            return;
        };
        let owner = position(&from);
        let (succ, others) = positions(&table, k);
        if let Some(e) = table_estimate(owner, &succ, &others) {
            self.note_density(e);
        }
        if self.cfg.client {
            // A client has no table of its own: the nodes measured tables
            // name are where its walks start (each table on a walk is
            // checked all the same).
            if first {
                self.joined = true;
            }
            for p in &table {
                self.remember_checked(p);
            }
        }
        if first {
            // The bootstrap node's fingers (nodes spread over the ring),
            // then its successors, each asked for its table once.
            let me = self.me.id;
            let mut spread: Vec<Peer> = table[k..].to_vec();
            spread.extend_from_slice(&table[..k]);
            spread.retain(|p| p.id != me);
            spread.truncate(SEED_TABLES - 1);
            for p in spread {
                self.seeding += 1;
                let query = self.insert_query(Some(p.id), Pending::Seed { first: false }, now);
                self.send(Dest::Peer(p), PeerMessage::GetTable { query });
            }
        }
    }

    /// The ring's density: the [`DENSITY_QUANTILE`] quantile of the
    /// estimates from measured tables, this node's own among them if a
    /// member. A liar's table makes the ring look sparser (its entries are
    /// its sparse accomplices), never denser, so with a share f of liars
    /// among the measured tables this is the honest estimates' quantile
    /// (0.65 - f) / (1 - f): their median at f = 0.3, a little above it
    /// (a stricter check) with fewer liars.
    pub fn density(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.densities.iter().copied().collect();
        if self.cfg.member && self.joined {
            let me = position(&self.me.id);
            if let Some(last) = self.successors.last() {
                v.extend(estimate(gap(me, position(&last.id)), self.successors.len()));
            }
        }
        v.sort_by(f64::total_cmp);
        let at = ((v.len() as f64 - 1.0) * DENSITY_QUANTILE).round() as usize;
        v.get(at).copied()
    }

    fn walk_next(&mut self, walk: Walk, now: Instant) {
        let usable = |p: &&Peer| !walk.refused.contains(&p.id) && !self.dead.contains_key(&p.id);
        let before = walk
            .known
            .iter()
            .filter(usable)
            .filter(|p| p.id.0 != walk.target)
            .min_by_key(|p| distance(&p.id.0, &walk.target))
            .cloned();
        let Some(b) = before else {
            return self.walk_finished(walk, Err(LookupError::NoRoute));
        };
        if let Some(list) = walk.passed.get(&b.id) {
            // The answer is what b's own checked table says follows the
            // target, not any node the walk happens to know.
            let reach = distance(&b.id.0, &walk.target);
            let after = list
                .iter()
                .find(|p| distance(&b.id.0, &p.id.0) >= reach && usable(p))
                .cloned();
            let Some(s) = after else {
                return self.walk_finished(walk, Err(LookupError::NoRoute));
            };
            let density = self.density().unwrap_or(0.0);
            return self.walk_finished(
                walk,
                Ok(Found {
                    successor: s,
                    predecessor: b,
                    density,
                }),
            );
        }
        if walk.asked.contains(&b.id) {
            // Asked, and neither passed nor refused: cannot happen with
            // one question out at a time, but never loop on it.
            return self.walk_finished(walk, Err(LookupError::NoRoute));
        }
        if walk.steps >= WALK_MAX_STEPS {
            return self.walk_finished(walk, Err(LookupError::TooManySteps));
        }
        let mut walk = walk;
        walk.steps += 1;
        walk.asked.insert(b.id);
        let query = self.insert_query(Some(b.id), Pending::Walk(walk), now);
        self.send(Dest::Peer(b), PeerMessage::GetTable { query });
    }

    /// A TABLE from `from`: to the walk or the measurement that asked.
    pub(super) fn table_arrived(
        &mut self,
        from: NodeId,
        query: u64,
        shown: Box<ShownTable>,
        now: Instant,
    ) {
        let Some(q) = self.take_query(query, from) else {
            return;
        };
        let shown = *shown;
        let k = shown.successors.len();
        let table: Vec<Peer> = shown
            .successors
            .into_iter()
            .chain(shown.fingers)
            .chain(shown.predecessor)
            .map(Peer::new)
            .collect();
        match q.what {
            Pending::Walk(w) => self.walk_table(w, from, table, k, now),
            Pending::Seed { first } => self.seed_table(first, from, Some((table, k)), now),
            _ => {}
        }
    }

    /// `from` showed its table to the walk.
    pub(super) fn walk_table(
        &mut self,
        mut walk: Walk,
        from: NodeId,
        table: Vec<Peer>,
        successors: usize,
        now: Instant,
    ) {
        let owner = position(&from);
        let (succ, others) = positions(&table, successors);
        let n = self.density();
        let shown: HashSet<NodeId> = table.iter().map(|p| p.id).collect();
        let elsewhere: Vec<u64> = walk
            .known
            .iter()
            .filter(|p| p.id != from && !shown.contains(&p.id) && !walk.refused.contains(&p.id))
            .map(|p| position(&p.id))
            .collect();
        let ok = n.is_some_and(|n| table_plausible(owner, &succ, &others, n))
            && !omits(owner, &succ, &others, &elsewhere);
        if ok {
            walk.passed.insert(from, table[..successors].to_vec());
            for p in &table {
                self.remember_checked(p);
            }
            for p in table {
                if p.id != self.me.id && !walk.known.iter().any(|k| k.id == p.id) {
                    walk.known.push(p);
                }
            }
        } else {
            self.tables_refused += 1;
            walk.refused.insert(from);
        }
        self.walk_next(walk, now);
    }

    pub(super) fn walk_timed_out(&mut self, mut walk: Walk, to: Option<NodeId>, now: Instant) {
        walk.timeouts += 1;
        if let Some(id) = to {
            walk.refused.insert(id);
        }
        self.walk_next(walk, now);
    }

    fn walk_finished(&mut self, walk: Walk, result: Result<Found, LookupError>) {
        self.events.push_back(Event::WalkDone {
            token: walk.token,
            steps: u32::try_from(walk.steps).unwrap_or(u32::MAX),
            timeouts: walk.timeouts,
            result: result.map(Box::new),
        });
    }

    /// This node's table as [`PeerMessage::Table`] shows it, unsigned
    /// (the node signs it as it goes out).
    pub fn table(&self, query: u64) -> PeerMessage {
        let mut fingers: Vec<NodeDescriptor> = Vec::new();
        for p in &self.finger_runs {
            if fingers.len() == crate::wire::MAX_FINGERS {
                break;
            }
            if !self.successors.iter().any(|s| s.id == p.id) {
                fingers.push((*p.desc).clone());
            }
        }
        PeerMessage::Table {
            query,
            table: Box::new(ShownTable {
                predecessor: self.predecessor.as_ref().map(|p| (*p.desc).clone()),
                successors: self.successors.iter().map(|p| (*p.desc).clone()).collect(),
                fingers,
                signature: [0; 64],
            }),
        }
    }

    /// Tables walks refused as implausible, since start.
    pub fn tables_refused(&self) -> u64 {
        self.tables_refused
    }

    /// Successor lists stabilization refused as implausible, since start.
    pub fn successor_lists_refused(&self) -> u64 {
        self.successor_lists_refused
    }

    /// Nearer successors [`Ring::recheck`] found, since start.
    pub fn successors_mended(&self) -> u64 {
        self.successors_mended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `n` random positions, sorted.
    fn ring(rng: &mut StdRng, n: usize) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
        v.sort_unstable();
        v
    }

    /// The table the node at index `i` of `all` would show, honest: its
    /// `k` successors and the successor of each finger start.
    fn honest(all: &[u64], i: usize, k: usize) -> (Vec<u64>, Vec<u64>) {
        let n = all.len();
        let succ: Vec<u64> = (1..=k).map(|j| all[(i + j) % n]).collect();
        let mut fingers = Vec::new();
        for b in 0..64 {
            let start = all[i].wrapping_add(1u64 << b);
            let f = *all
                .iter()
                .min_by(|&&a, &&b| gap(start, a).total_cmp(&gap(start, b)))
                .unwrap();
            if !fingers.contains(&f) && !succ.contains(&f) {
                fingers.push(f);
            }
        }
        (succ, fingers)
    }

    /// Each entry replaced by the first of `bad` at or after it.
    fn lie(bad: &[u64], v: &[u64]) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for &e in v {
            let k = bad.partition_point(|&b| b < e) % bad.len();
            if !out.contains(&bad[k]) {
                out.push(bad[k]);
            }
        }
        out
    }

    #[test]
    fn honest_tables_pass_and_accomplice_tables_fail() {
        let mut rng = StdRng::seed_from_u64(7);
        for &f in &[0.05, 0.1, 0.2, 0.3] {
            let all = ring(&mut rng, 4000);
            let n = all.len() as f64;
            let bad: Vec<u64> = all.iter().copied().filter(|_| rng.gen_bool(f)).collect();
            let (mut honest_ok, mut liar_ok) = (0, 0);
            let trials = 400;
            for _ in 0..trials {
                let i = rng.gen_range(0..all.len());
                let (s, fi) = honest(&all, i, 8);
                honest_ok += usize::from(table_plausible(all[i], &s, &fi, n));
                // Its successor list is the accomplices that follow it.
                let k = bad.partition_point(|&b| b <= all[i]);
                let ls: Vec<u64> = (0..8).map(|j| bad[(k + j) % bad.len()]).collect();
                let lf = lie(&bad, &fi);
                liar_ok += usize::from(table_plausible(all[i], &ls, &lf, n));
            }
            assert!(honest_ok >= trials * 99 / 100, "f {f}: honest {honest_ok}");
            assert!(liar_ok <= trials / 20, "f {f}: liars passed {liar_ok}");
        }
    }

    #[test]
    fn a_successor_list_out_of_order_or_empty_fails() {
        assert!(!table_plausible(0, &[20, 10], &[], 1.0));
        assert!(!table_plausible(0, &[], &[], 1.0));
        assert!(
            !table_plausible(5, &[5], &[], 1.0),
            "the owner is not its own successor"
        );
    }

    #[test]
    fn the_density_estimate_is_unbiased() {
        let mut rng = StdRng::seed_from_u64(8);
        let all = ring(&mut rng, 1000);
        let mut sum = 0.0;
        for i in 0..all.len() {
            let span = gap(all[i], all[(i + 8) % all.len()]);
            sum += estimate(span, 8).unwrap();
        }
        let mean = sum / all.len() as f64;
        assert!((mean / 1000.0 - 1.0).abs() < 0.1, "mean estimate {mean}");
    }
}
