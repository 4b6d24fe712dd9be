//! Placement and replication: every block a node holds reaches the nodes
//! that should hold it, its key's successor and the next `replicas - 1`
//! nodes (Chord's successor-list replication, Stoica et al. 2001, section
//! 6), as membership changes; a block a local user stores goes to its
//! key's successor; a leaving node hands its blocks to its successor.
//!
//! A sans-IO state machine with a narrow interface. The node tells it what
//! changed (membership, a block stored here, a link down, an
//! acknowledgement, a lookup's answer, a block read) and gives it a
//! [`View`] of the ring and of the keys the node holds; it answers with
//! [`Action`]s: lookups to run, blocks to read, replicas to send, local
//! writes, and outcomes for the user. It never touches the store: a push
//! first asks for the block ([`Action::Read`]) and sends it when
//! [`Placement::handle_read`] brings it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::ring::{Peer, Ring};
use crate::token::Token;
use crate::wire::{KeyKind, NodeId, PeerMessage, RequestId, RoutingKey};

/// How long a replica push may wait for its acknowledgement.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Replication waits this long after a membership change, so that a burst
/// of changes causes one pass.
pub const REPLICATE_DELAY: Duration = Duration::from_millis(300);
/// A lookup for a block's owner that failed, or named this node while its
/// own view says otherwise (the ring still settling), is tried again
/// after this long, whether or not the membership changes meanwhile.
pub const PLACE_RETRY: Duration = Duration::from_secs(3);
/// Pushes (reading or awaiting acknowledgement) at once; the rest wait
/// their turn, so replication after a change is a stream, not a flood.
pub const PUSHES_IN_FLIGHT: usize = 16;
/// Lookups for blocks held here but owned elsewhere, at once.
pub const PLACE_LOOKUPS: usize = 32;
/// A node that refused a replica is not offered that block again for this
/// long. Its view of the ring differs from ours (one of the two is out of
/// date) or it is full; asking again at every replication pass would only
/// hammer it, and it counts every refusal against the link.
pub const REFUSED_WAIT: Duration = Duration::from_secs(60);

/// What the node sees of the world, at the moment of a call.
pub struct View<'a> {
    pub ring: &'a Ring,
    /// The keys of the node's primary store.
    pub held: &'a BTreeSet<(KeyKind, RoutingKey)>,
}

/// Why a local store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the block does not match its key")]
    BadBlock,
    #[error("no route to the key's successor")]
    NoRoute,
    #[error("the key's successor refused the block")]
    Rejected,
    #[error("timed out")]
    Timeout,
    #[error("the node has stopped")]
    Stopped,
}

/// Names a lookup this machine asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LookupId(pub u64);

#[derive(Debug)]
pub enum Action {
    /// Find the successor of `key`; answer with
    /// [`Placement::handle_lookup_done`].
    Lookup { id: LookupId, key: RoutingKey },
    /// Read a held block for a push; answer with [`Placement::handle_read`].
    Read {
        push: RequestId,
        kind: KeyKind,
        key: RoutingKey,
    },
    /// Send a replica (STORE_REPLICA) to a node, dialling it if need be.
    Send { to: Box<Peer>, msg: PeerMessage },
    /// This node is the successor of a block a local user stores: write
    /// it, and answer with [`Placement::handle_local_write`].
    Write {
        token: Token,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    },
    /// A local store ended: the id of the node that acknowledged it.
    Stored {
        token: Token,
        result: Result<NodeId, StoreError>,
    },
    /// A leave's hand-over is done (or out of time).
    HandedOver,
}

/// Why a lookup was started.
enum LookupFor {
    /// Move a block we hold to the node that should have it.
    Place(KeyKind, RoutingKey),
    /// A block a local user asked to store.
    Store(Token, KeyKind, RoutingKey, Vec<u8>),
}

struct Push {
    kind: KeyKind,
    key: RoutingKey,
    to: Peer,
    deadline: Instant,
    /// A local store waiting on this push.
    done: Option<Token>,
    /// Whether the block went out; until then it is being read.
    sent: bool,
}

