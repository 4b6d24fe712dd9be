//! The local user's requests, the store's answers, the node's status, and
//! the node's own addresses.

use std::net::SocketAddr;
use std::time::Instant;

use super::placement::View;
use super::{
    Action, Core, OpFor, OpId, Reply, Request, RouteWaiter, StoreFailure, StoreOp, StoreResult,
    LEARN_PATIENCE, LEAVE_TIMEOUT, REPUBLISH_EVERY,
};
use crate::link::addr::canonical;
use crate::link::reach;
use crate::node::{Reachability, Status};
use crate::store;
use crate::wire::{Frame, KeyKind, NodeId, PeerMessage, RoutingKey};

impl Core {
    /// A request from the local user; the answer comes as
    /// [`Action::Reply`] with `token`.
    pub fn handle_request(&mut self, token: crate::token::Token, request: Request, now: Instant) {
        let reply = |reply| Action::Reply { token, reply };
        match request {
            Request::Status => self.op(OpFor::Status(token), StoreOp::Stats),
            Request::Store { kind, key, block } => {
                if crate::keys::verify_block(kind, &key, &block) {
                    self.placement.store(token, kind, key, block);
                } else {
                    self.actions
                        .push_back(reply(Reply::Stored(Err(super::StoreError::BadBlock))));
                }
            }
            Request::Holds { kind, key } => {
                self.op(OpFor::Holds(token), StoreOp::Has { kind, key })
            }
            Request::Forget { kind, key } => self.op(
                OpFor::Forget { token, kind, key },
                StoreOp::Forget { kind, key },
            ),
            Request::Route {
                kind,
                key,
                request,
                id,
            } => {
                let ours = self.tokens.issue();
                self.routed.insert(ours, RouteWaiter::Local(token));
                let mut ctx = super::dispatch::RouteCtx::new(&self.ring, self.settings.replicas);
                self.router
                    .start(id, ours, kind, key, request, now, &mut ctx);
            }
            Request::Circuit {
                iso,
                kind,
                key,
                request,
            } => self.circuits.request(token, iso, kind, key, request, now),
            Request::BuildCircuit(iso) => self.circuits.build(token, iso, now),
            Request::PinPath(iso, path) => {
                self.circuits.pin_path(iso, path);
                self.actions.push_back(reply(Reply::Done));
            }
            Request::Sample => {
                let ids = self.circuits.sample().ids();
                self.actions.push_back(reply(Reply::Sample(ids)));
            }
            Request::Lookup(target) => {
                let ours = self.tokens.issue();
                self.lookups.insert(ours, super::LookupFor::Asked(token));
                if self.ring.is_client() {
                    let start = self.circuits.sample().peers();
                    self.ring.walk(target, ours, start, now);
                } else {
                    self.ring.lookup(target, ours, now);
                }
            }
            Request::Leave => {
                tracing::info!("leaving the ring");
                self.leaving = Some(token);
                let view = View {
                    ring: &self.ring,
                    held: &self.held,
                };
                self.placement.start_leave(&view, now + LEAVE_TIMEOUT, now);
            }
        }
        self.flush(now);
    }

