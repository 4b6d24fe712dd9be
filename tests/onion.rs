//! The onion layers end to end: client, relays and exit as separate state,
//! cells passed between them as encoded link cells.

mod common;

use common::{build_circuit, client_from, seeded_rng};
use rand::RngCore;
use umbra::crypto::{ClientCircuit, Error, RelayLayer};
use umbra::wire::{Cell, CircId, CELL_LEN, ONION_LEN, RELAY_PAYLOAD_LEN};

/// One cell's bytes as some hop saw them.
type Onion = Box<[u8; ONION_LEN]>;
/// A decrypted payload.
type Payload = Box<[u8; RELAY_PAYLOAD_LEN]>;

/// Hand a relay cell across a link: encode, check the size, decode.
fn across_link(onion: &[u8; ONION_LEN]) -> Onion {
    let cell = Cell::Relay {
        circ: CircId(7),
        onion: Box::new(*onion),
    };
    let bytes = cell.encode().expect("encodes");
    assert_eq!(bytes.len(), CELL_LEN, "a cell changed size on a link");
    match Cell::decode(&bytes).expect("decodes") {
        Cell::Relay { onion, .. } => onion,
        other => panic!("not a relay cell: {other:?}"),
    }
}

fn random_payload(rng: &mut impl RngCore) -> Payload {
    let mut p = Box::new([0u8; RELAY_PAYLOAD_LEN]);
    rng.fill_bytes(&mut p[..]);
    p
}

/// Send a payload from the client to the exit; returns what each hop
/// received (index = hop) and what the exit read.
fn forward(
    rng: &mut rand_chacha::ChaCha20Rng,
    client: &mut ClientCircuit,
    relays: &mut [RelayLayer],
    payload: &[u8; RELAY_PAYLOAD_LEN],
) -> (Vec<Onion>, Vec<u8>) {
    let mut onion = client.wrap_forward(rng, payload).expect("client wraps");
    let mut seen = Vec::new();
    for relay in relays.iter_mut() {
        onion = across_link(&onion);
        seen.push(onion.clone());
        relay.peel_forward(&mut onion).expect("relay peels");
    }
    (seen, RelayLayer::payload(&onion).to_vec())
}

/// Send a payload from the exit to the client; returns what left each hop
/// (index = hop) and what the client read.
fn backward(
    client: &mut ClientCircuit,
    relays: &mut [RelayLayer],
    payload: &[u8; RELAY_PAYLOAD_LEN],
) -> (Vec<Onion>, Result<Payload, Error>) {
    let (exit, middle) = relays.split_last_mut().expect("at least one hop");
    let mut onion = exit.seal_backward(payload).expect("exit seals");
    let mut left = vec![onion.clone()];
    for relay in middle.iter_mut().rev() {
        onion = across_link(&onion);
        relay.wrap_backward(&mut onion).expect("relay wraps");
        left.push(onion.clone());
    }
    left.reverse();
    let mut onion = across_link(&onion);
    let got = client.unwrap_backward(&mut onion);
    (left, got)
}

#[test]
fn payloads_cross_1_3_and_8_hops_both_ways() {
    let mut rng = seeded_rng("round_trip");
    for n in [1, 3, 8] {
        let (mut client, mut relays, _) = build_circuit(&mut rng, n);
        // Several cells, so the counters move in step on every side.
        for _ in 0..5 {
            let p = random_payload(&mut rng);
            let (seen, at_exit) = forward(&mut rng, &mut client, &mut relays, &p);
            assert_eq!(at_exit, p[..], "{n} hops: exit read the wrong payload");
            // No two hops see the same bytes: a cell cannot be followed
            // across relays by its content.
            for a in 0..seen.len() {
                for b in a + 1..seen.len() {
                    assert_ne!(seen[a], seen[b]);
                }
            }
            let p = random_payload(&mut rng);
            let (left, got) = backward(&mut client, &mut relays, &p);
            assert_eq!(got.expect("client unwraps")[..], p[..], "{n} hops back");
            for a in 0..left.len() {
                for b in a + 1..left.len() {
                    assert_ne!(left[a], left[b]);
                }
            }
        }
    }
}

#[test]
fn the_exit_cannot_count_the_hops_before_it() {
    // The exit sees its payload and then padding; with 1 or 8 hops that
    // padding is equally free of structure: never a run of zero bytes and
    // never repeated between cells.
    let mut rng = seeded_rng("exit_position");
    for n in [1, 2, 8] {
        let (mut client, mut relays, _) = build_circuit(&mut rng, n);
        let zeros = Box::new([0u8; RELAY_PAYLOAD_LEN]);
        let mut exit_views = Vec::new();
        for _ in 0..3 {
            let mut onion = client.wrap_forward(&mut rng, &zeros).unwrap();
            for relay in relays.iter_mut() {
                relay.peel_forward(&mut onion).unwrap();
            }
            let padding = onion[RELAY_PAYLOAD_LEN..].to_vec();
            assert!(
                padding.windows(8).all(|w| w != [0u8; 8]),
                "{n} hops: structured padding at the exit"
            );
            exit_views.push(padding);
        }
        assert_ne!(exit_views[0], exit_views[1]);
        assert_ne!(exit_views[1], exit_views[2]);
    }
}

