//! Known-answer vectors for the wire format, written from
//! `docs/protocol.md`: hex in, value, the same hex out; and each malformed
//! vector gives its exact error.
//!
//! Notation: hex digits, spaces ignored, `{ab*32}` is 32 bytes of 0xab.

use std::net::SocketAddr;

use umbra::wire::*;

fn hx(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').expect("closing brace");
            let (byte, count) = r[..end].split_once('*').expect("byte*count");
            let byte = u8::from_str_radix(byte, 16).expect("hex byte");
            out.extend(std::iter::repeat_n(byte, count.parse().expect("count")));
            rest = &r[end + 1..];
        } else {
            let c = rest.chars().next().expect("non-empty");
            rest = &rest[c.len_utf8()..];
            if c.is_whitespace() {
                continue;
            }
            let (hi, lo) = (c, rest.chars().next().expect("pair of hex digits"));
            rest = &rest[lo.len_utf8()..];
            out.push(u8::from_str_radix(&format!("{hi}{lo}"), 16).expect("hex"));
        }
    }
    out
}

/// A cell: the given prefix, zero padded to CELL_LEN.
fn cell_hx(prefix: &str) -> Vec<u8> {
    let mut b = hx(prefix);
    b.resize(CELL_LEN, 0);
    b
}

fn addr(s: &str) -> NodeAddr {
    NodeAddr(s.parse::<SocketAddr>().expect("address"))
}

fn descriptor() -> (&'static str, NodeDescriptor) {
    (
        "{01*32} {02*32} 000000006553f100 01 02 04 7f000001 0fa0 06 {00*15}01 01bb {03*64}",
        NodeDescriptor {
            identity: [1; 32],
            onion_key: [2; 32],
            published: 1_700_000_000,
            flags: NodeDescriptor::FLAG_RELAY,
            addrs: vec![addr("127.0.0.1:4000"), addr("[::1]:443")],
            signature: [3; 64],
        },
    )
}

#[test]
fn cells() {
    let vectors = [
        (
            "80000001 01 0001 0060 {11*32}{22*32}{33*32}",
            Cell::Create {
                circ: CircId(0x8000_0001),
                body: CreateBody {
                    handshake: HandshakeType::NTOR_X25519,
                    data: hx("{11*32}{22*32}{33*32}"),
                },
            },
        ),
        (
            "80000001 02 0040 {44*32}{55*32}",
            Cell::Created {
                circ: CircId(0x8000_0001),
                body: CreatedBody {
                    data: hx("{44*32}{55*32}"),
                },
            },
        ),
        (
            "00000007 04 06",
            Cell::Destroy {
                circ: CircId(7),
                reason: DestroyReason::BAD_LAYER,
            },
        ),
        ("00000000 00", Cell::Padding { circ: CircId(0) }),
        (
            "00000005 03 {ab*4091}",
            Cell::Relay {
                circ: CircId(5),
                onion: Box::new([0xab; ONION_LEN]),
            },
        ),
        (
            "00000005 63 {ab*4091}",
            Cell::Unrecognized {
                circ: CircId(5),
                command: CellCommand(0x63),
                body: Box::new([0xab; ONION_LEN]),
            },
        ),
    ];
    for (hex, value) in vectors {
        let bytes = cell_hx(hex);
        assert_eq!(Cell::decode(&bytes).as_ref(), Ok(&value), "{hex}");
        assert_eq!(value.encode().unwrap(), bytes, "{hex}");
        let mut frame = vec![0x01];
        frame.extend(&bytes);
        assert_eq!(encode_frame(&Frame::Cell(value)).unwrap(), frame);
    }
}

