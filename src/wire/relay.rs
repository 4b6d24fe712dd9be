//! Relay messages: what the client and the exit say to each other inside the
//! onion layers of relay cells.
//!
//! Layout (`docs/protocol.md`, "Relay messages"): command (u8), stream (u16),
//! body length (u16), body. The message sits at the start of the
//! [`RELAY_PAYLOAD_LEN`] bytes left once every layer is off; what follows it
//! is padding that the parser ignores, because in the forward direction it
//! is, by design, pseudorandom filler whose length would betray the circuit
//! length if anyone checked it.

use super::cell::{read_handshake, write_handshake};
use super::message::{read_addrs, write_addrs};
use super::{
    open_code, Error, HandshakeType, KeyKind, NodeAddr, NodeId, Reader, RoutingKey, Writer,
    MAX_BLOCK_LEN, RELAY_BODY_MAX, RELAY_HEADER_LEN, RELAY_PAYLOAD_LEN,
};

/// A request stream inside a circuit. Stream 0 is the circuit itself
/// (extend, extended, circuit-level flow control, drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u16);

impl StreamId {
    pub const CIRCUIT: StreamId = StreamId(0);
}

open_code! {
    /// A relay message's command byte.
    RelayCommand {
        EXTEND = 1,
        EXTENDED = 2,
        GET = 3,
        PUT = 4,
        DATA = 5,
        END = 6,
        SENDME = 7,
        /// Long-range padding: the exit discards it.
        DROP = 8,
    }
}

open_code! {
    /// How a request stream ended, as the client sees it. Deliberately says
    /// nothing of where in the network a failure happened.
    EndStatus {
        /// Get: the block was sent. Put: the block was stored.
        OK = 0,
        /// The key's successor does not hold the block.
        DATA_NOT_FOUND = 1,
        /// Every branch of the search failed.
        ROUTE_NOT_FOUND = 2,
        TIMEOUT = 3,
        /// Overloaded; try later.
        REJECTED = 4,
        /// The request itself was malformed.
        BAD_REQUEST = 5,
        INTERNAL = 6,
    }
}

/// A relay message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMessage {
    /// Client to the circuit's current last hop: extend to `next`.
    Extend {
        next: NodeId,
        addrs: Vec<NodeAddr>,
        handshake: HandshakeType,
        data: Vec<u8>,
    },
    /// The new last hop's handshake reply, relayed back.
    Extended {
        data: Vec<u8>,
    },
    /// Client to exit: fetch a block and stream it back.
    Get {
        stream: StreamId,
        kind: KeyKind,
        key: RoutingKey,
    },
    /// Client to exit: a block of `len` bytes follows in data messages.
    Put {
        stream: StreamId,
        kind: KeyKind,
        key: RoutingKey,
        len: u32,
    },
    Data {
        stream: StreamId,
        data: Vec<u8>,
    },
    End {
        stream: StreamId,
        status: EndStatus,
    },
    /// Flow control: the sender may send `cells` more data cells.
    Sendme {
        stream: StreamId,
        cells: u16,
    },
    Drop,
    /// A command this version does not know.
    Unrecognized {
        command: RelayCommand,
        stream: StreamId,
        body: Vec<u8>,
    },
}

impl RelayMessage {
    pub fn command(&self) -> RelayCommand {
        match self {
            RelayMessage::Extend { .. } => RelayCommand::EXTEND,
            RelayMessage::Extended { .. } => RelayCommand::EXTENDED,
            RelayMessage::Get { .. } => RelayCommand::GET,
            RelayMessage::Put { .. } => RelayCommand::PUT,
            RelayMessage::Data { .. } => RelayCommand::DATA,
            RelayMessage::End { .. } => RelayCommand::END,
            RelayMessage::Sendme { .. } => RelayCommand::SENDME,
            RelayMessage::Drop => RelayCommand::DROP,
            RelayMessage::Unrecognized { command, .. } => *command,
        }
    }

    pub fn stream(&self) -> StreamId {
        match self {
            RelayMessage::Extend { .. } | RelayMessage::Extended { .. } | RelayMessage::Drop => {
                StreamId::CIRCUIT
            }
            RelayMessage::Get { stream, .. }
            | RelayMessage::Put { stream, .. }
            | RelayMessage::Data { stream, .. }
            | RelayMessage::End { stream, .. }
            | RelayMessage::Sendme { stream, .. }
            | RelayMessage::Unrecognized { stream, .. } => *stream,
        }
    }

