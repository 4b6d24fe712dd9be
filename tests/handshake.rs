//! The circuit handshake and descriptors, black-box: agreement, refusal of
//! the wrong key, tampering, and pinned vectors that catch any accidental
//! change to the key schedule.

mod common;

use common::seeded_rng;
use sha2::{Digest, Sha256};
use umbra::crypto::{
    respond, verify_descriptor, ClientCircuit, ClientHandshake, Error, Identity, LayerKeys,
    RelayLayer,
};
use umbra::wire::{NodeAddr, RELAY_PAYLOAD_LEN};

#[test]
fn a_stale_or_wrong_onion_key_is_refused_by_the_relay() {
    let mut rng = seeded_rng("stale_key");
    let relay = Identity::generate(&mut rng);
    let other = Identity::generate(&mut rng);
    let (_, msg) = ClientHandshake::start(&mut rng, relay.id(), other.onion_key());
    assert_eq!(
        respond(&mut rng, &relay, None, &msg).map(|_| ()),
        Err(Error::HandshakeNotForUs)
    );
    let (_, msg) = ClientHandshake::start(&mut rng, other.id(), relay.onion_key());
    assert_eq!(
        respond(&mut rng, &relay, None, &msg).map(|_| ()),
        Err(Error::HandshakeNotForUs)
    );
}

#[test]
fn a_relay_without_the_onion_key_cannot_complete_the_handshake() {
    let mut rng = seeded_rng("impostor");
    let relay = Identity::generate(&mut rng);
    // Same identity (so same id), different onion key: someone who stole the
    // identity key but not the onion key, or a man in the middle.
    let mut secrets = *relay.secret_bytes();
    secrets[32..].copy_from_slice(&[0x42; 32]);
    let impostor = Identity::from_secret_bytes(&secrets);
    assert_eq!(impostor.id(), relay.id());

    let (state, mut msg) = ClientHandshake::start(&mut rng, relay.id(), relay.onion_key());
    // The impostor answers as if the client had named its key.
    msg[32..64].copy_from_slice(&impostor.onion_key());
    let (_, reply) = respond(&mut rng, &impostor, None, &msg).unwrap();
    assert_eq!(state.finish(&reply).map(|_| ()), Err(Error::HandshakeAuth));
}

#[test]
fn every_bit_of_the_reply_is_checked() {
    let mut rng = seeded_rng("reply_bits");
    let relay = Identity::generate(&mut rng);
    for bit in 0..64 * 8 {
        let (state, msg) = ClientHandshake::start(&mut rng, relay.id(), relay.onion_key());
        let (_, mut reply) = respond(&mut rng, &relay, None, &msg).unwrap();
        reply[bit / 8] ^= 1 << (bit % 8);
        assert!(
            matches!(
                state.finish(&reply),
                Err(Error::HandshakeAuth | Error::NonContributory)
            ),
            "bit {bit} of the reply is not authenticated"
        );
    }
    let (state, _) = ClientHandshake::start(&mut rng, relay.id(), relay.onion_key());
    assert_eq!(
        state.finish(&[0; 63]).map(|_| ()),
        Err(Error::HandshakeLength {
            len: 63,
            expected: 64
        })
    );
}

