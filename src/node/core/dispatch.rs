//! Carrying out what the ring, the router, the circuits, placement and the
//! address learner want, until none of them has anything left: each can
//! give the others work.

use std::time::Instant;

use rand::Rng;

use super::placement::{self, View};
use super::sampling;
use super::{Action, Core, LookupFor, OpFor, Reply, RouteWaiter, StoreOp, CACHE_WRITES};
use crate::circuit;
use crate::link::reach;
use crate::ring::{Dest, Event as RingEvent, Ring};
use crate::route;
use crate::wire::{Frame, KeyKind, NodeDescriptor, NodeId, PeerMessage, RoutingKey};

/// The router's view of the node: its ring.
pub(super) struct RouteCtx<'a> {
    ring: &'a Ring,
    replicas: usize,
}

impl<'a> RouteCtx<'a> {
    pub(super) fn new(ring: &'a Ring, replicas: usize) -> RouteCtx<'a> {
        RouteCtx { ring, replicas }
    }
}

impl route::Context for RouteCtx<'_> {
    fn owns(&self, key: &RoutingKey) -> bool {
        self.ring.owns(&key.0)
    }

    fn candidates(&self, key: &RoutingKey) -> Vec<NodeId> {
        self.ring
            .next_hops(&key.0, self.replicas)
            .into_iter()
            .map(|p| p.id)
            .collect()
    }

    fn verify(&self, kind: KeyKind, key: &RoutingKey, block: &[u8]) -> bool {
        crate::keys::verify_block(kind, key, block)
    }
}

impl Core {
    /// Drain every part's output until all are quiet.
    pub(super) fn flush(&mut self, now: Instant) {
        loop {
            let mut busy = self.flush_learner(now);
            busy |= self.flush_ring(now);
            busy |= self.flush_router(now);
            busy |= self.flush_circuits(now);
            busy |= self.flush_placement(now);
            if !busy {
                return;
            }
        }
    }

    fn flush_learner(&mut self, now: Instant) -> bool {
        let mut busy = false;
        let was = self.reachability();
        while let Some(action) = self.learner.as_mut().and_then(reach::Learner::poll_action) {
            busy = true;
            match action {
                reach::Action::Probe { via, nonce, port } => {
                    tracing::debug!(port, "asking a peer to dial this node back");
                    self.send_on_link(via, PeerMessage::Probe { nonce, port });
                }
                reach::Action::Advertise(addrs) => self.advertise(addrs, now),
            }
        }
        if self.reachability() != was
            && self.reachability() == crate::node::Reachability::Unreachable
        {
            tracing::warn!(
                "peers agree on this node's address, but none could dial it there (a NAT or a \
                 firewall?): it will not relay, and tries again in a few minutes; give \
                 --public-addr if it can be reached"
            );
        }
        busy
    }

    fn flush_ring(&mut self, now: Instant) -> bool {
        let mut busy = false;
        while let Some(t) = self.ring.poll_transmit() {
            busy = true;
            let msg = match t.msg {
                PeerMessage::Table { query, table } => match self.signed(query, table) {
                    Some(table) => PeerMessage::Table { query, table },
                    None => continue,
                },
                msg => msg,
            };
            match (t.to, msg) {
                (Dest::Peer(p), PeerMessage::GetTable { query }) if self.tables_through_guard() => {
                    self.get_table_via(&p, query, now)
                }
                (Dest::Link(id), msg) => self.send_on_link(id, msg),
                (Dest::Peer(p), msg) => self.send_to_peer(&p, msg, now),
                (Dest::Addr(addr, expect), msg) => self.send_to_addr(addr, expect, msg),
            }
        }
        while let Some(ev) = self.ring.poll_event() {
            busy = true;
            match ev {
                RingEvent::NeighboursChanged => self.placement.handle_membership_changed(now),
                RingEvent::Joined => tracing::info!("joined the ring"),
                RingEvent::LookupDone {
                    token,
                    result,
                    steps,
                    timeouts,
                } => match self.lookups.remove(&token) {
                    Some(LookupFor::Asked(user)) => {
                        self.count_lookup(steps);
                        let successor = result.ok().map(|p| p.id);
                        self.actions.push_back(Action::Reply {
                            token: user,
                            reply: Reply::Lookup {
                                successor,
                                steps,
                                timeouts,
                            },
                        });
                    }
                    Some(LookupFor::Placement(id)) => {
                        self.count_lookup(steps);
                        let view = View {
                            ring: &self.ring,
                            held: &self.held,
                        };
                        let found = result.ok().map(|b| *b);
                        self.placement.handle_lookup_done(id, found, &view, now);
                    }
                    None | Some(LookupFor::Sample { .. }) => {}
                },
                RingEvent::WalkDone {
                    token,
                    result,
                    steps,
                    timeouts,
                } => match self.lookups.remove(&token) {
                    Some(LookupFor::Sample { targeted }) => {
                        self.count_lookup(steps);
                        self.sampled(result.ok().map(|b| *b), targeted, now);
                    }
                    Some(LookupFor::Asked(user)) => {
                        // A client's lookup is a walk.
                        self.count_lookup(steps);
                        self.actions.push_back(Action::Reply {
                            token: user,
                            reply: Reply::Lookup {
                                successor: result.ok().map(|f| f.successor.id),
                                steps,
                                timeouts,
                            },
                        });
                    }
                    _ => {}
                },
            }
        }
        busy
    }

