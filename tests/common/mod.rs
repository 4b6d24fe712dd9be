//! Helpers shared by the black-box tests.
#![allow(dead_code)]

pub mod lab;
pub mod net;
pub mod procs;
pub mod samples;
pub mod taps;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use umbra::crypto::{respond, ClientCircuit, ClientHandshake, Identity, LayerKeys, RelayLayer};

/// A seeded RNG whose seed is printed, so a failure can be replayed with
/// `UMBRA_TEST_SEED=...`.
pub fn seeded_rng(test: &str) -> ChaCha20Rng {
    let seed = std::env::var("UMBRA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().next_u64());
    eprintln!("{test}: UMBRA_TEST_SEED={seed}");
    ChaCha20Rng::seed_from_u64(seed)
}

/// A circuit of `n` relays built with real handshakes. Returns the client's
/// layers, each relay's layer, and each hop's keys (so tests can rebuild a
/// fresh copy of any hop's state).
pub fn build_circuit(
    rng: &mut ChaCha20Rng,
    n: usize,
) -> (ClientCircuit, Vec<RelayLayer>, Vec<LayerKeys>) {
    let mut client = ClientCircuit::new();
    let mut relays = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..n {
        let relay = Identity::generate(rng);
        let (state, msg) = ClientHandshake::start(rng, relay.id(), relay.onion_key());
        let (relay_keys, reply) = respond(rng, &relay, None, &msg).expect("relay answers");
        let client_keys = state.finish(&reply).expect("client accepts");
        client.add_hop(&client_keys).expect("room for the hop");
        relays.push(RelayLayer::new(&relay_keys));
        keys.push(relay_keys);
    }
    (client, relays, keys)
}

pub fn client_from(keys: &[LayerKeys]) -> ClientCircuit {
    let mut c = ClientCircuit::new();
    for k in keys {
        c.add_hop(k).expect("room for the hop");
    }
    c
}
