//! Iterative lookups (Chord's find_successor, section 4.3, run by the node that
//! wants the answer): each step asks the closest preceding node it has not
//! tried, and a node that does not answer is routed around.

use super::*;

impl Ring {
    /// Chord's `find_successor` as answered to others: done with our
    /// successor if the target falls between us and it; otherwise the
    /// closest node we know that precedes the target, or, knowing none
    /// (they all failed us), our successor as the next step. Never "done"
    /// for a target we do not cover: that would name a wrong successor.
    pub(super) fn answer_find(&self, target: &[u8; 32]) -> (bool, Peer) {
        let succ = self.successor().clone();
        if succ.id == self.me.id || in_half_open(target, &self.me.id.0, &succ.id.0) {
            return (true, succ);
        }
        match self.closest_preceding(target, &HashSet::new()) {
            Some(p) => (false, p),
            None => (false, succ),
        }
    }

    /// The known node closest to `target` without passing it, skipping
    /// `exclude`.
    pub(super) fn closest_preceding(
        &self,
        target: &[u8; 32],
        exclude: &HashSet<NodeId>,
    ) -> Option<Peer> {
        // The first of `preceding(target)` not excluded, in one pass: this
        // runs for every lookup step a node answers or takes, and sorting
        // every known node to keep one was most of a lookup's cost.
        let me = &self.me.id.0;
        self.successors
            .iter()
            .chain(self.predecessor.iter())
            .chain(self.finger_runs.iter())
            .filter(|p| {
                !exclude.contains(&p.id)
                    && !self.dead.contains_key(&p.id)
                    && in_open(&p.id.0, me, target)
            })
            .min_by_key(|p| distance(&p.id.0, target))
            .cloned()
    }

    pub(super) fn start_lookup(&mut self, target: [u8; 32], purpose: Purpose, now: Instant) {
        let lookup = Lookup {
            target,
            purpose,
            steps: 0,
            timeouts: 0,
            tried: HashSet::new(),
        };
        let succ = self.successor().clone();
        if succ.id == self.me.id || in_half_open(&target, &self.me.id.0, &succ.id.0) {
            self.conclude(lookup, succ, None, now);
            return;
        }
        self.lookup_next(lookup, now);
    }

    /// A lookup found `candidate`, named by `answerer` (`None`: by this
    /// node's own successor list). Before it is the answer, it must answer:
    /// a node named by a neighbour that has not noticed its failure is not
    /// a successor. Finger lookups skip the check (a dead finger is routed
    /// around).
    fn conclude(
        &mut self,
        lookup: Lookup,
        candidate: Peer,
        answerer: Option<NodeId>,
        now: Instant,
    ) {
        let fallback = match answerer {
            Some(a) => Fallback::Ask(a),
            None => {
                let after = self
                    .successors
                    .iter()
                    .position(|p| p.id == candidate.id)
                    .map_or(0, |k| k + 1);
                Fallback::List {
                    from: self.me.id,
                    rest: self.successors.get(after..).unwrap_or_default().to_vec(),
                }
            }
        };
        if answerer == Some(candidate.id)
            || candidate.id == self.me.id
            || matches!(lookup.purpose, Purpose::Finger(_))
        {
            self.lookup_finished(lookup, Ok(candidate), now);
            return;
        }
        self.confirm(lookup, candidate, fallback, now);
    }

    fn confirm(&mut self, mut lookup: Lookup, candidate: Peer, fallback: Fallback, now: Instant) {
        lookup.steps += 1;
        let to = candidate.clone();
        let what = Pending::Confirm {
            lookup,
            candidate,
            fallback,
        };
        let query = self.insert_query(Some(to.id), what, now);
        self.send(Dest::Peer(to), PeerMessage::Ping { nonce: query });
    }

    /// Ask `answerer` for its successor list, to try the entries after
    /// `skip` (a candidate that failed, or ourselves).
    pub(super) fn ask_alternatives(
        &mut self,
        lookup: Lookup,
        answerer: NodeId,
        skip: NodeId,
        now: Instant,
    ) {
        let what = Pending::Alternatives {
            lookup,
            answerer,
            skip,
        };
        let query = self.insert_query(Some(answerer), what, now);
        // It answered just now: its link is up.
        self.send(Dest::Link(answerer), PeerMessage::GetPredecessor { query });
    }

    /// The candidate did not answer: the next one of `rest` (the remainder
    /// of `from`'s successor list, nearest first) that follows the target
    /// and was not tried; none left, and the lookup fails.
    pub(super) fn try_alternatives(
        &mut self,
        lookup: Lookup,
        from: NodeId,
        mut rest: Vec<Peer>,
        now: Instant,
    ) {
        // Entries between the list's owner and the target precede the
        // target: none of them is its successor.
        rest.retain(|p| {
            !in_open(&p.id.0, &from.0, &lookup.target)
                && !lookup.tried.contains(&p.id)
                && !self.dead.contains_key(&p.id)
        });
        if rest.is_empty() {
            let pred = self.predecessor.clone().filter(|p| p.id == from);
            let result = match pred {
                // Joining again, and the node that names us has nothing
                // after us in its list but itself: a ring of two.
                Some(p) if matches!(lookup.purpose, Purpose::Join) => Ok(p),
                _ => Err(LookupError::NoRoute),
            };
            self.lookup_finished(lookup, result, now);
            return;
        }
        let next = rest.remove(0);
        if next.id == self.me.id {
            // This node follows the target: it is the answer.
            self.lookup_finished(lookup, Ok(next), now);
            return;
        }
        self.confirm(lookup, next, Fallback::List { from, rest }, now);
    }