    /// The answer to [`Action::Store`] `op`.
    pub fn handle_store(&mut self, op: OpId, result: StoreResult, now: Instant) {
        let Some(why) = self.ops.remove(&op) else {
            return;
        };
        let stored = |r: &StoreResult| match r {
            StoreResult::Put(Ok(p)) => Some(*p),
            _ => None,
        };
        match why {
            OpFor::RouterRead { id, kind, key } => {
                let block = match result {
                    // A signed block from the cache may be stale: only the
                    // successor's primary copy answers for it.
                    StoreResult::Block(Some((_, store::Found::Cache)))
                        if kind == crate::wire::KeyKind::SSK =>
                    {
                        None
                    }
                    StoreResult::Block(Some((block, _))) => Some(block),
                    _ => {
                        // Evicted from the cache, or gone from the store.
                        self.cached.remove(&key);
                        self.held.remove(&(kind, key));
                        None
                    }
                };
                let mut ctx = super::dispatch::RouteCtx::new(&self.ring, self.settings.replicas);
                self.router.handle_read(id, block, now, &mut ctx);
            }
            OpFor::RouterWrite { id, key, kind } => {
                let put = stored(&result);
                if put.is_none() {
                    self.store_failed("an inserted block", &result, now);
                }
                self.wrote(kind, key, put, now);
                self.router.handle_written(id, put.is_some());
            }
            OpFor::Cache => self.cache_writes = self.cache_writes.saturating_sub(1),
            OpFor::PushRead { push, kind, key } => {
                let block = match result {
                    StoreResult::Block(Some((block, _))) => Some(block),
                    _ => {
                        self.held.remove(&(kind, key));
                        None
                    }
                };
                self.placement.handle_read(push, block);
                self.placement.settle(now);
            }
            OpFor::Replica {
                from,
                id,
                kind,
                key,
            } => {
                let reply = match &result {
                    StoreResult::Put(Ok(_)) => {
                        self.replicas_taken += 1;
                        Some(PeerMessage::Stored { id })
                    }
                    StoreResult::Put(Err(StoreFailure::BadBlock)) => None,
                    other => {
                        self.store_failed("a replica", other, now);
                        Some(PeerMessage::Rejected { id })
                    }
                };
                let put = stored(&result);
                // A replica changes what this node must pass on only when
                // it owns the key.
                let owned = self.ring.owns(&key.0);
                self.wrote(kind, key, put.filter(|_| owned), now);
                if put.is_some() {
                    self.held.insert((kind, key));
                }
                match reply {
                    Some(msg) => self.send_on_link(from, msg),
                    None => self.misbehaved(from, "block does not match its key", now),
                }
            }
            OpFor::LocalWrite { token, kind, key } => {
                let put = stored(&result);
                self.wrote(kind, key, put, now);
                let me = self.id();
                self.placement
                    .handle_local_write(token, me, put.is_some(), now);
            }
            OpFor::Holds(token) => {
                let held = matches!(result, StoreResult::Bool(true));
                self.reply(token, Reply::Bool(held));
            }
            OpFor::Forget { token, kind, key } => {
                let done = matches!(result, StoreResult::Bool(true));
                if done {
                    self.held.remove(&(kind, key));
                }
                self.reply(token, Reply::Bool(done));
            }
            OpFor::Evict { kind, key } => {
                if matches!(result, StoreResult::Bool(true)) {
                    self.held.remove(&(kind, key));
                    self.blocks_evicted += 1;
                }
            }
            OpFor::Status(token) => {
                let stats = match result {
                    StoreResult::Stats(s) => s,
                    _ => store::Stats::default(),
                };
                let status = self.status(Some(stats));
                self.reply(token, Reply::Status(Box::new(status)));
            }
        }
        self.flush(now);
    }

    /// A block was written to the primary store (`put`, if it was): a new
    /// block or a newer version must reach its replicas.
    /// The datastore refused a write: counted, and said in the log at
    /// most once every [`super::STORE_WARN_EVERY`], with the count since.
    fn store_failed(&mut self, what: &str, result: &StoreResult, now: Instant) {
        self.store_write_failures += 1;
        if matches!(result, StoreResult::Put(Err(StoreFailure::Full))) {
            self.make_room(now);
        }
        let (last, count) = self.store_warned.unwrap_or((now, 0));
        if self.store_warned.is_some() && now < last + super::STORE_WARN_EVERY {
            self.store_warned = Some((last, count + 1));
            return;
        }
        let why = match result {
            StoreResult::Put(Err(e)) => e.to_string(),
            other => format!("{other:?}"),
        };
        if count > 0 {
            tracing::warn!(
                "the datastore cannot store {what}: {why} ({count} more writes failed since the last message; blocks are refused until it can)"
            );
        } else {
            tracing::warn!(
                "the datastore cannot store {what}: {why} (blocks are refused until it can)"
            );
        }
        self.store_warned = Some((now, 0));
    }

