//! Stabilization (Chord, section 4.4, with the successor lists of section
//! 5.2): ask the successor for its predecessor and successors, notify it, and
//! mend around neighbours that leave or fail.

use super::*;

impl Ring {
    pub(super) fn stabilize(&mut self, now: Instant) {
        if !self.joined {
            self.try_join(now);
            return;
        }
        match self.successors.first().cloned() {
            Some(succ) => {
                let in_flight = self
                    .queries
                    .values()
                    .any(|q| matches!(q.what, Pending::Stabilize));
                if !in_flight {
                    let query = self.insert_query(Some(succ.id), Pending::Stabilize, now);
                    self.send(Dest::Peer(succ), PeerMessage::GetPredecessor { query });
                }
            }
            None => {
                // Alone so far: whoever notified us is the other half of a
                // two-node ring.
                if let Some(p) = self.predecessor.clone() {
                    self.successors = vec![p.clone()];
                    self.notify(p);
                    self.unsettle(now);
                    self.events.push_back(Event::NeighboursChanged);
                }
            }
        }
    }

    pub(super) fn stabilize_reply(
        &mut self,
        from: NodeId,
        their_pred: Option<Peer>,
        their_succs: Vec<NodeDescriptor>,
        now: Instant,
    ) {
        let Some(succ) = self.successors.first().cloned() else {
            return;
        };
        if succ.id != from {
            return;
        }
        let mut list = Vec::with_capacity(self.cfg.successors + 1);
        // It has us, as we are now, for its predecessor: nothing to tell it.
        let knows_us = their_pred
            .as_ref()
            .is_some_and(|x| x.id == self.me.id && *x.desc == *self.me.desc);
        if let Some(x) = their_pred {
            if x.id != self.me.id
                && !self.dead.contains_key(&x.id)
                && in_open(&x.id.0, &self.me.id.0, &succ.id.0)
            {
                // Someone joined between us and our successor.
                list.push(x);
            }
        }
        list.push(succ.clone());
        let at = list.len();
        let mut wraps = false;
        for d in their_succs {
            let p = Peer::new(d);
            if p.id == self.me.id {
                // The list wraps around to us: the ring is smaller than
                // the list.
                wraps = true;
                break;
            }
            if !self.dead.contains_key(&p.id) && !list.contains(&p) {
                list.push(p);
            }
        }
        if !self.list_plausible(&succ, &list[at..], wraps) {
            // Our own list after the successor stands.
            self.successor_lists_refused += 1;
            list.truncate(at);
            for p in self.successors.iter().skip(1) {
                if !list.contains(p) && in_open(&p.id.0, &succ.id.0, &self.me.id.0) {
                    list.push(p.clone());
                }
            }
        }
        list.truncate(self.cfg.successors);
        let changed = list
            .iter()
            .map(|p| p.id)
            .ne(self.successors.iter().map(|p| p.id));
        self.successors = list;
        let first = self.successors[0].clone();
        if first.id != succ.id {
            // Stabilize again at once with the new successor.
            self.next_stabilize = now;
        }
        if changed || first.id != succ.id {
            self.unsettle(now);
            self.events.push_back(Event::NeighboursChanged);
            // Our predecessor's list is ours shifted by one: tell it to
            // ask again now, so a change runs back along the ring at the
            // speed of messages, not one quiet period per node.
            if let Some(p) = self.predecessor.clone() {
                if p.id != first.id {
                    self.notify(p);
                }
            }
        } else {
            // A quiet round: the next one comes later.
            self.quiet = self.quiet.saturating_add(1);
        }
        if !(knows_us && first.id == succ.id) {
            self.notify(first);
        }
    }

    /// Whether `shown`, the successor list `succ` gave, is one to adopt:
    /// in ring order after `succ`, and no sparser than the ring as this
    /// node's own list measures it (the walks' bounds check, on the
    /// successor list alone). A successor that lies names its accomplices,
    /// whose gaps are 1 / f as wide; Chord's stabilization would take them
    /// on its word and make them this node's replicas and fallbacks.
    ///
    /// A list that `wraps` around to this node claims to be the whole
    /// ring, however unevenly its ids fall (a small ring crowded into one
    /// arc looks far sparser across the empty rest than a node's crowded
    /// neighbourhood predicts). It is taken if it leaves out no live node
    /// this node knows of: a liar can then hide only nodes this node has
    /// never heard of.
    fn list_plausible(&self, succ: &Peer, shown: &[Peer], wraps: bool) -> bool {
        let from = walk::position(&succ.id);
        let mut last = 0.0;
        for p in shown {
            let g = walk::gap(from, walk::position(&p.id));
            if g <= last {
                return false;
            }
            last = g;
        }
        if wraps
            && self.known().iter().all(|p| {
                p.id == self.me.id
                    || p.id == succ.id
                    || self.dead.contains_key(&p.id)
                    || shown.contains(p)
            })
        {
            return true;
        }
        let me = walk::position(&self.me.id);
        let own = self
            .successors
            .last()
            .map(|l| walk::gap(me, walk::position(&l.id)));
        // Too short a list of our own to measure by: take it.
        match own.and_then(|span| walk::estimate(span, self.successors.len())) {
            Some(n) if self.successors.len() >= 4 && shown.len() >= 2 => {
                !walk::too_wide(last * n, shown.len())
            }
            _ => true,
        }
    }

    /// `base` backed off by the quiet rounds so far, up to `cap` times
    /// [`Config::quiet_max`] (never below `base`).
    pub(super) fn period(&self, base: Duration, cap: u32) -> Duration {
        let max = (self.cfg.quiet_max * cap).max(base);
        base.saturating_mul(1u32 << self.quiet.min(16)).min(max)
    }