#[test]
fn each_handshake_gives_fresh_keys() {
    let mut rng = seeded_rng("fresh");
    let relay = Identity::generate(&mut rng);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (state, msg) = ClientHandshake::start(&mut rng, relay.id(), relay.onion_key());
        let (_, reply) = respond(&mut rng, &relay, None, &msg).unwrap();
        let k = state.finish(&reply).unwrap();
        assert!(!seen.contains(&k.forward));
        seen.push(k.forward);
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// An RNG that hands out a fixed script of bytes, so that the vectors can
/// be computed independently (tests/vectors/independent.py).
struct Scripted(Vec<u8>);

impl rand::RngCore for Scripted {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(dest.len() <= self.0.len(), "script ran out");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand::CryptoRng for Scripted {}

/// Pinned, and computed independently by tests/vectors/independent.py: a
/// change here is a change to the protocol.
#[test]
fn handshake_and_descriptor_vectors() {
    let mut secrets = [0x11u8; 64];
    secrets[32..].fill(0x22);
    let relay = Identity::from_secret_bytes(&secrets);
    assert_eq!(hex::encode(relay.id().0), VECTOR_ID);
    let (state, msg) =
        ClientHandshake::start(&mut Scripted(vec![0x33; 32]), relay.id(), relay.onion_key());
    assert_eq!(hex::encode(msg), VECTOR_CLIENT_MSG);
    let (relay_keys, reply) = respond(&mut Scripted(vec![0x44; 32]), &relay, None, &msg).unwrap();
    assert_eq!(hex::encode(reply), VECTOR_REPLY);
    let keys = state.finish(&reply).unwrap();
    assert_eq!(keys.forward, relay_keys.forward);
    let mut all = Vec::new();
    all.extend(keys.forward);
    all.extend(keys.backward);
    all.extend(keys.pad);
    assert_eq!(hex::encode(all), VECTOR_KEYS);

    let d = relay
        .sign_descriptor(
            vec![NodeAddr("127.0.0.1:4000".parse().unwrap())],
            1_700_000_000,
            1,
        )
        .unwrap();
    assert_eq!(hex::encode(d.signature), VECTOR_SIGNATURE);
    assert_eq!(verify_descriptor(&d), Ok(relay.id()));
}

/// Pinned: the bytes each side of a 3-hop circuit produces from fixed keys.
#[test]
fn onion_vectors() {
    let keys: Vec<LayerKeys> = (1..=3u8)
        .map(|i| {
            let mut b = [0u8; 96];
            for (j, x) in b.iter_mut().enumerate() {
                *x = i.wrapping_mul(31).wrapping_add(j as u8);
            }
            LayerKeys::from_bytes(&b)
        })
        .collect();
    let mut client = ClientCircuit::new();
    for k in &keys {
        client.add_hop(k).unwrap();
    }
    // The exit's random fill: 16 * (8 - 3) bytes.
    let mut rng = Scripted(vec![0x99; 80]);
    let payload = Box::new([0x5a; RELAY_PAYLOAD_LEN]);
    let mut onion = client.wrap_forward(&mut rng, &payload).unwrap();
    assert_eq!(sha256_hex(&onion[..]), VECTOR_FORWARD_SHA256);
    for k in &keys {
        RelayLayer::new(k).peel_forward(&mut onion).unwrap();
    }
    assert_eq!(RelayLayer::payload(&onion), &payload[..]);

    let mut relays: Vec<RelayLayer> = keys.iter().map(RelayLayer::new).collect();
    let mut onion = relays[2].seal_backward(&payload).unwrap();
    relays[1].wrap_backward(&mut onion).unwrap();
    relays[0].wrap_backward(&mut onion).unwrap();
    assert_eq!(sha256_hex(&onion[..]), VECTOR_BACKWARD_SHA256);
    assert_eq!(client.unwrap_backward(&mut onion).unwrap(), payload);
}

const VECTOR_ID: &str = "10ba682c8ad13513971e8b56881aab8bd702bb807796eca81932c735a94d6e6d";
const VECTOR_CLIENT_MSG: &str =
    "10ba682c8ad13513971e8b56881aab8bd702bb807796eca81932c735a94d6e6d0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f207b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14";
const VECTOR_REPLY: &str =
    "ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff3e6b2d96d4be82bb5ef4599dd2de0bea41efd5f061246aaaec046bb6e013dacc12ed";
const VECTOR_KEYS: &str =
    "266ee2f10dfd7496d56be2ea5dc778f882f36018f988efe97104e55f3f31f57bbed0f493495254c95140a239ba8abc1b57e8ae90e9e14ba04c49bec8f99715e8ff164342c07ac620093b5c3ad4a29f27a2cc67447e12fb3b7d1acecf59d42464";
const VECTOR_SIGNATURE: &str =
    "53a5f32b227737c70c10aeecc612bfde46c289924a65f4fe02a4c606b7cd23ad37337115d2907c72073d77635e0fe38dd62615c736b4256f65fc62e6925b100f";
const VECTOR_FORWARD_SHA256: &str =
    "4ef75ac059c2492a7b2bc92da06dc3fb65714f0e79c8d50358b58c3703d1c119";
const VECTOR_BACKWARD_SHA256: &str =
    "a1c2f7f686045ac937b5b13f636d788e4eee25d9af748f366b92a0d111e4ca2b";
