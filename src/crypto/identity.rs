//! Node identity: a long-term Ed25519 key whose SHA-256 is the node's place
//! on the ring, an X25519 onion key for circuit handshakes, and the signed
//! descriptor that binds the two to the node's addresses.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::Error;
use crate::wire::{NodeAddr, NodeDescriptor, NodeId, ShownTable};

/// Domain separation for descriptor signatures, so that a descriptor
/// signature can never be replayed as a signature on anything else.
const DESCRIPTOR_CONTEXT: &[u8] = b"umbra descriptor v1\0";
const PUZZLE_CONTEXT: &[u8] = b"umbra id puzzle v1\0";
const TABLE_CONTEXT: &[u8] = b"umbra routing table v1\0";
/// A descriptor is good for this long after the time it was made
/// (seconds); nodes make a new one every [`DESCRIPTOR_REFRESH`], and one
/// older than this is stale and refused.
pub const DESCRIPTOR_LIFETIME: u64 = 24 * 3600;
/// How often a node signs its descriptor again (seconds).
pub const DESCRIPTOR_REFRESH: u64 = 6 * 3600;
/// How far ahead of this node's clock a descriptor may be dated (seconds).
pub const CLOCK_SKEW: u64 = 600;

/// Whether `d` is current at Unix time `unix`: made no longer than
/// [`DESCRIPTOR_LIFETIME`] ago, and not dated more than [`CLOCK_SKEW`]
/// ahead.
pub fn descriptor_fresh(d: &NodeDescriptor, unix: u64) -> bool {
    d.published <= unix.saturating_add(CLOCK_SKEW)
        && unix < d.published.saturating_add(DESCRIPTOR_LIFETIME)
}

/// A relay makes a new onion key this often (seconds), and keeps
/// answering handshakes made to the one before for as long again, so that
/// every descriptor still current (and a guard list a week old) names a
/// key it holds. An onion key that leaks opens no handshake made more
/// than two weeks after it was made (Tor rotates its ntor keys every 28
/// days with 7 days of overlap).
pub const ONION_KEY_LIFETIME: u64 = 7 * 24 * 3600;

/// Puzzle bits a configuration may ask for at most (about a day of one
/// core per identity).
pub const MAX_PUZZLE_BITS: u8 = 32;

/// The puzzle an identity key solves: the leading zero bits of
/// SHA-256("umbra id puzzle v1\0" || key). A relay's identity must solve
/// the network's `id_puzzle_bits` (S/Kademlia's static puzzle): making
/// one costs about 2^bits key generations, and its ring position (the
/// SHA-256 of the key, an independent hash) is still uniform, so placing
/// a node on a chosen arc of width 1/N costs about N · 2^bits of them.
pub fn puzzle_bits(identity_key: &[u8; 32]) -> u32 {
    let d = Sha256::new()
        .chain_update(PUZZLE_CONTEXT)
        .chain_update(identity_key)
        .finalize();
    let mut bits = 0;
    for byte in d {
        bits += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    bits
}

/// A node's long-term secrets. Both halves zeroize on drop (the dalek types
/// do it themselves).
pub struct Identity {
    signing: SigningKey,
    onion: StaticSecret,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id()).finish()
    }
}

impl Identity {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Identity {
        Identity {
            signing: SigningKey::generate(rng),
            onion: StaticSecret::random_from_rng(rng),
        }
    }

    /// An identity whose key solves a puzzle of `bits` ([`puzzle_bits`]):
    /// about 2^bits key generations.
    pub fn generate_solving<R: RngCore + CryptoRng>(rng: &mut R, bits: u8) -> Identity {
        let bits = u32::from(bits.min(MAX_PUZZLE_BITS));
        loop {
            let signing = SigningKey::generate(rng);
            if puzzle_bits(signing.verifying_key().as_bytes()) >= bits {
                return Identity {
                    signing,
                    onion: StaticSecret::random_from_rng(rng),
                };
            }
        }
    }

