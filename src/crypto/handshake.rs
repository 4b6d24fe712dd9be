//! The circuit handshake: an authenticated one-way key agreement in the
//! shape of Tor's ntor (tor-spec 5.1.4).
//!
//! The client knows the relay's id `ID` and onion key `B` from its signed
//! descriptor, and sends `ID | B | X` with a fresh ephemeral `X = x·G`. The
//! relay answers `Y | AUTH` with a fresh `Y = y·G`. Both compute
//!
//! ```text
//! secret = DH(x, Y) | DH(x, B) | ID | B | X | Y | PROTOID
//! PRK    = HKDF-Extract(salt = PROTOID, secret)
//! verify = HKDF-Expand(PRK, "umbra-ntor-1:verify", 32)
//! AUTH   = HMAC-SHA256(verify, ID | B | Y | X | PROTOID | "server")
//! keys   = HKDF-Expand(PRK, "umbra-ntor-1:layer-keys", 96)
//! ```
//!
//! Only a holder of `b` can compute `DH(x, B)`, so a valid `AUTH` proves the
//! relay holds the onion key its descriptor names; `x` and `y` are thrown
//! away after one use, so recording the exchange and later stealing `b`
//! does not reveal the layer keys (forward secrecy). The client is not
//! authenticated at all: that is the point.

use hkdf::hmac::{Hmac, Mac};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{Error, Identity};
use crate::wire::NodeId;

const PROTOID: &[u8] = b"umbra-ntor-x25519-sha256-1";
const VERIFY_INFO: &[u8] = b"umbra-ntor-1:verify";
const KEYS_INFO: &[u8] = b"umbra-ntor-1:layer-keys";
const SERVER: &[u8] = b"server";

/// `ID | B | X`.
pub const CLIENT_MSG_LEN: usize = 32 * 3;
/// `Y | AUTH`.
pub const SERVER_MSG_LEN: usize = 32 * 2;

/// The keys of one hop's layer: one ChaCha20-Poly1305 key per direction and
/// one key for the forward padding stream. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LayerKeys {
    pub forward: [u8; 32],
    pub backward: [u8; 32],
    pub pad: [u8; 32],
}

impl std::fmt::Debug for LayerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerKeys(..)")
    }
}

impl LayerKeys {
    /// Split 96 bytes of key material; for tests and fuzzing, and for the
    /// handshake's own output.
    pub fn from_bytes(bytes: &[u8; 96]) -> LayerKeys {
        let mut k = LayerKeys {
            forward: [0; 32],
            backward: [0; 32],
            pad: [0; 32],
        };
        k.forward.copy_from_slice(&bytes[..32]);
        k.backward.copy_from_slice(&bytes[32..64]);
        k.pad.copy_from_slice(&bytes[64..]);
        k
    }
}

/// The client's half of a handshake in flight.
pub struct ClientHandshake {
    relay_id: NodeId,
    relay_onion: PublicKey,
    /// Ephemeral, used twice (with `Y` and with `B`), then dropped; the
    /// dalek type zeroizes itself.
    x: StaticSecret,
    x_pub: PublicKey,
}

impl ClientHandshake {
    /// Start a handshake with the relay whose descriptor named `relay_id`
    /// and `relay_onion`. Returns the state to keep and the message to send.
    pub fn start<R: RngCore + CryptoRng>(
        rng: &mut R,
        relay_id: NodeId,
        relay_onion: [u8; 32],
    ) -> (ClientHandshake, [u8; CLIENT_MSG_LEN]) {
        let x = StaticSecret::random_from_rng(rng);
        let x_pub = PublicKey::from(&x);
        let mut msg = [0u8; CLIENT_MSG_LEN];
        msg[..32].copy_from_slice(&relay_id.0);
        msg[32..64].copy_from_slice(&relay_onion);
        msg[64..].copy_from_slice(x_pub.as_bytes());
        let state = ClientHandshake {
            relay_id,
            relay_onion: PublicKey::from(relay_onion),
            x,
            x_pub,
        };
        (state, msg)
    }

    /// Check the relay's reply and derive the layer keys.
    pub fn finish(self, reply: &[u8]) -> Result<LayerKeys, Error> {
        let reply: &[u8; SERVER_MSG_LEN] =
            reply.try_into().map_err(|_| Error::HandshakeLength {
                len: reply.len(),
                expected: SERVER_MSG_LEN,
            })?;
        let mut y = [0u8; 32];
        y.copy_from_slice(&reply[..32]);
        let y_pub = PublicKey::from(y);
        let dh_y = contributory(self.x.diffie_hellman(&y_pub))?;
        let dh_b = contributory(self.x.diffie_hellman(&self.relay_onion))?;
        let t = Transcript {
            id: &self.relay_id,
            b: &self.relay_onion,
            x: &self.x_pub,
            y: &y_pub,
        };
        let (mac, keys) = t.derive(&dh_y, &dh_b)?;
        // Constant-time comparison of the relay's proof.
        mac.verify_slice(&reply[32..])
            .map_err(|_| Error::HandshakeAuth)?;
        Ok(keys)
    }
}

