//! Checked walks: a lookup whose answer no single node can choose
//! (`docs/protocol.md`, "Relay discovery").
//!
//! An iterative lookup asks each node "who follows the target?" and
//! believes the answer; a node that lies names whom it likes. A walk
//! instead asks each node for its whole routing table (predecessor,
//! successor list, fingers), without saying what it looks for, and steps
//! itself to the closest node before the target among every table it has
//! accepted. A table is accepted only if its entries sit where a table of
//! the ring's density would have them (NISAN's bounds check, Panchenko et
//! al. 2009): a node that puts its accomplices in place of its true
//! fingers and successors shows gaps as wide as the accomplices are
//! sparse, and is refused. The walk ends when the closest node before the
//! target whose table it accepted is the closest it knows; the answer is
//! the nearest node after the target in the accepted tables. A liar whose
//! table passes can only show real nodes where they really are; it can
//! hide honest ones, which an honest table near the target shows again.

use super::*;

/// Tables one walk may ask for before it gives up.
pub const WALK_MAX_STEPS: usize = 32;
/// Nodes named in tables that passed, kept to start later walks from: a
/// client whose own tables came from lying lookups still has places to
/// start that a checked table showed.
const CHECKED_KEPT: usize = 64;
/// Density estimates kept from the tables walks accepted. The first of a
/// client's comes from its bootstrap node's table, which it trusts for
/// this as it trusts it to join; after that only tables that passed the
/// check add theirs, so a liar's sparse table cannot loosen the check.
const DENSITIES_KEPT: usize = 64;

/// What a walk found: the nearest node after the target, the node before
/// it whose table said so, and the ring's density (nodes per whole ring)
/// as the walk's tables showed it.
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
    /// Nodes whose tables passed the check (and this node).
    passed: HashSet<NodeId>,
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
fn too_wide(sum: f64, m: usize) -> bool {
    let m = m as f64;
    sum > m + 3.1 * m.sqrt() + 3.0
}

/// An estimate of the ring's density from a successor list: `k`
/// successors spanning `span` of the ring; (k - 1) / span is unbiased.
fn estimate(span: f64, k: usize) -> Option<f64> {
    (k >= 2 && span > 0.0).then(|| (k - 1) as f64 / span)
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
        let nearest = all
            .iter()
            .map(|&e| gap(start, e))
            .fold(f64::INFINITY, f64::min);
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
        let nearest = all
            .iter()
            .map(|&e| gap(start, e))
            .fold(f64::INFINITY, f64::min);
        sum += nearest * n;
        m += 1;
    }
    m == 0 || !too_wide(sum, m)
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
        let mut passed = HashSet::new();
        if self.cfg.member && self.joined {
            known.push(self.me.clone());
            passed.insert(self.me.id);
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
        if self.density().is_none() {
            // No measure of the ring yet: the first table comes from the
            // bootstrap node.
            if let Some(&(addr, expect)) = self.bootstrap.first() {
                walk.steps += 1;
                walk.asked.extend(expect);
                let query = self.insert_query(expect, Pending::Walk(walk), now);
                self.send(Dest::Addr(addr, expect), PeerMessage::GetTable { query });
                return;
            }
        }
        self.walk_next(walk, now);
    }

    /// The ring's density as accepted tables showed it: the median of the
    /// last estimates, this node's own successor list among them if a
    /// member.
    pub fn density(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.densities.iter().copied().collect();
        if self.cfg.member && self.joined {
            let me = position(&self.me.id);
            if let Some(last) = self.successors.last() {
                v.extend(estimate(gap(me, position(&last.id)), self.successors.len()));
            }
        }
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
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
        if walk.passed.contains(&b.id) {
            let after = walk
                .known
                .iter()
                .filter(usable)
                .filter(|p| p.id != b.id)
                .min_by_key(|p| distance(&walk.target, &p.id.0))
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
        let succ: Vec<u64> = table[..successors]
            .iter()
            .map(|p| position(&p.id))
            .collect();
        let others: Vec<u64> = table[successors..]
            .iter()
            .map(|p| position(&p.id))
            .collect();
        let own = table_estimate(owner, &succ, &others);
        // The first table of all (the bootstrap node's) is its own measure.
        let n = self.density().or(own);
        let ok = n.is_some_and(|n| table_plausible(owner, &succ, &others, n));
        if ok {
            walk.passed.insert(from);
            for p in &table {
                if p.id == self.me.id || self.checked.iter().any(|c| c.id == p.id) {
                    continue;
                }
                if self.checked.len() == CHECKED_KEPT {
                    self.checked.pop_front();
                }
                self.checked.push_back(p.clone());
            }
            if let Some(e) = own {
                if self.densities.len() == DENSITIES_KEPT {
                    self.densities.pop_front();
                }
                self.densities.push_back(e);
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

    /// This node's table as [`PeerMessage::Table`] shows it.
    pub(super) fn table(&self, query: u64) -> PeerMessage {
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
            predecessor: self.predecessor.as_ref().map(|p| (*p.desc).clone()),
            successors: self.successors.iter().map(|p| (*p.desc).clone()).collect(),
            fingers,
        }
    }

    /// Tables walks refused as implausible, since start.
    pub fn tables_refused(&self) -> u64 {
        self.tables_refused
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