    /// Rebuild from the 64 bytes [`Identity::secret_bytes`] gave.
    pub fn from_secret_bytes(bytes: &[u8; 64]) -> Identity {
        let mut signing = Zeroizing::new([0u8; 32]);
        let mut onion = Zeroizing::new([0u8; 32]);
        signing.copy_from_slice(&bytes[..32]);
        onion.copy_from_slice(&bytes[32..]);
        Identity {
            signing: SigningKey::from_bytes(&signing),
            onion: StaticSecret::from(*onion),
        }
    }

    /// The secrets, for the node's own key file.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(self.signing.as_bytes());
        out[32..].copy_from_slice(self.onion.as_bytes());
        out
    }

    pub fn id(&self) -> NodeId {
        node_id(self.signing.verifying_key().as_bytes())
    }

    pub fn identity_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn onion_key(&self) -> [u8; 32] {
        PublicKey::from(&self.onion).to_bytes()
    }

    /// The identity key as PKCS#8 DER, for the link certificate.
    pub fn signing_key_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let doc = self.signing.to_pkcs8_der().map_err(|_| Error::BadKey)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    pub(crate) fn onion_secret(&self) -> &StaticSecret {
        &self.onion
    }

    /// Take `onion` as the onion key from now on (a rotation); returns the
    /// one it replaces.
    pub fn replace_onion(&mut self, onion: StaticSecret) -> StaticSecret {
        std::mem::replace(&mut self.onion, onion)
    }

    /// A descriptor for this node, signed.
    pub fn sign_descriptor(
        &self,
        addrs: Vec<NodeAddr>,
        published: u64,
        flags: u8,
    ) -> Result<NodeDescriptor, Error> {
        let mut d = NodeDescriptor {
            identity: self.identity_key(),
            onion_key: self.onion_key(),
            published,
            flags,
            addrs,
            signature: [0; 64],
        };
        let msg = signed_message(&d)?;
        d.signature = self.signing.sign(&msg).to_bytes();
        Ok(d)
    }
}

impl Identity {
    /// Sign `table` as this node's answer to `query`.
    pub fn sign_table(&self, query: u64, table: &mut ShownTable) -> Result<(), Error> {
        let msg = table_message(query, table)?;
        table.signature = self.signing.sign(&msg).to_bytes();
        Ok(())
    }
}

/// Check that the node whose identity key is `identity` signed `table` as
/// its answer to `query`.
pub fn verify_table(identity: &[u8; 32], query: u64, table: &ShownTable) -> Result<(), Error> {
    let key = VerifyingKey::from_bytes(identity).map_err(|_| Error::BadKey)?;
    let msg = table_message(query, table)?;
    key.verify_strict(&msg, &Signature::from_bytes(&table.signature))
        .map_err(|_| Error::BadSignature)
}

fn table_message(query: u64, table: &ShownTable) -> Result<Vec<u8>, Error> {
    let mut msg = TABLE_CONTEXT.to_vec();
    msg.extend(table.signed_part(query)?);
    Ok(msg)
}

/// A node's id: SHA-256 of its Ed25519 public key.
pub fn node_id(identity_key: &[u8; 32]) -> NodeId {
    NodeId(Sha256::digest(identity_key).into())
}

/// Check a descriptor's signature (strict Ed25519: no malleable or
/// small-order keys) and return the id of the node it describes. Whether it
/// is fresh enough is the caller's policy.
pub fn verify_descriptor(d: &NodeDescriptor) -> Result<NodeId, Error> {
    let key = VerifyingKey::from_bytes(&d.identity).map_err(|_| Error::BadKey)?;
    let msg = signed_message(d)?;
    key.verify_strict(&msg, &Signature::from_bytes(&d.signature))
        .map_err(|_| Error::BadSignature)?;
    Ok(node_id(&d.identity))
}