/// The relay's side: answer a client's handshake message, made to the
/// relay's current onion key or to `previous` (the one before a rotation).
/// Returns the layer keys for the new circuit hop and the reply to send.
pub fn respond<R: RngCore + CryptoRng>(
    rng: &mut R,
    identity: &Identity,
    previous: Option<&StaticSecret>,
    msg: &[u8],
) -> Result<(LayerKeys, [u8; SERVER_MSG_LEN]), Error> {
    let msg: &[u8; CLIENT_MSG_LEN] = msg.try_into().map_err(|_| Error::HandshakeLength {
        len: msg.len(),
        expected: CLIENT_MSG_LEN,
    })?;
    let id = identity.id();
    // Not secret: both are public. A client that names another relay or a
    // stale onion key gets a clear refusal instead of a failed AUTH later.
    if msg[..32] != id.0 {
        return Err(Error::HandshakeNotForUs);
    }
    let current = identity.onion_secret();
    let b = [Some(current), previous]
        .into_iter()
        .flatten()
        .find(|b| PublicKey::from(*b).as_bytes()[..] == msg[32..64])
        .ok_or(Error::HandshakeNotForUs)?;
    let b_pub = PublicKey::from(b);
    let mut x = [0u8; 32];
    x.copy_from_slice(&msg[64..]);
    let x_pub = PublicKey::from(x);

    let y = StaticSecret::random_from_rng(rng);
    let y_pub = PublicKey::from(&y);
    let dh_y = contributory(y.diffie_hellman(&x_pub))?;
    let dh_b = contributory(b.diffie_hellman(&x_pub))?;
    let t = Transcript {
        id: &id,
        b: &b_pub,
        x: &x_pub,
        y: &y_pub,
    };
    let (mac, keys) = t.derive(&dh_y, &dh_b)?;
    let mut reply = [0u8; SERVER_MSG_LEN];
    reply[..32].copy_from_slice(y_pub.as_bytes());
    reply[32..].copy_from_slice(&mac.finalize().into_bytes());
    Ok((keys, reply))
}

/// A shared secret from a small-order point is all zeros and known to
/// everyone: refuse it rather than derive keys from it.
fn contributory(s: SharedSecret) -> Result<SharedSecret, Error> {
    if s.was_contributory() {
        Ok(s)
    } else {
        Err(Error::NonContributory)
    }
}

struct Transcript<'a> {
    id: &'a NodeId,
    b: &'a PublicKey,
    x: &'a PublicKey,
    y: &'a PublicKey,
}

impl Transcript<'_> {
    /// The AUTH MAC, ready to finalize or verify, and the layer keys.
    fn derive(
        &self,
        dh_y: &SharedSecret,
        dh_b: &SharedSecret,
    ) -> Result<(Hmac<Sha256>, LayerKeys), Error> {
        let mut secret = Zeroizing::new(Vec::with_capacity(32 * 6 + PROTOID.len()));
        secret.extend_from_slice(dh_y.as_bytes());
        secret.extend_from_slice(dh_b.as_bytes());
        secret.extend_from_slice(&self.id.0);
        secret.extend_from_slice(self.b.as_bytes());
        secret.extend_from_slice(self.x.as_bytes());
        secret.extend_from_slice(self.y.as_bytes());
        secret.extend_from_slice(PROTOID);
        let hk = Hkdf::<Sha256>::new(Some(PROTOID), &secret);

        let mut verify = Zeroizing::new([0u8; 32]);
        let mut okm = Zeroizing::new([0u8; 96]);
        // Both lengths are far below HKDF-SHA256's limit of 8160 bytes.
        hk.expand(VERIFY_INFO, &mut verify[..])
            .map_err(|_| Error::HandshakeAuth)?;
        hk.expand(KEYS_INFO, &mut okm[..])
            .map_err(|_| Error::HandshakeAuth)?;

        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&verify[..]).map_err(|_| Error::HandshakeAuth)?;
        mac.update(&self.id.0);
        mac.update(self.b.as_bytes());
        mac.update(self.y.as_bytes());
        mac.update(self.x.as_bytes());
        mac.update(PROTOID);
        mac.update(SERVER);
        Ok((mac, LayerKeys::from_bytes(&okm)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn both_sides_agree() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let relay = Identity::generate(&mut rng);
        let (state, msg) = ClientHandshake::start(&mut rng, relay.id(), relay.onion_key());
        let (relay_keys, reply) = respond(&mut rng, &relay, None, &msg).unwrap();
        let client_keys = state.finish(&reply).unwrap();
        assert_eq!(client_keys.forward, relay_keys.forward);
        assert_eq!(client_keys.backward, relay_keys.backward);
        assert_eq!(client_keys.pad, relay_keys.pad);
        assert_ne!(client_keys.forward, client_keys.backward);
    }

    #[test]
    fn a_handshake_to_the_key_before_a_rotation_works_and_older_ones_do_not() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut relay = Identity::generate(&mut rng);
        let first = relay.onion_key();
        let second = StaticSecret::random_from_rng(&mut rng);
        let previous = relay.replace_onion(second);
        // A client still holding the descriptor before the rotation.
        let (state, msg) = ClientHandshake::start(&mut rng, relay.id(), first);
        let (relay_keys, reply) = respond(&mut rng, &relay, Some(&previous), &msg).unwrap();
        assert_eq!(state.finish(&reply).unwrap().forward, relay_keys.forward);
        // After the next rotation the first key is gone.
        let third = StaticSecret::random_from_rng(&mut rng);
        let previous = relay.replace_onion(third);
        let (_, msg) = ClientHandshake::start(&mut rng, relay.id(), first);
        assert_eq!(
            respond(&mut rng, &relay, Some(&previous), &msg).map(|_| ()),
            Err(Error::HandshakeNotForUs)
        );
    }

    #[test]
    fn small_order_ephemeral_is_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let relay = Identity::generate(&mut rng);
        let mut msg = [0u8; CLIENT_MSG_LEN];
        msg[..32].copy_from_slice(&relay.id().0);
        msg[32..64].copy_from_slice(&relay.onion_key());
        // X = 0 is a point of small order.
        assert_eq!(
            respond(&mut rng, &relay, None, &msg).map(|_| ()),
            Err(Error::NonContributory)
        );
    }
}
