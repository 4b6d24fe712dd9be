//! The core on its own, fed by hand.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// A relay signs its descriptor again every few hours, makes a new onion
/// key every week, and keeps the one before; both are saved.
#[test]
fn a_relay_makes_a_new_onion_key_each_week_and_keeps_the_last() {
    use std::time::Duration;
    let public = |s: &x25519_dalek::StaticSecret| x25519_dalek::PublicKey::from(s).to_bytes();
    let mut rng = StdRng::seed_from_u64(2);
    let mut c = core(&mut rng);
    let t0 = Instant::now();
    let first = c.descriptor().onion_key;
    let saved = c
        .take_onion_changed()
        .expect("a relay saves its keys from the start");
    let keys = onion::OnionKeys::decode(&saved).unwrap();
    assert_eq!(public(&keys.current), first);
    assert!(keys.previous.is_none());
    // A day on: a descriptor of that day, the same key.
    c.handle_timeout(t0 + Duration::from_secs(86_400));
    assert_eq!(c.descriptor().onion_key, first);
    assert_eq!(c.descriptor().published, 1 + 86_400);
    assert!(c.take_onion_changed().is_none(), "nothing new to save");
    // A week on: a new key, named by a new descriptor; the old one kept.
    c.handle_timeout(t0 + Duration::from_secs(crate::crypto::ONION_KEY_LIFETIME + 1));
    let second = c.descriptor().onion_key;
    assert_ne!(second, first);
    let keys = onion::OnionKeys::decode(&c.take_onion_changed().expect("saved")).unwrap();
    assert_eq!(public(&keys.current), second);
    assert_eq!(keys.previous.as_ref().map(public), Some(first));
    // Another week: the first key is gone.
    c.handle_timeout(t0 + Duration::from_secs(2 * crate::crypto::ONION_KEY_LIFETIME + 2));
    let keys = onion::OnionKeys::decode(&c.take_onion_changed().expect("saved")).unwrap();
    assert_eq!(keys.previous.as_ref().map(public), Some(second));
}

/// The links a core closed as duplicates, from its pending actions.
fn duplicates_closed(c: &mut Core) -> Vec<LinkId> {
    std::iter::from_fn(|| c.poll_action())
        .filter_map(|a| match a {
            Action::Close {
                link,
                reason: CloseReason::Duplicate,
            } => Some(link),
            _ => None,
        })
        .collect()
}

/// A peer that dials again while its old link is still open here
/// restarted: the new link is kept and the old one closed, whichever id is
/// the smaller. (Keeping the old one would send everything for the peer
/// down a link whose other end no longer exists.)
#[test]
fn a_peer_that_dials_again_gets_its_new_link() {
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..4 {
        let mut c = core(&mut rng);
        let peer = Identity::generate_solving(&mut rng, 4).id();
        let from: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let now = Instant::now();
        let (old, new) = (LinkId(1), LinkId(2));
        c.handle_link_up(old, peer, from, true, None, now);
        c.handle_link_up(new, peer, from, true, None, now);
        c.handle_timeout(now + LINK_GRACE);
        let closed = duplicates_closed(&mut c);
        assert_eq!(closed, vec![old], "peer {peer:?}, this node {:?}", c.id());
    }
}

/// The same when the old link was dialled by this node and the peer dials
/// long after it came up: the peer restarted, whichever id is smaller.
/// Links that come up together are a race, and keep the smaller id's.
#[test]
fn a_restarted_peer_that_dials_back_gets_its_new_link() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut orders = std::collections::HashSet::new();
    for _ in 0..8 {
        for apart in [Duration::from_millis(300), LINK_RACE] {
            let mut c = core(&mut rng);
            let peer = Identity::generate_solving(&mut rng, 4).id();
            orders.insert(peer < c.id());
            let to: SocketAddr = "127.0.0.1:7001".parse().unwrap();
            let t0 = Instant::now();
            let (ours, theirs) = (LinkId(1), LinkId(2));
            c.handle_link_up(ours, peer, to, false, None, t0);
            c.handle_link_up(theirs, peer, to, true, None, t0 + apart);
            c.handle_timeout(t0 + apart + LINK_GRACE);
            let closed = duplicates_closed(&mut c);
            let expected = if apart >= LINK_RACE || peer < c.id() {
                ours
            } else {
                theirs
            };
            assert_eq!(
                closed,
                vec![expected],
                "{apart:?} apart, peer {peer:?}, this node {:?}",
                c.id()
            );
        }
    }
    assert_eq!(orders.len(), 2, "both id orders tried");
}

/// A message for an address goes on the link already open to whoever is
/// there, rather than a new dial: a second link to a peer replaces the
/// first at its end, and every circuit on the first with it (the ring's
/// recheck asks a bootstrap node by address once a minute).
#[test]
fn a_message_for_an_address_already_linked_goes_on_that_link() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut c = core(&mut rng);
    let peer = Identity::generate_solving(&mut rng, 4).id();
    let at: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let now = Instant::now();
    c.handle_link_up(LinkId(1), peer, at, false, None, now);
    while c.poll_action().is_some() {}
    for expect in [None, Some(peer)] {
        c.send_to_addr(at, expect, PeerMessage::Ping { nonce: 7 });
        let actions: Vec<Action> = std::iter::from_fn(|| c.poll_action()).collect();
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Dial { .. })),
            "dialled again ({expect:?})"
        );
        assert!(
            actions.iter().any(|a| matches!(
                a,
                Action::Send {
                    link: LinkId(1),
                    frame: Frame::Message(PeerMessage::Ping { nonce: 7 })
                }
            )),
            "not sent on the open link ({expect:?})"
        );
    }
    // An address no link leads to is dialled.
    c.send_to_addr(
        "127.0.0.1:7002".parse().unwrap(),
        None,
        PeerMessage::Ping { nonce: 8 },
    );
    assert!(std::iter::from_fn(|| c.poll_action()).any(|a| matches!(a, Action::Dial { .. })));
}