    /// Parse the message at the start of a decrypted relay payload; the
    /// bytes after it are padding and are not looked at.
    pub fn decode(payload: &[u8]) -> Result<RelayMessage, Error> {
        let mut r = Reader::new(payload, "relay message");
        let command = RelayCommand(r.u8()?);
        let stream = StreamId(r.u16()?);
        let len = usize::from(r.u16()?);
        let len = r.bounded_len(len, RELAY_BODY_MAX, "relay message body")?;
        let mut b = r.take_sub(len, "relay message body")?;
        let circuit_level = |stream: StreamId| {
            if stream == StreamId::CIRCUIT {
                Ok(())
            } else {
                Err(Error::BadValue {
                    what: "stream of a circuit-level relay message",
                    value: u64::from(stream.0),
                })
            }
        };
        let request_level = |stream: StreamId| {
            if stream == StreamId::CIRCUIT {
                Err(Error::BadValue {
                    what: "stream of a request relay message",
                    value: 0,
                })
            } else {
                Ok(())
            }
        };
        let msg = match command {
            RelayCommand::EXTEND => {
                circuit_level(stream)?;
                let next = NodeId(b.array()?);
                let addrs = read_addrs(&mut b)?;
                let handshake = HandshakeType(b.u16()?);
                let data = read_handshake(&mut b)?;
                RelayMessage::Extend {
                    next,
                    addrs,
                    handshake,
                    data,
                }
            }
            RelayCommand::EXTENDED => {
                circuit_level(stream)?;
                RelayMessage::Extended {
                    data: read_handshake(&mut b)?,
                }
            }
            RelayCommand::GET => {
                request_level(stream)?;
                RelayMessage::Get {
                    stream,
                    kind: KeyKind(b.u8()?),
                    key: RoutingKey(b.array()?),
                }
            }
            RelayCommand::PUT => {
                request_level(stream)?;
                let kind = KeyKind(b.u8()?);
                let key = RoutingKey(b.array()?);
                let len = b.u32()?;
                check_put_len(len)?;
                RelayMessage::Put {
                    stream,
                    kind,
                    key,
                    len,
                }
            }
            RelayCommand::DATA => {
                request_level(stream)?;
                RelayMessage::Data {
                    stream,
                    data: b.take_rest().to_vec(),
                }
            }
            RelayCommand::END => {
                request_level(stream)?;
                RelayMessage::End {
                    stream,
                    status: EndStatus(b.u8()?),
                }
            }
            RelayCommand::SENDME => RelayMessage::Sendme {
                stream,
                cells: b.u16()?,
            },
            RelayCommand::DROP => {
                // Its size is the cell's; a body would add nothing.
                circuit_level(stream)?;
                RelayMessage::Drop
            }
            command => RelayMessage::Unrecognized {
                command,
                stream,
                body: b.take_rest().to_vec(),
            },
        };
        b.finish()?;
        Ok(msg)
    }

    /// Encode header and body; the caller pads to [`RELAY_PAYLOAD_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut body = Writer::new();
        match self {
            RelayMessage::Extend {
                next,
                addrs,
                handshake,
                data,
            } => {
                body.bytes(&next.0);
                write_addrs(&mut body, addrs)?;
                body.u16(handshake.0);
                write_handshake(&mut body, data)?;
            }
            RelayMessage::Extended { data } => write_handshake(&mut body, data)?,
            RelayMessage::Get { kind, key, .. } => {
                body.u8(kind.0);
                body.bytes(&key.0);
            }
            RelayMessage::Put { kind, key, len, .. } => {
                check_put_len(*len)?;
                body.u8(kind.0);
                body.bytes(&key.0);
                body.u32(*len);
            }
            RelayMessage::Data { data, .. } => body.bytes(data),
            RelayMessage::End { status, .. } => body.u8(status.0),
            RelayMessage::Sendme { cells, .. } => body.u16(*cells),
            RelayMessage::Drop => {}
            RelayMessage::Unrecognized { body: b, .. } => body.bytes(b),
        }
        let mut w = Writer::with_capacity(RELAY_HEADER_LEN + body.len());
        w.u8(self.command().0);
        w.u16(self.stream().0);
        w.len_u16(body.len(), RELAY_BODY_MAX, "relay message body")?;
        w.bytes(body.as_slice());
        Ok(w.into_vec())
    }

    /// Encode into a full payload, zero padded.
    pub fn encode_payload(&self) -> Result<Box<[u8; RELAY_PAYLOAD_LEN]>, Error> {
        let bytes = self.encode()?;
        let mut out = Box::new([0u8; RELAY_PAYLOAD_LEN]);
        // `encode` bounded the body so header + body fits.
        out[..bytes.len()].copy_from_slice(&bytes);
        Ok(out)
    }
}

/// A put announces its block's length; no block is longer than
/// [`MAX_BLOCK_LEN`].
fn check_put_len(len: u32) -> Result<(), Error> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_BLOCK_LEN {
        return Err(Error::TooLong {
            what: "put length",
            len,
            max: MAX_BLOCK_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_after_the_message_is_ignored() {
        let m = RelayMessage::End {
            stream: StreamId(3),
            status: EndStatus::DATA_NOT_FOUND,
        };
        let mut payload = *m.encode_payload().unwrap();
        payload[100..].fill(0xa5);
        assert_eq!(RelayMessage::decode(&payload).unwrap(), m);
    }

    #[test]
    fn request_messages_need_a_stream_and_circuit_messages_refuse_one() {
        let get = RelayMessage::Get {
            stream: StreamId::CIRCUIT,
            kind: KeyKind::CHK,
            key: RoutingKey([0; 32]),
        };
        let bytes = get.encode().unwrap();
        assert!(matches!(
            RelayMessage::decode(&bytes),
            Err(Error::BadValue { .. })
        ));
        let mut drop = RelayMessage::Drop.encode().unwrap();
        drop[2] = 1;
        assert!(matches!(
            RelayMessage::decode(&drop),
            Err(Error::BadValue { .. })
        ));
    }

    #[test]
    fn largest_data_message_fits_a_payload() {
        let m = RelayMessage::Data {
            stream: StreamId(1),
            data: vec![7; RELAY_BODY_MAX],
        };
        let p = m.encode_payload().unwrap();
        assert_eq!(RelayMessage::decode(&p[..]).unwrap(), m);
        let too_big = RelayMessage::Data {
            stream: StreamId(1),
            data: vec![7; RELAY_BODY_MAX + 1],
        };
        assert!(matches!(too_big.encode(), Err(Error::TooLong { .. })));
    }
}
