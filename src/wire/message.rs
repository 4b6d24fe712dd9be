//! Peer messages: what neighbouring nodes say to each other outside any
//! circuit, for the Chord ring and for routed requests.
//!
//! Layout (`docs/protocol.md`, "Peer messages"): kind (u8) and a body whose
//! shape the kind fixes. Messages are variable-length and framed on a link
//! stream (see `frame`); they never exceed [`MAX_MESSAGE_LEN`]. Routed
//! requests are started by circuit exits, never by the requester, so their
//! sizes reveal nothing about who asked (`docs/threat-model.md`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    open_code, Error, NodeId, Reader, RoutingKey, Writer, MAX_ADDRS, MAX_BLOCK_LEN, MAX_FINGERS,
    MAX_MESSAGE_LEN, MAX_SUCCESSORS,
};

/// A routed request's random id, used for loop detection and to send the
/// answer back the way the request came.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({:016x})", self.0)
    }
}

open_code! {
    /// Which kind of document key a routing key belongs to; it decides how
    /// every node verifies a block against the key.
    KeyKind {
        /// Content-hash key: routing key = SHA-256 of the block.
        CHK = 1,
        /// Signed-subspace key (keyword keys are signed keys too).
        SSK = 2,
        /// A CHK block stored at one of its copy positions: routing key =
        /// SHA-256 of a context, the copy's index and the block's CHK
        /// routing key. Document roots are stored so, to outlive their
        /// holders.
        COPY = 3,
    }
}

impl KeyKind {
    /// Whether a block under this kind of key never changes, so that any
    /// holder, a cache included, may answer for it.
    pub fn immutable(self) -> bool {
        self == KeyKind::CHK || self == KeyKind::COPY
    }
}

open_code! {
    /// A peer message's kind byte.
    MessageKind {
        PING = 0x01,
        PONG = 0x02,
        FIND_SUCCESSOR = 0x03,
        FIND_SUCCESSOR_REPLY = 0x04,
        GET_PREDECESSOR = 0x05,
        PREDECESSOR_REPLY = 0x06,
        NOTIFY = 0x07,
        LEAVING = 0x08,
        HELLO = 0x09,
        OBSERVED = 0x0a,
        PROBE = 0x0b,
        GET_TABLE = 0x0c,
        TABLE = 0x0d,
        GET_TABLE_VIA = 0x0e,
        TABLE_VIA = 0x0f,
        GET = 0x20,
        PUT = 0x21,
        DATA = 0x22,
        DATA_NOT_FOUND = 0x23,
        ROUTE_NOT_FOUND = 0x24,
        LOOP = 0x25,
        STORED = 0x26,
        REJECTED = 0x27,
        STORE_REPLICA = 0x28,
    }
}

/// A transport address of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeAddr(pub SocketAddr);

/// A node's signed self-description: identity key, onion key, addresses and
/// when it was made. The signature covers every other field
/// (`crypto::identity` makes and checks it); parsing here checks only form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDescriptor {
    /// Ed25519 public key; the node id is its SHA-256.
    pub identity: [u8; 32],
    /// X25519 public key for circuit handshakes.
    pub onion_key: [u8; 32],
    /// Seconds since the Unix epoch.
    pub published: u64,
    /// [`NodeDescriptor::FLAG_RELAY`]; other bits are reserved, kept and
    /// signed.
    pub flags: u8,
    pub addrs: Vec<NodeAddr>,
    pub signature: [u8; 64],
}

impl NodeDescriptor {
    /// The node relays circuits and accepts inbound links.
    pub const FLAG_RELAY: u8 = 0x01;
    /// Smallest encoding: no addresses.
    pub const MIN_LEN: usize = 32 + 32 + 8 + 1 + 1 + 64;

    /// The bytes the signature covers: every field but the signature.
    pub fn signed_part(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        self.write_unsigned(&mut w)?;
        Ok(w.into_vec())
    }

