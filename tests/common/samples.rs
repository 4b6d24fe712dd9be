//! One value of every message kind, for seeding the fuzz corpus.

use umbra::wire::*;

pub fn descriptor() -> NodeDescriptor {
    NodeDescriptor {
        identity: [1; 32],
        onion_key: [2; 32],
        published: 1_700_000_000,
        flags: NodeDescriptor::FLAG_RELAY,
        addrs: vec![
            NodeAddr("127.0.0.1:4000".parse().expect("address")),
            NodeAddr("[::1]:443".parse().expect("address")),
        ],
        signature: [3; 64],
    }
}

pub fn cells() -> Vec<Cell> {
    let circ = CircId(0x8000_0001);
    vec![
        Cell::Padding { circ: CircId(0) },
        Cell::Create {
            circ,
            body: CreateBody {
                handshake: HandshakeType::NTOR_X25519,
                data: vec![7; 96],
            },
        },
        Cell::Created {
            circ,
            body: CreatedBody { data: vec![8; 64] },
        },
        Cell::Relay {
            circ,
            onion: Box::new([9; ONION_LEN]),
        },
        Cell::Destroy {
            circ,
            reason: DestroyReason::BAD_LAYER,
        },
    ]
}

pub fn relay_messages() -> Vec<RelayMessage> {
    let stream = StreamId(1);
    let key = RoutingKey([4; 32]);
    vec![
        RelayMessage::Extend {
            next: NodeId([5; 32]),
            addrs: descriptor().addrs,
            handshake: HandshakeType::NTOR_X25519,
            data: vec![7; 96],
        },
        RelayMessage::Extended { data: vec![8; 64] },
        RelayMessage::Get {
            stream,
            kind: KeyKind::CHK,
            key,
        },
        RelayMessage::Put {
            stream,
            kind: KeyKind::SSK,
            key,
            len: 32768,
        },
        RelayMessage::Data {
            stream,
            data: b"data".to_vec(),
        },
        RelayMessage::End {
            stream,
            status: EndStatus::ROUTE_NOT_FOUND,
        },
        RelayMessage::Sendme { stream, cells: 50 },
        RelayMessage::Drop,
    ]
}

pub fn peer_messages() -> Vec<PeerMessage> {
    use PeerMessage::*;
    let d = descriptor();
    let id = RequestId(0x0102_0304_0506_0708);
    let key = RoutingKey([4; 32]);
    vec![
        Ping { nonce: 1 },
        Pong { nonce: 1 },
        FindSuccessor {
            query: 2,
            target: [6; 32],
        },
        FindSuccessorReply {
            query: 2,
            done: false,
            node: d.clone(),
        },
        GetPredecessor { query: 3 },
        PredecessorReply {
            query: 3,
            predecessor: Some(d.clone()),
            successors: vec![d.clone(), d.clone()],
        },
        GetTable { query: 4 },
        Table {
            query: 4,
            table: Box::new(ShownTable {
                predecessor: None,
                successors: vec![d.clone()],
                fingers: vec![d.clone(), d.clone()],
                signature: [9; 64],
            }),
        },
        GetTableVia {
            query: 5,
            to: d.clone(),
        },
        TableVia {
            owner: NodeId([8; 32]),
            query: 5,
            table: Box::new(ShownTable {
                predecessor: Some(d.clone()),
                successors: vec![d.clone()],
                fingers: Vec::new(),
                signature: [7; 64],
            }),
        },
        Notify { node: d.clone() },
        Leaving {
            predecessor: None,
            successors: vec![d.clone()],
        },
        Hello { node: d },
        Get {
            id,
            htl: 18,
            kind: KeyKind::CHK,
            key,
        },
        Put {
            id,
            htl: 18,
            kind: KeyKind::CHK,
            key,
            block: b"block".to_vec(),
        },
        Data {
            id,
            block: b"block".to_vec(),
        },
        DataNotFound { id },
        RouteNotFound { id },
        Loop { id },
        Stored { id },
        Rejected { id },
        StoreReplica {
            id,
            kind: KeyKind::SSK,
            key,
            block: b"replica".to_vec(),
        },
    ]
}
