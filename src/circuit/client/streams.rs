//! The client's streams on a built circuit: one per request, data sent
//! behind the circuit's window, answers read off the exit's messages, and
//! requests that outlive their deadline given up.

use super::*;

impl Circuits {
    /// Open streams for waiting requests, up to [`MAX_STREAMS`].
    pub(super) fn start_streams(&mut self, local: Slot, now: Instant) {
        loop {
            let Some(c) = self.own.get_mut(&local) else {
                return;
            };
            if !matches!(c.state, State::Ready) || c.streams.len() >= MAX_STREAMS {
                return;
            }
            let Some(p) = c.waiting.pop_front() else {
                return;
            };
            let mut stream = StreamId(c.next_stream);
            while stream == StreamId::CIRCUIT || c.streams.contains_key(&stream) {
                c.next_stream = c.next_stream.wrapping_add(1);
                stream = StreamId(c.next_stream);
            }
            c.next_stream = c.next_stream.wrapping_add(1);
            match p.request {
                Request::Get => {
                    c.streams.insert(
                        stream,
                        Stream::Get {
                            token: p.token,
                            block: Vec::new(),
                            deadline: p.deadline,
                        },
                    );
                    self.send_forward(
                        local,
                        &RelayMessage::Get {
                            stream,
                            kind: p.kind,
                            key: p.key,
                        },
                    );
                }
                Request::Put(block) => {
                    let Ok(len) = u32::try_from(block.len()) else {
                        continue;
                    };
                    if block.len() > MAX_BLOCK_LEN {
                        self.actions.push_back(Action::Done {
                            token: p.token,
                            result: Err(CircuitError::BadRequest),
                        });
                        continue;
                    }
                    c.streams.insert(
                        stream,
                        Stream::Put {
                            token: p.token,
                            deadline: p.deadline,
                        },
                    );
                    for chunk in block.chunks(RELAY_BODY_MAX) {
                        c.window.push(RelayMessage::Data {
                            stream,
                            data: chunk.to_vec(),
                        });
                    }
                    self.send_forward(
                        local,
                        &RelayMessage::Put {
                            stream,
                            kind: p.kind,
                            key: p.key,
                            len,
                        },
                    );
                    self.client_flush(local, now);
                }
            }
        }
    }

    /// Send queued data as far as the window allows.
    pub(super) fn client_flush(&mut self, local: Slot, now: Instant) {
        let out = match self.own.get_mut(&local) {
            Some(c) => c.window.drain(now),
            None => return,
        };
        for m in out {
            self.send_forward(local, &m);
        }
    }

    /// Wrap a message in every layer and send it to the first hop.
    pub(super) fn send_forward(&mut self, local: Slot, msg: &RelayMessage) {
        self.send_forward_as(local, msg, false);
    }

    /// [`Circuits::send_forward`] in a RELAY_EARLY cell: how an EXTEND
    /// must travel.
    pub(super) fn send_forward_early(&mut self, local: Slot, msg: &RelayMessage) {
        self.send_forward_as(local, msg, true);
    }

    fn send_forward_as(&mut self, local: Slot, msg: &RelayMessage, early: bool) {
        let Some(c) = self.own.get_mut(&local) else {
            return;
        };
        let Some(circ) = c.circ else {
            return;
        };
        let first = c.first();
        let onion = msg
            .encode_payload()
            .map_err(|_| ())
            .and_then(|p| c.layers.wrap_forward(&mut self.rng, &p).map_err(|_| ()));
        match onion {
            Ok(onion) if early => self.send(first, Cell::RelayEarly { circ, onion }),
            Ok(onion) => self.send(first, Cell::Relay { circ, onion }),
            Err(()) => self.close_own(local, DestroyReason::INTERNAL, CircuitError::Closed),
        }
    }

    /// A cell from the first hop on one of our circuits.
    pub(in crate::circuit) fn client_cell(
        &mut self,
        local: Slot,
        mut onion: Box<[u8; ONION_LEN]>,
        now: Instant,
    ) {
        let Some(c) = self.own.get_mut(&local) else {
            return;
        };
        let payload = match c.layers.unwrap_backward(&mut onion) {
            Ok(p) => p,
            Err(_) => {
                self.stats.bad_cells += 1;
                tracing::debug!("a cell on our circuit failed its layers");
                self.close_own(local, DestroyReason::BAD_LAYER, CircuitError::Closed);
                return;
            }
        };
        let msg = match RelayMessage::decode(&payload[..]) {
            Ok(m) => m,
            Err(_) => {
                self.client_violation(local, "malformed relay message from the exit");
                return;
            }
        };
        let building = !matches!(c.state, State::Ready);
        if let Some(obs) = &self.settings.observer {
            obs.observe(&crate::observe::Observation::Client {
                at: self.me,
                msg: &msg,
            });
        }
        match msg {
            RelayMessage::Extended { data } if building && !c.layers.is_empty() => {
                self.hop_done(local, &data, now);
            }
            _ if building => self.client_violation(local, "relay message during the build"),
            RelayMessage::Data { stream, data } => self.client_data(local, stream, data),
            RelayMessage::End { stream, status } => self.client_end(local, stream, status, now),
            RelayMessage::Sendme { stream, cells } => {
                if c.window.sendme(stream, cells, now).is_err() {
                    self.client_violation(local, "sendme beyond the window");
                    return;
                }
                self.client_flush(local, now);
            }
            RelayMessage::Drop | RelayMessage::Unrecognized { .. } => {}
            _ => self.client_violation(local, "unexpected relay message"),
        }
    }