    /// The primary store is full: give up blocks this node no longer has
    /// a place for (replicas kept after the ring moved on, or pushed by a
    /// peer whose view was off), so that the blocks it does have a place
    /// for find room next time. The write that found the store full is
    /// still refused; its sender tries again.
    fn make_room(&mut self, now: Instant) {
        if self
            .evict_searched
            .is_some_and(|t| now < t + super::EVICT_EVERY)
        {
            return;
        }
        self.evict_searched = Some(now);
        let replicas = self.settings.replicas;
        let mut misplaced: Vec<(f64, KeyKind, RoutingKey)> = self
            .held
            .iter()
            .filter_map(|&(kind, key)| {
                let far = self.ring.past_holders(&key.0, replicas)?;
                Some((far, kind, key))
            })
            .collect();
        // The farthest first: the surest not to be this node's to hold.
        misplaced.sort_by(|a, b| b.0.total_cmp(&a.0));
        misplaced.truncate(super::EVICT_BATCH);
        for (_, kind, key) in misplaced {
            self.op(OpFor::Evict { kind, key }, StoreOp::Forget { kind, key });
        }
    }

    fn wrote(
        &mut self,
        kind: crate::wire::KeyKind,
        key: crate::wire::RoutingKey,
        put: Option<store::Put>,
        now: Instant,
    ) {
        if let Some(p) = put {
            self.held.insert((kind, key));
            if matches!(p, store::Put::Stored | store::Put::Replaced) {
                self.placement.handle_block_stored(key, now);
            }
        }
    }

    fn reply(&mut self, token: crate::token::Token, reply: Reply) {
        self.actions.push_back(Action::Reply { token, reply });
    }

    /// The node's status; the datastore's counters are zero unless given
    /// (only the datastore knows them).
    pub fn status(&self, stats: Option<store::Stats>) -> Status {
        let stats = stats.unwrap_or_default();
        let hex = NodeId::to_hex;
        let circuits = self.circuits.stats();
        Status {
            id: hex(&self.ring.id()),
            listen: self.settings.listen,
            addresses: self.advertised.clone(),
            reachability: self.reachability(),
            joined: self.ring.is_joined(),
            predecessor: self.ring.predecessor().map(|p| hex(&p.id)),
            successors: self.ring.successors().iter().map(|p| hex(&p.id)).collect(),
            fingers: self.ring.distinct_fingers(),
            links: self.links.len(),
            blocks_stored: stats.blocks_stored,
            bytes_stored: stats.bytes_stored,
            blocks_cached: stats.blocks_cached,
            bytes_cached: stats.bytes_cached,
            misbehaving_peers: self.misbehaving,
            requests_forwarded: self.forwarded,
            loops_received: self.loops,
            hops_timed_out: self.router.hops_timed_out(),
            lookups: self.lookups_done,
            lookup_steps: self.lookup_steps,
            relay: self.circuits.settings().relay,
            circuits_relayed: circuits.relaying,
            circuits_own: circuits.own,
            circuits_built: circuits.built,
            bad_cells: circuits.bad_cells,
            circuits_too_long: circuits.long_circuits,
            creates_refused: circuits.creates_refused,
            relay_sample: circuits.sample,
            tables_refused: self.ring.tables_refused(),
            successor_lists_refused: self.ring.successor_lists_refused(),
            successors_mended: self.ring.successors_mended(),
            guards_dropped: circuits.guards_dropped,
            replicas_refused: self.replicas_refused,
            replicas_taken: self.replicas_taken,
            store_write_failures: self.store_write_failures,
            blocks_evicted: self.blocks_evicted,
            exit_streams_refused: circuits.exit_refused,
            exits_stalled: circuits.exits_stalled,
            // Only the driver sees the socket and the frames' lengths.
            traffic: Default::default(),
            frames_received: Default::default(),
        }
    }

