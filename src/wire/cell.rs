//! Link cells: the fixed-size unit every circuit moves in.
//!
//! Layout (`docs/protocol.md`, "Cells"): circuit id (u32), command (u8), and
//! a body of [`ONION_LEN`] bytes. Every cell is exactly [`CELL_LEN`] bytes,
//! whatever it carries, so an observer of a link cannot tell a create from
//! data, or a short document from a long one.

use super::{
    open_code, Error, Reader, Writer, CELL_HEADER_LEN, CELL_LEN, MAX_HANDSHAKE_LEN, ONION_LEN,
};

/// A circuit's number on one link. Zero means "no circuit" and is used only
/// by link padding. The dialer of a link allocates ids with the high bit set,
/// the acceptor ids with it clear, so the two ends never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircId(pub u32);

impl CircId {
    pub const NONE: CircId = CircId(0);
    pub const DIALER_BIT: u32 = 0x8000_0000;
}

open_code! {
    /// A cell's command byte.
    CellCommand {
        PADDING = 0,
        CREATE = 1,
        CREATED = 2,
        RELAY = 3,
        DESTROY = 4,
        RELAY_EARLY = 5,
    }
}

open_code! {
    /// Why a circuit was destroyed. Sent hop by hop in both directions; it
    /// never says where on the circuit the failure happened.
    DestroyReason {
        NONE = 0,
        /// The peer broke the protocol.
        PROTOCOL = 1,
        /// An internal error at some hop.
        INTERNAL = 2,
        /// The client asked for it.
        REQUESTED = 3,
        /// A hop is out of memory, circuits or links.
        RESOURCE_LIMIT = 4,
        /// An extend could not reach the next relay.
        CONNECT_FAILED = 5,
        /// A layer did not authenticate: a cell was altered, replayed or
        /// reordered.
        BAD_LAYER = 6,
        /// A hop timed out.
        TIMEOUT = 7,
        /// The circuit reached its lifetime or request budget.
        FINISHED = 8,
        /// The link to a neighbouring hop closed.
        LINK_CLOSED = 9,
    }
}

/// The handshake a create or extend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandshakeType(pub u16);

impl HandshakeType {
    /// `crypto::handshake`: ntor-style over X25519, HKDF-SHA256.
    pub const NTOR_X25519: HandshakeType = HandshakeType(1);
}

/// Body of a create cell: which handshake, and its client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateBody {
    pub handshake: HandshakeType,
    pub data: Vec<u8>,
}

/// Body of a created cell: the relay's handshake reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedBody {
    pub data: Vec<u8>,
}

/// What a cell carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Link padding; body all zero. May use any circuit id.
    Padding {
        circ: CircId,
    },
    Create {
        circ: CircId,
        body: CreateBody,
    },
    Created {
        circ: CircId,
        body: CreatedBody,
    },
    /// Onion layers: opaque to the link.
    Relay {
        circ: CircId,
        onion: Box<[u8; ONION_LEN]>,
    },
    /// A relay cell that may carry an EXTEND. Every relay passes it on as
    /// such toward the exit and lets a circuit carry only
    /// [`MAX_EXTENDS`](crate::wire::MAX_EXTENDS) of them, so no client can
    /// make a circuit longer than [`MAX_HOPS`](crate::wire::MAX_HOPS).
    RelayEarly {
        circ: CircId,
        onion: Box<[u8; ONION_LEN]>,
    },
    Destroy {
        circ: CircId,
        reason: DestroyReason,
    },
    /// A command this version does not know. The body is kept so that the
    /// value re-encodes to the same bytes; the link decides what to do.
    Unrecognized {
        circ: CircId,
        command: CellCommand,
        body: Box<[u8; ONION_LEN]>,
    },
}

impl Cell {
    pub fn circ(&self) -> CircId {
        match self {
            Cell::Padding { circ }
            | Cell::Create { circ, .. }
            | Cell::Created { circ, .. }
            | Cell::Relay { circ, .. }
            | Cell::RelayEarly { circ, .. }
            | Cell::Destroy { circ, .. }
            | Cell::Unrecognized { circ, .. } => *circ,
        }
    }

    pub fn command(&self) -> CellCommand {
        match self {
            Cell::Padding { .. } => CellCommand::PADDING,
            Cell::Create { .. } => CellCommand::CREATE,
            Cell::Created { .. } => CellCommand::CREATED,
            Cell::Relay { .. } => CellCommand::RELAY,
            Cell::RelayEarly { .. } => CellCommand::RELAY_EARLY,
            Cell::Destroy { .. } => CellCommand::DESTROY,
            Cell::Unrecognized { command, .. } => *command,
        }
    }