fn signed_message(d: &NodeDescriptor) -> Result<Vec<u8>, Error> {
    let mut msg = DESCRIPTOR_CONTEXT.to_vec();
    msg.extend(d.signed_part()?);
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(1)
    }

    #[test]
    fn a_descriptor_is_fresh_for_a_day_and_a_little_ahead() {
        let id = Identity::generate(&mut rng());
        let at = |published| id.sign_descriptor(Vec::new(), published, 0).unwrap();
        let now = 1_000_000;
        assert!(descriptor_fresh(&at(now), now));
        assert!(descriptor_fresh(&at(now - DESCRIPTOR_LIFETIME + 1), now));
        assert!(!descriptor_fresh(&at(now - DESCRIPTOR_LIFETIME), now));
        assert!(descriptor_fresh(&at(now + CLOCK_SKEW), now));
        assert!(!descriptor_fresh(&at(now + CLOCK_SKEW + 1), now));
        assert!(!descriptor_fresh(&at(u64::MAX), now), "no overflow");
    }

    #[test]
    fn a_table_verifies_only_as_signed_for_its_query() {
        let mut r = rng();
        let owner = Identity::generate(&mut r);
        let other = Identity::generate(&mut r);
        let d = other
            .sign_descriptor(Vec::new(), 1, 0)
            .expect("a descriptor signs");
        let mut table = ShownTable {
            predecessor: None,
            successors: vec![d.clone()],
            fingers: Vec::new(),
            signature: [0; 64],
        };
        owner.sign_table(9, &mut table).expect("signs");
        let key = owner.identity_key();
        assert_eq!(verify_table(&key, 9, &table), Ok(()));
        assert_eq!(
            verify_table(&key, 10, &table),
            Err(Error::BadSignature),
            "another query"
        );
        assert_eq!(
            verify_table(&other.identity_key(), 9, &table),
            Err(Error::BadSignature),
            "another owner"
        );
        let mut altered = table.clone();
        altered.fingers.push(d);
        assert_eq!(
            verify_table(&key, 9, &altered),
            Err(Error::BadSignature),
            "an entry added on the way"
        );
    }

    #[test]
    fn a_solved_puzzle_is_solved_and_costs_about_two_to_the_bits() {
        let mut r = rng();
        for bits in [0u8, 4, 10] {
            let id = Identity::generate_solving(&mut r, bits);
            assert!(puzzle_bits(&id.identity_key()) >= u32::from(bits));
        }
        // The puzzle is a hash of its own: ids of solving keys are spread
        // as any ids are (their first bytes differ).
        let firsts: std::collections::HashSet<u8> = (0..32)
            .map(|_| Identity::generate_solving(&mut r, 6).id().0[0])
            .collect();
        assert!(firsts.len() > 20, "ids cluster: {firsts:?}");
        // About 1 key in 2^bits solves it.
        let n = 4096;
        let solved = (0..n)
            .filter(|_| puzzle_bits(&Identity::generate(&mut r).identity_key()) >= 4)
            .count();
        assert!(
            (160..=360).contains(&solved),
            "{solved} of {n} solve 4 bits"
        );
    }

    #[test]
    fn descriptor_verifies_and_any_change_breaks_it() {
        let id = Identity::generate(&mut rng());
        let addr = NodeAddr("127.0.0.1:4000".parse().unwrap());
        let d = id.sign_descriptor(vec![addr], 1_700_000_000, 1).unwrap();
        assert_eq!(verify_descriptor(&d), Ok(id.id()));

        let mut moved = d.clone();
        moved.addrs[0] = NodeAddr("127.0.0.1:4001".parse().unwrap());
        assert_eq!(verify_descriptor(&moved), Err(Error::BadSignature));
        let mut rekeyed = d.clone();
        rekeyed.onion_key[0] ^= 1;
        assert_eq!(verify_descriptor(&rekeyed), Err(Error::BadSignature));
        let mut older = d;
        older.published -= 1;
        assert_eq!(verify_descriptor(&older), Err(Error::BadSignature));
    }

    #[test]
    fn secrets_round_trip() {
        let id = Identity::generate(&mut rng());
        let again = Identity::from_secret_bytes(&id.secret_bytes());
        assert_eq!(again.id(), id.id());
        assert_eq!(again.onion_key(), id.onion_key());
    }
}
