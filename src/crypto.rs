//! The cryptography that hides who talks to whom: node identities and
//! signed descriptors, the circuit handshake, and the per-hop onion layers.
//!
//! Pure (sans-IO): randomness comes in as an argument, nothing here touches
//! a socket or a clock. The handshake follows Tor's ntor (Goldberg, Stebila
//! and Ustaoglu, "Anonymity and one-way authentication in key exchange
//! protocols", 2013; tor-spec section 5.1.4) over X25519 with HKDF-SHA256;
//! the layers are ChaCha20-Poly1305 (RFC 8439) arranged as described in
//! `docs/protocol.md`, "Onion layers".

mod handshake;
mod identity;
mod onion;

pub use handshake::{respond, ClientHandshake, LayerKeys, CLIENT_MSG_LEN, SERVER_MSG_LEN};
pub use identity::{
    descriptor_fresh, node_id, puzzle_bits, verify_descriptor, verify_table, Identity, CLOCK_SKEW,
    DESCRIPTOR_LIFETIME, DESCRIPTOR_REFRESH, MAX_PUZZLE_BITS, ONION_KEY_LIFETIME,
};
pub use onion::{ClientCircuit, RelayLayer};

/// What can go wrong in `crypto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("signature does not verify")]
    BadSignature,
    #[error("malformed public key")]
    BadKey,
    #[error("descriptor: {0}")]
    Encoding(#[from] crate::wire::Error),
    #[error("handshake message has length {len}, expected {expected}")]
    HandshakeLength { len: usize, expected: usize },
    #[error("handshake is for another relay or another onion key")]
    HandshakeNotForUs,
    #[error("handshake produced a non-contributory key (small-order point)")]
    NonContributory,
    #[error("relay failed to prove it holds the onion key")]
    HandshakeAuth,
    /// A layer did not authenticate: the cell was altered, replayed,
    /// reordered or sent under the wrong circuit. `hop` counts from 0 at the
    /// client's side of the circuit; for a relay it is always 0 (its own).
    #[error("layer {hop} did not authenticate")]
    BadLayer { hop: usize },
    #[error("the circuit's layers failed earlier and are no longer usable")]
    Broken,
    #[error("cell counter exhausted: the circuit must be replaced")]
    CounterExhausted,
    #[error("circuit already has the maximum of {max} hops")]
    TooManyHops { max: usize },
    #[error("circuit has no hops")]
    NoHops,
}
