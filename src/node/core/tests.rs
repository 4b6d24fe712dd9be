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
    let settings = Config::default().core_settings(listen);
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
    let peer = Identity::generate(&mut rng);
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

/// A descriptor is taken for three days after it was signed, and a node
/// signs a fresh one every day and shows it to its peers.
#[test]
fn descriptors_expire_and_nodes_refresh_theirs() {
    let mut rng = StdRng::seed_from_u64(2);
    let start = Instant::now();
    let unix = 1_800_000_000;
    let listen: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let mut c = Core::new(
        Identity::generate(&mut rng),
        Config::default().core_settings(listen),
        [],
        [3; 32],
        start,
        unix,
    )
    .unwrap();
    let peer = Identity::generate(&mut rng);
    let signed = |at: u64| {
        peer.sign_descriptor(
            vec![NodeAddr("127.0.0.1:7001".parse().unwrap())],
            at,
            NodeDescriptor::FLAG_RELAY,
        )
        .unwrap()
    };
    let link = LinkId(1);
    let addr = "127.0.0.1:7001".parse().unwrap();
    c.handle_link_up(link, peer.id(), addr, true, None, start);
    while c.poll_action().is_some() {}
    let stale = |c: &Core| c.status(None).stale_descriptors;

    // Too old, and too far ahead: dropped, and the peer is not blamed for
    // what may be a clock.
    for at in [
        unix - DESCRIPTOR_LIFETIME_SECS - 1,
        unix + CLOCK_SKEW_SECS + 60,
    ] {
        c.handle_frame(
            link,
            Frame::Message(PeerMessage::Hello { node: signed(at) }),
            start,
        );
        assert!(!closes(&mut c, link));
    }
    assert_eq!(stale(&c), 2);
    // Within its lifetime, and within the skew: taken.
    for at in [unix - DESCRIPTOR_LIFETIME_SECS + 60, unix + 60] {
        c.handle_frame(
            link,
            Frame::Message(PeerMessage::Hello { node: signed(at) }),
            start,
        );
        assert!(!closes(&mut c, link));
    }
    assert_eq!(stale(&c), 2);
    // A list naming an expired node loses that entry, not the message.
    let mut reply = PeerMessage::PredecessorReply {
        query: 1,
        predecessor: Some(signed(unix - DESCRIPTOR_LIFETIME_SECS - 1)),
        successors: vec![signed(unix), signed(1)],
    };
    assert!(c.drop_stale(&mut reply, start));
    let PeerMessage::PredecessorReply {
        predecessor,
        successors,
        ..
    } = reply
    else {
        unreachable!()
    };
    assert!(predecessor.is_none());
    assert_eq!(successors.len(), 1);

    // A day on, the node signs a fresh descriptor and says hello with it.
    let day = start + DESCRIPTOR_REFRESH;
    assert!(c.poll_timeout() <= day);
    c.handle_timeout(day);
    let fresh: Vec<u64> = std::iter::from_fn(|| c.poll_action())
        .filter_map(|a| match a {
            Action::Send {
                frame: Frame::Message(PeerMessage::Hello { node }),
                ..
            } => Some(node.published),
            _ => None,
        })
        .collect();
    assert_eq!(fresh, vec![unix + DESCRIPTOR_REFRESH.as_secs()]);
}