    pub(super) fn client_data(&mut self, local: Slot, stream: StreamId, data: Vec<u8>) {
        let Some(c) = self.own.get_mut(&local) else {
            return;
        };
        let sendme = c.window.received();
        let bad = match c.streams.get_mut(&stream) {
            Some(Stream::Get { block, .. }) => {
                if block.len() + data.len() > MAX_BLOCK_LEN {
                    true
                } else {
                    block.extend_from_slice(&data);
                    false
                }
            }
            Some(Stream::Put { .. }) => true,
            // A stream we gave up on: counted for the window, dropped.
            None => false,
        };
        if bad {
            self.client_violation(local, "data beyond a block, or for a put");
            return;
        }
        if sendme {
            self.send_forward(
                local,
                &RelayMessage::Sendme {
                    stream: StreamId::CIRCUIT,
                    cells: SENDME_EVERY,
                },
            );
        }
    }

    pub(super) fn client_end(
        &mut self,
        local: Slot,
        stream: StreamId,
        status: EndStatus,
        now: Instant,
    ) {
        let Some(c) = self.own.get_mut(&local) else {
            return;
        };
        let Some(s) = c.streams.remove(&stream) else {
            return;
        };
        let result = match (s, status) {
            (Stream::Get { token, block, .. }, EndStatus::OK) => (token, Ok(Outcome::Found(block))),
            (Stream::Put { token, .. }, EndStatus::OK) => (token, Ok(Outcome::Stored)),
            (s, status) => (
                s.token(),
                match status {
                    EndStatus::DATA_NOT_FOUND => Ok(Outcome::DataNotFound),
                    EndStatus::TIMEOUT => Ok(Outcome::Timeout),
                    EndStatus::REJECTED => Ok(Outcome::Rejected),
                    EndStatus::BAD_REQUEST => Err(CircuitError::BadRequest),
                    _ => Ok(Outcome::RouteNotFound),
                },
            ),
        };
        self.actions.push_back(Action::Done {
            token: result.0,
            result: result.1,
        });
        // The exit answered: the circuit works end to end.
        self.judge(local, true);
        self.start_streams(local, now);
        self.maybe_finish(local);
    }

    /// A retired circuit with nothing left to do is destroyed.
    pub(super) fn maybe_finish(&mut self, local: Slot) {
        if self
            .own
            .get(&local)
            .is_some_and(|c| c.retired && c.is_idle() && matches!(c.state, State::Ready))
        {
            self.close_own(local, DestroyReason::FINISHED, CircuitError::Closed);
        }
    }

    pub(super) fn client_violation(&mut self, local: Slot, why: &'static str) {
        tracing::debug!("circuit protocol violation: {why}");
        self.close_own(local, DestroyReason::PROTOCOL, CircuitError::Closed);
    }

    pub(in crate::circuit) fn client_timeouts(&mut self, now: Instant) {
        let locals: Vec<Slot> = self.own.keys().copied().collect();
        for local in locals {
            let Some(c) = self.own.get_mut(&local) else {
                continue;
            };
            let build_late = match &c.state {
                State::Connecting { deadline } | State::Handshaking { deadline, .. } => {
                    *deadline <= now
                }
                State::Ready => false,
            };
            if build_late {
                self.client_failed(local, now);
                continue;
            }
            let late: Vec<StreamId> = c
                .streams
                .iter()
                .filter(|(_, s)| s.deadline() <= now)
                .map(|(&id, _)| id)
                .collect();
            let mut out = Vec::new();
            for &stream in &late {
                if let Some(s) = c.streams.remove(&stream) {
                    out.push(s.token());
                    c.window.forget(stream);
                }
            }
            let (expired, rest): (Vec<Pending>, Vec<Pending>) =
                c.waiting.drain(..).partition(|p| p.deadline <= now);
            c.waiting = rest.into();
            out.extend(expired.into_iter().map(|p| p.token));
            if !c.retired && c.born + self.settings.lifetime <= now {
                let iso = c.iso;
                if self.current.get(&iso) == Some(&local) {
                    self.retire_current(iso);
                } else if let Some(c) = self.own.get_mut(&local) {
                    c.retired = true;
                }
            }
            if !late.is_empty() {
                self.judge(local, false);
            }
            for token in out {
                self.actions.push_back(Action::Done {
                    token,
                    result: Err(CircuitError::Timeout),
                });
            }
            // Tell the exit to drop the streams; what it already sent still
            // counts for the window.
            for stream in late {
                self.send_forward(
                    local,
                    &RelayMessage::End {
                        stream,
                        status: EndStatus::TIMEOUT,
                    },
                );
            }
            self.maybe_finish(local);
        }
    }
}
