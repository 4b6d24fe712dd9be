//! Document keys and blocks (after Freenet's CHK, SSK and KSK; Clarke et
//! al., "Protecting Free Expression Online with Freenet", 2002).
//!
//! Every block carries [`BLOCK_PAYLOAD`] bytes of plaintext space, encrypted
//! to exactly [`BLOCK_DATA_LEN`] bytes, so all blocks of a kind are the same
//! size. Any node can check a block against its routing key without being
//! able to read it:
//!
//! * **Content-hash keys (CHK).** The encryption key is a hash of the padded
//!   plaintext (convergent encryption) and the routing key is the SHA-256 of
//!   the ciphertext. The URI carries both. Nobody can substitute content;
//!   identical documents get identical keys (see the threat model).
//! * **Signed-subspace keys (SSK).** An Ed25519 key pair names a subspace; a
//!   block carries the public key, a hash of the document name, a version,
//!   flags (tombstone) and a signature over all of it. A higher version
//!   replaces a lower one. The request URI holds the public key and the
//!   name (which the data key is derived from), the insert URI the private
//!   key.
//! * **Keyword keys (KSK).** A human-readable keyword hashed into an SSK
//!   signing key: anyone who knows the keyword can read *and write* it.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::wire::{KeyKind, RoutingKey, BLOCK_DATA_LEN, MAX_BLOCK_LEN};

mod document;
pub mod site;
mod uri;

pub use document::{
    decode_root, encode_document, fill_keys, split_key_list, DocError, EncodedDocument, Encoder,
    Manifest, Root, Segment, MAX_CONTENT_TYPE, MAX_NESTING, SEGMENT_BYTES, SEGMENT_DATA_BLOCKS,
};
pub use uri::{check_file_name, Link, Uri, UriError};

/// Plaintext bytes a block can carry: the block minus its length prefix.
pub const BLOCK_PAYLOAD: usize = BLOCK_DATA_LEN - 4;
/// SSK block header: public key, name hash, version, flags, signature.
pub const SSK_HEADER_LEN: usize = 32 + 32 + 8 + 1 + 64;
/// An SSK block on the wire.
pub const SSK_BLOCK_LEN: usize = SSK_HEADER_LEN + BLOCK_DATA_LEN;

const _: () = assert!(SSK_BLOCK_LEN <= MAX_BLOCK_LEN);

const CHK_KEY_CONTEXT: &[u8] = b"umbra chk v1\0";
const SSK_ROUTING_CONTEXT: &[u8] = b"umbra ssk routing v1\0";
const SSK_NAME_CONTEXT: &[u8] = b"umbra ssk name v1\0";
const SSK_DATA_CONTEXT: &[u8] = b"umbra ssk data v1\0";
const SSK_SIGN_CONTEXT: &[u8] = b"umbra ssk block v1\0";
const KSK_CONTEXT: &[u8] = b"umbra ksk v1\0";
const COPY_CONTEXT: &[u8] = b"umbra copy v1\0";

/// Positions besides its own that a document's root (and a nested key
/// list's root) is stored at: a root is the one block its document cannot
/// do without, so it gets independent holders (docs/performance.md,
/// "survival").
pub const ROOT_COPIES: u8 = 2;
/// The highest copy index a node stores a block under.
pub const MAX_COPIES: u8 = 4;

/// SSK block flag: the document is retracted.
pub const FLAG_TOMBSTONE: u8 = 0x01;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{len} bytes do not fit in one block of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the block does not match its key")]
    Mismatch,
    #[error("the block is malformed")]
    Malformed,
    #[error("the block decrypts to garbage: wrong decryption key")]
    WrongKey,
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn keystream(key: &[u8; 32], nonce: [u8; 12], buf: &mut [u8]) {
    ChaCha20::new(key.into(), &nonce.into()).apply_keystream(buf);
}

/// `len | data | zeros`, one block's plaintext.
fn pad(data: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if data.len() > BLOCK_PAYLOAD {
        return Err(KeyError::TooLarge {
            len: data.len(),
            max: BLOCK_PAYLOAD,
        });
    }
    let mut plain = Zeroizing::new(vec![0u8; BLOCK_DATA_LEN]);
    let len = u32::try_from(data.len()).map_err(|_| KeyError::Malformed)?;
    plain[..4].copy_from_slice(&len.to_be_bytes());
    plain[4..4 + data.len()].copy_from_slice(data);
    Ok(plain)
}

fn unpad(plain: &[u8]) -> Result<Vec<u8>, KeyError> {
    let len = plain
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .and_then(|l| usize::try_from(l).ok())
        .ok_or(KeyError::Malformed)?;
    let data = plain.get(4..4 + len).ok_or(KeyError::Malformed)?;
    if len > BLOCK_PAYLOAD || plain[4 + len..].iter().any(|&b| b != 0) {
        return Err(KeyError::Malformed);
    }
    Ok(data.to_vec())
}

