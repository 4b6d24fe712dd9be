//! The fuzz target bodies. Compiled into the cargo-fuzz targets and, through
//! `#[path]`, into `tests/fuzz_corpus.rs`, so every corpus file is replayed
//! with the same checks by a plain `cargo test`.

use umbra::crypto::{respond, ClientCircuit, ClientHandshake, Identity, LayerKeys, RelayLayer};
use umbra::wire::{
    decode_frame, encode_frame, Cell, NodeDescriptor, NodeId, PeerMessage, RelayMessage, CELL_LEN,
    ONION_LEN,
};

/// Every parser on arbitrary bytes: no panic, and whatever parses encodes
/// back to the bytes it came from.
pub fn wire(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            // Exact-length cells, so the fuzzer explores bodies, and the
            // raw input, so it explores the length check.
            let _ = Cell::decode(input);
            let mut cell = input.to_vec();
            cell.resize(CELL_LEN, 0);
            if let Ok(c) = Cell::decode(&cell) {
                assert_eq!(c.encode().expect("a parsed cell encodes"), cell);
            }
        }
        1 => {
            if let Ok(m) = PeerMessage::decode(input) {
                assert_eq!(m.encode().expect("a parsed message encodes"), input);
            }
        }
        2 => {
            if let Ok(m) = RelayMessage::decode(input) {
                let bytes = m.encode().expect("a parsed relay message encodes");
                assert_eq!(&input[..bytes.len()], &bytes[..]);
                assert_eq!(RelayMessage::decode(&bytes).as_ref(), Ok(&m));
            }
        }
        3 => {
            // A stream of frames, as a link would read it.
            let mut rest = input;
            while let Ok(Some((frame, used))) = decode_frame(rest) {
                assert_eq!(
                    encode_frame(&frame).expect("a parsed frame encodes"),
                    rest[..used]
                );
                rest = &rest[used..];
            }
        }
        _ => {
            if let Ok(d) = NodeDescriptor::decode(input) {
                assert_eq!(d.encode().expect("a parsed descriptor encodes"), input);
                let _ = umbra::crypto::verify_descriptor(&d);
            }
        }
    }
}

/// Onion layers and handshakes with arbitrary keys and bytes: no panic, and
/// no layer ever accepts bytes it did not seal.
pub fn onion(data: &[u8]) {
    if data.len() < 1 + 96 {
        return;
    }
    let (head, rest) = data.split_at(1 + 96);
    let mode = head[0];
    let mut key_bytes = [0u8; 96];
    key_bytes.copy_from_slice(&head[1..]);
    let keys = LayerKeys::from_bytes(&key_bytes);
    let mut onion = Box::new([0u8; ONION_LEN]);
    let n = rest.len().min(ONION_LEN);
    onion[..n].copy_from_slice(&rest[..n]);

    match mode % 5 {
        0 => {
            let mut relay = RelayLayer::new(&keys);
            // Forging a tag by chance is a 2^-106 event: treat success as a
            // finding.
            assert!(relay.peel_forward(&mut onion).is_err());
        }
        1 => {
            // A one-hop circuit whose relay wraps arbitrary bytes: the
            // client accepts exactly when the 16 bytes the relay dropped
            // were the zeros an exit leaves there.
            let dropped_zero = onion[ONION_LEN - 16..].iter().all(|&b| b == 0);
            let mut relay = RelayLayer::new(&keys);
            relay
                .wrap_backward(&mut onion)
                .expect("wrapping never fails");
            let mut client = ClientCircuit::new();
            client.add_hop(&keys).expect("one hop fits");
            let ok = client.unwrap_backward(&mut onion).is_ok();
            assert_eq!(ok, dropped_zero);
        }
        2 => {
            let hops = usize::from(mode / 5 % 8) + 1;
            let mut client = ClientCircuit::new();
            let mut k = key_bytes;
            for _ in 0..hops {
                k[0] = k[0].wrapping_add(1);
                client.add_hop(&LayerKeys::from_bytes(&k)).expect("fits");
            }
            assert!(client.unwrap_backward(&mut onion).is_err());
        }
        3 => {
            // A relay answering an arbitrary client message.
            let relay = Identity::from_secret_bytes(&{
                let mut s = [0u8; 64];
                s.copy_from_slice(&key_bytes[..64]);
                s
            });
            let _ = respond(
                &mut rand::rngs::OsRng,
                &relay,
                None,
                &rest[..rest.len().min(200)],
            );
            // And one naming it properly, with an arbitrary ephemeral key.
            let mut msg = [0u8; 96];
            msg[..32].copy_from_slice(&relay.id().0);
            msg[32..64].copy_from_slice(&relay.onion_key());
            let x = rest.len().min(32);
            msg[64..64 + x].copy_from_slice(&rest[..x]);
            let _ = respond(&mut rand::rngs::OsRng, &relay, None, &msg);
        }
        _ => {
            // A client checking an arbitrary relay reply.
            let mut onion_key = [0u8; 32];
            onion_key.copy_from_slice(&key_bytes[..32]);
            let (state, _) =
                ClientHandshake::start(&mut rand::rngs::OsRng, NodeId([1; 32]), onion_key);
            let reply = &rest[..rest.len().min(64)];
            assert!(state.finish(reply).is_err(), "forged a handshake reply");
        }
    }
}

/// Selector bytes of the user target.
pub const USER_SOCKS: u8 = 0;
pub const USER_URI: u8 = 1;
pub const USER_PATH: u8 = 2;
pub const USER_ROOT: u8 = 3;

/// What a local application or a user hands the node: a SOCKS handshake,
/// a URI, a percent-encoded path or query, a document root. No panic, no
/// hang; a handshake that opens a stream said so last; a URI that parses
/// prints back to itself.
pub fn user(data: &[u8]) {
    use umbra::gateway::url;
    use umbra::keys::{decode_root, Uri};

    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        USER_SOCKS => {
            // The pure handshake, no runtime: the bytes whole, and cut in
            // pieces of the size the first byte says. However the bytes
            // arrive, the answer is the same.
            let Some((&size, input)) = input.split_first() else {
                return;
            };
            let whole = umbra::socks::run_pieces([input]);
            let pieces = input.chunks(usize::from(size % 16) + 1);
            assert_eq!(umbra::socks::run_pieces(pieces), whole);
            if let (written, Some(Ok(_))) = &whole {
                assert!(written.ends_with(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
            }
        }
        USER_URI => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            if let Ok(uri) = text.parse::<Uri>() {
                let printed = uri.to_string();
                let again: Uri = printed.parse().expect("a printed URI parses");
                assert_eq!(again.to_string(), printed);
            }
        }
        USER_PATH => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            if let Some(decoded) = url::percent_decode(text) {
                let encoded = url::percent_encode_path(&decoded);
                assert_eq!(url::percent_decode(&encoded).as_deref(), Some(&*decoded));
            }
            let _ = url::form_value(text, "uri");
            let _ = url::host_allowed(text);
            let _ = url::origin_matches(Some(text), Some(text));
        }
        _ => {
            let _ = decode_root(input);
        }
    }
}
