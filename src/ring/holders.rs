//! Which nodes hold a key, and which lead toward it: this node's claim
//! on a key (as its successor or one of its replicas), the bound past
//! which a replica pushed here is refused, and the next hops a request
//! for a key tries.

use super::*;

/// How far behind a node a key lies (see [`Ring::may_hold`]).
#[derive(Clone, Copy, Debug)]
enum Behind {
    /// Known nodes from the key up to this one.
    Counted(usize),
    /// Mean gaps of the ring.
    Gaps(f64),
}

impl Ring {
    /// Whether this node is the successor of `key`: `key` in
    /// (predecessor, me]. Alone, it is everyone's successor; a client is
    /// no one's. A node with
    /// neighbours but no predecessor (it just died, or none has notified
    /// yet) cannot tell, and says no rather than claim keys it may not own.
    pub fn owns(&self, key: &[u8; 32]) -> bool {
        if self.cfg.client {
            // No place on the ring: not even alone.
            return false;
        }
        match &self.predecessor {
            Some(p) => in_half_open(key, &p.id.0, &self.me.id.0),
            None => self.successors.is_empty(),
        }
    }

    /// Whether this node may be asked to hold `key`: it is the key's
    /// successor, or close enough after it to be one of the `copies`
    /// nodes that follow it. When the successor list is not full, it
    /// names every node this one knows after itself, up to itself again
    /// (a ring smaller than the list): the nodes between the key and this
    /// one are counted, and one more than `copies` allows for a node that
    /// joined unseen. Otherwise the distance from the key, in mean gaps of
    /// the ring at the measured density (`density`), must be one that
    /// `2 × (copies + 1)` gaps cover at their 99.9th percentile, so an
    /// honest node's view, however rough, is never refused, while a block
    /// for a key across the ring is. A client holds nothing.
    pub fn may_hold(&self, key: &[u8; 32], copies: usize) -> bool {
        match self.behind(key) {
            None => false,
            Some(Behind::Counted(c)) => c <= copies,
            Some(Behind::Gaps(g)) => !walk::too_wide(g, 2 * (copies + 1)),
        }
    }

    /// How far behind `key` this node sits, if it is surely not one of
    /// the key's `copies` holders: farther than `2 × copies` gaps reach at
    /// their 99.9th percentile (twice the holders' gaps, for the error of
    /// the measured density), or, on a ring
    /// smaller than the successor list, behind `copies` nodes. A full
    /// store gives up such blocks, the farthest first: one given up
    /// wrongly is pushed to it again by the key's successor, one kept
    /// wrongly keeps out a block this node should hold. A client holds
    /// nothing to give up.
    pub fn past_holders(&self, key: &[u8; 32], copies: usize) -> Option<f64> {
        match self.behind(key)? {
            Behind::Counted(c) => (c >= copies).then_some(c as f64),
            Behind::Gaps(g) => walk::too_wide(g, 2 * copies).then_some(g),
        }
    }

    /// How far behind this node `key` lies: the known nodes from the key
    /// to this one when the successor list is short enough to name them
    /// all, else the distance in mean gaps. `None` for a client.
    fn behind(&self, key: &[u8; 32]) -> Option<Behind> {
        if self.cfg.client {
            return None;
        }
        if self.owns(key) {
            return Some(Behind::Counted(0));
        }
        let me = &self.me.id;
        if self.successors.len() < self.cfg.successors {
            // The nodes that hold the key before this one: those at or
            // after it, up to this node.
            let count = self
                .successors
                .iter()
                .filter(|p| p.id != *me && (p.id.0 == *key || in_open(&p.id.0, key, &me.0)))
                .count();
            return Some(Behind::Counted(count));
        }
        let here = walk::position(me);
        // The measured tables' estimate where there are any: one list of
        // eight successors is rough enough to put an honest holder twenty
        // gaps behind now and then.
        let Some(n) = self.density() else {
            return Some(Behind::Counted(0));
        };
        Some(Behind::Gaps(
            walk::gap(walk::position(&NodeId(*key)), here) * n,
        ))
    }

    /// Known nodes ranked as next hops for a request toward `key`: the
    /// key's successor and the replicas after it, when the successor list
    /// reaches that far; then the nodes that precede the key, closest
    /// first; then the rest, nearest after the key first.
    pub fn next_hops(&self, key: &[u8; 32], replicas: usize) -> Vec<Peer> {
        let me = &self.me.id.0;
        let mut out: Vec<Peer> = Vec::new();
        if let Some(i) = self.successors.iter().enumerate().position(|(i, s)| {
            let prev = if i == 0 {
                me
            } else {
                &self.successors[i - 1].id.0
            };
            in_half_open(key, prev, &s.id.0)
        }) {
            out.extend(self.successors[i..].iter().take(replicas).cloned());
        }
        let before: Vec<Peer> = self.preceding(key).filter(|p| !out.contains(p)).collect();
        let mut after: Vec<Peer> = self
            .known()
            .into_iter()
            .filter(|p| {
                !out.contains(p) && !self.dead.contains_key(&p.id) && !in_open(&p.id.0, me, key)
            })
            .collect();
        after.sort_by_key(|p| distance(key, &p.id.0));
        out.extend(before);
        out.extend(after);
        out
    }

    /// The known nodes between this node and `target`, closest to the
    /// target first: Chord's closest preceding node, then the next best.
    /// Both searches walk it: a lookup asks the first it has not tried, and
    /// a routed request ([`Ring::next_hops`]) tries them in turn.
    pub fn preceding(&self, target: &[u8; 32]) -> std::vec::IntoIter<Peer> {
        let me = &self.me.id.0;
        let mut out: Vec<Peer> = self
            .known()
            .into_iter()
            .filter(|p| !self.dead.contains_key(&p.id) && in_open(&p.id.0, me, target))
            .collect();
        out.sort_by_key(|p| distance(&p.id.0, target));
        out.into_iter()
    }
}
