//! Walks through the guard (`docs/protocol.md`, "Tables through the
//! guard"). A client-only node does not ask ring nodes for their tables
//! itself: each GET_TABLE its walks send goes to its entry guard (its
//! bootstrap node before it has one) as a GET_TABLE_VIA naming the node
//! to ask, and the answer comes back as a TABLE_VIA signed by that node.
//! The nodes a walk visits see the guard, never the client; the guard
//! learns which nodes the client asks, and cannot alter their answers
//! (it can only drop them, which a walk takes as a node that did not
//! answer).
//!
//! A relay fetches tables for the nodes linked to it within bounds: a
//! token bucket per link, a few fetches in flight per link, a bound on
//! all of them, and only from relays its own address policy lets it dial.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Core;
use crate::circuit::Bucket;
use crate::crypto::{node_id, verify_table};
use crate::ring::Peer;
use crate::wire::{NodeDescriptor, NodeId, PeerMessage, ShownTable};

/// Fetches for other nodes in flight at once, all links together.
pub(super) const MAX_FORWARDS: usize = 1024;
/// Fetches for one link in flight at once (a walk has one out at a time,
/// a measuring round of a few dozen at most, queued on the asker's side
/// by its own timeouts).
pub(super) const FORWARDS_PER_LINK: usize = 32;
/// A fetch not answered in this long is forgotten.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// GET_TABLE_VIA one link may send: a burst of this many, then
/// [`FORWARD_RATE`] a second (as many as CREATEs). Each costs the relay a
/// table's worth of bytes from another node (4 KB or so) and, at worst, a
/// dial; a client filling its sample asks for some 15 a second.
pub(super) const FORWARD_BURST: f64 = 128.0;
pub(super) const FORWARD_RATE: f64 = 16.0;
/// Tables this node asked for through another, remembered at most.
const ASKED_KEPT: usize = 512;

/// A table asked for through another node.
struct Asked {
    owner: NodeId,
    identity: [u8; 32],
    /// The node asked to fetch it, when known when asking.
    via: Option<NodeId>,
    at: Instant,
}

/// Where a client-only node sends its table requests.
enum Route {
    Peer(Peer),
    Link(NodeId),
    Addr(SocketAddr, Option<NodeId>),
}

#[derive(Default)]
pub(super) struct Via {
    asked: HashMap<u64, Asked>,
    /// Fetches for others: (owner, query) → (asker, when).
    forwards: HashMap<(NodeId, u64), (NodeId, Instant)>,
    /// Each link's GET_TABLE_VIA tokens.
    buckets: HashMap<NodeId, Bucket>,
    /// The node the bootstrap address led to, once linked.
    pub(super) boot: Option<NodeId>,
}

impl Via {
    /// The link to `peer` closed.
    pub(super) fn link_down(&mut self, peer: NodeId) {
        self.buckets.remove(&peer);
    }

    /// Spend one of `peer`'s tokens; false if it has none left.
    fn allowed(&mut self, peer: NodeId, now: Instant) -> bool {
        self.buckets
            .entry(peer)
            .or_insert(Bucket::full(FORWARD_BURST, now))
            .take(now, FORWARD_RATE, FORWARD_BURST)
    }
}

impl Core {
    /// Whether this node's table requests go through another node: it is
    /// not on the ring (a client, or a relay still learning its address).
    pub(super) fn tables_through_guard(&self) -> bool {
        !self.ring.is_member()
    }

    /// Where table requests go now: the guard in use, else the bootstrap
    /// node (its link, or its address again).
    fn table_route(&self, now: Instant) -> Option<Route> {
        if let Some(g) = self.circuits.guard_in_use(now) {
            return Some(Route::Peer(g.clone()));
        }
        if let Some(b) = self.via.boot.filter(|b| self.links.contains_key(b)) {
            return Some(Route::Link(b));
        }
        self.settings
            .bootstrap
            .first()
            .map(|&(addr, id)| Route::Addr(addr, id))
    }

