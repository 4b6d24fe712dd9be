//! Per-hop onion layers with ChaCha20-Poly1305, keeping every relay cell
//! exactly [`ONION_LEN`] bytes at every hop.
//!
//! Each layer adds a 16-byte tag, so something must give way for the size to
//! stay fixed. The scheme (`docs/protocol.md`, "Onion layers") borrows the
//! filler idea of Sphinx (Danezis and Goldberg, 2009):
//!
//! * Forward (client to exit), each relay verifies and strips its tag, then
//!   appends 16 bytes of its own pseudorandom padding. The client, knowing
//!   every hop's keys, computes that padding in advance and builds the onion
//!   so that each hop's tag covers the bytes the hop will actually see,
//!   padding of earlier hops included. Any altered bit fails at the very next
//!   relay.
//! * Backward (exit to client), each relay encrypts all but the last 16
//!   bytes, binds those 16 dropped bytes as associated data, and puts its tag
//!   in front. The client knows what the dropped bytes must have been (they
//!   start as zeros at the exit) and so can check every layer. Relays share
//!   no keys with one another, so the client is the first party able to
//!   check; any altered bit fails there, at the layer of the hop that sent
//!   it or of a hop nearer the client that later dropped it.
//!
//! Nonces are implicit per-direction cell counters, never sent: a replayed,
//! dropped or reordered cell is opened under the wrong nonce and fails. The
//! exit's payload is the first [`RELAY_PAYLOAD_LEN`] bytes; room for
//! [`MAX_HOPS`] tags is always reserved, so the exit cannot count the hops
//! before it.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use rand::{CryptoRng, RngCore};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

use super::{Error, LayerKeys};
use crate::wire::{MAX_HOPS, ONION_LEN, RELAY_PAYLOAD_LEN, TAG_LEN};

/// What one layer encrypts: the onion minus one tag.
const PLAIN_LEN: usize = ONION_LEN - TAG_LEN;

/// The 96-bit nonce for cell number `ctr` in one direction.
fn nonce_bytes(ctr: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&ctr.to_be_bytes());
    n
}

/// The same nonce for the AEAD. Unique per key: each direction of each
/// hop has its own key, and its counter never repeats.
fn nonce(ctr: u64) -> Nonce {
    Nonce::assume_unique_for_key(nonce_bytes(ctr))
}

fn tag_of(bytes: &[u8]) -> Tag {
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(bytes);
    Tag::from(t)
}

/// XOR into `buf` the keystream that ChaCha20-Poly1305 under `key` and cell
/// `ctr` applies to plaintext bytes `start..start + buf.len()`. RFC 8439
/// section 2.8: block 0 makes the Poly1305 key, so the plaintext keystream
/// starts 64 bytes in.
fn aead_keystream_xor(key: &[u8; 32], ctr: u64, start: usize, buf: &mut [u8]) {
    let mut c = ChaCha20::new(key.into(), &nonce_bytes(ctr).into());
    c.seek(64 + start);
    c.apply_keystream(buf);
}

/// The 16 bytes a relay appends after stripping its forward tag.
fn forward_pad(pad_key: &[u8; 32], ctr: u64) -> [u8; TAG_LEN] {
    let mut p = [0u8; TAG_LEN];
    ChaCha20::new(pad_key.into(), &nonce_bytes(ctr).into()).apply_keystream(&mut p);
    p
}

/// One direction of one hop: its cipher, raw key (for computing fillers)
/// and the counter of the next cell.
struct Direction {
    aead: LessSafeKey,
    key: Zeroizing<[u8; 32]>,
    next: u64,
}

impl Direction {
    fn new(key: &[u8; 32]) -> Direction {
        Direction {
            aead: LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, key)
                    .expect("a 32-byte key is the right length"),
            ),
            key: Zeroizing::new(*key),
            next: 0,
        }
    }

    /// The counter for the next cell. It never wraps: a nonce must never
    /// repeat under one key, so the circuit ends first.
    fn peek(&self) -> Result<u64, Error> {
        if self.next == u64::MAX {
            Err(Error::CounterExhausted)
        } else {
            Ok(self.next)
        }
    }

    fn advance(&mut self) {
        self.next += 1;
    }
}

/// One relay's layer on one circuit.
pub struct RelayLayer {
    fwd: Direction,
    bwd: Direction,
    pad_key: Zeroizing<[u8; 32]>,
    broken: bool,
}

impl RelayLayer {
    pub fn new(keys: &LayerKeys) -> RelayLayer {
        RelayLayer {
            fwd: Direction::new(&keys.forward),
            bwd: Direction::new(&keys.backward),
            pad_key: Zeroizing::new(keys.pad),
            broken: false,
        }
    }

