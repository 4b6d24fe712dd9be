//! The client's side: choose relays, build circuits hop by hop, open a
//! stream per request, and replace circuits when they are spent.
//!
//! A build that fails (a create or extend times out, a link cannot be
//! opened, a hop destroys the circuit) is retried from the start with a
//! fresh relay in place of the one being added, up to
//! [`Settings::build_attempts`](super::Settings) times. Requests wait on
//! the circuit while it is built. A circuit that fails once it is built
//! fails the requests on it; nothing tells the client where it broke.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Instant;

use super::window::Window;
use super::{
    Action, CircuitError, Circuits, Isolation, Slot, MAX_ISOLATIONS, MAX_STREAMS, SENDME_EVERY,
};
use crate::crypto::{ClientCircuit, ClientHandshake};
use crate::ring::Peer;
use crate::route::{Outcome, Request};
use crate::token::Token;
use crate::wire::{
    Cell, CircId, CreateBody, CreatedBody, DestroyReason, EndStatus, HandshakeType, KeyKind,
    NodeId, RelayMessage, RoutingKey, StreamId, MAX_BLOCK_LEN, MAX_HOPS, ONION_LEN, RELAY_BODY_MAX,
};

mod streams;

pub(super) struct ClientCirc {
    iso: Isolation,
    path: Vec<Peer>,
    /// The id on the link to the first hop, once that link is up.
    circ: Option<CircId>,
    layers: ClientCircuit,
    state: State,
    born: Instant,
    /// Requests given to this circuit so far.
    used: u32,
    /// Takes no new requests; destroyed once its last request ends.
    retired: bool,
    streams: BTreeMap<StreamId, Stream>,
    next_stream: u16,
    waiting: VecDeque<Pending>,
    window: Window,
    attempt: u32,
    /// Relays that failed earlier attempts of this build.
    failed: HashSet<NodeId>,
    /// [`Circuits::build`] callers waiting for this circuit.
    build_tokens: Vec<Token>,
    /// The entry guard it was built through, and whether the circuit has
    /// been counted in its path-bias record yet.
    guard: Option<NodeId>,
    judged: bool,
}

enum State {
    /// Waiting for the link to the first hop.
    Connecting {
        deadline: Instant,
    },
    /// Waiting for the created (first hop) or extended (later hops).
    Handshaking {
        hs: ClientHandshake,
        deadline: Instant,
    },
    Ready,
}

struct Pending {
    token: Token,
    kind: KeyKind,
    key: RoutingKey,
    request: Request,
    deadline: Instant,
}

enum Stream {
    Get {
        token: Token,
        block: Vec<u8>,
        deadline: Instant,
    },
    Put {
        token: Token,
        deadline: Instant,
    },
}

impl Stream {
    fn token(&self) -> Token {
        match self {
            Stream::Get { token, .. } | Stream::Put { token, .. } => *token,
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            Stream::Get { deadline, .. } | Stream::Put { deadline, .. } => *deadline,
        }
    }
}

impl ClientCirc {
    pub(super) fn deadline(&self, settings: &super::Settings) -> Option<Instant> {
        let build = match &self.state {
            State::Connecting { deadline } | State::Handshaking { deadline, .. } => Some(*deadline),
            State::Ready => None,
        };
        let requests = self
            .streams
            .values()
            .map(Stream::deadline)
            .chain(self.waiting.iter().map(|p| p.deadline));
        let expiry = (!self.retired).then_some(self.born + settings.lifetime);
        build.into_iter().chain(requests).chain(expiry).min()
    }

    fn first(&self) -> NodeId {
        self.path[0].id
    }

    fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.waiting.is_empty()
    }
}

impl Circuits {
    /// Pin the relays of circuits for `iso` (first hop first); diagnostics
    /// and tests. The relays must be in the sample.
    pub fn pin_path(&mut self, iso: Isolation, path: Vec<NodeId>) {
        self.pinned.insert(iso, path);
    }