    // ---- addresses ----

    pub(super) fn reachability(&self) -> Reachability {
        match &self.learner {
            _ if !self.settings.relay => Reachability::ClientOnly,
            None => Reachability::Configured,
            Some(l) => match l.state() {
                reach::State::Reachable => Reachability::Learned,
                reach::State::Unreachable => Reachability::Unreachable,
                reach::State::Learning | reach::State::Probing => Reachability::Learning,
            },
        }
    }

    pub(super) fn addresses_timeout(&mut self, now: Instant) {
        if let Some(l) = &mut self.learner {
            if l.poll_timeout().is_some_and(|t| t <= now) {
                l.handle_timeout(now, &mut self.rng);
            }
        }
        if self.learn_warning.is_some_and(|t| t <= now) {
            self.learn_warning = None;
            if self.reachability() == Reachability::Learning {
                tracing::warn!(
                    "no reachable address learned after {} s: peers have not agreed where they \
                     see this node ({} from different networks must); it does not relay \
                     meanwhile (give --public-addr if you know its address)",
                    LEARN_PATIENCE.as_secs(),
                    self.settings.learn.as_ref().map_or(2, |l| l.quorum)
                );
            }
        }
    }

    /// Advertise `addrs` from now on: a new descriptor, and a place on the
    /// ring as a relay.
    pub(super) fn advertise(&mut self, addrs: Vec<SocketAddr>, now: Instant) {
        let desc = match super::sign(&self.signer, &addrs, self.unix_at(now)) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot sign a new descriptor: {e}");
                return;
            }
        };
        let first = self.advertised.is_empty();
        self.advertised = addrs;
        tracing::debug!(addrs = ?self.advertised, "advertising learned addresses");
        if first {
            tracing::info!("learned a reachable address from peers; relaying from now on");
        }
        self.show_descriptor(desc, now);
        self.ring.set_member(true, now);
        self.circuits.set_relay(true);
    }

    /// Sign this node's descriptor again (a fresh date, the addresses it
    /// advertises) and show it to every peer linked.
    pub(super) fn republish(&mut self, now: Instant) {
        let addrs = self.advertised.clone();
        match super::sign(&self.signer, &addrs, self.unix_at(now)) {
            Ok(d) => self.show_descriptor(d, now),
            Err(e) => tracing::warn!("cannot sign a new descriptor: {e}"),
        }
    }

    fn show_descriptor(&mut self, desc: crate::wire::NodeDescriptor, now: Instant) {
        self.ring.set_descriptor(desc.clone());
        self.next_republish = now + REPUBLISH_EVERY;
        let mut links: Vec<_> = self.links.values().map(|l| l.id).collect();
        links.sort();
        for link in links {
            self.actions.push_back(Action::Send {
                link,
                frame: Frame::Message(PeerMessage::Hello { node: desc.clone() }),
            });
        }
    }

    /// A peer asks to be dialled back on `port` at the address its link
    /// comes from. Never any other address: a probe cannot be aimed at a
    /// third party.
    pub(super) fn probe_for(&mut self, peer: NodeId, nonce: [u8; 16], port: u16, now: Instant) {
        let Some(from) = self.links.get(&peer).map(|l| canonical(l.remote).ip()) else {
            return;
        };
        let target = SocketAddr::new(from, port);
        if !self.settings.relay
            || !self.settings.policy.allows(target)
            || !self.responder.allow(peer, now)
        {
            tracing::debug!("not dialling a peer back");
            return;
        }
        self.actions.push_back(Action::Probe {
            target,
            peer,
            nonce,
        });
    }

    /// A probe connection carrying `nonce` arrived.
    pub fn handle_probe_arrived(&mut self, nonce: [u8; 16], now: Instant) {
        if let Some(l) = &mut self.learner {
            if !l.handle_probe_arrived(nonce, now, &mut self.rng) {
                tracing::debug!("a probe arrived that this node did not ask for");
            }
        }
        self.flush(now);
    }
}