    /// Send the ring's GET_TABLE `query` for `owner` through the guard.
    pub(super) fn get_table_via(&mut self, owner: &Peer, query: u64, now: Instant) {
        let Some(route) = self.table_route(now) else {
            // Nowhere to send it that is not the node itself: the walk
            // takes it as unanswered.
            return;
        };
        let via = match &route {
            Route::Peer(p) => Some(p.id),
            Route::Link(id) => Some(*id),
            Route::Addr(_, id) => *id,
        };
        if via == Some(owner.id) {
            // The guard's own table: asked of it directly.
            self.send_to_peer(owner, PeerMessage::GetTable { query }, now);
            return;
        }
        let cutoff = now.checked_sub(FORWARD_TIMEOUT * 3);
        self.via
            .asked
            .retain(|_, a| cutoff.is_none_or(|c| a.at > c));
        if self.via.asked.len() >= ASKED_KEPT {
            return;
        }
        self.via.asked.insert(
            query,
            Asked {
                owner: owner.id,
                identity: owner.desc.identity,
                via,
                at: now,
            },
        );
        let msg = PeerMessage::GetTableVia {
            query,
            to: (*owner.desc).clone(),
        };
        match route {
            Route::Peer(p) => self.send_to_peer(&p, msg, now),
            Route::Link(id) => self.send_on_link(id, msg),
            Route::Addr(addr, expect) => self.send_to_addr(addr, expect, msg),
        }
    }

    /// `asker` wants `to`'s table fetched for its walk: only a current
    /// relay's, within the bounds above.
    pub(super) fn forward_table(
        &mut self,
        asker: NodeId,
        query: u64,
        to: NodeDescriptor,
        now: Instant,
    ) {
        let owner = node_id(&to.identity);
        let relay = to.flags & NodeDescriptor::FLAG_RELAY != 0
            && crate::crypto::descriptor_fresh(&to, self.unix_at(now));
        if !self.ring.is_member() || !relay || owner == asker || !self.via.allowed(asker, now) {
            return;
        }
        if owner == self.id() {
            let msg = self.ring.table(query);
            if let PeerMessage::Table { query, table } = msg {
                if let Some(table) = self.signed(query, table) {
                    let reply = PeerMessage::TableVia {
                        owner,
                        query,
                        table,
                    };
                    self.send_on_link(asker, reply);
                }
            }
            return;
        }
        let cutoff = now.checked_sub(FORWARD_TIMEOUT);
        self.via
            .forwards
            .retain(|_, (_, at)| cutoff.is_none_or(|c| *at > c));
        let mine = self
            .via
            .forwards
            .values()
            .filter(|(a, _)| *a == asker)
            .count();
        if mine >= FORWARDS_PER_LINK
            || self.via.forwards.len() >= MAX_FORWARDS
            || self.via.forwards.contains_key(&(owner, query))
        {
            return;
        }
        self.via.forwards.insert((owner, query), (asker, now));
        self.send_to_peer(&Peer::new(to), PeerMessage::GetTable { query }, now);
    }

    /// A TABLE from `from`: passed back if fetched for another node.
    /// Returns it if it is this node's own business.
    pub(super) fn forwarded_table(
        &mut self,
        from: NodeId,
        query: u64,
        table: Box<ShownTable>,
    ) -> Option<PeerMessage> {
        match self.via.forwards.remove(&(from, query)) {
            Some((asker, _)) => {
                let reply = PeerMessage::TableVia {
                    owner: from,
                    query,
                    table,
                };
                self.send_on_link(asker, reply);
                None
            }
            None => Some(PeerMessage::Table { query, table }),
        }
    }

    /// A TABLE_VIA from `via`: to the walk that asked, as if from its
    /// owner, once its owner's signature checks out.
    pub(super) fn table_via_arrived(
        &mut self,
        via: NodeId,
        owner: NodeId,
        query: u64,
        table: Box<ShownTable>,
        now: Instant,
    ) {
        let Some(a) = self.via.asked.get(&query) else {
            return;
        };
        if a.owner != owner || a.via.is_some_and(|v| v != via) {
            return;
        }
        let identity = a.identity;
        self.via.asked.remove(&query);
        if verify_table(&identity, query, &table).is_err() {
            tracing::debug!("a table passed on by another node is not signed by its owner");
            return;
        }
        self.hand_to_ring(owner, PeerMessage::Table { query, table }, now);
    }

    /// `table` signed as this node's answer to `query`.
    pub(super) fn signed(&self, query: u64, mut table: Box<ShownTable>) -> Option<Box<ShownTable>> {
        self.signer.sign_table(query, &mut table).ok()?;
        Some(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_gets_a_burst_of_fetches_then_a_steady_rate() {
        let mut via = Via::default();
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        let t0 = Instant::now();
        let burst = FORWARD_BURST as usize;
        assert_eq!(
            (0..burst + 10).filter(|_| via.allowed(a, t0)).count(),
            burst
        );
        assert!(via.allowed(b, t0), "another link has its own bucket");
        let later = t0 + Duration::from_secs(5);
        let refilled = (5.0 * FORWARD_RATE) as usize;
        assert_eq!(
            (0..burst).filter(|_| via.allowed(a, later)).count(),
            refilled
        );
        via.link_down(a);
        assert!(
            via.allowed(a, later),
            "a new link starts with a full bucket"
        );
    }
}