#[test]
fn a_flipped_bit_anywhere_forward_is_caught_by_the_next_relay() {
    let mut rng = seeded_rng("flip_forward");
    let n = 3;
    let (mut client, mut relays, keys) = build_circuit(&mut rng, n);
    // Use the second cell of the circuit so the counters are not at zero.
    let first = random_payload(&mut rng);
    let (first_seen, _) = forward(&mut rng, &mut client, &mut relays, &first);
    let second = random_payload(&mut rng);
    let (seen, _) = forward(&mut rng, &mut client, &mut relays, &second);

    for hop in 0..n {
        // `seen[hop]` is what arrives at `hop`: from the client if hop is 0,
        // else from relay hop-1 after it peeled. Flip one bit at each byte.
        for pos in 0..ONION_LEN {
            let mut relay = RelayLayer::new(&keys[hop]);
            let mut warmup = first_seen[hop].clone();
            relay.peel_forward(&mut warmup).unwrap();
            let mut cell = seen[hop].clone();
            cell[pos] ^= 1 << (pos % 8);
            assert_eq!(
                relay.peel_forward(&mut cell),
                Err(Error::BadLayer { hop: 0 }),
                "flip at byte {pos} arriving at hop {hop} went unnoticed"
            );
            // And the circuit is dead at that relay from then on.
            let mut next = seen[hop].clone();
            assert_eq!(relay.peel_forward(&mut next), Err(Error::Broken));
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_backward_is_caught_by_the_client() {
    let mut rng = seeded_rng("flip_backward");
    let n = 3;
    let (mut client, mut relays, keys) = build_circuit(&mut rng, n);
    let p = random_payload(&mut rng);
    let (left, got) = backward(&mut client, &mut relays, &p);
    got.unwrap();
    let second = random_payload(&mut rng);
    let (left2, got2) = backward(&mut client, &mut relays, &second);
    got2.unwrap();

    for sender in 0..n {
        // Relays between the sender and the client hold keys only shared
        // with the client, so the client is the next party that can check.
        for pos in 0..ONION_LEN {
            let mut layers: Vec<RelayLayer> = keys.iter().map(RelayLayer::new).collect();
            let mut fresh_client = client_from(&keys);
            // Replay the honest first cell through fresh state.
            let mut onion = left[sender].clone();
            for relay in layers[..sender].iter_mut().rev() {
                relay.wrap_backward(&mut onion).unwrap();
            }
            fresh_client.unwrap_backward(&mut onion).unwrap();

            let mut onion = left2[sender].clone();
            onion[pos] ^= 1 << (pos % 8);
            for relay in layers[..sender].iter_mut().rev() {
                relay.wrap_backward(&mut onion).unwrap();
            }
            match fresh_client.unwrap_backward(&mut onion) {
                // A flip in the tag or sealed part fails the sender's own
                // layer; one in the tail rides along until some relay
                // nearer the client drops it as associated data, and fails
                // that relay's layer. Never a layer beyond the sender.
                Err(Error::BadLayer { hop }) => assert!(
                    hop <= sender,
                    "flip after hop {sender} blamed on layer {hop}"
                ),
                other => panic!("flip at byte {pos} after hop {sender}: {other:?}"),
            }
        }
    }
}

#[test]
fn replayed_dropped_and_reordered_cells_are_refused() {
    let mut rng = seeded_rng("replay");
    let (mut client, _, keys) = build_circuit(&mut rng, 2);
    let (pa, pb) = (random_payload(&mut rng), random_payload(&mut rng));
    let a = client.wrap_forward(&mut rng, &pa).unwrap();
    let b = client.wrap_forward(&mut rng, &pb).unwrap();

    // Replay at the first relay.
    let mut r = RelayLayer::new(&keys[0]);
    r.peel_forward(&mut a.clone()).unwrap();
    assert_eq!(
        r.peel_forward(&mut a.clone()),
        Err(Error::BadLayer { hop: 0 })
    );
    // Reorder (or a dropped first cell).
    let mut r = RelayLayer::new(&keys[0]);
    assert_eq!(
        r.peel_forward(&mut b.clone()),
        Err(Error::BadLayer { hop: 0 })
    );

    // Backward: replay and reorder at the client.
    let mut exit = RelayLayer::new(&keys[1]);
    let mut mid = RelayLayer::new(&keys[0]);
    let mut cells = Vec::new();
    for _ in 0..2 {
        let mut c = exit.seal_backward(&random_payload(&mut rng)).unwrap();
        mid.wrap_backward(&mut c).unwrap();
        cells.push(c);
    }
    let mut c = client_from(&keys);
    c.unwrap_backward(&mut cells[0].clone()).unwrap();
    assert!(matches!(
        c.unwrap_backward(&mut cells[0].clone()),
        Err(Error::BadLayer { .. })
    ));
    let mut c = client_from(&keys);
    assert!(matches!(
        c.unwrap_backward(&mut cells[1].clone()),
        Err(Error::BadLayer { .. })
    ));
}

#[test]
fn a_cell_moved_to_another_circuit_is_refused() {
    let mut rng = seeded_rng("wrong_circuit");
    let (mut client_a, _, _) = build_circuit(&mut rng, 1);
    let (_, mut relays_b, _) = build_circuit(&mut rng, 1);
    let p = random_payload(&mut rng);
    let mut cell = client_a.wrap_forward(&mut rng, &p).unwrap();
    assert_eq!(
        relays_b[0].peel_forward(&mut cell),
        Err(Error::BadLayer { hop: 0 })
    );
}

#[test]
fn nine_hops_are_refused() {
    let mut rng = seeded_rng("nine_hops");
    let (_, _, keys) = build_circuit(&mut rng, 8);
    let mut c = client_from(&keys);
    assert_eq!(c.add_hop(&keys[0]), Err(Error::TooManyHops { max: 8 }));
    let mut empty = ClientCircuit::new();
    let p = random_payload(&mut rng);
    assert!(matches!(
        empty.wrap_forward(&mut rng, &p),
        Err(Error::NoHops)
    ));
}