    /// Take this hop's layer off a cell travelling away from the client.
    /// Afterwards a middle relay forwards `onion` as it is; an exit reads
    /// its payload with [`RelayLayer::payload`]. On failure the layer is
    /// dead: the caller must destroy the circuit, and every later call fails.
    pub fn peel_forward(&mut self, onion: &mut [u8; ONION_LEN]) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        let ctr = self.fwd.peek()?;
        let tag = tag_of(&onion[..TAG_LEN]);
        // Opened and moved to the front in one pass.
        if self
            .fwd
            .aead
            .open_in_place_separate_tag(nonce(ctr), Aad::empty(), tag, &mut onion[..], TAG_LEN..)
            .is_err()
        {
            self.broken = true;
            return Err(Error::BadLayer { hop: 0 });
        }
        self.fwd.advance();
        onion[PLAIN_LEN..].copy_from_slice(&forward_pad(&self.pad_key, ctr));
        Ok(())
    }

    /// The relay message region of a cell this hop has peeled as the exit.
    pub fn payload(onion: &[u8; ONION_LEN]) -> &[u8] {
        &onion[..RELAY_PAYLOAD_LEN]
    }

    /// Add this hop's layer to a cell travelling toward the client.
    pub fn wrap_backward(&mut self, onion: &mut [u8; ONION_LEN]) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        let ctr = self.bwd.peek()?;
        let mut dropped = [0u8; TAG_LEN];
        dropped.copy_from_slice(&onion[PLAIN_LEN..]);
        let tag = self
            .bwd
            .aead
            .seal_in_place_separate_tag(nonce(ctr), Aad::from(dropped), &mut onion[..PLAIN_LEN])
            .map_err(|_| Error::Broken)?;
        self.bwd.advance();
        onion.copy_within(..PLAIN_LEN, TAG_LEN);
        onion[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// As the exit: seal a relay payload for the client. The bytes after the
    /// payload start as zeros, which is what lets the client check the
    /// layers that later relays add.
    pub fn seal_backward(
        &mut self,
        payload: &[u8; RELAY_PAYLOAD_LEN],
    ) -> Result<Box<[u8; ONION_LEN]>, Error> {
        let mut onion = Box::new([0u8; ONION_LEN]);
        onion[..RELAY_PAYLOAD_LEN].copy_from_slice(payload);
        self.wrap_backward(&mut onion)?;
        Ok(onion)
    }
}

/// The client's view of one hop.
struct ClientHop {
    fwd: Direction,
    bwd: Direction,
    pad_key: Zeroizing<[u8; 32]>,
}

/// The client's layers for a whole circuit, hop 0 first.
#[derive(Default)]
pub struct ClientCircuit {
    hops: Vec<ClientHop>,
    broken: bool,
}

impl ClientCircuit {
    pub fn new() -> ClientCircuit {
        ClientCircuit::default()
    }

    pub fn len(&self) -> usize {
        self.hops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }

    /// Append the hop whose handshake just completed.
    pub fn add_hop(&mut self, keys: &LayerKeys) -> Result<(), Error> {
        if self.hops.len() == MAX_HOPS {
            return Err(Error::TooManyHops { max: MAX_HOPS });
        }
        self.hops.push(ClientHop {
            fwd: Direction::new(&keys.forward),
            bwd: Direction::new(&keys.backward),
            pad_key: Zeroizing::new(keys.pad),
        });
        Ok(())
    }