#[test]
fn peer_messages() {
    let (d_hex, d) = descriptor();
    let vectors = vec![
        (
            "01 0102030405060708".to_string(),
            PeerMessage::Ping {
                nonce: 0x0102_0304_0506_0708,
            },
        ),
        ("02 0000000000000009".into(), PeerMessage::Pong { nonce: 9 }),
        (
            "03 0000000000000001 {aa*32}".into(),
            PeerMessage::FindSuccessor {
                query: 1,
                target: [0xaa; 32],
            },
        ),
        (
            format!("04 0000000000000001 01 {d_hex}"),
            PeerMessage::FindSuccessorReply {
                query: 1,
                done: true,
                node: d.clone(),
            },
        ),
        (
            "05 0000000000000002".into(),
            PeerMessage::GetPredecessor { query: 2 },
        ),
        (
            "06 0000000000000002 00 00".into(),
            PeerMessage::PredecessorReply {
                query: 2,
                predecessor: None,
                successors: vec![],
            },
        ),
        (
            format!("06 0000000000000002 01 {d_hex} 02 {d_hex} {d_hex}"),
            PeerMessage::PredecessorReply {
                query: 2,
                predecessor: Some(d.clone()),
                successors: vec![d.clone(), d.clone()],
            },
        ),
        (
            format!("07 {d_hex}"),
            PeerMessage::Notify { node: d.clone() },
        ),
        (
            format!("08 00 01 {d_hex}"),
            PeerMessage::Leaving {
                predecessor: None,
                successors: vec![d.clone()],
            },
        ),
        (
            format!("09 {d_hex}"),
            PeerMessage::Hello { node: d.clone() },
        ),
        (
            "0a 04 0a4d000a 1b58".into(),
            PeerMessage::Observed {
                addr: addr("10.77.0.10:7000"),
            },
        ),
        (
            "0a 06 20010db8000000000000000000000001 01bb".into(),
            PeerMessage::Observed {
                addr: addr("[2001:db8::1]:443"),
            },
        ),
        (
            "0b {5a*16} 1b58".into(),
            PeerMessage::Probe {
                nonce: [0x5a; 16],
                port: 7000,
            },
        ),
        (
            "20 1122334455667788 12 01 {cc*32}".into(),
            PeerMessage::Get {
                id: RequestId(0x1122_3344_5566_7788),
                htl: 18,
                kind: KeyKind::CHK,
                key: RoutingKey([0xcc; 32]),
            },
        ),
        (
            "21 0000000000000001 05 02 {cc*32} 00000003 616263".into(),
            PeerMessage::Put {
                id: RequestId(1),
                htl: 5,
                kind: KeyKind::SSK,
                key: RoutingKey([0xcc; 32]),
                block: b"abc".to_vec(),
            },
        ),
        (
            "22 0000000000000009 00000005 68656c6c6f".into(),
            PeerMessage::Data {
                id: RequestId(9),
                block: b"hello".to_vec(),
            },
        ),
        (
            "23 0000000000000003".into(),
            PeerMessage::DataNotFound { id: RequestId(3) },
        ),
        (
            "24 0000000000000003".into(),
            PeerMessage::RouteNotFound { id: RequestId(3) },
        ),
        (
            "25 0000000000000003".into(),
            PeerMessage::Loop { id: RequestId(3) },
        ),
        (
            "26 0000000000000003".into(),
            PeerMessage::Stored { id: RequestId(3) },
        ),
        (
            "27 0000000000000003".into(),
            PeerMessage::Rejected { id: RequestId(3) },
        ),
        (
            "28 0000000000000004 01 {cc*32} 00000000".into(),
            PeerMessage::StoreReplica {
                id: RequestId(4),
                kind: KeyKind::CHK,
                key: RoutingKey([0xcc; 32]),
                block: vec![],
            },
        ),
        (
            "7f 0102".into(),
            PeerMessage::Unrecognized {
                kind: MessageKind(0x7f),
                body: vec![1, 2],
            },
        ),
    ];
    for (hex, value) in vectors {
        let bytes = hx(&hex);
        assert_eq!(PeerMessage::decode(&bytes).as_ref(), Ok(&value), "{hex}");
        assert_eq!(value.encode().unwrap(), bytes, "{hex}");
        let mut frame = hx("02");
        frame.extend((bytes.len() as u32).to_be_bytes());
        frame.extend(&bytes);
        assert_eq!(
            decode_frame(&frame),
            Ok(Some((Frame::Message(value), frame.len())))
        );
    }
}

