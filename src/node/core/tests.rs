//! The core on its own, fed by hand.

use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::node::Config;
use crate::wire::{NodeAddr, PeerMessage};

fn core(rng: &mut StdRng) -> Core {
    let listen: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let settings = Config {
        id_puzzle_bits: 4,
        ..Config::default()
    }
    .core_settings(listen);
    Core::new(
        Identity::generate(rng),
        settings,
        [],
        [9; 32],
        Instant::now(),
        1,
    )
    .unwrap()
}

fn closes(core: &mut Core, link: LinkId) -> bool {
    std::iter::from_fn(|| core.poll_action())
        .any(|a| matches!(a, Action::Close { link: l, reason: CloseReason::Protocol } if l == link))
}

/// A descriptor is remembered as checked by all of it: another with the
/// same signature bytes is checked again, and refused.
#[test]
fn a_checked_signature_does_not_vouch_for_other_contents() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut c = core(&mut rng);
    let peer = Identity::generate_solving(&mut rng, 4);
    let good = peer
        .sign_descriptor(
            vec![NodeAddr("127.0.0.1:7001".parse().unwrap())],
            1,
            NodeDescriptor::FLAG_RELAY,
        )
        .unwrap();
    let link = LinkId(1);
    let now = Instant::now();
    c.handle_link_up(
        link,
        peer.id(),
        "127.0.0.1:7001".parse().unwrap(),
        true,
        None,
        now,
    );
    c.handle_frame(
        link,
        Frame::Message(PeerMessage::Hello { node: good.clone() }),
        now,
    );
    assert!(!closes(&mut c, link), "the peer's own descriptor is good");
    let mut forged = good.clone();
    forged.addrs = vec![NodeAddr("127.0.0.1:9999".parse().unwrap())];
    c.handle_frame(
        link,
        Frame::Message(PeerMessage::Notify { node: forged }),
        now,
    );
    assert!(closes(&mut c, link), "a forged descriptor got through");
}