struct Leaving {
    deadline: Instant,
    /// Hand-over pushes not yet acknowledged.
    pushes: HashSet<RequestId>,
}

pub struct Placement {
    replicas: usize,
    replicate_at: Option<Instant>,
    /// Nodes that acknowledged a block over their current link. Forgotten
    /// when the link closes: a node that comes back may have lost its disk.
    confirmed: HashSet<(RoutingKey, NodeId)>,
    /// Blocks held here but owned elsewhere whose owner was found and has
    /// them: no lookup for them until the membership changes.
    placed: HashSet<RoutingKey>,
    lookups: HashMap<LookupId, LookupFor>,
    pushes: BTreeMap<RequestId, Push>,
    queue: VecDeque<(KeyKind, RoutingKey, Peer)>,
    /// What `queue` holds, to tell at once whether a push is queued.
    queued: HashSet<(RoutingKey, NodeId)>,
    /// Blocks nodes refused, and until when they are not offered again.
    refused: HashMap<(RoutingKey, NodeId), Instant>,
    leaving: Option<Leaving>,
    next_id: u64,
    actions: VecDeque<Action>,
}

impl Placement {
    pub fn new(replicas: usize) -> Placement {
        Placement {
            replicas,
            replicate_at: None,
            confirmed: HashSet::new(),
            placed: HashSet::new(),
            lookups: HashMap::new(),
            pushes: BTreeMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            refused: HashMap::new(),
            leaving: None,
            next_id: 0,
            actions: VecDeque::new(),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let pushes = self.pushes.values().map(|p| p.deadline);
        let leave = self.leaving.as_ref().map(|l| l.deadline);
        self.replicate_at
            .into_iter()
            .chain(pushes)
            .chain(leave)
            .min()
    }

    fn fresh(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn replicate_soon(&mut self, now: Instant) {
        self.replicate_after(now + REPLICATE_DELAY);
    }

    fn replicate_after(&mut self, at: Instant) {
        if self.replicate_at.is_none_or(|t| t > at) {
            self.replicate_at = Some(at);
        }
    }

    /// The predecessor or the successors changed: owners may have moved.
    pub fn handle_membership_changed(&mut self, now: Instant) {
        self.placed.clear();
        self.replicate_soon(now);
    }

    /// A new block, or a newer version, is held here: its replicas must get
    /// it.
    pub fn handle_block_stored(&mut self, key: RoutingKey, now: Instant) {
        self.confirmed.retain(|(k, _)| *k != key);
        self.placed.remove(&key);
        self.replicate_soon(now);
    }

    /// The link to `peer` is gone: what it acknowledged may be lost, and
    /// its pushes will not be acknowledged.
    pub fn handle_link_down(&mut self, peer: NodeId, now: Instant) {
        self.confirmed.retain(|(_, n)| *n != peer);
        // Pushes queued for it would each wait on a dial that fails, in
        // front of the pushes to whoever replaces it: the next pass queues
        // again whatever still belongs there.
        let (gone, kept): (VecDeque<_>, VecDeque<_>) =
            self.queue.drain(..).partition(|(_, _, p)| p.id == peer);
        self.queue = kept;
        self.queued.retain(|(_, n)| *n != peer);
        if !gone.is_empty() {
            // Blocks placed elsewhere are looked up again, as a failed
            // push would have them.
            for (_, key, _) in &gone {
                self.placed.remove(key);
            }
            self.replicate_soon(now);
        }
        self.fail_pushes(|p| p.to.id == peer, StoreError::NoRoute, now);
    }

    /// `from` answered a push: STORED (`ok`) or REJECTED.
    pub fn handle_ack(&mut self, from: NodeId, id: RequestId, ok: bool, now: Instant) {
        if self.pushes.get(&id).is_none_or(|p| p.to.id != from) {
            return;
        }
        let Some(p) = self.pushes.remove(&id) else {
            return;
        };
        if let Some(l) = &mut self.leaving {
            l.pushes.remove(&id);
        }
        if ok {
            self.confirmed.insert((p.key, from));
        }
        if let Some(token) = p.done {
            let result = if ok {
                Ok(from)
            } else {
                Err(StoreError::Rejected)
            };
            self.actions.push_back(Action::Stored { token, result });
        } else if !ok {
            // Not again until the wait is over (whatever else starts a
            // pass meanwhile): the pass after it offers the block again,
            // to whichever node should have it then.
            let until = now + REFUSED_WAIT;
            self.refused.insert((p.key, from), until);
            self.placed.insert(p.key);
            self.replicate_after(until);
        }
    }

    /// Whether `id` names a push of ours (its STORED or REJECTED is ours).
    pub fn owns_ack(&self, id: RequestId) -> bool {
        self.pushes.contains_key(&id)
    }

    /// A block read for a push: send it, or, if it left the store
    /// meanwhile, drop the push: there is nothing to place.
    pub fn handle_read(&mut self, push: RequestId, block: Option<Vec<u8>>) {
        let Some(p) = self.pushes.get_mut(&push) else {
            return;
        };
        if p.sent {
            return;
        }
        match block {
            Some(block) => {
                p.sent = true;
                let msg = PeerMessage::StoreReplica {
                    id: push,
                    kind: p.kind,
                    key: p.key,
                    block,
                };
                let to = p.to.clone();
                self.actions.push_back(Action::Send {
                    to: Box::new(to),
                    msg,
                });
            }
            None => {
                if let Some(l) = &mut self.leaving {
                    l.pushes.remove(&push);
                }
                if let Some(Push {
                    done: Some(token), ..
                }) = self.pushes.remove(&push)
                {
                    self.actions.push_back(Action::Stored {
                        token,
                        result: Err(StoreError::Rejected),
                    });
                }
            }
        }
    }

    /// A local user's block, to store on its key's successor.
    pub fn store(&mut self, token: Token, kind: KeyKind, key: RoutingKey, block: Vec<u8>) {
        let id = LookupId(self.fresh());
        self.lookups
            .insert(id, LookupFor::Store(token, kind, key, block));
        self.actions.push_back(Action::Lookup { id, key });
    }

    /// The local write of a user's block ([`Action::Write`]) ended.
    pub fn handle_local_write(&mut self, token: Token, me: NodeId, ok: bool, now: Instant) {
        let result = if ok {
            self.replicate_soon(now);
            Ok(me)
        } else {
            Err(StoreError::Rejected)
        };
        self.actions.push_back(Action::Stored { token, result });
    }

    /// A lookup this machine asked for ended with the key's successor.
    pub fn handle_lookup_done(
        &mut self,
        id: LookupId,
        found: Option<Peer>,
        view: &View<'_>,
        now: Instant,
    ) {
        let Some(why) = self.lookups.remove(&id) else {
            return;
        };
        let me = view.ring.id();
        match why {
            LookupFor::Place(kind, key) => {
                if let Some(peer) = found.filter(|p| p.id != me) {
                    // If the push fails, the next pass looks again.
                    self.placed.insert(key);
                    self.push(kind, key, peer, now);
                } else {
                    self.replicate_after(now + PLACE_RETRY);
                }
            }
            LookupFor::Store(token, kind, key, block) => match found {
                None => self.actions.push_back(Action::Stored {
                    token,
                    result: Err(StoreError::NoRoute),
                }),
                Some(p) if p.id == me => self.actions.push_back(Action::Write {
                    token,
                    kind,
                    key,
                    block,
                }),
                Some(p) => {
                    // The block is in hand: send it at once.
                    let id = RequestId(self.fresh());
                    self.pushes.insert(
                        id,
                        Push {
                            kind,
                            key,
                            to: p.clone(),
                            deadline: now + PUSH_TIMEOUT,
                            done: Some(token),
                            sent: true,
                        },
                    );
                    let msg = PeerMessage::StoreReplica {
                        id,
                        kind,
                        key,
                        block,
                    };
                    self.actions.push_back(Action::Send {
                        to: Box::new(p),
                        msg,
                    });
                }
            },
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, view: &View<'_>) {
        self.fail_pushes(|p| p.deadline <= now, StoreError::Timeout, now);
        if self.replicate_at.is_some_and(|t| t <= now) && self.leaving.is_none() {
            self.replicate_at = None;
            self.replicate(view, now);
        }
        self.pump(now);
        self.check_leave(now);
    }

    /// Start queued pushes while there is room in flight. Call after every
    /// batch of inputs.
    pub fn pump(&mut self, now: Instant) {
        while self.pushes.len() < PUSHES_IN_FLIGHT {
            let Some((kind, key, to)) = self.queue.pop_front() else {
                return;
            };
            self.queued.remove(&(key, to.id));
            self.start_push(kind, key, to, now);
        }
    }

    fn start_push(&mut self, kind: KeyKind, key: RoutingKey, to: Peer, now: Instant) -> RequestId {
        let id = RequestId(self.fresh());
        self.pushes.insert(
            id,
            Push {
                kind,
                key,
                to,
                deadline: now + PUSH_TIMEOUT,
                done: None,
                sent: false,
            },
        );
        self.actions.push_back(Action::Read {
            push: id,
            kind,
            key,
        });
        id
    }

    /// Queue a held block for `peer`, unless it already acknowledged it,
    /// refused it lately, or a push to it is in flight or queued.
    fn push(&mut self, kind: KeyKind, key: RoutingKey, peer: Peer, now: Instant) {
        if let Some(&until) = self.refused.get(&(key, peer.id)) {
            if until > now {
                self.replicate_after(until);
                return;
            }
            self.refused.remove(&(key, peer.id));
        }
        if self.confirmed.contains(&(key, peer.id))
            || self
                .pushes
                .values()
                .any(|p| p.key == key && p.to.id == peer.id)
            || self.queued.contains(&(key, peer.id))
        {
            return;
        }
        self.queued.insert((key, peer.id));
        self.queue.push_back((kind, key, peer));
    }

    /// Give up on the pushes `which` selects: a local store waiting on one
    /// gets `err`; a replica goes back into the next replication pass.
    fn fail_pushes(&mut self, which: impl Fn(&Push) -> bool, err: StoreError, now: Instant) {
        let failed: Vec<RequestId> = self
            .pushes
            .iter()
            .filter(|(_, p)| which(p))
            .map(|(&id, _)| id)
            .collect();
        for id in failed {
            if let Some(l) = &mut self.leaving {
                l.pushes.remove(&id);
            }
            if let Some(p) = self.pushes.remove(&id) {
                match p.done {
                    Some(token) => self.actions.push_back(Action::Stored {
                        token,
                        result: Err(err.clone()),
                    }),
                    None => {
                        self.placed.remove(&p.key);
                        self.replicate_soon(now);
                    }
                }
            }
        }
    }

    /// Make every held block reach the nodes that should hold it: as the
    /// key's successor, push to the next `replicas - 1` nodes; otherwise
    /// find the key's successor and push it there.
    fn replicate(&mut self, view: &View<'_>, now: Instant) {
        // Refusals whose wait is over: those blocks are placed afresh.
        let over: Vec<(RoutingKey, NodeId)> = self
            .refused
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in over {
            self.refused.remove(&k);
            self.placed.remove(&k.0);
        }
        let mut budget = PLACE_LOOKUPS.saturating_sub(
            self.lookups
                .values()
                .filter(|l| matches!(l, LookupFor::Place(..)))
                .count(),
        );
        let placing: HashSet<RoutingKey> = self
            .lookups
            .values()
            .filter_map(|l| match l {
                LookupFor::Place(_, k) => Some(*k),
                LookupFor::Store(..) => None,
            })
            .collect();
        let replicas: Vec<Peer> = view
            .ring
            .successors()
            .iter()
            .take(self.replicas.saturating_sub(1))
            .cloned()
            .collect();
        for &(kind, key) in view.held {
            if view.ring.owns(&key.0) {
                for peer in &replicas {
                    self.push(kind, key, peer.clone(), now);
                }
            } else if !placing.contains(&key) && !self.placed.contains(&key) {
                if budget == 0 {
                    // The rest wait for the next pass, so that lookups
                    // never crowd the ring's own messages out of the links.
                    self.replicate_soon(now);
                    continue;
                }
                budget -= 1;
                let id = LookupId(self.fresh());
                self.lookups.insert(id, LookupFor::Place(kind, key));
                self.actions.push_back(Action::Lookup { id, key });
            }
        }
    }

    /// Hand every held block to the successor, which takes over this
    /// node's range; [`Action::HandedOver`] comes once it acknowledged all
    /// (or `deadline` passed).
    pub fn start_leave(&mut self, view: &View<'_>, deadline: Instant, now: Instant) {
        self.queue.clear();
        self.queued.clear();
        self.replicate_at = None;
        let mut pushes = HashSet::new();
        if let Some(succ) = view.ring.successors().first().cloned() {
            for &(kind, key) in view.held {
                pushes.insert(self.start_push(kind, key, succ.clone(), now));
            }
        }
        self.leaving = Some(Leaving { deadline, pushes });
        self.check_leave(now);
    }

    fn check_leave(&mut self, now: Instant) {
        if self
            .leaving
            .as_ref()
            .is_some_and(|l| l.pushes.is_empty() || now >= l.deadline)
        {
            self.leaving = None;
            self.actions.push_back(Action::HandedOver);
        }
    }

    /// Call after an acknowledgement or a failure: a leave may be done.
    pub fn settle(&mut self, now: Instant) {
        self.check_leave(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::NodeDescriptor;

    fn peer(n: u8) -> Peer {
        Peer::new(NodeDescriptor {
            identity: [n; 32],
            onion_key: [0; 32],
            published: 0,
            flags: NodeDescriptor::FLAG_RELAY,
            addrs: Vec::new(),
            signature: [0; 64],
        })
    }

    /// Three nodes in ring order, and the ring of the one in the middle:
    /// that node and its successor.
    fn middle_of_three(now: Instant) -> (Peer, Peer, Ring) {
        let mut three = [peer(1), peer(2), peer(3)];
        three.sort_by_key(|p| p.id);
        let [pred, me, succ] = three;
        let mut ring = Ring::new(
            (*me.desc).clone(),
            crate::ring::Config::default(),
            now,
            [7; 32],
        );
        ring.settle(Some(pred), vec![succ.clone()], Vec::new());
        (me, succ, ring)
    }

    fn reads(p: &mut Placement) -> Vec<RoutingKey> {
        std::iter::from_fn(|| p.poll_action())
            .filter_map(|a| match a {
                Action::Read { key, .. } => Some(key),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pushes_queued_for_a_node_that_went_away_do_not_wait_in_front_of_the_rest() {
        let now = Instant::now();
        let (dead, live) = (peer(1), peer(2));
        let mut p = Placement::new(5);
        for i in 0..4 * PUSHES_IN_FLIGHT as u8 {
            p.placed.insert(RoutingKey([i; 32]));
            p.push(KeyKind::CHK, RoutingKey([i; 32]), dead.clone(), now);
        }
        p.push(KeyKind::CHK, RoutingKey([255; 32]), live.clone(), now);
        // A second push of a queued block to the same node is not queued
        // twice.
        p.push(KeyKind::CHK, RoutingKey([255; 32]), live.clone(), now);
        p.pump(now);
        assert_eq!(reads(&mut p).len(), PUSHES_IN_FLIGHT);

        p.handle_link_down(dead.id, now);
        p.pump(now);
        // What was in flight to it failed; what was queued for it is gone,
        // and the push to the live node goes out at once, alone.
        assert_eq!(reads(&mut p), vec![RoutingKey([255; 32])]);
        assert_eq!(p.pushes.len(), 1);
        // And the next pass is due, to queue again what still belongs on
        // whoever took the dead node's place, looking up again where the
        // blocks it held for others go.
        assert!(p.poll_timeout().is_some_and(|t| t <= now + REPLICATE_DELAY));
        assert!(p.placed.is_empty());
    }

    /// A lookup for the owner of a block held here that fails, or that
    /// names this node while its ring says another owns the key, is
    /// tried again: a ring that settles without another change must not
    /// leave the block short of its owner for good.
    #[test]
    fn a_lookup_for_an_owner_that_fails_is_tried_again() {
        let now = Instant::now();
        let (me, succ, ring) = middle_of_three(now);
        // A key the ring puts on the node after this one.
        let key = RoutingKey(succ.id.0);
        assert!(!ring.owns(&key.0));
        let held = BTreeSet::from([(KeyKind::CHK, key)]);
        let view = View {
            ring: &ring,
            held: &held,
        };
        let mut p = Placement::new(3);
        p.handle_membership_changed(now);
        let lookup = |p: &mut Placement| {
            std::iter::from_fn(|| p.poll_action()).find_map(|a| match a {
                Action::Lookup { id, key } => Some((id, key)),
                _ => None,
            })
        };
        let mut t = now;
        for found in [None, Some(me.clone())] {
            let due = p.poll_timeout().expect("a pass is due");
            t = t.max(due);
            p.handle_timeout(t, &view);
            let (id, asked) = lookup(&mut p).expect("the owner is looked up");
            assert_eq!(asked, key);
            p.handle_lookup_done(id, found, &view, t);
            assert!(!p.placed.contains(&key));
            let again = p.poll_timeout().expect("tried again");
            assert!(again > t && again <= t + PLACE_RETRY, "{:?}", again - t);
        }
        // Found at last: pushed there, and not looked up again.
        let due = p.poll_timeout().unwrap();
        p.handle_timeout(due, &view);
        let (id, _) = lookup(&mut p).expect("looked up once more");
        p.handle_lookup_done(id, Some(succ.clone()), &view, due);
        assert!(p.placed.contains(&key));
        p.pump(due);
        assert_eq!(reads(&mut p), vec![key]);
    }

    /// A replica that refuses a block the owner holds is not offered it
    /// again at every pass (each one a strike against the owner's link
    /// there), but once the wait is over.
    #[test]
    fn a_node_that_refused_a_replica_is_not_offered_it_again_until_the_wait_is_over() {
        let now = Instant::now();
        let (me, succ, ring) = middle_of_three(now);
        // A key this node owns: its one replica is its successor.
        let key = RoutingKey(me.id.0);
        assert!(ring.owns(&key.0));
        let held = BTreeSet::from([(KeyKind::CHK, key)]);
        let view = View {
            ring: &ring,
            held: &held,
        };
        let mut p = Placement::new(2);
        let pushed = |p: &mut Placement, t: Instant| {
            p.handle_membership_changed(t);
            p.handle_timeout(t + REPLICATE_DELAY, &view);
            std::iter::from_fn(|| p.poll_action())
                .filter_map(|a| match a {
                    Action::Read { push, key, .. } => Some((push, key)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let first = pushed(&mut p, now);
        assert_eq!(first.len(), 1);
        let (id, _) = first[0];
        p.handle_read(id, Some(vec![0; 8]));
        p.handle_ack(succ.id, id, false, now);
        // Membership changes, pass after pass: no push to it.
        for s in 1..10 {
            let t = now + Duration::from_secs(s);
            assert!(pushed(&mut p, t).is_empty(), "pushed again after {s} s");
        }
        // A pass is still due, at the end of the wait, and then it is.
        assert_eq!(p.poll_timeout(), Some(now + REFUSED_WAIT));
        p.handle_timeout(now + REFUSED_WAIT, &view);
        assert_eq!(reads(&mut p), vec![key]);
    }
}