    /// A sampling walk ended with `found`. A relay found past a random
    /// point is kept with a probability that undoes the weight of its arc
    /// (`sampling::keep_probability`); one found past a known relay is
    /// kept as found.
    fn sampled(&mut self, found: Option<crate::ring::Found>, targeted: bool, now: Instant) {
        use crate::ring::{gap, position};
        let me = self.id();
        let kept = found.filter(|f| {
            let p = if targeted {
                1.0
            } else {
                let g = gap(position(&f.predecessor.id), position(&f.successor.id));
                sampling::keep_probability(g, f.density)
            };
            self.rng.gen_bool(p.clamp(0.0, 1.0))
        });
        let peer = kept.map(|f| f.successor).filter(|p| {
            p.id != me
                && p.desc.flags & NodeDescriptor::FLAG_RELAY != 0
                && self
                    .settings
                    .policy
                    .reachable(&p.desc.addrs, self.settings.listen)
        });
        let found = peer.map(|p| {
            let new = self.circuits.sample().get(p.id).is_none();
            // A relay refused for its crowded network is no find: the
            // pace slows as for a known one.
            self.circuits.add_relay(p, now) && new
        });
        self.sampler.handle_done(found);
    }

    fn flush_router(&mut self, now: Instant) -> bool {
        let mut busy = false;
        while let Some(action) = self.router.poll_action() {
            busy = true;
            match action {
                route::Action::Send { to, msg } => {
                    if matches!(msg, PeerMessage::Get { .. } | PeerMessage::Put { .. }) {
                        self.forwarded += 1;
                    }
                    if self.links.contains_key(&to) {
                        self.send_on_link(to, msg);
                    } else if let Some(p) = self.ring.known().into_iter().find(|p| p.id == to) {
                        self.send_to_peer(&p, msg, now);
                    }
                }
                route::Action::Read { id, kind, key } => {
                    // A signed block can be updated, and only its
                    // successor is sure to hold the newest version it
                    // acknowledged (replicas lag by a replication pass,
                    // caches indefinitely): only the successor answers for
                    // it, and never from its cache.
                    //
                    // And a key in neither the primary store's index nor
                    // the cache's is not here: no need to ask the disk.
                    let unknown = !self.held.contains(&(kind, key))
                        && (!kind.immutable() || !self.cached.contains(&key));
                    if (kind == KeyKind::SSK && !self.ring.owns(&key.0)) || unknown {
                        let mut ctx = RouteCtx::new(&self.ring, self.settings.replicas);
                        self.router.handle_read(id, None, now, &mut ctx);
                    } else {
                        self.op(
                            OpFor::RouterRead { id, kind, key },
                            StoreOp::Get { kind, key },
                        );
                    }
                }
                route::Action::Write {
                    id,
                    kind,
                    key,
                    block,
                } => self.op(
                    OpFor::RouterWrite { id, key, kind },
                    StoreOp::Put { kind, key, block },
                ),
                route::Action::Cache { kind, key, block } => {
                    if kind.immutable() && self.cache_writes < CACHE_WRITES {
                        self.cache_writes += 1;
                        self.remember_cached(key);
                        self.op(OpFor::Cache, StoreOp::Cache { kind, key, block });
                    }
                }
                route::Action::Deliver { token, outcome } => match self.routed.remove(&token) {
                    Some(RouteWaiter::Local(user)) => self.actions.push_back(Action::Reply {
                        token: user,
                        reply: Reply::Routed(outcome),
                    }),
                    Some(RouteWaiter::Exit(exit)) => self.circuits.route_done(exit, outcome, now),
                    None => {}
                },
                route::Action::Misbehaved(_) => self.misbehaving += 1,
            }
        }
        busy
    }

