//! The relay's side: answer creates, carry cells both ways, extend on the
//! client's request, and, as the exit, turn relay messages into routed
//! requests.
//!
//! A relay never looks into a cell it passes on; it only takes off (or
//! puts on) its own layer. It learns whether it is the exit by having no
//! next hop when a cell arrives, and nothing else of its position.

use std::collections::BTreeMap;
use std::time::Instant;

use super::window::Window;
use super::{Action, Circuits, LinkCirc, Slot, MAX_STREAMS, SENDME_EVERY};

use crate::crypto::{respond, RelayLayer};
use crate::route::{Outcome, Request};
use crate::token::Token;
use crate::wire::{
    Cell, CircId, CreateBody, CreatedBody, DestroyReason, EndStatus, HandshakeType, KeyKind,
    NodeId, RelayMessage, RoutingKey, StreamId, MAX_BLOCK_LEN, MAX_EXTENDS, ONION_LEN,
    RELAY_BODY_MAX,
};

/// Which neighbour of a relayed circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Prev,
    Next,
}

pub(super) struct RelayCirc {
    prev: LinkCirc,
    layer: RelayLayer,
    next: Next,
    /// RELAY_EARLY cells this circuit may still send through here.
    early_left: usize,
}

enum Next {
    /// No next hop: this node is the exit.
    Exit(Exit),
    /// Waiting for a link to the next hop before sending its create.
    Connecting {
        to: NodeId,
        handshake: Vec<u8>,
        deadline: Instant,
    },
    /// Create sent; waiting for created.
    Extending {
        to: LinkCirc,
        deadline: Instant,
    },
    Linked(LinkCirc),
}

#[derive(Default)]
struct Exit {
    streams: BTreeMap<StreamId, ExitStream>,
    /// Flow control toward the client.
    window: Window,
    /// Since when answers have waited for a SENDME without any going out.
    stalled_since: Option<Instant>,
}

enum ExitStream {
    /// A put whose block is still arriving.
    Receiving {
        kind: KeyKind,
        key: RoutingKey,
        len: usize,
        block: Vec<u8>,
    },
    /// The routed request is out.
    Routing { token: Token },
}

impl RelayCirc {
    /// When this circuit times out here: a hop that did not answer, or
    /// an exit whose answers waited `stall` for a SENDME.
    pub(super) fn deadline(&self, stall: std::time::Duration) -> Option<Instant> {
        match &self.next {
            Next::Connecting { deadline, .. } | Next::Extending { deadline, .. } => Some(*deadline),
            Next::Exit(exit) => exit.stalled_since.map(|t| t + stall),
            Next::Linked(_) => None,
        }
    }

    fn next_link(&self) -> Option<LinkCirc> {
        match self.next {
            Next::Extending { to, .. } | Next::Linked(to) => Some(to),
            _ => None,
        }
    }
}

