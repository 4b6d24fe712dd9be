//! Property tests: every message round-trips through its encoding, and any
//! byte string either fails with a typed error or re-encodes to itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;
use umbra::wire::*;

fn arb_bytes32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn arb_addr() -> impl Strategy<Value = NodeAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, p)| NodeAddr(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), p))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, p)| NodeAddr(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p))),
    ]
}

fn arb_descriptor() -> impl Strategy<Value = NodeDescriptor> {
    (
        arb_bytes32(),
        arb_bytes32(),
        any::<u64>(),
        any::<u8>(),
        vec(arb_addr(), 0..=MAX_ADDRS),
        arb_bytes32(),
        arb_bytes32(),
    )
        .prop_map(|(identity, onion_key, published, flags, addrs, s1, s2)| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&s1);
            signature[32..].copy_from_slice(&s2);
            NodeDescriptor {
                identity,
                onion_key,
                published,
                flags,
                addrs,
                signature,
            }
        })
}

fn arb_table() -> impl Strategy<Value = ShownTable> {
    let descs = || vec(arb_descriptor(), 0..4);
    (
        proptest::option::of(arb_descriptor()),
        descs(),
        descs(),
        arb_bytes32(),
        arb_bytes32(),
    )
        .prop_map(|(predecessor, successors, fingers, s1, s2)| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&s1);
            signature[32..].copy_from_slice(&s2);
            ShownTable {
                predecessor,
                successors,
                fingers,
                signature,
            }
        })
}

fn arb_block() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        9 => vec(any::<u8>(), 0..300),
        1 => any::<u8>().prop_map(|b| vec![b; MAX_BLOCK_LEN]),
    ]
}

fn arb_kind() -> impl Strategy<Value = KeyKind> {
    any::<u8>().prop_map(KeyKind)
}

fn arb_id() -> impl Strategy<Value = RequestId> {
    any::<u64>().prop_map(RequestId)
}

fn arb_peer_message() -> impl Strategy<Value = PeerMessage> {
    use PeerMessage::*;
    let descs = || vec(arb_descriptor(), 0..=3);
    prop_oneof![
        any::<u64>().prop_map(|nonce| Ping { nonce }),
        any::<u64>().prop_map(|nonce| Pong { nonce }),
        (any::<u64>(), arb_bytes32()).prop_map(|(query, target)| FindSuccessor { query, target }),
        (any::<u64>(), any::<bool>(), arb_descriptor())
            .prop_map(|(query, done, node)| FindSuccessorReply { query, done, node }),
        any::<u64>().prop_map(|query| GetPredecessor { query }),
        (
            any::<u64>(),
            proptest::option::of(arb_descriptor()),
            descs()
        )
            .prop_map(|(query, predecessor, successors)| PredecessorReply {
                query,
                predecessor,
                successors
            }),
        any::<u64>().prop_map(|query| GetTable { query }),
        (any::<u64>(), arb_table()).prop_map(|(query, table)| Table {
            query,
            table: Box::new(table)
        }),
        (any::<u64>(), arb_descriptor()).prop_map(|(query, to)| GetTableVia { query, to }),
        (any::<[u8; 32]>(), any::<u64>(), arb_table()).prop_map(|(owner, query, table)| {
            TableVia {
                owner: NodeId(owner),
                query,
                table: Box::new(table),
            }
        }),
        arb_descriptor().prop_map(|node| Notify { node }),
        (proptest::option::of(arb_descriptor()), descs()).prop_map(|(predecessor, successors)| {
            Leaving {
                predecessor,
                successors,
            }
        }),
        arb_descriptor().prop_map(|node| Hello { node }),
        arb_addr().prop_map(|addr| Observed { addr }),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(nonce, port)| Probe { nonce, port }),
        (arb_id(), any::<u8>(), arb_kind(), arb_bytes32()).prop_map(|(id, htl, kind, k)| Get {
            id,
            htl,
            kind,
            key: RoutingKey(k)
        }),
        (
            arb_id(),
            any::<u8>(),
            arb_kind(),
            arb_bytes32(),
            arb_block()
        )
            .prop_map(|(id, htl, kind, k, block)| Put {
                id,
                htl,
                kind,
                key: RoutingKey(k),
                block
            }),
        (arb_id(), arb_block()).prop_map(|(id, block)| Data { id, block }),
        arb_id().prop_map(|id| DataNotFound { id }),
        arb_id().prop_map(|id| RouteNotFound { id }),
        arb_id().prop_map(|id| Loop { id }),
        arb_id().prop_map(|id| Stored { id }),
        arb_id().prop_map(|id| Rejected { id }),
        (arb_id(), arb_kind(), arb_bytes32(), arb_block()).prop_map(|(id, kind, k, block)| {
            StoreReplica {
                id,
                kind,
                key: RoutingKey(k),
                block,
            }
        }),
        (
            any::<u8>().prop_filter("unknown kind", |k| MessageKind(*k).name().is_none()),
            vec(any::<u8>(), 0..64)
        )
            .prop_map(|(k, body)| Unrecognized {
                kind: MessageKind(k),
                body
            }),
    ]
}

fn arb_stream() -> impl Strategy<Value = StreamId> {
    (1..=u16::MAX).prop_map(StreamId)
}