    /// Build a fresh circuit for `iso`, replacing the one in use; answered
    /// with [`Action::Built`].
    pub fn build(&mut self, token: Token, iso: Isolation, now: Instant) {
        self.retire_current(iso);
        self.make_room(iso);
        if let Some(l) = self.start_build(iso, VecDeque::new(), vec![token], 1, HashSet::new(), now)
        {
            self.current.insert(iso, l);
        }
    }

    /// Get or put a block through a circuit for `iso`; answered with
    /// [`Action::Done`].
    pub fn request(
        &mut self,
        token: Token,
        iso: Isolation,
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
        now: Instant,
    ) {
        let pending = Pending {
            token,
            kind,
            key,
            request,
            deadline: now + self.settings.request_timeout,
        };
        let usable = self.current.get(&iso).copied().filter(|l| {
            self.own
                .get(l)
                .is_some_and(|c| !c.retired && c.born + self.settings.lifetime > now)
        });
        let local = match usable {
            Some(l) => l,
            None => {
                self.retire_current(iso);
                self.make_room(iso);
                let waiting = VecDeque::from([pending]);
                if let Some(l) = self.start_build(iso, waiting, Vec::new(), 1, HashSet::new(), now)
                {
                    self.current.insert(iso, l);
                    self.count_use(l);
                }
                return;
            }
        };
        if let Some(c) = self.own.get_mut(&local) {
            c.waiting.push_back(pending);
        }
        self.count_use(local);
        self.start_streams(local, now);
    }

    fn count_use(&mut self, local: Slot) {
        let budget = self.settings.requests;
        if let Some(c) = self.own.get_mut(&local) {
            c.used += 1;
            if c.used >= budget {
                let iso = c.iso;
                self.retire_current(iso);
            }
        }
    }

    /// Before `iso` gets a circuit: if it has none and [`MAX_ISOLATIONS`]
    /// keys have one, the oldest of those circuits is retired.
    fn make_room(&mut self, iso: Isolation) {
        if self.current.contains_key(&iso) || self.current.len() < MAX_ISOLATIONS {
            return;
        }
        let oldest = self
            .current
            .iter()
            .filter_map(|(i, l)| self.own.get(l).map(|c| (c.born, *i)))
            .min_by_key(|(born, _)| *born)
            .map(|(_, i)| i);
        if let Some(i) = oldest {
            self.retire_current(i);
        }
    }

    /// The circuit in use for `iso` takes no new requests from now on.
    fn retire_current(&mut self, iso: Isolation) {
        let Some(local) = self.current.remove(&iso) else {
            return;
        };
        let idle = match self.own.get_mut(&local) {
            Some(c) => {
                c.retired = true;
                c.is_idle() && matches!(c.state, State::Ready)
            }
            None => false,
        };
        if idle {
            self.close_own(local, DestroyReason::FINISHED, CircuitError::Closed);
        }
    }

    /// Start building a circuit for `iso` that will carry `waiting`. If no
    /// path can be chosen, the requests and build callers are told and
    /// `None` comes back.
    fn start_build(
        &mut self,
        iso: Isolation,
        waiting: VecDeque<Pending>,
        build_tokens: Vec<Token>,
        attempt: u32,
        failed: HashSet<NodeId>,
        now: Instant,
    ) -> Option<Slot> {
        match self.choose_path(iso, &failed, now) {
            Ok(path) => {
                let guard =
                    (self.settings.guards && !self.pinned.contains_key(&iso)).then(|| path[0].id);
                let local = self.build_on(iso, path, waiting, build_tokens, attempt, failed, now);
                if let Some(c) = self.own.get_mut(&local) {
                    c.guard = guard;
                }
                Some(local)
            }
            Err(e) => {
                self.fail_waiting(waiting, build_tokens, &e);
                None
            }
        }
    }

