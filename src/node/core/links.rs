//! The core's links: one table of which link reaches which peer, the
//! messages waiting for a dial, and what arrives on each link.

use std::net::SocketAddr;
use std::time::Instant;

use super::{
    Action, CloseReason, Core, DialId, Dialed, LinkId, LinkInfo, OpFor, StoreOp, LINK_GRACE,
    LINK_IDLE, LINK_RACE, VERIFIED_CACHE,
};
use sha2::{Digest, Sha256};

use crate::crypto::{descriptor_fresh, verify_descriptor};
use crate::link::addr::canonical;
use crate::ring::Peer;
use crate::wire::{Frame, NodeAddr, NodeDescriptor, NodeId, PeerMessage};

impl Core {
    /// A link is up: one the driver accepted, or the answer to
    /// [`Action::Dial`] `dial`. `remote` is the address it comes from;
    /// `inbound` says the peer dialled.
    pub fn handle_link_up(
        &mut self,
        link: LinkId,
        peer: NodeId,
        remote: SocketAddr,
        inbound: bool,
        dial: Option<DialId>,
        now: Instant,
    ) {
        if let Some(d) = dial {
            if let Some(super::Dialed::Addr(addr, _)) = self.dials.remove(&d) {
                if self.settings.bootstrap.iter().any(|(a, _)| *a == addr) {
                    self.via.boot = Some(peer);
                }
            }
        }
        if peer == self.id() {
            // We dialled ourselves (a bootstrap address of our own).
            self.dialing_addr.remove(&remote);
            self.actions.push_back(Action::Close {
                link,
                reason: CloseReason::Duplicate,
            });
            self.flush(now);
            return;
        }
        self.link_peers.insert(link, peer);
        if let Some(old) = self.links.get(&peer).copied() {
            // Two links to one peer, dialled at the same time from both
            // sides: both ends keep the one dialled by the smaller id.
            // Both dialled by the same side, or the peer dialling long
            // after the old link came up: the newer one. A node dials a
            // peer only when it holds no link to it, so it dialling
            // again means the old link is gone at its end: it restarted
            // (kill -9 says nothing), and the old link, still open here
            // until it times out, would swallow every message to it.
            let me = self.id();
            let dialer = |inbound: bool| if inbound { peer } else { me };
            let redialled = inbound && now.saturating_duration_since(old.since) >= LINK_RACE;
            // The other link is closed only after a grace period: both ends
            // stop sending on it at once (they agree which one loses), and
            // what was already on its way still arrives and is read.
            if !redialled && dialer(old.inbound) < dialer(inbound) {
                self.retiring.push_back((now + LINK_GRACE, link));
                self.flush_queued(peer, remote, inbound);
                self.flush(now);
                return;
            }
            self.retiring.push_back((now + LINK_GRACE, old.id));
            // Circuit ids belong to the link they were made on.
            self.circuits.link_down(peer, now);
        }
        self.links.insert(
            peer,
            LinkInfo {
                id: link,
                since: now,
                used: now,
                inbound,
                remote,
                misplaced: 0,
            },
        );
        let hello = PeerMessage::Hello {
            node: (*self.ring.me().desc).clone(),
        };
        self.send_on_link(peer, hello);
        // Where the link comes from, as this end sees it: how the peer
        // learns what to advertise.
        let observed = PeerMessage::Observed {
            addr: NodeAddr(canonical(remote)),
        };
        self.send_on_link(peer, observed);
        if let Some(l) = &mut self.learner {
            l.handle_link_up(peer, remote.ip(), now, &mut self.rng);
        }
        self.circuits.link_up(peer, !inbound, now);
        self.flush_queued(peer, remote, inbound);
        self.flush(now);
    }