#[test]
fn relay_messages() {
    let vectors = [
        (
            "01 0000 008c {ee*32} 01 04 0a000001 2328 0001 0060 {77*96}",
            RelayMessage::Extend {
                next: NodeId([0xee; 32]),
                addrs: vec![addr("10.0.0.1:9000")],
                handshake: HandshakeType::NTOR_X25519,
                data: vec![0x77; 96],
            },
        ),
        (
            "02 0000 0042 0040 {44*64}",
            RelayMessage::Extended {
                data: vec![0x44; 64],
            },
        ),
        (
            "03 0002 0021 02 {dd*32}",
            RelayMessage::Get {
                stream: StreamId(2),
                kind: KeyKind::SSK,
                key: RoutingKey([0xdd; 32]),
            },
        ),
        (
            "04 0002 0025 01 {dd*32} 00008000",
            RelayMessage::Put {
                stream: StreamId(2),
                kind: KeyKind::CHK,
                key: RoutingKey([0xdd; 32]),
                len: 32768,
            },
        ),
        (
            "05 0002 0003 010203",
            RelayMessage::Data {
                stream: StreamId(2),
                data: vec![1, 2, 3],
            },
        ),
        (
            "06 0001 0001 01",
            RelayMessage::End {
                stream: StreamId(1),
                status: EndStatus::DATA_NOT_FOUND,
            },
        ),
        (
            "07 0000 0002 0064",
            RelayMessage::Sendme {
                stream: StreamId(0),
                cells: 100,
            },
        ),
        ("08 0000 0000", RelayMessage::Drop),
    ];
    for (hex, value) in vectors {
        let bytes = hx(hex);
        assert_eq!(RelayMessage::decode(&bytes).as_ref(), Ok(&value), "{hex}");
        assert_eq!(value.encode().unwrap(), bytes, "{hex}");
    }
}

#[test]
fn descriptors() {
    let (hex, d) = descriptor();
    assert_eq!(NodeDescriptor::decode(&hx(hex)), Ok(d.clone()));
    assert_eq!(d.encode().unwrap(), hx(hex));
}

#[test]
fn malformed_cells() {
    let vectors: Vec<(Vec<u8>, Error)> = vec![
        (
            vec![0; CELL_LEN - 1],
            Error::WrongLength {
                what: "cell",
                len: CELL_LEN - 1,
                expected: CELL_LEN,
            },
        ),
        (
            cell_hx("00000000 01 0001 0000"),
            Error::BadValue {
                what: "circuit id of a circuit cell",
                value: 0,
            },
        ),
        (
            cell_hx("00000001 01 0001 0201"),
            Error::TooLong {
                what: "handshake",
                len: 513,
                max: 512,
            },
        ),
        (
            cell_hx("00000001 04 06 00 01"),
            Error::NonZeroPadding {
                what: "destroy cell",
            },
        ),
        (
            cell_hx("00000000 00 00 01"),
            Error::NonZeroPadding {
                what: "padding cell",
            },
        ),
        (
            cell_hx("00000001 02 0002 aaaa 01"),
            Error::NonZeroPadding {
                what: "created cell",
            },
        ),
    ];
    for (bytes, err) in vectors {
        assert_eq!(Cell::decode(&bytes), Err(err));
    }
    assert_eq!(
        decode_frame(&hx("03")),
        Err(Error::UnknownCommand {
            what: "frame",
            code: 3
        })
    );
    assert_eq!(
        decode_frame(&hx("02 00ffffff")),
        Err(Error::TooLong {
            what: "message frame",
            len: 0x00ff_ffff,
            max: MAX_MESSAGE_LEN
        })
    );
    // Not malformed, only incomplete.
    assert_eq!(decode_frame(&hx("02 00000009 01 0102")), Ok(None));
}