// ---- CHK ----

/// A content-hash key: where the block is, and how to read it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChkKey {
    pub routing: RoutingKey,
    pub decrypt: [u8; 32],
}

impl std::fmt::Debug for ChkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChkKey({:?})", self.routing)
    }
}

/// The routing key of a content-hash block: SHA-256 of its bytes.
pub fn chk_routing_key(block: &[u8]) -> RoutingKey {
    RoutingKey(Sha256::digest(block).into())
}

/// Encrypt up to [`BLOCK_PAYLOAD`] bytes into a CHK block.
pub fn chk_encode(data: &[u8]) -> Result<(ChkKey, Vec<u8>), KeyError> {
    let plain = pad(data)?;
    let decrypt = sha(&[CHK_KEY_CONTEXT, &plain]);
    let mut block = plain.to_vec();
    keystream(&decrypt, [0; 12], &mut block);
    let routing = chk_routing_key(&block);
    Ok((ChkKey { routing, decrypt }, block))
}

/// Check and decrypt a CHK block.
pub fn chk_decode(key: &ChkKey, block: &[u8]) -> Result<Vec<u8>, KeyError> {
    if block.len() != BLOCK_DATA_LEN || chk_routing_key(block) != key.routing {
        return Err(KeyError::Mismatch);
    }
    let mut plain = Zeroizing::new(block.to_vec());
    keystream(&key.decrypt, [0; 12], &mut plain);
    // The key is the hash of the plaintext: a wrong key shows at once.
    if sha(&[CHK_KEY_CONTEXT, &plain]) != key.decrypt {
        return Err(KeyError::WrongKey);
    }
    unpad(&plain)
}

// ---- SSK ----

/// The publisher's side of a signed subspace: may insert under `name`.
#[derive(Clone)]
pub struct SskInsertKey {
    signing: SigningKey,
    pub name: String,
}

impl std::fmt::Debug for SskInsertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SskInsertKey(..)")
    }
}

/// The reader's side: may fetch, verify and decrypt `name`.
#[derive(Clone, PartialEq, Eq)]
pub struct SskRequestKey {
    pub public: [u8; 32],
    pub name: String,
}

impl std::fmt::Debug for SskRequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SskRequestKey({:?})", self.routing())
    }
}

impl SskInsertKey {
    pub fn generate<R: rand::RngCore + rand::CryptoRng>(rng: &mut R, name: &str) -> SskInsertKey {
        SskInsertKey {
            signing: SigningKey::generate(rng),
            name: name.to_string(),
        }
    }

    pub fn from_seed(seed: &[u8; 32], name: &str) -> SskInsertKey {
        SskInsertKey {
            signing: SigningKey::from_bytes(seed),
            name: name.to_string(),
        }
    }

    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    pub fn request_key(&self) -> SskRequestKey {
        SskRequestKey {
            public: self.signing.verifying_key().to_bytes(),
            name: self.name.clone(),
        }
    }

    /// The same subspace, another document name.
    pub fn with_name(&self, name: &str) -> SskInsertKey {
        SskInsertKey {
            signing: self.signing.clone(),
            name: name.to_string(),
        }
    }

    /// Sign version `version` of the document: `Some(data)` to publish,
    /// `None` for a tombstone that retracts it.
    pub fn encode(
        &self,
        version: u64,
        data: Option<&[u8]>,
    ) -> Result<(RoutingKey, Vec<u8>), KeyError> {
        let req = self.request_key();
        let routing = req.routing();
        let flags = if data.is_some() { 0 } else { FLAG_TOMBSTONE };
        let mut body = pad(data.unwrap_or_default())?.to_vec();
        keystream(&req.data_key(), version_nonce(version), &mut body);
        let sig = self
            .signing
            .sign(&ssk_signed(&routing, version, flags, &body));
        let mut block = Vec::with_capacity(SSK_BLOCK_LEN);
        block.extend_from_slice(&req.public);
        block.extend_from_slice(&name_hash(&self.name));
        block.extend_from_slice(&version.to_be_bytes());
        block.push(flags);
        block.extend_from_slice(&sig.to_bytes());
        block.extend_from_slice(&body);
        Ok((routing, block))
    }
}

fn name_hash(name: &str) -> [u8; 32] {
    sha(&[SSK_NAME_CONTEXT, name.as_bytes()])
}

fn version_nonce(version: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&version.to_be_bytes());
    n
}

fn ssk_signed(routing: &RoutingKey, version: u64, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut m = SSK_SIGN_CONTEXT.to_vec();
    m.extend_from_slice(&routing.0);
    m.extend_from_slice(&version.to_be_bytes());
    m.push(flags);
    m.extend_from_slice(&sha(&[body]));
    m
}