    fn write_unsigned(&self, w: &mut Writer) -> Result<(), Error> {
        w.bytes(&self.identity);
        w.bytes(&self.onion_key);
        w.u64(self.published);
        w.u8(self.flags);
        write_addrs(w, &self.addrs)
    }

    pub fn write(&self, w: &mut Writer) -> Result<(), Error> {
        self.write_unsigned(w)?;
        w.bytes(&self.signature);
        Ok(())
    }

    pub fn read(r: &mut Reader<'_>) -> Result<NodeDescriptor, Error> {
        Ok(NodeDescriptor {
            identity: r.array()?,
            onion_key: r.array()?,
            published: r.u64()?,
            flags: r.u8()?,
            addrs: read_addrs(r)?,
            signature: r.array()?,
        })
    }

    /// Decode a descriptor that stands alone (all bytes must be used).
    pub fn decode(bytes: &[u8]) -> Result<NodeDescriptor, Error> {
        let mut r = Reader::new(bytes, "node descriptor");
        let d = NodeDescriptor::read(&mut r)?;
        r.finish()?;
        Ok(d)
    }

    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }
}

/// A node's routing table as it shows it to a walk: predecessor,
/// successor list and distinct fingers, and its signature over them and
/// the query they answer ([`ShownTable::signed_part`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownTable {
    pub predecessor: Option<NodeDescriptor>,
    pub successors: Vec<NodeDescriptor>,
    pub fingers: Vec<NodeDescriptor>,
    pub signature: [u8; 64],
}

impl ShownTable {
    /// The bytes the owner signs: the query, then every field but the
    /// signature.
    pub fn signed_part(&self, query: u64) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.u64(query);
        self.write_unsigned(&mut w)?;
        Ok(w.into_vec())
    }

    fn write_unsigned(&self, w: &mut Writer) -> Result<(), Error> {
        write_opt_descriptor(w, self.predecessor.as_ref())?;
        write_descriptors(w, &self.successors)?;
        write_list(w, &self.fingers, MAX_FINGERS, "finger list")
    }

    fn write(&self, w: &mut Writer) -> Result<(), Error> {
        self.write_unsigned(w)?;
        w.bytes(&self.signature);
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Result<ShownTable, Error> {
        Ok(ShownTable {
            predecessor: read_opt_descriptor(r)?,
            successors: read_descriptors(r)?,
            fingers: read_list(r, MAX_FINGERS, "finger list")?,
            signature: r.array()?,
        })
    }

    /// Every descriptor it names.
    pub fn descriptors(&self) -> impl Iterator<Item = &NodeDescriptor> {
        self.predecessor
            .iter()
            .chain(&self.successors)
            .chain(&self.fingers)
    }
}