#[test]
fn malformed_peer_messages() {
    let (d_hex, _) = descriptor();
    let vectors = [
        (
            String::new(),
            Error::Truncated {
                what: "peer message",
                needed: 1,
            },
        ),
        (
            "01 01020304050607".into(),
            Error::Truncated {
                what: "peer message",
                needed: 1,
            },
        ),
        (
            "01 0102030405060708 00".into(),
            Error::TrailingBytes {
                what: "peer message",
                extra: 1,
            },
        ),
        (
            format!("04 0000000000000001 02 {d_hex}"),
            Error::BadValue {
                what: "done flag",
                value: 2,
            },
        ),
        (
            "22 0000000000000009 00008201".into(),
            Error::TooLong {
                what: "block",
                len: 0x8201,
                max: MAX_BLOCK_LEN,
            },
        ),
        (
            "22 0000000000000009 0000000a 6162636465".into(),
            Error::Truncated {
                what: "block",
                needed: 5,
            },
        ),
        (
            "09 {01*32} {02*32} 000000006553f100 01 01 05 7f000001 0fa0 {03*64}".into(),
            Error::BadValue {
                what: "address family",
                value: 5,
            },
        ),
        (
            "09 {01*32} {02*32} 000000006553f100 01 05 {04*40}".into(),
            Error::TooLong {
                what: "address list",
                len: 5,
                max: MAX_ADDRS,
            },
        ),
        (
            format!("06 0000000000000002 00 21 {d_hex}"),
            Error::TooLong {
                what: "successor list",
                len: 33,
                max: MAX_SUCCESSORS,
            },
        ),
        (
            "06 0000000000000002 00 02".into(),
            Error::Truncated {
                what: "successor list",
                needed: 2 * NodeDescriptor::MIN_LEN,
            },
        ),
    ];
    for (hex, err) in vectors {
        assert_eq!(PeerMessage::decode(&hx(&hex)), Err(err), "{hex}");
    }
}

#[test]
fn malformed_relay_messages() {
    let vectors = [
        (
            "05 0001 0f77",
            Error::TooLong {
                what: "relay message body",
                len: RELAY_BODY_MAX + 1,
                max: RELAY_BODY_MAX,
            },
        ),
        (
            "03 0000 0021 02 {dd*32}",
            Error::BadValue {
                what: "stream of a request relay message",
                value: 0,
            },
        ),
        (
            "01 0003 0000",
            Error::BadValue {
                what: "stream of a circuit-level relay message",
                value: 3,
            },
        ),
        (
            "06 0001 0002 01 00",
            Error::TrailingBytes {
                what: "relay message body",
                extra: 1,
            },
        ),
        (
            "04 0002 0025 01 {dd*32} 00008201",
            Error::TooLong {
                what: "put length",
                len: 0x8201,
                max: MAX_BLOCK_LEN,
            },
        ),
        (
            "05 0001 0004 0102",
            Error::Truncated {
                what: "relay message body",
                needed: 2,
            },
        ),
    ];
    for (hex, err) in vectors {
        assert_eq!(RelayMessage::decode(&hx(hex)), Err(err), "{hex}");
    }
}

#[test]
fn the_constants_are_the_documented_ones() {
    assert_eq!(CELL_LEN, 4096);
    assert_eq!(ONION_LEN, 4091);
    assert_eq!(RELAY_PAYLOAD_LEN, 3963);
    assert_eq!(RELAY_BODY_MAX, 3958);
    assert_eq!(MAX_BLOCK_LEN, 0x8200);
    assert_eq!(MAX_MESSAGE_LEN, 34304);
}