    fn flush_circuits(&mut self, now: Instant) -> bool {
        let mut busy = false;
        while let Some(action) = self.circuits.poll_action() {
            busy = true;
            match action {
                circuit::Action::Send { to, cell } => {
                    if let Some(l) = self.links.get(&to) {
                        self.actions.push_back(Action::Send {
                            link: l.id,
                            frame: Frame::Cell(cell),
                        });
                    }
                }
                circuit::Action::Connect { to, addrs } => {
                    if let Some(l) = self.links.get(&to) {
                        let we_dialed = !l.inbound;
                        self.circuits.link_up(to, we_dialed, now);
                    } else if let std::collections::hash_map::Entry::Vacant(e) =
                        self.dialing.entry(to)
                    {
                        // An extend names the addresses; only those this
                        // node's policy allows are dialled.
                        e.insert(Vec::new());
                        self.dial_peer(to, &addrs, now);
                    }
                }
                circuit::Action::Route {
                    token,
                    kind,
                    key,
                    request,
                } => {
                    let ours = self.tokens.issue();
                    self.routed.insert(ours, RouteWaiter::Exit(token));
                    let mut ctx = RouteCtx::new(&self.ring, self.settings.replicas);
                    self.router
                        .start(None, ours, kind, key, request, now, &mut ctx);
                }
                circuit::Action::Done { token, result } => self.actions.push_back(Action::Reply {
                    token,
                    reply: Reply::Circuit(result),
                }),
                circuit::Action::Built { token, result } => self.actions.push_back(Action::Reply {
                    token,
                    reply: Reply::Built(result),
                }),
                circuit::Action::Misbehaved { peer, why } => self.misbehaved(peer, why, now),
            }
        }
        busy
    }

    fn flush_placement(&mut self, now: Instant) -> bool {
        let mut busy = false;
        self.placement.pump(now);
        while let Some(action) = self.placement.poll_action() {
            busy = true;
            match action {
                placement::Action::Lookup { id, key } => {
                    let token = self.tokens.issue();
                    self.lookups.insert(token, LookupFor::Placement(id));
                    self.ring.lookup(key.0, token, now);
                }
                placement::Action::Read { push, kind, key } => {
                    self.op(
                        OpFor::PushRead { push, kind, key },
                        StoreOp::Get { kind, key },
                    );
                }
                placement::Action::Send { to, msg } => self.send_to_peer(&to, msg, now),
                placement::Action::Write {
                    token,
                    kind,
                    key,
                    block,
                } => self.op(
                    OpFor::LocalWrite { token, kind, key },
                    StoreOp::Put { kind, key, block },
                ),
                placement::Action::Stored { token, result } => {
                    self.actions.push_back(Action::Reply {
                        token,
                        reply: Reply::Stored(result),
                    })
                }
                placement::Action::HandedOver => self.finish_leave(now),
            }
        }
        busy
    }

    fn count_lookup(&mut self, steps: u32) {
        self.lookups_done += 1;
        self.lookup_steps += u64::from(steps);
    }

    fn remember_cached(&mut self, key: RoutingKey) {
        if self.cached.insert(key) {
            self.cached_order.push_back(key);
            while self.cached_order.len() > super::CACHE_INDEX {
                if let Some(old) = self.cached_order.pop_front() {
                    self.cached.remove(&old);
                }
            }
        }
    }

    /// The hand-over is done: say goodbye to the ring and stop.
    fn finish_leave(&mut self, now: Instant) {
        self.ring.leave();
        self.flush_ring(now);
        if let Some(token) = self.leaving.take() {
            self.actions.push_back(Action::Reply {
                token,
                reply: Reply::Done,
            });
        }
        self.stopped = true;
        self.actions.push_back(Action::Stop);
    }
}