/// A message between neighbours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    // The ring (Chord, Stoica et al. 2001, section 4).
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// Iterative lookup step: who follows `target`?
    FindSuccessor {
        query: u64,
        target: [u8; 32],
    },
    /// `done`: `node` is the successor of the target. Otherwise `node` is
    /// closer to it: ask there next.
    FindSuccessorReply {
        query: u64,
        done: bool,
        node: NodeDescriptor,
    },
    GetPredecessor {
        query: u64,
    },
    /// Answer to stabilize: the sender's predecessor and successor list.
    PredecessorReply {
        query: u64,
        predecessor: Option<NodeDescriptor>,
        successors: Vec<NodeDescriptor>,
    },
    /// "Show me your routing table": asked by a node that walks the ring
    /// itself and checks each table it is shown. It names no target, so
    /// the answerer learns nothing of what the walk looks for.
    GetTable {
        query: u64,
    },
    /// The sender's routing table, signed by it.
    Table {
        query: u64,
        table: Box<ShownTable>,
    },
    /// "Ask `to` for its table on my behalf": how a client-only node's
    /// walks reach the ring through its entry guard, so that the nodes
    /// they visit never see it. `query` is the asker's, passed on as is.
    GetTableVia {
        query: u64,
        to: NodeDescriptor,
    },
    /// `owner`'s answer to a [`PeerMessage::GetTableVia`], passed back
    /// unchanged: its signature lets the asker check that the node in
    /// between did not alter it.
    TableVia {
        owner: NodeId,
        query: u64,
        table: Box<ShownTable>,
    },
    /// "I might be your predecessor."
    Notify {
        node: NodeDescriptor,
    },
    /// Graceful leave: the sender's neighbours, so the receiver can mend.
    Leaving {
        predecessor: Option<NodeDescriptor>,
        successors: Vec<NodeDescriptor>,
    },
    /// A node's own descriptor, first on every link.
    Hello {
        node: NodeDescriptor,
    },
    /// "This link reaches me from `addr`": the address the sender sees the
    /// receiver at, second on every link. A node that listens on an
    /// unspecified address learns what to advertise from several of these.
    Observed {
        addr: NodeAddr,
    },
    /// "Dial me back on `port` at the address you see me at, from a socket
    /// you have never used with me, and present `nonce`": a reachability
    /// test that a NAT or a firewall fails (`link::reach`).
    Probe {
        nonce: [u8; 16],
        port: u16,
    },
    // Routed requests (Freenet-style, Clarke et al. 2001).
    Get {
        id: RequestId,
        htl: u8,
        kind: KeyKind,
        key: RoutingKey,
    },
    Put {
        id: RequestId,
        htl: u8,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    },
    Data {
        id: RequestId,
        block: Vec<u8>,
    },
    DataNotFound {
        id: RequestId,
    },
    RouteNotFound {
        id: RequestId,
    },
    Loop {
        id: RequestId,
    },
    Stored {
        id: RequestId,
    },
    Rejected {
        id: RequestId,
    },
    /// Direct (not routed) placement of a replica or a hand-over on leave;
    /// answered with stored or rejected.
    StoreReplica {
        id: RequestId,
        kind: KeyKind,
        key: RoutingKey,
        block: Vec<u8>,
    },
    /// A kind this version does not know.
    Unrecognized {
        kind: MessageKind,
        body: Vec<u8>,
    },
}