    /// Parse exactly one cell of [`CELL_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Cell, Error> {
        if bytes.len() != CELL_LEN {
            return Err(Error::WrongLength {
                what: "cell",
                len: bytes.len(),
                expected: CELL_LEN,
            });
        }
        let mut r = Reader::new(bytes, "cell");
        let circ = CircId(r.u32()?);
        let command = CellCommand(r.u8()?);
        let body = r.array::<ONION_LEN>()?;
        r.finish()?;
        if circ == CircId::NONE && command != CellCommand::PADDING {
            return Err(Error::BadValue {
                what: "circuit id of a circuit cell",
                value: 0,
            });
        }
        let cell = match command {
            CellCommand::PADDING => {
                Reader::new(&body, "padding cell").finish_zero_padded()?;
                Cell::Padding { circ }
            }
            CellCommand::CREATE => {
                let mut r = Reader::new(&body, "create cell");
                let handshake = HandshakeType(r.u16()?);
                let data = read_handshake(&mut r)?;
                r.finish_zero_padded()?;
                Cell::Create {
                    circ,
                    body: CreateBody { handshake, data },
                }
            }
            CellCommand::CREATED => {
                let mut r = Reader::new(&body, "created cell");
                let data = read_handshake(&mut r)?;
                r.finish_zero_padded()?;
                Cell::Created {
                    circ,
                    body: CreatedBody { data },
                }
            }
            CellCommand::RELAY => Cell::Relay {
                circ,
                onion: Box::new(body),
            },
            CellCommand::RELAY_EARLY => Cell::RelayEarly {
                circ,
                onion: Box::new(body),
            },
            CellCommand::DESTROY => {
                let mut r = Reader::new(&body, "destroy cell");
                let reason = DestroyReason(r.u8()?);
                r.finish_zero_padded()?;
                Cell::Destroy { circ, reason }
            }
            command => Cell::Unrecognized {
                circ,
                command,
                body: Box::new(body),
            },
        };
        Ok(cell)
    }

    /// Encode to exactly [`CELL_LEN`] bytes. Fails only if a handshake is
    /// longer than [`MAX_HANDSHAKE_LEN`], which the parser would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::with_capacity(CELL_LEN);
        self.encode_into(&mut w)?;
        Ok(w.into_vec())
    }

    pub fn encode_into(&self, w: &mut Writer) -> Result<(), Error> {
        let start = w.len();
        w.u32(self.circ().0);
        w.u8(self.command().0);
        match self {
            Cell::Padding { .. } => {}
            Cell::Create { body, .. } => {
                w.u16(body.handshake.0);
                write_handshake(w, &body.data)?;
            }
            Cell::Created { body, .. } => write_handshake(w, &body.data)?,
            Cell::Relay { onion, .. } | Cell::RelayEarly { onion, .. } => w.bytes(&onion[..]),
            Cell::Destroy { reason, .. } => w.u8(reason.0),
            Cell::Unrecognized { body, .. } => w.bytes(&body[..]),
        }
        let used = w.len() - start;
        debug_assert!(used <= CELL_LEN);
        w.bytes(&[0u8; CELL_LEN][..CELL_LEN - used]);
        Ok(())
    }
}

pub(super) fn read_handshake(r: &mut Reader<'_>) -> Result<Vec<u8>, Error> {
    let len = usize::from(r.u16()?);
    let len = r.bounded_len(len, MAX_HANDSHAKE_LEN, "handshake")?;
    Ok(r.take(len)?.to_vec())
}

pub(super) fn write_handshake(w: &mut Writer, data: &[u8]) -> Result<(), Error> {
    w.len_u16(data.len(), MAX_HANDSHAKE_LEN, "handshake")?;
    w.bytes(data);
    Ok(())
}

// Keep the header constant honest.
const _: () = assert!(CELL_HEADER_LEN == 4 + 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_is_the_same_size() {
        let cells = [
            Cell::Padding { circ: CircId(0) },
            Cell::Create {
                circ: CircId(9),
                body: CreateBody {
                    handshake: HandshakeType::NTOR_X25519,
                    data: vec![1; 96],
                },
            },
            Cell::Created {
                circ: CircId(9),
                body: CreatedBody { data: vec![2; 64] },
            },
            Cell::Relay {
                circ: CircId(9),
                onion: Box::new([3; ONION_LEN]),
            },
            Cell::RelayEarly {
                circ: CircId(9),
                onion: Box::new([4; ONION_LEN]),
            },
            Cell::Destroy {
                circ: CircId(9),
                reason: DestroyReason::BAD_LAYER,
            },
        ];
        for c in cells {
            let bytes = c.encode().unwrap();
            assert_eq!(bytes.len(), CELL_LEN);
            assert_eq!(Cell::decode(&bytes).unwrap(), c);
        }
    }

    #[test]
    fn oversized_handshake_is_refused_both_ways() {
        let c = Cell::Create {
            circ: CircId(1),
            body: CreateBody {
                handshake: HandshakeType(1),
                data: vec![0; MAX_HANDSHAKE_LEN + 1],
            },
        };
        assert!(matches!(c.encode(), Err(Error::TooLong { .. })));
        let mut bytes = vec![0u8; CELL_LEN];
        bytes[3] = 1;
        bytes[4] = CellCommand::CREATE.0;
        bytes[7..9].copy_from_slice(&4000u16.to_be_bytes());
        assert!(matches!(Cell::decode(&bytes), Err(Error::TooLong { .. })));
    }

    #[test]
    fn unknown_commands_are_values() {
        let mut bytes = vec![0u8; CELL_LEN];
        bytes[3] = 5;
        bytes[4] = 0xee;
        bytes[100] = 1;
        let c = Cell::decode(&bytes).unwrap();
        assert_eq!(c.command(), CellCommand(0xee));
        assert_eq!(format!("{:?}", c.command()), "CellCommand(0xee)");
        assert_eq!(c.encode().unwrap(), bytes);
    }
}
