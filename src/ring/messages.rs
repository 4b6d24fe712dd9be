//! What arrives for the ring from other nodes, and the plumbing of the
//! queries it sends: each answer is matched to the query it answers, and
//! one left unanswered counts against the node it went to.

use super::*;

impl Ring {
    /// A message from the node `from` (authenticated by the link).
    pub fn handle_message(&mut self, from: NodeId, msg: PeerMessage, now: Instant) {
        // It speaks, so it is alive: a node that restarted is welcome back
        // at once rather than when its dead mark expires.
        self.dead.remove(&from);
        self.strikes.remove(&from);
        match msg {
            PeerMessage::Ping { nonce } => self.send(Dest::Link(from), PeerMessage::Pong { nonce }),
            PeerMessage::Pong { nonce } => {
                if let Some(Query {
                    what:
                        Pending::Confirm {
                            lookup, candidate, ..
                        },
                    ..
                }) = self.take_query(nonce, from)
                {
                    self.lookup_finished(lookup, Ok(candidate), now);
                }
            }
            PeerMessage::FindSuccessor { query, target } => {
                let (done, node) = self.answer_find(&target);
                self.send(
                    Dest::Link(from),
                    PeerMessage::FindSuccessorReply {
                        query,
                        done,
                        node: (*node.desc).clone(),
                    },
                );
            }
            PeerMessage::FindSuccessorReply { query, done, node } => {
                if let Some(q) = self.take_query(query, from) {
                    if let Pending::Lookup(l) = q.what {
                        self.lookup_step(l, done, Peer::new(node), Some(from), now);
                    }
                }
            }
            PeerMessage::GetPredecessor { query } => {
                let reply = PeerMessage::PredecessorReply {
                    query,
                    predecessor: self.predecessor.as_ref().map(|p| (*p.desc).clone()),
                    successors: self.successors.iter().map(|p| (*p.desc).clone()).collect(),
                };
                self.send(Dest::Link(from), reply);
            }
            PeerMessage::PredecessorReply {
                query,
                predecessor,
                successors,
            } => {
                if let Some(q) = self.take_query(query, from) {
                    match q.what {
                        Pending::Stabilize => {
                            self.stabilize_reply(from, predecessor.map(Peer::new), successors, now)
                        }
                        Pending::Alternatives {
                            lookup,
                            answerer,
                            skip,
                        } => {
                            let list: Vec<Peer> = successors.into_iter().map(Peer::new).collect();
                            // The candidates after the one that failed.
                            let after = list.iter().position(|p| p.id == skip).map_or(0, |k| k + 1);
                            let rest = list.get(after..).unwrap_or_default().to_vec();
                            self.try_alternatives(lookup, answerer, rest, now);
                        }
                        _ => {}
                    }
                }
            }
            PeerMessage::GetTable { query } => {
                let reply = self.table(query);
                self.send(Dest::Link(from), reply);
            }
            PeerMessage::Table { query, table } => self.table_arrived(from, query, table, now),
            PeerMessage::Notify { node } => {
                let p = Peer::new(node);
                if p.id == from {
                    self.notified(p, now);
                }
            }
            PeerMessage::Leaving {
                predecessor,
                successors,
            } => self.neighbour_left(from, predecessor.map(Peer::new), successors, now),
            // Not ring messages: the node routes them elsewhere.
            _ => {}
        }
    }

    // ---- plumbing ----

    pub(super) fn query_failed(&mut self, q: Query, now: Instant) {
        if matches!(q.what, Pending::Stabilize | Pending::PingPredecessor) {
            // A neighbour that does not answer may be gone: check again
            // soon rather than after a quiet period.
            self.unsettle(now);
        }
        if let Some(id) = q.to {
            let count = self.strikes.get(&id).map_or(0, |(n, _)| *n) + 1;
            if count >= self.cfg.strikes.max(1) {
                self.handle_failure(id, now);
            } else {
                self.strikes.insert(id, (count, now));
            }
        }
        match q.what {
            Pending::Lookup(mut l) => {
                if matches!(l.purpose, Purpose::Join) {
                    // Retried at the next stabilize tick.
                    return;
                }
                l.timeouts += 1;
                self.lookup_next(l, now);
            }
            Pending::Confirm {
                mut lookup,
                candidate,
                fallback,
            } => {
                lookup.timeouts += 1;
                lookup.tried.insert(candidate.id);
                match fallback {
                    Fallback::Ask(a) => {
                        lookup.steps += 1;
                        self.ask_alternatives(lookup, a, candidate.id, now);
                    }
                    Fallback::List { from, rest } => self.try_alternatives(lookup, from, rest, now),
                }
            }
            Pending::Alternatives { mut lookup, .. } => {
                lookup.timeouts += 1;
                self.lookup_next(lookup, now);
            }
            Pending::Walk(w) => self.walk_timed_out(w, q.to, now),
            Pending::Seed { first } => {
                self.seed_table(first, q.to.unwrap_or(self.me.id), None, now)
            }
            Pending::Stabilize | Pending::PingPredecessor => {}
        }
    }

    pub(super) fn insert_query(&mut self, to: Option<NodeId>, what: Pending, now: Instant) -> u64 {
        let mut id = self.rng.next_u64();
        while self.queries.contains_key(&id) {
            id = self.rng.next_u64();
        }
        self.queries.insert(
            id,
            Query {
                to,
                deadline: now + self.cfg.query_timeout,
                what,
            },
        );
        id
    }

    /// The pending query `id`, if `from` is the node it was sent to.
    pub(super) fn take_query(&mut self, id: u64, from: NodeId) -> Option<Query> {
        let q = self.queries.get(&id)?;
        if q.to.is_some_and(|to| to != from) {
            return None;
        }
        self.queries.remove(&id)
    }

    pub(super) fn send(&mut self, to: Dest, msg: PeerMessage) {
        self.outbox.push_back(Transmit { to, msg });
    }
}