fn ssk_routing(public: &[u8; 32], name_hash: &[u8; 32]) -> RoutingKey {
    RoutingKey(sha(&[SSK_ROUTING_CONTEXT, public, name_hash]))
}

impl SskRequestKey {
    pub fn routing(&self) -> RoutingKey {
        ssk_routing(&self.public, &name_hash(&self.name))
    }

    fn data_key(&self) -> [u8; 32] {
        sha(&[SSK_DATA_CONTEXT, &self.public, self.name.as_bytes()])
    }

    /// Verify and decrypt a block fetched for this key.
    pub fn decode(&self, block: &[u8]) -> Result<SskContent, KeyError> {
        let header = ssk_verify(&self.routing(), block)?;
        if header.tombstone {
            return Ok(SskContent::Retracted {
                version: header.version,
            });
        }
        let mut body = Zeroizing::new(block[SSK_HEADER_LEN..].to_vec());
        keystream(&self.data_key(), version_nonce(header.version), &mut body);
        Ok(SskContent::Data {
            version: header.version,
            data: unpad(&body).map_err(|_| KeyError::WrongKey)?,
        })
    }
}

/// What an SSK block says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SskContent {
    Data { version: u64, data: Vec<u8> },
    Retracted { version: u64 },
}

/// What any node can learn from an SSK block without the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SskHeader {
    pub version: u64,
    pub tombstone: bool,
}

/// Check an SSK block against its routing key: the key is the hash of the
/// block's public key and name hash, and the signature covers everything.
pub fn ssk_verify(routing: &RoutingKey, block: &[u8]) -> Result<SskHeader, KeyError> {
    if block.len() != SSK_BLOCK_LEN {
        return Err(KeyError::Malformed);
    }
    let (public, rest) = block.split_at(32);
    let (nhash, rest) = rest.split_at(32);
    let (version, rest) = rest.split_at(8);
    let (flags, rest) = rest.split_at(1);
    let (sig, body) = rest.split_at(64);
    let public: &[u8; 32] = public.try_into().map_err(|_| KeyError::Malformed)?;
    let nhash: &[u8; 32] = nhash.try_into().map_err(|_| KeyError::Malformed)?;
    let version = u64::from_be_bytes(version.try_into().map_err(|_| KeyError::Malformed)?);
    let sig: &[u8; 64] = sig.try_into().map_err(|_| KeyError::Malformed)?;
    let flags = flags[0];
    if flags & !FLAG_TOMBSTONE != 0 {
        return Err(KeyError::Malformed);
    }
    if ssk_routing(public, nhash) != *routing {
        return Err(KeyError::Mismatch);
    }
    let key = VerifyingKey::from_bytes(public).map_err(|_| KeyError::Mismatch)?;
    key.verify_strict(
        &ssk_signed(routing, version, flags, body),
        &Signature::from_bytes(sig),
    )
    .map_err(|_| KeyError::Mismatch)?;
    Ok(SskHeader {
        version,
        tombstone: flags & FLAG_TOMBSTONE != 0,
    })
}