    fn choose_path(
        &mut self,
        iso: Isolation,
        failed: &HashSet<NodeId>,
        now: Instant,
    ) -> Result<Vec<Peer>, CircuitError> {
        Ok(match self.pinned.get(&iso) {
            Some(ids) if ids.is_empty() || ids.len() > MAX_HOPS => {
                return Err(CircuitError::NotEnoughRelays {
                    have: ids.len(),
                    need: ids.len().clamp(1, MAX_HOPS),
                })
            }
            Some(ids) => ids
                .iter()
                .map(|id| self.sample.get(*id).cloned())
                .collect::<Option<Vec<Peer>>>()
                .ok_or(CircuitError::NotEnoughRelays {
                    have: self.sample.len(),
                    need: ids.len(),
                })?,
            None => {
                let mut exclude = failed.clone();
                exclude.insert(self.me);
                exclude.extend(self.down_at(now));
                let first = if self.settings.guards {
                    let unix = self.unix_at(now);
                    let sample = &self.sample;
                    let candidates = || {
                        let mut c = sample.with_since();
                        c.retain(|(p, _)| !exclude.contains(&p.id));
                        c
                    };
                    let g = self
                        .guards
                        .current(now, unix, candidates, &mut self.rng)
                        .ok_or(CircuitError::NoGuard)?;
                    Some(g)
                } else {
                    None
                };
                self.sample.choose(
                    &mut self.rng,
                    self.settings.hops,
                    &exclude,
                    &self.settings.networks,
                    first,
                )?
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn build_on(
        &mut self,
        iso: Isolation,
        path: Vec<Peer>,
        waiting: VecDeque<Pending>,
        build_tokens: Vec<Token>,
        attempt: u32,
        failed: HashSet<NodeId>,
        now: Instant,
    ) -> Slot {
        let local = self.new_slot();
        let first = path[0].clone();
        self.own.insert(
            local,
            ClientCirc {
                iso,
                path,
                circ: None,
                layers: ClientCircuit::new(),
                state: State::Connecting {
                    deadline: now + self.settings.hop_timeout,
                },
                born: now,
                used: 0,
                retired: false,
                streams: BTreeMap::new(),
                next_stream: 1,
                waiting,
                window: Window::default(),
                attempt,
                failed,
                build_tokens,
                guard: None,
                judged: false,
            },
        );
        if self.links.contains_key(&first.id) {
            self.send_create(local, now);
        } else {
            self.actions.push_back(Action::Connect {
                to: first.id,
                addrs: first.desc.addrs.clone(),
            });
        }
        local
    }

    fn send_create(&mut self, local: Slot, now: Instant) {
        let Some(first) = self.own.get(&local).map(ClientCirc::first) else {
            return;
        };
        let Some(circ) = self.alloc_circ(first) else {
            return;
        };
        let Some(c) = self.own.get_mut(&local) else {
            return;
        };
        let relay = &c.path[0];
        let (hs, msg) = ClientHandshake::start(&mut self.rng, relay.id, relay.desc.onion_key);
        c.circ = Some(circ);
        c.state = State::Handshaking {
            hs,
            deadline: now + self.settings.hop_timeout,
        };
        self.own_links.insert((first, circ), local);
        self.send(
            first,
            Cell::Create {
                circ,
                body: CreateBody {
                    handshake: HandshakeType::NTOR_X25519,
                    data: msg.to_vec(),
                },
            },
        );
    }

    /// Own circuits waiting for a link to `peer` as their first hop.
    fn connecting_to(&self, peer: NodeId) -> Vec<Slot> {
        self.own
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Connecting { .. }) && c.first() == peer)
            .map(|(&l, _)| l)
            .collect()
    }

    pub(super) fn client_link_up(&mut self, peer: NodeId, now: Instant) {
        for local in self.connecting_to(peer) {
            self.send_create(local, now);
        }
    }

    pub(super) fn client_link_failed(&mut self, peer: NodeId, now: Instant) {
        let failed = self.connecting_to(peer);
        if !failed.is_empty() {
            // Unreachable: choose others until a lookup finds it again.
            self.sample.remove(peer);
        }
        for local in failed {
            self.client_failed(local, now);
        }
    }

    pub(super) fn client_link_down(&mut self, peer: NodeId, now: Instant) {
        let gone: Vec<Slot> = self
            .own
            .iter()
            .filter(|(_, c)| c.circ.is_some() && c.first() == peer)
            .map(|(&l, _)| l)
            .collect();
        for local in gone {
            // The link is gone, and the circuit id with it.
            if let Some(c) = self.own.get_mut(&local) {
                if let Some(circ) = c.circ.take() {
                    self.own_links.remove(&(peer, circ));
                }
            }
            self.client_failed(local, now);
        }
    }

    /// The circuit died (destroyed by a hop, its link closed, or a build
    /// step failed or timed out). A circuit being built is rebuilt with a
    /// fresh relay in place of the one being added; a built one fails its
    /// requests.
    pub(super) fn client_failed(&mut self, local: Slot, now: Instant) {
        let Some(c) = self.own.get(&local) else {
            return;
        };
        if matches!(c.state, State::Ready) {
            self.close_own(local, DestroyReason::NONE, CircuitError::Closed);
            return;
        }
        self.stats.build_failures += 1;
        if let Some(g) = c.guard {
            if c.layers.is_empty() {
                // The guard itself did not answer: set it aside, the
                // next attempt uses the next guard.
                self.guards.unreachable(g, now);
            } else {
                self.judge(local, false);
            }
        }
        let Some(c) = self.own.get(&local) else {
            return;
        };
        let was_current = self.current.get(&c.iso) == Some(&local);
        // Whatever part of it was built is released along its length.
        let Some(mut c) = self.remove_own(local, DestroyReason::REQUESTED) else {
            return;
        };
        let pinned = self.pinned.contains_key(&c.iso);
        if let Some(bad) = c.path.get(c.layers.len()) {
            c.failed.insert(bad.id);
        }
        if c.attempt < self.settings.build_attempts && !pinned {
            let waiting = std::mem::take(&mut c.waiting);
            let tokens = std::mem::take(&mut c.build_tokens);
            if let Some(new) =
                self.start_build(c.iso, waiting, tokens, c.attempt + 1, c.failed, now)
            {
                if was_current {
                    self.current.insert(c.iso, new);
                }
                if let Some(n) = self.own.get_mut(&new) {
                    // A replacement keeps the request count of the circuit
                    // it replaces, and a retired one's replacement serves
                    // only the requests it inherits.
                    n.used = c.used;
                    n.retired = !was_current;
                }
            }
            return;
        }
        let err = CircuitError::BuildFailed {
            attempts: c.attempt,
        };
        self.fail_all(c, err);
    }

    /// Take a circuit out of every table, telling its first hop.
    fn remove_own(&mut self, local: Slot, reason: DestroyReason) -> Option<ClientCirc> {
        let c = self.own.remove(&local)?;
        if let Some(circ) = c.circ {
            let first = c.first();
            if self.own_links.remove(&(first, circ)).is_some() && reason != DestroyReason::NONE {
                self.destroy(first, circ, reason);
            }
        }
        if self.current.get(&c.iso) == Some(&local) {
            self.current.remove(&c.iso);
        }
        Some(c)
    }

    /// The first hop broke the protocol on one of our circuits (a
    /// RELAY_EARLY toward the client): give the circuit up.
    pub(in crate::circuit) fn close_broken(&mut self, local: Slot) {
        self.close_own(local, DestroyReason::PROTOCOL, CircuitError::Closed);
    }

    /// Destroy a circuit and fail whatever still waits on it with `err`.
    fn close_own(&mut self, local: Slot, reason: DestroyReason, err: CircuitError) {
        if let Some(c) = self.remove_own(local, reason) {
            self.fail_all(c, err);
        }
    }

    /// Count the circuit in its guard's path-bias record, once: `ok` if
    /// its exit answered a request, not if it died on the way (past the
    /// guard) or with requests in flight.
    pub(super) fn judge(&mut self, local: Slot, ok: bool) {
        let Some(c) = self.own.get_mut(&local) else {
            return;
        };
        let Some(g) = c.guard.filter(|_| !c.judged) else {
            return;
        };
        c.judged = true;
        self.judge_guard(g, ok);
    }

    fn judge_guard(&mut self, guard: NodeId, ok: bool) {
        if self.guards.judge(guard, ok) {
            tracing::warn!(
                "an entry guard was dropped: too few of the circuits through it worked (path bias)"
            );
        }
    }

    fn fail_all(&mut self, c: ClientCirc, err: CircuitError) {
        let in_flight = !c.streams.is_empty() || !c.waiting.is_empty();
        if let Some(g) = c.guard {
            if in_flight && !c.judged && matches!(c.state, State::Ready) {
                self.judge_guard(g, false);
            }
        }
        for s in c.streams.into_values() {
            self.actions.push_back(Action::Done {
                token: s.token(),
                result: Err(err.clone()),
            });
        }
        self.fail_waiting(c.waiting, c.build_tokens, &err);
    }

    fn fail_waiting(
        &mut self,
        waiting: VecDeque<Pending>,
        build_tokens: Vec<Token>,
        err: &CircuitError,
    ) {
        for p in waiting {
            self.actions.push_back(Action::Done {
                token: p.token,
                result: Err(err.clone()),
            });
        }
        for token in build_tokens {
            self.actions.push_back(Action::Built {
                token,
                result: Err(err.clone()),
            });
        }
    }

    pub(super) fn client_created(&mut self, local: Slot, body: CreatedBody, now: Instant) {
        let Some(c) = self.own.get_mut(&local) else {
            return;
        };
        if !c.layers.is_empty() || !matches!(c.state, State::Handshaking { .. }) {
            self.client_violation(local, "created for a circuit not waiting for one");
            return;
        }
        self.hop_done(local, &body.data, now);
    }

    /// The hop being added answered: check its reply, add its layer, and
    /// go on to the next hop or start the waiting requests.
    fn hop_done(&mut self, local: Slot, reply: &[u8], now: Instant) {
        let Some(c) = self.own.get_mut(&local) else {
            return;
        };
        let State::Handshaking { hs, .. } = std::mem::replace(&mut c.state, State::Ready) else {
            return;
        };
        let added = hs
            .finish(reply)
            .map_err(|_| ())
            .and_then(|keys| c.layers.add_hop(&keys).map_err(|_| ()));
        if added.is_err() {
            // Whoever answered does not hold the relay's onion key.
            c.state = State::Connecting { deadline: now };
            self.client_failed(local, now);
            return;
        }
        let k = c.layers.len();
        if k < c.path.len() {
            let relay = c.path[k].clone();
            let (hs, msg) = ClientHandshake::start(&mut self.rng, relay.id, relay.desc.onion_key);
            c.state = State::Handshaking {
                hs,
                deadline: now + self.settings.hop_timeout,
            };
            self.send_forward_early(
                local,
                &RelayMessage::Extend {
                    next: relay.id,
                    addrs: relay.desc.addrs.clone(),
                    handshake: HandshakeType::NTOR_X25519,
                    data: msg.to_vec(),
                },
            );
            return;
        }
        self.stats.built += 1;
        tracing::debug!("circuit built");
        let hops: Vec<NodeId> = c.path.iter().map(|p| p.id).collect();
        for token in std::mem::take(&mut c.build_tokens) {
            self.actions.push_back(Action::Built {
                token,
                result: Ok(hops.clone()),
            });
        }
        self.start_streams(local, now);
        self.maybe_finish(local);
    }
}