impl PeerMessage {
    pub fn kind(&self) -> MessageKind {
        use PeerMessage::*;
        match self {
            Ping { .. } => MessageKind::PING,
            Pong { .. } => MessageKind::PONG,
            FindSuccessor { .. } => MessageKind::FIND_SUCCESSOR,
            FindSuccessorReply { .. } => MessageKind::FIND_SUCCESSOR_REPLY,
            GetPredecessor { .. } => MessageKind::GET_PREDECESSOR,
            PredecessorReply { .. } => MessageKind::PREDECESSOR_REPLY,
            GetTable { .. } => MessageKind::GET_TABLE,
            Table { .. } => MessageKind::TABLE,
            GetTableVia { .. } => MessageKind::GET_TABLE_VIA,
            TableVia { .. } => MessageKind::TABLE_VIA,
            Notify { .. } => MessageKind::NOTIFY,
            Leaving { .. } => MessageKind::LEAVING,
            Hello { .. } => MessageKind::HELLO,
            Observed { .. } => MessageKind::OBSERVED,
            Probe { .. } => MessageKind::PROBE,
            Get { .. } => MessageKind::GET,
            Put { .. } => MessageKind::PUT,
            Data { .. } => MessageKind::DATA,
            DataNotFound { .. } => MessageKind::DATA_NOT_FOUND,
            RouteNotFound { .. } => MessageKind::ROUTE_NOT_FOUND,
            Loop { .. } => MessageKind::LOOP,
            Stored { .. } => MessageKind::STORED,
            Rejected { .. } => MessageKind::REJECTED,
            StoreReplica { .. } => MessageKind::STORE_REPLICA,
            Unrecognized { kind, .. } => *kind,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<PeerMessage, Error> {
        use PeerMessage::*;
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(Error::TooLong {
                what: "peer message",
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let mut r = Reader::new(bytes, "peer message");
        let kind = MessageKind(r.u8()?);
        let msg = match kind {
            MessageKind::PING => Ping { nonce: r.u64()? },
            MessageKind::PONG => Pong { nonce: r.u64()? },
            MessageKind::FIND_SUCCESSOR => FindSuccessor {
                query: r.u64()?,
                target: r.array()?,
            },
            MessageKind::FIND_SUCCESSOR_REPLY => FindSuccessorReply {
                query: r.u64()?,
                done: r.bool("done flag")?,
                node: NodeDescriptor::read(&mut r)?,
            },
            MessageKind::GET_PREDECESSOR => GetPredecessor { query: r.u64()? },
            MessageKind::PREDECESSOR_REPLY => PredecessorReply {
                query: r.u64()?,
                predecessor: read_opt_descriptor(&mut r)?,
                successors: read_descriptors(&mut r)?,
            },
            MessageKind::GET_TABLE => GetTable { query: r.u64()? },
            MessageKind::TABLE => Table {
                query: r.u64()?,
                table: Box::new(ShownTable::read(&mut r)?),
            },
            MessageKind::GET_TABLE_VIA => GetTableVia {
                query: r.u64()?,
                to: NodeDescriptor::read(&mut r)?,
            },
            MessageKind::TABLE_VIA => TableVia {
                owner: NodeId(r.array()?),
                query: r.u64()?,
                table: Box::new(ShownTable::read(&mut r)?),
            },
            MessageKind::NOTIFY => Notify {
                node: NodeDescriptor::read(&mut r)?,
            },
            MessageKind::LEAVING => Leaving {
                predecessor: read_opt_descriptor(&mut r)?,
                successors: read_descriptors(&mut r)?,
            },
            MessageKind::HELLO => Hello {
                node: NodeDescriptor::read(&mut r)?,
            },
            MessageKind::OBSERVED => Observed {
                addr: read_addr(&mut r)?,
            },
            MessageKind::PROBE => Probe {
                nonce: r.array()?,
                port: r.u16()?,
            },
            MessageKind::GET => Get {
                id: RequestId(r.u64()?),
                htl: r.u8()?,
                kind: KeyKind(r.u8()?),
                key: RoutingKey(r.array()?),
            },
            MessageKind::PUT => Put {
                id: RequestId(r.u64()?),
                htl: r.u8()?,
                kind: KeyKind(r.u8()?),
                key: RoutingKey(r.array()?),
                block: read_block(&mut r)?,
            },
            MessageKind::DATA => Data {
                id: RequestId(r.u64()?),
                block: read_block(&mut r)?,
            },
            MessageKind::DATA_NOT_FOUND => DataNotFound {
                id: RequestId(r.u64()?),
            },
            MessageKind::ROUTE_NOT_FOUND => RouteNotFound {
                id: RequestId(r.u64()?),
            },
            MessageKind::LOOP => Loop {
                id: RequestId(r.u64()?),
            },
            MessageKind::STORED => Stored {
                id: RequestId(r.u64()?),
            },
            MessageKind::REJECTED => Rejected {
                id: RequestId(r.u64()?),
            },
            MessageKind::STORE_REPLICA => StoreReplica {
                id: RequestId(r.u64()?),
                kind: KeyKind(r.u8()?),
                key: RoutingKey(r.array()?),
                block: read_block(&mut r)?,
            },
            kind => Unrecognized {
                kind,
                body: r.take_rest().to_vec(),
            },
        };
        r.finish()?;
        Ok(msg)
    }

    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        use PeerMessage::*;
        let mut w = Writer::new();
        w.u8(self.kind().0);
        match self {
            Ping { nonce } | Pong { nonce } => w.u64(*nonce),
            FindSuccessor { query, target } => {
                w.u64(*query);
                w.bytes(target);
            }
            FindSuccessorReply { query, done, node } => {
                w.u64(*query);
                w.bool(*done);
                node.write(&mut w)?;
            }
            GetPredecessor { query } | GetTable { query } => w.u64(*query),
            Table { query, table } => {
                w.u64(*query);
                table.write(&mut w)?;
            }
            GetTableVia { query, to } => {
                w.u64(*query);
                to.write(&mut w)?;
            }
            TableVia {
                owner,
                query,
                table,
            } => {
                w.bytes(&owner.0);
                w.u64(*query);
                table.write(&mut w)?;
            }
            PredecessorReply {
                query,
                predecessor,
                successors,
            } => {
                w.u64(*query);
                write_opt_descriptor(&mut w, predecessor.as_ref())?;
                write_descriptors(&mut w, successors)?;
            }
            Notify { node } | Hello { node } => node.write(&mut w)?,
            Observed { addr } => write_addr(&mut w, addr),
            Probe { nonce, port } => {
                w.bytes(nonce);
                w.u16(*port);
            }
            Leaving {
                predecessor,
                successors,
            } => {
                write_opt_descriptor(&mut w, predecessor.as_ref())?;
                write_descriptors(&mut w, successors)?;
            }
            Get { id, htl, kind, key } => {
                w.u64(id.0);
                w.u8(*htl);
                w.u8(kind.0);
                w.bytes(&key.0);
            }
            Put {
                id,
                htl,
                kind,
                key,
                block,
            } => {
                w.u64(id.0);
                w.u8(*htl);
                w.u8(kind.0);
                w.bytes(&key.0);
                write_block(&mut w, block)?;
            }
            Data { id, block } => {
                w.u64(id.0);
                write_block(&mut w, block)?;
            }
            DataNotFound { id }
            | RouteNotFound { id }
            | Loop { id }
            | Stored { id }
            | Rejected { id } => w.u64(id.0),
            StoreReplica {
                id,
                kind,
                key,
                block,
            } => {
                w.u64(id.0);
                w.u8(kind.0);
                w.bytes(&key.0);
                write_block(&mut w, block)?;
            }
            Unrecognized { body, .. } => w.bytes(body),
        }
        if w.len() > MAX_MESSAGE_LEN {
            return Err(Error::TooLong {
                what: "peer message",
                len: w.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        Ok(w.into_vec())
    }
}

fn read_block(r: &mut Reader<'_>) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
    let len = r.bounded_len(len, MAX_BLOCK_LEN, "block")?;
    Ok(r.take(len)?.to_vec())
}

fn write_block(w: &mut Writer, block: &[u8]) -> Result<(), Error> {
    w.len_u32(block.len(), MAX_BLOCK_LEN, "block")?;
    w.bytes(block);
    Ok(())
}

fn read_opt_descriptor(r: &mut Reader<'_>) -> Result<Option<NodeDescriptor>, Error> {
    if r.bool("descriptor presence")? {
        Ok(Some(NodeDescriptor::read(r)?))
    } else {
        Ok(None)
    }
}

fn write_opt_descriptor(w: &mut Writer, d: Option<&NodeDescriptor>) -> Result<(), Error> {
    w.bool(d.is_some());
    match d {
        Some(d) => d.write(w),
        None => Ok(()),
    }
}

fn read_descriptors(r: &mut Reader<'_>) -> Result<Vec<NodeDescriptor>, Error> {
    read_list(r, MAX_SUCCESSORS, "successor list")
}

fn write_descriptors(w: &mut Writer, ds: &[NodeDescriptor]) -> Result<(), Error> {
    write_list(w, ds, MAX_SUCCESSORS, "successor list")
}

fn read_list(
    r: &mut Reader<'_>,
    max: usize,
    what: &'static str,
) -> Result<Vec<NodeDescriptor>, Error> {
    let n = usize::from(r.u8()?);
    let n = r.bounded_count(n, max, NodeDescriptor::MIN_LEN, what)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(NodeDescriptor::read(r)?);
    }
    Ok(out)
}

fn write_list(
    w: &mut Writer,
    ds: &[NodeDescriptor],
    max: usize,
    what: &'static str,
) -> Result<(), Error> {
    w.count_u8(ds.len(), max, what)?;
    ds.iter().try_for_each(|d| d.write(w))
}

/// Smallest encoded address: family, IPv4, port.
const MIN_ADDR_LEN: usize = 1 + 4 + 2;

pub(super) fn read_addrs(r: &mut Reader<'_>) -> Result<Vec<NodeAddr>, Error> {
    let n = usize::from(r.u8()?);
    let n = r.bounded_count(n, MAX_ADDRS, MIN_ADDR_LEN, "address list")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(read_addr(r)?);
    }
    Ok(out)
}

pub(super) fn write_addrs(w: &mut Writer, addrs: &[NodeAddr]) -> Result<(), Error> {
    w.count_u8(addrs.len(), MAX_ADDRS, "address list")?;
    for a in addrs {
        write_addr(w, a);
    }
    Ok(())
}

fn read_addr(r: &mut Reader<'_>) -> Result<NodeAddr, Error> {
    let ip = match r.u8()? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        family => {
            return Err(Error::BadValue {
                what: "address family",
                value: u64::from(family),
            })
        }
    };
    Ok(NodeAddr(SocketAddr::new(ip, r.u16()?)))
}

fn write_addr(w: &mut Writer, a: &NodeAddr) {
    match a.0.ip() {
        IpAddr::V4(ip) => {
            w.u8(4);
            w.bytes(&ip.octets());
        }
        IpAddr::V6(ip) => {
            w.u8(6);
            w.bytes(&ip.octets());
        }
    }
    w.u16(a.0.port());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_successor_count_allocates_nothing() {
        // Kind, query, no predecessor, then a count of 255 with no bytes.
        let mut bytes = vec![MessageKind::PREDECESSOR_REPLY.0];
        bytes.extend_from_slice(&7u64.to_be_bytes());
        bytes.extend_from_slice(&[0, 255]);
        assert!(matches!(
            PeerMessage::decode(&bytes),
            Err(Error::TooLong {
                max: MAX_SUCCESSORS,
                ..
            })
        ));
        bytes.pop();
        bytes.push(3);
        assert!(matches!(
            PeerMessage::decode(&bytes),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn the_largest_table_fits_in_a_message_and_a_larger_one_is_not_sent() {
        let d = NodeDescriptor {
            identity: [1; 32],
            onion_key: [2; 32],
            published: 3,
            flags: NodeDescriptor::FLAG_RELAY,
            addrs: vec![NodeAddr("[2001:db8::1]:7000".parse().unwrap()); MAX_ADDRS],
            signature: [4; 64],
        };
        let table = ShownTable {
            predecessor: Some(d.clone()),
            successors: vec![d.clone(); MAX_SUCCESSORS],
            fingers: vec![d.clone(); MAX_FINGERS],
            signature: [6; 64],
        };
        let full = PeerMessage::TableVia {
            owner: NodeId([7; 32]),
            query: 5,
            table: Box::new(table),
        };
        let bytes = full.encode().expect("the largest table encodes");
        assert!(bytes.len() <= MAX_MESSAGE_LEN);
        assert_eq!(PeerMessage::decode(&bytes), Ok(full));
        let over = PeerMessage::Table {
            query: 5,
            table: Box::new(ShownTable {
                predecessor: None,
                successors: Vec::new(),
                fingers: vec![d; MAX_FINGERS + 1],
                signature: [0; 64],
            }),
        };
        assert!(over.encode().is_err(), "a table past the bound is not sent");
    }

    #[test]
    fn a_block_length_beyond_the_bound_is_refused_before_reading() {
        let mut bytes = vec![MessageKind::DATA.0];
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            PeerMessage::decode(&bytes),
            Err(Error::TooLong { what: "block", .. })
        ));
    }
}