fn arb_relay_message() -> impl Strategy<Value = RelayMessage> {
    use RelayMessage::*;
    prop_oneof![
        (
            arb_bytes32(),
            vec(arb_addr(), 0..=MAX_ADDRS),
            any::<u16>(),
            vec(any::<u8>(), 0..=MAX_HANDSHAKE_LEN)
        )
            .prop_map(|(n, addrs, h, data)| Extend {
                next: NodeId(n),
                addrs,
                handshake: HandshakeType(h),
                data
            }),
        vec(any::<u8>(), 0..=MAX_HANDSHAKE_LEN).prop_map(|data| Extended { data }),
        (arb_stream(), arb_kind(), arb_bytes32()).prop_map(|(stream, kind, k)| Get {
            stream,
            kind,
            key: RoutingKey(k)
        }),
        (
            arb_stream(),
            arb_kind(),
            arb_bytes32(),
            0..=MAX_BLOCK_LEN as u32
        )
            .prop_map(|(stream, kind, k, len)| Put {
                stream,
                kind,
                key: RoutingKey(k),
                len
            }),
        (arb_stream(), vec(any::<u8>(), 0..=RELAY_BODY_MAX))
            .prop_map(|(stream, data)| Data { stream, data }),
        (arb_stream(), any::<u8>()).prop_map(|(stream, s)| End {
            stream,
            status: EndStatus(s)
        }),
        (any::<u16>(), any::<u16>()).prop_map(|(s, cells)| Sendme {
            stream: StreamId(s),
            cells
        }),
        Just(Drop),
        (
            any::<u8>().prop_filter("unknown", |c| RelayCommand(*c).name().is_none()),
            any::<u16>(),
            vec(any::<u8>(), 0..100)
        )
            .prop_map(|(c, s, body)| Unrecognized {
                command: RelayCommand(c),
                stream: StreamId(s),
                body
            }),
    ]
}

fn arb_circ() -> impl Strategy<Value = CircId> {
    (1..=u32::MAX).prop_map(CircId)
}

fn arb_cell() -> impl Strategy<Value = Cell> {
    let body = || any::<u8>().prop_map(|b| Box::new([b; ONION_LEN]));
    prop_oneof![
        any::<u32>().prop_map(|c| Cell::Padding { circ: CircId(c) }),
        (
            arb_circ(),
            any::<u16>(),
            vec(any::<u8>(), 0..=MAX_HANDSHAKE_LEN)
        )
            .prop_map(|(circ, h, data)| Cell::Create {
                circ,
                body: CreateBody {
                    handshake: HandshakeType(h),
                    data
                }
            }),
        (arb_circ(), vec(any::<u8>(), 0..=MAX_HANDSHAKE_LEN)).prop_map(|(circ, data)| {
            Cell::Created {
                circ,
                body: CreatedBody { data },
            }
        }),
        (arb_circ(), body()).prop_map(|(circ, onion)| Cell::Relay { circ, onion }),
        (arb_circ(), body()).prop_map(|(circ, onion)| Cell::RelayEarly { circ, onion }),
        (arb_circ(), any::<u8>()).prop_map(|(circ, r)| Cell::Destroy {
            circ,
            reason: DestroyReason(r)
        }),
        (
            arb_circ(),
            any::<u8>().prop_filter("unknown", |c| CellCommand(*c).name().is_none()),
            body()
        )
            .prop_map(|(circ, c, body)| Cell::Unrecognized {
                circ,
                command: CellCommand(c),
                body
            }),
    ]
}

proptest! {
    #[test]
    fn peer_messages_round_trip(m in arb_peer_message()) {
        let bytes = m.encode().unwrap();
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(PeerMessage::decode(&bytes).unwrap(), m.clone());
        let frame = encode_frame(&Frame::Message(m.clone())).unwrap();
        prop_assert_eq!(decode_frame(&frame).unwrap(), Some((Frame::Message(m), frame.len())));
    }

    #[test]
    fn relay_messages_round_trip_inside_a_payload(m in arb_relay_message(), pad in any::<u8>()) {
        let bytes = m.encode().unwrap();
        prop_assert!(bytes.len() <= RELAY_PAYLOAD_LEN);
        let mut payload = *m.encode_payload().unwrap();
        // Whatever follows the message is padding and must not matter.
        payload[bytes.len()..].fill(pad);
        prop_assert_eq!(RelayMessage::decode(&payload).unwrap(), m);
    }

    #[test]
    fn cells_round_trip_at_one_size(c in arb_cell()) {
        let bytes = c.encode().unwrap();
        prop_assert_eq!(bytes.len(), CELL_LEN);
        prop_assert_eq!(Cell::decode(&bytes).unwrap(), c.clone());
        let frame = encode_frame(&Frame::Cell(c.clone())).unwrap();
        prop_assert_eq!(decode_frame(&frame).unwrap(), Some((Frame::Cell(c), frame.len())));
    }

    #[test]
    fn descriptors_round_trip(d in arb_descriptor()) {
        let bytes = d.encode().unwrap();
        prop_assert_eq!(NodeDescriptor::decode(&bytes).unwrap(), d);
    }

    #[test]
    fn arbitrary_bytes_parse_to_themselves_or_fail(bytes in vec(any::<u8>(), 0..600)) {
        if let Ok(m) = PeerMessage::decode(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(d) = NodeDescriptor::decode(&bytes) {
            prop_assert_eq!(d.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = RelayMessage::decode(&bytes) {
            let enc = m.encode().unwrap();
            prop_assert_eq!(&bytes[..enc.len()], &enc[..]);
        }
        let mut cell = bytes.clone();
        cell.resize(CELL_LEN, 0);
        if let Ok(c) = Cell::decode(&cell) {
            prop_assert_eq!(c.encode().unwrap(), cell);
        }
        if let Ok(Some((f, n))) = decode_frame(&bytes) {
            prop_assert_eq!(encode_frame(&f).unwrap(), bytes[..n].to_vec());
        }
    }
}