    fn flush_queued(&mut self, peer: NodeId, remote: SocketAddr, inbound: bool) {
        let mut queued = self.dialing.remove(&peer).unwrap_or_default();
        if !inbound {
            queued.extend(self.dialing_addr.remove(&remote).unwrap_or_default());
        }
        for msg in queued {
            self.send_on_link(peer, msg);
        }
    }

    /// Close the duplicate links whose grace period is over.
    pub(super) fn retire_links(&mut self, now: Instant) {
        while self.retiring.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, link)) = self.retiring.pop_front() {
                if self.link_peers.contains_key(&link) {
                    self.actions.push_back(Action::Close {
                        link,
                        reason: CloseReason::Duplicate,
                    });
                }
            }
        }
    }

    /// A link closed, by either side; `misbehaved` when the peer broke the
    /// protocol (a malformed frame).
    /// `idle` when the peer closed it for being unused.
    pub fn handle_link_down(&mut self, link: LinkId, misbehaved: bool, idle: bool, now: Instant) {
        let idle = self.idling.remove(&link) || idle;
        let Some(peer) = self.link_peers.remove(&link) else {
            return;
        };
        if misbehaved {
            tracing::debug!("a peer sent a malformed frame");
            self.misbehaving += 1;
        }
        if self.links.get(&peer).is_some_and(|l| l.id == link) {
            self.links.remove(&peer);
            if idle && !misbehaved {
                self.link_unused(peer, now);
            } else {
                self.peer_gone(peer, now);
            }
        }
        self.flush(now);
    }

    /// Close the links nothing used for [`LINK_IDLE`] and no circuit
    /// runs over: each one costs keep-alives for as long as it is open,
    /// and the next message to its peer dials again. Ring neighbours
    /// keep theirs by using them.
    pub(super) fn close_unused_links(&mut self, now: Instant) {
        if now < self.next_link_sweep {
            return;
        }
        self.next_link_sweep = now + LINK_IDLE / 4;
        let unused: Vec<(NodeId, LinkId)> = self
            .links
            .iter()
            .filter(|(peer, l)| {
                now.saturating_duration_since(l.used) >= LINK_IDLE
                    && !self.circuits.carries(**peer)
                    && !self.idling.contains(&l.id)
            })
            .map(|(peer, l)| (*peer, l.id))
            .collect();
        for (_, link) in unused {
            self.idling.insert(link);
            self.actions.push_back(Action::Close {
                link,
                reason: CloseReason::Idle,
            });
        }
    }

    /// A link closed for being unused: its peer is as alive as before,
    /// so the ring and the circuits keep it; only what rode on the link
    /// itself moves on.
    fn link_unused(&mut self, peer: NodeId, now: Instant) {
        self.via.link_down(peer);
        if let Some(l) = &mut self.learner {
            l.handle_link_down(peer);
        }
        self.placement.handle_link_down(peer, now);
        let mut ctx = super::dispatch::RouteCtx::new(&self.ring, self.settings.replicas);
        self.router.handle_link_down(peer, now, &mut ctx);
        self.circuits.link_down(peer, now);
    }

    /// The dial `dial` failed; `wrong_peer` when the far end proved to be
    /// another node than the one meant.
    pub fn handle_dial_failed(&mut self, dial: DialId, wrong_peer: bool, now: Instant) {
        if wrong_peer {
            self.misbehaving += 1;
        }
        match self.dials.remove(&dial) {
            Some(Dialed::Peer(id)) => self.dial_failed(id, now),
            Some(Dialed::Addr(addr, want)) => {
                self.dialing_addr.remove(&addr);
                if let Some(id) = want {
                    self.dial_failed(id, now);
                }
            }
            None => {}
        }
        self.flush(now);
    }

    fn dial_failed(&mut self, id: NodeId, now: Instant) {
        self.dialing.remove(&id);
        self.ring.handle_failure(id, now);
        self.placement.handle_link_down(id, now);
        self.circuits.link_failed(id, now);
    }

    /// Everything that went through `peer`'s link moves on.
    fn peer_gone(&mut self, peer: NodeId, now: Instant) {
        // The ring first, so that requests rerouted below avoid the peer.
        self.ring.handle_failure(peer, now);
        self.link_unused(peer, now);
        // First-hand: this node's own link to it broke.
        self.circuits.note_down(peer, now);
    }

    /// A peer broke the protocol: drop its link and count it.
    pub(super) fn misbehaved(&mut self, peer: NodeId, why: &str, now: Instant) {
        tracing::debug!("disconnecting a peer: {why}");
        self.misbehaving += 1;
        if let Some(l) = self.links.remove(&peer) {
            self.actions.push_back(Action::Close {
                link: l.id,
                reason: CloseReason::Protocol,
            });
            self.peer_gone(peer, now);
        }
    }

    /// Open a link to `id` at the addresses of its descriptor this node's
    /// policy allows, in Happy Eyeballs order. None usable is a failed
    /// dial, at once.
    pub(super) fn dial_peer(&mut self, id: NodeId, addrs: &[NodeAddr], now: Instant) {
        let order = self.settings.policy.dial_order(addrs, self.settings.listen);
        if order.is_empty() {
            tracing::debug!("no address of a peer is allowed or reachable from here");
            self.dial_failed(id, now);
            return;
        }
        let dial = DialId(self.fresh());
        self.dials.insert(dial, Dialed::Peer(id));
        self.actions.push_back(Action::Dial {
            dial,
            peer: Some(id),
            addrs: order,
        });
    }

    /// Dial a bootstrap address, as the user gave it.
    pub(super) fn dial_addr(&mut self, addr: SocketAddr, want: Option<NodeId>) {
        let dial = DialId(self.fresh());
        self.dials.insert(dial, Dialed::Addr(addr, want));
        self.actions.push_back(Action::Dial {
            dial,
            peer: want,
            addrs: vec![addr],
        });
    }

    pub(super) fn send_on_link(&mut self, peer: NodeId, msg: PeerMessage) {
        if let Some(l) = self.links.get(&peer) {
            self.actions.push_back(Action::Send {
                link: l.id,
                frame: Frame::Message(msg),
            });
        }
    }

    /// Send to a known node, dialling it first if there is no link.
    pub(super) fn send_to_peer(&mut self, peer: &Peer, msg: PeerMessage, now: Instant) {
        if self.links.contains_key(&peer.id) {
            self.send_on_link(peer.id, msg);
        } else if let Some(q) = self.dialing.get_mut(&peer.id) {
            q.push(msg);
        } else {
            self.dialing.insert(peer.id, vec![msg]);
            self.dial_peer(peer.id, &peer.desc.addrs, now);
        }
    }

    /// Send to a bootstrap address, dialling it (once) first.
    pub(super) fn send_to_addr(
        &mut self,
        addr: SocketAddr,
        expect: Option<NodeId>,
        msg: PeerMessage,
    ) {
        // A node already linked goes on its link: a second link would
        // replace the first at the far end, and the circuits on it with it.
        let linked = match expect {
            Some(id) => self.links.contains_key(&id).then_some(id),
            None => self
                .links
                .iter()
                .find(|(_, l)| canonical(l.remote) == canonical(addr))
                .map(|(peer, _)| *peer),
        };
        if let Some(peer) = linked {
            self.send_on_link(peer, msg);
            return;
        }
        if let Some(q) = self.dialing_addr.get_mut(&addr) {
            q.push(msg);
        } else {
            self.dialing_addr.insert(addr, vec![msg]);
            self.dial_addr(addr, expect);
        }
    }

    /// A frame arrived on `link`.
    pub fn handle_frame(&mut self, link: LinkId, frame: Frame, now: Instant) {
        // Any link authenticated as the peer speaks for it, including the
        // loser of a duplicate-link race that is still draining.
        let Some(&peer) = self.link_peers.get(&link) else {
            return;
        };
        if let Some(l) = self.links.get_mut(&peer) {
            if l.id == link {
                l.used = now;
            }
        }
        match frame {
            Frame::Cell(cell) => self.circuits.handle_cell(peer, cell, now),
            Frame::Message(msg) => self.on_message(peer, msg, now),
        }
        self.flush(now);
    }

    /// Check every descriptor a message carries; the ring only ever sees
    /// verified ones.
    fn descriptors_valid(&mut self, msg: &PeerMessage) -> bool {
        let descs: Vec<&NodeDescriptor> = match msg {
            PeerMessage::FindSuccessorReply { node, .. }
            | PeerMessage::Notify { node }
            | PeerMessage::Hello { node } => vec![node],
            PeerMessage::PredecessorReply {
                predecessor,
                successors,
                ..
            }
            | PeerMessage::Leaving {
                predecessor,
                successors,
            } => predecessor.iter().chain(successors.iter()).collect(),
            PeerMessage::Table { table, .. } | PeerMessage::TableVia { table, .. } => {
                table.descriptors().collect()
            }
            PeerMessage::GetTableVia { to, .. } => vec![to],
            _ => return true,
        };
        for d in descs {
            // Remembered by a hash of all of it, signature included: the
            // same signature on other contents is another descriptor.
            let Ok(bytes) = d.encode() else {
                return false;
            };
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            if self.verified.contains(&digest)
                || self
                    .settings
                    .verified
                    .as_ref()
                    .is_some_and(|m| m.contains(&digest))
            {
                continue;
            }
            // A relay must say where to reach it, and its identity must
            // have cost the network's id puzzle; a client says nothing
            // and takes no place on the ring.
            let relay = d.flags & NodeDescriptor::FLAG_RELAY != 0;
            let solved = || {
                crate::crypto::puzzle_bits(&d.identity) >= u32::from(self.settings.id_puzzle_bits)
            };
            if verify_descriptor(d).is_err() || (relay && (d.addrs.is_empty() || !solved())) {
                return false;
            }
            match &self.settings.verified {
                Some(m) => m.insert(digest),
                None => {
                    if self.verified.len() >= VERIFIED_CACHE {
                        self.verified.clear();
                    }
                    self.verified.insert(digest);
                }
            }
        }
        true
    }

    fn on_message(&mut self, peer: NodeId, msg: PeerMessage, now: Instant) {
        if !self.descriptors_valid(&msg) {
            self.misbehaved(peer, "invalid descriptor", now);
            return;
        }
        match msg {
            PeerMessage::Hello { node } => {
                if crate::crypto::node_id(&node.identity) != peer {
                    self.misbehaved(peer, "hello for another node", now);
                } else if !descriptor_fresh(&node, self.unix_at(now)) {
                    // Its clock is off by a day, or it replays an old
                    // descriptor: either way not one to build on.
                    self.misbehaved(peer, "stale descriptor", now);
                } else {
                    let p = Peer::new(node);
                    self.ring.update_descriptor(&p);
                    self.circuits.update_descriptor(&p);
                }
            }
            PeerMessage::Observed { addr } => {
                let from = self.links.get(&peer).map(|l| l.remote.ip());
                if let (Some(l), Some(from)) = (&mut self.learner, from) {
                    l.handle_observed(peer, from, addr.0, now, &mut self.rng);
                }
            }
            PeerMessage::Probe { nonce, port } => self.probe_for(peer, nonce, port, now),
            PeerMessage::StoreReplica {
                id,
                kind,
                key,
                block,
            } => {
                if !crate::keys::verify_block(kind, &key, &block) {
                    self.misbehaved(peer, "block does not match its key", now);
                    return;
                }
                if !self.ring.may_hold(&key.0, self.settings.replicas) {
                    // Not a block this node has a place for. A pusher
                    // close enough behind this node to be the key's
                    // successor may see the ring otherwise (one of the
                    // two views is out of date): refused, it waits before
                    // offering the block again, and cutting a ring
                    // neighbour off would only tear the ring. A pusher
                    // farther away has no replicas to place here: one
                    // that keeps at it is filling the store on purpose.
                    self.replicas_refused += 1;
                    let near = self.ring.may_hold(&peer.0, self.settings.replicas);
                    let strikes = self.links.get_mut(&peer).map_or(0, |l| {
                        if !near {
                            l.misplaced += 1;
                        }
                        l.misplaced
                    });
                    if strikes > super::MISPLACED_STRIKES {
                        self.misbehaved(peer, "replicas for keys held elsewhere", now);
                    } else {
                        self.send_on_link(peer, PeerMessage::Rejected { id });
                    }
                    return;
                }
                self.op(
                    OpFor::Replica {
                        from: peer,
                        id,
                        kind,
                        key,
                    },
                    StoreOp::Put { kind, key, block },
                );
            }
            PeerMessage::Stored { id } | PeerMessage::Rejected { id }
                if self.placement.owns_ack(id) =>
            {
                let ok = matches!(msg, PeerMessage::Stored { .. });
                self.placement.handle_ack(peer, id, ok, now);
                self.placement.settle(now);
            }
            msg @ (PeerMessage::Get { .. } | PeerMessage::Put { .. }) => {
                let mut ctx = super::dispatch::RouteCtx::new(&self.ring, self.settings.replicas);
                self.router.handle_request(peer, msg, now, &mut ctx);
            }
            msg @ (PeerMessage::Data { .. }
            | PeerMessage::DataNotFound { .. }
            | PeerMessage::RouteNotFound { .. }
            | PeerMessage::Loop { .. }
            | PeerMessage::Stored { .. }
            | PeerMessage::Rejected { .. }) => {
                if matches!(msg, PeerMessage::Loop { .. }) {
                    self.loops += 1;
                }
                let mut ctx = super::dispatch::RouteCtx::new(&self.ring, self.settings.replicas);
                self.router.handle_reply(peer, msg, now, &mut ctx);
            }
            PeerMessage::GetTableVia { query, to } => self.forward_table(peer, query, to, now),
            PeerMessage::TableVia {
                owner,
                query,
                table,
            } => self.table_via_arrived(peer, owner, query, table, now),
            PeerMessage::Table { query, table } => {
                if let Some(msg) = self.forwarded_table(peer, query, table) {
                    self.hand_to_ring(peer, msg, now);
                }
            }
            PeerMessage::Unrecognized { .. } => {}
            ring_msg => self.hand_to_ring(peer, ring_msg, now),
        }
    }

    /// A ring message from `peer`, without the stale descriptors it may
    /// carry: a list loses them (an honest node's tables can hold a
    /// descriptor a little past its time), a message about one node that
    /// is stale is dropped.
    pub(super) fn hand_to_ring(&mut self, peer: NodeId, mut msg: PeerMessage, now: Instant) {
        let unix = self.unix_at(now);
        let fresh = |d: &NodeDescriptor| descriptor_fresh(d, unix);
        let keep = |list: &mut Vec<NodeDescriptor>| list.retain(|d| fresh(d));
        match &mut msg {
            PeerMessage::FindSuccessorReply { node, .. } | PeerMessage::Notify { node }
                if !fresh(node) =>
            {
                return;
            }
            PeerMessage::PredecessorReply {
                predecessor,
                successors,
                ..
            }
            | PeerMessage::Leaving {
                predecessor,
                successors,
            } => {
                predecessor.take_if(|d| !fresh(d));
                keep(successors);
            }
            PeerMessage::Table { table, .. } => {
                table.predecessor.take_if(|d| !fresh(d));
                keep(&mut table.successors);
                keep(&mut table.fingers);
            }
            _ => {}
        }
        self.ring.handle_message(peer, msg, now);
    }
}