    /// Something changed around this node, or a neighbour stopped
    /// answering: maintenance at full pace again, from now.
    pub(super) fn unsettle(&mut self, now: Instant) {
        self.quiet = 0;
        self.next_stabilize = self.next_stabilize.min(now + self.cfg.stabilize_every);
        self.next_fix = self.next_fix.min(now + self.cfg.fix_fingers_every);
        self.next_check = self.next_check.min(now + self.cfg.check_predecessor_every);
        self.next_recheck = self
            .next_recheck
            .min(now + self.cfg.stabilize_every * RECHECK_EVERY);
    }

    /// Look up this node's own successor starting from a node outside its
    /// neighbourhood (a finger, or a bootstrap node), and take the answer
    /// if it lies closer than the successor this node has.
    ///
    /// Stabilization only ever looks at the successor's neighbours, so a
    /// ring that split into two cycles (two neighbours restarted at once,
    /// each joining through the other, while the rest took them for dead)
    /// stays split: each cycle is consistent in itself. A lookup through
    /// the other cycle names a node between this one and its successor,
    /// and once one node of the small cycle points into the large one,
    /// stabilization merges the rest. Only a nearer successor is taken,
    /// and only after it answered: a liar can name no node that is not
    /// alive and nearer, which this node then should have as its
    /// successor anyway.
    pub(super) fn recheck(&mut self, now: Instant) {
        if !self.joined || !self.cfg.member || self.successors.is_empty() {
            return;
        }
        let near: HashSet<NodeId> = self
            .successors
            .iter()
            .chain(self.predecessor.iter())
            .map(|p| p.id)
            .collect();
        let mut from: Vec<(Dest, Option<NodeId>)> = self
            .finger_runs
            .iter()
            .filter(|p| !near.contains(&p.id) && !self.dead.contains_key(&p.id))
            .map(|p| (Dest::Peer(p.clone()), Some(p.id)))
            .collect();
        from.extend(
            self.bootstrap
                .iter()
                .map(|&(addr, expect)| (Dest::Addr(addr, expect), expect))
                .filter(|(_, id)| id.is_none_or(|id| !near.contains(&id))),
        );
        if from.is_empty() {
            return;
        }
        let pick = usize::try_from(self.rng.next_u32()).unwrap_or(0) % from.len();
        let (to, id) = from.swap_remove(pick);
        let lookup = Lookup {
            target: add_pow2(&self.me.id.0, 0),
            purpose: Purpose::Recheck,
            steps: 0,
            timeouts: 0,
            tried: HashSet::new(),
        };
        self.send_lookup(to, id, lookup, now);
    }

    /// The answer to [`Ring::recheck`]: `found`, if it is alive and nearer
    /// than the successor, becomes the successor.
    pub(super) fn rechecked(&mut self, found: Peer, now: Instant) {
        let Some(succ) = self.successors.first() else {
            return;
        };
        if found.id == self.me.id
            || self.dead.contains_key(&found.id)
            || !in_open(&found.id.0, &self.me.id.0, &succ.id.0)
        {
            return;
        }
        self.successors_mended += 1;
        self.successors.insert(0, found.clone());
        self.successors.truncate(self.cfg.successors);
        self.next_stabilize = now;
        self.unsettle(now);
        self.events.push_back(Event::NeighboursChanged);
        self.notify(found);
    }

    /// Tell `p` we may be its predecessor, or, told to our predecessor,
    /// that our successor list changed; members only.
    pub(super) fn notify(&mut self, p: Peer) {
        if self.cfg.member {
            let node = (*self.me.desc).clone();
            self.send(Dest::Peer(p), PeerMessage::Notify { node });
        }
    }

    pub(super) fn notified(&mut self, p: Peer, now: Instant) {
        if !self.cfg.member {
            return;
        }
        if p.id == self.me.id || self.dead.contains_key(&p.id) {
            return;
        }
        if self.successors.first().is_some_and(|s| s.id == p.id) {
            // Our successor says its list changed: ask it soon (at most
            // once per configured period, however often it says so).
            self.unsettle(now);
        }
        let better = match &self.predecessor {
            None => true,
            Some(cur) => cur.id == p.id || in_open(&p.id.0, &cur.id.0, &self.me.id.0),
        };
        if better {
            let changed = self.predecessor.as_ref().is_none_or(|cur| cur.id != p.id);
            self.predecessor = Some(p);
            if changed {
                self.unsettle(now);
                self.events.push_back(Event::NeighboursChanged);
            }
        }
    }

    pub(super) fn neighbour_left(
        &mut self,
        from: NodeId,
        their_pred: Option<Peer>,
        their_succs: Vec<NodeDescriptor>,
        now: Instant,
    ) {
        let was_succ = self.successors.first().is_some_and(|p| p.id == from);
        let was_pred = self.predecessor.as_ref().is_some_and(|p| p.id == from);
        self.handle_failure(from, now);
        if was_succ {
            let mut list: Vec<Peer> = their_succs
                .into_iter()
                .map(Peer::new)
                .filter(|p| p.id != from && p.id != self.me.id)
                .collect();
            for p in std::mem::take(&mut self.successors) {
                if !list.contains(&p) {
                    list.push(p);
                }
            }
            list.truncate(self.cfg.successors);
            self.successors = list;
        }
        if was_pred {
            self.predecessor = their_pred.filter(|p| p.id != self.me.id && p.id != from);
        }
        if was_succ || was_pred {
            self.unsettle(now);
            self.next_stabilize = now;
            self.events.push_back(Event::NeighboursChanged);
        }
    }
}