    /// Ask the best node not yet tried, or give up.
    pub(super) fn lookup_next(&mut self, lookup: Lookup, now: Instant) {
        match self.closest_preceding(&lookup.target, &lookup.tried) {
            Some(p) => self.send_lookup(Dest::Peer(p.clone()), Some(p.id), lookup, now),
            None => {
                // Nobody closer: our successor is the best answer we have,
                // unless it too has failed.
                let succ = self.successor().clone();
                if !lookup.tried.contains(&succ.id)
                    && in_open(&lookup.target, &self.me.id.0, &succ.id.0)
                {
                    self.conclude(lookup, succ, None, now);
                } else {
                    self.lookup_finished(lookup, Err(LookupError::NoRoute), now);
                }
            }
        }
    }

    pub(super) fn send_lookup(
        &mut self,
        to: Dest,
        id: Option<NodeId>,
        mut lookup: Lookup,
        now: Instant,
    ) {
        if let Some(id) = id {
            lookup.tried.insert(id);
        }
        lookup.steps += 1;
        let target = lookup.target;
        let query = self.insert_query(id, Pending::Lookup(lookup), now);
        self.send(to, PeerMessage::FindSuccessor { query, target });
    }

    pub(super) fn lookup_step(
        &mut self,
        lookup: Lookup,
        done: bool,
        node: Peer,
        answerer: Option<NodeId>,
        now: Instant,
    ) {
        if node.id == self.me.id && matches!(lookup.purpose, Purpose::Join) {
            if let Some(a) = answerer {
                // Our own id, named by a node that still holds us where
                // we were before a restart: what follows us in its
                // successor list is our successor. Waiting for it to
                // forget us would never end, since we answer its pings.
                self.ask_alternatives(lookup, a, node.id, now);
                return;
            }
        }
        if done {
            self.conclude(lookup, node, answerer, now);
        } else if lookup.steps >= self.cfg.lookup_max_steps {
            self.lookup_finished(lookup, Err(LookupError::TooManySteps), now);
        } else if node.id == self.me.id
            || lookup.tried.contains(&node.id)
            || self.dead.contains_key(&node.id)
        {
            // Pointed back at ourselves or at a node that already failed us:
            // continue from our own tables instead.
            self.lookup_next(lookup, now);
        } else {
            self.send_lookup(Dest::Peer(node.clone()), Some(node.id), lookup, now);
        }
    }

    pub(super) fn lookup_finished(
        &mut self,
        lookup: Lookup,
        result: Result<Peer, LookupError>,
        now: Instant,
    ) {
        match lookup.purpose {
            Purpose::User(token) => self.events.push_back(Event::LookupDone {
                token,
                steps: u32::try_from(lookup.steps).unwrap_or(u32::MAX),
                timeouts: lookup.timeouts,
                result: result.map(Box::new),
            }),
            Purpose::Recheck => {
                if let Ok(found) = result {
                    self.rechecked(found, now);
                }
            }
            Purpose::Join => match result {
                Ok(succ) if succ.id != self.me.id => {
                    self.joined = true;
                    self.successors = vec![succ.clone()];
                    self.notify(succ);
                    self.next_stabilize = now;
                    self.unsettle(now);
                    self.events.push_back(Event::Joined);
                    self.events.push_back(Event::NeighboursChanged);
                }
                // Retried at the next stabilize tick.
                _ => {}
            },
            Purpose::Finger(i) => {
                self.next_finger = (i + 1) % 256;
                if let Ok(node) = result {
                    if node.id == self.me.id {
                        return;
                    }
                    // Every finger whose start the node also covers points
                    // to it: skip their lookups.
                    let mut j = i;
                    let mut changed = false;
                    while j < 256
                        && in_half_open(&add_pow2(&self.me.id.0, j), &self.me.id.0, &node.id.0)
                    {
                        // A finger that already names this node with this
                        // descriptor stays as it is.
                        let same = self.fingers[j].as_ref().is_some_and(|p| {
                            p.id == node.id
                                && (std::sync::Arc::ptr_eq(&p.desc, &node.desc)
                                    || p.desc == node.desc)
                        });
                        if !same {
                            self.fingers[j] = Some(node.clone());
                            changed = true;
                        }
                        j += 1;
                    }
                    if changed {
                        self.reindex_fingers();
                        // The ring around the finger moved: the next finger
                        // soon, without hurrying stabilization.
                        self.next_fix = self.next_fix.min(now + self.cfg.fix_fingers_every);
                    }
                    self.next_finger = j % 256;
                }
            }
        }
    }
}