impl Circuits {
    pub(super) fn relay_create(
        &mut self,
        peer: NodeId,
        circ: CircId,
        body: CreateBody,
        now: Instant,
    ) {
        if !self.theirs(peer, circ) || self.by_prev.contains_key(&(peer, circ)) {
            self.actions.push_back(Action::Misbehaved {
                peer,
                why: "create with a circuit id the peer may not use",
            });
            return;
        }
        if !self.settings.relay {
            self.destroy(peer, circ, DestroyReason::PROTOCOL);
            return;
        }
        if self.relayed.len() >= self.settings.relay_circuits
            || self.circuits_on(peer) >= self.settings.circuits_per_link
        {
            self.destroy(peer, circ, DestroyReason::RESOURCE_LIMIT);
            return;
        }
        if !self.create_allowed(peer, now) {
            self.stats.creates_refused += 1;
            self.destroy(peer, circ, DestroyReason::RESOURCE_LIMIT);
            return;
        }
        if body.handshake != HandshakeType::NTOR_X25519 {
            self.destroy(peer, circ, DestroyReason::PROTOCOL);
            return;
        }
        let previous = self.previous_onion.as_ref();
        let (keys, reply) = match respond(&mut self.rng, &self.identity, previous, &body.data) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("create refused: {e}");
                self.destroy(peer, circ, DestroyReason::PROTOCOL);
                return;
            }
        };
        let local = self.new_slot();
        self.relayed.insert(
            local,
            RelayCirc {
                prev: (peer, circ),
                layer: RelayLayer::new(&keys),
                next: Next::Exit(Exit::default()),
                early_left: MAX_EXTENDS,
            },
        );
        self.by_prev.insert((peer, circ), local);
        self.send(
            peer,
            Cell::Created {
                circ,
                body: CreatedBody {
                    data: reply.to_vec(),
                },
            },
        );
    }

    /// The next hop answered our create on the client's behalf.
    pub(super) fn relay_created(&mut self, local: Slot, body: CreatedBody) {
        let Some(c) = self.relayed.get_mut(&local) else {
            return;
        };
        let Next::Extending { to, .. } = c.next else {
            let (peer, _) = c.next_link().unwrap_or(c.prev);
            self.actions.push_back(Action::Misbehaved {
                peer,
                why: "created for a circuit that is not extending",
            });
            return;
        };
        c.next = Next::Linked(to);
        self.send_backward(local, &RelayMessage::Extended { data: body.data });
    }

    /// A cell travelling away from the client; `early`: it came as
    /// RELAY_EARLY, and goes on as one.
    pub(super) fn relay_forward(
        &mut self,
        local: Slot,
        mut onion: Box<[u8; ONION_LEN]>,
        early: bool,
        now: Instant,
    ) {
        let Some(c) = self.relayed.get_mut(&local) else {
            return;
        };
        if early {
            if c.early_left == 0 {
                // A circuit longer than any client may build: a loop
                // through the same relays, made to multiply its traffic.
                self.stats.long_circuits += 1;
                tracing::debug!("a circuit sent more extends than a circuit may; destroying it");
                self.relay_teardown(local, None, DestroyReason::PROTOCOL);
                return;
            }
            c.early_left -= 1;
        }
        if c.layer.peel_forward(&mut onion).is_err() {
            // Altered, replayed or reordered on the way here: the circuit
            // cannot be trusted any more, in either direction.
            self.stats.bad_cells += 1;
            tracing::debug!("a relayed cell failed its layer; destroying the circuit");
            self.relay_teardown(local, None, DestroyReason::BAD_LAYER);
            return;
        }
        match &c.next {
            Next::Linked((to, circ)) => {
                let (to, circ) = (*to, *circ);
                if early {
                    self.send(to, Cell::RelayEarly { circ, onion });
                } else {
                    self.send(to, Cell::Relay { circ, onion });
                }
            }
            Next::Exit(_) => {
                let msg = RelayMessage::decode(RelayLayer::payload(&onion));
                match msg {
                    Ok(RelayMessage::Extend { .. }) if !early => {
                        // An extend the relays before could not count.
                        tracing::debug!("exit: an extend outside RELAY_EARLY");
                        self.relay_teardown(local, None, DestroyReason::PROTOCOL);
                    }
                    Ok(msg) => self.exit_message(local, msg, now),
                    Err(e) => {
                        tracing::debug!("exit: malformed relay message: {e}");
                        self.relay_teardown(local, None, DestroyReason::PROTOCOL);
                    }
                }
            }
            Next::Connecting { .. } | Next::Extending { .. } => {
                // The client must wait for extended before it speaks.
                self.relay_teardown(local, None, DestroyReason::PROTOCOL);
            }
        }
    }

    /// A cell travelling toward the client, from the next hop.
    pub(super) fn relay_backward(&mut self, local: Slot, mut onion: Box<[u8; ONION_LEN]>) {
        let Some(c) = self.relayed.get_mut(&local) else {
            return;
        };
        if !matches!(c.next, Next::Linked(_)) {
            self.relay_teardown(local, None, DestroyReason::PROTOCOL);
            return;
        }
        if c.layer.wrap_backward(&mut onion).is_err() {
            self.relay_teardown(local, None, DestroyReason::INTERNAL);
            return;
        }
        let (to, circ) = c.prev;
        self.send(to, Cell::Relay { circ, onion });
    }

    /// Free the circuit here and tell the neighbours on every side but the
    /// one the news came from.
    pub(super) fn relay_teardown(
        &mut self,
        local: Slot,
        except: Option<Side>,
        reason: DestroyReason,
    ) {
        let Some(c) = self.relayed.remove(&local) else {
            return;
        };
        self.by_prev.remove(&c.prev);
        if except != Some(Side::Prev) {
            self.destroy(c.prev.0, c.prev.1, reason);
        }
        if let Some(next) = c.next_link() {
            self.by_next.remove(&next);
            if except != Some(Side::Next) {
                self.destroy(next.0, next.1, reason);
            }
        }
        if let Next::Exit(exit) = c.next {
            self.exit_queued -= exit.window.queued_bytes();
            for s in exit.streams.into_values() {
                if let ExitStream::Routing { token } = s {
                    self.routes.remove(&token);
                }
            }
        }
    }

    /// Relayed circuits waiting for a link to `peer` to extend to it.
    fn relays_connecting_to(&self, peer: NodeId) -> Vec<Slot> {
        self.relayed
            .iter()
            .filter(|(_, c)| matches!(&c.next, Next::Connecting { to, .. } if *to == peer))
            .map(|(&l, _)| l)
            .collect()
    }

    pub(super) fn relay_link_up(&mut self, peer: NodeId, now: Instant) {
        for local in self.relays_connecting_to(peer) {
            let Some(circ) = self.alloc_circ(peer) else {
                continue;
            };
            let Some(c) = self.relayed.get_mut(&local) else {
                continue;
            };
            let Next::Connecting { handshake, .. } = std::mem::replace(
                &mut c.next,
                Next::Extending {
                    to: (peer, circ),
                    deadline: now + self.settings.hop_timeout,
                },
            ) else {
                continue;
            };
            self.by_next.insert((peer, circ), local);
            self.send(
                peer,
                Cell::Create {
                    circ,
                    body: CreateBody {
                        handshake: HandshakeType::NTOR_X25519,
                        data: handshake,
                    },
                },
            );
        }
    }

    pub(super) fn relay_link_failed(&mut self, peer: NodeId) {
        for local in self.relays_connecting_to(peer) {
            self.relay_teardown(local, None, DestroyReason::CONNECT_FAILED);
        }
    }

    pub(super) fn relay_link_down(&mut self, peer: NodeId) {
        let gone: Vec<(Slot, Option<Side>)> = self
            .relayed
            .iter()
            .filter_map(|(&l, c)| {
                if c.prev.0 == peer {
                    Some((l, Some(Side::Prev)))
                } else if c.next_link().is_some_and(|(p, _)| p == peer) {
                    Some((l, Some(Side::Next)))
                } else if matches!(&c.next, Next::Connecting { to, .. } if *to == peer) {
                    Some((l, None))
                } else {
                    None
                }
            })
            .collect();
        for (local, side) in gone {
            self.relay_teardown(local, side, DestroyReason::LINK_CLOSED);
        }
    }

    pub(super) fn relay_timeouts(&mut self, now: Instant) {
        let stall = self.settings.exit_stall;
        let late: Vec<Slot> = self
            .relayed
            .iter()
            .filter(|(_, c)| c.deadline(stall).is_some_and(|d| d <= now))
            .map(|(&l, _)| l)
            .collect();
        for local in late {
            if self.exit_mut(local).is_some() {
                self.stats.exits_stalled += 1;
            }
            self.relay_teardown(local, None, DestroyReason::TIMEOUT);
        }
    }

    // ---- the exit ----

    fn exit_message(&mut self, local: Slot, msg: RelayMessage, now: Instant) {
        self.observe(crate::observe::Observation::Exit {
            at: self.me,
            msg: &msg,
        });
        match msg {
            RelayMessage::Extend {
                next,
                addrs,
                handshake,
                data,
            } => self.extend(local, next, addrs, handshake, data, now),
            RelayMessage::Get { stream, kind, key } => {
                if self.open_stream(local, stream, now) {
                    self.exit_route(local, stream, kind, key, Request::Get);
                }
            }
            RelayMessage::Put {
                stream,
                kind,
                key,
                len,
            } => {
                if self.open_stream(local, stream, now) {
                    let len = usize::try_from(len).unwrap_or(MAX_BLOCK_LEN);
                    if let Some(exit) = self.exit_mut(local) {
                        exit.streams.insert(
                            stream,
                            ExitStream::Receiving {
                                kind,
                                key,
                                len,
                                block: Vec::with_capacity(len),
                            },
                        );
                    }
                }
            }
            RelayMessage::Data { stream, data } => self.exit_data(local, stream, data),
            RelayMessage::End { stream, .. } => {
                // The client gave up on the stream; a late outcome is dropped.
                if let Some(exit) = self.exit_mut(local) {
                    if let Some(ExitStream::Routing { token }) = exit.streams.remove(&stream) {
                        self.routes.remove(&token);
                    }
                }
            }
            RelayMessage::Sendme { stream, cells } => {
                let Some(exit) = self.exit_mut(local) else {
                    return;
                };
                if exit.window.sendme(stream, cells, now).is_err() {
                    // More than was ever sent: a client trying to make the
                    // relays buffer for it.
                    self.relay_teardown(local, None, DestroyReason::PROTOCOL);
                    return;
                }
                self.exit_flush(local, now);
            }
            RelayMessage::Extended { .. } => {
                self.relay_teardown(local, None, DestroyReason::PROTOCOL);
            }
            RelayMessage::Drop | RelayMessage::Unrecognized { .. } => {}
        }
    }

    fn exit_mut(&mut self, local: Slot) -> Option<&mut Exit> {
        match self.relayed.get_mut(&local) {
            Some(RelayCirc {
                next: Next::Exit(exit),
                ..
            }) => Some(exit),
            _ => None,
        }
    }

    fn extend(
        &mut self,
        local: Slot,
        next: NodeId,
        addrs: Vec<crate::wire::NodeAddr>,
        handshake: HandshakeType,
        data: Vec<u8>,
        now: Instant,
    ) {
        let Some(c) = self.relayed.get(&local) else {
            return;
        };
        let fresh = matches!(&c.next, Next::Exit(e) if e.streams.is_empty());
        if !fresh || handshake != HandshakeType::NTOR_X25519 || next == self.me || next == c.prev.0
        {
            self.relay_teardown(local, None, DestroyReason::PROTOCOL);
            return;
        }
        if self.links.contains_key(&next) {
            let Some(circ) = self.alloc_circ(next) else {
                return;
            };
            if let Some(c) = self.relayed.get_mut(&local) {
                c.next = Next::Extending {
                    to: (next, circ),
                    deadline: now + self.settings.hop_timeout,
                };
            }
            self.by_next.insert((next, circ), local);
            self.send(
                next,
                Cell::Create {
                    circ,
                    body: CreateBody { handshake, data },
                },
            );
        } else if addrs.is_empty() {
            self.relay_teardown(local, None, DestroyReason::CONNECT_FAILED);
        } else {
            if let Some(c) = self.relayed.get_mut(&local) {
                c.next = Next::Connecting {
                    to: next,
                    handshake: data,
                    deadline: now + self.settings.hop_timeout,
                };
            }
            self.actions.push_back(Action::Connect { to: next, addrs });
        }
    }

    /// Check a new stream may open; refuse it (with an end) if not.
    fn open_stream(&mut self, local: Slot, stream: StreamId, now: Instant) -> bool {
        let prev = self.relayed.get(&local).map(|c| c.prev.0);
        let from_link = self
            .routes
            .values()
            .filter(|(l, _)| self.relayed.get(l).map(|c| c.prev.0) == prev)
            .count();
        let full = self.exit_queued >= self.settings.exit_unread
            || from_link >= self.settings.exit_routes_per_link;
        let Some(exit) = self.exit_mut(local) else {
            return false;
        };
        if exit.streams.contains_key(&stream) {
            self.relay_teardown(local, None, DestroyReason::PROTOCOL);
            return false;
        }
        if full || exit.streams.len() + exit.window.queued_ends() >= MAX_STREAMS {
            self.stats.exit_refused += 1;
            self.exit_send(
                local,
                RelayMessage::End {
                    stream,
                    status: EndStatus::REJECTED,
                },
                now,
            );
            return false;
        }
        true
    }

    fn exit_route(
        &mut self,
        local: Slot,
        stream: StreamId,
        kind: KeyKind,
        key: RoutingKey,
        request: Request,
    ) {
        let token = self.tokens.issue();
        if let Some(exit) = self.exit_mut(local) {
            exit.streams.insert(stream, ExitStream::Routing { token });
            self.routes.insert(token, (local, stream));
            self.actions.push_back(Action::Route {
                token,
                kind,
                key,
                request,
            });
        }
    }

    fn exit_data(&mut self, local: Slot, stream: StreamId, data: Vec<u8>) {
        let Some(exit) = self.exit_mut(local) else {
            return;
        };
        let sendme = exit.window.received();
        let mut complete = None;
        let mut bad = false;
        if let Some(ExitStream::Receiving {
            kind,
            key,
            len,
            block,
        }) = exit.streams.get_mut(&stream)
        {
            if block.len() + data.len() > *len {
                bad = true;
            } else {
                block.extend_from_slice(&data);
                if block.len() == *len {
                    complete = Some((*kind, *key, std::mem::take(block)));
                }
            }
        } else if exit.streams.contains_key(&stream) {
            bad = true;
        }
        // Data for a stream that is gone (ended by the client) is counted
        // for the window and dropped.
        if bad {
            self.relay_teardown(local, None, DestroyReason::PROTOCOL);
            return;
        }
        if sendme {
            self.send_backward(
                local,
                &RelayMessage::Sendme {
                    stream: StreamId::CIRCUIT,
                    cells: SENDME_EVERY,
                },
            );
        }
        if let Some((kind, key, block)) = complete {
            self.exit_route(local, stream, kind, key, Request::Put(block));
        }
    }

    /// The routed request behind an exit stream ended.
    pub fn route_done(&mut self, token: Token, outcome: Outcome, now: Instant) {
        let Some((local, stream)) = self.routes.remove(&token) else {
            return;
        };
        let Some(exit) = self.exit_mut(local) else {
            return;
        };
        exit.streams.remove(&stream);
        let status = match outcome {
            Outcome::Found(block) => {
                for chunk in block.chunks(RELAY_BODY_MAX) {
                    self.exit_send(
                        local,
                        RelayMessage::Data {
                            stream,
                            data: chunk.to_vec(),
                        },
                        now,
                    );
                }
                EndStatus::OK
            }
            Outcome::Stored => EndStatus::OK,
            Outcome::DataNotFound => EndStatus::DATA_NOT_FOUND,
            Outcome::RouteNotFound => EndStatus::ROUTE_NOT_FOUND,
            Outcome::Timeout => EndStatus::TIMEOUT,
            Outcome::Rejected => EndStatus::REJECTED,
        };
        self.exit_send(local, RelayMessage::End { stream, status }, now);
    }

    /// Queue a stream message toward the client, behind the window.
    fn exit_send(&mut self, local: Slot, msg: RelayMessage, now: Instant) {
        if let Some(exit) = self.exit_mut(local) {
            let before = exit.window.queued_bytes();
            exit.window.push(msg);
            let after = exit.window.queued_bytes();
            self.exit_queued = self.exit_queued + after - before;
            self.exit_flush(local, now);
        }
    }

    /// Send what the window allows, in order, and note whether the rest
    /// waits on a client that does not read.
    fn exit_flush(&mut self, local: Slot, now: Instant) {
        let out = match self.exit_mut(local) {
            Some(exit) => {
                let before = exit.window.queued_bytes();
                let out = exit.window.drain(now);
                exit.stalled_since = match (exit.window.stalled(), out.is_empty()) {
                    (false, _) => None,
                    (true, true) => exit.stalled_since.or(Some(now)),
                    (true, false) => Some(now),
                };
                let after = exit.window.queued_bytes();
                self.exit_queued = self.exit_queued + after - before;
                out
            }
            None => return,
        };
        for m in out {
            self.send_backward(local, &m);
        }
    }

    /// Seal a message as this circuit's last hop and send it toward the
    /// client.
    fn send_backward(&mut self, local: Slot, msg: &RelayMessage) {
        let Some(c) = self.relayed.get_mut(&local) else {
            return;
        };
        let sealed = msg
            .encode_payload()
            .map_err(|_| ())
            .and_then(|p| c.layer.seal_backward(&p).map_err(|_| ()));
        match sealed {
            Ok(onion) => {
                let (to, circ) = c.prev;
                self.send(to, Cell::Relay { circ, onion });
            }
            Err(()) => self.relay_teardown(local, None, DestroyReason::INTERNAL),
        }
    }
}