/// The version of an SSK block, for "a higher version replaces a lower".
/// Call only on verified blocks.
pub fn ssk_version(block: &[u8]) -> Option<u64> {
    let v = block.get(64..72)?;
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

// ---- KSK ----

/// The signing key a keyword stands for. Anyone can compute it: a keyword
/// key can be written by anyone who knows the keyword.
pub fn ksk(keyword: &str) -> SskInsertKey {
    let seed = Zeroizing::new(sha(&[KSK_CONTEXT, keyword.as_bytes()]));
    SskInsertKey::from_seed(&seed, "")
}

// ---- every node ----

/// Whether `new` should replace `old` under the same key: only a signed
/// block of a higher version replaces another. Both must be verified.
pub fn supersedes(kind: KeyKind, old: &[u8], new: &[u8]) -> bool {
    kind == KeyKind::SSK
        && matches!((ssk_version(old), ssk_version(new)), (Some(o), Some(n)) if n > o)
}

/// The routing key of copy `index` (from 1) of the CHK block whose
/// routing key is `chk`: a point on the ring unrelated to `chk`'s, so its
/// holders are other nodes.
pub fn copy_routing_key(chk: &RoutingKey, index: u8) -> RoutingKey {
    RoutingKey(sha(&[COPY_CONTEXT, &[index], &chk.0]))
}

/// Whether `block` is a valid block for `key`. Every node calls this before
/// it stores, caches, forwards or returns a block.
pub fn verify_block(kind: KeyKind, key: &RoutingKey, block: &[u8]) -> bool {
    if block.len() > MAX_BLOCK_LEN {
        return false;
    }
    match kind {
        KeyKind::CHK => chk_routing_key(block) == *key,
        KeyKind::SSK => ssk_verify(key, block).is_ok(),
        KeyKind::COPY => {
            let chk = chk_routing_key(block);
            (1..=MAX_COPIES).any(|i| copy_routing_key(&chk, i) == *key)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_copy_is_its_chk_block_under_a_key_every_node_can_check() {
        let (key, block) = chk_encode(b"a root").unwrap();
        for i in 1..=MAX_COPIES {
            let copy = copy_routing_key(&key.routing, i);
            assert_ne!(copy, key.routing);
            assert!(verify_block(KeyKind::COPY, &copy, &block));
            // Not the other way round: a copy key is not a CHK key.
            assert!(!verify_block(KeyKind::CHK, &copy, &block));
        }
        // Past the highest index, under the CHK key itself, or tampered:
        // refused.
        let beyond = copy_routing_key(&key.routing, MAX_COPIES + 1);
        assert!(!verify_block(KeyKind::COPY, &beyond, &block));
        assert!(!verify_block(KeyKind::COPY, &key.routing, &block));
        let mut bad = block.clone();
        bad[0] ^= 1;
        let copy = copy_routing_key(&key.routing, 1);
        assert!(!verify_block(KeyKind::COPY, &copy, &bad));
        // Copies never change: nothing supersedes them.
        assert!(!supersedes(KeyKind::COPY, &block, &block));
        assert!(KeyKind::COPY.immutable() && !KeyKind::SSK.immutable());
    }

    #[test]
    fn chk_round_trips_and_refuses_tampering() {
        let data = b"hello, world".to_vec();
        let (key, block) = chk_encode(&data).unwrap();
        assert_eq!(block.len(), BLOCK_DATA_LEN);
        assert!(verify_block(KeyKind::CHK, &key.routing, &block));
        assert_eq!(chk_decode(&key, &block).unwrap(), data);
        let mut bad = block.clone();
        bad[100] ^= 1;
        assert_eq!(chk_decode(&key, &bad), Err(KeyError::Mismatch));
        let wrong = ChkKey {
            decrypt: [7; 32],
            ..key
        };
        assert_eq!(chk_decode(&wrong, &block), Err(KeyError::WrongKey));
        // Convergent: the same content, the same key.
        assert_eq!(chk_encode(&data).unwrap().0, key);
        assert!(matches!(
            chk_encode(&vec![0; BLOCK_PAYLOAD + 1]),
            Err(KeyError::TooLarge { .. })
        ));
        assert_eq!(
            chk_decode(
                &chk_encode(&vec![9; BLOCK_PAYLOAD]).unwrap().0,
                &chk_encode(&vec![9; BLOCK_PAYLOAD]).unwrap().1
            )
            .unwrap()
            .len(),
            BLOCK_PAYLOAD
        );
    }

    #[test]
    fn ssk_versions_tombstones_and_forgeries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let insert = SskInsertKey::generate(&mut rng, "site");
        let req = insert.request_key();
        let (routing, v1) = insert.encode(1, Some(b"first")).unwrap();
        assert_eq!(routing, req.routing());
        assert!(verify_block(KeyKind::SSK, &routing, &v1));
        assert_eq!(
            req.decode(&v1).unwrap(),
            SskContent::Data {
                version: 1,
                data: b"first".to_vec()
            }
        );
        let (_, gone) = insert.encode(3, None).unwrap();
        assert_eq!(
            req.decode(&gone).unwrap(),
            SskContent::Retracted { version: 3 }
        );
        assert_eq!(ssk_version(&gone), Some(3));

        // Someone else's key cannot write into the subspace.
        let other = SskInsertKey::generate(&mut rng, "site");
        let (_, forged) = other.encode(9, Some(b"evil")).unwrap();
        assert!(!verify_block(KeyKind::SSK, &routing, &forged));
        // Nor can a version be bumped without re-signing.
        let mut bumped = v1.clone();
        bumped[71] = 2;
        assert!(!verify_block(KeyKind::SSK, &routing, &bumped));
        // Another name is another routing key, and the name is needed to read.
        let wrong_name = SskRequestKey {
            name: "other".into(),
            ..req.clone()
        };
        assert!(wrong_name.decode(&v1).is_err());
    }

    #[test]
    fn keyword_keys_are_the_same_for_everyone() {
        let a = ksk("umbra news").request_key();
        let b = ksk("umbra news").request_key();
        assert_eq!(a, b);
        assert_ne!(a, ksk("umbra new").request_key());
        let (routing, block) = ksk("umbra news").encode(1, Some(b"hi")).unwrap();
        assert_eq!(routing, a.routing());
        assert!(verify_block(KeyKind::SSK, &routing, &block));
    }
}