    /// Wrap a payload for the last hop. The bytes between the payload and
    /// the fillers are random, so the exit sees pseudorandom bytes after its
    /// payload whatever the circuit's length.
    pub fn wrap_forward<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        payload: &[u8; RELAY_PAYLOAD_LEN],
    ) -> Result<Box<[u8; ONION_LEN]>, Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        let Some((exit, relays)) = self.hops.split_last() else {
            return Err(Error::NoHops);
        };
        let ctrs = self.counters(|h| &h.fwd)?;

        // The filler: what the last 16·(n-1) bytes the exit receives will
        // be, built up as each relay decrypts and then appends its padding.
        let mut filler = Zeroizing::new(Vec::with_capacity(TAG_LEN * MAX_HOPS));
        for (hop, &ctr) in relays.iter().zip(&ctrs) {
            let start = PLAIN_LEN - filler.len();
            aead_keystream_xor(&hop.fwd.key, ctr, start, &mut filler);
            filler.extend_from_slice(&forward_pad(&hop.pad_key, ctr));
        }

        let mut onion = Box::new([0u8; ONION_LEN]);
        let fill_start = PLAIN_LEN - filler.len();
        {
            let plain = &mut onion[TAG_LEN..];
            plain[..RELAY_PAYLOAD_LEN].copy_from_slice(payload);
            rng.fill_bytes(&mut plain[RELAY_PAYLOAD_LEN..fill_start]);
            // Pre-cancel the exit's keystream so its ciphertext there is
            // exactly the filler the relays will have produced.
            plain[fill_start..].copy_from_slice(&filler);
            let exit_ctr = ctrs[relays.len()];
            aead_keystream_xor(
                &exit.fwd.key,
                exit_ctr,
                fill_start,
                &mut plain[fill_start..],
            );
        }
        seal_forward(&exit.fwd, ctrs[relays.len()], &mut onion)?;

        // Outward in: each relay's plaintext is the next layer minus the 16
        // bytes that the relay itself will append.
        for (hop, &ctr) in relays.iter().zip(&ctrs).rev() {
            debug_assert_eq!(onion[PLAIN_LEN..], forward_pad(&hop.pad_key, ctr));
            onion.copy_within(..PLAIN_LEN, TAG_LEN);
            seal_forward(&hop.fwd, ctr, &mut onion)?;
        }
        for hop in &mut self.hops {
            hop.fwd.advance();
        }
        Ok(onion)
    }

    /// Take every layer off a cell from the exit and return its payload.
    /// On failure the circuit is dead; the error names the first layer that
    /// did not authenticate (0 is the first relay).
    pub fn unwrap_backward(
        &mut self,
        onion: &mut [u8; ONION_LEN],
    ) -> Result<Box<[u8; RELAY_PAYLOAD_LEN]>, Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        let n = self.hops.len();
        if n == 0 {
            return Err(Error::NoHops);
        }
        let ctrs = self.counters(|h| &h.bwd)?;

        // What each relay dropped, computed from the exit outward: the exit
        // sealed zeros there, and each relay's encryption then shifted them.
        let mut dropped = vec![[0u8; TAG_LEN]; n];
        let mut tail = Zeroizing::new(vec![0u8; TAG_LEN * (n - 1)]);
        aead_keystream_xor(
            &self.hops[n - 1].bwd.key,
            ctrs[n - 1],
            PLAIN_LEN - tail.len(),
            &mut tail,
        );
        for j in (0..n - 1).rev() {
            let cut = tail.len() - TAG_LEN;
            dropped[j].copy_from_slice(&tail[cut..]);
            tail.truncate(cut);
            let start = PLAIN_LEN - tail.len();
            aead_keystream_xor(&self.hops[j].bwd.key, ctrs[j], start, &mut tail);
        }

        for (j, hop) in self.hops.iter().enumerate() {
            let tag = tag_of(&onion[..TAG_LEN]);
            if hop
                .bwd
                .aead
                .open_in_place_separate_tag(
                    nonce(ctrs[j]),
                    Aad::from(dropped[j]),
                    tag,
                    &mut onion[..],
                    TAG_LEN..,
                )
                .is_err()
            {
                self.broken = true;
                return Err(Error::BadLayer { hop: j });
            }
            onion[PLAIN_LEN..].copy_from_slice(&dropped[j]);
        }
        for hop in &mut self.hops {
            hop.bwd.advance();
        }
        let mut out = Box::new([0u8; RELAY_PAYLOAD_LEN]);
        out.copy_from_slice(&onion[..RELAY_PAYLOAD_LEN]);
        Ok(out)
    }

    fn counters(&self, dir: impl Fn(&ClientHop) -> &Direction) -> Result<Vec<u64>, Error> {
        self.hops.iter().map(|h| dir(h).peek()).collect()
    }
}

/// Encrypt `onion[TAG_LEN..]` in place and write the tag in front.
fn seal_forward(dir: &Direction, ctr: u64, onion: &mut [u8; ONION_LEN]) -> Result<(), Error> {
    let (tag_out, body) = onion.split_at_mut(TAG_LEN);
    // Fails only for messages over 256 GiB; a cell is 4 KiB.
    let tag = dir
        .aead
        .seal_in_place_separate_tag(nonce(ctr), Aad::empty(), body)
        .map_err(|_| Error::Broken)?;
    tag_out.copy_from_slice(tag.as_ref());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_keystream_matches_the_aead() {
        let key = [9u8; 32];
        let aead = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).unwrap());
        let mut zeros = vec![0u8; 300];
        let _tag = aead
            .seal_in_place_separate_tag(nonce(5), Aad::empty(), &mut zeros)
            .unwrap();
        let mut ks = vec![0u8; 100];
        aead_keystream_xor(&key, 5, 200, &mut ks);
        assert_eq!(ks, zeros[200..]);
    }

    /// The layers are RFC 8439's AEAD whichever implementation computes
    /// them: ring's output is the portable crate's, bit for bit, tag
    /// included, so nodes built either way interoperate.
    #[test]
    fn the_layer_cipher_is_rfc_8439() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let key = [3u8; 32];
        let aad = [5u8; TAG_LEN];
        let mut a: Vec<u8> = (0..PLAIN_LEN).map(|i| i as u8).collect();
        let mut b = a.clone();
        let tag_a = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).unwrap())
            .seal_in_place_separate_tag(nonce(77), Aad::from(aad), &mut a)
            .unwrap();
        let tag_b = chacha20poly1305::ChaCha20Poly1305::new(&key.into())
            .encrypt_in_place_detached(&nonce_bytes(77).into(), &aad, &mut b)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(tag_a.as_ref(), tag_b.as_slice());
    }
}
